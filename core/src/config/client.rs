//! The game client's settings, from `p2p_config.json` or from `Data/config.ini` `[P2P]` plus
//! `Data/resourceinfo.ini` `[P2P_HOSTS]`; both formats land in one [`ClientSettings`].

use std::collections::BTreeSet;

use serde_json::Value;

use super::tree::{self, Table, check_url, parse_string};
use super::{ConfigError, HostRequirements, LogLevel};
use crate::client::ZoneFilter;
use crate::packet::{ClientFamily, PacketVersion, UnsupportedPacketVersion};
use crate::wire::{Capabilities, Zone};

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
///
/// Settings of the guides that ro-p2p reads but does not act on (`rest_api_url`,
/// `enable_encryption: false`, ...) are not fields: each one given lands in [`Self::ignored`]
/// with the reason, which the runtimes log as a warning and `ro-p2p check-config` prints.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientSettings {
    /// Use P2P at all (`p2p.enabled`, `EnableP2P`).
    pub p2p_enabled: bool,
    /// Report the machine's capabilities to the coordinator so it may elect this client
    /// session host, when the machine meets [`Self::host_requirements`] (`p2p.prefer_hosting`,
    /// `PreferP2PHosting`); see [`ClientSettings::volunteer`].
    pub prefer_p2p_hosting: bool,
    /// Signaling WebSocket URLs in the order to try: primary, then backups.
    pub coordinator_urls: Vec<String>,
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
    /// Peer payloads larger than this are compressed (`CompressionThreshold`); see
    /// [`ClientSettings::seal_config`].
    pub compression_threshold_bytes: u32,
    /// The client's `PACKETVER` (yyyymmdd), which picks the packet table.
    pub packet_version: u32,
    /// The client family (`p2p.client`, `ClientFamily`: `main`, `re` or `zero`); `None` is
    /// rAthena's default for the date. Checked with `packet_version` when the file is read.
    pub client_family: Option<ClientFamily>,
    /// The operator's routing policy string, parsed by the router; `None` = the defaults.
    pub routing_policy: Option<String>,
    /// Minimums this machine must meet to volunteer as host (`MinCPUCores`, ...).
    pub host_requirements: HostRequirements,
    /// Log level (`logging.level`).
    pub log_level: LogLevel,
    /// Log file (`logging.file`), if any.
    pub log_file: Option<String>,
    /// Zones where P2P is used (`zones.p2p_enabled_zones`).
    pub zones: ZoneFilter,
    /// Present the account id and web auth token of the login reply the client saw
    /// (`<account id>:<token>`) to the coordinator, for its `rathena` authentication mode
    /// (`security.web_auth_token`, `WebAuthToken`). Off by default: presenting a credential is
    /// the operator's choice.
    pub present_web_auth_token: bool,
    /// Settings given in the file that do nothing, in file order, each with the reason.
    pub ignored: Vec<IgnoredSetting>,
}

/// A setting that was read (and validated) but does not act as its name says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IgnoredSetting {
    /// Its key path, as the error messages name keys.
    pub key: String,
    /// Why it does nothing.
    pub reason: &'static str,
}

impl core::fmt::Display for IgnoredSetting {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}: unsupported, ignored: {}", self.key, self.reason)
    }
}

/// Why each setting of the guides that ro-p2p does not act on is ignored.
mod why {
    pub const REST_API_URL: &str =
        "the client talks to the coordinator over the signaling WebSocket only";
    pub const TIMEOUT_SECONDS: &str = "signaling has no per-request timeout; \
        coordinator.connection_timeout_ms (ConnectionTimeout) bounds one connection attempt";
    pub const UPDATE_INTERVAL: &str = "movement goes to peers as the game sends it, not on a timer";
    pub const KEY_ROTATION: &str =
        "the coordinator's key_rotation_interval_s decides when session keys rotate";
    pub const ENCRYPTION_OFF: &str = "peer frames are always sealed (AES-256-GCM)";
    pub const AUTHENTICATION_OFF: &str = "the client presents a token whenever the \
        application gives it one; the coordinator's require_authentication decides";
    pub const CERTIFICATE_VALIDATION_OFF: &str = "wss:// certificates are always validated";
    pub const TLS_13: &str =
        "the client accepts TLS 1.2 and 1.3 (whichever the coordinator offers)";
    pub const CONSOLE_OUTPUT: &str =
        "the DLL logs to its log file only; ro-p2p-peer and ro-p2p proxy log to stderr";
    pub const FALLBACK_OFF: &str = "when P2P fails every packet goes to the map server; \
        there is no other safe route";
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

    /// The seal's tunables from these settings (`compression_threshold`).
    pub fn seal_config(&self) -> crate::seal::SealConfig {
        crate::seal::SealConfig {
            compression_threshold_bytes: usize::try_from(self.compression_threshold_bytes)
                .unwrap_or(usize::MAX),
            ..crate::seal::SealConfig::default()
        }
    }

    /// What to report to the coordinator as this machine's capabilities, given what the
    /// adapter measured: `None` (never elected host) when `prefer_p2p_hosting` is off or the
    /// machine is below this client's own [`Self::host_requirements`]. A figure the adapter
    /// could not measure is 0, which only meets a minimum of 0.
    pub fn volunteer(&self, measured: Capabilities) -> Option<Capabilities> {
        let r = &self.host_requirements;
        let meets = measured.cpu_cores >= r.min_cpu_cores
            && measured.cpu_mhz >= r.min_cpu_mhz
            && measured.memory_mb >= r.min_memory_mb
            && measured.bandwidth_mbps >= r.min_bandwidth_mbps
            && measured.latency_ms <= r.max_latency_ms;
        (self.prefer_p2p_hosting && meets).then_some(measured)
    }
}

/// The `PACKETVER` rAthena builds by default.
pub const DEFAULT_PACKET_VERSION: u32 = 20211103;

impl Default for ClientSettings {
    fn default() -> Self {
        ClientSettings {
            p2p_enabled: true,
            prefer_p2p_hosting: true,
            coordinator_urls: Vec::new(),
            connection_timeout_ms: 5000,
            reconnect_delay_ms: 1000,
            max_retries: 3,
            max_connections: 5,
            max_latency_ms: 100,
            compression_threshold_bytes: 1024,
            packet_version: DEFAULT_PACKET_VERSION,
            client_family: None,
            routing_policy: None,
            host_requirements: HostRequirements::default(),
            log_level: LogLevel::Info,
            log_file: None,
            zones: ZoneFilter::All,
            present_web_auth_token: false,
            ignored: Vec::new(),
        }
    }
}

impl ClientSettings {
    /// Parses `p2p_config.json` (JSON5: `//` comments and trailing commas allowed; a UTF-8
    /// byte order mark is skipped).
    pub fn from_json(text: &str) -> Result<ClientSettings, ConfigError> {
        let text = strip_bom(text);
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
        let mut ignored = Vec::new();

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
        if let Some(url) = c.opt_string("rest_api_url")? {
            check_url(&c.key("rest_api_url"), &url, &["http://", "https://"])?;
            ignore(&mut ignored, c.key("rest_api_url"), why::REST_API_URL);
        }
        if c.has("timeout_seconds") {
            c.uint("timeout_seconds", 30u64, 1..=600)?;
            ignore(&mut ignored, c.key("timeout_seconds"), why::TIMEOUT_SECONDS);
        }
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
        if p.has("update_interval_ms") {
            p.uint("update_interval_ms", 50u64, 1..=60_000)?;
            ignore(&mut ignored, p.key("update_interval_ms"), why::UPDATE_INTERVAL);
        }
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

        if let Some(s) = sec.opt_string("tls_version")?
            && tls_version(&sec.key("tls_version"), &s)? == TlsVersion::Tls13
        {
            ignore(&mut ignored, sec.key("tls_version"), why::TLS_13);
        }
        for (key, reason) in [
            ("enable_encryption", why::ENCRYPTION_OFF),
            ("enable_authentication", why::AUTHENTICATION_OFF),
            ("certificate_validation", why::CERTIFICATE_VALIDATION_OFF),
        ] {
            if !sec.bool(key, true)? {
                ignore(&mut ignored, sec.key(key), reason);
            }
        }
        if sec.has("key_rotation_interval_s") {
            sec.uint("key_rotation_interval_s", 3600u64, 10..=7 * 86_400)?;
            ignore(&mut ignored, sec.key("key_rotation_interval_s"), why::KEY_ROTATION);
        }
        let present_web_auth_token = sec.bool("web_auth_token", d.present_web_auth_token)?;
        sec.finish()?;

        let log_level = match log.opt_string("level")? {
            None => d.log_level,
            Some(s) => LogLevel::parse(&log.key("level"), &s)?,
        };
        if log.bool("console_output", false)? {
            ignore(&mut ignored, log.key("console_output"), why::CONSOLE_OUTPUT);
        }
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
        if !zones.bool("fallback_on_failure", true)? {
            ignore(&mut ignored, zones.key("fallback_on_failure"), why::FALLBACK_OFF);
        }
        zones.finish()?;

        Ok(ClientSettings {
            p2p_enabled,
            prefer_p2p_hosting,
            coordinator_urls,
            connection_timeout_ms,
            reconnect_delay_ms,
            max_retries,
            max_connections,
            max_latency_ms,
            compression_threshold_bytes,
            packet_version,
            client_family,
            routing_policy,
            host_requirements,
            log_level,
            log_file,
            zones: zone_filter,
            present_web_auth_token,
            ignored,
        })
    }

    /// Parses the game client's `Data/config.ini` (only its `[P2P]` section is read; keys match
    /// case-insensitively; other sections belong to the game; a UTF-8 byte order mark is
    /// skipped) and, if given, `Data/resourceinfo.ini` (its `[P2P_HOSTS]` `0=`, `1=`, ... URLs,
    /// in numeric order, follow `CoordinatorURL` as backups; duplicates are dropped). A
    /// `config.ini` without a `[P2P]` section is refused ([`ConfigError::Missing`] on `[P2P]`).
    pub fn from_ini(
        config_ini: &str,
        resourceinfo_ini: Option<&str>,
    ) -> Result<ClientSettings, ConfigError> {
        let mut p = ini_section(config_ini, "P2P")?
            .ok_or_else(|| ConfigError::Missing { key: "[P2P]".to_owned() })?;
        let d = ClientSettings::default();
        let mut ignored = Vec::new();
        let p2p_enabled = p.bool("EnableP2P", d.p2p_enabled)?;
        let prefer_p2p_hosting = p.bool("PreferP2PHosting", d.prefer_p2p_hosting)?;
        if !p.bool("MainServerFallback", true)? {
            ignore(&mut ignored, p.key("MainServerFallback"), why::FALLBACK_OFF);
        }

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
            let hosts =
                ini_section(text, "P2P_HOSTS")?.unwrap_or_else(|| Table::empty("P2P_HOSTS"));
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
        if !p.bool("EnableEncryption", true)? {
            ignore(&mut ignored, p.key("EnableEncryption"), why::ENCRYPTION_OFF);
        }
        if p.has("KeyRotationInterval") {
            p.uint("KeyRotationInterval", 3600u64, 10..=7 * 86_400)?;
            ignore(&mut ignored, p.key("KeyRotationInterval"), why::KEY_ROTATION);
        }
        if p.has("UpdateInterval") {
            p.uint("UpdateInterval", 50u64, 1..=60_000)?;
            ignore(&mut ignored, p.key("UpdateInterval"), why::UPDATE_INTERVAL);
        }
        let present_web_auth_token = p.bool("WebAuthToken", d.present_web_auth_token)?;
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
            coordinator_urls,
            connection_timeout_ms,
            reconnect_delay_ms,
            max_retries,
            max_connections,
            max_latency_ms,
            compression_threshold_bytes,
            packet_version,
            client_family,
            routing_policy,
            host_requirements,
            present_web_auth_token,
            ignored,
            ..d
        })
    }
}

fn ignore(ignored: &mut Vec<IgnoredSetting>, key: String, reason: &'static str) {
    ignored.push(IgnoredSetting { key, reason });
}

/// Windows editors (Notepad) often save UTF-8 with a byte order mark.
fn strip_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

/// The keys of one INI section as a case-insensitive table, `None` when the section is absent;
/// a section given twice is an error.
fn ini_section(text: &str, name: &str) -> Result<Option<Table>, ConfigError> {
    let text = strip_bom(text);
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
    if !seen {
        return Ok(None);
    }
    Table::case_insensitive(name, pairs).map(Some)
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

/// A minimum TLS version (`security.tls_version`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TlsVersion {
    Tls12,
    Tls13,
}
