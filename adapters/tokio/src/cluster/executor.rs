//! Cluster mode's executor: runs the store operations the core's [`Instance`] asks for.
//!
//! Every decision of cluster mode (which zones this instance serves, where a frame goes, what
//! the owner sends back, which seats to write or restore, when to renew, retry or replay) is
//! the core's ([`ro_p2p_core::cluster`]). [`ClusterExecutor`] feeds it connection events, bus
//! messages and time from the `clock`, and executes its outputs in order: sends and closes
//! become [`ExecutorOutput`]s for the driver (the service's cluster hub, `server::cluster_hub`, or a
//! test), and each [`StoreOp`] is run against the [`ClusterStore`] at once, its reply fed back
//! before the next output is taken (so operations run one at a time, in the order asked).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use ro_p2p_core::cluster::{
    self, Input, Instance, Output, SentKind, StoreFailure, StoreOp, StoreReply,
};
use ro_p2p_core::coordinator::{ConnId, Coordinator, Identity};
use ro_p2p_core::wire::{ErrorCode, IceServer, Zone};
use ro_p2p_core::{Instant as CoreInstant, SansIo};

use super::{
    Acquired, BusMessage, Clock, ClusterStore, InstanceView, Lease, SessionSummary, StoreError,
};

/// How often the owned zones' seats are written whether or not they look changed, in ms.
pub const MAINTAIN_INTERVAL_MS: u64 = 1_000;

/// What the driver must do with one of its own connections.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExecutorOutput {
    /// Send this text frame.
    Send {
        /// The connection.
        conn: ConnId,
        /// The frame.
        text: String,
        /// What it is, as the core knew (for metrics and the audit log).
        kind: SentKind,
    },
    /// Close it.
    Close {
        /// The connection.
        conn: ConnId,
        /// Why, machine-readable.
        code: ErrorCode,
        /// Why, for humans.
        reason: String,
    },
}

/// One instance in cluster mode: the core's [`Instance`] and the store it acts on.
#[derive(Debug)]
pub struct ClusterExecutor {
    instance: Instance,
    store: Arc<dyn ClusterStore>,
    clock: Arc<dyn Clock>,
    out: VecDeque<ExecutorOutput>,
}

impl ClusterExecutor {
    /// Wraps `core`; leases last `lease_ttl_ms`. Time is `clock`'s (the core's time too).
    pub fn new(
        core: Coordinator,
        store: Arc<dyn ClusterStore>,
        clock: Arc<dyn Clock>,
        lease_ttl_ms: u64,
    ) -> Self {
        let config = cluster::Config { lease_ttl_ms, maintain_interval_ms: MAINTAIN_INTERVAL_MS };
        let now = CoreInstant::from_millis(clock.now_ms());
        let instance = Instance::new(store.instance().clone(), config, core, now);
        ClusterExecutor { instance, store, clock, out: VecDeque::new() }
    }

    /// The local core (for views and tests).
    pub fn core(&self) -> &Coordinator {
        self.instance.core()
    }

    /// The core's cluster machine.
    pub fn instance(&self) -> &Instance {
        &self.instance
    }

    /// The zones this instance holds a lease of, with the lease's epoch.
    pub fn owned_zones(&self) -> BTreeMap<Zone, u64> {
        self.instance.owned_zones()
    }

    /// The store this instance acts on.
    pub fn store(&self) -> &Arc<dyn ClusterStore> {
        &self.store
    }

    /// Connections this instance holds (its own WebSockets).
    pub fn held_count(&self) -> usize {
        self.instance.held_count()
    }

    /// What this instance publishes about itself: the sessions of the zones it owns (with their
    /// lease epochs), the connections it holds, and its core's counters.
    pub fn view(&self) -> InstanceView {
        let zones = self.instance.owned_zones();
        let core = self.instance.core();
        let sessions = core
            .sessions()
            .iter()
            .filter(|s| zones.contains_key(&s.zone))
            .map(SessionSummary::from)
            .collect();
        let stats = core.stats();
        let mut counters = BTreeMap::new();
        counters.insert("joins".to_owned(), stats.joins);
        counters.insert("leaves".to_owned(), stats.leaves);
        counters.insert("sessions_created".to_owned(), stats.sessions_created);
        counters.insert("sessions_expired".to_owned(), stats.sessions_expired);
        counters.insert("host_changes".to_owned(), stats.host_changes);
        counters.insert("key_rotations".to_owned(), stats.key_rotations);
        for (kind, n) in &stats.relays {
            counters.insert(format!("relays:{kind}"), *n);
        }
        for (code, n) in &stats.rejects {
            counters.insert(format!("rejects:{}", code.as_str()), *n);
        }
        InstanceView {
            zones,
            sessions,
            connections: u64::try_from(self.held_count()).unwrap_or(u64::MAX),
            counters,
        }
    }

    /// Publishes [`ClusterExecutor::view`] for `ttl_ms` (call it more often than that).
    pub async fn publish_view(&self, ttl_ms: u64) -> Result<(), StoreError> {
        self.store.publish_view(&self.view(), ttl_ms).await
    }

    /// The next thing the driver must do.
    pub fn poll_output(&mut self) -> Option<ExecutorOutput> {
        self.out.pop_front()
    }

    fn now(&self) -> CoreInstant {
        CoreInstant::from_millis(self.clock.now_ms())
    }

    async fn feed(&mut self, input: Input) {
        let now = self.now();
        self.instance.handle_input(now, input);
        self.execute().await;
    }

    /// Executes the instance's outputs until there are none: a store operation's reply is fed
    /// back before the next output is taken.
    async fn execute(&mut self) {
        while let Some(out) = self.instance.poll_output() {
            match out {
                Output::Send { conn, text, kind } => {
                    self.out.push_back(ExecutorOutput::Send { conn, text, kind })
                }
                Output::Close { conn, code, reason } => {
                    self.out.push_back(ExecutorOutput::Close { conn, code, reason });
                }
                Output::Store { id, op } => {
                    let result = run(self.store.as_ref(), op, self.now()).await;
                    let now = self.now();
                    self.instance.handle_input(now, Input::Store { id, result });
                }
            }
        }
    }

    /// A connection of ours was accepted.
    pub async fn connected(
        &mut self,
        conn: ConnId,
        identity: Identity,
        ice_servers: Vec<IceServer>,
    ) {
        self.feed(Input::Connected { conn, identity, ice_servers }).await;
    }

    /// One frame from a connection of ours.
    pub async fn frame(&mut self, conn: ConnId, bytes: Vec<u8>) {
        self.feed(Input::Frame { conn, bytes }).await;
    }

    /// A binary (`binary: true`) or control frame from `conn`, charged in this instance's core.
    pub async fn non_text_frame(&mut self, conn: ConnId, binary: bool) {
        let input = if binary { Input::Binary { conn } } else { Input::Control { conn } };
        self.feed(input).await;
    }

    /// A connection of ours closed.
    pub async fn disconnected(&mut self, conn: ConnId) {
        self.feed(Input::Disconnected { conn }).await;
    }

    /// `conn`'s credential was revoked and the hub has closed it with `auth-revoked`.
    pub async fn revoked(&mut self, conn: ConnId, reason: String) {
        self.feed(Input::Revoked { conn, reason }).await;
    }

    /// One message from this instance's bus channel.
    pub async fn bus(&mut self, msg: BusMessage) {
        self.feed(Input::Bus { from: msg.from, payload: msg.payload }).await;
    }

    /// Runs the instance's due timers; call at least every [`ClusterExecutor::poll_timeout_ms`].
    pub async fn tick(&mut self) {
        let now = self.now();
        if self.instance.poll_timeout().is_some_and(|t| t <= now) {
            self.instance.handle_timeout(now);
            self.execute().await;
        }
    }

    /// When [`ClusterExecutor::tick`] is next due, in the clock's ms.
    pub fn poll_timeout_ms(&self) -> Option<u64> {
        self.instance.poll_timeout().map(CoreInstant::as_millis)
    }

    /// Stops: the core's connections are closed with `shutting-down`, the seats written, every
    /// lease released, and connections placed elsewhere detached and closed.
    pub async fn shutdown(&mut self) {
        self.feed(Input::Shutdown).await;
    }
}

/// Runs one store operation, at `now` on the core's clock.
async fn run(
    store: &dyn ClusterStore,
    op: StoreOp,
    now: CoreInstant,
) -> Result<StoreReply, StoreFailure> {
    let lease = |l: cluster::Lease| Lease {
        zone: l.zone,
        owner: l.owner,
        epoch: l.epoch,
        expires_at_ms: 0,
    };
    let result = match op {
        StoreOp::Acquire { zone, ttl_ms } => store.acquire(&zone, ttl_ms).await.map(|a| {
            StoreReply::Acquired(match a {
                Acquired::Owned(l) => cluster::Acquired::Owned(cluster::Lease {
                    zone: l.zone,
                    owner: l.owner,
                    epoch: l.epoch,
                }),
                Acquired::HeldBy(h) => cluster::Acquired::HeldBy(cluster::LeaseHolder {
                    owner: h.owner,
                    epoch: h.epoch,
                }),
            })
        }),
        StoreOp::Renew { lease: l, ttl_ms } => {
            store.renew(&lease(l), ttl_ms).await.map(|_| StoreReply::Done)
        }
        StoreOp::Release { lease: l } => store.release(&lease(l)).await.map(|_| StoreReply::Done),
        StoreOp::PutSeat { lease: l, seat, grace_until } => {
            // The grace as a TTL from now, when the write leaves (0: over, the record goes).
            let grace_ms = grace_until.map(|g| g.millis_since(now));
            store.put_seat(&lease(l), &seat, grace_ms).await.map(|()| StoreReply::Done)
        }
        StoreOp::RemoveSeat { lease: l, peer } => {
            store.remove_seat(&lease(l), &peer).await.map(|()| StoreReply::Done)
        }
        StoreOp::ReadSeats { zone } => store.seats(&zone).await.map(StoreReply::Seats),
        StoreOp::Publish { to, payload } => {
            store.publish(&to, &payload).await.map(StoreReply::Published)
        }
        StoreOp::PublishToOwner { zone, owner, payload } => {
            store.publish_to_owner(&zone, &owner, &payload).await.map(StoreReply::PublishedToOwner)
        }
    };
    result.map_err(|e| match e {
        StoreError::Fenced { .. } | StoreError::NotOurLease { .. } => StoreFailure::Fenced,
        e => {
            tracing::debug!(error = %e, "cluster store operation failed");
            StoreFailure::Unavailable { reason: e.to_string() }
        }
    })
}
