//! Per-peer link state: negotiation role, buffered remote candidates and link health.
//!
//! The client keeps one [`PeerLink`] per peer it has asked the adapter to connect
//! (`ConnectPeer`). The adapter owns the real WebRTC connection; this is what the client needs
//! to route signaling to it and to tell the router whether the link may carry packets.

use serde::Serialize;

use crate::time::Instant;
use crate::wire::IceCandidate;

/// Which side of the SDP exchange this client plays on a link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Creates the offer (the newcomer towards existing members).
    Offerer,
    /// Answers the remote offer (an existing member towards the newcomer).
    Answerer,
}

/// Health of one peer link, as the router sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LinkHealth {
    /// Negotiating; carries nothing yet.
    Connecting,
    /// Connected and within the loss and latency limits: carries peer traffic.
    Open,
    /// Connected, but loss or round-trip time is over its limit: carries nothing.
    Degraded,
    /// Gone (failed, closed, or the peer left); its state is dropped right after.
    Closed,
}

/// Something the adapter observed on a peer link.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LinkEvent {
    /// The adapter created the local description (an offer or an answer, by the link's role)
    /// and it must be sent to the peer through the coordinator.
    LocalDescription {
        /// The SDP body.
        sdp: String,
    },
    /// A local ICE candidate to trickle to the peer.
    LocalCandidate(IceCandidate),
    /// The data channels are open.
    Connected,
    /// Negotiation or ICE failed.
    Failed,
    /// The link closed (the remote closed it, or ICE disconnected for good).
    Closed,
    /// A fresh measurement of the link.
    Measured {
        /// Round-trip time, in ms.
        rtt_ms: u32,
        /// Packet loss over the adapter's window, in percent (0..=100).
        loss_percent: u8,
    },
}

/// What the client tells the adapter to apply on a peer link.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Signal {
    /// The remote offer, to set as remote description (then answer it).
    Offer {
        /// The SDP body.
        sdp: String,
    },
    /// The remote answer, to set as remote description.
    Answer {
        /// The SDP body.
        sdp: String,
    },
    /// A remote ICE candidate to add.
    Candidate {
        /// The candidate.
        candidate: IceCandidate,
    },
}

/// One peer link the client asked the adapter to build.
#[derive(Clone, Debug)]
pub(crate) struct PeerLink {
    pub(crate) role: Role,
    /// Whether the remote description is applied (answerers: at once; offerers: on answer).
    pub(crate) remote_described: bool,
    /// Whether the adapter reported the data channels open.
    pub(crate) connected: bool,
    pub(crate) health: LinkHealth,
    pub(crate) buffered: Vec<IceCandidate>,
    pub(crate) rtt_ms: u32,
    pub(crate) loss_percent: u8,
    /// Until connected: when the link is given up.
    pub(crate) deadline: Option<Instant>,
}

impl PeerLink {
    pub(crate) fn new(role: Role, deadline: Instant) -> Self {
        PeerLink {
            role,
            remote_described: role == Role::Answerer,
            connected: false,
            health: LinkHealth::Connecting,
            buffered: Vec::new(),
            rtt_ms: 0,
            loss_percent: 0,
            deadline: Some(deadline),
        }
    }

    /// The health the current measurements imply.
    pub(crate) fn assess(&self, max_latency_ms: u32, loss_degraded_percent: u8) -> LinkHealth {
        if !self.connected {
            LinkHealth::Connecting
        } else if self.loss_percent >= loss_degraded_percent || self.rtt_ms > max_latency_ms {
            LinkHealth::Degraded
        } else {
            LinkHealth::Open
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_is_degraded_by_loss_or_latency_only_once_connected() {
        let mut l = PeerLink::new(Role::Offerer, Instant::ZERO);
        l.loss_percent = 50;
        assert_eq!(l.assess(100, 10), LinkHealth::Connecting);
        l.connected = true;
        assert_eq!(l.assess(100, 10), LinkHealth::Degraded);
        l.loss_percent = 9;
        assert_eq!(l.assess(100, 10), LinkHealth::Open);
        l.rtt_ms = 101;
        assert_eq!(l.assess(100, 10), LinkHealth::Degraded);
        l.rtt_ms = 100;
        assert_eq!(l.assess(100, 10), LinkHealth::Open);
    }
}
