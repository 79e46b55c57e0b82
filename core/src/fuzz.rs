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
    let config = Config { p2p_enabled_zones: vec![zone.clone()], ..Config::default() };
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

/// Drives a coordinator with a script of connections, frames and time jumps taken from `data`
/// (one step per `\n`-separated line); must never panic, and the caps and the one-seat-per-
/// identity rule must hold after every step.
pub fn coordinator_frames(data: &[u8]) {
    use crate::SansIo;
    use crate::coordinator::{Config, ConnId, Coordinator, Identity, Input};
    use crate::wire::PeerId;

    let config =
        Config { max_sessions_per_zone: 2, max_players_per_session: 3, ..Config::default() };
    let (max_sessions, max_players) =
        (config.max_sessions_per_zone, config.max_players_per_session);
    let mut c = Coordinator::new(config, crate::Rng::from_seed(data.len() as u64));
    let mut now = crate::Instant::ZERO;
    for line in data.split(|b| *b == b'\n').take(256) {
        let (op, rest) = line.split_first().map_or((0, &[][..]), |(op, rest)| (*op, rest));
        let conn = ConnId(u64::from(rest.first().copied().unwrap_or(0) % 4));
        let input = match op {
            0 => Input::Connected {
                conn,
                identity: match PeerId::new(format!("p{}", conn.0)) {
                    Ok(p) => Identity::Account(p),
                    Err(_) => Identity::Anonymous,
                },
                ice_servers: Vec::new(),
            },
            1 => Input::Connected { conn, identity: Identity::Anonymous, ice_servers: Vec::new() },
            2 => Input::Disconnected { conn },
            3 => {
                now = now.add_millis(u64::from(rest.first().copied().unwrap_or(0)) * 1_000);
                c.handle_timeout(now);
                c.drain_outputs();
                continue;
            }
            4 => Input::Shutdown,
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
        for (_, n) in c.stats().sessions_per_zone {
            assert!(n <= max_sessions);
        }
    }
}
