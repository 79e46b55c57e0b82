//! Typed errors of the signaling protocol and their machine-readable codes.

use core::fmt;

use serde::{Deserialize, Serialize};

/// The machine-readable `code` of an `error` message or a close reason.
///
/// Serialised in kebab-case (`"not-in-session"`). New codes may be added in later protocol
/// versions; clients must treat an unknown code as a generic error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The frame is not valid JSON, not an object, or not UTF-8 text.
    MalformedJson,
    /// The `type` is not a message this side accepts.
    UnknownType,
    /// A required field is absent.
    MissingField,
    /// The frame or a field exceeds its size limit.
    TooLarge,
    /// A field has the wrong type or an invalid value (bad zone name, bad peer id, ...).
    BadValue,
    /// The message needs session membership the sender lacks (relay to a non-member, ...).
    NotInSession,
    /// The zone has `max_sessions_per_zone` full sessions already.
    ZoneFull,
    /// The named session is full.
    SessionFull,
    /// The named session does not exist (or belongs to another zone).
    SessionNotFound,
    /// The connection exceeded its message rate.
    RateLimited,
    /// No token was presented where one is required.
    AuthRequired,
    /// The token is forged, malformed or uses a disallowed algorithm.
    AuthInvalid,
    /// The token has expired (or is not valid yet).
    AuthExpired,
    /// The credential this connection was admitted with was withdrawn (rAthena mode: the
    /// player logged out of the game, or logged in again with a new token): the seat is given
    /// up. Reconnect with the new credential.
    AuthRevoked,
    /// The credential cannot be checked right now (rAthena mode: its database is unreachable);
    /// retry later. Connections already admitted are not affected.
    AuthUnavailable,
    /// A newer connection with the same identity replaced this one.
    Replaced,
    /// The connection sent nothing for longer than the idle timeout.
    IdleTimeout,
    /// The client could not keep up with its outbound queue.
    SlowConsumer,
    /// The coordinator is shutting down; reconnect (possibly elsewhere).
    ShuttingDown,
    /// The zone cannot be served right now (e.g. its owner is unreachable); retry later.
    ZoneUnavailable,
    /// The coordinator serves its `max_connections` already; retry later or elsewhere.
    ServerFull,
    /// An internal error of the coordinator.
    Internal,
    /// A code this build does not know (sent by a newer peer); treat as a generic error.
    #[serde(other)]
    Other,
}

impl ErrorCode {
    /// The kebab-case code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::MalformedJson => "malformed-json",
            ErrorCode::UnknownType => "unknown-type",
            ErrorCode::MissingField => "missing-field",
            ErrorCode::TooLarge => "too-large",
            ErrorCode::BadValue => "bad-value",
            ErrorCode::NotInSession => "not-in-session",
            ErrorCode::ZoneFull => "zone-full",
            ErrorCode::SessionFull => "session-full",
            ErrorCode::SessionNotFound => "session-not-found",
            ErrorCode::RateLimited => "rate-limited",
            ErrorCode::AuthRequired => "auth-required",
            ErrorCode::AuthInvalid => "auth-invalid",
            ErrorCode::AuthExpired => "auth-expired",
            ErrorCode::AuthRevoked => "auth-revoked",
            ErrorCode::AuthUnavailable => "auth-unavailable",
            ErrorCode::Replaced => "replaced",
            ErrorCode::IdleTimeout => "idle-timeout",
            ErrorCode::SlowConsumer => "slow-consumer",
            ErrorCode::ShuttingDown => "shutting-down",
            ErrorCode::ZoneUnavailable => "zone-unavailable",
            ErrorCode::ServerFull => "server-full",
            ErrorCode::Internal => "internal",
            ErrorCode::Other => "other",
        }
    }

    /// Every code, in declaration order (for metrics labels and docs).
    pub const ALL: &'static [ErrorCode] = &[
        ErrorCode::MalformedJson,
        ErrorCode::UnknownType,
        ErrorCode::MissingField,
        ErrorCode::TooLarge,
        ErrorCode::BadValue,
        ErrorCode::NotInSession,
        ErrorCode::ZoneFull,
        ErrorCode::SessionFull,
        ErrorCode::SessionNotFound,
        ErrorCode::RateLimited,
        ErrorCode::AuthRequired,
        ErrorCode::AuthInvalid,
        ErrorCode::AuthExpired,
        ErrorCode::AuthRevoked,
        ErrorCode::AuthUnavailable,
        ErrorCode::Replaced,
        ErrorCode::IdleTimeout,
        ErrorCode::SlowConsumer,
        ErrorCode::ShuttingDown,
        ErrorCode::ZoneUnavailable,
        ErrorCode::ServerFull,
        ErrorCode::Internal,
    ];
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a frame could not be decoded. Each variant maps to one [`ErrorCode`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// Not UTF-8, not JSON, or not a JSON object.
    #[error("malformed JSON: {detail}")]
    MalformedJson {
        /// What the parser reported.
        detail: String,
    },
    /// The `type` tag names no message this side accepts.
    #[error("unknown message type {ty:?}")]
    UnknownType {
        /// The type that was sent (truncated to 64 bytes).
        ty: String,
    },
    /// A required field is absent.
    #[error("missing field `{field}`")]
    MissingField {
        /// The field's name.
        field: String,
    },
    /// The frame or one field is over its limit.
    #[error("{what} is {len} bytes, over the limit of {max}")]
    TooLarge {
        /// What was too large (`frame`, `sdp`, `candidate`, ...).
        what: &'static str,
        /// Its size in bytes (or items).
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A field has the wrong JSON type or an invalid value.
    #[error("bad value: {detail}")]
    BadValue {
        /// What was wrong.
        detail: String,
    },
}

impl WireError {
    /// The machine-readable code for the `error` reply.
    pub fn code(&self) -> ErrorCode {
        match self {
            WireError::MalformedJson { .. } => ErrorCode::MalformedJson,
            WireError::UnknownType { .. } => ErrorCode::UnknownType,
            WireError::MissingField { .. } => ErrorCode::MissingField,
            WireError::TooLarge { .. } => ErrorCode::TooLarge,
            WireError::BadValue { .. } => ErrorCode::BadValue,
        }
    }
}
