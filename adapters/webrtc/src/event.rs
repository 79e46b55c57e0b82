//! What the links report to the client driver, and the small vocabulary both sides share:
//! which end offers, which channel a frame travels on, why a link failed.

use core::fmt;

use ro_p2p_core::wire::{IceCandidate, PeerId};

/// Which end of the negotiation this side plays; the client core decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Creates the data channels and the SDP offer.
    Offerer,
    /// Waits for the offer and answers it.
    Answerer,
}

/// The data channel a frame travels on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Channel {
    /// `movement`: unordered, no retransmits. A late position is worthless, so it is dropped.
    Movement,
    /// `chat`: reliable and ordered.
    Chat,
}

impl Channel {
    /// The data channel's label on the wire.
    pub fn label(self) -> &'static str {
        match self {
            Channel::Movement => "movement",
            Channel::Chat => "chat",
        }
    }

    /// The SCTP stream id of the channel when both ends create it themselves (negotiated out
    /// of band): movement 0, chat 1.
    pub fn stream_id(self) -> u16 {
        match self {
            Channel::Movement => 0,
            Channel::Chat => 1,
        }
    }

    /// The channel with this label, if it is one of ours.
    pub fn from_label(label: &str) -> Option<Channel> {
        match label {
            "movement" => Some(Channel::Movement),
            "chat" => Some(Channel::Chat),
            _ => None,
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Why a link ended in [`LinkEvent::Failed`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailReason {
    /// Both data channels were not open within `connect_timeout_ms` of `connect` (the remote
    /// SDP or candidates never arrived, or no candidate pair worked).
    ConnectTimeout {
        /// The timeout that expired.
        timeout_ms: u64,
    },
    /// ICE gave up: no candidate pair works, or consent was lost for `ice_failed_timeout_ms`.
    IceFailed,
    /// The peer connection (DTLS or SCTP) failed.
    ConnectionFailed,
    /// The remote side opened a data channel that is not `movement` or `chat`.
    UnexpectedChannel {
        /// Its label (truncated to 64 bytes).
        label: String,
    },
    /// The WebRTC stack refused an operation needed to bring the link up.
    Stack {
        /// The stack's error text.
        message: String,
    },
}

impl fmt::Display for FailReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailReason::ConnectTimeout { timeout_ms } => {
                write!(f, "not connected within {timeout_ms} ms")
            }
            FailReason::IceFailed => f.write_str("ICE failed"),
            FailReason::ConnectionFailed => f.write_str("peer connection failed"),
            FailReason::UnexpectedChannel { label } => {
                write!(f, "remote opened unexpected data channel {label:?}")
            }
            FailReason::Stack { message } => write!(f, "WebRTC stack error: {message}"),
        }
    }
}

/// What happened on a link, in the order it happened for that peer.
///
/// After [`PeerLinks::connect`](crate::PeerLinks::connect), a link reports exactly one terminal
/// event, [`LinkEvent::Closed`] or [`LinkEvent::Failed`], and nothing after it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LinkEvent {
    /// A local offer (offerer) or answer (answerer) to relay to the peer. Always reported before
    /// the link's first [`LinkEvent::LocalCandidate`].
    LocalSdp {
        /// The peer to relay it to.
        peer: PeerId,
        /// The SDP text.
        sdp: String,
    },
    /// A local ICE candidate to relay to the peer (trickle ICE).
    LocalCandidate {
        /// The peer to relay it to.
        peer: PeerId,
        /// The candidate.
        candidate: IceCandidate,
    },
    /// Both data channels are open: frames can be sent.
    Connected {
        /// The peer.
        peer: PeerId,
    },
    /// The link could not be brought up, or broke. Terminal.
    Failed {
        /// The peer.
        peer: PeerId,
        /// Why.
        reason: FailReason,
    },
    /// The link was closed, by [`PeerLinks::disconnect`](crate::PeerLinks::disconnect) on
    /// either side. Terminal.
    Closed {
        /// The peer.
        peer: PeerId,
    },
    /// A frame from the peer, exactly as it sent it (still sealed).
    Data {
        /// The sender.
        peer: PeerId,
        /// The channel it arrived on.
        channel: Channel,
        /// The frame.
        bytes: Vec<u8>,
    },
    /// Round-trip time and loss of the movement channel, measured by the link's own probes
    /// (see the crate docs); reported every `probe_interval_ms` once connected.
    Measured {
        /// The peer.
        peer: PeerId,
        /// Median round-trip time of the recent probes, rounded to whole milliseconds.
        rtt_ms: u32,
        /// Share of the recent probes that were never answered, 0 to 100.
        loss_percent: u8,
    },
}

impl LinkEvent {
    /// The peer this event is about.
    pub fn peer(&self) -> &PeerId {
        match self {
            LinkEvent::LocalSdp { peer, .. }
            | LinkEvent::LocalCandidate { peer, .. }
            | LinkEvent::Connected { peer }
            | LinkEvent::Failed { peer, .. }
            | LinkEvent::Closed { peer }
            | LinkEvent::Data { peer, .. }
            | LinkEvent::Measured { peer, .. } => peer,
        }
    }

    /// Whether this is the link's last event.
    pub fn is_terminal(&self) -> bool {
        matches!(self, LinkEvent::Failed { .. } | LinkEvent::Closed { .. })
    }
}
