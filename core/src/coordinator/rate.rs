//! Per-connection flood control: a token bucket and a strike counter.
//!
//! Every frame costs one token; tokens refill at `per_s` up to `burst`. A frame without a token
//! is not processed. Frames the coordinator rejects (over the rate, or undecodable) are strikes;
//! `strikes_max` strikes within [`STRIKE_WINDOW_MS`] close the connection.

use std::collections::VecDeque;

use super::config::RateLimit;
use crate::time::Instant;

/// The window in which strikes add up, in milliseconds.
pub const STRIKE_WINDOW_MS: u64 = 10_000;
/// The shortest gap between two `rate-limited` errors to one connection, in milliseconds.
pub const RATE_ERROR_GAP_MS: u64 = 1_000;

/// Thousandths of a token, so refill needs no floating point.
const MILLI: u64 = 1_000;

/// One connection's bucket and recent strikes.
#[derive(Clone, Debug)]
pub(crate) struct Limiter {
    tokens_milli: u64,
    refilled_at: Instant,
    strikes: VecDeque<Instant>,
    rate_error_at: Option<Instant>,
}

/// What to do with a strike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Strike {
    /// Keep the connection.
    Tolerated,
    /// `strikes_max` reached: close the connection.
    Exhausted,
}

impl Limiter {
    /// A full bucket at `now`.
    pub(crate) fn new(limit: &RateLimit, now: Instant) -> Self {
        Limiter {
            tokens_milli: u64::from(limit.burst) * MILLI,
            refilled_at: now,
            strikes: VecDeque::new(),
            rate_error_at: None,
        }
    }

    /// Takes a token for one frame; `false` when the bucket is empty.
    pub(crate) fn admit(&mut self, limit: &RateLimit, now: Instant) -> bool {
        let elapsed_ms = now.millis_since(self.refilled_at);
        // `per_s` tokens per second is `per_s` thousandths of a token per millisecond.
        let refill = elapsed_ms.saturating_mul(u64::from(limit.per_s));
        let cap = u64::from(limit.burst) * MILLI;
        self.tokens_milli = self.tokens_milli.saturating_add(refill).min(cap);
        self.refilled_at = self.refilled_at.max(now);
        if self.tokens_milli >= MILLI {
            self.tokens_milli -= MILLI;
            true
        } else {
            false
        }
    }

    /// Records a rejected frame.
    pub(crate) fn strike(&mut self, limit: &RateLimit, now: Instant) -> Strike {
        while self.strikes.front().is_some_and(|t| now.millis_since(*t) >= STRIKE_WINDOW_MS) {
            self.strikes.pop_front();
        }
        self.strikes.push_back(now);
        // Bounded: the connection closes as soon as the window holds `strikes_max`.
        if self.strikes.len() >= limit.strikes_max.max(1) as usize {
            Strike::Exhausted
        } else {
            Strike::Tolerated
        }
    }

    /// Whether a `rate-limited` error may be sent now (at most one per second); records it.
    pub(crate) fn may_send_rate_error(&mut self, now: Instant) -> bool {
        match self.rate_error_at {
            Some(at) if now.millis_since(at) < RATE_ERROR_GAP_MS => false,
            _ => {
                self.rate_error_at = Some(now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit() -> RateLimit {
        RateLimit { per_s: 10, burst: 3, strikes_max: 3 }
    }

    #[test]
    fn bucket_allows_the_burst_then_refills_at_the_sustained_rate() {
        let l = limit();
        let t0 = Instant::from_millis(1_000);
        let mut b = Limiter::new(&l, t0);
        assert!((0..3).all(|_| b.admit(&l, t0)));
        assert!(!b.admit(&l, t0));
        // 10 per second: one token every 100 ms.
        assert!(!b.admit(&l, t0.add_millis(99)));
        assert!(b.admit(&l, t0.add_millis(100)));
        assert!(!b.admit(&l, t0.add_millis(100)));
        // A long pause refills only up to the burst.
        let later = t0.add_millis(60_000);
        assert!((0..3).all(|_| b.admit(&l, later)));
        assert!(!b.admit(&l, later));
    }

    #[test]
    fn strikes_close_only_within_the_window() {
        let l = limit();
        let t0 = Instant::from_millis(0);
        let mut b = Limiter::new(&l, t0);
        assert_eq!(b.strike(&l, t0), Strike::Tolerated);
        assert_eq!(b.strike(&l, t0.add_millis(1)), Strike::Tolerated);
        // The first two have aged out of the window.
        assert_eq!(b.strike(&l, t0.add_millis(STRIKE_WINDOW_MS + 1)), Strike::Tolerated);
        assert_eq!(b.strike(&l, t0.add_millis(STRIKE_WINDOW_MS + 2)), Strike::Tolerated);
        assert_eq!(b.strike(&l, t0.add_millis(STRIKE_WINDOW_MS + 3)), Strike::Exhausted);
    }

    #[test]
    fn rate_errors_are_sent_at_most_once_per_second() {
        let mut b = Limiter::new(&limit(), Instant::ZERO);
        assert!(b.may_send_rate_error(Instant::from_millis(10)));
        assert!(!b.may_send_rate_error(Instant::from_millis(1_009)));
        assert!(b.may_send_rate_error(Instant::from_millis(1_010)));
    }
}
