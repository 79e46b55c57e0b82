//! Two clients in one zone exchange offer, answer and ICE with `from` stamped by the
//! coordinator; a client in another zone cannot reach them; a reconnect within the grace
//! period keeps the seat. Real server, real WebSocket.

mod common;

use common::*;
use ro_p2p_core::wire::{ErrorCode, IceCandidate, PeerId, ServerMessage};

fn pid(s: &str) -> PeerId {
    PeerId::new(s).unwrap()
}

#[tokio::test]
async fn members_exchange_offer_answer_and_ice_with_from_stamped() {
    let server = TestServer::open().await;
    let (mut alice, joined_a) = server.joined("alice", "prontera").await;
    let (mut bob, joined_b) = server.joined("bob", "prontera").await;
    let (
        ServerMessage::SessionJoined { session_id: sa, .. },
        ServerMessage::SessionJoined { session_id: sb, peers, .. },
    ) = (joined_a, joined_b)
    else {
        unreachable!()
    };
    assert_eq!(sa, sb, "both placed in the same session");
    assert_eq!(peers, vec![pid("alice")]);
    let joined = alice.expect(|m| matches!(m, ServerMessage::PeerJoined { .. })).await;
    assert_eq!(joined, ServerMessage::PeerJoined { peer_id: pid("bob") });

    // Bob lies about who he is: the coordinator stamps the real sender.
    bob.send_text(r#"{"type":"offer","to":"alice","from":"mallory","sdp":"v=0 offer"}"#).await;
    let offer = alice.expect(|m| matches!(m, ServerMessage::Offer { .. })).await;
    assert_eq!(offer, ServerMessage::Offer { from: pid("bob"), sdp: "v=0 offer".into() });

    alice.send_text(r#"{"type":"answer","to":"bob","sdp":"v=0 answer"}"#).await;
    let answer = bob.expect(|m| matches!(m, ServerMessage::Answer { .. })).await;
    assert_eq!(answer, ServerMessage::Answer { from: pid("alice"), sdp: "v=0 answer".into() });

    alice
        .send_text(r#"{"type":"ice-candidate","to":"bob","candidate":{"candidate":"candidate:1 1 udp 1 10.0.0.1 5000 typ host","sdp_mid":"0","sdp_mline_index":0}}"#)
        .await;
    let ice = bob.expect(|m| matches!(m, ServerMessage::IceCandidate { .. })).await;
    assert_eq!(
        ice,
        ServerMessage::IceCandidate {
            from: pid("alice"),
            candidate: IceCandidate {
                candidate: "candidate:1 1 udp 1 10.0.0.1 5000 typ host".into(),
                sdp_mid: Some("0".into()),
                sdp_mline_index: Some(0),
            },
        }
    );

    let metrics = server.metrics().await;
    for ty in ["offer", "answer", "ice-candidate"] {
        assert!(
            metrics.contains(&format!("ro_p2p_relays_total{{type=\"{ty}\"}} 1\n")),
            "{metrics}"
        );
    }
    assert!(metrics.contains("ro_p2p_signaling_latency_seconds_count 3\n"), "{metrics}");
}

#[tokio::test]
async fn a_client_of_another_zone_cannot_reach_members() {
    let server = TestServer::open().await;
    let (mut alice, _) = server.joined("alice", "prontera").await;
    let (mut carol, _) = server.joined("carol", "geffen").await;

    carol.send_text(r#"{"type":"offer","to":"alice","sdp":"v=0 intrusion"}"#).await;
    let (code, _) = carol.expect_error().await;
    assert_eq!(code, ErrorCode::NotInSession);
    // Alice's next message is the answer to her own ping: nothing from Carol was queued before.
    alice.ping(1).await;
    // Carol's connection carries on.
    carol.ping(2).await;
}

#[tokio::test]
async fn reconnect_within_grace_keeps_the_seat_without_churn() {
    let server = TestServer::with_auth().await;
    let url = server.ws_url("/api/v1/signaling/ws");
    let bearer_a = format!("Bearer {}", token("2000001"));
    let bearer_b = format!("Bearer {}", token("2000002"));
    let mut a = Client::connect(&url, &[("Authorization", &bearer_a)]).await.unwrap();
    let mut b = Client::connect(&url, &[("Authorization", &bearer_b)]).await.unwrap();
    a.send(&join(None, "prontera")).await;
    let first = a.expect(|m| matches!(m, ServerMessage::SessionJoined { .. })).await;
    b.send(&join(None, "prontera")).await;
    b.expect(|m| matches!(m, ServerMessage::SessionJoined { .. })).await;
    a.expect(|m| matches!(m, ServerMessage::PeerJoined { .. })).await;

    // Bob's link drops (no leave); he comes back with the same account.
    drop(b);
    let mut b = Client::connect(&url, &[("Authorization", &bearer_b)]).await.unwrap();
    b.send(&join(None, "prontera")).await;
    let again = b.expect(|m| matches!(m, ServerMessage::SessionJoined { .. })).await;
    let (
        ServerMessage::SessionJoined { session_id: s1, .. },
        ServerMessage::SessionJoined { session_id: s2, resumed, peers, .. },
    ) = (first, again)
    else {
        unreachable!()
    };
    assert_eq!(s1, s2);
    assert!(resumed, "the seat was resumed");
    assert_eq!(peers, vec![pid("2000001")]);

    // Alice saw no peer-left / peer-joined churn: her next messages up to her pong are at most
    // host changes.
    a.send(&ro_p2p_core::wire::ClientMessage::Ping { nonce: Some(9) }).await;
    loop {
        match a.next().await.unwrap() {
            ServerMessage::Pong { nonce: Some(9) } => break,
            ServerMessage::HostChanged { .. } => continue,
            other => panic!("churn seen by the other member: {other:?}"),
        }
    }
}
