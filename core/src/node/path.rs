//! [`GamePath`]: one map-server connection of the game, both ways, and the decisions that
//! join them: the game's bytes are framed, classified and routed ([`GameStream`]); the
//! server's bytes reach the game with peers drawn in ([`ReceiveStream`]); an action the policy
//! sent to peers only gets the echo rAthena would have sent the actor; a late server copy of
//! one makes the server's echo of it expected (not shown twice); a peer's event is drawn under
//! the account id its peer id names. The [`Node`](super::Node) owns one, and so does the C
//! ABI's router handle (which has no signaling client); nothing else makes these decisions.

use std::collections::BTreeMap;
use std::net::SocketAddrV4;

use crate::gate::ServerMove;
use crate::packet::{Obfuscation, PacketVersion, PeerEvent};
use crate::render::{MapChange, ReceiveStats, ReceiveStream, RenderRejected, account_id_of};
use crate::route::{GameStream, OwnNameError, Policy, Route, RouteContext, Verdict};
use crate::time::Instant;
use crate::wire::PeerId;

/// Why something was not drawn into the game's stream.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NotDrawn {
    /// The sender's peer id is not an account id (a decimal number), so the game has no unit
    /// to draw it as.
    #[error("peer {0} is not an account id")]
    NotAnAccount(PeerId),
    /// The receive stream refused it.
    #[error(transparent)]
    Rejected(#[from] RenderRejected),
}

/// Most peers [`GamePath::set_peer_account_id`] names an account id for.
pub const NAMED_ACCOUNTS_MAX: usize = 4096;

/// One map-server connection of the game, both ways (see the module documentation).
#[derive(Clone, Debug)]
pub struct GamePath {
    version: PacketVersion,
    obfuscation: Obfuscation,
    send: GameStream,
    recv: ReceiveStream,
    own_name: Option<Vec<u8>>,
    /// Account ids of peers whose peer id is not one.
    accounts: BTreeMap<PeerId, u32>,
}

impl GamePath {
    /// A fresh connection at `version`, the game's ids obfuscated or not.
    pub fn new(version: PacketVersion, obfuscation: Obfuscation) -> GamePath {
        GamePath {
            version,
            obfuscation,
            send: GameStream::new(version, obfuscation),
            recv: ReceiveStream::new(version),
            own_name: None,
            accounts: BTreeMap::new(),
        }
    }

    /// The game's PACKETVER.
    pub fn version(&self) -> PacketVersion {
        self.version
    }

    /// The game-to-server stream (e.g. whether it desynced, a partial packet it holds).
    pub fn send_stream(&self) -> &GameStream {
        &self.send
    }

    /// The server-to-game stream (its counters, desync, what it knows of the view).
    pub fn receive_stream(&self) -> &ReceiveStream {
        &self.recv
    }

    /// The receive stream's counters.
    pub fn receive_stats(&self) -> ReceiveStats {
        self.recv.stats()
    }

    /// The game opened a new connection to the map server: both streams start over. The
    /// character name and the own account id are kept; bytes of an unfinished packet of the
    /// old connection are discarded.
    pub fn new_connection(&mut self) {
        self.send = GameStream::new(self.version, self.obfuscation);
        if let Some(name) = &self.own_name {
            // Checked when it was set.
            let _ = self.send.set_own_name(name);
        }
        let own = self.recv.own_account_id();
        self.recv = ReceiveStream::new(self.version);
        if let Some(aid) = own {
            self.recv.set_own_account_id(aid);
        }
    }

    /// Sets the player's character name (see [`GameStream::set_own_name`]); kept across
    /// connections.
    pub fn set_own_name(&mut self, name: &[u8]) -> Result<(), OwnNameError> {
        self.send.set_own_name(name)?;
        self.own_name = Some(name.to_vec());
        Ok(())
    }

    /// Sets the player's own account id (otherwise learnt from the server's `ZC_AID`).
    pub fn set_own_account_id(&mut self, aid: u32) {
        self.recv.set_own_account_id(aid);
    }

    /// Names the account id of `peer` when its peer id is not one (a driver that knows it
    /// another way, e.g. a simulation that names players by host). Returns `false`, naming
    /// nothing, once [`NAMED_ACCOUNTS_MAX`] other peers are named.
    pub fn set_peer_account_id(&mut self, peer: PeerId, aid: u32) -> bool {
        if self.accounts.len() >= NAMED_ACCOUNTS_MAX && !self.accounts.contains_key(&peer) {
            return false;
        }
        self.accounts.insert(peer, aid);
        true
    }

    /// Frames, classifies and routes the bytes the game wrote to the map server, calling
    /// `on_verdict` for each verdict in order. Each packet routed to peers only then gets its
    /// local echo drawn into the game's stream; `on_echo` sees what became of it.
    pub fn route(
        &mut self,
        now: Instant,
        bytes: &[u8],
        policy: &Policy,
        ctx: &RouteContext,
        mut on_verdict: impl FnMut(Verdict<'_>),
        mut on_echo: impl FnMut(&PeerEvent<'_>, Result<(), RenderRejected>),
    ) {
        let GamePath { send, recv, .. } = self;
        send.feed(bytes, policy, ctx, |verdict| {
            on_verdict(verdict);
            if let Verdict::Packet(p) = verdict
                && let Route::Peers(eligible) = p.route
            {
                // The server never sees it, so it cannot echo it: the echo is drawn here.
                let event = eligible.event();
                on_echo(&event, recv.push_local_echo(now, &event));
            }
        });
    }

    /// Appends to `out` the server's copy of a packet routed to peers only earlier (its
    /// de-obfuscated `id` and `body`; see [`GameStream::server_copy`]) and expects the server's
    /// echo of `event`, which the local echo already showed, so it is not shown twice. Returns
    /// `false` (nothing appended, nothing expected) once the game's stream has desynced.
    pub fn late_server_copy(
        &mut self,
        now: Instant,
        id: u16,
        body: &[u8],
        event: &PeerEvent<'_>,
        out: &mut Vec<u8>,
    ) -> bool {
        if !self.send.server_copy(id, body, out) {
            return false;
        }
        self.recv.expect_server_echo(now, event);
        true
    }

    /// Takes bytes the map server sent to the game (see
    /// [`GamePath::on_server_bytes_redirecting`]).
    pub fn on_server_bytes(&mut self, now: Instant, bytes: &[u8]) {
        self.recv.push_server(now, bytes);
    }

    /// Takes bytes the map server sent to the game; a move to another map server is shown to
    /// `redirect`, and when it answers an address the game is sent there instead (a proxy's
    /// door). Map changes are kept for [`GamePath::take_map_changes`].
    pub fn on_server_bytes_redirecting(
        &mut self,
        now: Instant,
        bytes: &[u8],
        redirect: impl FnMut(&ServerMove) -> Option<SocketAddrV4>,
    ) {
        self.recv.push_server_redirecting(now, bytes, redirect);
    }

    /// The map server closed the connection: a partial packet it left is handed to the game
    /// as it is.
    pub fn server_closed(&mut self) {
        self.recv.finish();
    }

    /// Draws what the peer `from` did, as the game shows another player doing it (under the
    /// account id its peer id names, or the one [`GamePath::set_peer_account_id`] named).
    pub fn draw_peer_event(
        &mut self,
        now: Instant,
        from: &PeerId,
        event: &PeerEvent<'_>,
    ) -> Result<(), NotDrawn> {
        let aid = account_id_of(from)
            .or_else(|| self.accounts.get(from).copied())
            .ok_or_else(|| NotDrawn::NotAnAccount(from.clone()))?;
        Ok(self.recv.push_peer_event(now, aid, event)?)
    }

    /// Draws what the peer with account id `aid` did (for drivers whose transport names
    /// senders by account id).
    pub fn draw_account_event(
        &mut self,
        now: Instant,
        aid: u32,
        event: &PeerEvent<'_>,
    ) -> Result<(), RenderRejected> {
        self.recv.push_peer_event(now, aid, event)
    }

    /// Draws a one-line notice for the player between whole server packets (see
    /// [`ReceiveStream::push_notice`]).
    pub fn draw_notice(&mut self, text: &str) -> Result<(), RenderRejected> {
        self.recv.push_notice(text)
    }

    /// The map changes the server announced since the last call, oldest first.
    pub fn take_map_changes(&mut self) -> impl Iterator<Item = MapChange> + '_ {
        self.recv.take_map_changes()
    }

    /// Bytes ready for the game, in order.
    pub fn game_output(&self) -> &[u8] {
        self.recv.output()
    }

    /// Marks the first `n` bytes of [`GamePath::game_output`] as handed to the game.
    pub fn consume_game_output(&mut self, n: usize) {
        self.recv.consume(n);
    }
}
