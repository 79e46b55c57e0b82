//! Cluster mode in the service, in one process: two coordinator services on one in-memory
//! cluster store serve one world. Clients on different instances share a session and signal
//! each other; the REST views, health and metrics of either instance describe the whole world;
//! with the store down an instance keeps its zones, refuses new ones with `zone-unavailable`,
//! and recovers by itself.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{TestServer, WAIT, join};
use ro_p2p_core::wire::{ClientMessage, ErrorCode, PeerId, ServerMessage};
use ro_p2p_tokio::cluster::{Clock, InstanceId, MemoryWorld, StoreConfig, TokioClock};
use ro_p2p_tokio::server::{ClusterConfig, ServerConfig};

fn instance(world: &MemoryWorld, name: &str) -> ServerConfig {
    let store = Arc::new(world.store(InstanceId::new(name).unwrap()));
    let cluster = ClusterConfig { view_interval_ms: 50, ..ClusterConfig::store(store) };
    ServerConfig { cluster: Some(cluster), ..ServerConfig::default() }
}

fn peer(s: &str) -> PeerId {
    PeerId::new(s).unwrap()
}

/// Polls `check` until it holds (views are published every 50 ms), at most [`WAIT`].
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "not in time: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn two_instances_serve_one_world_and_survive_a_store_outage() {
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
    let world = MemoryWorld::new(clock, StoreConfig::default());
    let a = TestServer::start(instance(&world, "a")).await;
    let b = TestServer::start(instance(&world, "b")).await;

    let (mut alice, joined_a) = a.joined("alice", "prontera").await;
    let (mut bob, joined_b) = b.joined("bob", "prontera").await;
    let (
        ServerMessage::SessionJoined { session_id: sa, .. },
        ServerMessage::SessionJoined { session_id: sb, peers, .. },
    ) = (&joined_a, &joined_b)
    else {
        unreachable!()
    };
    assert_eq!(sa, sb, "one session across both instances");
    assert_eq!(peers, &[peer("alice")]);
    alice
        .expect(|m| matches!(m, ServerMessage::PeerJoined { peer_id } if peer_id == &peer("bob")))
        .await;

    bob.send(&ClientMessage::Offer { to: peer("alice"), sdp: "v=0\r\n".into() }).await;
    match alice.expect(|m| matches!(m, ServerMessage::Offer { .. })).await {
        ServerMessage::Offer { from, .. } => assert_eq!(from, peer("bob")),
        _ => unreachable!(),
    }
    alice.send(&ClientMessage::Answer { to: peer("bob"), sdp: "v=0\r\n".into() }).await;
    match bob.expect(|m| matches!(m, ServerMessage::Answer { .. })).await {
        ServerMessage::Answer { from, .. } => assert_eq!(from, peer("alice")),
        _ => unreachable!(),
    }

    // Either instance answers for the world.
    for server in [&a, &b] {
        eventually("the world's session in list", || async {
            let list = server.get("/api/v1/sessions/list").await.json();
            list["sessions"].as_array().is_some_and(|s| {
                s.len() == 1 && s[0]["members"] == serde_json::json!(["alice", "bob"])
            })
        })
        .await;
        let found = server.get("/api/v1/sessions/discover?zone=prontera").await.json();
        assert_eq!(found["sessions"][0]["session_id"], serde_json::json!(sa.as_str()));
        let one = server.get(&format!("/api/v1/sessions/{}", sa.as_str())).await;
        assert_eq!(one.status, 200, "{}", one.body);
        eventually("world-wide health and metrics", || async {
            let h = server.get("/api/v1/health").await.json();
            let m = server.metrics().await;
            h["connections"] == 2
                && h["sessions"] == 1
                && h["cluster"]["store"] == "ok"
                && h["cluster"]["instances"] == 2
                && m.contains("ro_p2p_relays_total{type=\"offer\"} 1\n")
                && m.contains("ro_p2p_players{zone=\"prontera\"} 2\n")
                && m.contains("ro_p2p_cluster_instances 2\n")
        })
        .await;
    }

    // The store goes down: a keeps serving the zone it owns, refuses a new one.
    world.set_down(true);
    alice.ping(1).await;
    bob.send(&join(Some("bob"), "geffen")).await;
    let (code, _) = bob.expect_error().await;
    assert_eq!(code, ErrorCode::ZoneUnavailable);
    eventually("health reports the store unreachable", || async {
        let h = a.get("/api/v1/health").await;
        let j = h.json();
        h.status == 200
            && j["status"] == "degraded"
            && j["cluster"]["store"] == "unreachable"
            && j["cluster"]["store_error"].as_str().is_some_and(|e| !e.is_empty())
    })
    .await;

    // It comes back: no restart needed.
    world.set_down(false);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        bob.send(&join(Some("bob"), "geffen")).await;
        let answer = bob
            .expect(|m| {
                matches!(m, ServerMessage::SessionJoined { .. } | ServerMessage::Error { .. })
            })
            .await;
        if matches!(answer, ServerMessage::SessionJoined { .. }) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "geffen not taken after the outage");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eventually("health reports the store reachable", || async {
        let h = a.get("/api/v1/health").await.json();
        h["cluster"]["store"] == "ok" && h["status"] == "ok"
    })
    .await;

    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn a_stopping_owner_hands_its_zone_over_at_once_and_seats_are_resumed() {
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
    let world = MemoryWorld::new(clock, StoreConfig::default());
    let a = TestServer::start(instance(&world, "a")).await;
    let b = TestServer::start(instance(&world, "b")).await;
    let (_alice, joined_a) = a.joined("alice", "prontera").await;
    let (mut bob, _) = b.joined("bob", "prontera").await;
    let ServerMessage::SessionJoined { session_id, .. } = joined_a else { unreachable!() };

    // a stops gracefully: it writes its seats and releases its lease, so b takes the zone on
    // bob's next frame instead of after the 10 s lease.
    let stopped = tokio::time::Instant::now();
    a.shutdown().await;
    bob.send(&join(Some("bob"), "prontera")).await;
    match bob.expect(|m| matches!(m, ServerMessage::SessionJoined { .. })).await {
        ServerMessage::SessionJoined { session_id: again, peers, resumed, .. } => {
            assert_eq!(again, session_id, "the same session, now owned by b");
            assert!(resumed);
            assert_eq!(peers, [peer("alice")], "alice's seat waits for her in grace");
        }
        _ => unreachable!(),
    }
    assert!(stopped.elapsed() < Duration::from_secs(8), "no wait for the lease to run out");
    b.shutdown().await;
}

/// REST placement in cluster mode follows the core's one rule (fullest with room, then the
/// oldest), on the zone's owner and on any other instance alike, so it names the session the
/// next `join` gets.
#[tokio::test]
async fn placement_over_rest_names_the_session_a_join_gets_on_either_instance() {
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
    let world = MemoryWorld::new(clock, StoreConfig::default());
    let core = ro_p2p_core::coordinator::Config {
        max_players_per_session: 2,
        max_sessions_per_zone: 4,
        ..Default::default()
    };
    let a = TestServer::start(ServerConfig { core: core.clone(), ..instance(&world, "a") }).await;
    let b = TestServer::start(ServerConfig { core, ..instance(&world, "b") }).await;
    let session = |m: &ServerMessage| match m {
        ServerMessage::SessionJoined { session_id, .. } => session_id.clone(),
        other => panic!("not joined: {other:?}"),
    };

    // Two sessions of two; then one member leaves each: equal sizes, the older one first.
    let (mut alice, first) = a.joined("alice", "prontera").await;
    let (_bob, _) = b.joined("bob", "prontera").await;
    let (mut carol, second) = b.joined("carol", "prontera").await;
    let (_dave, _) = a.joined("dave", "prontera").await;
    let (first, second) = (session(&first), session(&second));
    assert_ne!(first, second);
    for client in [&mut alice, &mut carol] {
        client.send(&ClientMessage::Leave).await;
        client.expect(|m| matches!(m, ServerMessage::SessionLeft { .. })).await;
    }

    for server in [&a, &b] {
        eventually("placement names the older session", || async {
            let r = server
                .http(
                    "POST",
                    "/api/v1/sessions/join",
                    &[("Content-Type", "application/json")],
                    r#"{"zone":"prontera"}"#,
                )
                .await;
            r.json()["placement"] == "existing" && r.json()["session_id"] == first.as_str()
        })
        .await;
    }
    let (_erin, joined) = b.joined("erin", "prontera").await;
    assert_eq!(session(&joined), first, "the join lands where placement said");
}
