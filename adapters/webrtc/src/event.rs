//! What the links report to the client driver. The vocabulary is the client core's: its
//! [`Role`], [`Channel`] and [`client::LinkEvent`]; this crate adds only the frames received and
//! why a link failed (for the log).

use core::fmt;

use ro_p2p_core::client;
use ro_p2p_core::wire::PeerId;

pub use ro_p2p_core::client::Role;
pub use ro_p2p_core::node::Channel;

/// Why a link failed: logged when the link reports [`client::LinkEvent::Failed`] (the client
/// core only needs to know that it did).
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
/// event, [`client::LinkEvent::Closed`] or [`client::LinkEvent::Failed`], and nothing after it;
/// its local description always comes before its first local candidate.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LinksEvent {
    /// A link event for the client core, as it takes it (`client::Input::PeerLinkEvent`).
    Link {
        /// The peer.
        peer: PeerId,
        /// What happened.
        event: client::LinkEvent,
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
}

impl LinksEvent {
    /// The peer this event is about.
    pub fn peer(&self) -> &PeerId {
        match self {
            LinksEvent::Link { peer, .. } | LinksEvent::Data { peer, .. } => peer,
        }
    }

    /// Whether this is the link's last event.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            LinksEvent::Link { event: client::LinkEvent::Failed | client::LinkEvent::Closed, .. }
        )
    }
}
