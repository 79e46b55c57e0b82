//! Cluster mode's hub logic: one instance's core, its connections, and the bus.
//!
//! [`ClusterNode`] puts [`ZoneOwnership`], [`ConnZones`], [`RemoteConns`], [`SeatSync`] and the
//! [`Envelope`]s together around one [`Coordinator`], without sockets: the driver (the service's
//! cluster hub, `server::cluster_hub`, or a test) feeds it connection events and bus messages
//! and executes its [`NodeOutput`]s.
//!
//! A connection starts in the holder's own core (which sends `welcome`). When it joins a zone
//! owned elsewhere, the holder disconnects it from its own core and attaches it to the owner's,
//! whose second `welcome` is not passed on. Frames of a connection follow its zone's owner; when
//! the owner no longer listens (0 receivers), the zone is routed again, which takes it over once
//! the dead owner's lease has expired. Whenever a connection moves to another core, the holder
//! replays its last `join` there first, so the client resumes its seat (`resumed: true`).
//!
//! Handover: taking a zone (a lease with a new epoch) reads the zone's seat records and feeds
//! them to the core ([`Input::RestoreSeats`]); losing a zone (fenced, or the store unreachable
//! until the lease's end) drops its sessions silently ([`Input::DropZone`]). After every change
//! of seats, the owned zones' seats are written back, fenced by their leases.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use ro_p2p_core::coordinator::{ConnId, Coordinator, Identity, Input, Output};
use ro_p2p_core::wire::{
    ClientMessage, ErrorCode, IceServer, PeerId, ServerMessage, Zone, decode_client, encode_server,
};
use ro_p2p_core::{Instant as CoreInstant, SansIo};

use super::routing::REMOTE_CONN_BASE;
use super::{
    BusMessage, Clock, ClusterStore, ConnZones, Envelope, FrameZone, InstanceId, InstanceView,
    LostBecause, OwnershipError, RemoteConns, SeatSync, SeatWrite, SessionSummary, StoreError,
    ZoneOwnership, ZoneRoute,
};

/// What the driver must do with one of its own connections.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeOutput {
    /// Send this text frame.
    Send {
        /// The connection.
        conn: ConnId,
        /// The frame.
        text: String,
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

/// Where a held connection's frames are served.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Placement {
    Local,
    /// In no core: its zone's owner missed one of its frames, so what that owner held for it
    /// is being detached. Its next frame places it again and replays its `join`.
    Nowhere,
    Remote(InstanceId),
}

#[derive(Debug)]
struct Held {
    account: Option<PeerId>,
    ice_servers: Vec<IceServer>,
    placement: Placement,
    /// The connection's last `join`, replayed when it moves to another core.
    last_join: Option<Vec<u8>>,
}

/// One instance in cluster mode: its core, its connections, its leases and its bus.
#[derive(Debug)]
pub struct ClusterNode {
    core: Coordinator,
    store: Arc<dyn ClusterStore>,
    clock: Arc<dyn Clock>,
    ownership: ZoneOwnership,
    zones: ConnZones,
    remote: RemoteConns,
    held: BTreeMap<ConnId, Held>,
    welcomed: BTreeSet<ConnId>,
    out: VecDeque<NodeOutput>,
    seats: SeatSync,
    /// Owned zones whose stored seats must be read again before the next write (a write
    /// failed, so what was last written is unknown).
    resync: BTreeSet<Zone>,
    /// Zones whose seats may have changed since the last write.
    dirty: Dirty,
    /// The zone each core connection (ours or remote) last joined, to know which zone's seats
    /// an event touches.
    core_zones: BTreeMap<ConnId, Zone>,
    shutting_down: bool,
    /// After a failed renewal, when to try again (the store may refuse fast while it is down:
    /// without this the overdue lease would make the driver spin).
    renew_retry_at_ms: Option<u64>,
    lease_ttl_ms: u64,
    /// `Detach`es an owner did not receive (it was cut off the bus), with when the first try
    /// was: retried on every tick until it is heard or has surely lost the zone. Without this
    /// a connection that left or moved while its owner was unreachable kept a live seat there.
    pending_detach: BTreeMap<ConnId, (InstanceId, u64)>,
    /// When the owed `Detach`es are next retried.
    detach_retry_at_ms: Option<u64>,
}

impl ClusterNode {
    /// Wraps `core`; leases last `lease_ttl_ms`. Time is `clock`'s (the core's time too).
    pub fn new(
        core: Coordinator,
        store: Arc<dyn ClusterStore>,
        clock: Arc<dyn Clock>,
        lease_ttl_ms: u64,
    ) -> Self {
        let ownership = ZoneOwnership::new(Arc::clone(&store), lease_ttl_ms);
        ClusterNode {
            core,
            store,
            clock,
            ownership,
            zones: ConnZones::default(),
            remote: RemoteConns::default(),
            held: BTreeMap::new(),
            welcomed: BTreeSet::new(),
            out: VecDeque::new(),
            seats: SeatSync::default(),
            resync: BTreeSet::new(),
            dirty: Dirty::default(),
            core_zones: BTreeMap::new(),
            shutting_down: false,
            renew_retry_at_ms: None,
            lease_ttl_ms,
            pending_detach: BTreeMap::new(),
            detach_retry_at_ms: None,
        }
    }

    /// The local core (for views and tests).
    pub fn core(&self) -> &Coordinator {
        &self.core
    }

    /// The zones this instance holds.
    pub fn ownership(&self) -> &ZoneOwnership {
        &self.ownership
    }

    /// The store this instance acts on.
    pub fn store(&self) -> &Arc<dyn ClusterStore> {
        &self.store
    }

    /// Connections this instance holds (its own WebSockets).
    pub fn held_count(&self) -> usize {
        self.held.len()
    }

    /// What this instance publishes about itself: the sessions of the zones it owns (with their
    /// lease epochs), the connections it holds, and its core's counters.
    pub fn view(&self) -> InstanceView {
        let zones: BTreeMap<Zone, u64> =
            self.ownership.held().iter().map(|(z, l)| (z.clone(), l.epoch)).collect();
        let sessions = self
            .core
            .sessions()
            .iter()
            .filter(|s| zones.contains_key(&s.zone))
            .map(SessionSummary::from)
            .collect();
        let stats = self.core.stats();
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
            connections: u64::try_from(self.held.len()).unwrap_or(u64::MAX),
            counters,
        }
    }

    /// Publishes [`ClusterNode::view`] for `ttl_ms` (call it more often than that).
    pub async fn publish_view(&self, ttl_ms: u64) -> Result<(), StoreError> {
        self.store.publish_view(&self.view(), ttl_ms).await
    }

    /// The next thing the driver must do.
    pub fn poll_output(&mut self) -> Option<NodeOutput> {
        self.out.pop_front()
    }

    fn now(&self) -> CoreInstant {
        CoreInstant::from_millis(self.clock.now_ms())
    }

    /// A connection of ours was accepted (`conn` below [`REMOTE_CONN_BASE`]).
    pub async fn connected(
        &mut self,
        conn: ConnId,
        identity: Identity,
        ice_servers: Vec<IceServer>,
    ) {
        if conn.0 >= REMOTE_CONN_BASE {
            self.out.push_back(NodeOutput::Close {
                conn,
                code: ErrorCode::Internal,
                reason: "connection number out of range".to_owned(),
            });
            return;
        }
        let account = match &identity {
            Identity::Account(p) => Some(p.clone()),
            _ => None,
        };
        self.held.insert(
            conn,
            Held {
                account,
                ice_servers: ice_servers.clone(),
                placement: Placement::Local,
                last_join: None,
            },
        );
        let peer = account_of(&identity);
        let now = self.now();
        self.core.handle_input(now, Input::Connected { conn, identity, ice_servers, origin: None });
        self.touch_peer(peer.as_ref());
        self.drain().await;
        self.sync_seats().await;
    }

    /// One frame from a connection of ours.
    pub async fn frame(&mut self, conn: ConnId, bytes: Vec<u8>) {
        let Some(held) = self.held.get_mut(&conn) else { return };
        let (zone, is_join) = match self.zones.route(conn, &bytes) {
            FrameZone::Unjoined => (None, false),
            FrameZone::Joins { zone, .. } => {
                held.last_join = Some(bytes.clone());
                (Some(zone), true)
            }
            FrameZone::In(zone) => (Some(zone), false),
        };
        // After a `leave` there is no seat to resume: a later move must not re-join.
        let is_leave = matches!(decode_client(&bytes), Ok(ClientMessage::Leave));
        if is_leave {
            held.last_join = None;
        }
        let Some(zone) = zone else {
            self.feed_local(conn, bytes).await;
            return self.sync_seats().await;
        };
        let current = held.placement.clone();
        // A frame for a remote owner goes straight there while it holds the zone and listens
        // (checked and sent in one store round trip).
        if let Placement::Remote(owner) = &current {
            let env = Envelope::Frame { conn, frame: String::from_utf8_lossy(&bytes).into_owned() };
            let sent = self.store.publish_to_owner(&zone, owner, &env.encode()).await;
            if matches!(sent, Ok(Some(n)) if n > 0) {
                return;
            }
        }
        match self.route_zone(&zone).await {
            Ok(ZoneRoute::Local(_)) => {
                let moved = self.place(conn, Placement::Local).await;
                if moved && !is_join {
                    self.replay_join(conn).await;
                }
                self.feed_local(conn, bytes).await;
            }
            Ok(ZoneRoute::Remote(owner)) => {
                let moved = self.place(conn, Placement::Remote(owner.clone())).await;
                if moved && !is_join {
                    self.replay_join(conn).await;
                }
                let env =
                    Envelope::Frame { conn, frame: String::from_utf8_lossy(&bytes).into_owned() };
                let refused = match self.store.publish(&owner, &env.encode()).await {
                    // The owner is gone and its lease has not run out yet.
                    Ok(0) => Some(format!("owner {owner} does not answer")),
                    Ok(_) => None,
                    Err(e) => Some(e.to_string()),
                };
                if let Some(why) = refused {
                    // The owner missed a frame (a `leave`, say): what it holds for this
                    // connection is stale. It is detached there (retried until heard) and the
                    // next frame attaches it afresh, replaying its `join`.
                    self.place(conn, Placement::Nowhere).await;
                    self.refuse_frame(conn, is_join, &why);
                }
            }
            // A `leave` needs no owner: this core forgets what it told the client (its seat
            // went with the zone), so taking the zone back later cannot seat it again.
            Err(_) if is_leave => {
                self.place(conn, Placement::Local).await;
                self.feed_local(conn, bytes).await;
            }
            Err(e) => self.refuse_frame(conn, is_join, &e.to_string()),
        }
        self.sync_seats().await;
    }

    /// Refuses a frame; a refused `join` is forgotten, so a later move of the connection does
    /// not replay it (the client was told it is not joined and will send its own again).
    fn refuse_frame(&mut self, conn: ConnId, is_join: bool, why: &str) {
        if is_join && let Some(held) = self.held.get_mut(&conn) {
            held.last_join = None;
        }
        self.refuse(conn, why);
    }

    /// Feeds the connection's last `join` to the core or owner it was just placed with.
    async fn replay_join(&mut self, conn: ConnId) {
        let Some(held) = self.held.get(&conn) else { return };
        let Some(join) = held.last_join.clone() else { return };
        match held.placement.clone() {
            Placement::Local => self.feed_local(conn, join).await,
            Placement::Remote(owner) => {
                let frame = String::from_utf8_lossy(&join).into_owned();
                let _ = self.store.publish(&owner, &Envelope::Frame { conn, frame }.encode()).await;
            }
            Placement::Nowhere => {}
        }
    }

    /// Where `zone` is served; a zone newly taken (a lease with a new epoch) gets its seats
    /// restored from the store first.
    async fn route_zone(&mut self, zone: &Zone) -> Result<ZoneRoute, OwnershipError> {
        let before = self.ownership.held().get(zone).map(|l| l.epoch);
        let route = self.ownership.route(zone, self.clock.now_ms()).await?;
        if let ZoneRoute::Local(lease) = &route
            && before != Some(lease.epoch)
        {
            self.take_over(zone).await;
        }
        Ok(route)
    }

    async fn take_over(&mut self, zone: &Zone) {
        let now = self.now();
        // Whatever this core still holds of the zone is older than the records.
        self.core.handle_input(now, Input::DropZone { zone: zone.clone() });
        self.seats.forget(zone);
        match self.store.seats(zone).await {
            Ok(records) => {
                let seats = records.iter().map(super::SeatRecord::restored).collect();
                tracing::info!(%zone, seats = records.len(), "took the zone over");
                self.core.handle_input(now, Input::RestoreSeats { zone: zone.clone(), seats });
                self.seats.adopt(zone, records);
                self.resync.remove(zone);
            }
            Err(e) => {
                tracing::warn!(%zone, error = %e, "took the zone over without its seat records");
                // No records: connections here that believed in the zone's sessions are
                // placed again, as newcomers.
                self.core
                    .handle_input(now, Input::RestoreSeats { zone: zone.clone(), seats: vec![] });
                self.resync.insert(zone.clone());
            }
        }
        self.dirty.zones.insert(zone.clone());
        self.drain().await;
    }

    /// Forgets a zone this instance no longer owns: its sessions go without a word (the new
    /// owner speaks for them); its connections move there on their next frame.
    fn lose_zone(&mut self, zone: &Zone, why: LostBecause) {
        tracing::warn!(%zone, ?why, "zone lost; dropping its sessions");
        let now = self.now();
        self.core.handle_input(now, Input::DropZone { zone: zone.clone() });
        self.seats.forget(zone);
        self.resync.remove(zone);
        // DropZone has no outputs; nothing to drain.
    }

    fn refuse(&mut self, conn: ConnId, why: &str) {
        let err = OwnershipError::Store(StoreError::Unavailable { reason: why.to_owned() });
        let msg = ServerMessage::error(err.code(), format!("zone unavailable: {why}"));
        self.out.push_back(NodeOutput::Send { conn, text: encode_server(&msg) });
    }

    /// A binary (`binary: true`) or control frame from `conn`: charged to the connection's
    /// budget in this instance's core. While the connection is placed on another instance
    /// the core here does not hold it and the frame is dropped (it carries nothing to relay).
    pub async fn non_text_frame(&mut self, conn: ConnId, binary: bool) {
        let now = self.now();
        let input = if binary { Input::Binary { conn } } else { Input::Control { conn } };
        self.core.handle_input(now, input);
        self.drain().await;
    }

    async fn feed_local(&mut self, conn: ConnId, bytes: Vec<u8>) {
        self.note_frame(conn, &bytes);
        let now = self.now();
        self.core.handle_input(now, Input::Frame { conn, bytes });
        self.drain().await;
    }

    /// Moves `conn` to be served by `to`: out of the core or owner that served it, into the
    /// new. Returns whether it moved.
    async fn place(&mut self, conn: ConnId, to: Placement) -> bool {
        let Some(held) = self.held.get_mut(&conn) else { return false };
        if held.placement == to {
            return false;
        }
        let from = std::mem::replace(&mut held.placement, to.clone());
        let (account, ice_servers) = (held.account.clone(), held.ice_servers.clone());
        match from {
            Placement::Local => {
                self.forget_core_conn(conn);
                let now = self.now();
                self.core.handle_input(now, Input::Disconnected { conn });
                self.drain().await;
            }
            Placement::Remote(owner) => self.detach_remote(conn, owner).await,
            Placement::Nowhere => {}
        }
        match to {
            Placement::Local => {
                let peer = account.clone();
                let identity = account.map_or(Identity::Anonymous, Identity::Account);
                let now = self.now();
                self.core.handle_input(
                    now,
                    Input::Connected { conn, identity, ice_servers, origin: None },
                );
                self.touch_peer(peer.as_ref());
                self.drain().await;
            }
            Placement::Remote(owner) => {
                // A `Detach` still owed to this owner goes first: arriving after the `Attach`,
                // it would undo it.
                if self.pending_detach.get(&conn).is_some_and(|(o, _)| *o == owner)
                    && self.publish_heard(&owner, &Envelope::Detach { conn }).await
                {
                    self.pending_detach.remove(&conn);
                }
                let env = Envelope::Attach { conn, account, ice_servers };
                let _ = self.store.publish(&owner, &env.encode()).await;
            }
            Placement::Nowhere => {}
        }
        true
    }

    /// Tells `owner` that `conn` is no longer served there; kept for a retry if it does not
    /// hear it.
    async fn detach_remote(&mut self, conn: ConnId, owner: InstanceId) {
        if !self.publish_heard(&owner, &Envelope::Detach { conn }).await {
            let now_ms = self.clock.now_ms();
            self.pending_detach.insert(conn, (owner, now_ms));
        }
    }

    /// Publishes `env` on `to`'s channel; whether anyone there heard it (a store error counts
    /// as not heard).
    async fn publish_heard(&self, to: &InstanceId, env: &Envelope) -> bool {
        matches!(self.store.publish(to, &env.encode()).await, Ok(n) if n > 0)
    }

    /// Retries the owed `Detach`es; gives one up once its owner has surely lost the zone (its
    /// lease ran out twice over: it restarted, died or was fenced, and the seat is in grace at
    /// the next owner).
    async fn retry_detaches(&mut self) {
        let now_ms = self.clock.now_ms();
        let pending = std::mem::take(&mut self.pending_detach);
        for (conn, (owner, since_ms)) in pending {
            if now_ms.saturating_sub(since_ms) > self.lease_ttl_ms.saturating_mul(2) {
                continue;
            }
            if !self.publish_heard(&owner, &Envelope::Detach { conn }).await {
                self.pending_detach.insert(conn, (owner, since_ms));
            }
        }
    }

    /// A connection of ours closed.
    pub async fn disconnected(&mut self, conn: ConnId) {
        self.release(conn, None).await;
    }

    /// `conn`'s credential was revoked (its token was disabled or replaced) and the hub has
    /// closed it with `auth-revoked`: as [`ClusterNode::disconnected`], but a seat in a zone
    /// this instance owns is given up at once, without grace, as a single coordinator does. A
    /// seat that another instance owns is detached there and waits out its grace (the bus has
    /// no revoke message).
    pub async fn revoked(&mut self, conn: ConnId, reason: String) {
        self.release(conn, Some(reason)).await;
    }

    async fn release(&mut self, conn: ConnId, revoked: Option<String>) {
        let Some(held) = self.held.remove(&conn) else { return };
        self.zones.forget(conn);
        self.welcomed.remove(&conn);
        match held.placement {
            Placement::Local => {
                self.forget_core_conn(conn);
                let now = self.now();
                let input = match revoked {
                    // The hub already closed it; the core's close finds it no longer held.
                    Some(reason) => Input::Revoke { conn, reason },
                    None => Input::Disconnected { conn },
                };
                self.core.handle_input(now, input);
                self.drain().await;
                self.sync_seats().await;
            }
            Placement::Remote(owner) => self.detach_remote(conn, owner).await,
            Placement::Nowhere => {}
        }
    }

    /// One message from this instance's bus channel.
    pub async fn bus(&mut self, msg: BusMessage) {
        let env = match Envelope::decode(&msg.payload) {
            Ok(env) => env,
            Err(e) => {
                tracing::warn!(from = %msg.from, error = %e, "dropping an unreadable envelope");
                return;
            }
        };
        let now = self.now();
        match env {
            Envelope::Attach { conn, account, ice_servers } => {
                let local = self.remote.attach(&msg.from, conn);
                let peer = account.clone();
                let identity = account.map_or(Identity::Anonymous, Identity::Account);
                self.core.handle_input(
                    now,
                    Input::Connected { conn: local, identity, ice_servers, origin: None },
                );
                self.touch_peer(peer.as_ref());
            }
            Envelope::Frame { conn, frame } => match self.remote.local(&msg.from, conn) {
                Some(local) => {
                    let bytes = frame.into_bytes();
                    self.note_frame(local, &bytes);
                    self.core.handle_input(now, Input::Frame { conn: local, bytes });
                }
                None => {
                    // Not attached here (we took the zone over, or restarted): answer so the
                    // holder attaches again.
                    let reason = "zone owner changed; reconnect".to_owned();
                    let env = Envelope::Close { conn, code: ErrorCode::ZoneUnavailable, reason };
                    let _ = self.store.publish(&msg.from, &env.encode()).await;
                }
            },
            Envelope::Detach { conn } => {
                if let Some(local) = self.remote.detach(&msg.from, conn) {
                    self.forget_core_conn(local);
                    self.core.handle_input(now, Input::Disconnected { conn: local });
                }
            }
            Envelope::Deliver { conn, frame } => {
                let from_owner = self
                    .held
                    .get(&conn)
                    .is_some_and(|h| h.placement == Placement::Remote(msg.from.clone()));
                if from_owner && !(is_welcome(&frame) && self.welcomed.contains(&conn)) {
                    if is_welcome(&frame) {
                        self.welcomed.insert(conn);
                    }
                    self.out.push_back(NodeOutput::Send { conn, text: frame });
                }
            }
            Envelope::Close { conn, code, reason } => {
                let from_owner = self
                    .held
                    .get(&conn)
                    .is_some_and(|h| h.placement == Placement::Remote(msg.from.clone()));
                if from_owner {
                    self.held.remove(&conn);
                    self.zones.forget(conn);
                    self.welcomed.remove(&conn);
                    self.out.push_back(NodeOutput::Close { conn, code, reason });
                }
            }
        }
        self.drain().await;
        self.sync_seats().await;
    }

    /// Runs the core's due timers and keeps the leases; call at least every `poll_timeout`.
    pub async fn tick(&mut self) {
        let now = self.now();
        if self.core.poll_timeout().is_some_and(|t| t <= now) {
            self.core.handle_timeout(now);
            self.dirty.all = true;
            self.drain().await;
        }
        let now_ms = self.clock.now_ms();
        if !self.pending_detach.is_empty() && self.detach_retry_at_ms.is_none_or(|t| t <= now_ms) {
            self.retry_detaches().await;
            self.detach_retry_at_ms = (!self.pending_detach.is_empty())
                .then(|| now_ms + (self.lease_ttl_ms / 20).clamp(10, 250));
        }
        if self.renew_retry_at_ms.is_none_or(|t| t <= now_ms) {
            self.renew_retry_at_ms = None;
            for (zone, why) in self.ownership.tick(now_ms).await {
                self.lose_zone(&zone, why);
            }
            if self.ownership.next_tick_ms().is_some_and(|t| t <= now_ms) {
                self.renew_retry_at_ms = Some(now_ms + (self.lease_ttl_ms / 20).clamp(10, 250));
            }
        }
        self.sync_seats().await;
    }

    /// Writes the seats of every owned zone (whether or not they look changed) and re-reads
    /// the records of zones whose last write failed. Call it now and then (the driver's view
    /// timer), so a missed change is written eventually.
    pub async fn maintain(&mut self) {
        self.dirty.all = true;
        self.sync_seats().await;
    }

    /// When [`ClusterNode::tick`] is next due, in the clock's ms.
    pub fn poll_timeout_ms(&self) -> Option<u64> {
        let core = self.core.poll_timeout().map(|t| t.as_millis());
        let leases =
            self.ownership.next_tick_ms().map(|t| t.max(self.renew_retry_at_ms.unwrap_or(0)));
        let detaches = if self.pending_detach.is_empty() {
            None
        } else {
            Some(self.detach_retry_at_ms.unwrap_or(0))
        };
        [core, leases, detaches].into_iter().flatten().min()
    }

    /// Stops: every connection of the core is closed with `shutting-down` (connections held
    /// elsewhere are left to their holders, which move them to the zone's next owner), the
    /// seats are written (in grace), and every lease is released so other instances take the
    /// zones over on their next frame instead of after the lease.
    pub async fn shutdown(&mut self) {
        self.shutting_down = true;
        let now = self.now();
        self.core.handle_input(now, Input::Shutdown);
        self.dirty.all = true;
        self.drain().await;
        self.sync_seats().await;
        self.ownership.release_all().await;
        let remote_placed: Vec<ConnId> = self
            .held
            .iter()
            .filter(|(_, h)| h.placement != Placement::Local)
            .map(|(c, _)| *c)
            .collect();
        for conn in remote_placed {
            if let Some(Held { placement: Placement::Remote(owner), .. }) = self.held.remove(&conn)
            {
                let _ = self.store.publish(&owner, &Envelope::Detach { conn }.encode()).await;
            }
            self.out.push_back(NodeOutput::Close {
                conn,
                code: ErrorCode::ShuttingDown,
                reason: "coordinator is shutting down".to_owned(),
            });
        }
    }

    /// Writes what changed in the owned zones' seats, fenced by their leases.
    async fn sync_seats(&mut self) {
        if self.shutting_down && self.ownership.held().is_empty() {
            return;
        }
        let dirty = std::mem::take(&mut self.dirty);
        if !dirty.all && dirty.zones.is_empty() {
            return;
        }
        let owned: Vec<(Zone, super::Lease)> = self
            .ownership
            .held()
            .iter()
            .filter(|(z, _)| dirty.all || dirty.zones.contains(*z))
            .map(|(z, l)| (z.clone(), l.clone()))
            .collect();
        for (zone, lease) in owned {
            if self.resync.contains(&zone) {
                match self.store.seats(&zone).await {
                    Ok(stored) => {
                        self.seats.adopt(&zone, stored);
                        self.resync.remove(&zone);
                    }
                    Err(_) => {
                        self.dirty.zones.insert(zone);
                        continue;
                    }
                }
            }
            let sessions = self.core.discover(&zone);
            let me = self.store.instance().clone();
            let core = &self.core;
            let remote = &self.remote;
            let records = SeatSync::records(
                &zone,
                &sessions,
                |p| core.seat_capabilities(p),
                |p| {
                    let conn = core.seat_connection(p)?;
                    Some(remote.remote(conn).map_or_else(|| me.clone(), |(h, _)| h.clone()))
                },
            );
            for write in self.seats.diff(&zone, records) {
                let result = match &write {
                    SeatWrite::Put(record) => self.store.put_seat(&lease, record).await,
                    SeatWrite::Remove { peer, .. } => self.store.remove_seat(&lease, peer).await,
                };
                match result {
                    Ok(()) => {}
                    Err(StoreError::Fenced { .. } | StoreError::NotOurLease { .. }) => {
                        self.ownership.forget(&zone);
                        self.lose_zone(&zone, LostBecause::Fenced);
                        break;
                    }
                    Err(e) => {
                        tracing::debug!(%zone, error = %e, "seat write failed; will resync");
                        self.resync.insert(zone.clone());
                        self.dirty.zones.insert(zone.clone());
                        break;
                    }
                }
            }
        }
    }

    async fn drain(&mut self) {
        // Remote connections whose holder did not hear a frame for them.
        let mut unheard = Vec::new();
        loop {
            self.drain_once(&mut unheard).await;
            if unheard.is_empty() {
                return;
            }
            // The holder missed a message (it is cut off the bus, or gone): its client's view
            // is stale. The connection leaves this core (its seat waits in grace, silently);
            // its next frame finds it unknown here, and the holder is told to close it, so
            // the client comes back and resumes the seat with the whole session.
            let now = self.now();
            for conn in std::mem::take(&mut unheard) {
                if self.remote.forget_local(conn).is_some() {
                    self.forget_core_conn(conn);
                    self.core.handle_input(now, Input::Disconnected { conn });
                }
            }
        }
    }

    async fn drain_once(&mut self, unheard: &mut Vec<ConnId>) {
        while let Some(out) = self.core.poll_output() {
            match out {
                Output::Send { conn, msg } => {
                    let text = encode_server(&msg);
                    if let Some((holder, rc)) = self.remote.remote(conn).cloned() {
                        let env = Envelope::Deliver { conn: rc, frame: text };
                        if !self.publish_heard(&holder, &env).await && !unheard.contains(&conn) {
                            unheard.push(conn);
                        }
                    } else if matches!(msg, ServerMessage::Welcome { .. }) {
                        if self.welcomed.insert(conn) {
                            self.out.push_back(NodeOutput::Send { conn, text });
                        }
                    } else if self.held.contains_key(&conn) {
                        self.out.push_back(NodeOutput::Send { conn, text });
                    }
                }
                Output::Close { conn, code, reason } => {
                    if let Some((holder, rc)) = self.remote.forget_local(conn) {
                        // At shutdown the holder keeps its client and moves it to the next
                        // owner; otherwise the owner's decision (idle, rate, replaced) holds.
                        if code != ErrorCode::ShuttingDown {
                            let env = Envelope::Close { conn: rc, code, reason };
                            let _ = self.store.publish(&holder, &env.encode()).await;
                        }
                    } else if self.held.remove(&conn).is_some() {
                        self.zones.forget(conn);
                        self.welcomed.remove(&conn);
                        self.out.push_back(NodeOutput::Close { conn, code, reason });
                    }
                    self.forget_core_conn(conn);
                }
            }
        }
    }

    /// Notes which zone's seats a frame fed to the core (as `conn`) may change.
    fn note_frame(&mut self, conn: ConnId, bytes: &[u8]) {
        if !changes_seats(bytes) {
            return;
        }
        if let Some(zone) = self.core_zones.get(&conn) {
            self.dirty.zones.insert(zone.clone());
        }
        if let Ok(ClientMessage::Join { zone, .. }) = decode_client(bytes) {
            self.dirty.zones.insert(zone.clone());
            self.core_zones.insert(conn, zone);
        }
    }

    /// A core connection ends: its zone's seats change (the seat goes into grace).
    fn forget_core_conn(&mut self, conn: ConnId) {
        if let Some(zone) = self.core_zones.remove(&conn) {
            self.dirty.zones.insert(zone);
        }
    }

    /// An identity became live in the core: its seat, if any, changed.
    fn touch_peer(&mut self, peer: Option<&PeerId>) {
        if let Some(zone) = peer.and_then(|p| self.core.seat_zone(p)) {
            self.dirty.zones.insert(zone);
        }
    }
}

/// Which owned zones' seats to write at the next sync.
#[derive(Debug, Default)]
struct Dirty {
    all: bool,
    zones: BTreeSet<Zone>,
}

fn account_of(identity: &Identity) -> Option<PeerId> {
    match identity {
        Identity::Account(p) => Some(p.clone()),
        _ => None,
    }
}

fn is_welcome(frame: &str) -> bool {
    frame.starts_with(r#"{"type":"welcome""#)
}

/// Whether a client frame may change seats (join, leave, capabilities). A cheap scan, not a
/// decode: a miss is caught by the next [`ClusterNode::maintain`].
fn changes_seats(frame: &[u8]) -> bool {
    const MARKERS: [&[u8]; 3] = [b"join", b"leave", b"update-capabilities"];
    MARKERS.iter().any(|m| frame.windows(m.len()).any(|w| w == *m))
}
