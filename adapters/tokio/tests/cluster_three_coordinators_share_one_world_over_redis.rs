//! Three `ro-p2p-coordinator` processes (the built binary) on one real `redis-server`, each on
//! an ephemeral loopback port, serve one world:
//!
//! 1. clients on different instances in one zone share a session and signal each other;
//! 2. stopping Redis for a few seconds and starting it again loses no seat;
//! 3. killing the zone's owner moves the zone, and every client resumes its seat (same session,
//!    `resumed: true`, no `peer-left`);
//! 4. a fenced old owner (paused past its lease, then woken) cannot change the session: it drops
//!    the zone silently, the records and the members stay as the new owner has them.
//!
//! Skipped (with `SKIPPED` on stderr) when `redis-server` is not installed. Every wait is
//! bounded; processes and the temporary directory are cleaned up on drop (the directory, with
//! the coordinators' logs, is kept when the test fails).

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{Client, Proc, free_port, http, join};
use ro_p2p_core::wire::{ClientMessage, PeerId, ServerMessage, SessionId, Zone};
use ro_p2p_tokio::cluster::{ClusterStore, InstanceId, RedisStore, StoreConfig, TokioClock};

const LEASE_TTL_MS: u64 = 3_000;
/// Longest any phase may take (a failover is at most one lease plus a few retries).
const PHASE: Duration = Duration::from_secs(20);
const PREFIX: &str = "it3:";
/// Ping nonces, unique within the test run.
static NONCE: AtomicU64 = AtomicU64::new(0);

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let dir = std::env::temp_dir().join(format!("ro-p2p-cluster3-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("logs kept in {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

async fn wait_for_port(port: u16) {
    let deadline = tokio::time::Instant::now() + PHASE;
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "nothing listens on {port}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Starts `redis-server` on `port` with its append-only file in `dir`; `None` if not installed.
async fn redis(dir: &Path, port: u16) -> Option<Proc> {
    let child = Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", ""])
        .args(["--appendonly", "yes", "--appendfsync", "always"])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .spawn()
        .ok()?;
    let p = Proc(child);
    wait_for_port(port).await;
    Some(p)
}

struct Coordinator {
    addr: SocketAddr,
    proc: Proc,
}

impl Coordinator {
    async fn start(dir: &Path, name: &str, redis_port: u16) -> Coordinator {
        let port = free_port();
        let config = dir.join(format!("{name}.yaml"));
        std::fs::write(
            &config,
            format!(
                "coordinator:\n  host: \"127.0.0.1\"\n  port: {port}\n  \
                 require_authentication: false\n  redis:\n    \
                 url: \"redis://127.0.0.1:{redis_port}/0\"\n    key_prefix: \"{PREFIX}\"\n"
            ),
        )
        .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_ro-p2p-coordinator"))
            .arg("--config")
            .arg(&config)
            .args(["--instance-id", name, "--lease-ttl-ms", &LEASE_TTL_MS.to_string()])
            .args(["--log-level", "info,ro_p2p_tokio=debug", "--log-file"])
            .arg(dir.join(format!("{name}.log")))
            .stdout(Stdio::null())
            .spawn()
            .expect("the coordinator binary runs");
        let proc = Proc(child);
        wait_for_port(port).await;
        Coordinator { addr: SocketAddr::from(([127, 0, 0, 1], port)), proc }
    }

    fn ws(&self) -> String {
        format!("ws://{}/api/v1/signaling/ws", self.addr)
    }

    async fn health(&self) -> serde_json::Value {
        http(self.addr, "GET", "/api/v1/health", &[], "").await.json()
    }

    async fn list(&self) -> serde_json::Value {
        http(self.addr, "GET", "/api/v1/sessions/list", &[], "").await.json()
    }
}

fn peer(s: &str) -> PeerId {
    PeerId::new(s).unwrap()
}

/// Sends `join` until the answer is `session-joined`, within [`PHASE`]: again after an error
/// (`zone-unavailable` while a dead owner's lease runs) or after a second without an answer (a
/// frozen owner still counts as a bus receiver). Returns it and every message seen on the way.
async fn join_until_seated(
    c: &mut Client,
    who: &str,
    zone: &str,
) -> (ServerMessage, Vec<ServerMessage>) {
    let deadline = tokio::time::Instant::now() + PHASE;
    let mut seen = Vec::new();
    loop {
        // A `ping` after the `join` is answered after it (same owner, in order), so the last
        // `session-joined` before the `pong` answers this join, not an earlier one still
        // queued (an instance that takes a zone back sends one unasked). Nonces are unique
        // across calls, so a late `pong` of an earlier call is never taken for this one's, and
        // a `session-joined` counts only once this call's `pong` has come.
        let nonce = NONCE.fetch_add(1, Ordering::Relaxed) + 1;
        c.send(&join(Some(who), zone)).await;
        c.send(&ClientMessage::Ping { nonce: Some(nonce) }).await;
        let mut reply = None;
        let mut answered = false;
        loop {
            let now = tokio::time::Instant::now();
            let wait = if reply.is_some() {
                deadline.saturating_duration_since(now)
            } else {
                Duration::from_secs(1)
            };
            let Ok(next) = tokio::time::timeout(wait, c.next()).await else { break };
            match next.unwrap_or_else(|e| panic!("{who} closed: {e:?}")) {
                m @ ServerMessage::SessionJoined { .. } => reply = Some(m),
                m @ ServerMessage::Error { .. } => {
                    reply = None;
                    seen.push(m);
                }
                ServerMessage::Pong { nonce: Some(n) } if n == nonce => {
                    answered = true;
                    break;
                }
                other => seen.push(other),
            }
        }
        if answered && let Some(m) = reply {
            return (m, seen);
        }
        assert!(tokio::time::Instant::now() < deadline, "{who} not seated in time: {seen:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn session_of(m: &ServerMessage) -> (SessionId, bool) {
    match m {
        ServerMessage::SessionJoined { session_id, resumed, .. } => (session_id.clone(), *resumed),
        other => panic!("not session-joined: {other:?}"),
    }
}

fn no_peer_left(who: &str, seen: &[ServerMessage]) {
    assert!(
        !seen.iter().any(|m| matches!(m, ServerMessage::PeerLeft { .. })),
        "{who} saw churn: {seen:?}"
    );
}

/// Waits (bounded) until `check` holds on the JSON of `get`.
async fn eventually<F, Fut>(what: &str, mut get: F, check: impl Fn(&serde_json::Value) -> bool)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = serde_json::Value>,
{
    let deadline = tokio::time::Instant::now() + PHASE;
    loop {
        let v = get().await;
        if check(&v) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "not in time: {what}; last {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn members(list: &serde_json::Value, zone: &str) -> Vec<(String, Vec<String>, Vec<String>)> {
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array().into_iter().flatten().filter_map(|s| s.as_str().map(str::to_owned)).collect()
    };
    list["sessions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["zone"] == zone)
        .map(|s| {
            let id = s["session_id"].as_str().unwrap_or_default().to_owned();
            (id, strings(&s["members"]), strings(&s["connected"]))
        })
        .collect()
}

/// Relays an offer from `from` to `to` and checks it arrives stamped.
async fn offer(from: &mut Client, from_id: &str, to: &mut Client, to_id: &str) {
    from.send(&ClientMessage::Offer { to: peer(to_id), sdp: "v=0\r\n".into() }).await;
    match to.expect(|m| matches!(m, ServerMessage::Offer { .. })).await {
        ServerMessage::Offer { from, .. } => assert_eq!(from, peer(from_id)),
        _ => unreachable!(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_coordinators_share_one_world_fail_over_and_fence_a_stale_owner() {
    let dir = TempDir::new();
    let redis_port = free_port();
    let Some(redis_proc) = redis(&dir.0, redis_port).await else {
        common::skip_or_fail("redis-server is not installed");
        return;
    };
    let a = Coordinator::start(&dir.0, "a", redis_port).await;
    let b = Coordinator::start(&dir.0, "b", redis_port).await;
    let c = Coordinator::start(&dir.0, "c", redis_port).await;

    // 1. One zone, clients on three instances: one session, signaling across instances.
    let mut alice = Client::connect(&a.ws(), &[]).await.unwrap();
    let (joined, _) = join_until_seated(&mut alice, "alice", "prontera").await;
    let (sid, _) = session_of(&joined);
    let mut bob = Client::connect(&b.ws(), &[]).await.unwrap();
    let mut carol = Client::connect(&c.ws(), &[]).await.unwrap();
    for (client, who) in [(&mut bob, "bob"), (&mut carol, "carol")] {
        let (joined, _) = join_until_seated(client, who, "prontera").await;
        assert_eq!(session_of(&joined).0, sid, "{who} is in alice's session");
    }
    offer(&mut bob, "bob", &mut carol, "carol").await;
    offer(&mut carol, "carol", &mut alice, "alice").await;
    offer(&mut alice, "alice", &mut bob, "bob").await;
    eventually(
        "every instance lists the one session",
        || b.list(),
        |l| {
            members(l, "prontera")
                == [(
                    sid.to_string(),
                    vec!["alice".into(), "bob".into(), "carol".into()],
                    vec!["alice".into(), "bob".into(), "carol".into()],
                )]
        },
    )
    .await;
    eventually(
        "health counts the world's connections",
        || c.health(),
        |h| h["connections"] == 3 && h["sessions"] == 1 && h["cluster"]["instances"] == 3,
    )
    .await;

    // 2. Redis stops for two seconds and comes back (its append-only file keeps the records).
    redis_proc.stop();
    eventually(
        "health says the store is unreachable",
        || a.health(),
        |h| h["cluster"]["store"] == "unreachable",
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await; // the outage itself, not a synchronisation
    let _redis_again = redis(&dir.0, redis_port).await.unwrap();
    eventually("health says the store is back", || a.health(), |h| h["cluster"]["store"] == "ok")
        .await;
    // Every client is still served and still seated in the same session.
    for (client, who) in [(&mut alice, "alice"), (&mut bob, "bob"), (&mut carol, "carol")] {
        let (joined, seen) = join_until_seated(client, who, "prontera").await;
        assert_eq!(session_of(&joined).0, sid, "{who} kept the seat through the outage");
        no_peer_left(who, &seen);
    }
    offer(&mut bob, "bob", &mut carol, "carol").await;

    // 3. The zone's owner dies; the zone moves and everybody resumes.
    let store = RedisStore::open_url(
        &format!("redis://127.0.0.1:{redis_port}/0"),
        InstanceId::new("test").unwrap(),
        StoreConfig { key_prefix: PREFIX.to_owned(), ..StoreConfig::default() },
        Arc::new(TokioClock::new()),
    )
    .unwrap();
    let prontera = Zone::new("prontera").unwrap();
    let owner = store.owner(&prontera).await.unwrap().expect("prontera has an owner");
    assert_eq!(owner.owner.as_str(), "a", "alice's instance took the zone first");
    a.proc.signal("-KILL");
    drop(a);
    let mut alice = Client::connect(&b.ws(), &[]).await.unwrap();
    for (client, who) in [(&mut bob, "bob"), (&mut carol, "carol"), (&mut alice, "alice")] {
        let (joined, seen) = join_until_seated(client, who, "prontera").await;
        let (s, resumed) = session_of(&joined);
        assert_eq!(s, sid, "{who} is back in the same session");
        assert!(resumed, "{who} resumed its seat");
        no_peer_left(who, &seen);
    }
    let new_owner = store.owner(&prontera).await.unwrap().unwrap();
    assert_ne!(new_owner.owner.as_str(), "a");
    assert!(new_owner.epoch > owner.epoch, "the takeover raised the fencing epoch");
    offer(&mut alice, "alice", &mut carol, "carol").await;
    offer(&mut carol, "carol", &mut bob, "bob").await;

    // 4. A stale owner is fenced. c takes geffen (gina), hank joins from b; c freezes past its
    // lease, b takes geffen over on hank's next join; c wakes up.
    let geffen = Zone::new("geffen").unwrap();
    let mut gina = Client::connect(&c.ws(), &[]).await.unwrap();
    let (joined, _) = join_until_seated(&mut gina, "gina", "geffen").await;
    let (gsid, _) = session_of(&joined);
    assert_eq!(store.owner(&geffen).await.unwrap().unwrap().owner.as_str(), "c");
    let mut hank = Client::connect(&b.ws(), &[]).await.unwrap();
    join_until_seated(&mut hank, "hank", "geffen").await;
    let stale = store.owner(&geffen).await.unwrap().unwrap();
    c.proc.signal("-STOP");
    let (joined, seen) = join_until_seated(&mut hank, "hank", "geffen").await;
    assert_eq!(session_of(&joined), (gsid.clone(), true));
    no_peer_left("hank", &seen);
    let taken = store.owner(&geffen).await.unwrap().unwrap();
    assert_eq!(taken.owner.as_str(), "b");
    assert!(taken.epoch > stale.epoch);
    c.proc.signal("-CONT");
    eventually(
        "the woken owner learns it was fenced and drops geffen",
        || c.health(),
        |h| {
            h["cluster"]["zones"]
                .as_array()
                .is_some_and(|z| !z.contains(&serde_json::json!("geffen")))
        },
    )
    .await;
    // The records still hold both seats, and gina (still on c) resumes at b.
    let mut seats: Vec<String> = store
        .seats(&geffen)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.record.peer_id.to_string())
        .collect();
    seats.sort();
    assert_eq!(seats, ["gina", "hank"], "the stale owner removed no seat");
    let (joined, seen) = join_until_seated(&mut gina, "gina", "geffen").await;
    assert_eq!(session_of(&joined), (gsid.clone(), true));
    no_peer_left("gina", &seen);
    offer(&mut gina, "gina", &mut hank, "hank").await;
    eventually(
        "the world lists geffen once, with both members",
        || b.list(),
        |l| {
            members(l, "geffen")
                == [(
                    gsid.to_string(),
                    vec!["gina".into(), "hank".into()],
                    vec!["gina".into(), "hank".into()],
                )]
        },
    )
    .await;
    let _ = store.ping().await;
}
