//! Behaviour of the framer, classifier and router together: unit cases from the data README,
//! the routing-table snapshot, and properties over arbitrary streams, splits, versions,
//! obfuscation, policies and router inputs.

use proptest::prelude::*;

use super::*;
use crate::packet::*;

/// A verdict with owned bytes, pass-through merged into its desync so that it does not depend
/// on how the input was split.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Owned {
    Packet {
        offset: u64,
        id: u16,
        len: usize,
        route: &'static str,
        event: Option<Vec<u8>>,
        server: Vec<u8>,
    },
    Desync {
        offset: u64,
        reason: DesyncReason,
        bytes: Vec<u8>,
    },
}

pub(crate) fn run(
    stream: &mut GameStream,
    chunks: &[&[u8]],
    policy: &Policy,
    ctx: &RouteContext,
) -> Vec<Owned> {
    let mut out: Vec<Owned> = Vec::new();
    for chunk in chunks {
        stream.feed(chunk, policy, ctx, |v| match v {
            Verdict::Packet(p) => out.push(Owned::Packet {
                offset: p.offset,
                id: p.spec.id(),
                len: p.len,
                route: p.route.as_str(),
                event: p.route.to_peers().map(|e| {
                    let mut b = Vec::new();
                    e.event().encode(&mut b);
                    b
                }),
                server: p.server_bytes.to_vec(),
            }),
            Verdict::Desync { offset, reason, bytes } => {
                out.push(Owned::Desync { offset, reason, bytes: bytes.to_vec() })
            }
            Verdict::PassThrough { bytes, .. } => {
                if let Some(Owned::Desync { bytes: all, .. }) = out.last_mut() {
                    all.extend_from_slice(bytes);
                }
            }
        });
    }
    out
}

fn walk_035f(x: u16, y: u16) -> Vec<u8> {
    let b0 = (x >> 2) as u8;
    let b1 = ((x << 6) as u8) | ((y >> 4) as u8 & 0x3F);
    let b2 = (y << 4) as u8;
    vec![0x5F, 0x03, b0, b1, b2]
}

fn chat_00f3(text: &[u8]) -> Vec<u8> {
    let len = (4 + text.len()) as u16;
    let mut p = vec![0xF3, 0x00];
    p.extend_from_slice(&len.to_le_bytes());
    p.extend_from_slice(text);
    p
}

fn one(version: PacketVersion, bytes: &[u8], policy: &Policy) -> Vec<Owned> {
    run(&mut GameStream::new(version, Obfuscation::Off), &[bytes], policy, &RouteContext::ALL_READY)
}

/// One valid packet for every row of `version`'s table, chat and emote contents the classifier
/// may pass, every other byte a pattern.
fn one_packet_per_row(version: PacketVersion) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for spec in version.table().iter() {
        let mut p = spec.id().to_le_bytes().to_vec();
        match spec.len() {
            PacketLen::Fixed(n) if n >= 2 => {
                p.extend((2..n).map(|i| (i % 3) as u8));
            }
            PacketLen::Fixed(_) => continue,
            PacketLen::Variable => {
                let mut text = b"Alice : hi".to_vec();
                if version.chat_nul_terminated() {
                    text.push(0);
                }
                p.extend(((4 + text.len()) as u16).to_le_bytes());
                p.extend(text);
            }
        }
        out.push(p);
    }
    out
}

#[test]
fn every_generated_version_frames_exactly_and_only_social_handlers_reach_peers() {
    let policy = Policy { movement: Choice::Peers, chat: Choice::Peers, emote: Choice::Peers };
    let social = [
        "clif_parse_WalkToXY",
        "clif_parse_ChangeDir",
        "clif_parse_GlobalMessage",
        "clif_parse_Emotion",
    ];
    for version in PacketVersion::every() {
        let packets = one_packet_per_row(version);
        for obfuscation in [Obfuscation::Off, Obfuscation::On] {
            let mut wire = Vec::new();
            let mut client = ClientEncoder::new(version, obfuscation);
            for p in &packets {
                client.encode(p, &mut wire);
            }
            let mut stream = GameStream::new(version, obfuscation);
            stream.set_own_name(b"Alice").unwrap();
            let out = run(&mut stream, &[&wire], &policy, &RouteContext::ALL_READY);
            assert_eq!(out.len(), packets.len(), "{version} {obfuscation:?}");
            for (p, v) in packets.iter().zip(&out) {
                let Owned::Packet { id, len, event, .. } = v else {
                    panic!("{version}: {:#06X} desynced: {v:?}", u16::from_le_bytes([p[0], p[1]]))
                };
                assert_eq!((*id, *len), (u16::from_le_bytes([p[0], p[1]]), p.len()));
                let spec = version.table().get(*id).unwrap();
                if event.is_some() {
                    assert!(
                        social.contains(&spec.handler()),
                        "{version}: {} to peers",
                        spec.handler()
                    );
                    assert!(matches!(
                        spec.category(),
                        Category::Movement | Category::Chat | Category::Emote
                    ));
                }
                if !matches!(spec.category(), Category::Movement | Category::Chat | Category::Emote)
                {
                    assert_eq!(spec.peer_category(), None, "{version} {id:#06X}");
                }
            }
            assert!(stream.pending().is_empty());
        }
    }
}

#[test]
fn walking_at_20211103_is_movement_mirrored_by_default() {
    let out = one(PacketVersion::V20211103, &walk_035f(150, 200), &Policy::default());
    let mut event = Vec::new();
    PeerEvent::Move { x: 150, y: 200 }.encode(&mut event);
    assert_eq!(
        out,
        [Owned::Packet {
            offset: 0,
            id: 0x035F,
            len: 5,
            route: "server+peers",
            event: Some(event),
            server: walk_035f(150, 200),
        }]
    );
}

#[test]
fn peers_only_falls_back_to_mirror_while_a_member_has_no_direct_link() {
    let policy: Policy = "movement=peers".parse().unwrap();
    let route_with = |all_members_linked| {
        let ctx = RouteContext { all_members_linked, ..RouteContext::ALL_READY };
        let mut stream = GameStream::new(PacketVersion::V20211103, Obfuscation::Off);
        let mut routes = Vec::new();
        stream.feed(&walk_035f(150, 200), &policy, &ctx, |v| {
            if let Verdict::Packet(p) = v {
                routes.push(p.route.as_str());
            }
        });
        routes
    };
    assert_eq!(route_with(true), ["peers"]);
    // Someone in the session cannot be reached directly: the server fans it out to them.
    assert_eq!(route_with(false), ["server+peers"]);
}

#[test]
fn the_same_id_means_different_things_per_version() {
    let walk = [0x37, 0x04, 0x25, 0x8C, 0x84];
    let action = [0x37, 0x04, 0, 0, 0, 0, 7];
    let at = |v, p: &[u8]| match classify_packet(v, p) {
        Some(Classified::PeerEligible(e)) => format!("{}:{:?}", e.spec().handler_name(), e.event()),
        Some(Classified::ServerOnly(s)) => format!("{}:server", s.spec().handler_name()),
        None => "unknown".into(),
    };
    assert_eq!(at(PacketVersion::V20120410, &walk), "WalkToXY:Move { x: 150, y: 200 }");
    assert_eq!(at(PacketVersion::V20211103, &action), "ActionRequest:server");
    assert_eq!(at(PacketVersion::V20211103, &walk), "unknown"); // wrong length for the id
    assert!(at(PacketVersion::V20151104, &[0x37, 0x04, 0, 0, 0, 0]).ends_with(":server"));
}

#[test]
fn framing_one_byte_at_a_time_gives_the_same_verdicts() {
    let mut bytes = walk_035f(1, 2);
    bytes.extend(chat_00f3(b"Alice : hello"));
    bytes.extend([0xBF, 0x00, 5]);
    let whole = one(PacketVersion::V20211103, &bytes, &Policy::default());
    let singles: Vec<&[u8]> = bytes.chunks(1).collect();
    let split = run(
        &mut GameStream::new(PacketVersion::V20211103, Obfuscation::Off),
        &singles,
        &Policy::default(),
        &RouteContext::ALL_READY,
    );
    assert_eq!(whole.len(), 3);
    assert_eq!(whole, split);
}

#[test]
fn content_rules_keep_commands_whispers_and_special_emotes_on_the_server() {
    let policy: Policy = "movement=peers,chat=peers,emote=peers".parse().unwrap();
    let route = |bytes: &[u8]| match one(PacketVersion::V20211103, bytes, &policy).first() {
        Some(Owned::Packet { route, .. }) => *route,
        other => panic!("{other:?}"),
    };
    assert_eq!(route(&chat_00f3(b"Alice : hi")), "peers");
    assert_eq!(route(&chat_00f3(b"Alice : @warp prontera")), "server");
    assert_eq!(route(&chat_00f3(b"Alice : #kick Bob")), "server");
    let mut whisper = vec![0x96, 0x00, 32, 0];
    whisper.extend_from_slice(&[0u8; 24]);
    whisper.extend_from_slice(b"hey\0");
    assert_eq!(route(&whisper), "server");
    assert_eq!(route(&[0x08, 0x01, 5, 0, b'x']), "server"); // party chat
    assert_eq!(route(&[0xBF, 0x00, 1]), "peers");
    assert_eq!(route(&[0xBF, 0x00, 34]), "server"); // mute
    assert_eq!(route(&[0xBF, 0x00, 60]), "server"); // dice
    assert_eq!(route(&[0xBF, 0x00, 88]), "server"); // invalid
    assert_eq!(route(&[0x61, 0x03, 1, 0, 6]), "peers"); // turn
    assert_eq!(route(&[0x61, 0x03, 3, 0, 6]), "server"); // bad head dir
    assert_eq!(route(&[0x5F, 0x03, 0, 0, 0]), "peers");
}

#[test]
fn chat_at_20120410_must_be_nul_terminated() {
    let policy = Policy::default();
    let v = PacketVersion::V20120410;
    let route = |b: &[u8]| match one(v, b, &policy).first() {
        Some(Owned::Packet { route, .. }) => *route,
        other => panic!("{other:?}"),
    };
    assert_eq!(route(&chat_00f3(b"Alice : hi\0")), "server+peers");
    assert_eq!(route(&chat_00f3(b"Alice : hi")), "server");
}

#[test]
fn router_inputs_gate_every_peer_route() {
    for ctx in [
        RouteContext { p2p_enabled: false, ..RouteContext::ALL_READY },
        RouteContext { zone_enabled: false, ..RouteContext::ALL_READY },
        RouteContext { joined: false, ..RouteContext::ALL_READY },
        RouteContext { peers_ready: false, ..RouteContext::ALL_READY },
    ] {
        let out = run(
            &mut GameStream::new(PacketVersion::V20211103, Obfuscation::Off),
            &[&walk_035f(3, 4)],
            &Policy { movement: Choice::Peers, ..Policy::default() },
            &ctx,
        );
        assert!(matches!(out.as_slice(), [Owned::Packet { route: "server", event: None, .. }]));
    }
}

#[test]
fn unknown_id_desyncs_and_everything_after_passes_untouched() {
    let mut bytes = walk_035f(1, 1);
    bytes.extend([0xFF, 0xFF, 1, 2, 3]);
    let rest = walk_035f(2, 2);
    let mut stream = GameStream::new(PacketVersion::V20211103, Obfuscation::Off);
    let out = run(&mut stream, &[&bytes, &rest], &Policy::default(), &RouteContext::ALL_READY);
    assert_eq!(out.len(), 2);
    let mut tail = vec![0xFF, 0xFF, 1, 2, 3];
    tail.extend(&rest);
    assert_eq!(
        out[1],
        Owned::Desync { offset: 5, reason: DesyncReason::UnknownId { id: 0xFFFF }, bytes: tail }
    );
    assert!(stream.is_desynced());
}

#[test]
fn impossible_variable_lengths_desync() {
    for len in [0u16, 3, 32769, 65535] {
        let mut p = vec![0xF3, 0x00];
        p.extend_from_slice(&len.to_le_bytes());
        let out = one(PacketVersion::V20211103, &p, &Policy::default());
        assert_eq!(
            out,
            [Owned::Desync {
                offset: 0,
                reason: DesyncReason::ImpossibleLength { id: 0x00F3, len },
                bytes: p.clone()
            }]
        );
    }
}

#[test]
fn login_and_char_connections_are_server_only() {
    // CH_SELECT_CHAR (0x0066, 3 bytes) and a keepalive (0x0187, 6 bytes).
    let bytes = [0x66, 0x00, 1, 0x87, 0x01, 0, 0, 0, 0];
    let out = run(
        &mut GameStream::login_char(),
        &[&bytes],
        &"movement=peers,chat=peers,emote=peers".parse().unwrap(),
        &RouteContext::ALL_READY,
    );
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(|o| matches!(o, Owned::Packet { route: "server", event: None, .. })));
}

#[test]
fn diverted_packets_are_re_obfuscated_for_the_server() {
    let v = PacketVersion::V20151104;
    // Walk 0x0363 to peers only, then LoadEndAck 0x007D and another walk.
    let packets: [&[u8]; 3] = [&[0x63, 0x03, 1, 2, 3], &[0x7D, 0x00], &[0x63, 0x03, 4, 5, 6]];
    let mut wire = Vec::new();
    let mut client = ClientEncoder::new(v, Obfuscation::On);
    for p in packets {
        client.encode(p, &mut wire);
    }
    let policy: Policy = "movement=peers".parse().unwrap();
    let out =
        run(&mut GameStream::new(v, Obfuscation::On), &[&wire], &policy, &RouteContext::ALL_READY);
    let routes: Vec<_> = out
        .iter()
        .map(|o| match o {
            Owned::Packet { id, route, .. } => (*id, *route),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(routes, [(0x0363, "peers"), (0x007D, "server"), (0x0363, "peers")]);
    let mut server = ServerDecoder::new(v, Obfuscation::On);
    for o in &out {
        if let Owned::Packet { server: bytes, .. } = o {
            server.push(bytes);
        }
    }
    let (got, err) = server.drain();
    assert_eq!(err, None);
    assert_eq!(got, [ServerPacket { id: 0x007D, bytes: vec![0x7D, 0x00] }]);
}

#[test]
fn buffer_is_bounded_and_push_reports_what_it_took() {
    let mut stream = GameStream::new(PacketVersion::V20211103, Obfuscation::Off);
    // A partial chat packet announcing the largest length, then far more bytes than fit.
    let mut p = vec![0xF3, 0x00, 0x00, 0x80];
    p.resize(STREAM_BUFFER_BYTES + 100, b'a');
    let taken = stream.push(&p);
    assert_eq!(taken, STREAM_BUFFER_BYTES);
}

/// The routing table of one version: what a reviewer reads when a table changes.
fn routing_table(version: PacketVersion) -> String {
    let policy = Policy::default();
    let mut s = format!("# PACKETVER {version}: id len handler category default-route\n");
    for spec in version.table().iter() {
        let len = match spec.len() {
            PacketLen::Fixed(n) => n.to_string(),
            PacketLen::Variable => "var".into(),
        };
        let route = match spec.peer_category().map(|c| policy.choice(c)) {
            None | Some(Choice::Server) => "server",
            Some(Choice::Mirror) => "server+peers",
            Some(Choice::Peers) => "peers",
        };
        s.push_str(&format!(
            "0x{:04X} {len} {} {} {route}\n",
            spec.id(),
            spec.handler_name(),
            spec.category()
        ));
    }
    s
}

/// The reference versions and a sample across the generated range and families.
const SNAPSHOT_SAMPLE: [&str; 10] = [
    "20211103",
    "20180620",
    "20151104",
    "20120410",
    "20080910",
    "20130515",
    "20170830",
    "20190116-zero",
    "20200401",
    "20230830",
];

#[test]
fn routing_table_per_version() {
    for v in SNAPSHOT_SAMPLE {
        let v: PacketVersion = v.parse().unwrap_or_else(|e| panic!("{v}: {e}"));
        insta::assert_snapshot!(format!("routing_table_{v}"), routing_table(v));
    }
}

// ---- properties -------------------------------------------------------------------------

const CHAT_SAMPLES: [&[u8]; 10] = [
    b"Alice : hello",
    b"Alice : @warp prontera 150 150",
    b"Bob : #item 501",
    b"Alice :  @go 0",
    b"nobody here",
    b"A : B : @x",
    b"Alice : a\0b",
    b"Alice : ",
    b"Zed : gg wp : @ok",
    b"Zed : mail @ home",
];

#[derive(Clone, Debug)]
enum Piece {
    Packet { pick: u16, body: Vec<u8>, chat: u8 },
    Garbage(Vec<u8>),
}

fn piece() -> impl Strategy<Value = Piece> {
    prop_oneof![
        30 => (any::<u16>(), proptest::collection::vec(any::<u8>(), 0..24), any::<u8>())
            .prop_map(|(pick, body, chat)| Piece::Packet { pick, body, chat }),
        1 => proptest::collection::vec(any::<u8>(), 1..6).prop_map(Piece::Garbage),
    ]
}

/// A plain packet of `version` (or garbage), biased towards the peer-relevant handlers.
fn build(version: PacketVersion, piece: &Piece) -> (Vec<u8>, bool) {
    let (pick, body, chat) = match piece {
        Piece::Garbage(g) => return (g.clone(), false),
        Piece::Packet { pick, body, chat } => (*pick, body, *chat),
    };
    let specs: Vec<&PacketSpec> = version.table().iter().collect();
    let interesting: Vec<&PacketSpec> = specs
        .iter()
        .copied()
        .filter(|s| matches!(s.category(), Category::Movement | Category::Chat | Category::Emote))
        .collect();
    let pool = if pick % 2 == 0 { &interesting } else { &specs };
    let spec = pool[usize::from(pick / 2) % pool.len()];
    let mut p = spec.id().to_le_bytes().to_vec();
    match spec.len() {
        PacketLen::Fixed(n) => {
            let mut b = body.clone();
            // Small values make valid directions and emotes likely.
            if chat % 3 == 0 {
                b.iter_mut().for_each(|x| *x %= 8);
            }
            b.resize(usize::from(n).saturating_sub(2), 0);
            p.extend(b);
        }
        PacketLen::Variable => {
            let mut payload = if chat % 4 == 3 {
                body.clone()
            } else {
                CHAT_SAMPLES[usize::from(chat) % CHAT_SAMPLES.len()].to_vec()
            };
            if version.chat_nul_terminated() != (chat % 7 == 0) {
                payload.push(0);
            }
            p.extend(((4 + payload.len()) as u16).to_le_bytes());
            p.extend(payload);
        }
    }
    (p, true)
}

fn policy() -> impl Strategy<Value = Policy> {
    let choice = || prop_oneof![Just(Choice::Server), Just(Choice::Mirror), Just(Choice::Peers)];
    (choice(), choice(), choice()).prop_map(|(movement, chat, emote)| Policy {
        movement,
        chat,
        emote,
    })
}

fn ctx() -> impl Strategy<Value = RouteContext> {
    prop_oneof![
        3 => Just(RouteContext::ALL_READY),
        1 => (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
            |(p2p_enabled, zone_enabled, joined, peers_ready, all_members_linked)| RouteContext {
                p2p_enabled,
                zone_enabled,
                joined,
                peers_ready,
                all_members_linked,
            }
        ),
    ]
}

/// Any generated version (the first date of each interval, in each family).
fn version() -> impl Strategy<Value = PacketVersion> {
    prop::sample::select(PacketVersion::every().collect::<Vec<_>>())
}

/// An independent statement of the content rules, deliberately cruder than the classifier:
/// anything it flags must never reach a peer.
fn obviously_forbidden(event: &PeerEvent<'_>) -> bool {
    match *event {
        PeerEvent::Chat { text } => {
            text.windows(4).any(|w| w == b" : @" || w == b" : #")
                || text.windows(5).any(|w| w == b" :  @" || w == b" :  #")
                || text.contains(&0)
                || !text.windows(3).any(|w| w == b" : ")
        }
        PeerEvent::Emote { kind } => kind == 34 || (58..=63).contains(&kind) || kind >= 88,
        PeerEvent::Turn { head_dir, dir } => head_dir > 2 || dir > 7,
        PeerEvent::Move { x, y } => x > 1023 || y > 1023,
    }
}

fn check_stream(
    version: PacketVersion,
    obfuscation: Obfuscation,
    pieces: &[Piece],
    cuts: &[usize],
    policy: &Policy,
    ctx: &RouteContext,
    own_name: bool,
) -> Result<(), TestCaseError> {
    let mut wire = Vec::new();
    let mut plain_prefix: Vec<Vec<u8>> = Vec::new();
    let mut clean = true;
    let mut client = ClientEncoder::new(version, obfuscation);
    for piece in pieces {
        let (bytes, is_packet) = build(version, piece);
        if is_packet && clean {
            plain_prefix.push(bytes.clone());
        }
        if is_packet {
            client.encode(&bytes, &mut wire);
        } else {
            clean = false;
            wire.extend_from_slice(&bytes);
        }
    }
    let new_stream = || {
        let mut stream = GameStream::new(version, obfuscation);
        if own_name {
            stream.set_own_name(b"Alice").unwrap();
        }
        stream
    };
    let mut stream = new_stream();
    let whole = run(&mut stream, &[&wire], policy, ctx);
    let complete = wire.len() - stream.pending().len();

    // Framing is independent of the split.
    let mut chunks: Vec<&[u8]> = Vec::new();
    let mut rest = wire.as_slice();
    for &c in cuts {
        let (a, b) = rest.split_at(c.min(rest.len()));
        chunks.push(a);
        rest = b;
    }
    chunks.push(rest);
    let split = run(&mut new_stream(), &chunks, policy, ctx);
    prop_assert_eq!(&whole, &split);

    // Framing follows the packets the client wrote, up to the first garbage.
    for (plain, verdict) in plain_prefix.iter().zip(&whole) {
        match verdict {
            Owned::Packet { id, len, route, server, .. } => {
                prop_assert_eq!(*len, plain.len());
                prop_assert_eq!(id.to_le_bytes(), [plain[0], plain[1]]);
                if *route != "peers" {
                    prop_assert_eq!(&server[2..], &plain[2..]);
                }
            }
            Owned::Desync { reason, .. } => {
                // Only the generator's deliberately broken lengths may desync a clean prefix.
                let is_impossible_len = matches!(reason, DesyncReason::ImpossibleLength { .. });
                prop_assert!(is_impossible_len, "clean packet desynced: {reason:?}");
                break;
            }
        }
    }

    let mut server_stream = Vec::new();
    let mut expected_server = Vec::new();
    let mut desync_at = None;
    let mut any_peers_only = false;
    for v in &whole {
        match v {
            Owned::Packet { id, route, event, server, .. } => {
                let spec = version.table().get(*id);
                prop_assert!(spec.is_some());
                if let Some(ev) = event {
                    // Every packet sent to peers is movement/chat/emote of this version, passes
                    // the content rules, and peers were usable with a non-server choice.
                    let spec = spec.unwrap();
                    prop_assert!(matches!(
                        spec.handler(),
                        "clif_parse_WalkToXY"
                            | "clif_parse_ChangeDir"
                            | "clif_parse_GlobalMessage"
                            | "clif_parse_Emotion"
                    ));
                    prop_assert!(ctx.peers_usable());
                    let ev = PeerEvent::decode(ev);
                    prop_assert!(ev.is_ok(), "{ev:?}");
                    let ev = ev.unwrap();
                    prop_assert!(!obviously_forbidden(&ev), "{ev:?}");
                    let cat = match ev {
                        PeerEvent::Move { .. } | PeerEvent::Turn { .. } => PeerCategory::Movement,
                        PeerEvent::Chat { .. } => PeerCategory::Chat,
                        PeerEvent::Emote { .. } => PeerCategory::Emote,
                    };
                    prop_assert_ne!(policy.choice(cat), Choice::Server);
                }
                if *route == "peers" {
                    any_peers_only = true;
                    prop_assert!(server.is_empty());
                } else {
                    let mut plain = server.clone();
                    plain[..2].copy_from_slice(&id.to_le_bytes());
                    expected_server.push(ServerPacket { id: *id, bytes: plain });
                    server_stream.extend_from_slice(server);
                }
            }
            Owned::Desync { offset, bytes, .. } => {
                prop_assert_eq!(bytes.as_slice(), &wire[*offset as usize..]);
                desync_at = Some(server_stream.len());
                server_stream.extend_from_slice(bytes);
            }
        }
    }
    // The server decodes exactly the server-routed packets, in order, up to the desync.
    let mut decoder = ServerDecoder::new(version, obfuscation);
    decoder.push(&server_stream[..desync_at.unwrap_or(server_stream.len())]);
    let (got, err) = decoder.drain();
    prop_assert_eq!(err, None);
    prop_assert_eq!(decoder.pending(), 0);
    prop_assert_eq!(got, expected_server);
    // With nothing diverted, the server receives the game's bytes exactly.
    if !any_peers_only {
        prop_assert_eq!(server_stream.as_slice(), &wire[..complete]);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn streams_route_safely_and_the_server_reads_exactly_its_packets(
        version in version(),
        obfuscated in any::<bool>(),
        pieces in proptest::collection::vec(piece(), 0..40),
        cuts in proptest::collection::vec(0usize..64, 0..12),
        policy in policy(),
        ctx in ctx(),
        own_name in any::<bool>(),
    ) {
        let obfuscation = if obfuscated { Obfuscation::On } else { Obfuscation::Off };
        check_stream(version, obfuscation, &pieces, &cuts, &policy, &ctx, own_name)?;
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_only_eligible_packets_reach_peers(
        version in version(),
        obfuscated in any::<bool>(),
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
        policy in policy(),
    ) {
        let obfuscation = if obfuscated { Obfuscation::On } else { Obfuscation::Off };
        let out = run(&mut GameStream::new(version, obfuscation), &[&bytes], &policy, &RouteContext::ALL_READY);
        let mut total = 0usize;
        for v in &out {
            match v {
                Owned::Packet { len, event, .. } => {
                    total += len;
                    if let Some(ev) = event {
                        let ev = PeerEvent::decode(ev);
                        prop_assert!(ev.is_ok());
                        prop_assert!(!obviously_forbidden(&ev.unwrap()));
                    }
                }
                Owned::Desync { bytes, .. } => total += bytes.len(),
            }
        }
        let mut stream = GameStream::new(version, obfuscation);
        stream.feed(&bytes, &policy, &RouteContext::ALL_READY, |_| {});
        prop_assert_eq!(total + stream.pending().len(), bytes.len());
    }
}

#[test]
fn route_type_reaches_peers_only_with_an_eligible_packet() {
    // Route::Peers can only be built from a PeerEligible, which only the classifier makes:
    // this is a compile-time property; here we check the runtime mapping of choices.
    let p = walk_035f(9, 9);
    let Some(Classified::PeerEligible(e)) = classify_packet(PacketVersion::V20211103, &p) else {
        panic!("walk must be eligible")
    };
    let policy = Policy { movement: Choice::Peers, ..Policy::default() };
    assert_eq!(
        policy.route(Classified::PeerEligible(e), &RouteContext::ALL_READY),
        Route::Peers(e)
    );
    assert_eq!(
        policy.route(Classified::PeerEligible(e), &RouteContext::SERVER_ONLY),
        Route::Server
    );
}

proptest! {
    #[test]
    fn fuzz_entry_points_hold_on_arbitrary_input(data in proptest::collection::vec(any::<u8>(), 0..256)) {
        crate::fuzz::packet_stream(&data);
        crate::fuzz::chat_parse(&data);
    }
}

#[test]
fn known_own_name_requires_the_exact_chat_prefix() {
    let mut stream = GameStream::new(PacketVersion::V20211103, Obfuscation::Off);
    assert_eq!(stream.set_own_name(b""), Err(OwnNameError::Empty));
    assert_eq!(stream.set_own_name(&[b'n'; 24]), Err(OwnNameError::TooLong { len: 24 }));
    assert_eq!(stream.set_own_name(b"Al\0"), Err(OwnNameError::ContainsNul));
    stream.set_own_name(b"Alice").unwrap();
    let mut bytes = chat_00f3(b"Alice : hi");
    bytes.extend(chat_00f3(b"Bob : hi"));
    let out = run(&mut stream, &[&bytes], &Policy::default(), &RouteContext::ALL_READY);
    let routes: Vec<_> = out
        .iter()
        .map(|o| match o {
            Owned::Packet { route, .. } => *route,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(routes, ["server+peers", "server"]);
}
