//! Floods a running coordinator the ways issue 18's hostile client did, one kind at a time, and
//! prints the coordinator's resident memory and open descriptors (from `/proc/<pid>`) before
//! and after each: a measuring tool, not a test (the behaviour is asserted by the hostile tests
//! in `adapters/tokio/tests/`).
//!
//! ```sh
//! cargo build --release -p ro-p2p-tokio --bin ro-p2p-coordinator --example hostile_floods
//! # authentication off (floods 2..7):
//! target/release/ro-p2p-coordinator --port 18301 & PID=$!
//! target/release/examples/hostile_floods --addr 127.0.0.1:18301 --pid $PID
//! # authentication on (flood 1, the auth deadline), with a config.yaml that sets it:
//! target/release/examples/hostile_floods --addr 127.0.0.1:18302 --pid $PID2 --auth
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

struct Args {
    addr: SocketAddr,
    pid: u32,
    auth: bool,
}

fn args() -> Args {
    let mut addr = None;
    let mut pid = None;
    let mut auth = false;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--addr" => addr = it.next().and_then(|v| v.parse().ok()),
            "--pid" => pid = it.next().and_then(|v| v.parse().ok()),
            "--auth" => auth = true,
            _ => {}
        }
    }
    match (addr, pid) {
        (Some(addr), Some(pid)) => Args { addr, pid, auth },
        _ => {
            eprintln!("usage: hostile_floods --addr HOST:PORT --pid PID [--auth]");
            std::process::exit(2);
        }
    }
}

/// The coordinator's resident memory (KiB) and open descriptors.
fn sample(pid: u32) -> (u64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0);
    (rss_kib, fds)
}

/// Lets the coordinator finish closing what the flood left (bounded wait for the descriptors
/// to come back to `fds_max`).
async fn settle(pid: u32, fds_max: usize) {
    for _ in 0..100 {
        if sample(pid).1 <= fds_max {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn ws(addr: SocketAddr) -> Option<Ws> {
    let url = format!("ws://{addr}/api/v1/signaling/ws");
    tokio_tungstenite::connect_async(url).await.ok().map(|(ws, _)| ws)
}

/// Reads until the server closes (bounded).
async fn drain(ws: &mut Ws) {
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(m)) = ws.next().await {
            if m.is_close() {
                break;
            }
        }
    })
    .await;
}

async fn joined(addr: SocketAddr, peer: &str, zone: &str) -> Option<Ws> {
    let mut ws = ws(addr).await?;
    let join = format!(r#"{{"type":"join","peer_id":"{peer}","zone":"{zone}"}}"#);
    ws.send(Message::text(join)).await.ok()?;
    while let Some(Ok(m)) = ws.next().await {
        if m.to_text().is_ok_and(|t| t.contains("session-joined")) {
            return Some(ws);
        }
    }
    None
}

async fn http(addr: SocketAddr, head: &str, body: &[u8]) {
    let Ok(mut s) = TcpStream::connect(addr).await else { return };
    let _ = s.write_all(head.as_bytes()).await;
    let _ = s.write_all(body).await;
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut sink)).await;
}

async fn measure<F: std::future::Future<Output = ()>>(pid: u32, name: &str, flood: F) {
    let (rss0, fds0) = sample(pid);
    let started = Instant::now();
    flood.await;
    settle(pid, fds0).await;
    let (rss1, fds1) = sample(pid);
    println!(
        "{name:<44} RSS {:>7.1} -> {:>7.1} MiB ({:+6.1})  fds {fds0:>4} -> {fds1:>4}  ({:.1} s)",
        rss0 as f64 / 1024.0,
        rss1 as f64 / 1024.0,
        (rss1 as f64 - rss0 as f64) / 1024.0,
        started.elapsed().as_secs_f64()
    );
}

#[tokio::main]
async fn main() {
    let Args { addr, pid, auth } = args();
    if auth {
        measure(pid, "1. 50 pre-auth clients pinging every 1.5 s", async {
            let mut tasks = Vec::new();
            for _ in 0..50 {
                tasks.push(tokio::spawn(async move {
                    let Some(mut ws) = ws(addr).await else { return };
                    let mut tick = tokio::time::interval(Duration::from_millis(1500));
                    let until = Instant::now() + Duration::from_secs(12);
                    while Instant::now() < until {
                        tokio::select! {
                            _ = tick.tick() => {
                                if ws.send(Message::Ping(vec![1].into())).await.is_err() { break }
                            }
                            m = ws.next() => if !matches!(m, Some(Ok(_))) { break },
                        }
                    }
                }));
            }
            for t in tasks {
                let _ = t.await;
            }
        })
        .await;
        return;
    }

    measure(pid, "2. 20 clients x 600 binary frames", async {
        for _ in 0..20 {
            let Some(mut ws) = ws(addr).await else { continue };
            for _ in 0..600 {
                let _ = ws.feed(Message::binary(vec![0u8; 64])).await;
            }
            let _ = ws.flush().await;
            drain(&mut ws).await;
        }
    })
    .await;

    measure(pid, "3. 200 clients x one text frame not UTF-8", async {
        for _ in 0..200 {
            let Some(mut ws) = ws(addr).await else { continue };
            let f = Frame::message(vec![b'{', 0xff, 0xfe], OpCode::Data(Data::Text), true);
            let _ = ws.send(Message::Frame(f)).await;
            drain(&mut ws).await;
        }
    })
    .await;

    measure(pid, "4. 200 closes (1000) + 200 unmasked frames", async {
        for _ in 0..200 {
            let Some(mut ws) = ws(addr).await else { continue };
            let _ = ws.close(None).await;
            drain(&mut ws).await;
        }
        for _ in 0..200 {
            let head = format!(
                "GET /api/v1/signaling/ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                 Sec-WebSocket-Version: 13\r\n\r\n"
            );
            http(addr, &head, &[0x81, 0x02, b'h', b'i']).await;
        }
    })
    .await;

    measure(pid, "5. 400 bad REST requests (413, 405, 400, 431)", async {
        for i in 0..100 {
            let big = format!(
                "POST /api/v1/sessions/join HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 10000000\r\n\r\n"
            );
            http(addr, &big, &vec![b' '; 64 * 1024 + 1]).await;
            let wrong = format!("DELETE /api/v1/health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
            http(addr, &wrong, b"").await;
            let path = format!("GET /api/v1/sessions/%ff%fe{i} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
            http(addr, &path, b"").await;
            let huge = "x".repeat(40 * 1024);
            let head = format!("GET /api/v1/health HTTP/1.1\r\nHost: {addr}\r\nX-Big: {huge}\r\nConnection: close\r\n\r\n");
            http(addr, &head, b"").await;
        }
    })
    .await;

    measure(pid, "6. 8 members never reading, ~200 x 32 KiB each", async {
        let mut stuck = Vec::new();
        for i in 0..8 {
            if let Some(ws) = joined(addr, &format!("stuck{i}"), "slow").await {
                stuck.push(ws);
            }
        }
        let sdp = "a".repeat(32 * 1024);
        // 1568 offers from 16 senders, each within its burst of 100 with its join and ping (the rate
        // limit).
        let mut talkers = Vec::new();
        for s in 0..16 {
            let Some(mut talker) = joined(addr, &format!("talker{s}"), "slow").await else {
                continue;
            };
            for n in 0..98 {
                let to = format!("stuck{}", n % 8);
                let offer = format!(r#"{{"type":"offer","to":"{to}","sdp":"{sdp}"}}"#);
                if talker.send(Message::text(offer)).await.is_err() {
                    break;
                }
            }
            talkers.push(talker);
        }
        // A ping answered on every sender: the coordinator has handled all their offers.
        for t in &mut talkers {
            let _ = t.send(Message::text(r#"{"type":"ping","nonce":1}"#)).await;
            while let Some(Ok(m)) = t.next().await {
                if m.to_text().is_ok_and(|x| x.contains("pong")) {
                    break;
                }
            }
        }
        let (rss, _) = sample(pid);
        println!("   (with the 8 still connected: RSS {:.1} MiB)", rss as f64 / 1024.0);
        drop(stuck);
        drop(talkers);
    })
    .await;

    measure(pid, "7. 1000 connect-join-close cycles, 1000 zones", async {
        for i in 0..1000 {
            if let Some(mut ws) = joined(addr, &format!("cyc{i}"), &format!("z{i}")).await {
                let _ = ws.close(None).await;
                drain(&mut ws).await;
            }
        }
    })
    .await;
    let metrics = {
        let Ok(mut s) = TcpStream::connect(addr).await else { return };
        let req = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        let _ = s.write_all(req.as_bytes()).await;
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw).await;
        String::from_utf8_lossy(&raw).into_owned()
    };
    let grace = metrics.lines().find(|l| l.starts_with("ro_p2p_seats_in_grace "));
    println!("   /metrics: {} bytes; {}", metrics.len(), grace.unwrap_or("?"));
}
