//! The coordinator's `config.yaml`, as the integration guide writes it, plus our additions.

use serde_json::Value;

use super::tree::{self, Table, check_url, parse_string};
use super::{ConfigError, HostRequirements, LogLevel, Secret};
use crate::wire::{IceServer, limits};

/// Everything the coordinator runs on: the `coordinator:` section flattened, plus `security:`
/// (as [`TlsFiles`]) and `logging:`.
///
/// Build it with [`CoordinatorSettings::from_yaml`], or take [`CoordinatorSettings::default`]
/// (the embedded development default: 127.0.0.1:8001, authentication off).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CoordinatorSettings {
    /// `coordinator.enabled`: whether the coordinator should run at all.
    pub enabled: bool,
    /// `coordinator.host`: the address to bind.
    pub host: String,
    /// `coordinator.port`: the port to bind; 0 picks a free port (tests).
    pub port: u16,
    /// `coordinator.websocket_path`: where the signaling WebSocket is served.
    pub websocket_path: String,
    /// `coordinator.max_sessions_per_zone`.
    pub max_sessions_per_zone: u32,
    /// `coordinator.max_players_per_session`.
    pub max_players_per_session: u32,
    /// `coordinator.session_timeout_seconds`: an empty session, or a seat whose peer is gone,
    /// is dropped after this long.
    pub session_timeout_s: u64,
    /// `coordinator.max_connections`: most signaling connections served at once; an upgrade
    /// beyond it is refused with `server-full` (HTTP 503), so a connection flood cannot
    /// exhaust memory or file descriptors.
    pub max_connections: u32,
    /// `coordinator.stun_servers`: `stun:`/`stuns:` URLs handed to clients.
    pub stun_servers: Vec<String>,
    /// `coordinator.turn_servers`.
    pub turn_servers: Vec<TurnServer>,
    /// `coordinator.turn_shared_secret`: when set, clients get time-limited TURN credentials
    /// (TURN REST convention) instead of the static ones.
    pub turn_shared_secret: Option<Secret>,
    /// `coordinator.turn_credential_ttl_seconds`: lifetime of those credentials.
    pub turn_credential_ttl_s: u64,
    /// `coordinator.require_authentication`: require a JWT signed with `jwt_secret`.
    pub require_authentication: bool,
    /// `coordinator.jwt_secret`: the HS256 secret shared with the rAthena side.
    pub jwt_secret: Option<Secret>,
    /// `coordinator.dedicated_server`: informational (the guide's "runs on its own machine").
    pub dedicated_server: bool,
    /// `coordinator.heartbeat_interval_ms`: how often clients should ping.
    pub heartbeat_interval_ms: u64,
    /// `coordinator.idle_timeout_seconds`: a connection silent this long is closed.
    pub idle_timeout_s: u64,
    /// `coordinator.key_rotation_interval_seconds`: session keys rotate this often.
    pub key_rotation_interval_s: u64,
    /// `coordinator.host_requirements`: minimums for host election.
    pub host_requirements: HostRequirements,
    /// `coordinator.rate_limit`: per-connection signaling rate limit.
    pub rate_limit: RateLimit,
    /// `coordinator.public_url`: where clients reach the coordinator (`ws://` or `wss://`,
    /// host and port, no path); login's `websocket_url` is built from it, never from the
    /// request's `Host`. `None`: from `Host`.
    pub public_url: Option<String>,
    /// `coordinator.trusted_proxies`: addresses of reverse proxies whose `Forwarded: proto=` or
    /// `X-Forwarded-Proto` header says whether the client came over TLS (login then hands out
    /// `wss://` without `public_url`); from anyone else these headers are ignored.
    pub trusted_proxies: Vec<core::net::IpAddr>,
    /// `coordinator.outbound_queue_bytes`: bytes queued towards one client before it is
    /// closed as a slow consumer.
    pub outbound_queue_bytes: u64,
    /// `coordinator.grace_seats_max`: most seats held in grace at once.
    pub grace_seats_max: u32,
    /// `coordinator.grace_seats_per_address`: most seats in grace from one address, for
    /// anonymous clients (authentication off).
    pub grace_seats_per_address: u32,
    /// `coordinator.redis`: shared session state; `None` keeps it in memory.
    pub redis: Option<RedisSettings>,
    /// `coordinator.auth.mode`: how clients authenticate (`off`, `jwt`, `rathena`). Without
    /// `coordinator.auth`, `require_authentication` decides between `jwt` and `off`.
    pub auth_mode: AuthMode,
    /// `coordinator.auth.rathena`: set exactly when [`Self::auth_mode`] is
    /// [`AuthMode::Rathena`].
    pub rathena_auth: Option<RathenaAuthSettings>,
    /// `security.ssl_cert` and `security.ssl_key`: serve `wss://`/`https://` when set.
    pub tls: Option<TlsFiles>,
    /// `logging`.
    pub logging: LoggingSettings,
}

/// How clients authenticate to the coordinator.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthMode {
    /// Nobody is asked who they are (development).
    #[default]
    Off,
    /// An HS256 JWT signed with `coordinator.jwt_secret`, minted by the operator's own issuer.
    Jwt,
    /// rAthena's web auth token, checked in rAthena's own `login` table.
    Rathena,
}

impl AuthMode {
    /// The name in `config.yaml`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::Off => "off",
            AuthMode::Jwt => "jwt",
            AuthMode::Rathena => "rathena",
        }
    }
}

/// `coordinator.auth.rathena`: where rAthena's `login` table is and how often to re-check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RathenaAuthSettings {
    /// `database_url`: `mysql://user:password@host:port/database`, query parameters as the
    /// MySQL client takes them (`?require_ssl=true` for TLS). Holds the password.
    pub database_url: Secret,
    /// `recheck_interval_seconds`: how often the tokens of connected players are re-checked.
    pub recheck_interval_s: u64,
    /// `query_timeout_ms`: longest wait for a connection plus a query.
    pub query_timeout_ms: u64,
    /// `pool_max`: most database connections.
    pub pool_max: u32,
    /// `failed_checks_burst`: failed checks one address may cause before it is rate limited.
    pub failed_checks_burst: u32,
    /// `failed_checks_per_minute`: how fast that allowance refills.
    pub failed_checks_per_minute: u32,
    /// `table` and `columns`: the names in rAthena's schema (overridable for renamed schemas).
    pub schema: LoginSchema,
}

/// The table and column names of rAthena's `login` table (`coordinator.auth.rathena.table`,
/// `coordinator.auth.rathena.columns.*`). Each is an SQL identifier: letters, digits and `_`,
/// not starting with a digit, at most 64 characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginSchema {
    /// `table`: `login`.
    pub table: String,
    /// `columns.account_id`: `account_id`.
    pub account_id: String,
    /// `columns.web_auth_token`: `web_auth_token`.
    pub web_auth_token: String,
    /// `columns.web_auth_token_enabled`: `web_auth_token_enabled`.
    pub web_auth_token_enabled: String,
    /// `columns.sex`: `sex` (`'S'` marks a server account).
    pub sex: String,
}

impl Default for LoginSchema {
    fn default() -> Self {
        LoginSchema {
            table: "login".into(),
            account_id: "account_id".into(),
            web_auth_token: "web_auth_token".into(),
            web_auth_token_enabled: "web_auth_token_enabled".into(),
            sex: "sex".into(),
        }
    }
}

impl RathenaAuthSettings {
    /// The defaults around `database_url`: re-check every 30 s, 2 s per query, 8 connections,
    /// 10 failed checks per address refilled at 10 per minute, rAthena's own names.
    pub fn new(database_url: impl Into<String>) -> RathenaAuthSettings {
        RathenaAuthSettings {
            database_url: Secret::new(database_url),
            recheck_interval_s: 30,
            query_timeout_ms: 2_000,
            pool_max: 8,
            failed_checks_burst: 10,
            failed_checks_per_minute: 10,
            schema: LoginSchema::default(),
        }
    }

    /// `database_url` with its password replaced by `***` (for `--check-config` and logs).
    pub fn redacted_url(&self) -> String {
        redact_url_password(self.database_url.expose())
    }
}

/// `scheme://user:password@rest` becomes `scheme://user:***@rest`; other URLs are returned
/// without their query string if they hold no password.
pub fn redact_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<not a URL>".to_owned();
    };
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            format!("{scheme}://{user}:***@{host}{tail}")
        }
        None => url.to_owned(),
    }
}

/// A TURN server from `coordinator.turn_servers`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TurnServer {
    /// `turn:` or `turns:` URL.
    pub url: String,
    /// Static username (absent when credentials are time-limited).
    pub username: Option<String>,
    /// Static credential.
    pub credential: Option<Secret>,
}

/// A token bucket: `per_second` tokens refilled each second, at most `burst` saved up; every
/// frame (text, binary, WebSocket ping) takes one. `strikes_max` rejected frames within 10 s
/// close the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RateLimit {
    /// Sustained frames per second.
    pub per_second: u32,
    /// Largest burst.
    pub burst: u32,
    /// Rejected frames (over the rate, undecodable, binary) within 10 s that close the
    /// connection.
    pub strikes_max: u32,
}

impl Default for RateLimit {
    /// The same numbers as the coordinator core's default.
    fn default() -> Self {
        let core = crate::coordinator::RateLimit::default();
        RateLimit { per_second: core.per_s, burst: core.burst, strikes_max: core.strikes_max }
    }
}

/// The `redis:` block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisSettings {
    /// Where the server is.
    pub endpoint: RedisEndpoint,
    /// `tls`: connect with TLS (`rediss://`).
    pub tls: bool,
    /// `key_prefix`: prefix of every key and channel this coordinator uses.
    pub key_prefix: String,
}

/// A Redis server, given either as one URL or as its parts (not both).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedisEndpoint {
    /// `url: redis://...` (or `rediss://`).
    Url(Secret),
    /// `host`, `port`, `db`, `password`.
    Parts {
        /// Host name or address.
        host: String,
        /// Port.
        port: u16,
        /// Database number.
        db: u32,
        /// Password, if any.
        password: Option<Secret>,
    },
}

impl RedisSettings {
    /// The connection URL for the Redis client (it may contain the password).
    pub fn connection_url(&self) -> String {
        match &self.endpoint {
            RedisEndpoint::Url(url) => url.expose().to_owned(),
            RedisEndpoint::Parts { host, port, db, password } => {
                let scheme = if self.tls { "rediss" } else { "redis" };
                let auth = match password {
                    Some(p) => format!(":{}@", percent_encode(p.expose())),
                    None => String::new(),
                };
                let host = if host.contains(':') { format!("[{host}]") } else { host.clone() };
                format!("{scheme}://{auth}{host}:{port}/{db}")
            }
        }
    }
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `security.ssl_cert` and `security.ssl_key`: PEM file paths, both or neither.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain (PEM).
    pub cert_path: String,
    /// Private key (PEM).
    pub key_path: String,
}

/// The `logging:` block of `config.yaml`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoggingSettings {
    /// `level`.
    pub level: LogLevel,
    /// `file`: log to this file instead of stdout.
    pub file: Option<String>,
    /// `format`.
    pub format: LogFormat,
}

/// Log line format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

const DEFAULT_STUN: &str = "stun:stun.l.google.com:19302";

impl Default for CoordinatorSettings {
    /// The embedded default: what the coordinator runs with when no file is given. Unlike a
    /// file, it has authentication OFF (development); the binary warns about it.
    fn default() -> Self {
        let core_default = crate::coordinator::Config::default();
        CoordinatorSettings {
            enabled: true,
            host: "127.0.0.1".to_owned(),
            port: 8001,
            websocket_path: "/api/v1/signaling/ws".to_owned(),
            max_sessions_per_zone: 10,
            max_players_per_session: 50,
            session_timeout_s: 300,
            max_connections: 50_000,
            stun_servers: vec![DEFAULT_STUN.to_owned()],
            turn_servers: Vec::new(),
            turn_shared_secret: None,
            turn_credential_ttl_s: 86_400,
            require_authentication: false,
            jwt_secret: None,
            dedicated_server: false,
            heartbeat_interval_ms: 15_000,
            idle_timeout_s: 45,
            key_rotation_interval_s: 3600,
            host_requirements: HostRequirements::default(),
            rate_limit: RateLimit::default(),
            public_url: None,
            trusted_proxies: Vec::new(),
            outbound_queue_bytes: crate::coordinator::OUTBOUND_QUEUE_BYTES_MAX_DEFAULT as u64,
            grace_seats_max: core_default.grace_seats_max as u32,
            grace_seats_per_address: core_default.grace_seats_per_origin_max as u32,
            redis: None,
            auth_mode: AuthMode::Off,
            rathena_auth: None,
            tls: None,
            logging: LoggingSettings::default(),
        }
    }
}

/// The top-level sections of `config.yaml` the coordinator owns.
const OWN_SECTIONS: &[&str] = &["coordinator", "security", "logging"];

impl CoordinatorSettings {
    /// Parses and validates `config.yaml`. `${NAME}` in any string value is replaced by
    /// `env(NAME)` (`$${` is a literal `${`); an unset variable is an error naming it.
    pub fn from_yaml(
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<CoordinatorSettings, ConfigError> {
        tree::check_text(text, "yaml")?;
        let mut root: Value = serde_norway::from_str(text)
            .map_err(|e| ConfigError::Syntax { format: "yaml", message: e.to_string() })?;
        // The guide's integrated setup shares this file with the AI service: only our own
        // sections are read, substituted and checked for unknown keys; others are left alone.
        if let Value::Object(sections) = &mut root {
            if !sections.contains_key("coordinator") {
                return Err(ConfigError::Missing { key: "coordinator".into() });
            }
            sections.retain(|name, _| OWN_SECTIONS.contains(&name.as_str()));
        }
        tree::substitute_env(&mut root, "", env)?;
        let mut root = Table::from_value("", root)?;
        let mut c = root.table("coordinator")?;
        let mut security = root.table("security")?;
        let mut logging = root.table("logging")?;
        root.finish()?;

        let d = CoordinatorSettings { require_authentication: true, ..Default::default() };
        let enabled = c.bool("enabled", d.enabled)?;
        let host = c.string("host", &d.host)?;
        check_host(&c.key("host"), &host)?;
        let port = c.uint("port", d.port, 0..=u16::MAX)?;
        let websocket_path = c.string("websocket_path", &d.websocket_path)?;
        check_path(&c.key("websocket_path"), &websocket_path)?;
        let max_sessions_per_zone =
            c.uint("max_sessions_per_zone", d.max_sessions_per_zone, 1..=10_000)?;
        let max_players_per_session =
            c.uint("max_players_per_session", d.max_players_per_session, 1..=1000)?;
        let session_timeout_s =
            c.uint("session_timeout_seconds", d.session_timeout_s, 1..=86_400)?;
        let max_connections = c.uint("max_connections", d.max_connections, 1..=1_000_000)?;

        let stun_present = c.has("stun_servers");
        let mut stun_servers = Vec::new();
        for (path, url) in c.string_list("stun_servers")? {
            check_ice_url(&path, &url, &["stun:", "stuns:"])?;
            stun_servers.push(url);
        }
        if !stun_present {
            stun_servers = d.stun_servers.clone();
        }
        let turn_shared_secret = c.opt_string("turn_shared_secret")?.map(Secret::new);
        let turn_credential_ttl_s =
            c.uint("turn_credential_ttl_seconds", d.turn_credential_ttl_s, 60..=7 * 86_400)?;
        let mut turn_servers = Vec::new();
        for (path, v) in c.list("turn_servers")? {
            turn_servers.push(turn_server(&path, v, turn_shared_secret.is_some())?);
        }
        if stun_servers.len() + turn_servers.len() > limits::ICE_SERVERS_MAX {
            return Err(ConfigError::Invalid {
                key: c.key("turn_servers"),
                reason: format!(
                    "{} STUN and TURN servers in all, over the limit of {}",
                    stun_servers.len() + turn_servers.len(),
                    limits::ICE_SERVERS_MAX
                ),
            });
        }

        let require_given = c.has("require_authentication");
        let mut require_authentication =
            c.bool("require_authentication", d.require_authentication)?;
        let jwt_secret = c.opt_string("jwt_secret")?.map(Secret::new);
        let (auth_mode, rathena_auth) = match c.opt_table("auth")? {
            None => (if require_authentication { AuthMode::Jwt } else { AuthMode::Off }, None),
            Some(a) => auth_settings(a, require_given.then_some(require_authentication))?,
        };
        require_authentication = auth_mode != AuthMode::Off;
        if auth_mode == AuthMode::Jwt && jwt_secret.is_none() {
            return Err(ConfigError::Inconsistent {
                key: c.key("jwt_secret"),
                reason: "required (and non-empty) when require_authentication is true".to_owned(),
            });
        }
        let dedicated_server = c.bool("dedicated_server", d.dedicated_server)?;
        let heartbeat_interval_ms =
            c.uint("heartbeat_interval_ms", d.heartbeat_interval_ms, 100..=600_000)?;
        let idle_timeout_s = c.uint("idle_timeout_seconds", d.idle_timeout_s, 1..=3600)?;
        if idle_timeout_s.saturating_mul(1000) <= heartbeat_interval_ms {
            return Err(ConfigError::Inconsistent {
                key: c.key("idle_timeout_seconds"),
                reason: format!(
                    "{idle_timeout_s} s must be longer than heartbeat_interval_ms \
                     ({heartbeat_interval_ms} ms), or every client would be dropped"
                ),
            });
        }
        let key_rotation_interval_s =
            c.uint("key_rotation_interval_seconds", d.key_rotation_interval_s, 10..=7 * 86_400)?;

        let mut hr = c.table("host_requirements")?;
        let hd = d.host_requirements;
        let host_requirements = HostRequirements {
            min_cpu_cores: hr.uint("min_cpu_cores", hd.min_cpu_cores, 0..=1024)?,
            min_cpu_mhz: hr.uint("min_cpu_mhz", hd.min_cpu_mhz, 0..=100_000)?,
            min_memory_mb: hr.uint("min_memory_mb", hd.min_memory_mb, 0..=16 * 1024 * 1024)?,
            min_bandwidth_mbps: hr.uint(
                "min_bandwidth_mbps",
                hd.min_bandwidth_mbps,
                0..=1_000_000,
            )?,
            max_latency_ms: hr.uint("max_latency_ms", hd.max_latency_ms, 1..=60_000)?,
        };
        hr.finish()?;

        let mut rl = c.table("rate_limit")?;
        let per_second = rl.uint("per_second", d.rate_limit.per_second, 1..=100_000)?;
        let burst = rl.uint("burst", d.rate_limit.burst.max(per_second), 1..=1_000_000)?;
        if burst < per_second {
            return Err(ConfigError::Inconsistent {
                key: rl.key("burst"),
                reason: format!("{burst} must be at least per_second ({per_second})"),
            });
        }
        let strikes_max = rl.uint("strikes_max", d.rate_limit.strikes_max, 1..=100_000)?;
        let rate_limit = RateLimit { per_second, burst, strikes_max };
        rl.finish()?;

        let mut trusted_proxies = Vec::new();
        for (path, ip) in c.string_list("trusted_proxies")? {
            let ip = ip.trim().parse().map_err(|_| ConfigError::Invalid {
                key: path,
                reason: format!("{ip:?} is not an IP address"),
            })?;
            if !trusted_proxies.contains(&ip) {
                trusted_proxies.push(ip);
            }
        }
        let public_url = c.opt_string("public_url")?;
        if let Some(url) = &public_url {
            check_public_url(&c.key("public_url"), url)?;
        }
        // At least one frame of the largest size (64 KiB) must fit.
        let outbound_queue_bytes =
            c.uint("outbound_queue_bytes", d.outbound_queue_bytes, 65_536..=1 << 30)?;
        let grace_seats_max = c.uint("grace_seats_max", d.grace_seats_max, 0..=10_000_000)?;
        let grace_seats_per_address =
            c.uint("grace_seats_per_address", d.grace_seats_per_address, 0..=10_000_000)?;

        let redis = c.opt_table("redis")?.map(redis_settings).transpose()?;
        c.finish()?;

        let ssl_cert = security.opt_string("ssl_cert")?;
        let ssl_key = security.opt_string("ssl_key")?;
        let tls = match (ssl_cert, ssl_key) {
            (Some(cert_path), Some(key_path)) => Some(TlsFiles { cert_path, key_path }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::Inconsistent {
                    key: security.key("ssl_key"),
                    reason: "missing while ssl_cert is set (give both or neither)".to_owned(),
                });
            }
            (None, Some(_)) => {
                return Err(ConfigError::Inconsistent {
                    key: security.key("ssl_cert"),
                    reason: "missing while ssl_key is set (give both or neither)".to_owned(),
                });
            }
        };
        security.finish()?;

        let level = match logging.opt_string("level")? {
            Some(s) => LogLevel::parse(&logging.key("level"), &s)?,
            None => LogLevel::default(),
        };
        let file = logging.opt_string("file")?;
        let format = match logging.opt_string("format")? {
            None => LogFormat::default(),
            Some(s) => match s.trim().to_ascii_lowercase().as_str() {
                "human" | "text" => LogFormat::Human,
                "json" => LogFormat::Json,
                _ => {
                    return Err(ConfigError::Invalid {
                        key: logging.key("format"),
                        reason: format!("{s:?} is not one of human, json"),
                    });
                }
            },
        };
        logging.finish()?;

        Ok(CoordinatorSettings {
            enabled,
            host,
            port,
            websocket_path,
            max_sessions_per_zone,
            max_players_per_session,
            session_timeout_s,
            max_connections,
            stun_servers,
            turn_servers,
            turn_shared_secret,
            turn_credential_ttl_s,
            require_authentication,
            jwt_secret,
            dedicated_server,
            heartbeat_interval_ms,
            idle_timeout_s,
            key_rotation_interval_s,
            host_requirements,
            rate_limit,
            public_url,
            trusted_proxies,
            outbound_queue_bytes,
            grace_seats_max,
            grace_seats_per_address,
            redis,
            auth_mode,
            rathena_auth,
            tls,
            logging: LoggingSettings { level, file, format },
        })
    }

    /// The ICE servers with their static credentials, in configuration order (STUN first).
    /// With [`Self::turn_shared_secret`] set, the adapter fills in time-limited TURN
    /// credentials instead.
    pub fn static_ice_servers(&self) -> Vec<IceServer> {
        let stun = self.stun_servers.iter().map(|url| IceServer {
            urls: vec![url.clone()],
            username: None,
            credential: None,
        });
        let turn = self.turn_servers.iter().map(|t| IceServer {
            urls: vec![t.url.clone()],
            username: t.username.clone(),
            credential: t.credential.as_ref().map(|c| c.expose().to_owned()),
        });
        stun.chain(turn).collect()
    }
}

fn check_host(key: &str, host: &str) -> Result<(), ConfigError> {
    let ok = host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            key: key.to_owned(),
            reason: format!("{host:?} is not a host name or IP address"),
        })
    }
}

fn check_path(key: &str, path: &str) -> Result<(), ConfigError> {
    let ok = path.starts_with('/')
        && path.len() <= 256
        && path.bytes().all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            key: key.to_owned(),
            reason: format!("{path:?} must be a URL path starting with '/'"),
        })
    }
}

/// `ws://` or `wss://`, a host (and port), no path: the coordinator's address as clients
/// reach it.
fn check_public_url(key: &str, url: &str) -> Result<(), ConfigError> {
    let bare = url.trim_end_matches('/');
    let rest = bare.strip_prefix("wss://").or_else(|| bare.strip_prefix("ws://"));
    let ok = rest.is_some_and(|r| {
        !r.is_empty()
            && r.len() <= 253
            && r.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b))
    });
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            key: key.to_owned(),
            reason: format!("{url:?} must be ws://host[:port] or wss://host[:port], with no path"),
        })
    }
}

fn check_ice_url(key: &str, url: &str, schemes: &[&str]) -> Result<(), ConfigError> {
    if url.len() > limits::ICE_FIELD_BYTES_MAX {
        return Err(ConfigError::Invalid {
            key: key.to_owned(),
            reason: format!(
                "{} bytes, over the limit of {}",
                url.len(),
                limits::ICE_FIELD_BYTES_MAX
            ),
        });
    }
    check_url(key, url, schemes)
}

fn turn_server(path: &str, v: Value, shared_secret: bool) -> Result<TurnServer, ConfigError> {
    let mut t = match v {
        // A bare URL string is accepted as shorthand for `{url: ...}`.
        Value::String(_) => {
            let url = parse_string(path, &v)?;
            Table::from_value(
                path,
                Value::Object([("url".to_owned(), Value::String(url))].into_iter().collect()),
            )?
        }
        other => Table::from_value(path, other)?,
    };
    let url = t.opt_string("url")?.ok_or_else(|| ConfigError::Missing { key: t.key("url") })?;
    check_ice_url(&t.key("url"), &url, &["turn:", "turns:"])?;
    let username = t.opt_string("username")?;
    let credential = t.opt_string("credential")?.map(Secret::new);
    for (field, v) in
        [("username", username.as_deref()), ("credential", credential.as_ref().map(Secret::expose))]
    {
        if v.is_some_and(|s| s.len() > limits::ICE_FIELD_BYTES_MAX) {
            return Err(ConfigError::Invalid {
                key: t.key(field),
                reason: format!("over the limit of {} bytes", limits::ICE_FIELD_BYTES_MAX),
            });
        }
    }
    match (&username, &credential) {
        (Some(_), Some(_)) => {}
        (None, None) if shared_secret => {}
        (None, None) => {
            return Err(ConfigError::Inconsistent {
                key: t.key("credential"),
                reason: "a TURN server needs username and credential, or \
                         coordinator.turn_shared_secret for time-limited credentials"
                    .to_owned(),
            });
        }
        (Some(_), None) => {
            return Err(ConfigError::Inconsistent {
                key: t.key("credential"),
                reason: "missing while username is set".to_owned(),
            });
        }
        (None, Some(_)) => {
            return Err(ConfigError::Inconsistent {
                key: t.key("username"),
                reason: "missing while credential is set".to_owned(),
            });
        }
    }
    t.finish()?;
    Ok(TurnServer { url, username, credential })
}

fn redis_settings(mut r: Table) -> Result<RedisSettings, ConfigError> {
    let tls = r.bool("tls", false)?;
    let key_prefix = r.string("key_prefix", "ro-p2p:")?;
    if key_prefix.len() > 64 || key_prefix.bytes().any(|b| !b.is_ascii_graphic()) {
        return Err(ConfigError::Invalid {
            key: r.key("key_prefix"),
            reason: "must be at most 64 printable ASCII characters without spaces".to_owned(),
        });
    }
    let parts_given = ["host", "port", "db", "password"].into_iter().find(|k| r.has(k));
    let endpoint = match r.opt_string("url")? {
        Some(url) => {
            if let Some(k) = parts_given {
                return Err(ConfigError::Inconsistent {
                    key: r.key(k),
                    reason: "give either url or host/port/db/password, not both".to_owned(),
                });
            }
            check_url(&r.key("url"), &url, &["redis://", "rediss://", "unix://"])?;
            RedisEndpoint::Url(Secret::new(url))
        }
        None => {
            let host = r.string("host", "localhost")?;
            check_host(&r.key("host"), &host)?;
            RedisEndpoint::Parts {
                host,
                port: r.uint("port", 6379, 1..=u16::MAX)?,
                db: r.uint("db", 0, 0..=u32::MAX)?,
                password: r.opt_string("password")?.map(Secret::new),
            }
        }
    };
    r.finish()?;
    Ok(RedisSettings { endpoint, tls, key_prefix })
}

/// `coordinator.auth`: `mode` and, for `rathena`, its block. `require_authentication` (when
/// given) must agree with the mode.
fn auth_settings(
    mut a: Table,
    require_authentication: Option<bool>,
) -> Result<(AuthMode, Option<RathenaAuthSettings>), ConfigError> {
    let mode = match a.string("mode", "jwt")?.trim().to_ascii_lowercase().as_str() {
        "off" => AuthMode::Off,
        "jwt" => AuthMode::Jwt,
        "rathena" => AuthMode::Rathena,
        other => {
            return Err(ConfigError::Invalid {
                key: a.key("mode"),
                reason: format!("{other:?} is not one of off, jwt, rathena"),
            });
        }
    };
    if let Some(required) = require_authentication
        && required != (mode != AuthMode::Off)
    {
        return Err(ConfigError::Inconsistent {
            key: a.key("mode"),
            reason: format!(
                "{} contradicts coordinator.require_authentication: {required} (drop one)",
                mode.as_str()
            ),
        });
    }
    let block = a.opt_table("rathena")?;
    let rathena = match (mode, block) {
        (AuthMode::Rathena, Some(r)) => Some(rathena_settings(r)?),
        (AuthMode::Rathena, None) => {
            return Err(ConfigError::Missing { key: a.key("rathena.database_url") });
        }
        (_, Some(_)) => {
            return Err(ConfigError::Inconsistent {
                key: a.key("rathena"),
                reason: format!("set, but mode is {}", mode.as_str()),
            });
        }
        (_, None) => None,
    };
    a.finish()?;
    Ok((mode, rathena))
}

fn rathena_settings(mut r: Table) -> Result<RathenaAuthSettings, ConfigError> {
    let url = r
        .opt_string("database_url")?
        .ok_or_else(|| ConfigError::Missing { key: r.key("database_url") })?;
    // Checked in its redacted form: the error message quotes it, and must not show a password.
    check_url(&r.key("database_url"), &redact_url_password(&url), &["mysql://", "mariadb://"])?;
    let url = match url.strip_prefix("mariadb://") {
        Some(rest) => format!("mysql://{rest}"),
        None => url,
    };
    let d = RathenaAuthSettings::new(String::new());
    let recheck_interval_s = r.uint("recheck_interval_seconds", d.recheck_interval_s, 1..=3_600)?;
    let query_timeout_ms = r.uint("query_timeout_ms", d.query_timeout_ms, 100..=60_000)?;
    let pool_max = r.uint("pool_max", d.pool_max, 1..=256)?;
    let failed_checks_burst = r.uint("failed_checks_burst", d.failed_checks_burst, 1..=100_000)?;
    let failed_checks_per_minute =
        r.uint("failed_checks_per_minute", d.failed_checks_per_minute, 1..=1_000_000)?;
    let ds = LoginSchema::default();
    let table = r.string("table", &ds.table)?;
    check_identifier(&r.key("table"), &table)?;
    let mut cols = r.table("columns")?;
    let mut column = |name: &str, default: &str| -> Result<String, ConfigError> {
        let v = cols.string(name, default)?;
        check_identifier(&cols.key(name), &v)?;
        Ok(v)
    };
    let schema = LoginSchema {
        table,
        account_id: column("account_id", &ds.account_id)?,
        web_auth_token: column("web_auth_token", &ds.web_auth_token)?,
        web_auth_token_enabled: column("web_auth_token_enabled", &ds.web_auth_token_enabled)?,
        sex: column("sex", &ds.sex)?,
    };
    cols.finish()?;
    r.finish()?;
    Ok(RathenaAuthSettings {
        database_url: Secret::new(url),
        recheck_interval_s,
        query_timeout_ms,
        pool_max,
        failed_checks_burst,
        failed_checks_per_minute,
        schema,
    })
}

/// An SQL identifier the coordinator may put in a query (quoted with backticks): letters,
/// digits and `_`, not starting with a digit, 1 to 64 characters.
fn check_identifier(key: &str, name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            key: key.to_owned(),
            reason: format!("{name:?} must be letters, digits and _, not starting with a digit"),
        })
    }
}
