//! Cluster mode's hub: the same [`Event`]s as the single-instance hub, served by a
//! [`ClusterExecutor`] so several instances share one world through a [`ClusterStore`].
//!
//! Connection tasks and REST handlers do not know which hub they talk to: both read the same
//! channel of [`Event`]s. This task owns the executor (the core's cluster machine and the store
//! operations it asks for) and the bus subscription, and sleeps until the earliest of: the next
//! event, the next bus message, the executor's next timer, and the view timer. On the view timer
//! (every [`ClusterConfig::view_interval_ms`]) it publishes its [`InstanceView`], reads the
//! merged [`WorldView`] of every instance (what discovery, the session endpoints, health and
//! metrics answer from, with its own view always fresh), and notes whether the store answers.
//! While the store is unreachable the core keeps serving the zones it owns until their leases
//! would end and refuses others with `zone-unavailable`; nothing here needs a restart when the
//! store comes back.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use ro_p2p_core::cluster::SentKind;
use ro_p2p_core::coordinator::{self, ConnId, Coordinator, Placement, SessionView, Stats};
use ro_p2p_core::wire::{ErrorCode, SessionId, Zone};
use ro_p2p_core::{Instant as CoreInstant, config::RedisSettings};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::audit::Audit;
use super::conns::{self, ConnHandle, Event, Query, Queued};
use super::health::{ClusterHealth, Health};
use super::metrics::{self, ServiceMetrics};
use crate::cluster::{
    Clock, ClusterExecutor, ClusterStore, ExecutorOutput, InstanceId, InstanceView, RedisStore,
    SessionSummary, StoreConfig, StoreError, Subscription, WorldView,
};

/// Where cluster mode keeps its shared state.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum ClusterBackend {
    /// A Redis server (the `redis` block of `config.yaml`), opened when the service starts.
    Redis(RedisSettings),
    /// A store already opened (tests; the simulation's in-memory store). Its instance id wins
    /// over [`ClusterConfig::instance`].
    Store(Arc<dyn ClusterStore>),
}

/// Cluster mode: this instance is one of several serving one world.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// This instance's name in the cluster (unique among the instances).
    pub instance: InstanceId,
    /// The shared store.
    pub backend: ClusterBackend,
    /// How long a zone lease lasts unless renewed (renewed at half-life), in ms: the longest
    /// a dead owner's zones stay unavailable.
    pub lease_ttl_ms: u64,
    /// How often the instance view is published and the world view read, in ms.
    pub view_interval_ms: u64,
    /// The clock leases, timers and the core are measured on; `None`: tokio's clock from the
    /// service's start. Instances sharing a store that measures leases on its own clock (the
    /// simulation's [`MemoryWorld`](crate::cluster::MemoryWorld)) must use that same clock.
    pub clock: Option<Arc<dyn Clock>>,
}

/// Default zone lease, in ms.
pub const LEASE_TTL_MS_DEFAULT: u64 = 10_000;
/// Default view interval, in ms.
pub const VIEW_INTERVAL_MS_DEFAULT: u64 = 1_000;

impl ClusterConfig {
    /// Cluster mode on the Redis of `settings`, as `instance`, with the default timings.
    pub fn redis(settings: RedisSettings, instance: InstanceId) -> Self {
        ClusterConfig {
            instance,
            backend: ClusterBackend::Redis(settings),
            lease_ttl_ms: LEASE_TTL_MS_DEFAULT,
            view_interval_ms: VIEW_INTERVAL_MS_DEFAULT,
            clock: None,
        }
    }

    /// Cluster mode on a store already opened, with the default timings.
    pub fn store(store: Arc<dyn ClusterStore>) -> Self {
        ClusterConfig {
            instance: store.instance().clone(),
            backend: ClusterBackend::Store(store),
            lease_ttl_ms: LEASE_TTL_MS_DEFAULT,
            view_interval_ms: VIEW_INTERVAL_MS_DEFAULT,
            clock: None,
        }
    }
}

/// A default instance id: the host name and the process id (`host-1234`), so several instances
/// on one machine differ.
pub fn default_instance_id() -> InstanceId {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .unwrap_or_default();
    let host: String = host.trim().chars().take(40).collect();
    let host = if host.is_empty() { "coordinator" } else { host.as_str() };
    InstanceId::sanitized(&format!("{host}-{}", std::process::id()))
}

/// Opens the store of `config` (must run inside a tokio runtime).
pub(crate) fn open_store(
    config: &ClusterConfig,
    clock: Arc<dyn Clock>,
) -> Result<Arc<dyn ClusterStore>, StoreError> {
    match &config.backend {
        ClusterBackend::Store(store) => Ok(Arc::clone(store)),
        ClusterBackend::Redis(settings) => {
            let store =
                RedisStore::open(settings, config.instance.clone(), StoreConfig::default(), clock)?;
            Ok(Arc::new(store))
        }
    }
}

/// The task state of cluster mode.
pub(crate) struct ClusterHub {
    executor: ClusterExecutor,
    clock: Arc<dyn Clock>,
    conns: BTreeMap<ConnId, ConnHandle>,
    metrics: ServiceMetrics,
    shutting_down: bool,
    /// The other instances' views as last read (this instance's own is taken fresh).
    world: WorldView,
    store_error: Option<String>,
    audit: Audit,
    /// Whether the store was tried once (the first answer is logged).
    store_checked: bool,
    view_interval_ms: u64,
}

impl ClusterHub {
    /// The hub around `core`, on `store`, measuring time on `clock`.
    pub(crate) fn new(
        core: Coordinator,
        store: Arc<dyn ClusterStore>,
        config: &ClusterConfig,
        clock: Arc<dyn Clock>,
    ) -> Self {
        ClusterHub {
            executor: ClusterExecutor::new(core, store, Arc::clone(&clock), config.lease_ttl_ms),
            clock,
            conns: BTreeMap::new(),
            metrics: ServiceMetrics::default(),
            shutting_down: false,
            world: WorldView::default(),
            store_error: None,
            store_checked: false,
            audit: Audit::default(),
            view_interval_ms: config.view_interval_ms.max(10),
        }
    }

    fn store(&self) -> Arc<dyn ClusterStore> {
        Arc::clone(self.executor.store())
    }

    /// Runs until every sender of `events` is gone.
    pub(crate) async fn run(mut self, mut events: mpsc::Receiver<Event>) {
        let far = Instant::now() + Duration::from_secs(86_400 * 365);
        let tick = tokio::time::sleep_until(far);
        tokio::pin!(tick);
        let mut armed: Option<u64> = None;
        let mut views = tokio::time::interval(Duration::from_millis(self.view_interval_ms));
        views.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut bus: Option<Subscription> = None;
        loop {
            let wake = self.executor.poll_timeout_ms();
            if wake != armed {
                let at = wake.map_or(far, |ms| {
                    Instant::now() + Duration::from_millis(ms.saturating_sub(self.clock.now_ms()))
                });
                tick.as_mut().reset(at);
                armed = wake;
            }
            // Biased, so a run replays exactly (an unbiased select draws from tokio's unseeded
            // RNG): the timers first (each is ready once per deadline, so they cannot starve
            // the rest), then the bus, then the connections.
            tokio::select! {
                biased;
                () = &mut tick, if armed.is_some() => {
                    armed = None;
                    self.executor.tick().await;
                    self.flush(None).await;
                }
                _ = views.tick() => {
                    if bus.is_none() && !self.shutting_down {
                        match self.store().subscribe().await {
                            Ok(sub) => bus = Some(sub),
                            Err(e) => tracing::warn!(error = %e, "cannot subscribe to the bus yet"),
                        }
                    }
                    self.refresh_views().await;
                }
                msg = async { bus.as_mut()?.recv().await }, if bus.is_some() => match msg {
                    Some(msg) => {
                        self.executor.bus(msg).await;
                        self.flush(None).await;
                    }
                    None => bus = None,
                },
                ev = events.recv() => match ev {
                    Some(ev) => self.handle(ev).await,
                    None => break,
                },
            }
        }
    }

    async fn refresh_views(&mut self) {
        if self.shutting_down {
            return;
        }
        let store = self.store();
        let ttl_ms = self.view_interval_ms.saturating_mul(3);
        let result = async {
            store.publish_view(&self.own_view(), ttl_ms).await?;
            store.world().await
        }
        .await;
        match result {
            Ok(world) => {
                if self.store_error.take().is_some() {
                    tracing::info!("cluster store reachable again");
                } else if !self.store_checked {
                    tracing::info!(instances = world.instances.len() + 1, "cluster store answers");
                }
                self.store_checked = true;
                self.world = world;
            }
            Err(e) => {
                if self.store_error.is_none() {
                    tracing::warn!(
                        error = %e,
                        "cluster store unreachable: health is degraded and joins to zones this \
                         instance does not hold are refused (zone-unavailable) until it answers"
                    );
                }
                self.store_checked = true;
                self.store_error = Some(e.to_string());
            }
        }
    }

    /// This instance's view with the service's own counters added.
    fn own_view(&self) -> InstanceView {
        let mut view = self.executor.view();
        view.counters.insert("connections_accepted".to_owned(), self.metrics.connections_accepted);
        for (code, n) in &self.metrics.rejects {
            view.counters.insert(format!("service_rejects:{}", code.as_str()), *n);
        }
        view
    }

    /// The world as last read, with this instance's view fresh.
    fn world_now(&self) -> WorldView {
        let mut world = self.world.clone();
        world.instances.insert(self.executor.store().instance().clone(), self.own_view());
        world
    }

    async fn handle(&mut self, ev: Event) {
        match ev {
            Event::Connected { conn, identity, ice_servers, origin, handle } => {
                self.metrics.connections_accepted += 1;
                self.conns.insert(conn, handle);
                self.audit.connected(conn, origin);
                self.executor.connected(conn, identity, ice_servers).await;
                self.flush(None).await;
            }
            Event::Frame { conn, bytes, arrived } => {
                if !self.conns.contains_key(&conn) {
                    return;
                }
                self.executor.frame(conn, bytes).await;
                self.flush(Some(arrived)).await;
            }
            Event::Binary { conn } | Event::Control { conn } => {
                if !self.conns.contains_key(&conn) {
                    return;
                }
                let binary = matches!(ev, Event::Binary { .. });
                self.executor.non_text_frame(conn, binary).await;
                self.flush(None).await;
            }
            Event::Disconnected { conn } => {
                self.conns.remove(&conn);
                self.executor.disconnected(conn).await;
                self.flush(None).await;
                self.audit.disconnected(conn);
            }
            Event::Revoke { conn, reason } => {
                // The executor gives the seat up at once where this instance owns the zone.
                if let Some(handle) = self.conns.remove(&conn) {
                    handle.close(ErrorCode::AuthRevoked, reason.clone());
                    self.executor.revoked(conn, reason).await;
                    self.flush(None).await;
                }
            }
            Event::Rejected { code } => self.metrics.reject(code),
            Event::Query(q) => self.answer(q),
            Event::Shutdown => {
                self.shutting_down = true;
                self.executor.shutdown().await;
                self.flush(None).await;
            }
        }
    }

    /// Executes the executor's outputs; `arrived` is when the triggering frame arrived, for the
    /// signaling latency of relays served here.
    async fn flush(&mut self, arrived: Option<Instant>) {
        while let Some(out) = self.executor.poll_output() {
            match out {
                ExecutorOutput::Send { conn, text, kind } => {
                    if kind == SentKind::SessionJoined {
                        self.audit.identify(conn, self.executor.core().peer_of(conn));
                    }
                    self.audit.sent_text(conn, &text);
                    let relay = kind == SentKind::Relay;
                    if self.send(conn, text) {
                        if relay && let Some(arrived) = arrived {
                            self.metrics.signaling_latency.observe(arrived.elapsed());
                        }
                    } else if !self.conns.contains_key(&conn) {
                        // Closed as a slow consumer: the executor learns it is gone.
                        self.executor.disconnected(conn).await;
                    }
                }
                ExecutorOutput::Close { conn, code, reason } => {
                    if let Some(handle) = self.conns.remove(&conn) {
                        self.audit.closing(conn, code, &reason);
                        handle.close(code, reason);
                    }
                }
            }
        }
    }

    /// Queues `text` for `conn`; a full queue closes it as a slow consumer. Returns whether the
    /// frame was queued.
    fn send(&mut self, conn: ConnId, text: String) -> bool {
        match conns::queue_text(&mut self.conns, conn, Utf8Bytes::from(text)) {
            Queued::Yes => true,
            Queued::Gone => false,
            Queued::SlowConsumer => {
                self.metrics.reject(ErrorCode::SlowConsumer);
                false
            }
        }
    }

    fn answer(&mut self, q: Query) {
        // A dropped receiver means the HTTP client went away; nothing to do.
        match q {
            Query::Health(tx) => {
                let _ = tx.send(self.health());
            }
            Query::Sessions(tx) => {
                let _ = tx.send(self.sessions(None));
            }
            Query::Session(id, tx) => {
                let _ = tx.send(self.session(&id));
            }
            Query::Discover(zone, tx) => {
                let _ = tx.send(self.sessions(Some(&zone)));
            }
            Query::Placement(zone, tx) => {
                let _ = tx.send(self.placement(&zone));
            }
            Query::Metrics(tx) => {
                let _ = tx.send(self.render_metrics());
            }
        }
    }

    fn uptime_s(&self) -> u64 {
        self.clock.now_ms() / 1000
    }

    fn health(&self) -> Health {
        let world = self.world_now();
        Health {
            // Without the store no zone can be taken: sessions this instance holds keep going,
            // but joins to any other zone are refused (`zone-unavailable`).
            status: match (self.shutting_down, &self.store_error) {
                (true, _) => "shutting-down",
                (false, Some(_)) => "degraded",
                (false, None) => "ok",
            },
            uptime_s: self.uptime_s(),
            connections: usize::try_from(world.connections()).unwrap_or(usize::MAX),
            connections_pending_auth: 0, // filled in by the REST handler
            sessions: world.sessions().len(),
            version: env!("CARGO_PKG_VERSION"),
            auth: None,
            cluster: Some(ClusterHealth {
                instance: self.executor.store().instance().to_string(),
                store: if self.store_error.is_some() { "unreachable" } else { "ok" },
                store_error: self.store_error.clone(),
                instances: world.instances.len(),
                zones_owned: self.executor.owned_zones().len(),
                zones: self.executor.owned_zones().into_keys().collect(),
            }),
        }
    }

    /// A world session as the REST API shows it: `created_at` is this core's when it owns the
    /// session, else 0 (another instance's clock means nothing here).
    fn to_view(&self, s: SessionSummary) -> SessionView {
        let created_at = self
            .executor
            .core()
            .session(&s.session_id)
            .map_or(CoreInstant::from_millis(0), |v| v.created_at);
        SessionView {
            session_id: s.session_id,
            zone: s.zone,
            members: s.members,
            connected: s.connected,
            host: s.host,
            max_players: s.max_players,
            created_at,
            key_epoch: s.key_epoch,
        }
    }

    /// Every session of the world (or of one zone), by zone then id.
    fn sessions(&self, zone: Option<&Zone>) -> Vec<SessionView> {
        let mut all: Vec<SessionSummary> = self
            .world_now()
            .sessions()
            .into_iter()
            .filter(|s| zone.is_none_or(|z| &s.zone == z))
            .collect();
        all.sort_by(|a, b| (&a.zone, &a.session_id).cmp(&(&b.zone, &b.session_id)));
        all.into_iter().map(|s| self.to_view(s)).collect()
    }

    fn session(&self, id: &SessionId) -> Option<SessionView> {
        self.world_now().session(id).map(|s| self.to_view(s))
    }

    /// Where a `join` would go: this core's answer for a zone this instance serves, else the
    /// core's rule applied to the zone owner's published sessions (all of one owner, so their
    /// creation times compare).
    fn placement(&self, zone: &Zone) -> Result<Placement, ErrorCode> {
        let now = CoreInstant::from_millis(self.clock.now_ms());
        if self.executor.instance().serves(zone, now) {
            return self.executor.core().placement(zone);
        }
        let sessions = self.world_now().discover(zone);
        let rows = sessions.iter().map(|s| {
            let created_at = CoreInstant::from_millis(s.created_at_ms.unwrap_or(0));
            (s.members.len(), created_at, &s.session_id)
        });
        coordinator::place(rows, self.executor.core().config())
    }

    /// Prometheus text for the whole world: gauges from every instance's sessions, counters
    /// summed over the instances, the latency histogram of this instance only, and a few
    /// `ro_p2p_cluster_*` lines about this instance.
    fn render_metrics(&self) -> String {
        let world = self.world_now();
        let counters = world.counters();
        let get = |name: &str| counters.get(name).copied().unwrap_or(0);
        let mut stats = Stats {
            connections: usize::try_from(world.connections()).unwrap_or(usize::MAX),
            joins: get("joins"),
            leaves: get("leaves"),
            sessions_created: get("sessions_created"),
            sessions_expired: get("sessions_expired"),
            host_changes: get("host_changes"),
            key_rotations: get("key_rotations"),
            ..Stats::default()
        };
        let mut service = ServiceMetrics {
            connections_accepted: get("connections_accepted"),
            signaling_latency: self.metrics.signaling_latency.clone(),
            ..ServiceMetrics::default()
        };
        for (name, n) in &counters {
            if let Some(kind) = name.strip_prefix("relays:") {
                stats.relays.insert(kind.to_owned(), *n);
            } else if let Some(code) = name.strip_prefix("rejects:").and_then(parse_code) {
                stats.rejects.insert(code, *n);
            } else if let Some(code) = name.strip_prefix("service_rejects:").and_then(parse_code) {
                service.rejects.insert(code, *n);
            }
        }
        for s in world.sessions() {
            *stats.sessions_per_zone.entry(s.zone.clone()).or_default() += 1;
            *stats.players_per_zone.entry(s.zone.clone()).or_default() += s.members.len();
            stats.seats_in_grace += s.members.len().saturating_sub(s.connected.len());
        }
        let mut out = metrics::render(&stats, &service, self.uptime_s(), self.shutting_down);
        let lines: [(&str, &str, usize); 3] = [
            ("ro_p2p_cluster_instances", "Instances with a live view.", world.instances.len()),
            (
                "ro_p2p_cluster_zones_owned",
                "Zones this instance owns.",
                self.executor.owned_zones().len(),
            ),
            (
                "ro_p2p_cluster_store_up",
                "1 when the cluster store answered at the last view update.",
                usize::from(self.store_error.is_none()),
            ),
        ];
        for (name, help, value) in lines {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} gauge");
            let _ = writeln!(out, "{name} {value}");
        }
        out
    }
}

fn parse_code(s: &str) -> Option<ErrorCode> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).ok()
}
