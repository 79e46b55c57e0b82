//! Nodes wired in memory through a real [`Coordinator`]: signaling is relayed by the core
//! coordinator, peer links connect as soon as the client asks for them, and sealed frames are
//! delivered to the addressed node. Time only moves when a test advances it.

use super::*;
use crate::coordinator::{self, ConnId, Coordinator, Identity};
use crate::wire::{ServerMessage, Zone, encode_server};

fn pid(s: &str) -> PeerId {
    PeerId::new(s).unwrap()
}
fn zone(s: &str) -> Zone {
    Zone::new(s).unwrap()
}
fn t(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

fn walk(x: u16, y: u16) -> Vec<u8> {
    let b0 = (x >> 2) as u8;
    let b1 = ((x << 6) as u8) | ((y >> 4) as u8 & 0x3F);
    let b2 = (y << 4) as u8;
    vec![0x5F, 0x03, b0, b1, b2]
}
fn chat(text: &[u8]) -> Vec<u8> {
    let len = (4 + text.len()) as u16;
    let mut p = vec![0xF3, 0x00];
    p.extend_from_slice(&len.to_le_bytes());
    p.extend_from_slice(text);
    p
}
fn emote(kind: u8) -> Vec<u8> {
    vec![0xBF, 0x00, kind]
}
fn npc_click(npc: u32) -> Vec<u8> {
    let mut p = vec![0x90, 0x00];
    p.extend_from_slice(&npc.to_le_bytes());
    p.push(1);
    p
}
fn use_item(index: u16) -> Vec<u8> {
    let mut p = vec![0x9F, 0x00];
    p.extend_from_slice(&index.to_le_bytes());
    p.resize(20, 0);
    p
}

/// One frame that crossed a simulated peer link.
#[derive(Clone, Debug)]
struct Sent {
    from: usize,
    to: PeerId,
    channel: Channel,
    frame: Arc<[u8]>,
}

struct World {
    now: Instant,
    coord: Coordinator,
    nodes: Vec<Node>,
    names: Vec<PeerId>,
    conns: Vec<Option<ConnId>>,
    next_conn: u64,
    received: Vec<Vec<(PeerId, ReceivedEvent)>>,
    drops: Vec<Vec<ReceiveDrop>>,
    /// [`Output::LateServerCopy`] events, per node.
    late: Vec<Vec<ReceivedEvent>>,
    /// [`Output::NotDrawn`] and [`Output::PeerUse`], per node.
    not_drawn: Vec<Vec<(Option<PeerId>, NotDrawn)>>,
    peer_use: Vec<Vec<PeerUse>>,
    sent: Vec<Sent>,
    /// Frames are recorded but not delivered while this is set.
    hold_frames: bool,
}

impl World {
    fn new(coord_config: coordinator::Config) -> World {
        World {
            now: t(0),
            coord: Coordinator::new(coord_config, Rng::from_seed(1)),
            nodes: Vec::new(),
            names: Vec::new(),
            conns: Vec::new(),
            next_conn: 1,
            received: Vec::new(),
            drops: Vec::new(),
            late: Vec::new(),
            not_drawn: Vec::new(),
            peer_use: Vec::new(),
            sent: Vec::new(),
            hold_frames: false,
        }
    }

    /// Adds a node named `name` on map `map` and lets everything settle.
    fn add(&mut self, name: &str, map: &str) -> usize {
        self.add_with(name, map, PacketVersion::V20211103, Obfuscation::Off)
    }

    /// [`World::add`] with a packet version and obfuscation.
    fn add_with(
        &mut self,
        name: &str,
        map: &str,
        packet_version: PacketVersion,
        obfuscation: Obfuscation,
    ) -> usize {
        let client = client::Config {
            coordinator_urls: vec!["ws://coordinator".into()],
            peer_id: Some(pid(name)),
            p2p_enabled_zones: [zone("prontera"), zone("geffen")].into_iter().collect(),
            ..client::Config::default()
        };
        let config = NodeConfig { obfuscation, packet_version, ..NodeConfig::with_client(client) };
        let seed = 100 + self.nodes.len() as u64;
        self.nodes.push(Node::new(config, Rng::from_seed(seed), self.now));
        self.names.push(pid(name));
        self.conns.push(None);
        self.received.push(Vec::new());
        self.drops.push(Vec::new());
        self.late.push(Vec::new());
        self.not_drawn.push(Vec::new());
        self.peer_use.push(Vec::new());
        let i = self.nodes.len() - 1;
        self.nodes[i].handle_input(self.now, client::Input::ZoneChanged(zone(map)));
        self.settle();
        i
    }

    fn index_of(&self, peer: &PeerId) -> Option<usize> {
        self.names.iter().position(|n| n == peer)
    }

    /// Executes every output of every party until nothing is left.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            let mut progress = false;
            for i in 0..self.nodes.len() {
                while let Some(out) = self.nodes[i].poll_output() {
                    progress = true;
                    self.execute(i, out);
                }
            }
            while let Some(out) = self.coord.poll_output() {
                progress = true;
                self.execute_coord(out);
            }
            if !progress {
                return;
            }
        }
        panic!("the world did not settle");
    }

    fn execute(&mut self, i: usize, out: Output) {
        let now = self.now;
        match out {
            Output::Client(client::Output::OpenTransport { .. }) => {
                let conn = ConnId(self.next_conn);
                self.next_conn += 1;
                self.conns[i] = Some(conn);
                self.coord.handle_input(
                    now,
                    coordinator::Input::Connected {
                        conn,
                        identity: Identity::Anonymous,
                        ice_servers: vec![],
                        origin: None,
                    },
                );
                self.nodes[i].handle_input(now, client::Input::TransportOpened);
            }
            Output::Client(client::Output::SendFrame { frame }) => {
                if let Some(conn) = self.conns[i] {
                    let bytes = frame.into_bytes();
                    self.coord.handle_input(now, coordinator::Input::Frame { conn, bytes });
                }
            }
            Output::Client(client::Output::CloseTransport) => {
                if let Some(conn) = self.conns[i].take() {
                    self.coord.handle_input(now, coordinator::Input::Disconnected { conn });
                }
            }
            // Links negotiate with placeholder SDP through the coordinator and connect as soon
            // as the answer is applied; ICE is the WebRTC adapter's business.
            Output::Client(client::Output::ConnectPeer {
                peer,
                role: client::Role::Offerer,
                ..
            }) => {
                let event = client::LinkEvent::LocalDescription { sdp: "offer".into() };
                self.nodes[i].handle_input(now, client::Input::PeerLinkEvent { peer, event });
            }
            Output::Client(client::Output::SendSignal {
                peer,
                signal: client::Signal::Offer { .. },
            }) => {
                let event = client::LinkEvent::LocalDescription { sdp: "answer".into() };
                self.nodes[i].handle_input(now, client::Input::PeerLinkEvent { peer, event });
            }
            Output::Client(client::Output::SendSignal {
                peer,
                signal: client::Signal::Answer { .. },
            }) => {
                let me = self.names[i].clone();
                let event = client::LinkEvent::Connected;
                if let Some(j) = self.index_of(&peer) {
                    let input = client::Input::PeerLinkEvent { peer: me, event: event.clone() };
                    self.nodes[j].handle_input(now, input);
                }
                self.nodes[i].handle_input(now, client::Input::PeerLinkEvent { peer, event });
            }
            Output::Client(_) => {}
            Output::SendPeerFrame { peer, channel, frame } => {
                self.sent.push(Sent { from: i, to: peer.clone(), channel, frame: frame.clone() });
                if !self.hold_frames {
                    self.deliver(i, &peer, &frame);
                }
            }
            Output::Received { from, event } => self.received[i].push((from, event)),
            Output::LateServerCopy { event, .. } => self.late[i].push(event),
            Output::NotDrawn { from, reason, .. } => self.not_drawn[i].push((from, reason)),
            Output::PeerUse(usage) => self.peer_use[i].push(usage),
        }
    }

    fn deliver(&mut self, from: usize, to: &PeerId, frame: &[u8]) {
        let Some(j) = self.index_of(to) else { return };
        let sender = self.names[from].clone();
        if let Err(drop) = self.nodes[j].on_peer_frame(self.now, &sender, frame) {
            self.drops[j].push(drop);
        }
    }

    fn execute_coord(&mut self, out: coordinator::Output) {
        let now = self.now;
        match out {
            coordinator::Output::Send { conn, msg } => {
                if let Some(i) = self.conns.iter().position(|c| *c == Some(conn)) {
                    let frame = encode_server(&msg).into_bytes();
                    self.nodes[i].handle_input(now, client::Input::Frame(frame));
                }
            }
            coordinator::Output::Close { conn, code, reason } => {
                if let Some(i) = self.conns.iter().position(|c| *c == Some(conn)) {
                    self.conns[i] = None;
                    let reason =
                        client::CloseReason::ClosedByCoordinator { code: Some(code), reason };
                    self.nodes[i].handle_input(now, client::Input::TransportClosed(reason));
                }
            }
        }
    }

    /// Runs every timer of every party up to `now + ms`, in order.
    fn advance(&mut self, ms: u64) {
        let until = self.now.add_millis(ms);
        for _ in 0..100_000 {
            let next = self
                .nodes
                .iter()
                .filter_map(|n| n.poll_timeout())
                .chain(self.coord.poll_timeout())
                .min();
            match next {
                Some(at) if at <= until => {
                    self.now = self.now.max(at);
                    let now = self.now;
                    self.coord.handle_timeout(now);
                    for n in &mut self.nodes {
                        if n.poll_timeout().is_some_and(|d| d <= now) {
                            n.handle_timeout(now);
                        }
                    }
                    self.settle();
                }
                _ => {
                    self.now = until;
                    return;
                }
            }
        }
        panic!("timers did not come to rest");
    }

    /// The game of node `i` writes `bytes` to the map server; returns what the server gets.
    fn game_send(&mut self, i: usize, bytes: &[u8]) -> Vec<u8> {
        let mut to_server = Vec::new();
        self.nodes[i].on_game_send(self.now, bytes, &mut to_server);
        self.settle();
        to_server
    }
}

fn world() -> World {
    World::new(coordinator::Config::default())
}

#[test]
fn joined_nodes_hold_a_sealer_and_an_opener_per_member() {
    let mut w = world();
    let a = w.add("alice", "prontera");
    let b = w.add("bob", "prontera");
    for (i, other) in [(a, "bob"), (b, "alice")] {
        assert_eq!(w.nodes[i].client().lifecycle(), client::Lifecycle::Joined);
        assert_eq!(w.nodes[i].seal_epoch(), Some(1));
        assert_eq!(w.nodes[i].openable_peers(), vec![pid(other)]);
        assert!(w.nodes[i].route_context().peers_usable());
    }
}

#[test]
fn movement_and_chat_reach_the_other_node_as_received_and_the_server() {
    let mut w = world();
    let a = w.add("alice", "prontera");
    let b = w.add("bob", "prontera");
    let mut bytes = walk(150, 200);
    bytes.extend(chat(b"alice : hello"));
    bytes.extend(emote(1));
    let to_server = w.game_send(a, &bytes);
    assert_eq!(to_server, bytes, "mirror policy: the server sees every packet as sent");
    assert_eq!(w.drops[b], vec![]);
    assert_eq!(
        w.received[b],
        vec![
            (pid("alice"), ReceivedEvent::Move { x: 150, y: 200 }),
            (pid("alice"), ReceivedEvent::Chat { text: b"alice : hello".to_vec() }),
            (pid("alice"), ReceivedEvent::Emote { kind: 1 }),
        ]
    );
    let channels: Vec<Channel> = w.sent.iter().map(|s| s.channel).collect();
    assert_eq!(channels, [Channel::Movement, Channel::Chat, Channel::Chat]);
    assert!(w.received[a].is_empty(), "a sender does not hear itself");
    let stats = w.nodes[a].stats();
    assert_eq!((stats.packets, stats.packets_mirrored, stats.frames_sealed), (3, 3, 3));
    assert_eq!(w.nodes[b].stats().events_received, 3);
}

#[test]
fn one_sealed_frame_is_shared_by_every_healthy_peer() {
    let mut w = world();
    let a = w.add("alice", "prontera");
    let b = w.add("bob", "prontera");
    let c = w.add("carol", "prontera");
    w.game_send(a, &walk(10, 20));
    let mut to: Vec<PeerId> = w.sent.iter().map(|s| s.to.clone()).collect();
    to.sort();
    assert_eq!(to, [pid("bob"), pid("carol")]);
    assert!(Arc::ptr_eq(&w.sent[0].frame, &w.sent[1].frame), "sealed once");
    assert_eq!(w.nodes[a].stats().frames_sealed, 1);
    for i in [b, c] {
        assert_eq!(w.received[i], vec![(pid("alice"), ReceivedEvent::Move { x: 10, y: 20 })]);
    }
}

#[test]
fn npc_item_command_and_whisper_packets_never_produce_a_peer_frame() {
    let mut w = world();
    let a = w.add("alice", "prontera");
    let b = w.add("bob", "prontera");
    let mut bytes = npc_click(110_000_123);
    bytes.extend(use_item(7));
    bytes.extend(chat(b"alice : @warp prontera"));
    bytes.extend(emote(60)); // dice: the server rolls it
    let mut whisper = vec![0x96, 0x00, 32, 0];
    whisper.extend_from_slice(b"NPC:Kafra\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0hi\0\0");
    bytes.extend(&whisper);
    let to_server = w.game_send(a, &bytes);
    assert_eq!(to_server, bytes);
    assert!(w.sent.is_empty(), "nothing left for peers: {:?}", w.sent);
    assert!(w.received[b].is_empty());
    assert_eq!(w.nodes[a].stats().packets_server, 5);
    assert_eq!(w.nodes[a].stats().fallbacks, 0, "not eligible, so not a fallback");
}

#[test]
fn peers_only_policy_keeps_the_packet_from_the_server() {
    let mut w = world();
    let a = w.add("alice", "prontera");
    let b = w.add("bob", "prontera");
    w.nodes[a].set_policy("chat=peers".parse().unwrap());
    let mut bytes = chat(b"alice : psst");
    bytes.extend(npc_click(1));
    let to_server = w.game_send(a, &bytes);
    assert_eq!(to_server, npc_click(1));
    assert_eq!(w.received[b].len(), 1);
    assert_eq!(w.nodes[a].stats().packets_peers, 1);
}

/// The packet ids in a 20211103 server-to-client stream of the packets these tests use.
fn zc_ids(out: &[u8]) -> Vec<u16> {
    let mut ids = Vec::new();
    let mut at = 0;
    while at + 4 <= out.len() {
        let id = u16::from_le_bytes([out[at], out[at + 1]]);
        let len = match id {
            0x007F => 6,
            0x0087 => 12,
            0x009C => 9,
            0x00C0 => 7,
            0x0283 => 6,
            _ => usize::from(u16::from_le_bytes([out[at + 2], out[at + 3]])),
        };
        ids.push(id);
        at += len;
    }
    assert_eq!(at, out.len(), "whole packets only");
    ids
}

/// Everything node `i` has for its game, taken.
fn take_game_output(w: &mut World, i: usize) -> Vec<u8> {
    let out = w.nodes[i].game_output().to_vec();
    w.nodes[i].consume_game_output(out.len());
    out
}

/// A 20211103 idle-unit packet: the server shows player `aid` standing at (`x`, `y`).
fn idle_unit(aid: u32, x: u16, y: u16) -> Vec<u8> {
    use crate::render::packets::{UNIT_AID_AT, pack_pos_dir};
    let l = crate::render::UnitLayout::of(PacketVersion::V20211103).unwrap();
    let mut p = vec![0u8; l.idle_len];
    p[0..2].copy_from_slice(&l.idle_id.to_le_bytes());
    p[2..4].copy_from_slice(&(l.idle_len as u16).to_le_bytes());
    p[UNIT_AID_AT..UNIT_AID_AT + 4].copy_from_slice(&aid.to_le_bytes());
    p[l.pos_at..l.pos_at + 3].copy_from_slice(&pack_pos_dir(crate::render::Cell { x, y }, 4));
    p
}

#[test]
fn peers_only_actions_get_the_echo_rathena_would_have_sent_and_mirrored_ones_do_not() {
    let mut w = world();
    let a = w.add("alice", "prontera");
    let _b = w.add("bob", "prontera");
    w.nodes[a].set_own_account_id(7);
    w.nodes[a].set_policy("movement=peers,chat=mirror,emote=peers".parse().unwrap());
    let mut bytes = walk(150, 200);
    bytes.extend(chat(b"alice : hi"));
    bytes.extend(emote(3));
    bytes.extend(npc_click(1));
    let to_server = w.game_send(a, &bytes);
    let mut expected = chat(b"alice : hi");
    expected.extend(npc_click(1));
    assert_eq!(to_server, expected);
    // The walk and the emote were kept from the server: the node shows their echo.
    let out = take_game_output(&mut w, a);
    assert_eq!(zc_ids(&out), [0x0087, 0x00C0]);
    assert_eq!(&out[12..], &[0xC0, 0x00, 7, 0, 0, 0, 3]);
    assert_eq!(w.nodes[a].receive_stats().local_echoes, 2);

    w.nodes[a].set_policy("chat=peers".parse().unwrap());
    w.game_send(a, &chat(b"alice : psst"));
    let out = take_game_output(&mut w, a);
    assert_eq!(zc_ids(&out), [0x008E]);
}

#[test]
fn an_echo_that_cannot_be_drawn_is_reported() {
    let mut w = world();
    let a = w.add("alice", "prontera");
    let _b = w.add("bob", "prontera");
    w.nodes[a].set_policy("emote=peers".parse().unwrap());
    // "alice" is no account id and the server sent no ZC_AID: an emote echo has no unit.
    w.game_send(a, &emote(3));
    assert!(w.nodes[a].game_output().is_empty());
    assert_eq!(w.not_drawn[a], [(None, NotDrawn::Rejected(RenderRejected::OwnAccountUnknown))]);
}

#[test]
fn a_peers_event_is_drawn_into_the_game_stream_once_the_server_shows_its_unit() {
    let mut w = world();
    let a = w.add("1001", "prontera");
    let b = w.add("1002", "prontera");
    // Before the server showed 1001 to 1002's game, nothing can be drawn.
    w.game_send(a, &emote(2));
    assert_eq!(w.received[b].len(), 1);
    assert!(w.nodes[b].game_output().is_empty());
    assert_eq!(
        w.not_drawn[b],
        [(Some(pid("1001")), NotDrawn::Rejected(RenderRejected::UnknownUnit { aid: 1001 }))]
    );
    let mut server = vec![0x7F, 0x00, 0x10, 0x27, 0, 0];
    server.extend(idle_unit(1001, 150, 150));
    let now = w.now;
    w.nodes[b].on_server_bytes(now, &server);
    assert_eq!(take_game_output(&mut w, b), server, "the server's packets pass unchanged");
    w.nodes[a].set_policy("chat=peers".parse().unwrap());
    w.game_send(a, &chat(b"1001 : hello"));
    w.game_send(a, &emote(4));
    let out = take_game_output(&mut w, b);
    assert_eq!(zc_ids(&out), [0x008D, 0x00C0]);
    assert_eq!(&out[4..8], &1001u32.to_le_bytes());
    assert_eq!(&out[out.len() - 7..], &[0xC0, 0x00, 0xE9, 0x03, 0, 0, 4]);
    // The server's copy of the mirrored emote, arriving later, is not shown again.
    let now = w.now;
    w.nodes[b].on_server_bytes(now, &[0xC0, 0x00, 0xE9, 0x03, 0, 0, 4]);
    assert!(w.nodes[b].game_output().is_empty());
    assert_eq!(w.nodes[b].receive_stats().server_duplicates_dropped, 1);
    // A peer's event is drawn between whole server packets, never inside a partial one.
    let now = w.now;
    w.nodes[b].on_server_bytes(now, &[0x7F, 0x00, 1]);
    w.game_send(a, &emote(5));
    assert_eq!(zc_ids(&take_game_output(&mut w, b)), [0x00C0]);
    w.nodes[b].on_server_bytes(now, &[2, 3, 4]);
    assert_eq!(take_game_output(&mut w, b), [0x7F, 0x00, 1, 2, 3, 4]);
}

#[test]
fn peer_use_is_reported_when_peers_come_into_use_and_when_they_go() {
    let mut w = world();
    let a = w.add("alice", "prontera");
    assert!(w.peer_use[a].is_empty(), "a node starts with peers not in use, unreported");
    let b = w.add("bob", "prontera");
    assert_eq!(w.peer_use[a], [PeerUse::InUse]);
    assert_eq!(w.peer_use[b], [PeerUse::InUse]);
    assert!(w.nodes[a].peers_in_use());
    let now = w.now;
    w.nodes[b].handle_input(now, client::Input::ZoneChanged(zone("izlude")));
    w.settle();
    assert_eq!(w.peer_use[b], [PeerUse::InUse, PeerUse::ZoneNotEnabled]);
    assert_eq!(w.peer_use[a], [PeerUse::InUse, PeerUse::NoLink]);
    assert!(!w.nodes[a].peers_in_use());
}

#[test]
fn a_node_alone_in_its_session_sends_eligible_packets_to_the_server_and_counts_fallbacks() {
    let mut w = world();
    let a = w.add("alice", "prontera");
    let _other_zone = w.add("bob", "geffen");
    let mut bytes = walk(5, 5);
    bytes.extend(chat(b"alice : anyone?"));
    let to_server = w.game_send(a, &bytes);
    assert_eq!(to_server, bytes);
    assert!(w.sent.is_empty());
    assert_eq!(w.nodes[a].stats().fallbacks, 2);
    assert!(!w.nodes[a].route_context().peers_usable());
}

#[test]
fn a_node_in_another_zone_receives_nothing() {
    let mut w = world();
    let a = w.add("alice", "prontera");
    let b = w.add("bob", "prontera");
    let g = w.add("gina", "geffen");
    w.game_send(a, &walk(1, 1));
    w.game_send(g, &walk(2, 2));
    assert_eq!(w.received[b].len(), 1);
    assert!(w.received[g].is_empty());
    assert!(w.sent.iter().all(|s| s.to != pid("gina") && s.from != g));
}

#[test]
fn frames_from_non_members_are_dropped() {
    let mut w = world();
    let a = w.add("alice", "prontera");
    let b = w.add("bob", "prontera");
    let g = w.add("gina", "geffen");
    w.hold_frames = true;
    w.game_send(a, &walk(1, 1));
    let frame = w.sent[0].frame.clone();
    // Gina is in another session; "mallory" in none.
    for stranger in [pid("gina"), pid("mallory")] {
        let got = w.nodes[b].on_peer_frame(w.now, &stranger, &frame);
        assert_eq!(got, Err(ReceiveDrop::NotMember { from: stranger }));
    }
    let got = w.nodes[g].on_peer_frame(w.now, &pid("alice"), &frame);
    assert_eq!(got, Err(ReceiveDrop::NotMember { from: pid("alice") }));
    assert_eq!(w.nodes[b].stats().dropped_not_member, 2);
    assert!(w.nodes[b].drain_outputs().is_empty());
}

#[test]
fn a_replayed_frame_is_dropped() {
    let mut w = world();
    let a = w.add("alice", "prontera");
    let b = w.add("bob", "prontera");
    w.game_send(a, &chat(b"alice : once"));
    assert_eq!(w.received[b].len(), 1);
    let frame = w.sent[0].frame.clone();
    let got = w.nodes[b].on_peer_frame(w.now, &pid("alice"), &frame);
    assert_eq!(got, Err(ReceiveDrop::Open(OpenError::Replayed { counter: 0 })));
    w.settle();
    assert_eq!(w.received[b].len(), 1);
    assert_eq!(w.nodes[b].stats().dropped_by_seal, 1);
    assert_eq!(w.nodes[b].open_counters(&pid("alice")).map(|c| c.replayed), Some(1));
}

#[test]
fn a_frame_presented_as_another_members_fails_authentication() {
    let mut w = world();
    let a = w.add("alice", "prontera");
    let _b = w.add("bob", "prontera");
    let c = w.add("carol", "prontera");
    w.hold_frames = true;
    w.game_send(a, &walk(3, 4));
    let frame = w.sent[0].frame.clone();
    let got = w.nodes[c].on_peer_frame(w.now, &pid("bob"), &frame);
    assert_eq!(got, Err(ReceiveDrop::Open(OpenError::AuthFailed)));
}

#[test]
fn opened_payloads_that_are_not_valid_events_or_leave_the_map_are_dropped() {
    let mut w = world();
    let _a = w.add("alice", "prontera");
    let b = w.add("bob", "prontera");
    let key = w.nodes[b].client().current_key().unwrap().clone();
    let mut forger = Sealer::new(pid("alice"), &key, &mut Rng::from_seed(9), SealConfig::default());
    let mute = forger.seal(&[0x14, 34]).unwrap();
    let got = w.nodes[b].on_peer_frame(w.now, &pid("alice"), &mute);
    assert_eq!(got, Err(ReceiveDrop::InvalidEvent(PeerEventError::EmoteNotAllowed { kind: 34 })));
    w.nodes[b].set_map_size(Some((100, 100)));
    let mut far = Vec::new();
    PeerEvent::Move { x: 150, y: 20 }.encode(&mut far);
    let far = forger.seal(&far).unwrap();
    let got = w.nodes[b].on_peer_frame(w.now, &pid("alice"), &far);
    assert_eq!(got, Err(ReceiveDrop::OutsideMap { x: 150, y: 20, width: 100, height: 100 }));
    let stats = w.nodes[b].stats();
    assert_eq!((stats.dropped_invalid_event, stats.dropped_outside_map), (1, 1));
}

#[test]
fn a_key_rotation_rotates_sealer_and_openers_and_keeps_the_previous_epoch_for_grace() {
    let mut w = World::new(coordinator::Config {
        key_rotation_interval_s: 60,
        ..coordinator::Config::default()
    });
    let a = w.add("alice", "prontera");
    let b = w.add("bob", "prontera");
    w.hold_frames = true;
    w.game_send(a, &walk(1, 1));
    let sealed_before = w.sent[0].frame.clone();
    w.hold_frames = false;
    w.advance(61_000);
    assert_eq!(w.nodes[a].seal_epoch(), Some(2));
    assert_eq!(w.nodes[b].seal_epoch(), Some(2));
    // Sealed under epoch 1 just before the rotation: still accepted within the grace.
    assert_eq!(w.nodes[b].on_peer_frame(w.now, &pid("alice"), &sealed_before), Ok(()));
    w.game_send(a, &walk(2, 2));
    w.settle();
    let moves: Vec<&ReceivedEvent> = w.received[b].iter().map(|(_, e)| e).collect();
    assert_eq!(moves, [&ReceivedEvent::Move { x: 1, y: 1 }, &ReceivedEvent::Move { x: 2, y: 2 }]);
}

#[test]
fn a_member_that_leaves_loses_its_opener_and_routing_falls_back_to_the_server() {
    let mut w = world();
    let a = w.add("alice", "prontera");
    let b = w.add("bob", "prontera");
    w.hold_frames = true;
    w.game_send(b, &walk(1, 1));
    let from_bob = w.sent[0].frame.clone();
    w.hold_frames = false;
    w.nodes[b].handle_input(w.now, client::Input::Shutdown);
    w.settle();
    assert!(w.nodes[a].openable_peers().is_empty());
    let got = w.nodes[a].on_peer_frame(w.now, &pid("bob"), &from_bob);
    assert_eq!(got, Err(ReceiveDrop::NotMember { from: pid("bob") }));
    let sent_before = w.sent.len();
    let to_server = w.game_send(a, &walk(9, 9));
    assert_eq!(to_server, walk(9, 9));
    assert_eq!(w.sent.len(), sent_before);
    assert_eq!(w.nodes[a].stats().fallbacks, 1);
}

#[test]
fn bytes_split_anywhere_give_the_same_server_stream_and_peer_events() {
    let mut w = world();
    let a = w.add("alice", "prontera");
    let b = w.add("bob", "prontera");
    let mut bytes = walk(7, 8);
    bytes.extend(npc_click(5));
    bytes.extend(chat(b"alice : split"));
    let mut to_server = Vec::new();
    for piece in bytes.chunks(3) {
        to_server.extend(w.game_send(a, piece));
    }
    assert_eq!(to_server, bytes);
    assert_eq!(w.received[b].len(), 2);
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Attacker-controlled frames from a member, from a stranger, and bytes the game sends
        /// never panic; garbage never becomes an event; the game's bytes reach the server whole.
        #[test]
        fn arbitrary_frames_and_game_bytes_never_panic_or_leak(
            frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..16),
            game in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let mut w = world();
            let a = w.add("alice", "prontera");
            let b = w.add("bob", "prontera");
            for f in &frames {
                let from_member = w.nodes[b].on_peer_frame(w.now, &pid("alice"), f);
                prop_assert!(from_member.is_err());
                let from_stranger = w.nodes[b].on_peer_frame(w.now, &pid("eve"), f);
                prop_assert!(
                    matches!(from_stranger, Err(ReceiveDrop::NotMember { .. })),
                    "{:?}", from_stranger
                );
            }
            w.settle();
            prop_assert!(w.received[b].is_empty());
            let to_server = w.game_send(a, &game);
            // Mirror policy: whatever was framed or passed through reaches the server as sent;
            // only an unfinished packet stays buffered.
            let pending = w.nodes[a].game_stream().pending().len();
            prop_assert_eq!(&to_server[..], &game[..game.len() - pending]);
            prop_assert_eq!(w.received[b].len() as u64, w.nodes[a].stats().frames_sealed);
        }
    }
}

/// The sender heard `key-rotated` before this node did (in cluster mode the two members may be
/// served through different instances): its first frames under the new epoch wait for the
/// key here instead of being lost.
#[test]
fn a_frame_under_a_key_not_yet_known_here_is_held_and_opened_when_the_key_arrives() {
    let mut w = world();
    let _a = w.add("alice", "prontera");
    let b = w.add("bob", "prontera");
    let old = w.nodes[b].client().current_key().unwrap().clone();
    let session_id = w.nodes[b].client().session_id().unwrap().clone();
    let new = SessionKey { epoch: old.epoch + 1, key: [7; 32] };
    let mut alice = Sealer::new(pid("alice"), &new, &mut Rng::from_seed(9), SealConfig::default());
    let mut payload = Vec::new();
    PeerEvent::Move { x: 5, y: 6 }.encode(&mut payload);
    let early = alice.seal(&payload).unwrap();
    let got = w.nodes[b].on_peer_frame(w.now, &pid("alice"), &early);
    assert_eq!(got, Err(ReceiveDrop::HeldForKey { epoch: new.epoch }));
    assert_eq!(w.nodes[b].stats().held_for_key, 1);
    while w.nodes[b].poll_output().is_some() {}
    let rotated = ServerMessage::KeyRotated { session_id, key: new.clone() };
    w.nodes[b].handle_input(w.now, client::Input::Frame(encode_server(&rotated).into_bytes()));
    let mut received = Vec::new();
    while let Some(out) = w.nodes[b].poll_output() {
        if let Output::Received { from, event } = out {
            received.push((from, event));
        }
    }
    assert_eq!(received.len(), 1, "the held frame is opened once the key is here");
    assert_eq!(received[0].0, pid("alice"));
    let late: Vec<_> = w.nodes[b].opened_after_key().collect();
    assert_eq!(late, vec![(&pid("alice"), early.as_slice())]);
    let stats = w.nodes[b].stats();
    assert_eq!((stats.held_for_key, stats.events_received), (0, 1));
    // Held frames are kept only a while: one from a key that never comes is not opened later.
    let newer = SessionKey { epoch: new.epoch + 1, key: [8; 32] };
    let mut alice2 =
        Sealer::new(pid("alice"), &newer, &mut Rng::from_seed(3), SealConfig::default());
    let late = alice2.seal(&payload).unwrap();
    let _ = w.nodes[b].on_peer_frame(w.now, &pid("alice"), &late);
    let later = w.now.add_millis(EARLY_FRAME_HOLD_MS + 1);
    let session_id = w.nodes[b].client().session_id().unwrap().clone();
    let rotated = ServerMessage::KeyRotated { session_id, key: newer };
    w.nodes[b].handle_input(later, client::Input::Frame(encode_server(&rotated).into_bytes()));
    let opened = std::iter::from_fn(|| w.nodes[b].poll_output())
        .filter(|o| matches!(o, Output::Received { .. }))
        .count();
    assert_eq!(opened, 0);
}

// Peers-only chat and emotes are acknowledged; what is not, goes to the server late (issue 23).

fn acks_sent_by(w: &World, i: usize) -> usize {
    w.sent
        .iter()
        .filter(|s| {
            s.from == i
                && crate::seal::frame_id(&s.frame).is_some_and(|(_, a)| !a)
                && s.channel == Channel::Chat
        })
        .count()
}

#[test]
fn a_peers_only_line_every_peer_acknowledges_never_reaches_the_server() {
    let mut w = world();
    let a = w.add("alice", "prontera");
    let b = w.add("bob", "prontera");
    let c = w.add("carol", "prontera");
    w.nodes[a].set_policy("chat=peers,emote=peers".parse().unwrap());
    let mut bytes = chat(b"alice : psst");
    bytes.extend(emote(1));
    assert!(w.game_send(a, &bytes).is_empty());
    // Each frame wanted an ack; bob and carol each sent one per frame.
    assert!(
        w.sent.iter().filter(|s| s.from == a).all(|s| crate::seal::frame_id(&s.frame).unwrap().1)
    );
    assert_eq!((w.nodes[b].stats().acks_sent, w.nodes[c].stats().acks_sent), (2, 2));
    assert_eq!(w.nodes[a].stats().acks_received, 4);
    assert_eq!(w.nodes[a].stats().peers_only_confirmed, 2);
    assert_eq!(w.nodes[a].poll_timeout(), w.nodes[a].client().poll_timeout());
    w.advance(10 * PEER_ACK_TIMEOUT_MS);
    assert!(w.late[a].is_empty());
    assert!(w.game_send(a, &[]).is_empty());
    assert_eq!(w.nodes[a].stats().peers_only_late, 0);
    // Acks are not events.
    assert_eq!(w.received[a], vec![]);
    assert_eq!(w.nodes[a].stats().events_received, 0);
}

#[test]
fn mirrored_and_movement_frames_want_no_ack() {
    let mut w = world();
    let a = w.add("alice", "prontera");
    let b = w.add("bob", "prontera");
    w.nodes[a].set_policy("movement=peers,chat=mirror".parse().unwrap());
    w.game_send(a, &walk(3, 4));
    w.game_send(a, &chat(b"alice : hi"));
    assert_eq!(w.received[b].len(), 2);
    assert!(w.sent.iter().all(|s| !crate::seal::frame_id(&s.frame).unwrap().1));
    assert_eq!(w.nodes[b].stats().acks_sent, 0);
    assert_eq!(acks_sent_by(&w, b), 0);
}

#[test]
fn a_peers_only_line_not_acknowledged_in_time_goes_to_the_server_late_and_once() {
    let mut w = world();
    let a = w.add("alice", "prontera");
    let _b = w.add("bob", "prontera");
    w.nodes[a].set_policy("chat=peers".parse().unwrap());
    w.hold_frames = true; // the frame is lost on the way
    assert!(w.game_send(a, &chat(b"alice : lost?")).is_empty());
    assert_eq!(w.nodes[a].poll_timeout(), Some(w.now.add_millis(PEER_ACK_TIMEOUT_MS)));
    w.advance(PEER_ACK_TIMEOUT_MS - 1);
    assert!(w.late[a].is_empty());
    w.advance(1);
    assert_eq!(w.late[a], vec![ReceivedEvent::Chat { text: b"alice : lost?".to_vec() }]);
    // The next call to on_game_send puts it first, before what the game sends now.
    let mut expected = chat(b"alice : lost?");
    expected.extend(npc_click(7));
    assert_eq!(w.game_send(a, &npc_click(7)), expected);
    assert_eq!(w.nodes[a].stats().peers_only_late, 1);
    // The player saw the local echo; the server's echo of the late copy is not shown again,
    // a later echo of the same words is.
    assert_eq!(zc_ids(&take_game_output(&mut w, a)), [0x008E]);
    let mut echo = Vec::new();
    crate::render::packets::player_chat(b"alice : lost?", &mut echo);
    let now = w.now;
    w.nodes[a].on_server_bytes(now, &echo);
    assert!(w.nodes[a].game_output().is_empty());
    w.nodes[a].on_server_bytes(now, &echo);
    assert_eq!(take_game_output(&mut w, a), echo);
    // Only once.
    w.advance(10 * PEER_ACK_TIMEOUT_MS);
    assert_eq!(w.late[a].len(), 1);
    assert!(w.game_send(a, &[]).is_empty());
    // An ack that arrives after the late copy changes nothing.
    w.hold_frames = false;
    let frame = w.sent.iter().find(|s| s.from == a).unwrap().frame.clone();
    w.deliver(a, &pid("bob"), &frame);
    w.settle();
    assert_eq!(w.nodes[a].stats().peers_only_confirmed, 0);
    assert!(w.game_send(a, &[]).is_empty());
}

#[test]
fn a_link_that_dies_before_the_ack_sends_the_line_to_the_server_at_once() {
    let mut w = world();
    let a = w.add("alice", "prontera");
    let _b = w.add("bob", "prontera");
    let _c = w.add("carol", "prontera");
    w.nodes[a].set_policy("emote=peers".parse().unwrap());
    w.hold_frames = true;
    w.game_send(a, &emote(5));
    // carol's ack comes; bob's link closes before his does.
    let to_carol = w.sent.iter().find(|s| s.from == a && s.to == pid("carol")).unwrap().clone();
    w.hold_frames = false;
    w.deliver(a, &pid("carol"), &to_carol.frame);
    w.settle();
    assert!(w.late[a].is_empty());
    let closed =
        client::Input::PeerLinkEvent { peer: pid("bob"), event: client::LinkEvent::Closed };
    w.nodes[a].handle_input(w.now, closed);
    w.settle();
    assert_eq!(w.late[a], vec![ReceivedEvent::Emote { kind: 5 }]);
    assert_eq!(w.game_send(a, &[]), emote(5));
}

#[test]
fn leaving_the_map_abandons_what_is_unacknowledged_and_sends_nothing_late() {
    let mut w = world();
    let a = w.add("alice", "prontera");
    let _b = w.add("bob", "prontera");
    w.nodes[a].set_policy("chat=peers".parse().unwrap());
    w.hold_frames = true;
    w.game_send(a, &chat(b"alice : bye"));
    w.nodes[a].handle_input(w.now, client::Input::ZoneChanged(zone("geffen")));
    w.settle();
    w.advance(10 * PEER_ACK_TIMEOUT_MS);
    assert!(w.late[a].is_empty());
    assert!(w.game_send(a, &[]).is_empty());
    assert_eq!(w.nodes[a].stats().peers_only_abandoned, 1);
}

#[test]
fn a_late_copy_on_an_obfuscated_connection_keeps_the_server_in_step() {
    use crate::packet::{ClientEncoder, ServerDecoder};
    let v = PacketVersion::V20151104;
    let mut w = world();
    let a = w.add_with("alice", "prontera", v, Obfuscation::On);
    let _b = w.add_with("bob", "prontera", v, Obfuscation::On);
    w.nodes[a].set_policy("chat=peers".parse().unwrap());
    let mut game = ClientEncoder::new(v, Obfuscation::On);
    let mut server = ServerDecoder::new(v, Obfuscation::On);
    let mut send = |w: &mut World, packet: &[u8]| {
        let mut wire = Vec::new();
        game.encode(packet, &mut wire);
        let to_server = w.game_send(a, &wire);
        server.push(&to_server);
    };
    w.hold_frames = true;
    send(&mut w, &chat(b"alice : one"));
    send(&mut w, &npc_click(1));
    w.advance(PEER_ACK_TIMEOUT_MS);
    send(&mut w, &npc_click(2));
    send(&mut w, &chat(b"alice : two"));
    send(&mut w, &npc_click(3));
    w.advance(PEER_ACK_TIMEOUT_MS);
    server.push(&w.game_send(a, &[]));
    let (packets, error) = server.drain();
    assert_eq!(error, None);
    let got: Vec<Vec<u8>> = packets.into_iter().map(|p| p.bytes).collect();
    assert_eq!(
        got,
        vec![npc_click(1), chat(b"alice : one"), npc_click(2), npc_click(3), chat(b"alice : two")]
    );
}

#[test]
fn a_peer_named_by_another_id_is_drawn_under_the_account_id_the_driver_names() {
    let mut w = world();
    let a = w.add("alice", "prontera");
    let b = w.add("bob", "prontera");
    let now = w.now;
    let mut server = vec![0x7F, 0x00, 0x10, 0x27, 0, 0];
    server.extend(idle_unit(1001, 150, 150));
    w.nodes[b].on_server_bytes(now, &server);
    take_game_output(&mut w, b);
    w.game_send(a, &emote(2));
    assert!(w.nodes[b].game_output().is_empty());
    assert_eq!(w.not_drawn[b], [(Some(pid("alice")), NotDrawn::NotAnAccount(pid("alice")))]);
    assert!(w.nodes[b].set_peer_account_id(pid("alice"), 1001));
    w.game_send(a, &emote(2));
    assert_eq!(take_game_output(&mut w, b), [0xC0, 0x00, 0xE9, 0x03, 0, 0, 2]);
}
