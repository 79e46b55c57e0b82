//! Following the login and char servers' replies on their way to the game: what the proxy and
//! the DLL both need to know (the account, its web auth token, the character, the map, the map
//! server's address) and the one change a proxy makes (sending the game to its own doors).
//!
//! [`ReplyFollower`] takes the server's bytes and hands back the game's bytes, unchanged but
//! for the server addresses a redirect asked for; what it learned comes out as [`GateEvent`]s,
//! which [`PlayerFacts`] folds into what is known of the player. Bytes it cannot frame pass
//! through untouched and following stops ([`GateEvent::Stopped`]), never a byte lost.

use std::collections::VecDeque;
use std::net::SocketAddrV4;

use super::{
    AC_ACCEPT_LOGIN, AC_ACCEPT_LOGIN_OLD, CharList, CharSelectReply, CharacterInfo, GateFrame,
    GateFrameError, GateFramer, GateServer, HC_ACCEPT_ENTER, HC_ACCEPT_MAKECHAR,
    HC_ACCEPT_MAKECHAR_OLD, HC_NOTIFY_ZONESVR, HC_NOTIFY_ZONESVR_OLD, LoginAccepted, LoginReply,
    MakeCharReply, ZoneServer, parse_char_list, parse_char_select_reply, parse_login_reply,
    parse_make_char_reply, server_addresses,
};
use crate::packet::PacketVersion;

/// Events kept until [`ReplyFollower::poll_event`] at most (oldest dropped first).
pub const GATE_EVENTS_MAX: usize = 64;

/// Which server a reply sends the game to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NextServer {
    /// A char server of `AC_ACCEPT_LOGIN`'s list.
    Char,
    /// The map server of `HC_NOTIFY_ZONESVR`.
    Map,
}

/// What a [`ReplyFollower`] learned from the server's replies.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum GateEvent {
    /// The login server accepted the account (addresses as the server sent them).
    LoggedIn(LoginAccepted),
    /// The char server said whose connection this is (its raw 4-byte account id).
    AccountId(u32),
    /// The account's characters.
    CharList(CharList),
    /// A character was made.
    CharMade(CharacterInfo),
    /// A character was selected: its map and map server (as the server sent them).
    ZoneServer(ZoneServer),
    /// The stream could not be framed from here on; its bytes pass through untouched.
    Stopped(GateFrameError),
}

/// Follows one login or char connection, server to game.
#[derive(Clone, Debug)]
pub struct ReplyFollower {
    framer: GateFramer,
    version: PacketVersion,
    stopped: bool,
    events: VecDeque<GateEvent>,
    facts: PlayerFacts,
}

impl ReplyFollower {
    /// A follower of a login connection at `version`.
    pub fn login(version: PacketVersion) -> ReplyFollower {
        ReplyFollower::new(GateServer::Login, version)
    }

    /// A follower of a char connection at `version` (the raw account id comes first).
    pub fn char(version: PacketVersion) -> ReplyFollower {
        ReplyFollower::new(GateServer::Char, version)
    }

    fn new(server: GateServer, version: PacketVersion) -> ReplyFollower {
        ReplyFollower {
            framer: GateFramer::new(server, version),
            version,
            stopped: false,
            events: VecDeque::new(),
            facts: PlayerFacts::default(),
        }
    }

    /// What the replies so far said about the player.
    pub fn facts(&self) -> &PlayerFacts {
        &self.facts
    }

    /// The game said whose connection this is (`CH_ENTER`'s account id), before the server
    /// did.
    pub fn set_account_id(&mut self, account_id: u32) {
        self.facts.account_id = Some(account_id);
    }

    /// Whether following stopped (everything passes through untouched).
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// Takes bytes the server sent and appends to `out` what the game must get: each whole
    /// reply, with every server address it names shown to `redirect` first, with what is known
    /// of the player up to that reply (`None` keeps the address, `Some` writes that one
    /// instead). A partial reply waits for its rest.
    pub fn push(
        &mut self,
        bytes: &[u8],
        out: &mut Vec<u8>,
        mut redirect: impl FnMut(NextServer, SocketAddrV4, &PlayerFacts) -> Option<SocketAddrV4>,
    ) {
        if self.stopped {
            out.extend_from_slice(bytes);
            return;
        }
        self.framer.push(bytes);
        loop {
            let event = match self.framer.next_frame() {
                Ok(Some(GateFrame::AccountId { account_id, bytes })) => {
                    out.extend_from_slice(bytes);
                    let event = GateEvent::AccountId(account_id);
                    self.facts.learn(&event);
                    Some(event)
                }
                Ok(Some(GateFrame::Packet { id, bytes })) => {
                    let start = out.len();
                    out.extend_from_slice(bytes);
                    let packet = out.get_mut(start..).unwrap_or_default();
                    let event = learn(self.version, id, packet);
                    if let Some(e) = &event {
                        self.facts.learn(e);
                    }
                    let next = match id {
                        AC_ACCEPT_LOGIN | AC_ACCEPT_LOGIN_OLD => Some(NextServer::Char),
                        HC_NOTIFY_ZONESVR | HC_NOTIFY_ZONESVR_OLD => Some(NextServer::Map),
                        _ => None,
                    };
                    if let (Some(next), Ok(addresses)) = (next, server_addresses(packet)) {
                        for a in addresses {
                            let at = SocketAddrV4::new(a.ip, a.port);
                            if let Some(to) = redirect(next, at, &self.facts) {
                                // The packet was framed whole: the address fits.
                                let _ = a.write(packet, *to.ip(), to.port());
                            }
                        }
                    }
                    event
                }
                Ok(None) => return,
                Err(e) => {
                    self.stopped = true;
                    out.extend_from_slice(self.framer.pending());
                    Some(GateEvent::Stopped(e))
                }
            };
            if let Some(event) = event {
                if self.events.len() >= GATE_EVENTS_MAX {
                    self.events.pop_front();
                }
                self.events.push_back(event);
            }
            if self.stopped {
                return;
            }
        }
    }

    /// The next thing learned, oldest first.
    pub fn poll_event(&mut self) -> Option<GateEvent> {
        self.events.pop_front()
    }

    /// The connection ended: the bytes of a partial reply, for the game as they are.
    pub fn rest(&self) -> &[u8] {
        if self.stopped { &[] } else { self.framer.pending() }
    }
}

/// What one whole reply says, if it is one the follower reads (before any rewrite).
fn learn(version: PacketVersion, id: u16, packet: &[u8]) -> Option<GateEvent> {
    match id {
        AC_ACCEPT_LOGIN | AC_ACCEPT_LOGIN_OLD => match parse_login_reply(packet) {
            Ok(LoginReply::Accepted(a)) => Some(GateEvent::LoggedIn(a)),
            _ => None,
        },
        HC_ACCEPT_ENTER => parse_char_list(version, packet).ok().map(GateEvent::CharList),
        HC_ACCEPT_MAKECHAR | HC_ACCEPT_MAKECHAR_OLD => match parse_make_char_reply(version, packet)
        {
            Ok(MakeCharReply::Accepted(c)) => Some(GateEvent::CharMade(c)),
            _ => None,
        },
        HC_NOTIFY_ZONESVR | HC_NOTIFY_ZONESVR_OLD => match parse_char_select_reply(packet) {
            Ok(CharSelectReply::Zone(z)) => Some(GateEvent::ZoneServer(z)),
            _ => None,
        },
        _ => None,
    }
}

/// What is known of one player from the login and char replies.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlayerFacts {
    /// The account id (the player's peer id).
    pub account_id: Option<u32>,
    /// The login server's web auth token (from 2017-03-15 on).
    pub web_auth_token: Option<String>,
    /// The account's characters, as last listed (and made since).
    pub characters: Vec<CharacterInfo>,
    /// The selected character's name.
    pub char_name: Option<String>,
    /// The map the selected character is on, e.g. `prontera.gat`.
    pub map: Option<String>,
    /// The map server the char server sent the game to (before any redirect).
    pub map_server: Option<SocketAddrV4>,
}

impl PlayerFacts {
    /// Folds in one event.
    pub fn learn(&mut self, event: &GateEvent) {
        match event {
            GateEvent::LoggedIn(a) => {
                self.account_id = Some(a.account_id);
                self.web_auth_token = a.web_auth_token.clone();
            }
            GateEvent::AccountId(aid) => {
                self.account_id.get_or_insert(*aid);
            }
            GateEvent::CharList(list) => self.characters = list.characters.clone(),
            GateEvent::CharMade(c) => self.characters.push(c.clone()),
            GateEvent::ZoneServer(z) => {
                self.char_name =
                    self.characters.iter().find(|c| c.char_id == z.char_id).map(|c| c.name.clone());
                self.map = Some(z.map.clone());
                self.map_server = Some(SocketAddrV4::new(z.ip, z.port));
            }
            GateEvent::Stopped(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    const V: PacketVersion = PacketVersion::V20211103;

    fn accept_login(aid: u32, servers: &[SocketAddrV4]) -> Vec<u8> {
        let mut p = vec![0u8; 64 + 160 * servers.len()];
        let len = p.len() as u16;
        p[0..2].copy_from_slice(&AC_ACCEPT_LOGIN.to_le_bytes());
        p[2..4].copy_from_slice(&len.to_le_bytes());
        p[8..12].copy_from_slice(&aid.to_le_bytes());
        p[47..63].copy_from_slice(b"0123456789abcdef");
        for (i, s) in servers.iter().enumerate() {
            let at = 64 + 160 * i;
            p[at..at + 4].copy_from_slice(&s.ip().octets());
            p[at + 4..at + 6].copy_from_slice(&s.port().to_le_bytes());
        }
        p
    }

    fn zonesvr(cid: u32, map: &str, to: SocketAddrV4) -> Vec<u8> {
        let mut p = vec![0u8; 156];
        p[0..2].copy_from_slice(&HC_NOTIFY_ZONESVR.to_le_bytes());
        p[2..6].copy_from_slice(&cid.to_le_bytes());
        p[6..6 + map.len()].copy_from_slice(map.as_bytes());
        p[22..26].copy_from_slice(&to.ip().octets());
        p[26..28].copy_from_slice(&to.port().to_le_bytes());
        p
    }

    fn addr(last: u8, port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, last), port)
    }

    #[test]
    fn every_char_server_is_shown_to_the_redirect_and_rewritten_in_any_split() {
        let servers = [addr(1, 6121), addr(2, 6122)];
        let reply = accept_login(7, &servers);
        let door = addr(9, 40000);
        for split in [1, 2, 3, 63, 64, 100, reply.len()] {
            let mut f = ReplyFollower::login(V);
            let mut out = Vec::new();
            let mut seen = Vec::new();
            for chunk in reply.chunks(split) {
                f.push(chunk, &mut out, |next, at, _| {
                    seen.push((next, at));
                    Some(door)
                });
            }
            assert_eq!(seen, [(NextServer::Char, servers[0]), (NextServer::Char, servers[1])]);
            assert_eq!(out.len(), reply.len());
            let mut expected = reply.clone();
            for at in [64, 224] {
                expected[at..at + 4].copy_from_slice(&door.ip().octets());
                expected[at + 4..at + 6].copy_from_slice(&door.port().to_le_bytes());
            }
            assert_eq!(out, expected, "split {split}");
            let Some(GateEvent::LoggedIn(a)) = f.poll_event() else { panic!("no login") };
            assert_eq!(a.account_id, 7);
            assert_eq!(a.char_servers[0].port, 6121, "the event has the server's addresses");
            assert_eq!(f.poll_event(), None);
        }
    }

    #[test]
    fn a_redirect_that_declines_leaves_the_bytes_as_the_server_sent_them() {
        let reply = accept_login(7, &[addr(1, 6121)]);
        let mut f = ReplyFollower::login(V);
        let mut out = Vec::new();
        f.push(&reply, &mut out, |_, _, _| None);
        assert_eq!(out, reply);
    }

    #[test]
    fn the_char_stream_tells_the_account_the_character_and_the_map_server() {
        let mut f = ReplyFollower::char(V);
        let mut facts = PlayerFacts::default();
        let mut stream = 42u32.to_le_bytes().to_vec();
        let map_server = addr(3, 5121);
        stream.extend(zonesvr(150_001, "prontera.gat", map_server));
        let mut out = Vec::new();
        let door = addr(9, 40001);
        f.push(&stream, &mut out, |next, at, known| {
            assert_eq!((next, at), (NextServer::Map, map_server));
            assert_eq!(known.account_id, Some(42), "the redirect knows whose game it sends");
            Some(door)
        });
        assert_eq!(out[..4], 42u32.to_le_bytes());
        assert_eq!(out[4 + 22..4 + 26], door.ip().octets());
        while let Some(e) = f.poll_event() {
            facts.learn(&e);
        }
        assert_eq!(&facts, f.facts(), "the events fold into the same facts");
        assert_eq!(facts.account_id, Some(42));
        assert_eq!(facts.map.as_deref(), Some("prontera.gat"));
        assert_eq!(facts.map_server, Some(map_server));
    }

    #[test]
    fn garbage_passes_untouched_and_stops_following_once() {
        let mut f = ReplyFollower::login(V);
        let mut out = Vec::new();
        let garbage = [0xEE, 0xEE, 1, 2, 3];
        f.push(&garbage, &mut out, |_, _, _| panic!("nothing to redirect"));
        assert_eq!(out, garbage);
        assert!(matches!(f.poll_event(), Some(GateEvent::Stopped(_))));
        // A valid reply after the garbage is not followed (the stream is out of step).
        let reply = accept_login(7, &[addr(1, 6121)]);
        f.push(&reply, &mut out, |_, _, _| panic!("not followed any more"));
        assert_eq!(out[garbage.len()..], reply[..]);
        assert_eq!(f.poll_event(), None);
        assert!(f.is_stopped());
        assert!(f.rest().is_empty());
    }

    #[test]
    fn a_partial_reply_is_left_for_the_game_when_the_connection_ends() {
        let reply = accept_login(7, &[addr(1, 6121)]);
        let mut f = ReplyFollower::login(V);
        let mut out = Vec::new();
        f.push(&reply[..100], &mut out, |_, _, _| None);
        assert!(out.is_empty());
        assert_eq!(f.rest(), &reply[..100]);
    }
}
