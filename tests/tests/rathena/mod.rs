//! Shared pieces of the end-to-end tests against a real rAthena through `ro-p2p proxy`: the
//! coordinator on loopback, a proxy in front of the harness's login server, players (headless
//! game clients) through the proxy or straight to rAthena, and waits for peer links.
#![allow(dead_code)]

pub mod auth;
pub mod drawn;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ro_p2p_core::Rng;
use ro_p2p_core::config::ClientSettings;
use ro_p2p_proxy::{PlayerStatus, Proxy, ProxyConfig};
// Each test binary uses some of these.
#[allow(unused_imports)]
pub use ro_p2p_rathena::testing::{
    ANSWER, NPC_DIALOG_SCRIPT, assert_server_kept_everyone, is_chat_from, mixed_actions,
    player_at as player, runtime, spawn_of,
};
use ro_p2p_rathena::{Bot, Harness, Packet};
use ro_p2p_tokio::server::{ServerConfig, Service, SystemClock};
use ro_p2p_webrtc::LinksConfig;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Bound for peer links to come up (WebRTC on loopback: about a second per pair).
pub const LINKS_UP: Duration = Duration::from_secs(60);

/// The coordinator service on a loopback port, with authentication off.
pub struct Coordinator {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Coordinator {
    /// Starts on `addr` (port 0 for a free one; a port used before to restart in place).
    pub async fn start(addr: SocketAddr) -> Coordinator {
        Coordinator::start_with(addr, ServerConfig::default()).await
    }

    /// Starts on `addr` with `config` (e.g. authentication mode `rathena`).
    pub async fn start_with(addr: SocketAddr, config: ServerConfig) -> Coordinator {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let service =
            Service::start(config, Rng::from_seed(addr.port().into()), Arc::new(SystemClock))
                .unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(service.serve(
            listener,
            async move {
                let _ = rx.await;
            },
            Duration::from_secs(2),
        ));
        Coordinator { addr, stop: Some(tx), task }
    }

    /// The signaling URL clients use.
    pub fn url(&self) -> String {
        format!("ws://{}/api/v1/signaling/ws", self.addr)
    }

    /// Stops it (every client sees its WebSocket close) and waits until it has.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(ANSWER, self.task).await.unwrap().unwrap().unwrap();
    }
}

/// A proxy in front of `h`'s login server, its players' nodes talking to `coordinator_url`.
pub async fn proxy(h: &Harness, coordinator_url: &str, policy: Option<&str>) -> Proxy {
    proxy_with(h, coordinator_url, policy, false).await
}

/// [`proxy`], presenting each player's web auth token to the coordinator when `web_auth`.
pub async fn proxy_with(
    h: &Harness,
    coordinator_url: &str,
    policy: Option<&str>,
    web_auth: bool,
) -> Proxy {
    let mut settings = ClientSettings::default();
    settings.coordinator_urls = vec![coordinator_url.to_owned()];
    settings.packet_version = h.packetver();
    settings.routing_policy = policy.map(str::to_owned);
    // A coordinator that went away is tried again soon (tests wait for P2P to resume).
    settings.reconnect_delay_ms = 200;
    Proxy::start(ProxyConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        login_server: h.login_addr(),
        public_ip: None,
        settings,
        links: LinksConfig::loopback(),
        door_wait_ms: 30_000,
        present_web_auth_token: web_auth,
    })
    .await
    .unwrap()
}

/// The proxy's view of account `aid`.
pub async fn status(proxy: &Proxy, aid: u32) -> PlayerStatus {
    proxy
        .players()
        .await
        .into_iter()
        .find(|p| p.aid == aid)
        .unwrap_or_else(|| panic!("account {aid} is not on a map connection of the proxy"))
}

/// Waits (bounded) until `check` holds for the proxy's players.
pub async fn wait_players(
    proxy: &Proxy,
    what: &str,
    bound: Duration,
    check: impl Fn(&[PlayerStatus]) -> bool,
) {
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        let players = proxy.players().await;
        if check(&players) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {players:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until every one of `aids` has a usable, healthy link to each of the others.
pub async fn wait_linked(proxy: &Proxy, aids: &[u32]) {
    wait_players(proxy, "every pair linked", LINKS_UP, |players| {
        aids.iter().all(|aid| {
            players.iter().any(|p| {
                p.aid == *aid
                    && p.peers_usable
                    && aids
                        .iter()
                        .filter(|o| *o != aid)
                        .all(|o| p.healthy_peers.contains(&o.to_string()))
            })
        })
    })
    .await;
}

/// Packets received since `mark` that match `pred`.
pub fn count_since(bot: &Bot, mark: usize, pred: impl Fn(&Packet) -> bool) -> usize {
    bot.received_since(mark).iter().filter(|p| pred(p)).count()
}
