//! The login server: `CA_LOGIN` out, `AC_ACCEPT_LOGIN` / `AC_REFUSE_LOGIN` / `SC_NOTIFY_BAN` in.

use std::net::Ipv4Addr;

use super::{
    GateError, Sex, check_variable, cstr_at, id_of, ip_at, is_2017_forms, need, put_cstr, u16_at,
    u32_at,
};
use crate::packet::PacketVersion;

/// `CA_LOGIN`'s id.
pub const CA_LOGIN: u16 = 0x0064;
/// `AC_ACCEPT_LOGIN` from 2017-03-15 on (with the web auth token).
pub const AC_ACCEPT_LOGIN: u16 = 0x0AC4;
/// `AC_ACCEPT_LOGIN` before 2017-03-15.
pub const AC_ACCEPT_LOGIN_OLD: u16 = 0x0069;
/// `AC_REFUSE_LOGIN` from 2012 on (error u32, unblock time[20]).
pub const AC_REFUSE_LOGIN: u16 = 0x083E;
/// `AC_REFUSE_LOGIN` before 2012 (error u8).
pub const AC_REFUSE_LOGIN_OLD: u16 = 0x006A;
/// `SC_NOTIFY_BAN`.
pub const SC_NOTIFY_BAN: u16 = 0x0081;

/// Header of `0x0AC4` (up to and including the token) and size of each char server after it.
const ACCEPT_HEADER: usize = 64;
const ACCEPT_SERVER: usize = 160;
/// The same for `0x0069`.
const ACCEPT_HEADER_OLD: usize = 47;
const ACCEPT_SERVER_OLD: usize = 32;
/// Where the web auth token sits in `0x0AC4`, and its field size (16 characters and a NUL).
const TOKEN_AT: usize = 47;
const TOKEN_LEN: usize = 17;

/// Whether `version`'s login server sends a web auth token (`0x0AC4`, PACKETVER >= 20170315).
pub fn has_web_auth_token(version: PacketVersion) -> bool {
    is_2017_forms(version)
}

/// `CA_LOGIN` (55 bytes): client version, user name, password (each at most 23 bytes), client
/// type. A user name ending in `_M`/`_F` registers the account when the server allows it.
pub fn ca_login(
    client_version: u32,
    user: &str,
    password: &str,
    client_type: u8,
) -> Result<Vec<u8>, GateError> {
    let mut p = Vec::with_capacity(55);
    p.extend_from_slice(&CA_LOGIN.to_le_bytes());
    p.extend_from_slice(&client_version.to_le_bytes());
    put_cstr(&mut p, user, 24, "user name")?;
    put_cstr(&mut p, password, 24, "password")?;
    p.push(client_type);
    Ok(p)
}

/// One char server in `AC_ACCEPT_LOGIN`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CharServer {
    /// Its address as the login server hands it out.
    pub ip: Ipv4Addr,
    /// Its port.
    pub port: u16,
    /// Its display name.
    pub name: String,
    /// Players online (as rAthena reports them).
    pub users: u16,
    /// Server type (0 normal, 1 maintenance, ...).
    pub kind: u16,
    /// The "new" flag.
    pub new: u16,
    /// Offset of `ip` in the packet (the port follows at `ip_offset + 4`).
    pub ip_offset: usize,
}

/// A successful login.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginAccepted {
    /// Session key 1 (the char and map servers check it).
    pub login_id1: u32,
    /// The account id.
    pub account_id: u32,
    /// Session key 2.
    pub login_id2: u32,
    /// The account's sex.
    pub sex: Sex,
    /// The web auth token (16 lowercase hex characters), only in `0x0AC4`.
    pub web_auth_token: Option<String>,
    /// The char servers.
    pub char_servers: Vec<CharServer>,
}

/// What the login server answered to `CA_LOGIN`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoginReply {
    /// `AC_ACCEPT_LOGIN` (`0x0AC4` or `0x0069`).
    Accepted(LoginAccepted),
    /// `AC_REFUSE_LOGIN` (`0x083E` or `0x006A`): rAthena's error code (0 unregistered id,
    /// 1 wrong password, ...) and the unblock time, if any.
    Refused {
        /// The error code.
        error: u32,
        /// The unblock time text.
        unblock_time: String,
    },
    /// `SC_NOTIFY_BAN`: the reason code.
    Banned {
        /// The reason code.
        reason: u8,
    },
}

/// Parses one whole packet from the login server that answers `CA_LOGIN`.
pub fn parse_login_reply(packet: &[u8]) -> Result<LoginReply, GateError> {
    let id = id_of(packet)?;
    match id {
        AC_ACCEPT_LOGIN | AC_ACCEPT_LOGIN_OLD => {
            let (header, each) = if id == AC_ACCEPT_LOGIN {
                (ACCEPT_HEADER, ACCEPT_SERVER)
            } else {
                (ACCEPT_HEADER_OLD, ACCEPT_SERVER_OLD)
            };
            check_variable(packet, id, header)?;
            let web_auth_token =
                (id == AC_ACCEPT_LOGIN).then(|| cstr_at(packet, TOKEN_AT, TOKEN_LEN));
            let char_servers = (header..)
                .step_by(each)
                .take_while(|off| off + each <= packet.len())
                .map(|off| CharServer {
                    ip: ip_at(packet, off),
                    port: u16_at(packet, off + 4),
                    name: cstr_at(packet, off + 6, 20),
                    users: u16_at(packet, off + 26),
                    kind: u16_at(packet, off + 28),
                    new: u16_at(packet, off + 30),
                    ip_offset: off,
                })
                .collect();
            Ok(LoginReply::Accepted(LoginAccepted {
                login_id1: u32_at(packet, 4),
                account_id: u32_at(packet, 8),
                login_id2: u32_at(packet, 12),
                sex: Sex::from_u8(packet.get(46).copied().unwrap_or(0)),
                web_auth_token,
                char_servers,
            }))
        }
        AC_REFUSE_LOGIN => {
            need(packet, id, 26)?;
            Ok(LoginReply::Refused {
                error: u32_at(packet, 2),
                unblock_time: cstr_at(packet, 6, 20),
            })
        }
        AC_REFUSE_LOGIN_OLD => {
            need(packet, id, 23)?;
            Ok(LoginReply::Refused {
                error: u32::from(packet.get(2).copied().unwrap_or(0)),
                unblock_time: cstr_at(packet, 3, 20),
            })
        }
        SC_NOTIFY_BAN => {
            need(packet, id, 3)?;
            Ok(LoginReply::Banned { reason: packet.get(2).copied().unwrap_or(0) })
        }
        _ => Err(GateError::UnexpectedId { id }),
    }
}

/// The char servers' address fields of an `AC_ACCEPT_LOGIN`, for [`super::server_addresses`].
pub(crate) fn char_server_offsets(packet: &[u8], id: u16) -> Result<Vec<usize>, GateError> {
    let (header, each) = if id == AC_ACCEPT_LOGIN {
        (ACCEPT_HEADER, ACCEPT_SERVER)
    } else {
        (ACCEPT_HEADER_OLD, ACCEPT_SERVER_OLD)
    };
    check_variable(packet, id, header)?;
    Ok((header..).step_by(each).take_while(|off| off + each <= packet.len()).collect())
}
