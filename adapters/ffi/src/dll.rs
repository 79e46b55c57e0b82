//! The batteries layer: what a DLL hooked into the game client calls. `rop2p_start` takes the
//! player's configuration (`p2p_config.json` text or `Data/config.ini` text), opens the log
//! file, and returns a handle; the send hook and the receive hook then run every byte between
//! the game and the map server through a router ([`crate::router`]); events reach a callback or
//! are polled; `rop2p_stop` ends it.
//!
//! Not yet in this build: the background runtime that connects to the coordinator and opens
//! WebRTC links (it waits for the tokio client driver of `ro_p2p_core::node`). Until then the
//! handle starts, and stays, in fallback: everything goes to the server exactly as the game sent
//! it, which is what `MainServerFallback` promises when P2P is unavailable.

use std::ffi::{c_char, c_void};
use std::fs::File;
use std::io::Write;

use ro_p2p_core::config::{ClientSettings, LogLevel};
use ro_p2p_core::packet::{Obfuscation, PeerEvent};
use ro_p2p_core::route::{Policy, RouteContext};
use ro_p2p_core::wire::Zone;

use crate::event::{RoP2pEvent, RoP2pEventKind};
use crate::handles::{self, Kind};
use crate::router::{self, RoP2pRouterStats, Router};
use crate::status::{Failure, RoP2pStatus, c_str, guard, input};

/// The log file used when neither the call nor the configuration names one.
pub const ROP2P_DEFAULT_LOG_FILE: &str = "p2p_dll.log";

/// Which configuration format `rop2p_start` is given.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoP2pConfigFormat {
    /// `p2p_config.json` (JSON with comments).
    Json = 1,
    /// The game's `Data/config.ini` (its `[P2P]` section).
    Ini = 2,
}

/// Called with each event; `event` is valid only during the call. May be called from a thread
/// other than the game's once the background runtime exists: keep it short and thread-safe.
pub type RoP2pEventCallback =
    Option<unsafe extern "C" fn(event: *const RoP2pEvent, user_data: *mut c_void)>;

/// Counters of a started instance.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RoP2pStats {
    /// The router's counters (send and receive paths).
    pub router: RoP2pRouterStats,
    /// Whether peers are in use right now (1) or everything goes to the server (0).
    pub p2p_active: u32,
    /// Peer links open.
    pub peers_connected: u32,
    /// Events dropped because nobody polled them and no callback was set.
    pub events_dropped: u64,
}

struct Callback {
    f: unsafe extern "C" fn(*const RoP2pEvent, *mut c_void),
    user_data: *mut c_void,
}

// SAFETY: `user_data` is opaque to the library; the integrator promises (docs/dll.md, the
// header) that the callback may be invoked with it from any thread.
unsafe impl Send for Callback {}

/// Writes `[elapsed] [level] message` lines to the log file.
struct Logger {
    file: Option<File>,
    level: LogLevel,
    epoch: std::time::Instant,
}

fn rank(level: LogLevel) -> u8 {
    match level {
        LogLevel::Trace => 0,
        LogLevel::Debug => 1,
        LogLevel::Info => 2,
        LogLevel::Warn => 3,
        _ => 4,
    }
}

impl Logger {
    fn log(&mut self, level: LogLevel, message: &str) {
        if rank(level) < rank(self.level) {
            return;
        }
        if let Some(file) = self.file.as_mut() {
            let ms = self.epoch.elapsed().as_millis();
            // A full disk must not break the game: logging errors are ignored.
            let _ =
                writeln!(file, "[{}.{:03}s] [{}] {message}", ms / 1000, ms % 1000, level.as_str());
        }
    }
}

/// One started instance.
struct Dll {
    router: Router,
    settings: ClientSettings,
    zone_enabled: bool,
    p2p_active: bool,
    log: Logger,
    callback: Option<Callback>,
}

impl Kind for Dll {
    const NAME: &'static str = "instance";
}

impl Dll {
    fn emit(&mut self, event: RoP2pEvent) {
        let level = match event.kind {
            RoP2pEventKind::Error | RoP2pEventKind::SendDesync | RoP2pEventKind::RecvDesync => {
                LogLevel::Warn
            }
            _ => LogLevel::Info,
        };
        let text = text_of(&event);
        self.log.log(level, &format!("event {:?}: {text}", event.kind));
        self.router.events.push(event);
        self.deliver();
    }

    /// Hands queued events to the callback, if one is set.
    fn deliver(&mut self) {
        let Some(cb) = self.callback.as_ref() else { return };
        while let Some(event) = self.router.events.pop() {
            // SAFETY: the integrator registered `f` for exactly this signature; `event` lives
            // across the call; `user_data` is passed back as given.
            unsafe { (cb.f)(&event, cb.user_data) };
        }
    }

    /// Router events raised inside the last call (desyncs) are logged and delivered.
    fn after_call(&mut self) {
        self.deliver();
    }

    fn update_context(&mut self) {
        // Peers are used only with a live coordinator session and links, which this build
        // does not open yet (see the module doc).
        self.router.ctx = RouteContext {
            p2p_enabled: self.settings.p2p_enabled && self.p2p_active,
            zone_enabled: self.zone_enabled,
            joined: self.p2p_active,
            peers_ready: self.p2p_active,
            all_members_linked: self.p2p_active,
        };
    }
}

fn text_of(event: &RoP2pEvent) -> String {
    let bytes: Vec<u8> = event.text.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn with_dll<R>(handle: u64, f: impl FnOnce(&mut Dll) -> Result<R, Failure>) -> Result<R, Failure> {
    let object = handles::get::<Dll>(handle)?;
    let mut dll = handles::lock(&object)?;
    let result = f(&mut dll);
    dll.after_call();
    result
}

/// Starts an instance from the player's configuration.
///
/// `format`: 1 for `p2p_config.json` text, 2 for `Data/config.ini` text (its `[P2P]` section).
/// `log_path`: the log file, or NULL for the configuration's `logging.file`, else
/// `p2p_dll.log` in the working directory. A configuration error returns `RO_P2P_STATUS_ERR_CONFIG`
/// and `rop2p_last_error` names the key.
///
/// # Safety
/// `config_text` is a NUL-terminated string; `log_path` NULL or one; `out_handle` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rop2p_start(
    config_text: *const c_char,
    format: u32,
    log_path: *const c_char,
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
        let version = router::parse_version(settings.packet_version)?;
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
        let mut dll = Dll {
            router: Router::new(version, policy, obfuscation),
            zone_enabled: true,
            p2p_active: false,
            log: Logger { file, level: settings.log_level, epoch: std::time::Instant::now() },
            callback: None,
            settings,
        };
        dll.log.log(
            LogLevel::Info,
            &format!(
                "ro-p2p {} started: PACKETVER {}, policy {policy}, {} coordinator URL(s)",
                env!("CARGO_PKG_VERSION"),
                version.number(),
                dll.settings.coordinator_urls.len()
            ),
        );
        let reason = if !dll.settings.p2p_enabled {
            "P2P disabled in the configuration"
        } else if dll.settings.coordinator_urls.is_empty() {
            "no coordinator URL configured"
        } else {
            "coordinator connection not available in this build"
        };
        dll.update_context();
        dll.emit(RoP2pEvent::new(
            RoP2pEventKind::FallbackOn,
            0,
            0,
            &format!("everything goes to the map server: {reason}"),
        ));
        let handle = handles::insert(dll);
        // SAFETY: checked non-null above; the caller promises it is writable.
        unsafe { out_handle.write(handle) };
        Ok(RoP2pStatus::Ok)
    })
}

/// Registers the event callback (NULL removes it); events queued so far are delivered at once.
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
            d.callback = callback.map(|f| Callback { f, user_data });
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
        with_dll(handle, |d| unsafe { d.router.write_next_event(out) })
    })
}

/// Tells the instance which map the player is on (e.g. `"prontera"`), for
/// `zones.p2p_enabled_zones`.
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
            d.zone_enabled = d.settings.zones.allows(&zone);
            d.log.log(LogLevel::Info, &format!("zone {zone}: P2P allowed {}", d.zone_enabled));
            d.update_context();
            Ok(RoP2pStatus::Ok)
        })
    })
}

/// The send hook: bytes the game writes to the map server in, bytes to really send out. Same
/// contract as `rop2p_router_on_game_send` (all or nothing, size needed when `cap` is small).
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
            let debug = rank(d.log.level) <= rank(LogLevel::Debug);
            let mut routed = Vec::new();
            let on_peer = |event: &PeerEvent<'_>| {
                if debug {
                    routed.push(event.category_name());
                }
            };
            // SAFETY: `out_len` checked non-null; the caller's contract for `out`/`cap`.
            let status = unsafe { d.router.send_hook(data, on_peer, out, cap, out_len) };
            for category in routed {
                d.log.log(LogLevel::Debug, &format!("routing {category} to peers"));
            }
            // Peer events go out over the links once the runtime exists; drop them meanwhile.
            d.router.peer_events.clear();
            status
        })
    })
}

/// The receive hook: bytes the map server sent in (NULL/0 to just read on), bytes for the game
/// out, with peer events drawn in. Same contract as `rop2p_router_on_server_recv` (partial
/// reads are normal).
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
        if out_len.is_null() {
            return Err(Failure::null("out_len"));
        }
        if out.is_null() && cap > 0 {
            return Err(Failure::null("out"));
        }
        // SAFETY: the caller's contract for `data`/`len`.
        let data = unsafe { input("data", data, len) }?;
        // SAFETY: `out_len` checked non-null, `out` non-null when `cap > 0`; the caller's
        // contract for the rest.
        with_dll(handle, |d| unsafe { d.router.recv_hook(data, out, cap, out_len) })
    })
}

/// How many bytes for the game wait to be read by the receive hook.
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
        with_dll(handle, |d| unsafe { d.router.write_pending(out) })
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
            let stats = RoP2pStats {
                router: d.router.stats(),
                p2p_active: u32::from(d.p2p_active),
                peers_connected: 0,
                events_dropped: d.router.events.dropped,
            };
            // SAFETY: checked non-null; the caller promises it is writable.
            unsafe { out.write(stats) };
            Ok(RoP2pStatus::Ok)
        })
    })
}

/// Stops the instance: logs the final counters and closes the log. Every later call with the
/// handle (stop included) returns `RO_P2P_STATUS_ERR_CLOSED`.
#[unsafe(no_mangle)]
pub extern "C" fn rop2p_stop(handle: u64) -> RoP2pStatus {
    guard(|| {
        let object = handles::remove::<Dll>(handle)?;
        let mut d = handles::lock(&object)?;
        let s = d.router.stats();
        d.log.log(
            LogLevel::Info,
            &format!(
                "stopped: {} packets ({} to server, {} to peers), {} peer events drawn",
                s.packets, s.to_server, s.to_peers, s.rendered
            ),
        );
        d.callback = None;
        d.log.file = None;
        Ok(RoP2pStatus::Ok)
    })
}
