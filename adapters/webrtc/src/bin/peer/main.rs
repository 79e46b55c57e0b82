//! `ro-p2p-peer`: a headless stand-in for a game client, for integrators, demos and tests.
//!
//! It connects to a coordinator, joins a zone, links to the other members over WebRTC, and then
//! either replays a raw client-to-map-server capture (`--replay`), generates walking, chat,
//! emotes, NPC clicks and item use for a PACKETVER (`--generate`), or sends each line typed on
//! stdin as public chat (`--stdin-chat`). Every packet is framed and routed by the core; the
//! server's share goes to `--map-server` over TCP, peer events travel sealed over data
//! channels. It prints one JSON line per action, per received peer event and per client
//! event, and a summary with the counters (fallbacks included) when it leaves: after
//! `--count` actions, `--duration-s`, or Ctrl-C.

mod app;

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use app::{Action, Peer, PeerOptions};
use clap::Parser;
use ro_p2p_core::Rng;
use ro_p2p_core::client;
use ro_p2p_core::coordinator::credential;
use ro_p2p_core::packet::{ClientFamily, Obfuscation, PacketVersion};
use ro_p2p_core::route::Policy;
use ro_p2p_core::wire::{PeerId, Zone};
use ro_p2p_tokio::client::DriverEvent;
use ro_p2p_webrtc::LinksConfig;
use serde_json::json;
use tokio::io::AsyncBufReadExt;

/// Command line of `ro-p2p-peer`.
#[derive(Debug, Parser)]
#[command(name = "ro-p2p-peer", version, about = "A headless ro-p2p game client")]
struct Args {
    /// Coordinator WebSocket URL (repeat for backups, in order of preference).
    #[arg(long = "coordinator", default_value = "ws://127.0.0.1:8001/api/v1/signaling/ws")]
    coordinators: Vec<String>,
    /// Bearer token (JWT) when the coordinator requires authentication.
    #[arg(long, env = "RO_P2P_TOKEN")]
    token: Option<String>,
    /// Peer id to ask for (honoured only when the coordinator's authentication is off).
    #[arg(long)]
    peer_id: Option<String>,
    /// rAthena account id (with `--web-token`: the coordinator's `rathena` mode); also the
    /// peer id when `--peer-id` is not given.
    #[arg(long)]
    account_id: Option<u32>,
    /// rAthena web auth token of that account (16 lowercase hex digits from the login reply).
    #[arg(long, env = "RO_P2P_WEB_TOKEN", requires = "account_id", conflicts_with = "token")]
    web_token: Option<String>,
    /// Character name used in chat lines (`Name : text`); defaults to the peer id.
    #[arg(long)]
    name: Option<String>,
    /// The map (zone) to join.
    #[arg(long, default_value = "prontera")]
    zone: String,
    /// Map server address for server-bound bytes; without it they are counted and dropped.
    #[arg(long)]
    map_server: Option<SocketAddr>,
    /// PACKETVER of the simulated game client: any rAthena builds.
    #[arg(long, default_value_t = 20211103)]
    packetver: u32,
    /// Client family (`main`, `re`, `zero`); default: rAthena's for the date.
    #[arg(long)]
    client: Option<String>,
    /// Packet id obfuscation: on, off, or the version's rAthena default.
    #[arg(long, default_value = "default")]
    obfuscation: String,
    /// Routing policy, e.g. `movement=mirror,chat=peers,emote=mirror`.
    #[arg(long, default_value = "")]
    policy: String,
    /// Replay this raw client-to-map-server capture instead of generating traffic.
    #[arg(long)]
    replay: Option<PathBuf>,
    /// Generate traffic: a comma list of walk, chat, emote, npc, item, command.
    #[arg(long, default_value = "walk,chat,emote")]
    generate: String,
    /// Send each stdin line as public chat instead of generating traffic.
    #[arg(long)]
    stdin_chat: bool,
    /// Milliseconds between actions (and between replay chunks).
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,
    /// Stop after this many actions (0: never).
    #[arg(long, default_value_t = 0)]
    count: u64,
    /// Stop after this many seconds (0: never).
    #[arg(long, default_value_t = 0)]
    duration_s: u64,
    /// Milliseconds to wait after joining before the first action (links come up).
    #[arg(long, default_value_t = 2000)]
    warmup_ms: u64,
    /// Milliseconds to keep listening after the last action, so queued frames drain.
    #[arg(long, default_value_t = 500)]
    linger_ms: u64,
    /// Bind WebRTC to 127.0.0.1 only (host candidates on loopback).
    #[arg(long)]
    loopback: bool,
    /// Report this machine's capabilities (cores, clock, memory) so the coordinator may elect
    /// this peer session host: `auto` (measured) or `off`.
    #[arg(long, default_value = "auto", value_parser = ["auto", "off"])]
    hosting: String,
    /// Seed of the node's randomness and of generated traffic (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
}

/// One output line: `what` first, then `ts` (RFC 3339, UTC), then the other keys.
fn print(line: serde_json::Value) {
    let serde_json::Value::Object(mut fields) = line else {
        return;
    };
    let what = fields.remove("what").unwrap_or_default();
    let ts = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let mut text = format!("{{\"what\":{what},\"ts\":{}", serde_json::Value::String(ts));
    for (key, value) in fields {
        text.push(',');
        text.push_str(&serde_json::Value::String(key).to_string());
        text.push(':');
        text.push_str(&value.to_string());
    }
    text.push('}');
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

fn options(args: &Args) -> Result<PeerOptions, String> {
    let zone = Zone::new(args.zone.clone()).map_err(|e| format!("--zone: {e}"))?;
    let family = match &args.client {
        None => None,
        Some(f) => Some(f.parse::<ClientFamily>().map_err(|e| format!("--client: {e}"))?),
    };
    let packet_version =
        PacketVersion::new(args.packetver, family).map_err(|e| format!("--packetver: {e}"))?;
    let obfuscation = match args.obfuscation.as_str() {
        "on" => Obfuscation::On,
        "off" => Obfuscation::Off,
        "default" if packet_version.obfuscated_by_default() => Obfuscation::On,
        "default" => Obfuscation::Off,
        other => return Err(format!("--obfuscation: {other:?} is not on, off or default")),
    };
    let policy: Policy = args.policy.parse().map_err(|e| format!("--policy: {e}"))?;
    let peer_id = match (&args.peer_id, args.account_id) {
        (Some(p), _) => Some(PeerId::new(p.clone()).map_err(|e| format!("--peer-id: {e}"))?),
        (None, Some(aid)) => Some(credential::account_peer_id(aid)),
        (None, None) => None,
    };
    let token = match (&args.web_token, args.account_id) {
        (Some(web), Some(aid)) => {
            let web =
                credential::WebAuthToken::parse(web).map_err(|e| format!("--web-token: {e}"))?;
            Some(credential::WebAuthCredential::encode(aid, web.expose()))
        }
        (Some(_), None) => return Err("--web-token needs --account-id".to_owned()),
        (None, _) => args.token.clone(),
    };
    let name = args.name.clone().or_else(|| args.peer_id.clone()).unwrap_or("Poring".into());
    let seed = args.seed.unwrap_or_else(|| {
        // Only the binary reads the clock; the core never does.
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        now.map(|d| d.as_nanos() as u64).unwrap_or(1)
    });
    let client = client::Config {
        coordinator_urls: args.coordinators.clone(),
        token,
        peer_id,
        p2p_enabled_zones: [zone.clone()].into_iter().collect(),
        capabilities: (args.hosting == "auto").then(ro_p2p_tokio::client::machine::measure),
        ..client::Config::default()
    };
    let links = if args.loopback { LinksConfig::loopback() } else { LinksConfig::default() };
    Ok(PeerOptions {
        client,
        zone,
        map_server: args.map_server,
        packet_version,
        obfuscation,
        policy,
        links,
        name,
        seed,
    })
}

/// The generated actions, cycling through the chosen kinds.
fn generated(kinds: &[String], n: u64, rng: &mut Rng) -> Option<Action> {
    let kind = kinds.get((n % kinds.len().max(1) as u64) as usize)?;
    let coord = |rng: &mut Rng| 100 + rng.below_inclusive(100) as u16;
    Some(match kind.as_str() {
        "walk" => Action::Walk { x: coord(rng), y: coord(rng) },
        "chat" => Action::Chat { text: format!("hello #{n}") },
        "emote" => Action::Emote { kind: rng.below_inclusive(20) as u8 },
        "npc" => Action::NpcClick { npc_id: 110_000_000 + rng.below_inclusive(99) as u32 },
        "item" => Action::UseItem { index: 2 + rng.below_inclusive(50) as u16 },
        "command" => Action::Command { line: format!("@where #{n}") },
        _ => return None,
    })
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let options = match options(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("ro-p2p-peer: {e}");
            std::process::exit(2);
        }
    };
    let kinds: Vec<String> = args.generate.split(',').map(|s| s.trim().to_owned()).collect();
    if let Some(bad) =
        kinds.iter().find(|k| generated(&[(*k).clone()], 0, &mut Rng::from_seed(0)).is_none())
    {
        eprintln!("ro-p2p-peer: --generate: unknown action {bad:?}");
        std::process::exit(2);
    }
    let replay = match &args.replay {
        Some(path) => match std::fs::read(path) {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                eprintln!("ro-p2p-peer: --replay {}: {e}", path.display());
                std::process::exit(2);
            }
        },
        None => None,
    };
    let me =
        args.peer_id.clone().or_else(|| args.account_id.map(|a| a.to_string())).unwrap_or_default();
    let mut rng = Rng::from_seed(options.seed ^ 0x5eed);
    let capabilities = options.client.capabilities;
    let mut peer = match Peer::start(options).await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("ro-p2p-peer: {e}");
            std::process::exit(1);
        }
    };
    print(json!({"peer": me, "what": "started", "capabilities": capabilities}));

    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut tick = tokio::time::interval(Duration::from_millis(args.interval_ms.max(1)));
    let warmup = tokio::time::sleep(Duration::from_millis(args.warmup_ms));
    tokio::pin!(warmup);
    let mut warmed = false;
    let deadline = async {
        match args.duration_s {
            0 => std::future::pending().await,
            s => tokio::time::sleep(Duration::from_secs(s)).await,
        }
    };
    tokio::pin!(deadline);
    let ctrl_c = stop_signal();
    tokio::pin!(ctrl_c);
    let mut n = 0u64;
    let mut replay_at = 0usize;
    // After the last action, keep reading events for a moment so queued frames drain.
    let linger = tokio::time::sleep(Duration::from_secs(3600));
    tokio::pin!(linger);
    let mut lingering = false;
    loop {
        tokio::select! {
            () = &mut ctrl_c => break,
            () = &mut deadline => break,
            () = &mut linger, if lingering => break,
            () = &mut warmup, if !warmed => warmed = true,
            ev = peer.events.recv() => match ev {
                Some(DriverEvent::Received { from, event }) => print(json!({
                    "peer": me, "what": "received", "from": from, "event": event,
                })),
                Some(DriverEvent::Client(event)) => {
                    print(json!({"peer": me, "what": "client", "event": event}));
                }
                Some(DriverEvent::Dropped { from, reason }) => print(json!({
                    "peer": me, "what": "dropped", "from": from, "reason": reason.to_string(),
                })),
                Some(DriverEvent::TransportClosed { url, reason }) => print(json!({
                    "peer": me, "what": "coordinator-lost", "url": url,
                    "reason": format!("{reason:?}"),
                })),
                Some(_) => {}
                None => break,
            },
            line = stdin.next_line(), if args.stdin_chat => match line {
                Ok(Some(text)) if !text.trim().is_empty() => {
                    let action = Action::Chat { text };
                    report(&mut peer, &me, &action).await;
                }
                Ok(Some(_)) => {}
                _ => break,
            },
            _ = tick.tick(), if warmed && !lingering && !args.stdin_chat => {
                if let Some(bytes) = &replay {
                    let end = (replay_at + 4096).min(bytes.len());
                    if replay_at >= end {
                        lingering = true;
                        linger.as_mut().reset(tokio::time::Instant::now() + Duration::from_millis(args.linger_ms));
                        continue;
                    }
                    let chunk = bytes[replay_at..end].to_vec();
                    replay_at = end;
                    match peer.send_raw(chunk).await {
                        Ok(sent) => print(json!({
                            "peer": me, "what": "replayed", "offset": replay_at, "sent": sent,
                        })),
                        Err(e) => { eprintln!("ro-p2p-peer: {e}"); break; }
                    }
                } else if let Some(action) = generated(&kinds, n, &mut rng) {
                    report(&mut peer, &me, &action).await;
                }
                n += 1;
                if args.count > 0 && n >= args.count {
                    lingering = true;
                    linger.as_mut().reset(tokio::time::Instant::now() + Duration::from_millis(args.linger_ms));
                }
            },
        }
    }
    let stats = peer.stats().await.ok();
    let code = match peer.shutdown().await {
        Ok(_) => {
            print(json!({"peer": me, "what": "stopped", "stats": stats}));
            0
        }
        Err(e) => {
            eprintln!("ro-p2p-peer: shutdown: {e}");
            1
        }
    };
    // Exit now: with --stdin-chat a blocking read of stdin is in flight, and the runtime
    // would wait for it (for Enter) before returning from main.
    std::process::exit(code);
}

/// Ctrl-C, or SIGTERM on Unix: both leave cleanly.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

async fn report(peer: &mut Peer, me: &str, action: &Action) {
    match peer.act(action).await {
        Ok(sent) => print(json!({"peer": me, "what": "sent", "action": action, "sent": sent})),
        Err(e) => eprintln!("ro-p2p-peer: {e}"),
    }
}
