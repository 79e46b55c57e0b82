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

#[test]
fn a_turn_takes_every_direction_up_to_the_last_and_no_further() {
    use ro_p2p_core::packet::{PeerEvent, ServerOnlyReason};
    // CZ_CHANGE_DIRECTION at 20211103: 0x0361, head at 2, body at 4.
    let turn = |head: u8, dir: u8| [0x61, 0x03, head, 0x00, dir];
    let shown = |p: &[u8]| match classify_packet(V, p) {
        Some(Classified::PeerEligible(e)) => match e.event() {
            PeerEvent::Turn { head_dir, dir } => Some((head_dir, dir)),
            other => panic!("not a turn: {other:?}"),
        },
        Some(Classified::ServerOnly(s)) => {
            assert_eq!(s.reason(), ServerOnlyReason::InvalidDirection);
            None
        }
        None => panic!("unframed turn"),
    };
    assert_eq!(shown(&turn(2, 7)), Some((2, 7)));
    assert_eq!(shown(&turn(0, 0)), Some((0, 0)));
    assert_eq!(shown(&turn(3, 7)), None);
    assert_eq!(shown(&turn(2, 8)), None);
}

#[test]
fn a_server_only_packet_says_why_and_a_peer_eligible_one_does_not() {
    use ro_p2p_core::packet::ServerOnlyReason;
    // A whisper (CZ_WHISPER, 0x0096, variable) is server-only, and says so.
    let mut whisper = vec![0x96, 0x00, 0, 0];
    whisper.extend_from_slice(&[b'a'; 24]);
    whisper.extend_from_slice(b"psst");
    let len = whisper.len() as u16;
    whisper[2..4].copy_from_slice(&len.to_le_bytes());
    let c = classify_packet(V, &whisper).expect("framed");
    assert_eq!(c.server_only_reason(), Some(ServerOnlyReason::Whisper));
    let walk = classify_packet(V, &[0x5F, 0x03, 0x12, 0x34, 0x56]).expect("framed");
    assert_eq!(walk.server_only_reason(), None);
}
