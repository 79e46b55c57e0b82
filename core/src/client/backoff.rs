//! The reconnect budget: exponential backoff with full jitter over an ordered list of URLs.
//!
//! One *round* walks the coordinator URLs in order, at most `max_retries` attempts each. The
//! k-th failure of a round (k = 1, 2, ...) waits a uniformly random delay in
//! `[0, min(cap, base * 2^(k-1))]` ("full jitter") before the next attempt. When the last URL
//! has used its attempts the round is exhausted and the client falls back; from then on it
//! probes one URL at a time, round-robin, every `[cap/2, cap]` ms. A successful session resets
//! the round to the primary URL.

use crate::rng::Rng;

/// What to do after a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NextAttempt {
    /// Try `url_index` after `delay_ms`.
    Retry {
        /// Index into the URL list.
        url_index: usize,
        /// How long to wait first.
        delay_ms: u64,
        /// Failures so far in this round (1 for the first retry).
        failures: u32,
    },
    /// Every URL used its attempts: fall back.
    Exhausted,
}

/// The backoff state of one client.
#[derive(Clone, Debug)]
pub struct Backoff {
    url_count: usize,
    max_retries: u32,
    base_ms: u64,
    cap_ms: u64,
    url_index: usize,
    failures_on_url: u32,
    failures_in_round: u32,
    probe_index: usize,
}

impl Backoff {
    /// A fresh round over `url_count` URLs.
    pub fn new(url_count: usize, max_retries: u32, base_ms: u64, cap_ms: u64) -> Self {
        Backoff {
            url_count,
            max_retries: max_retries.max(1),
            base_ms,
            cap_ms,
            url_index: 0,
            failures_on_url: 0,
            failures_in_round: 0,
            probe_index: 0,
        }
    }

    /// The URL the next (or current) budgeted attempt uses.
    pub fn url_index(&self) -> usize {
        self.url_index
    }

    /// Failures counted in the current round.
    pub fn failures_in_round(&self) -> u32 {
        self.failures_in_round
    }

    /// Starts a new round at the primary URL (after a successful session).
    pub fn reset(&mut self) {
        self.url_index = 0;
        self.failures_on_url = 0;
        self.failures_in_round = 0;
    }

    /// The largest delay the `failures`-th failure of a round may wait, in ms.
    pub fn delay_bound_ms(base_ms: u64, cap_ms: u64, failures: u32) -> u64 {
        let exponent = failures.saturating_sub(1).min(63);
        let grown = base_ms.checked_shl(exponent).filter(|v| v >> exponent == base_ms);
        grown.unwrap_or(u64::MAX).min(cap_ms)
    }

    /// Records a failed attempt and says what comes next.
    pub fn on_failure(&mut self, rng: &mut Rng) -> NextAttempt {
        self.failures_on_url = self.failures_on_url.saturating_add(1);
        self.failures_in_round = self.failures_in_round.saturating_add(1);
        if self.failures_on_url >= self.max_retries {
            self.url_index += 1;
            self.failures_on_url = 0;
        }
        if self.url_index >= self.url_count {
            return NextAttempt::Exhausted;
        }
        let bound = Self::delay_bound_ms(self.base_ms, self.cap_ms, self.failures_in_round);
        NextAttempt::Retry {
            url_index: self.url_index,
            delay_ms: rng.below_inclusive(bound),
            failures: self.failures_in_round,
        }
    }

    /// The URL of the next background probe (round-robin) and how long to wait before it.
    pub fn next_probe(&mut self, rng: &mut Rng) -> (usize, u64) {
        let url_index = if self.url_count == 0 { 0 } else { self.probe_index % self.url_count };
        self.probe_index = self.probe_index.wrapping_add(1);
        let delay_ms = rng.range_inclusive(self.cap_ms / 2, self.cap_ms);
        (url_index, delay_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_url_gets_max_retries_attempts_then_the_round_is_exhausted() {
        let mut b = Backoff::new(2, 3, 1_000, 30_000);
        let mut rng = Rng::from_seed(1);
        let mut urls = vec![b.url_index()];
        while let NextAttempt::Retry { url_index, .. } = b.on_failure(&mut rng) {
            urls.push(url_index);
        }
        assert_eq!(urls, vec![0, 0, 0, 1, 1, 1]);
        b.reset();
        assert_eq!(b.url_index(), 0);
        assert_eq!(b.failures_in_round(), 0);
    }

    #[test]
    fn delays_are_full_jitter_under_the_exponential_bound() {
        let mut rng = Rng::from_seed(9);
        for _ in 0..200 {
            let mut b = Backoff::new(3, 3, 1_000, 5_000);
            while let NextAttempt::Retry { delay_ms, failures, .. } = b.on_failure(&mut rng) {
                assert!(delay_ms <= Backoff::delay_bound_ms(1_000, 5_000, failures));
            }
        }
        assert_eq!(Backoff::delay_bound_ms(1_000, 30_000, 1), 1_000);
        assert_eq!(Backoff::delay_bound_ms(1_000, 30_000, 3), 4_000);
        assert_eq!(Backoff::delay_bound_ms(1_000, 30_000, 9), 30_000);
        assert_eq!(Backoff::delay_bound_ms(u64::MAX / 2, 30_000, 200), 30_000);
    }

    #[test]
    fn probes_rotate_over_urls_at_the_capped_interval() {
        let mut b = Backoff::new(2, 3, 1_000, 8_000);
        let mut rng = Rng::from_seed(4);
        let probes: Vec<_> = (0..4).map(|_| b.next_probe(&mut rng)).collect();
        assert_eq!(probes.iter().map(|p| p.0).collect::<Vec<_>>(), vec![0, 1, 0, 1]);
        assert!(probes.iter().all(|p| (4_000..=8_000).contains(&p.1)));
    }
}
