//! JWT authentication over the real socket: header, `?token=` and a first `auth` frame work;
//! missing, forged, expired and `alg: none` tokens get their typed error and a close.

mod common;

use base64::Engine as _;
use common::*;
use ro_p2p_core::wire::{ClientMessage, ErrorCode, ServerMessage};

async fn refused(server: &TestServer, url: &str, headers: &[(&str, &str)]) -> (ErrorCode, Closed) {
    let (seen, closed) = match Client::connect(url, headers).await {
        Ok(c) => panic!("accepted: {:?}", c.welcome),
        Err(x) => x,
    };
    let _ = server;
    let code = match seen.as_slice() {
        [ServerMessage::Error { code, .. }] => *code,
        other => panic!("expected one error before the close, got {other:?}"),
    };
    assert_eq!(closed.error_code(), code.as_str(), "{closed:?}");
    assert_eq!(closed.code, Some(1008));
    (code, closed)
}

fn welcome_peer(c: &Client) -> String {
    match &c.welcome {
        Some(ServerMessage::Welcome { peer_id, .. }) => peer_id.to_string(),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_valid_token_works_from_header_query_and_auth_frame() {
    let server = TestServer::with_auth().await;
    let url = server.ws_url("/api/v1/signaling/ws");
    let bearer = format!("Bearer {}", token("2000001"));
    let c = Client::connect(&url, &[("Authorization", &bearer)]).await.unwrap();
    assert_eq!(welcome_peer(&c), "2000001");

    let q = server.ws_url(&format!("/api/signaling/ws?token={}", token("2000002")));
    let c = Client::connect(&q, &[]).await.unwrap();
    assert_eq!(welcome_peer(&c), "2000002");

    let ws = Client::raw(&url, &[]).await;
    let mut c = Client { ws, welcome: None };
    c.send(&ClientMessage::Auth { token: token("2000003") }).await;
    c.await_welcome().await.unwrap();
    assert_eq!(welcome_peer(&c), "2000003");
    // The identity is the token's: a join cannot pick another peer id.
    c.send(&join(Some("someone-else"), "prontera")).await;
    match c.expect(|m| matches!(m, ServerMessage::SessionJoined { .. })).await {
        ServerMessage::SessionJoined { .. } => {}
        _ => unreachable!(),
    }
    let list = server.http("GET", "/api/v1/sessions/list", &[("Authorization", &bearer)], "").await;
    assert!(
        list.body.contains("\"2000003\"") && !list.body.contains("someone-else"),
        "{}",
        list.body
    );
}

#[tokio::test]
async fn bad_tokens_get_their_typed_error_and_a_close() {
    let server = TestServer::with_auth().await;
    let url = server.ws_url("/api/v1/signaling/ws");

    let forged =
        token_with(serde_json::json!({"sub": "1", "exp": NOW_UNIX_S + 3600}), "wrong-secret");
    let expired = token_with(serde_json::json!({"sub": "1", "exp": NOW_UNIX_S - 3600}), SECRET);
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let none = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"JWT"}"#),
        b64(&format!(r#"{{"sub":"1","exp":{}}}"#, NOW_UNIX_S + 3600))
    );
    let bad_sub =
        token_with(serde_json::json!({"sub": "has space", "exp": NOW_UNIX_S + 3600}), SECRET);
    for (t, want) in [
        (forged, ErrorCode::AuthInvalid),
        (expired, ErrorCode::AuthExpired),
        (none, ErrorCode::AuthInvalid),
        (bad_sub, ErrorCode::AuthInvalid),
        ("not-a-jwt".to_owned(), ErrorCode::AuthInvalid),
    ] {
        let bearer = format!("Bearer {t}");
        let (code, _) = refused(&server, &url, &[("Authorization", &bearer)]).await;
        assert_eq!(code, want, "{t}");
    }
    let metrics = server.metrics().await;
    assert!(metrics.contains("ro_p2p_rejects_total{code=\"auth-invalid\"} 4\n"), "{metrics}");
    assert!(metrics.contains("ro_p2p_rejects_total{code=\"auth-expired\"} 1\n"), "{metrics}");
}

#[tokio::test]
async fn no_token_means_auth_required_after_the_deadline_or_a_wrong_first_frame() {
    let server = TestServer::with_auth().await;
    let url = server.ws_url("/api/v1/signaling/ws");
    // Silent client: closed when the (300 ms in tests) deadline passes.
    let (code, _) = refused(&server, &url, &[]).await;
    assert_eq!(code, ErrorCode::AuthRequired);

    // A first frame other than `auth`.
    let ws = Client::raw(&url, &[]).await;
    let mut c = Client { ws, welcome: None };
    c.send(&join(Some("x"), "prontera")).await;
    let (seen, closed) = c.expect_close().await;
    assert!(
        matches!(seen.as_slice(), [ServerMessage::Error { code: ErrorCode::AuthRequired, .. }]),
        "{seen:?}"
    );
    assert_eq!(closed.error_code(), "auth-required");

    // An `auth` frame with an expired token.
    let ws = Client::raw(&url, &[]).await;
    let mut c = Client { ws, welcome: None };
    let expired = token_with(serde_json::json!({"sub": "1", "exp": NOW_UNIX_S - 100}), SECRET);
    c.send(&ClientMessage::Auth { token: expired }).await;
    let (_, closed) = c.expect_close().await;
    assert_eq!(closed.error_code(), "auth-expired");

    let metrics = server.metrics().await;
    assert!(metrics.contains("ro_p2p_rejects_total{code=\"auth-required\"} 2\n"), "{metrics}");
}

#[tokio::test]
async fn login_validates_the_token_and_returns_turn_credentials() {
    let mut config = auth_config();
    config.ice.stun_servers = vec!["stun:stun.example.org:3478".into()];
    config.ice.turn_servers = vec![ro_p2p_tokio::server::TurnServer {
        url: "turn:turn.example.org:3478".into(),
        ..Default::default()
    }];
    config.ice.turn_shared_secret = Some("turn-secret".into());
    config.ice.turn_credential_ttl_s = 600;
    let server = TestServer::start(config).await;

    let body = format!(r#"{{"token":"{}"}}"#, token("2000001"));
    let r = server
        .http("POST", "/api/v1/auth/login", &[("Content-Type", "application/json")], &body)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["peer_id"], "2000001");
    assert_eq!(v["websocket_url"], format!("ws://{}/api/v1/signaling/ws", server.addr));
    let (user, pass) = ro_p2p_tokio::server::auth::turn_rest_credentials(
        b"turn-secret",
        "2000001",
        NOW_UNIX_S + 600,
    );
    assert_eq!(v["ice_servers"][0]["urls"][0], "stun:stun.example.org:3478");
    assert_eq!(v["ice_servers"][1]["username"], user);
    assert_eq!(v["ice_servers"][1]["credential"], pass);
    assert_eq!(user, format!("{}:2000001", NOW_UNIX_S + 600));

    // The bearer header works too.
    let bearer = format!("Bearer {}", token("2000009"));
    let r = server.http("POST", "/api/v1/auth/login", &[("Authorization", &bearer)], "").await;
    assert_eq!(r.json()["peer_id"], "2000009");

    for (headers, body, code) in [
        (vec![], String::new(), "auth-required"),
        (vec![], r#"{"token":"forged.token.here"}"#.to_owned(), "auth-invalid"),
        (
            vec![],
            format!(
                r#"{{"token":"{}"}}"#,
                token_with(serde_json::json!({"sub":"1","exp":1}), SECRET)
            ),
            "auth-expired",
        ),
    ] {
        let r = server.http("POST", "/api/v1/auth/login", &headers, &body).await;
        assert_eq!(r.status, 401, "{}", r.body);
        assert_eq!(r.json()["code"], code);
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    }
    let r = server.http("POST", "/api/v1/auth/login", &[], "{oops").await;
    assert_eq!((r.status, r.json()["code"].as_str()), (400, Some("malformed-json")));
}

#[tokio::test]
async fn the_auth_deadline_counts_from_the_upgrade_and_waiting_connections_are_counted() {
    use futures_util::{SinkExt, StreamExt};
    use std::time::Duration;
    use tokio_tungstenite::tungstenite::Message;

    let deadline = Duration::from_millis(600);
    let config = ro_p2p_tokio::server::ServerConfig { auth_deadline: deadline, ..auth_config() };
    let server = TestServer::start(config).await;
    let mut bystanders = Bystanders::join_with_tokens(&server, "prontera").await;
    let url = server.ws_url("/api/v1/signaling/ws");

    let started = tokio::time::Instant::now();
    let mut ws = Client::raw(&url, &[]).await;
    // The connection waits for its `auth` frame: health and metrics show it.
    let health = server.get("/api/v1/health").await.json();
    assert_eq!(health["connections_pending_auth"], 1, "{health}");
    assert_eq!(health["connections"], 2, "{health}");
    let metrics = server.metrics().await;
    assert!(metrics.contains("\nro_p2p_connections_pending_auth 1\n"), "{metrics}");
    assert!(metrics.contains("\nro_p2p_connections_open 3\n"), "{metrics}");

    // A ping every 100 ms used to restart the wait; now the close comes at the deadline.
    let mut pings = tokio::time::interval(Duration::from_millis(100));
    let closed = loop {
        tokio::select! {
            _ = pings.tick() => {
                if ws.send(Message::Ping(vec![1].into())).await.is_err() {
                    break None;
                }
            }
            msg = ws.next() => match msg {
                Some(Ok(Message::Close(frame))) => break frame,
                Some(Ok(_)) => {}
                _ => break None,
            },
        }
        assert!(started.elapsed() < WAIT, "still open after {:?}", started.elapsed());
    };
    let elapsed = started.elapsed();
    let frame = closed.expect("a close frame");
    assert!(frame.reason.starts_with("auth-required"), "{frame:?}");
    assert!(elapsed >= deadline, "closed after {elapsed:?}, before the deadline");
    assert!(elapsed < deadline * 3, "closed after {elapsed:?}: the pings moved the deadline");
    bystanders.relay().await;
    let health = server.get("/api/v1/health").await.json();
    assert_eq!(health["connections_pending_auth"], 0, "{health}");
}

#[tokio::test]
async fn an_alg_none_token_is_refused_for_its_algorithm() {
    let server = TestServer::with_auth().await;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let none = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"JWT"}"#),
        b64(&format!(r#"{{"sub":"1","exp":{}}}"#, NOW_UNIX_S + 3600))
    );
    let bearer = format!("Bearer {none}");
    let url = server.ws_url("/api/v1/signaling/ws");
    let (seen, _) = match Client::connect(&url, &[("Authorization", &bearer)]).await {
        Ok(_) => panic!("accepted"),
        Err(x) => x,
    };
    match seen.as_slice() {
        [ServerMessage::Error { code: ErrorCode::AuthInvalid, message }] => {
            assert!(message.contains("algorithm \"none\""), "{message}");
            assert!(!message.contains("claims"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}
