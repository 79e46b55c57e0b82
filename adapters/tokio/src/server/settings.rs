//! From the operator's `config.yaml` and command-line flags to a [`ServerConfig`].
//!
//! Parsing and validating the file is the core's `config` module (`CoordinatorSettings`, with
//! `${ENV}` substitution through a lookup closure and errors that name the key). This module
//! only maps those settings onto the service, applies the command-line overrides (flags win over
//! the file), and knows the embedded default used when there is no file at all.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use ro_p2p_core::config::{CoordinatorSettings, LogFormat};
use ro_p2p_core::coordinator::{self, RateLimit};

use super::auth::{IceConfig, TurnServer};
use super::{ClusterConfig, ServerConfig, WEBSOCKET_PATH, default_instance_id};

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
    /// `--instance-id` (cluster mode).
    pub instance_id: Option<crate::cluster::InstanceId>,
    /// `--lease-ttl-ms` (cluster mode).
    pub lease_ttl_ms: Option<u64>,
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
    /// A file the settings name cannot be used (missing certificate, log directory, ...).
    #[error("{key}: {detail}")]
    File {
        /// The setting that names it (`security.ssl_cert`, `logging.file`).
        key: &'static str,
        /// What is wrong, naming the path.
        detail: String,
    },
}

impl ServerConfig {
    /// The service configuration for parsed `config.yaml` settings.
    pub fn from_settings(s: &CoordinatorSettings) -> ServerConfig {
        let core = coordinator::Config {
            max_sessions_per_zone: s.max_sessions_per_zone as usize,
            max_players_per_session: s.max_players_per_session as usize,
            session_timeout_s: s.session_timeout_s,
            heartbeat_interval_ms: s.heartbeat_interval_ms,
            idle_timeout_ms: s.idle_timeout_s.saturating_mul(1000),
            key_rotation_interval_s: s.key_rotation_interval_s,
            host_requirements: s.host_requirements,
            rate_limit: RateLimit {
                per_s: s.rate_limit.per_second,
                burst: s.rate_limit.burst,
                strikes_max: s.rate_limit.strikes_max,
            },
            outbound_queue_bytes_max: usize::try_from(s.outbound_queue_bytes).unwrap_or(usize::MAX),
            grace_seats_max: s.grace_seats_max as usize,
            grace_seats_per_origin_max: s.grace_seats_per_address as usize,
            ..coordinator::Config::default()
        };
        let ice = IceConfig {
            stun_servers: s.stun_servers.clone(),
            turn_servers: s
                .turn_servers
                .iter()
                .map(|t| TurnServer {
                    url: t.url.clone(),
                    username: t.username.clone(),
                    credential: t.credential.as_ref().map(|c| c.expose().to_owned()),
                })
                .collect(),
            turn_shared_secret: s.turn_shared_secret.as_ref().map(|c| c.expose().to_owned()),
            turn_credential_ttl_s: s.turn_credential_ttl_s,
        };
        ServerConfig {
            core,
            require_authentication: s.require_authentication,
            jwt_secret: s.jwt_secret.as_ref().map(|c| c.expose().to_owned()),
            rathena_auth: s.rathena_auth.clone(),
            ice,
            websocket_path: if s.websocket_path.is_empty() {
                WEBSOCKET_PATH.to_owned()
            } else {
                s.websocket_path.clone()
            },
            max_connections: s.max_connections as usize,
            public_url: s.public_url.clone(),
            trusted_proxies: s.trusted_proxies.clone(),
            cluster: s
                .redis
                .as_ref()
                .map(|r| ClusterConfig::redis(r.clone(), default_instance_id())),
            ..ServerConfig::base()
        }
    }
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
    /// `coordinator.enabled`.
    pub enabled: bool,
    /// Whether `coordinator.redis` is configured (cluster mode).
    pub redis_configured: bool,
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
        Effective::from_settings(&CoordinatorSettings::default())
    }

    /// The effective settings for parsed `config.yaml` settings (before overrides).
    pub fn from_settings(s: &CoordinatorSettings) -> Self {
        let (tls_cert, tls_key) = match &s.tls {
            Some(t) => (Some(PathBuf::from(&t.cert_path)), Some(PathBuf::from(&t.key_path))),
            None => (None, None),
        };
        Effective {
            server: ServerConfig::from_settings(s),
            host: s.host.clone(),
            port: s.port,
            tls_cert,
            tls_key,
            enabled: s.enabled,
            redis_configured: s.redis.is_some(),
            log_level: s.logging.level.as_str().to_owned(),
            log_json: s.logging.format == LogFormat::Json,
            log_file: s.logging.file.as_ref().map(PathBuf::from),
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
        if let Some(cluster) = &mut eff.server.cluster {
            if let Some(id) = &overrides.instance_id {
                cluster.instance = id.clone();
            }
            if let Some(ttl) = overrides.lease_ttl_ms {
                cluster.lease_ttl_ms = ttl;
            }
        }
        if eff.tls_cert.is_some() != eff.tls_key.is_some() {
            return Err(SettingsError::HalfTls);
        }
        Ok(eff)
    }

    /// Checks every file the settings name, as the start would use it: the TLS certificate and
    /// key are read and parsed, the log file's directory must exist and an existing log file
    /// must be writable (nothing is created). `--check-config` and the start both run this, so a
    /// configuration that passes the check does not fail on its files at start.
    pub fn check_files(&self) -> Result<(), SettingsError> {
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            super::tls::load_server_config(cert, key).map_err(|e| SettingsError::File {
                key: "security.ssl_cert/ssl_key",
                detail: e.to_string(),
            })?;
        }
        if let Some(file) = &self.log_file {
            check_log_file(file)
                .map_err(|detail| SettingsError::File { key: "logging.file", detail })?;
        }
        Ok(())
    }

    /// A human-readable summary of the effective settings (secrets redacted).
    pub fn summary(&self) -> String {
        let s = &self.server;
        let c = &s.core;
        let mut out = String::new();
        let _ = writeln!(out, "enabled: {}", self.enabled);
        let _ = writeln!(
            out,
            "listen: {}:{} ({})",
            self.host,
            self.port,
            if self.tls_cert.is_some() { "TLS" } else { "plain" }
        );
        let _ = writeln!(out, "websocket_path: {}", s.websocket_path);
        let _ = writeln!(out, "require_authentication: {}", s.require_authentication);
        let mode = match (&s.rathena_auth, s.require_authentication) {
            (Some(_), _) => "rathena",
            (None, true) => "jwt",
            (None, false) => "off",
        };
        let _ = writeln!(out, "auth.mode: {mode}");
        if let Some(r) = &s.rathena_auth {
            let _ = writeln!(
                out,
                "auth.rathena: database_url={} recheck_interval_s={} query_timeout_ms={} pool_max={} failed_checks_burst={} failed_checks_per_minute={} table={} columns=({}, {}, {}, {})",
                r.redacted_url(),
                r.recheck_interval_s,
                r.query_timeout_ms,
                r.pool_max,
                r.failed_checks_burst,
                r.failed_checks_per_minute,
                r.schema.table,
                r.schema.account_id,
                r.schema.web_auth_token,
                r.schema.web_auth_token_enabled,
                r.schema.sex
            );
        }
        let _ = writeln!(
            out,
            "jwt_secret: {}",
            if s.jwt_secret.is_some() { "<set>" } else { "<unset>" }
        );
        let _ = writeln!(out, "max_sessions_per_zone: {}", c.max_sessions_per_zone);
        let _ = writeln!(out, "max_players_per_session: {}", c.max_players_per_session);
        let _ = writeln!(out, "session_timeout_s: {}", c.session_timeout_s);
        let _ = writeln!(out, "max_connections: {}", s.max_connections);
        let _ = writeln!(out, "heartbeat_interval_ms: {}", c.heartbeat_interval_ms);
        let _ = writeln!(out, "idle_timeout_ms: {}", c.idle_timeout_ms);
        let _ = writeln!(out, "key_rotation_interval_s: {}", c.key_rotation_interval_s);
        let _ = writeln!(out, "rate_limit: {:?}", c.rate_limit);
        let _ = writeln!(out, "public_url: {:?}", s.public_url);
        let _ = writeln!(out, "trusted_proxies: {:?}", s.trusted_proxies);
        let _ = writeln!(out, "outbound_queue_bytes: {}", c.outbound_queue_bytes_max);
        let _ = writeln!(
            out,
            "grace_seats_max: {} (per address, auth off: {})",
            c.grace_seats_max, c.grace_seats_per_origin_max
        );
        let _ = writeln!(out, "host_requirements: {:?}", c.host_requirements);
        let _ = writeln!(out, "stun_servers: {:?}", s.ice.stun_servers);
        let _ = writeln!(out, "turn_servers: {}", s.ice.turn_servers.len());
        let _ = writeln!(
            out,
            "turn_shared_secret: {}",
            if s.ice.turn_shared_secret.is_some() { "<set>" } else { "<unset>" }
        );
        match &s.cluster {
            Some(c) => {
                let _ = writeln!(
                    out,
                    "cluster: instance={} lease_ttl_ms={} (redis)",
                    c.instance, c.lease_ttl_ms
                );
            }
            None => {
                let _ = writeln!(out, "cluster: off (one instance, sessions in memory)");
            }
        }
        let _ = write!(
            out,
            "logging: level={} format={} file={:?}",
            self.log_level,
            if self.log_json { "json" } else { "human" },
            self.log_file
        );
        out
    }

    fn from_yaml(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        CoordinatorSettings::from_yaml(text, &env)
            .map(|s| Effective::from_settings(&s))
            .map_err(|e| e.to_string())
    }
}

fn check_log_file(file: &Path) -> Result<(), String> {
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(format!(
            "the directory {} of the log file {} does not exist",
            dir.display(),
            file.display()
        ));
    }
    if file.is_dir() {
        return Err(format!("{} is a directory", file.display()));
    }
    if file.exists() {
        std::fs::OpenOptions::new()
            .append(true)
            .open(file)
            .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    } else if std::fs::metadata(dir).is_ok_and(|m| m.permissions().readonly()) {
        return Err(format!("the directory {} is read-only", dir.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_loopback_8001_without_auth() {
        let e = Effective::embedded();
        assert_eq!((e.host.as_str(), e.port), ("127.0.0.1", 8001));
        assert!(!e.server.require_authentication);
        assert!(e.tls_cert.is_none());
        assert_eq!(e.server.websocket_path, "/api/v1/signaling/ws");
    }

    #[test]
    fn the_guides_file_maps_onto_the_service_and_flags_win() {
        let yaml = "coordinator:\n  port: 9000\n  require_authentication: true\n  jwt_secret: \"${JWT_SECRET}\"\n  max_sessions_per_zone: 20\n  turn_servers:\n    - url: \"turn:t.example.org:3478\"\n      username: \"u\"\n      credential: \"c\"\nlogging:\n  level: DEBUG\n";
        let dir = std::env::temp_dir().join(format!("ro-p2p-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.yaml");
        std::fs::write(&path, yaml).unwrap();
        let env = |k: &str| (k == "JWT_SECRET").then(|| "s3cret".to_owned());
        let o = Overrides { port: Some(9100), ..Overrides::default() };
        let e = Effective::load(Some(&path), &o, env).unwrap();
        assert_eq!(e.port, 9100);
        assert!(e.server.require_authentication);
        assert_eq!(e.server.jwt_secret.as_deref(), Some("s3cret"));
        assert_eq!(e.server.core.max_sessions_per_zone, 20);
        assert_eq!(e.server.ice.turn_servers[0].credential.as_deref(), Some("c"));
        assert_eq!(e.log_level, "debug");
        assert!(!e.summary().contains("s3cret"));

        let err = Effective::load(Some(&path), &Overrides::default(), |_| None).unwrap_err();
        assert!(err.to_string().to_lowercase().contains("jwt_secret"), "{err}");
        std::fs::write(&path, "coordinator:\n  require_authentication: false\n  prot: 1\n")
            .unwrap();
        let err = Effective::load(Some(&path), &Overrides::default(), |_| None).unwrap_err();
        assert!(err.to_string().contains("coordinator.prot"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn check_config_shows_the_rathena_mode_with_the_password_hidden() {
        let yaml = "coordinator:\n  auth:\n    mode: rathena\n    rathena:\n      database_url: \"mysql://ro_p2p_auth:${DB_PW}@10.0.0.2:3306/ragnarok\"\n";
        let dir = std::env::temp_dir().join(format!("ro-p2p-settings-r-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.yaml");
        std::fs::write(&path, yaml).unwrap();
        let env = |k: &str| (k == "DB_PW").then(|| "hunter2".to_owned());
        let e = Effective::load(Some(&path), &Overrides::default(), env).unwrap();
        assert!(e.server.require_authentication && e.server.jwt_secret.is_none());
        let summary = e.summary();
        assert!(summary.contains("auth.mode: rathena"), "{summary}");
        assert!(summary.contains("mysql://ro_p2p_auth:***@10.0.0.2:3306/ragnarok"), "{summary}");
        assert!(!summary.contains("hunter2"), "{summary}");
        assert!(!format!("{e:?}").contains("hunter2"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
