//! Test harness: a real coordinator on an ephemeral loopback port, real WebSocket clients
//! (tokio-tungstenite) and a minimal HTTP/1.1 client. Every wait has a timeout; nothing sleeps
//! to synchronise.
#![allow(dead_code, missing_docs)]

use std::net::SocketAddr;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use ro_p2p_core::Rng;
use ro_p2p_core::wire::{ClientMessage, ErrorCode, ServerMessage, decode_server, encode_client};
use ro_p2p_tokio::server::{ManualWallClock, ServerConfig, Service};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, http};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long any single expected event may take.
pub const WAIT: Duration = Duration::from_secs(5);
/// The wall clock tests run at (2027-01-15).
pub const NOW_UNIX_S: u64 = 1_800_000_000;
/// The JWT secret of authenticated test servers.
pub const SECRET: &str = "integration-test-secret";

pub struct TestServer {
    pub addr: SocketAddr,
    pub clock: Arc<ManualWallClock>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    pub async fn start(config: ServerConfig) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let clock = Arc::new(ManualWallClock::new(NOW_UNIX_S));
        let service = Service::start(config, Rng::from_seed(7), clock.clone()).unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(service.serve(
            listener,
            async move {
                let _ = rx.await;
            },
            Duration::from_secs(5),
        ));
        TestServer { addr, clock, shutdown: Some(tx), task: Some(task) }
    }

    pub async fn open() -> TestServer {
        TestServer::start(ServerConfig::default()).await
    }

    pub async fn with_auth() -> TestServer {
        TestServer::start(auth_config()).await
    }

    pub fn ws_url(&self, path_and_query: &str) -> String {
        format!("ws://{}{}", self.addr, path_and_query)
    }

    /// Triggers graceful shutdown and waits for `serve` to return.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(15), task).await.unwrap().unwrap().unwrap();
        }
    }

    pub async fn http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> HttpResponse {
        http(self.addr, method, path, headers, body).await
    }

    pub async fn get(&self, path: &str) -> HttpResponse {
        self.http("GET", path, &[], "").await
    }

    /// A connected client (auth off), already past `welcome`.
    pub async fn client(&self) -> Client {
        Client::connect(&self.ws_url("/api/v1/signaling/ws"), &[]).await.unwrap()
    }

    /// A client that joined `zone` as `peer_id` (auth off); returns it and its `session-joined`.
    pub async fn joined(&self, peer_id: &str, zone: &str) -> (Client, ServerMessage) {
        let mut c = self.client().await;
        c.send(&join(Some(peer_id), zone)).await;
        let joined = c.expect(|m| matches!(m, ServerMessage::SessionJoined { .. })).await;
        (c, joined)
    }

    pub async fn metrics(&self) -> String {
        let r = self.get("/metrics").await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.body
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub fn auth_config() -> ServerConfig {
    ServerConfig {
        require_authentication: true,
        jwt_secret: Some(SECRET.to_owned()),
        auth_deadline: Duration::from_millis(300),
        ..ServerConfig::default()
    }
}

/// An HS256 token for `sub`, valid for an hour from the test clock.
pub fn token(sub: &str) -> String {
    token_with(serde_json::json!({"sub": sub, "exp": NOW_UNIX_S + 3600}), SECRET)
}

pub fn token_with(claims: serde_json::Value, secret: &str) -> String {
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret.as_bytes()))
        .unwrap()
}

pub fn join(peer_id: Option<&str>, zone: &str) -> ClientMessage {
    serde_json::from_value(serde_json::json!({
        "type": "join",
        "peer_id": peer_id,
        "zone": zone,
    }))
    .unwrap()
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How a connection ended, as the client saw it.
#[derive(Debug)]
pub struct Closed {
    pub code: Option<u16>,
    pub reason: String,
}

impl Closed {
    /// The machine-readable code at the start of the reason.
    pub fn error_code(&self) -> &str {
        self.reason.split(':').next().unwrap_or("")
    }
}

pub struct Client {
    pub ws: Ws,
    /// The `welcome`, when the server sent one on connect.
    pub welcome: Option<ServerMessage>,
}

impl Client {
    /// Connects without waiting for anything.
    pub async fn raw(url: &str, headers: &[(&str, &str)]) -> Ws {
        let mut req = url.into_client_request().unwrap();
        for (k, v) in headers {
            req.headers_mut().insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                http::HeaderValue::from_str(v).unwrap(),
            );
        }
        let config = WebSocketConfig::default()
            .max_message_size(Some(8 << 20))
            .max_frame_size(Some(8 << 20));
        let (ws, _) = tokio::time::timeout(
            WAIT,
            tokio_tungstenite::connect_async_with_config(req, Some(config), true),
        )
        .await
        .expect("connect timed out")
        .expect("connect failed");
        ws
    }

    /// Connects and waits for `welcome` (or an error/close, returned as `Err`).
    pub async fn connect(
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<Client, (Vec<ServerMessage>, Closed)> {
        let ws = Client::raw(url, headers).await;
        let mut c = Client { ws, welcome: None };
        c.await_welcome().await?;
        Ok(c)
    }

    pub async fn await_welcome(&mut self) -> Result<(), (Vec<ServerMessage>, Closed)> {
        let mut seen = Vec::new();
        loop {
            match self.next().await {
                Ok(m @ ServerMessage::Welcome { .. }) => {
                    self.welcome = Some(m);
                    return Ok(());
                }
                Ok(m) => seen.push(m),
                Err(closed) => return Err((seen, closed)),
            }
        }
    }

    pub async fn send(&mut self, msg: &ClientMessage) {
        self.send_text(&encode_client(msg)).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        tokio::time::timeout(WAIT, self.ws.send(Message::text(text))).await.unwrap().unwrap();
    }

    /// The next protocol message, or how the connection ended.
    pub async fn next(&mut self) -> Result<ServerMessage, Closed> {
        loop {
            let item =
                tokio::time::timeout(WAIT, self.ws.next()).await.expect("no message in time");
            match item {
                Some(Ok(Message::Text(t))) => {
                    return Ok(decode_server(t.as_bytes()).expect("server sent an invalid frame"));
                }
                Some(Ok(Message::Close(frame))) => {
                    return Err(match frame {
                        Some(f) => {
                            Closed { code: Some(f.code.into()), reason: f.reason.to_string() }
                        }
                        None => Closed { code: None, reason: String::new() },
                    });
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => {
                    return Err(Closed { code: None, reason: format!("transport: {e}") });
                }
                None => return Err(Closed { code: None, reason: "eof".into() }),
            }
        }
    }

    /// Skips messages until one matches `pred`; panics on close or timeout.
    pub async fn expect(&mut self, pred: impl Fn(&ServerMessage) -> bool) -> ServerMessage {
        loop {
            match self.next().await {
                Ok(m) if pred(&m) => return m,
                Ok(_) => continue,
                Err(c) => panic!("closed while waiting: {c:?}"),
            }
        }
    }

    /// The next `error` message's code (skipping others).
    pub async fn expect_error(&mut self) -> (ErrorCode, String) {
        match self.expect(|m| matches!(m, ServerMessage::Error { .. })).await {
            ServerMessage::Error { code, message } => (code, message),
            _ => unreachable!(),
        }
    }

    /// Reads until the close frame; returns the messages seen before it.
    pub async fn expect_close(&mut self) -> (Vec<ServerMessage>, Closed) {
        let mut seen = Vec::new();
        loop {
            match self.next().await {
                Ok(m) => seen.push(m),
                Err(c) => return (seen, c),
            }
        }
    }

    /// A ping/pong round trip: proves the connection (and the hub) still serve this client.
    pub async fn ping(&mut self, nonce: u64) {
        self.send(&ClientMessage::Ping { nonce: Some(nonce) }).await;
        let pong = self.expect(|m| matches!(m, ServerMessage::Pong { .. })).await;
        assert_eq!(pong, ServerMessage::Pong { nonce: Some(nonce) });
    }
}

#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A minimal HTTP/1.1 request with `Connection: close`, reading the response to EOF.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> HttpResponse {
    let mut stream = tokio::time::timeout(WAIT, TcpStream::connect(addr)).await.unwrap().unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut raw)).await.unwrap().unwrap();
    parse_response(&raw)
}

pub fn parse_response(raw: &[u8]) -> HttpResponse {
    let text = String::from_utf8_lossy(raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("no header end");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status: u16 = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked { dechunk(body) } else { body.to_owned() };
    HttpResponse { status, headers, body }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

/// A child process killed on drop.
pub struct Proc(pub Child);

impl Proc {
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill").args([sig, &self.0.id().to_string()]).status().unwrap();
        assert!(status.success(), "kill {sig} failed");
    }

    /// SIGTERM, then waits (bounded) for the exit.
    pub fn stop(mut self) {
        self.signal("-TERM");
        for _ in 0..200 {
            if self.0.try_wait().unwrap().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("process did not stop");
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// An upgrade the server must refuse: its HTTP status and JSON body.
pub async fn refused_upgrade(url: &str) -> (u16, serde_json::Value) {
    use tokio_tungstenite::tungstenite::Error as WsError;
    let attempt = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url)).await;
    match attempt.expect("no answer to the upgrade in time") {
        Err(WsError::Http(response)) => {
            let body = response.body().clone().unwrap_or_default();
            let json = serde_json::from_slice(&body)
                .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&body)));
            (response.status().as_u16(), json)
        }
        Err(other) => panic!("refused the wrong way: {other}"),
        Ok(_) => panic!("the upgrade was accepted"),
    }
}

/// Two members of one session in `zone` that relay to each other: the bystanders a hostile
/// test checks are still served while it does its worst.
pub struct Bystanders {
    pub a: Client,
    pub b: Client,
    relayed: u64,
}

impl Bystanders {
    /// Joins `by-a` and `by-b` to `zone` (authentication off).
    pub async fn join(server: &TestServer, zone: &str) -> Bystanders {
        let (a, _) = server.joined("by-a", zone).await;
        let (b, _) = server.joined("by-b", zone).await;
        Bystanders { a, b, relayed: 0 }
    }

    /// Joins accounts `by-a` and `by-b` to `zone` with tokens (authentication on).
    pub async fn join_with_tokens(server: &TestServer, zone: &str) -> Bystanders {
        let url = server.ws_url("/api/v1/signaling/ws");
        let mut members = Vec::new();
        for account in ["by-a", "by-b"] {
            let bearer = format!("Bearer {}", token(account));
            let mut c = Client::connect(&url, &[("Authorization", &bearer)]).await.unwrap();
            c.send(&join(None, zone)).await;
            c.expect(|m| matches!(m, ServerMessage::SessionJoined { .. })).await;
            members.push(c);
        }
        let b = members.pop().unwrap();
        let a = members.pop().unwrap();
        Bystanders { a, b, relayed: 0 }
    }

    /// An offer from `by-a` reaches `by-b`, and an answer comes back.
    pub async fn relay(&mut self) {
        use ro_p2p_core::wire::PeerId;
        self.relayed += 1;
        let sdp = format!("v=0 relay {}", self.relayed);
        let to_b = PeerId::new("by-b").unwrap();
        self.a.send(&ClientMessage::Offer { to: to_b, sdp: sdp.clone() }).await;
        let got = self.b.expect(|m| matches!(m, ServerMessage::Offer { .. })).await;
        assert!(matches!(&got, ServerMessage::Offer { sdp: s, .. } if *s == sdp), "{got:?}");
        let to_a = PeerId::new("by-a").unwrap();
        self.b.send(&ClientMessage::Answer { to: to_a, sdp: sdp.clone() }).await;
        self.a.expect(|m| matches!(m, ServerMessage::Answer { .. })).await;
    }
}

/// A WebSocket opened by hand over a plain TCP stream, for frames no WebSocket library
/// writes: the stream after the `101` and the bytes already read past it.
pub async fn raw_websocket(addr: SocketAddr, path: &str, headers: &str) -> (TcpStream, Vec<u8>) {
    let mut stream = tokio::time::timeout(WAIT, TcpStream::connect(addr)).await.unwrap().unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{headers}\r\n"
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    loop {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(WAIT, stream.read(&mut chunk)).await.unwrap().unwrap();
        assert!(n > 0, "closed during the handshake: {:?}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            assert!(head.starts_with("HTTP/1.1 101"), "{head}");
            return (stream, buf[end + 4..].to_vec());
        }
    }
}

/// One frame as the server sent it (servers do not mask).
#[derive(Debug)]
pub struct RawFrame {
    pub opcode: u8,
    pub payload: Vec<u8>,
}

/// Reads server frames from `stream` (after `pending`, bytes already read) until a close
/// frame or the end of the stream; returns the frames, the close last if there was one.
pub async fn read_raw_frames(stream: &mut TcpStream, mut pending: Vec<u8>) -> Vec<RawFrame> {
    let mut frames = Vec::new();
    loop {
        // Parse whole frames off the front.
        while pending.len() >= 2 {
            let opcode = pending[0] & 0x0f;
            let (len, head) = match pending[1] & 0x7f {
                126 if pending.len() >= 4 => {
                    (usize::from(u16::from_be_bytes([pending[2], pending[3]])), 4)
                }
                126 => break,
                127 => panic!("a server frame over 64 KiB"),
                n => (usize::from(n), 2),
            };
            if pending.len() < head + len {
                break;
            }
            let payload = pending[head..head + len].to_vec();
            pending.drain(..head + len);
            frames.push(RawFrame { opcode, payload });
            if opcode == 8 {
                return frames;
            }
        }
        let mut chunk = [0u8; 4096];
        // A reset after the close counts as the end.
        let read = tokio::time::timeout(WAIT, stream.read(&mut chunk)).await;
        let n = read.expect("no frame in time").unwrap_or_default();
        if n == 0 {
            return frames;
        }
        pending.extend_from_slice(&chunk[..n]);
    }
}

/// A tool a test needs (redis-server, bash) is missing: under `CI=true` that is a failure (CI
/// installs every tool, so a missing one means the suite did not run); elsewhere the test
/// prints `SKIPPED: <what>` and returns.
pub fn skip_or_fail(what: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true but {what}: the suite cannot run");
    }
    eprintln!("SKIPPED: {what}");
}
