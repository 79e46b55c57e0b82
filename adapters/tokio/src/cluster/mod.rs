//! Scale-out: what several coordinator instances share to serve one world.
//!
//! The coordinator core knows nothing of other instances. This module is the adapter's view of
//! the shared store, as one trait, [`ClusterStore`], with two implementations: [`RedisStore`]
//! (production, the `redis` block of `config.yaml`) and [`MemoryStore`] (deterministic,
//! in-process, for tests and the simulation, with fault injection). What the store holds:
//!
//! - **Zone leases**: each zone's sessions are owned by one instance at a time. A lease is taken
//!   if absent (or expired), renewed by its owner, and carries a fencing epoch that increases on
//!   every takeover. Every write an owner makes is checked against its lease atomically, so a
//!   stale owner (paused, partitioned, presumed dead) cannot change anything once another
//!   instance has taken over: it gets [`StoreError::Fenced`].
//! - **A bus**: one channel per instance. Frames for a zone travel to its owner; the owner's
//!   outputs travel back to the instance that holds the connection. Delivery is at most once
//!   (pub/sub), messages are bounded in size.
//! - **Seat records** (peer, session, capabilities, host) per zone, written by the owner under its
//!   lease and read by the next owner, so clients resume their seats after a failover. The
//!   record of a disconnected player is written with its remaining grace as a TTL on the
//!   store's clock: the store forgets it when the grace ends, and a read returns what is left,
//!   so the next owner restores the seat with no more grace than it had.
//! - **Instance views** (sessions and counters) published by every instance with an expiry and
//!   merged on read into a [`WorldView`] for discovery, the REST API and metrics.
//!
//! On top of the store, every decision of cluster mode is the core's sans-IO
//! [`ro_p2p_core::cluster::Instance`] (leases, routing between instances, seat records,
//! retries, the join replay); [`executor`] is its executor: it feeds the instance events and time
//! and runs the store operations it asks for (the service's cluster hub,
//! `server::cluster_hub`, drives it). What the bus carries ([`Envelope`]) and the seat records
//! ([`SeatRecord`]) are the core's types.
//!
//! Time: every store takes a [`Clock`] in milliseconds; lease deadlines it reports are measured
//! on it, conservatively (from before the request was sent).

pub mod executor;
mod memory;
mod redis_store;
mod types;

pub use self::executor::{ClusterExecutor, ExecutorOutput};
pub use self::memory::{MemoryStore, MemoryWorld};
pub use self::redis_store::RedisStore;
pub use self::types::{
    Acquired, BusMessage, Clock, InstanceId, InstanceIdError, InstanceView, Lease, LeaseHolder,
    ManualClock, SeatRecord, SessionSummary, StoreConfig, StoreError, StoredSeat, Subscription,
    TokioClock, WorldView,
};
pub use ro_p2p_core::cluster::{Envelope, EnvelopeError};

use async_trait::async_trait;
use ro_p2p_core::wire::{PeerId, Zone};

/// The shared store as one coordinator instance sees it: leases, bus, seats, views.
///
/// A handle acts as one instance ([`ClusterStore::instance`]). Every method is one round trip
/// (or none, for [`MemoryStore`]); none retries. Errors are typed: [`StoreError::Unavailable`]
/// means "try again later", [`StoreError::Fenced`] means "you are no longer the owner, stop".
#[async_trait]
pub trait ClusterStore: Send + Sync + std::fmt::Debug {
    /// The instance this handle acts as.
    fn instance(&self) -> &InstanceId;

    /// Takes `zone`'s lease for `ttl_ms` if it is free or expired (with a new, higher epoch),
    /// extends it if this instance already holds it (same epoch), or reports who holds it.
    async fn acquire(&self, zone: &Zone, ttl_ms: u64) -> Result<Acquired, StoreError>;

    /// Extends `lease` by `ttl_ms` from now; [`StoreError::Fenced`] if it is no longer held.
    async fn renew(&self, lease: &Lease, ttl_ms: u64) -> Result<Lease, StoreError>;

    /// Gives `lease` up. Returns whether it was still held (a lost lease is not an error here).
    async fn release(&self, lease: &Lease) -> Result<bool, StoreError>;

    /// Who holds `zone`'s lease now, if anyone.
    async fn owner(&self, zone: &Zone) -> Result<Option<LeaseHolder>, StoreError>;

    /// Writes `seat` into the lease's zone, if `lease` is still held (fenced write). With
    /// `grace_ms` (the seat of a disconnected player), the record lives only that long unless
    /// rewritten, measured on the store's own clock (`Some(0)` removes it); without, until it
    /// is rewritten or removed (or the zone's records expire, [`StoreConfig::seat_ttl_ms`]).
    async fn put_seat(
        &self,
        lease: &Lease,
        seat: &SeatRecord,
        grace_ms: Option<u64>,
    ) -> Result<(), StoreError>;

    /// Removes `peer`'s seat from the lease's zone, if `lease` is still held (fenced write).
    async fn remove_seat(&self, lease: &Lease, peer: &PeerId) -> Result<(), StoreError>;

    /// Every live seat record of `zone`, by peer id, each with what is left of the grace it
    /// was written with (its remaining TTL), if any.
    async fn seats(&self, zone: &Zone) -> Result<Vec<StoredSeat>, StoreError>;

    /// Sends `payload` to instance `to`'s channel. Returns how many subscribers received it
    /// (0: nobody listens, the message is lost).
    async fn publish(&self, to: &InstanceId, payload: &[u8]) -> Result<usize, StoreError>;

    /// Sends `payload` to `owner`'s channel if `owner` holds `zone`'s lease, in one atomic
    /// step (one round trip): a frame never reaches an instance that has just lost the zone.
    /// Returns how many of its subscriptions received it (0: the owner is gone and its lease
    /// not expired yet), or `None` when `owner` does not hold the lease (nobody, or another).
    async fn publish_to_owner(
        &self,
        zone: &Zone,
        owner: &InstanceId,
        payload: &[u8],
    ) -> Result<Option<usize>, StoreError>;

    /// Subscribes to this instance's own channel. The subscription follows the store through
    /// outages (messages published meanwhile are lost) until it is dropped.
    async fn subscribe(&self) -> Result<Subscription, StoreError>;

    /// Publishes this instance's view, valid for `ttl_ms` unless published again.
    async fn publish_view(&self, view: &InstanceView, ttl_ms: u64) -> Result<(), StoreError>;

    /// The live views of every instance, merged.
    async fn world(&self) -> Result<WorldView, StoreError>;

    /// Whether the store answers (health checks).
    async fn ping(&self) -> Result<(), StoreError>;
}
