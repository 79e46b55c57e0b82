//! The in-process cluster store: deterministic, with injectable time and fault injection.
//!
//! A [`MemoryWorld`] is the shared store; [`MemoryWorld::store`] gives each instance its handle.
//! It follows the same contract as [`RedisStore`](super::RedisStore) (the contract tests run
//! against both), so the simulation can run several coordinators without Redis. Time is the
//! injected [`Clock`]; nothing here reads the system clock or iterates a hash map. Faults:
//! [`MemoryWorld::set_down`] (every operation fails, messages are lost, data is kept, as a
//! Redis restart with persistence), [`MemoryWorld::partition`] (one instance cannot reach the
//! store and misses its messages), [`MemoryWorld::wipe`] (the store lost its data).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use ro_p2p_core::wire::{PeerId, Zone};
use tokio::sync::mpsc;

use super::ClusterStore;
use super::types::{
    Acquired, BusMessage, Clock, InstanceId, InstanceView, Lease, LeaseHolder, SeatRecord,
    StoreConfig, StoreError, StoredSeat, Subscription, WorldView,
};

#[derive(Debug)]
struct Held {
    owner: InstanceId,
    epoch: u64,
    expires_at_ms: u64,
}

#[derive(Debug)]
struct Subscriber {
    tx: mpsc::Sender<BusMessage>,
    dropped: Arc<AtomicU64>,
}

/// A zone's seats: each record with the end of its grace on the store's clock, if written with
/// one, and when the zone's records expire together.
type ZoneSeats = (BTreeMap<PeerId, (SeatRecord, Option<u64>)>, u64);

#[derive(Debug, Default)]
struct Contents {
    leases: BTreeMap<Zone, Held>,
    epochs: BTreeMap<Zone, u64>,
    seats: BTreeMap<Zone, ZoneSeats>,
    views: BTreeMap<InstanceId, (InstanceView, u64)>,
    subscribers: BTreeMap<InstanceId, Vec<Subscriber>>,
    down: bool,
    partitioned: BTreeSet<InstanceId>,
}

impl Contents {
    /// Forgets what has expired by `now_ms`, as Redis would on access.
    fn expire(&mut self, now_ms: u64) {
        self.leases.retain(|_, h| h.expires_at_ms > now_ms);
        self.seats.retain(|_, (records, exp)| {
            records.retain(|_, (_, grace_until)| grace_until.is_none_or(|t| t > now_ms));
            *exp > now_ms && !records.is_empty()
        });
        self.views.retain(|_, (_, exp)| *exp > now_ms);
    }

    fn holder(&self, zone: &Zone, now_ms: u64) -> Option<LeaseHolder> {
        self.leases.get(zone).map(|h| LeaseHolder {
            owner: h.owner.clone(),
            epoch: h.epoch,
            remaining_ms: h.expires_at_ms.saturating_sub(now_ms),
        })
    }

    fn check(&self, lease: &Lease) -> Result<(), StoreError> {
        match self.leases.get(&lease.zone) {
            Some(h) if h.owner == lease.owner && h.epoch == lease.epoch => Ok(()),
            other => Err(StoreError::Fenced {
                zone: lease.zone.clone(),
                epoch: lease.epoch,
                holder: other.map(|h| format!("{}:{}", h.owner, h.epoch)),
            }),
        }
    }

    fn deliver(&mut self, to: &InstanceId, msg: &BusMessage) -> usize {
        if self.partitioned.contains(to) {
            return 0;
        }
        let Some(subs) = self.subscribers.get_mut(to) else { return 0 };
        subs.retain(|s| !s.tx.is_closed());
        for s in subs.iter() {
            if s.tx.try_send(msg.clone()).is_err() {
                s.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        subs.len()
    }
}

/// The shared in-process store several [`MemoryStore`] handles talk to.
#[derive(Clone, Debug)]
pub struct MemoryWorld {
    state: Arc<Mutex<Contents>>,
    clock: Arc<dyn Clock>,
    config: StoreConfig,
}

impl MemoryWorld {
    /// An empty store on `clock` with `config`'s limits.
    pub fn new(clock: Arc<dyn Clock>, config: StoreConfig) -> Self {
        MemoryWorld { state: Arc::default(), clock, config }
    }

    /// A handle acting as `instance`.
    pub fn store(&self, instance: InstanceId) -> MemoryStore {
        MemoryStore { world: self.clone(), instance }
    }

    /// Takes the whole store down (`true`) or brings it back (`false`). Data is kept.
    pub fn set_down(&self, down: bool) {
        self.lock().down = down;
    }

    /// Cuts `instance` off the store (`true`) or reconnects it (`false`).
    pub fn partition(&self, instance: &InstanceId, cut: bool) {
        let mut s = self.lock();
        if cut {
            s.partitioned.insert(instance.clone());
        } else {
            s.partitioned.remove(instance);
        }
    }

    /// Forgets every lease, epoch, seat and view (a store restarted without persistence).
    /// Subscriptions survive, as they would reconnect.
    pub fn wipe(&self) {
        let mut s = self.lock();
        s.leases.clear();
        s.epochs.clear();
        s.seats.clear();
        s.views.clear();
    }

    fn lock(&self) -> MutexGuard<'_, Contents> {
        // A panic elsewhere while holding the lock leaves consistent maps (each operation
        // finishes its writes before it can fail), so the poison is ignored.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One instance's handle on a [`MemoryWorld`].
#[derive(Clone, Debug)]
pub struct MemoryStore {
    world: MemoryWorld,
    instance: InstanceId,
}

impl MemoryStore {
    /// Locks the state for this instance: fails if the store is down or this instance is cut
    /// off; expires what is due.
    fn reach(&self) -> Result<(MutexGuard<'_, Contents>, u64), StoreError> {
        let mut s = self.world.lock();
        if s.down {
            return Err(StoreError::Unavailable { reason: "store is down".to_owned() });
        }
        if s.partitioned.contains(&self.instance) {
            return Err(StoreError::Unavailable {
                reason: format!("{} is partitioned from the store", self.instance),
            });
        }
        let now_ms = self.world.clock.now_ms();
        s.expire(now_ms);
        Ok((s, now_ms))
    }

    fn ours(&self, lease: &Lease) -> Result<(), StoreError> {
        if lease.owner != self.instance {
            return Err(StoreError::NotOurLease {
                owner: lease.owner.clone(),
                instance: self.instance.clone(),
            });
        }
        Ok(())
    }

    fn bounded(&self, payload: &[u8]) -> Result<BusMessage, StoreError> {
        let max = self.world.config.bus_payload_bytes_max;
        if payload.len() > max {
            return Err(StoreError::MessageTooLarge { len: payload.len(), max });
        }
        Ok(BusMessage { from: self.instance.clone(), payload: payload.to_vec() })
    }
}

#[async_trait]
impl ClusterStore for MemoryStore {
    fn instance(&self) -> &InstanceId {
        &self.instance
    }

    async fn acquire(&self, zone: &Zone, ttl_ms: u64) -> Result<Acquired, StoreError> {
        let (mut s, now_ms) = self.reach()?;
        let expires_at_ms = now_ms.saturating_add(ttl_ms);
        if let Some(holder) = s.holder(zone, now_ms)
            && holder.owner != self.instance
        {
            return Ok(Acquired::HeldBy(holder));
        }
        if let Some(h) = s.leases.get_mut(zone) {
            h.expires_at_ms = expires_at_ms;
            let epoch = h.epoch;
            return Ok(Acquired::Owned(Lease {
                zone: zone.clone(),
                owner: self.instance.clone(),
                epoch,
                expires_at_ms,
            }));
        }
        // Epochs start from the clock, so they keep increasing even after a wipe.
        let epoch = s.epochs.get(zone).copied().unwrap_or(now_ms).saturating_add(1);
        s.epochs.insert(zone.clone(), epoch);
        s.leases.insert(zone.clone(), Held { owner: self.instance.clone(), epoch, expires_at_ms });
        Ok(Acquired::Owned(Lease {
            zone: zone.clone(),
            owner: self.instance.clone(),
            epoch,
            expires_at_ms,
        }))
    }

    async fn renew(&self, lease: &Lease, ttl_ms: u64) -> Result<Lease, StoreError> {
        self.ours(lease)?;
        let (mut s, now_ms) = self.reach()?;
        s.check(lease)?;
        let expires_at_ms = now_ms.saturating_add(ttl_ms);
        if let Some(h) = s.leases.get_mut(&lease.zone) {
            h.expires_at_ms = expires_at_ms;
        }
        Ok(Lease { expires_at_ms, ..lease.clone() })
    }

    async fn release(&self, lease: &Lease) -> Result<bool, StoreError> {
        self.ours(lease)?;
        let (mut s, _) = self.reach()?;
        if s.check(lease).is_err() {
            return Ok(false);
        }
        s.leases.remove(&lease.zone);
        Ok(true)
    }

    async fn owner(&self, zone: &Zone) -> Result<Option<LeaseHolder>, StoreError> {
        let (s, now_ms) = self.reach()?;
        Ok(s.holder(zone, now_ms))
    }

    async fn put_seat(
        &self,
        lease: &Lease,
        seat: &SeatRecord,
        grace_ms: Option<u64>,
    ) -> Result<(), StoreError> {
        self.ours(lease)?;
        if seat.zone != lease.zone {
            return Err(StoreError::WrongZone {
                lease: lease.zone.clone(),
                seat: seat.zone.clone(),
            });
        }
        if grace_ms == Some(0) {
            return self.remove_seat(lease, &seat.peer_id).await;
        }
        let (mut s, now_ms) = self.reach()?;
        s.check(lease)?;
        let ttl = self.world.config.seat_ttl_ms.max(grace_ms.unwrap_or(0));
        let grace_until = grace_ms.map(|g| now_ms.saturating_add(g));
        let entry = s.seats.entry(lease.zone.clone()).or_default();
        entry.0.insert(seat.peer_id.clone(), (seat.clone(), grace_until));
        entry.1 = now_ms.saturating_add(ttl);
        Ok(())
    }

    async fn remove_seat(&self, lease: &Lease, peer: &PeerId) -> Result<(), StoreError> {
        self.ours(lease)?;
        let (mut s, now_ms) = self.reach()?;
        s.check(lease)?;
        let ttl = self.world.config.seat_ttl_ms;
        if let Some(entry) = s.seats.get_mut(&lease.zone) {
            entry.0.remove(peer);
            entry.1 = now_ms.saturating_add(ttl);
            if entry.0.is_empty() {
                s.seats.remove(&lease.zone);
            }
        }
        Ok(())
    }

    async fn seats(&self, zone: &Zone) -> Result<Vec<StoredSeat>, StoreError> {
        let (s, now_ms) = self.reach()?;
        let Some((records, _)) = s.seats.get(zone) else { return Ok(Vec::new()) };
        Ok(records
            .values()
            .map(|(record, grace_until)| StoredSeat {
                record: record.clone(),
                grace_left_ms: grace_until.map(|t| t.saturating_sub(now_ms)),
            })
            .collect())
    }

    async fn publish(&self, to: &InstanceId, payload: &[u8]) -> Result<usize, StoreError> {
        let msg = self.bounded(payload)?;
        let (mut s, _) = self.reach()?;
        Ok(s.deliver(to, &msg))
    }

    async fn publish_to_owner(
        &self,
        zone: &Zone,
        owner: &InstanceId,
        payload: &[u8],
    ) -> Result<Option<usize>, StoreError> {
        let msg = self.bounded(payload)?;
        let (mut s, _) = self.reach()?;
        if s.leases.get(zone).is_none_or(|h| &h.owner != owner) {
            return Ok(None);
        }
        Ok(Some(s.deliver(owner, &msg)))
    }

    async fn subscribe(&self) -> Result<Subscription, StoreError> {
        let (mut s, _) = self.reach()?;
        let (tx, rx) = mpsc::channel(self.world.config.bus_queue_len.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        s.subscribers
            .entry(self.instance.clone())
            .or_default()
            .push(Subscriber { tx, dropped: Arc::clone(&dropped) });
        Ok(Subscription { rx, dropped, task: None })
    }

    async fn publish_view(&self, view: &InstanceView, ttl_ms: u64) -> Result<(), StoreError> {
        let (mut s, now_ms) = self.reach()?;
        s.views.insert(self.instance.clone(), (view.clone(), now_ms.saturating_add(ttl_ms)));
        Ok(())
    }

    async fn world(&self) -> Result<WorldView, StoreError> {
        let (s, _) = self.reach()?;
        let instances = s.views.iter().map(|(id, (v, _))| (id.clone(), v.clone())).collect();
        Ok(WorldView { instances })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.reach().map(|_| ())
    }
}
