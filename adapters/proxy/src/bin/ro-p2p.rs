//! `ro-p2p`: operator and integrator tools.
//!
//! `ro-p2p classify` reads a raw client-to-map-server byte stream (a capture of what the game
//! client sent) and prints, one JSON object per line, how ro-p2p frames, classifies and routes
//! each packet under a given PACKETVER, obfuscation and policy. See docs/packets.md.
//!
//! `ro-p2p check-config` validates a client configuration (`p2p_config.json`, `Data/config.ini`
//! with `Data/resourceinfo.ini`) or the coordinator's `config.yaml` with the errors the runtime
//! would give, and names every setting that is read but ignored.
//!
//! `ro-p2p proxy` runs P2P for game clients that are pointed at it instead of the login server
//! (no DLL, no change to the game's executable). See docs/proxy.md.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use ro_p2p_core::config::ClientSettings;
use ro_p2p_core::packet::{ClientFamily, Obfuscation, PacketVersion};
use ro_p2p_core::route::{DesyncReason, GameStream, Policy, RouteContext, Verdict};
use ro_p2p_proxy::{Proxy, ProxyConfig};
use ro_p2p_webrtc::LinksConfig;
use serde::Serialize;

/// ro-p2p operator tools.
#[derive(Debug, Parser)]
#[command(name = "ro-p2p", version, about = "ro-p2p operator and integrator tools")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Frame, classify and route a raw client-to-map-server byte stream; one JSON line per packet.
    Classify(ClassifyArgs),
    /// Proxy game clients to an rAthena server (login -> char -> map), with P2P for each player.
    Proxy(ProxyArgs),
    /// Validate p2p_config.json, config.ini (+ resourceinfo.ini) or config.yaml as the runtime
    /// reads it; print what it runs on and every ignored setting. Exit 0 when valid, 1 if not.
    CheckConfig(CheckConfigArgs),
}

#[derive(Debug, clap::Args)]
struct CheckConfigArgs {
    /// The file: `*.json` (p2p_config.json), `*.ini` (the game's Data/config.ini) or
    /// `*.yaml`/`*.yml` (the coordinator's config.yaml; `${VAR}` read from the environment).
    file: PathBuf,
    /// The format, when the file name does not tell.
    #[arg(long, value_enum)]
    kind: Option<ConfigKind>,
    /// `resourceinfo.ini` with `[P2P_HOSTS]` backup coordinators (config.ini only); default: a
    /// `resourceinfo.ini` beside the config.ini, as the DLL reads it.
    #[arg(long)]
    resourceinfo: Option<PathBuf>,
}

/// Which configuration a file is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ConfigKind {
    /// The client's p2p_config.json (JSON5).
    Json,
    /// The game's Data/config.ini (`[P2P]` section).
    Ini,
    /// The coordinator's config.yaml.
    Yaml,
}

#[derive(Debug, clap::Args)]
struct ProxyArgs {
    /// Where game clients connect, as they would to the login server.
    #[arg(long, default_value = "127.0.0.1:6900")]
    listen: SocketAddr,
    /// The rAthena login server.
    #[arg(long)]
    login_server: SocketAddr,
    /// The IPv4 address game clients reach the proxy at (written into the servers' replies);
    /// default: the listen address.
    #[arg(long)]
    public_ip: Option<Ipv4Addr>,
    /// The client library's settings: `p2p_config.json` (coordinator URLs, PACKETVER, routing
    /// policy, zones) or the game's `Data/config.ini`.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Coordinator WebSocket URL, overriding the configuration's (repeat for backups).
    #[arg(long = "coordinator")]
    coordinators: Vec<String>,
    /// The game clients' PACKETVER (any rAthena builds, e.g. 20200401 or 20200401-zero),
    /// overriding the configuration's.
    #[arg(long, value_parser = parse_version)]
    packetver: Option<PacketVersion>,
    /// The game clients' family (`main`, `re`, `zero`), overriding the configuration's;
    /// default: rAthena's for the date.
    #[arg(long, value_parser = parse_family)]
    client: Option<ClientFamily>,
    /// Routing policy, overriding the configuration's, e.g. `chat=peers`.
    #[arg(long, value_parser = parse_policy)]
    policy: Option<Policy>,
    /// Bind WebRTC to 127.0.0.1 only (every player on this machine, for tests).
    #[arg(long)]
    loopback: bool,
    /// Present each player's rAthena web auth token to the coordinator (its `rathena`
    /// authentication mode; leave off when the coordinator's authentication is off).
    #[arg(long)]
    web_auth_token: bool,
    /// Log level filter (tracing's syntax, e.g. `info` or `ro_p2p_proxy=debug`).
    #[arg(long, default_value = "info")]
    log: String,
}

#[derive(Debug, clap::Args)]
struct ClassifyArgs {
    /// Client PACKETVER: any rAthena builds (20211103 is its default), optionally with the
    /// family, e.g. `20200401-zero`.
    #[arg(long, default_value = "20211103", value_parser = parse_version)]
    packetver: PacketVersion,
    /// Client family: `main` (Ragexe), `re` (RagexeRE) or `zero`; default: rAthena's for the
    /// date (RagexeRE for 20151105..=20180703 and 20200902..=20211118).
    #[arg(long, value_parser = parse_family)]
    client: Option<ClientFamily>,
    /// Packet-id obfuscation; default: rAthena's for the version (on for 20110817..=20180307).
    #[arg(long, value_enum)]
    obfuscation: Option<OnOff>,
    /// The zone (map) the capture was taken in; needs --p2p-zones.
    #[arg(long, requires = "p2p_zones")]
    zone: Option<String>,
    /// Comma-separated zones where P2P is enabled (`p2p_enabled_zones`); needs --zone.
    #[arg(long, requires = "zone", value_delimiter = ',')]
    p2p_zones: Option<Vec<String>>,
    /// Routing policy, e.g. `movement=mirror,chat=peers,emote=server` (default: all mirror).
    #[arg(long, default_value = "", value_parser = parse_policy)]
    policy: Policy,
    /// Treat the capture as a login- or char-server connection (every packet server-only).
    #[arg(long)]
    login_char: bool,
    /// The capture to read; `-` or nothing for standard input.
    file: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum OnOff {
    On,
    Off,
}

fn parse_version(s: &str) -> Result<PacketVersion, String> {
    s.parse().map_err(|e: ro_p2p_core::packet::UnsupportedPacketVersion| e.to_string())
}

fn parse_family(s: &str) -> Result<ClientFamily, String> {
    s.parse().map_err(|e: ro_p2p_core::packet::UnknownClientFamily| e.to_string())
}

/// The version with `--client` applied on top of `--packetver`.
fn with_family(
    version: PacketVersion,
    client: Option<ClientFamily>,
) -> Result<PacketVersion, String> {
    match client {
        None => Ok(version),
        Some(f) => PacketVersion::new(version.number(), Some(f)).map_err(|e| e.to_string()),
    }
}

fn parse_policy(s: &str) -> Result<Policy, String> {
    s.parse().map_err(|e: ro_p2p_core::route::PolicyError| e.to_string())
}

/// One output line. Field order is the documented one.
#[derive(Serialize)]
struct Line<'a> {
    offset: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    desync: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    incomplete: Option<bool>,
    len: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    handler: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    category: Option<&'a str>,
    route: &'a str,
    reason: String,
}

impl<'a> Line<'a> {
    fn tail(offset: u64, len: u64, desync: Option<DesyncReason>) -> Line<'a> {
        let reason = match desync {
            Some(r) => format!("desync: {r}"),
            None => "incomplete: the capture ends inside this packet".to_owned(),
        };
        let desync = desync.is_some();
        Line {
            offset,
            id: None,
            desync: desync.then_some(true),
            incomplete: (!desync).then_some(true),
            len,
            handler: None,
            category: None,
            route: "server",
            reason,
        }
    }
}

/// Why a packet takes its route: the classifier's reason for keeping it off peers, else the
/// zone or the policy.
fn route_reason(p: &ro_p2p_core::route::PacketVerdict<'_>, ctx: &RouteContext) -> String {
    use ro_p2p_core::packet::ServerOnlyReason;
    use ro_p2p_core::route::Route;
    match p.server_only {
        Some(ServerOnlyReason::Category(c)) => format!("{} (never offloaded)", c.as_str()),
        Some(r) => r.as_str().to_owned(),
        None if !ctx.zone_enabled => "zone without p2p".to_owned(),
        None => {
            let choice = match p.route {
                Route::Server => "server",
                Route::Peers(_) => "peers",
                Route::ServerAndPeers(_) => "mirror",
            };
            format!("policy {}={choice}", p.spec.category().as_str())
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Classify(args) => match classify(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ro-p2p classify: {e}");
                ExitCode::FAILURE
            }
        },
        Command::CheckConfig(args) => match check_config(&args) {
            Ok(report) => {
                print!("{report}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("ro-p2p check-config: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Proxy(args) => match proxy(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ro-p2p proxy: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

/// Checks one configuration file; the report names what the runtime would run on.
fn check_config(args: &CheckConfigArgs) -> Result<String, String> {
    use std::fmt::Write as _;
    let path = &args.file;
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    let kind = match (args.kind, ext.as_deref()) {
        (Some(k), _) => k,
        (None, Some("json" | "json5")) => ConfigKind::Json,
        (None, Some("ini")) => ConfigKind::Ini,
        (None, Some("yaml" | "yml")) => ConfigKind::Yaml,
        (None, _) => {
            return Err(format!(
                "{}: cannot tell the format from the name; pass --kind json, ini or yaml",
                path.display()
            ));
        }
    };
    if args.resourceinfo.is_some() && kind != ConfigKind::Ini {
        return Err("--resourceinfo goes with a config.ini".to_owned());
    }
    let mut out = String::new();
    if kind == ConfigKind::Yaml {
        use ro_p2p_tokio::server::settings::{Effective, Overrides};
        let eff = Effective::load(Some(path), &Overrides::default(), |k| std::env::var(k).ok())
            .map_err(|e| e.to_string())?;
        eff.check_files().map_err(|e| format!("{}: {e}", path.display()))?;
        let _ = writeln!(out, "{}: valid coordinator config.yaml", path.display());
        let _ = writeln!(out, "{}", eff.summary());
        return Ok(out);
    }
    let read = |p: &std::path::Path| {
        std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
    };
    let text = read(path)?;
    let (settings, what) = if kind == ConfigKind::Json {
        let s = ClientSettings::from_json(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        (s, "p2p_config.json".to_owned())
    } else {
        let resourceinfo = match &args.resourceinfo {
            Some(p) => Some(p.clone()),
            None => beside(path, "resourceinfo.ini"),
        };
        let backups = resourceinfo.as_deref().map(read).transpose()?;
        let s = ClientSettings::from_ini(&text, backups.as_deref()).map_err(|e| {
            let file = match (&resourceinfo, e.key()) {
                (Some(r), Some(k)) if k.starts_with("P2P_HOSTS") => r.display().to_string(),
                _ => path.display().to_string(),
            };
            format!("{file}: {e}")
        })?;
        let what = match &resourceinfo {
            Some(r) => format!("config.ini [P2P] with {} [P2P_HOSTS]", r.display()),
            None => "config.ini [P2P] (no resourceinfo.ini beside it)".to_owned(),
        };
        (s, what)
    };
    // What the runtime checks after parsing: the packet table and the routing policy.
    let version = PacketVersion::from_number(settings.packet_version)
        .map_err(|e| format!("{}: packet version: {e}", path.display()))?;
    let policy = match settings.routing_policy.as_deref() {
        None => Policy::default(),
        Some(p) => {
            p.parse::<Policy>().map_err(|e| format!("{}: routing policy: {e}", path.display()))?
        }
    };
    let _ = writeln!(out, "{}: valid {what}", path.display());
    let _ = writeln!(out, "p2p: {}", if settings.p2p_enabled { "on" } else { "off" });
    for (i, url) in settings.coordinator_urls.iter().enumerate() {
        let role = if i == 0 { "primary" } else { "backup" };
        let _ = writeln!(out, "coordinator ({role}): {url}");
    }
    let _ = writeln!(out, "packetver: {version}");
    let _ = writeln!(out, "policy: {policy}");
    let zones = match &settings.zones {
        ro_p2p_core::client::ZoneFilter::All => "all".to_owned(),
        ro_p2p_core::client::ZoneFilter::Only(z) => {
            z.iter().map(|z| z.as_str()).collect::<Vec<_>>().join(", ")
        }
    };
    let _ = writeln!(out, "zones: {zones}");
    let _ = writeln!(
        out,
        "connection: timeout {} ms, reconnect delay {} ms, {} retries per URL, at most {} peer links",
        settings.connection_timeout_ms,
        settings.reconnect_delay_ms,
        settings.max_retries,
        settings.max_connections
    );
    let _ = writeln!(
        out,
        "hosting: {} (minimums {:?})",
        if settings.prefer_p2p_hosting { "volunteer when the machine qualifies" } else { "never" },
        settings.host_requirements
    );
    let _ = writeln!(out, "compression above: {} bytes", settings.compression_threshold_bytes);
    let _ = writeln!(
        out,
        "logging: {} to {}",
        settings.log_level.as_str(),
        settings.log_file.as_deref().unwrap_or("(the DLL's default p2p_dll.log)")
    );
    for ignored in &settings.ignored {
        let _ = writeln!(out, "warning: {ignored}");
    }
    Ok(out)
}

/// A file named `name` (any case) in the directory of `path`.
fn beside(path: &std::path::Path, name: &str) -> Option<PathBuf> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    std::fs::read_dir(dir).ok()?.filter_map(Result::ok).map(|e| e.path()).find(|p| {
        p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.eq_ignore_ascii_case(name))
    })
}

/// The proxy's configuration from its arguments and settings file.
fn proxy_config(args: &ProxyArgs) -> Result<ProxyConfig, String> {
    let mut settings = match &args.config {
        None => ClientSettings::default(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let is_ini = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("ini"));
            let parsed = if is_ini {
                ClientSettings::from_ini(&text, None)
            } else {
                ClientSettings::from_json(&text)
            };
            parsed.map_err(|e| format!("{}: {e}", path.display()))?
        }
    };
    if !args.coordinators.is_empty() {
        settings.coordinator_urls = args.coordinators.clone();
    }
    if let Some(v) = args.packetver {
        settings.packet_version = v.number();
        settings.client_family = Some(v.family());
    }
    if let Some(f) = args.client {
        settings.client_family = Some(f);
    }
    settings.version().map_err(|e| e.to_string())?;
    if let Some(p) = &args.policy {
        settings.routing_policy = Some(p.to_string());
    }
    let links = if args.loopback { LinksConfig::loopback() } else { LinksConfig::default() };
    Ok(ProxyConfig {
        listen: args.listen,
        login_server: args.login_server,
        public_ip: args.public_ip,
        settings,
        links,
        door_wait_ms: ro_p2p_proxy::DOOR_WAIT_MS_DEFAULT,
        present_web_auth_token: args.web_auth_token,
    })
}

fn proxy(args: ProxyArgs) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log)
        .map_err(|e| format!("--log {:?}: {e}", args.log))?;
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(io::stderr).init();
    let config = proxy_config(&args)?;
    for ignored in &config.settings.ignored {
        tracing::warn!("{ignored}");
    }
    let runtime = tokio::runtime::Runtime::new().map_err(|e| format!("runtime: {e}"))?;
    runtime.block_on(async move {
        let proxy = Proxy::start(config).await.map_err(|e| e.to_string())?;
        tracing::info!(
            listen = %proxy.local_addr(),
            login_server = %args.login_server,
            packetver = %proxy.packet_version(),
            "proxy ready: point the game's login address here"
        );
        let _ = tokio::signal::ctrl_c().await;
        let stats = proxy.stats();
        proxy.stop().await;
        println!("{}", serde_json::to_string(&stats).unwrap_or_default());
        Ok(())
    })
}

fn open_input(file: Option<&PathBuf>) -> io::Result<Box<dyn Read>> {
    match file {
        None => Ok(Box::new(io::stdin().lock())),
        Some(p) if p.as_os_str() == "-" => Ok(Box::new(io::stdin().lock())),
        Some(p) => File::open(p)
            .map(|f| Box::new(f) as Box<dyn Read>)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot read {}: {e}", p.display()))),
    }
}

fn classify(args: &ClassifyArgs) -> io::Result<()> {
    let version = with_family(args.packetver, args.client)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut input = open_input(args.file.as_ref())?;
    let mut stream = if args.login_char {
        GameStream::login_char()
    } else {
        match args.obfuscation {
            None => GameStream::with_default_obfuscation(version),
            Some(OnOff::On) => GameStream::new(version, Obfuscation::On),
            Some(OnOff::Off) => GameStream::new(version, Obfuscation::Off),
        }
    };
    let zone_enabled = match (&args.zone, &args.p2p_zones) {
        (Some(zone), Some(zones)) => zones.iter().any(|z| z.trim() == zone),
        _ => true,
    };
    let ctx = RouteContext { zone_enabled, ..RouteContext::ALL_READY };
    let mut out = BufWriter::new(io::stdout().lock());
    let mut desync: Option<(u64, u64, DesyncReason)> = None;
    let mut chunk = vec![0u8; 64 * 1024];
    let mut write_err: Option<io::Error> = None;
    loop {
        let n = match input.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io::Error::new(e.kind(), format!("cannot read input: {e}"))),
        };
        stream.feed(chunk.get(..n).unwrap_or_default(), &args.policy, &ctx, |v| match v {
            Verdict::Packet(p) => {
                let spec = p.spec;
                let line = Line {
                    offset: p.offset,
                    id: Some(format!("0x{:04X}", spec.id())),
                    desync: None,
                    incomplete: None,
                    len: p.len as u64,
                    handler: Some(spec.handler_name()),
                    category: Some(spec.category().as_str()),
                    route: p.route.as_str(),
                    reason: route_reason(&p, &ctx),
                };
                if write_err.is_none() {
                    write_err = write_line(&mut out, &line).err();
                }
            }
            Verdict::Desync { offset, bytes, reason } => {
                desync = Some((offset, bytes.len() as u64, reason));
            }
            Verdict::PassThrough { bytes, .. } => {
                if let Some((_, len, _)) = desync.as_mut() {
                    *len += bytes.len() as u64;
                }
            }
        });
        if let Some(e) = write_err.take() {
            return Err(e);
        }
    }
    if let Some((offset, len, reason)) = desync {
        write_line(&mut out, &Line::tail(offset, len, Some(reason)))?;
    } else if !stream.pending().is_empty() {
        write_line(&mut out, &Line::tail(stream.offset(), stream.pending().len() as u64, None))?;
    }
    out.flush()
}

fn write_line(out: &mut impl Write, line: &Line<'_>) -> io::Result<()> {
    serde_json::to_writer(&mut *out, line)?;
    out.write_all(b"\n")
}
