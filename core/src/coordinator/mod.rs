//! The coordinator: sessions per zone, signaling relay, seats with reconnect grace, host
//! election, session keys and flood control, as one sans-IO state machine.
//!
//! The tokio adapter authenticates each WebSocket (JWT) and then feeds [`Input::Connected`],
//! every text frame as [`Input::Frame`], every binary frame as [`Input::Binary`] and every
//! WebSocket ping or pong as [`Input::Control`] (each frame of any kind costs a token of the
//! connection's rate limit), and [`Input::Disconnected`]; it executes each
//! [`Output`] in order (encoding [`Output::Send`] with [`crate::wire::encode_server`]) and calls
//! [`SansIo::handle_timeout`] at [`SansIo::poll_timeout`]. The REST views (discover, list,
//! detail) and the metrics read [`Coordinator::sessions`], [`Coordinator::discover`] and
//! [`Coordinator::stats`]. The protocol it speaks is documented in `docs/protocol.md`.

mod config;
pub mod credential;
mod deadlines;
mod machine;
mod rate;
mod session;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

pub use config::{Config, HostRequirements, OUTBOUND_QUEUE_BYTES_MAX_DEFAULT, RateLimit};
pub use machine::Rejection;
pub use rate::{RATE_ERROR_GAP_MS, STRIKE_WINDOW_MS};

use crate::rng::Rng;
use crate::sansio::SansIo;
use crate::time::Instant;
use crate::wire::{Capabilities, ErrorCode, IceServer, PeerId, ServerMessage, SessionId, Zone};

/// A WebSocket connection, numbered by the adapter; never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ConnId(pub u64);

/// Who is on a connection, as the adapter established it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    /// A verified JWT subject (the rAthena account id).
    Account(PeerId),
    /// Authentication is off: the first `join`'s `peer_id` becomes the identity.
    Anonymous,
}

/// What the adapter feeds in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// A WebSocket was accepted and authenticated.
    Connected {
        /// Its number.
        conn: ConnId,
        /// Its identity.
        identity: Identity,
        /// STUN/TURN servers for this connection (with its own TURN credentials).
        ice_servers: Vec<IceServer>,
        /// The address it came from, when the adapter knows it: anonymous seats in grace are
        /// bounded per address ([`Config::grace_seats_per_origin_max`]).
        origin: Option<IpAddr>,
    },
    /// One text frame, as received.
    Frame {
        /// The connection it came on.
        conn: ConnId,
        /// Its bytes.
        bytes: Vec<u8>,
    },
    /// One binary frame (refused with `bad-value`: the protocol is JSON text). It costs a
    /// token and a strike like any undecodable frame.
    Binary {
        /// The connection it came on.
        conn: ConnId,
    },
    /// One WebSocket control frame (ping or pong; the adapter's WebSocket layer answers pings
    /// itself). It costs a token like any frame and counts as activity for the idle timeout.
    Control {
        /// The connection it came on.
        conn: ConnId,
    },
    /// The WebSocket closed (or broke).
    Disconnected {
        /// Which one.
        conn: ConnId,
    },
    /// The coordinator stops: every connection is closed with `shutting-down`.
    Shutdown,
    /// Seats another coordinator instance kept for `zone` (cluster mode: this instance has just
    /// taken the zone over). Each seat waits in grace for its identity to come back, silently:
    /// the other members see no `peer-left`/`peer-joined`, and the returning client's `join`
    /// answers `session-joined` with `resumed: true`. A connection here whose client was told a
    /// session of this zone that no record restores (it joined while the records could not be
    /// written) is placed again as if it had sent its `join`. A seat whose identity is connected here
    /// is attached to that connection only if its client was last told it holds this very seat
    /// (this instance lost the zone and took it back); it is then sent the restored session at
    /// once (`session-joined`, `resumed: true`, with the new key). A seat whose identity is
    /// connected here believing anything else, is already seated here, or would exceed a limit,
    /// is skipped: the record is stale.
    RestoreSeats {
        /// The zone taken over.
        zone: Zone,
        /// Its recorded seats.
        seats: Vec<RestoredSeat>,
    },
    /// The credential `conn` was admitted with is no longer valid (authentication mode
    /// `rathena`: the player logged out of the game or logged in again with a new token). The
    /// connection is closed with `auth-revoked` and its seat is given up at once, not held in
    /// grace: the other members get `peer-left` (`left`), since a player who left the game must
    /// not stay in anyone's peer list. Its identity (the account id) is unchanged, so a client
    /// back with the new token joins again under the same peer id. Ignored when `conn` is
    /// gone already.
    Revoke {
        /// The connection.
        conn: ConnId,
        /// Why, for humans (no token in it).
        reason: String,
    },
    /// This instance no longer speaks for `zone` (cluster mode: another instance owns it now).
    /// Its sessions and seats are forgotten without telling anyone and without any output; the
    /// connections stay open, unseated, for the adapter to move to the new owner.
    DropZone {
        /// The zone lost.
        zone: Zone,
    },
}

/// A seat recorded by the zone's previous owner, for [`Input::RestoreSeats`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoredSeat {
    /// The member.
    pub peer_id: PeerId,
    /// Its session (kept: the session id survives the handover).
    pub session_id: SessionId,
    /// What it reported for host election, if it did.
    pub capabilities: Option<Capabilities>,
    /// Whether it was the session's host.
    pub host: bool,
    /// The session key's epoch at the previous owner: the restored session's new key gets a
    /// higher one, so members never confuse the two keys.
    pub key_epoch: u32,
    /// When the seat's grace ends at the latest, if the restoring instance knows it (it held
    /// the seat itself before, or the store kept the record's grace as its TTL and said what is
    /// left): restored in grace, the seat waits until the earlier of this and a whole session
    /// timeout, and one whose grace is over is not restored. `None`: a whole timeout (the
    /// record does not say since when its player is gone).
    pub grace_until: Option<Instant>,
}

/// What the adapter must do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Send one message on a connection.
    Send {
        /// The connection.
        conn: ConnId,
        /// The message.
        msg: ServerMessage,
    },
    /// Send a close frame with this code and reason, then drop the connection. The core has
    /// already forgotten it; a later `Disconnected` for it is ignored.
    Close {
        /// The connection.
        conn: ConnId,
        /// Why, machine-readable.
        code: ErrorCode,
        /// Why, for humans.
        reason: String,
    },
}

/// Where a `join` without a session id would be placed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Placement {
    /// This session: the fullest of the zone that has room.
    Existing(SessionId),
    /// A new session (every existing one is full).
    New,
}

/// Where a `join` without a session id goes among the sessions of one zone, given as (seats,
/// creation time, id): the fullest that has room; among equals the oldest, then the smallest
/// id; a new session when none has room and the zone may open one; else `Err(ZoneFull)`. The
/// one rule of placement: the coordinator's joins use it, and so does cluster mode's REST
/// `/placement` for zones another instance serves (from that owner's view of its sessions).
pub fn place<'a>(
    sessions: impl IntoIterator<Item = (usize, Instant, &'a SessionId)>,
    config: &Config,
) -> Result<Placement, ErrorCode> {
    let max_players = config.max_players_per_session;
    let mut open = 0usize;
    let mut fullest: Option<(usize, Instant, &SessionId)> = None;
    for (seats, created_at, id) in sessions {
        open += 1;
        if seats >= max_players {
            continue;
        }
        let key = |(seats, created_at, id): (usize, Instant, &'a SessionId)| {
            (core::cmp::Reverse(seats), created_at, id)
        };
        if fullest.is_none_or(|best| key((seats, created_at, id)) < key(best)) {
            fullest = Some((seats, created_at, id));
        }
    }
    match fullest {
        Some((_, _, id)) => Ok(Placement::Existing(id.clone())),
        None if open < config.max_sessions_per_zone && max_players > 0 => Ok(Placement::New),
        None => Err(ErrorCode::ZoneFull),
    }
}

/// A read-only view of one session, for discovery, the REST API and tests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SessionView {
    /// Its id.
    pub session_id: SessionId,
    /// Its zone.
    pub zone: Zone,
    /// Seated members in join order (including seats in grace).
    pub members: Vec<PeerId>,
    /// The members with a live connection.
    pub connected: Vec<PeerId>,
    /// The elected host.
    pub host: Option<PeerId>,
    /// Its seat limit.
    pub max_players: usize,
    /// When it was opened.
    pub created_at: Instant,
    /// The epoch of its current key.
    pub key_epoch: u32,
}

/// Counters and gauges for metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Live connections.
    pub connections: usize,
    /// Open sessions per zone.
    pub sessions_per_zone: BTreeMap<Zone, usize>,
    /// Seats (live or in grace) per zone.
    pub players_per_zone: BTreeMap<Zone, usize>,
    /// Seats whose connection is gone and that wait for it to come back.
    pub seats_in_grace: usize,
    /// Seats taken (not counting resumes).
    pub joins: u64,
    /// Seats given up (leave, switch, grace ended).
    pub leaves: u64,
    /// Relayed signaling messages by type: `offer`, `answer`, `ice-candidate`.
    pub relays: BTreeMap<String, u64>,
    /// Every `error` sent and every close, by code.
    pub rejects: BTreeMap<ErrorCode, u64>,
    /// Sessions opened.
    pub sessions_created: u64,
    /// Sessions removed because no seat was left.
    pub sessions_expired: u64,
    /// Host elections that changed the host.
    pub host_changes: u64,
    /// Session keys rotated.
    pub key_rotations: u64,
}

/// The coordinator's state machine.
///
/// Drive it as [`SansIo`] says: feed an [`Input`] with `handle_input` (or call `handle_timeout`
/// once `poll_timeout` has passed), then drain `poll_output` until `None` and execute each
/// [`Output`] in order.
pub struct Coordinator {
    state: machine::CoordinatorState,
}

impl core::fmt::Debug for Coordinator {
    /// Counts only: the generator's state would reveal future session keys.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Coordinator")
            .field("connections", &self.state.conns.len())
            .field("sessions", &self.state.session_count())
            .finish_non_exhaustive()
    }
}

impl Coordinator {
    /// A coordinator with no connections; ids and keys come from `rng`.
    pub fn new(config: Config, rng: Rng) -> Self {
        Coordinator { state: machine::CoordinatorState::new(config, rng) }
    }

    /// Its configuration.
    pub fn config(&self) -> &Config {
        &self.state.config
    }

    /// Current counters.
    pub fn stats(&self) -> Stats {
        self.state.stats()
    }

    /// Every session, by zone then id.
    pub fn sessions(&self) -> Vec<SessionView> {
        self.state.sessions()
    }

    /// One session.
    pub fn session(&self, id: &SessionId) -> Option<SessionView> {
        self.state.session(id)
    }

    /// The sessions of one zone, by id.
    pub fn discover(&self, zone: &Zone) -> Vec<SessionView> {
        self.state.discover(zone)
    }

    /// Where a `join` to `zone` without a session id would go; `Err(ZoneFull)` when nowhere.
    pub fn placement(&self, zone: &Zone) -> Result<Placement, ErrorCode> {
        self.state.placement(zone)
    }

    /// The identity of connection `conn` (with authentication off, the `peer_id` its first
    /// `join` chose), if it is open.
    pub fn peer_of(&self, conn: ConnId) -> Option<&PeerId> {
        self.state.conn_peer(conn)
    }

    /// Live connections.
    pub fn connection_count(&self) -> usize {
        self.state.conns.len()
    }

    /// The capabilities `peer`'s seat reported, if it is seated here and reported any (cluster
    /// mode records them with the seat).
    pub fn seat_capabilities(&self, peer: &PeerId) -> Option<Capabilities> {
        self.state.seat_capabilities(peer)
    }

    /// The zone of `peer`'s seat, if it is seated here.
    pub fn seat_zone(&self, peer: &PeerId) -> Option<Zone> {
        self.state.seat_zone(peer)
    }

    /// Feeds one text frame of `conn` that the caller has already decoded (cluster mode decodes
    /// each frame once, to route it): the same as [`Input::Frame`] with its bytes.
    pub fn handle_decoded_frame(
        &mut self,
        now: Instant,
        conn: ConnId,
        decoded: Result<crate::wire::ClientMessage, crate::wire::WireError>,
    ) {
        self.state.on_decoded(now, conn, decoded);
    }

    /// Whether `peer` has a live connection here (seated or not).
    pub fn is_connected(&self, peer: &PeerId) -> bool {
        self.state.live.contains_key(peer)
    }

    /// When `peer`'s seat's grace ends, if it is seated here and in grace.
    pub fn seat_grace_until(&self, peer: &PeerId) -> Option<Instant> {
        self.state.seat_grace_until(peer)
    }

    /// The connection holding `peer`'s seat, if it is seated here and live.
    pub fn seat_connection(&self, peer: &PeerId) -> Option<ConnId> {
        self.state.seat_connection(peer)
    }
}

impl SansIo for Coordinator {
    type Input = Input;
    type Output = Output;

    fn handle_input(&mut self, now: Instant, input: Input) {
        self.state.handle_input(now, input);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.state.handle_timeout(now);
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.state.outputs.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.state.deadlines.next()
    }
}
