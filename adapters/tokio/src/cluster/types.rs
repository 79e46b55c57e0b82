//! The values the cluster store speaks in: instance ids, leases, seats, views, bus messages,
//! errors, the clock and the limits.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ro_p2p_core::coordinator::SessionView;
use ro_p2p_core::wire::{PeerId, SessionId, Zone};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

pub use ro_p2p_core::cluster::{
    INSTANCE_ID_BYTES_MAX, InstanceId, InstanceIdError, SeatRecord, StoredSeat,
};

/// Who holds a zone's lease, as anyone may read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseHolder {
    /// The owning instance.
    pub owner: InstanceId,
    /// Its fencing epoch.
    pub epoch: u64,
    /// How long the lease still runs unless renewed, in ms.
    pub remaining_ms: u64,
}

/// A zone lease this instance holds: the proof it shows with every fenced write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The zone.
    pub zone: Zone,
    /// This instance.
    pub owner: InstanceId,
    /// The fencing epoch: higher than every earlier holder's.
    pub epoch: u64,
    /// On the store's [`Clock`], when the lease ends at the latest unless renewed (measured from
    /// before the request was sent, so the store's own deadline is never earlier).
    pub expires_at_ms: u64,
}

impl Lease {
    /// The text stored as the lease's value: `owner:epoch`.
    pub(crate) fn token(&self) -> String {
        format!("{}:{}", self.owner, self.epoch)
    }
}

/// The outcome of [`ClusterStore::acquire`](super::ClusterStore::acquire).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Acquired {
    /// This instance holds the lease now.
    Owned(Lease),
    /// Another instance holds it.
    HeldBy(LeaseHolder),
}

/// A session as an instance publishes it in its view: the core's `SessionView`, its creation
/// time on the owner's own monotonic clock (comparable only among the owner's sessions).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSummary {
    /// Its id.
    pub session_id: SessionId,
    /// Its zone.
    pub zone: Zone,
    /// Seated members in join order.
    pub members: Vec<PeerId>,
    /// Members with a live connection.
    pub connected: Vec<PeerId>,
    /// The elected host.
    pub host: Option<PeerId>,
    /// Seat limit.
    pub max_players: usize,
    /// Key epoch.
    pub key_epoch: u32,
    /// When the owner opened it, on the owner's clock (absent in views of older versions): it
    /// orders the sessions of one zone, which all have the same owner, for placement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at_ms: Option<u64>,
}

impl From<&SessionView> for SessionSummary {
    fn from(v: &SessionView) -> Self {
        SessionSummary {
            session_id: v.session_id.clone(),
            zone: v.zone.clone(),
            members: v.members.clone(),
            connected: v.connected.clone(),
            host: v.host.clone(),
            max_players: v.max_players,
            key_epoch: v.key_epoch,
            created_at_ms: Some(v.created_at.as_millis()),
        }
    }
}

/// What one instance publishes about itself.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceView {
    /// The zones it owns, with the lease epoch it holds them under.
    pub zones: BTreeMap<Zone, u64>,
    /// The sessions of those zones.
    pub sessions: Vec<SessionSummary>,
    /// Open signaling connections on this instance.
    pub connections: u64,
    /// Counters to add up world-wide (relays, joins, rejects by name, ...).
    pub counters: BTreeMap<String, u64>,
}

/// The merged views of every live instance.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorldView {
    /// Each live instance's view.
    pub instances: BTreeMap<InstanceId, InstanceView>,
}

impl WorldView {
    /// Every session once, by id. A zone claimed by two views (during a takeover, before the
    /// old owner's view expires) counts for the one with the higher lease epoch.
    pub fn sessions(&self) -> Vec<SessionSummary> {
        let mut best: BTreeMap<&Zone, (u64, &InstanceId)> = BTreeMap::new();
        for (id, view) in &self.instances {
            for (zone, epoch) in &view.zones {
                let entry = best.entry(zone).or_insert((*epoch, id));
                if *epoch > entry.0 {
                    *entry = (*epoch, id);
                }
            }
        }
        let mut out: BTreeMap<&SessionId, &SessionSummary> = BTreeMap::new();
        for (id, view) in &self.instances {
            for s in &view.sessions {
                let current = best.get(&s.zone).is_none_or(|(_, owner)| *owner == id);
                if current {
                    out.insert(&s.session_id, s);
                }
            }
        }
        out.into_values().cloned().collect()
    }

    /// One session by id.
    pub fn session(&self, id: &SessionId) -> Option<SessionSummary> {
        self.sessions().into_iter().find(|s| &s.session_id == id)
    }

    /// The sessions of one zone.
    pub fn discover(&self, zone: &Zone) -> Vec<SessionSummary> {
        self.sessions().into_iter().filter(|s| &s.zone == zone).collect()
    }

    /// Signaling connections over every instance.
    pub fn connections(&self) -> u64 {
        self.instances.values().map(|v| v.connections).sum()
    }

    /// Each counter summed over every instance.
    pub fn counters(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for view in self.instances.values() {
            for (name, n) in &view.counters {
                *out.entry(name.clone()).or_insert(0u64) += n;
            }
        }
        out
    }
}

/// One message off the bus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusMessage {
    /// The instance that published it.
    pub from: InstanceId,
    /// Its payload (the adapter's envelope; opaque here).
    pub payload: Vec<u8>,
}

impl BusMessage {
    /// The bytes on the channel: the sender's id, a newline, the payload.
    pub(crate) fn encode(from: &InstanceId, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(from.as_str().len() + 1 + payload.len());
        out.extend_from_slice(from.as_str().as_bytes());
        out.push(b'\n');
        out.extend_from_slice(payload);
        out
    }

    /// Reads what [`BusMessage::encode`] wrote; `None` for anything else or anything over
    /// `payload_bytes_max`.
    pub(crate) fn decode(bytes: &[u8], payload_bytes_max: usize) -> Option<BusMessage> {
        let nl = bytes.iter().take(INSTANCE_ID_BYTES_MAX + 1).position(|b| *b == b'\n')?;
        let from = std::str::from_utf8(&bytes[..nl]).ok()?;
        let from = InstanceId::new(from).ok()?;
        let payload = &bytes[nl + 1..];
        if payload.len() > payload_bytes_max {
            return None;
        }
        Some(BusMessage { from, payload: payload.to_vec() })
    }
}

/// The receiving end of an instance's bus channel.
///
/// Messages arrive in the order the store delivered them. When the local queue is full, or a
/// message cannot be read, it is dropped and counted ([`Subscription::dropped`]): the store is
/// never held up by a slow instance. Dropping the subscription ends it.
#[derive(Debug)]
pub struct Subscription {
    pub(crate) rx: mpsc::Receiver<BusMessage>,
    pub(crate) dropped: Arc<AtomicU64>,
    pub(crate) task: Option<tokio::task::AbortHandle>,
}

impl Subscription {
    /// The next message; `None` once the subscription has ended.
    pub async fn recv(&mut self) -> Option<BusMessage> {
        self.rx.recv().await
    }

    /// A message if one is waiting.
    pub fn try_recv(&mut self) -> Option<BusMessage> {
        self.rx.try_recv().ok()
    }

    /// Whether no message is waiting.
    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    /// Messages dropped so far (queue full, unreadable or oversized).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Why a store operation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store cannot be reached (down, partitioned, timed out). Try again later.
    #[error("cluster store unavailable: {reason}")]
    Unavailable {
        /// What failed.
        reason: String,
    },
    /// The lease shown is no longer held: another instance took the zone over (or it expired).
    /// The write was not made.
    #[error("zone {zone}: lease epoch {epoch} is stale (now held by {holder:?})")]
    Fenced {
        /// The zone.
        zone: Zone,
        /// The stale epoch.
        epoch: u64,
        /// The current holder as `owner:epoch`, if any.
        holder: Option<String>,
    },
    /// A bus payload over the configured bound.
    #[error("bus message of {len} bytes exceeds the limit of {max}")]
    MessageTooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A seat record for another zone than the lease's.
    #[error("seat of zone {seat} written under the lease of zone {lease}")]
    WrongZone {
        /// The lease's zone.
        lease: Zone,
        /// The seat's zone.
        seat: Zone,
    },
    /// A lease shown by another instance than this handle's.
    #[error("lease of {owner} shown by {instance}")]
    NotOurLease {
        /// The lease's owner.
        owner: InstanceId,
        /// This handle's instance.
        instance: InstanceId,
    },
    /// The store answered with an error (authentication, wrong type, out of memory, ...).
    #[error("cluster store refused the command: {reason}")]
    Rejected {
        /// Its message.
        reason: String,
    },
    /// The store holds a value this version cannot read.
    #[error("unreadable value at {key}: {reason}")]
    Corrupt {
        /// Where.
        key: String,
        /// Why.
        reason: String,
    },
    /// The Redis settings cannot be used (bad URL, ...).
    #[error("bad cluster store settings: {reason}")]
    BadSettings {
        /// Why.
        reason: String,
    },
}

/// Milliseconds on a monotonic clock, for lease deadlines and the in-memory store's expiry.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Now, in ms since the clock's own epoch.
    fn now_ms(&self) -> u64;
}

/// `tokio::time::Instant` since creation: real time in production, simulated under turmoil.
#[derive(Debug)]
pub struct TokioClock {
    start: tokio::time::Instant,
}

impl TokioClock {
    /// A clock whose 0 is now.
    pub fn new() -> Self {
        TokioClock { start: tokio::time::Instant::now() }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// A clock that moves only when told to (tests, simulation).
#[derive(Debug, Default)]
pub struct ManualClock {
    now_ms: AtomicU64,
}

impl ManualClock {
    /// A clock at `now_ms`.
    pub fn at(now_ms: u64) -> Self {
        ManualClock { now_ms: AtomicU64::new(now_ms) }
    }

    /// Moves it forward by `ms`.
    pub fn advance(&self, ms: u64) {
        self.now_ms.fetch_add(ms, Ordering::SeqCst);
    }

    /// Sets it to `now_ms` (never backwards).
    pub fn set(&self, now_ms: u64) {
        self.now_ms.fetch_max(now_ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now_ms.load(Ordering::SeqCst)
    }
}

/// Limits and lifetimes of a store handle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreConfig {
    /// Prefix of every key and channel (`redis.key_prefix`), e.g. `ro-p2p:`.
    pub key_prefix: String,
    /// Largest bus payload, in bytes (default: an [`Envelope`](super::Envelope) at its bound).
    pub bus_payload_bytes_max: usize,
    /// Messages a [`Subscription`] queues before it drops.
    pub bus_queue_len: usize,
    /// How long a zone's seat records live after the last write, in ms (so the records of an
    /// abandoned zone disappear), or as long as that write's grace if longer. A record written
    /// with a grace lives only as long as that grace.
    pub seat_ttl_ms: u64,
    /// Longest a single store operation may take before it counts as unavailable, in ms.
    pub op_timeout_ms: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            key_prefix: "ro-p2p:".to_owned(),
            bus_payload_bytes_max: ro_p2p_core::cluster::ENVELOPE_BYTES_MAX,
            bus_queue_len: 4096,
            seat_ttl_ms: 15 * 60 * 1000,
            op_timeout_ms: 2_000,
        }
    }
}
