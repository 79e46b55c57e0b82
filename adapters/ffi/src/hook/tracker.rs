//! Which of the game's sockets is which, and what the login and char servers told it: the
//! sans-IO part of the hooks. The hook glue reports every `connect`, the server's bytes of the
//! login and char connections, the map changes the map stream announced and every close; the
//! tracker says which socket is the map server's (so only that one runs through the batteries
//! layer) and hands back the login and char servers' bytes as whole replies, followed with the
//! core's [`ReplyFollower`] (no address is rewritten: the game talks to the real servers).
//!
//! A socket is the map server's when it connects to the address the char server named
//! (`HC_NOTIFY_ZONESVR`) or a map move named (`ZC_NPCACK_SERVERMOVE`); one that connects to a
//! char server of the login reply is a char connection; any other IPv4 connection is followed
//! as a login connection: if its bytes are not the login server's, following stops and they
//! pass untouched.

use std::collections::{BTreeMap, VecDeque};
use std::net::{SocketAddr, SocketAddrV4};

use ro_p2p_core::gate::{GateEvent, PlayerFacts, ReplyFollower};
use ro_p2p_core::packet::PacketVersion;
use ro_p2p_core::render::MapChange;

/// A socket as the game's Winsock calls name it (`SOCKET`, widened).
pub type SocketId = u64;

/// Most sockets followed at once; more are passed through untouched.
pub const TRACKED_SOCKETS_MAX: usize = 64;
/// Most notes kept until [`SocketTracker::poll_note`] (oldest dropped first).
pub const NOTES_MAX: usize = 64;

/// What a socket is to the tracker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Followed as a login connection (any connection not known to be another server's).
    Login,
    /// A char server of the login reply.
    Char,
    /// The map server of the char server's (or a map move's) reply: routed and drawn into.
    Map,
    /// Not followed (not IPv4, or too many sockets): its bytes pass untouched.
    Untouched,
}

/// What the tracker learned that the glue acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrackerEvent {
    /// The game connected to the map server: P2P runs on this socket, in `map` (as the server
    /// named it, e.g. `prontera.gat`), for the player the login and char replies described.
    MapConnected {
        /// The socket.
        socket: SocketId,
        /// The map the player enters, if a reply named it.
        map: Option<String>,
    },
    /// The map-server socket was closed by the game.
    MapClosed {
        /// The socket.
        socket: SocketId,
    },
}

/// One followed login or char connection.
#[derive(Debug)]
struct Gate {
    follower: ReplyFollower,
    /// Whole replies for the game not read yet.
    ready: Vec<u8>,
    /// The server closed its side: bytes pass as they come.
    closed: bool,
}

#[derive(Debug)]
enum Conn {
    Gate(Role, Box<Gate>),
    Map,
}

/// Follows the game's connections (sans-IO; see the module docs).
#[derive(Debug)]
pub struct SocketTracker {
    version: PacketVersion,
    conns: BTreeMap<SocketId, Conn>,
    facts: PlayerFacts,
    char_servers: Vec<SocketAddrV4>,
    /// Where the game goes next for the map server, and which map it enters there.
    next_map_server: Option<(SocketAddrV4, String)>,
    events: VecDeque<TrackerEvent>,
    notes: VecDeque<String>,
}

impl SocketTracker {
    /// A tracker for a game speaking `version`.
    pub fn new(version: PacketVersion) -> SocketTracker {
        SocketTracker {
            version,
            conns: BTreeMap::new(),
            facts: PlayerFacts::default(),
            char_servers: Vec::new(),
            next_map_server: None,
            events: VecDeque::new(),
            notes: VecDeque::new(),
        }
    }

    /// What the login and char replies said about the player so far.
    pub fn facts(&self) -> &PlayerFacts {
        &self.facts
    }

    /// The socket's role (`Untouched` for one never connected through the hooks).
    pub fn role(&self, socket: SocketId) -> Role {
        match self.conns.get(&socket) {
            Some(Conn::Gate(role, _)) => *role,
            Some(Conn::Map) => Role::Map,
            None => Role::Untouched,
        }
    }

    /// The game connects `socket` to `to`; returns what the socket is from now on.
    pub fn on_connect(&mut self, socket: SocketId, to: SocketAddr) -> Role {
        self.conns.remove(&socket);
        let SocketAddr::V4(to) = to else { return Role::Untouched };
        if self.conns.len() >= TRACKED_SOCKETS_MAX {
            self.note(format!("socket {socket} to {to}: {TRACKED_SOCKETS_MAX} followed already"));
            return Role::Untouched;
        }
        if let Some((at, map)) = self.next_map_server.clone()
            && at == to
        {
            self.conns.insert(socket, Conn::Map);
            self.note(format!("socket {socket} to {to}: the map server ({map})"));
            self.events.push_back(TrackerEvent::MapConnected { socket, map: Some(map) });
            return Role::Map;
        }
        let (role, follower) = if self.char_servers.contains(&to) {
            (Role::Char, ReplyFollower::char(self.version))
        } else {
            (Role::Login, ReplyFollower::login(self.version))
        };
        self.note(format!("socket {socket} to {to}: followed as a {role:?} connection"));
        self.conns.insert(
            socket,
            Conn::Gate(role, Box::new(Gate { follower, ready: Vec::new(), closed: false })),
        );
        role
    }

    /// The server sent `bytes` on a login or char socket; the whole replies among them become
    /// readable ([`SocketTracker::take_ready`]). Other sockets' bytes are not the tracker's.
    pub fn on_server_bytes(&mut self, socket: SocketId, bytes: &[u8]) {
        let Some(Conn::Gate(_, gate)) = self.conns.get_mut(&socket) else { return };
        if gate.closed {
            gate.ready.extend_from_slice(bytes);
            return;
        }
        gate.follower.push(bytes, &mut gate.ready, |_, _, _| None);
        let mut learned = Vec::new();
        while let Some(event) = gate.follower.poll_event() {
            learned.push(event);
        }
        for event in learned {
            self.learn(socket, &event);
        }
    }

    fn learn(&mut self, socket: SocketId, event: &GateEvent) {
        self.facts.learn(event);
        match event {
            GateEvent::LoggedIn(a) => {
                self.char_servers =
                    a.char_servers.iter().map(|c| SocketAddrV4::new(c.ip, c.port)).collect();
                self.note(format!(
                    "logged in: account {}, {} char server(s), web auth token {}",
                    a.account_id,
                    self.char_servers.len(),
                    if a.web_auth_token.is_some() { "given" } else { "none" }
                ));
            }
            GateEvent::ZoneServer(z) => {
                let at = SocketAddrV4::new(z.ip, z.port);
                self.next_map_server = Some((at, z.map.clone()));
                self.note(format!(
                    "character {} selected: {} on the map server {at}",
                    self.facts.char_name.as_deref().unwrap_or("?"),
                    z.map
                ));
            }
            GateEvent::Stopped(e) => {
                self.note(format!("socket {socket}: not followed any more ({e}); bytes pass"));
            }
            _ => {}
        }
    }

    /// The server closed a login or char socket (`recv` gave 0): a partial reply is readable
    /// as it is.
    pub fn on_server_closed(&mut self, socket: SocketId) {
        if let Some(Conn::Gate(_, gate)) = self.conns.get_mut(&socket)
            && !gate.closed
        {
            let rest = gate.follower.rest().to_vec();
            gate.ready.extend_from_slice(&rest);
            gate.closed = true;
        }
    }

    /// Bytes of whole replies the game may read on a login or char socket.
    pub fn ready_len(&self, socket: SocketId) -> usize {
        match self.conns.get(&socket) {
            Some(Conn::Gate(_, gate)) => gate.ready.len(),
            _ => 0,
        }
    }

    /// Moves up to `buf.len()` ready bytes of a login or char socket into `buf`.
    pub fn take_ready(&mut self, socket: SocketId, buf: &mut [u8]) -> usize {
        let Some(Conn::Gate(_, gate)) = self.conns.get_mut(&socket) else { return 0 };
        let n = gate.ready.len().min(buf.len());
        if let (Some(to), Some(from)) = (buf.get_mut(..n), gate.ready.get(..n)) {
            to.copy_from_slice(from);
        }
        gate.ready.drain(..n);
        n
    }

    /// The map stream announced a map change: a move to another map server makes the next
    /// connection to that address the map server's.
    pub fn on_map_change(&mut self, change: &MapChange) {
        if let MapChange::OtherServer(to) = change {
            let at = SocketAddrV4::new(to.ip, to.port);
            self.next_map_server = Some((at, to.map.clone()));
            self.note(format!("map server move: {} on {at}", to.map));
        }
    }

    /// The game closed `socket`.
    pub fn on_close(&mut self, socket: SocketId) {
        if let Some(Conn::Map) = self.conns.remove(&socket) {
            self.note(format!("socket {socket}: the map server's, closed"));
            self.events.push_back(TrackerEvent::MapClosed { socket });
        }
    }

    /// The next event, oldest first.
    pub fn poll_event(&mut self) -> Option<TrackerEvent> {
        self.events.pop_front()
    }

    /// The next line for the log, oldest first.
    pub fn poll_note(&mut self) -> Option<String> {
        self.notes.pop_front()
    }

    fn note(&mut self, line: String) {
        if self.notes.len() >= NOTES_MAX {
            self.notes.pop_front();
        }
        self.notes.push_back(line);
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use ro_p2p_core::gate::{AC_ACCEPT_LOGIN, HC_NOTIFY_ZONESVR, ServerMove};

    use super::*;

    const V: PacketVersion = PacketVersion::V20211103;

    fn addr(last: u8, port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, last), port)
    }

    fn accept_login(aid: u32, char_server: SocketAddrV4) -> Vec<u8> {
        let mut p = vec![0u8; 64 + 160];
        let len = p.len() as u16;
        p[0..2].copy_from_slice(&AC_ACCEPT_LOGIN.to_le_bytes());
        p[2..4].copy_from_slice(&len.to_le_bytes());
        p[8..12].copy_from_slice(&aid.to_le_bytes());
        p[47..63].copy_from_slice(b"0123456789abcdef");
        p[64..68].copy_from_slice(&char_server.ip().octets());
        p[68..70].copy_from_slice(&char_server.port().to_le_bytes());
        p
    }

    fn zonesvr(map: &str, to: SocketAddrV4) -> Vec<u8> {
        let mut p = vec![0u8; 156];
        p[0..2].copy_from_slice(&HC_NOTIFY_ZONESVR.to_le_bytes());
        p[2..6].copy_from_slice(&150_001u32.to_le_bytes());
        p[6..6 + map.len()].copy_from_slice(map.as_bytes());
        p[22..26].copy_from_slice(&to.ip().octets());
        p[26..28].copy_from_slice(&to.port().to_le_bytes());
        p
    }

    fn read_all(t: &mut SocketTracker, s: SocketId) -> Vec<u8> {
        let mut buf = vec![0u8; 1000];
        let n = t.take_ready(s, &mut buf);
        buf.truncate(n);
        buf
    }

    /// Login on socket 1, char on 2, returns the tracker ready for the map connection.
    fn through_char_select(map_server: SocketAddrV4) -> SocketTracker {
        let mut t = SocketTracker::new(V);
        assert_eq!(t.on_connect(1, addr(1, 6900).into()), Role::Login);
        t.on_server_bytes(1, &accept_login(2_000_001, addr(2, 6121)));
        t.on_close(1);
        assert_eq!(t.on_connect(2, addr(2, 6121).into()), Role::Char);
        let mut stream = 2_000_001u32.to_le_bytes().to_vec();
        stream.extend(zonesvr("prontera.gat", map_server));
        t.on_server_bytes(2, &stream);
        assert_eq!(read_all(&mut t, 2), stream, "the game gets the char server's bytes as sent");
        t
    }

    #[test]
    fn the_socket_connected_to_the_address_the_char_server_named_is_the_map_servers() {
        let map_server = addr(3, 5121);
        let mut t = through_char_select(map_server);
        assert_eq!(t.facts().account_id, Some(2_000_001));
        assert_eq!(t.on_connect(3, map_server.into()), Role::Map);
        assert_eq!(
            t.poll_event(),
            Some(TrackerEvent::MapConnected { socket: 3, map: Some("prontera.gat".into()) })
        );
        assert_eq!(t.role(3), Role::Map);
        t.on_close(3);
        assert_eq!(t.poll_event(), Some(TrackerEvent::MapClosed { socket: 3 }));
        assert_eq!(t.role(3), Role::Untouched);
    }

    #[test]
    fn login_replies_become_readable_only_whole_in_any_split() {
        let reply = accept_login(7, addr(2, 6121));
        for split in [1, 3, 63, 100, reply.len()] {
            let mut t = SocketTracker::new(V);
            t.on_connect(1, addr(1, 6900).into());
            let mut got = Vec::new();
            for chunk in reply.chunks(split) {
                t.on_server_bytes(1, chunk);
                let ready = t.ready_len(1);
                assert!(ready == 0 || got.len() + ready == reply.len(), "split {split}");
                got.extend(read_all(&mut t, 1));
            }
            assert_eq!(got, reply, "split {split}");
            assert_eq!(t.facts().account_id, Some(7));
        }
    }

    #[test]
    fn a_connection_that_is_not_a_game_server_passes_its_bytes_untouched() {
        let mut t = SocketTracker::new(V);
        t.on_connect(9, addr(8, 80).into());
        let bytes = b"HTTP/1.1 200 OK\r\n\r\nhello".to_vec();
        t.on_server_bytes(9, &bytes[..5]);
        t.on_server_bytes(9, &bytes[5..]);
        assert_eq!(read_all(&mut t, 9), bytes);
        assert_eq!(t.facts(), &PlayerFacts::default());
    }

    #[test]
    fn a_partial_reply_is_readable_when_the_server_closes() {
        let reply = accept_login(7, addr(2, 6121));
        let mut t = SocketTracker::new(V);
        t.on_connect(1, addr(1, 6900).into());
        t.on_server_bytes(1, &reply[..50]);
        assert_eq!(t.ready_len(1), 0);
        t.on_server_closed(1);
        assert_eq!(read_all(&mut t, 1), reply[..50]);
        t.on_server_bytes(1, b"late");
        assert_eq!(read_all(&mut t, 1), b"late", "after the close nothing is held back");
    }

    #[test]
    fn a_map_server_move_makes_the_next_connection_there_the_map_servers() {
        let mut t = through_char_select(addr(3, 5121));
        t.on_connect(3, addr(3, 5121).into());
        let other = addr(4, 5122);
        t.on_map_change(&MapChange::OtherServer(ServerMove {
            map: "izlude.gat".into(),
            x: 1,
            y: 2,
            ip: *other.ip(),
            port: other.port(),
        }));
        t.on_close(3);
        assert_eq!(t.on_connect(4, other.into()), Role::Map);
        let events: Vec<_> = std::iter::from_fn(|| t.poll_event()).collect();
        assert_eq!(
            events.last(),
            Some(&TrackerEvent::MapConnected { socket: 4, map: Some("izlude.gat".into()) })
        );
    }

    #[test]
    fn ipv6_and_sockets_beyond_the_limit_are_untouched() {
        let mut t = SocketTracker::new(V);
        assert_eq!(t.on_connect(1, "[::1]:6900".parse().unwrap()), Role::Untouched);
        for s in 0..TRACKED_SOCKETS_MAX as u64 {
            t.on_connect(100 + s, addr(1, 6900).into());
        }
        assert_eq!(t.on_connect(5, addr(1, 6900).into()), Role::Untouched);
        let mut buf = [0u8; 4];
        assert_eq!(t.take_ready(5, &mut buf), 0);
    }
}
