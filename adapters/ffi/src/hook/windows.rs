//! The Windows glue: installs the hooks when the DLL is loaded (`DllMain`), by import-table
//! patching of the game module, and turns each hooked Winsock call into an [`Hooks`] call.
//!
//! Why import-table (IAT) patching: the game calls Winsock through its import table, so
//! replacing the entries of the functions below in the game module's table reaches every call
//! the game makes and nothing else (this DLL's own sockets, the coordinator WebSocket and the
//! WebRTC links, go through its own import table and are never hooked). It is the same on
//! 32- and 64-bit, writes no code, and undoing it is writing the old pointers back. Entries are
//! found by the address they hold, so imports by ordinal and through `wsock32.dll` are caught
//! too. Only non-overlapped `WSASend`/`WSARecv` calls are followed; overlapped ones and calls
//! with flags (e.g. `MSG_PEEK`) pass to the real function.

#![allow(non_snake_case, clippy::upper_case_acronyms)]

use std::ffi::c_void;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::batteries::Batteries;
use super::config;
use super::engine::{Hooks, RealSockets, WSAEWOULDBLOCK};
use super::tracker::SocketId;

type SOCKET = usize;
type HMODULE = *mut c_void;

const SOCKET_ERROR: i32 = -1;
const AF_INET: u16 = 2;
const PAGE_READWRITE: u32 = 0x04;
const DLL_PROCESS_ATTACH: u32 = 1;
const DLL_PROCESS_DETACH: u32 = 0;
const FD_SETSIZE: usize = 64;

#[repr(C)]
struct WSABUF {
    len: u32,
    buf: *mut u8,
}

#[repr(C)]
struct FdSet {
    fd_count: u32,
    fd_array: [SOCKET; FD_SETSIZE],
}

#[repr(C)]
struct Timeval {
    tv_sec: i32,
    tv_usec: i32,
}

#[repr(C)]
struct SockAddrIn {
    sin_family: u16,
    sin_port: [u8; 2],
    sin_addr: [u8; 4],
    sin_zero: [u8; 8],
}

#[link(name = "kernel32")]
unsafe extern "system" {
    fn GetModuleHandleW(name: *const u16) -> HMODULE;
    fn GetProcAddress(module: HMODULE, name: *const u8) -> *mut c_void;
    fn VirtualProtect(addr: *mut c_void, size: usize, protect: u32, old: *mut u32) -> i32;
    fn DisableThreadLibraryCalls(module: HMODULE) -> i32;
}

#[link(name = "ws2_32")]
unsafe extern "system" {
    fn WSASetLastError(error: i32);
    fn WSAGetLastError() -> i32;
}

type ConnectFn = unsafe extern "system" fn(SOCKET, *const c_void, i32) -> i32;
type SendFn = unsafe extern "system" fn(SOCKET, *const u8, i32, i32) -> i32;
type RecvFn = unsafe extern "system" fn(SOCKET, *mut u8, i32, i32) -> i32;
type CloseFn = unsafe extern "system" fn(SOCKET) -> i32;
type SelectFn =
    unsafe extern "system" fn(i32, *mut FdSet, *mut FdSet, *mut FdSet, *const Timeval) -> i32;
type WsaSendFn = unsafe extern "system" fn(
    SOCKET,
    *const WSABUF,
    u32,
    *mut u32,
    u32,
    *mut c_void,
    *mut c_void,
) -> i32;
type WsaRecvFn = unsafe extern "system" fn(
    SOCKET,
    *const WSABUF,
    u32,
    *mut u32,
    *mut u32,
    *mut c_void,
    *mut c_void,
) -> i32;

/// The hooked functions: name, the hook's address, and where the original is kept.
struct Hooked {
    name: &'static [u8],
    hook: usize,
    original: &'static AtomicUsize,
}

static REAL_CONNECT: AtomicUsize = AtomicUsize::new(0);
static REAL_SEND: AtomicUsize = AtomicUsize::new(0);
static REAL_RECV: AtomicUsize = AtomicUsize::new(0);
static REAL_CLOSE: AtomicUsize = AtomicUsize::new(0);
static REAL_SELECT: AtomicUsize = AtomicUsize::new(0);
static REAL_WSASEND: AtomicUsize = AtomicUsize::new(0);
static REAL_WSARECV: AtomicUsize = AtomicUsize::new(0);

fn hooked() -> [Hooked; 7] {
    [
        Hooked {
            name: b"connect\0",
            hook: hook_connect as *const () as usize,
            original: &REAL_CONNECT,
        },
        Hooked { name: b"send\0", hook: hook_send as *const () as usize, original: &REAL_SEND },
        Hooked { name: b"recv\0", hook: hook_recv as *const () as usize, original: &REAL_RECV },
        Hooked {
            name: b"closesocket\0",
            hook: hook_closesocket as *const () as usize,
            original: &REAL_CLOSE,
        },
        Hooked {
            name: b"select\0",
            hook: hook_select as *const () as usize,
            original: &REAL_SELECT,
        },
        Hooked {
            name: b"WSASend\0",
            hook: hook_wsasend as *const () as usize,
            original: &REAL_WSASEND,
        },
        Hooked {
            name: b"WSARecv\0",
            hook: hook_wsarecv as *const () as usize,
            original: &REAL_WSARECV,
        },
    ]
}

/// What is installed: the patched import-table slots and the values they held.
struct Installed {
    slots: Vec<(usize, usize)>,
    hooks: Hooks<Batteries>,
    log_path: PathBuf,
    /// The longest time one hooked call spent in this DLL, and how many calls there were.
    max_call: Duration,
}

static STATE: Mutex<Option<Installed>> = Mutex::new(None);
static INSTALLED: AtomicBool = AtomicBool::new(false);

fn state() -> MutexGuard<'static, Option<Installed>> {
    STATE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Appends a line to the hooks' log (the batteries layer's log is the same file).
fn log_to(path: &std::path::Path, line: &str) {
    use std::io::Write as _;
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
        let _ = writeln!(f, "[hook] {line}");
    }
}

fn write_notes(installed: &mut Installed) {
    while let Some(note) = installed.hooks.poll_note() {
        log_to(&installed.log_path, &note);
    }
}

/// The game's folder: where its executable is.
fn game_folder() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(PathBuf::from))
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_default()
}

fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}

/// Reads the configuration, resolves the real functions and patches the game module's import
/// table. On any failure nothing stays patched and the reason is logged.
fn install() -> Result<(), String> {
    if INSTALLED.load(Ordering::SeqCst) {
        return Ok(());
    }
    let folder = game_folder();
    let default_log = folder.join(crate::dll::ROP2P_DEFAULT_LOG_FILE);
    let (settings, from) = config::load(&folder).map_err(|e| {
        log_to(&default_log, &format!("P2P off, hooks not installed: {e}"));
        e.to_string()
    })?;
    let log_path = settings.log_file.as_ref().map_or(default_log, |f| folder.join(f));
    if !settings.p2p_enabled {
        log_to(&log_path, "P2P disabled in the configuration: hooks not installed");
        return Err("P2P disabled".into());
    }
    let version = settings.version().map_err(|e| e.to_string())?;
    // SAFETY: a NUL-terminated wide string; ws2_32 is loaded (this DLL imports it).
    let ws2 = unsafe { GetModuleHandleW(wide("ws2_32.dll").as_ptr()) };
    // SAFETY: as above; wsock32 may be absent (NULL).
    let wsock = unsafe { GetModuleHandleW(wide("wsock32.dll").as_ptr()) };
    let mut replace: Vec<(usize, usize)> = Vec::new();
    for h in hooked() {
        // SAFETY: `ws2` is a loaded module, the name NUL-terminated.
        let real = unsafe { GetProcAddress(ws2, h.name.as_ptr()) } as usize;
        if real == 0 {
            return Err(format!("ws2_32 has no {}", String::from_utf8_lossy(h.name)));
        }
        h.original.store(real, Ordering::SeqCst);
        replace.push((real, h.hook));
        if !wsock.is_null() {
            // SAFETY: as above.
            let via_wsock = unsafe { GetProcAddress(wsock, h.name.as_ptr()) } as usize;
            if via_wsock != 0 && via_wsock != real {
                replace.push((via_wsock, h.hook));
            }
        }
    }
    let log_for_start = log_path.to_string_lossy().into_owned();
    let starter_settings = settings.clone();
    let hooks = Hooks::new(
        version,
        Box::new(move |facts| {
            Batteries::start(starter_settings.clone(), facts, Some(&log_for_start))
        }),
    );
    // SAFETY: NULL names the executable, which is loaded.
    let game = unsafe { GetModuleHandleW(std::ptr::null()) };
    // SAFETY: `game` is a mapped PE image; the slots are its import table's.
    let slots = unsafe { patch_imports(game, &replace) };
    if slots.is_empty() {
        log_to(&log_path, "the game module imports none of the hooked Winsock functions");
        return Err("nothing to hook".into());
    }
    log_to(
        &log_path,
        &format!(
            "hooks installed ({} import slot(s), {}-bit), configuration {}, PACKETVER {}",
            slots.len(),
            usize::BITS,
            from.display(),
            version.number()
        ),
    );
    *state() = Some(Installed { slots, hooks, log_path, max_call: Duration::ZERO });
    INSTALLED.store(true, Ordering::SeqCst);
    Ok(())
}

/// Writes the original pointers back. The batteries instance is stopped when `stop` is true
/// (not under the loader lock: stopping joins threads).
fn uninstall(stop: bool) {
    let Some(installed) = state().take() else { return };
    // SAFETY: the slots were patched by `install` and the image is still mapped.
    unsafe { restore(&installed.slots) };
    INSTALLED.store(false, Ordering::SeqCst);
    log_to(&installed.log_path, "hooks removed: the game's Winsock calls are its own again");
    if stop {
        drop(installed);
    } else {
        std::mem::forget(installed);
    }
}

/// Patches every import-table slot of `module` holding a `from` address to the matching
/// `to`; returns the slots and their old values.
///
/// # Safety
/// `module` must be a mapped PE image.
unsafe fn patch_imports(module: HMODULE, replace: &[(usize, usize)]) -> Vec<(usize, usize)> {
    let base = module as usize;
    let read_u32 = |at: usize| -> u32 {
        // SAFETY: inside the mapped image's headers and import directory.
        unsafe { std::ptr::read_unaligned(at as *const u32) }
    };
    let nt = base + read_u32(base + 0x3C) as usize;
    let optional = nt + 4 + 20;
    let magic = read_u32(optional) & 0xFFFF;
    let directories = optional + if magic == 0x20B { 112 } else { 96 };
    let import_rva = read_u32(directories + 8) as usize;
    let mut slots = Vec::new();
    if import_rva == 0 {
        return slots;
    }
    let mut descriptor = base + import_rva;
    loop {
        let name_rva = read_u32(descriptor + 12);
        let first_thunk = read_u32(descriptor + 16) as usize;
        if name_rva == 0 || first_thunk == 0 {
            break;
        }
        let mut slot = base + first_thunk;
        loop {
            // SAFETY: the import address table, NULL-terminated, pointer-sized entries.
            let value = unsafe { std::ptr::read(slot as *const usize) };
            if value == 0 {
                break;
            }
            if let Some(&(_, to)) = replace.iter().find(|(from, _)| *from == value) {
                // SAFETY: a slot of the mapped import table, made writable for the write.
                if unsafe { write_slot(slot, to) } {
                    slots.push((slot, value));
                }
            }
            slot += std::mem::size_of::<usize>();
        }
        descriptor += 20;
    }
    slots
}

/// # Safety
/// `slot` is a pointer-sized import-table entry of a mapped image.
unsafe fn write_slot(slot: usize, value: usize) -> bool {
    let mut old = 0u32;
    let size = std::mem::size_of::<usize>();
    // SAFETY: the caller's contract; the protection is put back after the write.
    unsafe {
        if VirtualProtect(slot as *mut c_void, size, PAGE_READWRITE, &mut old) == 0 {
            return false;
        }
        std::ptr::write_volatile(slot as *mut usize, value);
        VirtualProtect(slot as *mut c_void, size, old, &mut old);
    }
    true
}

/// # Safety
/// The slots were patched by [`patch_imports`] in a still-mapped image.
unsafe fn restore(slots: &[(usize, usize)]) {
    for &(slot, value) in slots {
        // SAFETY: the caller's contract.
        unsafe { write_slot(slot, value) };
    }
}

/// The real functions, as the engine calls them.
struct Real;

fn real<F: Copy>(slot: &AtomicUsize) -> F {
    let address = slot.load(Ordering::SeqCst);
    debug_assert_eq!(std::mem::size_of::<F>(), std::mem::size_of::<usize>());
    // SAFETY: `slot` holds the address of the Winsock function of type `F`, stored by
    // `install` before any hook could run.
    unsafe { std::mem::transmute_copy::<usize, F>(&address) }
}

impl RealSockets for Real {
    fn send(&mut self, socket: SocketId, data: &[u8]) -> Result<usize, i32> {
        let len = i32::try_from(data.len()).unwrap_or(i32::MAX);
        // SAFETY: the real `send` with a readable buffer of at least `len` bytes.
        let n = unsafe { real::<SendFn>(&REAL_SEND)(socket as SOCKET, data.as_ptr(), len, 0) };
        // SAFETY: plain Winsock call.
        if n < 0 { Err(unsafe { WSAGetLastError() }) } else { Ok(n as usize) }
    }

    fn recv(&mut self, socket: SocketId, buf: &mut [u8]) -> Result<usize, i32> {
        let len = i32::try_from(buf.len()).unwrap_or(i32::MAX);
        // SAFETY: the real `recv` with a writable buffer of at least `len` bytes.
        let n = unsafe { real::<RecvFn>(&REAL_RECV)(socket as SOCKET, buf.as_mut_ptr(), len, 0) };
        // SAFETY: plain Winsock call.
        if n < 0 { Err(unsafe { WSAGetLastError() }) } else { Ok(n as usize) }
    }
}

/// Runs `f` on the installed hooks, timing it; a panic removes the hooks (the call then goes
/// to the real function through `fallback`).
fn with_hooks<R>(f: impl FnOnce(&mut Hooks<Batteries>) -> R, fallback: impl FnOnce() -> R) -> R {
    let started = Instant::now();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut guard = state();
        let installed = guard.as_mut()?;
        let r = f(&mut installed.hooks);
        let took = started.elapsed();
        if took > installed.max_call {
            installed.max_call = took;
        }
        write_notes(installed);
        Some(r)
    }));
    match outcome {
        Ok(Some(r)) => r,
        Ok(None) => fallback(),
        Err(_) => {
            if let Some(installed) = state().as_ref() {
                log_to(&installed.log_path, "a hook panicked: hooks removed, the game plays on");
            }
            uninstall(false);
            fallback()
        }
    }
}

fn set_result(r: Result<usize, i32>) -> i32 {
    match r {
        Ok(n) => i32::try_from(n).unwrap_or(i32::MAX),
        Err(e) => {
            // SAFETY: plain Winsock call.
            unsafe { WSASetLastError(e) };
            SOCKET_ERROR
        }
    }
}

unsafe extern "system" fn hook_connect(s: SOCKET, name: *const c_void, namelen: i32) -> i32 {
    // SAFETY: the game's arguments, passed on.
    let result = unsafe { real::<ConnectFn>(&REAL_CONNECT)(s, name, namelen) };
    // SAFETY: plain Winsock call; read before anything else can change it.
    let error = unsafe { WSAGetLastError() };
    let ok = result == 0 || error == WSAEWOULDBLOCK;
    if ok && !name.is_null() && namelen >= std::mem::size_of::<SockAddrIn>() as i32 {
        // SAFETY: the game passed a sockaddr of `namelen` bytes.
        let sa = unsafe { std::ptr::read_unaligned(name as *const SockAddrIn) };
        if sa.sin_family == AF_INET {
            let to = SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(sa.sin_addr),
                u16::from_be_bytes(sa.sin_port),
            ));
            with_hooks(|h| h.connect(s as SocketId, to), || ());
        }
    }
    // SAFETY: plain Winsock call: the game sees the real connect's error.
    unsafe { WSASetLastError(error) };
    result
}

unsafe extern "system" fn hook_send(s: SOCKET, buf: *const u8, len: i32, flags: i32) -> i32 {
    // SAFETY: the game's arguments, passed on.
    let pass = || unsafe { real::<SendFn>(&REAL_SEND)(s, buf, len, flags) };
    if flags != 0 || buf.is_null() || len <= 0 {
        return pass();
    }
    // SAFETY: the game's buffer of `len` bytes.
    let data = unsafe { std::slice::from_raw_parts(buf, len as usize) };
    with_hooks(|h| set_result(h.send(&mut Real, s as SocketId, data)), pass)
}

unsafe extern "system" fn hook_recv(s: SOCKET, buf: *mut u8, len: i32, flags: i32) -> i32 {
    // SAFETY: the game's arguments, passed on.
    let pass = || unsafe { real::<RecvFn>(&REAL_RECV)(s, buf, len, flags) };
    if flags != 0 || buf.is_null() || len <= 0 {
        return pass();
    }
    // SAFETY: the game's writable buffer of `len` bytes.
    let out = unsafe { std::slice::from_raw_parts_mut(buf, len as usize) };
    with_hooks(|h| set_result(h.recv(&mut Real, s as SocketId, out)), pass)
}

unsafe extern "system" fn hook_closesocket(s: SOCKET) -> i32 {
    with_hooks(|h| h.close(s as SocketId), || ());
    // SAFETY: the game's argument, passed on.
    unsafe { real::<CloseFn>(&REAL_CLOSE)(s) }
}

/// Marks sockets with whole bytes waiting for the game as readable: the real `select` does
/// not know about peer events drawn or replies held back.
unsafe extern "system" fn hook_select(
    nfds: i32,
    readfds: *mut FdSet,
    writefds: *mut FdSet,
    exceptfds: *mut FdSet,
    timeout: *const Timeval,
) -> i32 {
    let select = real::<SelectFn>(&REAL_SELECT);
    // SAFETY: the game's fd_set, if any.
    let Some(read) = (unsafe { readfds.as_mut() }) else {
        // SAFETY: the game's arguments, passed on.
        return unsafe { select(nfds, readfds, writefds, exceptfds, timeout) };
    };
    let count = (read.fd_count as usize).min(FD_SETSIZE);
    let wanted: Vec<SOCKET> = read.fd_array.get(..count).unwrap_or_default().to_vec();
    let ready: Vec<SOCKET> = with_hooks(
        |h| {
            h.tick(&mut Real);
            wanted.iter().copied().filter(|&s| h.readable_now(s as SocketId)).collect()
        },
        Vec::new,
    );
    if ready.is_empty() {
        // SAFETY: the game's arguments, passed on.
        return unsafe { select(nfds, readfds, writefds, exceptfds, timeout) };
    }
    // Something is readable now: poll the rest without waiting, then add ours.
    let zero = Timeval { tv_sec: 0, tv_usec: 0 };
    // SAFETY: the game's sets, and a valid zero timeout.
    let n = unsafe { select(nfds, readfds, writefds, exceptfds, &zero) };
    if n < 0 {
        read.fd_count = 0;
    }
    let mut extra = 0;
    for s in ready {
        let count = read.fd_count as usize;
        if read.fd_array.get(..count).is_some_and(|set| set.contains(&s)) {
            continue;
        }
        if let Some(slot) = read.fd_array.get_mut(count) {
            *slot = s;
            read.fd_count += 1;
            extra += 1;
        }
    }
    n.max(0) + extra
}

unsafe extern "system" fn hook_wsasend(
    s: SOCKET,
    buffers: *const WSABUF,
    count: u32,
    sent: *mut u32,
    flags: u32,
    overlapped: *mut c_void,
    completion: *mut c_void,
) -> i32 {
    // SAFETY: the game's arguments, passed on.
    let pass = || unsafe {
        real::<WsaSendFn>(&REAL_WSASEND)(s, buffers, count, sent, flags, overlapped, completion)
    };
    if !overlapped.is_null() || !completion.is_null() || flags != 0 || buffers.is_null() {
        return pass();
    }
    let mut data = Vec::new();
    // SAFETY: the game's `count` buffers.
    for b in unsafe { std::slice::from_raw_parts(buffers, count as usize) } {
        if !b.buf.is_null() {
            // SAFETY: each buffer holds `len` bytes.
            data.extend_from_slice(unsafe { std::slice::from_raw_parts(b.buf, b.len as usize) });
        }
    }
    let n = with_hooks(|h| set_result(h.send(&mut Real, s as SocketId, &data)), pass);
    if n >= 0 {
        if !sent.is_null() {
            // SAFETY: the game's out-parameter.
            unsafe { sent.write(n as u32) };
        }
        return 0;
    }
    n
}

unsafe extern "system" fn hook_wsarecv(
    s: SOCKET,
    buffers: *const WSABUF,
    count: u32,
    received: *mut u32,
    flags: *mut u32,
    overlapped: *mut c_void,
    completion: *mut c_void,
) -> i32 {
    // SAFETY: the game's arguments, passed on.
    let pass = || unsafe {
        real::<WsaRecvFn>(&REAL_WSARECV)(s, buffers, count, received, flags, overlapped, completion)
    };
    // SAFETY: the game's flags, if any.
    let has_flags = !flags.is_null() && unsafe { flags.read() } != 0;
    if !overlapped.is_null()
        || !completion.is_null()
        || has_flags
        || buffers.is_null()
        || count == 0
    {
        return pass();
    }
    // SAFETY: at least one buffer.
    let first = unsafe { &*buffers };
    if first.buf.is_null() || first.len == 0 {
        return pass();
    }
    // SAFETY: the first buffer holds `len` writable bytes (the rest stay unused: a short read).
    let out = unsafe { std::slice::from_raw_parts_mut(first.buf, first.len as usize) };
    let n = with_hooks(|h| set_result(h.recv(&mut Real, s as SocketId, out)), pass);
    if n >= 0 {
        if !received.is_null() {
            // SAFETY: the game's out-parameter.
            unsafe { received.write(n as u32) };
        }
        return 0;
    }
    n
}

/// 1 when the hooks are installed in the game module, 0 when not (no configuration, P2P
/// disabled, nothing to hook, removed after a failure; `p2p_dll.log` says why). Also the
/// export a patched import table (NEMO/WARP "load ro_p2p.dll") names.
#[unsafe(no_mangle)]
pub extern "C" fn rop2p_hook_installed() -> u32 {
    u32::from(INSTALLED.load(Ordering::SeqCst))
}

/// Removes the hooks and stops P2P (call before `FreeLibrary`; outside `DllMain`).
#[unsafe(no_mangle)]
pub extern "C" fn rop2p_hook_remove() {
    let _ = std::panic::catch_unwind(|| {
        if let Some(i) = state().as_ref() {
            log_to(&i.log_path, &format!("longest hooked call: {:?}", i.max_call));
        }
        uninstall(true);
    });
}

/// The DLL's entry point: installs the hooks when loaded, restores the import table when
/// unloaded (P2P is not stopped there: that would join threads under the loader lock).
///
/// cbindgen:ignore
#[unsafe(no_mangle)]
pub extern "system" fn DllMain(module: HMODULE, reason: u32, reserved: *mut c_void) -> i32 {
    let _ = std::panic::catch_unwind(|| match reason {
        DLL_PROCESS_ATTACH => {
            // SAFETY: our own module handle.
            unsafe { DisableThreadLibraryCalls(module) };
            let _ = install();
        }
        DLL_PROCESS_DETACH if reserved.is_null() => uninstall(false),
        _ => {}
    });
    1
}
