//! The values cluster mode speaks in: instance ids, leases, seat records, bus envelopes, and the
//! store operations an [`Instance`](super::Instance) asks its adapter to run, with their replies.
//!
//! The JSON of [`Envelope`] and [`SeatRecord`] is the wire format between instances and the
//! store's data layout: it is the one the tokio adapter has always written.

use core::fmt;

use serde::{Deserialize, Serialize};

use crate::coordinator::{ConnId, RestoredSeat};
use crate::time::Instant;
use crate::wire::{
    Capabilities, ErrorCode, IceServer, PeerId, ServerMessage, SessionId, Zone, limits,
};

/// Longest instance id, in bytes.
pub const INSTANCE_ID_BYTES_MAX: usize = 64;

/// One coordinator instance's name in the cluster: 1 to 64 bytes of `[A-Za-z0-9_.-]` (no `:`,
/// which separates owner and epoch in a lease).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InstanceId(String);

/// Why a string is not an [`InstanceId`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InstanceIdError {
    /// Empty, or longer than [`INSTANCE_ID_BYTES_MAX`].
    #[error("instance id must be 1 to {INSTANCE_ID_BYTES_MAX} bytes, got {len}")]
    BadLength {
        /// Its length in bytes.
        len: usize,
    },
    /// A character outside `[A-Za-z0-9_.-]`.
    #[error("instance id may only contain [A-Za-z0-9_.-]")]
    BadCharacter,
}

impl InstanceId {
    /// Validates and wraps `s`.
    pub fn new(s: impl Into<String>) -> Result<Self, InstanceIdError> {
        let s = s.into();
        if s.is_empty() || s.len() > INSTANCE_ID_BYTES_MAX {
            return Err(InstanceIdError::BadLength { len: s.len() });
        }
        if !s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')) {
            return Err(InstanceIdError::BadCharacter);
        }
        Ok(InstanceId(s))
    }

    /// An id made from any text: characters outside `[A-Za-z0-9_.-]` become `-`, it is cut to
    /// [`INSTANCE_ID_BYTES_MAX`], and empty text gives `coordinator`.
    pub fn sanitized(s: &str) -> Self {
        let id: String = s
            .chars()
            .map(
                |c| if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') { c } else { '-' },
            )
            .take(INSTANCE_ID_BYTES_MAX)
            .collect();
        if id.is_empty() { InstanceId("coordinator".to_owned()) } else { InstanceId(id) }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for InstanceId {
    type Error = InstanceIdError;
    fn try_from(s: String) -> Result<Self, InstanceIdError> {
        InstanceId::new(s)
    }
}

impl From<InstanceId> for String {
    fn from(v: InstanceId) -> String {
        v.0
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who holds a zone's lease, as anyone may read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseHolder {
    /// The owning instance.
    pub owner: InstanceId,
    /// Its fencing epoch.
    pub epoch: u64,
}

/// A zone lease as the store granted it: the proof shown with every fenced write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The zone.
    pub zone: Zone,
    /// The holder.
    pub owner: InstanceId,
    /// The fencing epoch: higher than every earlier holder's.
    pub epoch: u64,
}

/// The answer to [`StoreOp::Acquire`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Acquired {
    /// This instance holds the lease now.
    Owned(Lease),
    /// Another instance holds it.
    HeldBy(LeaseHolder),
}

/// A seat as the zone's owner records it, so the next owner can restore it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeatRecord {
    /// The member.
    pub peer_id: PeerId,
    /// Its session.
    pub session_id: SessionId,
    /// The session's zone.
    pub zone: Zone,
    /// What it reported, if it did.
    pub capabilities: Option<Capabilities>,
    /// Whether it is the session's host.
    pub host: bool,
    /// The instance holding its connection, if it is connected.
    pub connected_via: Option<InstanceId>,
    /// The session key's epoch when written (0 in records of older versions): the next owner
    /// gives the restored session a higher one.
    #[serde(default)]
    pub key_epoch: u32,
}

impl SeatRecord {
    /// The coordinator's input form of this record.
    pub fn restored(&self) -> RestoredSeat {
        RestoredSeat {
            peer_id: self.peer_id.clone(),
            session_id: self.session_id.clone(),
            capabilities: self.capabilities,
            host: self.host,
            key_epoch: self.key_epoch,
            grace_until: None,
        }
    }
}

/// A seat record as the store returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredSeat {
    /// The record.
    pub record: SeatRecord,
    /// If it was written with a grace ([`StoreOp::PutSeat`]'s `grace_until`), how much of it
    /// was left when the store read it, in ms (the record's remaining TTL): the next owner
    /// restores the seat with no more than that. `None`: written without one.
    pub grace_left_ms: Option<u64>,
}

impl StoredSeat {
    /// A record written without a grace.
    pub fn lasting(record: SeatRecord) -> Self {
        StoredSeat { record, grace_left_ms: None }
    }
}

/// Largest encoded envelope, in bytes: a frame (escaped JSON may double it) plus the fields.
pub const ENVELOPE_BYTES_MAX: usize = 2 * limits::FRAME_BYTES_MAX + 8 * 1024;

/// What kind of message a frame sent to a client is, for the adapter's metrics and audit log:
/// decided where the message was still typed, so no adapter reads JSON to find out. Both hubs
/// (one instance and cluster mode) use this one classification.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SentKind {
    /// A relayed `offer`, `answer` or `ice-candidate` (counts in the signaling latency).
    Relay,
    /// A `session-joined` (names the connection's player in the audit log).
    SessionJoined,
    /// Anything else.
    #[default]
    Other,
}

impl SentKind {
    /// The kind of `msg`.
    pub fn of(msg: &ServerMessage) -> SentKind {
        match msg {
            ServerMessage::Offer { .. }
            | ServerMessage::Answer { .. }
            | ServerMessage::IceCandidate { .. } => SentKind::Relay,
            ServerMessage::SessionJoined { .. } => SentKind::SessionJoined,
            _ => SentKind::Other,
        }
    }
}

/// One bus message between the instance holding a connection and its zone's owner.
///
/// Connections are named by the holder's own [`ConnId`]: the pair (holder, conn) is unique in
/// the world. JSON, bounded: a frame is at most [`limits::FRAME_BYTES_MAX`].
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
        /// What the frame is, as the owner's core knew when it encoded it (absent from
        /// instances of earlier versions: `other`).
        #[serde(default)]
        kind: SentKind,
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

/// Names one store operation, so its reply finds the decision waiting for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpId(pub u64);

/// One operation on the shared store, for the adapter to run and answer with
/// [`Input::Store`](super::Input::Store). Every operation is one round trip; none retries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreOp {
    /// Take `zone`'s lease for `ttl_ms` if free or expired (new, higher epoch), extend it if this
    /// instance holds it, or report who holds it. Answer: [`StoreReply::Acquired`].
    Acquire {
        /// The zone.
        zone: Zone,
        /// The lease's lifetime.
        ttl_ms: u64,
    },
    /// Extend `lease` by `ttl_ms` from now. Answer: [`StoreReply::Done`], or
    /// [`StoreFailure::Fenced`] if it is no longer held.
    Renew {
        /// The lease.
        lease: Lease,
        /// The new lifetime.
        ttl_ms: u64,
    },
    /// Give `lease` up. Answer: [`StoreReply::Done`] (a lease already lost is no error).
    Release {
        /// The lease.
        lease: Lease,
    },
    /// Write `seat` into the lease's zone, if `lease` is still held. Answer: [`StoreReply::Done`].
    PutSeat {
        /// The lease shown.
        lease: Lease,
        /// The record.
        seat: SeatRecord,
        /// For the seat of a disconnected player: when its grace ends. The store keeps the
        /// record only that long: the adapter writes it with `grace_until - now` as its TTL,
        /// measured when it runs the operation (a grace over by then removes the record), so
        /// no instance's clock is ever stored. `None`: the record stays until rewritten or
        /// removed (a connected player, or a reconnect that ends the grace).
        grace_until: Option<Instant>,
    },
    /// Remove `peer`'s seat from the lease's zone, if `lease` is still held. Answer:
    /// [`StoreReply::Done`].
    RemoveSeat {
        /// The lease shown.
        lease: Lease,
        /// The peer.
        peer: PeerId,
    },
    /// Read every seat record of `zone`. Answer: [`StoreReply::Seats`].
    ReadSeats {
        /// The zone.
        zone: Zone,
    },
    /// Publish an envelope on instance `to`'s channel. Answer: [`StoreReply::Published`].
    Publish {
        /// The receiving instance.
        to: InstanceId,
        /// The encoded [`Envelope`].
        payload: Vec<u8>,
    },
    /// Publish on `owner`'s channel if `owner` holds `zone`'s lease, in one atomic step.
    /// Answer: [`StoreReply::PublishedToOwner`].
    PublishToOwner {
        /// The zone.
        zone: Zone,
        /// The instance believed to own it.
        owner: InstanceId,
        /// The encoded [`Envelope`].
        payload: Vec<u8>,
    },
}

/// A store operation's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreReply {
    /// For [`StoreOp::Acquire`].
    Acquired(Acquired),
    /// For renew, release and the seat writes.
    Done,
    /// For [`StoreOp::ReadSeats`]: every live record, each with what is left of its grace.
    Seats(Vec<StoredSeat>),
    /// For [`StoreOp::Publish`]: how many subscribers received it (0: nobody listens).
    Published(usize),
    /// For [`StoreOp::PublishToOwner`]: `None` when `owner` does not hold the lease, else how
    /// many of its subscriptions received it.
    PublishedToOwner(Option<usize>),
}

/// Why a store operation failed, as the core needs to know it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreFailure {
    /// The lease shown is no longer held: another instance took the zone (or it expired).
    #[error("lease fenced")]
    Fenced,
    /// The store could not be reached, or refused: try again later.
    #[error("cluster store unavailable: {reason}")]
    Unavailable {
        /// What failed, for humans.
        reason: String,
    },
}
