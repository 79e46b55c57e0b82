//! Seeded randomness for the state machines.
//!
//! Every random choice the core makes (backoff jitter, session ids, session keys) comes from a
//! [`Rng`] seeded at construction. Production seeds it from the operating system's entropy (32
//! bytes); the simulation and the tests seed it from the run's seed, so a seed replays exactly.

use rand_chacha::ChaCha12Rng;
use rand_core::{RngCore, SeedableRng};

/// A deterministic, cryptographically strong generator (ChaCha12).
#[derive(Clone, Debug)]
pub struct Rng(ChaCha12Rng);

impl Rng {
    /// A generator for tests and simulation, derived from a 64-bit seed.
    pub fn from_seed(seed: u64) -> Self {
        Rng(ChaCha12Rng::seed_from_u64(seed))
    }

    /// A generator from 32 bytes of entropy (what production drivers pass from the OS).
    pub fn from_entropy_bytes(seed: [u8; 32]) -> Self {
        Rng(ChaCha12Rng::from_seed(seed))
    }

    /// A child generator whose stream is independent of the parent's future output.
    pub fn fork(&mut self) -> Self {
        let mut seed = [0u8; 32];
        self.fill_bytes(&mut seed);
        Rng::from_entropy_bytes(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// The next 32 random bits.
    pub fn next_u32(&mut self) -> u32 {
        self.0.next_u32()
    }

    /// Fills `dest` with random bytes.
    pub fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.0.fill_bytes(dest);
    }

    /// 32 random bytes, e.g. an AES-256 key.
    pub fn bytes32(&mut self) -> [u8; 32] {
        let mut out = [0u8; 32];
        self.fill_bytes(&mut out);
        out
    }

    /// A uniform value in `0..=max` (inclusive), without modulo bias.
    pub fn below_inclusive(&mut self, max: u64) -> u64 {
        if max == u64::MAX {
            return self.next_u64();
        }
        let span = max + 1;
        // Reject the top partial bucket so every value is equally likely.
        let zone = u64::MAX - (u64::MAX % span) - 1;
        loop {
            let v = self.next_u64();
            if v <= zone {
                return v % span;
            }
        }
    }

    /// A uniform value in `lo..=hi`; `lo` if the range is empty.
    pub fn range_inclusive(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.below_inclusive(hi - lo)
    }

    /// `true` with probability `numerator / denominator` (false when the denominator is 0).
    pub fn chance(&mut self, numerator: u64, denominator: u64) -> bool {
        denominator != 0 && self.below_inclusive(denominator - 1) < numerator
    }

    /// A random lowercase hexadecimal identifier of `2 * bytes` characters.
    pub fn hex_id(&mut self, bytes: usize) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(bytes * 2);
        for _ in 0..bytes {
            let b = (self.next_u32() & 0xFF) as usize;
            out.push(HEX[b >> 4] as char);
            out.push(HEX[b & 0xF] as char);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream() {
        let mut a = Rng::from_seed(7);
        let mut b = Rng::from_seed(7);
        let xs: Vec<u64> = (0..16).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..16).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(Rng::from_seed(8).next_u64(), xs[0]);
    }

    #[test]
    fn ranges_stay_inside_bounds() {
        let mut r = Rng::from_seed(1);
        for _ in 0..10_000 {
            let v = r.range_inclusive(10, 20);
            assert!((10..=20).contains(&v));
        }
        assert_eq!(r.range_inclusive(5, 5), 5);
        assert_eq!(r.range_inclusive(9, 3), 9);
        assert!(!r.chance(1, 0));
        assert!(r.chance(1, 1));
    }

    #[test]
    fn hex_ids_have_the_requested_length() {
        let id = Rng::from_seed(3).hex_id(8);
        assert_eq!(id.len(), 16);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    }
}
