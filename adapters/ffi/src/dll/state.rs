//! What the caller's threads and the background runtime share: the bytes the node made for
//! the game (its receive path is the node's; the driver's [`GameSink`] appends here), the event
//! queue, the log, the callback, and what the driver reported (links open, peers in use).
//! Locked briefly, never across a wait on the driver, so the driver never waits on the game.

use std::collections::BTreeSet;
use std::ffi::c_void;
use std::sync::{Arc, Mutex, MutexGuard};

use ro_p2p_core::client::{ClientEvent, LinkHealth};
use ro_p2p_core::config::LogLevel;
use ro_p2p_core::node::{PeerUse, ReceivedEvent};
use ro_p2p_core::render::{MapChange, OUTPUT_BYTES_MAX, account_id_of};
use ro_p2p_core::wire::PeerId;
use ro_p2p_tokio::client::{DriverEvent, GameSink};

use super::logsink::LogSink;
use crate::event::{EventQueue, RoP2pEvent, RoP2pEventKind};

/// The integrator's event callback and its `user_data`.
pub(crate) struct Callback {
    pub f: unsafe extern "C" fn(*const RoP2pEvent, *mut c_void),
    pub user_data: *mut c_void,
}

// SAFETY: `user_data` is opaque to the library; the integrator promises (docs/dll.md, the
// header) that the callback may be invoked with it from any thread.
unsafe impl Send for Callback {}

/// The handle's log: its own lines go to its [`LogSink`] (which also receives the libraries'
/// diagnostics, see `logsink`).
pub(crate) struct Logger {
    pub sink: Option<Arc<LogSink>>,
}

impl Logger {
    pub fn enabled(&self, level: LogLevel) -> bool {
        self.sink.as_ref().is_some_and(|s| s.enabled(level))
    }

    pub fn log(&mut self, level: LogLevel, message: &str) {
        if let Some(sink) = &self.sink {
            sink.write(level, message);
        }
    }
}

/// The shared state of one instance.
pub(crate) struct DllState {
    /// Bytes for the game, in order, as the node made them; the receive hook hands them out.
    pub to_game: Vec<u8>,
    /// The server-to-game stream desynced (reported once).
    pub recv_desynced: bool,
    /// Map changes the server announced that the hooks have not taken yet.
    pub map_changes: Vec<MapChange>,
    pub events: EventQueue,
    pub log: Logger,
    pub callback: Option<Callback>,
    /// Peers whose link is open (healthy), for the link events and the counter.
    pub links_open: BTreeSet<PeerId>,
    /// Whether peers are in use, as the node last reported.
    pub p2p_active: bool,
    /// The node queued late server copies that no game send has taken yet.
    pub late_pending: bool,
}

/// The driver's [`GameSink`]: the node's bytes for the game join [`DllState::to_game`], unless
/// more than [`OUTPUT_BYTES_MAX`] wait unread (then they wait in the node, which refuses to draw
/// more peers meanwhile).
pub(crate) fn game_sink(shared: Arc<Shared>) -> GameSink {
    Box::new(move |bytes: &[u8]| {
        let mut state = shared.lock();
        if state.to_game.len() > OUTPUT_BYTES_MAX {
            return false;
        }
        state.to_game.extend_from_slice(bytes);
        true
    })
}

impl DllState {
    /// Logs `event` and queues it for the callback or for polling.
    pub fn emit(&mut self, event: RoP2pEvent) {
        let level = match event.kind {
            RoP2pEventKind::Error | RoP2pEventKind::SendDesync | RoP2pEventKind::RecvDesync => {
                LogLevel::Warn
            }
            _ => LogLevel::Info,
        };
        let text = text_of(&event);
        self.log.log(level, &format!("event {:?}: {text}", event.kind));
        self.events.push(event);
    }

    /// Tells the integrator what the node reported: `FallbackOff` when peers came into use,
    /// `FallbackOn` with the reason when they went out of it.
    fn peer_use(&mut self, usage: PeerUse) {
        self.p2p_active = usage.in_use();
        let event = match usage {
            PeerUse::InUse => RoP2pEvent::new(RoP2pEventKind::FallbackOff, 0, 0, "peers in use"),
            other => {
                let reason = match other {
                    PeerUse::P2pOff => "P2P off or the coordinator unreachable",
                    PeerUse::ZoneNotEnabled => "P2P is not enabled on this map",
                    PeerUse::NotJoined => "not in the map's session",
                    _ => "no peer link open",
                };
                RoP2pEvent::new(
                    RoP2pEventKind::FallbackOn,
                    0,
                    0,
                    &format!("everything goes to the map server: {reason}"),
                )
            }
        };
        self.emit(event);
    }

    /// Takes in one event of the driver: what the node reported becomes integrator events and
    /// log lines (the node draws peers into the game's stream itself).
    pub fn on_driver_event(&mut self, event: DriverEvent) {
        match event {
            DriverEvent::Received { from, event } => {
                if self.log.enabled(LogLevel::Debug) {
                    self.log.log(
                        LogLevel::Debug,
                        &format!("received {} from {from}", describe(&event)),
                    );
                }
            }
            DriverEvent::NotDrawn { from, event, reason } => {
                let whose = from.map_or("local echo".to_owned(), |p| format!("from {p}"));
                let what = describe(&event);
                self.log.log(LogLevel::Debug, &format!("{what} ({whose}) not drawn: {reason}"));
            }
            DriverEvent::PeerUse(usage) => self.peer_use(usage),
            DriverEvent::Dropped { from, reason } => {
                self.log.log(LogLevel::Debug, &format!("frame from {from} dropped: {reason}"));
            }
            DriverEvent::LateServerCopy { event, .. } => {
                // The bytes wait in the node for the next `rop2p_on_game_send` (an empty call
                // takes them); the node does not show the server's echo of it again.
                self.late_pending = true;
                self.log.log(
                    LogLevel::Info,
                    &format!(
                        "{} not confirmed by every peer: sent to the server late",
                        describe(&event)
                    ),
                );
            }
            DriverEvent::TransportClosed { url, reason } => {
                self.log.log(LogLevel::Info, &format!("coordinator {url}: {reason:?}"));
            }
            DriverEvent::Client(event) => self.on_client_event(event),
            other => self.log.log(LogLevel::Debug, &format!("driver: {other:?}")),
        }
    }

    fn on_client_event(&mut self, event: ClientEvent) {
        let peer_event = |kind, peer: &PeerId| {
            let aid = account_id_of(peer).map_or(0, u64::from);
            RoP2pEvent::new(kind, 0, aid, peer.as_str())
        };
        match event {
            ClientEvent::Welcomed { peer_id, url } => {
                self.log.log(LogLevel::Info, &format!("welcomed by {url} as {peer_id}"));
            }
            ClientEvent::SessionJoined { session_id, zone, peers, resumed, .. } => {
                self.log.log(
                    LogLevel::Info,
                    &format!(
                        "joined session {session_id} in {zone} with {} other member(s){}",
                        peers.len(),
                        if resumed { ", seat resumed" } else { "" }
                    ),
                );
                self.emit(RoP2pEvent::new(
                    RoP2pEventKind::SessionJoined,
                    0,
                    0,
                    session_id.as_str(),
                ));
                for peer in &peers {
                    self.emit(peer_event(RoP2pEventKind::PeerJoined, peer));
                }
            }
            ClientEvent::SessionLeft { session_id } => {
                self.links_open.clear();
                self.log.log(LogLevel::Info, &format!("left session {session_id}"));
            }
            ClientEvent::PeerJoined { peer } => {
                self.emit(peer_event(RoP2pEventKind::PeerJoined, &peer));
            }
            ClientEvent::PeerLeft { peer } => {
                self.emit(peer_event(RoP2pEventKind::PeerLeft, &peer));
            }
            ClientEvent::LinkHealthChanged { peer, health } => {
                let was_open = self.links_open.contains(&peer);
                let open = health == LinkHealth::Open;
                self.log.log(LogLevel::Debug, &format!("link {peer}: {health:?}"));
                if open && !was_open {
                    self.links_open.insert(peer.clone());
                    self.emit(RoP2pEvent::new(RoP2pEventKind::LinkUp, 0, 0, peer.as_str()));
                } else if !open && was_open {
                    self.links_open.remove(&peer);
                    self.emit(RoP2pEvent::new(RoP2pEventKind::LinkDown, 0, 0, peer.as_str()));
                }
            }
            ClientEvent::Fallback { active } => {
                self.log.log(
                    LogLevel::Info,
                    &format!("client fallback {}", if active { "on" } else { "off" }),
                );
            }
            ClientEvent::Reconnecting { url_index, delay_ms, failures } => {
                self.log.log(
                    LogLevel::Info,
                    &format!(
                        "coordinator #{url_index}: retry in {delay_ms} ms ({failures} failure(s))"
                    ),
                );
            }
            ClientEvent::JoinRefused { code } => {
                let text = format!("join refused: {}", code.as_str());
                self.emit(RoP2pEvent::new(RoP2pEventKind::Error, 0, 0, &text));
            }
            ClientEvent::CoordinatorError { code, message } => {
                let text = format!("coordinator error {}: {message}", code.as_str());
                self.emit(RoP2pEvent::new(RoP2pEventKind::Error, 0, 0, &text));
            }
            ClientEvent::CoordinatorMisbehaved { error } => {
                let text = format!("coordinator misbehaved: {error}");
                self.emit(RoP2pEvent::new(RoP2pEventKind::Error, 0, 0, &text));
            }
            ClientEvent::Stopped { reason } => {
                self.links_open.clear();
                self.log.log(LogLevel::Info, &format!("client stopped: {reason:?}"));
            }
            other => self.log.log(LogLevel::Debug, &format!("client: {other:?}")),
        }
    }
}

/// An event for the log, chat text as text.
pub(crate) fn describe(event: &ReceivedEvent) -> String {
    match event {
        ReceivedEvent::Chat { text } => format!("chat {:?}", String::from_utf8_lossy(text)),
        other => format!("{other:?}"),
    }
}

pub(crate) fn text_of(event: &RoP2pEvent) -> String {
    let bytes: Vec<u8> = event.text.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// [`DllState`] behind a lock, with the delivery lock that keeps callbacks in order.
pub(crate) struct Shared {
    state: Mutex<DllState>,
    delivering: Mutex<()>,
}

impl Shared {
    pub fn new(state: DllState) -> Arc<Shared> {
        Arc::new(Shared { state: Mutex::new(state), delivering: Mutex::new(()) })
    }

    /// Locks the state. Nothing panics while holding it, and a poisoned lock is still
    /// consistent enough to log and stop, so poisoning is ignored.
    pub fn lock(&self) -> MutexGuard<'_, DllState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands queued events to the callback, in order, without holding the state lock during
    /// a call (so the callback may call the library). If another thread is delivering, it
    /// delivers these too.
    pub fn deliver(&self) {
        loop {
            let Ok(_delivering) = self.delivering.try_lock() else { return };
            loop {
                let next = {
                    let mut state = self.lock();
                    match state.callback.as_ref() {
                        None => None,
                        Some(cb) => {
                            let (f, user_data) = (cb.f, cb.user_data);
                            state.events.pop().map(|event| (f, user_data, event))
                        }
                    }
                };
                let Some((f, user_data, event)) = next else { break };
                // SAFETY: the integrator registered `f` for exactly this signature; `event`
                // lives across the call; `user_data` is passed back as given.
                unsafe { f(&event, user_data) };
            }
            drop(_delivering);
            // An event queued while this thread held the delivery lock, by a thread that then
            // found it busy, is delivered here.
            let state = self.lock();
            if state.callback.is_none() || state.events.is_empty() {
                return;
            }
        }
    }
}
