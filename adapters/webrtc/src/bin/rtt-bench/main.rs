//! `rtt-bench`: round-trip time of a 16-byte frame on loopback, over the `movement` data
//! channel of two [`PeerLinks`] and over a raw `tokio::net::UdpSocket` pair, in the same run;
//! then sealed frames per second, alone and end to end over the movement channel.
//!
//! Usage: `cargo run --release -p ro-p2p-webrtc --bin rtt-bench -- [--current-thread] [--chat]
//! [--dump-slow] [--rtt-only] [N]`. N defaults to 1000; the runtime to a 2-worker multi-thread tokio
//! (`--current-thread` for one thread); `--chat` also measures the chat channel; `--dump-slow`
//! lists every round trip over 1 ms with its index; `--rtt-only` skips the sealing figures (for
//! `strace -c` and `perf` of the round trips alone).
//! Each side echoes what it receives; the measuring side sends one frame at a time and waits
//! for its echo. A frame not echoed within a second counts as lost (the movement channel does
//! not retransmit) and is left out of the percentiles. Besides wall-clock figures, each path
//! reports the CPU time and the heap allocations of the whole process (both ends) per round
//! trip.

mod alloc_count;
mod cpu;
mod seal_rate;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ro_p2p_core::client::LinkEvent;
use ro_p2p_core::wire::PeerId;
use ro_p2p_webrtc::{Channel, LinksConfig, LinksEvent, PeerLinks, Role};
use tokio::net::UdpSocket;
use tokio::sync::{Notify, mpsc};

const FRAME_BYTES: usize = 16;
const WARMUP: usize = 50;
const ECHO_TIMEOUT: Duration = Duration::from_secs(1);
/// Payloads sealed and opened per figure of `seal_open_rate`.
const SEAL_FRAMES: usize = 200_000;
/// How long the end-to-end sealed stream sends.
const STREAM_SEND: Duration = Duration::from_secs(1);
/// Most frames of the sealed stream in flight at once.
const STREAM_WINDOW: u64 = 256;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Round trips in microseconds, plus how many frames were lost.
struct Sample {
    rtts_us: Vec<u64>,
    lost: usize,
    /// CPU time of the whole process per measured round trip (both ends).
    cpu_us_per_rtt: Option<f64>,
    /// Heap allocations of the whole process per measured round trip (both ends).
    allocations_per_rtt: f64,
    /// Print the round trips over 1 ms, with their index.
    dump_slow: bool,
}

impl Sample {
    fn new(opts: &Opts) -> Sample {
        Sample {
            rtts_us: Vec::with_capacity(opts.n),
            lost: 0,
            cpu_us_per_rtt: None,
            allocations_per_rtt: 0.0,
            dump_slow: opts.dump_slow,
        }
    }

    fn percentile(&self, p: f64) -> f64 {
        let mut v = self.rtts_us.clone();
        v.sort_unstable();
        if v.is_empty() {
            return f64::NAN;
        }
        let idx = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
        v[idx.min(v.len() - 1)] as f64
    }

    fn mean(&self) -> f64 {
        self.rtts_us.iter().sum::<u64>() as f64 / self.rtts_us.len().max(1) as f64
    }

    fn print(&self, name: &str) {
        if self.dump_slow {
            let slow: Vec<(usize, u64)> =
                self.rtts_us.iter().copied().enumerate().filter(|&(_, r)| r > 1000).collect();
            println!("{name}: {} over 1 ms: {slow:?}", slow.len());
        }
        let cpu = self.cpu_us_per_rtt.map_or(String::from("n/a"), |us| format!("{us:.1} us"));
        println!(
            "{name:<14} p50 {:>7.1} us   p99 {:>7.1} us   mean {:>7.1} us   per round trip: CPU \
             {cpu}, {:.1} allocations   lost {}",
            self.percentile(50.0),
            self.percentile(99.0),
            self.mean(),
            self.allocations_per_rtt,
            self.lost
        );
    }
}

fn frame(seq: u64) -> [u8; FRAME_BYTES] {
    let mut f = [0xA5u8; FRAME_BYTES];
    f[..8].copy_from_slice(&seq.to_le_bytes());
    f
}

fn seq_of(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?))
}

async fn udp_rtt(opts: &Opts) -> Result<Sample, BoxError> {
    let n = opts.n;
    let a = UdpSocket::bind("127.0.0.1:0").await?;
    let b = UdpSocket::bind("127.0.0.1:0").await?;
    a.connect(b.local_addr()?).await?;
    let echo = tokio::spawn(async move {
        let mut buf = [0u8; 64];
        while let Ok((len, from)) = b.recv_from(&mut buf).await {
            if b.send_to(&buf[..len], from).await.is_err() {
                return;
            }
        }
    });
    let mut sample = Sample::new(opts);
    let (mut cpu_start, mut allocations_start) = (None, 0);
    let mut buf = [0u8; 64];
    for seq in 0..(WARMUP + n) as u64 {
        if seq as usize == WARMUP {
            cpu_start = cpu::process_cpu_ns();
            allocations_start = alloc_count::allocations();
        }
        let start = Instant::now();
        a.send(&frame(seq)).await?;
        let echoed = tokio::time::timeout(ECHO_TIMEOUT, async {
            loop {
                let len = a.recv(&mut buf).await?;
                if seq_of(&buf[..len]) == Some(seq) {
                    return Ok::<_, std::io::Error>(());
                }
            }
        })
        .await;
        let rtt_us = start.elapsed().as_micros() as u64;
        if seq as usize >= WARMUP {
            match echoed {
                Ok(r) => {
                    r?;
                    sample.rtts_us.push(rtt_us);
                }
                Err(_) => sample.lost += 1,
            }
        }
    }
    sample.cpu_us_per_rtt = cpu::cpu_us_per(cpu_start, cpu::process_cpu_ns(), n);
    sample.allocations_per_rtt =
        (alloc_count::allocations() - allocations_start) as f64 / n.max(1) as f64;
    echo.abort();
    Ok(sample)
}

/// Relays signaling between the two sides until both report `Connected`.
async fn connect_pair(
    a: &PeerLinks,
    a_rx: &mut mpsc::Receiver<LinksEvent>,
    a_id: &PeerId,
    b: &PeerLinks,
    b_rx: &mut mpsc::Receiver<LinksEvent>,
    b_id: &PeerId,
) -> Result<(), BoxError> {
    a.connect(b_id.clone(), Role::Offerer, Vec::new()).await?;
    b.connect(a_id.clone(), Role::Answerer, Vec::new()).await?;
    let (mut a_up, mut b_up) = (false, false);
    while !(a_up && b_up) {
        let (event, to, from_id) = tokio::select! {
            Some(e) = a_rx.recv() => (e, b, a_id),
            Some(e) = b_rx.recv() => (e, a, b_id),
        };
        let LinksEvent::Link { event, .. } = event else { continue };
        match event {
            LinkEvent::LocalDescription { sdp } => to.apply_remote_sdp(from_id, sdp).await?,
            LinkEvent::LocalCandidate(candidate) => {
                to.apply_remote_candidate(from_id, candidate).await?
            }
            LinkEvent::Connected if from_id == a_id => a_up = true,
            LinkEvent::Connected => b_up = true,
            LinkEvent::Failed => return Err("link failed (the log says why)".into()),
            _ => {}
        }
    }
    Ok(())
}

/// Two connected `PeerLinks` on loopback, without probes (they would add traffic to the
/// channel under test; one an hour is none).
struct Pair {
    a: PeerLinks,
    a_rx: mpsc::Receiver<LinksEvent>,
    a_id: PeerId,
    b: PeerLinks,
    b_rx: mpsc::Receiver<LinksEvent>,
    b_id: PeerId,
    connect_time: Duration,
}

async fn connected_pair() -> Result<Pair, BoxError> {
    let config = LinksConfig { probe_interval_ms: 3_600_000, ..LinksConfig::loopback() };
    let (a, mut a_rx) = PeerLinks::new(config.clone());
    let (b, mut b_rx) = PeerLinks::new(config);
    let (a_id, b_id) = (PeerId::new("bench-a")?, PeerId::new("bench-b")?);
    let connect_start = Instant::now();
    connect_pair(&a, &mut a_rx, &a_id, &b, &mut b_rx, &b_id).await?;
    let connect_time = connect_start.elapsed();
    Ok(Pair { a, a_rx, a_id, b, b_rx, b_id, connect_time })
}

/// Sealed 16-byte movement payloads, one way over the movement channel for `STREAM_SEND`,
/// with at most `STREAM_WINDOW` frames in flight (sent, not yet opened at the receiver): the
/// throughput the links sustain, not how a flood overruns their buffers. The receiver opens
/// each frame and counts it. A frame the channel drops is given up on after 5 ms of silence.
async fn sealed_stream() -> Result<(), BoxError> {
    let Pair { a, a_rx: _a_rx, a_id, b, mut b_rx, b_id, .. } = connected_pair().await?;
    let (mut sealer, mut opener) = seal_rate::pair(&a_id);
    let opened = Arc::new(AtomicU64::new(0));
    let sender_done = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(Notify::new());
    let receiver = {
        let (opened, sender_done, progress) =
            (opened.clone(), sender_done.clone(), progress.clone());
        tokio::spawn(async move {
            let mut bad = 0u64;
            let mut last = Instant::now();
            loop {
                match tokio::time::timeout(Duration::from_millis(300), b_rx.recv()).await {
                    Ok(Some(LinksEvent::Data { bytes, .. })) => {
                        match opener.open(ro_p2p_core::Instant::ZERO, &bytes) {
                            Ok(_) => {
                                if opened.fetch_add(1, Ordering::AcqRel) % 32 == 31 {
                                    progress.notify_one();
                                }
                            }
                            Err(_) => bad += 1,
                        }
                        last = Instant::now();
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    // Done once nothing arrived for 300 ms after the sender finished.
                    Err(_) if sender_done.load(Ordering::Acquire) => break,
                    Err(_) => {}
                }
            }
            (bad, last, b)
        })
    };
    let payload = [0x35u8; FRAME_BYTES];
    let (mut accepted, mut dropped, mut given_up) = (0u64, 0u64, 0u64);
    let cpu_start = cpu::process_cpu_ns();
    let start = Instant::now();
    while start.elapsed() < STREAM_SEND {
        let in_flight = accepted - given_up - opened.load(Ordering::Acquire);
        if in_flight >= STREAM_WINDOW {
            let wait = tokio::time::timeout(Duration::from_millis(5), progress.notified());
            if wait.await.is_err() {
                // What is still in flight was lost: the movement channel does not retransmit.
                given_up = accepted - opened.load(Ordering::Acquire);
            }
            continue;
        }
        let frame = sealer.seal(&payload)?;
        match a.send(&b_id, Channel::Movement, &frame).await {
            Ok(()) => accepted += 1,
            Err(ro_p2p_webrtc::LinkError::SendBufferFull { .. }) => dropped += 1,
            Err(e) => return Err(e.into()),
        }
    }
    sender_done.store(true, Ordering::Release);
    let (bad, last, b) = receiver.await?;
    let cpu_end = cpu::process_cpu_ns();
    let opened = opened.load(Ordering::Acquire);
    let span_s = last.duration_since(start).as_secs_f64();
    let cpu = cpu::cpu_us_per(cpu_start, cpu_end, opened as usize)
        .map_or(String::from("n/a"), |us| format!("{us:.1} us"));
    println!(
        "sealed movement frames end to end: {:.0} frames/s opened at the receiver \
         ({opened} opened, {bad} refused, {} lost, {dropped} refused as send buffer full, \
         window {STREAM_WINDOW}; CPU {cpu} per opened frame, both ends, sealing included)",
        opened as f64 / span_s.max(1e-9),
        accepted - opened,
    );
    a.close_all().await;
    b.close_all().await;
    Ok(())
}

async fn data_channel_rtt(opts: &Opts, channel: Channel) -> Result<(Sample, Duration), BoxError> {
    let n = opts.n;
    let Pair { a, mut a_rx, a_id, b, mut b_rx, b_id, connect_time } = connected_pair().await?;

    let b = Arc::new(b);
    let echo = {
        let b = b.clone();
        let a_id = a_id.clone();
        tokio::spawn(async move {
            while let Some(event) = b_rx.recv().await {
                if let LinksEvent::Data { channel, bytes, .. } = event {
                    let _ = b.send(&a_id, channel, &bytes).await;
                }
            }
        })
    };

    let mut sample = Sample::new(opts);
    let (mut cpu_start, mut allocations_start) = (None, 0);
    for seq in 0..(WARMUP + n) as u64 {
        if seq as usize == WARMUP {
            cpu_start = cpu::process_cpu_ns();
            allocations_start = alloc_count::allocations();
        }
        let start = Instant::now();
        a.send(&b_id, channel, &frame(seq)).await?;
        let echoed = tokio::time::timeout(ECHO_TIMEOUT, async {
            while let Some(event) = a_rx.recv().await {
                if let LinksEvent::Data { bytes, .. } = event
                    && seq_of(&bytes) == Some(seq)
                {
                    return true;
                }
            }
            false
        })
        .await;
        let rtt_us = start.elapsed().as_micros() as u64;
        if seq as usize >= WARMUP {
            match echoed {
                Ok(true) => sample.rtts_us.push(rtt_us),
                Ok(false) => return Err("links closed during the benchmark".into()),
                Err(_) => sample.lost += 1,
            }
        }
    }
    sample.cpu_us_per_rtt = cpu::cpu_us_per(cpu_start, cpu::process_cpu_ns(), n);
    sample.allocations_per_rtt =
        (alloc_count::allocations() - allocations_start) as f64 / n.max(1) as f64;
    a.close_all().await;
    b.close_all().await;
    echo.abort();
    Ok((sample, connect_time))
}

/// Round-trip time of a 16-byte frame on loopback over a WebRTC data channel and over raw
/// UDP, then sealed frames per second.
#[derive(Debug, clap::Parser)]
#[command(name = "rtt-bench", version)]
struct Opts {
    /// Round trips per path.
    #[arg(default_value_t = 1000)]
    n: usize,
    /// Run on a current-thread runtime (default: multi-thread, 2 workers).
    #[arg(long)]
    current_thread: bool,
    /// Also measure the chat channel.
    #[arg(long)]
    chat: bool,
    /// List every round trip over 1 ms with its index.
    #[arg(long)]
    dump_slow: bool,
    /// Skip the sealing figures (for `strace -c` and `perf` of the round trips alone).
    #[arg(long)]
    rtt_only: bool,
}

fn main() -> Result<(), BoxError> {
    let opts = <Opts as clap::Parser>::parse();
    let runtime = if opts.current_thread {
        tokio::runtime::Builder::new_current_thread().enable_all().build()?
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?
    };
    runtime.block_on(run(&opts))
}

async fn run(opts: &Opts) -> Result<(), BoxError> {
    let flavor = if opts.current_thread { "current-thread" } else { "multi-thread, 2 workers" };
    println!(
        "rtt-bench: {} round trips of a {FRAME_BYTES}-byte frame on 127.0.0.1, \
         {WARMUP} warm-up each, tokio {flavor}",
        opts.n
    );
    let udp = udp_rtt(opts).await?;
    let (dc, connect_time) = data_channel_rtt(opts, Channel::Movement).await?;
    println!(
        "data channel connected in {} ms (SDP + trickle ICE in process)",
        connect_time.as_millis()
    );
    udp.print("raw UDP");
    dc.print("data channel");
    if opts.chat {
        data_channel_rtt(opts, Channel::Chat).await?.0.print("chat channel");
    }
    let ratio = |p: f64| dc.percentile(p) / udp.percentile(p);
    let mean_ratio = dc.mean() / udp.mean();
    println!(
        "ratio (data channel / UDP): p50 {:.2}x   p99 {:.2}x   mean {:.2}x",
        ratio(50.0),
        ratio(99.0),
        mean_ratio
    );
    println!(
        "added by the data channel: p50 {:+.1} us per round trip",
        dc.percentile(50.0) - udp.percentile(50.0)
    );
    let verdict = if ratio(50.0) <= 2.0 { "met" } else { "NOT met" };
    println!("target (p50 within 2x of raw UDP): {verdict}");
    if opts.rtt_only {
        return Ok(());
    }

    let chat_line = b"Hello Prontera! Selling +7 Blade, PM me. ".repeat(3);
    seal_rate::seal_open_rate("16-byte movement", &[0x35u8; FRAME_BYTES], SEAL_FRAMES)?;
    seal_rate::seal_open_rate("120-byte chat", &chat_line[..120], SEAL_FRAMES)?;
    sealed_stream().await?;
    Ok(())
}
