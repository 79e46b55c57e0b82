//! The coordinator service: the sans-IO [`Coordinator`] core on the network, over axum.
//!
//! Shape: one [`hub`] task owns the core; one task per WebSocket ([`ws`]) authenticates and
//! then only moves frames; REST handlers ([`rest`]) query the hub. [`Service::start`] spawns the
//! hub, [`Service::router`] gives the axum [`Router`], [`Service::serve`] runs it on any
//! [`Listener`] (a tokio `TcpListener`, a [`tls::TlsListener`], or turmoil's listener in the
//! simulation) until a shutdown future resolves, then closes every client with
//! `shutting-down` and waits for them. Nothing on this path reads `std::time` or spawns
//! blocking work, so it runs unchanged under turmoil's simulated time.

mod audit;
pub mod auth;
mod auth_error;
mod cluster_hub;
mod conns;
mod health;
mod hub;
pub mod metrics;
pub mod rathena;
pub mod rest;
pub mod settings;
pub mod tls;
pub mod ws;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{DefaultBodyLimit, Query, State, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::Listener;
use ro_p2p_core::Rng;
use ro_p2p_core::coordinator::{self, Coordinator};
use ro_p2p_core::wire::{ErrorCode, limits};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

pub use auth::{
    AuthError, Authenticator, IceConfig, ManualWallClock, SystemClock, TurnServer, WallClock,
};
pub use cluster_hub::{
    ClusterBackend, ClusterConfig, LEASE_TTL_MS_DEFAULT, VIEW_INTERVAL_MS_DEFAULT,
    default_instance_id,
};
pub use health::{ClusterHealth, Health};
pub use rest::ApiError;

/// The canonical signaling path.
pub const WEBSOCKET_PATH: &str = "/api/v1/signaling/ws";
/// The alias older clients use.
pub const WEBSOCKET_PATH_ALIAS: &str = "/api/signaling/ws";

/// WebSocket read buffer per connection, in bytes: grows on demand up to the frame limit, so
/// an idle client costs this much, not the 128 KiB tungstenite defaults to. A lone trickled
/// candidate (about 200 bytes framed) fits many times over.
pub const WS_READ_BUFFER_BYTES: usize = 1024;
/// Bytes of outgoing frames gathered before tungstenite writes to the socket (a flush writes
/// whatever is gathered anyway).
pub const WS_WRITE_BUFFER_BYTES: usize = 16 * 1024;
/// File descriptors left for everything but signaling connections (listener, Redis, log file,
/// the runtime's own) when `max_connections` is fitted under the open-file limit.
pub const FD_RESERVE: u64 = 64;

/// The most signaling connections a process with `open_file_limit` descriptors can serve
/// without `accept` failing (which stalls every new connection), capped at `max_connections`:
/// one descriptor per connection, [`FD_RESERVE`] kept for the rest, at least 1.
pub fn connections_within_open_file_limit(max_connections: usize, open_file_limit: u64) -> usize {
    let room = open_file_limit.saturating_sub(FD_RESERVE).max(1);
    max_connections.min(usize::try_from(room).unwrap_or(usize::MAX))
}

/// How long a connection has to send a request's headers, from its accept or its previous
/// request; then it is closed. Bounds what silent or byte-dripping clients can hold.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest HTTP request body the REST API reads, in bytes.
pub const REST_BODY_BYTES_MAX: usize = 64 * 1024;
/// Most header fields in a request the service answers; more get `431` with a JSON body.
pub const HEADERS_MAX: usize = 100;
/// Most bytes of header names and values in a request the service answers; more get `431`
/// with a JSON body.
pub const HEADER_BYTES_MAX: usize = 32 * 1024;
/// Hyper's own limits, above the service's so that the service answers (with JSON) first:
/// header fields it parses, and the read buffer a request head must fit in (a head larger
/// than this is refused by hyper itself with an empty `431`).
const HYPER_HEADERS_MAX: usize = 4 * HEADERS_MAX;
const HYPER_READ_BUFFER_BYTES: usize = 256 * 1024;

/// The client's IP address, put into each request's extensions by the accept loop.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ClientIp(pub(crate) Option<std::net::IpAddr>);

/// Whether `url` may be `coordinator.public_url`: `ws://` or `wss://`, a host, no path.
pub fn valid_public_url(url: &str) -> bool {
    let url = url.trim_end_matches('/');
    let Some(rest) = url.strip_prefix("wss://").or_else(|| url.strip_prefix("ws://")) else {
        return false;
    };
    !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b))
}

/// The router with the client's address in every request's extensions.
#[derive(Clone, Debug)]
struct WithClientIp {
    router: Router,
    ip: ClientIp,
}

impl hyper::service::Service<axum::http::Request<hyper::body::Incoming>> for WithClientIp {
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = hyper_util::service::TowerToHyperServiceFuture<
        Router,
        axum::http::Request<hyper::body::Incoming>,
    >;

    fn call(&self, mut req: axum::http::Request<hyper::body::Incoming>) -> Self::Future {
        req.extensions_mut().insert(self.ip);
        hyper_util::service::TowerToHyperService::new(self.router.clone()).call(req)
    }
}

/// Everything the service needs to run, already validated.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The core's settings (sessions, rate limits, timers, host requirements).
    pub core: coordinator::Config,
    /// Require a JWT (HS256 with `jwt_secret`) on every connection.
    pub require_authentication: bool,
    /// The HS256 secret shared with the rAthena side; required when authentication is on in
    /// mode `jwt`.
    pub jwt_secret: Option<String>,
    /// Mode `rathena` (`coordinator.auth.rathena`): clients present their web auth token,
    /// checked in rAthena's `login` table. Wins over `jwt_secret`; needs
    /// `require_authentication`.
    pub rathena_auth: Option<ro_p2p_core::config::RathenaAuthSettings>,
    /// STUN/TURN servers handed to clients.
    pub ice: IceConfig,
    /// The configured signaling path (served besides the two built-in ones).
    pub websocket_path: String,
    /// How long a client without a token in the upgrade request has to send `auth`.
    pub auth_deadline: Duration,
    /// Frames queued per connection before it is closed as a slow consumer.
    pub outbound_queue_len: usize,
    /// Most signaling connections at once (upgrades beyond it get `server-full`, HTTP 503).
    pub max_connections: usize,
    /// Events queued towards the hub before connection tasks wait (back-pressure).
    pub hub_queue_len: usize,
    /// Whether the listener is TLS (only changes the `websocket_url` login reports).
    pub tls: bool,
    /// Where clients reach this coordinator (`coordinator.public_url`, `ws://` or `wss://`
    /// with no path): login's `websocket_url` is this plus the WebSocket path. `None`: built
    /// from the request's `Host` header.
    pub public_url: Option<String>,
    /// Reverse proxies (`coordinator.trusted_proxies`) whose `Forwarded: proto=` or
    /// `X-Forwarded-Proto` says whether the client used TLS; ignored from any other address.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Cluster mode (several instances, one world, a shared store); `None`: one instance with
    /// everything in memory.
    pub cluster: Option<ClusterConfig>,
}

impl Default for ServerConfig {
    /// The embedded default (`CoordinatorSettings::default()`): authentication off, in memory.
    fn default() -> Self {
        ServerConfig::from_settings(&ro_p2p_core::config::CoordinatorSettings::default())
    }
}

impl ServerConfig {
    /// The service-only knobs with their defaults, around the core's default config.
    pub(crate) fn base() -> Self {
        ServerConfig {
            core: coordinator::Config::default(),
            require_authentication: false,
            jwt_secret: None,
            rathena_auth: None,
            ice: IceConfig {
                stun_servers: Vec::new(),
                turn_servers: Vec::new(),
                turn_shared_secret: None,
                turn_credential_ttl_s: 86_400,
            },
            websocket_path: WEBSOCKET_PATH.to_owned(),
            auth_deadline: Duration::from_secs(5),
            outbound_queue_len: 256,
            max_connections: 50_000,
            hub_queue_len: 16_384,
            tls: false,
            public_url: None,
            trusted_proxies: Vec::new(),
            cluster: None,
        }
    }
}

/// Why a [`ServerConfig`] cannot be served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// Authentication is on but no secret is configured.
    #[error("coordinator.require_authentication is true but coordinator.jwt_secret is empty")]
    MissingJwtSecret,
    /// Mode `rathena` cannot start (a database URL the MySQL client refuses).
    #[error(transparent)]
    Rathena(#[from] rathena::RathenaAuthError),
    /// Mode `rathena` is configured but authentication is off.
    #[error("coordinator.auth.rathena is set but require_authentication is false")]
    RathenaWithoutAuthentication,
    /// The WebSocket path is not a plain absolute path, or is taken by the REST API.
    #[error(
        "coordinator.websocket_path must be a plain path starting with '/', not a REST path: {0:?}"
    )]
    BadWebsocketPath(String),
    /// A queue length is zero.
    #[error("{0} must be at least 1")]
    ZeroQueue(&'static str),
    /// The public URL is not a `ws://` or `wss://` URL with a host and no path.
    #[error("coordinator.public_url must be ws://host[:port] or wss://host[:port]: {0:?}")]
    BadPublicUrl(String),
    /// Cluster mode's store cannot be opened (bad Redis settings).
    #[error("coordinator.redis: {0}")]
    Cluster(#[from] crate::cluster::StoreError),
}

/// Counts live connection tasks, so shutdown can wait for their close frames, and those of
/// them still waiting for their `auth` frame (health and metrics show both).
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    live: AtomicUsize,
    pending_auth: AtomicUsize,
    idle: Notify,
}

/// Held by a connection while it waits for its `auth` frame; dropping it tells the tracker.
#[derive(Debug)]
pub(crate) struct PendingAuth(Arc<Tracker>);

impl Drop for PendingAuth {
    fn drop(&mut self) {
        self.0.pending_auth.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Held by each connection task; dropping it tells the tracker.
#[derive(Debug)]
pub(crate) struct Alive(Arc<Tracker>);

impl Tracker {
    /// Counts one more connection task, unless `max` are live already.
    fn try_enter(self: &Arc<Self>, max: usize) -> Option<Alive> {
        self.live
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < max).then_some(n + 1))
            .ok()?;
        Some(Alive(Arc::clone(self)))
    }

    /// Counts one more connection waiting for its `auth` frame.
    fn pending_auth(self: &Arc<Self>) -> PendingAuth {
        self.pending_auth.fetch_add(1, Ordering::SeqCst);
        PendingAuth(Arc::clone(self))
    }

    /// Upgraded connections still waiting for their `auth` frame.
    pub(crate) fn pending_auth_count(&self) -> usize {
        self.pending_auth.load(Ordering::SeqCst)
    }

    /// Signaling connections open (upgraded or upgrading), authenticated or not.
    pub(crate) fn open_count(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.live.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for Alive {
    fn drop(&mut self) {
        if self.0.live.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// What every handler shares; immutable after start.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) auth: Authenticator,
    pub(crate) ice: IceConfig,
    pub(crate) next_conn: AtomicU64,
    pub(crate) outbound_queue_len: usize,
    pub(crate) outbound_queue_bytes_max: usize,
    pub(crate) max_connections: usize,
    pub(crate) auth_deadline: Duration,
    pub(crate) websocket_path: String,
    pub(crate) heartbeat_interval_ms: u64,
    pub(crate) tls: bool,
    pub(crate) public_url: Option<String>,
    pub(crate) trusted_proxies: Vec<std::net::IpAddr>,
    pub(crate) tracker: Arc<Tracker>,
}

/// The axum state: the hub's channel and the shared settings.
#[derive(Clone, Debug)]
pub struct AppState {
    pub(crate) hub: mpsc::Sender<conns::Event>,
    pub(crate) shared: Arc<Shared>,
}

/// A started coordinator service: the hub task is running; serve it on a listener.
#[derive(Debug)]
pub struct Service {
    state: AppState,
    hub: JoinHandle<()>,
}

impl Service {
    /// Validates `config`, builds the core with `rng` and spawns the hub task. `clock` is the
    /// wall clock for token expiry and TURN credentials ([`SystemClock`] in production). Must be
    /// called inside a tokio runtime.
    pub fn start(
        config: ServerConfig,
        rng: Rng,
        clock: Arc<dyn WallClock>,
    ) -> Result<Service, ServiceError> {
        let path = &config.websocket_path;
        let taken = path.starts_with("/api/v1/sessions/")
            || ["/api/v1/auth/login", "/api/v1/health", "/metrics"].contains(&path.as_str());
        if !path.starts_with('/') || path.contains(['{', '}', '*', '?', '#']) || taken {
            return Err(ServiceError::BadWebsocketPath(config.websocket_path));
        }
        if config.outbound_queue_len == 0 {
            return Err(ServiceError::ZeroQueue("outbound_queue_len"));
        }
        if config.hub_queue_len == 0 {
            return Err(ServiceError::ZeroQueue("hub_queue_len"));
        }
        let mut recheck = None;
        let auth = if let Some(settings) = &config.rathena_auth {
            if !config.require_authentication {
                return Err(ServiceError::RathenaWithoutAuthentication);
            }
            let r = Arc::new(rathena::RathenaAuth::new(settings)?);
            recheck = Some(Arc::clone(&r));
            Authenticator::rathena(r, clock)
        } else if config.require_authentication {
            match config.jwt_secret.as_deref() {
                Some(secret) if !secret.is_empty() => {
                    Authenticator::hs256(secret.as_bytes(), clock)
                }
                _ => return Err(ServiceError::MissingJwtSecret),
            }
        } else {
            Authenticator::off(clock)
        };
        if let Some(url) = &config.public_url
            && !valid_public_url(url)
        {
            return Err(ServiceError::BadPublicUrl(url.clone()));
        }
        let heartbeat_interval_ms = config.core.heartbeat_interval_ms;
        let outbound_queue_bytes_max = config.core.outbound_queue_bytes_max.max(1);
        let core = Coordinator::new(config.core, rng);
        let (tx, rx) = mpsc::channel(config.hub_queue_len);
        if let Some(r) = recheck {
            tokio::spawn(rathena::recheck_loop(r, tx.downgrade()));
        }
        let hub = match &config.cluster {
            None => tokio::spawn(hub::Hub::new(core).run(rx)),
            Some(cluster) => {
                let clock: Arc<dyn crate::cluster::Clock> = match &cluster.clock {
                    Some(clock) => Arc::clone(clock),
                    None => Arc::new(crate::cluster::TokioClock::new()),
                };
                let store = cluster_hub::open_store(cluster, Arc::clone(&clock))?;
                tokio::spawn(cluster_hub::ClusterHub::new(core, store, cluster, clock).run(rx))
            }
        };
        let shared = Arc::new(Shared {
            auth,
            ice: config.ice,
            next_conn: AtomicU64::new(1),
            outbound_queue_len: config.outbound_queue_len,
            outbound_queue_bytes_max,
            max_connections: config.max_connections,
            auth_deadline: config.auth_deadline,
            websocket_path: config.websocket_path,
            heartbeat_interval_ms,
            tls: config.tls,
            public_url: config.public_url.map(|u| u.trim_end_matches('/').to_owned()),
            trusted_proxies: config.trusted_proxies,
            tracker: Arc::default(),
        });
        Ok(Service { state: AppState { hub: tx, shared }, hub })
    }

    /// The axum router of every endpoint.
    pub fn router(&self) -> Router {
        router(self.state.clone())
    }

    /// Serves on `listener` until `shutdown` resolves; then closes every WebSocket with
    /// `shutting-down` and waits (at most `drain`) for their close handshakes.
    ///
    /// Each connection is served by hyper's HTTP/1.1 server with a [`HEADER_READ_TIMEOUT`]
    /// (`axum::serve` sets none, so a client that connected and never sent a request held its
    /// socket for ever).
    pub async fn serve<L>(
        self,
        mut listener: L,
        shutdown: impl Future<Output = ()> + Send + 'static,
        drain: Duration,
    ) -> std::io::Result<()>
    where
        L: Listener,
        L::Addr: std::fmt::Debug + Into<std::net::SocketAddr>,
    {
        let hub = self.state.hub.clone();
        let tracker = Arc::clone(&self.state.shared.tracker);
        let router = self.router();
        // `stop` tells connection tasks to finish; every task holds a `done` receiver, so
        // `done_tx.closed()` resolves once all of them have ended.
        let (stop_tx, _) = tokio::sync::watch::channel(false);
        let (done_tx, done_rx) = tokio::sync::watch::channel(());
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let (io, addr) = tokio::select! {
                conn = listener.accept() => conn,
                () = &mut shutdown => break,
            };
            tracing::trace!(?addr, "connection accepted");
            let ip = ClientIp(Some(addr.into().ip()));
            let service = WithClientIp { router: router.clone(), ip };
            let mut stop = stop_tx.subscribe();
            let done = done_rx.clone();
            tokio::spawn(async move {
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    .max_headers(HYPER_HEADERS_MAX)
                    .max_buf_size(HYPER_READ_BUFFER_BYTES)
                    .serve_connection(hyper_util::rt::TokioIo::new(io), service)
                    .with_upgrades();
                let mut conn = std::pin::pin!(conn);
                let result = tokio::select! {
                    result = conn.as_mut() => result,
                    _ = stop.changed() => {
                        conn.as_mut().graceful_shutdown();
                        conn.await
                    }
                };
                if let Err(e) = result {
                    tracing::trace!(error = %e, "connection ended with an error");
                }
                drop(done);
            });
        }
        tracing::info!("shutting down: closing every signaling connection");
        let _ = hub.send(conns::Event::Shutdown).await;
        drop(listener);
        let _ = stop_tx.send(true);
        drop(done_rx);
        done_tx.closed().await;
        if tokio::time::timeout(drain, tracker.wait_idle()).await.is_err() {
            tracing::warn!("some connections did not finish closing in time");
        }
        drop(self.state);
        self.hub.abort();
        Ok(())
    }
}

/// Starts a service with the OS's entropy and clock and serves it until `shutdown`.
pub async fn serve<L>(
    listener: L,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError>
where
    L: Listener,
    L::Addr: std::fmt::Debug + Into<std::net::SocketAddr>,
{
    let mut seed = [0u8; 32];
    rand_core::OsRng
        .try_fill_bytes(&mut seed)
        .map_err(|e| ServeError::Io(std::io::Error::other(e.to_string())))?;
    let service = Service::start(config, Rng::from_entropy_bytes(seed), Arc::new(SystemClock))?;
    service.serve(listener, shutdown, Duration::from_secs(5)).await?;
    Ok(())
}

/// Why [`serve`] stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The configuration cannot be served.
    #[error(transparent)]
    Config(#[from] ServiceError),
    /// The listener failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

use rand_core::TryRngCore as _;

/// The router over `state`: signaling WebSocket, REST and metrics.
fn router(state: AppState) -> Router {
    let mut r = Router::new()
        .route(WEBSOCKET_PATH, get(ws_upgrade))
        .route(WEBSOCKET_PATH_ALIAS, get(ws_upgrade));
    let custom = state.shared.websocket_path.clone();
    if custom != WEBSOCKET_PATH && custom != WEBSOCKET_PATH_ALIAS {
        r = r.route(&custom, get(ws_upgrade));
    }
    r.route("/api/v1/auth/login", post(rest::login))
        .route("/api/v1/sessions/discover", get(rest::discover))
        .route("/api/v1/sessions/join", post(rest::join))
        .route("/api/v1/sessions/list", get(rest::list))
        .route("/api/v1/sessions/{id}", get(rest::session))
        .route("/api/v1/health", get(rest::health))
        .route("/metrics", get(rest::metrics))
        .fallback(rest::not_found)
        .layer(DefaultBodyLimit::max(REST_BODY_BYTES_MAX))
        // Outermost: every error the framework answers itself becomes `{code, message}`.
        .layer(axum::middleware::map_response(rest::json_errors))
        .layer(axum::middleware::from_fn(rest::header_limits))
        .with_state(state)
}

#[derive(Debug, serde::Deserialize)]
struct WsQuery {
    token: Option<String>,
}

async fn ws_upgrade(
    State(state): State<AppState>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    headers: HeaderMap,
    query: Result<Query<WsQuery>, QueryRejection>,
    client: Option<axum::Extension<ClientIp>>,
) -> Response {
    // The auth deadline counts from here: nothing the client sends later moves it.
    let deadline = tokio::time::Instant::now() + state.shared.auth_deadline;
    let origin = client.and_then(|axum::Extension(ClientIp(ip))| ip);
    let upgrade = match upgrade {
        Ok(u) => u,
        Err(e) => {
            return ApiError::new(
                ErrorCode::BadValue,
                format!("expected a WebSocket upgrade: {e}"),
            )
            .into_response();
        }
    };
    let query_token = query.ok().and_then(|Query(q)| q.token);
    let token = rest::bearer(&headers).map(str::to_owned).or(query_token);
    let Some(alive) = state.shared.tracker.try_enter(state.shared.max_connections) else {
        let _ = state.hub.send(conns::Event::Rejected { code: ErrorCode::ServerFull }).await;
        let max = state.shared.max_connections;
        audit::refused_before_hub(origin, ErrorCode::ServerFull, "max_connections reached");
        return ApiError::new(
            ErrorCode::ServerFull,
            format!("this coordinator serves {max} connections already; retry later"),
        )
        .into_response();
    };
    let pre = match (state.shared.auth.required(), token) {
        (true, None) => {
            ws::PreAuth::AwaitAuthFrame { deadline, pending: state.shared.tracker.pending_auth() }
        }
        (_, token) => ws::PreAuth::Token(token),
    };
    upgrade
        .read_buffer_size(WS_READ_BUFFER_BYTES)
        // Frames queued together are written with one flush (see `ws::write_batch`); the
        // buffer is not preallocated, so an idle client does not pay for it.
        .write_buffer_size(WS_WRITE_BUFFER_BYTES)
        .max_write_buffer_size(2 * limits::FRAME_BYTES_MAX + 1024)
        .max_message_size(limits::FRAME_BYTES_MAX)
        .max_frame_size(limits::FRAME_BYTES_MAX)
        .on_upgrade(move |socket| ws::run(socket, state, pre, origin, alive))
}
