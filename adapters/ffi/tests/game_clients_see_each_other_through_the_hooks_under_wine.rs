//! The drop-in DLL in a game process: two stand-in game clients (`tests/windows/game_client.c`,
//! 32-bit and 64-bit, with `ro_p2p_ffi.dll` in their import tables the way a NEMO/WARP patch
//! puts it there) run under wine through the login -> char -> map flow of PACKETVER 20211103
//! against scripted login, char and map servers in this test, with the coordinator service
//! in-process. The DLL's hooks find the map-server socket from the char server's reply and
//! start P2P; each client has its own map server, so the other player's walk, chat and emote
//! can only reach it over the peer link. Each map server must receive the client's bytes as the
//! game sent them (mirror policy), the NPC click and the `@` command included.
//!
//! Opt-in like the other wine tests (`ROP2P_WINE_TEST=1`; with it set, a missing tool fails
//! it): `ROP2P_WINE_TEST=1 cargo test -p ro-p2p-ffi --test
//! game_clients_see_each_other_through_the_hooks_under_wine -- --nocapture`.

mod wine_support;

use std::io::{Read, Write};
use std::net::{SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ro_p2p_core::packet::PacketVersion;
use ro_p2p_core::render::packets::{UNIT_AID_AT, UNIT_TYPE_AT, pack_pos_dir};
use ro_p2p_core::render::{Cell, UnitLayout};
use wine_support::{Target, build_dll, compile, folder_with_dll, targets, wine_command};

const ALICE: u32 = 2_000_001;
const BOB: u32 = 2_000_002;
/// The longest a client may run (each bounds its own waits to 60 s).
const RUN_BOUND: Duration = Duration::from_secs(150);

fn account_of(user: &[u8]) -> u32 {
    if user.starts_with(b"alice") { ALICE } else { BOB }
}

fn accept_login(aid: u32, char_server: SocketAddrV4) -> Vec<u8> {
    let mut p = vec![0u8; 64 + 160];
    let len = p.len() as u16;
    p[0..2].copy_from_slice(&0x0AC4u16.to_le_bytes());
    p[2..4].copy_from_slice(&len.to_le_bytes());
    p[4..8].copy_from_slice(&7u32.to_le_bytes());
    p[8..12].copy_from_slice(&aid.to_le_bytes());
    p[12..16].copy_from_slice(&8u32.to_le_bytes());
    p[47..63].copy_from_slice(b"0123456789abcdef");
    p[64..68].copy_from_slice(&char_server.ip().octets());
    p[68..70].copy_from_slice(&char_server.port().to_le_bytes());
    p[70..74].copy_from_slice(b"test");
    p
}

fn zonesvr(cid: u32, map: &str, to: SocketAddrV4) -> Vec<u8> {
    let mut p = vec![0u8; 156];
    p[0..2].copy_from_slice(&0x0AC5u16.to_le_bytes());
    p[2..6].copy_from_slice(&cid.to_le_bytes());
    p[6..6 + map.len()].copy_from_slice(map.as_bytes());
    p[22..26].copy_from_slice(&to.ip().octets());
    p[26..28].copy_from_slice(&to.port().to_le_bytes());
    p
}

/// `ZC_NPCACK_SERVERMOVE` (0x0AC7, 156 bytes): map name, cell, the other map server.
fn server_move(map: &str, x: u16, y: u16, to: SocketAddrV4) -> Vec<u8> {
    let mut p = vec![0u8; 156];
    p[0..2].copy_from_slice(&0x0AC7u16.to_le_bytes());
    p[2..2 + map.len()].copy_from_slice(map.as_bytes());
    p[18..20].copy_from_slice(&x.to_le_bytes());
    p[20..22].copy_from_slice(&y.to_le_bytes());
    p[22..26].copy_from_slice(&to.ip().octets());
    p[26..28].copy_from_slice(&to.port().to_le_bytes());
    p
}

/// What rAthena sends first on the map server, shortened: the player's account id, the
/// server time, and the other player standing nearby (so its actions can be drawn).
fn map_welcome(aid: u32, other: u32) -> Vec<u8> {
    let mut out = vec![0x83, 0x02];
    out.extend_from_slice(&aid.to_le_bytes());
    out.extend_from_slice(&[0x7F, 0x00]);
    out.extend_from_slice(&1_000u32.to_le_bytes());
    let l = UnitLayout::of(PacketVersion::V20211103).expect("drawable at 20211103");
    let mut idle = vec![0u8; l.idle_len];
    idle[0..2].copy_from_slice(&l.idle_id.to_le_bytes());
    idle[2..4].copy_from_slice(&(l.idle_len as u16).to_le_bytes());
    idle[UNIT_TYPE_AT] = 0;
    idle[UNIT_AID_AT..UNIT_AID_AT + 4].copy_from_slice(&other.to_le_bytes());
    idle[l.pos_at..l.pos_at + 3].copy_from_slice(&pack_pos_dir(Cell { x: 150, y: 170 }, 4));
    out.extend(idle);
    out
}

fn listen() -> (TcpListener, SocketAddrV4) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let std::net::SocketAddr::V4(a) = l.local_addr().unwrap() else { unreachable!() };
    (l, a)
}

fn serve(listener: TcpListener, per_connection: impl Fn(TcpStream) + Send + Sync + 'static) {
    let per_connection = Arc::new(per_connection);
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let f = Arc::clone(&per_connection);
            std::thread::spawn(move || f(conn));
        }
    });
}

/// What each map server received, by account.
type Received = Arc<Mutex<Vec<(u32, Vec<u8>)>>>;

/// What each map server received, by server name.
type ReceivedBy = Arc<Mutex<Vec<(&'static str, Vec<u8>)>>>;

/// The scripted servers.
struct Servers {
    login: SocketAddrV4,
    received: Received,
}

/// Scripted login and char servers; the char server sends each account to `map_of(aid)`.
/// Returns the login server's address.
fn start_login_and_char(
    map_of: impl Fn(u32) -> SocketAddrV4 + Send + Sync + 'static,
) -> SocketAddrV4 {
    let (login_l, login) = listen();
    let (char_l, char_at) = listen();
    serve(login_l, move |mut c| {
        let mut req = [0u8; 55];
        if c.read_exact(&mut req).is_err() {
            return;
        }
        let reply = accept_login(account_of(&req[6..30]), char_at);
        // In two writes: the hooks must hand the game whole replies only.
        let _ = c.write_all(&reply[..10]);
        let _ = c.flush();
        let _ = c.write_all(&reply[10..]);
        let _ = c.read(&mut [0u8; 1]);
    });
    serve(char_l, move |mut c| {
        let mut enter = [0u8; 17];
        if c.read_exact(&mut enter).is_err() {
            return;
        }
        let aid = u32::from_le_bytes(enter[2..6].try_into().unwrap());
        let _ = c.write_all(&aid.to_le_bytes());
        let mut pick = [0u8; 3];
        if c.read_exact(&mut pick).is_err() {
            return;
        }
        let _ = c.write_all(&zonesvr(150_000 + aid % 10, "prontera.gat", map_of(aid)));
        let _ = c.read(&mut [0u8; 1]);
    });
    login
}

fn start_servers() -> Servers {
    let (map_a_l, map_a) = listen();
    let (map_b_l, map_b) = listen();
    let login = start_login_and_char(move |aid| if aid == ALICE { map_a } else { map_b });
    let received: Received = Arc::default();
    for (l, aid, other) in [(map_a_l, ALICE, BOB), (map_b_l, BOB, ALICE)] {
        let received = Arc::clone(&received);
        serve(l, move |mut c| {
            let welcome = map_welcome(aid, other);
            let half = welcome.len() - 20;
            let _ = c.write_all(&welcome[..half]);
            let _ = c.flush();
            let _ = c.write_all(&welcome[half..]);
            let mut got = Vec::new();
            let _ = c.read_to_end(&mut got);
            received.lock().unwrap().push((aid, got));
        });
    }
    Servers { login, received }
}

/// The coordinator service on 127.0.0.1:0 on its own runtime; returns its URL and a stopper.
fn start_coordinator() -> (String, tokio::runtime::Runtime) {
    use ro_p2p_core::Rng;
    use ro_p2p_tokio::server::{ManualWallClock, ServerConfig, Service};
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    let clock = Arc::new(ManualWallClock::new(1_800_000_000));
    let service = {
        let _entered = runtime.enter();
        Service::start(ServerConfig::default(), Rng::from_seed(17), clock).unwrap()
    };
    runtime.spawn(service.serve(listener, std::future::pending(), Duration::from_secs(2)));
    (format!("ws://{addr}/api/v1/signaling/ws"), runtime)
}

/// The game folder of one player: the client, the DLL, the shim and `p2p_config.json`. With
/// `dinput` the client does not import the DLL: the folder holds it as `ro_p2p.dll` beside the
/// proxy `dinput.dll` of `loader/`, which the client loads by calling `DirectInputCreateA`.
fn game_folder(
    target: Target,
    lib_dir: &Path,
    tag: &str,
    user: &str,
    url: &str,
    dinput: bool,
) -> PathBuf {
    let dir = folder_with_dll(target, lib_dir, &format!("game-{tag}-{user}"));
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let source = crate_dir.join("tests/windows/game_client.c");
    let exe = dir.join("game_client.exe");
    if dinput {
        compile(target, lib_dir, &source, &exe, &["-DLOAD_BY_DINPUT", "-lws2_32", "-ldinput"]);
        std::fs::rename(dir.join("ro_p2p_ffi.dll"), dir.join("ro_p2p.dll")).unwrap();
        wine_support::run(
            std::process::Command::new(target.cc)
                .args(["-shared", "-O2", "-o"])
                .arg(dir.join("dinput.dll"))
                .arg(crate_dir.join("loader/dinput_proxy.c"))
                .arg(crate_dir.join("loader/dinput.def")),
        );
    } else {
        compile(target, lib_dir, &source, &exe, &["-lws2_32"]);
    }
    std::fs::write(
        dir.join("p2p_config.json"),
        format!(
            "{{ \"coordinator\": {{ \"websocket_url\": \"{url}\", \"reconnect_delay_ms\": 100, \"connection_timeout_ms\": 1000 }},\n  \"p2p\": {{ \"packet_version\": 20211103 }},\n  \"logging\": {{ \"level\": \"debug\" }} }}\n"
        ),
    )
    .unwrap();
    dir
}

/// `CZ_ENTER` as the stand-in client sends it.
fn cz_enter(aid: u32) -> Vec<u8> {
    let mut out = vec![0x36, 0x04];
    out.extend_from_slice(&aid.to_le_bytes());
    out.extend_from_slice(&(150_000 + aid % 10).to_le_bytes());
    out.extend_from_slice(&7u32.to_le_bytes());
    out.extend_from_slice(&[0; 9]);
    out
}

/// The bytes the stand-in client sends on the map server before any close.
fn expected_map_bytes(user: &str, aid: u32) -> Vec<u8> {
    let mut out = cz_enter(aid);
    out.extend_from_slice(&[
        0x5F,
        0x03,
        150 >> 2,
        ((150 & 3) << 6) | (180 >> 4),
        (180 & 0x0F) << 4,
    ]);
    let chat = |out: &mut Vec<u8>, text: String| {
        out.extend_from_slice(&[0xF3, 0x00]);
        out.extend_from_slice(&(4 + text.len() as u16).to_le_bytes());
        out.extend_from_slice(text.as_bytes());
    };
    chat(&mut out, format!("{user} : hello from {user}"));
    out.extend_from_slice(&[0xBF, 0x00, 2]);
    out.extend_from_slice(&[0x90, 0x00, 0x11, 0x22, 0x33, 0x44, 1]);
    chat(&mut out, format!("{user} : @where"));
    out
}

/// Runs the players `(user, other account, mode)` against the scripted servers and `url`;
/// returns each one's stdout and log after checking that it played to its end and that each
/// map server received what its game sent.
fn play(
    tag: &str,
    target: Target,
    lib_dir: &Path,
    url: &str,
    servers: &Servers,
    players: &[(&'static str, u32, &str)],
) -> Vec<(String, String)> {
    let outputs = run_players(tag, target, lib_dir, url, servers.login, players);
    // The map servers see the game's bytes as sent (mirror policy), NPC click and @ command
    // included; a packet the game cut off by closing is not sent on.
    let deadline = Instant::now() + Duration::from_secs(10);
    while servers.received.lock().unwrap().len() < players.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let received = std::mem::take(&mut *servers.received.lock().unwrap());
    for &(user, _, _) in players {
        let aid = account_of(user.as_bytes());
        let got = received.iter().find(|(a, _)| *a == aid).map(|(_, b)| b.clone());
        assert_eq!(got, Some(expected_map_bytes(user, aid)), "{user}'s map server");
    }
    outputs
}

/// Runs the players `(user, other account, mode)` against the login server `login` and the
/// coordinator `url`; returns each one's stdout and log after checking that it played to its
/// end.
fn run_players(
    tag: &str,
    target: Target,
    lib_dir: &Path,
    url: &str,
    login: SocketAddrV4,
    players: &[(&'static str, u32, &str)],
) -> Vec<(String, String)> {
    let mut children = Vec::new();
    for &(user, other, mode) in players {
        let dinput = mode.contains("dinput");
        let dir = game_folder(target, lib_dir, tag, user, url, dinput);
        let stdout = dir.join("stdout.txt");
        let mut cmd = wine_command(target, &dir.join("game_client.exe"), &dir);
        cmd.arg(login.port().to_string()).arg(user).arg(other.to_string());
        if !mode.is_empty() {
            cmd.arg(mode);
        }
        if dinput {
            // Wine prefers its builtin dinput.dll unless told otherwise.
            cmd.env("WINEDLLOVERRIDES", "bcryptprimitives=n;dinput=n,b");
        }
        let child = cmd
            .env("ROP2P_UDP_BIND_IP", "127.0.0.1")
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(dir.join("stderr.txt")).unwrap())
            .spawn()
            .expect("wine runs");
        children.push((user, dir, child));
    }
    let deadline = Instant::now() + RUN_BOUND;
    let mut outputs = Vec::new();
    for (user, dir, mut child) in children {
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let out = std::fs::read_to_string(dir.join("stdout.txt")).unwrap_or_default();
        let log = std::fs::read_to_string(dir.join("p2p_dll.log")).unwrap_or_default();
        println!("--- {user} ({}-bit):\n{out}", target.bits);
        let context =
            format!("{user} ({}-bit): {status:?}\n{out}\n--- p2p_dll.log:\n{log}", target.bits);
        assert!(status.is_some_and(|s| s.success()), "{context}");
        assert!(out.contains("hooks installed: 1"), "{context}");
        assert!(out.contains("stand-in client done"), "{context}");
        assert!(log.contains("[hook] hooks installed ("), "{context}");
        assert!(log.contains("the map server (prontera.gat)"), "{context}");
        outputs.push((out, log));
    }
    outputs
}

/// The longest hooked call the client measured, in microseconds.
fn max_call_us(stdout: &str) -> f64 {
    let at = stdout.find(", max ").expect("the client printed its call times") + 6;
    let rest = &stdout[at..];
    rest[..rest.find(' ').unwrap()].parse().unwrap()
}

/// Two players on two map servers: each sees the other's walk, chat and emote, which only the
/// peer link can have carried, and each map server still gets every byte its game sent. Under
/// wine the WebRTC sockets run on `ro_p2p_webrtc::FallbackUdpRuntime`'s plain datagrams (wine
/// 8 refuses quinn-udp's probe with WSAEOPNOTSUPP); the log says so.
#[test]
fn two_game_clients_see_each_others_walk_chat_and_emote_through_the_hooks_32_and_64_bit() {
    if !wine_support::enabled() {
        eprintln!("skipped: set ROP2P_WINE_TEST=1 to run stand-in game clients under wine");
        return;
    }
    for target in targets() {
        let lib_dir = build_dll(target);
        let (url, coordinator) = start_coordinator();
        let servers = start_servers();
        let players = [("alice", BOB, ""), ("bob", ALICE, "close-mid-packet")];
        for (out, log) in play("peers", target, &lib_dir, &url, &servers, &players) {
            assert!(out.contains("notice: [P2P] on"), "{out}");
            assert!(log.contains("event LinkUp"), "{log}");
            assert!(out.contains("saw the other player's walk, chat and emote"), "{out}");
        }
        drop(coordinator);
    }
}

/// The coordinator's port is closed from the start: the hooks still find the map server,
/// everything goes to it, and no hooked call waits for the coordinator (each returns well
/// within the 1 s connection timeout the configuration gives).
#[test]
fn a_game_client_plays_through_the_server_when_the_coordinator_is_down_from_the_start() {
    if !wine_support::enabled() {
        eprintln!("skipped: set ROP2P_WINE_TEST=1 to run stand-in game clients under wine");
        return;
    }
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let url = format!("ws://{closed}/api/v1/signaling/ws");
    for target in targets() {
        let lib_dir = build_dll(target);
        let servers = start_servers();
        let outputs =
            play("no-coordinator", target, &lib_dir, &url, &servers, &[("alice", BOB, "no-peers")]);
        let (out, log) = &outputs[0];
        assert!(log.contains("ConnectFailed"), "the coordinator was tried:\n{log}");
        assert!(!out.contains("[P2P] on"), "{out}");
        let max_us = max_call_us(out);
        assert!(max_us < 1_000_000.0, "a hooked call took {max_us} us:\n{out}");
    }
}

/// A map-server change and a reconnect: the first map server sends the player on to izlude on
/// another map server (`ZC_NPCACK_SERVERMOVE`, 0x0AC7); the game closes,
/// connects there and plays, then reconnects to that server and chats once more. The hooks
/// follow both new connections as the map server's (the log names izlude twice), every map
/// server gets exactly what the game sent it, and no hooked call stalls.
#[test]
fn the_hooks_follow_a_map_server_change_and_a_reconnect() {
    if !wine_support::enabled() {
        eprintln!("skipped: set ROP2P_WINE_TEST=1 to run stand-in game clients under wine");
        return;
    }
    let (url, coordinator) = start_coordinator();
    for target in targets() {
        let lib_dir = build_dll(target);
        let (first_l, first) = listen();
        let (izlude_l, izlude) = listen();
        let login = start_login_and_char(move |_| first);
        let received: ReceivedBy = Arc::default();
        for (l, name) in [(first_l, "first"), (izlude_l, "izlude")] {
            let received = Arc::clone(&received);
            serve(l, move |mut c| {
                // The first server only sends the player on (so the game acts on izlude only).
                if name == "first" {
                    let _ = c.write_all(&server_move("izlude.gat", 128, 146, izlude));
                } else {
                    let _ = c.write_all(&map_welcome(ALICE, BOB));
                }
                let mut got = Vec::new();
                let _ = c.read_to_end(&mut got);
                received.lock().unwrap().push((name, got));
            });
        }
        let outputs = run_players(
            "move",
            target,
            &lib_dir,
            &url,
            login,
            &[("alice", BOB, "no-peers,reconnect")],
        );
        let (out, log) = &outputs[0];
        assert!(out.contains("moved to izlude.gat"), "{out}");
        assert!(out.contains("reconnected to the map server and chatted"), "{out}");
        assert_eq!(log.matches("the map server (izlude.gat)").count(), 2, "{log}");
        let max_us = max_call_us(out);
        assert!(max_us < 1_000_000.0, "a hooked call took {max_us} us:\n{out}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while received.lock().unwrap().len() < 3 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let got = std::mem::take(&mut *received.lock().unwrap());
        let of = |name: &str| -> Vec<Vec<u8>> {
            got.iter().filter(|(n, _)| *n == name).map(|(_, b)| b.clone()).collect()
        };
        assert_eq!(of("first"), [cz_enter(ALICE)], "the first map server");
        let mut back = cz_enter(ALICE);
        let line = b"alice : back again";
        back.extend_from_slice(&[0xF3, 0x00]);
        back.extend_from_slice(&(4 + line.len() as u16).to_le_bytes());
        back.extend_from_slice(line);
        let mut izlude_got = of("izlude");
        izlude_got.sort_by_key(Vec::len);
        assert_eq!(izlude_got, [back, expected_map_bytes("alice", ALICE)], "izlude's map server");
    }
    drop(coordinator);
}

/// The loader for an unmodified executable: the client does not import the DLL; the proxy
/// `dinput.dll` in its folder (`loader/dinput_proxy.c`), loaded when the client calls
/// `DirectInputCreateA` as the RO client does at start, loads `ro_p2p.dll`, whose hooks then
/// follow login, char and map and pass everything to the map server (coordinator down).
#[test]
fn a_game_client_loaded_through_the_dinput_proxy_plays_through_the_hooks() {
    if !wine_support::enabled() {
        eprintln!("skipped: set ROP2P_WINE_TEST=1 to run stand-in game clients under wine");
        return;
    }
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let url = format!("ws://{closed}/api/v1/signaling/ws");
    for target in targets() {
        let lib_dir = build_dll(target);
        let servers = start_servers();
        let outputs =
            play("dinput", target, &lib_dir, &url, &servers, &[("alice", BOB, "no-peers,dinput")]);
        let (out, _) = &outputs[0];
        assert!(out.contains("DirectInputCreateA: ok"), "{out}");
    }
}
