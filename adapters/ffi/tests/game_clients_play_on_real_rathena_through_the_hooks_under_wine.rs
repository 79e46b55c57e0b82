//! The drop-in DLL against the real rAthena of the harness (`tools/rathena`, PACKETVER
//! 20211103, fast mode), under wine: the stand-in game client (`tests/windows/game_client.c`
//! in its `rathena` mode) registers an account, makes a character, selects it and enters
//! prontera through the DLL's hooks; its walk and chat reach the map server (rAthena answers
//! both) and rAthena does not disconnect it. Then two such clients link up over WebRTC, see
//! each other's walk, chat and emote, and are not disconnected either; their coordinator is in
//! authentication mode `rathena` (checking rAthena's `login` table), and each DLL presents the
//! account id and web auth token of the login reply its hooks followed
//! (`security.web_auth_token`), so no credential is configured anywhere.
//!
//! Opt-in like the other wine tests (`ROP2P_WINE_TEST=1`); without rAthena or MariaDB it is
//! skipped, except under `CI=true`, where it fails: `ROP2P_WINE_TEST=1 ROP2P_WINE_TARGETS=32
//! cargo test -p ro-p2p-ffi --test
//! game_clients_play_on_real_rathena_through_the_hooks_under_wine -- --nocapture`.

mod wine_support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ro_p2p_core::packet::PacketVersion;
use ro_p2p_core::render::{ZcLen, ZcTable};
use ro_p2p_rathena::harness::{HarnessConfig, Server, start_or_skip};
use wine_support::{Target, build_dll, compile, folder_with_dll, targets, wine_command};

/// The longest a client may run (each bounds its own waits to 60 s).
const RUN_BOUND: Duration = Duration::from_secs(150);

/// The coordinator service on 127.0.0.1:0 on its own runtime, authentication off or, with a
/// database URL, in mode `rathena`; returns its URL and the runtime.
fn start_coordinator(rathena_db: Option<String>) -> (String, tokio::runtime::Runtime) {
    use ro_p2p_core::Rng;
    use ro_p2p_core::config::RathenaAuthSettings;
    use ro_p2p_tokio::server::{ManualWallClock, ServerConfig, Service};
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    let clock = Arc::new(ManualWallClock::new(1_800_000_000));
    let service = {
        let _entered = runtime.enter();
        let config = match rathena_db {
            None => ServerConfig::default(),
            Some(url) => ServerConfig {
                require_authentication: true,
                rathena_auth: Some(RathenaAuthSettings::new(url)),
                ..ServerConfig::default()
            },
        };
        Service::start(config, Rng::from_seed(17), clock).unwrap()
    };
    runtime.spawn(service.serve(listener, std::future::pending(), Duration::from_secs(2)));
    (format!("ws://{addr}/api/v1/signaling/ws"), runtime)
}

/// The game folder of one player: the client, the DLL, `p2p_config.json` (presenting the web
/// auth token when `web_auth`) and the map server's packet lengths at 20211103 (from the
/// core's table) for the client's framing.
fn game_folder(target: Target, lib_dir: &Path, user: &str, url: &str, web_auth: bool) -> PathBuf {
    let dir = folder_with_dll(target, lib_dir, &format!("rathena-{user}"));
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/windows/game_client.c");
    compile(target, lib_dir, &source, &dir.join("game_client.exe"), &["-lws2_32"]);
    std::fs::write(
        dir.join("p2p_config.json"),
        format!(
            "{{ \"coordinator\": {{ \"websocket_url\": \"{url}\", \"reconnect_delay_ms\": 100, \"connection_timeout_ms\": 1000 }},\n  \"p2p\": {{ \"packet_version\": 20211103 }},\n  \"security\": {{ \"web_auth_token\": {web_auth} }},\n  \"logging\": {{ \"level\": \"debug\" }} }}\n"
        ),
    )
    .unwrap();
    let mut lengths = String::new();
    for (id, len) in ZcTable::of(PacketVersion::V20211103).iter() {
        let len = match len {
            ZcLen::Fixed(n) => i32::from(n),
            ZcLen::Variable => -1,
        };
        lengths.push_str(&format!("{id:04X} {len}\n"));
    }
    std::fs::write(dir.join("zc_lengths.txt"), lengths).unwrap();
    dir
}

/// Runs the clients `(user, mode)` against the login server at `login`; returns each one's
/// stdout and DLL log after checking that it played to its end.
fn play(
    target: Target,
    lib_dir: &Path,
    url: &str,
    login: SocketAddr,
    players: &[(&str, &str)],
    web_auth: bool,
) -> Vec<(String, String)> {
    let mut children = Vec::new();
    for &(user, mode) in players {
        let dir = game_folder(target, lib_dir, user, url, web_auth);
        let mut cmd = wine_command(target, &dir.join("game_client.exe"), &dir);
        cmd.arg(login.port().to_string()).arg(user).arg("0").arg(mode);
        let child = cmd
            .env("ROP2P_UDP_BIND_IP", "127.0.0.1")
            .stdout(std::fs::File::create(dir.join("stdout.txt")).unwrap())
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
        assert!(out.contains("entered the map"), "{context}");
        assert!(out.contains("the server answered the walk and the chat"), "{context}");
        assert!(out.contains("stand-in client done"), "{context}");
        assert!(log.contains("the map server (prontera.gat)"), "{context}");
        outputs.push((out, log));
    }
    outputs
}

#[test]
fn stand_in_game_clients_play_on_real_rathena_through_the_hooks() {
    if !wine_support::enabled() {
        eprintln!("skipped: set ROP2P_WINE_TEST=1 to run stand-in game clients under wine");
        return;
    }
    let Some(mut harness) = start_or_skip(HarnessConfig::new(20211103)) else { return };
    let login = harness.login_addr();
    let (url, coordinator) = start_coordinator(None);
    let (rathena_url, rathena_coordinator) = start_coordinator(Some(harness.db_url()));
    for target in targets() {
        let lib_dir = build_dll(target);
        let tag = |u: &str| format!("{u}{}", target.bits);
        // One player alone: login, char creation and select, map enter, walk and chat answered.
        let dave = tag("dave");
        play(target, &lib_dir, &url, login, &[(&dave, "rathena,no-peers")], false);
        harness.check_alive().unwrap();
        // Two players: P2P on for both, each sees the other's walk, chat and emote.
        let (alice, carol) = (tag("alice"), tag("carol"));
        let players = [(alice.as_str(), "rathena"), (carol.as_str(), "rathena")];
        let outputs = play(target, &lib_dir, &rathena_url, login, &players, true);
        for (out, log) in outputs {
            // Admitted by rAthena's own database under the account of the login reply.
            let aid = out
                .lines()
                .find_map(|l| l.strip_prefix("logged in: account "))
                .and_then(|l| l.split(',').next())
                .expect("the client printed its account");
            assert!(log.contains(&format!("account {aid}'s web auth token")), "{log}");
            assert!(log.contains(&format!("as {aid}\n")), "welcomed under the account: {log}");
            assert!(out.contains("notice: [P2P] on"), "{out}");
            assert!(out.contains("saw the other player's walk, chat and emote"), "{out}");
            assert!(log.contains("event LinkUp"), "{log}");
        }
        harness.check_alive().unwrap();
    }
    // rAthena dropped no one for what it received.
    for needle in ["unsupported packet", "incorrect name", "Forcing a relog", "kicked"] {
        assert!(
            !harness.log_contains(Server::Map, needle),
            "map server log has {needle:?}:\n{}",
            harness.log_tail(Server::Map, 40)
        );
    }
    drop(coordinator);
    drop(rathena_coordinator);
    harness.stop().unwrap();
}
