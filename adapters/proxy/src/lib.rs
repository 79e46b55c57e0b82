//! `ro-p2p-proxy`: P2P for any game client without touching its executable.
//!
//! The proxy listens where the game expects the login server and chains the whole connection:
//! login server -> char server -> map server. It rewrites every address the servers hand out
//! (the char-server list at login, the map server at character select, another map server on a
//! warp) to a door of its own ([`doors`]), so the game keeps talking through it. Login and
//! char connections pass through untouched; the proxy only reads the replies it follows
//! (account id, web auth token, character name, map) with the core's [`ro_p2p_core::gate`].
//! On each map-server connection it runs the player's own client library: the same
//! [`ro_p2p_core::node::Node`], coordinator connection and WebRTC links the DLL runs, with
//! peers drawn into the game's stream by [`ro_p2p_core::render`]. Many players share one proxy
//! process, each with their own node. When the coordinator or a peer is unavailable, the
//! player plays on through the server. The binary is `ro-p2p proxy` (see `docs/proxy.md`).

mod charsrv;
pub mod doors;
mod follow;
mod login;
mod map;

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ro_p2p_core::config::ClientSettings;
use ro_p2p_core::node::NodeStats;
use ro_p2p_core::packet::PacketVersion;
use ro_p2p_core::render::ReceiveStats;
use ro_p2p_core::route::Policy;
use ro_p2p_tokio::client::NodeHandle;
use ro_p2p_webrtc::LinksConfig;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long a map door waits for its player by default.
pub const DOOR_WAIT_MS_DEFAULT: u64 = 60_000;
/// Players remembered between login and map at most (oldest forgotten first).
pub const PLAYERS_MAX: usize = 65_536;

/// Everything a [`Proxy`] runs on.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// Where the game connects, as it would to the login server. Doors bind the same IP.
    pub listen: SocketAddr,
    /// The real login server.
    pub login_server: SocketAddr,
    /// The IPv4 address written into rewritten replies: where the game reaches the proxy.
    /// `None`: the listen address (which must then not be unspecified).
    pub public_ip: Option<Ipv4Addr>,
    /// The client library's settings (`p2p_config.json` or `Data/config.ini`): coordinator
    /// URLs, PACKETVER, routing policy, zones.
    pub settings: ClientSettings,
    /// WebRTC settings of every player's links.
    pub links: LinksConfig,
    /// How long a map door waits for its player.
    pub door_wait_ms: u64,
    /// Present each player's `<account id>:<web auth token>` (from the login reply) to the
    /// coordinator, for its `rathena` authentication mode. Off for a coordinator with
    /// authentication off.
    pub present_web_auth_token: bool,
}

/// Why a proxy could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The PACKETVER of the settings is not supported.
    #[error("{0}")]
    PacketVersion(#[from] ro_p2p_core::packet::UnsupportedPacketVersion),
    /// The routing policy of the settings does not parse.
    #[error("routing policy: {0}")]
    Policy(#[from] ro_p2p_core::route::PolicyError),
    /// No IPv4 address to write into rewritten replies.
    #[error(
        "the proxy listens on {0}: give a public IPv4 address (--public-ip) the game can reach"
    )]
    NoPublicIp(SocketAddr),
    /// Binding the listen address failed.
    #[error("listening on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
}

/// Counters of a running proxy.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    logins: AtomicU64,
    char_connections: AtomicU64,
    map_connections: AtomicU64,
    bytes_to_server: AtomicU64,
    bytes_to_client: AtomicU64,
    peer_events_drawn: AtomicU64,
    p2p_stopped: AtomicU64,
    follow_stopped: AtomicU64,
}

/// A snapshot of the proxy's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ProxyStats {
    /// Login connections accepted.
    pub logins: u64,
    /// Char-server connections accepted.
    pub char_connections: u64,
    /// Map-server connections served.
    pub map_connections: u64,
    /// Bytes the games sent on map connections.
    pub bytes_to_server: u64,
    /// Bytes written to the games on map connections (server packets and drawn peers).
    pub bytes_to_client: u64,
    /// Peer events drawn into games' streams.
    pub peer_events_drawn: u64,
    /// Map connections on which P2P stopped (a desync, the client library gone).
    pub p2p_stopped: u64,
    /// Login or char connections whose replies could not be followed (passed through).
    pub follow_stopped: u64,
}

/// What the proxy learned about a player between login and map.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Player {
    /// Account id (the peer id on the coordinator).
    pub aid: u32,
    /// The login server's web auth token, when the PACKETVER carries one.
    pub web_auth_token: Option<String>,
    /// Character name, once selected.
    pub char_name: Option<String>,
    /// The map the server named last.
    pub map: Option<String>,
}

/// One player on a map connection of the proxy, as [`Proxy::players`] reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PlayerStatus {
    /// Account id (the peer id).
    pub aid: u32,
    /// Character name, when the char server's list named it.
    pub name: Option<String>,
    /// The map the server named last.
    pub map: Option<String>,
    /// Whether the player's client library runs (false: bytes pass through untouched).
    pub p2p_running: bool,
    /// The session joined, if any.
    pub session: Option<String>,
    /// Whether peers may be used right now (joined, keyed, at least one healthy link).
    pub peers_usable: bool,
    /// Peers whose links are healthy.
    pub healthy_peers: Vec<String>,
    /// The node's counters (what was routed where).
    pub node: NodeStats,
    /// The receive path's counters (drawn, duplicates dropped, echoes).
    pub receive: ReceiveStats,
}

/// A live map connection, for [`Proxy::players`].
#[derive(Clone)]
pub(crate) struct Live {
    pub player: Player,
    pub handle: Option<NodeHandle>,
    pub receive: ReceiveStats,
}

/// State shared by every connection of one proxy.
pub(crate) struct Ctx {
    config: ProxyConfig,
    version: PacketVersion,
    policy: Policy,
    public_ip: Ipv4Addr,
    stats: Counters,
    /// Players seen at login, by account id, oldest first in `order`.
    players: Mutex<Players>,
    char_doors: Mutex<BTreeMap<SocketAddr, SocketAddrV4>>,
    map_doors_waiting: AtomicUsize,
    stopping: CancellationToken,
    /// Map connections being served, by a connection number.
    live: Mutex<BTreeMap<u64, Live>>,
    next_live: AtomicU64,
}

#[derive(Default)]
pub(crate) struct Players {
    by_aid: BTreeMap<u32, Player>,
    order: VecDeque<u32>,
}

impl Ctx {
    /// Remembers `player` (replacing what was known of the account).
    pub(crate) fn remember(&self, player: Player) {
        let mut players = self.players.lock().unwrap_or_else(|p| p.into_inner());
        let aid = player.aid;
        if players.by_aid.insert(aid, player).is_none() {
            players.order.push_back(aid);
            while players.order.len() > PLAYERS_MAX {
                if let Some(old) = players.order.pop_front() {
                    players.by_aid.remove(&old);
                }
            }
        }
    }

    /// A new login of `aid` brought a new web auth token (the old one is void): the account's
    /// running client libraries authenticate with it from their next coordinator connection on
    /// (`NodeHandle::refresh_token`, what the C ABI's `rop2p_refresh_token` does).
    pub(crate) fn refresh_tokens(&self, aid: u32, web_auth_token: &str) {
        if !self.config.present_web_auth_token {
            return;
        }
        let handles: Vec<NodeHandle> = {
            let all = self.live.lock().unwrap_or_else(|p| p.into_inner());
            all.values().filter(|l| l.player.aid == aid).filter_map(|l| l.handle.clone()).collect()
        };
        if handles.is_empty() {
            return;
        }
        tracing::info!(aid, libraries = handles.len(), "new login: web auth token refreshed");
        let token =
            ro_p2p_core::coordinator::credential::WebAuthCredential::encode(aid, web_auth_token);
        for handle in handles {
            let token = token.clone();
            tokio::spawn(async move {
                let _ = handle.refresh_token(token).await;
            });
        }
    }

    /// Registers a map connection being served; returns its number.
    pub(crate) fn go_live(&self, live: Live) -> u64 {
        let n = self.next_live.fetch_add(1, Ordering::Relaxed);
        self.live.lock().unwrap_or_else(|p| p.into_inner()).insert(n, live);
        n
    }

    /// Updates (or, with `None`, ends) map connection `n`.
    pub(crate) fn update_live(&self, n: u64, live: Option<Live>) {
        let mut all = self.live.lock().unwrap_or_else(|p| p.into_inner());
        match live {
            Some(live) => {
                all.insert(n, live);
            }
            None => {
                all.remove(&n);
            }
        }
    }

    /// Updates the receive counters of map connection `n` (after every read: no allocation).
    pub(crate) fn update_receive(&self, n: u64, receive: ReceiveStats) {
        let mut all = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(live) = all.get_mut(&n) {
            live.receive = receive;
        }
    }

    /// What is known of account `aid` (at least its id).
    pub(crate) fn player(&self, aid: u32) -> Player {
        let players = self.players.lock().unwrap_or_else(|p| p.into_inner());
        players.by_aid.get(&aid).cloned().unwrap_or(Player { aid, ..Player::default() })
    }
}

/// A running proxy.
pub struct Proxy {
    ctx: Arc<Ctx>,
    local_addr: SocketAddr,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Binds the listen address and starts accepting games. Must be called inside a tokio
    /// runtime.
    pub async fn start(config: ProxyConfig) -> Result<Proxy, ProxyError> {
        let version = config.settings.version()?;
        if let Err(why) = ro_p2p_core::render::UnitLayout::of(version) {
            tracing::warn!(
                packetver = %version,
                "peers' walking is not drawn at this version ({why}); the server's copy shows it"
            );
        }
        let policy = match config.settings.routing_policy.as_deref() {
            None => Policy::default(),
            Some(p) => p.parse::<Policy>()?,
        };
        let public_ip = match (config.public_ip, config.listen.ip()) {
            (Some(ip), _) => ip,
            (None, IpAddr::V4(ip)) if !ip.is_unspecified() => ip,
            _ => return Err(ProxyError::NoPublicIp(config.listen)),
        };
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| ProxyError::Listen { addr: config.listen, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| ProxyError::Listen { addr: config.listen, source })?;
        let ctx = Arc::new(Ctx {
            config: ProxyConfig { listen: local_addr, ..config },
            version,
            policy,
            public_ip,
            stats: Counters::default(),
            players: Mutex::new(Players::default()),
            char_doors: Mutex::new(BTreeMap::new()),
            map_doors_waiting: AtomicUsize::new(0),
            stopping: CancellationToken::new(),
            live: Mutex::new(BTreeMap::new()),
            next_live: AtomicU64::new(0),
        });
        let accept = tokio::spawn(accept_logins(ctx.clone(), listener));
        Ok(Proxy { ctx, local_addr, accept })
    }

    /// Where the game connects (the login address to put in `clientinfo.xml`).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The PACKETVER the proxy serves.
    pub fn packet_version(&self) -> PacketVersion {
        self.ctx.version
    }

    /// The counters now.
    pub fn stats(&self) -> ProxyStats {
        let c = &self.ctx.stats;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ProxyStats {
            logins: get(&c.logins),
            char_connections: get(&c.char_connections),
            map_connections: get(&c.map_connections),
            bytes_to_server: get(&c.bytes_to_server),
            bytes_to_client: get(&c.bytes_to_client),
            peer_events_drawn: get(&c.peer_events_drawn),
            p2p_stopped: get(&c.p2p_stopped),
            follow_stopped: get(&c.follow_stopped),
        }
    }

    /// Every player on a map connection now, by account id.
    pub async fn players(&self) -> Vec<PlayerStatus> {
        let live: Vec<Live> =
            self.ctx.live.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
        let mut out = Vec::with_capacity(live.len());
        for l in live {
            let look = match &l.handle {
                Some(h) => h
                    .inspect(|n| {
                        let inputs = n.client().route_inputs();
                        (
                            n.client().session_id().map(|s| s.as_str().to_owned()),
                            inputs.allows_peers(),
                            inputs.healthy_peers.iter().map(|p| p.as_str().to_owned()).collect(),
                            n.stats().clone(),
                        )
                    })
                    .await
                    .ok(),
                None => None,
            };
            let p2p_running = look.is_some();
            let (session, peers_usable, healthy_peers, node) = look.unwrap_or_default();
            out.push(PlayerStatus {
                aid: l.player.aid,
                name: l.player.char_name.clone(),
                map: l.player.map.clone(),
                p2p_running,
                session,
                peers_usable,
                healthy_peers,
                node,
                receive: l.receive,
            });
        }
        out.sort_by_key(|p| p.aid);
        out
    }

    /// Stops accepting games and closes the doors. Connections already open carry on until
    /// they end.
    pub async fn stop(self) {
        self.ctx.stopping.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(1), self.accept).await;
    }
}

async fn accept_logins(ctx: Arc<Ctx>, listener: TcpListener) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => {
                    ctx.stats.logins.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(login::serve(ctx.clone(), client));
                }
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            () = ctx.stopping.cancelled() => return,
        }
    }
}
