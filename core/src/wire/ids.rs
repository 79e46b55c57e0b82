//! Validated identifiers: peer ids, session ids and zones.
//!
//! Each is a `String` newtype that can only be built through validation, so a value of these
//! types is always within its limit and character set.

use core::fmt;

use serde::{Deserialize, Serialize};

use super::limits;

/// Why an identifier was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// Empty.
    #[error("{what} is empty")]
    Empty {
        /// Which kind of identifier.
        what: &'static str,
    },
    /// Longer than its limit.
    #[error("{what} is {len} bytes, over the limit of {max}")]
    TooLong {
        /// Which kind of identifier.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Contains a character outside its allowed set.
    #[error("{what} contains a character outside {allowed}")]
    BadCharacter {
        /// Which kind of identifier.
        what: &'static str,
        /// The allowed set, for the message.
        allowed: &'static str,
    },
}

fn validate(
    s: &str,
    what: &'static str,
    max: usize,
    allowed: &'static str,
    ok: fn(u8) -> bool,
) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty { what });
    }
    if s.len() > max {
        return Err(IdError::TooLong { what, len: s.len(), max });
    }
    if !s.bytes().all(ok) {
        return Err(IdError::BadCharacter { what, allowed });
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $what:literal, $max:expr, $allowed:literal, $ok:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates and wraps `s`.
            pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
                let s = s.into();
                validate(&s, $what, $max, $allowed, $ok)?;
                Ok($name(s))
            }

            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                $name::new(s)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = IdError;
            fn try_from(s: &str) -> Result<Self, IdError> {
                $name::new(s)
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

fn id_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':' | b'@')
}

fn zone_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'@' | b'-' | b'.')
}

id_type!(
    /// A peer's identity: the authenticated account id (JWT subject), or a client-chosen id when
    /// authentication is off. 1 to 64 bytes of ASCII letters, digits, `_ - . : @`.
    PeerId,
    "peer id",
    limits::PEER_ID_BYTES_MAX,
    "[A-Za-z0-9_.:@-]",
    id_char
);

/// How a coordinator that does not authenticate names a connection in its `welcome`
/// (`anon-` and 16 hex digits); the first `join`'s `peer_id` then replaces it.
pub const ANONYMOUS_PREFIX: &str = "anon-";

impl PeerId {
    /// The peer id of an rAthena account: its id in decimal (always valid).
    pub fn from_account_id(account_id: u32) -> PeerId {
        PeerId(account_id.to_string())
    }

    /// Whether this is the provisional identity a coordinator without authentication gives
    /// in its `welcome` ([`ANONYMOUS_PREFIX`]).
    pub fn is_anonymous(&self) -> bool {
        self.0.starts_with(ANONYMOUS_PREFIX)
    }
}

id_type!(
    /// A session's id, chosen by the coordinator. 1 to 64 bytes of ASCII letters, digits,
    /// `_ - . : @`.
    SessionId,
    "session id",
    limits::SESSION_ID_BYTES_MAX,
    "[A-Za-z0-9_.:@-]",
    id_char
);

id_type!(
    /// A zone: an rAthena map name, 1 to 11 bytes of ASCII letters, digits, `_ @ - .`
    /// (e.g. `prontera`, `prt_fild08`, `1@tower`).
    Zone,
    "zone",
    limits::ZONE_BYTES_MAX,
    "[A-Za-z0-9_@.-]",
    zone_char
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_follow_rathena_map_names() {
        for ok in ["prontera", "prt_fild08", "1@tower", "new_1-1", "a", "abcdefghijk", "x.y"] {
            assert!(Zone::new(ok).is_ok(), "{ok}");
        }
        assert_eq!(Zone::new(""), Err(IdError::Empty { what: "zone" }));
        assert!(matches!(Zone::new("abcdefghijkl"), Err(IdError::TooLong { len: 12, .. })));
        for bad in ["pron tera", "prontera\0", "prön", "a/b", "a:b"] {
            assert!(matches!(Zone::new(bad), Err(IdError::BadCharacter { .. })), "{bad}");
        }
    }

    #[test]
    fn peer_ids_are_bounded() {
        assert!(PeerId::new("2000001").is_ok());
        assert!(PeerId::new("player:42@eu").is_ok());
        assert!(PeerId::new("x".repeat(64)).is_ok());
        assert!(PeerId::new("x".repeat(65)).is_err());
        assert!(PeerId::new("a b").is_err());
    }
}
