//! The coordinator's state and transitions.
//!
//! Identity bookkeeping: `live` maps each identity to its one connection, `seats` each identity
//! to its one session. A seat is attached to the identity's connection as soon as that identity
//! is live again (at `Connected` for accounts, at the first `join` for anonymous connections), so
//! a reconnect inside the grace period is invisible to the other members.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::IpAddr;

use super::config::Config;
use super::deadlines::Deadlines;
use super::rate::{Limiter, Strike};
use super::session::{Seat, SeatState, Session};
use super::{ConnId, Identity, Input, Output, Placement, RestoredSeat, SessionView, Stats};
use crate::rng::Rng;
use crate::time::Instant;
use crate::wire::{
    ANONYMOUS_PREFIX, Capabilities, ClientMessage, ErrorCode, IceServer, PROTOCOL_VERSION, PeerId,
    PeerLeftReason, ServerMessage, SessionId, SessionKey, WireError, Zone, decode_client,
};

/// Why the coordinator refused a frame; each maps to the `error` code sent back.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// The frame could not be decoded.
    #[error("{0}")]
    Undecodable(WireError),
    /// A binary frame: the protocol is JSON text.
    #[error("binary frames are not accepted")]
    BinaryFrame,
    /// An `auth` message on a connection the adapter already authenticated.
    #[error("already authenticated")]
    AlreadyAuthenticated,
    /// `leave` or a relay from a connection that holds no seat.
    #[error("not in a session")]
    NotSeated,
    /// A relay to someone who is not a live member of the sender's session.
    #[error("{to} is not a connected member of your session")]
    RelayOutsideSession {
        /// The requested recipient.
        to: PeerId,
    },
    /// The named session does not exist in that zone.
    #[error("session {session_id} does not exist in zone {zone}")]
    SessionNotFound {
        /// The session asked for.
        session_id: SessionId,
        /// The zone of the join.
        zone: Zone,
    },
    /// The named session has no free seat.
    #[error("session {session_id} is full ({max} players)")]
    SessionFull {
        /// The session asked for.
        session_id: SessionId,
        /// Its seat limit.
        max: usize,
    },
    /// Every session of the zone is full and no new one may be opened.
    #[error("zone {zone} has {max} full sessions")]
    ZoneFull {
        /// The zone.
        zone: Zone,
        /// The session limit per zone.
        max: usize,
    },
    /// The frame arrived over the connection's rate.
    #[error("over the rate limit of {per_s} frames/s")]
    RateLimited {
        /// The sustained rate.
        per_s: u32,
    },
    /// No fresh session id could be drawn (practically unreachable).
    #[error("could not allocate a session id")]
    SessionIdsExhausted,
}

impl Rejection {
    /// The machine-readable code of the `error` reply.
    pub fn code(&self) -> ErrorCode {
        match self {
            Rejection::Undecodable(e) => e.code(),
            Rejection::AlreadyAuthenticated | Rejection::BinaryFrame => ErrorCode::BadValue,
            Rejection::NotSeated | Rejection::RelayOutsideSession { .. } => ErrorCode::NotInSession,
            Rejection::SessionNotFound { .. } => ErrorCode::SessionNotFound,
            Rejection::SessionFull { .. } => ErrorCode::SessionFull,
            Rejection::ZoneFull { .. } => ErrorCode::ZoneFull,
            Rejection::RateLimited { .. } => ErrorCode::RateLimited,
            Rejection::SessionIdsExhausted => ErrorCode::Internal,
        }
    }
}

/// A coordinator timer.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Timer {
    /// The connection sent nothing for `idle_timeout_ms`.
    Idle(ConnId),
    /// The identity's seat grace ends.
    Grace(PeerId),
    /// The session's key is due for rotation.
    Rotate(SessionId),
}

/// One live connection.
#[derive(Clone, Debug)]
pub(crate) struct Conn {
    /// Its identity (generated for anonymous connections until their first join).
    peer: PeerId,
    /// Whether the identity may still be chosen by a `join` (anonymous, before the first join).
    identity_open: bool,
    ice_servers: Vec<IceServer>,
    limiter: Limiter,
    /// The capabilities last reported on this connection.
    capabilities: Option<Capabilities>,
    /// When its last frame arrived. The idle timer is not moved on every frame (that would
    /// cost a deadline-queue update per relayed signal): when it fires it looks here and is
    /// re-armed if the connection was heard from since it was set.
    last_frame_at: Instant,
    /// The address of an anonymous connection (authentication off), for the per-address bound
    /// on seats in grace; `None` for accounts.
    anon_origin: Option<IpAddr>,
    /// The session this connection's client was last told (`session-joined`) it is seated in,
    /// until it leaves. Kept when the zone is dropped: it is what the client still believes,
    /// which decides whether a restored seat may be attached to this connection.
    told: Option<(SessionId, Zone)>,
}

/// The counters of [`Stats`] that are not derived from the state.
#[derive(Clone, Debug, Default)]
struct Counters {
    joins: u64,
    leaves: u64,
    relays: BTreeMap<String, u64>,
    rejects: BTreeMap<ErrorCode, u64>,
    sessions_created: u64,
    sessions_expired: u64,
    host_changes: u64,
    key_rotations: u64,
}

/// Tries at drawing an unused session id before giving up.
const SESSION_ID_ATTEMPTS: usize = 16;

/// `announced_to` of a restored seat: it was announced by another instance, on a connection
/// this one never numbers (adapters count up from 1), so the identity's next `join` here is a
/// resume.
const ANNOUNCED_ELSEWHERE: ConnId = ConnId(u64::MAX);

/// Everything the coordinator knows. Not `Debug`: it holds the key generator.
pub(crate) struct CoordinatorState {
    pub(crate) config: Config,
    rng: Rng,
    pub(crate) conns: BTreeMap<ConnId, Conn>,
    /// Identity -> its one live connection.
    pub(crate) live: BTreeMap<PeerId, ConnId>,
    /// Identity -> the session of its one seat.
    seats: BTreeMap<PeerId, SessionId>,
    sessions: BTreeMap<SessionId, Session>,
    by_zone: BTreeMap<Zone, BTreeSet<SessionId>>,
    pub(crate) deadlines: Deadlines<Timer>,
    pub(crate) outputs: VecDeque<Output>,
    counters: Counters,
    shutting_down: bool,
    /// Seats in grace (exactly those with a `Timer::Grace` armed) and the address of the
    /// anonymous connection that held each, for the bounds of `Config::grace_seats_*`.
    grace: BTreeMap<PeerId, Option<IpAddr>>,
    /// Seats in `grace` per address.
    grace_per_origin: BTreeMap<IpAddr, usize>,
}

impl CoordinatorState {
    pub(crate) fn new(config: Config, rng: Rng) -> Self {
        CoordinatorState {
            config,
            rng,
            conns: BTreeMap::new(),
            live: BTreeMap::new(),
            seats: BTreeMap::new(),
            sessions: BTreeMap::new(),
            by_zone: BTreeMap::new(),
            deadlines: Deadlines::default(),
            outputs: VecDeque::new(),
            counters: Counters::default(),
            shutting_down: false,
            grace: BTreeMap::new(),
            grace_per_origin: BTreeMap::new(),
        }
    }

    // ---- inputs -------------------------------------------------------------------------

    pub(crate) fn handle_input(&mut self, now: Instant, input: Input) {
        match input {
            Input::Connected { conn, identity, ice_servers, origin } => {
                self.on_connected(now, conn, identity, ice_servers, origin)
            }
            Input::Frame { conn, bytes } => self.on_frame(now, conn, &bytes),
            Input::Binary { conn } => {
                if self.charge(now, conn) {
                    self.refuse_frame(now, conn, Rejection::BinaryFrame);
                }
            }
            Input::Control { conn } => {
                self.charge(now, conn);
            }
            Input::Disconnected { conn } => {
                if self.conns.contains_key(&conn) {
                    self.forget_conn(now, conn);
                }
            }
            Input::Shutdown => self.on_shutdown(now),
            Input::RestoreSeats { zone, seats } => self.restore_seats(now, &zone, seats),
            Input::DropZone { zone } => self.drop_zone(&zone),
            Input::Revoke { conn, reason } => self.revoke(conn, reason),
        }
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.deadlines.pop_due(now) {
            match timer {
                Timer::Idle(conn) => {
                    let idle_ms = self.config.idle_timeout_ms;
                    let heard_until =
                        self.conns.get(&conn).map(|c| c.last_frame_at.add_millis(idle_ms));
                    match heard_until {
                        Some(until) if until > now => self.deadlines.set(Timer::Idle(conn), until),
                        _ => {
                            let reason = format!("no frame for {idle_ms} ms");
                            self.close(now, conn, ErrorCode::IdleTimeout, reason);
                        }
                    }
                }
                Timer::Grace(peer) => {
                    self.forget_grace(&peer);
                    self.grace_ended(peer);
                }
                Timer::Rotate(sid) => self.rotate_key(now, sid),
            }
        }
    }

    fn on_connected(
        &mut self,
        now: Instant,
        conn: ConnId,
        identity: Identity,
        ice_servers: Vec<IceServer>,
        origin: Option<IpAddr>,
    ) {
        if self.conns.contains_key(&conn) {
            return; // The adapter never reuses ids; a duplicate is ignored.
        }
        if self.shutting_down {
            self.emit_close(conn, ErrorCode::ShuttingDown, "coordinator is shutting down".into());
            return;
        }
        let (peer, identity_open) = match identity {
            Identity::Account(peer) => (peer, false),
            Identity::Anonymous => {
                match PeerId::new(format!("{ANONYMOUS_PREFIX}{}", self.rng.hex_id(8))) {
                    Ok(peer) => (peer, true),
                    Err(_) => {
                        self.emit_close(conn, ErrorCode::Internal, "no identity".into());
                        return;
                    }
                }
            }
        };
        let limiter = Limiter::new(&self.config.rate_limit, now);
        let state = Conn {
            peer: peer.clone(),
            anon_origin: if identity_open { origin } else { None },
            identity_open,
            ice_servers,
            limiter,
            capabilities: None,
            last_frame_at: now,
            told: None,
        };
        self.conns.insert(conn, state);
        self.deadlines.set(Timer::Idle(conn), now.add_millis(self.config.idle_timeout_ms));
        self.send(
            conn,
            ServerMessage::Welcome {
                peer_id: peer.clone(),
                protocol: PROTOCOL_VERSION,
                server: self.config.server_name.clone(),
                heartbeat_interval_ms: self.config.heartbeat_interval_ms,
                idle_timeout_ms: self.config.idle_timeout_ms,
            },
        );
        self.bind_identity(conn, peer);
    }

    /// Charges one frame of any kind to `conn`'s budget: it counts as activity, and takes a
    /// token. Without a token the frame is a strike (a `rate-limited` error at most once per
    /// second; the close once the strikes are exhausted) and `false` says to drop it.
    fn charge(&mut self, now: Instant, conn: ConnId) -> bool {
        let limit = self.config.rate_limit;
        let Some(c) = self.conns.get_mut(&conn) else {
            return false; // A frame racing its connection's close.
        };
        c.last_frame_at = now;
        if c.limiter.admit(&limit, now) {
            return true;
        }
        let strike = c.limiter.strike(&limit, now);
        if c.limiter.may_send_rate_error(now) {
            self.reject(conn, Rejection::RateLimited { per_s: limit.per_s });
        }
        if strike == Strike::Exhausted {
            self.close(now, conn, ErrorCode::RateLimited, "too many rejected frames".into());
        }
        false
    }

    /// Answers a frame that was admitted but cannot be used: its `error`, and a strike.
    fn refuse_frame(&mut self, now: Instant, conn: ConnId, rejection: Rejection) {
        let limit = self.config.rate_limit;
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let strike = c.limiter.strike(&limit, now);
        self.reject(conn, rejection);
        if strike == Strike::Exhausted {
            self.close(now, conn, ErrorCode::RateLimited, "too many rejected frames".into());
        }
    }

    fn on_frame(&mut self, now: Instant, conn: ConnId, bytes: &[u8]) {
        self.on_decoded(now, conn, decode_client(bytes));
    }

    /// A text frame already decoded by the caller (cluster mode decodes once, to route it).
    pub(crate) fn on_decoded(
        &mut self,
        now: Instant,
        conn: ConnId,
        decoded: Result<ClientMessage, WireError>,
    ) {
        if !self.charge(now, conn) {
            return;
        }
        let msg = match decoded {
            Ok(msg) => msg,
            Err(err) => {
                self.refuse_frame(now, conn, Rejection::Undecodable(err));
                return;
            }
        };
        let result = match msg {
            ClientMessage::Auth { .. } => Err(Rejection::AlreadyAuthenticated),
            ClientMessage::Join { peer_id, session_id, zone, capabilities } => {
                self.join(now, conn, peer_id, session_id, zone, capabilities)
            }
            ClientMessage::Leave => self.leave(conn),
            ClientMessage::Offer { to, sdp } => {
                self.relay(conn, to, "offer", |from| ServerMessage::Offer { from, sdp })
            }
            ClientMessage::Answer { to, sdp } => {
                self.relay(conn, to, "answer", |from| ServerMessage::Answer { from, sdp })
            }
            ClientMessage::IceCandidate { to, candidate } => {
                self.relay(conn, to, "ice-candidate", |from| ServerMessage::IceCandidate {
                    from,
                    candidate,
                })
            }
            ClientMessage::UpdateCapabilities { capabilities } => {
                self.update_capabilities(conn, capabilities);
                Ok(())
            }
            ClientMessage::Ping { nonce } => {
                self.send(conn, ServerMessage::Pong { nonce });
                Ok(())
            }
        };
        if let Err(rejection) = result {
            self.reject(conn, rejection);
        }
    }

    fn on_shutdown(&mut self, now: Instant) {
        self.shutting_down = true;
        let conns: Vec<ConnId> = self.conns.keys().copied().collect();
        // Close everyone first so that no one is told about the others' seats going to grace.
        let mut gone = Vec::with_capacity(conns.len());
        for conn in conns {
            if let Some(c) = self.conns.remove(&conn) {
                self.emit_close(
                    conn,
                    ErrorCode::ShuttingDown,
                    "coordinator is shutting down".into(),
                );
                gone.push((conn, c));
            }
        }
        for (conn, c) in gone {
            self.detach(now, conn, c);
        }
    }

    // ---- zone handover (cluster mode) ---------------------------------------------------

    pub(crate) fn seat_grace_until(&self, peer: &PeerId) -> Option<Instant> {
        self.deadlines.get(&Timer::Grace(peer.clone()))
    }

    fn restore_seats(&mut self, now: Instant, zone: &Zone, seats: Vec<RestoredSeat>) {
        if self.shutting_down {
            return;
        }
        let until = now.add_millis(self.config.session_timeout_s.saturating_mul(1_000));
        // Restored seats whose members are connected here: they are told the session again.
        let mut live_seats = Vec::new();
        for r in seats {
            if self.seats.contains_key(&r.peer_id) {
                continue; // seated here already: that seat is newer than the record
            }
            let live = self.live.get(&r.peer_id).copied();
            let until = r.grace_until.map_or(until, |g| g.min(until));
            if live.is_none() && until <= now {
                continue; // its grace is over already
            }
            if let Some(conn) = live
                && self.conns.get(&conn).and_then(|c| c.told.as_ref()).map(|(sid, _)| sid)
                    != Some(&r.session_id)
            {
                // Connected here, but its client does not believe it holds this seat (it moved
                // on while the record could not be rewritten, or never joined here): the
                // record is stale. Seating it would relay this session's signaling to a client
                // of another session.
                continue;
            }
            match self.sessions.get(&r.session_id) {
                Some(s) if &s.zone != zone => continue,
                Some(s) if s.seats.len() >= self.config.max_players_per_session => continue,
                Some(_) => {}
                None => {
                    let open = self.by_zone.get(zone).map_or(0, BTreeSet::len);
                    if open >= self.config.max_sessions_per_zone {
                        continue;
                    }
                    let key = SessionKey { epoch: 1, key: self.rng.bytes32() };
                    let session = Session {
                        id: r.session_id.clone(),
                        zone: zone.clone(),
                        seats: Vec::new(),
                        host: None,
                        created_at: now,
                        key,
                    };
                    self.sessions.insert(r.session_id.clone(), session);
                    self.by_zone.entry(zone.clone()).or_default().insert(r.session_id.clone());
                    self.deadlines
                        .set(Timer::Rotate(r.session_id.clone()), self.next_rotation(now));
                }
            }
            let conn_caps = live.and_then(|c| self.conns.get(&c)).and_then(|c| c.capabilities);
            let Some(session) = self.sessions.get_mut(&r.session_id) else {
                continue;
            };
            session.key.epoch = session.key.epoch.max(r.key_epoch.saturating_add(1));
            session.seats.push(Seat {
                peer: r.peer_id.clone(),
                state: live.map_or(SeatState::AwaitingReconnect { until }, SeatState::Live),
                announced_to: Some(ANNOUNCED_ELSEWHERE),
                capabilities: conn_caps.or(r.capabilities),
            });
            if r.host {
                session.host = Some(r.peer_id.clone());
            }
            self.seats.insert(r.peer_id.clone(), r.session_id.clone());
            match live {
                Some(conn) => live_seats.push((conn, r.session_id, r.peer_id)),
                None => self.arm_grace(r.peer_id, until, None),
            }
        }
        // A member still connected here (this instance lost the zone and took it back) holds
        // the old key and the member list it last heard: it gets the restored session whole,
        // as a resume (`session-joined`, `resumed: true`, the new key). The others hear of it
        // when they come back.
        for (conn, sid, peer) in live_seats {
            self.announce(conn, &sid, &peer);
        }
        // A member connected here that no record seats (it joined while the records could not
        // be written) still believes in a session of this zone that is gone: it is placed
        // again, as if it had sent its `join`, and told its new session.
        let orphans: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                c.told.as_ref().is_some_and(|(_, z)| z == zone) && !self.seats.contains_key(&c.peer)
            })
            .map(|(conn, _)| *conn)
            .collect();
        for conn in orphans {
            if let Err(rejection) = self.join(now, conn, None, None, zone.clone(), None) {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.told = None;
                }
                self.reject(conn, rejection);
            }
        }
    }

    fn drop_zone(&mut self, zone: &Zone) {
        for sid in self.by_zone.remove(zone).unwrap_or_default() {
            let Some(session) = self.sessions.remove(&sid) else {
                continue;
            };
            self.deadlines.stop(&Timer::Rotate(sid));
            for seat in session.seats {
                self.seats.remove(&seat.peer);
                self.stop_grace(&seat.peer);
            }
        }
    }

    pub(crate) fn seat_capabilities(&self, peer: &PeerId) -> Option<Capabilities> {
        let sid = self.seats.get(peer)?;
        self.sessions.get(sid)?.seat(peer)?.capabilities
    }

    pub(crate) fn conn_peer(&self, conn: ConnId) -> Option<&PeerId> {
        self.conns.get(&conn).map(|c| &c.peer)
    }

    pub(crate) fn seat_zone(&self, peer: &PeerId) -> Option<Zone> {
        let sid = self.seats.get(peer)?;
        self.sessions.get(sid).map(|s| s.zone.clone())
    }

    pub(crate) fn seat_connection(&self, peer: &PeerId) -> Option<ConnId> {
        let sid = self.seats.get(peer)?;
        self.sessions.get(sid)?.seat(peer)?.conn()
    }

    // ---- identity and connections -------------------------------------------------------

    /// Makes `conn` the one connection of `peer`: an older one is closed with `replaced`, and
    /// `peer`'s seat (live or in grace) is attached to `conn`, silently for the other members.
    fn bind_identity(&mut self, conn: ConnId, peer: PeerId) {
        if let Some(old) = self.live.insert(peer.clone(), conn)
            && old != conn
            && let Some(old_state) = self.conns.remove(&old)
        {
            self.deadlines.stop(&Timer::Idle(old));
            self.emit_close(old, ErrorCode::Replaced, "a newer connection took over".into());
            // Capabilities reported on the old connection carry over to the new one.
            if let Some(c) = self.conns.get_mut(&conn)
                && c.capabilities.is_none()
            {
                c.capabilities = old_state.capabilities;
            }
        }
        let Some(sid) = self.seats.get(&peer).cloned() else {
            return;
        };
        self.stop_grace(&peer);
        if let Some(session) = self.sessions.get_mut(&sid)
            && let Some(seat) = session.seat_mut(&peer)
        {
            seat.state = SeatState::Live(conn);
        }
        self.reelect(&sid, None);
    }

    /// Closes `conn` with `auth-revoked` and gives up the seat it holds (no grace).
    fn revoke(&mut self, conn: ConnId, reason: String) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        self.deadlines.stop(&Timer::Idle(conn));
        self.emit_close(conn, ErrorCode::AuthRevoked, reason);
        if self.live.get(&c.peer) == Some(&conn) {
            self.live.remove(&c.peer);
        }
        let held_by_conn = self
            .seats
            .get(&c.peer)
            .and_then(|sid| self.sessions.get(sid))
            .and_then(|s| s.seat(&c.peer))
            .is_some_and(|seat| seat.state == SeatState::Live(conn));
        if held_by_conn {
            self.unseat(&c.peer, PeerLeftReason::Left);
        }
    }

    /// Closes `conn` with `code` and puts its seat into grace.
    fn close(&mut self, now: Instant, conn: ConnId, code: ErrorCode, reason: String) {
        if self.conns.contains_key(&conn) {
            self.emit_close(conn, code, reason);
            self.forget_conn(now, conn);
        }
    }

    /// Drops `conn` (closed or disconnected) and puts its seat into grace.
    fn forget_conn(&mut self, now: Instant, conn: ConnId) {
        if let Some(c) = self.conns.remove(&conn) {
            self.detach(now, conn, c);
        }
    }

    fn detach(&mut self, now: Instant, conn: ConnId, c: Conn) {
        self.deadlines.stop(&Timer::Idle(conn));
        if self.live.get(&c.peer) == Some(&conn) {
            self.live.remove(&c.peer);
        }
        let Some(sid) = self.seats.get(&c.peer).cloned() else {
            return;
        };
        if !self.grace_has_room(c.anon_origin) {
            // Over a bound on seats in grace: the seat is given up now, not held.
            let held_by_conn = self
                .sessions
                .get(&sid)
                .and_then(|s| s.seat(&c.peer))
                .is_some_and(|seat| seat.state == SeatState::Live(conn));
            if held_by_conn {
                self.unseat(&c.peer, PeerLeftReason::Left);
            }
            return;
        }
        let grace_ms = self.config.session_timeout_s.saturating_mul(1_000);
        let until = now.add_millis(grace_ms);
        let mut detached = false;
        if let Some(session) = self.sessions.get_mut(&sid)
            && let Some(seat) = session.seat_mut(&c.peer)
            && seat.state == SeatState::Live(conn)
        {
            seat.state = SeatState::AwaitingReconnect { until };
            detached = true;
        }
        if detached {
            self.arm_grace(c.peer.clone(), until, c.anon_origin);
            self.reelect(&sid, None);
        }
    }

    // ---- seats in grace -----------------------------------------------------------------

    /// Whether one more seat may wait in grace, for a connection from `origin`.
    fn grace_has_room(&self, origin: Option<IpAddr>) -> bool {
        if self.grace.len() >= self.config.grace_seats_max {
            return false;
        }
        origin.is_none_or(|ip| {
            self.grace_per_origin.get(&ip).copied().unwrap_or(0)
                < self.config.grace_seats_per_origin_max
        })
    }

    /// Puts `peer`'s seat in grace until `until`.
    fn arm_grace(&mut self, peer: PeerId, until: Instant, origin: Option<IpAddr>) {
        self.deadlines.set(Timer::Grace(peer.clone()), until);
        if let Some(old) = self.grace.insert(peer, origin) {
            self.uncount_origin(old);
        }
        if let Some(ip) = origin {
            *self.grace_per_origin.entry(ip).or_default() += 1;
        }
    }

    /// Ends `peer`'s grace, if its seat is in grace.
    fn stop_grace(&mut self, peer: &PeerId) {
        self.deadlines.stop(&Timer::Grace(peer.clone()));
        self.forget_grace(peer);
    }

    /// Forgets `peer`'s grace bookkeeping (its timer is already disarmed).
    fn forget_grace(&mut self, peer: &PeerId) {
        if let Some(origin) = self.grace.remove(peer) {
            self.uncount_origin(origin);
        }
    }

    fn uncount_origin(&mut self, origin: Option<IpAddr>) {
        if let Some(ip) = origin
            && let Some(n) = self.grace_per_origin.get_mut(&ip)
        {
            *n -= 1;
            if *n == 0 {
                self.grace_per_origin.remove(&ip);
            }
        }
    }

    // ---- sessions -----------------------------------------------------------------------

    fn join(
        &mut self,
        now: Instant,
        conn: ConnId,
        requested: Option<PeerId>,
        named: Option<SessionId>,
        zone: Zone,
        capabilities: Option<Capabilities>,
    ) -> Result<(), Rejection> {
        let Some(c) = self.conns.get_mut(&conn) else {
            return Ok(());
        };
        if c.identity_open {
            c.identity_open = false;
            if let Some(chosen) = requested
                && chosen != c.peer
            {
                let generated = core::mem::replace(&mut c.peer, chosen.clone());
                if self.live.get(&generated) == Some(&conn) {
                    self.live.remove(&generated);
                }
                self.bind_identity(conn, chosen);
            }
        }
        let Some(c) = self.conns.get(&conn) else {
            return Ok(());
        };
        let peer = c.peer.clone();
        // A refused join changes nothing, so its capabilities are stored only on success.
        let caps = capabilities.or(c.capabilities);
        let current = self.seats.get(&peer).cloned();

        // Already seated in this zone (and not asking for another session): idempotent, or a
        // resume on a new connection.
        if let Some(cur) = &current
            && named.as_ref().is_none_or(|n| n == cur)
            && self.sessions.get(cur).is_some_and(|s| s.zone == zone)
        {
            self.stop_grace(&peer);
            self.remember_capabilities(conn, caps);
            if let Some(seat) = self.sessions.get_mut(cur).and_then(|s| s.seat_mut(&peer)) {
                seat.state = SeatState::Live(conn);
                if caps.is_some() {
                    seat.capabilities = caps;
                }
            }
            let changed = self.elect_quietly(cur);
            self.announce(conn, cur, &peer);
            if let Some(host) = changed {
                self.broadcast_host(cur, host, Some(conn));
            }
            return Ok(());
        }

        let target = match named {
            Some(sid) => {
                let max = self.config.max_players_per_session;
                match self.sessions.get(&sid) {
                    Some(s) if s.zone == zone && s.seats.len() >= max => {
                        return Err(Rejection::SessionFull { session_id: sid, max });
                    }
                    Some(s) if s.zone == zone => Placement::Existing(sid),
                    _ => return Err(Rejection::SessionNotFound { session_id: sid, zone }),
                }
            }
            None => self.placement(&zone).map_err(|_| Rejection::ZoneFull {
                zone: zone.clone(),
                max: self.config.max_sessions_per_zone,
            })?,
        };
        let sid = match target {
            Placement::Existing(sid) => sid,
            Placement::New => self.open_session(now, &zone)?,
        };
        if current.is_some() {
            self.unseat(&peer, PeerLeftReason::Left);
        }
        self.remember_capabilities(conn, caps);
        let Some(session) = self.sessions.get_mut(&sid) else {
            return Ok(());
        };
        session.seats.push(Seat {
            peer: peer.clone(),
            state: SeatState::Live(conn),
            announced_to: None,
            capabilities: caps,
        });
        self.seats.insert(peer.clone(), sid.clone());
        self.counters.joins += 1;
        let changed = self.elect_quietly(&sid);
        self.announce(conn, &sid, &peer);
        let others = self.live_conns(&sid, Some(conn));
        for other in others {
            self.send(other, ServerMessage::PeerJoined { peer_id: peer.clone() });
        }
        if let Some(host) = changed {
            self.broadcast_host(&sid, host, Some(conn));
        }
        Ok(())
    }

    fn remember_capabilities(&mut self, conn: ConnId, caps: Option<Capabilities>) {
        if let Some(c) = self.conns.get_mut(&conn)
            && caps.is_some()
        {
            c.capabilities = caps;
        }
    }

    fn open_session(&mut self, now: Instant, zone: &Zone) -> Result<SessionId, Rejection> {
        let mut fresh = None;
        for _ in 0..SESSION_ID_ATTEMPTS {
            if let Ok(id) = SessionId::new(format!("{zone}-{}", self.rng.hex_id(4)))
                && !self.sessions.contains_key(&id)
            {
                fresh = Some(id);
                break;
            }
        }
        let id = fresh.ok_or(Rejection::SessionIdsExhausted)?;
        let key = SessionKey { epoch: 1, key: self.rng.bytes32() };
        let session = Session {
            id: id.clone(),
            zone: zone.clone(),
            seats: Vec::new(),
            host: None,
            created_at: now,
            key,
        };
        self.sessions.insert(id.clone(), session);
        self.by_zone.entry(zone.clone()).or_default().insert(id.clone());
        self.deadlines.set(Timer::Rotate(id.clone()), self.next_rotation(now));
        self.counters.sessions_created += 1;
        Ok(id)
    }

    fn next_rotation(&self, now: Instant) -> Instant {
        // A zero interval would rotate in a busy loop; one second is the floor.
        now.add_millis(self.config.key_rotation_interval_s.max(1).saturating_mul(1_000))
    }

    /// Sends `session-joined` for `peer`'s seat in `sid` to `conn`.
    fn announce(&mut self, conn: ConnId, sid: &SessionId, peer: &PeerId) {
        let ice_servers = self.conns.get(&conn).map(|c| c.ice_servers.clone()).unwrap_or_default();
        let Some(session) = self.sessions.get_mut(sid) else {
            return;
        };
        let peers = session.seats.iter().filter(|s| &s.peer != peer).map(|s| s.peer.clone());
        let peers = peers.collect();
        let Some(seat) = session.seat_mut(peer) else {
            return;
        };
        // Any seat announced before is held already: a resume on a new connection, a restore,
        // or the same connection's repeated `join` (a client that retried its `join` must not
        // take the second answer for a new seat and drop its links).
        let resumed = seat.announced_to.is_some();
        seat.announced_to = Some(conn);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.told = Some((session.id.clone(), session.zone.clone()));
        }
        let msg = ServerMessage::SessionJoined {
            session_id: session.id.clone(),
            zone: session.zone.clone(),
            peers,
            host: session.host.clone(),
            ice_servers,
            key: session.key.clone(),
            resumed,
        };
        self.send(conn, msg);
    }

    fn leave(&mut self, conn: ConnId) -> Result<(), Rejection> {
        let c = self.conns.get_mut(&conn).ok_or(Rejection::NotSeated)?;
        // Whether or not a seat is left here (its zone may have been dropped), the client
        // believes in no session any more.
        c.told = None;
        let peer = c.peer.clone();
        let sid = self.seats.get(&peer).cloned().ok_or(Rejection::NotSeated)?;
        self.send(conn, ServerMessage::SessionLeft { session_id: sid });
        self.unseat(&peer, PeerLeftReason::Left);
        Ok(())
    }

    fn grace_ended(&mut self, peer: PeerId) {
        let in_grace = self
            .seats
            .get(&peer)
            .and_then(|sid| self.sessions.get(sid))
            .and_then(|s| s.seat(&peer))
            .is_some_and(|seat| seat.conn().is_none());
        if in_grace {
            self.unseat(&peer, PeerLeftReason::Timeout);
        }
    }

    /// Removes `peer`'s seat: `peer-left` to the other live members, a new election, and the
    /// session is removed when no seat is left.
    fn unseat(&mut self, peer: &PeerId, reason: PeerLeftReason) {
        let Some(sid) = self.seats.remove(peer) else {
            return;
        };
        self.stop_grace(peer);
        self.counters.leaves += 1;
        let Some(session) = self.sessions.get_mut(&sid) else {
            return;
        };
        session.seats.retain(|s| &s.peer != peer);
        if session.seats.is_empty() {
            self.remove_session(&sid);
            return;
        }
        for other in self.live_conns(&sid, None) {
            self.send(other, ServerMessage::PeerLeft { peer_id: peer.clone(), reason });
        }
        self.reelect(&sid, None);
    }

    fn remove_session(&mut self, sid: &SessionId) {
        if let Some(session) = self.sessions.remove(sid) {
            self.deadlines.stop(&Timer::Rotate(sid.clone()));
            if let Some(ids) = self.by_zone.get_mut(&session.zone) {
                ids.remove(sid);
                if ids.is_empty() {
                    self.by_zone.remove(&session.zone);
                }
            }
            self.counters.sessions_expired += 1;
        }
    }

    fn rotate_key(&mut self, now: Instant, sid: SessionId) {
        let next = self.next_rotation(now);
        let key = self.rng.bytes32();
        let Some(session) = self.sessions.get_mut(&sid) else {
            return;
        };
        session.key = SessionKey { epoch: session.key.epoch.saturating_add(1), key };
        let msg = ServerMessage::KeyRotated { session_id: sid.clone(), key: session.key.clone() };
        self.deadlines.set(Timer::Rotate(sid.clone()), next);
        self.counters.key_rotations += 1;
        for conn in self.live_conns(&sid, None) {
            self.send(conn, msg.clone());
        }
    }

    // ---- relay and host registry --------------------------------------------------------

    fn relay(
        &mut self,
        conn: ConnId,
        to: PeerId,
        kind: &str,
        build: impl FnOnce(PeerId) -> ServerMessage,
    ) -> Result<(), Rejection> {
        let from = self.conns.get(&conn).map(|c| c.peer.clone()).ok_or(Rejection::NotSeated)?;
        let sid = self.seats.get(&from).ok_or(Rejection::NotSeated)?;
        let session = self.sessions.get(sid).ok_or(Rejection::NotSeated)?;
        if session.seat(&from).and_then(Seat::conn) != Some(conn) {
            return Err(Rejection::NotSeated);
        }
        let target = session.seat(&to).and_then(Seat::conn);
        let target = target.ok_or_else(|| Rejection::RelayOutsideSession { to: to.clone() })?;
        match self.counters.relays.get_mut(kind) {
            Some(n) => *n += 1,
            None => {
                self.counters.relays.insert(kind.to_owned(), 1);
            }
        }
        self.send(target, build(from));
        Ok(())
    }

    fn update_capabilities(&mut self, conn: ConnId, capabilities: Capabilities) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.capabilities = Some(capabilities);
        let peer = c.peer.clone();
        let Some(sid) = self.seats.get(&peer).cloned() else {
            return;
        };
        if let Some(seat) = self.sessions.get_mut(&sid).and_then(|s| s.seat_mut(&peer)) {
            seat.capabilities = Some(capabilities);
        }
        self.reelect(&sid, None);
    }

    /// Re-runs the election of `sid` and tells every live member (but `except`) if it changed.
    fn reelect(&mut self, sid: &SessionId, except: Option<ConnId>) {
        if let Some(host) = self.elect_quietly(sid) {
            self.broadcast_host(sid, host, except);
        }
    }

    /// Re-runs the election of `sid`; returns the new host if it changed.
    fn elect_quietly(&mut self, sid: &SessionId) -> Option<Option<PeerId>> {
        let req = self.config.host_requirements;
        let changed = self.sessions.get_mut(sid)?.elect(&req);
        if changed.is_some() {
            self.counters.host_changes += 1;
        }
        changed
    }

    fn broadcast_host(&mut self, sid: &SessionId, host: Option<PeerId>, except: Option<ConnId>) {
        let msg = ServerMessage::HostChanged { session_id: sid.clone(), host };
        for conn in self.live_conns(sid, except) {
            self.send(conn, msg.clone());
        }
    }

    // ---- outputs ------------------------------------------------------------------------

    fn live_conns(&self, sid: &SessionId, except: Option<ConnId>) -> Vec<ConnId> {
        self.sessions.get(sid).map(|s| s.live_conns_except(except)).unwrap_or_default()
    }

    /// Queues `msg` for `conn` if it is still open.
    fn send(&mut self, conn: ConnId, msg: ServerMessage) {
        if self.conns.contains_key(&conn) {
            if let ServerMessage::Error { code, .. } = &msg {
                *self.counters.rejects.entry(*code).or_default() += 1;
            }
            self.outputs.push_back(Output::Send { conn, msg });
        }
    }

    fn reject(&mut self, conn: ConnId, rejection: Rejection) {
        let msg = ServerMessage::error(rejection.code(), rejection.to_string());
        self.send(conn, msg);
    }

    fn emit_close(&mut self, conn: ConnId, code: ErrorCode, reason: String) {
        *self.counters.rejects.entry(code).or_default() += 1;
        self.outputs.push_back(Output::Close { conn, code, reason });
    }

    // ---- views --------------------------------------------------------------------------

    pub(crate) fn session_count(&self) -> usize {
        self.sessions.len()
    }

    pub(crate) fn placement(&self, zone: &Zone) -> Result<Placement, ErrorCode> {
        let sessions = self
            .by_zone
            .get(zone)
            .into_iter()
            .flatten()
            .filter_map(|id| self.sessions.get(id))
            .map(|s| (s.seats.len(), s.created_at, &s.id));
        super::place(sessions, &self.config)
    }

    fn view(&self, s: &Session) -> SessionView {
        SessionView {
            session_id: s.id.clone(),
            zone: s.zone.clone(),
            members: s.seats.iter().map(|m| m.peer.clone()).collect(),
            connected: s
                .seats
                .iter()
                .filter(|m| m.conn().is_some())
                .map(|m| m.peer.clone())
                .collect(),
            host: s.host.clone(),
            max_players: self.config.max_players_per_session,
            created_at: s.created_at,
            key_epoch: s.key.epoch,
        }
    }

    pub(crate) fn sessions(&self) -> Vec<SessionView> {
        self.by_zone
            .values()
            .flatten()
            .filter_map(|id| self.sessions.get(id))
            .map(|s| self.view(s))
            .collect()
    }

    pub(crate) fn session(&self, id: &SessionId) -> Option<SessionView> {
        self.sessions.get(id).map(|s| self.view(s))
    }

    pub(crate) fn discover(&self, zone: &Zone) -> Vec<SessionView> {
        let ids = self.by_zone.get(zone).into_iter().flatten();
        ids.filter_map(|id| self.sessions.get(id)).map(|s| self.view(s)).collect()
    }

    pub(crate) fn stats(&self) -> Stats {
        let mut stats = Stats {
            connections: self.conns.len(),
            joins: self.counters.joins,
            leaves: self.counters.leaves,
            relays: self.counters.relays.clone(),
            rejects: self.counters.rejects.clone(),
            sessions_created: self.counters.sessions_created,
            sessions_expired: self.counters.sessions_expired,
            host_changes: self.counters.host_changes,
            key_rotations: self.counters.key_rotations,
            ..Stats::default()
        };
        for s in self.sessions.values() {
            *stats.sessions_per_zone.entry(s.zone.clone()).or_default() += 1;
            *stats.players_per_zone.entry(s.zone.clone()).or_default() += s.seats.len();
            stats.seats_in_grace += s.seats.iter().filter(|m| m.conn().is_none()).count();
        }
        stats
    }
}
