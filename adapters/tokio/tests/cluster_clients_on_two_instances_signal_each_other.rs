//! Two cluster nodes (the prototype of cluster mode's hub) on one in-memory store: clients held
//! by different instances join one zone, are seated in one session by the zone's owner, and
//! signal each other through it; when the owner dies and its lease expires, the other instance
//! takes the zone over on the next frame and restores its seats from the records.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use ro_p2p_core::Rng;
use ro_p2p_core::coordinator::{self, ConnId, Coordinator, Identity};
use ro_p2p_core::wire::{ErrorCode, PeerId, ServerMessage, decode_server};
use ro_p2p_tokio::cluster::{
    Clock, ClusterExecutor, ClusterStore, ExecutorOutput, InstanceId, ManualClock, MemoryWorld,
    RedisStore, StoreConfig, Subscription, TokioClock,
};

const LEASE_MS: u64 = 5_000;

struct Instance {
    executor: ClusterExecutor,
    bus: Subscription,
    /// What each of its connections received, decoded.
    inbox: BTreeMap<ConnId, Vec<ServerMessage>>,
}

async fn instance(
    world: &MemoryWorld,
    clock: &Arc<ManualClock>,
    name: &str,
    seed: u64,
) -> Instance {
    let store: Arc<dyn ClusterStore> = Arc::new(world.store(InstanceId::new(name).unwrap()));
    instance_on(store, clock.clone(), seed).await
}

async fn instance_on(store: Arc<dyn ClusterStore>, clock: Arc<dyn Clock>, seed: u64) -> Instance {
    let bus = store.subscribe().await.unwrap();
    let core = Coordinator::new(coordinator::Config::default(), Rng::from_seed(seed));
    let executor = ClusterExecutor::new(core, store, clock, LEASE_MS);
    Instance { executor, bus, inbox: BTreeMap::new() }
}

/// Delivers bus messages and collects outputs until nothing moves (bounded). `quiet_ms` is
/// how long to wait for stragglers before calling it settled (0 for the in-memory store, whose
/// delivery is immediate).
async fn settle(all: &mut [&mut Instance]) {
    settle_within(all, 0).await;
}

async fn settle_within(all: &mut [&mut Instance], quiet_ms: u64) {
    for _ in 0..100 {
        let mut moved = false;
        for i in all.iter_mut() {
            while let Some(m) = i.bus.try_recv() {
                moved = true;
                i.executor.bus(m).await;
            }
            while let Some(out) = i.executor.poll_output() {
                moved = true;
                match out {
                    ExecutorOutput::Send { conn, text, .. } => i
                        .inbox
                        .entry(conn)
                        .or_default()
                        .push(decode_server(text.as_bytes()).unwrap()),
                    ExecutorOutput::Close { conn, code, .. } => {
                        panic!("{conn:?} closed with {code:?}")
                    }
                }
            }
        }
        if !moved {
            if quiet_ms == 0 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(quiet_ms)).await;
            if all.iter_mut().all(|i| i.bus.is_empty()) {
                return;
            }
        }
    }
    panic!("the instances did not settle");
}

fn types(inbox: &[ServerMessage]) -> Vec<&'static str> {
    inbox.iter().map(|m| m.type_name()).collect()
}

fn peer(s: &str) -> PeerId {
    PeerId::new(s).unwrap()
}

#[tokio::test]
async fn clients_on_two_instances_share_a_session_and_signal_through_the_owner() {
    let clock = Arc::new(ManualClock::at(1_000));
    let world = MemoryWorld::new(clock.clone(), StoreConfig::default());
    let mut a = instance(&world, &clock, "a", 1).await;
    let mut b = instance(&world, &clock, "b", 2).await;
    let (alice, bob) = (ConnId(1), ConnId(1)); // the same number on two holders

    a.executor.connected(alice, Identity::Account(peer("alice")), Vec::new()).await;
    b.executor.connected(bob, Identity::Account(peer("bob")), Vec::new()).await;
    settle(&mut [&mut a, &mut b]).await;
    a.executor.frame(alice, br#"{"type":"join","zone":"prontera"}"#.to_vec()).await;
    settle(&mut [&mut a, &mut b]).await;
    b.executor.frame(bob, br#"{"type":"join","zone":"prontera"}"#.to_vec()).await;
    settle(&mut [&mut a, &mut b]).await;

    // a took the zone on alice's join; bob's join went to a, and one session holds both.
    assert!(
        a.executor.owned_zones().contains_key(&ro_p2p_core::wire::Zone::new("prontera").unwrap())
    );
    assert!(b.executor.owned_zones().is_empty());
    let sessions = a.executor.core().sessions();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].members, [peer("alice"), peer("bob")]);
    assert!(b.executor.core().sessions().is_empty());
    assert_eq!(types(&b.inbox[&bob]), ["welcome", "session-joined"], "one welcome only");
    assert_eq!(types(&a.inbox[&alice]), ["welcome", "session-joined", "peer-joined"]);

    // bob (held by b) offers to alice (held by a): relayed by the owner with `from` stamped.
    b.executor.frame(bob, br#"{"type":"offer","to":"alice","sdp":"v=0\r\n"}"#.to_vec()).await;
    settle(&mut [&mut a, &mut b]).await;
    match a.inbox[&alice].last().unwrap() {
        ServerMessage::Offer { from, .. } => assert_eq!(from, &peer("bob")),
        other => panic!("alice got {other:?}"),
    }
    // And back.
    a.executor.frame(alice, br#"{"type":"answer","to":"bob","sdp":"v=0\r\n"}"#.to_vec()).await;
    settle(&mut [&mut a, &mut b]).await;
    match b.inbox[&bob].last().unwrap() {
        ServerMessage::Answer { from, .. } => assert_eq!(from, &peer("alice")),
        other => panic!("bob got {other:?}"),
    }

    // The world view: one session (published by its owner only), both connections, and the
    // owner's relay counters.
    for i in [&a, &b] {
        i.executor.publish_view(10_000).await.unwrap();
    }
    let w = world.store(InstanceId::new("x").unwrap()).world().await.unwrap();
    assert_eq!(w.sessions().len(), 1);
    assert_eq!(w.sessions()[0].members, [peer("alice"), peer("bob")]);
    assert_eq!(w.connections(), 2);
    assert_eq!(w.counters().get("relays:offer"), Some(&1));
    assert_eq!(w.counters().get("relays:answer"), Some(&1));

    // bob's connection ends at b: the owner's core learns it (seat in grace, no peer-left yet).
    b.executor.disconnected(bob).await;
    settle(&mut [&mut a, &mut b]).await;
    let s = &a.executor.core().sessions()[0];
    assert_eq!(s.connected, [peer("alice")]);
    assert_eq!(s.members, [peer("alice"), peer("bob")]);
}

#[tokio::test]
async fn when_the_owner_dies_the_zone_moves_on_the_next_frame_after_its_lease() {
    let clock = Arc::new(ManualClock::at(1_000));
    let world = MemoryWorld::new(clock.clone(), StoreConfig::default());
    let mut a = instance(&world, &clock, "a", 1).await;
    let mut b = instance(&world, &clock, "b", 2).await;
    let carol = ConnId(7);
    a.executor.connected(ConnId(1), Identity::Account(peer("alice")), Vec::new()).await;
    a.executor.frame(ConnId(1), br#"{"type":"join","zone":"payon"}"#.to_vec()).await;
    b.executor.connected(carol, Identity::Account(peer("carol")), Vec::new()).await;
    b.executor.frame(carol, br#"{"type":"join","zone":"payon"}"#.to_vec()).await;
    settle(&mut [&mut a, &mut b]).await;
    assert_eq!(types(&b.inbox[&carol]), ["welcome", "session-joined"]);

    // a dies: its subscription goes, its lease is not renewed.
    drop(a);
    b.executor.frame(carol, br#"{"type":"ping","nonce":1}"#.to_vec()).await;
    settle(&mut [&mut b]).await;
    match b.inbox[&carol].last().unwrap() {
        ServerMessage::Error { code, .. } => assert_eq!(*code, ErrorCode::ZoneUnavailable),
        other => panic!("while the dead owner's lease runs, carol got {other:?}"),
    }

    clock.advance(LEASE_MS + 1);
    b.executor.frame(carol, br#"{"type":"join","zone":"payon"}"#.to_vec()).await;
    settle(&mut [&mut b]).await;
    assert!(b.executor.owned_zones().contains_key(&ro_p2p_core::wire::Zone::new("payon").unwrap()));
    match b.inbox[&carol].last().unwrap() {
        ServerMessage::SessionJoined { resumed, peers, .. } => {
            assert!(*resumed, "carol resumes her seat");
            assert_eq!(peers, &[peer("alice")], "alice's seat waits for her in grace");
        }
        other => panic!("carol got {other:?}"),
    }
    let s = &b.executor.core().sessions()[0];
    assert_eq!(s.members, [peer("alice"), peer("carol")], "both seats restored from the records");
    assert_eq!(s.connected, [peer("carol")]);
}

/// The same signaling path over a real `redis-server` (skipped if it is not installed).
#[tokio::test]
async fn over_redis_clients_on_two_instances_signal_through_the_owner() {
    use std::process::{Command, Stdio};
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let Ok(mut server) = Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", ""])
        .stdout(Stdio::null())
        .spawn()
    else {
        common::skip_or_fail("redis-server is not installed");
        return;
    };
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
    let url = format!("redis://127.0.0.1:{port}/0");
    let open = |name: &str| -> Arc<dyn ClusterStore> {
        let id = InstanceId::new(name).unwrap();
        Arc::new(RedisStore::open_url(&url, id, StoreConfig::default(), clock.clone()).unwrap())
    };
    let mut a = instance_on(open("a"), clock.clone(), 1).await;
    let mut b = instance_on(open("b"), clock.clone(), 2).await;
    let (alice, bob) = (ConnId(1), ConnId(1));
    a.executor.connected(alice, Identity::Account(peer("alice")), Vec::new()).await;
    b.executor.connected(bob, Identity::Account(peer("bob")), Vec::new()).await;
    a.executor.frame(alice, br#"{"type":"join","zone":"prontera"}"#.to_vec()).await;
    settle_within(&mut [&mut a, &mut b], 50).await;
    b.executor.frame(bob, br#"{"type":"join","zone":"prontera"}"#.to_vec()).await;
    settle_within(&mut [&mut a, &mut b], 50).await;
    assert_eq!(types(&b.inbox[&bob]), ["welcome", "session-joined"]);
    b.executor.frame(bob, br#"{"type":"offer","to":"alice","sdp":"v=0\r\n"}"#.to_vec()).await;
    settle_within(&mut [&mut a, &mut b], 50).await;
    match a.inbox[&alice].last().unwrap() {
        ServerMessage::Offer { from, .. } => assert_eq!(*from, peer("bob")),
        other => panic!("alice got {other:?}"),
    }
    let _ = server.kill();
    let _ = server.wait();
}
