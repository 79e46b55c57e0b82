//! Relaying a login or char connection: the bytes pass through in order; the server's replies
//! go through the core's [`ro_p2p_core::gate::ReplyFollower`] (which reads the ones it follows
//! and rewrites the server addresses in them), the game's requests are read as they pass.

use std::sync::atomic::Ordering;

use ro_p2p_core::gate::GateFrameError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::Ctx;

/// Bytes read at once.
pub(crate) const READ_CHUNK: usize = 16 * 1024;

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
