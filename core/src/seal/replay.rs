//! The sliding replay window of RFC 6479: a ring of 64-bit blocks behind the highest counter
//! seen, so a counter is checked and marked in O(1) and a jump forward clears only the blocks
//! it passes.

/// Bits in the window; a counter more than this far behind the highest seen is too old.
/// (One block less is guaranteed; see [`ReplayWindow::check`].)
pub const REPLAY_WINDOW_BITS: u64 = 2048;
const BLOCKS: usize = (REPLAY_WINDOW_BITS / 64) as usize;

/// Why a counter was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Seen before.
    Replayed,
    /// Older than the window reaches.
    TooOld,
}

/// Which counters of one stream were accepted.
#[derive(Clone, Debug)]
pub(crate) struct ReplayWindow {
    /// Highest accepted counter, `None` before the first.
    highest: Option<u64>,
    bitmap: [u64; BLOCKS],
}

impl ReplayWindow {
    pub fn new() -> Self {
        ReplayWindow { highest: None, bitmap: [0; BLOCKS] }
    }

    /// Whether `counter` may be accepted; changes nothing (the tag is checked in between).
    ///
    /// A counter is too old when its block is a whole ring behind the highest one's, so
    /// counters up to `REPLAY_WINDOW_BITS - 64` behind the highest are always tracked.
    pub fn check(&self, counter: u64) -> Result<(), Refusal> {
        let Some(highest) = self.highest else { return Ok(()) };
        if counter > highest {
            return Ok(());
        }
        if highest / 64 - counter / 64 >= BLOCKS as u64 {
            return Err(Refusal::TooOld);
        }
        let (block, bit) = Self::slot(counter);
        if self.bitmap[block] & bit != 0 { Err(Refusal::Replayed) } else { Ok(()) }
    }

    /// Marks `counter` as accepted; call only after [`Self::check`] passed and the frame
    /// authenticated.
    pub fn accept(&mut self, counter: u64) {
        match self.highest {
            Some(highest) if counter <= highest => {}
            Some(highest) => {
                // Clear every block the window slides onto, at most the whole ring.
                let advance = (counter / 64 - highest / 64).min(BLOCKS as u64);
                for i in 1..=advance {
                    self.bitmap[((highest / 64 + i) % BLOCKS as u64) as usize] = 0;
                }
                self.highest = Some(counter);
            }
            None => self.highest = Some(counter),
        }
        let (block, bit) = Self::slot(counter);
        self.bitmap[block] |= bit;
    }

    fn slot(counter: u64) -> (usize, u64) {
        (((counter / 64) % BLOCKS as u64) as usize, 1u64 << (counter % 64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take(w: &mut ReplayWindow, c: u64) -> Result<(), Refusal> {
        w.check(c)?;
        w.accept(c);
        Ok(())
    }

    #[test]
    fn accepts_each_counter_once_in_any_order_inside_the_window() {
        let mut w = ReplayWindow::new();
        for c in [5, 3, 9, 0, 4, 1000, 999, 10] {
            assert_eq!(take(&mut w, c), Ok(()), "{c}");
        }
        for c in [5, 3, 9, 0, 4, 1000, 999, 10] {
            assert_eq!(take(&mut w, c), Err(Refusal::Replayed), "{c}");
        }
    }

    #[test]
    fn counters_far_behind_are_too_old_and_a_jump_clears_stale_bits() {
        let mut w = ReplayWindow::new();
        take(&mut w, 10).unwrap();
        take(&mut w, 10 + REPLAY_WINDOW_BITS * 3).unwrap();
        assert_eq!(w.check(10), Err(Refusal::TooOld));
        // A counter whose ring slot held an old accepted bit is fresh again after the jump.
        let fresh = 10 + REPLAY_WINDOW_BITS * 3 - 64;
        assert_eq!(take(&mut w, fresh), Ok(()));
        let edge = 10 + REPLAY_WINDOW_BITS * 3 - (REPLAY_WINDOW_BITS - 64);
        assert_eq!(take(&mut w, edge), Ok(()));
    }

    #[test]
    fn the_last_counter_does_not_overflow() {
        let mut w = ReplayWindow::new();
        take(&mut w, u64::MAX - 1).unwrap();
        take(&mut w, u64::MAX).unwrap();
        assert_eq!(w.check(u64::MAX), Err(Refusal::Replayed));
    }

    #[test]
    fn sliding_one_block_forgets_only_the_block_it_reuses() {
        let mut w = ReplayWindow::new();
        // Blocks 0..=20 full, then one counter in block 21: the ring reuses no block that
        // still holds a counter inside the window.
        for c in 0..21 * 64 {
            assert_eq!(take(&mut w, c), Ok(()));
        }
        assert_eq!(take(&mut w, 21 * 64), Ok(()));
        for c in [0, 100, 640, 21 * 64 - 1] {
            assert_eq!(w.check(c), Err(Refusal::Replayed), "{c}");
        }
        assert_eq!(w.check(21 * 64 + 1), Ok(()));
    }
}
