//! Every REST endpoint over real HTTP, with its JSON errors and statuses, and `/metrics` as
//! valid Prometheus text.

mod common;

use common::*;
use ro_p2p_tokio::server::ServerConfig;

#[tokio::test]
async fn health_reports_status_uptime_connections_and_sessions() {
    let server = TestServer::open().await;
    let (_a, _) = server.joined("alice", "prontera").await;
    let r = server.get("/api/v1/health").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["connections"], 1);
    assert_eq!(v["sessions"], 1);
    assert!(v["uptime_s"].is_u64());
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
}

#[tokio::test]
async fn discover_list_and_detail_show_sessions() {
    let server = TestServer::open().await;
    let (_a, _) = server.joined("alice", "prontera").await;
    let (_b, _) = server.joined("bob", "prontera").await;
    let (_c, _) = server.joined("carol", "geffen").await;

    let r = server.get("/api/v1/sessions/discover?zone=prontera").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["zone"], "prontera");
    let sessions = v["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["members"], serde_json::json!(["alice", "bob"]));
    let sid = sessions[0]["session_id"].as_str().unwrap().to_owned();

    let r = server.get("/api/v1/sessions/list").await;
    let all = r.json()["sessions"].as_array().unwrap().clone();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0]["zone"], "geffen", "by zone then id");

    let r = server.get(&format!("/api/v1/sessions/{sid}")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["connected"], serde_json::json!(["alice", "bob"]));

    let r = server.get("/api/v1/sessions/no-such-session").await;
    assert_eq!((r.status, r.json()["code"].as_str()), (404, Some("session-not-found")));
    let r = server.get("/api/v1/sessions/bad%20id").await;
    assert_eq!((r.status, r.json()["code"].as_str()), (400, Some("bad-value")));
}

#[tokio::test]
async fn discover_rejects_bad_or_missing_zones() {
    let server = TestServer::open().await;
    let r = server.get("/api/v1/sessions/discover?zone=not%20a%20zone").await;
    assert_eq!((r.status, r.json()["code"].as_str()), (400, Some("bad-value")));
    let r = server.get("/api/v1/sessions/discover?zone=averyveryverylongzone").await;
    assert_eq!((r.status, r.json()["code"].as_str()), (400, Some("bad-value")));
    let r = server.get("/api/v1/sessions/discover").await;
    assert_eq!((r.status, r.json()["code"].as_str()), (400, Some("missing-field")));
    let r = server.get("/api/v1/sessions/discover?zone=payon").await;
    assert_eq!(r.json()["sessions"], serde_json::json!([]));
}

#[tokio::test]
async fn join_reports_placement_and_zone_full() {
    let config = ServerConfig {
        core: ro_p2p_core::coordinator::Config {
            max_sessions_per_zone: 1,
            max_players_per_session: 2,
            ..Default::default()
        },
        ..ServerConfig::default()
    };
    let server = TestServer::start(config).await;
    let post = |body: &'static str| {
        let server = &server;
        async move {
            server
                .http(
                    "POST",
                    "/api/v1/sessions/join",
                    &[("Content-Type", "application/json")],
                    body,
                )
                .await
        }
    };
    let r = post(r#"{"zone":"prontera"}"#).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["placement"], "new");

    let (_a, joined) = server.joined("alice", "prontera").await;
    let ro_p2p_core::wire::ServerMessage::SessionJoined { session_id, .. } = joined else {
        unreachable!()
    };
    let r = post(r#"{"zone":"prontera"}"#).await;
    assert_eq!(r.json()["placement"], "existing");
    assert_eq!(r.json()["session_id"], session_id.as_str());

    let (_b, _) = server.joined("bob", "prontera").await;
    let r = post(r#"{"zone":"prontera"}"#).await;
    assert_eq!((r.status, r.json()["code"].as_str()), (409, Some("zone-full")), "{}", r.body);

    let r = post("{oops").await;
    assert_eq!((r.status, r.json()["code"].as_str()), (400, Some("malformed-json")));
    let r = post(r#"{"zone":"bad zone"}"#).await;
    assert_eq!((r.status, r.json()["code"].as_str()), (400, Some("bad-value")));
    let r = post(r#"{}"#).await;
    assert_eq!((r.status, r.json()["code"].as_str()), (400, Some("missing-field")));
}

#[tokio::test]
async fn session_endpoints_need_a_token_when_auth_is_on() {
    let server = TestServer::with_auth().await;
    for path in
        ["/api/v1/sessions/list", "/api/v1/sessions/discover?zone=prontera", "/api/v1/sessions/x"]
    {
        let r = server.get(path).await;
        assert_eq!((r.status, r.json()["code"].as_str()), (401, Some("auth-required")), "{path}");
    }
    let bearer = format!("Bearer {}", token("2000001"));
    let r = server.http("GET", "/api/v1/sessions/list", &[("Authorization", &bearer)], "").await;
    assert_eq!(r.status, 200);
    // Health and metrics stay open for probes.
    assert_eq!(server.get("/api/v1/health").await.status, 200);
    assert_eq!(server.get("/metrics").await.status, 200);
}

#[tokio::test]
async fn unknown_paths_are_json_404s_and_plain_http_on_the_websocket_path_is_400() {
    let server = TestServer::open().await;
    let r = server.get("/nope").await;
    assert_eq!((r.status, r.json()["code"].as_str()), (404, Some("not-found")));
    let r = server.get("/api/v1/signaling/ws").await;
    assert_eq!((r.status, r.json()["code"].as_str()), (400, Some("bad-value")));
}

/// Checks the Prometheus text exposition format line by line.
fn parse_prometheus(text: &str) -> Vec<(String, f64)> {
    let mut samples = Vec::new();
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            && !n.starts_with(|c: char| c.is_ascii_digit())
    };
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let kind = parts.next().unwrap();
            assert!(kind == "HELP" || kind == "TYPE", "{line}");
            assert!(name_ok(parts.next().unwrap()), "{line}");
            if kind == "TYPE" {
                let t = parts.next().unwrap();
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&t),
                    "{line}"
                );
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value in {line}"));
        let name = match series.split_once('{') {
            Some((name, labels)) => {
                let labels = labels.strip_suffix('}').unwrap_or_else(|| panic!("{line}"));
                for pair in labels.split(',') {
                    let (k, v) = pair.split_once('=').unwrap_or_else(|| panic!("{line}"));
                    assert!(name_ok(k), "{line}");
                    assert!(v.starts_with('"') && v.ends_with('"') && v.len() >= 2, "{line}");
                }
                name
            }
            None => series,
        };
        assert!(name_ok(name), "{line}");
        samples.push((series.to_owned(), value));
    }
    samples
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text_and_cover_the_operators_needs() {
    let server = TestServer::open().await;
    let (mut a, _) = server.joined("alice", "prontera").await;
    let (_b, _) = server.joined("bob", "prontera").await;
    a.send_text(r#"{"type":"offer","to":"bob","sdp":"v=0"}"#).await;
    a.send_text(r#"{"type":"offer","to":"nobody","sdp":"v=0"}"#).await;
    a.expect_error().await;
    let r = server.get("/metrics").await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/plain; version=0.0.4"));
    let samples = parse_prometheus(&r.body);
    let get = |s: &str| samples.iter().find(|(k, _)| k == s).map(|(_, v)| *v);
    assert_eq!(get("ro_p2p_connections"), Some(2.0));
    assert_eq!(get("ro_p2p_sessions{zone=\"prontera\"}"), Some(1.0));
    assert_eq!(get("ro_p2p_players{zone=\"prontera\"}"), Some(2.0));
    assert_eq!(get("ro_p2p_joins_total"), Some(2.0));
    assert_eq!(get("ro_p2p_leaves_total"), Some(0.0));
    assert_eq!(get("ro_p2p_relays_total{type=\"offer\"}"), Some(1.0));
    assert_eq!(get("ro_p2p_rejects_total{code=\"not-in-session\"}"), Some(1.0));
    assert_eq!(get("ro_p2p_signaling_latency_seconds_count"), Some(1.0));
    assert_eq!(get("ro_p2p_signaling_latency_seconds_bucket{le=\"+Inf\"}"), Some(1.0));
}

/// Sends `head` (request line and headers, without the blank line) and `body`, then reads the
/// response to the end.
async fn raw_http(server: &TestServer, head: &str, body: &[u8]) -> HttpResponse {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(format!("{head}\r\n\r\n").as_bytes()).await.unwrap();
    // The server may answer (and close) before it has read everything.
    let _ = stream.write_all(body).await;
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut raw)).await.expect("no answer");
    parse_response(&raw)
}

fn assert_json_error(r: &HttpResponse, status: u16, code: &str) {
    assert_eq!(r.status, status, "{r:?}");
    assert_eq!(r.header("content-type"), Some("application/json"), "{r:?}");
    let v = r.json();
    assert_eq!(v["code"], code, "{v}");
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
}

#[tokio::test]
async fn errors_the_framework_answers_are_json_too() {
    let server = TestServer::open().await;
    let mut bystanders = Bystanders::join(&server, "prontera").await;
    let host = format!("Host: {}\r\nConnection: close", server.addr);

    // A path segment that is not UTF-8.
    let r = server.get("/api/v1/sessions/%ff%fe").await;
    assert_json_error(&r, 400, "bad-value");

    // Bodies over the limit (10 MB announced; the server stops reading at the limit).
    for path in ["/api/v1/sessions/join", "/api/v1/auth/login"] {
        let head = format!("POST {path} HTTP/1.1\r\n{host}\r\nContent-Length: 10000000");
        let r = raw_http(&server, &head, &vec![b' '; 64 * 1024 + 1]).await;
        assert_json_error(&r, 413, "too-large");
    }
    bystanders.relay().await;

    // Wrong methods.
    for (method, path) in [("DELETE", "/api/v1/health"), ("GET", "/api/v1/sessions/join")] {
        let r = server.http(method, path, &[], "").await;
        assert_json_error(&r, 405, "method-not-allowed");
        assert!(r.header("allow").is_some(), "{r:?}");
    }

    // Oversized headers: one huge field, and too many fields.
    let huge = "x".repeat(40 * 1024);
    let r =
        raw_http(&server, &format!("GET /api/v1/health HTTP/1.1\r\n{host}\r\nX-Big: {huge}"), b"")
            .await;
    assert_json_error(&r, 431, "too-large");
    let many: String = (0..150).map(|i| format!("\r\nX-H{i}: v")).collect();
    let r = raw_http(&server, &format!("GET /api/v1/health HTTP/1.1\r\n{host}{many}"), b"").await;
    assert_json_error(&r, 431, "too-large");
    bystanders.relay().await;
    assert_eq!(server.get("/api/v1/health").await.status, 200);
}

#[tokio::test]
async fn login_builds_websocket_url_from_the_public_url_not_the_host_header() {
    let config = ServerConfig {
        public_url: Some("wss://coord.example.org:8443".into()),
        ..ServerConfig::default()
    };
    let server = TestServer::start(config).await;
    let head = "POST /api/v1/auth/login HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\
                Content-Length: 0";
    let r = raw_http(&server, head, b"").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["websocket_url"], "wss://coord.example.org:8443/api/v1/signaling/ws");

    // Without one, Host is used, but only when it looks like a host.
    let server = TestServer::open().await;
    let head = "POST /api/v1/auth/login HTTP/1.1\r\nHost: a\"b<script>\r\nConnection: close\r\n\
                Content-Length: 0";
    let r = raw_http(&server, head, b"").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["websocket_url"], "ws://127.0.0.1:8001/api/v1/signaling/ws");
}

#[tokio::test]
async fn login_says_wss_behind_a_trusted_tls_proxy_only() {
    let login = |extra: &str| {
        format!(
            "POST /api/v1/auth/login HTTP/1.1\r\nHost: coord.example\r\nConnection: close\r\n\
             {extra}Content-Length: 0"
        )
    };
    let trusted = TestServer::start(ServerConfig {
        trusted_proxies: vec!["127.0.0.1".parse().unwrap()],
        ..ServerConfig::default()
    })
    .await;
    for header in [
        "X-Forwarded-Proto: https\r\n",
        "Forwarded: for=192.0.2.60;proto=https;by=203.0.113.43\r\n",
        "Forwarded: proto=\"HTTPS\", for=10.0.0.1\r\n",
    ] {
        let r = raw_http(&trusted, &login(header), b"").await;
        assert_eq!(
            r.json()["websocket_url"],
            "wss://coord.example/api/v1/signaling/ws",
            "{header}"
        );
    }
    for header in ["", "X-Forwarded-Proto: http\r\n", "Forwarded: for=1.2.3.4;proto=http\r\n"] {
        let r = raw_http(&trusted, &login(header), b"").await;
        assert_eq!(r.json()["websocket_url"], "ws://coord.example/api/v1/signaling/ws", "{header}");
    }
    // The same header from an address that is not a trusted proxy is the client's word.
    let untrusted = TestServer::open().await;
    let r = raw_http(&untrusted, &login("X-Forwarded-Proto: https\r\n"), b"").await;
    assert_eq!(r.json()["websocket_url"], "ws://coord.example/api/v1/signaling/ws");
}
