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

/// The start options for the player `facts` describe, and a line for the log saying which
/// credential the coordinator gets (never the token itself). The account id is the peer id;
/// with `security.web_auth_token` on, `<account id>:<web auth token>` of the login reply the
/// hooks saw is the credential (the coordinator's `rathena` mode). A token that is not rAthena's
/// (16 lowercase hex digits) is an error; a login reply without one (before PACKETVER
/// 20170315) leaves the credential out.
pub(crate) fn start_options(
    settings: &ClientSettings,
    facts: &PlayerFacts,
) -> Result<(Options, String), String> {
    let peer_id = match facts.account_id {
        Some(aid) => Some(PeerId::new(aid.to_string()).map_err(|e| e.to_string())?),
        None => None,
    };
    let options = Options { peer_id, ..Options::default() };
    if !settings.present_web_auth_token {
        return Ok((options, "coordinator credential: none (security.web_auth_token off)".into()));
    }
    // An all-zero token field reads as an empty string: no token.
    match (facts.account_id, facts.web_auth_token.as_deref().filter(|t| !t.is_empty())) {
        (Some(aid), Some(web)) => {
            let (token, peer_id) = dll::web_auth_credential(aid, web)
                .map_err(|e| format!("the login reply's web auth token: {e}"))?;
            let note = format!("coordinator credential: account {aid}'s web auth token");
            Ok((Options { token: Some(token), peer_id: Some(peer_id), ..options }, note))
        }
        (aid, _) => Ok((
            options,
            format!(
                "coordinator credential: none (security.web_auth_token on, but the login reply gave {})",
                if aid.is_some() { "no web auth token" } else { "no account" }
            ),
        )),
    }
}

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
        let (mut options, credential) = start_options(&settings, facts)?;
        // Tests run several games on one machine: WebRTC on loopback only.
        options.udp_bind_ip = std::env::var(UDP_BIND_IP_ENV).ok().and_then(|ip| ip.parse().ok());
        let handle = dll::start_settings(settings, log_path, options).map_err(|e| e.message)?;
        let batteries = Batteries { handle, on: false };
        batteries.log(LogLevel::Info, &credential);
        Ok(batteries)
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
            if let Err(e) = dll::draw_notice(self.handle, notice) {
                self.log(LogLevel::Debug, &format!("notice {notice:?} not drawn: {e}"));
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

    fn late_server(&mut self, to_server: &mut Vec<u8>) {
        if dll::late_pending(self.handle) {
            self.game_send(&[], to_server);
        }
    }

    fn server_recv(&mut self, data: &[u8]) {
        dll::server_recv(self.handle, data);
    }

    fn server_closed(&mut self) {
        dll::server_closed(self.handle);
    }

    fn take_map_changes(&mut self) -> Vec<MapChange> {
        dll::take_map_changes(self.handle)
    }

    fn pending(&mut self) -> usize {
        self.draw_notices();
        dll::pending_game_bytes(self.handle)
    }

    fn take(&mut self, buf: &mut [u8]) -> usize {
        dll::take_game_bytes(self.handle, buf)
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddrV4;

    use ro_p2p_core::packet::PacketVersion;

    use super::*;
    use crate::hook::tracker::SocketTracker;

    const TOKEN: &str = "0123456789abcdef";

    fn settings(web_auth_token: bool) -> ClientSettings {
        let text = format!(
            r#"{{ coordinator: {{ websocket_url: "ws://127.0.0.1:1/ws" }},
                 security: {{ web_auth_token: {web_auth_token} }} }}"#
        );
        ClientSettings::from_json(&text).unwrap()
    }

    /// What the tracker learns from a 20211103 `AC_ACCEPT_LOGIN` (`0x0AC4`) carrying `token`
    /// at offset 47 (zeros: an empty one) on a followed login connection.
    fn facts_from_login_reply(aid: u32, token: &[u8; 16]) -> PlayerFacts {
        let mut p = vec![0u8; 64 + 160];
        let len = p.len() as u16;
        p[0..2].copy_from_slice(&0x0AC4u16.to_le_bytes());
        p[2..4].copy_from_slice(&len.to_le_bytes());
        p[8..12].copy_from_slice(&aid.to_le_bytes());
        p[47..63].copy_from_slice(token);
        p[64..68].copy_from_slice(&[127, 0, 0, 2]);
        p[68..70].copy_from_slice(&6121u16.to_le_bytes());
        let mut t = SocketTracker::new(PacketVersion::V20211103);
        t.on_connect(1, SocketAddrV4::new([127, 0, 0, 1].into(), 6900).into());
        t.on_server_bytes(1, &p);
        t.facts().clone()
    }

    #[test]
    fn the_login_replys_web_auth_token_is_the_credential_when_the_setting_is_on() {
        let facts = facts_from_login_reply(2_000_001, b"0123456789abcdef");
        assert_eq!(facts.web_auth_token.as_deref(), Some(TOKEN));
        let (options, note) = start_options(&settings(true), &facts).unwrap();
        assert_eq!(options.token.as_deref(), Some("2000001:0123456789abcdef"));
        assert_eq!(options.peer_id.as_ref().map(PeerId::as_str), Some("2000001"));
        assert!(note.contains("account 2000001's web auth token"), "{note}");
        assert!(!note.contains(TOKEN), "the log never shows the token: {note}");
    }

    #[test]
    fn without_the_setting_no_token_is_presented_and_the_account_is_the_peer_id() {
        let facts = facts_from_login_reply(2_000_001, b"0123456789abcdef");
        let (options, note) = start_options(&settings(false), &facts).unwrap();
        assert_eq!(options.token, None);
        assert_eq!(options.peer_id.as_ref().map(PeerId::as_str), Some("2000001"));
        assert!(note.contains("off"), "{note}");
    }

    #[test]
    fn a_login_reply_without_a_token_starts_without_a_credential() {
        let facts = facts_from_login_reply(2_000_001, &[0; 16]);
        assert_eq!(facts.web_auth_token.as_deref(), Some(""));
        let (options, note) = start_options(&settings(true), &facts).unwrap();
        assert_eq!(options.token, None);
        assert!(note.contains("no web auth token"), "{note}");
        let (options, note) = start_options(&settings(true), &PlayerFacts::default()).unwrap();
        assert_eq!((options.token, options.peer_id), (None, None));
        assert!(note.contains("no account"), "{note}");
    }

    #[test]
    fn a_token_that_is_not_rathenas_is_refused_with_its_reason() {
        let mut facts = facts_from_login_reply(2_000_001, b"0123456789abcdef");
        facts.web_auth_token = Some("0123456789ABCDEF".into());
        // `Options` has no `Debug` (it holds the credential): no `unwrap_err`.
        let Err(e) = start_options(&settings(true), &facts) else { panic!("accepted") };
        assert!(e.starts_with("the login reply's web auth token"), "{e}");
    }
}
