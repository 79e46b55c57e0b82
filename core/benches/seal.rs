//! Throughput of sealing and opening peer frames: `cargo bench -p ro-p2p-core --bench seal`.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ro_p2p_core::seal::{Opener, SealConfig, Sealer};
use ro_p2p_core::wire::{PeerId, SessionKey};
use ro_p2p_core::{Instant, Rng};

fn seal_then_open(c: &mut Criterion) {
    let config = SealConfig { rate_per_s: u32::MAX, rate_burst: u32::MAX, ..SealConfig::default() };
    let key = SessionKey { epoch: 1, key: [7; 32] };
    let sender = PeerId::new("bench").expect("valid peer id");
    let mut group = c.benchmark_group("seal_then_open");
    // A movement packet, a chat line, and a large compressible payload.
    for (name, payload) in [
        ("move_12B", vec![0x35u8; 12]),
        ("chat_120B", b"Hello Prontera! Selling +7 Blade, PM me. ".repeat(3)),
        ("compressible_4KiB", b"abcdefgh".repeat(512)),
    ] {
        let mut sealer = Sealer::new(sender.clone(), &key, &mut Rng::from_seed(1), config.clone());
        let mut opener = Opener::new(Instant::ZERO, sender.clone(), &key, config.clone());
        group.throughput(Throughput::Bytes(payload.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                let frame = sealer.seal(black_box(&payload)).expect("seal");
                opener.open(Instant::ZERO, &frame).expect("open")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, seal_then_open);
criterion_main!(benches);
