//! The batteries layer as the hooks use it ([`MapPath`]): one instance for the game process,
//! started at the first map-server connection with the player's account id as its peer id,
//! and the one-line notice drawn into the game's chat window when P2P turns on or off.

use std::ffi::CString;

use ro_p2p_core::config::{ClientSettings, LogLevel};
use ro_p2p_core::gate::PlayerFacts;
use ro_p2p_core::render::MapChange;
use ro_p2p_core::wire::PeerId;

use super::engine::MapPath;
use crate::dll::{self, Options};
use crate::event::{RoP2pEvent, RoP2pEventKind};
use crate::status::RoP2pStatus;

/// The notice drawn when peers are in use.
pub const NOTICE_ON: &str = "[P2P] on: walking, chat and emotes go to nearby players directly";
/// The notice drawn when everything goes through the server again.
pub const NOTICE_OFF: &str = "[P2P] off: everything goes through the server";

/// An environment variable naming the IP address WebRTC binds (`127.0.0.1` in tests); unset:
/// every interface.
pub const UDP_BIND_IP_ENV: &str = "ROP2P_UDP_BIND_IP";

/// A started batteries-layer instance.
#[derive(Debug)]
pub struct Batteries {
    handle: u64,
    /// Whether the last P2P notice said "on".
    on: bool,
}

impl Batteries {
    /// Starts an instance for the player `facts` describe (its account id is the peer id).
    pub fn start(
        settings: ClientSettings,
        facts: &PlayerFacts,
        log_path: Option<&str>,
    ) -> Result<Batteries, String> {
        let peer_id = match facts.account_id {
            Some(aid) => Some(PeerId::new(aid.to_string()).map_err(|e| e.to_string())?),
            None => None,
        };
        // Tests run several games on one machine: WebRTC on loopback only.
        let udp_bind_ip = std::env::var(UDP_BIND_IP_ENV).ok().and_then(|ip| ip.parse().ok());
        let options = Options { peer_id, udp_bind_ip, ..Options::default() };
        let handle = dll::start_settings(settings, log_path, options).map_err(|e| e.message)?;
        Ok(Batteries { handle, on: false })
    }

    /// The instance's handle (for `rop2p_stats` and the like).
    pub fn handle(&self) -> u64 {
        self.handle
    }

    /// Writes a line to the instance's log.
    pub fn log(&self, level: LogLevel, line: &str) {
        dll::log_line(self.handle, level, line);
    }

    /// Turns P2P state changes into notices in the game's stream.
    fn draw_notices(&mut self) {
        loop {
            let mut event = RoP2pEvent::new(RoP2pEventKind::Error, 0, 0, "");
            // SAFETY: `event` is a valid, writable event.
            let status = unsafe { crate::dll::rop2p_poll_event(self.handle, &mut event) };
            if status != RoP2pStatus::Ok {
                return;
            }
            let notice = match event.kind {
                RoP2pEventKind::FallbackOff if !self.on => NOTICE_ON,
                RoP2pEventKind::FallbackOn if self.on => NOTICE_OFF,
                _ => continue,
            };
            self.on = !self.on;
            let drawn = dll::with_receive(self.handle, |r| r.recv.push_notice(notice));
            if !matches!(drawn, Ok(Ok(()))) {
                self.log(LogLevel::Debug, &format!("notice {notice:?} not drawn: {drawn:?}"));
            }
        }
    }
}

impl Drop for Batteries {
    fn drop(&mut self) {
        let _ = crate::dll::rop2p_stop(self.handle);
    }
}

impl MapPath for Batteries {
    fn new_map_connection(&mut self, map: Option<&str>) {
        let _ = crate::dll::rop2p_new_map_connection(self.handle);
        if let Some(map) = map {
            self.set_zone(map);
        }
    }

    fn set_zone(&mut self, map: &str) {
        if let Ok(name) = CString::new(map) {
            // SAFETY: `name` is NUL-terminated and outlives the call.
            let _ = unsafe { crate::dll::rop2p_set_zone(self.handle, name.as_ptr()) };
        }
    }

    fn game_send(&mut self, data: &[u8], to_server: &mut Vec<u8>) {
        let mut out = vec![0u8; data.len() * 2 + 1024];
        let mut out_len = 0usize;
        for _ in 0..2 {
            // SAFETY: `data` is readable for its length, `out` writable for its length,
            // `out_len` writable.
            let status = unsafe {
                crate::dll::rop2p_on_game_send(
                    self.handle,
                    data.as_ptr(),
                    data.len(),
                    out.as_mut_ptr(),
                    out.len(),
                    &mut out_len,
                )
            };
            match status {
                RoP2pStatus::Ok => {
                    to_server.extend_from_slice(out.get(..out_len).unwrap_or_default());
                    return;
                }
                // The routing happened; take the bytes with a larger buffer (and no new data).
                RoP2pStatus::ErrBufferTooSmall => {
                    out.resize(out_len, 0);
                    // SAFETY: as above, with no input.
                    let again = unsafe {
                        crate::dll::rop2p_on_game_send(
                            self.handle,
                            std::ptr::null(),
                            0,
                            out.as_mut_ptr(),
                            out.len(),
                            &mut out_len,
                        )
                    };
                    if again == RoP2pStatus::Ok {
                        to_server.extend_from_slice(out.get(..out_len).unwrap_or_default());
                        return;
                    }
                }
                _ => {}
            }
        }
        self.log(LogLevel::Warn, "send hook failed; the game's bytes go to the server as they are");
        to_server.extend_from_slice(data);
    }

    fn server_recv(&mut self, data: &[u8]) {
        let _ = dll::with_receive(self.handle, |r| r.server_recv(data));
    }

    fn server_closed(&mut self) {
        let _ = dll::with_receive(self.handle, |r| r.recv.finish());
    }

    fn take_map_changes(&mut self) -> Vec<MapChange> {
        dll::with_receive(self.handle, |r| r.recv.take_map_changes().collect()).unwrap_or_default()
    }

    fn pending(&mut self) -> usize {
        self.draw_notices();
        dll::with_receive(self.handle, |r| r.recv.output().len()).unwrap_or(0)
    }

    fn take(&mut self, buf: &mut [u8]) -> usize {
        dll::with_receive(self.handle, |r| {
            let ready = r.recv.output();
            let n = ready.len().min(buf.len());
            if let (Some(to), Some(from)) = (buf.get_mut(..n), ready.get(..n)) {
                to.copy_from_slice(from);
            }
            r.recv.consume(n);
            n
        })
        .unwrap_or(0)
    }
}
