//! Bad input over the real socket: each gets its typed error or a close with a reason, and the
//! server and the other clients carry on.

mod common;

use common::*;
use futures_util::SinkExt;
use ro_p2p_core::coordinator::RateLimit;
use ro_p2p_core::wire::{ErrorCode, ServerMessage};
use ro_p2p_tokio::server::ServerConfig;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn malformed_unknown_and_invalid_frames_get_typed_errors() {
    let server = TestServer::open().await;
    let (mut bystander, _) = server.joined("bystander", "prontera").await;
    let (mut c, _) = server.joined("sender", "prontera").await;
    let cases: &[(&str, ErrorCode)] = &[
        ("{not json", ErrorCode::MalformedJson),
        ("[1,2,3]", ErrorCode::MalformedJson),
        (r#"{"type":"teleport","to":"x"}"#, ErrorCode::UnknownType),
        (r#"{"to":"bystander"}"#, ErrorCode::MissingField),
        (r#"{"type":"offer","sdp":"v=0"}"#, ErrorCode::MissingField),
        (r#"{"type":"join","zone":"bad zone"}"#, ErrorCode::BadValue),
        (r#"{"type":"offer","to":"nobody","sdp":"v=0"}"#, ErrorCode::NotInSession),
    ];
    for (frame, want) in cases {
        c.send_text(frame).await;
        let (code, message) = c.expect_error().await;
        assert_eq!(code, *want, "{frame} -> {message}");
    }
    c.ping(1).await;
    bystander.ping(2).await;
}

#[tokio::test]
async fn binary_frames_are_refused_with_bad_value() {
    let server = TestServer::open().await;
    let mut c = server.client().await;
    c.ws.send(Message::binary(vec![0u8, 1, 2, 3])).await.unwrap();
    let (code, message) = c.expect_error().await;
    assert_eq!(code, ErrorCode::BadValue);
    assert!(message.contains("binary"), "{message}");
    c.ping(1).await;
    let metrics = server.metrics().await;
    assert!(metrics.contains("ro_p2p_rejects_total{code=\"bad-value\"} 1\n"), "{metrics}");
}

#[tokio::test]
async fn a_one_mebibyte_frame_closes_that_connection_with_too_large() {
    let server = TestServer::open().await;
    let mut other = server.client().await;
    let mut c = server.client().await;
    let huge = format!(r#"{{"type":"offer","to":"x","sdp":"{}"}}"#, "a".repeat(1 << 20));
    // The server may stop reading mid-frame, so the send itself may fail.
    let _ = c.ws.send(Message::text(huge)).await;
    let (_, closed) = c.expect_close().await;
    assert_eq!(closed.code, Some(1009), "{closed:?}");
    assert_eq!(closed.error_code(), "too-large", "{closed:?}");
    other.ping(1).await;
    let metrics = server.metrics().await;
    assert!(metrics.contains("ro_p2p_rejects_total{code=\"too-large\"} 1\n"), "{metrics}");
}

#[tokio::test]
async fn a_flood_over_the_rate_limit_is_refused_then_closed() {
    let server = TestServer::open().await;
    let mut other = server.client().await;
    let mut c = server.client().await;
    for i in 0..200u64 {
        // The server closes the connection part way; later sends may fail.
        if c.ws.send(Message::text(format!(r#"{{"type":"ping","nonce":{i}}}"#))).await.is_err() {
            break;
        }
    }
    let (seen, closed) = c.expect_close().await;
    let limited =
        seen.iter().any(|m| matches!(m, ServerMessage::Error { code: ErrorCode::RateLimited, .. }));
    assert!(limited, "an error rate-limited before the close: {seen:?} {closed:?}");
    assert_eq!(closed.error_code(), "rate-limited", "{closed:?}");
    assert_eq!(closed.code, Some(1008));
    other.ping(1).await;
}

#[tokio::test]
async fn a_client_that_never_reads_is_closed_as_slow_consumer_and_others_carry_on() {
    let config = ServerConfig {
        outbound_queue_len: 16,
        core: ro_p2p_core::coordinator::Config {
            rate_limit: RateLimit { per_s: 100_000, burst: 100_000, strikes_max: 20 },
            ..Default::default()
        },
        ..ServerConfig::default()
    };
    let server = TestServer::start(config).await;
    let (stuck, _) = server.joined("stuck", "prontera").await;
    let (mut talker, _) = server.joined("talker", "prontera").await;
    let sdp = "a".repeat(30 * 1024);
    // ~30 MB towards a client that never reads: more than socket buffers plus the queue hold.
    for _ in 0..1000 {
        talker.send_text(&format!(r#"{{"type":"offer","to":"stuck","sdp":"{sdp}"}}"#)).await;
    }
    // The hub handled every offer before this pong, so the slow consumer is closed by now.
    talker.ping(1).await;
    let metrics = server.metrics().await;
    assert!(metrics.contains("ro_p2p_rejects_total{code=\"slow-consumer\"} 1\n"), "{metrics}");
    let fresh = server.client().await;
    drop(fresh);
    drop(stuck);
}

#[tokio::test]
async fn connections_beyond_max_connections_are_refused_with_server_full_and_the_rest_carry_on() {
    use tokio::io::AsyncReadExt;

    let server =
        TestServer::start(ServerConfig { max_connections: 2, ..ServerConfig::default() }).await;
    let mut a = server.client().await;
    let mut b = server.client().await;

    // The third upgrade is answered 503 with a typed body, and no WebSocket is opened.
    let url = server.ws_url("/api/v1/signaling/ws");
    let (status, body) = refused_upgrade(&url).await;
    assert_eq!(status, 503);
    assert_eq!(body["code"], "server-full", "{body}");
    a.ping(1).await;
    b.ping(2).await;
    let metrics = server.metrics().await;
    assert!(metrics.contains("ro_p2p_rejects_total{code=\"server-full\"} 1\n"), "{metrics}");

    // Once a connection's socket is closed, its place is free again.
    a.ws.close(None).await.unwrap();
    let mut tcp = a.ws.into_inner();
    let mut sink = Vec::new();
    tokio::time::timeout(WAIT, tcp.read_to_end(&mut sink)).await.unwrap().unwrap();
    let mut c = server.client().await;
    c.ping(3).await;
    b.ping(4).await;
}
