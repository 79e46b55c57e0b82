//! What both hubs speak: the handle on one connection and its bounded outbound queue, the
//! [`Event`]s connection tasks and REST handlers send to a hub, and the REST [`Query`]s.
//!
//! The single-instance hub (`hub.rs`) and the cluster hub (`cluster_hub.rs`) both read these;
//! connection tasks, REST handlers and the `rathena` re-check loop send them without knowing
//! which hub serves. This module imports neither hub.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::ws::Utf8Bytes;
use ro_p2p_core::coordinator::{ConnId, Identity, Placement, SessionView};
use ro_p2p_core::wire::{ErrorCode, IceServer, SessionId, Zone};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::health::Health;

/// What a connection task must do next with its socket.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// Send this text frame.
    Text(Utf8Bytes),
    /// Send a close frame with this code and reason, then end.
    Close { code: ErrorCode, reason: String },
}

/// The hub's handle on one connection.
#[derive(Debug)]
pub(crate) struct ConnHandle {
    /// Bounded, ordered queue of frames to send. Boxed: the channel allocates its first block
    /// of 32 slots with the connection, so pointer-sized slots keep an idle connection small
    /// (docs/performance.md, memory per held client); a box per frame costs next to nothing.
    pub(crate) outbound: mpsc::Sender<Box<Outbound>>,
    /// Bytes of the text frames in `outbound`: the hub adds, the connection task subtracts
    /// what it has handed to the socket.
    pub(crate) queued_bytes: Arc<AtomicUsize>,
    /// The core's `outbound_queue_bytes_max`: more queued bytes make a slow consumer.
    pub(crate) queued_bytes_max: usize,
    /// Closes the connection at once, skipping the queue (a slow consumer cannot drain it).
    pub(crate) kill: oneshot::Sender<(ErrorCode, String)>,
}

impl ConnHandle {
    /// Queues a close with this reason; when the queue is full (a client that does not read),
    /// closes the connection at once instead.
    pub(crate) fn close(self, code: ErrorCode, reason: String) {
        let close = Box::new(Outbound::Close { code, reason });
        if let Err(mpsc::error::TrySendError::Full(close)) = self.outbound.try_send(close)
            && let Outbound::Close { code, reason } = *close
        {
            let _ = self.kill.send((code, reason));
        }
    }
}

/// What became of a frame queued with [`queue_text`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Queued {
    /// It is in the connection's queue.
    Yes,
    /// The connection is unknown or its task has ended.
    Gone,
    /// The queue was full: the connection was removed and closed as a slow consumer.
    SlowConsumer,
}

/// Queues `text` for `conn`; a full queue (in frames, or in bytes over the core's
/// `outbound_queue_bytes_max`) removes the connection from `conns` and closes it at once with
/// `slow-consumer`. Shared by the single-instance hub and the cluster hub.
pub(crate) fn queue_text(
    conns: &mut BTreeMap<ConnId, ConnHandle>,
    conn: ConnId,
    text: Utf8Bytes,
) -> Queued {
    let Some(handle) = conns.get(&conn) else { return Queued::Gone };
    let len = text.len();
    let queued = handle.queued_bytes.load(Ordering::Relaxed);
    let full = if queued.saturating_add(len) > handle.queued_bytes_max {
        Some(format!(
            "outbound queue over {} bytes: the client does not read",
            handle.queued_bytes_max
        ))
    } else {
        match handle.outbound.try_send(Box::new(Outbound::Text(text))) {
            Ok(()) => {
                handle.queued_bytes.fetch_add(len, Ordering::Relaxed);
                None
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return Queued::Gone,
            Err(mpsc::error::TrySendError::Full(_)) => {
                Some("outbound queue full: the client does not read".to_owned())
            }
        }
    };
    match full {
        None => Queued::Yes,
        Some(reason) => {
            if let Some(handle) = conns.remove(&conn) {
                let _ = handle.kill.send((ErrorCode::SlowConsumer, reason));
            }
            Queued::SlowConsumer
        }
    }
}

/// Everything the hub can be asked.
#[derive(Debug)]
pub(crate) enum Event {
    /// An authenticated connection is ready.
    Connected {
        conn: ConnId,
        identity: Identity,
        ice_servers: Vec<IceServer>,
        /// The client's address.
        origin: Option<IpAddr>,
        handle: ConnHandle,
    },
    /// One text frame from a connection, and when it arrived.
    Frame { conn: ConnId, bytes: Vec<u8>, arrived: Instant },
    /// A binary frame (refused by the core: the protocol is JSON text).
    Binary { conn: ConnId },
    /// A WebSocket ping or pong (answered by the WebSocket layer; charged by the core).
    Control { conn: ConnId },
    /// The connection's socket ended.
    Disconnected { conn: ConnId },
    /// The credential `conn` was admitted with was withdrawn (mode `rathena`).
    Revoke { conn: ConnId, reason: String },
    /// The service refused something before the core saw it (auth, oversized frame).
    Rejected { code: ErrorCode },
    /// A REST query.
    Query(Query),
    /// Close everyone with `shutting-down`.
    Shutdown,
}

/// REST queries, each with its reply channel.
#[derive(Debug)]
pub(crate) enum Query {
    Health(oneshot::Sender<Health>),
    Sessions(oneshot::Sender<Vec<SessionView>>),
    Session(SessionId, oneshot::Sender<Option<SessionView>>),
    Discover(Zone, oneshot::Sender<Vec<SessionView>>),
    Placement(Zone, oneshot::Sender<Result<Placement, ErrorCode>>),
    Metrics(oneshot::Sender<String>),
}
