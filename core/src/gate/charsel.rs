//! The char server: `CH_ENTER`, `CH_MAKE_CHAR`, `CH_SELECT_CHAR` out; the character list, the
//! make-char reply and `HC_NOTIFY_ZONESVR` (where the map server is) in.

use std::net::Ipv4Addr;

use super::{
    GateError, Sex, check_variable, cstr_at, id_of, ip_at, need, put_cstr, u16_at, u32_at,
};
use crate::packet::PacketVersion;

/// `CH_ENTER`.
pub const CH_ENTER: u16 = 0x0065;
/// `CH_SELECT_CHAR`.
pub const CH_SELECT_CHAR: u16 = 0x0066;
/// `CH_MAKE_CHAR` from 2015-10-01 on (name, slot, hair, job, sex).
pub const CH_MAKE_CHAR: u16 = 0x0A39;
/// `CH_MAKE_CHAR` from 2012-03-07 to 2015-10-01 (name, slot, hair).
pub const CH_MAKE_CHAR_2012: u16 = 0x0970;
/// The char server's keep-alive (`PING`: account id); it sends no answer.
pub const CH_PING: u16 = 0x0187;
/// `HC_ACCEPT_ENTER`: the character list.
pub const HC_ACCEPT_ENTER: u16 = 0x006B;
/// `HC_REFUSE_ENTER`.
pub const HC_REFUSE_ENTER: u16 = 0x006C;
/// `HC_ACCEPT_MAKECHAR` before 2021 RE / 2020-10-07 main.
pub const HC_ACCEPT_MAKECHAR_OLD: u16 = 0x006D;
/// `HC_ACCEPT_MAKECHAR` from 2021-11-03 RE / 2020-10-07 main on.
pub const HC_ACCEPT_MAKECHAR: u16 = 0x0B6F;
/// `HC_REFUSE_MAKECHAR`.
pub const HC_REFUSE_MAKECHAR: u16 = 0x006E;
/// `HC_NOTIFY_ZONESVR` before 2017-03-15 (28 bytes).
pub const HC_NOTIFY_ZONESVR_OLD: u16 = 0x0071;
/// `HC_NOTIFY_ZONESVR` from 2017-03-15 on (156 bytes, with a domain).
pub const HC_NOTIFY_ZONESVR: u16 = 0x0AC5;
/// `HC_NOTIFY_ACCESSIBLE_MAPNAME`: no map server has the character's map.
pub const HC_NOTIFY_ACCESSIBLE_MAPNAME: u16 = 0x0840;

/// Header of `HC_ACCEPT_ENTER` before its characters (length, three slot counts, 20 reserved).
const CHAR_LIST_HEADER: usize = 27;

/// Where the fields of one `CHARACTER_INFO` sit at a version (rAthena's struct changes size with
/// PACKETVER: 64-bit exp from 2017-08-30, 64-bit hp/sp at 2021-11-03 RE, `body` from
/// 2014-10-22, `sex` from 2014-10-16).
#[derive(Clone, Copy, Debug)]
struct InfoLayout {
    job: usize,
    level: usize,
    name: usize,
    slot: usize,
    map: Option<usize>,
    sex: Option<usize>,
    len: usize,
}

impl InfoLayout {
    /// `sizeof`/`offsetof` of rAthena's `CHARACTER_INFO` at `version`, as the generator
    /// measured them.
    fn of(version: PacketVersion) -> InfoLayout {
        let g = version.generated_layout();
        let at = |v: Option<u16>| v.map_or(0, usize::from);
        InfoLayout {
            job: at(g.char_job),
            level: at(g.char_level),
            name: at(g.char_name),
            slot: at(g.char_slot),
            map: g.char_map.map(usize::from),
            sex: g.char_sex.map(usize::from),
            len: at(g.char_size),
        }
    }
}

/// Size of one character entry (`CHARACTER_INFO`) at `version`: 175 at 20211103, 147 at
/// 20151104.
pub fn character_info_len(version: PacketVersion) -> usize {
    InfoLayout::of(version).len
}

/// One character of the account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CharacterInfo {
    /// Its char id (CID).
    pub char_id: u32,
    /// Its name.
    pub name: String,
    /// The slot it sits in (what `CH_SELECT_CHAR` names).
    pub slot: u8,
    /// Job class.
    pub job: u16,
    /// Base level.
    pub base_level: u16,
    /// Its last map, e.g. `prontera.gat`.
    pub map: String,
    /// Its sex, from 2014-10-16 on.
    pub sex: Option<Sex>,
}

fn parse_info(version: PacketVersion, entry: &[u8]) -> CharacterInfo {
    let l = InfoLayout::of(version);
    CharacterInfo {
        char_id: u32_at(entry, 0),
        name: cstr_at(entry, l.name, 24),
        slot: entry.get(l.slot).copied().unwrap_or(0),
        job: u16_at(entry, l.job),
        base_level: u16_at(entry, l.level),
        map: l.map.map(|at| cstr_at(entry, at, 16)).unwrap_or_default(),
        sex: l.sex.and_then(|at| entry.get(at)).map(|&b| Sex::from_u8(b)),
    }
}

/// `CH_ENTER` (17 bytes): what the login server handed out, so the char server can check it.
pub fn ch_enter(account_id: u32, login_id1: u32, login_id2: u32, sex: Sex) -> Vec<u8> {
    let mut p = Vec::with_capacity(17);
    p.extend_from_slice(&CH_ENTER.to_le_bytes());
    p.extend_from_slice(&account_id.to_le_bytes());
    p.extend_from_slice(&login_id1.to_le_bytes());
    p.extend_from_slice(&login_id2.to_le_bytes());
    p.extend_from_slice(&0u16.to_le_bytes());
    p.push(sex.as_u8());
    p
}

/// `CH_SELECT_CHAR` (3 bytes). Never send it before `CH_ENTER`: rAthena's char server crashes.
pub fn ch_select_char(slot: u8) -> Vec<u8> {
    let mut p = CH_SELECT_CHAR.to_le_bytes().to_vec();
    p.push(slot);
    p
}

/// The char server's keep-alive (6 bytes).
pub fn ch_ping(account_id: u32) -> Vec<u8> {
    let mut p = CH_PING.to_le_bytes().to_vec();
    p.extend_from_slice(&account_id.to_le_bytes());
    p
}

/// `CH_MAKE_CHAR` at `version`: `0x0A39` (36 bytes, with job and sex) from 2015-10-01 on,
/// `0x0970` (31 bytes) before. The name holds at most 23 bytes.
pub fn ch_make_char(
    version: PacketVersion,
    name: &str,
    slot: u8,
    hair_color: u16,
    hair_style: u16,
    job: u32,
    sex: Sex,
) -> Result<Vec<u8>, GateError> {
    let new_form = version.number() >= 20151001;
    let mut p = Vec::with_capacity(36);
    let id = if new_form { CH_MAKE_CHAR } else { CH_MAKE_CHAR_2012 };
    p.extend_from_slice(&id.to_le_bytes());
    put_cstr(&mut p, name, 24, "character name")?;
    p.push(slot);
    p.extend_from_slice(&hair_color.to_le_bytes());
    p.extend_from_slice(&hair_style.to_le_bytes());
    if new_form {
        p.extend_from_slice(&job.to_le_bytes());
        p.push(sex.as_u8());
    }
    Ok(p)
}

/// The character list (`HC_ACCEPT_ENTER` `0x006B`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CharList {
    /// The characters, in the order the server listed them.
    pub characters: Vec<CharacterInfo>,
}

impl CharList {
    /// The character in `slot`, if any.
    pub fn in_slot(&self, slot: u8) -> Option<&CharacterInfo> {
        self.characters.iter().find(|c| c.slot == slot)
    }

    /// The character named `name`, if any.
    pub fn named(&self, name: &str) -> Option<&CharacterInfo> {
        self.characters.iter().find(|c| c.name == name)
    }
}

/// Parses `HC_ACCEPT_ENTER` (`0x006B`) at `version`.
pub fn parse_char_list(version: PacketVersion, packet: &[u8]) -> Result<CharList, GateError> {
    let id = id_of(packet)?;
    if id != HC_ACCEPT_ENTER {
        return Err(GateError::UnexpectedId { id });
    }
    check_variable(packet, id, CHAR_LIST_HEADER)?;
    let each = character_info_len(version);
    let characters = packet
        .get(CHAR_LIST_HEADER..)
        .unwrap_or_default()
        .chunks_exact(each)
        .map(|entry| parse_info(version, entry))
        .collect();
    Ok(CharList { characters })
}

/// What the char server answered to `CH_MAKE_CHAR`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MakeCharReply {
    /// `HC_ACCEPT_MAKECHAR` (`0x0B6F` or `0x006D`): the new character.
    Accepted(CharacterInfo),
    /// `HC_REFUSE_MAKECHAR` (`0x006E`): rAthena's error (0 name taken, 2 refused, 3 slot
    /// taken, ...).
    Refused {
        /// The error code.
        error: u8,
    },
}

/// Parses the answer to `CH_MAKE_CHAR` at `version`.
pub fn parse_make_char_reply(
    version: PacketVersion,
    packet: &[u8],
) -> Result<MakeCharReply, GateError> {
    let id = id_of(packet)?;
    match id {
        HC_ACCEPT_MAKECHAR | HC_ACCEPT_MAKECHAR_OLD => {
            let each = character_info_len(version);
            need(packet, id, 2 + each)?;
            Ok(MakeCharReply::Accepted(parse_info(
                version,
                packet.get(2..2 + each).unwrap_or_default(),
            )))
        }
        HC_REFUSE_MAKECHAR => {
            need(packet, id, 3)?;
            Ok(MakeCharReply::Refused { error: packet.get(2).copied().unwrap_or(0) })
        }
        _ => Err(GateError::UnexpectedId { id }),
    }
}

/// Where the map server is: `HC_NOTIFY_ZONESVR`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneServer {
    /// The selected character's id.
    pub char_id: u32,
    /// The map it is on, e.g. `prontera.gat`.
    pub map: String,
    /// The map server's address (a proxy may have rewritten it: connect here).
    pub ip: Ipv4Addr,
    /// The map server's port.
    pub port: u16,
}

impl ZoneServer {
    /// The map name without its `.gat`, as `CZ_ENTER`'s world knows it (`prontera`).
    pub fn map_base(&self) -> &str {
        self.map.strip_suffix(".gat").unwrap_or(&self.map)
    }
}

/// What the char server answered to `CH_SELECT_CHAR`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CharSelectReply {
    /// `HC_NOTIFY_ZONESVR` (`0x0AC5` or `0x0071`).
    Zone(ZoneServer),
    /// `HC_REFUSE_ENTER` (`0x006C`).
    Refused {
        /// rAthena's error code.
        error: u8,
    },
    /// `HC_NOTIFY_ACCESSIBLE_MAPNAME` (`0x0840`): no map server has the character's map.
    NoMapServer,
}

/// Parses the answer to `CH_SELECT_CHAR`.
pub fn parse_char_select_reply(packet: &[u8]) -> Result<CharSelectReply, GateError> {
    let id = id_of(packet)?;
    match id {
        HC_NOTIFY_ZONESVR | HC_NOTIFY_ZONESVR_OLD => {
            need(packet, id, if id == HC_NOTIFY_ZONESVR { 156 } else { 28 })?;
            Ok(CharSelectReply::Zone(ZoneServer {
                char_id: u32_at(packet, 2),
                map: cstr_at(packet, 6, 16),
                ip: ip_at(packet, 22),
                port: u16_at(packet, 26),
            }))
        }
        HC_REFUSE_ENTER => {
            need(packet, id, 3)?;
            Ok(CharSelectReply::Refused { error: packet.get(2).copied().unwrap_or(0) })
        }
        HC_NOTIFY_ACCESSIBLE_MAPNAME => {
            check_variable(packet, id, 4)?;
            Ok(CharSelectReply::NoMapServer)
        }
        _ => Err(GateError::UnexpectedId { id }),
    }
}
