//! Unit tests of the coordinator: one per behaviour of the brief and per reject code.

use super::*;
use crate::wire::{Capabilities, ClientMessage, PeerLeftReason, encode_client};

const T0: u64 = 1_000;

/// A discrete-event harness: feeds inputs at the current time and jumps time through timers.
struct H {
    c: Coordinator,
    now: Instant,
}

fn peer(s: &str) -> PeerId {
    PeerId::new(s).unwrap()
}

fn zone(s: &str) -> Zone {
    Zone::new(s).unwrap()
}

fn caps(cores: u32, mhz: u32) -> Capabilities {
    Capabilities {
        cpu_cores: cores,
        cpu_mhz: mhz,
        memory_mb: 16_384,
        bandwidth_mbps: 200,
        latency_ms: 20,
    }
}

fn join_zone(z: &str) -> ClientMessage {
    ClientMessage::Join { peer_id: None, session_id: None, zone: zone(z), capabilities: None }
}

fn sends(out: &[Output], conn: u64) -> Vec<ServerMessage> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send { conn: c, msg } if c.0 == conn => Some(msg.clone()),
            _ => None,
        })
        .collect()
}

fn closes(out: &[Output]) -> Vec<(u64, ErrorCode)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Close { conn, code, .. } => Some((conn.0, *code)),
            _ => None,
        })
        .collect()
}

fn error_codes(msgs: &[ServerMessage]) -> Vec<ErrorCode> {
    msgs.iter()
        .filter_map(|m| match m {
            ServerMessage::Error { code, .. } => Some(*code),
            _ => None,
        })
        .collect()
}

fn joined(msgs: &[ServerMessage]) -> (SessionId, Vec<PeerId>, Option<PeerId>, u32, bool) {
    msgs.iter()
        .find_map(|m| match m {
            ServerMessage::SessionJoined { session_id, peers, host, key, resumed, .. } => {
                Some((session_id.clone(), peers.clone(), host.clone(), key.epoch, *resumed))
            }
            _ => None,
        })
        .expect("session-joined")
}

impl H {
    fn new(config: Config) -> Self {
        H { c: Coordinator::new(config, Rng::from_seed(7)), now: Instant::from_millis(T0) }
    }

    fn input(&mut self, input: Input) -> Vec<Output> {
        self.c.handle_input(self.now, input);
        self.c.drain_outputs()
    }

    fn connect(&mut self, conn: u64, account: &str) -> Vec<Output> {
        let identity = Identity::Account(peer(account));
        self.input(Input::Connected {
            conn: ConnId(conn),
            identity,
            ice_servers: vec![],
            origin: None,
        })
    }

    fn connect_anon(&mut self, conn: u64) -> Vec<Output> {
        let identity = Identity::Anonymous;
        self.input(Input::Connected {
            conn: ConnId(conn),
            identity,
            ice_servers: vec![],
            origin: None,
        })
    }

    fn raw(&mut self, conn: u64, bytes: &[u8]) -> Vec<Output> {
        self.input(Input::Frame { conn: ConnId(conn), bytes: bytes.to_vec() })
    }

    fn msg(&mut self, conn: u64, msg: &ClientMessage) -> Vec<Output> {
        self.raw(conn, encode_client(msg).as_bytes())
    }

    fn join(&mut self, conn: u64, z: &str) -> Vec<Output> {
        self.msg(conn, &join_zone(z))
    }

    fn disconnect(&mut self, conn: u64) -> Vec<Output> {
        self.input(Input::Disconnected { conn: ConnId(conn) })
    }

    /// Advances time by `ms`, firing every timer due on the way.
    fn advance(&mut self, ms: u64) -> Vec<Output> {
        let end = self.now.add_millis(ms);
        let mut out = Vec::new();
        while let Some(at) = self.c.poll_timeout().filter(|at| *at <= end) {
            self.now = self.now.max(at);
            self.c.handle_timeout(self.now);
            out.extend(self.c.drain_outputs());
        }
        self.now = end;
        out
    }
}

fn offer_to(to: &str) -> ClientMessage {
    ClientMessage::Offer { to: peer(to), sdp: "v=0\r\n".into() }
}

#[test]
fn welcome_announces_identity_protocol_and_timeouts() {
    let mut h = H::new(Config::default());
    let out = h.connect(1, "2000001");
    assert_eq!(
        sends(&out, 1),
        vec![ServerMessage::Welcome {
            peer_id: peer("2000001"),
            protocol: crate::wire::PROTOCOL_VERSION,
            server: Config::default().server_name,
            heartbeat_interval_ms: 15_000,
            idle_timeout_ms: 45_000,
        }]
    );
    assert_eq!(h.c.connection_count(), 1);
}

#[test]
fn anonymous_connections_get_a_generated_id_until_their_first_join_names_one() {
    let mut h = H::new(Config::default());
    let out = h.connect_anon(1);
    let Some(ServerMessage::Welcome { peer_id, .. }) = sends(&out, 1).into_iter().next() else {
        panic!("no welcome");
    };
    assert!(peer_id.as_str().starts_with("anon-"), "{peer_id}");
    let join = ClientMessage::Join {
        peer_id: Some(peer("alice")),
        session_id: None,
        zone: zone("prontera"),
        capabilities: None,
    };
    h.msg(1, &join);
    assert_eq!(h.c.sessions()[0].members, vec![peer("alice")]);
    // A second anonymous connection claiming the same id replaces the first.
    h.connect_anon(2);
    let out = h.msg(2, &join);
    assert_eq!(closes(&out), vec![(1, ErrorCode::Replaced)]);
    let (_, peers, _, _, resumed) = joined(&sends(&out, 2));
    assert!(peers.is_empty());
    assert!(resumed);
    assert_eq!(h.c.sessions()[0].members, vec![peer("alice")]);
}

#[test]
fn account_identity_wins_over_the_peer_id_in_join() {
    let mut h = H::new(Config::default());
    h.connect(1, "acc1");
    let join = ClientMessage::Join {
        peer_id: Some(peer("someone-else")),
        session_id: None,
        zone: zone("prontera"),
        capabilities: None,
    };
    h.msg(1, &join);
    assert_eq!(h.c.sessions()[0].members, vec![peer("acc1")]);
}

#[test]
fn placement_fills_the_fullest_session_then_opens_a_new_one() {
    let config = Config { max_players_per_session: 2, ..Config::default() };
    let mut h = H::new(config);
    for (i, name) in ["a", "b", "c", "d", "e"].iter().enumerate() {
        h.connect(i as u64 + 1, name);
        h.join(i as u64 + 1, "prontera");
    }
    let sessions = h.c.discover(&zone("prontera"));
    let mut members: Vec<Vec<PeerId>> = sessions.iter().map(|s| s.members.clone()).collect();
    members.sort();
    assert_eq!(
        members,
        vec![vec![peer("a"), peer("b")], vec![peer("c"), peer("d")], vec![peer("e")]]
    );
    // `b` leaves: two sessions have one seat each; the older one wins the tie.
    h.msg(2, &ClientMessage::Leave);
    let first = h
        .c
        .session(&h.c.sessions().iter().find(|s| s.members == vec![peer("a")]).unwrap().session_id)
        .unwrap();
    assert_eq!(h.c.placement(&zone("prontera")), Ok(Placement::Existing(first.session_id.clone())));
    assert!(first.session_id.as_str().starts_with("prontera-"));
    assert_eq!(first.session_id.as_str().len(), "prontera-".len() + 8);
}

#[test]
fn zone_full_when_every_session_is_full_and_no_new_one_may_open() {
    let config =
        Config { max_players_per_session: 1, max_sessions_per_zone: 2, ..Config::default() };
    let mut h = H::new(config);
    for i in 1..=3 {
        h.connect(i, &format!("p{i}"));
    }
    h.join(1, "geffen");
    h.join(2, "geffen");
    assert_eq!(h.c.placement(&zone("geffen")), Err(ErrorCode::ZoneFull));
    let out = h.join(3, "geffen");
    assert_eq!(error_codes(&sends(&out, 3)), vec![ErrorCode::ZoneFull]);
    // Another zone is unaffected.
    assert_eq!(h.c.placement(&zone("payon")), Ok(Placement::New));
    assert_eq!(h.c.stats().rejects.get(&ErrorCode::ZoneFull), Some(&1));
}

#[test]
fn session_full_when_a_named_session_has_no_seat() {
    let config = Config { max_players_per_session: 1, ..Config::default() };
    let mut h = H::new(config);
    h.connect(1, "a");
    h.connect(2, "b");
    let (sid, ..) = joined(&sends(&h.join(1, "geffen"), 1));
    let named = ClientMessage::Join {
        peer_id: None,
        session_id: Some(sid),
        zone: zone("geffen"),
        capabilities: None,
    };
    let out = h.msg(2, &named);
    assert_eq!(error_codes(&sends(&out, 2)), vec![ErrorCode::SessionFull]);
    assert!(sends(&out, 1).is_empty());
}

#[test]
fn session_not_found_for_an_unknown_id_or_another_zone() {
    let mut h = H::new(Config::default());
    h.connect(1, "a");
    h.connect(2, "b");
    let (sid, ..) = joined(&sends(&h.join(1, "geffen"), 1));
    for (z, s) in [("payon", sid.clone()), ("geffen", SessionId::new("geffen-00000000").unwrap())] {
        let named = ClientMessage::Join {
            peer_id: None,
            session_id: Some(s),
            zone: zone(z),
            capabilities: None,
        };
        let out = h.msg(2, &named);
        assert_eq!(error_codes(&sends(&out, 2)), vec![ErrorCode::SessionNotFound]);
    }
    // The named session in the right zone works.
    let named = ClientMessage::Join {
        peer_id: None,
        session_id: Some(sid),
        zone: zone("geffen"),
        capabilities: None,
    };
    let (_, peers, ..) = joined(&sends(&h.msg(2, &named), 2));
    assert_eq!(peers, vec![peer("a")]);
}

#[test]
fn join_tells_the_others_and_lists_them_in_join_order() {
    let mut h = H::new(Config::default());
    for (i, n) in ["a", "b", "c"].iter().enumerate() {
        h.connect(i as u64 + 1, n);
    }
    h.join(1, "prontera");
    h.join(2, "prontera");
    let out = h.join(3, "prontera");
    let (_, peers, host, epoch, resumed) = joined(&sends(&out, 3));
    assert_eq!(peers, vec![peer("a"), peer("b")]);
    assert_eq!((host, epoch, resumed), (None, 1, false));
    for c in [1, 2] {
        assert_eq!(sends(&out, c), vec![ServerMessage::PeerJoined { peer_id: peer("c") }]);
    }
    // Joining again is idempotent: same session, no churn for the others, and `resumed` (the
    // seat was held already), so a client that retried its join keeps its links.
    let out = h.join(3, "prontera");
    assert_eq!(joined(&sends(&out, 3)).1, vec![peer("a"), peer("b")]);
    assert!(joined(&sends(&out, 3)).4);
    assert!(sends(&out, 1).is_empty() && sends(&out, 2).is_empty());
    assert_eq!(h.c.stats().joins, 3);
}

#[test]
fn leave_answers_session_left_and_tells_the_others() {
    let mut h = H::new(Config::default());
    h.connect(1, "a");
    h.connect(2, "b");
    let (sid, ..) = joined(&sends(&h.join(1, "prontera"), 1));
    h.join(2, "prontera");
    let out = h.msg(1, &ClientMessage::Leave);
    assert_eq!(sends(&out, 1), vec![ServerMessage::SessionLeft { session_id: sid.clone() }]);
    assert_eq!(
        sends(&out, 2),
        vec![ServerMessage::PeerLeft { peer_id: peer("a"), reason: PeerLeftReason::Left }]
    );
    // Leaving twice: not in a session.
    let out = h.msg(1, &ClientMessage::Leave);
    assert_eq!(error_codes(&sends(&out, 1)), vec![ErrorCode::NotInSession]);
    // The last one out removes the session.
    h.msg(2, &ClientMessage::Leave);
    assert!(h.c.session(&sid).is_none());
    let stats = h.c.stats();
    assert_eq!((stats.sessions_created, stats.sessions_expired, stats.leaves), (1, 1, 2));
}

#[test]
fn joining_another_zone_leaves_the_old_session_first() {
    let mut h = H::new(Config::default());
    h.connect(1, "a");
    h.connect(2, "b");
    h.join(1, "prontera");
    h.join(2, "prontera");
    let out = h.join(1, "geffen");
    assert_eq!(
        sends(&out, 2),
        vec![ServerMessage::PeerLeft { peer_id: peer("a"), reason: PeerLeftReason::Left }]
    );
    assert!(joined(&sends(&out, 1)).1.is_empty());
    assert_eq!(h.c.discover(&zone("prontera"))[0].members, vec![peer("b")]);
    assert_eq!(h.c.discover(&zone("geffen"))[0].members, vec![peer("a")]);
}

#[test]
fn relay_stamps_the_sender_and_reaches_only_the_named_member() {
    let mut h = H::new(Config::default());
    for (i, n) in ["a", "b", "c"].iter().enumerate() {
        h.connect(i as u64 + 1, n);
    }
    h.join(1, "prontera");
    h.join(2, "prontera");
    h.join(3, "geffen");
    let out = h.msg(1, &offer_to("b"));
    assert_eq!(
        out,
        vec![Output::Send {
            conn: ConnId(2),
            msg: ServerMessage::Offer { from: peer("a"), sdp: "v=0\r\n".into() },
        }]
    );
    let answer = ClientMessage::Answer { to: peer("a"), sdp: "v=0\r\n".into() };
    let cand = ClientMessage::IceCandidate {
        to: peer("a"),
        candidate: crate::wire::IceCandidate::from_line("candidate:1 1 UDP 1 192.0.2.1 1 typ host"),
    };
    assert_eq!(h.msg(2, &answer).len(), 1);
    assert_eq!(h.msg(2, &cand).len(), 1);
    let relays = h.c.stats().relays;
    assert_eq!(relays.get("offer"), Some(&1));
    assert_eq!(relays.get("answer"), Some(&1));
    assert_eq!(relays.get("ice-candidate"), Some(&1));
}

#[test]
fn relay_outside_the_session_gets_not_in_session_and_is_not_forwarded() {
    let mut h = H::new(Config::default());
    for (i, n) in ["a", "b", "c", "d"].iter().enumerate() {
        h.connect(i as u64 + 1, n);
    }
    h.join(1, "prontera");
    h.join(2, "prontera");
    h.join(3, "geffen");
    // To a member of another session, to nobody, and from a connection without a seat.
    for (from, to) in [(1, "c"), (1, "nobody"), (4, "a")] {
        let out = h.msg(from, &offer_to(to));
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(error_codes(&sends(&out, from)), vec![ErrorCode::NotInSession]);
    }
    // To a member whose seat is in grace.
    h.disconnect(2);
    let out = h.msg(1, &offer_to("b"));
    assert_eq!(error_codes(&sends(&out, 1)), vec![ErrorCode::NotInSession]);
    assert_eq!(out.len(), 1);
    assert_eq!(h.c.stats().relays.get("offer"), None);
}

#[test]
fn reconnect_within_grace_resumes_the_seat_without_churn() {
    let mut h = H::new(Config::default());
    h.connect(1, "a");
    h.connect(2, "b");
    let (sid, ..) = joined(&sends(&h.join(1, "prontera"), 1));
    h.join(2, "prontera");
    let out = h.disconnect(2);
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(h.c.stats().seats_in_grace, 1);
    assert_eq!(h.c.session(&sid).unwrap().connected, vec![peer("a")]);
    h.advance(299_000);
    let out = h.connect(3, "b");
    assert!(sends(&out, 1).is_empty());
    let out = h.join(3, "prontera");
    let (sid2, peers, _, _, resumed) = joined(&sends(&out, 3));
    assert_eq!((sid2, peers, resumed), (sid.clone(), vec![peer("a")], true));
    assert!(sends(&out, 1).is_empty());
    assert_eq!(h.c.session(&sid).unwrap().members, vec![peer("a"), peer("b")]);
    // The grace timer was cancelled.
    assert!(
        h.advance(600_000)
            .iter()
            .all(|o| !matches!(o, Output::Send { msg: ServerMessage::PeerLeft { .. }, .. }))
    );
    assert_eq!(h.c.stats().joins, 2);
}

#[test]
fn grace_end_sends_peer_left_timeout_and_empty_sessions_go() {
    let mut h = H::new(Config { idle_timeout_ms: 3_600_000, ..Config::default() });
    h.connect(1, "a");
    h.connect(2, "b");
    let (sid, ..) = joined(&sends(&h.join(1, "prontera"), 1));
    h.join(2, "prontera");
    h.disconnect(2);
    assert!(h.advance(299_999).is_empty());
    let out = h.advance(1);
    assert_eq!(
        sends(&out, 1),
        vec![ServerMessage::PeerLeft { peer_id: peer("b"), reason: PeerLeftReason::Timeout }]
    );
    h.disconnect(1);
    assert!(h.c.session(&sid).is_some());
    h.advance(300_000);
    assert!(h.c.session(&sid).is_none());
    assert_eq!(h.c.stats().sessions_expired, 1);
}

#[test]
fn newest_connection_of_an_identity_replaces_the_older_and_inherits_its_seat() {
    let mut h = H::new(Config::default());
    h.connect(1, "a");
    h.connect(2, "b");
    h.join(1, "prontera");
    h.join(2, "prontera");
    let out = h.connect(3, "b");
    assert_eq!(closes(&out), vec![(2, ErrorCode::Replaced)]);
    assert!(sends(&out, 1).is_empty());
    // Relays reach the new connection right away.
    let out = h.msg(1, &offer_to("b"));
    assert!(matches!(&out[..], [Output::Send { conn: ConnId(3), .. }]));
    // Frames on the replaced connection are ignored.
    assert!(h.msg(2, &offer_to("a")).is_empty());
    assert!(h.disconnect(2).is_empty());
    assert_eq!(h.c.connection_count(), 2);
    assert_eq!(h.c.stats().rejects.get(&ErrorCode::Replaced), Some(&1));
}

#[test]
fn idle_connections_are_closed_and_their_seat_goes_into_grace() {
    let mut h = H::new(Config::default());
    h.connect(1, "a");
    h.join(1, "prontera");
    h.advance(44_000);
    h.msg(1, &ClientMessage::Ping { nonce: Some(9) });
    assert!(h.advance(44_999).is_empty());
    let out = h.advance(1);
    assert_eq!(closes(&out), vec![(1, ErrorCode::IdleTimeout)]);
    assert_eq!(h.c.connection_count(), 0);
    assert_eq!(h.c.stats().seats_in_grace, 1);
}

#[test]
fn a_connection_heard_from_within_every_idle_period_is_never_closed() {
    let mut h = H::new(Config::default());
    h.connect(1, "a");
    h.join(1, "prontera");
    for _ in 0..20 {
        assert!(closes(&h.advance(10_000)).is_empty());
        h.msg(1, &ClientMessage::Ping { nonce: None });
    }
    assert_eq!(h.c.connection_count(), 1);
    // Silent from here: closed exactly one idle timeout after the last frame.
    assert!(closes(&h.advance(44_999)).is_empty());
    assert_eq!(closes(&h.advance(1)), vec![(1, ErrorCode::IdleTimeout)]);
}

#[test]
fn ping_is_answered_with_its_nonce() {
    let mut h = H::new(Config::default());
    h.connect(1, "a");
    let out = h.msg(1, &ClientMessage::Ping { nonce: Some(42) });
    assert_eq!(sends(&out, 1), vec![ServerMessage::Pong { nonce: Some(42) }]);
}

#[test]
fn flooding_gets_one_rate_limited_error_per_second_then_a_close() {
    let config = Config {
        rate_limit: RateLimit { per_s: 1, burst: 2, strikes_max: 5 },
        ..Config::default()
    };
    let mut h = H::new(config);
    h.connect(1, "a");
    let ping = ClientMessage::Ping { nonce: None };
    let mut all = Vec::new();
    for _ in 0..6 {
        all.extend(h.msg(1, &ping));
    }
    let msgs = sends(&all, 1);
    // Two pongs from the burst, one error for the next four rejected frames, then nothing.
    assert_eq!(msgs.iter().filter(|m| matches!(m, ServerMessage::Pong { .. })).count(), 2);
    assert_eq!(error_codes(&msgs), vec![ErrorCode::RateLimited]);
    assert!(closes(&all).is_empty());
    let out = h.msg(1, &ping);
    assert_eq!(closes(&out), vec![(1, ErrorCode::RateLimited)]);
    assert_eq!(h.c.connection_count(), 0);
}

#[test]
fn slow_frames_stay_under_the_rate_limit() {
    let config = Config {
        rate_limit: RateLimit { per_s: 2, burst: 1, strikes_max: 1 },
        ..Config::default()
    };
    let mut h = H::new(config);
    h.connect(1, "a");
    for _ in 0..20 {
        let out = h.msg(1, &ClientMessage::Ping { nonce: None });
        assert_eq!(sends(&out, 1), vec![ServerMessage::Pong { nonce: None }]);
        h.advance(500);
    }
}

#[test]
fn every_decode_error_is_answered_without_closing_the_connection() {
    let mut h = H::new(Config::default());
    h.connect(1, "a");
    let big = format!(r#"{{"type":"offer","to":"b","sdp":"{}"}}"#, "x".repeat(40_000));
    let cases: Vec<(Vec<u8>, ErrorCode)> = vec![
        (b"{not json".to_vec(), ErrorCode::MalformedJson),
        (br#"{"type":"teleport"}"#.to_vec(), ErrorCode::UnknownType),
        (br#"{"type":"join"}"#.to_vec(), ErrorCode::MissingField),
        (big.into_bytes(), ErrorCode::TooLarge),
        (br#"{"type":"join","zone":"bad zone!"}"#.to_vec(), ErrorCode::BadValue),
        (br#"{"type":"auth","token":"t"}"#.to_vec(), ErrorCode::BadValue),
    ];
    for (frame, code) in cases {
        let out = h.raw(1, &frame);
        assert_eq!(error_codes(&sends(&out, 1)), vec![code]);
        assert!(closes(&out).is_empty());
    }
    assert_eq!(h.c.connection_count(), 1);
}

#[test]
fn undecodable_frames_count_as_strikes() {
    let config = Config {
        rate_limit: RateLimit { per_s: 100, burst: 100, strikes_max: 3 },
        ..Config::default()
    };
    let mut h = H::new(config);
    h.connect(1, "a");
    h.raw(1, b"x");
    h.raw(1, b"x");
    let out = h.raw(1, b"x");
    assert_eq!(closes(&out), vec![(1, ErrorCode::RateLimited)]);
}

#[test]
fn shutdown_closes_every_connection_and_refuses_new_ones() {
    let mut h = H::new(Config::default());
    h.connect(1, "a");
    h.connect(2, "b");
    h.join(1, "prontera");
    let out = h.input(Input::Shutdown);
    assert_eq!(closes(&out), vec![(1, ErrorCode::ShuttingDown), (2, ErrorCode::ShuttingDown)]);
    assert_eq!(out.len(), 2);
    let out = h.connect(3, "c");
    assert_eq!(closes(&out), vec![(3, ErrorCode::ShuttingDown)]);
    assert_eq!(h.c.connection_count(), 0);
}

#[test]
fn frames_for_unknown_connections_are_ignored() {
    let mut h = H::new(Config::default());
    assert!(h.raw(99, b"{}").is_empty());
    assert!(h.disconnect(99).is_empty());
    assert!(h.msg(99, &ClientMessage::Leave).is_empty());
}

#[test]
fn host_is_the_best_qualifying_member_and_migrates_when_it_leaves() {
    let mut h = H::new(Config::default());
    for (i, n) in ["a", "b", "c"].iter().enumerate() {
        h.connect(i as u64 + 1, n);
    }
    let with = |c: Capabilities| ClientMessage::Join {
        peer_id: None,
        session_id: None,
        zone: zone("prontera"),
        capabilities: Some(c),
    };
    // `a` does not qualify (2 cores): no host.
    let (sid, _, host, ..) = joined(&sends(&h.msg(1, &with(caps(2, 4000))), 1));
    assert_eq!(host, None);
    // `b` qualifies: it becomes host; `a` hears about it, `b` reads it in session-joined.
    let out = h.msg(2, &with(caps(4, 3000)));
    assert_eq!(joined(&sends(&out, 2)).2, Some(peer("b")));
    assert_eq!(
        sends(&out, 1),
        vec![
            ServerMessage::PeerJoined { peer_id: peer("b") },
            ServerMessage::HostChanged { session_id: sid.clone(), host: Some(peer("b")) },
        ]
    );
    // `c` is stronger, but the host is sticky.
    let out = h.msg(3, &with(caps(8, 4000)));
    assert_eq!(joined(&sends(&out, 3)).2, Some(peer("b")));
    // `b` stops qualifying: `c` takes over.
    let out = h.msg(2, &ClientMessage::UpdateCapabilities { capabilities: caps(1, 1000) });
    let changed = ServerMessage::HostChanged { session_id: sid.clone(), host: Some(peer("c")) };
    for c in 1..=3 {
        assert_eq!(sends(&out, c), vec![changed.clone()]);
    }
    // `c` leaves: nobody qualifies any more.
    let out = h.msg(3, &ClientMessage::Leave);
    let none = ServerMessage::HostChanged { session_id: sid.clone(), host: None };
    assert_eq!(sends(&out, 1).last(), Some(&none));
    assert_eq!(h.c.session(&sid).unwrap().host, None);
    assert_eq!(h.c.stats().host_changes, 3);
}

#[test]
fn session_keys_rotate_with_increasing_epochs() {
    let config =
        Config { key_rotation_interval_s: 60, idle_timeout_ms: 3_600_000, ..Config::default() };
    let mut h = H::new(config);
    h.connect(1, "a");
    h.connect(2, "b");
    let out = h.join(1, "prontera");
    let key1 = match &sends(&out, 1)[0] {
        ServerMessage::SessionJoined { key, .. } => key.clone(),
        m => panic!("{m:?}"),
    };
    let out = h.advance(60_000);
    let rotated = sends(&out, 1);
    let [ServerMessage::KeyRotated { key: key2, .. }] = &rotated[..] else {
        panic!("{rotated:?}");
    };
    assert_eq!(key2.epoch, 2);
    assert_ne!(key2.key, key1.key);
    // A newcomer gets the current key.
    let (_, _, _, epoch, _) = joined(&sends(&h.join(2, "prontera"), 2));
    assert_eq!(epoch, 2);
    assert_eq!(h.c.stats().key_rotations, 1);
}

#[test]
fn stats_count_sessions_players_and_grace_per_zone() {
    let mut h = H::new(Config::default());
    h.connect(1, "a");
    h.connect(2, "b");
    h.connect(3, "c");
    h.join(1, "prontera");
    h.join(2, "prontera");
    h.join(3, "geffen");
    h.disconnect(2);
    let stats = h.c.stats();
    assert_eq!(stats.connections, 2);
    assert_eq!(stats.sessions_per_zone.get(&zone("prontera")), Some(&1));
    assert_eq!(stats.players_per_zone.get(&zone("prontera")), Some(&2));
    assert_eq!(stats.players_per_zone.get(&zone("geffen")), Some(&1));
    assert_eq!(stats.seats_in_grace, 1);
    let zones: Vec<Zone> = h.c.sessions().into_iter().map(|s| s.zone).collect();
    assert_eq!(zones, vec![zone("geffen"), zone("prontera")]);
}

#[test]
fn fuzz_entry_survives_scripted_and_random_scripts() {
    const FRAMES: &[&[u8]] = &[
        br#"{"type":"join","zone":"prontera"}"#,
        br#"{"type":"join","zone":"prontera","peer_id":"p2"}"#,
        br#"{"type":"join","zone":"geffen","capabilities":{"cpu_cores":8,"cpu_mhz":4000,"memory_mb":9000,"bandwidth_mbps":100}}"#,
        br#"{"type":"offer","to":"p1","sdp":"v=0"}"#,
        br#"{"type":"ice-candidate","to":"p0","candidate":"candidate:1"}"#,
        br#"{"type":"leave"}"#,
        br#"{"type":"update-capabilities","capabilities":{}}"#,
        br#"{"type":"ping","nonce":1}"#,
        br#"{"type":"auth","token":"x"}"#,
    ];
    let mut script: Vec<Vec<u8>> = vec![vec![0, 0], vec![0, 1], vec![1, 2]];
    for (i, frame) in FRAMES.iter().enumerate() {
        script.push([&[8 + (i as u8 % 3)][..], frame].concat());
    }
    script.extend([vec![3, 50], vec![2, 1], vec![3, 255], vec![4]]);
    crate::fuzz::coordinator_frames(&script.join(&b'\n'));

    let mut rng = Rng::from_seed(99);
    for _ in 0..300 {
        let mut lines = Vec::new();
        for _ in 0..rng.range_inclusive(1, 60) {
            let line = match rng.below_inclusive(3) {
                0 => {
                    let mut bytes = vec![0u8; rng.range_inclusive(0, 12) as usize];
                    rng.fill_bytes(&mut bytes);
                    bytes
                }
                1 => vec![rng.below_inclusive(4) as u8, rng.below_inclusive(255) as u8],
                _ => {
                    let frame = FRAMES[rng.below_inclusive(FRAMES.len() as u64 - 1) as usize];
                    [&[5 + rng.below_inclusive(3) as u8][..], frame].concat()
                }
            };
            lines.push(line);
        }
        crate::fuzz::coordinator_frames(&lines.join(&b'\n'));
    }
}

#[test]
fn debug_output_shows_counts_not_keys() {
    let mut h = H::new(Config::default());
    h.connect(1, "a");
    h.join(1, "prontera");
    assert_eq!(format!("{:?}", h.c), "Coordinator { connections: 1, sessions: 1, .. }");
}

#[test]
fn capabilities_reported_before_joining_or_on_a_replaced_connection_count_for_election() {
    let mut h = H::new(Config::default());
    h.connect(1, "a");
    h.msg(1, &ClientMessage::UpdateCapabilities { capabilities: caps(8, 4000) });
    let (sid, _, host, ..) = joined(&sends(&h.join(1, "prontera"), 1));
    assert_eq!(host, Some(peer("a")));
    // The account reconnects; the seat keeps its capabilities, so `a` stays host.
    let out = h.connect(2, "a");
    assert_eq!(closes(&out), vec![(1, ErrorCode::Replaced)]);
    assert!(sends(&out, 2).iter().all(|m| matches!(m, ServerMessage::Welcome { .. })));
    let (_, _, host, _, resumed) = joined(&sends(&h.join(2, "prontera"), 2));
    assert_eq!((host, resumed), (Some(peer("a")), true));
    assert_eq!(h.c.session(&sid).unwrap().host, Some(peer("a")));
}

#[test]
fn a_refused_join_keeps_the_old_seat_and_ignores_its_capabilities() {
    let config =
        Config { max_sessions_per_zone: 1, max_players_per_session: 1, ..Config::default() };
    let mut h = H::new(config);
    h.connect(1, "a");
    h.connect(2, "b");
    let (sid, ..) = joined(&sends(&h.join(1, "prontera"), 1));
    h.join(2, "geffen");
    let join = ClientMessage::Join {
        peer_id: None,
        session_id: None,
        zone: zone("geffen"),
        capabilities: Some(caps(8, 4000)),
    };
    let out = h.msg(1, &join);
    assert_eq!(error_codes(&sends(&out, 1)), vec![ErrorCode::ZoneFull]);
    assert_eq!(out.len(), 1);
    let view = h.c.session(&sid).unwrap();
    assert_eq!((view.members, view.host), (vec![peer("a")], None));
}

/// What member `a` (conn 1) and `b` (conn 2, or conn 3 after reconnecting) see, one line per
/// output, without ids and keys.
fn summarize(out: &[Output]) -> String {
    let name = |c: &ConnId| match c.0 {
        1 => "a",
        2 => "b",
        _ => "b'",
    };
    let lines: Vec<String> = out
        .iter()
        .map(|o| match o {
            Output::Close { conn, code, .. } => format!("{}: close {code}", name(conn)),
            Output::Send { conn, msg } => {
                let what = match msg {
                    ServerMessage::Welcome { .. } => "welcome".to_owned(),
                    ServerMessage::SessionJoined { zone, peers, resumed, .. } => {
                        let peers: Vec<&str> = peers.iter().map(PeerId::as_str).collect();
                        format!("session-joined {zone} peers={peers:?} resumed={resumed}")
                    }
                    ServerMessage::SessionLeft { .. } => "session-left".to_owned(),
                    ServerMessage::PeerJoined { peer_id } => format!("peer-joined {peer_id}"),
                    ServerMessage::PeerLeft { peer_id, reason } => {
                        format!("peer-left {peer_id} {reason:?}")
                    }
                    ServerMessage::HostChanged { host, .. } => format!("host-changed {host:?}"),
                    ServerMessage::Offer { from, .. } => format!("offer from {from}"),
                    ServerMessage::Error { code, .. } => format!("error {code}"),
                    other => other.type_name().to_owned(),
                };
                format!("{}: {what}", name(conn))
            }
        })
        .collect();
    if lines.is_empty() { "(nothing)".to_owned() } else { lines.join(", ") }
}

#[test]
fn seat_transition_table() {
    #[derive(Clone, Copy, Debug)]
    enum Start {
        NotSeated,
        Live,
        AwaitingReconnect,
    }
    #[derive(Clone, Copy, Debug)]
    enum Event {
        JoinSameZone,
        JoinOtherZone,
        Leave,
        Relay,
        Disconnect,
        Reconnect,
        GraceEnds,
    }
    let starts = [Start::NotSeated, Start::Live, Start::AwaitingReconnect];
    let events = [
        Event::JoinSameZone,
        Event::JoinOtherZone,
        Event::Leave,
        Event::Relay,
        Event::Disconnect,
        Event::Reconnect,
        Event::GraceEnds,
    ];
    let mut table = Vec::new();
    for start in starts {
        for event in events {
            let config = Config { idle_timeout_ms: 10_000_000, ..Config::default() };
            let mut h = H::new(config);
            h.connect(1, "a");
            h.join(1, "prontera");
            h.connect(2, "b");
            match start {
                Start::NotSeated => {}
                Start::Live => {
                    h.join(2, "prontera");
                }
                Start::AwaitingReconnect => {
                    h.join(2, "prontera");
                    h.disconnect(2);
                }
            }
            // While `b` is away, its actions come from its next connection.
            let b = if matches!(start, Start::AwaitingReconnect) { 3 } else { 2 };
            let out = match event {
                Event::JoinSameZone | Event::JoinOtherZone | Event::Leave | Event::Relay
                    if b == 3 =>
                {
                    let mut out = h.connect(3, "b");
                    out.retain(|o| {
                        !matches!(o, Output::Send { msg: ServerMessage::Welcome { .. }, .. })
                    });
                    out.extend(match event {
                        Event::JoinSameZone => h.join(3, "prontera"),
                        Event::JoinOtherZone => h.join(3, "geffen"),
                        Event::Leave => h.msg(3, &ClientMessage::Leave),
                        _ => h.msg(3, &offer_to("a")),
                    });
                    out
                }
                Event::JoinSameZone => h.join(b, "prontera"),
                Event::JoinOtherZone => h.join(b, "geffen"),
                Event::Leave => h.msg(b, &ClientMessage::Leave),
                Event::Relay => h.msg(b, &offer_to("a")),
                Event::Disconnect => h.disconnect(2),
                Event::Reconnect => h.connect(3, "b"),
                Event::GraceEnds => h.advance(300_000),
            };
            let prefix = if b == 3
                && !matches!(event, Event::Disconnect | Event::Reconnect | Event::GraceEnds)
            {
                "(reconnects, then) "
            } else {
                ""
            };
            table.push(format!("{start:?} x {event:?} -> {prefix}{}", summarize(&out)));
        }
    }
    insta::assert_snapshot!(table.join("\n"));
}

fn restored(p: &str, sid: &str, host: bool, key_epoch: u32) -> RestoredSeat {
    RestoredSeat {
        peer_id: peer(p),
        session_id: SessionId::new(sid).unwrap(),
        capabilities: host.then(|| caps(8, 4000)),
        host,
        key_epoch,
        grace_until: None,
    }
}

#[test]
fn restored_seats_wait_in_grace_and_their_members_resume_without_churn() {
    let mut h = H::new(Config::default());
    let sid = SessionId::new("prontera-0a0b").unwrap();
    let seats =
        vec![restored("a", "prontera-0a0b", true, 3), restored("b", "prontera-0a0b", false, 3)];
    let out = h.input(Input::RestoreSeats { zone: zone("prontera"), seats });
    assert!(out.is_empty(), "a restore tells nobody anything: {out:?}");
    let view = h.c.session(&sid).unwrap();
    assert_eq!(view.members, vec![peer("a"), peer("b")]);
    assert!(view.connected.is_empty());
    assert_eq!(view.host, Some(peer("a")));
    assert_eq!(h.c.stats().seats_in_grace, 2);
    assert_eq!(h.c.seat_capabilities(&peer("a")), Some(caps(8, 4000)));

    h.connect(1, "a");
    let out = h.join(1, "prontera");
    let (sid1, peers, host, epoch, resumed) = joined(&sends(&out, 1));
    assert_eq!((sid1, peers, host, resumed), (sid.clone(), vec![peer("b")], Some(peer("a")), true));
    assert!(epoch > 3, "the new key's epoch is above the recorded one, got {epoch}");

    h.connect(2, "b");
    let out = h.join(2, "prontera");
    assert!(joined(&sends(&out, 2)).4, "b resumes too");
    assert!(sends(&out, 1).is_empty(), "a sees no peer-joined for b: {out:?}");
    assert_eq!(h.c.session(&sid).unwrap().connected, vec![peer("a"), peer("b")]);
    assert_eq!(h.c.seat_connection(&peer("b")), Some(ConnId(2)));
    assert_eq!(h.c.seat_zone(&peer("b")), Some(zone("prontera")));
    assert_eq!(h.c.stats().joins, 0, "resumes are not joins");
}

#[test]
fn a_restored_seat_whose_member_never_returns_ends_with_its_grace() {
    let mut h = H::new(Config { idle_timeout_ms: 3_600_000, ..Config::default() });
    let seats =
        vec![restored("a", "geffen-0001", false, 1), restored("b", "geffen-0001", false, 1)];
    h.input(Input::RestoreSeats { zone: zone("geffen"), seats });
    h.connect(1, "a");
    h.join(1, "geffen");
    let out = h.advance(300_001);
    let left: Vec<_> = sends(&out, 1)
        .into_iter()
        .filter(|m| matches!(m, ServerMessage::PeerLeft { reason: PeerLeftReason::Timeout, .. }))
        .collect();
    assert_eq!(left.len(), 1, "{out:?}");
}

#[test]
fn restore_skips_seats_already_held_here_and_sessions_of_another_zone() {
    let mut h = H::new(Config::default());
    h.connect(1, "a");
    let (here, ..) = joined(&sends(&h.join(1, "prontera"), 1));
    let seats = vec![
        restored("a", "prontera-ffff", false, 1),
        RestoredSeat { session_id: here.clone(), ..restored("c", "x", false, 1) },
    ];
    h.input(Input::RestoreSeats { zone: zone("geffen"), seats });
    assert_eq!(h.c.session(&here).unwrap().members, vec![peer("a")], "another zone's session");
    assert!(h.c.session(&SessionId::new("prontera-ffff").unwrap()).is_none(), "a is seated here");
    assert!(h.c.discover(&zone("geffen")).is_empty());
}

#[test]
fn a_dropped_zone_is_forgotten_silently_and_its_connections_stay_open_unseated() {
    let mut h = H::new(Config::default());
    h.connect(1, "a");
    h.connect(2, "b");
    h.connect(3, "c");
    h.join(1, "prontera");
    h.join(2, "prontera");
    h.join(3, "geffen");
    h.disconnect(2);
    let out = h.input(Input::DropZone { zone: zone("prontera") });
    assert!(out.is_empty(), "{out:?}");
    assert!(h.c.discover(&zone("prontera")).is_empty());
    assert_eq!(h.c.discover(&zone("geffen")).len(), 1, "other zones stay");
    assert_eq!(h.c.stats().seats_in_grace, 0);
    let out = h.msg(1, &offer_to("c"));
    assert_eq!(error_codes(&sends(&out, 1)), vec![ErrorCode::NotInSession]);
    let out = h.msg(1, &ClientMessage::Ping { nonce: Some(5) });
    assert!(matches!(sends(&out, 1)[..], [ServerMessage::Pong { .. }]), "still open: {out:?}");
    // No grace timer survives the drop.
    let out = h.advance(600_000);
    assert!(
        out.iter().all(|o| !matches!(o, Output::Send { msg: ServerMessage::PeerLeft { .. }, .. }))
    );
}

/// Seed 22 of the multi-coordinator simulation: an instance lost a zone (its lease lapsed while
/// the store was out of reach) and took it back under a new epoch. Its members never left its
/// core, so no `join` of theirs will come: the restore itself must hand them the new key.
#[test]
fn a_zone_taken_back_tells_its_still_connected_members_the_restored_session_and_new_key() {
    let mut h = H::new(Config::default());
    h.connect(1, "a");
    h.connect(2, "b");
    let (sid, _, _, first_epoch, _) = joined(&sends(&h.join(1, "prontera"), 1));
    h.join(2, "prontera");
    h.input(Input::DropZone { zone: zone("prontera") });
    let seats = vec![
        RestoredSeat { session_id: sid.clone(), ..restored("a", "x", true, first_epoch) },
        RestoredSeat { session_id: sid.clone(), ..restored("b", "x", false, first_epoch) },
    ];
    let out = h.input(Input::RestoreSeats { zone: zone("prontera"), seats });
    let (sid_a, peers_a, host_a, epoch_a, resumed_a) = joined(&sends(&out, 1));
    let (sid_b, peers_b, host_b, epoch_b, resumed_b) = joined(&sends(&out, 2));
    assert_eq!(
        (&sid_a, &peers_a, &host_a, resumed_a),
        (&sid, &vec![peer("b")], &Some(peer("a")), true)
    );
    assert_eq!(
        (&sid_b, &peers_b, &host_b, resumed_b),
        (&sid, &vec![peer("a")], &Some(peer("a")), true)
    );
    assert!(
        epoch_a > first_epoch && epoch_a == epoch_b,
        "one new key for both: {epoch_a} {epoch_b}"
    );
    assert!(
        out.iter()
            .all(|o| !matches!(o, Output::Send { msg: ServerMessage::PeerJoined { .. }, .. })),
        "no churn: {out:?}"
    );
    assert_eq!(h.c.session(&sid).unwrap().connected, vec![peer("a"), peer("b")]);
    // The restored seats are live: signaling flows between them again.
    let out = h.msg(1, &offer_to("b"));
    assert!(matches!(sends(&out, 2)[..], [ServerMessage::Offer { .. }]), "{out:?}");
}

/// Seed 141 of the multi-coordinator simulation: the store was down while a client moved from
/// prontera to geffen, so prontera's records still name it. An instance taking prontera over
/// must not seat that client there on the connection it now uses for geffen.
#[test]
fn a_restored_record_is_not_attached_to_a_connection_whose_client_is_elsewhere() {
    let mut h = H::new(Config::default());
    h.connect(1, "a"); // seated here in geffen (the record is older)
    h.connect(2, "b"); // connected here, not joined anywhere yet
    h.connect(3, "c"); // connected here, left prontera-0a0b
    let (geffen, ..) = joined(&sends(&h.join(1, "geffen"), 1));
    h.join(3, "payon");
    h.msg(3, &ClientMessage::Leave);
    let seats = vec![
        restored("a", "prontera-0a0b", true, 2),
        restored("b", "prontera-0a0b", false, 2),
        restored("c", "prontera-0a0b", false, 2),
        restored("d", "prontera-0a0b", false, 2),
    ];
    let out = h.input(Input::RestoreSeats { zone: zone("prontera"), seats });
    assert!(out.is_empty(), "nobody connected here believes in the record: {out:?}");
    let restored_sid = SessionId::new("prontera-0a0b").unwrap();
    let view = h.c.session(&restored_sid).unwrap();
    assert_eq!(view.members, vec![peer("d")], "only the absent member waits in grace");
    assert_eq!(h.c.seat_zone(&peer("a")), Some(zone("geffen")));
    assert_eq!(h.c.session(&geffen).unwrap().members, vec![peer("a")]);
    assert_eq!(h.c.seat_zone(&peer("b")), None);
    assert_eq!(h.c.seat_zone(&peer("c")), None);
    // b's own join places it as a newcomer (d is in grace in the only session: b joins it).
    let (sid_b, peers_b, _, _, resumed_b) = joined(&sends(&h.join(2, "prontera"), 2));
    assert_eq!((sid_b, peers_b, resumed_b), (restored_sid, vec![peer("d")], false));
}

/// Seed 141 again: a client joined while the store was down, so no record names it; the
/// instance lost the zone and took it back. Its client still believes in the dropped session:
/// the restore places it again, as a newcomer, instead of leaving it seated nowhere.
#[test]
fn a_zone_taken_back_places_again_a_connected_member_that_no_record_names() {
    let mut h = H::new(Config::default());
    h.connect(1, "a");
    h.connect(2, "b");
    h.connect(3, "c");
    let (sid, ..) = joined(&sends(&h.join(1, "prontera"), 1));
    h.join(2, "prontera"); // not in the records
    h.join(3, "geffen"); // another zone: untouched
    h.input(Input::DropZone { zone: zone("prontera") });
    let seats = vec![RestoredSeat { session_id: sid.clone(), ..restored("a", "x", true, 1) }];
    let out = h.input(Input::RestoreSeats { zone: zone("prontera"), seats });
    let (sid_a, ..) = joined(&sends(&out, 1));
    let (sid_b, peers_b, _, _, resumed_b) = joined(&sends(&out, 2));
    assert_eq!(sid_a, sid);
    assert_eq!((sid_b, peers_b, resumed_b), (sid.clone(), vec![peer("a")], false));
    assert!(sends(&out, 3).is_empty(), "{out:?}");
    assert_eq!(h.c.session(&sid).unwrap().connected, vec![peer("a"), peer("b")]);
    // a, told the session before b was placed again, hears of b as of any newcomer.
    assert!(
        sends(&out, 1)
            .iter()
            .any(|m| matches!(m, ServerMessage::PeerJoined { peer_id } if *peer_id == peer("b"))),
        "{out:?}"
    );
    // After a leave, a connection is told nothing when its old zone comes back, even when the
    // leave came after the zone was dropped (the seat was already gone: `not-in-session`).
    h.input(Input::DropZone { zone: zone("prontera") });
    let out = h.msg(2, &ClientMessage::Leave);
    assert_eq!(error_codes(&sends(&out, 2)), vec![ErrorCode::NotInSession]);
    h.input(Input::DropZone { zone: zone("prontera") });
    let seats = vec![RestoredSeat { session_id: sid.clone(), ..restored("a", "x", true, 1) }];
    let out = h.input(Input::RestoreSeats { zone: zone("prontera"), seats });
    assert!(sends(&out, 2).is_empty(), "{out:?}");
}

#[test]
fn binary_and_control_frames_take_tokens_and_binary_ones_are_strikes() {
    let config = Config {
        rate_limit: RateLimit { per_s: 1, burst: 3, strikes_max: 3 },
        ..Config::default()
    };
    let mut h = H::new(config);
    h.connect(1, "a");
    // Control frames take the burst silently; the next frame of any kind is over the rate.
    let mut out = Vec::new();
    for _ in 0..3 {
        out.extend(h.input(Input::Control { conn: ConnId(1) }));
    }
    assert!(sends(&out, 1).is_empty());
    let out = h.input(Input::Control { conn: ConnId(1) });
    assert_eq!(error_codes(&sends(&out, 1)), vec![ErrorCode::RateLimited]);
    // With a token again, a binary frame is refused and counted as a strike: the third closes.
    h.advance(1_000);
    let out = h.input(Input::Binary { conn: ConnId(1) });
    assert_eq!(error_codes(&sends(&out, 1)), vec![ErrorCode::BadValue]);
    let out = h.input(Input::Binary { conn: ConnId(1) });
    assert_eq!(closes(&out), vec![(1, ErrorCode::RateLimited)]);
}

#[test]
fn seats_in_grace_are_bounded_globally_and_per_address() {
    let config = Config { grace_seats_max: 3, grace_seats_per_origin_max: 2, ..Config::default() };
    let mut h = H::new(config);
    let from = |n: u8| Some(std::net::IpAddr::from([10, 0, 0, n]));
    let mut conn = 0;
    let mut cycle = |h: &mut H, origin, z: &str| {
        conn += 1;
        h.input(Input::Connected {
            conn: ConnId(conn),
            identity: Identity::Anonymous,
            ice_servers: vec![],
            origin,
        });
        h.join(conn, z);
        h.disconnect(conn);
        h.c.stats()
    };
    // One address: two seats wait in grace, the third is given up at once.
    assert_eq!(cycle(&mut h, from(1), "z1").seats_in_grace, 1);
    assert_eq!(cycle(&mut h, from(1), "z2").seats_in_grace, 2);
    let stats = cycle(&mut h, from(1), "z3");
    assert_eq!(stats.seats_in_grace, 2);
    assert!(!stats.sessions_per_zone.contains_key(&zone("z3")), "{stats:?}");
    // Another address: one more fits under the global bound, then none.
    assert_eq!(cycle(&mut h, from(2), "z4").seats_in_grace, 3);
    assert_eq!(cycle(&mut h, from(3), "z5").seats_in_grace, 3);
    assert_eq!(h.c.sessions().len(), 3);
    // Accounts are bounded by the global number only; a grace that ends frees a place.
    h.advance(300_000);
    assert_eq!(h.c.stats().seats_in_grace, 0);
    assert!(h.c.sessions().is_empty());
    assert_eq!(cycle(&mut h, from(1), "z6").seats_in_grace, 1);
}

#[test]
fn a_seat_given_up_for_lack_of_grace_room_is_announced_as_left() {
    let config = Config { grace_seats_max: 0, ..Config::default() };
    let mut h = H::new(config);
    h.connect(1, "a");
    h.connect(2, "b");
    h.join(1, "prontera");
    h.join(2, "prontera");
    let out = h.disconnect(1);
    assert!(
        sends(&out, 2).contains(&ServerMessage::PeerLeft {
            peer_id: peer("a"),
            reason: PeerLeftReason::Left
        }),
        "{out:?}"
    );
    assert_eq!(h.c.stats().seats_in_grace, 0);
}

#[test]
fn revoked_credential_closes_the_connection_and_gives_up_the_seat_at_once() {
    let mut h = H::new(Config::default());
    h.connect(1, "2000001");
    h.connect(2, "2000002");
    h.join(1, "prontera");
    let (sid, ..) = joined(&sends(&h.join(2, "prontera"), 2));
    let out = h.input(Input::Revoke { conn: ConnId(1), reason: "logged out".into() });
    assert_eq!(closes(&out), vec![(1, ErrorCode::AuthRevoked)]);
    assert!(sends(&out, 2).contains(&ServerMessage::PeerLeft {
        peer_id: peer("2000001"),
        reason: PeerLeftReason::Left
    }));
    let view = h.c.session(&sid).unwrap();
    assert_eq!(view.members, vec![peer("2000002")], "no seat held in grace");
    assert_eq!(h.c.stats().seats_in_grace, 0);
    // The disconnect that follows the close, and a second revoke, change nothing.
    assert!(h.disconnect(1).is_empty());
    assert!(h.input(Input::Revoke { conn: ConnId(1), reason: "again".into() }).is_empty());
    // Back with a new token: the same identity joins the same session again.
    h.connect(3, "2000001");
    let (again, peers, ..) = joined(&sends(&h.join(3, "prontera"), 3));
    assert_eq!(again, sid);
    assert_eq!(peers, vec![peer("2000002")]);
}

#[test]
fn revoking_a_replaced_connection_leaves_the_newer_ones_seat_alone() {
    let mut h = H::new(Config::default());
    h.connect(1, "2000001");
    h.join(1, "prontera");
    // A re-login with a new token replaced connection 1 and took its seat.
    h.connect(2, "2000001");
    let out = h.input(Input::Revoke { conn: ConnId(1), reason: "old token".into() });
    assert!(closes(&out).is_empty(), "{out:?}");
    assert_eq!(h.c.seat_connection(&peer("2000001")), Some(ConnId(2)));
}
