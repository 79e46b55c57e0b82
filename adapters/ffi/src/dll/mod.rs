//! The batteries layer: what a DLL hooked into the game client calls. `rop2p_start` takes the
//! player's configuration (`p2p_config.json` text or `Data/config.ini` text), opens the log
//! file, and starts a background runtime ([`runtime`]) that runs the tokio client driver: the
//! coordinator WebSocket (`ws://`/`wss://`, reconnecting with the client core's backoff) and
//! WebRTC links to the session's members. The send hook hands the game's bytes to the driver's
//! node and returns the bytes for the map server; the node seals peer events and the driver
//! sends them. The receive hook hands the server's bytes to the node too, and returns what the
//! node made for the game: the server's packets with peers drawn in and the echo rAthena would
//! have sent for the player's own peers-only actions. Events (peers in use or not, links,
//! desyncs) reach a callback or are polled; `rop2p_stop` leaves the session and ends the
//! runtime. Every protocol decision is the node's ([`ro_p2p_core::node::Node`]); this module
//! moves bytes.

mod logsink;
mod runtime;
mod state;

use std::ffi::{c_char, c_void};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ro_p2p_core::config::{ClientSettings, LogLevel};
use ro_p2p_core::node::{NodeConfig, NodeStats};
use ro_p2p_core::packet::Obfuscation;
use ro_p2p_core::render::{MapChange, ReceiveStats, RenderRejected, UnitLayout};
use ro_p2p_core::route::Policy;
use ro_p2p_core::wire::{PeerId, Zone};
use ro_p2p_tokio::client::DriverStopped;
use ro_p2p_webrtc::LinksConfig;

use crate::event::{RoP2pEvent, RoP2pEventKind};
use crate::handles::{self, Kind};
use crate::router::{self, ROP2P_SERVER_BYTES_QUEUED_MAX, RoP2pRouterStats};
use crate::status::{Failure, RoP2pStatus, c_str, copy_all, guard, input};
use runtime::{Background, Stopped};
use state::{Callback, DllState, Logger, Shared};

/// The log file used when neither the call nor the configuration names one.
pub const ROP2P_DEFAULT_LOG_FILE: &str = "p2p_dll.log";
/// How long `rop2p_stop` waits for the session to be left and the driver to end.
pub const ROP2P_STOP_WAIT_MS: u64 = 3_000;

/// Which configuration format `rop2p_start` is given.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoP2pConfigFormat {
    /// `p2p_config.json` (JSON with comments).
    Json = 1,
    /// The game's `Data/config.ini` (its `[P2P]` section).
    Ini = 2,
}

/// Called with each event; `event` is valid only during the call. Called on the thread that
/// made a library call, or on the library's `rop2p-events` thread: keep it short and
/// thread-safe. It may call the library (even `rop2p_stop`).
pub type RoP2pEventCallback =
    Option<unsafe extern "C" fn(event: *const RoP2pEvent, user_data: *mut c_void)>;

/// What the game knows that the configuration files do not: the player's identity, and
/// transport settings for tests. Every field may be NULL (or 0).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RoP2pStartOptions {
    /// The coordinator's bearer token (JWT) from the login flow, NUL-terminated; NULL: none.
    pub token: *const c_char,
    /// The peer id to ask for, NUL-terminated: the account id in decimal, so peers draw this
    /// player with the right unit id. Honoured only when the coordinator's authentication is
    /// off (with it on, the token's subject is the id). NULL: the coordinator's choice.
    pub peer_id: *const c_char,
    /// The local IP address WebRTC binds (e.g. `"127.0.0.1"`: host candidates on loopback
    /// only, for tests), NUL-terminated; NULL: every interface.
    pub udp_bind_ip: *const c_char,
    /// The rAthena account id (`AC_ACCEPT_LOGIN`'s AID); 0: none. With `web_auth_token`, the
    /// coordinator's `rathena` mode credential; it is also the peer id when `peer_id` is NULL.
    pub account_id: u32,
    /// The login server's web auth token (16 lowercase hex digits from `AC_ACCEPT_LOGIN`,
    /// `0x0AC4` offset 47), NUL-terminated; NULL: none. Needs `account_id`; excludes `token`.
    pub web_auth_token: *const c_char,
}

/// Counters of a started instance.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RoP2pStats {
    /// The send path's counters (from the node: packets framed, to the server, to peers) and
    /// the receive path's (drawn, rejected, duplicates, local echoes).
    pub router: RoP2pRouterStats,
    /// Whether peers are in use right now (1) or everything goes to the server (0).
    pub p2p_active: u32,
    /// Peer links open (healthy).
    pub peers_connected: u32,
    /// Events dropped because nobody polled them and no callback was set.
    pub events_dropped: u64,
    /// Peer frames sealed and queued to links (one per peer per packet).
    pub peer_frames_sent: u64,
    /// Peer frames received (before any check; acknowledgements of peers-only lines, which
    /// carry no event, not counted).
    pub peer_frames_received: u64,
    /// Peer frames dropped (not a member, refused by the seal, invalid, outside the map).
    pub peer_frames_dropped: u64,
    /// Peer-eligible packets that went to the server because peers were not usable.
    pub fallbacks: u64,
}

/// One started instance.
struct Dll {
    shared: Arc<Shared>,
    background: Background,
    settings: ClientSettings,
    /// Bytes for the server the caller has not taken yet (its buffer was too small).
    server_out: Vec<u8>,
    /// The driver ended on its own: the send hook passes bytes through untouched.
    driver_gone: bool,
    /// The node's counters when last read.
    last_stats: NodeStats,
    /// The receive path's counters and desync when last read.
    last_receive: (ReceiveStats, bool),
    /// Started with `options.web_auth_token` of this account.
    web_auth_account: Option<u32>,
}

impl Kind for Dll {
    const NAME: &'static str = "instance";
}

impl Dll {
    fn log(&self, level: LogLevel, message: &str) {
        self.shared.lock().log.log(level, message);
    }

    /// The driver is gone (P2P is off in the configuration, or it stopped on its own): from
    /// now on the game's bytes go to the server untouched, which is what fallback promises.
    fn lose_driver(&mut self) {
        if self.driver_gone {
            return;
        }
        self.driver_gone = true;
        let mut state = self.shared.lock();
        if !self.settings.p2p_enabled || self.settings.coordinator_urls.is_empty() {
            state
                .log
                .log(LogLevel::Info, "P2P is off: everything goes to the map server untouched");
            return;
        }
        state.emit(RoP2pEvent::new(
            RoP2pEventKind::Error,
            RoP2pStatus::ErrRuntime as i32,
            0,
            "the background runtime stopped; everything goes to the map server untouched",
        ));
        if state.p2p_active {
            state.p2p_active = false;
            state.emit(RoP2pEvent::new(
                RoP2pEventKind::FallbackOn,
                0,
                0,
                "everything goes to the map server: the background runtime stopped",
            ));
        }
    }

    /// Routes the game's bytes through the node; the server's share is appended to
    /// `server_out` (the node draws the local echoes). Then one look at the node gives its
    /// counters (desync, debug log).
    fn route(&mut self, data: &[u8]) -> Result<(), Failure> {
        if self.driver_gone {
            self.server_out.extend_from_slice(data);
            return Ok(());
        }
        let node = self.background.node.clone();
        // This send takes any late server copies the node holds.
        self.shared.lock().late_pending = false;
        match self.background.block_on(node.game_send(data.to_vec()))? {
            Ok(to_server) => self.server_out.extend_from_slice(&to_server),
            Err(DriverStopped) => {
                self.lose_driver();
                self.server_out.extend_from_slice(data);
                return Ok(());
            }
        }
        let Ok(after) = self.background.block_on(node.stats())? else {
            self.lose_driver();
            return Ok(());
        };
        let before = std::mem::replace(&mut self.last_stats, after.clone());
        let mut state = self.shared.lock();
        if before.desyncs == 0 && after.desyncs > 0 {
            state.emit(RoP2pEvent::new(
                RoP2pEventKind::SendDesync,
                0,
                0,
                "game-to-server stream desynced: everything now goes to the server untouched",
            ));
        }
        if state.log.enabled(LogLevel::Debug) {
            state.log.log(
                LogLevel::Debug,
                &format!(
                    "routed {} packet(s): {} to the server only, {} to peers only, {} mirrored, {} fallback(s)",
                    after.packets - before.packets,
                    after.packets_server - before.packets_server,
                    after.packets_peers - before.packets_peers,
                    after.packets_mirrored - before.packets_mirrored,
                    after.fallbacks - before.fallbacks,
                ),
            );
        }
        Ok(())
    }

    /// The node's counters and its receive path's (the last ones read if the driver is gone).
    fn node_stats(&mut self) -> Result<(NodeStats, ReceiveStats, bool), Failure> {
        if !self.driver_gone {
            let look = self.background.node.inspect(|n| {
                let desynced = n.game_path().receive_stream().desync_reason().is_some();
                (n.stats().clone(), n.receive_stats(), desynced)
            });
            match self.background.block_on(look)? {
                Ok((stats, receive, desynced)) => {
                    self.last_stats = stats;
                    self.last_receive = (receive, desynced);
                }
                Err(DriverStopped) => self.lose_driver(),
            }
        }
        Ok((self.last_stats.clone(), self.last_receive.0, self.last_receive.1))
    }

    fn stats(&mut self) -> Result<RoP2pStats, Failure> {
        let (n, r, recv_desynced) = self.node_stats()?;
        let state = self.shared.lock();
        Ok(RoP2pStats {
            router: RoP2pRouterStats {
                packets: n.packets,
                to_server: n.packets_server + n.packets_mirrored,
                to_peers: n.packets_peers + n.packets_mirrored,
                peer_events_dropped: n.seal_failures,
                send_desynced: u32::from(n.desyncs > 0),
                recv_desynced: u32::from(recv_desynced || state.recv_desynced),
                rendered: r.rendered,
                render_rejected: r.rejected,
                server_duplicates_dropped: r.server_duplicates_dropped,
                local_echoes: r.local_echoes,
            },
            p2p_active: u32::from(state.p2p_active),
            peers_connected: u32::try_from(state.links_open.len()).unwrap_or(u32::MAX),
            events_dropped: state.events.dropped,
            peer_frames_sent: n.frames_queued,
            peer_frames_received: n.frames_received - n.acks_received,
            peer_frames_dropped: n.frames_received - n.acks_received - n.events_received,
            fallbacks: n.fallbacks,
        })
    }
}

impl Dll {
    /// Hands bytes the map server sent to the node; the node's bytes for the game are in the
    /// shared state when this returns. With the driver gone, they pass to the game untouched.
    fn server_recv(&mut self, data: &[u8]) -> Result<(), Failure> {
        if data.is_empty() {
            return Ok(());
        }
        if !self.driver_gone {
            let node = self.background.node.clone();
            match self.background.block_on(node.server_bytes(data.to_vec(), None))? {
                Ok(taken) => {
                    self.last_receive.0 = taken.stats;
                    let mut state = self.shared.lock();
                    state.map_changes.extend(taken.map_changes);
                    if let (Some(reason), false) = (taken.desync, state.recv_desynced) {
                        state.recv_desynced = true;
                        state.emit(RoP2pEvent::new(
                            RoP2pEventKind::RecvDesync,
                            0,
                            0,
                            &format!(
                                "server-to-game stream desynced ({reason}): injection stopped"
                            ),
                        ));
                    }
                    return Ok(());
                }
                Err(DriverStopped) => self.lose_driver(),
            }
        }
        self.shared.lock().to_game.extend_from_slice(data);
        Ok(())
    }

    /// Moves up to `buf.len()` bytes for the game into `buf`.
    fn take_game_bytes(&self, buf: &mut [u8]) -> usize {
        let mut state = self.shared.lock();
        let n = state.to_game.len().min(buf.len());
        if let (Some(to), Some(from)) = (buf.get_mut(..n), state.to_game.get(..n)) {
            to.copy_from_slice(from);
        }
        state.to_game.drain(..n);
        n
    }
}

/// Feeds bytes the map server sent to the instance behind `handle` (for the hooks).
pub(crate) fn server_recv(handle: u64, data: &[u8]) {
    let _ = with_dll(handle, |d| d.server_recv(data));
}

/// The map server closed the connection of the instance behind `handle`: a partial packet the
/// node holds goes to the game as it is.
pub(crate) fn server_closed(handle: u64) {
    let _ = with_dll(handle, |d| {
        if !d.driver_gone && d.background.block_on(d.background.node.server_closed())?.is_err() {
            d.lose_driver();
        }
        Ok(())
    });
}

/// The map changes the server announced to the instance behind `handle` since the last call.
pub(crate) fn take_map_changes(handle: u64) -> Vec<MapChange> {
    with_dll(handle, |d| Ok(std::mem::take(&mut d.shared.lock().map_changes))).unwrap_or_default()
}

/// Bytes for the game waiting in the instance behind `handle`.
pub(crate) fn pending_game_bytes(handle: u64) -> usize {
    with_dll(handle, |d| Ok(d.shared.lock().to_game.len())).unwrap_or(0)
}

/// Moves up to `buf.len()` bytes for the game of the instance behind `handle` into `buf`.
pub(crate) fn take_game_bytes(handle: u64, buf: &mut [u8]) -> usize {
    with_dll(handle, |d| Ok(d.take_game_bytes(buf))).unwrap_or(0)
}

/// Has the node of the instance behind `handle` draw a notice into the game's stream.
pub(crate) fn draw_notice(handle: u64, text: &str) -> Result<(), String> {
    const STOPPED: &str = "the runtime has stopped";
    let drawn = with_dll(handle, |d| {
        if d.driver_gone {
            return Ok(Err(STOPPED.to_owned()));
        }
        match d.background.block_on(d.background.node.draw_notice(text.to_owned()))? {
            Ok(drawn) => Ok(drawn.map_err(|e: RenderRejected| e.to_string())),
            Err(DriverStopped) => {
                d.lose_driver();
                Ok(Err(STOPPED.to_owned()))
            }
        }
    });
    drawn.map_err(|e| e.message)?
}

/// Whether the node of the instance behind `handle` queued late server copies that no game
/// send has taken yet; `rop2p_on_game_send` with no bytes then takes them.
pub(crate) fn late_pending(handle: u64) -> bool {
    with_dll(handle, |d| Ok(d.shared.lock().late_pending)).unwrap_or(false)
}

/// Writes a line to the log of the instance behind `handle`.
pub(crate) fn log_line(handle: u64, level: LogLevel, line: &str) {
    let _ = with_dll(handle, |d| {
        d.log(level, line);
        Ok(())
    });
}

fn with_dll<R>(handle: u64, f: impl FnOnce(&mut Dll) -> Result<R, Failure>) -> Result<R, Failure> {
    let object = handles::get::<Dll>(handle)?;
    let (result, shared) = {
        let mut dll = handles::lock(&object)?;
        let result = f(&mut dll);
        (result, dll.shared.clone())
    };
    shared.deliver();
    result
}

fn os_seed() -> Result<[u8; 32], Failure> {
    use rand_core::TryRngCore as _;
    let mut seed = [0u8; 32];
    rand_core::OsRng
        .try_fill_bytes(&mut seed)
        .map_err(|e| Failure::new(RoP2pStatus::ErrRuntime, format!("OS randomness: {e}")))?;
    Ok(seed)
}

use ro_p2p_core::coordinator::credential::{WebAuthCredential, WebAuthToken, account_peer_id};

/// The coordinator credential for rAthena's web auth token (`<account id>:<token>`, the
/// coordinator's `rathena` mode) and the peer id it stands for (the account id); an error when
/// the token is not 16 lowercase hex digits.
pub(crate) fn web_auth_credential(
    account_id: u32,
    web_auth_token: &str,
) -> Result<(String, PeerId), String> {
    let web = WebAuthToken::parse(web_auth_token).map_err(|e| e.to_string())?;
    let credential = WebAuthCredential::new(account_id, web);
    let token = WebAuthCredential::encode(account_id, credential.token().expose());
    Ok((token, credential.peer_id()))
}

/// The start options, read from C.
#[derive(Default)]
pub(crate) struct Options {
    pub(crate) token: Option<String>,
    pub(crate) peer_id: Option<PeerId>,
    pub(crate) udp_bind_ip: Option<IpAddr>,
    /// The account of `options.web_auth_token`: a refreshed token is a web auth token too.
    pub(crate) web_auth_account: Option<u32>,
}

/// # Safety
/// `options` NULL or valid, with NULL or NUL-terminated strings.
unsafe fn read_options(options: *const RoP2pStartOptions) -> Result<Options, Failure> {
    if options.is_null() {
        return Ok(Options {
            token: None,
            peer_id: None,
            udp_bind_ip: None,
            web_auth_account: None,
        });
    }
    // SAFETY: non-null; the caller promises a valid struct.
    let o = unsafe { options.read() };
    // SAFETY: the caller promises NULL or NUL-terminated strings.
    let token = unsafe { c_str("options.token", o.token) }?.map(str::to_string);
    let account_id = o.account_id;
    // SAFETY: as above.
    let web_auth_token = unsafe { c_str("options.web_auth_token", o.web_auth_token) }?;
    // SAFETY: as above.
    let peer_id = match unsafe { c_str("options.peer_id", o.peer_id) }? {
        None => None,
        Some(p) => Some(
            PeerId::new(p.to_string())
                .map_err(|e| Failure::invalid(format!("options.peer_id: {e}")))?,
        ),
    };
    // SAFETY: as above.
    let udp_bind_ip = match unsafe { c_str("options.udp_bind_ip", o.udp_bind_ip) }? {
        None => None,
        Some(ip) => Some(ip.parse::<IpAddr>().map_err(|e| {
            Failure::invalid(format!("options.udp_bind_ip: {ip:?} is not an IP address: {e}"))
        })?),
    };
    let web_auth_account = web_auth_token.is_some().then_some(account_id);
    let (token, peer_id) = match web_auth_token {
        None => (token, peer_id),
        Some(_) if token.is_some() => {
            return Err(Failure::invalid(
                "options.token and options.web_auth_token exclude each other",
            ));
        }
        Some(_) if account_id == 0 => {
            return Err(Failure::invalid("options.web_auth_token needs options.account_id"));
        }
        Some(web) => {
            let (token, account) = web_auth_credential(account_id, web)
                .map_err(|e| Failure::invalid(format!("options.web_auth_token: {e}")))?;
            (Some(token), peer_id.or(Some(account)))
        }
    };
    let peer_id = match (peer_id, account_id) {
        (None, aid) if aid != 0 => Some(account_peer_id(aid)),
        (p, _) => p,
    };
    Ok(Options { token, peer_id, udp_bind_ip, web_auth_account })
}

/// Starts an instance from the player's configuration; the same as
/// [`rop2p_start_with`] without options.
///
/// # Safety
/// As [`rop2p_start_with`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rop2p_start(
    config_text: *const c_char,
    format: u32,
    log_path: *const c_char,
    out_handle: *mut u64,
) -> RoP2pStatus {
    // SAFETY: the caller's contract, passed on.
    unsafe { rop2p_start_with(config_text, format, log_path, std::ptr::null(), out_handle) }
}

/// Starts an instance from the player's configuration and its background runtime.
///
/// `format`: 1 for `p2p_config.json` text, 2 for `Data/config.ini` text (its `[P2P]` section).
/// `log_path`: the log file, or NULL for the configuration's `logging.file`, else
/// `p2p_dll.log` in the working directory. `options`: NULL, or the player's identity and
/// transport settings ([`RoP2pStartOptions`]). A configuration error returns
/// `RO_P2P_STATUS_ERR_CONFIG` and `rop2p_last_error` names the key.
///
/// The instance starts in fallback (`RO_P2P_EVENT_KIND_FALLBACK_ON`: everything to the map
/// server) and leaves it (`..._FALLBACK_OFF`) once it has joined the zone's session (after
/// `rop2p_set_zone`) and a peer link is open. An unreachable coordinator is retried with
/// backoff meanwhile; the hooks work throughout.
///
/// # Safety
/// `config_text` is a NUL-terminated string; `log_path` NULL or one; `options` NULL or valid
/// (its strings NULL or NUL-terminated); `out_handle` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rop2p_start_with(
    config_text: *const c_char,
    format: u32,
    log_path: *const c_char,
    options: *const RoP2pStartOptions,
    out_handle: *mut u64,
) -> RoP2pStatus {
    guard(|| {
        if out_handle.is_null() {
            return Err(Failure::null("out_handle"));
        }
        // SAFETY: the caller passes a NUL-terminated string.
        let text = unsafe { c_str("config_text", config_text) }?
            .ok_or_else(|| Failure::null("config_text"))?;
        // SAFETY: the caller passes NULL or a NUL-terminated string.
        let log_path = unsafe { c_str("log_path", log_path) }?;
        // SAFETY: the caller passes NULL or a valid struct.
        let options = unsafe { read_options(options) }?;
        let settings = match format {
            1 => ClientSettings::from_json(text),
            2 => ClientSettings::from_ini(text, None),
            other => {
                return Err(Failure::invalid(format!(
                    "format must be 1 (p2p_config.json) or 2 (config.ini), got {other}"
                )));
            }
        }
        .map_err(|e| Failure::new(RoP2pStatus::ErrConfig, e.to_string()))?;
        let handle = start_settings(settings, log_path, options)?;
        // SAFETY: checked non-null above; the caller promises it is writable.
        unsafe { out_handle.write(handle) };
        Ok(RoP2pStatus::Ok)
    })
}

/// Starts an instance from parsed settings (what `rop2p_start_with` does once the text is
/// read; the hooks start one from the game folder's files this way).
pub(crate) fn start_settings(
    settings: ClientSettings,
    log_path: Option<&str>,
    options: Options,
) -> Result<u64, Failure> {
    {
        let version = settings.version().map_err(|e| Failure::invalid(e.to_string()))?;
        let policy = match settings.routing_policy.as_deref() {
            None => Policy::default(),
            Some(p) => p.parse::<Policy>().map_err(|e| {
                Failure::new(RoP2pStatus::ErrConfig, format!("routing policy: {e}"))
            })?,
        };
        let obfuscation =
            if version.obfuscated_by_default() { Obfuscation::On } else { Obfuscation::Off };
        let path = log_path
            .map(str::to_string)
            .or_else(|| settings.log_file.clone())
            .unwrap_or_else(|| ROP2P_DEFAULT_LOG_FILE.to_string());
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&path).ok();
        let mut state = DllState {
            to_game: Vec::new(),
            recv_desynced: false,
            map_changes: Vec::new(),
            events: Default::default(),
            log: Logger { sink: file.map(|f| logsink::LogSink::new(f, settings.log_level)) },
            callback: None,
            links_open: Default::default(),
            p2p_active: false,
            late_pending: false,
        };
        state.log.log(
            LogLevel::Info,
            &format!(
                "ro-p2p {} started: PACKETVER {}, policy {policy}, {} coordinator URL(s), peer id {}",
                env!("CARGO_PKG_VERSION"),
                version,
                settings.coordinator_urls.len(),
                options.peer_id.as_ref().map_or("from the coordinator", |p| p.as_str()),
            ),
        );
        if let Err(why) = UnitLayout::of(version) {
            state.log.log(
                LogLevel::Warn,
                &format!(
                    "peers' walking is not drawn at PACKETVER {version} ({why}); the server's \
                     copy shows it"
                ),
            );
        }
        let reason = if !settings.p2p_enabled {
            "P2P disabled in the configuration"
        } else {
            "waiting for the coordinator session and a peer link"
        };
        state.emit(RoP2pEvent::new(
            RoP2pEventKind::FallbackOn,
            0,
            0,
            &format!("everything goes to the map server: {reason}"),
        ));
        for ignored in &settings.ignored {
            state.log.log(LogLevel::Warn, &ignored.to_string());
        }
        let shared = Shared::new(state);
        let web_auth_account = options.web_auth_account;
        let mut client = settings.to_client_config();
        let measured = ro_p2p_tokio::client::machine::measure();
        client.capabilities = settings.volunteer(measured);
        shared.lock().log.log(
            LogLevel::Info,
            &format!(
                "this machine: {} cores, {} MHz, {} MB, link {} Mbps: {}",
                measured.cpu_cores,
                measured.cpu_mhz,
                measured.memory_mb,
                measured.bandwidth_mbps,
                if client.capabilities.is_some() {
                    "reported to the coordinator as a host candidate"
                } else {
                    "not a host candidate (prefer_hosting off or below the host requirements)"
                }
            ),
        );
        client.token = options.token;
        client.peer_id = options.peer_id;
        let config = NodeConfig {
            packet_version: version,
            obfuscation,
            policy,
            seal: settings.seal_config(),
            ..NodeConfig::with_client(client)
        };
        let mut links = LinksConfig::default();
        if let Some(ip) = options.udp_bind_ip {
            links.udp_bind_addrs = vec![SocketAddr::new(ip, 0)];
        }
        let background = Background::start(config, os_seed()?, links, shared.clone())?;
        shared.lock().log.log(
            LogLevel::Info,
            &format!(
                "runtime started: {} worker thread(s), WebRTC bound to {}",
                runtime::RUNTIME_WORKERS,
                options.udp_bind_ip.map_or("every interface".to_string(), |ip| ip.to_string())
            ),
        );
        let dll = Dll {
            shared,
            background,
            server_out: Vec::new(),
            driver_gone: false,
            last_stats: NodeStats::default(),
            last_receive: (ReceiveStats::default(), false),
            web_auth_account,
            settings,
        };
        Ok(handles::insert(dll))
    }
}

/// Starts an instance from the game's `Data/config.ini` text and, when not NULL, its
/// `Data/resourceinfo.ini` text, whose `[P2P_HOSTS]` coordinators follow `CoordinatorURL` as
/// backups (as the hooks read a game folder). Otherwise as [`rop2p_start_with`] with format 2.
///
/// # Safety
/// `config_ini` is a NUL-terminated string; `resourceinfo_ini` and `log_path` NULL or one;
/// `options` NULL or valid (its strings NULL or NUL-terminated); `out_handle` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rop2p_start_ini(
    config_ini: *const c_char,
    resourceinfo_ini: *const c_char,
    log_path: *const c_char,
    options: *const RoP2pStartOptions,
    out_handle: *mut u64,
) -> RoP2pStatus {
    guard(|| {
        if out_handle.is_null() {
            return Err(Failure::null("out_handle"));
        }
        // SAFETY: the caller passes NUL-terminated strings or NULL where allowed.
        let config = unsafe { c_str("config_ini", config_ini) }?
            .ok_or_else(|| Failure::null("config_ini"))?;
        // SAFETY: as above.
        let resourceinfo = unsafe { c_str("resourceinfo_ini", resourceinfo_ini) }?;
        // SAFETY: as above.
        let log_path = unsafe { c_str("log_path", log_path) }?;
        // SAFETY: the caller passes NULL or a valid struct.
        let options = unsafe { read_options(options) }?;
        let settings = ClientSettings::from_ini(config, resourceinfo)
            .map_err(|e| Failure::new(RoP2pStatus::ErrConfig, e.to_string()))?;
        let handle = start_settings(settings, log_path, options)?;
        // SAFETY: checked non-null above; the caller promises it is writable.
        unsafe { out_handle.write(handle) };
        Ok(RoP2pStatus::Ok)
    })
}

/// Gives a running instance a fresh credential, for when the one it started with expires:
/// every later connection to the coordinator (a reconnect, a backup URL) authenticates with
/// it; the live connection, authenticated already, stays. `token` takes the form the instance
/// started with: a bearer token (`options.token`), or for an instance started with
/// `options.web_auth_token` the same account's new rAthena web auth token.
///
/// # Safety
/// `token` is a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rop2p_refresh_token(handle: u64, token: *const c_char) -> RoP2pStatus {
    guard(|| {
        // SAFETY: the caller passes a NUL-terminated string.
        let token = unsafe { c_str("token", token) }?.ok_or_else(|| Failure::null("token"))?;
        if token.is_empty() || token.len() > ro_p2p_core::wire::limits::TOKEN_BYTES_MAX {
            return Err(Failure::invalid(format!(
                "token: must be 1 to {} bytes, got {}",
                ro_p2p_core::wire::limits::TOKEN_BYTES_MAX,
                token.len()
            )));
        }
        with_dll(handle, |d| {
            let token = match d.web_auth_account {
                None => token.to_owned(),
                Some(aid) => {
                    let web = WebAuthToken::parse(token)
                        .map_err(|e| Failure::invalid(format!("token: {e}")))?;
                    WebAuthCredential::encode(aid, web.expose())
                }
            };
            if !d.driver_gone
                && d.background.block_on(d.background.node.refresh_token(token))?.is_err()
            {
                d.lose_driver();
            }
            d.log(LogLevel::Info, "token refreshed: used from the next connection on");
            Ok(RoP2pStatus::Ok)
        })
    })
}

/// Registers the event callback (NULL removes it: events are then kept for
/// `rop2p_poll_event`); events queued so far are delivered at once, on this thread.
///
/// # Safety
/// `callback` must stay callable, with `user_data`, from any thread until `rop2p_stop`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rop2p_set_event_callback(
    handle: u64,
    callback: RoP2pEventCallback,
    user_data: *mut c_void,
) -> RoP2pStatus {
    guard(|| {
        with_dll(handle, |d| {
            d.shared.lock().callback = callback.map(|f| Callback { f, user_data });
            Ok(RoP2pStatus::Ok)
        })
    })
}

/// Takes the next event when no callback is set; `RO_P2P_STATUS_NO_DATA` when there is none.
///
/// # Safety
/// `out` valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rop2p_poll_event(handle: u64, out: *mut RoP2pEvent) -> RoP2pStatus {
    guard(|| {
        if out.is_null() {
            return Err(Failure::null("out"));
        }
        // SAFETY: checked non-null; the caller promises it is writable.
        with_dll(handle, |d| match d.shared.lock().events.pop() {
            Some(event) => {
                // SAFETY: checked non-null; the caller promises it is writable.
                unsafe { out.write(event) };
                Ok(RoP2pStatus::Ok)
            }
            None => Ok(RoP2pStatus::NoData),
        })
    })
}

/// Tells the instance which map the player is on (e.g. `"prontera"`): the node joins that
/// zone's session when `zones.p2p_enabled_zones` allows it, and leaves the previous one.
///
/// # Safety
/// `map_name` is a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rop2p_set_zone(handle: u64, map_name: *const c_char) -> RoP2pStatus {
    guard(|| {
        // SAFETY: the caller passes a NUL-terminated string.
        let name =
            unsafe { c_str("map_name", map_name) }?.ok_or_else(|| Failure::null("map_name"))?;
        let zone = Zone::new(name.trim_end_matches(".gat"))
            .map_err(|e| Failure::invalid(format!("map name: {e}")))?;
        with_dll(handle, |d| {
            let allowed = d.settings.zones.allows(&zone);
            d.log(LogLevel::Info, &format!("zone {zone}: P2P allowed {allowed}"));
            if !d.driver_gone
                && d.background.block_on(d.background.node.zone_changed(zone))?.is_err()
            {
                d.lose_driver();
            }
            Ok(RoP2pStatus::Ok)
        })
    })
}

/// The game opened a new connection to the map server (map-server change, reconnect): the
/// send path's framing and the receive path's view start over. Bytes for the server not yet
/// taken are kept.
#[unsafe(no_mangle)]
pub extern "C" fn rop2p_new_map_connection(handle: u64) -> RoP2pStatus {
    guard(|| {
        with_dll(handle, |d| {
            if !d.driver_gone
                && d.background.block_on(d.background.node.new_map_connection())?.is_err()
            {
                d.lose_driver();
            }
            let mut state = d.shared.lock();
            // What the old connection had for the game is gone with it.
            state.to_game.clear();
            state.recv_desynced = false;
            state.log.log(LogLevel::Info, "new map-server connection");
            Ok(RoP2pStatus::Ok)
        })
    })
}

/// The send hook: bytes the game writes to the map server in, bytes to really send out (the
/// node routes them; peer frames leave over the links). Same contract as
/// `rop2p_router_on_game_send` (all or nothing, size needed when `cap` is small, and no more
/// than `ROP2P_SERVER_BYTES_QUEUED_MAX` bytes waiting). Called with no bytes, it hands out
/// the late server copies of peers-only chat lines and emotes that not every peer confirmed
/// (call it so from the receive path, or they wait for the game's next send).
///
/// # Safety
/// As `rop2p_router_on_game_send`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rop2p_on_game_send(
    handle: u64,
    data: *const u8,
    len: usize,
    out: *mut u8,
    cap: usize,
    out_len: *mut usize,
) -> RoP2pStatus {
    guard(|| {
        if out_len.is_null() {
            return Err(Failure::null("out_len"));
        }
        // SAFETY: the caller's contract for `data`/`len`.
        let data = unsafe { input("data", data, len) }?;
        with_dll(handle, |d| {
            let queued = d.server_out.len();
            if queued + data.len() > ROP2P_SERVER_BYTES_QUEUED_MAX {
                return Err(Failure::invalid(format!(
                    "{queued} bytes for the server are waiting; read them before sending more"
                )));
            }
            // No bytes: only the late server copies the node holds, if any.
            if !data.is_empty() || d.shared.lock().late_pending {
                d.route(data)?;
            }
            // SAFETY: `out_len` checked non-null; the caller's contract for `out`/`cap`.
            unsafe { copy_all("out", &d.server_out, out, cap, out_len) }?;
            d.server_out.clear();
            Ok(RoP2pStatus::Ok)
        })
    })
}

/// The receive hook: bytes the map server sent in (NULL/0 to just read on), bytes for the game
/// out, with peer events and local echoes drawn in. Same contract as
/// `rop2p_router_on_server_recv` (partial reads are normal).
///
/// # Safety
/// As `rop2p_router_on_server_recv`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rop2p_on_server_recv(
    handle: u64,
    data: *const u8,
    len: usize,
    out: *mut u8,
    cap: usize,
    out_len: *mut usize,
) -> RoP2pStatus {
    guard(|| {
        // SAFETY: the caller's contract for `data`/`len`.
        let data = unsafe { router::recv_hook_input(data, len, out, cap, out_len) }?;
        with_dll(handle, |d| {
            d.server_recv(data)?;
            let mut state = d.shared.lock();
            let n = state.to_game.len().min(cap);
            if n > 0 {
                // SAFETY: `out` is non-null (cap > 0, checked) and valid for cap >= n writes;
                // `to_game` is library memory, so the regions do not overlap.
                unsafe { std::ptr::copy_nonoverlapping(state.to_game.as_ptr(), out, n) };
            }
            state.to_game.drain(..n);
            // SAFETY: checked non-null; the caller promises it is writable.
            unsafe { out_len.write(n) };
            Ok(RoP2pStatus::Ok)
        })
    })
}

/// How many bytes for the game wait to be read by the receive hook (peer events drawn since
/// the last call included).
///
/// # Safety
/// `out` valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rop2p_pending_game_bytes(handle: u64, out: *mut usize) -> RoP2pStatus {
    guard(|| {
        if out.is_null() {
            return Err(Failure::null("out"));
        }
        // SAFETY: checked non-null; the caller promises it is writable.
        with_dll(handle, |d| {
            // SAFETY: checked non-null; the caller promises it is writable.
            unsafe { out.write(d.shared.lock().to_game.len()) };
            Ok(RoP2pStatus::Ok)
        })
    })
}

/// Reads the counters.
///
/// # Safety
/// `out` valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rop2p_stats(handle: u64, out: *mut RoP2pStats) -> RoP2pStatus {
    guard(|| {
        if out.is_null() {
            return Err(Failure::null("out"));
        }
        with_dll(handle, |d| {
            let stats = d.stats()?;
            // SAFETY: checked non-null; the caller promises it is writable.
            unsafe { out.write(stats) };
            Ok(RoP2pStatus::Ok)
        })
    })
}

/// Stops the instance: leaves the session (the coordinator tells the others at once), closes
/// the links and the WebSocket, waits up to `ROP2P_STOP_WAIT_MS` for the runtime, logs the
/// final counters and closes the log. A callback running on another thread is waited for.
/// Every later call with the handle (stop included) returns `RO_P2P_STATUS_ERR_CLOSED`.
#[unsafe(no_mangle)]
pub extern "C" fn rop2p_stop(handle: u64) -> RoP2pStatus {
    guard(|| {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(Failure::new(
                RoP2pStatus::ErrRuntime,
                "called from inside a tokio runtime; call from the game's own threads",
            ));
        }
        let object = handles::remove::<Dll>(handle)?;
        let mut d = handles::lock(&object)?;
        let stats = d.stats().unwrap_or_default();
        let outcome = d.background.stop(Duration::from_millis(ROP2P_STOP_WAIT_MS));
        let mut state = d.shared.lock();
        let s = stats.router;
        let how = match outcome {
            Stopped::Cleanly => "left the session",
            Stopped::TimedOut => "the runtime did not stop in time and was aborted",
        };
        state.log.log(
            LogLevel::Info,
            &format!(
                "stopped ({how}): {} packets ({} to server, {} to peers), {} peer frames sent, {} received, {} peer events drawn, {} local echoes",
                s.packets,
                s.to_server,
                s.to_peers,
                stats.peer_frames_sent,
                stats.peer_frames_received,
                s.rendered,
                s.local_echoes
            ),
        );
        state.callback = None;
        state.log.sink = None;
        Ok(RoP2pStatus::Ok)
    })
}
