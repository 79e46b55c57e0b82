//! [`ZcFramer`]: packet boundaries of the server-to-client stream. Bytes from the map server go
//! in, in any split; whole packets come out, so whatever is injected between two of them lands
//! on a boundary. An id the version's table does not have, or an impossible length, desyncs the
//! stream: from then on every byte passes untouched and nothing more is parsed.

use super::table::{ZC_VARIABLE_LEN_MIN, ZcLen, ZcTable};
use crate::packet::PacketVersion;

/// Why the server-to-client stream could not be framed any more.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ZcDesyncReason {
    /// The server sent an id the version's ZC table does not have.
    #[error("unknown server packet id {id:#06X}")]
    UnknownId {
        /// The id.
        id: u16,
    },
    /// A variable-length packet declared a length below 4.
    #[error("server packet id {id:#06X} declares impossible length {len}")]
    ImpossibleLength {
        /// The id.
        id: u16,
        /// The declared length.
        len: u16,
    },
}

/// One piece of the server-to-client stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZcFrame<'a> {
    /// A whole packet.
    Packet {
        /// Its id.
        id: u16,
        /// All its bytes, id included.
        bytes: &'a [u8],
    },
    /// Framing ended here; `bytes` (everything buffered from the bad id on) pass untouched.
    Desync {
        /// Why.
        reason: ZcDesyncReason,
        /// Bytes to hand to the game as they are.
        bytes: &'a [u8],
    },
    /// Bytes after a desync, to hand to the game as they are.
    PassThrough {
        /// The bytes.
        bytes: &'a [u8],
    },
}

impl ZcFrame<'_> {
    /// The bytes of this piece, for the game client.
    pub fn bytes(&self) -> &[u8] {
        match self {
            ZcFrame::Packet { bytes, .. }
            | ZcFrame::Desync { bytes, .. }
            | ZcFrame::PassThrough { bytes } => bytes,
        }
    }
}

/// Frames one map-server-to-client connection. [`ZcFramer::push`] the bytes the server sent,
/// then call [`ZcFramer::next_frame`] until `None`.
#[derive(Clone, Debug)]
pub struct ZcFramer {
    table: &'static ZcTable,
    buf: Vec<u8>,
    /// Index in `buf` of the first byte not yet handed out.
    start: usize,
    desync: Option<ZcDesyncReason>,
}

impl ZcFramer {
    /// A framer for the server-to-client stream of `version`.
    pub fn new(version: PacketVersion) -> ZcFramer {
        ZcFramer { table: ZcTable::of(version), buf: Vec::new(), start: 0, desync: None }
    }

    /// Buffers bytes the server sent.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes of a packet whose end has not arrived yet.
    pub fn pending(&self) -> &[u8] {
        self.buf.get(self.start..).unwrap_or_default()
    }

    /// Whether the stream sits on a packet boundary (nothing partial is buffered).
    pub fn at_boundary(&self) -> bool {
        self.pending().is_empty()
    }

    /// Why framing ended, if it has.
    pub fn desync_reason(&self) -> Option<ZcDesyncReason> {
        self.desync
    }

    /// The next whole packet (or pass-through bytes after a desync), or `None` when the buffered
    /// bytes do not hold a whole packet.
    pub fn next_frame(&mut self) -> Option<ZcFrame<'_>> {
        let start = self.start;
        if self.desync.is_some() {
            if start >= self.buf.len() {
                return None;
            }
            self.start = self.buf.len();
            return Some(ZcFrame::PassThrough { bytes: self.buf.get(start..)? });
        }
        let &[w0, w1] = self.buf.get(start..start + 2)? else { return None };
        let id = u16::from_le_bytes([w0, w1]);
        let len = match self.table.get(id) {
            None => return Some(self.desync(ZcDesyncReason::UnknownId { id })),
            Some(ZcLen::Fixed(n)) => usize::from(n),
            Some(ZcLen::Variable) => {
                let &[l0, l1] = self.buf.get(start + 2..start + 4)? else { return None };
                let n = u16::from_le_bytes([l0, l1]);
                if n < ZC_VARIABLE_LEN_MIN {
                    return Some(self.desync(ZcDesyncReason::ImpossibleLength { id, len: n }));
                }
                usize::from(n)
            }
        };
        let bytes = self.buf.get(start..start + len)?;
        self.start = start + len;
        Some(ZcFrame::Packet { id, bytes })
    }

    fn desync(&mut self, reason: ZcDesyncReason) -> ZcFrame<'_> {
        let start = self.start;
        self.desync = Some(reason);
        self.start = self.buf.len();
        ZcFrame::Desync { reason, bytes: self.buf.get(start..).unwrap_or_default() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::packets::{ZC_NOTIFY_CHAT, ZC_NOTIFY_TIME};

    /// `ZC_NOTIFY_TIME` (`0x007F`, 6 bytes at every version) with `tick`.
    fn time(tick: u32) -> Vec<u8> {
        let mut p = ZC_NOTIFY_TIME.to_le_bytes().to_vec();
        p.extend_from_slice(&tick.to_le_bytes());
        p
    }

    /// The bytes of a packet whose end has not come are pending, and the stream is off a
    /// boundary until the rest arrives (what is injected must wait for it).
    #[test]
    fn a_partial_packet_is_pending_until_its_end_arrives() {
        let mut f = ZcFramer::new(PacketVersion::V20211103);
        assert!(f.at_boundary());
        let p = time(7);
        f.push(&p[..4]);
        assert_eq!(f.next_frame(), None);
        assert_eq!((f.pending(), f.at_boundary()), (&p[..4], false));
        f.push(&p[4..]);
        assert_eq!(f.next_frame(), Some(ZcFrame::Packet { id: ZC_NOTIFY_TIME, bytes: &p }));
        assert!(f.pending().is_empty() && f.at_boundary());
    }

    /// Handed-out packets do not stay in the buffer: a long connection keeps at most what
    /// arrived since the last packets were taken.
    #[test]
    fn handed_out_packets_leave_the_buffer() {
        let mut f = ZcFramer::new(PacketVersion::V20211103);
        for tick in 0..1_000 {
            f.push(&time(tick));
            while f.next_frame().is_some() {}
            assert!(f.buf.len() <= 2 * time(0).len(), "{} bytes kept at {tick}", f.buf.len());
        }
    }

    /// A variable-length packet may be only its header (length 4, the least rAthena sends); a
    /// declared length below that ends framing.
    #[test]
    fn a_variable_packet_of_only_its_header_frames_and_a_shorter_one_desyncs() {
        let id = ZC_NOTIFY_CHAT.to_le_bytes();
        let mut f = ZcFramer::new(PacketVersion::V20211103);
        let header = [id[0], id[1], 4, 0];
        f.push(&header);
        assert_eq!(f.next_frame(), Some(ZcFrame::Packet { id: ZC_NOTIFY_CHAT, bytes: &header }));
        let short = [id[0], id[1], 3, 0];
        f.push(&short);
        let reason = ZcDesyncReason::ImpossibleLength { id: ZC_NOTIFY_CHAT, len: 3 };
        assert_eq!(f.next_frame(), Some(ZcFrame::Desync { reason, bytes: &short }));
    }
}
