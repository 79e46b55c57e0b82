//! Events for the integrator: desyncs, peers joining and leaving, fallback, errors. Polled
//! ([`RoP2pEvent`] by value) or delivered to a callback in the batteries layer.

use std::collections::VecDeque;
use std::ffi::c_char;

use crate::status::write_text;

/// Events kept at most until polled; the oldest are dropped first.
pub const ROP2P_EVENTS_QUEUED_MAX: usize = 256;
/// Size of [`RoP2pEvent::text`], NUL included.
pub const ROP2P_EVENT_TEXT_BYTES: usize = 256;

/// What happened.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoP2pEventKind {
    /// The game-to-server stream could not be framed; it now goes to the server untouched.
    /// `value`: stream offset (core layer; 0 in the batteries layer).
    SendDesync = 1,
    /// The server-to-game stream could not be framed; peer events are no longer drawn.
    RecvDesync = 2,
    /// Connected to the coordinator and joined a session. `text`: session id.
    SessionJoined = 10,
    /// A peer joined the session. `text`: its peer id; `value`: its account id (0 if not numeric).
    PeerJoined = 11,
    /// A peer left. `text`, `value`: as for `PeerJoined`.
    PeerLeft = 12,
    /// P2P is off; everything goes to the server (coordinator unreachable or retries used up).
    FallbackOn = 13,
    /// P2P is usable again.
    FallbackOff = 14,
    /// A link to a peer opened. `text`: its peer id.
    LinkUp = 15,
    /// A link to a peer closed. `text`: its peer id.
    LinkDown = 16,
    /// Something failed. `code`: a status or error number; `text`: what.
    Error = 20,
}

/// One event, by value; `text` is NUL-terminated UTF-8.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RoP2pEvent {
    /// What happened.
    pub kind: RoP2pEventKind,
    /// A code, by kind (0 if none).
    pub code: i32,
    /// A number, by kind (0 if none).
    pub value: u64,
    /// A peer id, session id or message, by kind.
    pub text: [c_char; ROP2P_EVENT_TEXT_BYTES],
}

impl RoP2pEvent {
    /// An event with `text` cut to fit.
    pub fn new(kind: RoP2pEventKind, code: i32, value: u64, text: &str) -> RoP2pEvent {
        let mut event = RoP2pEvent { kind, code, value, text: [0; ROP2P_EVENT_TEXT_BYTES] };
        write_text(&mut event.text, text);
        event
    }
}

/// A bounded queue of events.
#[derive(Debug, Default)]
pub(crate) struct EventQueue {
    queue: VecDeque<RoP2pEvent>,
    pub dropped: u64,
}

impl EventQueue {
    pub fn push(&mut self, event: RoP2pEvent) {
        if self.queue.len() >= ROP2P_EVENTS_QUEUED_MAX {
            self.queue.pop_front();
            self.dropped += 1;
        }
        self.queue.push_back(event);
    }

    pub fn pop(&mut self) -> Option<RoP2pEvent> {
        self.queue.pop_front()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}
