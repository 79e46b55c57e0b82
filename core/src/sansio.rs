//! The one shape every state machine of the core has (after quinn-proto and str0m).
//!
//! A driver owns the machine and calls, in this order:
//! 1. [`SansIo::handle_input`] for each event from the world (bytes, connections, link events), or
//!    [`SansIo::handle_timeout`] when the deadline from [`SansIo::poll_timeout`] has passed;
//! 2. [`SansIo::poll_output`] until it returns `None`, executing each output in order;
//! 3. sleeps until [`SansIo::poll_timeout`] or the next input, whichever comes first.
//!
//! Nothing in the core reads a clock, a socket or a global random generator: time comes in as
//! [`Instant`](crate::Instant), randomness from a seeded [`Rng`](crate::Rng).

use crate::time::Instant;

/// A sans-IO state machine: inputs and time in, outputs and a wake-up time out.
pub trait SansIo {
    /// What the driver feeds in.
    type Input;
    /// What the driver must do, in order.
    type Output;

    /// Feeds one input observed at `now`.
    fn handle_input(&mut self, now: Instant, input: Self::Input);
    /// Advances timers; called when `now` has reached [`SansIo::poll_timeout`].
    fn handle_timeout(&mut self, now: Instant);
    /// The next thing the driver must do, if any.
    fn poll_output(&mut self) -> Option<Self::Output>;
    /// When [`SansIo::handle_timeout`] must be called next, if ever.
    fn poll_timeout(&self) -> Option<Instant>;

    /// Drains every pending output into a vector (for tests and simple drivers).
    fn drain_outputs(&mut self) -> Vec<Self::Output> {
        let mut out = Vec::new();
        while let Some(o) = self.poll_output() {
            out.push(o);
        }
        out
    }
}

/// A table of timers, one optional deadline per kind, as in quinn-proto's `TimerTable`.
///
/// `K` is a small `Copy` enum that indexes the table through [`TimerKind::index`].
#[derive(Clone, Debug)]
pub struct TimerTable<K: TimerKind> {
    deadlines: Vec<Option<Instant>>,
    _kind: core::marker::PhantomData<K>,
}

/// An enum of timer kinds usable as an index into a [`TimerTable`].
pub trait TimerKind: Copy {
    /// How many kinds there are.
    const COUNT: usize;
    /// This kind's index in `0..COUNT`.
    fn index(self) -> usize;
    /// The kind at `index` (inverse of [`TimerKind::index`]).
    fn from_index(index: usize) -> Self;
}

impl<K: TimerKind> Default for TimerTable<K> {
    fn default() -> Self {
        TimerTable { deadlines: vec![None; K::COUNT], _kind: core::marker::PhantomData }
    }
}

impl<K: TimerKind> TimerTable<K> {
    /// Arms (or re-arms) `kind` for `at`.
    pub fn set(&mut self, kind: K, at: Instant) {
        if let Some(slot) = self.deadlines.get_mut(kind.index()) {
            *slot = Some(at);
        }
    }

    /// Disarms `kind`.
    pub fn stop(&mut self, kind: K) {
        if let Some(slot) = self.deadlines.get_mut(kind.index()) {
            *slot = None;
        }
    }

    /// The deadline of `kind`, if armed.
    pub fn get(&self, kind: K) -> Option<Instant> {
        self.deadlines.get(kind.index()).copied().flatten()
    }

    /// The earliest armed deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }

    /// Disarms and returns every kind whose deadline is at or before `now`, in index order.
    pub fn expire(&mut self, now: Instant) -> Vec<K> {
        let mut fired = Vec::new();
        for (i, slot) in self.deadlines.iter_mut().enumerate() {
            if slot.is_some_and(|at| at <= now) {
                *slot = None;
                fired.push(K::from_index(i));
            }
        }
        fired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, Debug, PartialEq)]
    enum T {
        A,
        B,
    }
    impl TimerKind for T {
        const COUNT: usize = 2;
        fn index(self) -> usize {
            self as usize
        }
        fn from_index(i: usize) -> Self {
            if i == 0 { T::A } else { T::B }
        }
    }

    #[test]
    fn timer_table_reports_minimum_and_expires_in_order() {
        let mut t = TimerTable::<T>::default();
        assert_eq!(t.next_deadline(), None);
        t.set(T::B, Instant::from_millis(5));
        t.set(T::A, Instant::from_millis(9));
        assert_eq!(t.next_deadline(), Some(Instant::from_millis(5)));
        assert_eq!(t.expire(Instant::from_millis(4)), vec![]);
        assert_eq!(t.expire(Instant::from_millis(9)), vec![T::A, T::B]);
        assert_eq!(t.next_deadline(), None);
        t.set(T::A, Instant::from_millis(1));
        t.stop(T::A);
        assert_eq!(t.get(T::A), None);
    }
}
