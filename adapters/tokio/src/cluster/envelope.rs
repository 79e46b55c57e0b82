//! What travels on the bus between the instance holding a connection and the zone's owner.
//!
//! The holder forwards a connection's lifecycle and frames to the owner of the zone the
//! connection joined ([`Envelope::Attach`], [`Envelope::Frame`], [`Envelope::Detach`]); the
//! owner's core sees a local connection number for it and sends its outputs back
//! ([`Envelope::Deliver`], [`Envelope::Close`]). Connections are named by the holder's own
//! [`ConnId`]: the pair (holder instance, conn) is unique in the world. JSON, bounded: a frame
//! is at most [`limits::FRAME_BYTES_MAX`], and decoding refuses anything over
//! [`ENVELOPE_BYTES_MAX`].

use ro_p2p_core::coordinator::ConnId;
use ro_p2p_core::wire::{ErrorCode, IceServer, PeerId, limits};
use serde::{Deserialize, Serialize};

/// Largest encoded envelope, in bytes: a frame (escaped JSON may double it) plus the fields.
pub const ENVELOPE_BYTES_MAX: usize = 2 * limits::FRAME_BYTES_MAX + 8 * 1024;

/// One bus message between instances.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Envelope {
    /// Holder to owner: a connection now belongs to the owner's zone.
    Attach {
        /// The holder's number for it.
        conn: ConnId,
        /// Its verified account, or `None` when authentication is off.
        account: Option<PeerId>,
        /// Its STUN/TURN servers (with its own TURN credentials).
        ice_servers: Vec<IceServer>,
    },
    /// Holder to owner: one client frame, as received.
    Frame {
        /// The holder's number for the connection.
        conn: ConnId,
        /// The frame's text.
        frame: String,
    },
    /// Holder to owner: the connection ended.
    Detach {
        /// The holder's number for it.
        conn: ConnId,
    },
    /// Owner to holder: send this (encoded `ServerMessage`) on the connection.
    Deliver {
        /// The holder's number for it.
        conn: ConnId,
        /// The frame's text.
        frame: String,
    },
    /// Owner to holder: close the connection.
    Close {
        /// The holder's number for it.
        conn: ConnId,
        /// Why, machine-readable.
        code: ErrorCode,
        /// Why, for humans.
        reason: String,
    },
}

/// Why bus bytes are not an [`Envelope`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// Over [`ENVELOPE_BYTES_MAX`].
    #[error("envelope of {len} bytes exceeds {ENVELOPE_BYTES_MAX}")]
    TooLarge {
        /// Its length.
        len: usize,
    },
    /// A frame inside over [`limits::FRAME_BYTES_MAX`].
    #[error("frame of {len} bytes exceeds {}", limits::FRAME_BYTES_MAX)]
    FrameTooLarge {
        /// Its length.
        len: usize,
    },
    /// Not an envelope of this version.
    #[error("unreadable envelope: {0}")]
    Malformed(#[from] serde_json::Error),
}

impl Envelope {
    /// The envelope as bus bytes.
    pub fn encode(&self) -> Vec<u8> {
        // Serialising these plain types cannot fail; an empty payload would be refused on read.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads bus bytes, within the bounds.
    pub fn decode(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
        if bytes.len() > ENVELOPE_BYTES_MAX {
            return Err(EnvelopeError::TooLarge { len: bytes.len() });
        }
        let env: Envelope = serde_json::from_slice(bytes)?;
        match &env {
            Envelope::Frame { frame, .. } | Envelope::Deliver { frame, .. }
                if frame.len() > limits::FRAME_BYTES_MAX =>
            {
                Err(EnvelopeError::FrameTooLarge { len: frame.len() })
            }
            _ => Ok(env),
        }
    }

    /// The holder's connection it is about.
    pub fn conn(&self) -> ConnId {
        match self {
            Envelope::Attach { conn, .. }
            | Envelope::Frame { conn, .. }
            | Envelope::Detach { conn }
            | Envelope::Deliver { conn, .. }
            | Envelope::Close { conn, .. } => *conn,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip_and_oversized_ones_are_refused() {
        let all = [
            Envelope::Attach {
                conn: ConnId(7),
                account: Some(PeerId::new("alice").unwrap()),
                ice_servers: Vec::new(),
            },
            Envelope::Frame { conn: ConnId(7), frame: r#"{"type":"ping"}"#.to_owned() },
            Envelope::Detach { conn: ConnId(7) },
            Envelope::Deliver { conn: ConnId(7), frame: r#"{"type":"pong"}"#.to_owned() },
            Envelope::Close {
                conn: ConnId(7),
                code: ErrorCode::ZoneUnavailable,
                reason: "owner lost".to_owned(),
            },
        ];
        for env in all {
            assert_eq!(Envelope::decode(&env.encode()).unwrap(), env);
            assert_eq!(env.conn(), ConnId(7));
        }
        let big =
            Envelope::Frame { conn: ConnId(1), frame: "x".repeat(limits::FRAME_BYTES_MAX + 1) };
        assert!(matches!(
            Envelope::decode(&big.encode()),
            Err(EnvelopeError::FrameTooLarge { .. })
        ));
        assert!(matches!(
            Envelope::decode(&vec![b' '; ENVELOPE_BYTES_MAX + 1]),
            Err(EnvelopeError::TooLarge { .. })
        ));
        assert!(matches!(
            Envelope::decode(b"{\"type\":\"nope\"}"),
            Err(EnvelopeError::Malformed(_))
        ));
    }
}
