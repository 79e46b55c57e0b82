//! Frame + classify + route over a realistic client-to-map-server mix (mostly walking, some
//! turning, public chat, emotes, NPC clicks and item use), reporting packets/s and bytes/s.
//!
//! Run: `cargo bench -p ro-p2p-core --bench packet`.
// criterion's macros generate undocumented public functions.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ro_p2p_core::packet::{ClientEncoder, Obfuscation, PacketVersion};
use ro_p2p_core::route::{GameStream, Policy, RouteContext, Verdict};

/// `count` plain packets in a fixed pseudo-random mix: 80% walk, 5% turn, 5% public chat, 4%
/// emote, 3% NPC click, 3% item use. `walk_id`/`turn_id` are the version's current ids.
fn mix(count: usize, walk_id: u16, turn_id: u16) -> Vec<Vec<u8>> {
    let [w0, w1] = walk_id.to_le_bytes();
    let [t0, t1] = turn_id.to_le_bytes();
    let mut state: u32 = 0x1234_5678;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        state
    };
    (0..count)
        .map(|_| {
            let r = next();
            match r % 100 {
                0..80 => vec![w0, w1, (r >> 8) as u8, (r >> 16) as u8, (r >> 24) as u8 & 0xF0],
                80..85 => vec![t0, t1, (r >> 8) as u8 % 3, 0, (r >> 16) as u8 % 8],
                85..90 => {
                    let text = b"Alice : anyone for a party in payon?";
                    let mut p = vec![0xF3, 0x00, (4 + text.len()) as u8, 0];
                    p.extend_from_slice(text);
                    p
                }
                90..94 => vec![0xBF, 0x00, (r >> 8) as u8 % 30],
                94..97 => vec![0x90, 0x00, 0x40, 0x42, 0x0F, 0x00, 1],
                _ => {
                    let mut p = vec![0x9F, 0x00, 2, 0];
                    p.resize(20, 0);
                    p
                }
            }
        })
        .collect()
}

fn wire(version: PacketVersion, obfuscation: Obfuscation, packets: &[Vec<u8>]) -> Vec<u8> {
    let mut enc = ClientEncoder::new(version, obfuscation);
    let mut out = Vec::new();
    for p in packets {
        enc.encode(p, &mut out);
    }
    out
}

fn bench_case(
    c: &mut Criterion,
    name: &str,
    version: PacketVersion,
    obfuscation: Obfuscation,
    policy: Policy,
) {
    const PACKETS: usize = 8192;
    let (walk_id, turn_id) = match version {
        PacketVersion::V20151104 => (0x0363, 0x0928),
        _ => (0x035F, 0x0361),
    };
    let packets = mix(PACKETS, walk_id, turn_id);
    let bytes = wire(version, obfuscation, &packets);
    let ctx = RouteContext::ALL_READY;
    let mut group = c.benchmark_group(name);
    for (label, throughput) in [
        ("packets", Throughput::Elements(PACKETS as u64)),
        ("bytes", Throughput::Bytes(bytes.len() as u64)),
    ] {
        group.throughput(throughput);
        group.bench_function(label, |b| {
            // A fresh connection per iteration (one 64 KiB buffer allocation per 8192 packets),
            // so that the obfuscation key sequence matches the captured bytes.
            b.iter(|| {
                let mut stream = GameStream::new(version, obfuscation);
                let mut to_server = 0usize;
                let mut to_peers = 0usize;
                stream.feed(black_box(&bytes), &policy, &ctx, |v| {
                    to_server += v.server_bytes().len();
                    if let Verdict::Packet(p) = v {
                        to_peers += usize::from(p.route.to_peers().is_some());
                    }
                });
                black_box((to_server, to_peers))
            })
        });
    }
    group.finish();
}

fn packet(c: &mut Criterion) {
    bench_case(
        c,
        "frame_classify_route/20211103",
        PacketVersion::V20211103,
        Obfuscation::Off,
        Policy::default(),
    );
    bench_case(
        c,
        "frame_classify_route/20211103_peers_only",
        PacketVersion::V20211103,
        Obfuscation::Off,
        "movement=peers,chat=peers,emote=peers".parse().unwrap_or_default(),
    );
    bench_case(
        c,
        "frame_classify_route/20151104_obfuscated",
        PacketVersion::V20151104,
        Obfuscation::On,
        Policy::default(),
    );
    bench_case(
        c,
        "frame_classify_route/20151104_obfuscated_peers_only",
        PacketVersion::V20151104,
        Obfuscation::On,
        "movement=peers,chat=peers,emote=peers".parse().unwrap_or_default(),
    );
}

criterion_group!(benches, packet);
criterion_main!(benches);
