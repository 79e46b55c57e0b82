//! What the drop-in DLL's hooks cost the game: the stand-in game client
//! (`tests/windows/game_client.c`, mode `no-peers,bench=N`) runs under wine against scripted
//! login, char and map servers twice, once unhooked (no `p2p_config.json` in its folder: the
//! DLL is loaded but installs no hook) and once hooked (the configuration present, the
//! coordinator in-process, the player alone in its zone, so every map packet goes through the
//! batteries layer and on to the server). On the map server it sends N keep-alives
//! (`CZ_REQUEST_TIME`), each answered by `ZC_NOTIFY_TIME`, and times each `send`, each `recv`
//! that returned data and each `recv` that would block. Prints p50/p99 per call for both runs
//! and the process's threads and memory.
//!
//! ```sh
//! cargo run -p ro-p2p-ffi --example hook_overhead_under_wine -- [--rounds 2000] [--bits 32|64] [--debug]
//! ```
//! Needs what the wine tests need (MinGW, wine, wine32:i386 for 32-bit; see docs/dll.md). The
//! DLL is built with `--release` unless `--debug`.

#[path = "../tests/wine_support/mod.rs"]
mod wine_support;

use std::io::{Read, Write};
use std::net::{SocketAddrV4, TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use wine_support::{TARGETS, Target, build_dll_profile, compile, folder_with_dll, wine_command};

const AID: u32 = 2_000_001;

fn listen() -> (TcpListener, SocketAddrV4) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let std::net::SocketAddr::V4(a) = l.local_addr().expect("local address") else {
        unreachable!("bound to IPv4")
    };
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

/// The lengths of what the stand-in client sends on the map server (its `no-peers,bench` run).
fn cz_len(buf: &[u8]) -> Option<usize> {
    let id = u16::from_le_bytes([*buf.first()?, *buf.get(1)?]);
    match id {
        0x0436 => Some(23),
        0x035F => Some(5),
        0x00BF => Some(3),
        0x0090 => Some(7),
        0x0360 => Some(6),
        0x00F3 => Some(usize::from(u16::from_le_bytes([*buf.get(2)?, *buf.get(3)?]))),
        other => panic!("the bench map server got an unexpected packet {other:#06X}"),
    }
}

/// Scripted login, char and map servers; the map server answers each keep-alive.
fn start_servers() -> SocketAddrV4 {
    let (login_l, login) = listen();
    let (char_l, char_at) = listen();
    let (map_l, map_at) = listen();
    serve(login_l, move |mut c| {
        let mut req = [0u8; 55];
        if c.read_exact(&mut req).is_err() {
            return;
        }
        let mut p = vec![0u8; 64 + 160];
        let len = p.len() as u16;
        p[0..2].copy_from_slice(&0x0AC4u16.to_le_bytes());
        p[2..4].copy_from_slice(&len.to_le_bytes());
        p[4..8].copy_from_slice(&7u32.to_le_bytes());
        p[8..12].copy_from_slice(&AID.to_le_bytes());
        p[47..63].copy_from_slice(b"0123456789abcdef");
        p[64..68].copy_from_slice(&char_at.ip().octets());
        p[68..70].copy_from_slice(&char_at.port().to_le_bytes());
        let _ = c.write_all(&p);
        let _ = c.read(&mut [0u8; 1]);
    });
    serve(char_l, move |mut c| {
        let mut enter = [0u8; 17];
        if c.read_exact(&mut enter).is_err() {
            return;
        }
        let _ = c.write_all(&AID.to_le_bytes());
        let mut pick = [0u8; 3];
        if c.read_exact(&mut pick).is_err() {
            return;
        }
        let mut p = vec![0u8; 156];
        p[0..2].copy_from_slice(&0x0AC5u16.to_le_bytes());
        p[2..6].copy_from_slice(&150_001u32.to_le_bytes());
        p[6..18].copy_from_slice(b"prontera.gat");
        p[22..26].copy_from_slice(&map_at.ip().octets());
        p[26..28].copy_from_slice(&map_at.port().to_le_bytes());
        let _ = c.write_all(&p);
        let _ = c.read(&mut [0u8; 1]);
    });
    serve(map_l, move |mut c| {
        let _ = c.set_nodelay(true);
        let mut welcome = vec![0x83, 0x02];
        welcome.extend_from_slice(&AID.to_le_bytes());
        let _ = c.write_all(&welcome);
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = match c.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            buf.extend_from_slice(&chunk[..n]);
            while let Some(len) = cz_len(&buf).filter(|&l| l <= buf.len()) {
                if buf.starts_with(&[0x60, 0x03]) {
                    let mut time = vec![0x7F, 0x00];
                    time.extend_from_slice(&buf[2..6]);
                    if c.write_all(&time).is_err() {
                        return;
                    }
                }
                buf.drain(..len);
            }
        }
    });
    login
}

/// The coordinator service on 127.0.0.1:0 on its own runtime; returns its URL and the runtime.
fn start_coordinator() -> (String, tokio::runtime::Runtime) {
    use ro_p2p_core::Rng;
    use ro_p2p_tokio::server::{ManualWallClock, ServerConfig, Service};
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let listener =
        runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("coordinator port");
    let addr = listener.local_addr().expect("local address");
    let clock = Arc::new(ManualWallClock::new(1_800_000_000));
    let service = {
        let _entered = runtime.enter();
        Service::start(ServerConfig::default(), Rng::from_seed(17), clock).expect("coordinator")
    };
    runtime.spawn(service.serve(listener, std::future::pending(), Duration::from_secs(2)));
    (format!("ws://{addr}/api/v1/signaling/ws"), runtime)
}

/// One run of the client; returns its stdout.
fn run(target: Target, lib_dir: &Path, name: &str, config: Option<&str>, rounds: u32) -> String {
    let dir = folder_with_dll(target, lib_dir, name);
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/windows/game_client.c");
    compile(target, lib_dir, &source, &dir.join("game_client.exe"), &["-lws2_32"]);
    if let Some(config) = config {
        std::fs::write(dir.join("p2p_config.json"), config).expect("write the configuration");
    }
    let login = start_servers();
    let out = wine_command(target, &dir.join("game_client.exe"), &dir)
        .arg(login.port().to_string())
        .arg("alice")
        .arg("0")
        .arg(format!("no-peers,bench={rounds}"))
        .env("ROP2P_UDP_BIND_IP", "127.0.0.1")
        .output()
        .expect("wine runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && stdout.contains("stand-in client done"),
        "{name}: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1));
    let rounds: u32 = value("--rounds").map_or(2000, |r| r.parse().expect("--rounds N"));
    let bits: u32 = value("--bits").map_or(32, |b| b.parse().expect("--bits 32|64"));
    let release = !args.iter().any(|a| a == "--debug");
    let target = TARGETS.into_iter().find(|t| t.bits == bits).expect("--bits 32 or 64");
    let lib_dir = build_dll_profile(target, release);
    let (url, coordinator) = start_coordinator();
    let config = format!(
        "{{ \"coordinator\": {{ \"websocket_url\": \"{url}\", \"connection_timeout_ms\": 1000 }},\n  \"p2p\": {{ \"packet_version\": 20211103 }} }}\n"
    );
    println!(
        "hook overhead under wine, {bits}-bit DLL ({}), {rounds} keep-alives each",
        if release { "release" } else { "debug" }
    );
    for (name, config) in [("bench-unhooked", None), ("bench-hooked", Some(config.as_str()))] {
        let out = run(target, &lib_dir, name, config, rounds);
        println!("--- {name}");
        for line in out.lines().filter(|l| {
            l.starts_with("hooks installed") || l.starts_with("bench:") || l.starts_with("process:")
        }) {
            println!("{line}");
        }
    }
    drop(coordinator);
}
