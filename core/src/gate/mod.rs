//! The gate: the login server, the char server and the way into the map server.
//!
//! Before a player reaches the map server (where [`crate::packet`] and [`crate::render`] take
//! over) the game client logs in (`CA_LOGIN` to the login server, which answers with the
//! account id, two session keys and the list of char servers), picks or makes a character on the
//! char server (which answers `HC_NOTIFY_ZONESVR`: the map server's address) and enters the map
//! server (`CZ_ENTER`). A warp to a map on another map server hands out a new address
//! (`ZC_NPCACK_SERVERMOVE`). This module builds the client's packets of that flow, parses the
//! servers' replies, frames the login and char servers' streams ([`GateFramer`]) and rewrites
//! the server addresses in the replies ([`rewrite_server_address`]), so a proxy can keep the
//! client talking through it. Pure: bytes in, values out, no I/O.
//!
//! Layouts come from rAthena's `src/common/packets.hpp`, `src/map/packets.hpp`,
//! `src/map/clif_packetdb.hpp` and `src/map/clif_shuffle.hpp` (see `docs/rathena.md`). Addresses
//! are IPv4 in network byte order, ports little-endian, as rAthena writes them.

mod charsel;
mod follow;
mod framer;
mod login;
mod zone;

pub use charsel::{
    CH_ENTER, CH_MAKE_CHAR, CH_MAKE_CHAR_2012, CH_PING, CH_SELECT_CHAR, CharList, CharSelectReply,
    CharacterInfo, HC_ACCEPT_ENTER, HC_ACCEPT_MAKECHAR, HC_ACCEPT_MAKECHAR_OLD,
    HC_NOTIFY_ACCESSIBLE_MAPNAME, HC_NOTIFY_ZONESVR, HC_NOTIFY_ZONESVR_OLD, HC_REFUSE_ENTER,
    HC_REFUSE_MAKECHAR, MakeCharReply, ZoneServer, ch_enter, ch_make_char, ch_ping, ch_select_char,
    character_info_len, parse_char_list, parse_char_select_reply, parse_make_char_reply,
};
pub use follow::{GATE_EVENTS_MAX, GateEvent, NextServer, PlayerFacts, ReplyFollower};
pub use framer::{GateFrame, GateFrameError, GateFramer, GateServer, gate_packet_len};
pub use login::{
    AC_ACCEPT_LOGIN, AC_ACCEPT_LOGIN_OLD, AC_REFUSE_LOGIN, AC_REFUSE_LOGIN_OLD, CA_LOGIN,
    CharServer, LoginAccepted, LoginReply, SC_NOTIFY_BAN, ca_login, has_web_auth_token,
    parse_login_reply,
};
pub use zone::{
    MapEnter, MapIds, MapMove, ServerAddress, ServerMove, ZC_NPCACK_MAPMOVE, ZC_NPCACK_SERVERMOVE,
    ZC_NPCACK_SERVERMOVE_OLD, cz_enter, map_ids, parse_cz_enter, parse_map_move, parse_server_move,
    rewrite_server_address, server_addresses,
};

use crate::packet::PacketVersion;

/// A character's or account's sex as rAthena encodes it on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Sex {
    /// 0.
    Female,
    /// 1.
    Male,
}

impl Sex {
    /// The wire byte.
    pub fn as_u8(self) -> u8 {
        match self {
            Sex::Female => 0,
            Sex::Male => 1,
        }
    }

    /// The wire byte read back (anything but 0 is male, as rAthena's `sex_num2str`).
    pub fn from_u8(b: u8) -> Sex {
        if b == 0 { Sex::Female } else { Sex::Male }
    }

    /// The user-name suffix that makes rAthena's login server register an account of this sex
    /// (`new_account: yes`).
    pub fn registration_suffix(self) -> &'static str {
        match self {
            Sex::Female => "_F",
            Sex::Male => "_M",
        }
    }
}

/// Why a gate packet could not be built or parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GateError {
    /// The packet is shorter than its layout.
    #[error("packet {id:#06X} is {len} bytes, its layout needs {needed}")]
    Truncated {
        /// The packet id (0 if even the id was missing).
        id: u16,
        /// Bytes given.
        len: usize,
        /// Bytes needed.
        needed: usize,
    },
    /// The packet's id is not one this parser reads.
    #[error("packet id {id:#06X} is not one this parser reads")]
    UnexpectedId {
        /// The id.
        id: u16,
    },
    /// A variable-length packet whose length field disagrees with the bytes given.
    #[error("packet {id:#06X} declares {declared} bytes, {actual} given")]
    LengthMismatch {
        /// The id.
        id: u16,
        /// The length field.
        declared: usize,
        /// Bytes given.
        actual: usize,
    },
    /// A string does not fit its fixed-size field (which keeps one byte for the NUL).
    #[error("{field} is {len} bytes, at most {max} fit")]
    FieldTooLong {
        /// Which field.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The most that fit.
        max: usize,
    },
}

/// The packet id of `packet`, or [`GateError::Truncated`].
pub(crate) fn id_of(packet: &[u8]) -> Result<u16, GateError> {
    match packet {
        &[a, b, ..] => Ok(u16::from_le_bytes([a, b])),
        _ => Err(GateError::Truncated { id: 0, len: packet.len(), needed: 2 }),
    }
}

/// Checks that `packet` holds at least `needed` bytes.
pub(crate) fn need(packet: &[u8], id: u16, needed: usize) -> Result<(), GateError> {
    if packet.len() < needed {
        return Err(GateError::Truncated { id, len: packet.len(), needed });
    }
    Ok(())
}

/// Checks a variable-length packet's length field against the bytes given.
pub(crate) fn check_variable(packet: &[u8], id: u16, header: usize) -> Result<(), GateError> {
    need(packet, id, header.max(4))?;
    let declared = usize::from(u16_at(packet, 2));
    if declared != packet.len() {
        return Err(GateError::LengthMismatch { id, declared, actual: packet.len() });
    }
    Ok(())
}

/// Little-endian u16 at `off` (0 past the end: callers check lengths first).
pub(crate) fn u16_at(p: &[u8], off: usize) -> u16 {
    match p.get(off..off + 2) {
        Some(&[a, b]) => u16::from_le_bytes([a, b]),
        _ => 0,
    }
}

/// Little-endian u32 at `off` (0 past the end: callers check lengths first).
pub(crate) fn u32_at(p: &[u8], off: usize) -> u32 {
    match p.get(off..off + 4) {
        Some(&[a, b, c, d]) => u32::from_le_bytes([a, b, c, d]),
        _ => 0,
    }
}

/// IPv4 address in network byte order at `off`.
pub(crate) fn ip_at(p: &[u8], off: usize) -> std::net::Ipv4Addr {
    match p.get(off..off + 4) {
        Some(&[a, b, c, d]) => std::net::Ipv4Addr::new(a, b, c, d),
        _ => std::net::Ipv4Addr::UNSPECIFIED,
    }
}

/// A NUL-terminated string in a fixed field (lossy UTF-8: names are Latin-1 or a code page).
pub(crate) fn cstr_at(p: &[u8], off: usize, len: usize) -> String {
    let field = p.get(off..(off + len).min(p.len())).unwrap_or_default();
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(field.get(..end).unwrap_or_default()).into_owned()
}

/// Appends `s` into a fixed field of `len` bytes, NUL-padded; at most `len - 1` bytes fit.
pub(crate) fn put_cstr(
    out: &mut Vec<u8>,
    s: &str,
    len: usize,
    field: &'static str,
) -> Result<(), GateError> {
    let max = len.saturating_sub(1);
    if s.len() > max {
        return Err(GateError::FieldTooLong { field, len: s.len(), max });
    }
    out.extend_from_slice(s.as_bytes());
    out.resize(out.len() + (len - s.len()), 0);
    Ok(())
}

/// Whether `version`'s servers speak the 2017-03-15+ forms (`0x0AC4` with the web auth token,
/// `0x0AC5`, `0x0AC7` with a domain).
pub(crate) fn is_2017_forms(version: PacketVersion) -> bool {
    version.number() >= 20170315
}

#[cfg(test)]
mod tests;
