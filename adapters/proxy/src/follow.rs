//! Following a login or char connection: the bytes pass through untouched, in order; the
//! server's replies are framed ([`GateFramer`]) so the proxy can read the ones it follows and
//! rewrite the server addresses in them. What cannot be framed (an unknown id, an impossible
//! length) passes through as it is, and following stops for that connection.

use std::sync::atomic::Ordering;

use ro_p2p_core::gate::{GateFrame, GateFrameError, GateFramer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::Ctx;

/// Bytes read at once.
pub(crate) const READ_CHUNK: usize = 16 * 1024;

/// The server-to-client side of a followed connection.
pub(crate) struct Replies {
    framer: GateFramer,
    stopped: bool,
}

impl Replies {
    pub fn new(framer: GateFramer) -> Replies {
        Replies { framer, stopped: false }
    }

    /// Takes bytes the server sent and appends what the game must get to `out`: each whole
    /// reply after `follow` has read it (and perhaps rewritten it in place; it must keep its
    /// length). Returns why following stopped, the first time it does.
    pub fn push(
        &mut self,
        bytes: &[u8],
        out: &mut Vec<u8>,
        mut follow: impl FnMut(Reply<'_>),
    ) -> Option<GateFrameError> {
        if self.stopped {
            out.extend_from_slice(bytes);
            return None;
        }
        self.framer.push(bytes);
        loop {
            match self.framer.next_frame() {
                Ok(Some(frame)) => {
                    let start = out.len();
                    out.extend_from_slice(frame.bytes());
                    let packet = &mut out[start..];
                    let reply = match frame {
                        GateFrame::AccountId { account_id, .. } => Reply::AccountId(account_id),
                        GateFrame::Packet { id, .. } => Reply::Packet { id, bytes: packet },
                    };
                    follow(reply);
                }
                Ok(None) => return None,
                Err(e) => {
                    self.stopped = true;
                    out.extend_from_slice(self.framer.pending());
                    return Some(e);
                }
            }
        }
    }

    /// The connection ended: bytes of a partial reply, for the game as they are.
    pub fn rest(&self) -> &[u8] {
        if self.stopped { &[] } else { self.framer.pending() }
    }
}

/// One whole piece of a server's reply stream.
pub(crate) enum Reply<'a> {
    /// The char server's raw account id.
    AccountId(u32),
    /// A packet, which the follower may rewrite in place.
    Packet {
        /// Its id.
        id: u16,
        /// Its bytes.
        bytes: &'a mut [u8],
    },
}

/// What a followed connection does with each side's bytes.
pub(crate) trait Follower {
    /// The game sent `bytes` (passed to the server untouched after this).
    fn on_client_bytes(&mut self, bytes: &[u8]);
    /// The server sent `bytes`; append what the game gets to `out`.
    fn on_server_bytes(&mut self, bytes: &[u8], out: &mut Vec<u8>);
    /// The server's connection ended: what is left for the game.
    fn rest(&self) -> &[u8];
}

/// Relays `client` <-> `upstream` through `follower` until either side closes.
pub(crate) async fn relay(
    client: TcpStream,
    upstream: std::net::SocketAddr,
    mut follower: impl Follower,
) {
    let server = match TcpStream::connect(upstream).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(%upstream, "server unreachable: {e}");
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_rx, mut client_tx) = client.into_split();
    let (mut server_rx, mut server_tx) = server.into_split();
    let mut from_client = vec![0u8; READ_CHUNK];
    let mut from_server = vec![0u8; READ_CHUNK];
    let mut out = Vec::with_capacity(READ_CHUNK);
    loop {
        tokio::select! {
            read = client_rx.read(&mut from_client) => {
                let n = match read { Ok(0) | Err(_) => break, Ok(n) => n };
                follower.on_client_bytes(&from_client[..n]);
                if server_tx.write_all(&from_client[..n]).await.is_err() {
                    break;
                }
            }
            read = server_rx.read(&mut from_server) => {
                let n = match read { Ok(0) | Err(_) => break, Ok(n) => n };
                out.clear();
                follower.on_server_bytes(&from_server[..n], &mut out);
                if client_tx.write_all(&out).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = client_tx.write_all(follower.rest()).await;
    let _ = client_tx.shutdown().await;
    let _ = server_tx.shutdown().await;
}

/// Counts and logs, once per connection, that its replies are no longer followed.
pub(crate) fn stopped_following(ctx: &Ctx, what: &str, e: &GateFrameError) {
    ctx.stats.follow_stopped.fetch_add(1, Ordering::Relaxed);
    tracing::warn!("{what} connection: {e}; its bytes pass through untouched from here");
}
