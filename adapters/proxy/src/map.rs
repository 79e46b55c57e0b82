//! One map-server connection through the proxy: the player's own client library.
//!
//! The game's bytes go through the player's [`Node`] (framed, classified, routed; the server's
//! share to the map server, peer events sealed to peers), the server's bytes through a
//! [`ReceiveStream`] that draws peers into what the game is shown, with the echo rAthena
//! would have sent for the player's own peers-only actions. Map moves reported by the server
//! change the node's zone; a move to another map server is rewritten to a fresh door of the
//! proxy. When the client library is unavailable (no coordinator configured, the driver
//! stopped) the connection passes bytes through untouched, so the player plays on through the
//! server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use ro_p2p_core::coordinator::credential::WebAuthCredential;
use ro_p2p_core::gate::ServerMove;
use ro_p2p_core::node::{Node, NodeConfig, ReceivedEvent};
use ro_p2p_core::packet::{Obfuscation, PacketVersion};
use ro_p2p_core::render::{MapChange, ReceiveStream, account_id_of};
use ro_p2p_core::wire::{PeerId, Zone};
use ro_p2p_core::{Instant, Rng};
use ro_p2p_tokio::client::{Driver, DriverEvent, NodeHandle, TcpConnector};
use ro_p2p_webrtc::WebRtcTransport;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::doors::{self, DoorKind};
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
    /// The next peers-only action of the node to echo.
    peers_only_next: u64,
}

impl Library {
    fn start(ctx: &Ctx, player: &Player, version: PacketVersion) -> Option<Library> {
        let settings = &ctx.config.settings;
        if !settings.p2p_enabled || settings.coordinator_urls.is_empty() {
            return None;
        }
        let mut client = settings.to_client_config();
        client.capabilities = settings.volunteer(ro_p2p_tokio::client::machine::measure());
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
        Some(Library { handle, events, driver, peers_only_next: 0 })
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
    let mut conn = MapConnection {
        live,
        ctx: ctx.clone(),
        player,
        recv: ReceiveStream::new(version),
        library,
        start: tokio::time::Instant::now(),
        p2p_stopped_logged: false,
    };
    conn.recv.set_own_account_id(conn.player.aid);
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
    recv: ReceiveStream,
    library: Option<Library>,
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
                receive: self.recv.stats(),
            }),
        );
    }

    /// The client library is gone: from now on bytes pass through untouched.
    fn lose_library(&mut self, why: &str) {
        if let Some(lib) = self.library.take() {
            // Leave the session in the background; the game's bytes do not wait for it.
            tokio::spawn(async move {
                let _ = lib.handle.shutdown().await;
                let _ = lib.driver.await;
            });
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
                    Some(DriverEvent::LateServerCopy { event, .. }) => {
                        // A peers-only line not every peer confirmed: the server gets it now.
                        self.recv.expect_server_echo(self.now(), &event.as_event());
                        let late = self.route(&[]).await;
                        if server_tx.write_all(&late).await.is_err() {
                            break;
                        }
                    }
                    Some(event) => self.on_driver_event(event),
                    None => self.lose_library("the client driver stopped"),
                },
            }
            self.ctx.update_receive(self.live, self.recv.stats());
            let out = self.recv.output();
            if !out.is_empty() {
                if client_tx.write_all(out).await.is_err() {
                    break;
                }
                let n = out.len();
                self.recv.consume(n);
                self.ctx.stats.bytes_to_client.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
        self.recv.finish();
        let _ = client_tx.write_all(self.recv.output()).await;
        let _ = client_tx.shutdown().await;
        let _ = server_tx.shutdown().await;
    }

    /// The game's bytes the node holds for the rest of their packet.
    async fn unrouted(&mut self) -> Vec<u8> {
        let Some(lib) = self.library.as_ref() else { return Vec::new() };
        lib.handle.inspect(|n| n.game_stream().pending().to_vec()).await.unwrap_or_default()
    }

    /// Routes the game's bytes; returns the server's share and draws the echo of the player's
    /// own peers-only actions.
    async fn route(&mut self, bytes: &[u8]) -> Vec<u8> {
        self.ctx.stats.bytes_to_server.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        let Some(lib) = self.library.as_ref() else { return bytes.to_vec() };
        let handle = lib.handle.clone();
        let from = lib.peers_only_next;
        let Ok(to_server) = handle.game_send(bytes.to_vec()).await else {
            self.lose_library("the client driver stopped");
            return bytes.to_vec();
        };
        let look = handle
            .inspect(move |n| {
                let sent: Vec<ReceivedEvent> =
                    n.peers_only_since(from).map(|p| p.event.clone()).collect();
                (n.peers_only_next_seq(), sent, n.stats().desyncs)
            })
            .await;
        match look {
            Ok((next, sent, desyncs)) => {
                if let Some(lib) = self.library.as_mut() {
                    lib.peers_only_next = next;
                }
                let now = self.now();
                for event in sent {
                    if let Err(e) = self.recv.push_local_echo(now, &event.as_event()) {
                        tracing::debug!(aid = self.player.aid, "no echo: {e}");
                    }
                }
                if desyncs > 0 {
                    // Everything the node held went into `to_server` with the desync verdict;
                    // from here on the bytes pass untouched without it.
                    self.lose_library(
                        "the game's stream desynced (an id or length this PACKETVER does not have)",
                    );
                }
            }
            Err(_) => self.lose_library("the client driver stopped"),
        }
        to_server
    }

    /// Takes the server's bytes: draws them into the game's stream, rewriting a move to another
    /// map server to a door of the proxy, and follows map moves into the node's zone.
    async fn on_server_bytes(&mut self, bytes: &[u8]) {
        let now = self.now();
        let MapConnection { ctx, player, recv, .. } = self;
        recv.push_server_redirecting(now, bytes, |to: &ServerMove| {
            let mut moved = player.clone();
            moved.map = Some(to.map.clone());
            let upstream = SocketAddr::from((to.ip, to.port));
            match doors::open(ctx, DoorKind::Map, upstream, moved) {
                Ok(door) => Some(door),
                Err(e) => {
                    tracing::warn!(
                        aid = player.aid,
                        "no door for map server {upstream}: {e}; the client goes there directly"
                    );
                    None
                }
            }
        });
        let changes: Vec<MapChange> = self.recv.take_map_changes().collect();
        for change in changes {
            self.zone_changed(change.map()).await;
        }
        if self.recv.desync_reason().is_some() && !self.p2p_stopped_logged {
            self.lose_library("the server's stream desynced");
        }
    }

    async fn zone_changed(&mut self, map: &str) {
        self.player.map = Some(map.to_owned());
        self.report();
        let (Some(lib), Some(zone)) = (self.library.as_ref(), zone_of(map)) else { return };
        tracing::info!(aid = self.player.aid, %zone, "map move");
        if lib.handle.zone_changed(zone).await.is_err() {
            self.lose_library("the client driver stopped");
        }
    }

    fn on_driver_event(&mut self, event: DriverEvent) {
        match event {
            DriverEvent::Received { from, event } => {
                let Some(aid) = account_id_of(&from) else { return };
                let now = self.now();
                match self.recv.push_peer_event(now, aid, &event.as_event()) {
                    Ok(()) => {
                        self.ctx.stats.peer_events_drawn.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => tracing::debug!(aid = self.player.aid, "not drawn: {e}"),
                }
            }
            DriverEvent::Client(e) => tracing::debug!(aid = self.player.aid, "client: {e:?}"),
            other => tracing::trace!(aid = self.player.aid, "driver: {other:?}"),
        }
    }
}
