//! How the links bind, time out and probe. Transport tuning only: which peers to link and when
//! is the client core's decision.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use ro_p2p_core::wire::IceServer;
use webrtc::peer_connection::{SettingEngine, SettingEngineBuilder};

use crate::tuning::LinkTuning;

/// Settings for one [`PeerLinks`](crate::PeerLinks).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinksConfig {
    /// Local UDP addresses each peer connection binds (port 0 picks one per connection).
    /// `0.0.0.0:0` means every non-loopback interface; tests use `127.0.0.1:0`.
    pub udp_bind_addrs: Vec<SocketAddr>,
    /// STUN/TURN servers used when `connect` passes none (the coordinator normally sends them).
    pub ice_servers_default: Vec<IceServer>,
    /// Use STUN/TURN servers at all; off on loopback, where only host candidates can work
    /// (and an offline machine would otherwise log a failed STUN lookup per link).
    pub use_ice_servers: bool,
    /// A backstop: a link not connected this long after `connect`, and not disconnected by
    /// the client core (which gives up after its own `negotiation_timeout_ms`, shorter), ends
    /// in `Failed` (logged as `ConnectTimeout`). Keep it longer than the core's timeout, or
    /// the two race (the default is twice the core's default).
    pub connect_timeout_ms: u64,
    /// ICE reports `disconnected` after this long without traffic from the peer.
    pub ice_disconnected_timeout_ms: u64,
    /// ICE reports `failed` this long after `disconnected`; the link then ends in
    /// `Failed(IceFailed)`.
    pub ice_failed_timeout_ms: u64,
    /// ICE keepalive interval on an idle link.
    pub ice_keepalive_interval_ms: u64,
    /// A probe (ping over the movement channel) is sent this often; `Measured` follows each.
    pub probe_interval_ms: u64,
    /// A probe unanswered this long counts as lost.
    pub probe_timeout_ms: u64,
    /// How many recent probes `Measured` summarises.
    pub probe_window: usize,
    /// Largest frame `send` accepts (a data-channel message).
    pub frame_bytes_max: usize,
    /// Per-channel send buffer; `send` fails with `SendBufferFull` beyond it instead of waiting.
    pub send_buffer_bytes_max: usize,
    /// Largest remote SDP accepted.
    pub sdp_bytes_max: usize,
    /// Local candidates the stack gathered before the local SDP was reported, kept (per peer)
    /// to report after it. Remote candidates are not buffered here: the client core buffers
    /// them until the remote SDP.
    pub pending_candidates_max: usize,
    /// A backstop on links at once (sockets, tasks), far above the client core's
    /// `max_connections`, which decides how many peers to link.
    pub links_max: usize,
    /// Capacity of the event channel; the links wait (back-pressure) when it is full.
    pub event_queue_len: usize,
    /// Channel reliability and chat nudges against loss (see `docs/webrtc.md`).
    pub tuning: LinkTuning,
}

impl Default for LinksConfig {
    /// Production defaults: every interface, a 30 s connect backstop (the client core gives up
    /// after 15 s), failure detected within about 8 s of silence, a probe per second over the
    /// last 10 probes.
    fn default() -> Self {
        LinksConfig {
            udp_bind_addrs: vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)],
            ice_servers_default: Vec::new(),
            use_ice_servers: true,
            connect_timeout_ms: 2 * ro_p2p_core::client::Config::default().negotiation_timeout_ms,
            ice_disconnected_timeout_ms: 3_000,
            ice_failed_timeout_ms: 5_000,
            ice_keepalive_interval_ms: 1_000,
            probe_interval_ms: 1_000,
            probe_timeout_ms: 2_000,
            probe_window: 10,
            frame_bytes_max: 16 * 1024,
            send_buffer_bytes_max: 1024 * 1024,
            sdp_bytes_max: 16 * 1024,
            pending_candidates_max: 64,
            links_max: 64,
            event_queue_len: 4096,
            tuning: LinkTuning::default(),
        }
    }
}

impl LinksConfig {
    /// The stack's settings for one link: the ICE timeouts. Nothing of SCTP's timers can be
    /// set here (see [`crate::tuning`]).
    pub(crate) fn setting_engine(&self) -> SettingEngine {
        SettingEngineBuilder::new()
            .with_ice_timeouts(
                Some(Duration::from_millis(self.ice_disconnected_timeout_ms)),
                Some(Duration::from_millis(self.ice_failed_timeout_ms)),
                Some(Duration::from_millis(self.ice_keepalive_interval_ms)),
            )
            .build()
    }

    /// Defaults, but bound to `127.0.0.1` only: host candidates on loopback, for tests and
    /// benchmarks on one machine.
    pub fn loopback() -> Self {
        LinksConfig {
            udp_bind_addrs: vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)],
            use_ice_servers: false,
            ..LinksConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backstops_outlast_what_the_client_core_decides() {
        let core = ro_p2p_core::client::Config::default();
        let links = LinksConfig::default();
        assert!(links.connect_timeout_ms > core.negotiation_timeout_ms);
        assert!(links.links_max > core.max_connections);
    }
}
