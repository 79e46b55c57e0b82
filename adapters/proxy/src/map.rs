//! One map-server connection through the proxy: the player's own client library.
//!
//! Both ways go through the player's [`Node`]: the game's bytes are framed, classified and
//! routed (the server's share to the map server, peer events sealed to peers); the server's
//! bytes come back as the game's stream with peers drawn in and the echo rAthena would have
//! sent for the player's own peers-only actions ([`DriverEvent::ToGame`]). This module moves
//! bytes between the sockets and the node's driver. Map moves reported by the server change the
//! node's zone; a move to another map server is rewritten to a fresh door of the proxy. When
//! the client library is unavailable (no coordinator configured, the driver stopped, a desync)
//! the connection goes on with a bare [`GamePath`] (the node's own, when there was one): no
//! peers, the server's stream framed only to follow map moves and redirect them to doors.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use ro_p2p_core::coordinator::credential::WebAuthCredential;
use ro_p2p_core::gate::ServerMove;
use ro_p2p_core::node::{GamePath, Node, NodeConfig};
use ro_p2p_core::packet::{Obfuscation, PacketVersion};
use ro_p2p_core::render::{MapChange, ReceiveStats};
use ro_p2p_core::wire::{PeerId, Zone};
use ro_p2p_core::{Instant, Rng};
use ro_p2p_tokio::client::{Driver, DriverEvent, NodeHandle, Redirect, TcpConnector};
use ro_p2p_webrtc::WebRtcTransport;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::doors;
use crate::{Ctx, Live, Player};

/// Bytes read from either side at once.
const READ_CHUNK: usize = 16 * 1024;

/// The zone a map name stands for: rAthena names maps `prontera` or `prontera.gat`.
pub(crate) fn zone_of(map: &str) -> Option<Zone> {
    let name = map.strip_suffix(".gat").unwrap_or(map);
    Zone::new(name.to_owned()).ok()
}

/// The player's running client library.
struct Library {
    handle: NodeHandle,
    events: mpsc::Receiver<DriverEvent>,
    driver: JoinHandle<Node>,
}

impl Library {
    fn start(ctx: &Ctx, player: &Player, version: PacketVersion) -> Option<Library> {
        let settings = &ctx.config.settings;
        if !settings.p2p_enabled || settings.coordinator_urls.is_empty() {
            return None;
        }
        let mut client = settings.to_client_config();
        client.capabilities = settings.volunteer(ro_p2p_tokio::client::machine::measure());
        // The account id: the node draws the player's own emote echo under it.
        client.peer_id = PeerId::new(player.aid.to_string()).ok();
        // The coordinator's `rathena` mode admits `<account id>:<web auth token>`, the token the
        // login reply relayed through this proxy carried (PACKETVER >= 20170315).
        // Only when told to: a coordinator with authentication off welcomes a client that
        // presents a token under an anonymous id, which the node would then seal under.
        if ctx.config.present_web_auth_token
            && let Some(token) = &player.web_auth_token
        {
            client.token = Some(WebAuthCredential::encode(player.aid, token));
        }
        let obfuscation =
            if version.obfuscated_by_default() { Obfuscation::On } else { Obfuscation::Off };
        let config = NodeConfig {
            packet_version: version,
            obfuscation,
            policy: ctx.policy,
            seal: settings.seal_config(),
            ..NodeConfig::with_client(client)
        };
        let mut seed = [0u8; 32];
        if rand_core::TryRngCore::try_fill_bytes(&mut rand_core::OsRng, &mut seed).is_err() {
            return None;
        }
        let node = Node::new(config, Rng::from_entropy_bytes(seed), Instant::ZERO);
        let transport = WebRtcTransport::new(ctx.config.links.clone());
        let (driver, handle, events) = Driver::new(node, TcpConnector::new(), transport);
        let driver = tokio::spawn(driver.run());
        Some(Library { handle, events, driver })
    }
}

/// Serves one map-server connection of `player` until either side closes it.
pub(crate) async fn serve(ctx: Arc<Ctx>, client: TcpStream, upstream: SocketAddr, player: Player) {
    let server = match TcpStream::connect(upstream).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(aid = player.aid, %upstream, "map server unreachable: {e}");
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    ctx.stats.map_connections.fetch_add(1, Ordering::Relaxed);
    let version = ctx.version;
    let mut library = Library::start(&ctx, &player, version);
    if let (Some(lib), Some(zone)) = (library.as_ref(), player.map.as_deref().and_then(zone_of))
        && lib.handle.zone_changed(zone).await.is_err()
    {
        library = None;
    }
    if let Some(lib) = library.as_ref()
        && let Some(name) = player.char_name.clone()
    {
        let _ = lib.handle.set_own_name(name.into_bytes()).await;
    }
    let live = ctx.go_live(Live {
        player: player.clone(),
        handle: library.as_ref().map(|l| l.handle.clone()),
        receive: Default::default(),
    });
    let obfuscation =
        if version.obfuscated_by_default() { Obfuscation::On } else { Obfuscation::Off };
    let mut bare = GamePath::new(version, obfuscation);
    bare.set_own_account_id(player.aid);
    let mut conn = MapConnection {
        live,
        ctx: ctx.clone(),
        player,
        library,
        bare,
        to_client: Vec::new(),
        receive: ReceiveStats::default(),
        start: tokio::time::Instant::now(),
        p2p_stopped_logged: false,
    };
    let (client_rx, client_tx) = client.into_split();
    let (server_rx, server_tx) = server.into_split();
    conn.run(client_rx, client_tx, server_rx, server_tx).await;
    ctx.update_live(conn.live, None);
    if let Some(lib) = conn.library.take() {
        let _ = lib.handle.shutdown().await;
        let _ = lib.driver.await;
    }
}

struct MapConnection {
    /// Its number in the proxy's registry of live connections.
    live: u64,
    ctx: Arc<Ctx>,
    player: Player,
    library: Option<Library>,
    /// The connection's path while there is no library.
    bare: GamePath,
    /// Bytes for the game not written yet.
    to_client: Vec<u8>,
    /// The receive path's counters, as last reported.
    receive: ReceiveStats,
    start: tokio::time::Instant,
    p2p_stopped_logged: bool,
}

impl MapConnection {
    fn now(&self) -> Instant {
        Instant::from_millis(u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    /// Updates what [`crate::Proxy::players`] reports of this connection (after the player's
    /// map or the client library changed; the receive counters follow every read).
    fn report(&self) {
        self.ctx.update_live(
            self.live,
            Some(Live {
                player: self.player.clone(),
                handle: self.library.as_ref().map(|l| l.handle.clone()),
                receive: self.receive,
            }),
        );
    }

    /// The receive path's counters moved on: peers drawn since are counted.
    fn received(&mut self, stats: ReceiveStats) {
        let drawn = stats.rendered.saturating_sub(self.receive.rendered);
        self.ctx.stats.peer_events_drawn.fetch_add(drawn, Ordering::Relaxed);
        self.receive = stats;
    }

    /// Takes in what the driver reported before now without waiting: the game's bytes.
    fn drain_events(&mut self, events: &mut mpsc::Receiver<DriverEvent>) {
        while let Ok(event) = events.try_recv() {
            if let DriverEvent::ToGame { bytes, stats } = event {
                self.to_client.extend_from_slice(&bytes);
                self.received(stats);
            }
        }
    }

    /// The client library is gone: from now on there are no peers, and the connection goes on
    /// with the node's game path (its framing of both streams continues).
    async fn lose_library(&mut self, why: &str) {
        if let Some(mut lib) = self.library.take() {
            match lib.handle.inspect(|n| n.game_path().clone()).await {
                Ok(path) => {
                    // Everything the node made for the game before the copy is in the channel;
                    // what it makes after is not the game's any more.
                    self.drain_events(&mut lib.events);
                    self.bare = path;
                    // Leave the session in the background; the game's bytes do not wait for it.
                    tokio::spawn(async move {
                        let _ = lib.handle.shutdown().await;
                        let _ = lib.driver.await;
                    });
                }
                Err(_) => {
                    self.drain_events(&mut lib.events);
                    if let Ok(node) = lib.driver.await {
                        self.bare = node.game_path().clone();
                    }
                }
            }
        }
        if !self.p2p_stopped_logged {
            self.p2p_stopped_logged = true;
            self.ctx.stats.p2p_stopped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(aid = self.player.aid, "P2P stops for this connection: {why}");
        }
        self.report();
    }

    async fn run(
        &mut self,
        mut client_rx: OwnedReadHalf,
        mut client_tx: OwnedWriteHalf,
        mut server_rx: OwnedReadHalf,
        mut server_tx: OwnedWriteHalf,
    ) {
        let mut from_client = vec![0u8; READ_CHUNK];
        let mut from_server = vec![0u8; READ_CHUNK];
        loop {
            let event = async {
                match self.library.as_mut() {
                    Some(lib) => lib.events.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                read = client_rx.read(&mut from_client) => {
                    let n = match read {
                        Ok(0) | Err(_) => {
                            // A packet the game cut short still goes to the server as it is.
                            let rest = self.unrouted().await;
                            let _ = server_tx.write_all(&rest).await;
                            break;
                        }
                        Ok(n) => n,
                    };
                    let to_server = self.route(&from_client[..n]).await;
                    if server_tx.write_all(&to_server).await.is_err() {
                        break;
                    }
                }
                read = server_rx.read(&mut from_server) => {
                    let n = match read { Ok(0) | Err(_) => break, Ok(n) => n };
                    self.on_server_bytes(&from_server[..n]).await;
                }
                event = event => match event {
                    Some(DriverEvent::ToGame { bytes, stats }) => {
                        self.to_client.extend_from_slice(&bytes);
                        self.received(stats);
                    }
                    Some(DriverEvent::LateServerCopy { .. }) => {
                        // A peers-only line not every peer confirmed: the server gets it now.
                        let late = self.route(&[]).await;
                        if server_tx.write_all(&late).await.is_err() {
                            break;
                        }
                    }
                    Some(event) => self.on_driver_event(event),
                    None => self.lose_library("the client driver stopped").await,
                },
            }
            self.ctx.update_receive(self.live, self.receive);
            if !self.to_client.is_empty() {
                if client_tx.write_all(&self.to_client).await.is_err() {
                    break;
                }
                let n = self.to_client.len();
                self.to_client.clear();
                self.ctx.stats.bytes_to_client.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
        // A partial packet the server left goes to the game as it is.
        match self.library.take() {
            Some(mut lib) => {
                if lib.handle.server_closed().await.is_ok() {
                    self.drain_events(&mut lib.events);
                }
                self.library = Some(lib);
            }
            None => {
                self.bare.server_closed();
                self.to_client.extend_from_slice(self.bare.game_output());
            }
        }
        let _ = client_tx.write_all(&self.to_client).await;
        let _ = client_tx.shutdown().await;
        let _ = server_tx.shutdown().await;
    }

    /// The game's bytes the node holds for the rest of their packet.
    async fn unrouted(&mut self) -> Vec<u8> {
        let Some(lib) = self.library.as_ref() else {
            return self.bare.send_stream().pending().to_vec();
        };
        lib.handle.inspect(|n| n.game_stream().pending().to_vec()).await.unwrap_or_default()
    }

    /// Routes the game's bytes through the node (which draws the echo of the player's own
    /// peers-only actions); returns the server's share.
    async fn route(&mut self, bytes: &[u8]) -> Vec<u8> {
        self.ctx.stats.bytes_to_server.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        let Some(lib) = self.library.as_ref() else {
            let mut to_server = Vec::with_capacity(bytes.len());
            let now = self.now();
            let ctx = ro_p2p_core::route::RouteContext::SERVER_ONLY;
            let policy = self.ctx.policy;
            self.bare.route(
                now,
                bytes,
                &policy,
                &ctx,
                |v| to_server.extend_from_slice(v.server_bytes()),
                |_, _| {},
            );
            return to_server;
        };
        let handle = lib.handle.clone();
        let Ok(to_server) = handle.game_send(bytes.to_vec()).await else {
            self.lose_library("the client driver stopped").await;
            return bytes.to_vec();
        };
        match handle.inspect(|n| n.stats().desyncs).await {
            Ok(desyncs) if desyncs > 0 => {
                // Everything the node held went into `to_server` with the desync verdict; the
                // bytes pass untouched from here on.
                self.lose_library(
                    "the game's stream desynced (an id or length this PACKETVER does not have)",
                )
                .await;
            }
            Ok(_) => {}
            Err(_) => self.lose_library("the client driver stopped").await,
        }
        to_server
    }

    /// Where a move to another map server sends the game: a fresh door of the proxy.
    fn redirect(&self) -> Redirect {
        let ctx = self.ctx.clone();
        let player = self.player.clone();
        Box::new(move |to: &ServerMove| {
            let mut moved = player.clone();
            moved.map = Some(to.map.clone());
            let upstream = SocketAddr::from((to.ip, to.port));
            match doors::open_map(&ctx, upstream, moved, serve) {
                Ok(door) => Some(door),
                Err(e) => {
                    tracing::warn!(
                        aid = player.aid,
                        "no door for map server {upstream}: {e}; the client goes there directly"
                    );
                    None
                }
            }
        })
    }

    /// Takes the server's bytes: the node draws them into the game's stream (a move to another
    /// map server rewritten to a door of the proxy); map moves become the node's zone.
    async fn on_server_bytes(&mut self, bytes: &[u8]) {
        let redirect = self.redirect();
        let (changes, desynced) = match self.library.as_ref() {
            Some(lib) => match lib.handle.server_bytes(bytes.to_vec(), Some(redirect)).await {
                Ok(taken) => (taken.map_changes, taken.desync.is_some()),
                Err(_) => {
                    // The bytes went nowhere: they take the bare path below.
                    self.lose_library("the client driver stopped").await;
                    return self.bare_server_bytes(bytes);
                }
            },
            None => return self.bare_server_bytes(bytes),
        };
        for change in changes {
            self.zone_changed(change.map()).await;
        }
        if desynced && !self.p2p_stopped_logged {
            self.lose_library("the server's stream desynced").await;
        }
    }

    /// The server's bytes on a connection without a library.
    fn bare_server_bytes(&mut self, bytes: &[u8]) {
        let now = self.now();
        let redirect = self.redirect();
        self.bare.on_server_bytes_redirecting(now, bytes, redirect);
        let changes: Vec<MapChange> = self.bare.take_map_changes().collect();
        if let Some(last) = changes.last() {
            self.player.map = Some(last.map().to_owned());
            self.report();
        }
        let out = self.bare.game_output();
        self.to_client.extend_from_slice(out);
        let n = out.len();
        self.bare.consume_game_output(n);
        self.receive = self.bare.receive_stats();
    }

    async fn zone_changed(&mut self, map: &str) {
        self.player.map = Some(map.to_owned());
        self.report();
        let (Some(lib), Some(zone)) = (self.library.as_ref(), zone_of(map)) else { return };
        tracing::info!(aid = self.player.aid, %zone, "map move");
        if lib.handle.zone_changed(zone).await.is_err() {
            self.lose_library("the client driver stopped").await;
        }
    }

    fn on_driver_event(&mut self, event: DriverEvent) {
        match event {
            DriverEvent::NotDrawn { from, reason, .. } => {
                tracing::debug!(aid = self.player.aid, ?from, "not drawn: {reason}");
            }
            DriverEvent::PeerUse(usage) => {
                tracing::debug!(aid = self.player.aid, ?usage, "peers in use: {}", usage.in_use());
            }
            DriverEvent::Client(e) => tracing::debug!(aid = self.player.aid, "client: {e:?}"),
            other => tracing::trace!(aid = self.player.aid, "driver: {other:?}"),
        }
    }
}
