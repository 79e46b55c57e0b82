//! The hosts around the clients: the real coordinator service on turmoil's listener, the stub
//! rAthena map server, the relay (TURN stand-in) and an observer polling the coordinator's
//! REST API.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use ro_p2p_core::Rng;
use ro_p2p_core::packet::{Obfuscation, ServerDecoder};
use ro_p2p_tokio::server::{ManualWallClock, ServerConfig, Service};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::address::{COORDINATOR_PORT, MAP_PORT, PEER_PORT, RELAY_PORT};
use crate::plan::Plan;
use crate::record::{SessionRow, SessionSnapshot, Shared, What};

/// turmoil's listener as an axum listener (the orphan rule needs the newtype).
pub struct SimListener(pub turmoil::net::TcpListener);

impl axum::serve::Listener for SimListener {
    type Io = turmoil::net::TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok(conn) => return conn,
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// The coordinator's settings in the simulation: short timers so a run of seconds exercises
/// heartbeats, seat grace, session expiry and key rotation.
pub fn coordinator_config() -> ServerConfig {
    let mut config = ServerConfig::default();
    config.core.heartbeat_interval_ms = 1_000;
    config.core.idle_timeout_ms = 3_000;
    config.core.session_timeout_s = 5;
    config.core.key_rotation_interval_s = 10;
    config.core.max_players_per_session = 8;
    config.core.max_sessions_per_zone = 8;
    // Generous enough for 16 clients' signaling bursts after a restart.
    config.core.rate_limit.per_s = 200;
    config.core.rate_limit.burst = 400;
    config.core.host_requirements.min_cpu_cores = 4;
    config
}

/// Runs one incarnation of the coordinator host.
pub async fn coordinator(
    recorder: Shared,
    seed: u64,
    incarnation: Rc<Cell<u64>>,
) -> turmoil::Result {
    let n = incarnation.get() + 1;
    incarnation.set(n);
    recorder.borrow_mut().push("coordinator", What::Started { incarnation: n });
    let rng = Rng::from_seed(seed ^ 0xC00D_u64.wrapping_mul(n));
    let clock = Arc::new(ManualWallClock::new(1_800_000_000));
    let service = Service::start(coordinator_config(), rng, clock)?;
    let listener = turmoil::net::TcpListener::bind(("0.0.0.0", COORDINATOR_PORT)).await?;
    service.serve(SimListener(listener), std::future::pending(), Duration::from_secs(1)).await?;
    Ok(())
}

/// The stub map server: accepts game connections, decodes each with rAthena's rules and
/// records every packet per connection. It shows each game its account id, then every
/// [`crate::game::VIEW_INTERVAL_MS`] the server tick and the other players on its map (see
/// [`crate::game`]).
pub async fn map_server(recorder: Shared, plan: Arc<Plan>) -> turmoil::Result {
    let listener = turmoil::net::TcpListener::bind(("0.0.0.0", MAP_PORT)).await?;
    let version = plan.packet_version();
    let obfuscation = if plan.obfuscated { Obfuscation::On } else { Obfuscation::Off };
    loop {
        let (stream, addr) = listener.accept().await?;
        let host = turmoil::reverse_lookup(addr.ip()).unwrap_or_else(|| addr.ip().to_string());
        let key = format!("{host}:{}", addr.port());
        let (mut stream, mut to_game) = stream.into_split();
        let viewer = recorder.clone();
        tokio::task::spawn_local(async move {
            let Some(aid) = crate::game::account_of(&host) else { return };
            if to_game.write_all(&crate::game::hello(version, aid)).await.is_err() {
                return;
            }
            loop {
                let view = {
                    let r = viewer.borrow();
                    let map = r.player_zones.get(&host).cloned().unwrap_or_default();
                    crate::game::view_packets(version, r.now_ms, &host, &map, r.player_zones.iter())
                };
                if to_game.write_all(&view).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(crate::game::VIEW_INTERVAL_MS)).await;
            }
        });
        let recorder = recorder.clone();
        tokio::task::spawn_local(async move {
            let mut decoder = ServerDecoder::new(version, obfuscation);
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let n = match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                decoder.push(&buf[..n]);
                let (packets, err) = decoder.drain();
                let mut r = recorder.borrow_mut();
                let got = r.server_received.entry(key.clone()).or_default();
                got.extend(packets.into_iter().map(|p| p.bytes));
                if let Some(e) = err {
                    r.server_errors.insert(key.clone(), e.to_string());
                    break;
                }
            }
        });
    }
}

/// The relay: forwards a peer datagram to the client its header names.
pub async fn relay() -> turmoil::Result {
    let socket = turmoil::net::UdpSocket::bind(("0.0.0.0", RELAY_PORT)).await?;
    let mut buf = vec![0u8; 70_000];
    loop {
        let (n, _) = socket.recv_from(&mut buf).await?;
        let Some(to) = crate::peer::datagram_recipient(&buf[..n]) else { continue };
        let _ = socket.send_to(&buf[..n], (to.as_str(), PEER_PORT)).await;
    }
}

/// Polls `GET /api/v1/sessions/list` every second and records the coordinator's sessions. With
/// several coordinator hosts it asks each in turn (each answers for the whole world).
pub async fn observer(recorder: Shared, coordinators: Vec<String>) -> turmoil::Result {
    let mut round = 0usize;
    loop {
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        let host = coordinators.get(round % coordinators.len().max(1)).cloned();
        round += 1;
        let Some(host) = host else { continue };
        let fetched = tokio::time::timeout(Duration::from_millis(800), fetch_sessions(&host)).await;
        if let Ok(Some(sessions)) = fetched {
            let mut r = recorder.borrow_mut();
            let t_ms = r.now_ms;
            r.snapshots.push(SessionSnapshot { t_ms, sessions });
        }
    }
}

async fn fetch_sessions(host: &str) -> Option<BTreeMap<String, SessionRow>> {
    let mut s = turmoil::net::TcpStream::connect((host, COORDINATOR_PORT)).await.ok()?;
    s.write_all(
        b"GET /api/v1/sessions/list HTTP/1.1\r\nHost: coordinator\r\nConnection: close\r\n\r\n",
    )
    .await
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.ok()?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        dechunk(body)?
    } else {
        body.to_owned()
    };
    let value: serde_json::Value = serde_json::from_str(&body).ok()?;
    let list = value.get("sessions").unwrap_or(&value).as_array()?.clone();
    let strings = |v: Option<&serde_json::Value>| -> Vec<String> {
        v.and_then(|v| v.as_array())
            .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    };
    let mut out = BTreeMap::new();
    for s in list {
        let id = s.get("session_id")?.as_str()?.to_owned();
        out.insert(
            id,
            SessionRow {
                zone: s.get("zone").and_then(|z| z.as_str()).unwrap_or_default().to_owned(),
                members: strings(s.get("members")),
                connected: strings(s.get("connected")),
                host: s.get("host").and_then(|h| h.as_str()).map(str::to_owned),
            },
        );
    }
    Some(out)
}

fn dechunk(body: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = body;
    loop {
        let (size, after) = rest.split_once("\r\n")?;
        let size = usize::from_str_radix(size.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out.push_str(after.get(..size)?);
        rest = after.get(size + 2..)?;
    }
}
