//! The client library as one sans-IO composite: signaling, routing, sealing and the receive path.
//!
//! A [`Node`] owns the signaling [`Client`], the [`GamePath`] of the game's connection to the
//! map server (both ways), the operator's routing [`Policy`], one [`Sealer`] for what this
//! player sends and one [`Opener`] per remote session member. Every driver of the client
//! library uses it: the headless peer (`ro-p2p-peer`), the tokio client driver (and through it
//! the DLL and the proxy) and the simulation. The driver feeds the client's inputs through
//! [`SansIo`], the game's outgoing bytes through [`Node::on_game_send`], the map server's bytes
//! through [`Node::on_server_bytes`] and the frames that arrive on peer links through
//! [`Node::on_peer_frame`]; it executes every [`Output`] in order and hands
//! [`Node::game_output`] to the game.
//!
//! The receive path is the node's too: a peer's event is drawn into the game's stream as it is
//! opened, an action sent to peers only gets its local echo as it is routed, a late server copy
//! makes the server's echo of it expected, and whether peers are in use at all is an output
//! ([`Output::PeerUse`]). Drivers move bytes.
//!
//! Keys follow the client: when it holds a session key, the node keeps a sealer under that key
//! and an opener for every member; a `key-rotated` rotates them (the previous epoch stays
//! valid for the seal's grace period), a new session rebuilds them, and members that left lose
//! their opener.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde::Serialize;

use crate::Rng;
use crate::client::{self, Client, ClientEvent, RouteInputs};
use crate::gate::ServerMove;
use crate::packet::{Obfuscation, PacketVersion, PeerAck, PeerCategory, PeerEvent, PeerEventError};
use crate::render::{MapChange, ReceiveStats, RenderRejected};
use crate::route::{Choice, GameStream, OwnNameError, Policy, Route, RouteContext, Verdict};
use crate::sansio::SansIo;
use crate::seal::{FrameId, OpenError, Opener, SealConfig, Sealer};
use crate::time::Instant;
use crate::wire::{PeerId, SessionId, SessionKey};

#[cfg(test)]
mod tests;

mod path;

pub use path::{GamePath, NAMED_ACCOUNTS_MAX, NotDrawn};

/// Everything a [`Node`] is built from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeConfig {
    /// The signaling client's settings.
    pub client: client::Config,
    /// The game client's PACKETVER.
    pub packet_version: PacketVersion,
    /// Whether the map-server connection obfuscates packet ids.
    pub obfuscation: Obfuscation,
    /// Where each peer category goes.
    pub policy: Policy,
    /// Sealing and opening of peer frames.
    pub seal: SealConfig,
}

impl NodeConfig {
    /// A configuration with `client` settings and everything else at its default: rAthena's
    /// default PACKETVER (20211103) with its default obfuscation, the mirror policy and the
    /// seal's defaults.
    pub fn with_client(client: client::Config) -> NodeConfig {
        let packet_version = PacketVersion::V20211103;
        let obfuscation =
            if packet_version.obfuscated_by_default() { Obfuscation::On } else { Obfuscation::Off };
        NodeConfig {
            client,
            packet_version,
            obfuscation,
            policy: Policy::default(),
            seal: SealConfig::default(),
        }
    }
}

/// How long a chat line or emote sent to peers only waits for every peer's [`PeerAck`] before
/// it goes to the map server too. The reliable channel normally answers within a round trip;
/// past this, the server's copy (about one round trip to the server) is what the players see
/// soonest.
pub const PEER_ACK_TIMEOUT_MS: u64 = 1_000;

/// Peers-only actions awaiting acknowledgement at most; beyond, the oldest goes to the server
/// at once.
pub const UNCONFIRMED_MAX: usize = 64;

/// A chat line or emote sent to peers only, until every peer it went to acknowledges it.
#[derive(Clone, Debug)]
struct Unconfirmed {
    frame: FrameId,
    at: Instant,
    /// The packet's de-obfuscated id and the rest of its bytes, for the late server copy.
    id: u16,
    body: Vec<u8>,
    event: ReceivedEvent,
    /// The peers it was sent to that have not acknowledged it yet.
    awaiting: Vec<PeerId>,
}

/// The data channel a peer frame travels on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Channel {
    /// Unordered, no retransmits: walking and turning (a newer one replaces a lost one).
    Movement,
    /// Reliable and ordered: chat and emotes.
    Chat,
}

impl Channel {
    /// The data channel's label on the wire (`docs/peer-frames.md`).
    pub fn label(self) -> &'static str {
        match self {
            Channel::Movement => "movement",
            Channel::Chat => "chat",
        }
    }

    /// The SCTP stream id of the channel when both ends create it themselves (negotiated out
    /// of band, as the WebRTC adapter does): movement 0, chat 1.
    pub fn stream_id(self) -> u16 {
        match self {
            Channel::Movement => 0,
            Channel::Chat => 1,
        }
    }

    /// The channel with this label, if it is one of ours.
    pub fn from_label(label: &str) -> Option<Channel> {
        match label {
            "movement" => Some(Channel::Movement),
            "chat" => Some(Channel::Chat),
            _ => None,
        }
    }

    /// The channel an event travels on.
    pub fn for_event(event: &PeerEvent<'_>) -> Channel {
        match event {
            PeerEvent::Move { .. } | PeerEvent::Turn { .. } => Channel::Movement,
            PeerEvent::Chat { .. } | PeerEvent::Emote { .. } => Channel::Chat,
        }
    }
}

impl core::fmt::Display for Channel {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.label())
    }
}

/// A validated event received from a peer, owned so it can outlive the frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ReceivedEvent {
    /// The peer walks to cell (`x`, `y`).
    Move {
        /// Destination x.
        x: u16,
        /// Destination y.
        y: u16,
    },
    /// The peer turned.
    Turn {
        /// Head direction, 0..=2.
        head_dir: u8,
        /// Body direction, 0..=7.
        dir: u8,
    },
    /// The peer said something in public chat: `"Name : message"` as the game client's bytes.
    Chat {
        /// The text, passing the public chat content rules.
        #[serde(serialize_with = "serialize_lossy")]
        text: Vec<u8>,
    },
    /// The peer showed an emote.
    Emote {
        /// rAthena's `emotion_type`.
        kind: u8,
    },
}

fn serialize_lossy<S: serde::Serializer>(text: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&String::from_utf8_lossy(text))
}

impl ReceivedEvent {
    /// The owned copy of a decoded event.
    pub fn from_event(event: &PeerEvent<'_>) -> ReceivedEvent {
        match *event {
            PeerEvent::Move { x, y } => ReceivedEvent::Move { x, y },
            PeerEvent::Turn { head_dir, dir } => ReceivedEvent::Turn { head_dir, dir },
            PeerEvent::Chat { text } => ReceivedEvent::Chat { text: text.to_vec() },
            PeerEvent::Emote { kind } => ReceivedEvent::Emote { kind },
        }
    }

    /// The borrowed form, e.g. to re-encode or render it.
    pub fn as_event(&self) -> PeerEvent<'_> {
        match self {
            ReceivedEvent::Move { x, y } => PeerEvent::Move { x: *x, y: *y },
            ReceivedEvent::Turn { head_dir, dir } => {
                PeerEvent::Turn { head_dir: *head_dir, dir: *dir }
            }
            ReceivedEvent::Chat { text } => PeerEvent::Chat { text },
            ReceivedEvent::Emote { kind } => PeerEvent::Emote { kind: *kind },
        }
    }
}

/// What the driver must do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Output {
    /// An output of the signaling client, passed through unchanged.
    Client(client::Output),
    /// Send one sealed frame to `peer` on `channel`. One frame is shared by every peer it goes
    /// to (it is sealed once).
    SendPeerFrame {
        /// The remote peer.
        peer: PeerId,
        /// The data channel.
        channel: Channel,
        /// The sealed frame.
        frame: Arc<[u8]>,
    },
    /// A peer did something the game should show.
    Received {
        /// The sender, as the link identified it (a session member).
        from: PeerId,
        /// What it did.
        event: ReceivedEvent,
    },
    /// A chat line or emote that went to peers only was not acknowledged by every peer it went
    /// to within [`PEER_ACK_TIMEOUT_MS`], or the link to one of them stopped being healthy
    /// first (it may never have arrived): its bytes are queued for the map server, and the next
    /// [`Node::on_game_send`] puts them first in `to_server` (call it with no bytes to take them
    /// now). The server shows it to the map (a peer that already showed it drops that copy)
    /// and echoes it to this player, who was already shown the local echo: the node expects
    /// that echo and does not show it twice. For observers.
    LateServerCopy {
        /// The action.
        event: ReceivedEvent,
        /// The frame it went to peers in (for observers that match frames with their fate).
        frame: FrameId,
    },
    /// A peer's event ([`Output::Received`], `from` set) or the local echo of the player's own
    /// peers-only action (`from` empty) was not drawn into the game's stream. For logs.
    NotDrawn {
        /// The peer, or `None` for a local echo.
        from: Option<PeerId>,
        /// What was not drawn.
        event: ReceivedEvent,
        /// Why.
        reason: NotDrawn,
    },
    /// Peers came into use, or everything goes to the map server again: what a driver tells
    /// the player. Reported on each change; a node starts with peers not in use.
    PeerUse(PeerUse),
}

/// Whether peers are in use, and if not, why.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PeerUse {
    /// Eligible packets may go to peers: P2P on, the zone enabled, joined, keyed, a healthy
    /// link.
    InUse,
    /// P2P is switched off or the client fell back (coordinator unreachable, stopped).
    P2pOff,
    /// The current zone is not in `p2p_enabled_zones` (or no zone is known).
    ZoneNotEnabled,
    /// Not a member of the zone's session.
    NotJoined,
    /// Joined, but no healthy, keyed link to any peer.
    NoLink,
}

impl PeerUse {
    /// What a route context says.
    pub fn of(ctx: &RouteContext) -> PeerUse {
        if !ctx.p2p_enabled {
            PeerUse::P2pOff
        } else if !ctx.zone_enabled {
            PeerUse::ZoneNotEnabled
        } else if !ctx.joined {
            PeerUse::NotJoined
        } else if !ctx.peers_ready {
            PeerUse::NoLink
        } else {
            PeerUse::InUse
        }
    }

    /// Whether peers are in use.
    pub fn in_use(self) -> bool {
        self == PeerUse::InUse
    }
}

/// Why a frame received from a peer was dropped. Each reason has a counter in [`NodeStats`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiveDrop {
    /// The sender is not a member of the current session (or there is no session).
    #[error("frame from {from}, who is not a member of the current session")]
    NotMember {
        /// The sender.
        from: PeerId,
    },
    /// No session key is held, so nothing can be opened.
    #[error("no session key to open frames with")]
    NoSessionKey,
    /// The seal refused the frame (rate limit, replay, wrong key, tampering, ...).
    #[error("frame refused by the seal: {0}")]
    Open(#[from] OpenError),
    /// The opened payload is not a valid peer event.
    #[error("invalid peer event: {0}")]
    InvalidEvent(#[from] PeerEventError),
    /// Not dropped yet: sealed under a newer key epoch than this node holds for the sender
    /// (the sender heard the rotation first). Kept for [`EARLY_FRAME_HOLD_MS`] and opened when
    /// the key arrives.
    #[error("held until key epoch {epoch} arrives")]
    HeldForKey {
        /// The epoch in the frame.
        epoch: u32,
    },
    /// A walk to a cell outside the current map.
    #[error("move to ({x}, {y}) outside the {width}x{height} map")]
    OutsideMap {
        /// Destination x.
        x: u16,
        /// Destination y.
        y: u16,
        /// The map's width in cells.
        width: u16,
        /// The map's height in cells.
        height: u16,
    },
}

/// Counters of what the node routed, sent, received and dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct NodeStats {
    /// Game packets framed (whole packets, not pass-through bytes).
    pub packets: u64,
    /// Packets that went to the server only.
    pub packets_server: u64,
    /// Packets that went to peers only.
    pub packets_peers: u64,
    /// Packets that went to the server and to peers.
    pub packets_mirrored: u64,
    /// Peer-eligible packets the policy would send to peers that went to the server only,
    /// because peers were not usable (no session, fallen back, no healthy keyed link).
    pub fallbacks: u64,
    /// Times the game stream desynced (its bytes then pass to the server untouched).
    pub desyncs: u64,
    /// Bytes passed to the server without classification (after a desync).
    pub passthrough_bytes: u64,
    /// Frames sealed (one per peer-routed packet).
    pub frames_sealed: u64,
    /// Frames queued for peers (one per healthy peer per sealed frame).
    pub frames_queued: u64,
    /// Peer-routed packets that could not be sealed (counter space exhausted).
    pub seal_failures: u64,
    /// Frames received from peers, before any check.
    pub frames_received: u64,
    /// Events surfaced as [`Output::Received`].
    pub events_received: u64,
    /// [`ReceiveDrop::NotMember`].
    pub dropped_not_member: u64,
    /// [`ReceiveDrop::NoSessionKey`].
    pub dropped_no_key: u64,
    /// [`ReceiveDrop::Open`]; the seal's own counters say why ([`Node::open_counters`]).
    pub dropped_by_seal: u64,
    /// [`ReceiveDrop::HeldForKey`]: frames under a key epoch not yet known here, held now
    /// (when the key arrives they move to the counter of what became of them).
    pub held_for_key: u64,
    /// [`ReceiveDrop::InvalidEvent`].
    pub dropped_invalid_event: u64,
    /// [`ReceiveDrop::OutsideMap`].
    pub dropped_outside_map: u64,
    /// Acknowledgements sent for frames whose sender asked for one.
    pub acks_sent: u64,
    /// Acknowledgements received.
    pub acks_received: u64,
    /// Peers-only chat lines and emotes that every peer acknowledged.
    pub peers_only_confirmed: u64,
    /// Peers-only chat lines and emotes sent to the server late ([`Output::LateServerCopy`]).
    pub peers_only_late: u64,
    /// Peers-only chat lines and emotes still unacknowledged when the player left the map or
    /// the map connection was replaced (or the stream desynced), so no server copy could
    /// follow: the only window in which such a line can still be missed by a peer.
    pub peers_only_abandoned: u64,
}

/// The session, sender identity and key the node's sealer and openers hold.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Keyed {
    session: SessionId,
    me: PeerId,
    key: SessionKey,
}

/// The client library's composite state machine.
///
/// A driver calls, in any order as things happen: [`SansIo::handle_input`] with the signaling
/// client's [`client::Input`]s (transport events, frames, zone changes, link events),
/// [`SansIo::handle_timeout`] when [`SansIo::poll_timeout`] has passed, [`Node::on_game_send`]
/// with the bytes the game writes to the map server, and [`Node::on_peer_frame`] with each frame
/// a peer link delivers. After each call it drains [`SansIo::poll_output`] and executes every
/// [`Output`] in order.
#[derive(Debug)]
pub struct Node {
    client: Client,
    path: GamePath,
    policy: Policy,
    seal_config: SealConfig,
    rng: Rng,
    sealer: Option<Sealer>,
    keyed: Option<Keyed>,
    openers: BTreeMap<PeerId, Opener>,
    /// Frames sealed under a newer epoch than this node holds for their sender, kept a little
    /// while: the sender heard `key-rotated` first, and the same rotation is on its way here.
    early: VecDeque<EarlyFrame>,
    /// The last frames opened after waiting for their key (for observers: such a frame is
    /// opened when the key arrives, not when the frame did).
    opened_late: VecDeque<EarlyFrame>,
    /// Map size in cells, when the driver knows it; otherwise 0..=1023 is accepted.
    map_size: Option<(u16, u16)>,
    outputs: VecDeque<Output>,
    /// Reused buffer for encoding peer events.
    scratch: Vec<u8>,
    /// Whether peers were in use when last reported.
    in_use: bool,
    /// Peers-only chat lines and emotes awaiting acknowledgement, oldest first.
    unconfirmed: VecDeque<Unconfirmed>,
    /// Late server copies not yet taken by [`Node::on_game_send`].
    late_server: Vec<u8>,
    stats: NodeStats,
}

impl Node {
    /// A node at `now`; the client's randomness (jitter) and the seal's stream ids come from
    /// `rng`.
    pub fn new(config: NodeConfig, mut rng: Rng, now: Instant) -> Node {
        let client_rng = rng.fork();
        let mut path = GamePath::new(config.packet_version, config.obfuscation);
        if let Some(aid) = config.client.peer_id.as_ref().and_then(crate::render::account_id_of) {
            path.set_own_account_id(aid);
        }
        let mut node = Node {
            client: Client::new(config.client, client_rng, now),
            path,
            policy: config.policy,
            seal_config: config.seal,
            rng,
            sealer: None,
            keyed: None,
            openers: BTreeMap::new(),
            early: VecDeque::new(),
            opened_late: VecDeque::new(),
            map_size: None,
            outputs: VecDeque::new(),
            scratch: Vec::with_capacity(64),
            in_use: false,
            unconfirmed: VecDeque::new(),
            late_server: Vec::new(),
            stats: NodeStats::default(),
        };
        node.pump_client(now);
        node
    }

    /// The signaling client (lifecycle, peer id, session, members, links).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Counters.
    pub fn stats(&self) -> &NodeStats {
        &self.stats
    }

    /// The routing policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Replaces the routing policy (it applies from the next packet).
    pub fn set_policy(&mut self, policy: Policy) {
        self.policy = policy;
    }

    /// The game stream to the map server (e.g. whether it desynced).
    pub fn game_stream(&self) -> &GameStream {
        self.path.send_stream()
    }

    /// The game's map-server connection, both ways.
    pub fn game_path(&self) -> &GamePath {
        &self.path
    }

    /// The receive path's counters (drawn, rejected, duplicates dropped, local echoes).
    pub fn receive_stats(&self) -> ReceiveStats {
        self.path.receive_stats()
    }

    /// Whether peers are in use right now (as last reported by [`Output::PeerUse`]).
    pub fn peers_in_use(&self) -> bool {
        self.in_use
    }

    /// The game opened a new connection to the map server (after a map-server change or a
    /// reconnect): framing, the obfuscation key and the receive path's view start over (see
    /// [`GamePath::new_connection`]).
    pub fn new_map_connection(&mut self) {
        self.abandon_unconfirmed();
        // Obfuscated for the old connection's key sequence.
        self.late_server.clear();
        self.path.new_connection();
    }

    /// Sets the player's character name (from the char server's list): public chat is then
    /// peer-eligible only when it starts with exactly `"<name> : "`, as rAthena requires. Kept
    /// across map connections.
    pub fn set_own_name(&mut self, name: &[u8]) -> Result<(), OwnNameError> {
        self.path.set_own_name(name)
    }

    /// Sets the player's own account id (otherwise the configured peer id when it is one, or
    /// the server's `ZC_AID`): the local echo of an emote needs it, and a peer claiming it is
    /// not drawn.
    pub fn set_own_account_id(&mut self, aid: u32) {
        self.path.set_own_account_id(aid);
    }

    /// Names the account id of `peer` when its peer id is not one (see
    /// [`GamePath::set_peer_account_id`]).
    pub fn set_peer_account_id(&mut self, peer: PeerId, aid: u32) -> bool {
        self.path.set_peer_account_id(peer, aid)
    }

    /// Takes bytes the map server sent to the game: they reach [`Node::game_output`] whole,
    /// with peers drawn in between (see [`Node::on_server_bytes_redirecting`]).
    pub fn on_server_bytes(&mut self, now: Instant, bytes: &[u8]) {
        self.path.on_server_bytes(now, bytes);
    }

    /// [`Node::on_server_bytes`], showing a move to another map server to `redirect`: when it
    /// answers an address, the game is sent there instead (a proxy's door). Map changes are
    /// kept for [`Node::take_map_changes`].
    pub fn on_server_bytes_redirecting(
        &mut self,
        now: Instant,
        bytes: &[u8],
        redirect: impl FnMut(&ServerMove) -> Option<std::net::SocketAddrV4>,
    ) {
        self.path.on_server_bytes_redirecting(now, bytes, redirect);
    }

    /// The map server closed the connection: a partial packet it left goes to the game as it is.
    pub fn server_closed(&mut self) {
        self.path.server_closed();
    }

    /// The map changes the server announced since the last call, oldest first (the driver
    /// tells the node the new zone, [`client::Input::ZoneChanged`], when it decides to follow).
    pub fn take_map_changes(&mut self) -> impl Iterator<Item = MapChange> + '_ {
        self.path.take_map_changes()
    }

    /// Draws a one-line notice for the player into the game's stream (a hooking DLL says so
    /// when P2P turns on or off).
    pub fn draw_notice(&mut self, text: &str) -> Result<(), RenderRejected> {
        self.path.draw_notice(text)
    }

    /// Bytes ready for the game, in order: the server's packets (minus duplicates of lines
    /// already shown from a peer) with peers, local echoes and notices drawn between them.
    pub fn game_output(&self) -> &[u8] {
        self.path.game_output()
    }

    /// Marks the first `n` bytes of [`Node::game_output`] as handed to the game.
    pub fn consume_game_output(&mut self, n: usize) {
        self.path.consume_game_output(n);
    }

    /// Sets the current map's size in cells, so moves outside it are dropped; `None` accepts
    /// the whole coordinate range (0..=1023).
    pub fn set_map_size(&mut self, size: Option<(u16, u16)>) {
        self.map_size = size;
    }

    /// This player's identity as the other members know it, which binds its sealed frames.
    ///
    /// With authentication on, the coordinator's `welcome` names the account. With it off
    /// (development), `welcome` names a generated `anon-` identity that the first `join`
    /// replaces with the configured `peer_id`; the client core already takes that one
    /// ([`Client::peer_id`]).
    pub fn own_peer_id(&self) -> Option<&PeerId> {
        self.client.peer_id()
    }

    /// The last frames (at most 64, oldest first) that were held for a key not yet known here
    /// and opened when it arrived: `(sender, sealed frame)`. An observer that matches frames
    /// sent with frames opened finds these here, since [`Node::on_peer_frame`] returned
    /// [`ReceiveDrop::HeldForKey`] for them.
    pub fn opened_after_key(&self) -> impl Iterator<Item = (&PeerId, &[u8])> {
        self.opened_late.iter().map(|f| (&f.from, f.bytes.as_slice()))
    }

    /// The epoch frames are sealed under, if a session key is held.
    pub fn seal_epoch(&self) -> Option<u32> {
        self.sealer.as_ref().map(Sealer::epoch)
    }

    /// The peers frames are currently accepted from (session members with an opener).
    pub fn openable_peers(&self) -> Vec<PeerId> {
        self.openers.keys().cloned().collect()
    }

    /// The seal's counters for one remote peer's frames.
    pub fn open_counters(&self, peer: &PeerId) -> Option<&crate::seal::OpenCounters> {
        self.openers.get(peer).map(Opener::counters)
    }

    /// What the router sees right now: the client's inputs, with peers ready only when a
    /// sealer is held and at least one link is healthy.
    pub fn route_context(&self) -> RouteContext {
        route_context(&self.client.route_inputs(), self.client.members(), self.sealer.is_some())
    }

    /// Frames, classifies and routes the bytes the game wrote to the map server. Appends the
    /// exact bytes for the server to `to_server` (in order, re-obfuscated where packets were
    /// diverted) and queues one [`Output::SendPeerFrame`] per healthy peer for each packet
    /// routed to peers. A partial packet is kept for the next call.
    ///
    /// Late server copies of peers-only actions ([`Output::LateServerCopy`]) come first in
    /// `to_server`; call it with no bytes to take just those. (Once more than
    /// [`UNCONFIRMED_MAX`] actions await acknowledgement, the oldest become late copies for the
    /// next call.)
    pub fn on_game_send(&mut self, now: Instant, bytes: &[u8], to_server: &mut Vec<u8>) {
        to_server.append(&mut self.late_server);
        let inputs = self.client.route_inputs();
        let ctx = route_context(&inputs, self.client.members(), self.sealer.is_some());
        let Node { path, policy, sealer, outputs, scratch, stats, unconfirmed, .. } = self;
        let policy = *policy;
        let mut not_echoed = Vec::new();
        let on_echo = |event: &PeerEvent<'_>, drawn: Result<(), RenderRejected>| {
            if let Err(e) = drawn {
                not_echoed.push((ReceivedEvent::from_event(event), e));
            }
        };
        path.route(
            now,
            bytes,
            &policy,
            &ctx,
            |verdict| match verdict {
                Verdict::Packet(p) => {
                    stats.packets += 1;
                    to_server.extend_from_slice(p.server_bytes);
                    let eligible = match p.route {
                        Route::Server => {
                            let wanted = p
                                .spec
                                .peer_category()
                                .is_some_and(|c| policy.choice(c) != Choice::Server);
                            if wanted && !ctx.peers_usable() {
                                stats.fallbacks += 1;
                            }
                            stats.packets_server += 1;
                            return;
                        }
                        Route::Peers(e) => {
                            stats.packets_peers += 1;
                            e
                        }
                        Route::ServerAndPeers(e) => {
                            stats.packets_mirrored += 1;
                            e
                        }
                    };
                    let Some(sealer) = sealer.as_mut() else {
                        // Unreachable: peers are usable only with a sealer.
                        stats.seal_failures += 1;
                        return;
                    };
                    let event = eligible.event();
                    let channel = Channel::for_event(&event);
                    // A peers-only line on the reliable channel is acknowledged by each peer, or
                    // sent to the server late (see `settle_unconfirmed`).
                    let confirm = matches!(p.route, Route::Peers(_)) && channel == Channel::Chat;
                    scratch.clear();
                    event.encode(scratch);
                    let sealed = if confirm {
                        sealer.seal_wanting_ack(scratch)
                    } else {
                        sealer.seal(scratch)
                    };
                    let frame: Arc<[u8]> = match sealed {
                        Ok(frame) => frame.into(),
                        Err(_) => {
                            stats.seal_failures += 1;
                            return;
                        }
                    };
                    stats.frames_sealed += 1;
                    if confirm && let Some((id, _)) = crate::seal::frame_id(&frame) {
                        unconfirmed.push_back(Unconfirmed {
                            frame: id,
                            at: now,
                            id: p.spec.id(),
                            body: p.body.to_vec(),
                            event: ReceivedEvent::from_event(&event),
                            awaiting: inputs.healthy_peers.clone(),
                        });
                    }
                    debug_assert_eq!(
                        channel == Channel::Movement,
                        eligible.category() == PeerCategory::Movement
                    );
                    for peer in &inputs.healthy_peers {
                        stats.frames_queued += 1;
                        outputs.push_back(Output::SendPeerFrame {
                            peer: peer.clone(),
                            channel,
                            frame: Arc::clone(&frame),
                        });
                    }
                }
                Verdict::Desync { bytes, .. } => {
                    stats.desyncs += 1;
                    stats.passthrough_bytes += bytes.len() as u64;
                    to_server.extend_from_slice(bytes);
                }
                Verdict::PassThrough { bytes, .. } => {
                    stats.passthrough_bytes += bytes.len() as u64;
                    to_server.extend_from_slice(bytes);
                }
            },
            on_echo,
        );
        for (event, e) in not_echoed {
            let reason = NotDrawn::Rejected(e);
            self.outputs.push_back(Output::NotDrawn { from: None, event, reason });
        }
        if self.unconfirmed.len() > UNCONFIRMED_MAX {
            // Taken by the next call, like every late copy.
            self.settle_unconfirmed(now);
        }
    }

    /// Decides what becomes of each peers-only action still awaiting acknowledgement: one whose
    /// time is up, or that went to a peer that is no longer a healthy-linked member (its link
    /// died or went quiet, it left, or this player fell back), or beyond [`UNCONFIRMED_MAX`],
    /// is queued for the server ([`Output::LateServerCopy`]).
    fn settle_unconfirmed(&mut self, now: Instant) {
        if self.unconfirmed.is_empty() {
            return;
        }
        let inputs = self.client.route_inputs();
        let members = self.client.members();
        let mut kept = VecDeque::with_capacity(self.unconfirmed.len());
        let excess = self.unconfirmed.len().saturating_sub(UNCONFIRMED_MAX);
        for (i, entry) in std::mem::take(&mut self.unconfirmed).into_iter().enumerate() {
            let overdue = now.millis_since(entry.at) >= PEER_ACK_TIMEOUT_MS;
            let unreachable = entry
                .awaiting
                .iter()
                .any(|p| !members.contains(p) || !inputs.healthy_peers.contains(p));
            if i < excess || overdue || unreachable {
                let event = entry.event.as_event();
                if self.path.late_server_copy(
                    now,
                    entry.id,
                    &entry.body,
                    &event,
                    &mut self.late_server,
                ) {
                    self.stats.peers_only_late += 1;
                    let late = Output::LateServerCopy { event: entry.event, frame: entry.frame };
                    self.outputs.push_back(late);
                } else {
                    self.stats.peers_only_abandoned += 1;
                }
            } else {
                kept.push_back(entry);
            }
        }
        self.unconfirmed = kept;
    }

    /// The player left the map: what is still unacknowledged belongs to a map the server no
    /// longer shows this player on, so no late copy can follow. (Late copies already decided
    /// stay queued: they were due while the player was there.)
    fn abandon_unconfirmed(&mut self) {
        self.stats.peers_only_abandoned += self.unconfirmed.len() as u64;
        self.unconfirmed.clear();
    }

    /// A peer acknowledged one of this player's frames.
    fn on_ack(&mut self, from: &PeerId, ack: PeerAck) {
        self.stats.acks_received += 1;
        let Some(i) = self.unconfirmed.iter().position(|u| u.frame == ack.frame) else {
            return; // Already settled, or not a frame that wanted one.
        };
        let entry = &mut self.unconfirmed[i];
        entry.awaiting.retain(|p| p != from);
        if entry.awaiting.is_empty() {
            self.unconfirmed.remove(i);
            self.stats.peers_only_confirmed += 1;
        }
    }

    /// Opens, decodes and validates one frame that arrived on the link to `from`, and queues
    /// [`Output::Received`]. Frames from anyone but a current session member, frames the seal
    /// refuses and events that fail validation are dropped, counted and reported.
    pub fn on_peer_frame(
        &mut self,
        now: Instant,
        from: &PeerId,
        bytes: &[u8],
    ) -> Result<(), ReceiveDrop> {
        self.stats.frames_received += 1;
        let result = self.receive(now, now, from, bytes);
        self.count(&result);
        result.map(|_| ())
    }

    fn count(&mut self, result: &Result<Opened, ReceiveDrop>) {
        let slot = match result {
            Ok(Opened::Event) => &mut self.stats.events_received,
            // Counted in `acks_received`.
            Ok(Opened::Ack) => return,
            Err(ReceiveDrop::NotMember { .. }) => &mut self.stats.dropped_not_member,
            Err(ReceiveDrop::NoSessionKey) => &mut self.stats.dropped_no_key,
            Err(ReceiveDrop::Open(_)) => &mut self.stats.dropped_by_seal,
            Err(ReceiveDrop::InvalidEvent(_)) => &mut self.stats.dropped_invalid_event,
            Err(ReceiveDrop::OutsideMap { .. }) => &mut self.stats.dropped_outside_map,
            Err(ReceiveDrop::HeldForKey { .. }) => &mut self.stats.held_for_key,
        };
        *slot += 1;
    }

    /// `since`: when the frame arrived (earlier than `now` for a frame held for its key).
    fn receive(
        &mut self,
        now: Instant,
        since: Instant,
        from: &PeerId,
        bytes: &[u8],
    ) -> Result<Opened, ReceiveDrop> {
        if !self.client.members().contains(from) {
            return Err(ReceiveDrop::NotMember { from: from.clone() });
        }
        let opener = self.openers.get_mut(from).ok_or(ReceiveDrop::NoSessionKey)?;
        let payload = match opener.open(now, bytes) {
            Ok(payload) => payload,
            Err(OpenError::UnknownEpoch { epoch }) if epoch > opener.epoch() => {
                if self.early.len() >= EARLY_FRAMES_MAX {
                    self.early.pop_front();
                }
                let frame = EarlyFrame { at: since, from: from.clone(), bytes: bytes.to_vec() };
                self.early.push_back(frame);
                return Err(ReceiveDrop::HeldForKey { epoch });
            }
            Err(e) => return Err(e.into()),
        };
        if let Some(ack) = PeerAck::decode(&payload) {
            self.on_ack(from, ack);
            return Ok(Opened::Ack);
        }
        let event = PeerEvent::decode(&payload)?;
        if let (PeerEvent::Move { x, y }, Some((width, height))) = (event, self.map_size)
            && (x >= width || y >= height)
        {
            return Err(ReceiveDrop::OutsideMap { x, y, width, height });
        }
        if let Some((frame, true)) = crate::seal::frame_id(bytes) {
            self.acknowledge(from, frame);
        }
        let drawn = self.path.draw_peer_event(now, from, &event);
        let event = ReceivedEvent::from_event(&event);
        self.outputs.push_back(Output::Received { from: from.clone(), event: event.clone() });
        if let Err(reason) = drawn {
            self.outputs.push_back(Output::NotDrawn { from: Some(from.clone()), event, reason });
        }
        Ok(Opened::Event)
    }

    /// Reports [`Output::PeerUse`] when peers came into use or went out of it.
    fn report_peer_use(&mut self) {
        let usage = PeerUse::of(&self.route_context());
        if usage.in_use() != self.in_use {
            self.in_use = usage.in_use();
            self.outputs.push_back(Output::PeerUse(usage));
        }
    }

    /// Answers a frame whose sender asked for an acknowledgement, on the reliable channel.
    fn acknowledge(&mut self, to: &PeerId, frame: FrameId) {
        let Some(sealer) = self.sealer.as_mut() else { return };
        self.scratch.clear();
        PeerAck { frame }.encode(&mut self.scratch);
        let Ok(sealed) = sealer.seal(&self.scratch) else {
            self.stats.seal_failures += 1;
            return;
        };
        self.stats.acks_sent += 1;
        let frame: Arc<[u8]> = sealed.into();
        self.outputs.push_back(Output::SendPeerFrame {
            peer: to.clone(),
            channel: Channel::Chat,
            frame,
        });
    }

    /// Moves the client's outputs into the node's queue and brings keys in line with it.
    fn pump_client(&mut self, now: Instant) {
        let mut keys_changed = false;
        while let Some(out) = self.client.poll_output() {
            if let client::Output::Event {
                event:
                    ClientEvent::KeyChanged { .. }
                    | ClientEvent::SessionJoined { .. }
                    | ClientEvent::SessionLeft { .. }
                    | ClientEvent::PeerJoined { .. }
                    | ClientEvent::PeerLeft { .. }
                    | ClientEvent::Welcomed { .. }
                    | ClientEvent::Stopped { .. },
            } = &out
            {
                keys_changed = true;
            }
            self.outputs.push_back(Output::Client(out));
        }
        if keys_changed {
            self.sync_keys(now);
        }
    }

    /// Keeps one sealer for the client's session key and one opener per member.
    fn sync_keys(&mut self, now: Instant) {
        let (Some(me), Some(key), Some(session)) =
            (self.client.peer_id(), self.client.current_key(), self.client.session_id())
        else {
            self.sealer = None;
            self.keyed = None;
            self.openers.clear();
            return;
        };
        let same_holder = self
            .keyed
            .as_ref()
            .is_some_and(|k| &k.session == session && &k.me == me && k.key.epoch <= key.epoch);
        match (&mut self.sealer, &mut self.keyed) {
            (Some(_), Some(keyed)) if same_holder && keyed.key == *key => {}
            (Some(sealer), Some(keyed)) if same_holder && keyed.key.epoch < key.epoch => {
                // A rotation: the previous epoch stays open for the grace period.
                let _ = sealer.rotate(key);
                for opener in self.openers.values_mut() {
                    let _ = opener.rotate(now, key);
                }
                keyed.key = key.clone();
            }
            _ => {
                // A new session, identity or key (e.g. a restarted coordinator reusing an
                // epoch): fresh stream id, fresh windows.
                self.sealer =
                    Some(Sealer::new(me.clone(), key, &mut self.rng, self.seal_config.clone()));
                self.openers.clear();
                self.keyed =
                    Some(Keyed { session: session.clone(), me: me.clone(), key: key.clone() });
            }
        }
        let members = self.client.members();
        self.openers.retain(|peer, _| members.contains(peer));
        for peer in members {
            if !self.openers.contains_key(peer) {
                let opener = Opener::new(now, peer.clone(), key, self.seal_config.clone());
                self.openers.insert(peer.clone(), opener);
            }
        }
        // The key that frames held back were waiting for may be here now.
        let held = std::mem::take(&mut self.early);
        for frame in held {
            if now.saturating_duration_since(frame.at).as_millis()
                <= u128::from(EARLY_FRAME_HOLD_MS)
            {
                // Counted once when it arrived; now only what became of it.
                let result = self.receive(now, frame.at, &frame.from, &frame.bytes);
                if !matches!(result, Err(ReceiveDrop::HeldForKey { .. })) {
                    self.stats.held_for_key = self.stats.held_for_key.saturating_sub(1);
                    self.count(&result);
                }
                if result.is_ok() {
                    if self.opened_late.len() >= EARLY_FRAMES_MAX {
                        self.opened_late.pop_front();
                    }
                    self.opened_late.push_back(frame);
                }
            } else {
                self.stats.held_for_key = self.stats.held_for_key.saturating_sub(1);
                self.stats.dropped_by_seal += 1;
            }
        }
    }
}

/// What an accepted frame carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Opened {
    Event,
    Ack,
}

/// How long a frame under a key epoch not yet known here is kept for that key.
pub const EARLY_FRAME_HOLD_MS: u64 = 2_000;

/// Most frames kept for a key not yet known here (the oldest goes first).
const EARLY_FRAMES_MAX: usize = 64;

/// A frame kept for a key epoch not yet known here.
#[derive(Debug)]
struct EarlyFrame {
    at: Instant,
    from: PeerId,
    bytes: Vec<u8>,
}

fn route_context(inputs: &RouteInputs, members: &[PeerId], sealer: bool) -> RouteContext {
    let peers_ready = inputs.keyed && sealer && !inputs.healthy_peers.is_empty();
    RouteContext {
        p2p_enabled: inputs.p2p_enabled,
        zone_enabled: inputs.zone_enabled,
        joined: inputs.joined,
        peers_ready,
        all_members_linked: peers_ready && members.iter().all(|m| inputs.healthy_peers.contains(m)),
    }
}

impl SansIo for Node {
    type Input = client::Input;
    type Output = Output;

    fn handle_input(&mut self, now: Instant, input: client::Input) {
        if matches!(input, client::Input::ZoneChanged(_)) {
            self.abandon_unconfirmed();
        }
        self.client.handle_input(now, input);
        self.pump_client(now);
        self.settle_unconfirmed(now);
        self.report_peer_use();
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.client.handle_timeout(now);
        self.pump_client(now);
        self.settle_unconfirmed(now);
        self.report_peer_use();
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let ack = self.unconfirmed.iter().map(|u| u.at.add_millis(PEER_ACK_TIMEOUT_MS)).min();
        match (self.client.poll_timeout(), ack) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}
