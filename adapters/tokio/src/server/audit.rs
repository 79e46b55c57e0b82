//! One `info` log line per join, leave, host change, refusal and close, with the client's
//! address and peer id (never a token or a session key), for operators reading the log.
//!
//! Both hubs feed it what they send: the server messages that carry these events
//! (`session-joined`, `session-left`, `host-changed`, `error`), plus connects, closes and
//! disconnects. A broadcast (`host-changed` goes to every member) is logged once: its copies
//! are adjacent in a hub's output, so remembering the last one logged suffices.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ro_p2p_core::coordinator::ConnId;
use ro_p2p_core::wire::{ErrorCode, PeerId, ServerMessage, SessionId, Zone, decode_server};

/// What is known of one open connection.
#[derive(Debug, Default)]
struct Conn {
    client: Option<IpAddr>,
    peer: Option<PeerId>,
    session: Option<(SessionId, Zone)>,
}

/// The audit log's memory: one small entry per open connection.
#[derive(Debug, Default)]
pub(crate) struct Audit {
    conns: BTreeMap<ConnId, Conn>,
    last_host_change: Option<(SessionId, Option<PeerId>)>,
}

/// `-` for an unknown address or peer.
fn or_dash<T: ToString>(v: Option<&T>) -> String {
    v.map_or_else(|| "-".to_owned(), ToString::to_string)
}

impl Audit {
    /// An authenticated connection from `client` is ready.
    pub(crate) fn connected(&mut self, conn: ConnId, client: Option<IpAddr>) {
        self.conns.insert(conn, Conn { client, ..Conn::default() });
    }

    /// `text` (an encoded server message) was sent to `conn`; only the few kinds that carry an
    /// audited event are decoded.
    pub(crate) fn sent_text(&mut self, conn: ConnId, text: &str) {
        const AUDITED: [&str; 5] = [
            "{\"type\":\"welcome\"",
            "{\"type\":\"session-joined\"",
            "{\"type\":\"session-left\"",
            "{\"type\":\"host-changed\"",
            "{\"type\":\"error\"",
        ];
        if AUDITED.iter().any(|p| text.starts_with(p))
            && let Ok(msg) = decode_server(text.as_bytes())
        {
            self.sent(conn, &msg);
        }
    }

    /// `conn`'s identity as the core knows it now (with authentication off, a `join` may
    /// choose it after `welcome`).
    pub(crate) fn identify(&mut self, conn: ConnId, peer: Option<&PeerId>) {
        if let (Some(c), Some(peer)) = (self.conns.get_mut(&conn), peer)
            && c.peer.as_ref() != Some(peer)
        {
            c.peer = Some(peer.clone());
        }
    }

    /// `msg` was sent to `conn`.
    pub(crate) fn sent(&mut self, conn: ConnId, msg: &ServerMessage) {
        match msg {
            ServerMessage::Welcome { peer_id, .. } => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.peer = Some(peer_id.clone());
                }
            }
            ServerMessage::SessionJoined { session_id, zone, peers, host, resumed, .. } => {
                let c = self.conns.entry(conn).or_default();
                c.session = Some((session_id.clone(), zone.clone()));
                tracing::info!(
                    event = "join",
                    client = %or_dash(c.client.as_ref()),
                    peer = %or_dash(c.peer.as_ref()),
                    session = %session_id,
                    %zone,
                    members = peers.len() + 1,
                    host = %or_dash(host.as_ref()),
                    resumed,
                    "player joined a session"
                );
            }
            ServerMessage::SessionLeft { session_id } => {
                let c = self.conns.entry(conn).or_default();
                let zone = c.session.take().map(|(_, z)| z);
                tracing::info!(
                    event = "leave",
                    client = %or_dash(c.client.as_ref()),
                    peer = %or_dash(c.peer.as_ref()),
                    session = %session_id,
                    zone = %or_dash(zone.as_ref()),
                    reason = "left",
                    "player left a session"
                );
            }
            ServerMessage::HostChanged { session_id, host } => {
                let key = (session_id.clone(), host.clone());
                if self.last_host_change.as_ref() != Some(&key) {
                    tracing::info!(
                        event = "host-change",
                        session = %session_id,
                        host = %or_dash(host.as_ref()),
                        "session host changed"
                    );
                    self.last_host_change = Some(key);
                }
            }
            ServerMessage::Error { code, message } => {
                let c = self.conns.get(&conn);
                tracing::info!(
                    event = "refusal",
                    client = %or_dash(c.and_then(|c| c.client.as_ref())),
                    peer = %or_dash(c.and_then(|c| c.peer.as_ref())),
                    %code,
                    %message,
                    "request refused"
                );
            }
            _ => {}
        }
    }

    /// The coordinator closes `conn` with `code`.
    pub(crate) fn closing(&mut self, conn: ConnId, code: ErrorCode, reason: &str) {
        let c = self.conns.get(&conn);
        tracing::info!(
            event = "close",
            client = %or_dash(c.and_then(|c| c.client.as_ref())),
            peer = %or_dash(c.and_then(|c| c.peer.as_ref())),
            %code,
            %reason,
            "closing a signaling connection"
        );
    }

    /// `conn` is gone; a session it was in is left (its seat may wait in grace for a resume).
    pub(crate) fn disconnected(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.remove(&conn)
            && let Some((session, zone)) = c.session
        {
            tracing::info!(
                event = "leave",
                client = %or_dash(c.client.as_ref()),
                peer = %or_dash(c.peer.as_ref()),
                %session,
                %zone,
                reason = "disconnected",
                "player disconnected from a session"
            );
        }
    }
}

/// A refusal before the hub saw the connection (authentication, limits), with the address.
pub(crate) fn refused_before_hub(client: Option<IpAddr>, code: ErrorCode, reason: &str) {
    tracing::info!(
        event = "refusal",
        client = %or_dash(client.as_ref()),
        %code,
        %reason,
        "signaling connection refused"
    );
}
