//! `ro-p2p-coordinator`: the signaling coordinator (see docs/operating.md).
//!
//! A thin shell around [`ro_p2p_tokio::server`]: parse flags, load `config.yaml` (or the
//! embedded default), set up logging, bind (TLS if configured), serve until SIGINT/SIGTERM.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::serve::ListenerExt as _;
use clap::{Parser, ValueEnum};
use ro_p2p_tokio::server::settings::{Effective, Overrides};
use ro_p2p_tokio::server::{self, tls};

/// The ro-p2p signaling coordinator: WebSocket signaling, REST discovery and placement,
/// Prometheus metrics, for rAthena P2P sessions.
///
/// Without --config it serves the embedded default: 127.0.0.1:8001, sessions in memory,
/// authentication OFF (development only; a warning says so). Flags override the file.
#[derive(Debug, Parser)]
#[command(name = "ro-p2p-coordinator", version, about, long_about)]
struct Cli {
    /// config.yaml in the format of the rAthena integration guide (`coordinator:`, `security:`,
    /// `logging:` blocks). `${VAR}` in values is replaced from the environment; a missing
    /// variable or a bad key is an error that names it.
    #[arg(short, long, value_name = "FILE", env = "RO_P2P_CONFIG")]
    config: Option<PathBuf>,

    /// Address to bind (overrides coordinator.host). Default 127.0.0.1.
    #[arg(long, value_name = "ADDR")]
    host: Option<String>,

    /// TCP port to bind (overrides coordinator.port). Default 8001; 0 picks a free port.
    #[arg(short, long, value_name = "PORT")]
    port: Option<u16>,

    /// Allow binding a non-loopback address while authentication is off. Without this flag the
    /// coordinator refuses, so a development setup is never exposed by accident.
    #[arg(long)]
    allow_insecure_bind: bool,

    /// Log line format: `human` (default) or `json` (overrides logging.format).
    #[arg(long, value_enum, value_name = "FORMAT")]
    log_format: Option<LogFormat>,

    /// Log level or filter: error, warn, info, debug, trace, or an EnvFilter directive such as
    /// `info,ro_p2p_tokio=debug` (overrides logging.level).
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,

    /// Append logs to this file instead of stdout (overrides logging.file).
    #[arg(long, value_name = "FILE")]
    log_file: Option<PathBuf>,

    /// PEM certificate chain for TLS (overrides security.ssl_cert); serves wss:// and https://.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,

    /// PEM private key for TLS (overrides security.ssl_key).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,

    /// Seconds to wait for clients to acknowledge the shutdown close frames.
    #[arg(long, value_name = "SECONDS", default_value_t = 5)]
    shutdown_grace_s: u64,

    /// Tokio worker threads (default: one per CPU; 1 runs everything on one thread). With the
    /// coordinator alone on a machine the default is right; sharing a small machine with other
    /// busy processes, fewer workers mean fewer cross-thread wake-ups (the hub that owns the
    /// session state is one task anyway).
    #[arg(long, value_name = "N")]
    worker_threads: Option<usize>,

    /// Load and validate the configuration, print the effective settings, and exit.
    #[arg(long)]
    check_config: bool,

    /// This instance's id in a cluster (with coordinator.redis): 1 to 64 of [A-Za-z0-9_.-],
    /// unique among the instances. Default: the host name and the process id.
    #[arg(long, value_name = "ID", env = "RO_P2P_INSTANCE_ID", value_parser = parse_instance_id)]
    instance_id: Option<ro_p2p_tokio::cluster::InstanceId>,

    /// Zone lease lifetime in a cluster, in ms: the longest a dead instance's zones stay
    /// unavailable before another instance takes them over. Default 10000.
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(100..))]
    lease_ttl_ms: Option<u64>,
}

fn parse_instance_id(s: &str) -> Result<ro_p2p_tokio::cluster::InstanceId, String> {
    ro_p2p_tokio::cluster::InstanceId::new(s).map_err(|e| e.to_string())
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

/// Where log lines go. A log file is reopened on SIGHUP, so logrotate can move it away and
/// signal (`postrotate kill -HUP`); the process keeps running.
struct LogTarget {
    file: Option<(PathBuf, Arc<Mutex<std::fs::File>>)>,
}

impl LogTarget {
    /// Installs the subscriber for `effective`'s level, format and file.
    fn open(effective: &Effective) -> Result<LogTarget, String> {
        use tracing_subscriber::EnvFilter;
        let level = &effective.log_level;
        let filter =
            EnvFilter::try_new(level).map_err(|e| format!("bad log level {level:?}: {e}"))?;
        let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(true);
        let mut target = LogTarget { file: None };
        let result = match (&effective.log_file, effective.log_json) {
            (Some(path), json) => {
                let f = Arc::new(Mutex::new(open_log_file(path)?));
                target.file = Some((path.clone(), Arc::clone(&f)));
                let w = SharedFile(f);
                if json {
                    builder.json().with_writer(w).with_ansi(false).try_init()
                } else {
                    builder.with_writer(w).with_ansi(false).try_init()
                }
            }
            (None, true) => builder.json().try_init(),
            // Colours only on a terminal: stdout redirected to a file or the journal stays plain.
            (None, false) => {
                use std::io::IsTerminal as _;
                builder.with_ansi(std::io::stdout().is_terminal()).try_init()
            }
        };
        result.map_err(|e| e.to_string())?;
        Ok(target)
    }

    /// Reopens the log file (SIGHUP); logs to stdout need nothing.
    fn reopen(&self) {
        let Some((path, file)) = &self.file else {
            tracing::info!("SIGHUP received: logging to stdout, nothing to reopen");
            return;
        };
        match open_log_file(path) {
            Ok(new) => {
                *file.lock().unwrap_or_else(PoisonError::into_inner) = new;
                tracing::info!(file = %path.display(), "SIGHUP received: log file reopened");
            }
            Err(e) => {
                tracing::error!(error = %e, "SIGHUP received: cannot reopen the log file; still writing to the old one")
            }
        }
    }
}

fn open_log_file(path: &Path) -> Result<std::fs::File, String> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("cannot open log file {}: {e}", path.display()))
}

/// The log file behind a lock, swapped on reopen.
struct SharedFile(Arc<Mutex<std::fs::File>>);

/// One log line's hold on the file.
struct FileGuard<'a>(MutexGuard<'a, std::fs::File>);

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for SharedFile {
    type Writer = FileGuard<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        FileGuard(self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl std::io::Write for FileGuard<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

fn is_loopback(host: &str) -> bool {
    match host.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

/// The signals the coordinator handles, installed before it binds (until then SIGHUP's default
/// action would kill it).
struct Signals {
    #[cfg(unix)]
    term: std::io::Result<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    hup: std::io::Result<tokio::signal::unix::Signal>,
}

impl Signals {
    /// Installs the handlers (inside the runtime).
    fn install() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let hup = signal(SignalKind::hangup());
            if let Err(e) = &hup {
                tracing::warn!(error = %e, "cannot handle SIGHUP; the log file will not be reopened");
            }
            Signals { term: signal(SignalKind::terminate()), hup }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    /// Resolves on SIGINT or SIGTERM (graceful stop); SIGHUP reopens the log file meanwhile.
    async fn stop_requested(self, log: Arc<LogTarget>) {
        let ctrl_c = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        #[cfg(unix)]
        let term = async {
            let Signals { mut term, mut hup } = self;
            loop {
                tokio::select! {
                    () = async {
                        match &mut term {
                            Ok(s) => { s.recv().await; }
                            Err(_) => std::future::pending::<()>().await,
                        }
                    } => return,
                    Some(()) = async {
                        match &mut hup {
                            Ok(s) => s.recv().await,
                            Err(_) => std::future::pending().await,
                        }
                    } => log.reopen(),
                }
            }
        };
        #[cfg(not(unix))]
        let term = {
            let _ = (self, log);
            std::future::pending::<()>()
        };
        tokio::select! {
            () = ctrl_c => tracing::info!("SIGINT received: stopping"),
            () = term => tracing::info!("SIGTERM received: stopping"),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let overrides = Overrides {
        host: cli.host.clone(),
        port: cli.port,
        log_level: cli.log_level.clone(),
        log_json: cli.log_format.map(|f| f == LogFormat::Json),
        log_file: cli.log_file.clone(),
        tls_cert: cli.tls_cert.clone(),
        tls_key: cli.tls_key.clone(),
        instance_id: cli.instance_id.clone(),
        lease_ttl_ms: cli.lease_ttl_ms,
    };
    let effective =
        match Effective::load(cli.config.as_deref(), &overrides, |k| std::env::var(k).ok()) {
            Ok(e) => e,
            Err(e) => {
                eprintln!("ro-p2p-coordinator: {e}");
                return ExitCode::from(2);
            }
        };
    if !effective.enabled {
        eprintln!(
            "ro-p2p-coordinator: coordinator.enabled is false in the configuration; not starting"
        );
        return ExitCode::SUCCESS;
    }
    if let Err(e) = effective.check_files() {
        eprintln!("ro-p2p-coordinator: {e}");
        return ExitCode::from(2);
    }
    if cli.check_config {
        println!("{}", effective.summary());
        return ExitCode::SUCCESS;
    }
    let log = match LogTarget::open(&effective) {
        Ok(log) => log,
        Err(e) => {
            eprintln!("ro-p2p-coordinator: {e}");
            return ExitCode::from(2);
        }
    };
    if cli.config.is_none() {
        tracing::warn!(
            "no --config given: serving the embedded default on {}:{} with sessions in memory and \
             authentication OFF (development only)",
            effective.host,
            effective.port
        );
    } else if !effective.server.require_authentication {
        tracing::warn!("authentication is OFF (coordinator.require_authentication: false)");
    }
    if let Some(cluster) = &effective.server.cluster {
        tracing::info!(
            instance = %cluster.instance,
            lease_ttl_ms = cluster.lease_ttl_ms,
            "cluster mode: sharing the world with every instance on the same Redis and key prefix"
        );
    }
    if !effective.server.require_authentication
        && !is_loopback(&effective.host)
        && !cli.allow_insecure_bind
    {
        let message = format!(
            "refusing to bind {} (not loopback) with authentication off; pass \
             --allow-insecure-bind to do it anyway",
            effective.host
        );
        tracing::error!("{message}");
        eprintln!("ro-p2p-coordinator: {message}");
        return ExitCode::from(2);
    }
    let mut builder = match cli.worker_threads {
        // One worker: a current-thread runtime, with no cross-thread wake-ups at all.
        Some(0 | 1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fatal(&format!("cannot start the tokio runtime: {e}")),
    };
    let log = Arc::new(log);
    match runtime.block_on(run(effective, Duration::from_secs(cli.shutdown_grace_s), log)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fatal(&e),
    }
}

/// A fatal error: logged, and on stderr too (the log may be a file nobody watches at start).
fn fatal(message: &str) -> ExitCode {
    tracing::error!(error = %message, "coordinator stopped");
    eprintln!("ro-p2p-coordinator: {message}");
    ExitCode::FAILURE
}

async fn run(effective: Effective, grace: Duration, log: Arc<LogTarget>) -> Result<(), String> {
    let signals = Signals::install();
    let addr = format!("{}:{}", effective.host, effective.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| format!("cannot bind {addr}: {e}"))?;
    let local: SocketAddr = listener.local_addr().map_err(|e| e.to_string())?;
    let listener = listener.tap_io(|tcp| {
        // Signaling is small messages where latency matters.
        let _ = tcp.set_nodelay(true);
    });
    let mut config = effective.server;
    fit_to_open_file_limit(&mut config);
    let tls = match (&effective.tls_cert, &effective.tls_key) {
        (Some(cert), Some(key)) => {
            Some(tls::load_server_config(cert, key).map_err(|e| e.to_string())?)
        }
        _ => None,
    };
    config.tls = tls.is_some();
    let mut seed = [0u8; 32];
    {
        use rand_core::TryRngCore as _;
        rand_core::OsRng.try_fill_bytes(&mut seed).map_err(|e| e.to_string())?;
    }
    let service = server::Service::start(
        config,
        ro_p2p_core::Rng::from_entropy_bytes(seed),
        Arc::new(server::SystemClock),
    )
    .map_err(|e| e.to_string())?;
    let scheme = if tls.is_some() { "https/wss" } else { "http/ws" };
    tracing::info!(%local, scheme, version = env!("CARGO_PKG_VERSION"), "coordinator listening");
    let result = match tls {
        Some(tls) => {
            let stop = signals.stop_requested(log);
            service.serve(tls::TlsListener::new(listener, tls), stop, grace).await
        }
        None => service.serve(listener, signals.stop_requested(log), grace).await,
    };
    result.map_err(|e| e.to_string())?;
    tracing::info!("coordinator stopped");
    Ok(())
}

/// Raises the open-file soft limit to the hard one and, if `max_connections` would still not
/// fit under it, serves fewer (with a warning): past the limit `accept` fails and stalls every
/// new connection, while a refused upgrade (`server-full`) only turns that one away.
fn fit_to_open_file_limit(config: &mut server::ServerConfig) {
    #[cfg(unix)]
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => {
            let fitted = server::connections_within_open_file_limit(config.max_connections, limit);
            if fitted < config.max_connections {
                tracing::warn!(
                    configured = config.max_connections,
                    open_file_limit = limit,
                    serving_at_most = fitted,
                    "coordinator.max_connections does not fit under the open-file limit; raise \
                     `ulimit -n` (LimitNOFILE= under systemd) to serve more"
                );
                config.max_connections = fitted;
            } else {
                tracing::debug!(open_file_limit = limit, "open-file limit");
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot read or raise the open-file limit"),
    }
    #[cfg(not(unix))]
    let _ = config;
}
