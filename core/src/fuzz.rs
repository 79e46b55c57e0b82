//! Entry points for the cargo-fuzz targets in `fuzz/`.
//!
//! Each target is one line calling a function here, so the same logic is exercised by the
//! normal test build (the kept corpus is replayed by a stable test).

/// Decodes arbitrary bytes as a client frame and as a server frame; must never panic, and a
/// successful decode must re-encode to a frame that decodes to the same value.
pub fn wire_decode(data: &[u8]) {
    use crate::wire::{decode_client, decode_server, encode_client, encode_server};
    if let Ok(msg) = decode_client(data) {
        let again = decode_client(encode_client(&msg).as_bytes());
        assert_eq!(again.as_ref(), Ok(&msg), "client message does not round-trip");
    }
    if let Ok(msg) = decode_server(data) {
        let again = decode_server(encode_server(&msg).as_bytes());
        assert_eq!(again.as_ref(), Ok(&msg), "server message does not round-trip");
    }
}

/// Opens arbitrary bytes as a sealed peer frame, then seals them as a payload and checks that
/// the genuine frame opens to the same bytes; must never panic.
pub fn seal_open(data: &[u8]) {
    use crate::seal::{Opener, SealConfig, Sealer};
    use crate::wire::{PeerId, SessionKey};
    use crate::{Instant, Rng};
    let Ok(sender) = PeerId::new("fuzz") else { return };
    let key = SessionKey { epoch: 1, key: [7; 32] };
    let mut opener = Opener::new(Instant::ZERO, sender.clone(), &key, SealConfig::default());
    let _ = opener.open(Instant::ZERO, data);
    let mut sealer = Sealer::new(sender, &key, &mut Rng::from_seed(0), SealConfig::default());
    if let Ok(frame) = sealer.seal(data) {
        let opened = opener.open(Instant::from_millis(1), &frame);
        assert_eq!(opened.as_deref(), Ok(data), "a genuine frame does not open");
    }
}

/// Frames, classifies and routes arbitrary bytes as a map-server stream. The first byte picks the
/// version, obfuscation and policy, the second the router inputs and how the bytes are split.
/// Checks: nothing panics; every peer event is valid and re-decodes; the split does not change
/// the verdicts; the reference server decoder reads exactly the server-routed packets, in order,
/// up to a desync, after which the input passes untouched.
pub fn packet_stream(data: &[u8]) {
    use crate::packet::{Obfuscation, PacketVersion, PeerEvent, ServerDecoder};
    use crate::route::{Choice, Policy, RouteContext};
    use crate::route::{GameStream, Verdict};

    let (&[config, router], stream_bytes) = data.split_at(data.len().min(2)) else { return };
    let version = PacketVersion::REFERENCE[usize::from(config & 3)];
    let obfuscation = if config & 4 != 0 { Obfuscation::On } else { Obfuscation::Off };
    let choice = |bits: u8| {
        [Choice::Mirror, Choice::Peers, Choice::Server, Choice::Mirror][usize::from(bits & 3)]
    };
    let policy = Policy {
        movement: choice(config >> 3),
        chat: choice(config >> 5),
        emote: choice(config >> 7),
    };
    let ctx = if router & 0x80 != 0 {
        RouteContext {
            p2p_enabled: router & 1 != 0,
            zone_enabled: router & 2 != 0,
            joined: router & 4 != 0,
            peers_ready: router & 8 != 0,
            all_members_linked: router & 16 != 0,
        }
    } else {
        RouteContext::ALL_READY
    };
    let split = usize::from(router >> 4 & 7) + 1;

    // (offset, id, len, route, encoded event, server bytes); pass-through merged into desync.
    type Seen = (u64, u16, usize, &'static str, Vec<u8>, Vec<u8>);
    let collect = |chunk_len: usize| {
        let mut seen: Vec<Seen> = Vec::new();
        let mut stream = GameStream::new(version, obfuscation);
        for chunk in stream_bytes.chunks(chunk_len.max(1)) {
            stream.feed(chunk, &policy, &ctx, |v| match v {
                Verdict::Packet(p) => {
                    let mut event = Vec::new();
                    if let Some(e) = p.route.to_peers() {
                        let ev = e.event();
                        ev.encode(&mut event);
                        assert_eq!(
                            PeerEvent::decode(&event),
                            Ok(ev),
                            "peer event does not round-trip"
                        );
                        assert!(ctx.peers_usable(), "peers used while not usable");
                        assert_ne!(
                            policy.choice(e.category()),
                            Choice::Server,
                            "policy said server"
                        );
                    }
                    seen.push((
                        p.offset,
                        p.spec.id(),
                        p.len,
                        p.route.as_str(),
                        event,
                        p.server_bytes.to_vec(),
                    ));
                }
                Verdict::Desync { offset, bytes, .. } => {
                    seen.push((offset, 0, bytes.len(), "desync", Vec::new(), bytes.to_vec()));
                }
                Verdict::PassThrough { bytes, .. } => {
                    if let Some(last) = seen.last_mut() {
                        last.2 += bytes.len();
                        last.5.extend_from_slice(bytes);
                    }
                }
            });
        }
        seen
    };
    let whole = collect(stream_bytes.len());
    assert_eq!(whole, collect(split), "verdicts depend on the split");

    let mut decoder = ServerDecoder::new(version, obfuscation);
    let mut expected = Vec::new();
    for (offset, id, _, route, _, server) in &whole {
        match *route {
            "desync" => {
                let tail = usize::try_from(*offset).ok().and_then(|o| stream_bytes.get(o..));
                assert_eq!(Some(server.as_slice()), tail, "desync bytes were altered");
            }
            "peers" => assert!(server.is_empty(), "peers-only packet sent to the server"),
            _ => {
                decoder.push(server);
                let mut plain = server.clone();
                if let Some(head) = plain.get_mut(..2) {
                    head.copy_from_slice(&id.to_le_bytes());
                }
                expected.push((*id, plain));
            }
        }
    }
    let (got, err) = decoder.drain();
    assert_eq!(err, None, "the server would disconnect");
    let got: Vec<_> = got.into_iter().map(|p| (p.id, p.bytes)).collect();
    assert_eq!(got, expected, "the server reads other packets than were routed to it");
}

/// Parses arbitrary bytes as public chat text and as a peer event. Checks: nothing panics; an
/// accepted text round-trips through the peer event codec; a decoded event re-encodes to the
/// same bytes and passes validation.
pub fn chat_parse(data: &[u8]) {
    use crate::packet::PeerEvent;
    use crate::packet::chat::{check_public_text, public_chat_text};

    if check_public_text(data, None).is_ok() {
        let ev = PeerEvent::Chat { text: data };
        let mut out = Vec::new();
        ev.encode(&mut out);
        assert_eq!(PeerEvent::decode(&out), Ok(ev), "accepted chat does not round-trip");
    }
    for nul in [false, true] {
        if let Ok(text) = public_chat_text(data, nul, None) {
            assert_eq!(check_public_text(text, None), Ok(()), "extracted text fails the rules");
        }
    }
    if let Ok(ev) = PeerEvent::decode(data) {
        let mut out = Vec::new();
        ev.encode(&mut out);
        assert_eq!(out, data, "decoded event re-encodes differently");
        assert_eq!(ev.validate(), Ok(()), "decoded event is invalid");
    }
}
/// Drives a coordinator with a script of connections, frames and time jumps taken from `data`
/// (one step per `\n`-separated line); must never panic, and the caps and the one-seat-per-
/// identity rule must hold after every step.
pub fn coordinator_frames(data: &[u8]) {
    use crate::SansIo;
    use crate::coordinator::{Config, ConnId, Coordinator, Identity, Input, RateLimit};
    use crate::wire::PeerId;

    let config = Config {
        max_sessions_per_zone: 2,
        max_players_per_session: 3,
        grace_seats_max: 3,
        grace_seats_per_origin_max: 2,
        rate_limit: RateLimit { per_s: 5, burst: 10, strikes_max: 6 },
        ..Config::default()
    };
    let (max_sessions, max_players, max_grace) =
        (config.max_sessions_per_zone, config.max_players_per_session, config.grace_seats_max);
    let mut c = Coordinator::new(config, crate::Rng::from_seed(data.len() as u64));
    let mut now = crate::Instant::ZERO;
    for line in data.split(|b| *b == b'\n').take(256) {
        let (op, rest) = line.split_first().map_or((0, &[][..]), |(op, rest)| (*op, rest));
        let arg = rest.first().copied().unwrap_or(0);
        let conn = ConnId(u64::from(arg % 4));
        let input = match op {
            0 => Input::Connected {
                conn,
                identity: match PeerId::new(format!("p{}", conn.0)) {
                    Ok(p) => Identity::Account(p),
                    Err(_) => Identity::Anonymous,
                },
                ice_servers: Vec::new(),
                origin: None,
            },
            1 => Input::Connected {
                conn,
                identity: Identity::Anonymous,
                ice_servers: Vec::new(),
                // Two addresses, so the per-address bound on seats in grace is reached.
                origin: Some(std::net::IpAddr::from([127, 0, 0, arg / 4 % 2])),
            },
            2 => Input::Disconnected { conn },
            3 => {
                now = now.add_millis(u64::from(arg) * 1_000);
                c.handle_timeout(now);
                c.drain_outputs();
                continue;
            }
            4 => Input::Shutdown,
            5 => Input::Binary { conn },
            6 => Input::Control { conn },
            // A burst of frames in the same millisecond, to reach the rate limit.
            7 => {
                for _ in 0..u32::from(arg / 4 % 32) {
                    c.handle_input(now, Input::Control { conn });
                    c.drain_outputs();
                }
                continue;
            }
            _ => Input::Frame { conn: ConnId(u64::from(op % 4)), bytes: rest.to_vec() },
        };
        c.handle_input(now, input);
        c.drain_outputs();
        let sessions = c.sessions();
        let mut seated = std::collections::BTreeSet::new();
        for s in &sessions {
            assert!(!s.members.is_empty() && s.members.len() <= max_players, "{s:?}");
            assert!(s.members.iter().all(|m| seated.insert(m.clone())), "a peer seated twice");
        }
        let stats = c.stats();
        for n in stats.sessions_per_zone.values() {
            assert!(*n <= max_sessions);
        }
        assert!(stats.seats_in_grace <= max_grace, "{} seats in grace", stats.seats_in_grace);
    }
}

/// Feeds arbitrary bytes to a joined client as coordinator frames (split at `\n`), interleaved
/// with timeouts; must never panic, and a client that is not joined never allows peers.
pub fn client_frames(data: &[u8]) {
    use crate::client::{Client, Config, Input, Lifecycle};
    use crate::sansio::SansIo;
    use crate::wire::{ServerMessage, SessionId, SessionKey, encode_server};
    let (Ok(zone), Ok(me), Ok(sid)) =
        (crate::wire::Zone::new("prontera"), crate::wire::PeerId::new("me"), SessionId::new("s"))
    else {
        return;
    };
    let config =
        Config { p2p_enabled_zones: [zone.clone()].into_iter().collect(), ..Config::default() };
    let mut now = crate::Instant::ZERO;
    let mut client = Client::new(config, crate::Rng::from_seed(0), now);
    let welcome = ServerMessage::Welcome {
        peer_id: me,
        protocol: 1,
        server: String::new(),
        heartbeat_interval_ms: 1_000,
        idle_timeout_ms: 3_000,
    };
    let joined = ServerMessage::SessionJoined {
        session_id: sid,
        zone: zone.clone(),
        peers: vec![],
        host: None,
        ice_servers: vec![],
        key: SessionKey { epoch: 1, key: [0; 32] },
        resumed: false,
    };
    let script = [
        Input::ZoneChanged(zone),
        Input::TransportOpened,
        Input::Frame(encode_server(&welcome).into_bytes()),
        Input::Frame(encode_server(&joined).into_bytes()),
    ];
    for input in script {
        client.handle_input(now, input);
    }
    for chunk in data.split(|b| *b == b'\n') {
        client.handle_input(now, Input::Frame(chunk.to_vec()));
        client.drain_outputs();
        if chunk.first() == Some(&b'T') {
            now = now.add_millis(1_000);
            client.handle_timeout(now);
            client.drain_outputs();
        }
        let inputs = client.route_inputs();
        assert!(
            client.lifecycle() == Lifecycle::Joined || !inputs.allows_peers(),
            "peers allowed while not joined"
        );
    }
}

/// Drives the receive path with arbitrary server bytes, peer events and local echoes. The first
/// byte picks the version and walk form; then records of `[op, len, bytes..]`: op & 3 = 0 server
/// bytes, 1 a peer event from account `op >> 2` (if it decodes), 2 a local echo, 3 time passes.
/// Checks: nothing panics; until the server stream desyncs, what the game receives frames into
/// whole packets of the version's ZC table (every rendered packet is well-formed).
pub fn render_stream(data: &[u8]) {
    use crate::packet::{PacketVersion, PeerEvent};
    use crate::render::{ReceiveStream, RenderConfig, WalkForm, ZcFrame, ZcFramer};

    let Some((&config, mut rest)) = data.split_first() else { return };
    let version = PacketVersion::REFERENCE[usize::from(config & 3)];
    let mut settings = RenderConfig::new(version);
    if config & 4 != 0 {
        settings.walk_form = WalkForm::Minimal;
    }
    settings.require_known_unit = config & 8 == 0;
    let mut stream = ReceiveStream::with_config(settings);
    let mut now = 0u64;
    let mut game = Vec::new();
    while let [op, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (bytes, next) = tail.split_at(n);
        rest = next;
        let at = crate::Instant::from_millis(now);
        match op & 3 {
            0 => stream.push_server(at, bytes),
            1 => {
                if let Ok(event) = PeerEvent::decode(bytes) {
                    let _ = stream.push_peer_event(at, u32::from(op >> 2), &event);
                }
            }
            2 => {
                if let Ok(event) = PeerEvent::decode(bytes) {
                    let _ = stream.push_local_echo(at, &event);
                }
            }
            _ => now += u64::from(*len) * 100,
        }
        stream.drain_into(&mut game);
    }
    if stream.desync_reason().is_none() {
        let mut framer = ZcFramer::new(version);
        framer.push(&game);
        while let Some(frame) = framer.next_frame() {
            assert!(
                matches!(frame, ZcFrame::Packet { .. }),
                "the game received an unframeable stream"
            );
        }
        assert!(framer.at_boundary(), "the game received a partial packet");
    }
}
