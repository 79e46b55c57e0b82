//! The map server's door: `CZ_ENTER` per version, the map-change packets, and the server
//! addresses in login, char and map replies that a proxy rewrites.

use std::net::Ipv4Addr;

use super::charsel::{HC_NOTIFY_ZONESVR, HC_NOTIFY_ZONESVR_OLD};
use super::login::{AC_ACCEPT_LOGIN, AC_ACCEPT_LOGIN_OLD, char_server_offsets};
use super::{GateError, Sex, cstr_at, id_of, ip_at, need, u16_at, u32_at};
use crate::packet::{PacketLen, PacketSpec, PacketTable, PacketVersion};

/// `ZC_NPCACK_MAPMOVE`: a warp on the same map server (22 bytes).
pub const ZC_NPCACK_MAPMOVE: u16 = 0x0091;
/// `ZC_NPCACK_SERVERMOVE` before 2017-03-15 (28 bytes).
pub const ZC_NPCACK_SERVERMOVE_OLD: u16 = 0x0092;
/// `ZC_NPCACK_SERVERMOVE` (with a domain) from 2017-03-15 on (156 bytes).
pub const ZC_NPCACK_SERVERMOVE: u16 = 0x0AC7;

/// The client-to-map-server ids that change between versions (rAthena's `clif_shuffle.hpp`
/// and `clif_packetdb.hpp`), and `CZ_ENTER`'s layout. Ids are plain: obfuscate them with
/// [`crate::packet::ClientEncoder`] where the version is obfuscated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapIds {
    /// `CZ_ENTER` (`clif_parse_WantToConnection`).
    pub enter: u16,
    /// `CZ_ENTER`'s length.
    pub enter_len: usize,
    /// Offset of the sex byte in `CZ_ENTER` (after account id, char id, login id 1, tick).
    pub enter_sex_at: usize,
    /// `CZ_REQUEST_MOVE` (`clif_parse_WalkToXY`, 5 bytes).
    pub walk: u16,
    /// `CZ_REQUEST_TIME` (`clif_parse_TickSend`, 6 bytes).
    pub tick: u16,
    /// `CZ_CHANGE_DIRECTION` (`clif_parse_ChangeDir`, 5 bytes).
    pub turn: u16,
}

impl MapIds {
    /// `CZ_NOTIFY_ACTORINIT` (2 bytes): the client finished loading the map.
    pub const LOADED: u16 = 0x007D;
    /// `CZ_REQUEST_CHAT` (variable): public chat.
    pub const CHAT: u16 = 0x00F3;
    /// `CZ_REQ_EMOTION` (3 bytes).
    pub const EMOTE: u16 = 0x00BF;
    /// `CZ_CONTACTNPC` (7 bytes: npc id, type).
    pub const NPC_CLICK: u16 = 0x0090;
    /// `CZ_REQ_NEXT_SCRIPT` (6 bytes: npc id).
    pub const NPC_NEXT: u16 = 0x00B9;
    /// `CZ_CHOOSE_MENU` (7 bytes: npc id, choice; 255 cancels).
    pub const NPC_MENU: u16 = 0x00B8;
    /// `CZ_CLOSE_DIALOG` (6 bytes: npc id).
    pub const NPC_CLOSE: u16 = 0x0146;
}

/// The version-dependent map ids of `version`, read from its generated table: for each
/// handler, the id with rAthena's usual shape (length and field offsets) that the current
/// clients use (`0x0436`, `0x035F`, `0x0360`, `0x0361` where those carry the handler), else the
/// highest such id (the shuffled ids of a date are its newest). rAthena accepts every id it
/// registers for a handler.
pub fn map_ids(version: PacketVersion) -> MapIds {
    let table = version.table();
    let pick = |handler: &str, preferred: u16, len: Option<u16>, offsets: &[usize]| {
        pick_id(table, handler, preferred, len, offsets)
    };
    let enter = pick("clif_parse_WantToConnection", 0x0436, None, &[2, 6, 10, 14]);
    let (enter_id, enter_len) = match enter.map(|s| (s.id(), s.len())) {
        Some((id, PacketLen::Fixed(n))) => (id, usize::from(n)),
        _ => (0x0436, 19),
    };
    let id_of = |s: Option<&PacketSpec>, fallback: u16| s.map_or(fallback, |s| s.id());
    MapIds {
        enter: enter_id,
        enter_len,
        enter_sex_at: enter
            .and_then(|s| s.field_offsets().get(4))
            .unwrap_or(enter_len.saturating_sub(1)),
        walk: id_of(pick("clif_parse_WalkToXY", 0x035F, Some(5), &[2]), 0x035F),
        tick: id_of(pick("clif_parse_TickSend", 0x0360, Some(6), &[2]), 0x0360),
        turn: id_of(pick("clif_parse_ChangeDir", 0x0361, Some(5), &[2, 4]), 0x0361),
    }
}

/// The id of `handler` with the usual shape (`len`, and `offsets` where the table has them):
/// `preferred` if it is one, else the highest.
fn pick_id<'t>(
    table: &'t PacketTable,
    handler: &str,
    preferred: u16,
    len: Option<u16>,
    offsets: &[usize],
) -> Option<&'t PacketSpec> {
    let shaped = |s: &&PacketSpec| {
        s.handler() == handler
            && len.is_none_or(|n| s.len() == PacketLen::Fixed(n))
            && offsets.iter().enumerate().all(|(i, &at)| {
                let got = s.field_offsets().get(i);
                got.is_none() || got == Some(at)
            })
    };
    table
        .iter()
        .filter(shaped)
        .find(|s| s.id() == preferred)
        .or_else(|| table.iter().filter(shaped).last())
}

/// `CZ_ENTER` at `version`, with its plain id: account id, char id, login id 1 (from the login
/// reply), the client's tick and sex. The map server checks them against the char server's
/// record of the select.
pub fn cz_enter(
    version: PacketVersion,
    account_id: u32,
    char_id: u32,
    login_id1: u32,
    client_tick: u32,
    sex: Sex,
) -> Vec<u8> {
    let ids = map_ids(version);
    let mut p = Vec::with_capacity(ids.enter_len);
    p.extend_from_slice(&ids.enter.to_le_bytes());
    p.extend_from_slice(&account_id.to_le_bytes());
    p.extend_from_slice(&char_id.to_le_bytes());
    p.extend_from_slice(&login_id1.to_le_bytes());
    p.extend_from_slice(&client_tick.to_le_bytes());
    p.resize(ids.enter_sex_at, 0);
    p.push(sex.as_u8());
    p
}

/// What `CZ_ENTER` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapEnter {
    /// Account id.
    pub account_id: u32,
    /// Char id.
    pub char_id: u32,
    /// Login id 1.
    pub login_id1: u32,
    /// The client's tick.
    pub client_tick: u32,
    /// Sex.
    pub sex: Sex,
}

/// Parses `CZ_ENTER` at `version` (id already de-obfuscated).
pub fn parse_cz_enter(version: PacketVersion, packet: &[u8]) -> Result<MapEnter, GateError> {
    let ids = map_ids(version);
    let id = id_of(packet)?;
    if id != ids.enter {
        return Err(GateError::UnexpectedId { id });
    }
    need(packet, id, ids.enter_len)?;
    Ok(MapEnter {
        account_id: u32_at(packet, 2),
        char_id: u32_at(packet, 6),
        login_id1: u32_at(packet, 10),
        client_tick: u32_at(packet, 14),
        sex: Sex::from_u8(packet.get(ids.enter_sex_at).copied().unwrap_or(0)),
    })
}

/// `ZC_NPCACK_MAPMOVE`: the player changes map on the same map server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapMove {
    /// The map, e.g. `izlude.gat`.
    pub map: String,
    /// Cell x.
    pub x: u16,
    /// Cell y.
    pub y: u16,
}

/// Parses `ZC_NPCACK_MAPMOVE` (`0x0091`).
pub fn parse_map_move(packet: &[u8]) -> Result<MapMove, GateError> {
    let id = id_of(packet)?;
    if id != ZC_NPCACK_MAPMOVE {
        return Err(GateError::UnexpectedId { id });
    }
    need(packet, id, 22)?;
    Ok(MapMove { map: cstr_at(packet, 2, 16), x: u16_at(packet, 18), y: u16_at(packet, 20) })
}

/// `ZC_NPCACK_SERVERMOVE`: the player changes to a map on another map server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerMove {
    /// The map, e.g. `izlude.gat`.
    pub map: String,
    /// Cell x.
    pub x: u16,
    /// Cell y.
    pub y: u16,
    /// The other map server's address.
    pub ip: Ipv4Addr,
    /// Its port.
    pub port: u16,
}

/// Parses `ZC_NPCACK_SERVERMOVE` (`0x0092` or `0x0AC7`).
pub fn parse_server_move(packet: &[u8]) -> Result<ServerMove, GateError> {
    let id = id_of(packet)?;
    let len = match id {
        ZC_NPCACK_SERVERMOVE => 156,
        ZC_NPCACK_SERVERMOVE_OLD => 28,
        _ => return Err(GateError::UnexpectedId { id }),
    };
    need(packet, id, len)?;
    Ok(ServerMove {
        map: cstr_at(packet, 2, 16),
        x: u16_at(packet, 18),
        y: u16_at(packet, 20),
        ip: ip_at(packet, 22),
        port: u16_at(packet, 26),
    })
}

/// One server address inside a packet: where it is and what it says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerAddress {
    /// Offset of the IPv4 address (4 bytes, network order).
    pub ip_offset: usize,
    /// Offset of the port (2 bytes, little-endian).
    pub port_offset: usize,
    /// The address.
    pub ip: Ipv4Addr,
    /// The port.
    pub port: u16,
}

impl ServerAddress {
    /// Writes `ip` and `port` over this address in `packet` (the packet it was read from).
    pub fn write(&self, packet: &mut [u8], ip: Ipv4Addr, port: u16) -> Result<(), GateError> {
        let id = id_of(packet)?;
        need(packet, id, self.port_offset + 2)?;
        need(packet, id, self.ip_offset + 4)?;
        if let Some(at) = packet.get_mut(self.ip_offset..self.ip_offset + 4) {
            at.copy_from_slice(&ip.octets());
        }
        if let Some(at) = packet.get_mut(self.port_offset..self.port_offset + 2) {
            at.copy_from_slice(&port.to_le_bytes());
        }
        Ok(())
    }
}

/// Every server address in a whole server packet: each char server of `AC_ACCEPT_LOGIN`
/// (`0x0AC4`, `0x0069`), the map server of `HC_NOTIFY_ZONESVR` (`0x0AC5`, `0x0071`) and of
/// `ZC_NPCACK_SERVERMOVE` (`0x0AC7`, `0x0092`). Any other id: [`GateError::UnexpectedId`].
pub fn server_addresses(packet: &[u8]) -> Result<Vec<ServerAddress>, GateError> {
    let id = id_of(packet)?;
    let at = |ip_offset: usize| ServerAddress {
        ip_offset,
        port_offset: ip_offset + 4,
        ip: ip_at(packet, ip_offset),
        port: u16_at(packet, ip_offset + 4),
    };
    match id {
        AC_ACCEPT_LOGIN | AC_ACCEPT_LOGIN_OLD => {
            Ok(char_server_offsets(packet, id)?.into_iter().map(at).collect())
        }
        HC_NOTIFY_ZONESVR | ZC_NPCACK_SERVERMOVE => {
            need(packet, id, 156)?;
            Ok(vec![at(22)])
        }
        HC_NOTIFY_ZONESVR_OLD | ZC_NPCACK_SERVERMOVE_OLD => {
            need(packet, id, 28)?;
            Ok(vec![at(22)])
        }
        _ => Err(GateError::UnexpectedId { id }),
    }
}

/// Rewrites every server address in `packet` (see [`server_addresses`]) to `ip:port`, in place;
/// returns how many were rewritten. On error the packet is unchanged.
pub fn rewrite_server_address(
    packet: &mut [u8],
    ip: Ipv4Addr,
    port: u16,
) -> Result<usize, GateError> {
    let addresses = server_addresses(packet)?;
    for a in &addresses {
        a.write(packet, ip, port)?;
    }
    Ok(addresses.len())
}
