//! [`GateFramer`]: packet boundaries of what the login and char servers send a client. The map
//! server's stream is framed by [`crate::render::ZcFramer`].

use super::charsel::character_info_len;
use crate::packet::PacketVersion;

/// Which server's stream a [`GateFramer`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GateServer {
    /// The login server.
    Login,
    /// The char server: its first 4 bytes are the raw account id it sends after `CH_ENTER`.
    Char,
}

/// Why a login or char stream could not be framed any more.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GateFrameError {
    /// The server sent an id this framer does not know.
    #[error("unknown {server:?}-server packet id {id:#06X}")]
    UnknownId {
        /// Which server.
        server: GateServer,
        /// The id.
        id: u16,
    },
    /// A variable-length packet declared a length below its 4-byte header.
    #[error("{server:?}-server packet id {id:#06X} declares impossible length {len}")]
    ImpossibleLength {
        /// Which server.
        server: GateServer,
        /// The id.
        id: u16,
        /// The declared length.
        len: u16,
    },
}

/// One whole piece of a login or char stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GateFrame<'a> {
    /// The char server's raw 4-byte account id (no packet header), right after `CH_ENTER`.
    AccountId {
        /// The account id.
        account_id: u32,
        /// The 4 bytes.
        bytes: &'a [u8],
    },
    /// A whole packet.
    Packet {
        /// Its id.
        id: u16,
        /// All its bytes, id included.
        bytes: &'a [u8],
    },
}

impl GateFrame<'_> {
    /// The bytes of this piece.
    pub fn bytes(&self) -> &[u8] {
        match self {
            GateFrame::AccountId { bytes, .. } | GateFrame::Packet { bytes, .. } => bytes,
        }
    }
}

/// The length of what `server` sends with `id` at `version`: `Some(Some(n))` fixed, `Some(None)`
/// variable (u16 length at offset 2), `None` unknown.
pub fn gate_packet_len(server: GateServer, version: PacketVersion, id: u16) -> Option<Option<u16>> {
    let info = u16::try_from(character_info_len(version)).unwrap_or(u16::MAX);
    let fixed = |n: u16| Some(Some(n));
    let variable = Some(None);
    match (server, id) {
        // AC_ACCEPT_LOGIN (both forms), AC_ACK_HASH, TC_RESULT
        (GateServer::Login, 0x0AC4 | 0x0069 | 0x01DC | 0x0AE3) => variable,
        (GateServer::Login, 0x083E) => fixed(26),
        (GateServer::Login, 0x006A) => fixed(23),
        (_, 0x0081) => fixed(3),
        // HC_ACCEPT_ENTER, HC_BLOCK_CHARACTER, HC_ACCEPT_ENTER2, HC_NOTIFY_ACCESSIBLE_MAPNAME,
        // HC_ACK_CHANGE_CHARACTER_SLOT (both), HC_ACK_CHARINFO_PER_PAGE (both)
        (
            GateServer::Char,
            0x006B | 0x020D | 0x082D | 0x0840 | 0x08D5 | 0x0B70 | 0x099D | 0x0B72,
        ) => variable,
        (GateServer::Char, 0x006C | 0x006E | 0x0070) => fixed(3),
        (GateServer::Char, 0x006D | 0x0B6F) => fixed(info.saturating_add(2)),
        (GateServer::Char, 0x006F) => fixed(2),
        (GateServer::Char, 0x0071) => fixed(28),
        (GateServer::Char, 0x0AC5) => fixed(156),
        (GateServer::Char, 0x028E | 0x0290) => fixed(4),
        (GateServer::Char, 0x08FD | 0x09A0) => fixed(6),
        (GateServer::Char, 0x0828) => fixed(14),
        (GateServer::Char, 0x082A | 0x082C) => fixed(10),
        (GateServer::Char, 0x08B9) => fixed(12),
        _ => None,
    }
}

/// Frames one login-server or char-server connection, server to client. [`GateFramer::push`]
/// the bytes the server sent, then call [`GateFramer::next_frame`] until `Ok(None)`. After an
/// error every call returns it again; [`GateFramer::pending`] holds the unframed bytes.
#[derive(Clone, Debug)]
pub struct GateFramer {
    server: GateServer,
    version: PacketVersion,
    buf: Vec<u8>,
    start: usize,
    expect_account_id: bool,
    failed: Option<GateFrameError>,
}

impl GateFramer {
    /// A framer for the login server's stream.
    pub fn login(version: PacketVersion) -> GateFramer {
        GateFramer::new(GateServer::Login, version)
    }

    /// A framer for the char server's stream (the raw account id comes first).
    pub fn char(version: PacketVersion) -> GateFramer {
        GateFramer::new(GateServer::Char, version)
    }

    /// A framer for `server`'s stream.
    pub fn new(server: GateServer, version: PacketVersion) -> GateFramer {
        GateFramer {
            server,
            version,
            buf: Vec::new(),
            start: 0,
            expect_account_id: server == GateServer::Char,
            failed: None,
        }
    }

    /// Buffers bytes the server sent.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes not yet handed out (a partial packet, or everything from a bad id on).
    pub fn pending(&self) -> &[u8] {
        self.buf.get(self.start..).unwrap_or_default()
    }

    /// Why framing ended, if it has.
    pub fn error(&self) -> Option<GateFrameError> {
        self.failed
    }

    /// The next whole piece, `Ok(None)` when more bytes are needed, or why the stream cannot be
    /// framed.
    pub fn next_frame(&mut self) -> Result<Option<GateFrame<'_>>, GateFrameError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let start = self.start;
        if self.expect_account_id {
            let Some(bytes) = self.buf.get(start..start + 4) else { return Ok(None) };
            let &[a, b, c, d] = bytes else { return Ok(None) };
            let account_id = u32::from_le_bytes([a, b, c, d]);
            self.expect_account_id = false;
            self.start = start + 4;
            return Ok(Some(GateFrame::AccountId { account_id, bytes }));
        }
        let Some(&[w0, w1]) = self.buf.get(start..start + 2) else { return Ok(None) };
        let id = u16::from_le_bytes([w0, w1]);
        let server = self.server;
        let len = match gate_packet_len(server, self.version, id) {
            None => return Err(self.fail(GateFrameError::UnknownId { server, id })),
            Some(Some(n)) => usize::from(n),
            Some(None) => {
                let Some(&[l0, l1]) = self.buf.get(start + 2..start + 4) else { return Ok(None) };
                let n = u16::from_le_bytes([l0, l1]);
                if n < 4 {
                    return Err(self.fail(GateFrameError::ImpossibleLength { server, id, len: n }));
                }
                usize::from(n)
            }
        };
        let Some(bytes) = self.buf.get(start..start + len) else { return Ok(None) };
        self.start = start + len;
        Ok(Some(GateFrame::Packet { id, bytes }))
    }

    fn fail(&mut self, e: GateFrameError) -> GateFrameError {
        self.failed = Some(e);
        e
    }
}
