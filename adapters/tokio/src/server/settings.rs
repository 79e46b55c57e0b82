//! From the operator's `config.yaml` and command-line flags to a [`ServerConfig`].
//!
//! Parsing and validating the file is the core's `config` module (`CoordinatorSettings`, with
//! `${ENV}` substitution through a lookup closure and errors that name the key). This module
//! only maps those settings onto the service, applies the command-line overrides (flags win over
//! the file), and knows the embedded default used when there is no file at all.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::ServerConfig;

/// Default bind address of the embedded configuration.
pub const DEFAULT_HOST: &str = "127.0.0.1";
/// Default port (the guide's `coordinator.port`).
pub const DEFAULT_PORT: u16 = 8001;

/// Command-line values that override the file.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--host`.
    pub host: Option<String>,
    /// `--port`.
    pub port: Option<u16>,
    /// `--log-level`.
    pub log_level: Option<String>,
    /// `--log-format json` (true) or `human` (false).
    pub log_json: Option<bool>,
    /// `--log-file`.
    pub log_file: Option<PathBuf>,
    /// `--tls-cert`.
    pub tls_cert: Option<PathBuf>,
    /// `--tls-key`.
    pub tls_key: Option<PathBuf>,
}

/// Why the effective configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is invalid (the message names the key).
    #[error("{path}: {detail}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong, naming the key.
        detail: String,
    },
    /// Only one of the TLS certificate and key is set.
    #[error("security.ssl_cert and security.ssl_key must be set together")]
    HalfTls,
}

/// Everything the binary needs: the service config plus bind address, TLS files and logging.
#[derive(Clone, Debug)]
pub struct Effective {
    /// The service configuration.
    pub server: ServerConfig,
    /// Address to bind.
    pub host: String,
    /// Port to bind.
    pub port: u16,
    /// PEM certificate chain, when TLS is on.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key, when TLS is on.
    pub tls_key: Option<PathBuf>,
    /// Log filter.
    pub log_level: String,
    /// JSON log lines.
    pub log_json: bool,
    /// Log file (stdout when `None`).
    pub log_file: Option<PathBuf>,
}

impl Effective {
    /// The embedded default: 127.0.0.1:8001, in memory, authentication off, `info` logs.
    pub fn embedded() -> Self {
        Effective {
            server: ServerConfig::default(),
            host: DEFAULT_HOST.to_owned(),
            port: DEFAULT_PORT,
            tls_cert: None,
            tls_key: None,
            log_level: "info".to_owned(),
            log_json: false,
            log_file: None,
        }
    }

    /// Loads `path` (or the embedded default when `None`), resolving `${VAR}` through `env`,
    /// then applies `overrides`.
    pub fn load(
        path: Option<&Path>,
        overrides: &Overrides,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, SettingsError> {
        let mut eff = match path {
            None => Effective::embedded(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                Effective::from_yaml(&text, env).map_err(|detail| SettingsError::Invalid {
                    path: path.display().to_string(),
                    detail,
                })?
            }
        };
        if let Some(host) = &overrides.host {
            eff.host.clone_from(host);
        }
        if let Some(port) = overrides.port {
            eff.port = port;
        }
        if let Some(level) = &overrides.log_level {
            eff.log_level.clone_from(level);
        }
        if let Some(json) = overrides.log_json {
            eff.log_json = json;
        }
        if let Some(file) = &overrides.log_file {
            eff.log_file = Some(file.clone());
        }
        if overrides.tls_cert.is_some() || overrides.tls_key.is_some() {
            eff.tls_cert.clone_from(&overrides.tls_cert);
            eff.tls_key.clone_from(&overrides.tls_key);
        }
        if eff.tls_cert.is_some() != eff.tls_key.is_some() {
            return Err(SettingsError::HalfTls);
        }
        Ok(eff)
    }

    /// A human-readable summary of the effective settings (secrets redacted).
    pub fn summary(&self) -> String {
        let s = &self.server;
        let c = &s.core;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "listen: {}:{} ({})",
            self.host,
            self.port,
            if self.tls_cert.is_some() { "TLS" } else { "plain" }
        );
        let _ = writeln!(out, "websocket_path: {}", s.websocket_path);
        let _ = writeln!(out, "require_authentication: {}", s.require_authentication);
        let _ = writeln!(
            out,
            "jwt_secret: {}",
            if s.jwt_secret.is_some() { "<set>" } else { "<unset>" }
        );
        let _ = writeln!(out, "max_sessions_per_zone: {}", c.max_sessions_per_zone);
        let _ = writeln!(out, "max_players_per_session: {}", c.max_players_per_session);
        let _ = writeln!(out, "session_timeout_s: {}", c.session_timeout_s);
        let _ = writeln!(out, "heartbeat_interval_ms: {}", c.heartbeat_interval_ms);
        let _ = writeln!(out, "idle_timeout_ms: {}", c.idle_timeout_ms);
        let _ = writeln!(out, "key_rotation_interval_s: {}", c.key_rotation_interval_s);
        let _ = writeln!(out, "rate_limit: {:?}", c.rate_limit);
        let _ = writeln!(out, "host_requirements: {:?}", c.host_requirements);
        let _ = writeln!(out, "stun_servers: {:?}", s.ice.stun_servers);
        let _ = writeln!(out, "turn_servers: {}", s.ice.turn_servers.len());
        let _ = writeln!(
            out,
            "turn_shared_secret: {}",
            if s.ice.turn_shared_secret.is_some() { "<set>" } else { "<unset>" }
        );
        let _ = write!(
            out,
            "logging: level={} format={} file={:?}",
            self.log_level,
            if self.log_json { "json" } else { "human" },
            self.log_file
        );
        out
    }

    fn from_yaml(_text: &str, _env: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        Err("config files are not supported by this build yet".to_owned())
    }
}
