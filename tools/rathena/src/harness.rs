//! [`Harness`]: a private MariaDB and rAthena's login, char and map servers on free ports of
//! 127.0.0.1, started from the shared source tarball and prebuilt binaries (or built from a
//! source tree), each instance in its own directory so tests can run several at once.
//!
//! Layout: the tarballs are unpacked once per PACKETVER into `<cache>/<ver>/rathena` (atomic
//! rename, so parallel first runs do not clash). Each instance gets `<work_dir>/rathena`: its own
//! copy of `conf/` and a `npc/` of symlinks (plus its own `scripts_custom.conf` and NPC scripts),
//! and symlinks to everything else (the servers read all of it relative to their cwd), a MariaDB
//! datadir under `<work_dir>/db`, and server logs under `<work_dir>/logs`.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Where the rAthena servers come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RathenaSource {
    /// The shared directory with `rathena-*.tar.gz` and `bin-<ver>-*.tar.gz` (see
    /// [`default_shared_dir`]).
    Shared(PathBuf),
    /// A source tree to build with `./configure --enable-packetver=N && make -j2 login char map`
    /// (skipped when the tree's stamp says it was built for N already).
    BuildFrom(PathBuf),
}

/// How to start a [`Harness`].
#[derive(Clone, Debug)]
pub struct HarnessConfig {
    /// PACKETVER of the servers: 20211103 or 20151104 with the shared binaries.
    pub packetver: u32,
    /// Fast mode: only prontera and izlude, no NPC scripts, warps, shops or monsters.
    pub fast: bool,
    /// Extra NPC scripts to load (copied into the instance and appended to
    /// `npc/scripts_custom.conf`).
    pub npc_scripts: Vec<PathBuf>,
    /// The instance's directory (created; must not be shared with another running instance).
    pub work_dir: PathBuf,
    /// Where the servers come from.
    pub source: RathenaSource,
    /// Where unpacked trees are cached, one per PACKETVER.
    pub cache_dir: PathBuf,
    /// How long each server may take to log that it is ready.
    pub ready_timeout: Duration,
    /// Lines appended to `conf/import/battle_conf.txt` (e.g. `"area_size: 14"`).
    pub battle_conf: Vec<String>,
}

impl HarnessConfig {
    /// Fast mode, the shared servers, a fresh work dir under the cache, 180 s to be ready.
    pub fn new(packetver: u32) -> HarnessConfig {
        let cache_dir = default_cache_dir();
        HarnessConfig {
            packetver,
            fast: true,
            npc_scripts: Vec::new(),
            work_dir: unique_dir(&cache_dir.join("runs"), &packetver.to_string()),
            source: RathenaSource::Shared(default_shared_dir()),
            cache_dir,
            ready_timeout: Duration::from_secs(180),
            battle_conf: Vec::new(),
        }
    }
}

/// The workspace root this crate was built in.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("..")
}

/// `$RO_P2P_RATHENA_SHARED`, else `../shared/rathena` next to the workspace.
pub fn default_shared_dir() -> PathBuf {
    match std::env::var_os("RO_P2P_RATHENA_SHARED") {
        Some(dir) => PathBuf::from(dir),
        None => workspace_root().join("..").join("shared").join("rathena"),
    }
}

/// `$RO_P2P_RATHENA_CACHE`, else `target/rathena` of the workspace (or `$CARGO_TARGET_DIR`).
pub fn default_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("RO_P2P_RATHENA_CACHE") {
        return PathBuf::from(dir);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    target.join("rathena")
}

/// A directory name no other instance of this or another process uses.
fn unique_dir(parent: &Path, prefix: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    parent.join(format!(
        "{prefix}-{}-{}-{nanos:08x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// One of the four processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Server {
    /// mariadbd.
    Database,
    /// login-server.
    Login,
    /// char-server.
    Char,
    /// map-server.
    Map,
}

impl Server {
    /// The executable's (and log's) name.
    pub fn name(self) -> &'static str {
        match self {
            Server::Database => "mariadbd",
            Server::Login => "login-server",
            Server::Char => "char-server",
            Server::Map => "map-server",
        }
    }

    /// The line it logs when it is ready (the database is probed instead).
    fn ready_line(self) -> Option<&'static str> {
        match self {
            Server::Database => None,
            Server::Login => Some("The login-server is ready"),
            Server::Char => Some("The char-server is ready"),
            Server::Map => Some("Map Server is now online"),
        }
    }
}

impl fmt::Display for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why the harness could not start or a server stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HarnessError {
    /// Something the harness needs is not installed or not there (tests skip on this outside
    /// CI).
    #[error("{what} not found: {hint}")]
    Unavailable {
        /// What is missing.
        what: String,
        /// How to get it.
        hint: String,
    },
    /// No binaries exist for this PACKETVER.
    #[error("no rAthena servers for PACKETVER {packetver} in {dir}")]
    UnsupportedPacketver {
        /// The PACKETVER asked for.
        packetver: u32,
        /// Where they were looked for.
        dir: PathBuf,
    },
    /// A file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: io::Error,
    },
    /// A helper command (tar, mariadb-install-db, make, ...) failed.
    #[error("{command} failed ({status}):\n{output_tail}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// The end of its output.
        output_tail: String,
    },
    /// A server did not log its ready line in time.
    #[error("{name} not ready after {waited_s:.1} s; log tail:\n{log_tail}")]
    NotReady {
        /// Which server.
        name: Server,
        /// How long it was given.
        waited_s: f64,
        /// The end of its log.
        log_tail: String,
    },
    /// A server process exited.
    #[error("{name} died ({status}); log tail:\n{log_tail}")]
    ServerDied {
        /// Which server.
        name: Server,
        /// Its exit status.
        status: String,
        /// The end of its log.
        log_tail: String,
    },
}

impl HarnessError {
    /// Whether the environment lacks rAthena or MariaDB (rather than something breaking).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, HarnessError::Unavailable { .. } | HarnessError::UnsupportedPacketver { .. })
    }
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> HarnessError {
    let context = context.into();
    move |source| HarnessError::Io { context, source }
}

/// The ports of one instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ports {
    /// MariaDB.
    pub db: u16,
    /// Login server.
    pub login: u16,
    /// Char server.
    pub char: u16,
    /// Map server.
    pub map: u16,
}

/// What `ro-p2p-rathena start` leaves in `<dir>/harness.json` for `stop` and `status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HarnessState {
    /// PACKETVER.
    pub packetver: u32,
    /// Ports.
    pub ports: Ports,
    /// Process ids by server.
    pub pids: BTreeMap<Server, u32>,
    /// Log files by server.
    pub logs: BTreeMap<Server, PathBuf>,
    /// `mysql://ragnarok:ragnarok@127.0.0.1:PORT/ragnarok`.
    pub db_url: String,
}

struct Proc {
    server: Server,
    child: Child,
    log: PathBuf,
}

/// A running rAthena: MariaDB, login, char and map servers. Stopped by [`Harness::stop`] or on
/// drop.
pub struct Harness {
    packetver: u32,
    work_dir: PathBuf,
    tree: PathBuf,
    my_cnf: PathBuf,
    ports: Ports,
    procs: Vec<Proc>,
    logs: BTreeMap<Server, PathBuf>,
    start_duration: Duration,
}

impl fmt::Debug for Harness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Harness")
            .field("packetver", &self.packetver)
            .field("work_dir", &self.work_dir)
            .field("ports", &self.ports)
            .finish_non_exhaustive()
    }
}

const MARIADB_HINT: &str = "apt-get install -y mariadb-server mariadb-client";

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

fn require(program: &str, hint: &str) -> Result<PathBuf, HarnessError> {
    which(program)
        .ok_or_else(|| HarnessError::Unavailable { what: program.to_string(), hint: hint.into() })
}

/// Runs a helper command to completion (stdin empty); its output is appended to `log` and its
/// tail goes into the error.
fn run(cmd: &mut Command, log: &Path) -> Result<(), HarnessError> {
    run_with_input(cmd, log, Stdio::null())
}

fn run_with_input(cmd: &mut Command, log: &Path, input: Stdio) -> Result<(), HarnessError> {
    let out = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(io_err(format!("open {}", log.display())))?;
    let err = out.try_clone().map_err(io_err("dup log"))?;
    let line = format!("{cmd:?}");
    let status =
        cmd.stdin(input).stdout(out).stderr(err).status().map_err(io_err(format!("run {line}")))?;
    if status.success() {
        return Ok(());
    }
    Err(HarnessError::Command {
        command: line,
        status: status.to_string(),
        output_tail: tail(log, 30),
    })
}

/// The last `lines` lines of a file (empty if unreadable).
pub fn tail(path: &Path, lines: usize) -> String {
    let Ok(mut f) = fs::File::open(path) else { return String::new() };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Four distinct free ports.
fn free_ports() -> Result<Ports, HarnessError> {
    // Hold all four listeners at once so the kernel hands out four different ports.
    let listeners: Vec<TcpListener> = (0..4)
        .map(|_| TcpListener::bind("127.0.0.1:0").map_err(io_err("bind a free port")))
        .collect::<Result<_, _>>()?;
    let ports: Vec<u16> = listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()).map_err(io_err("local_addr")))
        .collect::<Result<_, _>>()?;
    match ports[..] {
        [db, login, char, map] => Ok(Ports { db, login, char, map }),
        _ => Err(io_err("free ports")(io::Error::other("expected four ports"))),
    }
}

/// The server tree for `config.packetver`, ready to start: unpacked from the shared binaries,
/// or built from the shared source when there are none (see [`build_cached`]), cached under `config.cache_dir` by commit and PACKETVER. Another
/// process preparing the same tree (a build started in the background) is waited for, not
/// repeated. `ro-p2p-rathena build` calls it.
pub fn prepare(config: &HarnessConfig) -> Result<PathBuf, HarnessError> {
    prepared_tree(config)
}

/// The unpacked tree for `packetver` (unpacked now if not cached yet).
fn prepared_tree(config: &HarnessConfig) -> Result<PathBuf, HarnessError> {
    match &config.source {
        RathenaSource::Shared(shared) => unpack_shared(shared, config.packetver, &config.cache_dir),
        RathenaSource::BuildFrom(src) => build_from(src, config.packetver, &config.work_dir),
    }
}

fn find_one(dir: &Path, prefix: &str, suffix: &str) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix) && n.ends_with(suffix))
        })
        .collect();
    found.sort();
    found.pop()
}

fn unpack_shared(shared: &Path, packetver: u32, cache: &Path) -> Result<PathBuf, HarnessError> {
    let Some(source) = find_one(shared, "rathena-", ".tar.gz") else {
        return Err(HarnessError::Unavailable {
            what: format!("rAthena source tarball in {}", shared.display()),
            hint: "put the shared rAthena next to the workspace (../shared/rathena) or set \
                   RO_P2P_RATHENA_SHARED"
                .into(),
        });
    };
    let stem = source.file_name().and_then(|n| n.to_str()).unwrap_or("rathena");
    let stem = stem.trim_end_matches(".tar.gz");
    let done = cache.join(format!("{stem}-{packetver}"));
    let tree = done.join("rathena");
    if tree.join("map-server").is_file() {
        return Ok(tree);
    }
    // One process prepares a tree at a time; the others wait here and then find it done. The
    // lock is the kernel's (flock): it goes with the process that holds it, even on a crash.
    fs::create_dir_all(cache).map_err(io_err(format!("create {}", cache.display())))?;
    let lock_path = cache.join(format!(".{stem}-{packetver}.lock"));
    let lock =
        fs::File::create(&lock_path).map_err(io_err(format!("create {}", lock_path.display())))?;
    lock.lock().map_err(io_err(format!("lock {}", lock_path.display())))?;
    if tree.join("map-server").is_file() {
        return Ok(tree);
    }
    let Some(bins) = find_one(shared, &format!("bin-{packetver}-"), ".tar.gz") else {
        // No prebuilt servers for this PACKETVER: build them from the shared source once,
        // cached like the unpacked ones (by commit and PACKETVER).
        return build_cached(&source, packetver, cache, &done);
    };
    require("tar", "apt-get install -y tar")?;
    fs::create_dir_all(cache).map_err(io_err(format!("create {}", cache.display())))?;
    let tmp = unique_dir(cache, &format!(".unpack-{packetver}"));
    fs::create_dir_all(&tmp).map_err(io_err(format!("create {}", tmp.display())))?;
    let log = tmp.join("tar.log");
    for tarball in [&source, &bins] {
        run(Command::new("tar").arg("xzf").arg(tarball).arg("-C").arg(&tmp), &log)?;
    }
    let bin_dir = tmp.join(format!("bin-{packetver}"));
    for server in [Server::Login, Server::Char, Server::Map] {
        let from = bin_dir.join(server.name());
        let to = tmp.join("rathena").join(server.name());
        fs::rename(&from, &to).map_err(io_err(format!("move {}", from.display())))?;
    }
    let import = tmp.join("rathena/conf/import");
    if !import.exists() {
        copy_dir(&tmp.join("rathena/conf/import-tmpl"), &import)?;
    }
    match fs::rename(&tmp, &done) {
        Ok(()) => {}
        // Another process unpacked it first: use theirs.
        Err(_) if tree.join("map-server").is_file() => {
            let _ = fs::remove_dir_all(&tmp);
        }
        Err(e) => return Err(io_err(format!("rename to {}", done.display()))(e)),
    }
    Ok(tree)
}

/// Unpacks `source` into a temporary directory of `cache`, builds login, char and map at
/// `packetver` there (`./configure --enable-packetver=N && make -j2 login char map`, at
/// [`build_flags`]; the log is `<cache>/build-<ver>.log`) and renames it to `done`.
fn build_cached(
    source: &Path,
    packetver: u32,
    cache: &Path,
    done: &Path,
) -> Result<PathBuf, HarnessError> {
    for tool in ["tar", "g++", "make"] {
        require(tool, "apt-get install -y tar g++ make libmariadb-dev libpcre3-dev zlib1g-dev")?;
    }
    fs::create_dir_all(cache).map_err(io_err(format!("create {}", cache.display())))?;
    let tmp = unique_dir(cache, &format!(".build-{packetver}"));
    fs::create_dir_all(&tmp).map_err(io_err(format!("create {}", tmp.display())))?;
    let log = cache.join(format!("build-{packetver}.log"));
    run(Command::new("tar").arg("xzf").arg(source).arg("-C").arg(&tmp), &log)?;
    build_from(&tmp.join("rathena"), packetver, &tmp)?;
    let tree = done.join("rathena");
    match fs::rename(&tmp, done) {
        Ok(()) => {}
        // Another process built it first: use theirs.
        Err(_) if tree.join("map-server").is_file() => {
            let _ = fs::remove_dir_all(&tmp);
        }
        Err(e) => return Err(io_err(format!("rename to {}", done.display()))(e)),
    }
    Ok(tree)
}

/// The compiler flags of a build from source: `$RO_P2P_RATHENA_CFLAGS`, else `-O0`. Tests do
/// not need rAthena's speed, and without optimisation the build takes about 5 CPU-minutes
/// instead of about 34 (measured on this 2-core machine: 260 s user at `-O0`), which is what
/// lets CI build a PACKETVER that has no prebuilt servers.
fn build_flags() -> String {
    std::env::var("RO_P2P_RATHENA_CFLAGS").unwrap_or_else(|_| "-O0".to_owned())
}

fn build_from(src: &Path, packetver: u32, work_dir: &Path) -> Result<PathBuf, HarnessError> {
    if !src.join("configure").is_file() {
        return Err(HarnessError::Unavailable {
            what: format!("an rAthena source tree at {}", src.display()),
            hint: "give the root of an rAthena checkout (with ./configure)".into(),
        });
    }
    let stamp = src.join(".ro-p2p-packetver");
    let built = fs::read_to_string(&stamp).ok().is_some_and(|s| s.trim() == packetver.to_string());
    if !(built && src.join("map-server").is_file()) {
        fs::create_dir_all(work_dir).map_err(io_err(format!("create {}", work_dir.display())))?;
        let log = work_dir.join("build.log");
        let flags = build_flags();
        run(
            Command::new("./configure")
                .arg(format!("--enable-packetver={packetver}"))
                .env("CFLAGS", &flags)
                .env("CXXFLAGS", &flags)
                .current_dir(src),
            &log,
        )?;
        run(Command::new("make").args(["-j2", "login", "char", "map"]).current_dir(src), &log)?;
        fs::write(&stamp, packetver.to_string()).map_err(io_err("write build stamp"))?;
    }
    let import = src.join("conf/import");
    if !import.exists() {
        copy_dir(&src.join("conf/import-tmpl"), &import)?;
    }
    Ok(src.to_path_buf())
}

fn copy_dir(from: &Path, to: &Path) -> Result<(), HarnessError> {
    fs::create_dir_all(to).map_err(io_err(format!("create {}", to.display())))?;
    for entry in fs::read_dir(from).map_err(io_err(format!("read {}", from.display())))? {
        let entry = entry.map_err(io_err("read_dir"))?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let ty = entry.file_type().map_err(io_err("file_type"))?;
        if ty.is_dir() {
            copy_dir(&src, &dst)?;
        } else {
            fs::copy(&src, &dst).map_err(io_err(format!("copy {}", src.display())))?;
        }
    }
    Ok(())
}

fn symlink(from: &Path, to: &Path) -> Result<(), HarnessError> {
    std::os::unix::fs::symlink(from, to).map_err(io_err(format!("symlink {}", to.display())))
}

/// The instance's own tree: copies of what it writes or we edit, symlinks to the rest.
fn instance_tree(base: &Path, tree: &Path) -> Result<(), HarnessError> {
    let base = base.canonicalize().map_err(io_err(format!("resolve {}", base.display())))?;
    fs::create_dir_all(tree).map_err(io_err(format!("create {}", tree.display())))?;
    for entry in fs::read_dir(&base).map_err(io_err(format!("read {}", base.display())))? {
        let entry = entry.map_err(io_err("read_dir"))?;
        let name = entry.file_name();
        let (src, dst) = (entry.path(), tree.join(&name));
        match name.to_str() {
            Some("conf" | "log" | "save") => copy_dir(&src, &dst)?,
            Some("npc") => {
                fs::create_dir_all(&dst).map_err(io_err("create npc"))?;
                for e in fs::read_dir(&src).map_err(io_err("read npc"))? {
                    let e = e.map_err(io_err("read_dir"))?;
                    if e.file_name() == "scripts_custom.conf" {
                        fs::copy(e.path(), dst.join(e.file_name()))
                            .map_err(io_err("copy npc conf"))?;
                    } else {
                        symlink(&e.path(), &dst.join(e.file_name()))?;
                    }
                }
            }
            _ => symlink(&src, &dst)?,
        }
    }
    if !tree.join("log").exists() {
        fs::create_dir_all(tree.join("log")).map_err(io_err("create log"))?;
    }
    Ok(())
}

fn append(path: &Path, text: &str) -> Result<(), HarnessError> {
    use std::io::Write;
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io_err(format!("open {}", path.display())))?;
    f.write_all(text.as_bytes()).map_err(io_err(format!("write {}", path.display())))
}

fn write(path: &Path, text: &str) -> Result<(), HarnessError> {
    fs::write(path, text).map_err(io_err(format!("write {}", path.display())))
}

/// `conf/import/*` for 127.0.0.1, the instance's ports and database, auto-registration, no PIN
/// codes, everyone starting in prontera.
fn write_conf(tree: &Path, config: &HarnessConfig, ports: Ports) -> Result<(), HarnessError> {
    let import = tree.join("conf/import");
    let Ports { db, login, char, map } = ports;
    write(
        &import.join("login_conf.txt"),
        &format!(
            "// written by ro-p2p-rathena\nbind_ip: 127.0.0.1\nlogin_port: {login}\n\
             new_account: yes\nallowed_regs: 100000\ntime_allowed: 1\n\
             ipban_enable: no\n"
        ),
    )?;
    write(
        &import.join("char_conf.txt"),
        &format!(
            "// written by ro-p2p-rathena\nbind_ip: 127.0.0.1\nlogin_ip: 127.0.0.1\n\
             char_ip: 127.0.0.1\nlogin_port: {login}\nchar_port: {char}\npincode_enabled: no\n\
             start_point: prontera,156,191\nstart_point_pre: prontera,156,191\n\
             start_point_doram: prontera,156,191\n"
        ),
    )?;
    let mut map_conf = format!(
        "// written by ro-p2p-rathena\nbind_ip: 127.0.0.1\nchar_ip: 127.0.0.1\nmap_ip: 127.0.0.1\n\
         char_port: {char}\nmap_port: {map}\n"
    );
    if config.fast {
        map_conf.push_str(
            "// fast mode: prontera and izlude only\ndelmap: all\nmap: prontera\nmap: izlude\n",
        );
    }
    write(&import.join("map_conf.txt"), &map_conf)?;
    // rAthena refuses a 6th connection from one IP within 3 s as a DDoS (packet_athena.conf);
    // every test client, and every player behind `ro-p2p proxy`, comes from 127.0.0.1. An
    // allowed IP is accepted even when flagged (docs/proxy.md tells operators the same).
    write(
        &import.join("packet_conf.txt"),
        "// written by ro-p2p-rathena\norder: deny,allow\nallow: 127.0.0.1\n",
    )?;
    let mut inter = String::from("// written by ro-p2p-rathena\n");
    for key in ["login_server", "char_server", "map_server", "web_server"] {
        inter.push_str(&format!("{key}_ip: 127.0.0.1\n{key}_port: {db}\n"));
    }
    inter.push_str(&format!(
        "ipban_db_ip: 127.0.0.1\nipban_db_port: {db}\nlog_db_ip: 127.0.0.1\nlog_db_port: {db}\n"
    ));
    write(&import.join("inter_conf.txt"), &inter)?;
    let mut battle = String::from(
        "// written by ro-p2p-rathena\n// fresh novices (NV_BASIC 0) may emote\nbasic_skill_check: no\n",
    );
    for line in &config.battle_conf {
        battle.push_str(line);
        battle.push('\n');
    }
    write(&import.join("battle_conf.txt"), &battle)?;
    write(&import.join("web_conf.txt"), "bind_ip: 127.0.0.1\n")?;

    let custom = tree.join("npc/scripts_custom.conf");
    if config.fast {
        append(
            &custom,
            "\n// fast mode: no NPC scripts, warps, shops or mob spawns\ndelnpc: all\n",
        )?;
    }
    if !config.npc_scripts.is_empty() {
        let dir = tree.join("npc/ro-p2p");
        fs::create_dir_all(&dir).map_err(io_err("create npc/ro-p2p"))?;
        for (i, script) in config.npc_scripts.iter().enumerate() {
            let name = format!(
                "{i}-{}",
                script.file_name().and_then(|n| n.to_str()).unwrap_or("script.txt")
            );
            fs::copy(script, dir.join(&name))
                .map_err(io_err(format!("copy {}", script.display())))?;
            append(&custom, &format!("npc: npc/ro-p2p/{name}\n"))?;
        }
    }
    Ok(())
}

/// A short socket path (`sun_path` holds 108 bytes).
fn socket_path(run_dir: &Path) -> PathBuf {
    let p = run_dir.join("mysqld.sock");
    if p.as_os_str().len() < 100 {
        return p;
    }
    unique_dir(&std::env::temp_dir(), "ro-p2p-mysqld").with_extension("sock")
}

impl Harness {
    /// Unpacks (once), configures and starts MariaDB and the three servers, and waits until
    /// each is ready. Blocking; takes about 10 s in fast mode (map server ~6 s, MariaDB ~3 s).
    pub fn start(config: HarnessConfig) -> Result<Harness, HarnessError> {
        let t0 = Instant::now();
        let mariadbd = require("mariadbd", MARIADB_HINT)?;
        let install_db = require("mariadb-install-db", MARIADB_HINT)?;
        let client = require("mariadb", MARIADB_HINT)?;
        let base = prepared_tree(&config)?;
        let work_dir = config.work_dir.clone();
        let tree = work_dir.join("rathena");
        let logs_dir = work_dir.join("logs");
        let db_dir = work_dir.join("db");
        if tree.exists() {
            return Err(HarnessError::Io {
                context: format!("work dir {} is in use", work_dir.display()),
                source: io::Error::from(io::ErrorKind::AlreadyExists),
            });
        }
        fs::create_dir_all(&logs_dir).map_err(io_err(format!("create {}", logs_dir.display())))?;
        instance_tree(&base, &tree)?;
        let ports = free_ports()?;
        write_conf(&tree, &config, ports)?;

        let mut h = Harness {
            packetver: config.packetver,
            work_dir: work_dir.clone(),
            tree: tree.clone(),
            my_cnf: db_dir.join("my.cnf"),
            ports,
            procs: Vec::new(),
            logs: BTreeMap::new(),
            start_duration: Duration::ZERO,
        };
        h.start_database(&mariadbd, &install_db, &client, &db_dir, &base)?;
        for server in [Server::Login, Server::Char, Server::Map] {
            h.start_server(server, config.ready_timeout)?;
        }
        h.start_duration = t0.elapsed();
        tracing::info!(
            packetver = h.packetver,
            ?ports,
            start_s = h.start_duration.as_secs_f64(),
            "rAthena ready"
        );
        Ok(h)
    }

    fn start_database(
        &mut self,
        mariadbd: &Path,
        install_db: &Path,
        client: &Path,
        db_dir: &Path,
        base: &Path,
    ) -> Result<(), HarnessError> {
        let data = db_dir.join("data");
        let run_dir = db_dir.join("run");
        fs::create_dir_all(&data).map_err(io_err("create db/data"))?;
        fs::create_dir_all(&run_dir).map_err(io_err("create db/run"))?;
        let sock = socket_path(&run_dir);
        let root = std::process::Command::new("id")
            .arg("-u")
            .output()
            .ok()
            .is_some_and(|o| o.stdout.starts_with(b"0\n"));
        write(
            &self.my_cnf,
            &format!(
                "[mysqld]\ndatadir={}\ntmpdir={}\nsocket={}\npid-file={}\nport={}\n\
                 bind-address=127.0.0.1\n{}skip-name-resolve\ninnodb_buffer_pool_size=64M\n\
                 innodb_log_file_size=16M\n\
                 performance_schema=OFF\ncharacter-set-server=utf8mb4\n\
                 collation-server=utf8mb4_general_ci\nlog-error={}\n[client]\nsocket={}\n",
                data.display(),
                run_dir.display(),
                sock.display(),
                run_dir.join("mysqld.pid").display(),
                self.ports.db,
                if root { "user=root\n" } else { "" },
                self.work_dir.join("logs/mysqld.err").display(),
                sock.display(),
            ),
        )?;
        run(
            Command::new(install_db)
                .arg(format!("--defaults-file={}", self.my_cnf.display()))
                .args(["--auth-root-authentication-method=socket", "--skip-test-db"]),
            &self.work_dir.join("logs/install-db.log"),
        )?;
        let log = self.work_dir.join("logs/mysqld.err");
        let out = self.work_dir.join("logs/mysqld.out");
        let child = Command::new(mariadbd)
            .arg(format!("--defaults-file={}", self.my_cnf.display()))
            .stdin(Stdio::null())
            .stdout(fs::File::create(&out).map_err(io_err("create mysqld.out"))?)
            .stderr(
                fs::File::create(self.work_dir.join("logs/mysqld.stderr"))
                    .map_err(io_err("create mysqld.stderr"))?,
            )
            .spawn()
            .map_err(io_err("spawn mariadbd"))?;
        self.procs.push(Proc { server: Server::Database, child, log: log.clone() });
        self.logs.insert(Server::Database, log);
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", self.ports.db)).is_err() {
            self.check_alive()?;
            if Instant::now() > deadline {
                return Err(HarnessError::NotReady {
                    name: Server::Database,
                    waited_s: 60.0,
                    log_tail: tail(&self.work_dir.join("logs/mysqld.err"), 30),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let user = if root {
            "root".to_string()
        } else {
            std::env::var("USER").unwrap_or_else(|_| "root".into())
        };
        let sql = "CREATE DATABASE ragnarok;\
            CREATE USER 'ragnarok'@'127.0.0.1' IDENTIFIED BY 'ragnarok';\
            CREATE USER 'ragnarok'@'localhost' IDENTIFIED BY 'ragnarok';\
            GRANT ALL ON ragnarok.* TO 'ragnarok'@'127.0.0.1';\
            GRANT ALL ON ragnarok.* TO 'ragnarok'@'localhost'; FLUSH PRIVILEGES;";
        let setup_log = self.work_dir.join("logs/schema.log");
        run(
            Command::new(client)
                .arg(format!("--defaults-file={}", self.my_cnf.display()))
                .arg(format!("-u{user}"))
                .args(["-e", sql]),
            &setup_log,
        )?;
        for file in ["main.sql", "logs.sql", "web.sql", "roulette_default_data.sql"] {
            let input = fs::File::open(base.join("sql-files").join(file))
                .map_err(io_err(format!("open sql-files/{file}")))?;
            run_with_input(
                Command::new(client)
                    .arg(format!("--defaults-file={}", self.my_cnf.display()))
                    .arg(format!("-u{user}"))
                    .arg("ragnarok"),
                &setup_log,
                Stdio::from(input),
            )?;
        }
        Ok(())
    }

    fn start_server(&mut self, server: Server, timeout: Duration) -> Result<(), HarnessError> {
        let log = self.work_dir.join("logs").join(format!("{}.log", server.name()));
        let out = fs::File::create(&log).map_err(io_err(format!("create {}", log.display())))?;
        let err = out.try_clone().map_err(io_err("dup log"))?;
        let child = Command::new(self.tree.join(server.name()))
            .current_dir(&self.tree)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(io_err(format!("spawn {server}")))?;
        self.procs.push(Proc { server, child, log: log.clone() });
        self.logs.insert(server, log.clone());
        let Some(line) = server.ready_line() else { return Ok(()) };
        let started = Instant::now();
        loop {
            if fs::read(&log).is_ok_and(|b| contains(&b, line.as_bytes())) {
                return Ok(());
            }
            self.check_alive()?;
            if started.elapsed() > timeout {
                return Err(HarnessError::NotReady {
                    name: server,
                    waited_s: started.elapsed().as_secs_f64(),
                    log_tail: tail(&log, 30),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The login server's address (what a client or proxy connects to).
    pub fn login_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports.login))
    }

    /// The char server's address.
    pub fn char_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports.char))
    }

    /// The map server's address.
    pub fn map_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports.map))
    }

    /// All ports.
    pub fn ports(&self) -> Ports {
        self.ports
    }

    /// The PACKETVER the servers were built for.
    pub fn packetver(&self) -> u32 {
        self.packetver
    }

    /// `mysql://ragnarok:ragnarok@127.0.0.1:PORT/ragnarok`.
    pub fn db_url(&self) -> String {
        format!("mysql://ragnarok:ragnarok@127.0.0.1:{}/ragnarok", self.ports.db)
    }

    /// How long [`Harness::start`] took.
    pub fn start_duration(&self) -> Duration {
        self.start_duration
    }

    /// The instance's directory.
    pub fn work_dir(&self) -> &Path {
        &self.work_dir
    }

    /// The log file of `server` (for MariaDB: its error log).
    pub fn log_path(&self, server: Server) -> Option<&Path> {
        self.logs.get(&server).map(PathBuf::as_path)
    }

    /// The end of `server`'s log.
    pub fn log_tail(&self, server: Server, lines: usize) -> String {
        self.log_path(server).map(|p| tail(p, lines)).unwrap_or_default()
    }

    /// Whether `server`'s log contains `needle`.
    pub fn log_contains(&self, server: Server, needle: &str) -> bool {
        self.log_path(server)
            .and_then(|p| fs::read(p).ok())
            .is_some_and(|b| contains(&b, needle.as_bytes()))
    }

    /// The lines of `server`'s log that contain `needle`.
    pub fn log_lines(&self, server: Server, needle: &str) -> Vec<String> {
        let Some(bytes) = self.log_path(server).and_then(|p| fs::read(p).ok()) else {
            return Vec::new();
        };
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter(|l| l.contains(needle))
            .map(String::from)
            .collect()
    }

    /// `Err(ServerDied)` for the first process that exited.
    pub fn check_alive(&mut self) -> Result<(), HarnessError> {
        for p in &mut self.procs {
            if let Ok(Some(status)) = p.child.try_wait() {
                return Err(HarnessError::ServerDied {
                    name: p.server,
                    status: describe(status),
                    log_tail: tail(&p.log, 40),
                });
            }
        }
        Ok(())
    }

    /// Runs SQL on the `ragnarok` database as root (through the socket) and returns its
    /// tab-separated output without headers.
    pub fn sql(&self, query: &str) -> Result<String, HarnessError> {
        let client = require("mariadb", MARIADB_HINT)?;
        let out = Command::new(&client)
            .arg(format!("--defaults-file={}", self.my_cnf.display()))
            .args(["-uroot", "-N", "-B", "ragnarok", "-e", query])
            .stdin(Stdio::null())
            .output()
            .map_err(io_err("run mariadb"))?;
        if !out.status.success() {
            return Err(HarnessError::Command {
                command: format!("mariadb -e {query:?}"),
                status: out.status.to_string(),
                output_tail: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Creates an account directly in the database (e.g. a GM with `group_id` 99 for `@`
    /// commands a player may not use) and returns its account id. The password is plain text
    /// (rAthena's default `use_MD5_passwords: no`).
    pub fn create_account(
        &self,
        user: &str,
        password: &str,
        sex: char,
        group_id: u32,
    ) -> Result<u32, HarnessError> {
        let esc = |s: &str| s.replace('\\', "\\\\").replace('\'', "\\'");
        let out = self.sql(&format!(
            "INSERT INTO login (userid, user_pass, sex, email, group_id) VALUES ('{}', '{}', '{}', 'a@a.com', {group_id}); SELECT LAST_INSERT_ID();",
            esc(user),
            esc(password),
            sex
        ))?;
        out.trim().parse().map_err(|_| HarnessError::Command {
            command: "INSERT INTO login".into(),
            status: "unexpected output".into(),
            output_tail: out,
        })
    }

    /// Stops the servers (map, char, login, then MariaDB) by PID: SIGTERM, then SIGKILL after
    /// 10 s. Returns the first server that had died before it was asked to stop, if any.
    pub fn stop(&mut self) -> Result<(), HarnessError> {
        let died = self.check_alive().err();
        let mut procs = std::mem::take(&mut self.procs);
        procs.sort_by_key(|p| std::cmp::Reverse(p.server));
        let (servers, db): (Vec<_>, Vec<_>) =
            procs.into_iter().partition(|p| p.server != Server::Database);
        for group in [servers, db] {
            let mut group = group;
            for p in &group {
                signal(p.child.id(), "TERM");
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            for p in &mut group {
                loop {
                    match p.child.try_wait() {
                        Ok(Some(_)) | Err(_) => break,
                        Ok(None) if Instant::now() > deadline => {
                            let _ = p.child.kill();
                            let _ = p.child.wait();
                            break;
                        }
                        Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            }
        }
        // The datadir is the bulk of an instance; logs stay for post-mortems.
        let _ = fs::remove_dir_all(self.work_dir.join("db/data"));
        match died {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Leaves the processes running and returns what `stop` needs to stop them later (the CLI's
    /// `start`).
    pub fn detach(mut self) -> HarnessState {
        let pids = self.procs.iter().map(|p| (p.server, p.child.id())).collect();
        self.procs.clear();
        HarnessState {
            packetver: self.packetver,
            ports: self.ports,
            pids,
            logs: self.logs.clone(),
            db_url: self.db_url(),
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if !self.procs.is_empty() {
            let _ = self.stop();
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status.signal() {
        Some(11) => "killed by SIGSEGV".into(),
        Some(sig) => format!("killed by signal {sig}"),
        None => status.to_string(),
    }
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Whether `pid` is a live (not zombie) process.
pub fn pid_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// Stops the processes of a detached harness by PID (the CLI's `stop`): SIGTERM, then SIGKILL
/// after 10 s.
pub fn stop_state(state: &HarnessState) {
    let order = [Server::Map, Server::Char, Server::Login, Server::Database];
    for server in order {
        let Some(&pid) = state.pids.get(&server) else { continue };
        if !pid_alive(pid) {
            continue;
        }
        signal(pid, "TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        while pid_alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if pid_alive(pid) {
            signal(pid, "KILL");
        }
    }
}

/// For tests: starts a harness, or, when rAthena or MariaDB is missing, fails under `CI=true`
/// and otherwise prints `SKIPPED: <reason>` and returns `None`. Any other error panics with the
/// servers' log tails.
pub fn start_or_skip(config: HarnessConfig) -> Option<Harness> {
    match Harness::start(config) {
        Ok(h) => Some(h),
        Err(e) if e.is_unavailable() && std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!("SKIPPED: {e}");
            None
        }
        Err(e) => panic!("rAthena harness failed to start: {e}"),
    }
}
