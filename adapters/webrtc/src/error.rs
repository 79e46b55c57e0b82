//! Why a command to [`PeerLinks`](crate::PeerLinks) was refused. A refused command changes
//! nothing; the client core decides what to do next (usually `disconnect`).

use ro_p2p_core::wire::PeerId;

use crate::event::{Channel, Role};

/// A command the links could not carry out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// `connect` for a peer that already has a live link.
    #[error("a link to {peer} already exists")]
    AlreadyLinked {
        /// The peer.
        peer: PeerId,
    },
    /// A command for a peer with no link (never connected, disconnected, or ended).
    #[error("no link to {peer}")]
    UnknownPeer {
        /// The peer.
        peer: PeerId,
    },
    /// `connect` would exceed `links_max`.
    #[error("already {links} links, the limit")]
    TooManyLinks {
        /// The limit that was reached.
        links: usize,
    },
    /// A remote SDP that is not valid SDP, or arrived twice.
    #[error("bad remote SDP from {peer} (we are the {role:?}): {message}")]
    BadRemoteSdp {
        /// The peer.
        peer: PeerId,
        /// Our role, which says whether an offer or an answer was expected.
        role: Role,
        /// The stack's explanation.
        message: String,
    },
    /// A remote SDP longer than `sdp_bytes_max`.
    #[error("remote SDP of {len} bytes, over the limit of {max}")]
    SdpTooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A remote candidate the stack could not parse or apply.
    #[error("bad remote ICE candidate from {peer}: {message}")]
    BadRemoteCandidate {
        /// The peer.
        peer: PeerId,
        /// The stack's explanation.
        message: String,
    },
    /// A remote candidate before the remote SDP: the client core sends a link's SDP first (it
    /// buffers early candidates itself), so this is a caller applying them out of order.
    #[error("a candidate from {peer} before its SDP")]
    RemoteSdpNotApplied {
        /// The peer.
        peer: PeerId,
    },
    /// `send` before `Connected` (or after the link ended).
    #[error("the {channel} channel to {peer} is not open")]
    ChannelNotOpen {
        /// The peer.
        peer: PeerId,
        /// The channel.
        channel: Channel,
    },
    /// A frame larger than a data channel message may be.
    #[error("frame of {len} bytes, over the limit of {max}")]
    FrameTooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The channel's send buffer is full (`send_buffer_bytes_max`): the peer is not keeping up.
    /// The frame was dropped.
    #[error("send buffer of the {channel} channel to {peer} is full")]
    SendBufferFull {
        /// The peer.
        peer: PeerId,
        /// The channel.
        channel: Channel,
    },
    /// The WebRTC stack failed to build or drive a peer connection.
    #[error("WebRTC stack error: {0}")]
    Stack(String),
}
