//! A keyed deadline queue: the coordinator's timers.
//!
//! [`crate::sansio::TimerTable`] holds one deadline per fixed timer kind; the coordinator has
//! timers per connection (idle), per seat (grace) and per session (key rotation), so it keeps
//! the same idea (one optional deadline per key, the wake-up is the minimum) in a sorted set.
//! Ordering is by `(deadline, key)`, so timers that fire together fire in a stable order.

use std::collections::{BTreeMap, BTreeSet};

use crate::time::Instant;

/// One optional deadline per key; [`Deadlines::next`] is the earliest.
#[derive(Clone, Debug)]
pub(crate) struct Deadlines<K: Ord + Clone> {
    by_key: BTreeMap<K, Instant>,
    queue: BTreeSet<(Instant, K)>,
}

impl<K: Ord + Clone> Default for Deadlines<K> {
    fn default() -> Self {
        Deadlines { by_key: BTreeMap::new(), queue: BTreeSet::new() }
    }
}

impl<K: Ord + Clone> Deadlines<K> {
    /// Arms (or re-arms) `key` for `at`.
    pub(crate) fn set(&mut self, key: K, at: Instant) {
        if let Some(old) = self.by_key.insert(key.clone(), at) {
            self.queue.remove(&(old, key.clone()));
        }
        self.queue.insert((at, key));
    }

    /// Disarms `key`.
    pub(crate) fn stop(&mut self, key: &K) {
        if let Some(old) = self.by_key.remove(key) {
            self.queue.remove(&(old, key.clone()));
        }
    }

    /// The deadline of `key`, if armed.
    pub(crate) fn get(&self, key: &K) -> Option<Instant> {
        self.by_key.get(key).copied()
    }

    /// The earliest deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.queue.first().map(|(at, _)| *at)
    }

    /// Disarms and returns the earliest key due at or before `now`, if any.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<K> {
        let (at, _) = self.queue.first()?;
        if *at > now {
            return None;
        }
        let (_, key) = self.queue.pop_first()?;
        self.by_key.remove(&key);
        Some(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rearming_replaces_the_old_deadline_and_due_keys_pop_in_order() {
        let mut d = Deadlines::<u32>::default();
        d.set(1, Instant::from_millis(50));
        d.set(2, Instant::from_millis(10));
        d.set(1, Instant::from_millis(5));
        assert_eq!(d.next(), Some(Instant::from_millis(5)));
        assert_eq!(d.get(&1), Some(Instant::from_millis(5)));
        assert_eq!(d.pop_due(Instant::from_millis(4)), None);
        assert_eq!(d.pop_due(Instant::from_millis(10)), Some(1));
        assert_eq!(d.pop_due(Instant::from_millis(10)), Some(2));
        assert_eq!(d.pop_due(Instant::from_millis(100)), None);
        d.set(3, Instant::from_millis(1));
        d.stop(&3);
        assert_eq!(d.next(), None);
    }
}
