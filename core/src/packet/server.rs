//! The two ends of a client-to-map-server connection, as references for tests and the
//! simulation: [`ClientEncoder`] writes packets the way the game client does (obfuscating ids),
//! [`ServerDecoder`] reads them the way rAthena's `clif_parse` does (de-obfuscating with its own
//! key, which advances once per packet it receives, and disconnecting on an unknown id or an
//! impossible length). Written independently of [`GameStream`](super::GameStream) on purpose.

use super::obfuscation::{KeySequence, Obfuscation};
use super::table::{PacketLen, PacketTable, PacketVersion, VARIABLE_LEN_MAX, VARIABLE_LEN_MIN};

/// Bytes a [`ServerDecoder`] buffers at most before it gives up (rAthena's receive FIFO is
/// bounded too).
pub const SERVER_DECODER_BUFFER_BYTES: usize = 1 << 20;

/// One packet as the server sees it after de-obfuscation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerPacket {
    /// The de-obfuscated id.
    pub id: u16,
    /// The packet with its id de-obfuscated (the length field was never obfuscated).
    pub bytes: Vec<u8>,
}

/// Why rAthena would disconnect the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ServerDecodeError {
    /// An id the server does not know.
    #[error("unknown packet id {id:#06X}")]
    UnknownId {
        /// The de-obfuscated id.
        id: u16,
    },
    /// An id registered with length 0.
    #[error("packet id {id:#06X} is registered with length 0")]
    ZeroLength {
        /// The de-obfuscated id.
        id: u16,
    },
    /// A variable length outside 4..=32768.
    #[error("packet id {id:#06X} declares length {len}")]
    BadLength {
        /// The de-obfuscated id.
        id: u16,
        /// The declared length.
        len: u16,
    },
    /// More than [`SERVER_DECODER_BUFFER_BYTES`] buffered.
    #[error("receive buffer overflow")]
    BufferOverflow,
}

/// rAthena's map-server side of the connection.
#[derive(Clone, Debug)]
pub struct ServerDecoder {
    table: &'static PacketTable,
    key: KeySequence,
    buf: Vec<u8>,
    failed: Option<ServerDecodeError>,
}

impl ServerDecoder {
    /// A decoder for `version`, with obfuscation on or off.
    pub fn new(version: PacketVersion, obfuscation: Obfuscation) -> ServerDecoder {
        ServerDecoder {
            table: version.table(),
            key: KeySequence::new(version.obfuscation_keys(), obfuscation),
            buf: Vec::new(),
            failed: None,
        }
    }

    /// Receives bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        if self.buf.len() + bytes.len() > SERVER_DECODER_BUFFER_BYTES {
            self.failed = Some(ServerDecodeError::BufferOverflow);
            return;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole packet, `None` if more bytes are needed, or the error that made the server
    /// disconnect (returned again on every later call).
    pub fn next_packet(&mut self) -> Option<Result<ServerPacket, ServerDecodeError>> {
        if let Some(e) = self.failed {
            return Some(Err(e));
        }
        let &[w0, w1, ..] = self.buf.as_slice() else { return None };
        let id = u16::from_le_bytes([w0, w1]) ^ self.key.mask();
        let len = match self.table.get(id).map(|s| s.len()) {
            None => return Some(Err(self.fail(ServerDecodeError::UnknownId { id }))),
            Some(PacketLen::Fixed(n)) if n < 2 => {
                return Some(Err(self.fail(ServerDecodeError::ZeroLength { id })));
            }
            Some(PacketLen::Fixed(n)) => usize::from(n),
            Some(PacketLen::Variable) => {
                let &[_, _, l0, l1, ..] = self.buf.as_slice() else { return None };
                let len = u16::from_le_bytes([l0, l1]);
                if !(VARIABLE_LEN_MIN..=VARIABLE_LEN_MAX).contains(&len) {
                    return Some(Err(self.fail(ServerDecodeError::BadLength { id, len })));
                }
                usize::from(len)
            }
        };
        if self.buf.len() < len {
            return None;
        }
        let mut bytes: Vec<u8> = self.buf.drain(..len).collect();
        if let Some(head) = bytes.get_mut(..2) {
            head.copy_from_slice(&id.to_le_bytes());
        }
        self.key.advance();
        Some(Ok(ServerPacket { id, bytes }))
    }

    /// Every whole packet available now, then the error if the server disconnected.
    pub fn drain(&mut self) -> (Vec<ServerPacket>, Option<ServerDecodeError>) {
        let mut packets = Vec::new();
        while let Some(r) = self.next_packet() {
            match r {
                Ok(p) => packets.push(p),
                Err(e) => return (packets, Some(e)),
            }
        }
        (packets, None)
    }

    /// Bytes received but not yet a whole packet.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    fn fail(&mut self, e: ServerDecodeError) -> ServerDecodeError {
        self.failed = Some(e);
        e
    }
}

/// The game client's side: obfuscates the id of each packet it sends.
#[derive(Clone, Debug)]
pub struct ClientEncoder {
    key: KeySequence,
}

impl ClientEncoder {
    /// An encoder for `version`, with obfuscation on or off.
    pub fn new(version: PacketVersion, obfuscation: Obfuscation) -> ClientEncoder {
        ClientEncoder { key: KeySequence::new(version.obfuscation_keys(), obfuscation) }
    }

    /// Appends `packet` (plain id first) to `out` with its id obfuscated, and advances the key.
    /// A packet shorter than 2 bytes is appended as is and does not advance the key.
    pub fn encode(&mut self, packet: &[u8], out: &mut Vec<u8>) {
        let at = out.len();
        out.extend_from_slice(packet);
        if let Some(&mut [ref mut a, ref mut b]) = out.get_mut(at..at + 2) {
            let wire = u16::from_le_bytes([*a, *b]) ^ self.key.mask();
            [*a, *b] = wire.to_le_bytes();
            self.key.advance();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The decoder holds exactly [`SERVER_DECODER_BUFFER_BYTES`]: filling it in two pushes is
    /// fine, one byte more overflows (rAthena's own buffer bound), and the failure stays.
    #[test]
    fn the_buffer_holds_its_bound_and_not_one_byte_more() {
        let fresh = || ServerDecoder::new(PacketVersion::V20211103, Obfuscation::Off);
        let mut d = fresh();
        d.push(&vec![0; SERVER_DECODER_BUFFER_BYTES - 3]);
        d.push(&[0; 3]);
        assert_eq!(d.failed, None, "exactly the bound");
        d.push(&[0]);
        assert_eq!(d.failed, Some(ServerDecodeError::BufferOverflow), "one byte more");
        assert_eq!(d.next_packet(), Some(Err(ServerDecodeError::BufferOverflow)));
        let mut at_once = fresh();
        at_once.push(&vec![0; SERVER_DECODER_BUFFER_BYTES + 1]);
        assert_eq!(at_once.failed, Some(ServerDecodeError::BufferOverflow));
    }

    /// `pending` counts the bytes of a packet not yet whole, and none once it is taken.
    #[test]
    fn pending_is_what_waits_for_the_rest_of_a_packet() {
        let mut d = ServerDecoder::new(PacketVersion::V20211103, Obfuscation::Off);
        let spec = PacketVersion::V20211103.table().iter().find(|s| s.len() == PacketLen::Fixed(6));
        let id = spec.expect("a 6-byte packet at 20211103").id().to_le_bytes();
        d.push(&[id[0], id[1], 1]);
        assert_eq!(d.pending(), 3);
        assert_eq!(d.next_packet(), None);
        d.push(&[2, 3, 4, id[0]]);
        assert_eq!(d.pending(), 7);
        assert!(
            matches!(d.next_packet(), Some(Ok(ServerPacket { bytes, .. })) if bytes.len() == 6)
        );
        assert_eq!(d.pending(), 1);
    }
}
