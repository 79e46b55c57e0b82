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
