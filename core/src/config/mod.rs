//! Configuration: the operator's `config.yaml`, the game client's `p2p_config.json` and its
//! `Data/config.ini` / `Data/resourceinfo.ini`, parsed into typed, validated settings.
//!
//! Parsing is pure: the caller reads the files and passes their text, and `${ENV}` substitution
//! takes a lookup closure, so the core never touches the file system or the environment. The
//! coordinator runs on [`CoordinatorSettings`], the client and router on [`ClientSettings`]
//! (from either client format). Every bad value is a [`ConfigError`] that names its key path,
//! such as `coordinator.max_players_per_session: must be between 1 and 1000, got 0`; unknown
//! keys are errors so that typos do not pass silently. `docs/configuration.md` lists every key.

mod client;
mod coordinator;
mod tree;

use core::fmt;

pub use client::{COORDINATOR_URLS_MAX, ClientSettings, DEFAULT_PACKET_VERSION, IgnoredSetting};
pub use coordinator::{
    AuthMode, CoordinatorSettings, LogFormat, LoggingSettings, LoginSchema, RateLimit,
    RathenaAuthSettings, RedisEndpoint, RedisSettings, TlsFiles, TurnServer, redact_url_password,
};
pub use tree::{CONFIG_BYTES_MAX, CONFIG_DEPTH_MAX, LIST_LEN_MAX, VALUE_BYTES_MAX};

/// Why a configuration was rejected. Every variant that concerns one value names its key path.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The text is not valid in its format (YAML, JSON5, INI).
    #[error("{format} syntax error: {message}")]
    Syntax {
        /// `yaml`, `json5` or `ini`.
        format: &'static str,
        /// The parser's message (with line and column where it gives them).
        message: String,
    },
    /// The text is over [`CONFIG_BYTES_MAX`].
    #[error("configuration is {len} bytes, over the limit of {max}")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Maps and lists nest deeper than [`CONFIG_DEPTH_MAX`].
    #[error("{format} nests deeper than {max} levels")]
    TooDeep {
        /// The format.
        format: &'static str,
        /// The limit.
        max: usize,
    },
    /// A key this version does not know (often a typo).
    #[error("{key}: unknown key")]
    UnknownKey {
        /// Its path.
        key: String,
    },
    /// A key given twice (INI).
    #[error("{key}: given more than once")]
    DuplicateKey {
        /// Its path.
        key: String,
    },
    /// A required key is absent.
    #[error("{key}: missing")]
    Missing {
        /// Its path.
        key: String,
    },
    /// A value of the wrong kind (a list where a number belongs).
    #[error("{key}: expected {expected}, got {found}")]
    WrongType {
        /// Its path.
        key: String,
        /// What was expected.
        expected: &'static str,
        /// What was found (strings truncated).
        found: String,
    },
    /// A number outside its allowed range.
    #[error("{key}: must be between {min} and {max}, got {got}")]
    OutOfRange {
        /// Its path.
        key: String,
        /// Smallest allowed.
        min: u64,
        /// Largest allowed.
        max: u64,
        /// The value given, as written.
        got: String,
    },
    /// A value of the right kind that is still not acceptable (bad URL, unknown level name).
    #[error("{key}: {reason}")]
    Invalid {
        /// Its path.
        key: String,
        /// Why.
        reason: String,
    },
    /// Two values that cannot go together (authentication on without a secret).
    #[error("{key}: {reason}")]
    Inconsistent {
        /// The path of the key to fix.
        key: String,
        /// Why.
        reason: String,
    },
    /// `${NAME}` names an environment variable that is not set.
    #[error("{key}: environment variable {var} is not set")]
    MissingEnvVar {
        /// The path of the key whose value refers to it.
        key: String,
        /// The variable.
        var: String,
    },
}

impl ConfigError {
    /// The key path the error is about, if it concerns one key.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::UnknownKey { key }
            | ConfigError::DuplicateKey { key }
            | ConfigError::Missing { key }
            | ConfigError::WrongType { key, .. }
            | ConfigError::OutOfRange { key, .. }
            | ConfigError::Invalid { key, .. }
            | ConfigError::Inconsistent { key, .. }
            | ConfigError::MissingEnvVar { key, .. } => Some(key),
            ConfigError::Syntax { .. }
            | ConfigError::TooLarge { .. }
            | ConfigError::TooDeep { .. } => None,
        }
    }
}

/// A secret string (JWT secret, passwords): `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// How much to log. Names match case-insensitively; `warning` and `critical` (Python habits
/// from the guide) mean `warn` and `error`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    /// Everything.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation.
    #[default]
    Info,
    /// Something looks wrong.
    Warn,
    /// Something failed.
    Error,
}

impl LogLevel {
    /// The lowercase name, as `tracing`'s filters take it.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }

    fn parse(key: &str, s: &str) -> Result<LogLevel, ConfigError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "trace" => Ok(LogLevel::Trace),
            "debug" => Ok(LogLevel::Debug),
            "info" => Ok(LogLevel::Info),
            "warn" | "warning" => Ok(LogLevel::Warn),
            "error" | "critical" => Ok(LogLevel::Error),
            _ => Err(ConfigError::Invalid {
                key: key.to_owned(),
                reason: format!("{s:?} is not one of trace, debug, info, warn, error"),
            }),
        }
    }
}

/// What a machine must offer to be elected session host (coordinator) or to volunteer as one
/// (client): the coordinator's own type, so both sides check the same minimums.
pub use crate::coordinator::HostRequirements;

#[cfg(test)]
mod tests;
