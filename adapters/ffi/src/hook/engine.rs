//! What each hooked Winsock call does, with the real functions and the batteries layer behind
//! two traits, so the whole behaviour runs in host tests with fakes. The Windows glue
//! (`hook::windows`) only converts arguments and calls these methods.
//!
//! - `connect`: the [`SocketTracker`] names the socket; the map server's starts (once) the
//!   batteries layer ([`MapPath`]) and a fresh map connection in the map the char server named.
//! - `send` on the map-server socket: routed; the server's share goes out with the real `send`
//!   (what it does not take now is kept and sent first next time), and the game is told that
//!   all its bytes were sent (what went to peers must not be sent again).
//! - `recv` on the map-server socket: the server's bytes go through the receive path, peers are
//!   drawn in, and only whole packets reach the game: "would block" when nothing whole is ready.
//!   On login and char sockets the replies are followed and handed over whole, the same way.
//! - Every other socket, and every call the tracker cannot place, goes to the real function.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;

use ro_p2p_core::gate::PlayerFacts;
use ro_p2p_core::packet::PacketVersion;
use ro_p2p_core::render::MapChange;

use super::tracker::{Role, SocketId, SocketTracker, TrackerEvent};

/// `WSAEWOULDBLOCK`: nothing to read (or write) now on a non-blocking socket.
pub const WSAEWOULDBLOCK: i32 = 10035;

/// Winsock's real functions, as the hooks reach them. Errors are `WSAGetLastError` codes.
pub trait RealSockets {
    /// The real `send`.
    fn send(&mut self, socket: SocketId, data: &[u8]) -> Result<usize, i32>;
    /// The real `recv`.
    fn recv(&mut self, socket: SocketId, buf: &mut [u8]) -> Result<usize, i32>;
}

/// The batteries layer on the map-server connection (`hook::batteries::Batteries`, or a fake).
pub trait MapPath {
    /// The game connected to a map server: a fresh stream both ways, in `map` if known.
    fn new_map_connection(&mut self, map: Option<&str>);
    /// The player changed map on the same map server.
    fn set_zone(&mut self, map: &str);
    /// Routes the game's bytes; appends the server's share to `to_server`. Never loses bytes:
    /// on any failure the bytes are appended as they are.
    fn game_send(&mut self, data: &[u8], to_server: &mut Vec<u8>);
    /// Bytes the map server sent.
    fn server_recv(&mut self, data: &[u8]);
    /// The map server closed the connection: a partial packet is handed over as it is.
    fn server_closed(&mut self);
    /// The map changes the server announced since the last call.
    fn take_map_changes(&mut self) -> Vec<MapChange>;
    /// Bytes for the game ready to read (peer events and notices drawn since included).
    fn pending(&mut self) -> usize;
    /// Moves up to `buf.len()` ready bytes into `buf`.
    fn take(&mut self, buf: &mut [u8]) -> usize;
    /// Appends bytes the node queued for the server outside a game send (late copies of
    /// peers-only chat lines and emotes not every peer confirmed); none by default.
    fn late_server(&mut self, to_server: &mut Vec<u8>) {
        let _ = to_server;
    }
}

/// Starts the batteries layer for the player the login and char replies described; `Err`
/// says why it could not (P2P then stays off and the map socket passes untouched).
pub type Starter<P> = Box<dyn FnMut(&PlayerFacts) -> Result<P, String> + Send>;

/// The hooks' state behind every hooked call.
pub struct Hooks<P: MapPath> {
    tracker: SocketTracker,
    path: Option<P>,
    starter: Starter<P>,
    start_failed: bool,
    /// Bytes for the server the real `send` has not taken yet, per map socket.
    unsent: BTreeMap<SocketId, Vec<u8>>,
    scratch: Vec<u8>,
    notes: VecDeque<String>,
}

impl<P: MapPath> Hooks<P> {
    /// Hooks for a game speaking `version`; `starter` runs at the first map-server connection.
    pub fn new(version: PacketVersion, starter: Starter<P>) -> Hooks<P> {
        Hooks {
            tracker: SocketTracker::new(version),
            path: None,
            starter,
            start_failed: false,
            unsent: BTreeMap::new(),
            scratch: Vec::new(),
            notes: VecDeque::new(),
        }
    }

    /// What the login and char replies said about the player.
    pub fn facts(&self) -> &PlayerFacts {
        self.tracker.facts()
    }

    /// The batteries layer, once started.
    pub fn path(&mut self) -> Option<&mut P> {
        self.path.as_mut()
    }

    /// The next line for the log.
    pub fn poll_note(&mut self) -> Option<String> {
        self.notes.pop_front().or_else(|| self.tracker.poll_note())
    }

    /// `connect(socket, to)` was called (whatever it returned, unless a hard error).
    pub fn connect(&mut self, socket: SocketId, to: SocketAddr) {
        self.unsent.remove(&socket);
        self.tracker.on_connect(socket, to);
        while let Some(event) = self.tracker.poll_event() {
            if let TrackerEvent::MapConnected { map, .. } = event {
                self.map_connected(map.as_deref());
            }
        }
    }

    fn map_connected(&mut self, map: Option<&str>) {
        if self.path.is_none() && !self.start_failed {
            match (self.starter)(self.tracker.facts()) {
                Ok(p) => self.path = Some(p),
                Err(e) => {
                    self.start_failed = true;
                    self.notes.push_back(format!("P2P not started: {e}; the game plays on"));
                }
            }
        }
        if let Some(p) = self.path.as_mut() {
            p.new_map_connection(map);
        }
    }

    /// `closesocket(socket)` was called.
    pub fn close(&mut self, socket: SocketId) {
        self.unsent.remove(&socket);
        self.tracker.on_close(socket);
        while self.tracker.poll_event().is_some() {}
    }

    fn routed(&self, socket: SocketId) -> bool {
        self.path.is_some() && self.tracker.role(socket) == Role::Map
    }

    /// Sends what the real `send` did not take before; `Err(WSAEWOULDBLOCK)` while some waits.
    fn flush(&mut self, real: &mut impl RealSockets, socket: SocketId) -> Result<(), i32> {
        let Some(waiting) = self.unsent.get_mut(&socket) else { return Ok(()) };
        while !waiting.is_empty() {
            let n = real.send(socket, waiting)?;
            if n == 0 {
                return Err(WSAEWOULDBLOCK);
            }
            waiting.drain(..n.min(waiting.len()));
        }
        self.unsent.remove(&socket);
        Ok(())
    }

    /// `send(socket, data)`: how many bytes the game is told were sent, or a Winsock error.
    pub fn send(
        &mut self,
        real: &mut impl RealSockets,
        socket: SocketId,
        data: &[u8],
    ) -> Result<usize, i32> {
        if !self.routed(socket) {
            return real.send(socket, data);
        }
        self.flush(real, socket)?;
        let mut out = Vec::with_capacity(data.len());
        if let Some(p) = self.path.as_mut() {
            p.game_send(data, &mut out);
        }
        let mut sent = 0;
        while sent < out.len() {
            match real.send(socket, out.get(sent..).unwrap_or_default()) {
                Ok(0) | Err(WSAEWOULDBLOCK) => break,
                Ok(n) => sent += n,
                Err(e) if sent == 0 && data.len() == out.len() => return Err(e),
                Err(_) => break,
            }
        }
        if sent < out.len() {
            out.drain(..sent);
            self.unsent.insert(socket, out);
        }
        Ok(data.len())
    }

    /// `recv(socket, buf)`: bytes given to the game (0: the server closed), or a Winsock error
    /// (`WSAEWOULDBLOCK` when nothing whole is ready).
    pub fn recv(
        &mut self,
        real: &mut impl RealSockets,
        socket: SocketId,
        buf: &mut [u8],
    ) -> Result<usize, i32> {
        match self.tracker.role(socket) {
            Role::Login | Role::Char => self.recv_gate(real, socket, buf),
            Role::Map if self.path.is_some() => self.recv_map(real, socket, buf),
            _ => real.recv(socket, buf),
        }
    }

    fn read_into_scratch(
        &mut self,
        real: &mut impl RealSockets,
        socket: SocketId,
        want: usize,
    ) -> Result<usize, i32> {
        self.scratch.resize(want.max(1), 0);
        real.recv(socket, &mut self.scratch)
    }

    fn recv_gate(
        &mut self,
        real: &mut impl RealSockets,
        socket: SocketId,
        buf: &mut [u8],
    ) -> Result<usize, i32> {
        if self.tracker.ready_len(socket) == 0 {
            let n = self.read_into_scratch(real, socket, buf.len())?;
            if n == 0 {
                self.tracker.on_server_closed(socket);
            } else {
                let bytes = self.scratch.get(..n).unwrap_or_default().to_vec();
                self.tracker.on_server_bytes(socket, &bytes);
            }
            if self.tracker.ready_len(socket) == 0 {
                return if n == 0 { Ok(0) } else { Err(WSAEWOULDBLOCK) };
            }
        }
        Ok(self.tracker.take_ready(socket, buf))
    }

    fn recv_map(
        &mut self,
        real: &mut impl RealSockets,
        socket: SocketId,
        buf: &mut [u8],
    ) -> Result<usize, i32> {
        // Late server copies go out whenever the game comes by, after what waits already.
        if let Some(p) = self.path.as_mut() {
            let mut late = Vec::new();
            p.late_server(&mut late);
            if !late.is_empty() {
                self.unsent.entry(socket).or_default().extend_from_slice(&late);
            }
        }
        // Bytes the real send did not take are retried whenever the game comes by.
        let _ = self.flush(real, socket);
        let pending = self.path.as_mut().map_or(0, |p| p.pending());
        if pending == 0 {
            let n = self.read_into_scratch(real, socket, buf.len())?;
            let Some(p) = self.path.as_mut() else { return Ok(0) };
            if n == 0 {
                p.server_closed();
            } else {
                p.server_recv(self.scratch.get(..n).unwrap_or_default());
            }
            for change in p.take_map_changes() {
                if let MapChange::SameServer(m) = &change {
                    p.set_zone(&m.map);
                }
                self.tracker.on_map_change(&change);
            }
            if p.pending() == 0 {
                return if n == 0 { Ok(0) } else { Err(WSAEWOULDBLOCK) };
            }
        }
        Ok(self.path.as_mut().map_or(0, |p| p.take(buf)))
    }

    /// Whether a `select` should report `socket` readable whatever the network says: whole
    /// replies or drawn peer events wait for the game.
    pub fn readable_now(&mut self, socket: SocketId) -> bool {
        if self.tracker.ready_len(socket) > 0 {
            return true;
        }
        self.routed(socket) && self.path.as_mut().is_some_and(|p| p.pending() > 0)
    }

    /// Called from the `select` hook: gives waiting server bytes another chance to leave.
    pub fn tick(&mut self, real: &mut impl RealSockets) {
        let waiting: Vec<SocketId> = self.unsent.keys().copied().collect();
        for socket in waiting {
            let _ = self.flush(real, socket);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddrV4};

    use ro_p2p_core::gate::{AC_ACCEPT_LOGIN, HC_NOTIFY_ZONESVR};

    use super::*;

    const V: PacketVersion = PacketVersion::V20211103;
    const LOGIN: SocketId = 1;
    const CHAR: SocketId = 2;
    const MAP: SocketId = 3;
    const OTHER: SocketId = 4;

    fn addr(last: u8, port: u16) -> SocketAddr {
        SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, last), port).into()
    }

    /// Sockets whose peers are queues; `send` takes at most `send_room` bytes per call.
    #[derive(Default)]
    struct FakeSockets {
        inbound: BTreeMap<SocketId, VecDeque<Vec<u8>>>,
        closed: Vec<SocketId>,
        sent: BTreeMap<SocketId, Vec<u8>>,
        send_room: Option<usize>,
    }

    impl RealSockets for FakeSockets {
        fn send(&mut self, socket: SocketId, data: &[u8]) -> Result<usize, i32> {
            let n = self.send_room.map_or(data.len(), |r| r.min(data.len()));
            if n == 0 {
                return Err(WSAEWOULDBLOCK);
            }
            if let Some(r) = self.send_room.as_mut() {
                *r -= n;
            }
            self.sent.entry(socket).or_default().extend_from_slice(&data[..n]);
            Ok(n)
        }
        fn recv(&mut self, socket: SocketId, buf: &mut [u8]) -> Result<usize, i32> {
            let queue = self.inbound.entry(socket).or_default();
            match queue.front_mut() {
                Some(chunk) => {
                    if buf.is_empty() {
                        return Err(WSAEWOULDBLOCK);
                    }
                    let n = chunk.len().min(buf.len());
                    buf[..n].copy_from_slice(&chunk[..n]);
                    chunk.drain(..n);
                    if chunk.is_empty() {
                        queue.pop_front();
                    }
                    Ok(n)
                }
                None if self.closed.contains(&socket) => Ok(0),
                None => Err(WSAEWOULDBLOCK),
            }
        }
    }

    /// A map path that sends every other packet byte pair to "peers" (drops bytes starting
    /// with 0xAA), hands server bytes through in 4-byte units and records calls.
    #[derive(Default)]
    struct FakePath {
        calls: Vec<String>,
        out: Vec<u8>,
        partial: Vec<u8>,
        changes: Vec<MapChange>,
        late: Vec<u8>,
    }

    impl MapPath for FakePath {
        fn late_server(&mut self, to_server: &mut Vec<u8>) {
            to_server.append(&mut self.late);
        }
        fn new_map_connection(&mut self, map: Option<&str>) {
            self.calls.push(format!("new map connection {map:?}"));
        }
        fn set_zone(&mut self, map: &str) {
            self.calls.push(format!("zone {map}"));
        }
        fn game_send(&mut self, data: &[u8], to_server: &mut Vec<u8>) {
            if data.first() != Some(&0xAA) {
                to_server.extend_from_slice(data);
            }
            self.calls.push(format!("routed {}", data.len()));
        }
        fn server_recv(&mut self, data: &[u8]) {
            self.partial.extend_from_slice(data);
            let whole = self.partial.len() / 4 * 4;
            self.out.extend(self.partial.drain(..whole));
        }
        fn server_closed(&mut self) {
            self.out.append(&mut self.partial);
        }
        fn take_map_changes(&mut self) -> Vec<MapChange> {
            std::mem::take(&mut self.changes)
        }
        fn pending(&mut self) -> usize {
            self.out.len()
        }
        fn take(&mut self, buf: &mut [u8]) -> usize {
            let n = self.out.len().min(buf.len());
            buf[..n].copy_from_slice(&self.out[..n]);
            self.out.drain(..n);
            n
        }
    }

    fn accept_login(aid: u32, char_server: SocketAddr) -> Vec<u8> {
        let SocketAddr::V4(cs) = char_server else { unreachable!() };
        let mut p = vec![0u8; 64 + 160];
        let len = p.len() as u16;
        p[0..2].copy_from_slice(&AC_ACCEPT_LOGIN.to_le_bytes());
        p[2..4].copy_from_slice(&len.to_le_bytes());
        p[8..12].copy_from_slice(&aid.to_le_bytes());
        p[64..68].copy_from_slice(&cs.ip().octets());
        p[68..70].copy_from_slice(&cs.port().to_le_bytes());
        p
    }

    fn zonesvr(map: &str, to: SocketAddr) -> Vec<u8> {
        let SocketAddr::V4(to) = to else { unreachable!() };
        let mut p = vec![0u8; 156];
        p[0..2].copy_from_slice(&HC_NOTIFY_ZONESVR.to_le_bytes());
        p[6..6 + map.len()].copy_from_slice(map.as_bytes());
        p[22..26].copy_from_slice(&to.ip().octets());
        p[26..28].copy_from_slice(&to.port().to_le_bytes());
        p
    }

    fn started(starts: std::sync::Arc<std::sync::Mutex<Vec<Option<u32>>>>) -> Starter<FakePath> {
        Box::new(move |facts| {
            starts.lock().unwrap().push(facts.account_id);
            Ok(FakePath::default())
        })
    }

    /// Login, char select, map connect: returns the hooks with the map socket connected.
    fn at_the_map_server(
        real: &mut FakeSockets,
        starter: Starter<FakePath>,
    ) -> (Hooks<FakePath>, Vec<u8>) {
        let mut h = Hooks::new(V, starter);
        let mut buf = vec![0u8; 4096];
        h.connect(LOGIN, addr(1, 6900));
        let login = accept_login(2_000_001, addr(2, 6121));
        real.inbound.entry(LOGIN).or_default().push_back(login[..10].to_vec());
        real.inbound.entry(LOGIN).or_default().push_back(login[10..].to_vec());
        assert_eq!(h.recv(real, LOGIN, &mut buf), Err(WSAEWOULDBLOCK), "a partial reply waits");
        assert_eq!(h.recv(real, LOGIN, &mut buf), Ok(login.len()));
        assert_eq!(buf[..login.len()], login[..]);
        h.close(LOGIN);
        h.connect(CHAR, addr(2, 6121));
        let mut char_stream = 2_000_001u32.to_le_bytes().to_vec();
        char_stream.extend(zonesvr("prontera.gat", addr(3, 5121)));
        real.inbound.entry(CHAR).or_default().push_back(char_stream.clone());
        assert_eq!(h.recv(real, CHAR, &mut buf), Ok(char_stream.len()));
        h.close(CHAR);
        h.connect(MAP, addr(3, 5121));
        (h, buf)
    }

    #[test]
    fn the_map_socket_is_routed_and_only_whole_server_packets_reach_the_game() {
        let starts = Default::default();
        let mut real = FakeSockets::default();
        let (mut h, mut buf) =
            at_the_map_server(&mut real, started(std::sync::Arc::clone(&starts)));
        assert_eq!(*starts.lock().unwrap(), [Some(2_000_001)], "started once, knowing the account");
        let calls = &h.path().unwrap().calls;
        assert_eq!(calls, &["new map connection Some(\"prontera.gat\")"]);

        assert_eq!(h.send(&mut real, MAP, &[0xAA, 1, 2]), Ok(3), "diverted bytes count as sent");
        assert_eq!(h.send(&mut real, MAP, &[0x01, 1]), Ok(2));
        assert_eq!(real.sent[&MAP], [0x01, 1], "only the server's share went out");

        real.inbound.entry(MAP).or_default().push_back(vec![9; 6]);
        assert_eq!(h.recv(&mut real, MAP, &mut buf), Ok(4), "the whole part only");
        assert!(!h.readable_now(MAP));
        assert_eq!(h.recv(&mut real, MAP, &mut buf), Err(WSAEWOULDBLOCK));
        real.inbound.entry(MAP).or_default().push_back(vec![9; 1]);
        assert_eq!(h.recv(&mut real, MAP, &mut buf), Err(WSAEWOULDBLOCK), "still partial");
        real.closed.push(MAP);
        assert_eq!(h.recv(&mut real, MAP, &mut buf), Ok(3), "the rest when the server closes");
        assert_eq!(h.recv(&mut real, MAP, &mut buf), Ok(0));
    }

    #[test]
    fn bytes_the_real_send_cannot_take_are_kept_and_sent_first_next_time() {
        let mut real = FakeSockets::default();
        let (mut h, mut buf) = at_the_map_server(&mut real, started(Default::default()));
        real.send_room = Some(2);
        assert_eq!(h.send(&mut real, MAP, &[1, 2, 3, 4, 5]), Ok(5));
        assert_eq!(real.sent[&MAP], [1, 2]);
        assert_eq!(h.send(&mut real, MAP, &[6]), Err(WSAEWOULDBLOCK), "nothing taken while full");
        real.send_room = Some(100);
        assert_eq!(h.recv(&mut real, MAP, &mut buf), Err(WSAEWOULDBLOCK));
        assert_eq!(real.sent[&MAP], [1, 2, 3, 4, 5], "flushed when the game came by");
        assert_eq!(h.send(&mut real, MAP, &[6]), Ok(1));
        assert_eq!(real.sent[&MAP], [1, 2, 3, 4, 5, 6], "in order");
    }

    #[test]
    fn late_server_copies_go_out_when_the_game_reads_after_what_waited() {
        let mut real = FakeSockets::default();
        let (mut h, mut buf) = at_the_map_server(&mut real, started(Default::default()));
        real.send_room = Some(1);
        assert_eq!(h.send(&mut real, MAP, &[1, 2]), Ok(2));
        h.path().unwrap().late = vec![0xF3, 0x00];
        real.send_room = Some(100);
        assert_eq!(h.recv(&mut real, MAP, &mut buf), Err(WSAEWOULDBLOCK));
        assert_eq!(real.sent[&MAP], [1, 2, 0xF3, 0x00], "the waiting byte first, then the copy");
        assert_eq!(h.recv(&mut real, MAP, &mut buf), Err(WSAEWOULDBLOCK));
        assert_eq!(real.sent[&MAP], [1, 2, 0xF3, 0x00], "once");
    }

    #[test]
    fn sockets_of_no_game_server_pass_untouched_both_ways() {
        let mut real = FakeSockets::default();
        let (mut h, mut buf) = at_the_map_server(&mut real, started(Default::default()));
        assert_eq!(h.send(&mut real, OTHER, &[0xAA, 1]), Ok(2));
        assert_eq!(real.sent[&OTHER], [0xAA, 1]);
        real.inbound.entry(OTHER).or_default().push_back(vec![7; 3]);
        assert_eq!(h.recv(&mut real, OTHER, &mut buf), Ok(3));
        assert_eq!(h.path().unwrap().calls.len(), 1, "the path saw none of it");
    }

    #[test]
    fn when_p2p_cannot_start_the_map_socket_passes_untouched() {
        let mut real = FakeSockets::default();
        let (mut h, mut buf) =
            at_the_map_server(&mut real, Box::new(|_| Err("no configuration".to_string())));
        assert!(h.path().is_none());
        let notes: Vec<String> = std::iter::from_fn(|| h.poll_note()).collect();
        assert!(notes.iter().any(|n| n.contains("no configuration")), "{notes:?}");
        assert_eq!(h.send(&mut real, MAP, &[0xAA, 1]), Ok(2));
        assert_eq!(real.sent[&MAP], [0xAA, 1]);
        real.inbound.entry(MAP).or_default().push_back(vec![7; 3]);
        assert_eq!(h.recv(&mut real, MAP, &mut buf), Ok(3), "partial packets too");
    }

    #[test]
    fn a_map_change_on_the_same_server_sets_the_zone_and_a_new_server_gets_a_fresh_stream() {
        use ro_p2p_core::gate::{MapMove, ServerMove};
        let mut real = FakeSockets::default();
        let (mut h, mut buf) = at_the_map_server(&mut real, started(Default::default()));
        let p = h.path().unwrap();
        p.changes.push(MapChange::SameServer(MapMove { map: "geffen.gat".into(), x: 1, y: 1 }));
        p.changes.push(MapChange::OtherServer(ServerMove {
            map: "izlude.gat".into(),
            x: 1,
            y: 1,
            ip: Ipv4Addr::new(10, 0, 0, 5),
            port: 5122,
        }));
        real.inbound.entry(MAP).or_default().push_back(vec![1; 4]);
        assert_eq!(h.recv(&mut real, MAP, &mut buf), Ok(4));
        h.close(MAP);
        h.connect(OTHER, addr(5, 5122));
        assert_eq!(
            h.path().unwrap().calls[1..],
            ["zone geffen.gat", "new map connection Some(\"izlude.gat\")"]
        );
        assert_eq!(h.send(&mut real, OTHER, &[0xAA]), Ok(1));
        assert!(!real.sent.contains_key(&OTHER), "the new map socket is routed");
    }
}
