//! Doors: the proxy's listening ports that stand in for the char and map servers.
//!
//! The servers tell the game where to go next (the char-server list at login, the map server
//! at character select, another map server on a warp); the proxy rewrites each address to a
//! door of its own. A char door is kept per upstream char server, because the game comes back
//! to it (after the map, to select another character) and says who it is in its first packet
//! (`CH_ENTER`). A map door is opened per player and move and takes one connection within
//! [`crate::ProxyConfig::door_wait_ms`]: the connection that arrives there is that player's,
//! whatever its PACKETVER or packet obfuscation, so the proxy never has to parse the map
//! server's enter packet.
//!
//! A door does not know what serves its connections: whoever opens it says (the login
//! connection opens char doors served by [`crate::charsrv`], char and map connections open map
//! doors served by [`crate::map`]), so this module sits below the servers it stands in for.

use std::future::Future;
use std::net::{SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use crate::{Ctx, Player};

/// Why a door could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DoorError {
    /// The servers named more distinct char servers than the proxy keeps doors for.
    #[error("more than {max} char servers named; not proxying another")]
    TooManyCharServers {
        /// The bound.
        max: usize,
    },
    /// More map doors are waiting for their connection than the proxy allows.
    #[error("{max} map doors are already waiting for their player")]
    TooManyWaiting {
        /// The bound.
        max: usize,
    },
    /// Binding the port failed.
    #[error("binding a port: {0}")]
    Bind(#[from] std::io::Error),
    /// The proxy listens on IPv6 but the game only understands IPv4 addresses.
    #[error("the proxy's public address must be IPv4")]
    NotIpv4,
}

/// Char doors kept at most (distinct upstream char servers).
pub const CHAR_DOORS_MAX: usize = 32;
/// Map doors waiting for their connection at most.
pub const MAP_DOORS_WAITING_MAX: usize = 4096;

/// Finds or opens the char door for `upstream` (kept open, shared by every player: `serve`
/// serves each connection that arrives) and returns the address to write into the server's
/// reply. Synchronous, so the caller can rewrite a packet in place while it holds it; must be
/// called inside the tokio runtime.
pub(crate) fn open_char<S, F>(
    ctx: &Arc<Ctx>,
    upstream: SocketAddr,
    serve: S,
) -> Result<SocketAddrV4, DoorError>
where
    S: Fn(Arc<Ctx>, TcpStream, SocketAddr) -> F + Send + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let mut doors = ctx.char_doors.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(&door) = doors.get(&upstream) {
        return Ok(door);
    }
    if doors.len() >= CHAR_DOORS_MAX {
        return Err(DoorError::TooManyCharServers { max: CHAR_DOORS_MAX });
    }
    let (listener, door) = bind(ctx)?;
    doors.insert(upstream, door);
    tokio::spawn(serve_char_door(ctx.clone(), listener, upstream, serve));
    Ok(door)
}

/// Opens a map door for one connection of `player` to `upstream` (`serve` serves it) and
/// returns the address to write into the server's reply. Synchronous, as [`open_char`].
pub(crate) fn open_map<S, F>(
    ctx: &Arc<Ctx>,
    upstream: SocketAddr,
    player: Player,
    serve: S,
) -> Result<SocketAddrV4, DoorError>
where
    S: FnOnce(Arc<Ctx>, TcpStream, SocketAddr, Player) -> F + Send + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let waiting = ctx.map_doors_waiting.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if waiting >= MAP_DOORS_WAITING_MAX {
        ctx.map_doors_waiting.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        return Err(DoorError::TooManyWaiting { max: MAP_DOORS_WAITING_MAX });
    }
    let (listener, door) = match bind(ctx) {
        Ok(b) => b,
        Err(e) => {
            ctx.map_doors_waiting.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            return Err(e);
        }
    };
    tokio::spawn(serve_map_door(ctx.clone(), listener, upstream, player, serve));
    Ok(door)
}

fn bind(ctx: &Ctx) -> Result<(TcpListener, SocketAddrV4), DoorError> {
    let std = std::net::TcpListener::bind(SocketAddr::new(ctx.config.listen.ip(), 0))?;
    std.set_nonblocking(true)?;
    let port = std.local_addr()?.port();
    let listener = TcpListener::from_std(std)?;
    Ok((listener, SocketAddrV4::new(ctx.public_ip, port)))
}

async fn serve_char_door<S, F>(ctx: Arc<Ctx>, listener: TcpListener, upstream: SocketAddr, serve: S)
where
    S: Fn(Arc<Ctx>, TcpStream, SocketAddr) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => {
                    tokio::spawn(serve(ctx.clone(), client, upstream));
                }
                Err(e) => {
                    tracing::warn!(%upstream, "char door: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            () = ctx.stopping.cancelled() => return,
        }
    }
}

async fn serve_map_door<S, F>(
    ctx: Arc<Ctx>,
    listener: TcpListener,
    upstream: SocketAddr,
    player: Player,
    serve: S,
) where
    S: FnOnce(Arc<Ctx>, TcpStream, SocketAddr, Player) -> F,
    F: Future<Output = ()>,
{
    let wait = Duration::from_millis(ctx.config.door_wait_ms);
    let accepted = tokio::select! {
        accepted = tokio::time::timeout(wait, listener.accept()) => accepted,
        () = ctx.stopping.cancelled() => {
            ctx.map_doors_waiting.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            return;
        }
    };
    ctx.map_doors_waiting.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    // One connection per map door: its port closes now.
    drop(listener);
    match accepted {
        Ok(Ok((client, _))) => serve(ctx, client, upstream, player).await,
        Ok(Err(e)) => tracing::warn!(aid = player.aid, "map door: {e}"),
        Err(_) => tracing::info!(aid = player.aid, %upstream, "nobody came to the map door"),
    }
}
