//! [`Instance`]: one coordinator instance of a cluster, as a sans-IO machine around a
//! [`Coordinator`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::coordinator::{ConnId, Coordinator, Identity, Input as CoreInput, Output as CoreOutput};
use crate::sansio::{SansIo, TimerKind, TimerTable};
use crate::time::Instant;
use crate::wire::{
    ClientMessage, ErrorCode, IceServer, PeerId, ServerMessage, WireError, Zone, decode_client,
    encode_server,
};

use super::seats::{SeatSync, SeatWrite};
use super::types::{
    Acquired, Envelope, InstanceId, Lease, OpId, SentKind, StoreFailure, StoreOp, StoreReply,
};

/// Core connection numbers from here on stand for connections held by other instances; an
/// adapter numbers its own from 1 and never gets near.
pub const REMOTE_CONN_BASE: u64 = 1 << 62;

/// Lost zones remembered for a takeback (see `Instance::lost`).
const LOST_ZONES_MAX: usize = 4_096;

/// Frames of one connection that may wait while an earlier one waits for the store.
pub const FRAMES_QUEUED_MAX: usize = 64;

/// How cluster mode behaves; the coordinator's own settings are in its
/// [`Config`](crate::coordinator::Config).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// How long a zone lease lasts unless renewed, in ms (at least 10). Leases are renewed at
    /// half-life and served only until a tenth before their end (the drift margin).
    pub lease_ttl_ms: u64,
    /// How often every owned zone's seats are written whether or not they look changed, in ms.
    pub maintain_interval_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config { lease_ttl_ms: 10_000, maintain_interval_ms: 5_000 }
    }
}

impl Config {
    fn ttl_ms(&self) -> u64 {
        self.lease_ttl_ms.max(10)
    }

    /// The margin for clock drift: a lease is served only until this long before its end.
    pub fn drift_margin_ms(&self) -> u64 {
        self.ttl_ms() / 10
    }

    /// How long after a failed store operation it is tried again, in ms.
    pub fn retry_ms(&self) -> u64 {
        (self.ttl_ms() / 20).clamp(10, 250)
    }
}

/// What the adapter feeds in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// One of this instance's own connections was accepted (`conn` below
    /// [`REMOTE_CONN_BASE`]).
    Connected {
        /// Its number.
        conn: ConnId,
        /// Its identity.
        identity: Identity,
        /// Its STUN/TURN servers.
        ice_servers: Vec<IceServer>,
    },
    /// One text frame from a connection of ours.
    Frame {
        /// The connection.
        conn: ConnId,
        /// The frame.
        bytes: Vec<u8>,
    },
    /// A binary frame: charged to the connection in this instance's core.
    Binary {
        /// The connection.
        conn: ConnId,
    },
    /// A WebSocket control frame: charged like any frame.
    Control {
        /// The connection.
        conn: ConnId,
    },
    /// A connection of ours closed.
    Disconnected {
        /// The connection.
        conn: ConnId,
    },
    /// A connection's credential was revoked and the adapter has closed it: a seat owned here
    /// is given up at once; one owned elsewhere is detached there and waits out its grace.
    Revoked {
        /// The connection.
        conn: ConnId,
        /// Why, for humans.
        reason: String,
    },
    /// One message from this instance's bus channel.
    Bus {
        /// The publishing instance.
        from: InstanceId,
        /// The encoded [`Envelope`].
        payload: Vec<u8>,
    },
    /// The reply to a [`StoreOp`] this instance asked for.
    Store {
        /// The operation's id, from [`Output::Store`].
        id: OpId,
        /// Its result.
        result: Result<StoreReply, StoreFailure>,
    },
    /// Stop: close the core's connections, write the seats, release every lease.
    Shutdown,
}

/// What the adapter must do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Send this text frame on a connection of ours.
    Send {
        /// The connection.
        conn: ConnId,
        /// The frame.
        text: String,
        /// What it is (for metrics and the audit log).
        kind: SentKind,
    },
    /// Close a connection of ours.
    Close {
        /// The connection.
        conn: ConnId,
        /// Why, machine-readable.
        code: ErrorCode,
        /// Why, for humans.
        reason: String,
    },
    /// Run this store operation, then feed its result back as [`Input::Store`] with `id`.
    /// Operations must run in the order they are output (one executor, one at a time): a
    /// `detach` published before an `attach` must arrive before it.
    Store {
        /// The id its reply must carry.
        id: OpId,
        /// The operation.
        op: StoreOp,
    },
}

/// Why an owned zone was given up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LostBecause {
    /// Another instance holds it now (a renewal or a fenced write said so).
    Fenced,
    /// It could not be renewed before its end (minus the drift margin).
    Expired,
}

/// The timers of an instance besides the per-zone lease deadlines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Timer {
    /// Owed `detach`es are published again.
    DetachRetry,
    /// Every owned zone's seats are written.
    Maintain,
}

impl Timer {
    const VALUES: [Timer; 2] = [Timer::DetachRetry, Timer::Maintain];
}

impl TimerKind for Timer {
    const COUNT: usize = Timer::VALUES.len();
    fn index(self) -> usize {
        self as usize
    }
    fn from_index(index: usize) -> Self {
        Timer::VALUES.get(index).copied().unwrap_or(Timer::Maintain)
    }
}

/// Where a held connection's frames are served.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Serving {
    Local,
    /// In no core: its zone's owner missed one of its frames, so what that owner held for it
    /// is being detached. Its next frame places it again and replays its `join`.
    Nowhere,
    Remote(InstanceId),
}

/// A client frame on its way, decoded once.
#[derive(Clone, Debug)]
struct Frame {
    bytes: Vec<u8>,
    decoded: Result<ClientMessage, WireError>,
}

impl Frame {
    fn new(bytes: Vec<u8>) -> Self {
        let decoded = decode_client(&bytes);
        Frame { bytes, decoded }
    }
    fn is_join(&self) -> bool {
        matches!(self.decoded, Ok(ClientMessage::Join { .. }))
    }
    fn is_leave(&self) -> bool {
        matches!(self.decoded, Ok(ClientMessage::Leave))
    }
    fn changes_seats(&self) -> bool {
        matches!(
            self.decoded,
            Ok(ClientMessage::Join { .. }
                | ClientMessage::Leave
                | ClientMessage::UpdateCapabilities { .. })
        )
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

#[derive(Debug)]
struct Held {
    account: Option<PeerId>,
    ice_servers: Vec<IceServer>,
    serving: Serving,
    /// The zone its last `join` named.
    zone: Option<Zone>,
    /// Its last `join`, replayed when it moves to another core.
    last_join: Option<Frame>,
    /// Whether its client has had its `welcome`.
    welcomed: bool,
    /// A frame of it waits for a store reply; later ones queue.
    waiting: bool,
    queue: VecDeque<Frame>,
}

/// A zone this instance holds the lease of.
#[derive(Debug)]
struct Owned {
    lease: Lease,
    /// Until when it is served: the lease's end measured from before the request was sent,
    /// minus the drift margin.
    serve_until: Instant,
    /// When it is renewed next (half-life, or a retry after a failure).
    renew_at: Instant,
    renewing: bool,
    /// Its seat records are being read after the takeover: frames for it wait.
    restoring: bool,
    /// Seat operations in flight.
    seat_ops: usize,
    /// What is stored is unknown (a write failed): read it again before the next write.
    resync: bool,
    /// After a failed seat operation, not before this.
    seat_retry_at: Option<Instant>,
}

/// What a store reply is awaited for.
#[derive(Debug)]
enum Pending {
    Acquire {
        zone: Zone,
        sent_at: Instant,
    },
    Renew {
        zone: Zone,
        epoch: u64,
        sent_at: Instant,
    },
    TakeOverSeats {
        zone: Zone,
        epoch: u64,
    },
    ResyncSeats {
        zone: Zone,
        epoch: u64,
    },
    SeatWrite {
        zone: Zone,
        epoch: u64,
    },
    /// A frame published to the owner believed to hold its zone, checked in the same step.
    FrameToOwner {
        conn: ConnId,
        zone: Zone,
        frame: Frame,
    },
    /// A frame published to the owner the zone was just routed to.
    FrameToRemote {
        conn: ConnId,
        is_join: bool,
    },
    /// One of the core's messages for a connection another instance holds.
    Deliver {
        local: ConnId,
    },
    Detach {
        conn: ConnId,
        owner: InstanceId,
    },
    /// Nothing waits for it.
    Nothing,
}

/// An owed `detach`: an owner that did not hear a connection leave.
#[derive(Debug)]
struct OwedDetach {
    owner: InstanceId,
    since: Instant,
    in_flight: bool,
}

/// How a frame's zone is served, as the store said.
#[derive(Clone, Debug)]
enum Route {
    Local,
    Remote(InstanceId),
    Refused(String),
}

/// One coordinator instance in cluster mode: its [`Coordinator`], the connections it holds,
/// the zone leases it owns, and what travels between it, the store and the other instances.
///
/// A connection starts in this instance's core (which sends `welcome`). Its `join` names a
/// zone; the zone is served here if this instance holds its lease, else by its owner over the
/// bus ([`Envelope`]s). A zone nobody holds is taken ([`StoreOp::Acquire`]): a new lease's seat
/// records are read and restored into the core before any frame for it is fed. Leases renew at
/// half-life, are served until their end minus a drift margin, and are given up (sessions
/// dropped silently) when fenced or expired. After every change of seats, owned zones' seat
/// records are written, fenced by their leases. Whenever a connection moves to another core,
/// its last `join` is replayed there so the client resumes its seat.
///
/// Drive it as [`SansIo`] says; execute [`Output::Store`] operations in order and feed each
/// reply back with its [`OpId`]. Frames of one connection that arrive while an earlier one
/// waits for the store queue behind it (at most [`FRAMES_QUEUED_MAX`]).
#[derive(Debug)]
pub struct Instance {
    me: InstanceId,
    config: Config,
    core: Coordinator,
    held: BTreeMap<ConnId, Held>,
    owned: BTreeMap<Zone, Owned>,
    /// Zones being acquired (or restored), with the frames that wait for them.
    acquiring: BTreeMap<Zone, Vec<(ConnId, Frame)>>,
    /// Owner side: core numbers for connections held elsewhere, both ways.
    remote_by_local: BTreeMap<ConnId, (InstanceId, ConnId)>,
    remote_by_holder: BTreeMap<(InstanceId, ConnId), ConnId>,
    next_remote: u64,
    /// The zone each core connection last joined, to know which zone's seats an event touches.
    core_zones: BTreeMap<ConnId, Zone>,
    seats: SeatSync,
    dirty: BTreeSet<Zone>,
    pending: BTreeMap<OpId, Pending>,
    next_op: u64,
    owed_detach: BTreeMap<ConnId, OwedDetach>,
    /// Zones this instance lost, with the lease's epoch and who was seated at that moment (and
    /// until when in grace, for seats in grace): if it takes one back at the next epoch (nobody
    /// held it in between), a stored record of anyone else is one it could not remove (the
    /// store was down) and is not restored, and a seat in grace keeps its deadline.
    lost: BTreeMap<Zone, (u64, BTreeMap<PeerId, Option<Instant>>)>,
    timers: TimerTable<Timer>,
    out: VecDeque<Output>,
    shutting_down: bool,
}

impl Instance {
    /// Instance `me` around `core`, created at `now`.
    pub fn new(me: InstanceId, config: Config, core: Coordinator, now: Instant) -> Self {
        let mut timers = TimerTable::default();
        timers.set(Timer::Maintain, now.add_millis(config.maintain_interval_ms.max(1)));
        Instance {
            me,
            config,
            core,
            held: BTreeMap::new(),
            owned: BTreeMap::new(),
            acquiring: BTreeMap::new(),
            remote_by_local: BTreeMap::new(),
            remote_by_holder: BTreeMap::new(),
            next_remote: REMOTE_CONN_BASE,
            core_zones: BTreeMap::new(),
            seats: SeatSync::default(),
            dirty: BTreeSet::new(),
            pending: BTreeMap::new(),
            next_op: 1,
            owed_detach: BTreeMap::new(),
            lost: BTreeMap::new(),
            timers,
            out: VecDeque::new(),
            shutting_down: false,
        }
    }

    /// This instance's id.
    pub fn id(&self) -> &InstanceId {
        &self.me
    }

    /// Its cluster settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The local core (views, REST, metrics).
    pub fn core(&self) -> &Coordinator {
        &self.core
    }

    /// The zones this instance holds a lease of, with the lease's epoch.
    pub fn owned_zones(&self) -> BTreeMap<Zone, u64> {
        self.owned.iter().map(|(z, o)| (z.clone(), o.lease.epoch)).collect()
    }

    /// Whether this instance serves `zone` at `now` (holds an unexpired lease, restored).
    pub fn serves(&self, zone: &Zone, now: Instant) -> bool {
        self.owned.get(zone).is_some_and(|o| !o.restoring && now < o.serve_until)
    }

    /// Connections this instance holds (its own WebSockets).
    pub fn held_count(&self) -> usize {
        self.held.len()
    }

    /// Store operations whose reply has not come yet.
    pub fn store_ops_pending(&self) -> usize {
        self.pending.len()
    }

    /// Which instance holds core connection `conn`, and its number there, if it is a remote
    /// one (for tests and views).
    pub fn remote_holder(&self, conn: ConnId) -> Option<&(InstanceId, ConnId)> {
        self.remote_by_local.get(&conn)
    }

    fn store(&mut self, op: StoreOp, pending: Pending) -> OpId {
        let id = OpId(self.next_op);
        self.next_op += 1;
        self.pending.insert(id, pending);
        self.out.push_back(Output::Store { id, op });
        id
    }

    fn publish(&mut self, to: &InstanceId, env: &Envelope, pending: Pending) {
        self.store(StoreOp::Publish { to: to.clone(), payload: env.encode() }, pending);
    }

    // ---- own connections ---------------------------------------------------------------

    fn connected(&mut self, now: Instant, conn: ConnId, identity: Identity, ice: Vec<IceServer>) {
        if conn.0 >= REMOTE_CONN_BASE || self.shutting_down {
            let (code, reason) = if self.shutting_down {
                (ErrorCode::ShuttingDown, "coordinator is shutting down")
            } else {
                (ErrorCode::Internal, "connection number out of range")
            };
            self.out.push_back(Output::Close { conn, code, reason: reason.to_owned() });
            return;
        }
        let account = match &identity {
            Identity::Account(p) => Some(p.clone()),
            Identity::Anonymous => None,
        };
        self.held.insert(
            conn,
            Held {
                account: account.clone(),
                ice_servers: ice.clone(),
                serving: Serving::Local,
                zone: None,
                last_join: None,
                welcomed: false,
                waiting: false,
                queue: VecDeque::new(),
            },
        );
        self.core.handle_input(
            now,
            CoreInput::Connected { conn, identity, ice_servers: ice, origin: None },
        );
        self.touch_peer(account.as_ref());
        self.drain(now);
    }

    fn frame(&mut self, now: Instant, conn: ConnId, bytes: Vec<u8>) {
        let Some(held) = self.held.get_mut(&conn) else { return };
        if held.queue.len() >= FRAMES_QUEUED_MAX {
            self.refuse(conn, "too many frames wait for the cluster store");
            return;
        }
        held.queue.push_back(Frame::new(bytes));
        self.pump(now, conn);
    }

    /// Processes `conn`'s queued frames until one waits for the store.
    fn pump(&mut self, now: Instant, conn: ConnId) {
        loop {
            let Some(held) = self.held.get_mut(&conn) else { return };
            if held.waiting {
                return;
            }
            let Some(frame) = held.queue.pop_front() else { return };
            self.process(now, conn, frame);
        }
    }

    fn process(&mut self, now: Instant, conn: ConnId, frame: Frame) {
        let Some(held) = self.held.get_mut(&conn) else { return };
        if let Ok(ClientMessage::Join { zone, .. }) = &frame.decoded {
            held.zone = Some(zone.clone());
            held.last_join = Some(frame.clone());
        }
        // After a `leave` there is no seat to resume: a later move must not re-join.
        if frame.is_leave() {
            held.last_join = None;
        }
        let Some(zone) = held.zone.clone() else {
            self.feed_local(now, conn, frame);
            return;
        };
        // A frame for a remote owner goes straight there while it holds the zone and listens
        // (checked and sent in one store round trip).
        if let Serving::Remote(owner) = held.serving.clone() {
            held.waiting = true;
            let env = Envelope::Frame { conn, frame: frame.text() };
            let op = StoreOp::PublishToOwner { zone: zone.clone(), owner, payload: env.encode() };
            self.store(op, Pending::FrameToOwner { conn, zone, frame });
            return;
        }
        self.route(now, conn, zone, frame);
    }

    /// Serves `frame` where `zone` is served, taking the zone if nobody holds it.
    fn route(&mut self, now: Instant, conn: ConnId, zone: Zone, frame: Frame) {
        if let Some(o) = self.owned.get(&zone)
            && !o.restoring
        {
            if now < o.serve_until {
                self.resume(now, conn, frame, Route::Local);
                return;
            }
            self.lose_zone(now, &zone, LostBecause::Expired);
        }
        if let Some(held) = self.held.get_mut(&conn) {
            held.waiting = true;
        }
        if let Some(waiting) = self.acquiring.get_mut(&zone) {
            waiting.push((conn, frame));
            return;
        }
        self.acquiring.insert(zone.clone(), vec![(conn, frame)]);
        let ttl_ms = self.config.ttl_ms();
        self.store(
            StoreOp::Acquire { zone: zone.clone(), ttl_ms },
            Pending::Acquire { zone, sent_at: now },
        );
    }

    /// Goes on with a frame whose zone's route is known.
    fn resume(&mut self, now: Instant, conn: ConnId, frame: Frame, route: Route) {
        let Some(held) = self.held.get_mut(&conn) else { return };
        held.waiting = false;
        let is_join = frame.is_join();
        match route {
            Route::Local => {
                let moved = self.place(now, conn, Serving::Local);
                if moved && !is_join {
                    self.replay_join(now, conn);
                }
                self.feed_local(now, conn, frame);
            }
            Route::Remote(owner) => {
                let moved = self.place(now, conn, Serving::Remote(owner.clone()));
                if moved && !is_join {
                    self.replay_join(now, conn);
                }
                if let Some(held) = self.held.get_mut(&conn) {
                    held.waiting = true;
                }
                let env = Envelope::Frame { conn, frame: frame.text() };
                self.publish(&owner, &env, Pending::FrameToRemote { conn, is_join });
            }
            // A `leave` needs no owner: this core forgets what it told the client (its seat
            // went with the zone), so taking the zone back later cannot seat it again.
            Route::Refused(_) if frame.is_leave() => {
                self.place(now, conn, Serving::Local);
                self.feed_local(now, conn, frame);
            }
            Route::Refused(why) => self.refuse_frame(conn, is_join, &why),
        }
    }

    /// Refuses a frame; a refused `join` is forgotten, so a later move of the connection does
    /// not replay it (the client was told it is not joined and will send its own again).
    fn refuse_frame(&mut self, conn: ConnId, is_join: bool, why: &str) {
        if is_join && let Some(held) = self.held.get_mut(&conn) {
            held.last_join = None;
        }
        self.refuse(conn, why);
    }

    fn refuse(&mut self, conn: ConnId, why: &str) {
        let msg =
            ServerMessage::error(ErrorCode::ZoneUnavailable, format!("zone unavailable: {why}"));
        self.out.push_back(Output::Send { conn, text: encode_server(&msg), kind: SentKind::Other });
    }

    fn feed_local(&mut self, now: Instant, conn: ConnId, frame: Frame) {
        self.note_frame(conn, &frame);
        self.core.handle_decoded_frame(now, conn, frame.decoded);
        self.drain(now);
    }

    /// Feeds the connection's last `join` to the core or owner it was just placed with.
    fn replay_join(&mut self, now: Instant, conn: ConnId) {
        let Some(held) = self.held.get(&conn) else { return };
        let Some(join) = held.last_join.clone() else { return };
        match held.serving.clone() {
            Serving::Local => self.feed_local(now, conn, join),
            Serving::Remote(owner) => {
                let env = Envelope::Frame { conn, frame: join.text() };
                self.publish(&owner, &env, Pending::Nothing);
            }
            Serving::Nowhere => {}
        }
    }

    /// Moves `conn` to be served by `to`; returns whether it moved.
    fn place(&mut self, now: Instant, conn: ConnId, to: Serving) -> bool {
        let Some(held) = self.held.get_mut(&conn) else { return false };
        if held.serving == to {
            return false;
        }
        let from = std::mem::replace(&mut held.serving, to.clone());
        let (account, ice_servers) = (held.account.clone(), held.ice_servers.clone());
        match from {
            Serving::Local => {
                self.forget_core_conn(conn);
                self.core.handle_input(now, CoreInput::Disconnected { conn });
                self.drain(now);
            }
            Serving::Remote(owner) => self.detach_remote(now, conn, owner),
            Serving::Nowhere => {}
        }
        match to {
            Serving::Local => {
                let identity = account.clone().map_or(Identity::Anonymous, Identity::Account);
                self.core.handle_input(
                    now,
                    CoreInput::Connected { conn, identity, ice_servers, origin: None },
                );
                self.touch_peer(account.as_ref());
                self.drain(now);
            }
            Serving::Remote(owner) => {
                // A `detach` still owed to this owner goes first (operations run in order);
                // one in flight arrives first anyway, and must not be retried after the
                // `attach`, which it would undo.
                if let Some(owed) = self.owed_detach.remove(&conn)
                    && !owed.in_flight
                    && owed.owner == owner
                {
                    self.publish(&owner, &Envelope::Detach { conn }, Pending::Nothing);
                }
                let env = Envelope::Attach { conn, account, ice_servers };
                self.publish(&owner, &env, Pending::Nothing);
            }
            Serving::Nowhere => {}
        }
        true
    }

    /// Tells `owner` that `conn` is no longer served there; retried until heard.
    fn detach_remote(&mut self, now: Instant, conn: ConnId, owner: InstanceId) {
        self.owed_detach
            .insert(conn, OwedDetach { owner: owner.clone(), since: now, in_flight: true });
        self.publish(
            &owner,
            &Envelope::Detach { conn },
            Pending::Detach { conn, owner: owner.clone() },
        );
    }

    fn release(&mut self, now: Instant, conn: ConnId, revoked: Option<String>) {
        let Some(held) = self.held.remove(&conn) else { return };
        match held.serving {
            Serving::Local => {
                self.forget_core_conn(conn);
                let input = match revoked {
                    Some(reason) => CoreInput::Revoke { conn, reason },
                    None => CoreInput::Disconnected { conn },
                };
                self.core.handle_input(now, input);
                self.drain(now);
            }
            Serving::Remote(owner) => self.detach_remote(now, conn, owner),
            Serving::Nowhere => {}
        }
    }

    // ---- the bus -----------------------------------------------------------------------

    fn bus(&mut self, now: Instant, from: InstanceId, payload: &[u8]) {
        let Ok(env) = Envelope::decode(payload) else { return };
        match env {
            Envelope::Attach { conn, account, ice_servers } => {
                let local = self.attach_remote(&from, conn);
                let identity = account.clone().map_or(Identity::Anonymous, Identity::Account);
                self.core.handle_input(
                    now,
                    CoreInput::Connected { conn: local, identity, ice_servers, origin: None },
                );
                self.touch_peer(account.as_ref());
            }
            Envelope::Frame { conn, frame } => {
                match self.remote_by_holder.get(&(from.clone(), conn)).copied() {
                    Some(local) => {
                        let frame = Frame::new(frame.into_bytes());
                        self.note_frame(local, &frame);
                        self.core.handle_decoded_frame(now, local, frame.decoded);
                    }
                    None => {
                        // Not attached here (the zone changed hands, or this instance
                        // restarted): the holder closes it, its client comes back.
                        let reason = "zone owner changed; reconnect".to_owned();
                        let env =
                            Envelope::Close { conn, code: ErrorCode::ZoneUnavailable, reason };
                        self.publish(&from, &env, Pending::Nothing);
                    }
                }
            }
            Envelope::Detach { conn } => {
                if let Some(local) = self.remote_by_holder.remove(&(from, conn)) {
                    self.remote_by_local.remove(&local);
                    self.forget_core_conn(local);
                    self.core.handle_input(now, CoreInput::Disconnected { conn: local });
                }
            }
            Envelope::Deliver { conn, frame, kind } => {
                if self.placed_at(conn, &from) {
                    self.out.push_back(Output::Send { conn, text: frame, kind });
                }
            }
            Envelope::Close { conn, code, reason } => {
                if self.placed_at(conn, &from) {
                    self.held.remove(&conn);
                    self.out.push_back(Output::Close { conn, code, reason });
                }
            }
        }
        self.drain(now);
    }

    fn placed_at(&self, conn: ConnId, owner: &InstanceId) -> bool {
        self.held.get(&conn).is_some_and(|h| h.serving == Serving::Remote(owner.clone()))
    }

    fn attach_remote(&mut self, holder: &InstanceId, conn: ConnId) -> ConnId {
        if let Some(local) = self.remote_by_holder.get(&(holder.clone(), conn)) {
            return *local;
        }
        let local = ConnId(self.next_remote);
        self.next_remote += 1;
        self.remote_by_holder.insert((holder.clone(), conn), local);
        self.remote_by_local.insert(local, (holder.clone(), conn));
        local
    }

    fn forget_remote(&mut self, local: ConnId) -> Option<(InstanceId, ConnId)> {
        let remote = self.remote_by_local.remove(&local)?;
        self.remote_by_holder.remove(&remote);
        Some(remote)
    }

    // ---- the core's outputs ------------------------------------------------------------

    fn drain(&mut self, now: Instant) {
        let _ = now;
        while let Some(out) = self.core.poll_output() {
            match out {
                CoreOutput::Send { conn, msg } => {
                    let welcome = matches!(msg, ServerMessage::Welcome { .. });
                    if let Some((holder, rc)) = self.remote_by_local.get(&conn).cloned() {
                        // The holder's own core welcomed its client already.
                        if !welcome {
                            let env = Envelope::Deliver {
                                conn: rc,
                                frame: encode_server(&msg),
                                kind: SentKind::of(&msg),
                            };
                            self.publish(&holder, &env, Pending::Deliver { local: conn });
                        }
                    } else if let Some(held) = self.held.get_mut(&conn) {
                        if welcome && std::mem::replace(&mut held.welcomed, true) {
                            continue;
                        }
                        let kind = SentKind::of(&msg);
                        self.out.push_back(Output::Send { conn, text: encode_server(&msg), kind });
                    }
                }
                CoreOutput::Close { conn, code, reason } => {
                    if let Some((holder, rc)) = self.forget_remote(conn) {
                        // At shutdown the holder keeps its client and moves it to the next
                        // owner; otherwise the owner's decision (idle, rate, replaced) holds.
                        if code != ErrorCode::ShuttingDown {
                            let env = Envelope::Close { conn: rc, code, reason };
                            self.publish(&holder, &env, Pending::Nothing);
                        }
                    } else if self.held.remove(&conn).is_some() {
                        self.out.push_back(Output::Close { conn, code, reason });
                    }
                    self.forget_core_conn(conn);
                }
            }
        }
    }

    /// Notes which zone's seats a frame fed to the core (as `conn`) may change.
    fn note_frame(&mut self, conn: ConnId, frame: &Frame) {
        if !frame.changes_seats() {
            return;
        }
        if let Some(zone) = self.core_zones.get(&conn) {
            self.dirty.insert(zone.clone());
        }
        if let Ok(ClientMessage::Join { zone, .. }) = &frame.decoded {
            self.dirty.insert(zone.clone());
            self.core_zones.insert(conn, zone.clone());
        }
    }

    fn forget_core_conn(&mut self, conn: ConnId) {
        if let Some(zone) = self.core_zones.remove(&conn) {
            self.dirty.insert(zone);
        }
    }

    fn touch_peer(&mut self, peer: Option<&PeerId>) {
        if let Some(zone) = peer.and_then(|p| self.core.seat_zone(p)) {
            self.dirty.insert(zone);
        }
    }

    // ---- zones -------------------------------------------------------------------------

    /// Forgets a zone this instance no longer owns: its sessions go without a word (the new
    /// owner speaks for them); its connections move there on their next frame.
    fn lose_zone(&mut self, now: Instant, zone: &Zone, _why: LostBecause) {
        let Some(owned) = self.owned.remove(zone) else { return };
        let core = &self.core;
        let seated: BTreeMap<PeerId, Option<Instant>> = core
            .discover(zone)
            .into_iter()
            .flat_map(|s| s.members)
            .map(|p| {
                let grace = core.seat_grace_until(&p);
                (p, grace)
            })
            .collect();
        if self.lost.len() >= LOST_ZONES_MAX {
            self.lost.pop_first();
        }
        self.lost.insert(zone.clone(), (owned.lease.epoch, seated));
        self.core.handle_input(now, CoreInput::DropZone { zone: zone.clone() });
        self.seats.forget(zone);
        self.drain(now);
    }

    fn store_reply(&mut self, now: Instant, id: OpId, result: Result<StoreReply, StoreFailure>) {
        let Some(pending) = self.pending.remove(&id) else { return };
        match pending {
            Pending::Nothing => {}
            Pending::Acquire { zone, sent_at } => self.acquired(now, zone, sent_at, result),
            Pending::Renew { zone, epoch, sent_at } => {
                let ttl = self.config.ttl_ms();
                let margin = self.config.drift_margin_ms();
                let retry = self.config.retry_ms();
                let Some(o) = self.owned.get_mut(&zone).filter(|o| o.lease.epoch == epoch) else {
                    return;
                };
                o.renewing = false;
                match result {
                    Ok(_) => {
                        o.serve_until = sent_at.add_millis(ttl - margin);
                        o.renew_at = sent_at.add_millis(ttl / 2);
                    }
                    Err(StoreFailure::Fenced) => self.lose_zone(now, &zone, LostBecause::Fenced),
                    Err(_) => o.renew_at = now.add_millis(retry),
                }
            }
            Pending::TakeOverSeats { zone, epoch } => {
                let waiters = self.acquiring.remove(&zone).unwrap_or_default();
                let ours = self.owned.get(&zone).is_some_and(|o| o.lease.epoch == epoch);
                if !ours {
                    for (conn, frame) in waiters {
                        self.resume(now, conn, frame, Route::Refused("zone lost".to_owned()));
                        self.pump(now, conn);
                    }
                    return;
                }
                let records = match result {
                    Ok(StoreReply::Seats(records)) => Some(records),
                    _ => None,
                };
                // Taken back with nobody in between: the records are this instance's own, and
                // one of a seat that had ended here is stale (its removal was not written).
                let seated = self
                    .lost
                    .remove(&zone)
                    .filter(|(lost_epoch, _)| lost_epoch.checked_add(1) == Some(epoch))
                    .map(|(_, seated)| seated);
                let seats = records
                    .iter()
                    .flatten()
                    .filter_map(|stored| {
                        let r = &stored.record;
                        let mut seat = r.restored();
                        // A disconnected player's record lives in the store only for what is
                        // left of its grace (its TTL): the seat gets no more than that, so a
                        // session whose members are gone ends within one timeout even if nobody
                        // could take its zone over for a while (seed 203915). Counted from the
                        // reply, it errs by the reply's transit time at most.
                        if r.connected_via.is_none() {
                            seat.grace_until =
                                stored.grace_left_ms.map(|left| now.add_millis(left));
                        }
                        if let Some(seated) = &seated {
                            let mine = *seated.get(&r.peer_id)?;
                            seat.grace_until = match (seat.grace_until, mine) {
                                (Some(a), Some(b)) => Some(a.min(b)),
                                (a, b) => a.or(b),
                            };
                        }
                        Some(seat)
                    })
                    .collect();
                self.core.handle_input(now, CoreInput::RestoreSeats { zone: zone.clone(), seats });
                if let Some(o) = self.owned.get_mut(&zone) {
                    o.restoring = false;
                    o.resync = records.is_none();
                }
                if let Some(records) = records {
                    self.seats.adopt(&zone, records.into_iter().map(|s| s.record).collect());
                }
                self.dirty.insert(zone.clone());
                self.drain(now);
                for (conn, frame) in waiters {
                    self.resume(now, conn, frame, Route::Local);
                    self.pump(now, conn);
                }
            }
            Pending::ResyncSeats { zone, epoch } => {
                let retry = self.config.retry_ms();
                let Some(o) = self.owned.get_mut(&zone).filter(|o| o.lease.epoch == epoch) else {
                    return;
                };
                o.seat_ops = o.seat_ops.saturating_sub(1);
                match result {
                    Ok(StoreReply::Seats(records)) => {
                        o.resync = false;
                        self.seats.adopt(&zone, records.into_iter().map(|s| s.record).collect());
                    }
                    _ => o.seat_retry_at = Some(now.add_millis(retry)),
                }
                self.dirty.insert(zone);
            }
            Pending::SeatWrite { zone, epoch } => {
                let retry = self.config.retry_ms();
                let Some(o) = self.owned.get_mut(&zone).filter(|o| o.lease.epoch == epoch) else {
                    return;
                };
                o.seat_ops = o.seat_ops.saturating_sub(1);
                match result {
                    Ok(_) => {}
                    Err(StoreFailure::Fenced) => self.lose_zone(now, &zone, LostBecause::Fenced),
                    Err(_) => {
                        o.resync = true;
                        o.seat_retry_at = Some(now.add_millis(retry));
                        self.dirty.insert(zone);
                    }
                }
            }
            Pending::FrameToOwner { conn, zone, frame } => {
                if !self.held.contains_key(&conn) {
                    return; // closed meanwhile: nothing to route
                }
                if matches!(result, Ok(StoreReply::PublishedToOwner(Some(n))) if n > 0) {
                    if let Some(held) = self.held.get_mut(&conn) {
                        held.waiting = false;
                    }
                } else {
                    self.route(now, conn, zone, frame);
                }
                self.pump(now, conn);
            }
            Pending::FrameToRemote { conn, is_join } => {
                let refused = match result {
                    Ok(StoreReply::Published(n)) if n > 0 => None,
                    Ok(_) => Some("the zone's owner does not answer".to_owned()),
                    Err(e) => Some(e.to_string()),
                };
                if let Some(held) = self.held.get_mut(&conn) {
                    held.waiting = false;
                }
                if let Some(why) = refused {
                    // The owner missed a frame (a `leave`, say): what it holds for this
                    // connection is stale. It is detached there (retried until heard) and
                    // the next frame attaches it afresh, replaying its `join`.
                    self.place(now, conn, Serving::Nowhere);
                    self.refuse_frame(conn, is_join, &why);
                }
                self.pump(now, conn);
            }
            Pending::Deliver { local } => {
                if !matches!(result, Ok(StoreReply::Published(n)) if n > 0)
                    && self.forget_remote(local).is_some()
                {
                    // The holder missed a message: its client's view is stale. The connection
                    // leaves this core (its seat waits in grace); its next frame finds it
                    // unknown here and the holder is told to close it, so the client comes
                    // back and resumes the seat with the whole session.
                    self.forget_core_conn(local);
                    self.core.handle_input(now, CoreInput::Disconnected { conn: local });
                    self.drain(now);
                }
            }
            Pending::Detach { conn, owner } => {
                let heard = matches!(result, Ok(StoreReply::Published(n)) if n > 0);
                let Some(owed) = self.owed_detach.get_mut(&conn).filter(|o| o.owner == owner)
                else {
                    return;
                };
                if heard {
                    self.owed_detach.remove(&conn);
                } else {
                    owed.in_flight = false;
                    if self.timers.get(Timer::DetachRetry).is_none() {
                        self.timers.set(Timer::DetachRetry, now.add_millis(self.config.retry_ms()));
                    }
                }
            }
        }
    }

    fn acquired(
        &mut self,
        now: Instant,
        zone: Zone,
        sent_at: Instant,
        result: Result<StoreReply, StoreFailure>,
    ) {
        let route = match result {
            Ok(StoreReply::Acquired(Acquired::Owned(lease))) if !self.shutting_down => {
                let ttl = self.config.ttl_ms();
                // Whatever this core still holds of the zone is older than the records.
                self.core.handle_input(now, CoreInput::DropZone { zone: zone.clone() });
                self.seats.forget(&zone);
                self.drain(now);
                let epoch = lease.epoch;
                self.owned.insert(
                    zone.clone(),
                    Owned {
                        lease,
                        serve_until: sent_at.add_millis(ttl - self.config.drift_margin_ms()),
                        renew_at: sent_at.add_millis(ttl / 2),
                        renewing: false,
                        restoring: true,
                        seat_ops: 0,
                        resync: false,
                        seat_retry_at: None,
                    },
                );
                // The frames keep waiting until the seats are restored.
                self.store(
                    StoreOp::ReadSeats { zone: zone.clone() },
                    Pending::TakeOverSeats { zone, epoch },
                );
                return;
            }
            Ok(StoreReply::Acquired(Acquired::Owned(lease))) => {
                // Taken while shutting down: give it straight back.
                self.store(StoreOp::Release { lease }, Pending::Nothing);
                Route::Refused("coordinator is shutting down".to_owned())
            }
            Ok(StoreReply::Acquired(Acquired::HeldBy(holder))) if holder.owner == self.me => {
                Route::Refused(
                    "the store names this instance as owner of a lease it lost".to_owned(),
                )
            }
            Ok(StoreReply::Acquired(Acquired::HeldBy(holder))) => Route::Remote(holder.owner),
            Ok(_) => Route::Refused("the store answered out of turn".to_owned()),
            Err(e) => Route::Refused(format!("cannot be taken while the cluster store fails: {e}")),
        };
        for (conn, frame) in self.acquiring.remove(&zone).unwrap_or_default() {
            self.resume(now, conn, frame, route.clone());
            self.pump(now, conn);
        }
    }

    /// Writes what changed in the owned zones' seats, fenced by their leases.
    fn sync_seats(&mut self, now: Instant) {
        let zones: Vec<Zone> = self.dirty.iter().cloned().collect();
        for zone in zones {
            let Some(o) = self.owned.get_mut(&zone) else {
                self.dirty.remove(&zone);
                continue;
            };
            if o.restoring || o.seat_ops > 0 || o.seat_retry_at.is_some_and(|t| now < t) {
                continue;
            }
            o.seat_retry_at = None;
            self.dirty.remove(&zone);
            let (lease, resync) = (o.lease.clone(), o.resync);
            if resync {
                o.seat_ops = 1;
                let epoch = lease.epoch;
                self.store(
                    StoreOp::ReadSeats { zone: zone.clone() },
                    Pending::ResyncSeats { zone, epoch },
                );
                continue;
            }
            let sessions = self.core.discover(&zone);
            let core = &self.core;
            let remote = &self.remote_by_local;
            let me = &self.me;
            let records = SeatSync::records(
                &zone,
                &sessions,
                |p| core.seat_capabilities(p),
                |p| {
                    let conn = core.seat_connection(p)?;
                    Some(remote.get(&conn).map_or_else(|| me.clone(), |(h, _)| h.clone()))
                },
            );
            let writes = self.seats.diff(&zone, records);
            if let Some(o) = self.owned.get_mut(&zone) {
                o.seat_ops += writes.len();
            }
            for write in writes {
                let op = match write {
                    SeatWrite::Put(seat) => {
                        // A disconnected player's record carries its grace, so the store
                        // forgets it when the grace ends even if this instance cannot remove
                        // it then (crashed, cut off, or the store was down).
                        let grace_until = if seat.connected_via.is_none() {
                            self.core.seat_grace_until(&seat.peer_id)
                        } else {
                            None
                        };
                        StoreOp::PutSeat { lease: lease.clone(), seat, grace_until }
                    }
                    SeatWrite::Remove { peer, .. } => {
                        StoreOp::RemoveSeat { lease: lease.clone(), peer }
                    }
                };
                self.store(op, Pending::SeatWrite { zone: zone.clone(), epoch: lease.epoch });
            }
        }
    }

    fn mark_all_dirty(&mut self) {
        self.dirty.extend(self.owned.keys().cloned());
    }

    fn shutdown(&mut self, now: Instant) {
        if self.shutting_down {
            return;
        }
        self.shutting_down = true;
        self.core.handle_input(now, CoreInput::Shutdown);
        self.drain(now);
        self.mark_all_dirty();
        for o in self.owned.values_mut() {
            o.seat_retry_at = None;
        }
        self.sync_seats(now);
        for (_, o) in std::mem::take(&mut self.owned) {
            self.store(StoreOp::Release { lease: o.lease }, Pending::Nothing);
        }
        let placed: Vec<(ConnId, Serving)> =
            self.held.iter().map(|(c, h)| (*c, h.serving.clone())).collect();
        for (conn, serving) in placed {
            if serving == Serving::Local {
                continue;
            }
            self.held.remove(&conn);
            if let Serving::Remote(owner) = serving {
                self.publish(&owner, &Envelope::Detach { conn }, Pending::Nothing);
            }
            self.out.push_back(Output::Close {
                conn,
                code: ErrorCode::ShuttingDown,
                reason: "coordinator is shutting down".to_owned(),
            });
        }
    }

    fn retry_detaches(&mut self, now: Instant) {
        let give_up_ms = self.config.ttl_ms().saturating_mul(2);
        let due: Vec<ConnId> = self.owed_detach.keys().copied().collect();
        for conn in due {
            let Some(owed) = self.owed_detach.get_mut(&conn) else { continue };
            if owed.in_flight {
                continue;
            }
            // Its owner has surely lost the zone by now (the lease ran out twice over): the
            // seat is in grace at the next owner.
            if now.millis_since(owed.since) > give_up_ms {
                self.owed_detach.remove(&conn);
                continue;
            }
            owed.in_flight = true;
            let owner = owed.owner.clone();
            self.publish(
                &owner,
                &Envelope::Detach { conn },
                Pending::Detach { conn, owner: owner.clone() },
            );
        }
    }
}

impl SansIo for Instance {
    type Input = Input;
    type Output = Output;

    fn handle_input(&mut self, now: Instant, input: Input) {
        match input {
            Input::Connected { conn, identity, ice_servers } => {
                self.connected(now, conn, identity, ice_servers);
            }
            Input::Frame { conn, bytes } => self.frame(now, conn, bytes),
            Input::Binary { conn } => {
                self.core.handle_input(now, CoreInput::Binary { conn });
                self.drain(now);
            }
            Input::Control { conn } => {
                self.core.handle_input(now, CoreInput::Control { conn });
                self.drain(now);
            }
            Input::Disconnected { conn } => self.release(now, conn, None),
            Input::Revoked { conn, reason } => self.release(now, conn, Some(reason)),
            Input::Bus { from, payload } => self.bus(now, from, &payload),
            Input::Store { id, result } => self.store_reply(now, id, result),
            Input::Shutdown => self.shutdown(now),
        }
        if !self.shutting_down {
            self.sync_seats(now);
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.core.poll_timeout().is_some_and(|t| t <= now) {
            self.core.handle_timeout(now);
            self.mark_all_dirty();
            self.drain(now);
        }
        let zones: Vec<Zone> = self.owned.keys().cloned().collect();
        for zone in zones {
            let Some(o) = self.owned.get_mut(&zone) else { continue };
            if now >= o.serve_until {
                self.lose_zone(now, &zone, LostBecause::Expired);
            } else if !o.renewing && now >= o.renew_at {
                o.renewing = true;
                let (lease, epoch) = (o.lease.clone(), o.lease.epoch);
                let ttl_ms = self.config.ttl_ms();
                self.store(
                    StoreOp::Renew { lease, ttl_ms },
                    Pending::Renew { zone, epoch, sent_at: now },
                );
            }
        }
        for timer in self.timers.expire(now) {
            match timer {
                Timer::DetachRetry => {
                    self.retry_detaches(now);
                    if self.owed_detach.values().any(|o| !o.in_flight) {
                        self.timers.set(Timer::DetachRetry, now.add_millis(self.config.retry_ms()));
                    }
                }
                Timer::Maintain => {
                    self.mark_all_dirty();
                    let every = self.config.maintain_interval_ms.max(1);
                    self.timers.set(Timer::Maintain, now.add_millis(every));
                }
            }
        }
        if !self.shutting_down {
            self.sync_seats(now);
        }
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let leases = self.owned.values().flat_map(|o| {
            let renew = (!o.renewing).then_some(o.renew_at);
            let seats = o.seat_retry_at.filter(|_| self.dirty.contains(&o.lease.zone));
            [Some(o.serve_until), renew, seats]
        });
        [self.core.poll_timeout(), self.timers.next_deadline()]
            .into_iter()
            .chain(leases)
            .flatten()
            .min()
    }
}
