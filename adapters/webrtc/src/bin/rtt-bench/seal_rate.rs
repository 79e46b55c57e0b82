//! Sealed frames per second: `ro_p2p_core::seal` seal + open of one frame, on one thread, with
//! no network. The figure bounds how many peer frames a client can produce and consume.

use std::hint::black_box;
use std::time::Instant;

use ro_p2p_core::seal::{Opener, SealConfig, Sealer};
use ro_p2p_core::wire::{PeerId, SessionKey};
use ro_p2p_core::{Instant as CoreInstant, Rng};

use crate::cpu;

/// Seal and open without the opener's rate limit, which would refuse a benchmark's flood.
pub fn unlimited_config() -> SealConfig {
    SealConfig { rate_per_s: u32::MAX, rate_burst: u32::MAX, ..SealConfig::default() }
}

/// A sealer for `sender` and the opener that reads it, under one session key.
pub fn pair(sender: &PeerId) -> (Sealer, Opener) {
    let key = SessionKey { epoch: 1, key: [7; 32] };
    let sealer = Sealer::new(sender.clone(), &key, &mut Rng::from_seed(1), unlimited_config());
    let opener = Opener::new(CoreInstant::ZERO, sender.clone(), &key, unlimited_config());
    (sealer, opener)
}

/// Seals and opens `frames` copies of `payload`, and prints frames per second (wall clock and
/// per CPU second).
pub fn seal_open_rate(name: &str, payload: &[u8], frames: usize) -> Result<(), String> {
    let sender = PeerId::new("bench-seal").map_err(|e| e.to_string())?;
    let (mut sealer, mut opener) = pair(&sender);
    let cpu_start = cpu::process_cpu_ns();
    let start = Instant::now();
    for _ in 0..frames {
        let frame = sealer.seal(black_box(payload)).map_err(|e| e.to_string())?;
        let opened = opener.open(CoreInstant::ZERO, &frame).map_err(|e| e.to_string())?;
        black_box(opened);
    }
    let wall_s = start.elapsed().as_secs_f64();
    let cpu_us = cpu::cpu_us_per(cpu_start, cpu::process_cpu_ns(), frames);
    let per_cpu_s = cpu_us.map_or(String::from("n/a"), |us| format!("{:.0}", 1e6 / us));
    println!(
        "seal+open {name:<16} {:>9.0} frames/s wall   {per_cpu_s:>9} frames per CPU second   \
         ({:.2} us each)",
        frames as f64 / wall_s,
        wall_s * 1e6 / frames as f64
    );
    Ok(())
}
