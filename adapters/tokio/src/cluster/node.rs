//! A prototype of cluster mode's hub logic: one instance's core, its connections, and the bus.
//!
//! [`ClusterNode`] puts [`ZoneOwnership`], [`ConnZones`], [`RemoteConns`] and the
//! [`Envelope`]s together around one [`Coordinator`], without sockets: the driver (a future
//! cluster-mode hub, or a test) feeds it connection events and bus messages and executes its
//! [`NodeOutput`]s. It shows the routing works end to end (clients on different instances in
//! one zone signal each other through the zone's owner); it is not yet used by the service (see
//! `docs/scaling.md`, "What is not done yet").
//!
//! A connection starts in the holder's own core (which sends `welcome`). When it joins a zone
//! owned elsewhere, the holder disconnects it from its own core and attaches it to the owner's,
//! whose second `welcome` is not passed on. Frames of a connection follow its zone's owner; when
//! the owner no longer listens (0 receivers), the zone is routed again, which takes it over once
//! the dead owner's lease has expired.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use ro_p2p_core::coordinator::{ConnId, Coordinator, Identity, Input, Output};
use ro_p2p_core::wire::{ErrorCode, IceServer, PeerId, ServerMessage, Zone, encode_server};
use ro_p2p_core::{Instant as CoreInstant, SansIo};

use super::routing::REMOTE_CONN_BASE;
use super::{
    BusMessage, Clock, ClusterStore, ConnZones, Envelope, FrameZone, InstanceId, InstanceView,
    OwnershipError, RemoteConns, SessionSummary, StoreError, ZoneOwnership, ZoneRoute,
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
    Remote(InstanceId),
}

#[derive(Debug)]
struct Held {
    account: Option<PeerId>,
    ice_servers: Vec<IceServer>,
    placement: Placement,
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
            Held { account, ice_servers: ice_servers.clone(), placement: Placement::Local },
        );
        let now = self.now();
        self.core.handle_input(now, Input::Connected { conn, identity, ice_servers });
        self.drain().await;
    }

    /// One frame from a connection of ours.
    pub async fn frame(&mut self, conn: ConnId, bytes: Vec<u8>) {
        if !self.held.contains_key(&conn) {
            return;
        }
        let zone = match self.zones.route(conn, &bytes) {
            FrameZone::Unjoined => None,
            FrameZone::Joins { zone, .. } | FrameZone::In(zone) => Some(zone),
        };
        let Some(zone) = zone else {
            return self.feed_local(conn, bytes).await;
        };
        let current = self.held.get(&conn).map(|h| h.placement.clone());
        // A frame for a remote owner goes straight there while it listens.
        if let Some(Placement::Remote(owner)) = &current {
            let env = Envelope::Frame { conn, frame: String::from_utf8_lossy(&bytes).into_owned() };
            if self.ownership_is(&zone, owner).await
                && matches!(self.store.publish(owner, &env.encode()).await, Ok(n) if n > 0)
            {
                return;
            }
        }
        let now_ms = self.clock.now_ms();
        match self.ownership.route(&zone, now_ms).await {
            Ok(ZoneRoute::Local(_)) => {
                self.place(conn, Placement::Local).await;
                self.feed_local(conn, bytes).await;
            }
            Ok(ZoneRoute::Remote(owner)) => {
                self.place(conn, Placement::Remote(owner.clone())).await;
                let env =
                    Envelope::Frame { conn, frame: String::from_utf8_lossy(&bytes).into_owned() };
                match self.store.publish(&owner, &env.encode()).await {
                    Ok(0) => {
                        // The owner is gone and its lease has not run out yet.
                        self.refuse(conn, &format!("owner {owner} does not answer"));
                    }
                    Ok(_) => {}
                    Err(e) => self.refuse(conn, &e.to_string()),
                }
            }
            Err(e) => self.refuse(conn, &e.to_string()),
        }
    }

    /// Whether `owner` still holds `zone` (cheap when it is in the connection's placement).
    async fn ownership_is(&self, zone: &Zone, owner: &InstanceId) -> bool {
        matches!(self.store.owner(zone).await, Ok(Some(h)) if &h.owner == owner)
    }

    fn refuse(&mut self, conn: ConnId, why: &str) {
        let err = OwnershipError::Store(StoreError::Unavailable { reason: why.to_owned() });
        let msg = ServerMessage::error(err.code(), format!("zone unavailable: {why}"));
        self.out.push_back(NodeOutput::Send { conn, text: encode_server(&msg) });
    }

    async fn feed_local(&mut self, conn: ConnId, bytes: Vec<u8>) {
        let now = self.now();
        self.core.handle_input(now, Input::Frame { conn, bytes });
        self.drain().await;
    }

    /// Moves `conn` to be served by `to`: out of the core or owner that served it, into the new.
    async fn place(&mut self, conn: ConnId, to: Placement) {
        let Some(held) = self.held.get_mut(&conn) else { return };
        if held.placement == to {
            return;
        }
        let from = std::mem::replace(&mut held.placement, to.clone());
        let (account, ice_servers) = (held.account.clone(), held.ice_servers.clone());
        match from {
            Placement::Local => {
                let now = self.now();
                self.core.handle_input(now, Input::Disconnected { conn });
                self.drain().await;
            }
            Placement::Remote(owner) => {
                let _ = self.store.publish(&owner, &Envelope::Detach { conn }.encode()).await;
            }
        }
        match to {
            Placement::Local => {
                let identity = account.map_or(Identity::Anonymous, Identity::Account);
                let now = self.now();
                self.core.handle_input(now, Input::Connected { conn, identity, ice_servers });
                self.drain().await;
            }
            Placement::Remote(owner) => {
                let env = Envelope::Attach { conn, account, ice_servers };
                let _ = self.store.publish(&owner, &env.encode()).await;
            }
        }
    }

    /// A connection of ours closed.
    pub async fn disconnected(&mut self, conn: ConnId) {
        let Some(held) = self.held.remove(&conn) else { return };
        self.zones.forget(conn);
        self.welcomed.remove(&conn);
        match held.placement {
            Placement::Local => {
                let now = self.now();
                self.core.handle_input(now, Input::Disconnected { conn });
                self.drain().await;
            }
            Placement::Remote(owner) => {
                let _ = self.store.publish(&owner, &Envelope::Detach { conn }.encode()).await;
            }
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
                let identity = account.map_or(Identity::Anonymous, Identity::Account);
                self.core
                    .handle_input(now, Input::Connected { conn: local, identity, ice_servers });
            }
            Envelope::Frame { conn, frame } => match self.remote.local(&msg.from, conn) {
                Some(local) => {
                    let bytes = frame.into_bytes();
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
                    self.core.handle_input(now, Input::Disconnected { conn: local });
                }
            }
            Envelope::Deliver { conn, frame } => {
                let from_owner = self
                    .held
                    .get(&conn)
                    .is_some_and(|h| h.placement == Placement::Remote(msg.from.clone()));
                if from_owner && !(is_welcome(&frame) && self.welcomed.contains(&conn)) {
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
    }

    /// Runs the core's due timers and keeps the leases; call at least every `poll_timeout`.
    pub async fn tick(&mut self) {
        let now = self.now();
        self.core.handle_timeout(now);
        self.drain().await;
        for (zone, why) in self.ownership.tick(self.clock.now_ms()).await {
            // The core cannot drop a zone yet (no input for it): see docs/scaling.md.
            tracing::warn!(%zone, ?why, "zone lost to another owner");
        }
    }

    /// When [`ClusterNode::tick`] is next due, in the clock's ms.
    pub fn poll_timeout_ms(&self) -> Option<u64> {
        let core = self.core.poll_timeout().map(|t| t.as_millis());
        match (core, self.ownership.next_tick_ms()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    async fn drain(&mut self) {
        while let Some(out) = self.core.poll_output() {
            match out {
                Output::Send { conn, msg } => {
                    let text = encode_server(&msg);
                    if let Some((holder, rc)) = self.remote.remote(conn).cloned() {
                        let env = Envelope::Deliver { conn: rc, frame: text };
                        let _ = self.store.publish(&holder, &env.encode()).await;
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
                        let env = Envelope::Close { conn: rc, code, reason };
                        let _ = self.store.publish(&holder, &env.encode()).await;
                    } else if self.held.remove(&conn).is_some() {
                        self.zones.forget(conn);
                        self.welcomed.remove(&conn);
                        self.out.push_back(NodeOutput::Close { conn, code, reason });
                    }
                }
            }
        }
    }
}

fn is_welcome(frame: &str) -> bool {
    frame.starts_with(r#"{"type":"welcome""#)
}
