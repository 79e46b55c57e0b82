//! What `GET /api/v1/health` reports, in both modes: plain data that the hubs fill in and the
//! REST handler serialises. It names no other module of the service, so the hubs and the
//! `rathena` mode can all report into it without importing one another.

use ro_p2p_core::wire::Zone;

/// What `GET /api/v1/health` reports.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Health {
    /// `ok`, `degraded` (mode `rathena` with its database unreachable: admitted players stay,
    /// new logins get `auth-unavailable`; cluster mode with its store unreachable: sessions
    /// held stay, joins to other zones get `zone-unavailable`; the reason is in `auth` or
    /// `cluster`), or `shutting-down`.
    pub status: &'static str,
    /// Seconds since the hub started.
    pub uptime_s: u64,
    /// Open signaling connections (authenticated: known to the core).
    pub connections: usize,
    /// This instance's upgraded connections still waiting for their `auth` frame (they count
    /// against `max_connections` too).
    pub connections_pending_auth: usize,
    /// Live sessions.
    pub sessions: usize,
    /// The coordinator's version.
    pub version: &'static str,
    /// Mode `rathena` only: the account database's reachability.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthHealth>,
    /// Cluster mode only: this instance and the store's reachability.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterHealth>,
}

/// What `GET /api/v1/health` adds in cluster mode.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ClusterHealth {
    /// This instance's id.
    pub instance: String,
    /// `ok` when the store answered at the last view update, else `unreachable`.
    pub store: &'static str,
    /// The last store error, if the store is unreachable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store_error: Option<String>,
    /// Instances with a live view (this one included).
    pub instances: usize,
    /// Zones this instance owns.
    pub zones_owned: usize,
    /// Which zones those are, in order.
    pub zones: Vec<Zone>,
}

/// What `/api/v1/health` shows of the `rathena` mode.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AuthHealth {
    /// `rathena`.
    pub mode: &'static str,
    /// `ok` or `unreachable`.
    pub database: &'static str,
    /// Why it is unreachable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Connections admitted with a web auth token, re-checked every interval.
    pub admitted: usize,
}
