//! One task per WebSocket connection: authenticate, then only move frames.
//!
//! The task reads frames from the socket and forwards them to the hub, and writes what the hub
//! queued for it. It decides nothing about the protocol; the two things it handles itself are
//! the ones the core cannot see: authentication before the connection exists for the core
//! (bearer header, `?token=`, or a first `auth` frame within a deadline counted from the
//! upgrade request), and frames the WebSocket layer refuses (over 64 KiB, text that is not
//! UTF-8, RFC 6455 violations). Every frame it reads, of any kind, goes to the hub, which
//! charges it to the connection's budget in the core. A close always carries a reason
//! `"<code>: <text>"` whose first word is the machine-readable [`ErrorCode`].

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::SinkExt as _;
use ro_p2p_core::coordinator::{ConnId, Identity};
use ro_p2p_core::wire::{ClientMessage, ErrorCode, ServerMessage, decode_client, encode_server};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, timeout, timeout_at};

use super::auth::{Admitted, AuthError};
use super::conns::{ConnHandle, Event, Outbound};
use super::rathena::RathenaAuth;
use super::{Alive, AppState, PendingAuth};

/// How long a close handshake may take before the socket is dropped.
const CLOSE_LINGER: Duration = Duration::from_secs(2);
/// Longest close reason WebSocket allows, in bytes.
const CLOSE_REASON_BYTES_MAX: usize = 123;

/// What the upgrade request already established about the client.
#[derive(Debug)]
pub(crate) enum PreAuth {
    /// A token came with the upgrade request (header or query), or none is needed: check it
    /// after the upgrade.
    Token(Option<String>),
    /// No token yet: the first frame must be `auth`, before `deadline` (the upgrade request's
    /// arrival plus the auth deadline; pings and pongs do not move it). The guard counts the
    /// connection as waiting for authentication until it is dropped.
    AwaitAuthFrame {
        /// When the wait ends.
        deadline: Instant,
        /// Counts this connection in the pending-authentication gauge.
        pending: PendingAuth,
    },
}

/// Keeps a connection's credential in the re-check registry until the connection ends.
struct Registered {
    auth: std::sync::Arc<RathenaAuth>,
    conn: ConnId,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.auth.unregister(self.conn);
    }
}

/// The WebSocket close code for a protocol error code.
pub fn close_code(code: ErrorCode) -> u16 {
    match code {
        ErrorCode::ShuttingDown => 1001, // going away
        ErrorCode::TooLarge => 1009,     // message too big
        ErrorCode::Internal => 1011,     // internal error
        ErrorCode::ZoneUnavailable | ErrorCode::ServerFull | ErrorCode::AuthUnavailable => 1013, // try again later
        _ => 1008, // policy violation
    }
}

/// The close reason text: `"<code>: <reason>"`, cut to WebSocket's 123-byte limit.
pub fn close_reason(code: ErrorCode, reason: &str) -> String {
    let mut text = if reason.is_empty() {
        code.as_str().to_owned()
    } else {
        format!("{}: {reason}", code.as_str())
    };
    if text.len() > CLOSE_REASON_BYTES_MAX {
        let mut cut = CLOSE_REASON_BYTES_MAX;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

fn close_message(code: ErrorCode, reason: &str) -> Message {
    close_message_with(close_code(code), code, reason)
}

/// A close frame with an explicit WebSocket close code (1002, 1007) for `code`.
fn close_message_with(ws_code: u16, code: ErrorCode, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code: ws_code,
        reason: Utf8Bytes::from(close_reason(code, reason)),
    }))
}

/// Sends a close frame and waits (briefly) for the client's, so the frame is not lost to a
/// reset.
///
/// This and the other once-per-connection steps (authentication, refusals) run boxed: a
/// connection task's future is as large as its largest await point, and it is held for the
/// connection's whole life, so their state is allocated only while they run (see
/// docs/performance.md, memory per held client).
async fn close_with(socket: &mut WebSocket, code: ErrorCode, reason: &str) {
    Box::pin(close_frame_then_linger(socket, close_message(code, reason))).await;
}

async fn close_frame_then_linger(socket: &mut WebSocket, close: Message) {
    let _ = timeout(CLOSE_LINGER, async {
        if socket.send(close).await.is_err() {
            return;
        }
        while let Some(Ok(msg)) = socket.recv().await {
            if matches!(msg, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

/// Sends an `error` frame, then a close with the same code.
async fn refuse(socket: &mut WebSocket, code: ErrorCode, text: &str) {
    let err = encode_server(&ServerMessage::error(code, text));
    let _ = Box::pin(timeout(CLOSE_LINGER, socket.send(Message::Text(err.into())))).await;
    close_with(socket, code, text).await;
}

/// Waits until `deadline` for the first frame, which must be `auth`.
async fn auth_frame(
    socket: &mut WebSocket,
    state: &AppState,
    deadline: Instant,
    origin: Option<IpAddr>,
) -> Result<Admitted, AuthError> {
    loop {
        let next = timeout_at(deadline, socket.recv()).await;
        let msg = match next {
            Err(_) => return Err(AuthError::Missing { detail: "no `auth` frame in time" }),
            Ok(None | Some(Err(_))) => {
                return Err(AuthError::Missing { detail: "closed before authenticating" });
            }
            Ok(Some(Ok(msg))) => msg,
        };
        return match msg {
            Message::Text(text) => match decode_client(text.as_bytes()) {
                Ok(ClientMessage::Auth { token }) => {
                    // The check itself (a database query in mode `rathena`) is bounded by the
                    // same deadline.
                    match timeout_at(deadline, state.shared.auth.admit(Some(&token), origin)).await
                    {
                        Ok(admitted) => admitted,
                        Err(_) => Err(AuthError::Missing { detail: "no `auth` frame in time" }),
                    }
                }
                _ => Err(AuthError::Missing { detail: "the first frame must be `auth`" }),
            },
            Message::Ping(_) | Message::Pong(_) => continue,
            _ => Err(AuthError::Missing { detail: "the first frame must be `auth`" }),
        };
    }
}

/// A frame the WebSocket layer refused; the connection can still be written to.
#[derive(Debug)]
enum Refused {
    /// Over the frame or message size limit (close 1009, `too-large`).
    TooLarge(String),
    /// A text frame that is not UTF-8 (`error malformed-json`, close 1007).
    NotUtf8(String),
    /// An RFC 6455 violation: reserved bits, an unmasked frame, a bad opcode, ... (close
    /// 1002).
    Protocol(String),
}

/// What a receive error means for the connection: `None` when the socket is gone.
fn refused(err: axum::Error) -> Option<Refused> {
    use tokio_tungstenite::tungstenite::Error as WsError;
    match *err.into_inner().downcast::<WsError>().ok()? {
        WsError::Capacity(c) => Some(Refused::TooLarge(c.to_string())),
        WsError::Utf8(detail) => Some(Refused::NotUtf8(detail)),
        WsError::Protocol(p) => Some(Refused::Protocol(p.to_string())),
        _ => None,
    }
}

/// Answers a refused frame on a socket that can no longer be read: the error frame and close
/// the refusal calls for.
async fn answer_refused(socket: &mut WebSocket, state: &AppState, refusal: Refused) {
    let (ws_code, code, text) = match refusal {
        Refused::TooLarge(detail) => (1009, ErrorCode::TooLarge, detail),
        Refused::NotUtf8(detail) => {
            (1007, ErrorCode::MalformedJson, format!("text frame is not UTF-8: {detail}"))
        }
        Refused::Protocol(detail) => {
            (1002, ErrorCode::BadValue, format!("WebSocket protocol violation: {detail}"))
        }
    };
    let _ = state.hub.send(Event::Rejected { code }).await;
    if code == ErrorCode::MalformedJson {
        // The protocol promises an `error` for a frame that is not JSON.
        let err = encode_server(&ServerMessage::error(code, text.as_str()));
        let _ = Box::pin(timeout(CLOSE_LINGER, socket.send(Message::Text(err.into())))).await;
    }
    Box::pin(close_frame_then_linger(socket, close_message_with(ws_code, code, &text))).await;
}

/// Most queued frames written with one flush (one `write` system call when they fit).
const WRITE_BATCH_MAX: usize = 64;

/// Writes `first` and whatever else is already queued (up to [`WRITE_BATCH_MAX`]), then
/// flushes once. A queued close stops the batch and is handed back in `then_close`.
async fn write_batch(
    socket: &mut WebSocket,
    first: Utf8Bytes,
    outbound: &mut mpsc::Receiver<Box<Outbound>>,
    queued_bytes: &std::sync::atomic::AtomicUsize,
    then_close: &mut Option<(ErrorCode, String)>,
) -> Result<(), axum::Error> {
    let len = first.len();
    socket.feed(Message::Text(first)).await?;
    queued_bytes.fetch_sub(len, Ordering::Relaxed);
    for _ in 1..WRITE_BATCH_MAX {
        match outbound.try_recv().map(|out| *out) {
            Ok(Outbound::Text(text)) => {
                let len = text.len();
                socket.feed(Message::Text(text)).await?;
                queued_bytes.fetch_sub(len, Ordering::Relaxed);
            }
            Ok(Outbound::Close { code, reason }) => {
                *then_close = Some((code, reason));
                break;
            }
            Err(_) => break,
        }
    }
    socket.flush().await
}

/// Runs one upgraded connection to its end. The connection stops counting against
/// `max_connections` before its socket is dropped, so a client that saw its TCP connection
/// end can connect again at once.
pub(crate) async fn run(
    mut socket: WebSocket,
    state: AppState,
    pre: PreAuth,
    origin: Option<IpAddr>,
    alive: Alive,
) {
    serve(&mut socket, state, pre, origin).await;
    drop(alive);
    drop(socket);
}

/// Authenticates the connection, or refuses it (error frame, close) and returns `None`.
async fn admit(
    socket: &mut WebSocket,
    state: &AppState,
    pre: PreAuth,
    origin: Option<IpAddr>,
) -> Option<Admitted> {
    let admitted = match pre {
        PreAuth::Token(token) => state.shared.auth.admit(token.as_deref(), origin).await,
        PreAuth::AwaitAuthFrame { deadline, pending } => {
            let admitted = auth_frame(socket, state, deadline, origin).await;
            drop(pending);
            admitted
        }
    };
    match admitted {
        Ok(admitted) => Some(admitted),
        Err(e) => {
            super::audit::refused_before_hub(origin, e.code(), &e.to_string());
            let _ = state.hub.send(Event::Rejected { code: e.code() }).await;
            refuse(socket, e.code(), &e.to_string()).await;
            None
        }
    }
}

async fn serve(socket: &mut WebSocket, state: AppState, pre: PreAuth, origin: Option<IpAddr>) {
    // Boxed: the authentication's state (a database query in mode `rathena`) is not held for
    // the rest of the connection (see `close_with`).
    let Some(Admitted { identity, credential }) =
        Box::pin(admit(socket, &state, pre, origin)).await
    else {
        return;
    };

    let conn = ConnId(state.shared.next_conn.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    // Mode `rathena`: the credential is re-checked while the connection lives.
    let _registered = credential.and_then(|credential| {
        let r = state.shared.auth.rathena_auth()?;
        r.register(conn, credential);
        Some(Registered { auth: std::sync::Arc::clone(r), conn })
    });
    let account = match &identity {
        Identity::Account(peer) => peer.to_string(),
        _ => format!("anon-{}", conn.0),
    };
    let now_unix_s = state.shared.auth.clock().unix_now_s();
    let ice_servers = state.shared.ice.ice_servers(&account, now_unix_s);
    let (outbound_tx, mut outbound) = mpsc::channel(state.shared.outbound_queue_len);
    let (kill_tx, mut kill) = oneshot::channel::<(ErrorCode, String)>();
    let queued_bytes = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let handle = ConnHandle {
        outbound: outbound_tx,
        queued_bytes: std::sync::Arc::clone(&queued_bytes),
        queued_bytes_max: state.shared.outbound_queue_bytes_max,
        kill: kill_tx,
    };
    let connected = Event::Connected { conn, identity, ice_servers, origin, handle };
    if state.hub.send(connected).await.is_err() {
        close_with(socket, ErrorCode::ShuttingDown, "the coordinator is stopping").await;
        return;
    }
    tracing::trace!(conn = conn.0, "signaling connection open");

    // The hub drops its handle (and so the kill sender) whenever it is done with this
    // connection; only a kill actually sent ends the connection at once.
    let mut kill_open = true;
    loop {
        tokio::select! {
            biased;
            killed = &mut kill, if kill_open => {
                let Ok((code, reason)) = killed else {
                    kill_open = false;
                    continue;
                };
                tracing::debug!(conn = conn.0, %code, "closing connection");
                // The client may not read at all: do not wait long for its close.
                let _ = Box::pin(timeout(Duration::from_millis(200), socket.send(close_message(code, &reason)))).await;
                break;
            }
            out = outbound.recv() => match out.map(|out| *out) {
                Some(Outbound::Text(text)) => {
                    let mut then_close = None;
                    let stalled = tokio::select! {
                        biased;
                        Ok((code, _)) = &mut kill, if kill_open => {
                            tracing::debug!(conn = conn.0, %code, "dropping stalled connection");
                            true
                        }
                        sent = write_batch(socket, text, &mut outbound, &queued_bytes, &mut then_close) => {
                            sent.is_err()
                        }
                    };
                    if stalled {
                        break;
                    }
                    if let Some((code, reason)) = then_close {
                        close_with(socket, code, &reason).await;
                        break;
                    }
                }
                Some(Outbound::Close { code, reason }) => {
                    close_with(socket, code, &reason).await;
                    break;
                }
                None => break,
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    let ev = Event::Frame { conn, bytes: Vec::from(text.as_bytes()), arrived: Instant::now() };
                    if state.hub.send(ev).await.is_err() { break }
                }
                Some(Ok(Message::Binary(_))) => {
                    if state.hub.send(Event::Binary { conn }).await.is_err() { break }
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {
                    if state.hub.send(Event::Control { conn }).await.is_err() { break }
                }
                Some(Ok(Message::Close(_))) => {
                    // The WebSocket layer has queued the answering close frame (RFC 6455
                    // 5.5.1); write it before the socket is dropped.
                    let _ = Box::pin(timeout(CLOSE_LINGER, socket.flush())).await;
                    break;
                }
                None => break,
                Some(Err(e)) => {
                    if let Some(refusal) = refused(e) {
                        Box::pin(answer_refused(socket, &state, refusal)).await;
                    }
                    break;
                }
            },
        }
    }
    let _ = state.hub.send(Event::Disconnected { conn }).await;
    tracing::trace!(conn = conn.0, "signaling connection closed");
}
