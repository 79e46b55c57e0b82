//! What an adapter writes to the server is each verdict's `server_bytes`: the whole game stream
//! for mirrored and server-only packets and after a desync, nothing for a peers-only packet.

use ro_p2p_core::packet::{Obfuscation, PacketVersion};
use ro_p2p_core::route::{GameStream, Policy, RouteContext, Verdict};

#[test]
fn server_bytes_are_the_game_stream_minus_what_goes_to_peers_only() {
    let v = PacketVersion::V20211103;
    let walk = [0x5F, 0x03, 0x12, 0x34, 0x56];
    let emote = [0xBF, 0x00, 0x02];
    let garbage = [0xFF, 0xFF, 0x01, 0x02, 0x03];
    let mut game = Vec::new();
    game.extend_from_slice(&walk);
    game.extend_from_slice(&emote);
    game.extend_from_slice(&garbage);
    game.extend_from_slice(&walk);

    // Mirror (the default): every byte reaches the server, the unknown id desyncs the stream
    // and the rest passes as it is.
    let mut stream = GameStream::new(v, Obfuscation::Off);
    let mut server = Vec::new();
    let mut kinds = Vec::new();
    stream.feed(&game, &Policy::default(), &RouteContext::ALL_READY, |verdict| {
        server.extend_from_slice(verdict.server_bytes());
        kinds.push(match verdict {
            Verdict::Packet(_) => "packet",
            Verdict::Desync { .. } => "desync",
            Verdict::PassThrough { .. } => "pass",
        });
    });
    assert_eq!(server, game);
    assert_eq!(&kinds[..3], ["packet", "packet", "desync"]);

    // Emotes to peers only: the emote's bytes are not the server's; the rest are.
    let peers_only: Policy = "emote=peers".parse().unwrap();
    let mut stream = GameStream::new(v, Obfuscation::Off);
    let mut server = Vec::new();
    stream.feed(&walk, &peers_only, &RouteContext::ALL_READY, |verdict| {
        server.extend_from_slice(verdict.server_bytes())
    });
    stream.feed(&emote, &peers_only, &RouteContext::ALL_READY, |verdict| {
        assert!(verdict.server_bytes().is_empty(), "{verdict:?}");
    });
    assert_eq!(server, walk);
}

#[test]
fn a_stream_buffers_two_of_the_largest_packets_before_it_must_be_drained() {
    use ro_p2p_core::packet::VARIABLE_LEN_MAX;
    use ro_p2p_core::route::STREAM_BUFFER_BYTES;
    assert_eq!(STREAM_BUFFER_BYTES, 2 * usize::from(VARIABLE_LEN_MAX));
    let mut stream = GameStream::new(PacketVersion::V20211103, Obfuscation::Off);
    let bytes = vec![0u8; STREAM_BUFFER_BYTES + 10];
    assert_eq!(stream.push(&bytes), STREAM_BUFFER_BYTES);
    assert_eq!(stream.push(&bytes), 0, "full until drained");
}

#[test]
fn offsets_count_every_byte_across_a_compaction_and_a_desync_is_reported() {
    use ro_p2p_core::route::STREAM_BUFFER_BYTES;
    let walk = [0x5F, 0x03, 0x12, 0x34, 0x56];
    let per = walk.len();
    let walks = |n: usize| -> Vec<u8> { walk.iter().copied().cycle().take(n * per).collect() };
    let (policy, ctx) = (Policy::default(), RouteContext::ALL_READY);
    let mut stream = GameStream::new(PacketVersion::V20211103, Obfuscation::Off);
    assert_eq!(stream.offset(), 0);
    assert!(!stream.is_desynced());
    // Fill the buffer with whole walks and take all but the last.
    let n = STREAM_BUFFER_BYTES / per;
    assert_eq!(stream.push(&walks(n)), n * per);
    for i in 0..n - 1 {
        match stream.next(&policy, &ctx) {
            Some(Verdict::Packet(p)) => assert_eq!(p.offset, (i * per) as u64),
            other => panic!("walk {i}: {other:?}"),
        }
    }
    assert_eq!(stream.offset(), ((n - 1) * per) as u64);
    // Two more walks do not fit behind the taken ones: the buffer is compacted, and offsets
    // go on counting from where they were.
    assert_eq!(stream.push(&walks(2)), 2 * per);
    for i in n - 1..n + 2 {
        match stream.next(&policy, &ctx) {
            Some(Verdict::Packet(p)) => assert_eq!(p.offset, (i * per) as u64),
            other => panic!("walk {i}: {other:?}"),
        }
    }
    assert_eq!(stream.offset(), ((n + 2) * per) as u64);
    assert!(!stream.is_desynced());
    // An unknown id ends classification.
    stream.push(&[0xFF, 0xFF, 0x01, 0x02]);
    match stream.next(&policy, &ctx) {
        Some(Verdict::Desync { offset, .. }) => assert_eq!(offset, ((n + 2) * per) as u64),
        other => panic!("{other:?}"),
    }
    assert!(stream.is_desynced());
}
