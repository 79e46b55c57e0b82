//! The client's own settings, independent of where they were read from.
//!
//! The `config` module parses the operator's and the game client's files; the lead maps those
//! into this plain struct. Everything here has the default of the published guides
//! (`Data/config.ini` `[P2P]` and `p2p_config.json`).

use std::collections::BTreeSet;

use crate::wire::{Capabilities, PeerId, Zone};

/// Where a coordinator lives when nothing else is configured (the guide's development URL).
pub const DEFAULT_COORDINATOR_URL: &str = "ws://localhost:8001/api/signaling/ws";

/// Settings of the client state machine ([`super::Client`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Coordinator WebSocket URLs in order of preference: the primary first, then backups (as
    /// `[P2P_HOSTS]` of `Data/resourceinfo.ini` lists them). Empty: the client never connects.
    pub coordinator_urls: Vec<String>,
    /// Bearer token (JWT), sent as the first frame `auth {token}` after the transport opens.
    pub token: Option<String>,
    /// The client's own peer id, sent in `join`; honoured by the coordinator only when its
    /// authentication is off (development).
    pub peer_id: Option<PeerId>,
    /// Base of the exponential reconnect backoff (`ReconnectDelay`), in ms.
    pub reconnect_delay_ms: u64,
    /// Upper bound of any one backoff delay, and the interval of background probes while
    /// fallen back, in ms.
    pub backoff_cap_ms: u64,
    /// Connection attempts per coordinator URL before moving to the next one (`MaxRetries`);
    /// 0 is read as 1.
    pub max_retries: u32,
    /// How long one attempt may take from opening the transport to `welcome` (and from `join`
    /// to `session-joined`), in ms (`ConnectionTimeout`).
    pub connection_timeout_ms: u64,
    /// Master switch (`EnableP2P`). Off: the client never connects and everything goes to the
    /// map server.
    pub p2p_enabled: bool,
    /// Zones (rAthena map names) where P2P is used, as `p2p_enabled_zones` of
    /// `p2p_config.json` lists them (or every zone, for a `Data/config.ini` without a list).
    /// The default is an empty list: no zone, P2P is opt-in per map.
    pub p2p_enabled_zones: ZoneFilter,
    /// Most peer links in a full mesh (`MaxConnections`); in larger sessions every member links
    /// only to the session host.
    pub max_connections: usize,
    /// Round-trip time above which a link is degraded (`MaxLatencyMS`), in ms.
    pub max_latency_ms: u32,
    /// Packet loss at or above which a link is degraded, in percent.
    pub loss_degraded_percent: u8,
    /// This machine as a host candidate, reported in `join`.
    pub capabilities: Option<Capabilities>,
    /// Ping interval until `welcome` announces the coordinator's, in ms.
    pub heartbeat_interval_ms: u64,
    /// How long a peer link may take from `ConnectPeer` to connected before it is dropped
    /// (and offered again by the designated side), in ms.
    pub negotiation_timeout_ms: u64,
    /// Remote ICE candidates kept per peer while its remote description is not yet applied;
    /// beyond this they are dropped and counted.
    pub buffered_candidates_max: usize,
    /// Per-peer backoff of links that keep failing, in ms: after `k >= 2` links in a row to
    /// one peer ended before connecting, its next offer waits a delay drawn from `[d/2, d]`,
    /// `d = min(relink_backoff_cap_ms, relink_backoff_base_ms * 2^(k-2))`. (The first failure
    /// is offered again at once.) A pair that can never connect then costs a few offers per
    /// minute, not one per failure, which could be one a second.
    pub relink_backoff_base_ms: u64,
    /// The longest such delay, in ms.
    pub relink_backoff_cap_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            coordinator_urls: vec![DEFAULT_COORDINATOR_URL.to_owned()],
            token: None,
            peer_id: None,
            reconnect_delay_ms: 1_000,
            backoff_cap_ms: 30_000,
            max_retries: 3,
            connection_timeout_ms: 5_000,
            p2p_enabled: true,
            p2p_enabled_zones: ZoneFilter::Only(Default::default()),
            max_connections: 5,
            max_latency_ms: 100,
            loss_degraded_percent: 10,
            capabilities: None,
            heartbeat_interval_ms: 15_000,
            negotiation_timeout_ms: 15_000,
            buffered_candidates_max: 32,
            relink_backoff_base_ms: 1_000,
            relink_backoff_cap_ms: 60_000,
        }
    }
}

impl Config {
    /// Whether P2P may be used in `zone` (master switch on and the zone listed).
    pub fn zone_enabled(&self, zone: &Zone) -> bool {
        self.p2p_enabled && self.p2p_enabled_zones.allows(zone)
    }
}

/// Which zones (rAthena map names) use P2P.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ZoneFilter {
    /// Every zone (no `zones.p2p_enabled_zones` given; INI files have no zone list).
    #[default]
    All,
    /// Only these; an empty list means none.
    Only(BTreeSet<Zone>),
}

impl FromIterator<Zone> for ZoneFilter {
    /// Exactly these zones.
    fn from_iter<I: IntoIterator<Item = Zone>>(zones: I) -> Self {
        ZoneFilter::Only(zones.into_iter().collect())
    }
}

impl ZoneFilter {
    /// Whether P2P may be used in `zone`.
    pub fn allows(&self, zone: &Zone) -> bool {
        match self {
            ZoneFilter::All => true,
            ZoneFilter::Only(set) => set.contains(zone),
        }
    }
}
