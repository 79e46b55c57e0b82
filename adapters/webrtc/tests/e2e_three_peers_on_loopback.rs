//! End to end on loopback, everything real except the game and the map server: the coordinator
//! service (`ro_p2p_tokio::server`) on 127.0.0.1:0, a stub map server that records the bytes of
//! each connection, and four headless peers (`ro-p2p-peer`'s library, run as in-process tasks)
//! with real WebRTC links bound to 127.0.0.1 (host candidates only).
//!
//! What it shows, in order:
//! 1. three peers in prontera link to each other; movement and public chat from each reach the
//!    other two over data channels and the map server (mirror policy); each reports its
//!    measured capabilities, so the coordinator elects a host they all agree on, and when the
//!    host reports figures below the requirements the host migrates to another member;
//! 2. NPC clicks, item use and `@` commands reach only the map server;
//! 3. a peer in geffen receives nothing and routes everything to the server;
//! 4. the coordinator stops: peers back off and keep their links, but route everything to the
//!    server (P2P needs a live session); it restarts on the same port: they rejoin, relink and
//!    chat crosses peer to peer again;
//! 5. a peer is killed: the others drop its link and send only to who is left; when the last
//!    other member leaves, everything goes to the server.
//!
//! Each wait is bounded and the whole test has a deadline; every task and port is released.
#![allow(missing_docs)]

#[path = "../src/bin/peer/app.rs"]
mod app;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use app::{Action, PacketWriter, Peer, PeerOptions};
use ro_p2p_core::Rng;
use ro_p2p_core::client::{self, ClientEvent, Lifecycle};
use ro_p2p_core::node::ReceivedEvent;
use ro_p2p_core::packet::{Obfuscation, PacketVersion};
use ro_p2p_core::route::Policy;
use ro_p2p_core::wire::{PeerId, Zone};
use ro_p2p_tokio::client::DriverEvent;
use ro_p2p_tokio::server::{ManualWallClock, ServerConfig, Service};
use ro_p2p_webrtc::LinksConfig;
use tokio::io::AsyncReadExt;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(20);
const TEST_DEADLINE: Duration = Duration::from_secs(150);
const VERSION: PacketVersion = PacketVersion::V20211103;

fn pid(s: &str) -> PeerId {
    PeerId::new(s).unwrap()
}

/// The coordinator service on a loopback listener.
struct Coordinator {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Coordinator {
    async fn start(addr: SocketAddr, seed: u64) -> Coordinator {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let clock = Arc::new(ManualWallClock::new(1_800_000_000));
        // Hosts need a core and answer within 10 s (this machine is smaller than production's
        // defaults); a host reporting 0 cores no longer qualifies.
        let core = ro_p2p_core::coordinator::Config {
            host_requirements: ro_p2p_core::coordinator::HostRequirements {
                min_cpu_cores: 1,
                min_cpu_mhz: 0,
                min_memory_mb: 0,
                min_bandwidth_mbps: 0,
                max_latency_ms: 10_000,
            },
            ..ro_p2p_core::coordinator::Config::default()
        };
        let config = ServerConfig { core, ..ServerConfig::default() };
        let service = Service::start(config, Rng::from_seed(seed), clock).unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(service.serve(
            listener,
            async move {
                let _ = rx.await;
            },
            Duration::from_secs(3),
        ));
        Coordinator { addr, stop: Some(tx), task }
    }

    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(WAIT, self.task).await.unwrap().unwrap().unwrap();
    }
}

/// A stub map server: accepts connections and records each one's bytes, keyed by the client's
/// address.
struct MapServer {
    addr: SocketAddr,
    bytes: Arc<Mutex<BTreeMap<SocketAddr, Vec<u8>>>>,
    task: JoinHandle<()>,
}

impl MapServer {
    async fn start() -> MapServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let bytes: Arc<Mutex<BTreeMap<SocketAddr, Vec<u8>>>> = Arc::default();
        let record = bytes.clone();
        let task = tokio::spawn(async move {
            let mut readers = tokio::task::JoinSet::new();
            while let Ok((mut stream, from)) = listener.accept().await {
                record.lock().unwrap().entry(from).or_default();
                let record = record.clone();
                readers.spawn(async move {
                    let mut buf = [0u8; 4096];
                    while let Ok(n @ 1..) = stream.read(&mut buf).await {
                        record.lock().unwrap().entry(from).or_default().extend(&buf[..n]);
                    }
                });
            }
        });
        MapServer { addr, bytes, task }
    }

    fn received_from(&self, client: SocketAddr) -> Vec<u8> {
        self.bytes.lock().unwrap().get(&client).cloned().unwrap_or_default()
    }
}

impl Drop for MapServer {
    fn drop(&mut self) {
        // Aborting the accept loop drops the JoinSet, which aborts every reader.
        self.task.abort();
    }
}

/// One peer under test, with what it received and what its game sent.
struct P {
    name: &'static str,
    peer: Option<Peer>,
    writer: PacketWriter,
    map_addr: SocketAddr,
    /// Every byte the game wrote, in order: with every route including the server, exactly
    /// what the map server must see.
    game_bytes: Vec<u8>,
    received: Vec<(PeerId, ReceivedEvent)>,
    client_events: Vec<ClientEvent>,
}

impl P {
    async fn start(name: &'static str, zone: &str, coord: SocketAddr, map: SocketAddr) -> P {
        let zone = Zone::new(zone).unwrap();
        let client = client::Config {
            coordinator_urls: vec![format!("ws://{coord}/api/v1/signaling/ws")],
            peer_id: Some(pid(name)),
            p2p_enabled_zones: [Zone::new("prontera").unwrap(), Zone::new("geffen").unwrap()]
                .into_iter()
                .collect(),
            reconnect_delay_ms: 200,
            backoff_cap_ms: 1_000,
            // Keep backing off (links up) for the whole outage rather than falling back.
            max_retries: 1_000,
            connection_timeout_ms: 3_000,
            // What ro-p2p-peer reports by default (`--hosting auto`).
            capabilities: Some(ro_p2p_tokio::client::machine::measure()),
            ..client::Config::default()
        };
        let links = LinksConfig { connect_timeout_ms: 10_000, ..LinksConfig::loopback() };
        let obfuscation =
            if VERSION.obfuscated_by_default() { Obfuscation::On } else { Obfuscation::Off };
        let options = PeerOptions {
            client,
            zone,
            map_server: Some(map),
            packet_version: VERSION,
            obfuscation,
            policy: Policy::default(),
            links,
            name: name.to_owned(),
            seed: name.len() as u64 * 7919 + u64::from(name.as_bytes()[0]),
        };
        let peer = Peer::start(options).await.unwrap();
        let map_addr = peer.map_local_addr().unwrap();
        P {
            name,
            peer: Some(peer),
            writer: PacketWriter::new(VERSION, obfuscation, name),
            map_addr,
            game_bytes: Vec::new(),
            received: Vec::new(),
            client_events: Vec::new(),
        }
    }

    fn peer(&mut self) -> &mut Peer {
        self.peer.as_mut().unwrap()
    }

    /// Takes every event already queued by the driver.
    fn pump(&mut self) {
        let Some(peer) = self.peer.as_mut() else { return };
        while let Ok(ev) = peer.events.try_recv() {
            match ev {
                DriverEvent::Received { from, event } => self.received.push((from, event)),
                DriverEvent::Client(e) => self.client_events.push(e),
                _ => {}
            }
        }
    }

    async fn act(&mut self, action: Action) -> app::Sent {
        self.game_bytes.extend(self.writer.write(&action).unwrap());
        self.peer().act(&action).await.unwrap()
    }

    async fn healthy(&mut self) -> Vec<PeerId> {
        self.pump();
        self.peer().healthy_peers().await.unwrap()
    }

    async fn lifecycle(&mut self) -> Lifecycle {
        self.peer().handle.inspect(|n| n.client().lifecycle()).await.unwrap()
    }

    async fn host(&mut self) -> Option<PeerId> {
        self.peer().handle.inspect(|n| n.client().host().cloned()).await.unwrap()
    }

    async fn links(&mut self) -> usize {
        self.peer().handle.inspect(|n| n.client().links().len()).await.unwrap()
    }
}

/// Polls `check` every 20 ms until it holds, for at most [`WAIT`].
macro_rules! wait_until {
    ($what:expr, $check:expr) => {{
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if $check {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {}", $what);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }};
}

fn from(p: &P, sender: &str) -> Vec<ReceivedEvent> {
    p.received.iter().filter(|(f, _)| f.as_str() == sender).map(|(_, e)| e.clone()).collect()
}

fn chat_line(name: &str, text: &str) -> ReceivedEvent {
    ReceivedEvent::Chat { text: format!("{name} : {text}").into_bytes() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_peers_share_movement_and_chat_and_survive_coordinator_restart_and_a_crash() {
    tokio::time::timeout(TEST_DEADLINE, scenario()).await.expect("the scenario took too long");
}

async fn scenario() {
    let coord = Coordinator::start("127.0.0.1:0".parse().unwrap(), 1).await;
    let coord_addr = coord.addr;
    let map = MapServer::start().await;
    let mut ps = Vec::new();
    for name in ["alice", "bob", "carol"] {
        ps.push(P::start(name, "prontera", coord_addr, map.addr).await);
    }
    let mut gina = P::start("gina", "geffen", coord_addr, map.addr).await;

    // 1. A full mesh of healthy links.
    for p in &mut ps {
        wait_until!(format!("{} linked to both others", p.name), p.healthy().await.len() == 2);
    }
    for (i, p) in ps.iter_mut().enumerate() {
        let me = p.name;
        let x = 100 + i as u16;
        let sent = p.act(Action::Walk { x, y: 50 }).await;
        assert_eq!((sent.route, sent.peer_frames), ("server+peers", 2), "{me}'s walk");
        let sent = p.act(Action::Chat { text: format!("hi from {me}") }).await;
        assert_eq!((sent.route, sent.peer_frames), ("server+peers", 2), "{me}'s chat");
    }
    for i in 0..3 {
        for j in (0..3).filter(|j| *j != i) {
            let sender = ps[j].name;
            let want = vec![
                ReceivedEvent::Move { x: 100 + j as u16, y: 50 },
                chat_line(sender, &format!("hi from {sender}")),
            ];
            wait_until!(format!("{} hears {sender}", ps[i].name), {
                ps[i].pump();
                from(&ps[i], sender).len() >= 2
            });
            // Movement is unordered; compare as sets.
            let mut got = from(&ps[i], sender);
            got.sort_by_key(|e| format!("{e:?}"));
            let mut want = want;
            want.sort_by_key(|e| format!("{e:?}"));
            assert_eq!(got, want, "{} from {sender}", ps[i].name);
        }
    }

    // The coordinator elected a host from the reported capabilities, and all agree on it.
    wait_until!("a host is elected", ps[0].host().await.is_some());
    let host = ps[0].host().await.unwrap();
    for p in &mut ps {
        wait_until!(format!("{} agrees on the host", p.name), p.host().await == Some(host.clone()));
    }
    // The host's machine no longer qualifies (0 cores): the host migrates to another member.
    let h = ps.iter().position(|p| p.name == host.as_str()).unwrap();
    let weak = ro_p2p_core::wire::Capabilities {
        cpu_cores: 0,
        ..ro_p2p_tokio::client::machine::measure()
    };
    ps[h].peer().handle.capabilities_measured(Some(weak)).await.unwrap();
    wait_until!("the host migrates", ps[0].host().await.is_some_and(|n| n != host));
    let new_host = ps[0].host().await.unwrap();
    for p in &mut ps {
        wait_until!(
            format!("{} sees the new host", p.name),
            p.host().await == Some(new_host.clone())
        );
    }

    // 2. Server-only actions produce no peer frame.
    let before: Vec<usize> = ps.iter().map(|p| p.received.len()).collect();
    for action in [
        Action::NpcClick { npc_id: 110_000_042 },
        Action::UseItem { index: 7 },
        Action::Command { line: "@warp prontera 150 150".into() },
    ] {
        let sent = ps[0].act(action.clone()).await;
        assert_eq!((sent.route, sent.peer_frames), ("server", 0), "{action:?}");
        assert!(!sent.fallback, "{action:?} is not peer-eligible, so not a fallback");
    }
    // A chat line after them: the chat channel is ordered, so once it arrives nothing sent
    // before it is still on the way.
    ps[0].act(Action::Chat { text: "marker".into() }).await;
    for i in [1, 2] {
        wait_until!("the marker", {
            ps[i].pump();
            ps[i].received.len() > before[i]
        });
        assert_eq!(ps[i].received[before[i]..], [(pid("alice"), chat_line("alice", "marker"))]);
    }

    // 3. The other zone: nothing received, everything to the server.
    let sent = gina.act(Action::Walk { x: 1, y: 1 }).await;
    assert_eq!((sent.route, sent.peer_frames, sent.fallback), ("server", 0, true));
    gina.pump();
    assert!(gina.received.is_empty(), "gina got {:?}", gina.received);
    assert!(gina.healthy().await.is_empty());

    // The map server got every byte each game wrote, in order.
    for p in ps.iter().chain([&gina]) {
        let (addr, want) = (p.map_addr, p.game_bytes.clone());
        wait_until!(format!("map bytes of {}", p.name), map.received_from(addr) == want);
    }

    // 4. The coordinator stops: peers back off with their links up and route to the server.
    coord.stop().await;
    for p in &mut ps {
        wait_until!(format!("{} notices", p.name), p.lifecycle().await != Lifecycle::Joined);
        assert_eq!(p.links().await, 2, "{}: links stay up while backing off", p.name);
    }
    let sent = ps[0].act(Action::Chat { text: "anyone?".into() }).await;
    assert_eq!((sent.route, sent.peer_frames, sent.fallback), ("server", 0, true));
    let coord = Coordinator::start(coord_addr, 2).await;
    for p in &mut ps {
        wait_until!(format!("{} rejoins", p.name), p.lifecycle().await == Lifecycle::Joined);
    }
    for p in &mut ps {
        wait_until!(format!("{} relinked", p.name), p.healthy().await.len() == 2);
    }
    let sent = ps[0].act(Action::Chat { text: "back".into() }).await;
    assert_eq!((sent.route, sent.peer_frames), ("server+peers", 2));
    for i in [1, 2] {
        wait_until!("chat after the restart", {
            ps[i].pump();
            from(&ps[i], "alice").contains(&chat_line("alice", "back"))
        });
        assert!(!from(&ps[i], "alice").contains(&chat_line("alice", "anyone?")));
    }

    // 5. Carol crashes: alice and bob drop her link and send only to each other.
    let carol = ps.pop().unwrap();
    carol.peer.unwrap().kill();
    for p in &mut ps {
        wait_until!(
            format!("{} drops carol", p.name),
            p.healthy().await == [pid(if p.name == "alice" { "bob" } else { "alice" })]
        );
    }
    let sent = ps[0].act(Action::Walk { x: 7, y: 7 }).await;
    assert_eq!((sent.route, sent.peer_frames), ("server+peers", 1));
    wait_until!("bob sees the walk", {
        ps[1].pump();
        from(&ps[1], "alice").contains(&ReceivedEvent::Move { x: 7, y: 7 })
    });
    // Bob leaves cleanly: alice is alone and routes everything to the server.
    let bob = ps.pop().unwrap();
    bob.peer.unwrap().shutdown().await.unwrap();
    wait_until!("alice alone", ps[0].healthy().await.is_empty());
    let sent = ps[0].act(Action::Chat { text: "alone".into() }).await;
    assert_eq!((sent.route, sent.peer_frames, sent.fallback), ("server", 0, true));
    let (addr, want) = (ps[0].map_addr, ps[0].game_bytes.clone());
    wait_until!("alice's map bytes", map.received_from(addr) == want);

    // Clean up: leave, close links and sockets, stop the coordinator.
    for mut p in ps.into_iter().chain([gina]) {
        let node = p.peer.take().unwrap().shutdown().await.unwrap();
        assert_eq!(node.client().lifecycle(), Lifecycle::Closed);
    }
    coord.stop().await;
    drop(map);
}
