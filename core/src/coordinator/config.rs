//! The coordinator's tunables: caps, timeouts, host minimums and the rate limit.
//!
//! The operator's `config.yaml` (parsed by `crate::config`) fills a [`Config`]; the defaults
//! here are the ones the published guides use.

use serde::{Deserialize, Serialize};

/// The default of [`Config::outbound_queue_bytes_max`]: 1 MiB, sixteen maximum-size frames.
pub const OUTBOUND_QUEUE_BYTES_MAX_DEFAULT: usize = 1 << 20;

/// Everything the coordinator core can be tuned with.
#[derive(Clone, Debug)]
pub struct Config {
    /// Most sessions one zone may have open at once.
    pub max_sessions_per_zone: usize,
    /// Most seats (live or in grace) in one session.
    pub max_players_per_session: usize,
    /// Seat grace after a disconnect, and the longest an empty session may live, in seconds.
    pub session_timeout_s: u64,
    /// How often clients should `ping`, announced in `welcome`, in milliseconds.
    pub heartbeat_interval_ms: u64,
    /// A connection that sends no frame for this long is closed with `idle-timeout`.
    pub idle_timeout_ms: u64,
    /// How often each session's key is rotated, in seconds.
    pub key_rotation_interval_s: u64,
    /// The minimums a member's machine must meet to be elected host.
    pub host_requirements: HostRequirements,
    /// The per-connection frame rate limit.
    pub rate_limit: RateLimit,
    /// Bytes of frames queued towards one connection (written by the adapter, not yet taken
    /// by the socket) beyond which it is closed as a slow consumer.
    pub outbound_queue_bytes_max: usize,
    /// Most seats held in grace at once, coordinator-wide. A connection that goes away while
    /// this many wait gives its seat up at once (`peer-left`, `left`) instead of holding it.
    pub grace_seats_max: usize,
    /// Most seats in grace whose anonymous connections (authentication off) came from one
    /// address; beyond it, as for [`Config::grace_seats_max`].
    pub grace_seats_per_origin_max: usize,
    /// The software name announced in `welcome`.
    pub server_name: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_sessions_per_zone: 10,
            max_players_per_session: 50,
            session_timeout_s: 300,
            heartbeat_interval_ms: 15_000,
            idle_timeout_ms: 45_000,
            key_rotation_interval_s: 3600,
            host_requirements: HostRequirements::default(),
            rate_limit: RateLimit::default(),
            outbound_queue_bytes_max: OUTBOUND_QUEUE_BYTES_MAX_DEFAULT,
            grace_seats_max: 16_384,
            grace_seats_per_origin_max: 16,
            server_name: format!("ro-p2p-coordinator/{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// The host minimums (defaults from the game client's `Data/config.ini` `[P2P]` section).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRequirements {
    /// Fewest CPU cores.
    pub min_cpu_cores: u32,
    /// Lowest CPU clock in MHz.
    pub min_cpu_mhz: u32,
    /// Least memory in MB.
    pub min_memory_mb: u32,
    /// Least bandwidth in Mbps.
    pub min_bandwidth_mbps: u32,
    /// Highest latency to the coordinator in ms.
    pub max_latency_ms: u32,
}

impl Default for HostRequirements {
    fn default() -> Self {
        HostRequirements {
            min_cpu_cores: 4,
            min_cpu_mhz: 3000,
            min_memory_mb: 8192,
            min_bandwidth_mbps: 100,
            max_latency_ms: 100,
        }
    }
}

/// A token bucket per connection, and how many rejected frames close it. Every frame costs a
/// token: text, binary, and WebSocket pings and pongs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    /// Sustained frames per second.
    pub per_s: u32,
    /// Frames that may arrive at once after a quiet period.
    pub burst: u32,
    /// Rejected frames (over the rate or undecodable) within 10 s that close the connection.
    pub strikes_max: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit { per_s: 50, burst: 100, strikes_max: 20 }
    }
}
