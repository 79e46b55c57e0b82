//! `ro-p2p-loadgen`: drives a running coordinator with many WebSocket clients and reports
//! joins/s, relays/s, relay latency, errors by code and the coordinator's memory.
//!
//! Phases: (1) open `--clients` connections at `--join-rate` per second, each joining one of
//! `--zones` zones; (2) hold them idle and read the coordinator's RSS (`--pid`); (3) for
//! `--duration-s` seconds, send offers at `--relay-rate` per second in total, each from a random
//! client to a random member of its session, and time each from send to receipt (both ends are
//! in this process, so one clock). With `--pattern per-client` phase (3) instead gives every
//! client its own timer (`--interval-ms`, random phase), each tick sending one lone
//! `ice-candidate` to a random room-mate (`--room-size` clients per zone); with `--pattern idle`
//! it sends nothing and holds the clients for `--duration-s` seconds, reading the coordinator's
//! memory again at the end. Everything runs on real sockets; it is a measuring tool, not part
//! of the serving path.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use ro_p2p_core::wire::{ClientMessage, PeerId, ServerMessage, Zone, decode_server, encode_client};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// How the relay phase schedules its signals.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Pattern {
    /// One central loop picks a random client for every signal (`--relay-rate`, `--burst`).
    Central,
    /// Every client on its own timer (`--interval-ms`, random phase) sends a lone
    /// `ice-candidate` to a random room-mate, as real clients do: no coordination between
    /// senders. Offered rate = clients x 1000 / interval-ms.
    PerClient,
    /// No signals: connect and join, then hold the clients for `--duration-s` seconds and
    /// report the coordinator's resident memory per held client before and after the hold
    /// (`--pid`). Each process needs a descriptor per client: raise `ulimit -n`, or run
    /// several load generators side by side.
    Idle,
}

/// Load generator for ro-p2p-coordinator.
#[derive(Debug, Parser)]
#[command(name = "ro-p2p-loadgen", version, about, long_about)]
struct Cli {
    /// Signaling WebSocket URL. Repeat it for several coordinator instances (cluster mode):
    /// the clients of each zone are spread over them in turn.
    #[arg(long = "url", default_value = "ws://127.0.0.1:8001/api/v1/signaling/ws")]
    urls: Vec<String>,
    /// Number of concurrent clients.
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// New connections (each followed by a join) per second.
    #[arg(long, default_value_t = 1000)]
    join_rate: u64,
    /// Number of zones the clients spread over (`lg0`, `lg1`, ...). Mind the coordinator's
    /// max_sessions_per_zone x max_players_per_session seats per zone.
    #[arg(long, default_value_t = 50)]
    zones: usize,
    /// Relayed offers per second, in total, during the relay phase (0: none).
    #[arg(long, default_value_t = 10_000)]
    relay_rate: u64,
    /// Length of the relay phase (with `--pattern idle`: of the hold), in seconds.
    #[arg(long, default_value_t = 10)]
    duration_s: u64,
    /// Seconds to hold the clients idle before measuring memory.
    #[arg(long, default_value_t = 2)]
    idle_s: u64,
    /// The coordinator's process id, to report its resident memory.
    #[arg(long)]
    pid: Option<u32>,
    /// HS256 secret to mint a token per client (when the coordinator requires authentication).
    #[arg(long, env = "JWT_SECRET")]
    jwt_secret: Option<String>,
    /// Tokio worker threads for the load generator itself (default: one per CPU; 1 runs it on
    /// one thread).
    #[arg(long)]
    threads: Option<usize>,
    /// Signals per relay event: an offer followed by `burst - 1` ICE candidates to the same
    /// member, written back to back with one flush, as a client setting up a connection with
    /// trickle ICE does. 1 (the default) sends lone offers: the worst case, one system call per
    /// signal at every hop. `--relay-rate` counts signals, so events/s = relay-rate / burst.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    burst: u64,
    /// Bytes of SDP filler per offer.
    #[arg(long, default_value_t = 200)]
    sdp_bytes: usize,
    /// Relay-phase schedule: `central` (one loop, `--relay-rate`) or `per-client` (one timer
    /// per client, `--interval-ms`).
    #[arg(long, value_enum, default_value_t = Pattern::Central)]
    pattern: Pattern,
    /// `--pattern per-client`: each client's period between signals, in milliseconds.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..))]
    interval_ms: u64,
    /// Index of the first client: peer ids are `lg-<index>`, so load generators run side by
    /// side (each with its own descriptor limit) need disjoint ranges.
    #[arg(long, default_value_t = 0)]
    first_client: usize,
    /// Clients per zone (so per session while it stays under the coordinator's
    /// max_players_per_session): overrides `--zones` with clients / room-size.
    #[arg(long)]
    room_size: Option<usize>,
}

/// What the driver tells a client task.
#[derive(Debug)]
enum Cmd {
    /// `--pattern central`: send one relay event now.
    Relay,
    /// `--pattern per-client`: send a lone candidate every `period`, first after `phase`,
    /// until `until`.
    Start { phase: Duration, period: Duration, until: Instant },
}

#[derive(Default)]
struct Counters {
    connected: AtomicU64,
    joined: AtomicU64,
    connect_failures: AtomicU64,
    relays_sent: AtomicU64,
    relays_received: AtomicU64,
    closed: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
    latencies_ns: Mutex<Vec<u64>>,
}

impl Counters {
    fn error(&self, code: &str) {
        if let Ok(mut e) = self.errors.lock() {
            *e.entry(code.to_owned()).or_default() += 1;
        }
    }
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// User plus system CPU time of a process, in seconds (from `/proc/<pid>/stat`, 100 ticks/s).
fn cpu_s(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

fn token(secret: &str, sub: &str) -> String {
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        + 3600;
    let claims = serde_json::json!({"sub": sub, "exp": exp});
    encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret.as_bytes()))
        .unwrap_or_default()
}

/// A tiny xorshift generator: the load pattern need not be cryptographic or reproducible.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[allow(clippy::too_many_arguments)]
async fn client(
    i: usize,
    url: String,
    zone: Zone,
    secret: Option<String>,
    mut cmds: mpsc::Receiver<Cmd>,
    counters: Arc<Counters>,
    epoch: Instant,
    filler: Arc<str>,
    burst: u64,
) {
    let peer = format!("lg-{i}");
    let mut url = url;
    if let Some(secret) = &secret {
        url = format!("{url}?token={}", token(secret, &peer));
    }
    let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
    let ws = match tokio_tungstenite::connect_async_with_config(url.as_str(), Some(config), true)
        .await
    {
        Ok((ws, _)) => ws,
        Err(e) => {
            counters.connect_failures.fetch_add(1, Ordering::Relaxed);
            if i < 3 {
                eprintln!("client {i}: connect failed: {e}");
            }
            return;
        }
    };
    counters.connected.fetch_add(1, Ordering::Relaxed);
    let (mut sink, mut stream) = ws.split();
    let join = ClientMessage::Join {
        peer_id: PeerId::new(peer.clone()).ok(),
        session_id: None,
        zone,
        capabilities: None,
    };
    if sink.send(Message::text(encode_client(&join))).await.is_err() {
        return;
    }
    let mut members: Vec<PeerId> = Vec::new();
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15 ^ (i as u64 + 1));
    let mut ping = tokio::time::interval(Duration::from_secs(10));
    ping.tick().await;
    // `--pattern per-client`: this client's own timer and when it stops.
    let mut own: Option<(tokio::time::Interval, Instant)> = None;
    loop {
        tokio::select! {
            frame = stream.next() => {
                let text = match frame {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(f))) => {
                        let reason = f.map(|f| f.reason.to_string()).unwrap_or_default();
                        counters.error(&format!("close:{}", reason.split(':').next().unwrap_or("")));
                        counters.closed.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(_)) | None => {
                        counters.closed.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                };
                // Relayed offers are most of the traffic: read their send time without a full
                // decode, so the load generator spends its CPU on the sockets, not on JSON.
                if let Some(sent_ns) = relayed_send_time_ns(text.as_str()) {
                    let now_ns = epoch.elapsed().as_nanos() as u64;
                    counters.relays_received.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut l) = counters.latencies_ns.lock() {
                        l.push(now_ns.saturating_sub(sent_ns));
                    }
                    continue;
                }
                match decode_server(text.as_bytes()) {
                    Ok(ServerMessage::SessionJoined { peers, .. }) => {
                        members = peers;
                        counters.joined.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(ServerMessage::PeerJoined { peer_id }) => members.push(peer_id),
                    Ok(ServerMessage::PeerLeft { peer_id, .. }) => members.retain(|p| *p != peer_id),
                    Ok(ServerMessage::Offer { sdp, .. }) => {
                        let now_ns = epoch.elapsed().as_nanos() as u64;
                        if let Some(sent_ns) = sdp.split(' ').nth(1).and_then(|s| s.parse::<u64>().ok()) {
                            counters.relays_received.fetch_add(1, Ordering::Relaxed);
                            if let Ok(mut l) = counters.latencies_ns.lock() {
                                l.push(now_ns.saturating_sub(sent_ns));
                            }
                        }
                    }
                    Ok(ServerMessage::Error { code, .. }) => counters.error(code.as_str()),
                    Ok(_) => {}
                    Err(_) => counters.error("undecodable"),
                }
            }
            () = own_tick(&mut own) => {
                if own.as_ref().is_some_and(|(_, until)| Instant::now() >= *until) {
                    own = None;
                    continue;
                }
                if members.is_empty() {
                    continue;
                }
                let to = &members[(rng.next() % members.len() as u64) as usize];
                let to = to.as_str();
                // A lone trickled candidate, about 40 bytes of candidate text; the send time
                // is taken just before the write.
                let sent_ns = epoch.elapsed().as_nanos() as u64;
                let candidate = format!(
                    r#"{{"type":"ice-candidate","to":"{to}","candidate":{{"candidate":"candidate:{sent_ns} 1 udp 1 10.0.0.1 9 typ host","sdp_mid":"0"}}}}"#
                );
                if sink.send(Message::text(candidate)).await.is_err() {
                    return;
                }
                counters.relays_sent.fetch_add(1, Ordering::Relaxed);
            }
            cmd = cmds.recv() => {
                let Some(cmd) = cmd else { return };
                if let Cmd::Start { phase, period, until } = cmd {
                    let mut timer = tokio::time::interval_at(Instant::now() + phase, period);
                    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    own = Some((timer, until));
                    continue;
                }
                if members.is_empty() {
                    continue;
                }
                let to = members[(rng.next() % members.len() as u64) as usize].clone();
                let sent_ns = epoch.elapsed().as_nanos() as u64;
                // Peer ids and the filler need no JSON escaping: build the frame directly.
                let to = to.as_str();
                let offer = format!(r#"{{"type":"offer","to":"{to}","sdp":"lg {sent_ns} {filler}"}}"#);
                if sink.feed(Message::text(offer)).await.is_err() {
                    return;
                }
                for k in 1..burst {
                    let candidate = format!(
                        r#"{{"type":"ice-candidate","to":"{to}","candidate":{{"candidate":"candidate:{sent_ns} 1 udp 2122260223 10.0.0.{k} 5{k:04} typ host","sdp_mid":"0"}}}}"#
                    );
                    if sink.feed(Message::text(candidate)).await.is_err() {
                        return;
                    }
                }
                if sink.flush().await.is_err() {
                    return;
                }
                counters.relays_sent.fetch_add(burst, Ordering::Relaxed);
            }
            _ = ping.tick() => {
                if sink.send(Message::text(r#"{"type":"ping"}"#)).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// The next tick of a client's own timer; never, when it has none.
async fn own_tick(own: &mut Option<(tokio::time::Interval, Instant)>) {
    match own {
        Some((timer, _)) => {
            timer.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// The send time (nanoseconds since the load generator's epoch) carried by a relayed signal
/// from another load-generator client (`{"type":"offer",...,"sdp":"lg <ns> ..."}` or
/// `{"type":"ice-candidate",...,"candidate":{"candidate":"candidate:<ns> ..."}}`), or `None`
/// for any other frame.
fn relayed_send_time_ns(text: &str) -> Option<u64> {
    const SDP: &str = r#""sdp":"lg "#;
    const CANDIDATE: &str = r#""candidate":"candidate:"#;
    let rest = if text.starts_with(r#"{"type":"offer""#) {
        &text[text.find(SDP)? + SDP.len()..]
    } else if text.starts_with(r#"{"type":"ice-candidate""#) {
        &text[text.find(CANDIDATE)? + CANDIDATE.len()..]
    } else {
        return None;
    };
    rest[..rest.find(' ')?].parse().ok()
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(ns: u64) -> String {
    format!("{:.3} ms", ns as f64 / 1e6)
}

fn main() {
    let cli = Cli::parse();
    let mut builder = match cli.threads {
        Some(0 | 1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    match builder.enable_all().build() {
        Ok(runtime) => runtime.block_on(run(cli)),
        Err(e) => eprintln!("ro-p2p-loadgen: cannot start the tokio runtime: {e}"),
    }
}

async fn run(cli: Cli) {
    let counters = Arc::new(Counters::default());
    let epoch = Instant::now();
    let filler: Arc<str> = Arc::from("x".repeat(cli.sdp_bytes));
    let zone_count = match cli.room_size {
        Some(size) => cli.clients.div_ceil(size.max(1)),
        None => cli.zones,
    };
    let zones: Vec<Zone> =
        (0..zone_count.max(1)).filter_map(|z| Zone::new(format!("lg{z}")).ok()).collect();
    let rss = |label: &str| {
        if let Some(pid) = cli.pid {
            match rss_kib(pid) {
                Some(kib) => println!("coordinator RSS {label}: {kib} KiB"),
                None => println!("coordinator RSS {label}: unreadable (pid {pid})"),
            }
        }
        cli.pid.and_then(rss_kib)
    };
    let schedule = match cli.pattern {
        Pattern::Central => format!("relay rate {}/s ({} per burst)", cli.relay_rate, cli.burst),
        Pattern::PerClient => format!(
            "per-client: one lone ice-candidate every {} ms per client ({:.0}/s offered)",
            cli.interval_ms,
            cli.clients as f64 * 1000.0 / cli.interval_ms as f64
        ),
        Pattern::Idle => "idle: no signals, clients held".to_owned(),
    };
    println!(
        "ro-p2p-loadgen: {} clients, {} zones, join rate {}/s, {schedule} for {} s, url {}",
        cli.clients,
        zones.len(),
        cli.join_rate,
        cli.duration_s,
        cli.urls.join(" ")
    );
    let rss_before = rss("before");

    // Phase 1: connect and join.
    let mut senders = Vec::with_capacity(cli.clients);
    let start = Instant::now();
    let per_client = Duration::from_secs_f64(1.0 / cli.join_rate.max(1) as f64);
    for i in 0..cli.clients {
        let (tx, rx) = mpsc::channel(64);
        senders.push(tx);
        let zone = zones[i % zones.len()].clone();
        // Members of one zone go to the instances in turn, so relays cross instances.
        let url = cli.urls[(i / zones.len().max(1)) % cli.urls.len().max(1)].clone();
        tokio::spawn(client(
            cli.first_client + i,
            url,
            zone,
            cli.jwt_secret.clone(),
            rx,
            counters.clone(),
            epoch,
            filler.clone(),
            cli.burst,
        ));
        tokio::time::sleep_until(start + per_client * (i as u32 + 1)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while counters.joined.load(Ordering::Relaxed)
        + counters.connect_failures.load(Ordering::Relaxed)
        + counters.closed.load(Ordering::Relaxed)
        < cli.clients as u64
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let join_elapsed = start.elapsed().as_secs_f64();
    let joined = counters.joined.load(Ordering::Relaxed);
    println!(
        "joined {joined}/{} in {join_elapsed:.2} s: {:.0} joins/s (connect failures {})",
        cli.clients,
        joined as f64 / join_elapsed,
        counters.connect_failures.load(Ordering::Relaxed)
    );

    // Phase 2: idle.
    tokio::time::sleep(Duration::from_secs(cli.idle_s)).await;
    let rss_idle = rss("with clients idle");
    if let (Some(a), Some(b)) = (rss_before, rss_idle)
        && joined > 0
    {
        println!(
            "coordinator memory per idle client: {:.1} KiB",
            b.saturating_sub(a) as f64 / joined as f64
        );
    }

    // Phase 3: relay, or hold.
    let relays = match cli.pattern {
        Pattern::Central => cli.relay_rate > 0,
        Pattern::PerClient => true,
        Pattern::Idle => false,
    };
    if cli.pattern == Pattern::Idle && cli.duration_s > 0 {
        tokio::time::sleep(Duration::from_secs(cli.duration_s)).await;
        let held = joined.saturating_sub(counters.closed.load(Ordering::Relaxed));
        let rss_held = rss(&format!("after holding {held} clients {} s", cli.duration_s));
        if let (Some(a), Some(b)) = (rss_before, rss_held)
            && held > 0
        {
            println!(
                "coordinator memory per held client: {:.1} KiB",
                b.saturating_sub(a) as f64 / held as f64
            );
        }
    }
    if relays && cli.duration_s > 0 {
        let coord_pid = cli.pid.map(|p| p.to_string());
        let coord_cpu0 = coord_pid.as_deref().and_then(cpu_s);
        let self_cpu0 = cpu_s("self");
        let phase = Instant::now();
        let end = phase + Duration::from_secs(cli.duration_s);
        let mut rng = XorShift(0xDEAD_BEEF_CAFE_F00D);
        let mut issued: u64 = 0;
        let mut local_drops: u64 = 0;
        if cli.pattern == Pattern::PerClient {
            // Every client starts its own timer with a random phase, then the driver only
            // waits: it sends nothing more.
            let period = Duration::from_millis(cli.interval_ms);
            for tx in &senders {
                let phase = Duration::from_nanos(rng.next() % period.as_nanos() as u64);
                let _ = tx.try_send(Cmd::Start { phase, period, until: end });
            }
            tokio::time::sleep_until(end).await;
        }
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        while cli.pattern == Pattern::Central && Instant::now() < end {
            tick.tick().await;
            let due = (phase.elapsed().as_secs_f64() * cli.relay_rate as f64) as u64 / cli.burst;
            while issued < due {
                let k = (rng.next() % senders.len() as u64) as usize;
                if senders[k].try_send(Cmd::Relay).is_err() {
                    local_drops += 1;
                }
                issued += 1;
            }
        }
        let sent_at_end = counters.relays_sent.load(Ordering::Relaxed);
        // Let in-flight relays land.
        let settle = Instant::now() + Duration::from_secs(5);
        while counters.relays_received.load(Ordering::Relaxed)
            < counters.relays_sent.load(Ordering::Relaxed)
            && Instant::now() < settle
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let received = counters.relays_received.load(Ordering::Relaxed);
        let secs = cli.duration_s as f64;
        let coord_cpu = coord_pid.as_deref().and_then(cpu_s).zip(coord_cpu0).map(|(b, a)| b - a);
        let self_cpu = cpu_s("self").zip(self_cpu0).map(|(b, a)| b - a);
        if let Some(c) = coord_cpu {
            println!(
                "coordinator CPU during the relay phase: {c:.2} s ({:.1} us per relayed signal)",
                c * 1e6 / received.max(1) as f64
            );
        }
        if let Some(c) = self_cpu {
            println!("loadgen CPU during the relay phase: {c:.2} s");
        }
        println!(
            "relay phase {secs:.0} s: sent {sent_at_end} ({:.0}/s), received {received} ({:.0}/s), \
             not sent (client busy) {local_drops}",
            sent_at_end as f64 / secs,
            received as f64 / secs
        );
        let mut lat = counters.latencies_ns.lock().map(|l| l.clone()).unwrap_or_default();
        lat.sort_unstable();
        println!(
            "relay latency (sender's write -> recipient's read, one clock): p50 {} p90 {} p99 {} max {} over {} samples",
            ms(percentile(&lat, 0.50)),
            ms(percentile(&lat, 0.90)),
            ms(percentile(&lat, 0.99)),
            ms(lat.last().copied().unwrap_or(0)),
            lat.len()
        );
        rss("after relays");
    }
    let errors = counters.errors.lock().map(|e| e.clone()).unwrap_or_default();
    if errors.is_empty() {
        println!("errors: none");
    } else {
        let list: Vec<String> = errors.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("errors: {}", list.join(" "));
    }
    println!("connections closed by the server: {}", counters.closed.load(Ordering::Relaxed));
}
