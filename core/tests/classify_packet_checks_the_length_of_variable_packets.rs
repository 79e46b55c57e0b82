//! `classify_packet` (a hook's view: one whole packet, plain id) takes a variable-length packet
//! only when its length field says exactly the packet's length.

use ro_p2p_core::packet::{Classified, PacketVersion, classify_packet};

const V: PacketVersion = PacketVersion::V20211103;

/// Public chat (`0x00F3`, variable) with `text`, its length field set to `field`.
fn chat(text: &[u8], field: u16) -> Vec<u8> {
    let mut p = vec![0xF3, 0x00];
    p.extend_from_slice(&field.to_le_bytes());
    p.extend_from_slice(text);
    p
}

#[test]
fn a_variable_packet_is_classified_only_with_its_exact_length() {
    let text = b"Vera : hello there";
    let len = (4 + text.len()) as u16;
    assert!(matches!(classify_packet(V, &chat(text, len)), Some(Classified::PeerEligible(_))));
    // The length field one off either way, or naming more than is there: not this packet.
    for field in [len - 1, len + 1, 3, 0, u16::MAX] {
        assert!(classify_packet(V, &chat(text, field)).is_none(), "field {field}");
    }
    // Too short to hold a length field at all.
    assert!(classify_packet(V, &[0xF3, 0x00, 0x04]).is_none());
    assert!(classify_packet(V, &[0xF3]).is_none());
    // A fixed-length packet (walk, 0x035F, 5 bytes) needs exactly its length.
    assert!(classify_packet(V, &[0x5F, 0x03, 0x12, 0x34, 0x56]).is_some());
    assert!(classify_packet(V, &[0x5F, 0x03, 0x12, 0x34]).is_none());
    assert!(classify_packet(V, &[0x5F, 0x03, 0x12, 0x34, 0x56, 0x00]).is_none());
}
