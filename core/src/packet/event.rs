//! [`PeerEvent`]: what a peer-eligible packet means, in a compact binary form that the seal and
//! WebRTC layers carry between players. The receiver renders it (see `shared/data/zc/layouts.md`
//! §6); it is validated again on decode, because a peer is not trusted.

use super::chat::{self, ChatRejection};

/// The format version, in the high nibble of the leading tag byte.
pub const PEER_EVENT_FORMAT: u8 = 1;

const KIND_MOVE: u8 = 1;
const KIND_TURN: u8 = 2;
const KIND_CHAT: u8 = 3;
const KIND_EMOTE: u8 = 4;
/// Not an event: a receiver's acknowledgement of a frame ([`PeerAck`]).
const KIND_ACK: u8 = 15;

/// Largest map coordinate (10-bit fields of rAthena's position packing).
pub const COORD_MAX: u16 = 1023;
/// Largest head direction (0 straight, 1 clockwise, 2 counter-clockwise).
pub const HEAD_DIR_MAX: u8 = 2;
/// Largest body direction (0 N .. 7 NE).
pub const DIR_MAX: u8 = 7;
/// rAthena's `ET_MAX`: emote values at or above are invalid.
pub const EMOTE_END: u8 = 88;
/// `ET_CHAT_PROHIBIT`, the mute emote: the server rejects it.
pub const EMOTE_MUTE: u8 = 34;
/// `ET_DICE1..=ET_DICE6`: the server re-rolls them.
pub const EMOTE_DICE: std::ops::RangeInclusive<u8> = 58..=63;

/// A peer-eligible action, borrowed from the packet (or frame) it was parsed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerEvent<'a> {
    /// Walk request to cell (`x`, `y`).
    Move {
        /// Destination x, 0..=1023.
        x: u16,
        /// Destination y, 0..=1023.
        y: u16,
    },
    /// Facing change.
    Turn {
        /// Head direction, 0..=2.
        head_dir: u8,
        /// Body direction, 0..=7.
        dir: u8,
    },
    /// Public chat: `"Name : message"` as the client's bytes, without terminator.
    Chat {
        /// The text, passing the public chat content rules.
        text: &'a [u8],
    },
    /// An emote that peers may show (not mute, not dice, below `ET_MAX`).
    Emote {
        /// rAthena's `emotion_type`.
        kind: u8,
    },
}

/// Why bytes from a peer are not a valid [`PeerEvent`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeerEventError {
    /// No bytes at all.
    #[error("empty peer event")]
    Empty,
    /// The tag's format version is not [`PEER_EVENT_FORMAT`].
    #[error("unsupported peer event format {format}")]
    UnsupportedFormat {
        /// The high nibble of the tag.
        format: u8,
    },
    /// The tag's kind is unknown.
    #[error("unknown peer event kind {kind}")]
    UnknownKind {
        /// The low nibble of the tag.
        kind: u8,
    },
    /// Fewer bytes than the kind needs.
    #[error("truncated peer event")]
    Truncated,
    /// More bytes than the kind needs.
    #[error("{extra} trailing bytes after the peer event")]
    TrailingBytes {
        /// How many.
        extra: usize,
    },
    /// A coordinate above [`COORD_MAX`].
    #[error("position ({x}, {y}) out of range")]
    PositionOutOfRange {
        /// Given x.
        x: u16,
        /// Given y.
        y: u16,
    },
    /// A head or body direction out of range.
    #[error("direction head {head_dir} body {dir} out of range")]
    DirectionOutOfRange {
        /// Given head direction.
        head_dir: u8,
        /// Given body direction.
        dir: u8,
    },
    /// An emote peers must not show.
    #[error("emote {kind} is not peer-eligible")]
    EmoteNotAllowed {
        /// Given emote.
        kind: u8,
    },
    /// Chat that fails the content rules.
    #[error("chat rejected: {0}")]
    Chat(#[from] ChatRejection),
}

impl PeerEvent<'_> {
    /// Appends the binary form: a tag byte (`format << 4 | kind`), then the fields little-endian
    /// (`Move`: x u16, y u16; `Turn`: head_dir u8, dir u8; `Chat`: length u16, text; `Emote`:
    /// kind u8).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let tag = |kind: u8| (PEER_EVENT_FORMAT << 4) | kind;
        match *self {
            PeerEvent::Move { x, y } => {
                out.push(tag(KIND_MOVE));
                out.extend_from_slice(&x.to_le_bytes());
                out.extend_from_slice(&y.to_le_bytes());
            }
            PeerEvent::Turn { head_dir, dir } => {
                out.extend_from_slice(&[tag(KIND_TURN), head_dir, dir]);
            }
            PeerEvent::Chat { text } => {
                out.push(tag(KIND_CHAT));
                // Texts are at most TEXT_MAX_BYTES long when built by the classifier or decode.
                let len = u16::try_from(text.len()).unwrap_or(u16::MAX);
                out.extend_from_slice(&len.to_le_bytes());
                out.extend_from_slice(text.get(..usize::from(len)).unwrap_or(text));
            }
            PeerEvent::Emote { kind } => out.extend_from_slice(&[tag(KIND_EMOTE), kind]),
        }
    }
}

impl<'a> PeerEvent<'a> {
    /// Decodes and validates one event (ranges, lengths, chat and emote content rules).
    pub fn decode(bytes: &'a [u8]) -> Result<PeerEvent<'a>, PeerEventError> {
        let (&tag, rest) = bytes.split_first().ok_or(PeerEventError::Empty)?;
        if tag >> 4 != PEER_EVENT_FORMAT {
            return Err(PeerEventError::UnsupportedFormat { format: tag >> 4 });
        }
        let (event, used) = match tag & 0x0F {
            KIND_MOVE => {
                let [x0, x1, y0, y1] = fixed::<4>(rest)?;
                (
                    PeerEvent::Move {
                        x: u16::from_le_bytes([x0, x1]),
                        y: u16::from_le_bytes([y0, y1]),
                    },
                    4,
                )
            }
            KIND_TURN => {
                let [head_dir, dir] = fixed::<2>(rest)?;
                (PeerEvent::Turn { head_dir, dir }, 2)
            }
            KIND_CHAT => {
                let [l0, l1] = fixed::<2>(rest)?;
                let len = usize::from(u16::from_le_bytes([l0, l1]));
                let text = rest.get(2..2 + len).ok_or(PeerEventError::Truncated)?;
                (PeerEvent::Chat { text }, 2 + len)
            }
            KIND_EMOTE => {
                let [kind] = fixed::<1>(rest)?;
                (PeerEvent::Emote { kind }, 1)
            }
            kind => return Err(PeerEventError::UnknownKind { kind }),
        };
        if rest.len() > used {
            return Err(PeerEventError::TrailingBytes { extra: rest.len() - used });
        }
        event.validate()?;
        Ok(event)
    }

    /// Checks the same rules the classifier applies to packets.
    pub fn validate(&self) -> Result<(), PeerEventError> {
        match *self {
            PeerEvent::Move { x, y } if x > COORD_MAX || y > COORD_MAX => {
                Err(PeerEventError::PositionOutOfRange { x, y })
            }
            PeerEvent::Turn { head_dir, dir } if head_dir > HEAD_DIR_MAX || dir > DIR_MAX => {
                Err(PeerEventError::DirectionOutOfRange { head_dir, dir })
            }
            PeerEvent::Chat { text } => Ok(chat::check_public_text(text, None)?),
            PeerEvent::Emote { kind } if !emote_is_peer_eligible(kind) => {
                Err(PeerEventError::EmoteNotAllowed { kind })
            }
            _ => Ok(()),
        }
    }
}

/// A receiver's acknowledgement of one frame whose sender asked for it
/// ([`crate::seal::FLAG_ACK_WANTED`]): the action reached this peer. It travels sealed, on the
/// reliable channel, as a tag byte (`format << 4 | 15`), then the frame's key epoch (u32),
/// stream (u64) and counter (u64), little-endian. A sender that hears it from every peer it sent a peers-only
/// action to forgets the action; otherwise it sends the action to the server late.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PeerAck {
    /// The acknowledged frame.
    pub frame: crate::seal::FrameId,
}

/// Bytes of an encoded [`PeerAck`].
pub const PEER_ACK_BYTES: usize = 21;

impl PeerAck {
    /// Appends the binary form.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push((PEER_EVENT_FORMAT << 4) | KIND_ACK);
        out.extend_from_slice(&self.frame.epoch.to_le_bytes());
        out.extend_from_slice(&self.frame.stream.to_le_bytes());
        out.extend_from_slice(&self.frame.counter.to_le_bytes());
    }

    /// The acknowledgement in `bytes`, or `None` when they are not one (an event, or garbage,
    /// which [`PeerEvent::decode`] then judges).
    pub fn decode(bytes: &[u8]) -> Option<PeerAck> {
        let (&tag, rest) = bytes.split_first()?;
        if tag != (PEER_EVENT_FORMAT << 4) | KIND_ACK || rest.len() != PEER_ACK_BYTES - 1 {
            return None;
        }
        let (epoch, rest) = rest.split_first_chunk::<4>()?;
        let (stream, counter) = rest.split_first_chunk::<8>()?;
        let counter = counter.first_chunk::<8>()?;
        let frame = crate::seal::FrameId {
            epoch: u32::from_le_bytes(*epoch),
            stream: u64::from_le_bytes(*stream),
            counter: u64::from_le_bytes(*counter),
        };
        Some(PeerAck { frame })
    }
}

/// Whether peers may show this emote: below `ET_MAX`, not the mute emote, not a dice emote.
pub fn emote_is_peer_eligible(kind: u8) -> bool {
    kind < EMOTE_END && kind != EMOTE_MUTE && !EMOTE_DICE.contains(&kind)
}

fn fixed<const N: usize>(bytes: &[u8]) -> Result<[u8; N], PeerEventError> {
    bytes.get(..N).and_then(|b| b.try_into().ok()).ok_or(PeerEventError::Truncated)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(e: PeerEvent<'_>) {
        let mut out = Vec::new();
        e.encode(&mut out);
        assert_eq!(PeerEvent::decode(&out), Ok(e));
    }

    #[test]
    fn an_ack_round_trips_and_is_never_an_event() {
        let frame = crate::seal::FrameId { epoch: 7, stream: u64::MAX - 3, counter: 1 << 40 };
        let ack = PeerAck { frame };
        let mut out = Vec::new();
        ack.encode(&mut out);
        assert_eq!(out.len(), PEER_ACK_BYTES);
        assert_eq!(PeerAck::decode(&out), Some(ack));
        assert_eq!(PeerEvent::decode(&out), Err(PeerEventError::UnknownKind { kind: KIND_ACK }));
        // One byte short or long, or another kind, is not an ack.
        assert_eq!(PeerAck::decode(&out[..PEER_ACK_BYTES - 1]), None);
        out.push(0);
        assert_eq!(PeerAck::decode(&out), None);
        let mut chat = Vec::new();
        PeerEvent::Chat { text: b"Alice : hello" }.encode(&mut chat);
        assert_eq!(PeerAck::decode(&chat), None);
    }

    #[test]
    fn every_kind_round_trips() {
        round_trip(PeerEvent::Move { x: 150, y: 1023 });
        round_trip(PeerEvent::Turn { head_dir: 2, dir: 7 });
        round_trip(PeerEvent::Chat { text: b"Alice : hello" });
        round_trip(PeerEvent::Emote { kind: 0 });
    }

    #[test]
    fn decode_rejects_bad_ranges_lengths_and_content() {
        assert_eq!(PeerEvent::decode(&[]), Err(PeerEventError::Empty));
        assert_eq!(
            PeerEvent::decode(&[0x21, 0, 0, 0, 0]),
            Err(PeerEventError::UnsupportedFormat { format: 2 })
        );
        assert_eq!(PeerEvent::decode(&[0x19]), Err(PeerEventError::UnknownKind { kind: 9 }));
        assert_eq!(
            PeerEvent::decode(&[0x11, 0, 4, 0, 0]),
            Err(PeerEventError::PositionOutOfRange { x: 1024, y: 0 })
        );
        assert_eq!(PeerEvent::decode(&[0x11, 0, 0]), Err(PeerEventError::Truncated));
        assert_eq!(
            PeerEvent::decode(&[0x12, 3, 0]),
            Err(PeerEventError::DirectionOutOfRange { head_dir: 3, dir: 0 })
        );
        assert_eq!(
            PeerEvent::decode(&[0x14, 34]),
            Err(PeerEventError::EmoteNotAllowed { kind: 34 })
        );
        assert_eq!(
            PeerEvent::decode(&[0x14, 60]),
            Err(PeerEventError::EmoteNotAllowed { kind: 60 })
        );
        assert_eq!(
            PeerEvent::decode(&[0x14, 88]),
            Err(PeerEventError::EmoteNotAllowed { kind: 88 })
        );
        assert_eq!(
            PeerEvent::decode(&[0x14, 1, 0]),
            Err(PeerEventError::TrailingBytes { extra: 1 })
        );
        let mut cmd = vec![0x13, 9, 0];
        cmd.extend_from_slice(b"A : @warp");
        assert_eq!(PeerEvent::decode(&cmd), Err(PeerEventError::Chat(ChatRejection::Command)));
        assert_eq!(PeerEvent::decode(&[0x13, 9, 0, b'A']), Err(PeerEventError::Truncated));
    }

    /// A chat event's length covers exactly its text: bytes after it are refused, however few,
    /// and a one-byte text is whole.
    #[test]
    fn a_chat_event_is_its_length_and_text_and_nothing_more() {
        let mut one = Vec::new();
        PeerEvent::Chat { text: b"A : x" }.encode(&mut one);
        assert_eq!(PeerEvent::decode(&one), Ok(PeerEvent::Chat { text: b"A : x" }));
        for extra in 1..=8 {
            let mut longer = one.clone();
            longer.extend(std::iter::repeat_n(b'y', extra));
            assert_eq!(
                PeerEvent::decode(&longer),
                Err(PeerEventError::TrailingBytes { extra }),
                "{extra} bytes after the text"
            );
        }
    }
}
