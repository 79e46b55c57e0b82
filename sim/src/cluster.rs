//! Multi-coordinator worlds: several coordinator hosts, each running the real service in
//! cluster mode, share one [`MemoryWorld`] (the in-process implementation of the same
//! lease/bus/seat store contract as Redis).
//!
//! Every host runs on turmoil's single thread, so one store shared by `Arc` is deterministic.
//! Its clock is the simulation's ([`SimClock`]), and every instance measures its leases and its
//! core on the same clock, as instances sharing a Redis do on theirs. Each store handle is a
//! [`RecordingStore`]: it records every lease granted and every fenced write, accepted or
//! refused, and every view an instance publishes, for the cluster checkers (a stale owner never
//! writes after a takeover; at most one owner per zone and one host per session at the end).
//! Each incarnation of a coordinator host is a new instance id (`coordinator-2.3`: host 2, third
//! start), as a restarted process is in production.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::FutureExt;
use ro_p2p_core::Rng;
use ro_p2p_core::wire::{PeerId, Zone};
use ro_p2p_tokio::cluster::{
    Acquired, Clock, ClusterStore, InstanceId, InstanceView, Lease, LeaseHolder, MemoryStore,
    MemoryWorld, SeatRecord, StoreConfig, StoreError, StoredSeat, Subscription, WorldView,
};
use ro_p2p_tokio::server::{ClusterConfig, ManualWallClock, Service};

use crate::address::{COORDINATOR_PORT, instance_id};
use crate::hosts::{SimListener, coordinator_config};
use crate::record::{Shared, StoreEvent, What};

/// Zone lease in the simulation, in ms (short, like every timer here: a dead owner's zones
/// move within a couple of seconds).
pub const LEASE_TTL_MS: u64 = 2_000;
/// How often instances publish their views and read the world's, in ms.
pub const VIEW_INTERVAL_MS: u64 = 500;

/// The store's and every instance's clock: turmoil's simulated time since the start, in ms
/// (outside a host, the last value read inside one, which the runner also sets).
#[derive(Debug, Default)]
pub struct SimClock {
    last_ms: AtomicU64,
}

impl SimClock {
    /// Moves the clock to at least `now_ms` (the runner, between steps).
    pub fn set(&self, now_ms: u64) {
        self.last_ms.fetch_max(now_ms, Ordering::SeqCst);
    }
}

impl Clock for SimClock {
    fn now_ms(&self) -> u64 {
        if let Some(d) = turmoil::sim_elapsed() {
            self.set(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        }
        self.last_ms.load(Ordering::SeqCst)
    }
}

type Log = Arc<Mutex<Vec<(u64, StoreEvent)>>>;

fn lock(log: &Log) -> MutexGuard<'_, Vec<(u64, StoreEvent)>> {
    log.lock().unwrap_or_else(|e| e.into_inner())
}

/// A [`MemoryStore`] handle that records what its instance did with leases, seats and views.
#[derive(Debug)]
pub struct RecordingStore {
    inner: MemoryStore,
    clock: Arc<SimClock>,
    log: Log,
}

impl RecordingStore {
    fn note(&self, event: StoreEvent) {
        lock(&self.log).push((self.clock.now_ms(), event));
    }

    fn wrote(&self, lease: &Lease, result: &Result<(), StoreError>) {
        let (zone, instance, epoch) =
            (lease.zone.to_string(), lease.owner.to_string(), lease.epoch);
        match result {
            Ok(()) => self.note(StoreEvent::Wrote { zone, instance, epoch }),
            Err(StoreError::Fenced { .. }) => {
                self.note(StoreEvent::Fenced { zone, instance, epoch })
            }
            Err(_) => {}
        }
    }
}

#[async_trait]
impl ClusterStore for RecordingStore {
    fn instance(&self) -> &InstanceId {
        self.inner.instance()
    }

    async fn acquire(&self, zone: &Zone, ttl_ms: u64) -> Result<Acquired, StoreError> {
        let result = self.inner.acquire(zone, ttl_ms).await;
        if let Ok(Acquired::Owned(lease)) = &result {
            self.note(StoreEvent::Granted {
                zone: zone.to_string(),
                instance: lease.owner.to_string(),
                epoch: lease.epoch,
            });
        }
        result
    }

    async fn renew(&self, lease: &Lease, ttl_ms: u64) -> Result<Lease, StoreError> {
        self.inner.renew(lease, ttl_ms).await
    }

    async fn release(&self, lease: &Lease) -> Result<bool, StoreError> {
        self.inner.release(lease).await
    }

    async fn owner(&self, zone: &Zone) -> Result<Option<LeaseHolder>, StoreError> {
        self.inner.owner(zone).await
    }

    async fn put_seat(
        &self,
        lease: &Lease,
        seat: &SeatRecord,
        grace_ms: Option<u64>,
    ) -> Result<(), StoreError> {
        let result = self.inner.put_seat(lease, seat, grace_ms).await;
        self.wrote(lease, &result);
        result
    }

    async fn remove_seat(&self, lease: &Lease, peer: &PeerId) -> Result<(), StoreError> {
        let result = self.inner.remove_seat(lease, peer).await;
        self.wrote(lease, &result);
        result
    }

    async fn seats(&self, zone: &Zone) -> Result<Vec<StoredSeat>, StoreError> {
        self.inner.seats(zone).await
    }

    async fn publish(&self, to: &InstanceId, payload: &[u8]) -> Result<usize, StoreError> {
        self.inner.publish(to, payload).await
    }

    async fn publish_to_owner(
        &self,
        zone: &Zone,
        owner: &InstanceId,
        payload: &[u8],
    ) -> Result<Option<usize>, StoreError> {
        self.inner.publish_to_owner(zone, owner, payload).await
    }

    async fn subscribe(&self) -> Result<Subscription, StoreError> {
        self.inner.subscribe().await
    }

    async fn publish_view(&self, view: &InstanceView, ttl_ms: u64) -> Result<(), StoreError> {
        let result = self.inner.publish_view(view, ttl_ms).await;
        if result.is_ok() {
            self.note(StoreEvent::View {
                instance: self.inner.instance().to_string(),
                view: view.clone(),
            });
        }
        result
    }

    async fn world(&self) -> Result<WorldView, StoreError> {
        self.inner.world().await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
}

/// The shared store of a multi-coordinator world, its clock and its log.
#[derive(Debug)]
pub struct Cluster {
    /// The store (fault injection: [`MemoryWorld::set_down`], [`MemoryWorld::partition`]).
    pub world: MemoryWorld,
    /// The clock of the store and of every instance.
    pub clock: Arc<SimClock>,
    log: Log,
    /// The runner's own handle, for looking up owners (never cut off).
    runner: MemoryStore,
}

impl Default for Cluster {
    fn default() -> Self {
        Self::new()
    }
}

impl Cluster {
    /// An empty store on the simulation's clock.
    pub fn new() -> Self {
        let clock = Arc::new(SimClock::default());
        let world = MemoryWorld::new(clock.clone(), StoreConfig::default());
        let runner = world.store(InstanceId::sanitized("runner"));
        Cluster { world, clock, log: Log::default(), runner }
    }

    /// The recording handle acting as `instance`.
    pub fn store(&self, instance: InstanceId) -> Arc<dyn ClusterStore> {
        Arc::new(RecordingStore {
            inner: self.world.store(instance),
            clock: self.clock.clone(),
            log: self.log.clone(),
        })
    }

    /// The instance holding `zone`'s lease now, if the store answers and anyone does.
    pub fn owner(&self, zone: &str) -> Option<InstanceId> {
        let zone = Zone::new(zone).ok()?;
        // The memory store never waits: its futures are ready at once.
        match self.runner.owner(&zone).now_or_never() {
            Some(Ok(Some(holder))) => Some(holder.owner),
            _ => None,
        }
    }

    /// Takes what the store recorded since the last call.
    pub fn drain(&self) -> Vec<(u64, StoreEvent)> {
        std::mem::take(&mut *lock(&self.log))
    }
}

/// Runs one incarnation of coordinator host `host` (number `k`, 1-based) in cluster mode on
/// the shared store.
pub async fn cluster_coordinator(
    recorder: Shared,
    seed: u64,
    host: String,
    k: u64,
    incarnation: Rc<Cell<u64>>,
    cluster: Rc<Cluster>,
) -> turmoil::Result {
    let n = incarnation.get() + 1;
    incarnation.set(n);
    recorder.borrow_mut().push(&host, What::Started { incarnation: n });
    let rng = Rng::from_seed(seed ^ 0xC00D_u64.wrapping_mul(n) ^ (k << 40));
    let store = cluster.store(instance_id(&host, n));
    let mut config = coordinator_config();
    config.cluster = Some(ClusterConfig {
        lease_ttl_ms: LEASE_TTL_MS,
        view_interval_ms: VIEW_INTERVAL_MS,
        clock: Some(cluster.clock.clone()),
        ..ClusterConfig::store(store)
    });
    let wall = Arc::new(ManualWallClock::new(1_800_000_000));
    let service = Service::start(config, rng, wall)?;
    let listener = turmoil::net::TcpListener::bind(("0.0.0.0", COORDINATOR_PORT)).await?;
    service.serve(SimListener(listener), std::future::pending(), Duration::from_secs(1)).await?;
    Ok(())
}
