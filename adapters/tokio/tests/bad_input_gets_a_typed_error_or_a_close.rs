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

/// Reads until the close; returns the error codes seen before it and the close.
async fn errors_then_close(c: &mut Client) -> (Vec<ErrorCode>, Closed) {
    let (seen, closed) = c.expect_close().await;
    let codes = seen
        .iter()
        .filter_map(|m| match m {
            ServerMessage::Error { code, .. } => Some(*code),
            _ => None,
        })
        .collect();
    (codes, closed)
}

#[tokio::test]
async fn binary_frames_and_websocket_pings_count_against_the_rate_limit() {
    let server = TestServer::open().await;
    let mut bystanders = Bystanders::join(&server, "prontera").await;
    let strikes_max = ServerConfig::default().core.rate_limit.strikes_max as usize;

    // 600 binary frames in one write: each refused frame is a strike, and the strikes close
    // the connection long before the 600th.
    let mut c = server.client().await;
    for _ in 0..600 {
        c.ws.feed(Message::binary(vec![0u8; 16])).await.unwrap();
    }
    // The server closes part way; the flush may or may not see it.
    let _ = c.ws.flush().await;
    let (codes, closed) = errors_then_close(&mut c).await;
    assert_eq!(closed.error_code(), "rate-limited", "{closed:?}");
    assert_eq!(closed.code, Some(1008));
    assert!(codes.iter().all(|c| *c == ErrorCode::BadValue), "{codes:?}");
    assert!(codes.len() <= strikes_max, "{} errors for 600 frames", codes.len());
    bystanders.relay().await;

    // 600 WebSocket pings: over the burst they are over the rate, then closed.
    let mut c = server.client().await;
    for i in 0..600u32 {
        c.ws.feed(Message::Ping(i.to_be_bytes().to_vec().into())).await.unwrap();
    }
    let _ = c.ws.flush().await;
    let (codes, closed) = errors_then_close(&mut c).await;
    assert_eq!(codes, vec![ErrorCode::RateLimited], "one rate-limited error, then the close");
    assert_eq!(closed.error_code(), "rate-limited", "{closed:?}");
    bystanders.relay().await;
}

#[tokio::test]
async fn a_text_frame_that_is_not_utf8_gets_malformed_json_and_a_close() {
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

    let server = TestServer::open().await;
    let mut bystanders = Bystanders::join(&server, "prontera").await;
    let mut c = server.client().await;
    let frame = Frame::message(vec![b'{', 0xff, 0xfe, b'}'], OpCode::Data(Data::Text), true);
    c.ws.send(Message::Frame(frame)).await.unwrap();
    let (codes, closed) = errors_then_close(&mut c).await;
    assert_eq!(codes, vec![ErrorCode::MalformedJson]);
    assert_eq!(closed.code, Some(1007), "{closed:?}");
    assert_eq!(closed.error_code(), "malformed-json", "{closed:?}");
    bystanders.relay().await;
    let metrics = server.metrics().await;
    assert!(metrics.contains("ro_p2p_rejects_total{code=\"malformed-json\"} 1\n"), "{metrics}");
}

#[tokio::test]
async fn a_client_close_is_answered_and_protocol_violations_close_with_1002() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    let server = TestServer::open().await;
    let mut bystanders = Bystanders::join(&server, "prontera").await;

    // A normal close gets the server's close frame back (RFC 6455 5.5.1), not a dropped TCP.
    let mut c = server.client().await;
    c.ws.close(Some(CloseFrame { code: CloseCode::Normal, reason: "bye".into() })).await.unwrap();
    let reply = tokio::time::timeout(WAIT, c.ws.next()).await.expect("no close reply in time");
    match reply {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::Normal),
        other => panic!("expected the server's close frame, got {other:?}"),
    }
    bystanders.relay().await;

    // Frames that break RFC 6455, written by hand (the first two bytes; masked unless said).
    let key = [1u8, 2, 3, 4];
    let masked = |b0: u8, payload: &[u8]| {
        let mut f = vec![b0, 0x80 | payload.len() as u8];
        f.extend_from_slice(&key);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        f
    };
    let cases: [(&str, Vec<u8>); 3] = [
        ("unmasked", vec![0x81, 0x02, b'h', b'i']),
        ("reserved bit", masked(0x81 | 0x40, b"hi")),
        ("reserved opcode", masked(0x83, b"hi")),
    ];
    for (what, bytes) in cases {
        let (mut tcp, pending) = raw_websocket(server.addr, "/api/v1/signaling/ws", "").await;
        tokio::io::AsyncWriteExt::write_all(&mut tcp, &bytes).await.unwrap();
        let frames = read_raw_frames(&mut tcp, pending).await;
        let close = frames.last().filter(|f| f.opcode == 8);
        let close = close.unwrap_or_else(|| panic!("{what}: no close frame in {frames:?}"));
        let code = u16::from_be_bytes([close.payload[0], close.payload[1]]);
        assert_eq!(code, 1002, "{what}: {:?}", String::from_utf8_lossy(&close.payload[2..]));
        bystanders.relay().await;
    }
}

#[tokio::test]
async fn a_member_that_never_reads_is_closed_by_the_bytes_it_leaves_queued() {
    let config = ServerConfig {
        // Only the byte cap can act: the frame cap is far away.
        outbound_queue_len: 100_000,
        core: ro_p2p_core::coordinator::Config {
            outbound_queue_bytes_max: 256 * 1024,
            rate_limit: RateLimit { per_s: 100_000, burst: 100_000, strikes_max: 20 },
            ..Default::default()
        },
        ..ServerConfig::default()
    };
    let server = TestServer::start(config).await;
    let mut bystanders = Bystanders::join(&server, "geffen").await;
    let (stuck, _) = server.joined("stuck", "prontera").await;
    let (mut talker, _) = server.joined("talker", "prontera").await;
    let sdp = "a".repeat(32 * 1024);
    // 300 offers of 32 KiB (~10 MB): more than the socket buffers and the 256 KiB cap hold.
    for _ in 0..300 {
        talker.send_text(&format!(r#"{{"type":"offer","to":"stuck","sdp":"{sdp}"}}"#)).await;
    }
    // The hub handled every offer before this pong, so the slow consumer is closed by now.
    talker.ping(1).await;
    bystanders.relay().await;
    let metrics = server.metrics().await;
    assert!(metrics.contains("ro_p2p_rejects_total{code=\"slow-consumer\"} 1\n"), "{metrics}");
    drop(stuck);
}

#[tokio::test]
async fn connect_join_close_cycles_leave_bounded_seats_sessions_and_labels() {
    let server = TestServer::open().await;
    let mut bystanders = Bystanders::join(&server, "prontera").await;
    let per_address = ServerConfig::default().core.grace_seats_per_origin_max;
    let cycles = 3 * per_address;
    for i in 0..cycles {
        let (mut c, _) = server.joined(&format!("cycler-{i}"), &format!("z{i}")).await;
        c.ws.close(None).await.unwrap();
        let (_, closed) = c.expect_close().await;
        assert_ne!(closed.reason, "eof", "the close is answered");
    }
    // Wait (bounded) until the hub has handled every disconnect.
    let mut metrics = String::new();
    for _ in 0..200 {
        metrics = server.metrics().await;
        if metrics.contains("\nro_p2p_connections 2\n") {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(metrics.contains("\nro_p2p_connections 2\n"), "{metrics}");
    let gauge = |name: &str| -> usize {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {metrics}"))
    };
    assert_eq!(gauge("ro_p2p_seats_in_grace"), per_address, "grace is bounded per address");
    let zone_labels = metrics.lines().filter(|l| l.starts_with("ro_p2p_sessions{zone=")).count();
    assert_eq!(zone_labels, per_address + 1, "zones without a session leave /metrics");
    let list = server.get("/api/v1/sessions/list").await.json();
    assert_eq!(list["sessions"].as_array().unwrap().len(), per_address + 1);
    bystanders.relay().await;
}
