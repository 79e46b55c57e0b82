//! The rAthena client-to-server packets: tables per PACKETVER, id obfuscation, and the
//! classification of each complete packet as server-only or peer-eligible.
//!
//! Peer-eligible packets carry a [`PeerEvent`] for the peer frame (see [`crate::seal`]). Framing
//! a connection's bytes into packets and routing each one is [`crate::route::GameStream`]'s,
//! which builds on this module (this module uses nothing of `route`). Login and char-server
//! connections are server-only entirely. [`ServerDecoder`] is rAthena's side, used to prove the
//! server reads exactly the server-bound packets.

pub mod chat;
mod classify;
mod event;
mod obfuscation;
mod server;
mod table;
mod versions;

pub use classify::{Classified, PeerCategory, PeerEligible, ServerOnly, ServerOnlyReason};
pub(crate) use classify::{Dialect, classify};
pub use event::{
    COORD_MAX, DIR_MAX, EMOTE_DICE, EMOTE_END, EMOTE_MUTE, HEAD_DIR_MAX, PEER_ACK_BYTES,
    PEER_EVENT_FORMAT, PeerAck, PeerEvent, PeerEventError, emote_is_peer_eligible,
};
pub use obfuscation::{KeySequence, Obfuscation};
pub use server::{
    ClientEncoder, SERVER_DECODER_BUFFER_BYTES, ServerDecodeError, ServerDecoder, ServerPacket,
};
pub use table::{
    Category, FieldOffsets, ObfuscationKeys, PacketLen, PacketSpec, PacketTable, PacketVersion,
    TableError, UnsupportedPacketVersion, VARIABLE_LEN_MAX, VARIABLE_LEN_MIN,
};
pub(crate) use versions::GeneratedLayout;
pub use versions::{ClientFamily, IndexError, UnknownClientFamily};

/// Classifies one complete packet whose id is plain (not obfuscated), e.g. from a hook that sees
/// packets before the client obfuscates them. `None` when the id is unknown at `version` or the
/// length does not match its table row.
pub fn classify_packet(version: PacketVersion, packet: &[u8]) -> Option<Classified<'_>> {
    let &[a, b, ..] = packet else { return None };
    let spec = version.table().get(u16::from_le_bytes([a, b]))?;
    let len_ok = match spec.len() {
        PacketLen::Fixed(n) => n >= 2 && usize::from(n) == packet.len(),
        PacketLen::Variable => match packet {
            &[_, _, l0, l1, ..] => {
                let n = u16::from_le_bytes([l0, l1]);
                (VARIABLE_LEN_MIN..=VARIABLE_LEN_MAX).contains(&n) && usize::from(n) == packet.len()
            }
            _ => false,
        },
    };
    len_ok.then(|| {
        classify::classify(
            classify::Dialect::Map { nul_chat: version.chat_nul_terminated() },
            &chat::OwnName::UNKNOWN,
            spec,
            packet,
        )
    })
}

#[cfg(test)]
mod tests;

/// The generated server-to-client tables (for [`crate::render::ZcTable`]).
pub(crate) fn zc_sections() -> &'static [versions::Section] {
    &versions::INDEX.zc
}

/// The rows of generated server-to-client table `n`.
pub(crate) fn zc_rows(n: usize) -> Vec<&'static str> {
    versions::resolve(&versions::INDEX.zc, n)
}
