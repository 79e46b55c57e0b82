//! Why a connection or a REST call was not authenticated: the one error both authentication
//! modes give (a signed token, checked in `auth.rs`; rAthena's web auth token, checked in
//! `rathena.rs`), so neither mode's module imports the other's for it.

use ro_p2p_core::wire::ErrorCode;

/// Why a connection or a REST call was not authenticated.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// Mode `rathena`: the web auth token credential is refused (the core's decision).
    #[error("{0}")]
    Refused(ro_p2p_core::coordinator::credential::CredentialRejection),
    /// Mode `rathena`: the account database cannot be asked right now.
    #[error("{detail}")]
    Unavailable {
        /// Why (no secrets in it).
        detail: String,
    },
    /// Mode `rathena`: this address caused too many failed checks recently.
    #[error("too many failed authentication attempts from this address; retry later")]
    RateLimited,
    /// Authentication is required and no token was presented (in time).
    #[error("authentication required: {detail}")]
    Missing {
        /// What was expected.
        detail: &'static str,
    },
    /// The token is malformed, forged, uses another algorithm than HS256, or names no valid
    /// account.
    #[error("invalid token: {detail}")]
    Invalid {
        /// What was wrong with it.
        detail: String,
    },
    /// The token's `exp` has passed.
    #[error("token expired at {exp_unix_s} (now {now_unix_s})")]
    Expired {
        /// The token's `exp`.
        exp_unix_s: u64,
        /// The coordinator's clock.
        now_unix_s: u64,
    },
    /// The token's `nbf` is still in the future.
    #[error("token not valid before {nbf_unix_s} (now {now_unix_s})")]
    NotYetValid {
        /// The token's `nbf`.
        nbf_unix_s: u64,
        /// The coordinator's clock.
        now_unix_s: u64,
    },
}

impl AuthError {
    /// The protocol code sent to the client and counted in metrics.
    pub fn code(&self) -> ErrorCode {
        match self {
            AuthError::Missing { .. } => ErrorCode::AuthRequired,
            AuthError::Refused(why) => why.code(),
            AuthError::Unavailable { .. } => ErrorCode::AuthUnavailable,
            AuthError::RateLimited => ErrorCode::RateLimited,
            AuthError::Invalid { .. } => ErrorCode::AuthInvalid,
            AuthError::Expired { .. } | AuthError::NotYetValid { .. } => ErrorCode::AuthExpired,
        }
    }
}
