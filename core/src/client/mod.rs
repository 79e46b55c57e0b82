//! The game client's side of signaling: a sans-IO state machine that keeps a connection to the
//! coordinator, joins the session of the current zone and negotiates peer links.
//!
//! [`Client`] sits between three drivers: a WebSocket transport to the coordinator (tokio
//! adapter), the WebRTC peer links (webrtc adapter) and the application (the router and the
//! game). The router reads [`Client::route_inputs`] so that a packet goes to peers only over
//! healthy, keyed links of a joined session. The lifecycle is documented in `docs/client.md`.
//!
//! Inside are two machines, one output queue:
//!
//! - **the lifecycle** (this file): when to connect and where (exponential backoff with full
//!   jitter over an ordered URL list, see [`backoff`]), when to give up and fall back to the
//!   map server for everything, the heartbeat, joining the zone's session, and what the session
//!   is (its members, host and keys);
//! - **the links** (`links.rs`): from that session view, which members to link to (full mesh
//!   or a star around the host), in which negotiation role, glare, the order of offers, answers
//!   and buffered candidates, negotiation deadlines, relinks with their per-peer backoff, and
//!   each link's health. The lifecycle calls it with the time, the RNG and the session view,
//!   and turns what it asks for into [`Output`]s at once; `links.rs` imports nothing of this
//!   file (the counters they share are in `stats.rs`).

pub mod backoff;
mod config;
mod link;
mod links;
pub mod probe;
mod stats;

use std::collections::VecDeque;

use serde::Serialize;

pub use backoff::{Backoff, NextAttempt};
pub use config::{Config, DEFAULT_COORDINATOR_URL, ZoneFilter};
pub use link::{LinkEvent, LinkHealth, Role, Signal};
use links::{Cx, LinkOutput, Links, Topology};
pub use stats::ClientStats;

use crate::rng::Rng;
use crate::sansio::{SansIo, TimerKind, TimerTable};
use crate::time::Instant;
use crate::wire::{
    Capabilities, ClientMessage, ErrorCode, IceServer, PeerId, ServerMessage, SessionId,
    SessionKey, WireError, Zone, decode_server, encode_client, limits::PEERS_MAX,
};

/// Shortest heartbeat interval the client accepts from `welcome`, in ms (a bound against a
/// coordinator that would make it spin).
pub const HEARTBEAT_INTERVAL_MIN_MS: u64 = 100;
/// Heartbeat intervals without any frame after which the transport is considered dead.
pub const LIVENESS_INTERVALS: u64 = 3;

/// Why the transport to the coordinator closed, as the driver observed it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The connection could not be established (refused, DNS, TLS, HTTP upgrade).
    ConnectFailed {
        /// What the driver saw, for logs.
        detail: String,
    },
    /// An established connection broke (I/O error, reset, end of stream).
    Lost {
        /// What the driver saw, for logs.
        detail: String,
    },
    /// The coordinator sent a close frame.
    ClosedByCoordinator {
        /// The machine-readable reason, if the close frame carried a known one.
        code: Option<ErrorCode>,
        /// The close frame's text.
        reason: String,
    },
}

/// How far the round trip to the coordinator must move before new capabilities are reported
/// (smaller changes are noise, and each report may move the session's host).
pub const LATENCY_REPORT_STEP_MS: u32 = 20;

/// What the driver feeds into the [`Client`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Input {
    /// The transport asked for by [`Output::OpenTransport`] is open.
    TransportOpened,
    /// One text frame from the coordinator, as received.
    Frame(Vec<u8>),
    /// The transport closed or could not be opened.
    TransportClosed(CloseReason),
    /// The player is on a (new) map; also the initial zone.
    ZoneChanged(Zone),
    /// Something happened on a peer link.
    PeerLinkEvent {
        /// The link's peer.
        peer: PeerId,
        /// What happened.
        event: LinkEvent,
    },
    /// A fresh token (the application renewed an expiring one): every later connection
    /// attempt authenticates with it; the live connection, authenticated already, stays.
    TokenRefreshed(String),
    /// This machine's capabilities as measured now; `None` withdraws it as a host candidate
    /// for later joins. In a session, new figures are sent at once (`update-capabilities`) so
    /// the coordinator can elect or migrate the host; every later `join` carries them.
    CapabilitiesMeasured(Option<Capabilities>),
    /// Leave the session, close everything and stop.
    Shutdown,
}

/// What the driver must do, in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "do", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Output {
    /// Open a WebSocket to `url`; answer with `TransportOpened` or `TransportClosed`.
    OpenTransport {
        /// The coordinator URL.
        url: String,
    },
    /// Send one text frame (an encoded [`ClientMessage`]) on the open transport.
    SendFrame {
        /// The JSON text.
        frame: String,
    },
    /// Close the transport; no `TransportClosed` is expected for it.
    CloseTransport,
    /// Create a peer link to `peer` in `role`, with these STUN/TURN servers.
    ConnectPeer {
        /// The remote peer.
        peer: PeerId,
        /// Offer or answer.
        role: Role,
        /// STUN/TURN servers from `session-joined`.
        ice_servers: Vec<IceServer>,
    },
    /// Tear the link to `peer` down; the client has forgotten it.
    DisconnectPeer {
        /// The remote peer.
        peer: PeerId,
    },
    /// Apply remote signaling on the link to `peer`.
    SendSignal {
        /// The remote peer.
        peer: PeerId,
        /// The remote description or candidate.
        signal: Signal,
    },
    /// Tell the application.
    Event {
        /// What happened.
        event: ClientEvent,
    },
}

/// Why the client stopped for good.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum StopReason {
    /// The application asked for it.
    Shutdown,
    /// A newer connection with the same identity replaced this client at the coordinator.
    Replaced,
    /// P2P is switched off in the configuration.
    Disabled,
    /// No coordinator URL is configured.
    NoCoordinator,
}

/// What the coordinator did that it should not have; counted and reported, never fatal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum CoordinatorMisbehaved {
    /// A frame that does not decode as a [`ServerMessage`].
    #[error("undecodable frame ({code}): {detail}")]
    UndecodableFrame {
        /// The decoder's code.
        code: ErrorCode,
        /// The decoder's explanation.
        detail: String,
    },
    /// `welcome` on a connection that was already welcomed.
    #[error("second welcome on one connection")]
    RepeatedWelcome,
}

/// What the application hears about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ClientEvent {
    /// The coordinator accepted the connection.
    Welcomed {
        /// Our identity (see [`Client::peer_id`]).
        peer_id: PeerId,
        /// Which coordinator.
        url: String,
    },
    /// The client is a member of a session.
    SessionJoined {
        /// The session.
        session_id: SessionId,
        /// Its zone.
        zone: Zone,
        /// The other members, oldest first.
        peers: Vec<PeerId>,
        /// The session host.
        host: Option<PeerId>,
        /// Whether the seat was kept through a reconnect.
        resumed: bool,
    },
    /// The client left its session (zone change or shutdown).
    SessionLeft {
        /// The session.
        session_id: SessionId,
    },
    /// A member joined the session.
    PeerJoined {
        /// Who.
        peer: PeerId,
    },
    /// A member left the session.
    PeerLeft {
        /// Who.
        peer: PeerId,
    },
    /// The session host changed.
    HostChanged {
        /// The new host, if any member qualifies.
        host: Option<PeerId>,
    },
    /// A new session key is current (the previous one is kept for the grace period).
    KeyChanged {
        /// The new key's epoch.
        epoch: u32,
    },
    /// Fallback to the map server switched on (coordinator unreachable) or off.
    Fallback {
        /// `true`: P2P is off and everything goes to the server.
        active: bool,
    },
    /// A peer link's health changed.
    LinkHealthChanged {
        /// The link's peer.
        peer: PeerId,
        /// Its new health.
        health: LinkHealth,
    },
    /// The client will try a coordinator again after a delay.
    Reconnecting {
        /// Index of the URL in the configured list.
        url_index: usize,
        /// The jittered delay, in ms.
        delay_ms: u64,
        /// Failures so far in this round of the budget.
        failures: u32,
    },
    /// The coordinator refused to seat the client; the join is retried later.
    JoinRefused {
        /// Why.
        code: ErrorCode,
    },
    /// The coordinator reported an error.
    CoordinatorError {
        /// Machine-readable reason.
        code: ErrorCode,
        /// Its text.
        message: String,
    },
    /// The coordinator sent something invalid; it was ignored.
    CoordinatorMisbehaved {
        /// What it did.
        error: CoordinatorMisbehaved,
    },
    /// The client stopped and will do nothing more.
    Stopped {
        /// Why.
        reason: StopReason,
    },
}

/// The lifecycle state, named for what the client waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Lifecycle {
    /// Waits for the transport to open.
    Connecting,
    /// Waits for `welcome` (after sending `auth` when a token is configured).
    ExpectWelcome,
    /// Welcomed, waits for a P2P-enabled zone (or the retry of a refused join).
    ExpectZone,
    /// `join` sent, waits for `session-joined`.
    ExpectSessionJoined,
    /// A member of the zone's session: P2P may be used.
    Joined,
    /// Waits for the backoff delay before the next attempt.
    BackingOff,
    /// The retry budget is spent: P2P is off, waits for the next background probe.
    FallenBack,
    /// Stopped; waits for nothing.
    Closed,
}

/// What the router needs from the client to decide whether a packet may go to peers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RouteInputs {
    /// P2P switched on and not fallen back.
    pub p2p_enabled: bool,
    /// The current zone is in `p2p_enabled_zones`.
    pub zone_enabled: bool,
    /// A member of the current zone's session, with a live coordinator connection.
    pub joined: bool,
    /// A session key is held.
    pub keyed: bool,
    /// Peers whose links are open and within limits; empty unless all the flags above hold.
    pub healthy_peers: Vec<PeerId>,
}

impl RouteInputs {
    /// Whether any packet may go to peers at all.
    pub fn allows_peers(&self) -> bool {
        self.p2p_enabled
            && self.zone_enabled
            && self.joined
            && self.keyed
            && !self.healthy_peers.is_empty()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Timer {
    /// Connection timeout of one attempt (until `welcome`), or of one `join`.
    Attempt,
    /// Next connection attempt, background probe, or retry of a refused join.
    Retry,
    /// Next `ping`.
    Ping,
    /// No frame from the coordinator for too long.
    Liveness,
    /// The earliest deadline of a link that is not connected yet.
    Negotiation,
}

impl TimerKind for Timer {
    const COUNT: usize = 5;
    fn index(self) -> usize {
        self as usize
    }
    fn from_index(index: usize) -> Self {
        match index {
            0 => Timer::Attempt,
            1 => Timer::Retry,
            2 => Timer::Ping,
            3 => Timer::Liveness,
            _ => Timer::Negotiation,
        }
    }
}

/// A welcomed coordinator connection.
#[derive(Clone, Debug)]
struct Conn {
    url_index: usize,
    heartbeat_ms: u64,
}

/// The lifecycle with each state's data; a transition consumes the old state.
#[derive(Clone, Debug)]
enum Stage {
    Connecting { url_index: usize },
    ExpectWelcome { url_index: usize },
    ExpectZone { conn: Conn },
    ExpectSessionJoined { conn: Conn },
    Joined { conn: Conn },
    BackingOff { url_index: usize },
    FallenBack { url_index: usize },
    Closed,
}

impl Stage {
    fn lifecycle(&self) -> Lifecycle {
        match self {
            Stage::Connecting { .. } => Lifecycle::Connecting,
            Stage::ExpectWelcome { .. } => Lifecycle::ExpectWelcome,
            Stage::ExpectZone { .. } => Lifecycle::ExpectZone,
            Stage::ExpectSessionJoined { .. } => Lifecycle::ExpectSessionJoined,
            Stage::Joined { .. } => Lifecycle::Joined,
            Stage::BackingOff { .. } => Lifecycle::BackingOff,
            Stage::FallenBack { .. } => Lifecycle::FallenBack,
            Stage::Closed => Lifecycle::Closed,
        }
    }

    /// The welcomed connection, if any.
    fn conn(&self) -> Option<&Conn> {
        match self {
            Stage::ExpectZone { conn }
            | Stage::ExpectSessionJoined { conn, .. }
            | Stage::Joined { conn } => Some(conn),
            _ => None,
        }
    }

    /// Whether a transport is open or being opened.
    fn has_transport(&self) -> bool {
        matches!(self, Stage::Connecting { .. } | Stage::ExpectWelcome { .. })
            || self.conn().is_some()
    }
}

/// The session the client is (or was, while reconnecting) a member of.
#[derive(Clone, Debug)]
struct Session {
    id: SessionId,
    zone: Zone,
    /// The other members, in join order.
    members: Vec<PeerId>,
    host: Option<PeerId>,
    ice_servers: Vec<IceServer>,
}

/// The client state machine. Drive it as [`SansIo`] says: `handle_input` or `handle_timeout`,
/// then `poll_output` until `None`, then sleep until `poll_timeout`.
#[derive(Debug)]
pub struct Client {
    config: Config,
    rng: Rng,
    state: Stage,
    backoff: Backoff,
    timers: TimerTable<Timer>,
    outputs: VecDeque<Output>,
    /// The zone the player is on, once known.
    zone: Option<Zone>,
    /// Our identity, from the latest `welcome`.
    peer_id: Option<PeerId>,
    fallback: bool,
    session: Option<Session>,
    /// The links machine: topology and negotiation of the links to the session's members.
    links: Links,
    current_key: Option<SessionKey>,
    previous_key: Option<SessionKey>,
    ping_nonce: u64,
    /// The last heartbeat `ping` in flight and when it left, to time its `pong`.
    ping_sent: Option<(u64, Instant)>,
    /// Round trip to the coordinator from the last answered heartbeat, in ms: the
    /// capabilities' `latency_ms` once known.
    coordinator_rtt_ms: Option<u32>,
    /// The `latency_ms` last reported to the coordinator (join or update-capabilities).
    reported_latency_ms: Option<u32>,
    stats: ClientStats,
    /// The time of the call being handled (links take their negotiation deadline from it).
    now: Instant,
}

impl Client {
    /// A client that starts its first connection attempt at `now` (the first output is
    /// `OpenTransport` to the primary URL), unless P2P is disabled or no URL is configured.
    pub fn new(config: Config, rng: Rng, now: Instant) -> Self {
        let backoff = Backoff::new(
            config.coordinator_urls.len(),
            config.max_retries,
            config.reconnect_delay_ms,
            config.backoff_cap_ms,
        );
        let mut client = Client {
            config,
            rng,
            state: Stage::Closed,
            backoff,
            timers: TimerTable::default(),
            outputs: VecDeque::new(),
            zone: None,
            peer_id: None,
            fallback: false,
            session: None,
            links: Links::default(),
            current_key: None,
            previous_key: None,
            ping_nonce: 0,
            ping_sent: None,
            coordinator_rtt_ms: None,
            reported_latency_ms: None,
            stats: ClientStats::default(),
            now,
        };
        client.state = if !client.config.p2p_enabled {
            client.event(ClientEvent::Stopped { reason: StopReason::Disabled });
            Stage::Closed
        } else if client.config.coordinator_urls.is_empty() {
            client.event(ClientEvent::Stopped { reason: StopReason::NoCoordinator });
            Stage::Closed
        } else {
            client.open(now, 0)
        };
        client
    }

    /// The settings in use.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The lifecycle state.
    pub fn lifecycle(&self) -> Lifecycle {
        self.state.lifecycle()
    }

    /// Whether the client has fallen back to the map server (P2P off).
    pub fn is_fallen_back(&self) -> bool {
        self.fallback
    }

    /// Our identity: the welcomed one, or the configured `peer_id` when there is no token.
    pub fn peer_id(&self) -> Option<&PeerId> {
        self.peer_id.as_ref()
    }

    /// The zone the player is on, once known.
    pub fn zone(&self) -> Option<&Zone> {
        self.zone.as_ref()
    }

    /// The current (or, while reconnecting, the remembered) session.
    pub fn session_id(&self) -> Option<&SessionId> {
        self.session.as_ref().map(|s| &s.id)
    }

    /// The other members of the session, in join order.
    pub fn members(&self) -> &[PeerId] {
        self.session.as_ref().map(|s| s.members.as_slice()).unwrap_or(&[])
    }

    /// The session host, if known.
    pub fn host(&self) -> Option<&PeerId> {
        self.session.as_ref().and_then(|s| s.host.as_ref())
    }

    /// Every peer link, by peer id: its role and health.
    pub fn links(&self) -> Vec<(PeerId, Role, LinkHealth)> {
        self.links.list()
    }

    /// The current session key, for sealing.
    pub fn current_key(&self) -> Option<&SessionKey> {
        self.current_key.as_ref()
    }

    /// The key before the latest rotation, still accepted for a grace period when opening.
    pub fn previous_key(&self) -> Option<&SessionKey> {
        self.previous_key.as_ref()
    }

    /// The URL of the coordinator the client is welcomed by, if any.
    pub fn coordinator_url(&self) -> Option<&str> {
        let conn = self.state.conn()?;
        self.config.coordinator_urls.get(conn.url_index).map(String::as_str)
    }

    /// Counters of what was ignored or dropped.
    pub fn stats(&self) -> &ClientStats {
        &self.stats
    }

    /// The router's inputs: a packet may go to a peer only if it is listed in `healthy_peers`.
    pub fn route_inputs(&self) -> RouteInputs {
        let p2p_enabled = self.config.p2p_enabled && !self.fallback;
        let zone_enabled = self.zone.as_ref().is_some_and(|z| self.config.zone_enabled(z));
        let joined = matches!(self.state, Stage::Joined { .. });
        let keyed = self.current_key.is_some();
        let healthy_peers = if p2p_enabled && zone_enabled && joined && keyed {
            self.links.healthy_peers()
        } else {
            Vec::new()
        };
        RouteInputs { p2p_enabled, zone_enabled, joined, keyed, healthy_peers }
    }

    // ----- small helpers -----

    fn event(&mut self, event: ClientEvent) {
        self.outputs.push_back(Output::Event { event });
    }

    /// The capabilities to report: the adapter's figures with `latency_ms` the measured round
    /// trip to the coordinator (the adapter's own figure until a heartbeat is answered).
    fn capabilities_now(&self) -> Option<Capabilities> {
        let mut c = self.config.capabilities?;
        if let Some(rtt) = self.coordinator_rtt_ms {
            c.latency_ms = rtt;
        }
        Some(c)
    }

    /// Sends `update-capabilities` with the current figures (in a session).
    fn report_capabilities(&mut self) {
        if let Some(capabilities) = self.capabilities_now() {
            self.send(&ClientMessage::UpdateCapabilities { capabilities });
            self.reported_latency_ms = Some(capabilities.latency_ms);
        }
    }

    /// Times a heartbeat's `pong`; in a session, a round trip that moved by
    /// [`LATENCY_REPORT_STEP_MS`] or more since the last report is reported, so the coordinator
    /// can elect or migrate the host on what the link does now.
    fn on_pong(&mut self, now: Instant, state: &Stage, nonce: Option<u64>) {
        let Some((sent_nonce, sent_at)) = self.ping_sent else { return };
        if nonce != Some(sent_nonce) {
            return;
        }
        self.ping_sent = None;
        let rtt = u32::try_from(now.millis_since(sent_at)).unwrap_or(u32::MAX);
        self.coordinator_rtt_ms = Some(rtt);
        let moved =
            self.reported_latency_ms.is_none_or(|r| r.abs_diff(rtt) >= LATENCY_REPORT_STEP_MS);
        if moved && matches!(state, Stage::Joined { .. }) && self.config.capabilities.is_some() {
            self.report_capabilities();
        }
    }

    fn send(&mut self, msg: &ClientMessage) {
        self.outputs.push_back(Output::SendFrame { frame: encode_client(msg) });
    }

    fn url(&self, url_index: usize) -> String {
        self.config.coordinator_urls.get(url_index).cloned().unwrap_or_default()
    }

    fn stop_connection_timers(&mut self) {
        self.timers.stop(Timer::Attempt);
        self.timers.stop(Timer::Ping);
        self.timers.stop(Timer::Liveness);
    }

    /// Starts one attempt: open the transport and arm the connection timeout.
    fn open(&mut self, now: Instant, url_index: usize) -> Stage {
        self.stats.attempts += 1;
        let url = self.url(url_index);
        self.outputs.push_back(Output::OpenTransport { url });
        self.timers.set(Timer::Attempt, now.add_millis(self.config.connection_timeout_ms));
        Stage::Connecting { url_index }
    }

    /// The attempt (or established connection) failed: back off, or fall back when the budget
    /// is spent, or wait for the next probe when fallen back already.
    fn fail_attempt(&mut self, now: Instant) -> Stage {
        self.stop_connection_timers();
        if self.fallback {
            return self.schedule_probe(now);
        }
        match self.backoff.on_failure(&mut self.rng) {
            NextAttempt::Retry { url_index, delay_ms, failures } => {
                self.timers.set(Timer::Retry, now.add_millis(delay_ms));
                self.event(ClientEvent::Reconnecting { url_index, delay_ms, failures });
                Stage::BackingOff { url_index }
            }
            NextAttempt::Exhausted => {
                self.fallback = true;
                self.drop_session();
                self.event(ClientEvent::Fallback { active: true });
                self.schedule_probe(now)
            }
        }
    }

    fn schedule_probe(&mut self, now: Instant) -> Stage {
        let (url_index, delay_ms) = self.backoff.next_probe(&mut self.rng);
        self.timers.set(Timer::Retry, now.add_millis(delay_ms));
        Stage::FallenBack { url_index }
    }

    /// The coordinator is reachable and the client is where it wants to be.
    fn succeeded(&mut self) {
        self.backoff.reset();
        if self.fallback {
            self.fallback = false;
            self.event(ClientEvent::Fallback { active: false });
        }
    }

    fn stop(&mut self, reason: StopReason) -> Stage {
        self.timers = TimerTable::default();
        self.drop_session();
        self.event(ClientEvent::Stopped { reason });
        Stage::Closed
    }

    /// Forgets the session and tears every link down.
    fn drop_session(&mut self) {
        self.links.clear();
        self.drain_links();
        self.session = None;
        self.current_key = None;
        self.previous_key = None;
    }

    /// Sends `join` for the current zone if P2P is enabled there.
    fn join_or_wait(&mut self, now: Instant, conn: Conn) -> Stage {
        self.timers.stop(Timer::Retry);
        match self.zone.clone() {
            Some(zone) if self.config.zone_enabled(&zone) => {
                self.send(&ClientMessage::Join {
                    peer_id: self.config.peer_id.clone(),
                    session_id: None,
                    zone: zone.clone(),
                    capabilities: self.capabilities_now(),
                });
                self.reported_latency_ms = self.capabilities_now().map(|c| c.latency_ms);
                self.timers.set(Timer::Attempt, now.add_millis(self.config.connection_timeout_ms));
                Stage::ExpectSessionJoined { conn }
            }
            Some(_) => {
                // Welcomed and nothing to join: the coordinator is reachable, that is success.
                self.timers.stop(Timer::Attempt);
                self.succeeded();
                Stage::ExpectZone { conn }
            }
            None => {
                self.timers.stop(Timer::Attempt);
                Stage::ExpectZone { conn }
            }
        }
    }

    // ----- the links machine -----

    /// Calls the links machine with the session view, then turns what it asked for into
    /// outputs, so they keep the order in which they were decided.
    fn with_links<R>(&mut self, f: impl FnOnce(&mut Links, &mut Cx<'_>) -> R) -> R {
        let session = self.session.as_ref();
        let topology = Topology {
            me: self.peer_id.as_ref(),
            members: session.map_or(&[], |s| s.members.as_slice()),
            host: session.and_then(|s| s.host.as_ref()),
            ice_servers: session.map_or(&[], |s| s.ice_servers.as_slice()),
        };
        let mut cx = Cx {
            now: self.now,
            config: &self.config,
            rng: &mut self.rng,
            topology,
            stats: &mut self.stats,
        };
        let result = f(&mut self.links, &mut cx);
        self.drain_links();
        result
    }

    /// Turns the links machine's outputs into the client's.
    fn drain_links(&mut self) {
        while let Some(out) = self.links.poll_output() {
            let out = match out {
                LinkOutput::Connect { peer, role, ice_servers } => {
                    Output::ConnectPeer { peer, role, ice_servers }
                }
                LinkOutput::Disconnect { peer } => Output::DisconnectPeer { peer },
                LinkOutput::Signal { peer, signal } => Output::SendSignal { peer, signal },
                LinkOutput::Health { peer, health } => {
                    Output::Event { event: ClientEvent::LinkHealthChanged { peer, health } }
                }
                LinkOutput::Send(msg) => Output::SendFrame { frame: encode_client(&msg) },
            };
            self.outputs.push_back(out);
        }
    }

    fn arm_negotiation_timer(&mut self) {
        match self.links.poll_timeout() {
            Some(at) => self.timers.set(Timer::Negotiation, at),
            None => self.timers.stop(Timer::Negotiation),
        }
    }

    // ----- inputs -----

    fn on_input(&mut self, now: Instant, state: Stage, input: Input) -> Stage {
        match input {
            Input::TransportOpened => self.on_transport_opened(state),
            Input::Frame(bytes) => self.on_frame(now, state, &bytes),
            Input::TransportClosed(reason) => self.on_transport_closed(now, state, reason),
            Input::ZoneChanged(zone) => self.on_zone_changed(now, state, zone),
            Input::PeerLinkEvent { peer, event } => {
                self.on_link_event(&state, peer, event);
                state
            }
            Input::TokenRefreshed(token) => {
                self.config.token = Some(token);
                state
            }
            Input::CapabilitiesMeasured(capabilities) => {
                let changed = capabilities != self.config.capabilities;
                self.config.capabilities = capabilities;
                if changed && matches!(state, Stage::Joined { .. }) {
                    self.report_capabilities();
                }
                state
            }
            Input::Shutdown => self.on_shutdown(state),
        }
    }

    fn on_transport_opened(&mut self, state: Stage) -> Stage {
        match state {
            Stage::Connecting { url_index } => {
                if let Some(token) = self.config.token.clone() {
                    self.send(&ClientMessage::Auth { token });
                }
                Stage::ExpectWelcome { url_index }
            }
            other => other,
        }
    }

    fn on_transport_closed(&mut self, now: Instant, state: Stage, reason: CloseReason) -> Stage {
        if !state.has_transport() {
            return state;
        }
        if let CloseReason::ClosedByCoordinator { code: Some(ErrorCode::Replaced), .. } = reason {
            return self.stop(StopReason::Replaced);
        }
        self.fail_attempt(now)
    }

    fn on_shutdown(&mut self, state: Stage) -> Stage {
        if let Stage::Joined { .. } | Stage::ExpectSessionJoined { .. } = state {
            self.send(&ClientMessage::Leave);
        }
        if let Some(session) = &self.session
            && matches!(state, Stage::Joined { .. })
        {
            let session_id = session.id.clone();
            self.event(ClientEvent::SessionLeft { session_id });
        }
        if state.has_transport() {
            self.outputs.push_back(Output::CloseTransport);
        }
        if matches!(state, Stage::Closed) {
            return state;
        }
        self.stop(StopReason::Shutdown)
    }

    fn on_zone_changed(&mut self, now: Instant, state: Stage, zone: Zone) -> Stage {
        if self.zone.as_ref() == Some(&zone) {
            return state;
        }
        self.zone = Some(zone.clone());
        // A session of another zone is over, whether joined or remembered for a resume.
        let left = self.session.as_ref().filter(|s| s.zone != zone).map(|s| s.id.clone());
        let joined = matches!(state, Stage::Joined { .. });
        if let Some(session_id) = left {
            self.drop_session();
            if joined {
                self.event(ClientEvent::SessionLeft { session_id });
            }
        }
        match state {
            Stage::Joined { conn } | Stage::ExpectSessionJoined { conn, .. } => {
                self.send(&ClientMessage::Leave);
                self.join_or_wait(now, conn)
            }
            Stage::ExpectZone { conn } => self.join_or_wait(now, conn),
            other => other,
        }
    }

    fn on_frame(&mut self, now: Instant, state: Stage, bytes: &[u8]) -> Stage {
        if !matches!(state, Stage::ExpectWelcome { .. }) && state.conn().is_none() {
            // No open transport: a frame of a connection already given up.
            self.stats.messages_ignored += 1;
            return state;
        }
        if let Some(conn) = state.conn() {
            let liveness_ms = conn.heartbeat_ms.saturating_mul(LIVENESS_INTERVALS);
            self.timers.set(Timer::Liveness, now.add_millis(liveness_ms));
        }
        let msg = match decode_server(bytes) {
            Ok(msg) => msg,
            Err(err) => {
                self.stats.frames_undecodable += 1;
                let error = undecodable(&err);
                self.event(ClientEvent::CoordinatorMisbehaved { error });
                return state;
            }
        };
        self.on_message(now, state, msg)
    }

    fn on_message(&mut self, now: Instant, state: Stage, msg: ServerMessage) -> Stage {
        match (state, msg) {
            (
                Stage::ExpectWelcome { url_index },
                ServerMessage::Welcome { peer_id, heartbeat_interval_ms, .. },
            ) => {
                let heartbeat_ms = if heartbeat_interval_ms == 0 {
                    self.config.heartbeat_interval_ms
                } else {
                    heartbeat_interval_ms
                }
                .max(HEARTBEAT_INTERVAL_MIN_MS);
                // A coordinator with authentication off welcomes an anonymous identity and
                // adopts the `peer_id` of our `join` (whether or not we presented a token,
                // which it ignores); otherwise the identity is the token's subject, as welcomed.
                let me = match &self.config.peer_id {
                    Some(own) if self.config.token.is_none() || peer_id.is_anonymous() => {
                        own.clone()
                    }
                    _ => peer_id.clone(),
                };
                if self.peer_id.as_ref() != Some(&me) {
                    // A new identity: links and seat of the old one are meaningless.
                    self.drop_session();
                }
                self.peer_id = Some(me.clone());
                self.timers.set(Timer::Ping, now.add_millis(heartbeat_ms));
                let liveness_ms = heartbeat_ms.saturating_mul(LIVENESS_INTERVALS);
                self.timers.set(Timer::Liveness, now.add_millis(liveness_ms));
                let url = self.url(url_index);
                self.event(ClientEvent::Welcomed { peer_id: me, url });
                self.join_or_wait(now, Conn { url_index, heartbeat_ms })
            }
            (state, ServerMessage::Welcome { .. }) => {
                let error = CoordinatorMisbehaved::RepeatedWelcome;
                self.event(ClientEvent::CoordinatorMisbehaved { error });
                state
            }
            (state, ServerMessage::Error { code, message }) => {
                self.on_error(now, state, code, message)
            }
            (state, ServerMessage::Pong { nonce }) => {
                self.on_pong(now, &state, nonce);
                state
            }
            (
                Stage::ExpectSessionJoined { conn, .. }
                | Stage::ExpectZone { conn }
                | Stage::Joined { conn },
                ServerMessage::SessionJoined {
                    session_id,
                    zone,
                    peers,
                    host,
                    ice_servers,
                    key,
                    resumed,
                },
            ) if self.zone.as_ref() == Some(&zone) && self.config.zone_enabled(&zone) => self
                .on_session_joined(
                    conn,
                    Session { id: session_id, zone, members: peers, host, ice_servers },
                    key,
                    resumed,
                ),
            (Stage::Joined { conn }, msg) => {
                self.on_session_message(msg);
                Stage::Joined { conn }
            }
            (state, _) => {
                // Stale messages of a session left behind, or answers to a `leave`.
                self.stats.messages_ignored += 1;
                state
            }
        }
    }

    fn on_error(&mut self, now: Instant, state: Stage, code: ErrorCode, message: String) -> Stage {
        self.event(ClientEvent::CoordinatorError { code, message });
        if code == ErrorCode::Replaced {
            if state.has_transport() {
                self.outputs.push_back(Output::CloseTransport);
            }
            return self.stop(StopReason::Replaced);
        }
        let refused = matches!(
            code,
            ErrorCode::ZoneFull
                | ErrorCode::SessionFull
                | ErrorCode::SessionNotFound
                | ErrorCode::ZoneUnavailable
        );
        match state {
            Stage::ExpectSessionJoined { conn, .. } if refused => {
                self.timers.stop(Timer::Attempt);
                self.event(ClientEvent::JoinRefused { code });
                let delay_ms = self
                    .rng
                    .range_inclusive(self.config.backoff_cap_ms / 2, self.config.backoff_cap_ms);
                self.timers.set(Timer::Retry, now.add_millis(delay_ms));
                Stage::ExpectZone { conn }
            }
            other => other,
        }
    }

    fn on_session_joined(
        &mut self,
        conn: Conn,
        mut session: Session,
        key: SessionKey,
        resumed: bool,
    ) -> Stage {
        self.timers.stop(Timer::Attempt);
        self.timers.stop(Timer::Retry);
        if let Some(me) = &self.peer_id {
            session.members.retain(|p| p != me);
        }
        let same = resumed && self.session.as_ref().is_some_and(|s| s.id == session.id);
        if same {
            // The seat was kept: keep the links to members still there.
            self.links.keep_members(&session.members);
            self.drain_links();
            if self.current_key.as_ref().map(|k| k.epoch) != Some(key.epoch) {
                self.previous_key = self.current_key.take();
                self.event(ClientEvent::KeyChanged { epoch: key.epoch });
            }
        } else {
            self.drop_session();
            self.event(ClientEvent::KeyChanged { epoch: key.epoch });
        }
        self.current_key = Some(key);
        self.event(ClientEvent::SessionJoined {
            session_id: session.id.clone(),
            zone: session.zone.clone(),
            peers: session.members.clone(),
            host: session.host.clone(),
            resumed,
        });
        self.session = Some(session);
        self.succeeded();
        // The newcomer offers to every existing member the topology wants.
        self.with_links(|links, cx| links.on_joined(cx));
        Stage::Joined { conn }
    }

    /// Session traffic while joined.
    fn on_session_message(&mut self, msg: ServerMessage) {
        let Some(session) = self.session.as_mut() else {
            self.stats.messages_ignored += 1;
            return;
        };
        match msg {
            ServerMessage::PeerJoined { peer_id } => {
                if Some(&peer_id) == self.peer_id.as_ref()
                    || session.members.contains(&peer_id)
                    || session.members.len() >= PEERS_MAX
                {
                    self.stats.messages_ignored += 1;
                    return;
                }
                session.members.push(peer_id.clone());
                self.event(ClientEvent::PeerJoined { peer: peer_id });
                // The newcomer offers; only prune links a larger session no longer wants.
                self.with_links(|links, cx| links.reconcile(cx, false));
            }
            ServerMessage::PeerLeft { peer_id, .. } => {
                if !session.members.contains(&peer_id) {
                    self.stats.messages_ignored += 1;
                    return;
                }
                session.members.retain(|p| p != &peer_id);
                self.links.on_peer_left(&peer_id);
                self.drain_links();
                self.event(ClientEvent::PeerLeft { peer: peer_id });
                self.with_links(|links, cx| links.reconcile(cx, true));
            }
            ServerMessage::HostChanged { session_id, host } if session_id == session.id => {
                session.host = host.clone();
                self.event(ClientEvent::HostChanged { host });
                self.with_links(|links, cx| links.reconcile(cx, true));
            }
            ServerMessage::KeyRotated { session_id, key } if session_id == session.id => {
                if self.current_key.as_ref().is_some_and(|k| k.epoch >= key.epoch) {
                    self.stats.messages_ignored += 1;
                    return;
                }
                let epoch = key.epoch;
                self.previous_key = self.current_key.replace(key);
                self.event(ClientEvent::KeyChanged { epoch });
            }
            ServerMessage::Offer { from, sdp } => self.on_remote_offer(from, sdp),
            ServerMessage::Answer { from, sdp } => {
                self.with_links(|links, cx| links.on_remote_answer(cx, from, sdp))
            }
            ServerMessage::IceCandidate { from, candidate } => {
                self.with_links(|links, cx| links.on_remote_candidate(cx, from, candidate))
            }
            _ => self.stats.messages_ignored += 1,
        }
    }

    fn on_remote_offer(&mut self, from: PeerId, sdp: String) {
        if Some(&from) == self.peer_id.as_ref() {
            self.stats.messages_ignored += 1;
            return;
        }
        if let Some(session) = self.session.as_mut()
            && !session.members.contains(&from)
        {
            if session.members.len() >= PEERS_MAX {
                self.stats.messages_ignored += 1;
                return;
            }
            // The coordinator relays only within the session: the member list is behind.
            session.members.push(from.clone());
            self.event(ClientEvent::PeerJoined { peer: from.clone() });
            // One more member may turn the full mesh into a star: drop what it no longer wants.
            self.with_links(|links, cx| links.reconcile(cx, false));
        }
        self.with_links(|links, cx| links.on_remote_offer(cx, from, sdp));
    }

    fn on_link_event(&mut self, state: &Stage, peer: PeerId, event: LinkEvent) {
        let joined = matches!(state, Stage::Joined { .. });
        self.with_links(|links, cx| links.on_link_event(cx, joined, peer, event));
    }

    // ----- timers -----

    fn on_timer(&mut self, now: Instant, state: Stage, timer: Timer) -> Stage {
        match (timer, state) {
            (
                Timer::Attempt,
                Stage::Connecting { .. }
                | Stage::ExpectWelcome { .. }
                | Stage::ExpectSessionJoined { .. },
            ) => {
                self.outputs.push_back(Output::CloseTransport);
                self.fail_attempt(now)
            }
            (Timer::Retry, Stage::BackingOff { url_index } | Stage::FallenBack { url_index }) => {
                self.open(now, url_index)
            }
            (Timer::Retry, Stage::ExpectZone { conn }) => self.join_or_wait(now, conn),
            (Timer::Ping, state) if state.conn().is_some() => {
                self.ping_nonce += 1;
                self.send(&ClientMessage::Ping { nonce: Some(self.ping_nonce) });
                self.ping_sent = Some((self.ping_nonce, now));
                if let Some(conn) = state.conn() {
                    self.timers.set(Timer::Ping, now.add_millis(conn.heartbeat_ms));
                }
                state
            }
            (Timer::Negotiation, state) => {
                let joined = matches!(state, Stage::Joined { .. });
                self.with_links(|links, cx| links.handle_timeout(cx, joined));
                state
            }
            (Timer::Liveness, state) if state.conn().is_some() => {
                self.outputs.push_back(Output::CloseTransport);
                self.fail_attempt(now)
            }
            (_, state) => state,
        }
    }
}

fn undecodable(err: &WireError) -> CoordinatorMisbehaved {
    CoordinatorMisbehaved::UndecodableFrame { code: err.code(), detail: err.to_string() }
}

impl SansIo for Client {
    type Input = Input;
    type Output = Output;

    fn handle_input(&mut self, now: Instant, input: Input) {
        self.now = now;
        let state = core::mem::replace(&mut self.state, Stage::Closed);
        self.state = self.on_input(now, state, input);
        self.arm_negotiation_timer();
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        for timer in self.timers.expire(now) {
            if self.timers.get(timer).is_some() {
                // Re-armed by an earlier timer of this batch: not due any more.
                continue;
            }
            let state = core::mem::replace(&mut self.state, Stage::Closed);
            self.state = self.on_timer(now, state, timer);
        }
        self.arm_negotiation_timer();
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }
}

#[cfg(test)]
mod tests;
