//! Helpers of the `rathena` authentication mode tests: the coordinator configured against the
//! harness's MariaDB through the read-only user `docs/operating.md` prescribes, a raw signaling
//! client that presents a credential and reports what became of it, a TCP relay in front of
//! the database that a test can cut (the database unreachable) and restore, and plain HTTP GETs
//! for health and metrics.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use ro_p2p_core::config::RathenaAuthSettings;
use ro_p2p_rathena::Harness;
use ro_p2p_tokio::server::ServerConfig;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use super::ANSWER;

/// The read-only user of `docs/operating.md`, with exactly the grant documented there.
pub const DB_USER: &str = "ro_p2p_auth";
/// Its password.
pub const DB_PASSWORD: &str = "read-only pw";

/// Creates [`DB_USER`] with the documented column-level `SELECT` grant on `login`.
pub fn create_read_only_user(h: &Harness) {
    h.sql(&format!(
        "CREATE USER '{DB_USER}'@'127.0.0.1' IDENTIFIED BY '{DB_PASSWORD}'; \
         GRANT SELECT (account_id, web_auth_token, web_auth_token_enabled, sex) \
         ON ragnarok.login TO '{DB_USER}'@'127.0.0.1';"
    ))
    .unwrap();
}

/// The database URL of the read-only user on `port` (the harness's, or a relay's).
pub fn db_url(port: u16) -> String {
    format!("mysql://{DB_USER}:read-only%20pw@127.0.0.1:{port}/ragnarok")
}

/// The port of the harness's MariaDB.
pub fn db_port(h: &Harness) -> u16 {
    h.ports().db
}

/// A coordinator configuration in mode `rathena`.
pub fn rathena_config(
    database_url: &str,
    recheck_interval_s: u64,
    failed_burst: u32,
) -> ServerConfig {
    let mut r = RathenaAuthSettings::new(database_url);
    r.recheck_interval_s = recheck_interval_s;
    r.failed_checks_burst = failed_burst;
    r.query_timeout_ms = 2_000;
    ServerConfig { require_authentication: true, rathena_auth: Some(r), ..ServerConfig::default() }
}

/// What became of a signaling connection that presented a credential.
#[derive(Debug)]
pub enum Attempt {
    /// Admitted: the `welcome`'s peer id, and the open connection.
    Admitted(String, Box<Signal>),
    /// Refused: the error code (from the `error` frame or the close reason).
    Refused(String),
}

impl Attempt {
    /// The refusal code; panics when admitted.
    pub fn code(self) -> String {
        match self {
            Attempt::Refused(code) => code,
            Attempt::Admitted(peer, _) => panic!("admitted as {peer}, expected a refusal"),
        }
    }

    /// The open connection; panics when refused.
    pub fn admitted(self) -> (String, Signal) {
        match self {
            Attempt::Admitted(peer, s) => (peer, *s),
            Attempt::Refused(code) => panic!("refused with {code}, expected admission"),
        }
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// A raw signaling connection.
#[derive(Debug)]
pub struct Signal(Ws);

/// What the next event on a [`Signal`] was.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// A JSON text frame.
    Frame(serde_json::Value),
    /// The connection closed; the code is the first word of the close reason.
    Closed(String),
}

impl Signal {
    /// The next frame or the close (bounded by `bound`; `None` when nothing came).
    pub async fn next(&mut self, bound: Duration) -> Option<Next> {
        loop {
            let msg = match tokio::time::timeout(bound, self.0.next()).await {
                Err(_) => return None,
                Ok(None | Some(Err(_))) => return Some(Next::Closed(String::new())),
                Ok(Some(Ok(m))) => m,
            };
            match msg {
                Message::Text(t) => return Some(Next::Frame(serde_json::from_str(&t).unwrap())),
                Message::Close(frame) => {
                    let reason = frame.map(|f| f.reason.to_string()).unwrap_or_default();
                    let code = reason.split(':').next().unwrap_or("").to_owned();
                    return Some(Next::Closed(code));
                }
                _ => continue,
            }
        }
    }

    /// Sends one JSON frame.
    pub async fn send(&mut self, v: serde_json::Value) {
        self.0.send(Message::Text(v.to_string().into())).await.unwrap();
    }

    /// Joins `zone` and returns the `session-joined` frame.
    pub async fn join(&mut self, zone: &str) -> serde_json::Value {
        self.send(serde_json::json!({"type": "join", "zone": zone})).await;
        loop {
            match self.next(ANSWER).await {
                Some(Next::Frame(f)) if f["type"] == "session-joined" => return f,
                Some(Next::Frame(_)) => continue,
                other => panic!("no session-joined: {other:?}"),
            }
        }
    }

    /// Waits (bounded by [`ANSWER`]) for a frame of type `ty`, skipping others; `None` when the
    /// connection closed or nothing came.
    pub async fn frame(&mut self, ty: &str) -> Option<serde_json::Value> {
        loop {
            match self.next(ANSWER).await? {
                Next::Frame(f) if f["type"] == ty => return Some(f),
                Next::Frame(_) => continue,
                Next::Closed(_) => return None,
            }
        }
    }

    /// Waits (bounded) for the close and returns its code, skipping frames.
    pub async fn closed(&mut self, bound: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + bound;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await? {
                Next::Closed(code) => return Some(code),
                Next::Frame(_) => continue,
            }
        }
    }
}

/// Connects to `url` and presents `credential` in the first `auth` frame (or sends nothing
/// when `None`).
pub async fn attempt(url: &str, credential: Option<&str>) -> Attempt {
    let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let mut s = Signal(ws);
    if let Some(c) = credential {
        // A credential over the frame limit may be cut off mid-write by the server's close.
        let frame = serde_json::json!({"type": "auth", "token": c}).to_string();
        let _ = s.0.send(Message::Text(frame.into())).await;
    }
    match s.next(ANSWER).await {
        Some(Next::Frame(f)) if f["type"] == "welcome" => {
            Attempt::Admitted(f["peer_id"].as_str().unwrap_or_default().to_owned(), Box::new(s))
        }
        Some(Next::Frame(f)) if f["type"] == "error" => {
            Attempt::Refused(f["code"].as_str().unwrap_or_default().to_owned())
        }
        Some(Next::Closed(code)) => Attempt::Refused(code),
        other => panic!("unexpected answer to auth: {other:?}"),
    }
}

/// A plain HTTP GET on the coordinator; the response body.
pub async fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(ANSWER, tcp.read_to_end(&mut out)).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or(text)
}

/// The value of one metric line (`name{labels}`), 0 when absent.
pub fn metric(page: &str, series: &str) -> u64 {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0)
}

/// A TCP relay in front of the database: [`Relay::cut`] makes the database unreachable for
/// the coordinator (open connections reset, new ones refused) while rAthena keeps its own;
/// [`Relay::restore`] serves again on the same port.
pub struct Relay {
    pub addr: SocketAddr,
    upstream: SocketAddr,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: Option<JoinHandle<()>>,
}

impl Relay {
    /// A relay on a free loopback port to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut r = Relay { addr, upstream, tasks: Arc::default(), accept: None };
        r.serve(listener);
        r
    }

    fn serve(&mut self, listener: TcpListener) {
        let tasks = Arc::clone(&self.tasks);
        let upstream = self.upstream;
        self.accept = Some(tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let t = tokio::spawn(async move {
                    if let Ok(mut out) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
                tasks.lock().unwrap().push(t);
            }
        }));
    }

    /// Cuts every connection and stops accepting.
    pub fn cut(&mut self) {
        if let Some(a) = self.accept.take() {
            a.abort();
        }
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }

    /// Accepts again on the same port.
    pub async fn restore(&mut self) {
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }
}
