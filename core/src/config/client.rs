//! The game client's settings, from `p2p_config.json` or from `Data/config.ini` `[P2P]` plus
//! `Data/resourceinfo.ini` `[P2P_HOSTS]`; both formats land in one [`ClientSettings`].

use std::collections::BTreeSet;

use serde_json::Value;

use super::tree::{self, Table, check_url, parse_string};
use super::{ConfigError, HostRequirements, LogLevel};
use crate::packet::{ClientFamily, PacketVersion, UnsupportedPacketVersion};
use crate::wire::Zone;

impl ClientSettings {
    /// The client version these settings name (PACKETVER and family).
    pub fn version(&self) -> Result<PacketVersion, UnsupportedPacketVersion> {
        PacketVersion::new(self.packet_version, self.client_family)
    }
}

/// Most coordinator URLs (primary plus backups).
pub const COORDINATOR_URLS_MAX: usize = 16;

/// Everything the client library and router run on. Build it with
/// [`ClientSettings::from_json`] or [`ClientSettings::from_ini`]; `default()` is the guide's
/// defaults with no coordinator URL (P2P then stays off until one is configured).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientSettings {
    /// Use P2P at all (`p2p.enabled`, `EnableP2P`).
    pub p2p_enabled: bool,
    /// Volunteer as session host when the machine qualifies (`p2p.prefer_hosting`,
    /// `PreferP2PHosting`).
    pub prefer_p2p_hosting: bool,
    /// Route everything to the map server when P2P fails (`zones.fallback_on_failure`,
    /// `MainServerFallback`).
    pub fallback_on_failure: bool,
    /// Signaling WebSocket URLs in the order to try: primary, then backups.
    pub coordinator_urls: Vec<String>,
    /// REST base URL (`coordinator.rest_api_url`), if given.
    pub rest_api_url: Option<String>,
    /// Timeout of one REST request or signaling round trip (`coordinator.timeout_seconds`).
    pub request_timeout_ms: u64,
    /// Timeout of one connection attempt (`ConnectionTimeout`).
    pub connection_timeout_ms: u64,
    /// First reconnect delay; backoff doubles it (`ReconnectDelay`).
    pub reconnect_delay_ms: u64,
    /// Attempts per coordinator URL before moving on (`MaxRetries`).
    pub max_retries: u32,
    /// Most direct peer links (`p2p.max_peers`, `MaxConnections`).
    pub max_connections: u32,
    /// A link slower than this is degraded (`MaxLatencyMS`).
    pub max_latency_ms: u32,
    /// Peer payloads larger than this are compressed (`CompressionThreshold`).
    pub compression_threshold_bytes: u32,
    /// Expected session key rotation interval (`KeyRotationInterval`).
    pub key_rotation_interval_s: u64,
    /// How often position updates are sent (`UpdateInterval`).
    pub update_interval_ms: u64,
    /// The client's `PACKETVER` (yyyymmdd), which picks the packet table.
    pub packet_version: u32,
    /// The client family (`p2p.client`, `ClientFamily`: `main`, `re` or `zero`); `None` is
    /// rAthena's default for the date. Checked with `packet_version` when the file is read.
    pub client_family: Option<ClientFamily>,
    /// The operator's routing policy string, parsed by the router; `None` = the defaults.
    pub routing_policy: Option<String>,
    /// Minimums to volunteer as host (`MinCPUCores`, ...).
    pub host_requirements: HostRequirements,
    /// The `security` block.
    pub security: ClientSecurity,
    /// Log level (`logging.level`).
    pub log_level: LogLevel,
    /// Log to the console (`logging.console_output`).
    pub log_console: bool,
    /// Log file (`logging.file`), if any.
    pub log_file: Option<String>,
    /// Zones where P2P is used (`zones.p2p_enabled_zones`).
    pub zones: ZoneFilter,
}

/// The client's `security` block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientSecurity {
    /// Seal peer frames (AES-256-GCM). Off only for debugging.
    pub enable_encryption: bool,
    /// Send a token to the coordinator.
    pub enable_authentication: bool,
    /// Present the account id and web auth token of the login reply the client saw
    /// (`<account id>:<token>`) to the coordinator, for its `rathena` authentication mode
    /// (`security.web_auth_token`, `WebAuthToken`). Off by default: a coordinator with
    /// authentication off welcomes a client that presents a token under an anonymous id.
    pub present_web_auth_token: bool,
    /// Verify the coordinator's TLS certificate.
    pub certificate_validation: bool,
    /// Lowest TLS version accepted.
    pub tls_version: TlsVersion,
}

impl Default for ClientSecurity {
    fn default() -> Self {
        ClientSecurity {
            enable_encryption: true,
            enable_authentication: true,
            present_web_auth_token: false,
            certificate_validation: true,
            tls_version: TlsVersion::Tls12,
        }
    }
}

/// A minimum TLS version.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TlsVersion {
    /// TLS 1.2.
    #[default]
    Tls12,
    /// TLS 1.3.
    Tls13,
}

/// Which zones (rAthena map names) use P2P.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ZoneFilter {
    /// Every zone (no `zones.p2p_enabled_zones` given; INI files have no zone list).
    #[default]
    All,
    /// Only these; an empty list means none.
    Only(BTreeSet<Zone>),
}

impl ClientSettings {
    /// The client state machine's configuration from these settings. The token (minted by the
    /// login flow) and the measured host capabilities are the application's to fill in; the
    /// capabilities are only worth reporting when `prefer_p2p_hosting` is on.
    pub fn to_client_config(&self) -> crate::client::Config {
        crate::client::Config {
            coordinator_urls: self.coordinator_urls.clone(),
            reconnect_delay_ms: self.reconnect_delay_ms,
            max_retries: self.max_retries,
            connection_timeout_ms: self.connection_timeout_ms,
            p2p_enabled: self.p2p_enabled,
            p2p_enabled_zones: self.zones.clone(),
            max_connections: usize::try_from(self.max_connections).unwrap_or(usize::MAX),
            max_latency_ms: self.max_latency_ms,
            ..crate::client::Config::default()
        }
    }
}

impl FromIterator<Zone> for ZoneFilter {
    /// Exactly these zones.
    fn from_iter<I: IntoIterator<Item = Zone>>(zones: I) -> Self {
        ZoneFilter::Only(zones.into_iter().collect())
    }
}

impl ZoneFilter {
    /// Whether P2P may be used in `zone`.
    pub fn allows(&self, zone: &Zone) -> bool {
        match self {
            ZoneFilter::All => true,
            ZoneFilter::Only(set) => set.contains(zone),
        }
    }
}

/// The `PACKETVER` rAthena builds by default.
pub const DEFAULT_PACKET_VERSION: u32 = 20211103;

impl Default for ClientSettings {
    fn default() -> Self {
        ClientSettings {
            p2p_enabled: true,
            prefer_p2p_hosting: true,
            fallback_on_failure: true,
            coordinator_urls: Vec::new(),
            rest_api_url: None,
            request_timeout_ms: 30_000,
            connection_timeout_ms: 5000,
            reconnect_delay_ms: 1000,
            max_retries: 3,
            max_connections: 5,
            max_latency_ms: 100,
            compression_threshold_bytes: 1024,
            key_rotation_interval_s: 3600,
            update_interval_ms: 50,
            packet_version: DEFAULT_PACKET_VERSION,
            client_family: None,
            routing_policy: None,
            host_requirements: HostRequirements::default(),
            security: ClientSecurity::default(),
            log_level: LogLevel::Info,
            log_console: true,
            log_file: None,
            zones: ZoneFilter::All,
        }
    }
}

impl ClientSettings {
    /// Parses `p2p_config.json` (JSON5: `//` comments and trailing commas allowed).
    pub fn from_json(text: &str) -> Result<ClientSettings, ConfigError> {
        tree::check_text(text, "json5")?;
        let root: Value = json5::from_str(text)
            .map_err(|e| ConfigError::Syntax { format: "json5", message: e.to_string() })?;
        let mut root = Table::from_value("", root)?;
        let mut c = root.table("coordinator")?;
        let mut p = root.table("p2p")?;
        let mut sec = root.table("security")?;
        let mut log = root.table("logging")?;
        let mut zones = root.table("zones")?;
        root.finish()?;
        let d = ClientSettings::default();

        let p2p_enabled = p.bool("enabled", d.p2p_enabled)?;
        let mut coordinator_urls = Vec::new();
        if let Some(url) = c.opt_string("websocket_url")? {
            push_ws_url(&mut coordinator_urls, &c.key("websocket_url"), url)?;
        }
        for (path, url) in c.string_list("backup_urls")? {
            push_ws_url(&mut coordinator_urls, &path, url)?;
        }
        if p2p_enabled && coordinator_urls.is_empty() {
            return Err(ConfigError::Missing { key: c.key("websocket_url") });
        }
        let rest_api_url = c.opt_string("rest_api_url")?;
        if let Some(url) = &rest_api_url {
            check_url(&c.key("rest_api_url"), url, &["http://", "https://"])?;
        }
        let request_timeout_ms = c.uint("timeout_seconds", 30u64, 1..=600)? * 1000;
        let connection_timeout_ms =
            c.uint("connection_timeout_ms", d.connection_timeout_ms, 100..=600_000)?;
        let reconnect_delay_ms =
            c.uint("reconnect_delay_ms", d.reconnect_delay_ms, 10..=600_000)?;
        let max_retries = c.uint("max_retries", d.max_retries, 0..=100)?;
        c.finish()?;

        let prefer_p2p_hosting = p.bool("prefer_hosting", d.prefer_p2p_hosting)?;
        let max_connections = p.uint("max_peers", d.max_connections, 0..=1000)?;
        let max_latency_ms = p.uint("max_latency_ms", d.max_latency_ms, 1..=60_000)?;
        let compression_threshold_bytes =
            p.uint("compression_threshold", d.compression_threshold_bytes, 0..=1 << 20)?;
        let update_interval_ms = p.uint("update_interval_ms", d.update_interval_ms, 1..=60_000)?;
        let packet_version = packet_version(&mut p, "packet_version")?;
        let client_family = client_family(&mut p, "client", packet_version)?;
        let routing_policy = policy(&mut p, "policy")?;
        let host_requirements = match p.opt_table("host_requirements")? {
            None => d.host_requirements,
            Some(mut h) => {
                let hd = d.host_requirements;
                let out = HostRequirements {
                    min_cpu_cores: h.uint("min_cpu_cores", hd.min_cpu_cores, 0..=1024)?,
                    min_cpu_mhz: h.uint("min_cpu_mhz", hd.min_cpu_mhz, 0..=100_000)?,
                    min_memory_mb: h.uint("min_memory_mb", hd.min_memory_mb, 0..=1 << 24)?,
                    min_bandwidth_mbps: h.uint(
                        "min_bandwidth_mbps",
                        hd.min_bandwidth_mbps,
                        0..=1_000_000,
                    )?,
                    max_latency_ms: h.uint("max_latency_ms", hd.max_latency_ms, 1..=60_000)?,
                };
                h.finish()?;
                out
            }
        };
        p.finish()?;

        let sd = d.security;
        let tls_version = match sec.opt_string("tls_version")? {
            None => sd.tls_version,
            Some(s) => tls_version(&sec.key("tls_version"), &s)?,
        };
        let security = ClientSecurity {
            enable_encryption: sec.bool("enable_encryption", sd.enable_encryption)?,
            enable_authentication: sec.bool("enable_authentication", sd.enable_authentication)?,
            present_web_auth_token: sec.bool("web_auth_token", sd.present_web_auth_token)?,
            certificate_validation: sec
                .bool("certificate_validation", sd.certificate_validation)?,
            tls_version,
        };
        let key_rotation_interval_s =
            sec.uint("key_rotation_interval_s", d.key_rotation_interval_s, 10..=7 * 86_400)?;
        sec.finish()?;

        let log_level = match log.opt_string("level")? {
            None => d.log_level,
            Some(s) => LogLevel::parse(&log.key("level"), &s)?,
        };
        let log_console = log.bool("console_output", d.log_console)?;
        let log_file = log.opt_string("file")?;
        log.finish()?;

        let zone_list_given = zones.has("p2p_enabled_zones");
        let mut set = BTreeSet::new();
        for (path, name) in zones.string_list("p2p_enabled_zones")? {
            let zone = Zone::new(name)
                .map_err(|e| ConfigError::Invalid { key: path, reason: e.to_string() })?;
            set.insert(zone);
        }
        let zone_filter = if zone_list_given { ZoneFilter::Only(set) } else { ZoneFilter::All };
        let fallback_on_failure = zones.bool("fallback_on_failure", d.fallback_on_failure)?;
        zones.finish()?;

        Ok(ClientSettings {
            p2p_enabled,
            prefer_p2p_hosting,
            fallback_on_failure,
            coordinator_urls,
            rest_api_url,
            request_timeout_ms,
            connection_timeout_ms,
            reconnect_delay_ms,
            max_retries,
            max_connections,
            max_latency_ms,
            compression_threshold_bytes,
            key_rotation_interval_s,
            update_interval_ms,
            packet_version,
            client_family,
            routing_policy,
            host_requirements,
            security,
            log_level,
            log_console,
            log_file,
            zones: zone_filter,
        })
    }

    /// Parses the game client's `Data/config.ini` (only its `[P2P]` section is read; keys match
    /// case-insensitively; other sections belong to the game) and, if given,
    /// `Data/resourceinfo.ini` (its `[P2P_HOSTS]` `0=`, `1=`, ... URLs, in numeric order, follow
    /// `CoordinatorURL` as backups; duplicates are dropped).
    pub fn from_ini(
        config_ini: &str,
        resourceinfo_ini: Option<&str>,
    ) -> Result<ClientSettings, ConfigError> {
        let mut p = ini_section(config_ini, "P2P")?;
        let d = ClientSettings::default();
        let p2p_enabled = p.bool("EnableP2P", d.p2p_enabled)?;
        let prefer_p2p_hosting = p.bool("PreferP2PHosting", d.prefer_p2p_hosting)?;
        let fallback_on_failure = p.bool("MainServerFallback", d.fallback_on_failure)?;

        let port_key = p.key("CoordinatorPort");
        let port: Option<u16> = match p.take("CoordinatorPort") {
            None => None,
            Some(v) => Some(tree::parse_uint(&port_key, &v, 1..=u16::MAX)?),
        };
        let mut coordinator_urls = Vec::new();
        if let Some(url) = p.opt_string("CoordinatorURL")? {
            let key = p.key("CoordinatorURL");
            check_url(&key, &url, &["ws://", "wss://"])?;
            let url = match port {
                Some(port) => with_port(&url, port, &port_key)?,
                None => url,
            };
            push_ws_url(&mut coordinator_urls, &key, url)?;
        }
        if let Some(text) = resourceinfo_ini {
            let hosts = ini_section(text, "P2P_HOSTS")?;
            let mut numbered = Vec::new();
            for (lookup, (written, v)) in hosts.into_entries() {
                let key = tree::join("P2P_HOSTS", &written);
                let n: u32 =
                    lookup.parse().map_err(|_| ConfigError::UnknownKey { key: key.clone() })?;
                numbered.push((n, key, parse_string(&tree::join("P2P_HOSTS", &written), &v)?));
            }
            numbered.sort_by_key(|(n, _, _)| *n);
            for (_, key, url) in numbered {
                push_ws_url(&mut coordinator_urls, &key, url)?;
            }
        }
        if p2p_enabled && coordinator_urls.is_empty() {
            return Err(ConfigError::Missing { key: p.key("CoordinatorURL") });
        }

        let connection_timeout_ms =
            p.uint("ConnectionTimeout", d.connection_timeout_ms, 100..=600_000)?;
        let reconnect_delay_ms = p.uint("ReconnectDelay", d.reconnect_delay_ms, 10..=600_000)?;
        let max_retries = p.uint("MaxRetries", d.max_retries, 0..=100)?;
        let hd = d.host_requirements;
        let host_requirements = HostRequirements {
            min_cpu_cores: p.uint("MinCPUCores", hd.min_cpu_cores, 0..=1024)?,
            min_cpu_mhz: p.uint("MinCPUFrequency", hd.min_cpu_mhz, 0..=100_000)?,
            min_memory_mb: p.uint("MinMemoryMB", hd.min_memory_mb, 0..=1 << 24)?,
            min_bandwidth_mbps: p.uint(
                "MinNetworkSpeedMbps",
                hd.min_bandwidth_mbps,
                0..=1_000_000,
            )?,
            max_latency_ms: hd.max_latency_ms,
        };
        let max_latency_ms = p.uint("MaxLatencyMS", d.max_latency_ms, 1..=60_000)?;
        let host_requirements = HostRequirements { max_latency_ms, ..host_requirements };
        let security = ClientSecurity {
            enable_encryption: p.bool("EnableEncryption", d.security.enable_encryption)?,
            present_web_auth_token: p.bool("WebAuthToken", d.security.present_web_auth_token)?,
            ..d.security
        };
        let key_rotation_interval_s =
            p.uint("KeyRotationInterval", d.key_rotation_interval_s, 10..=7 * 86_400)?;
        let update_interval_ms = p.uint("UpdateInterval", d.update_interval_ms, 1..=60_000)?;
        let max_connections = p.uint("MaxConnections", d.max_connections, 0..=1000)?;
        let compression_threshold_bytes =
            p.uint("CompressionThreshold", d.compression_threshold_bytes, 0..=1 << 20)?;
        let packet_version = packet_version(&mut p, "PacketVersion")?;
        let client_family = client_family(&mut p, "ClientFamily", packet_version)?;
        let routing_policy = policy(&mut p, "Policy")?;
        p.finish()?;

        Ok(ClientSettings {
            p2p_enabled,
            prefer_p2p_hosting,
            fallback_on_failure,
            coordinator_urls,
            connection_timeout_ms,
            reconnect_delay_ms,
            max_retries,
            max_connections,
            max_latency_ms,
            compression_threshold_bytes,
            key_rotation_interval_s,
            update_interval_ms,
            packet_version,
            client_family,
            routing_policy,
            host_requirements,
            security,
            ..d
        })
    }
}

/// The keys of one INI section as a case-insensitive table; an absent section is empty, a
/// section given twice is an error.
fn ini_section(text: &str, name: &str) -> Result<Table, ConfigError> {
    tree::check_text(text, "ini")?;
    let opt = ini::ParseOption { enabled_escape: false, ..Default::default() };
    let ini = ini::Ini::load_from_str_opt(text, opt)
        .map_err(|e| ConfigError::Syntax { format: "ini", message: e.to_string() })?;
    let mut pairs = Vec::new();
    let mut seen = false;
    for (section, props) in ini.iter() {
        if !section.is_some_and(|s| s.eq_ignore_ascii_case(name)) {
            continue;
        }
        if seen {
            return Err(ConfigError::DuplicateKey { key: name.to_owned() });
        }
        seen = true;
        for (k, v) in props.iter() {
            pairs.push((k.to_owned(), strip_inline_comment(v).to_owned()));
        }
    }
    Table::case_insensitive(name, pairs)
}

/// `EnableP2P=1 ; comment` -> `1`: the game's own INI reader allows trailing comments.
fn strip_inline_comment(v: &str) -> &str {
    let cut = v
        .char_indices()
        .find(|&(i, c)| (c == ';' || c == '#') && (i == 0 || v[..i].ends_with([' ', '\t'])))
        .map_or(v.len(), |(i, _)| i);
    v[..cut].trim()
}

fn push_ws_url(urls: &mut Vec<String>, key: &str, url: String) -> Result<(), ConfigError> {
    check_url(key, &url, &["ws://", "wss://"])?;
    if !urls.contains(&url) {
        if urls.len() == COORDINATOR_URLS_MAX {
            return Err(ConfigError::Invalid {
                key: key.to_owned(),
                reason: format!("more than {COORDINATOR_URLS_MAX} coordinator URLs"),
            });
        }
        urls.push(url);
    }
    Ok(())
}

/// Puts `port` into a URL that has none; a URL with another port is an error.
fn with_port(url: &str, port: u16, port_key: &str) -> Result<String, ConfigError> {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return Ok(url.to_owned());
    };
    let rest = &url[scheme_end..];
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..auth_end];
    // An IPv6 literal's colons are inside brackets.
    let host_end = authority.rfind(']').map_or(0, |i| i + 1);
    match authority[host_end..].rfind(':').map(|i| &authority[host_end + i + 1..]) {
        None => Ok(format!("{}{authority}:{port}{}", &url[..scheme_end], &rest[auth_end..])),
        Some(given) if given == port.to_string() => Ok(url.to_owned()),
        Some(given) => Err(ConfigError::Inconsistent {
            key: port_key.to_owned(),
            reason: format!("{port} differs from the port {given} in CoordinatorURL"),
        }),
    }
}

fn packet_version(t: &mut Table, key: &str) -> Result<u32, ConfigError> {
    t.uint(key, DEFAULT_PACKET_VERSION, 20_000_101..=20_991_231)
}

/// The client family, checked together with the PACKETVER: the pair must be one rAthena builds.
fn client_family(
    t: &mut Table,
    key: &str,
    packet_version: u32,
) -> Result<Option<ClientFamily>, ConfigError> {
    let path = t.key(key);
    let family = match t.opt_string(key)? {
        None => None,
        Some(s) => Some(ClientFamily::from_name(&s).ok_or_else(|| ConfigError::Invalid {
            key: path.clone(),
            reason: format!("{s:?} is not one of main, re, zero"),
        })?),
    };
    PacketVersion::new(packet_version, family)
        .map_err(|e| ConfigError::Invalid { key: path, reason: e.to_string() })?;
    Ok(family)
}

fn policy(t: &mut Table, key: &str) -> Result<Option<String>, ConfigError> {
    let path = t.key(key);
    let s = t.opt_string(key)?;
    if s.as_ref().is_some_and(|s| s.len() > 1024) {
        return Err(ConfigError::Invalid {
            key: path,
            reason: "longer than 1024 bytes".to_owned(),
        });
    }
    Ok(s)
}

fn tls_version(key: &str, s: &str) -> Result<TlsVersion, ConfigError> {
    match s.trim().to_ascii_lowercase().trim_start_matches("tls").trim_start_matches(['v', ' ']) {
        "1.2" => Ok(TlsVersion::Tls12),
        "1.3" => Ok(TlsVersion::Tls13),
        _ => Err(ConfigError::Invalid {
            key: key.to_owned(),
            reason: format!("{s:?} is not one of 1.2, 1.3"),
        }),
    }
}
