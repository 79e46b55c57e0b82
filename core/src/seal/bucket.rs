//! A token bucket in integer milli-tokens, refilled from the caller's [`Instant`].

use crate::Instant;

/// Allows `per_second` events per second on average and `burst` at once.
#[derive(Clone, Debug)]
pub(crate) struct TokenBucket {
    per_second: u64,
    capacity_milli: u64,
    tokens_milli: u64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(now: Instant, per_second: u32, burst: u32) -> Self {
        let capacity_milli = u64::from(burst.max(1)) * 1000;
        TokenBucket {
            per_second: u64::from(per_second),
            capacity_milli,
            tokens_milli: capacity_milli,
            last: now,
        }
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        let elapsed_ms = now.millis_since(self.last);
        if elapsed_ms > 0 {
            // `per_second` tokens per 1000 ms is `per_second` milli-tokens per ms.
            let refill = elapsed_ms.saturating_mul(self.per_second);
            self.tokens_milli = self.tokens_milli.saturating_add(refill).min(self.capacity_milli);
            self.last = now;
        }
        if self.tokens_milli >= 1000 {
            self.tokens_milli -= 1000;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_a_burst_then_the_sustained_rate() {
        let t0 = Instant::from_millis(1000);
        let mut b = TokenBucket::new(t0, 10, 5);
        assert_eq!((0..20).filter(|_| b.try_take(t0)).count(), 5);
        // 10 per second: one more every 100 ms.
        assert!(!b.try_take(t0.add_millis(99)));
        assert!(b.try_take(t0.add_millis(100)));
        assert!(!b.try_take(t0.add_millis(100)));
        // A long pause refills only up to the burst.
        let later = t0.add_millis(60_000);
        assert_eq!((0..20).filter(|_| b.try_take(later)).count(), 5);
        // Time going backwards refills nothing.
        assert!(!b.try_take(t0));
    }
}
