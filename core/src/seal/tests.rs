use proptest::prelude::*;

use super::*;
use crate::Rng;

fn peer(s: &str) -> PeerId {
    PeerId::new(s).unwrap()
}

fn key(epoch: u32) -> SessionKey {
    let mut k = [0u8; 32];
    k[0] = epoch as u8;
    k[31] = 0xA5;
    SessionKey { epoch, key: k }
}

fn t(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

/// A sealer for `alice` and an opener for her frames, both at epoch 1, no rate limit to speak of.
fn pair(config: SealConfig) -> (Sealer, Opener) {
    let sealer = Sealer::new(peer("alice"), &key(1), &mut Rng::from_seed(1), config.clone());
    let opener = Opener::new(t(0), peer("alice"), &key(1), config);
    (sealer, opener)
}

fn unlimited() -> SealConfig {
    SealConfig { rate_per_s: 1_000_000, rate_burst: 1_000_000, ..SealConfig::default() }
}

#[test]
fn round_trip_small_and_compressed_payloads() {
    let (mut s, mut o) = pair(unlimited());
    let small = b"hello peers".to_vec();
    let frame = s.seal(&small).unwrap();
    assert_eq!(frame.len(), small.len() + OVERHEAD_BYTES);
    assert_eq!(frame[0], SEAL_VERSION);
    assert_eq!(frame[1], 0);
    assert_eq!(o.open(t(1), &frame).unwrap(), small);

    let big = vec![7u8; 4000];
    let frame = s.seal(&big).unwrap();
    assert_eq!(frame[1], FLAG_COMPRESSED);
    assert!(frame.len() < 200, "{}", frame.len());
    assert_eq!(o.open(t(2), &frame).unwrap(), big);
    assert_eq!(o.counters().opened, 2);
}

#[test]
fn incompressible_payload_over_threshold_is_sent_plain() {
    let (mut s, mut o) = pair(unlimited());
    let mut rng = Rng::from_seed(9);
    let mut noise = vec![0u8; 3000];
    rng.fill_bytes(&mut noise);
    let frame = s.seal(&noise).unwrap();
    assert_eq!(frame[1], 0);
    assert_eq!(frame.len(), noise.len() + OVERHEAD_BYTES);
    assert_eq!(o.open(t(0), &frame).unwrap(), noise);
}

#[test]
fn frame_from_another_sender_fails_authentication() {
    let cfg = unlimited();
    let mut bob = Sealer::new(peer("bob"), &key(1), &mut Rng::from_seed(2), cfg.clone());
    let mut alice_opener = Opener::new(t(0), peer("alice"), &key(1), cfg);
    assert_eq!(alice_opener.open(t(0), &bob.seal(b"hi").unwrap()), Err(OpenError::AuthFailed));
    assert_eq!(alice_opener.counters().auth_failed, 1);
}

#[test]
fn previous_epoch_is_accepted_only_during_the_grace_period() {
    let cfg = SealConfig { epoch_grace_ms: 1000, ..unlimited() };
    let (mut s, mut o) = pair(cfg);
    let old1 = s.seal(b"old-1").unwrap();
    let old2 = s.seal(b"old-2").unwrap();
    o.rotate(t(5000), &key(2)).unwrap();
    s.rotate(&key(2)).unwrap();
    let new = s.seal(b"new").unwrap();
    assert_eq!(o.open(t(5001), &new).unwrap(), b"new");
    assert_eq!(o.open(t(5999), &old1).unwrap(), b"old-1");
    assert_eq!(o.open(t(6000), &old2), Err(OpenError::EpochExpired { epoch: 1 }));
    // Two rotations later epoch 1 is simply unknown.
    o.rotate(t(7000), &key(3)).unwrap();
    assert_eq!(o.open(t(7001), &old2), Err(OpenError::UnknownEpoch { epoch: 1 }));
    // Epoch 2 is now the previous one, in its grace period, and still remembers `new`.
    assert_eq!(o.open(t(7001), &new), Err(OpenError::Replayed { counter: 0 }));
    assert_eq!(o.counters().epoch_expired, 1);
    assert_eq!(o.counters().unknown_epoch, 1);
}

#[test]
fn rotation_must_move_forward() {
    let (mut s, mut o) = pair(unlimited());
    assert_eq!(s.rotate(&key(1)), Err(SealError::EpochNotNewer { current: 1, given: 1 }));
    assert_eq!(o.rotate(t(0), &key(1)), Ok(()), "the same key again is a no-op");
    let mut other = key(1);
    other.key[5] = 1;
    assert_eq!(o.rotate(t(0), &other), Err(SealError::EpochNotNewer { current: 1, given: 1 }));
    o.rotate(t(0), &key(4)).unwrap();
    assert_eq!(o.rotate(t(0), &key(2)), Err(SealError::EpochNotNewer { current: 4, given: 2 }));
    assert_eq!(o.epoch(), 4);
    s.rotate(&key(4)).unwrap();
    assert_eq!(s.epoch(), 4);
}

#[test]
fn a_restarted_sender_is_accepted_and_its_old_stream_refused() {
    let cfg = unlimited();
    let (mut before, mut o) = pair(cfg.clone());
    let late_old = {
        let _ = o.open(t(0), &before.seal(b"a").unwrap()).unwrap();
        before.seal(b"b").unwrap()
    };
    // The same peer restarts: new sealer, counters from zero again, same epoch.
    let mut after = Sealer::new(peer("alice"), &key(1), &mut Rng::from_seed(77), cfg);
    assert_eq!(o.open(t(1), &after.seal(b"c").unwrap()).unwrap(), b"c");
    let stream = u64::from_be_bytes(late_old[6..14].try_into().unwrap());
    assert_eq!(o.open(t(2), &late_old), Err(OpenError::RetiredStream { stream }));
    assert_eq!(o.open(t(3), &after.seal(b"d").unwrap()).unwrap(), b"d");
}

#[test]
fn streams_per_epoch_are_bounded() {
    let cfg = unlimited();
    let mut o = Opener::new(t(0), peer("alice"), &key(1), cfg.clone());
    let mut rng = Rng::from_seed(5);
    for i in 0..=STREAMS_PER_EPOCH_MAX {
        let mut s = Sealer::new(peer("alice"), &key(1), &mut rng, cfg.clone());
        assert!(o.open(t(0), &s.seal(b"x").unwrap()).is_ok(), "stream {i}");
    }
    let mut s = Sealer::new(peer("alice"), &key(1), &mut rng, cfg);
    assert_eq!(o.open(t(0), &s.seal(b"x").unwrap()), Err(OpenError::TooManyStreams { epoch: 1 }));
    assert_eq!(o.counters().bad_stream, 1);
}

#[test]
fn frames_over_the_rate_limit_are_dropped_until_tokens_refill() {
    let cfg = SealConfig { rate_per_s: 10, rate_burst: 3, ..SealConfig::default() };
    let (mut s, mut o) = pair(cfg);
    let frames: Vec<_> = (0..5).map(|_| s.seal(b"m").unwrap()).collect();
    for f in &frames[..3] {
        o.open(t(0), f).unwrap();
    }
    assert_eq!(o.open(t(0), &frames[3]), Err(OpenError::RateLimited));
    // 100 ms later one token is back, and the dropped frame was not marked as seen.
    assert!(o.open(t(100), &frames[3]).is_ok());
    assert_eq!(o.counters().rate_limited, 1);
}

#[test]
fn size_limits_hold_on_both_sides() {
    let cfg = SealConfig { payload_bytes_max: 100, ..unlimited() };
    let (mut s, mut o) = pair(cfg.clone());
    assert_eq!(s.seal(&[0; 101]), Err(SealError::PayloadTooLarge { len: 101, max: 100 }));
    let long = vec![0u8; cfg.frame_bytes_max() + 1];
    assert_eq!(
        o.open(t(0), &long),
        Err(OpenError::FrameTooLarge { len: long.len(), max: cfg.frame_bytes_max() })
    );
    assert_eq!(
        o.open(t(0), &[SEAL_VERSION; OVERHEAD_BYTES - 1]),
        Err(OpenError::TooShort { len: OVERHEAD_BYTES - 1, min: OVERHEAD_BYTES })
    );
    assert_eq!(o.open(t(0), &s.seal(&[]).unwrap()).unwrap(), Vec::<u8>::new());
}

#[test]
fn header_checks_come_before_the_tag() {
    let (mut s, mut o) = pair(unlimited());
    let frame = s.seal(b"x").unwrap();
    let mut v2 = frame.clone();
    v2[0] = 2;
    assert_eq!(o.open(t(0), &v2), Err(OpenError::UnknownVersion { version: 2 }));
    let mut flags = frame.clone();
    flags[1] = 0x80;
    assert_eq!(o.open(t(0), &flags), Err(OpenError::UnknownFlags { flags: 0x80 }));
    let mut epoch = frame;
    epoch[5] = 9;
    assert_eq!(o.open(t(0), &epoch), Err(OpenError::UnknownEpoch { epoch: 9 }));
    assert_eq!(o.counters().bad_header, 2);
}

/// Seals `body` as it is, with the compressed flag set, as a buggy or hostile key holder
/// could: the tag verifies and decompression has to catch it.
fn forge_compressed(body: &[u8]) -> Vec<u8> {
    let header = Header { flags: FLAG_COMPRESSED, epoch: 1, stream: 42, counter: 0 };
    let aad = header.encode();
    let cipher = derive_cipher(&key(1).key, 1, 42, &peer("alice"));
    let mut frame = aad.to_vec();
    frame.extend_from_slice(body);
    let tag = cipher
        .encrypt_inout_detached(&header.nonce(), &aad, (&mut frame[HEADER_BYTES..]).into())
        .unwrap();
    frame.extend_from_slice(&tag);
    frame
}

#[test]
fn bad_compression_from_a_key_holder_is_dropped_without_big_allocations() {
    let cfg = unlimited();
    let open =
        |frame: &[u8]| Opener::new(t(0), peer("alice"), &key(1), cfg.clone()).open(t(0), frame);
    assert_eq!(open(&forge_compressed(&[1, 2])), Err(OpenError::BadCompression));
    let huge = u32::MAX.to_le_bytes();
    assert_eq!(
        open(&forge_compressed(&huge)),
        Err(OpenError::DecompressedTooLarge { len: u32::MAX as usize, max: cfg.payload_bytes_max })
    );
    let mut lying = 10u32.to_le_bytes().to_vec();
    lying.extend_from_slice(&lz4_flex::block::compress(b"only five"));
    assert_eq!(open(&forge_compressed(&lying)), Err(OpenError::BadCompression));
    let mut junk = 10u32.to_le_bytes().to_vec();
    junk.extend_from_slice(&[0xFF; 12]);
    assert_eq!(open(&forge_compressed(&junk)), Err(OpenError::BadCompression));
}

#[test]
fn sealer_refuses_to_wrap_its_counter() {
    let (mut s, _) = pair(unlimited());
    s.next_counter = u64::MAX - 1;
    assert!(s.seal(b"last").is_ok());
    assert_eq!(s.seal(b"wrap"), Err(SealError::CounterExhausted { epoch: 1 }));
}

#[test]
fn debug_output_never_shows_keys() {
    let (s, o) = pair(unlimited());
    let text = format!("{s:?} {o:?}");
    assert!(!text.contains("165"), "{text}"); // 0xA5, the last key byte
    assert!(text.contains("alice"));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, rng_seed: proptest::test_runner::RngSeed::Fixed(0x5EA1), ..ProptestConfig::default() })]

    #[test]
    fn any_payload_and_epoch_round_trips(
        payload in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..3000),
            (any::<u8>(), 0usize..5000).prop_map(|(b, n)| vec![b; n]),
        ],
        epoch in any::<u32>(),
        seed in any::<u64>(),
    ) {
        let cfg = unlimited();
        let k = key(epoch);
        let mut s = Sealer::new(peer("alice"), &k, &mut Rng::from_seed(seed), cfg.clone());
        let mut o = Opener::new(t(0), peer("alice"), &k, cfg);
        let frame = s.seal(&payload).unwrap();
        prop_assert!(frame.len() <= payload.len() + OVERHEAD_BYTES);
        prop_assert_eq!(o.open(t(0), &frame).unwrap(), payload);
    }

    #[test]
    fn any_bit_flip_truncation_or_extension_is_rejected(
        payload in proptest::collection::vec(any::<u8>(), 0..2000),
        bit in any::<usize>(),
        cut in any::<usize>(),
        extra in 1usize..20,
    ) {
        let (mut s, mut o) = pair(unlimited());
        let frame = s.seal(&payload).unwrap();
        let mut flipped = frame.clone();
        let bit = bit % (frame.len() * 8);
        flipped[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(o.open(t(0), &flipped).is_err());
        let truncated = &frame[..cut % frame.len()];
        prop_assert!(o.open(t(0), truncated).is_err());
        let mut extended = frame.clone();
        extended.extend(std::iter::repeat_n(0u8, extra));
        prop_assert!(o.open(t(0), &extended).is_err());
        // None of that consumed the counter: the genuine frame still opens, once.
        prop_assert_eq!(o.open(t(0), &frame).unwrap(), payload);
        prop_assert_eq!(o.open(t(0), &frame), Err(OpenError::Replayed { counter: 0 }));
    }

    #[test]
    fn wrong_epoch_key_is_rejected(epoch in 2u32..1000, payload in proptest::collection::vec(any::<u8>(), 0..100)) {
        let cfg = unlimited();
        let mut s = Sealer::new(peer("alice"), &key(epoch), &mut Rng::from_seed(3), cfg.clone());
        let frame = s.seal(&payload).unwrap();
        // An opener that only knows epoch 1.
        let mut o = Opener::new(t(0), peer("alice"), &key(1), cfg.clone());
        prop_assert_eq!(o.open(t(0), &frame), Err(OpenError::UnknownEpoch { epoch }));
        // An opener with the right epoch number but another key.
        let mut wrong = key(epoch);
        wrong.key[10] ^= 0xFF;
        let mut o = Opener::new(t(0), peer("alice"), &wrong, cfg);
        prop_assert_eq!(o.open(t(0), &frame), Err(OpenError::AuthFailed));
    }

    #[test]
    fn frames_in_any_order_within_the_window_open_exactly_once(
        order in Just((0..300usize).collect::<Vec<_>>()).prop_shuffle(),
        dups in proptest::collection::vec(0usize..300, 0..100),
    ) {
        let (mut s, mut o) = pair(unlimited());
        let frames: Vec<Vec<u8>> = (0..300u16).map(|i| s.seal(&i.to_be_bytes()).unwrap()).collect();
        let mut delivered = std::collections::BTreeSet::new();
        // Deliver every frame once in a random order, with duplicates mixed in.
        let schedule = order.iter().copied().chain(dups.iter().copied());
        for i in schedule {
            match o.open(t(0), &frames[i]) {
                Ok(p) => {
                    prop_assert_eq!(p, (i as u16).to_be_bytes().to_vec());
                    prop_assert!(delivered.insert(i), "frame {} accepted twice", i);
                }
                Err(e) => {
                    prop_assert_eq!(e, OpenError::Replayed { counter: i as u64 });
                    prop_assert!(delivered.contains(&i));
                }
            }
        }
        prop_assert_eq!(delivered.len(), 300);
        prop_assert_eq!(o.counters().opened, 300);
        prop_assert_eq!(o.counters().replayed, dups.len() as u64);
    }

    #[test]
    fn frames_behind_the_window_are_too_old(lag in REPLAY_WINDOW_BITS..REPLAY_WINDOW_BITS * 3) {
        let (mut s, mut o) = pair(unlimited());
        let first = s.seal(b"first").unwrap();
        s.next_counter = lag;
        o.open(t(0), &s.seal(b"ahead").unwrap()).unwrap();
        prop_assert_eq!(o.open(t(0), &first), Err(OpenError::TooOld { counter: 0 }));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, rng_seed: proptest::test_runner::RngSeed::Fixed(0xF022), ..ProptestConfig::default() })]

    /// The fuzz entry point, run by the normal test build on arbitrary and near-valid frames.
    #[test]
    fn fuzz_entry_never_panics(mut data in proptest::collection::vec(any::<u8>(), 0..200), version in any::<bool>()) {
        if version && !data.is_empty() {
            data[0] = SEAL_VERSION;
        }
        crate::fuzz::seal_open(&data);
    }
}

#[test]
fn dropped_sums_every_reason_and_nothing_else() {
    // Distinct powers of two: any reason left out, counted twice or combined other than by
    // addition gives another sum.
    let c = OpenCounters {
        opened: 1 << 20,
        frame_too_large: 1,
        rate_limited: 1 << 1,
        too_short: 1 << 2,
        bad_header: 1 << 3,
        unknown_epoch: 1 << 4,
        epoch_expired: 1 << 5,
        bad_stream: 1 << 6,
        replayed: 1 << 7,
        too_old: 1 << 8,
        auth_failed: 1 << 9,
        bad_compression: 1 << 10,
    };
    assert_eq!(c.dropped(), (1 << 11) - 1);
    assert_eq!(OpenCounters::default().dropped(), 0);
}

#[test]
fn a_sealer_shows_its_stream_position_but_never_its_key() {
    let (mut s, _) = pair(unlimited());
    s.seal(b"one").unwrap();
    let shown = format!("{s:?}");
    assert!(shown.starts_with("Sealer {"), "{shown}");
    for field in ["sender", "epoch: 1", "stream", "next_counter: 1"] {
        assert!(shown.contains(field), "{field} missing from {shown}");
    }
    assert!(!shown.contains("cipher") && !shown.contains("key"), "{shown}");
}

#[test]
fn the_payload_limit_and_the_compression_threshold_are_inclusive_bounds() {
    let cfg =
        SealConfig { payload_bytes_max: 2_000, compression_threshold_bytes: 100, ..unlimited() };
    let (mut s, mut o) = pair(cfg.clone());
    // Exactly the limit seals; one byte more does not.
    let at_max = vec![b'a'; 2_000];
    let frame = s.seal(&at_max).unwrap();
    assert_eq!(o.open(t(0), &frame).unwrap(), at_max);
    assert_eq!(s.seal(&[b'a'; 2_001]), Err(SealError::PayloadTooLarge { len: 2_001, max: 2_000 }));
    // Exactly the threshold is sent plain however compressible; one byte more is compressed.
    let flags = |frame: &[u8]| frame[1];
    let at_threshold = s.seal(&[b'z'; 100]).unwrap();
    assert_eq!(flags(&at_threshold) & FLAG_COMPRESSED, 0);
    assert_eq!(at_threshold.len(), OVERHEAD_BYTES + 100);
    let over = s.seal(&[b'z'; 101]).unwrap();
    assert_eq!(flags(&over) & FLAG_COMPRESSED, FLAG_COMPRESSED);
    assert_eq!(o.open(t(0), &over).unwrap(), vec![b'z'; 101]);
}

proptest! {
    /// Compression is used exactly when it makes the frame smaller: a frame is never longer
    /// than the plain one, and a compressed frame is strictly shorter.
    #[test]
    fn compression_is_used_exactly_when_it_saves_bytes(
        seed in any::<u64>(),
        len in 101usize..700,
        alphabet in 1u8..=255,
        run in 1usize..24,
    ) {
        let cfg = SealConfig { compression_threshold_bytes: 100, ..unlimited() };
        let (mut s, mut o) = pair(cfg);
        let mut rng = Rng::from_seed(seed);
        let mut payload = Vec::with_capacity(len);
        while payload.len() < len {
            let b = (rng.below_inclusive(u64::from(alphabet)) as u8).wrapping_mul(37);
            for _ in 0..run.min(len - payload.len()) {
                payload.push(b);
            }
        }
        let frame = s.seal(&payload).unwrap();
        let plain = OVERHEAD_BYTES + payload.len();
        let block = lz4_flex::block::compress(&payload);
        let saves = block.len() + 4 < payload.len();
        prop_assert_eq!(frame[1] & FLAG_COMPRESSED != 0, saves);
        if saves {
            prop_assert_eq!(frame.len(), OVERHEAD_BYTES + 4 + block.len());
            prop_assert!(frame.len() < plain);
        } else {
            prop_assert_eq!(frame.len(), plain);
        }
        prop_assert_eq!(o.open(t(0), &frame).unwrap(), payload);
    }
}

#[test]
fn an_opener_shows_its_counters_but_never_its_key() {
    let (mut s, mut o) = pair(unlimited());
    let frame = s.seal(b"one").unwrap();
    o.open(t(0), &frame).unwrap();
    let shown = format!("{o:?}");
    assert!(shown.starts_with("Opener {"), "{shown}");
    for field in ["sender", "epoch: 1", "opened: 1"] {
        assert!(shown.contains(field), "{field} missing from {shown}");
    }
    assert!(!shown.contains("cipher") && !shown.contains("key"), "{shown}");
}

#[test]
fn a_payload_compression_would_not_shrink_by_even_one_byte_is_sent_plain() {
    // Find a payload whose compressed form plus its length prefix is exactly as long as it is
    // (random bytes after a run of zeros long enough to pay for the prefix).
    let mut rng = Rng::from_seed(5);
    let noise: Vec<u8> = (0..400).map(|_| rng.below_inclusive(255) as u8).collect();
    let break_even = (0..200)
        .map(|zeros| {
            let mut p = vec![0u8; zeros];
            p.extend_from_slice(&noise[..400 - zeros]);
            p
        })
        .find(|p| lz4_flex::block::compress(p).len() + 4 == p.len())
        .expect("a break-even payload among 200 candidates");
    let (mut s, mut o) = pair(SealConfig { compression_threshold_bytes: 100, ..unlimited() });
    let frame = s.seal(&break_even).unwrap();
    assert_eq!(frame[1] & FLAG_COMPRESSED, 0, "compressed without saving a byte");
    assert_eq!(frame.len(), OVERHEAD_BYTES + break_even.len());
    assert_eq!(o.open(t(0), &frame).unwrap(), break_even);
}

#[test]
fn the_largest_frame_a_sealer_makes_opens_and_one_byte_more_is_refused() {
    let cfg = SealConfig { payload_bytes_max: 1_500, ..unlimited() };
    let (mut s, mut o) = pair(cfg.clone());
    // Incompressible: sent plain, so the frame is exactly the largest there is.
    let mut rng = Rng::from_seed(9);
    let payload: Vec<u8> = (0..1_500).map(|_| rng.below_inclusive(255) as u8).collect();
    let frame = s.seal(&payload).unwrap();
    assert_eq!(frame.len(), cfg.frame_bytes_max());
    assert_eq!(o.open(t(0), &frame).unwrap(), payload);
    let mut longer = frame.clone();
    longer.push(0);
    assert_eq!(
        o.open(t(0), &longer),
        Err(OpenError::FrameTooLarge {
            len: 1_500 + OVERHEAD_BYTES + 1,
            max: 1_500 + OVERHEAD_BYTES
        })
    );
}
