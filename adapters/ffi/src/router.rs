//! The core layer: no threads, no sockets. A router handle is one map-server connection of the
//! game, a [`GamePath`]: the client-to-server stream is framed, classified and routed, the
//! server-to-client stream gets peer events drawn into it, and actions routed to peers only get
//! their local echo, all decided by the core. The integrator moves the bytes: to the server, to
//! the game, and peer events to and from peers over its own transport.

use std::collections::VecDeque;
use std::ffi::c_char;

use ro_p2p_core::Instant;
use ro_p2p_core::node::GamePath;
use ro_p2p_core::packet::{ClientFamily, Obfuscation, PacketVersion, PeerEvent};
use ro_p2p_core::render::RenderRejected;
use ro_p2p_core::route::{Policy, RouteContext, Verdict};

use crate::event::{EventQueue, RoP2pEvent, RoP2pEventKind};
use crate::handles::{self, Kind};
use crate::status::{Failure, RoP2pStatus, c_str, copy_all, guard, input};

/// Peer events waiting to be sent at most; older ones are dropped first (they are stale).
pub const ROP2P_PEER_EVENTS_QUEUED_MAX: usize = 1024;
/// Bytes for the server waiting at most before the caller must read them.
pub const ROP2P_SERVER_BYTES_QUEUED_MAX: usize = 1 << 20;

/// What the router must know about the world; all four must hold for peers to be used.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RoP2pRouteContext {
    /// P2P is enabled and the coordinator reachable.
    pub p2p_enabled: bool,
    /// The current map is in `p2p_enabled_zones`.
    pub zone_enabled: bool,
    /// The client has joined a session.
    pub joined: bool,
    /// At least one peer link is healthy and keyed.
    pub peers_ready: bool,
    /// Every other session member has a healthy, keyed link; without it a `peers` policy
    /// choice also goes to the server, so unlinked members still get it.
    pub all_members_linked: bool,
}

/// Counters of a router.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RoP2pRouterStats {
    /// Game packets framed.
    pub packets: u64,
    /// Of those, sent to the server.
    pub to_server: u64,
    /// Of those, sent to peers (mirrored ones included).
    pub to_peers: u64,
    /// Peer events dropped because the caller did not poll them.
    pub peer_events_dropped: u64,
    /// Whether the game-to-server stream desynced (1) or not (0).
    pub send_desynced: u32,
    /// Whether the server-to-game stream desynced (1) or not (0).
    pub recv_desynced: u32,
    /// Peer events drawn into the game's stream.
    pub rendered: u64,
    /// Peer events not drawn (unknown unit, duplicate, desync).
    pub render_rejected: u64,
    /// Server packets dropped as duplicates of lines already shown from a peer.
    pub server_duplicates_dropped: u64,
    /// Echoes synthesised for the player's own peers-only actions.
    pub local_echoes: u64,
}

/// One map connection's send and receive paths.
pub(crate) struct Router {
    path: GamePath,
    policy: Policy,
    pub ctx: RouteContext,
    server_out: Vec<u8>,
    pub peer_events: VecDeque<Vec<u8>>,
    pub events: EventQueue,
    epoch: std::time::Instant,
    stats: RoP2pRouterStats,
    send_desync_reported: bool,
    recv_desync_reported: bool,
}

impl Kind for Router {
    const NAME: &'static str = "router";
}

impl Router {
    pub fn new(version: PacketVersion, policy: Policy, obfuscation: Obfuscation) -> Router {
        Router {
            path: GamePath::new(version, obfuscation),
            policy,
            ctx: RouteContext::SERVER_ONLY,
            server_out: Vec::new(),
            peer_events: VecDeque::new(),
            events: EventQueue::default(),
            epoch: std::time::Instant::now(),
            stats: RoP2pRouterStats::default(),
            send_desync_reported: false,
            recv_desync_reported: false,
        }
    }

    pub fn now(&self) -> Instant {
        Instant::from_millis(u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    /// Feeds game bytes; server bytes accumulate in `server_out`, peer events in `peer_events`
    /// (the path draws the local echo of those routed to peers only).
    pub fn game_send(&mut self, data: &[u8]) {
        let now = self.now();
        let mut desync_offset = None;
        let Router { path, policy, ctx, server_out, peer_events, stats, .. } = self;
        let on_verdict = |verdict: Verdict<'_>| {
            server_out.extend_from_slice(verdict.server_bytes());
            if let Verdict::Desync { offset, .. } = verdict {
                desync_offset = Some(offset);
            }
            let Verdict::Packet(p) = verdict else { return };
            stats.packets += 1;
            if p.route.to_server() {
                stats.to_server += 1;
            }
            if let Some(eligible) = p.route.to_peers() {
                stats.to_peers += 1;
                let event = eligible.event();
                let mut encoded = Vec::new();
                event.encode(&mut encoded);
                if peer_events.len() >= ROP2P_PEER_EVENTS_QUEUED_MAX {
                    peer_events.pop_front();
                    stats.peer_events_dropped += 1;
                }
                peer_events.push_back(encoded);
            }
        };
        // An echo that cannot be drawn (no own account id yet) is only missing from the game.
        path.route(now, data, policy, ctx, on_verdict, |_, _| {});
        if let (Some(offset), false) = (desync_offset, self.send_desync_reported) {
            self.send_desync_reported = true;
            self.events.push(RoP2pEvent::new(
                RoP2pEventKind::SendDesync,
                0,
                offset,
                "game-to-server stream desynced: everything now goes to the server untouched",
            ));
        }
    }

    pub fn take_server_bytes(&mut self) -> &[u8] {
        &self.server_out
    }

    pub fn server_bytes_taken(&mut self) {
        self.server_out.clear();
    }

    pub fn server_recv(&mut self, data: &[u8]) {
        let now = self.now();
        self.path.on_server_bytes(now, data);
        let desync = self.path.receive_stream().desync_reason();
        if let (Some(reason), false) = (desync, self.recv_desync_reported) {
            self.recv_desync_reported = true;
            self.events.push(RoP2pEvent::new(
                RoP2pEventKind::RecvDesync,
                0,
                0,
                &format!("server-to-game stream desynced ({reason}): injection stopped"),
            ));
        }
    }

    /// Draws a peer's event into the game's stream.
    pub fn peer_event(&mut self, aid: u32, event: &PeerEvent<'_>) -> Result<(), RenderRejected> {
        let now = self.now();
        self.path.draw_account_event(now, aid, event)
    }

    pub fn stats(&self) -> RoP2pRouterStats {
        let r = self.path.receive_stats();
        RoP2pRouterStats {
            send_desynced: u32::from(self.path.send_stream().is_desynced()),
            recv_desynced: u32::from(self.path.receive_stream().desync_reason().is_some()),
            rendered: r.rendered,
            render_rejected: r.rejected,
            server_duplicates_dropped: r.server_duplicates_dropped,
            local_echoes: r.local_echoes,
            ..self.stats
        }
    }

    /// The send hook: refuses input that would leave more than
    /// [`ROP2P_SERVER_BYTES_QUEUED_MAX`] bytes queued for the server, routes it and copies
    /// every server byte out, all or nothing.
    ///
    /// # Safety
    /// `out` valid for `cap` writes; `out_len` non-null and valid for a write.
    pub unsafe fn send_hook(
        &mut self,
        data: &[u8],
        out: *mut u8,
        cap: usize,
        out_len: *mut usize,
    ) -> Result<RoP2pStatus, Failure> {
        let queued = self.take_server_bytes().len();
        if queued + data.len() > ROP2P_SERVER_BYTES_QUEUED_MAX {
            return Err(Failure::invalid(format!(
                "{queued} bytes for the server are waiting; read them before sending more"
            )));
        }
        self.game_send(data);
        // SAFETY: the caller's contract for `out`/`cap`/`out_len`.
        unsafe { copy_all("out", self.take_server_bytes(), out, cap, out_len) }?;
        self.server_bytes_taken();
        Ok(RoP2pStatus::Ok)
    }

    /// The receive hook: feeds server bytes and writes up to `cap` bytes for the
    /// game (partial reads are normal).
    ///
    /// # Safety
    /// `out` non-null when `cap > 0` and valid for `cap` writes; `out_len` non-null and valid
    /// for a write.
    pub unsafe fn recv_hook(
        &mut self,
        data: &[u8],
        out: *mut u8,
        cap: usize,
        out_len: *mut usize,
    ) -> Result<RoP2pStatus, Failure> {
        self.server_recv(data);
        let ready = self.path.game_output();
        let n = ready.len().min(cap);
        if n > 0 {
            // SAFETY: out is non-null (cap > 0) and valid for cap >= n writes; `ready` is
            // library memory, so the regions do not overlap.
            unsafe { std::ptr::copy_nonoverlapping(ready.as_ptr(), out, n) };
        }
        self.path.consume_game_output(n);
        // SAFETY: the caller's contract for `out_len`.
        unsafe { out_len.write(n) };
        Ok(RoP2pStatus::Ok)
    }

    /// Writes how many bytes for the game wait to be read.
    ///
    /// # Safety
    /// `out` non-null and valid for a write.
    pub unsafe fn write_pending(&self, out: *mut usize) -> Result<RoP2pStatus, Failure> {
        // SAFETY: the caller's contract for `out`.
        unsafe { out.write(self.path.game_output().len()) };
        Ok(RoP2pStatus::Ok)
    }

    /// Moves the next event to `out`, or says there is none.
    ///
    /// # Safety
    /// `out` non-null and valid for a write.
    pub unsafe fn write_next_event(
        &mut self,
        out: *mut RoP2pEvent,
    ) -> Result<RoP2pStatus, Failure> {
        match self.events.pop() {
            Some(event) => {
                // SAFETY: the caller's contract for `out`.
                unsafe { out.write(event) };
                Ok(RoP2pStatus::Ok)
            }
            None => Ok(RoP2pStatus::NoData),
        }
    }
}

pub(crate) fn parse_version(packetver: u32) -> Result<PacketVersion, Failure> {
    PacketVersion::from_number(packetver).map_err(|e| Failure::invalid(e.to_string()))
}

/// The version `packetver` in the family named by `client` (NULL: rAthena's default).
///
/// # Safety
/// `client` is NULL or a NUL-terminated string.
unsafe fn parse_version_for(
    packetver: u32,
    client: *const c_char,
) -> Result<PacketVersion, Failure> {
    // SAFETY: the caller passes NULL or a NUL-terminated string.
    let family = match unsafe { c_str("client", client) }? {
        None => None,
        Some(name) => {
            Some(name.parse::<ClientFamily>().map_err(|e| Failure::invalid(e.to_string()))?)
        }
    };
    PacketVersion::new(packetver, family).map_err(|e| Failure::invalid(e.to_string()))
}

pub(crate) fn parse_obfuscation(
    version: PacketVersion,
    obfuscation: i32,
) -> Result<Obfuscation, Failure> {
    match obfuscation {
        -1 if version.obfuscated_by_default() => Ok(Obfuscation::On),
        -1 | 0 => Ok(Obfuscation::Off),
        1 => Ok(Obfuscation::On),
        other => Err(Failure::invalid(format!(
            "obfuscation must be -1 (rAthena's default for the version), 0 (off) or 1 (on), got {other}"
        ))),
    }
}

fn with_router<R>(
    handle: u64,
    f: impl FnOnce(&mut Router) -> Result<R, Failure>,
) -> Result<R, Failure> {
    let object = handles::get::<Router>(handle)?;
    let mut router = handles::lock(&object)?;
    f(&mut router)
}

/// Creates a router for one map-server connection.
///
/// `packetver`: any PACKETVER rAthena builds (e.g. 20211103, its default), in rAthena's default
/// client family for the date (see [`rop2p_router_new_for_client`] for another). `policy`: e.g.
/// `"movement=mirror,chat=peers"`, or NULL for the default (`mirror` everywhere).
/// `obfuscation`: -1 for rAthena's default at that version, 0 off, 1 on. Peers are not used
/// until [`rop2p_router_set_context`] says they may be.
///
/// # Safety
/// `policy` is NULL or a NUL-terminated string; `out_handle` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rop2p_router_new(
    packetver: u32,
    policy: *const c_char,
    obfuscation: i32,
    out_handle: *mut u64,
) -> RoP2pStatus {
    guard(|| {
        let version = parse_version(packetver)?;
        // SAFETY: forwarded from this function's own contract.
        Ok(unsafe { router_new(version, policy, obfuscation, out_handle) })
    })
}

/// The common part of the two constructors.
///
/// # Safety
/// `policy` is NULL or a NUL-terminated string; `out_handle` is valid for a write.
unsafe fn router_new(
    version: PacketVersion,
    policy: *const c_char,
    obfuscation: i32,
    out_handle: *mut u64,
) -> RoP2pStatus {
    guard(|| {
        if out_handle.is_null() {
            return Err(Failure::null("out_handle"));
        }
        // SAFETY: the caller passes NULL or a NUL-terminated string.
        let policy = match unsafe { c_str("policy", policy) }? {
            None => Policy::default(),
            Some(text) => text
                .parse::<Policy>()
                .map_err(|e| Failure::new(RoP2pStatus::ErrConfig, e.to_string()))?,
        };
        let obfuscation = parse_obfuscation(version, obfuscation)?;
        let handle = handles::insert(Router::new(version, policy, obfuscation));
        // SAFETY: checked non-null above; the caller promises it is writable.
        unsafe { out_handle.write(handle) };
        Ok(RoP2pStatus::Ok)
    })
}

/// [`rop2p_router_new`] for a client family other than rAthena's default for the date.
///
/// `client`: `"main"` (Ragexe), `"re"` (RagexeRE), `"zero"`, or NULL for rAthena's default.
/// A version rAthena does not build in that family returns `RO_P2P_STATUS_ERR_INVALID`.
///
/// # Safety
/// `client` and `policy` are NULL or NUL-terminated strings; `out_handle` is valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rop2p_router_new_for_client(
    packetver: u32,
    client: *const c_char,
    policy: *const c_char,
    obfuscation: i32,
    out_handle: *mut u64,
) -> RoP2pStatus {
    guard(|| {
        // SAFETY: the caller passes NULL or a NUL-terminated string.
        let version = unsafe { parse_version_for(packetver, client) }?;
        // SAFETY: forwarded from this function's own contract.
        Ok(unsafe { router_new(version, policy, obfuscation, out_handle) })
    })
}

/// Frees a router. Freeing it again returns `RO_P2P_STATUS_ERR_CLOSED`.
#[unsafe(no_mangle)]
pub extern "C" fn rop2p_router_free(handle: u64) -> RoP2pStatus {
    guard(|| {
        handles::remove::<Router>(handle)?;
        Ok(RoP2pStatus::Ok)
    })
}

/// Says whether peers may be used right now (the first four fields must be true; the fifth
/// decides whether a `peers` choice may skip the server).
#[unsafe(no_mangle)]
pub extern "C" fn rop2p_router_set_context(handle: u64, ctx: RoP2pRouteContext) -> RoP2pStatus {
    guard(|| {
        with_router(handle, |r| {
            r.ctx = RouteContext {
                p2p_enabled: ctx.p2p_enabled,
                zone_enabled: ctx.zone_enabled,
                joined: ctx.joined,
                peers_ready: ctx.peers_ready,
                all_members_linked: ctx.all_members_linked,
            };
            Ok(RoP2pStatus::Ok)
        })
    })
}

/// Sets the player's own account id (otherwise learnt from the server's `ZC_AID`).
#[unsafe(no_mangle)]
pub extern "C" fn rop2p_router_set_account_id(handle: u64, account_id: u32) -> RoP2pStatus {
    guard(|| {
        with_router(handle, |r| {
            r.path.set_own_account_id(account_id);
            Ok(RoP2pStatus::Ok)
        })
    })
}

/// Feeds bytes the game wrote to the map server (`data` may be NULL when `len` is 0) and
/// writes to `out` every byte now due to the server: the game's bytes minus packets routed to
/// peers only, ids re-obfuscated where needed. Partial packets are held until complete.
///
/// All or nothing: if `cap` is too small, returns `RO_P2P_STATUS_ERR_BUFFER_TOO_SMALL` with
/// `*out_len` = the size needed, keeps the bytes, and the next call (e.g. with `len` 0)
/// returns them. Peer events produced are read with [`rop2p_router_poll_peer_event`].
///
/// # Safety
/// `data` valid for `len` reads; `out` valid for `cap` writes; `out_len` valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rop2p_router_on_game_send(
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
        // SAFETY: `out_len` checked non-null; the caller's contract for `out`/`cap`.
        with_router(handle, |r| unsafe { r.send_hook(data, out, cap, out_len) })
    })
}

/// Takes the next peer event to send to every peer (the compact `PeerEvent` encoding: a tag
/// byte, format version in the high nibble, kind in the low: 1 move, 2 turn, 3 chat, 4 emote).
/// Returns `RO_P2P_STATUS_NO_DATA` when there is none; too small a buffer gives
/// `RO_P2P_STATUS_ERR_BUFFER_TOO_SMALL` with the size needed in `*out_len`, and the event stays.
///
/// # Safety
/// `out` valid for `cap` writes; `out_len` valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rop2p_router_poll_peer_event(
    handle: u64,
    out: *mut u8,
    cap: usize,
    out_len: *mut usize,
) -> RoP2pStatus {
    guard(|| {
        if out_len.is_null() {
            return Err(Failure::null("out_len"));
        }
        with_router(handle, |r| {
            let Some(event) = r.peer_events.front() else {
                // SAFETY: checked non-null; the caller promises it is writable.
                unsafe { out_len.write(0) };
                return Ok(RoP2pStatus::NoData);
            };
            // SAFETY: the caller's contract for `out`/`cap`/`out_len`.
            unsafe { copy_all("out", event, out, cap, out_len) }?;
            r.peer_events.pop_front();
            Ok(RoP2pStatus::Ok)
        })
    })
}

/// Draws an event received from the peer with account id `sender_account_id` into the game's
/// stream (read it with [`rop2p_router_on_server_recv`]). Bytes that are not a valid peer event
/// give `RO_P2P_STATUS_ERR_INVALID_ARGUMENT`; a valid event that is not shown (unit not in view,
/// duplicate of a line the server already showed, desynced stream) `RO_P2P_STATUS_ERR_REJECTED`.
///
/// # Safety
/// `event` valid for `len` reads.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rop2p_router_on_peer_event(
    handle: u64,
    sender_account_id: u32,
    event: *const u8,
    len: usize,
) -> RoP2pStatus {
    guard(|| {
        // SAFETY: the caller's contract for `event`/`len`.
        let bytes = unsafe { input("event", event, len) }?;
        let event = PeerEvent::decode(bytes)
            .map_err(|e| Failure::invalid(format!("not a peer event: {e}")))?;
        with_router(handle, |r| {
            r.peer_event(sender_account_id, &event)
                .map_err(|e| Failure::new(RoP2pStatus::ErrRejected, e.to_string()))?;
            Ok(RoP2pStatus::Ok)
        })
    })
}

/// Feeds bytes the map server sent (`data` may be NULL when `len` is 0) and writes up to `cap`
/// bytes for the game to `out`: the server's packets with peer events drawn in between.
/// `*out_len` is the number written; more may remain ([`rop2p_router_pending_game_bytes`]):
/// call again with `len` 0 to read on. This is a byte stream, so partial reads are normal.
///
/// # Safety
/// `data` valid for `len` reads; `out` valid for `cap` writes; `out_len` valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rop2p_router_on_server_recv(
    handle: u64,
    data: *const u8,
    len: usize,
    out: *mut u8,
    cap: usize,
    out_len: *mut usize,
) -> RoP2pStatus {
    guard(|| {
        // SAFETY: the caller's contract for `data`/`len`.
        let data = unsafe { recv_hook_input(data, len, out, cap, out_len) }?;
        // SAFETY: `out_len` checked non-null, `out` non-null when `cap > 0`; the caller's
        // contract for the rest.
        with_router(handle, |r| unsafe { r.recv_hook(data, out, cap, out_len) })
    })
}

/// Checks the arguments of a receive hook (this one and the batteries layer's, before the
/// handle is looked up) and borrows its input: `out_len` non-null, `out` non-null when
/// `cap > 0`, `data` NULL only with `len` 0.
///
/// # Safety
/// `data` must be valid for `len` bytes of reads for the duration of the call.
pub(crate) unsafe fn recv_hook_input<'a>(
    data: *const u8,
    len: usize,
    out: *mut u8,
    cap: usize,
    out_len: *mut usize,
) -> Result<&'a [u8], Failure> {
    if out_len.is_null() {
        return Err(Failure::null("out_len"));
    }
    if out.is_null() && cap > 0 {
        return Err(Failure::null("out"));
    }
    // SAFETY: the caller's contract for `data`/`len`.
    unsafe { input("data", data, len) }
}

/// How many bytes for the game wait to be read.
///
/// # Safety
/// `out` valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rop2p_router_pending_game_bytes(
    handle: u64,
    out: *mut usize,
) -> RoP2pStatus {
    guard(|| {
        if out.is_null() {
            return Err(Failure::null("out"));
        }
        // SAFETY: checked non-null; the caller promises it is writable.
        with_router(handle, |r| unsafe { r.write_pending(out) })
    })
}

/// Takes the next event (desyncs); `RO_P2P_STATUS_NO_DATA` when there is none.
///
/// # Safety
/// `out` valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rop2p_router_poll_event(handle: u64, out: *mut RoP2pEvent) -> RoP2pStatus {
    guard(|| {
        if out.is_null() {
            return Err(Failure::null("out"));
        }
        // SAFETY: checked non-null; the caller promises it is writable.
        with_router(handle, |r| unsafe { r.write_next_event(out) })
    })
}

/// Reads the counters.
///
/// # Safety
/// `out` valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rop2p_router_stats(
    handle: u64,
    out: *mut RoP2pRouterStats,
) -> RoP2pStatus {
    guard(|| {
        if out.is_null() {
            return Err(Failure::null("out"));
        }
        with_router(handle, |r| {
            // SAFETY: checked non-null; the caller promises it is writable.
            unsafe { out.write(r.stats()) };
            Ok(RoP2pStatus::Ok)
        })
    })
}
