//! rAthena's packet-id obfuscation on the client-to-map-server connection: a rolling u32 key,
//! `k = K0*K1 + K2` for the first packet, then `k = k*K1 + K2` after each packet, and
//! `wire_id = real_id ^ ((k >> 16) & 0x7FFF)`. The length field is never obfuscated.
//!
//! Two sequences run per connection in [`GameStream`](super::GameStream): the client's (advances
//! on every packet the game sends) and the server's (advances only on packets that reach the
//! server), so the server-bound stream can be re-obfuscated the way rAthena expects.

use super::table::ObfuscationKeys;

/// Whether a connection's packet ids are obfuscated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Obfuscation {
    /// Ids are XORed with the rolling key of the version.
    On,
    /// Ids are plain.
    Off,
}

/// One rolling key sequence. With obfuscation off (or keys all zero) the mask is always 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeySequence {
    k1: u32,
    k2: u32,
    key: u32,
}

impl KeySequence {
    /// The sequence at the start of a connection.
    pub fn new(keys: ObfuscationKeys, obfuscation: Obfuscation) -> KeySequence {
        let [k0, k1, k2] = match obfuscation {
            Obfuscation::On => keys.0,
            Obfuscation::Off => [0, 0, 0],
        };
        KeySequence { k1, k2, key: k0.wrapping_mul(k1).wrapping_add(k2) }
    }

    /// The XOR mask for the current packet's id.
    #[inline]
    pub fn mask(&self) -> u16 {
        ((self.key >> 16) & 0x7FFF) as u16
    }

    /// Moves to the next packet.
    #[inline]
    pub fn advance(&mut self) {
        self.key = self.key.wrapping_mul(self.k1).wrapping_add(self.k2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::PacketVersion;

    fn first_masks(v: PacketVersion) -> Vec<u16> {
        let mut k = KeySequence::new(v.obfuscation_keys(), Obfuscation::On);
        (0..4)
            .map(|_| {
                let m = k.mask();
                k.advance();
                m
            })
            .collect()
    }

    #[test]
    fn first_masks_match_the_data_readme() {
        assert_eq!(first_masks(PacketVersion::V20151104), [0x738E, 0x718B, 0x77BB, 0x2A47]);
        assert_eq!(first_masks(PacketVersion::V20120410), [0x4F06, 0x3574, 0x2ABB, 0x29FB]);
    }

    #[test]
    fn versions_after_20180307_and_off_never_mask() {
        assert_eq!(first_masks(PacketVersion::V20211103), [0; 4]);
        let mut k = KeySequence::new(PacketVersion::V20151104.obfuscation_keys(), Obfuscation::Off);
        for _ in 0..4 {
            assert_eq!(k.mask(), 0);
            k.advance();
        }
    }
}
