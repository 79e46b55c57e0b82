//! `impairment-bench`: delivery latency and delivery ratio of the `movement` and `chat`
//! channels over a simulated lossy, delayed link (the deterministic harness of
//! `ro_p2p_webrtc::impairment`), for the stack's defaults and the tuned links side by side in
//! one run.
//!
//! Usage: `cargo run --release -p ro-p2p-webrtc --bin impairment-bench -- [--loss 0,1,2,5]
//! [--delay 10,40,100] [--seed N] [--traffic-s 600] [--jitter-ms J] [--burst N]
//! [--reorder-percent P --reorder-ms MS] [--server-path-ms MS] [--nudges N --spacing-ms MS]
//! [--movement-lifetime-ms MS]`. Loss is in percent per datagram and direction, delay one way;
//! `--burst N` makes the loss bursty (Gilbert-Elliott, mean burst N datagrams). The server
//! path defaults to twice the one-way delay. Every figure is simulated time, so a run is
//! reproducible from its seed whatever the machine's load.

use clap::Parser;
use ro_p2p_webrtc::LinkTuning;
use ro_p2p_webrtc::impairment::{self, Impairment, Loss, Report, Scenario};

#[derive(Parser, Debug)]
#[command(about = "Peer-link delivery under simulated loss and delay, defaults vs tuned")]
struct Opts {
    /// Loss rates to measure, percent per datagram and direction.
    #[arg(long, value_delimiter = ',', default_value = "0,1,2,5")]
    loss: Vec<f64>,
    /// One-way delays to measure, ms.
    #[arg(long, value_delimiter = ',', default_value = "10,40,100")]
    delay: Vec<u64>,
    /// Seed of loss, delay and traffic.
    #[arg(long, default_value_t = 21)]
    seed: u64,
    /// Simulated seconds of traffic per cell.
    #[arg(long, default_value_t = 600)]
    traffic_s: u64,
    /// Uniform extra delay per datagram, 0 to this, ms.
    #[arg(long, default_value_t = 0)]
    jitter_ms: u64,
    /// Bursty loss: mean burst length in datagrams (Gilbert-Elliott); random loss if absent.
    #[arg(long)]
    burst: Option<f64>,
    /// Percent of datagrams held back `--reorder-ms` (and overtaken).
    #[arg(long, default_value_t = 0.0)]
    reorder_percent: f64,
    /// How long a reordered datagram is held back, ms.
    #[arg(long, default_value_t = 0)]
    reorder_ms: u64,
    /// Sender-to-receiver time of the copy mirrored through the game server, ms (default twice
    /// the one-way delay; 0 for no mirrored copy).
    #[arg(long)]
    server_path_ms: Option<u64>,
    /// Override the tuned chat nudges.
    #[arg(long)]
    nudges: Option<u8>,
    /// Override the tuned spacing of chat nudges, ms.
    #[arg(long)]
    spacing_ms: Option<u64>,
    /// Tuned movement channel retransmits for this lifetime (ms) instead of never.
    #[arg(long)]
    movement_lifetime_ms: Option<u16>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let opts = Opts::parse();
    let mut tuned = LinkTuning::default();
    if let Some(n) = opts.nudges {
        tuned.chat_nudges = n;
    }
    if let Some(ms) = opts.spacing_ms {
        tuned.chat_nudge_spacing_ms = ms;
    }
    if opts.movement_lifetime_ms.is_some() {
        tuned.movement_lifetime_ms = opts.movement_lifetime_ms;
    }
    let loss_kind = match opts.burst {
        Some(b) => format!("bursty (Gilbert-Elliott, mean burst {b} datagrams)"),
        None => "random".to_owned(),
    };
    println!(
        "impairment-bench: seed {}, {} s of traffic per cell (walk every 100-200 ms, chat line \
         every 0.8-1.2 s, both players), {loss_kind} loss per direction, jitter 0-{} ms, \
         reorder {}% by {} ms; simulated time",
        opts.seed, opts.traffic_s, opts.jitter_ms, opts.reorder_percent, opts.reorder_ms
    );
    println!("defaults = {:?}", LinkTuning::stack_defaults());
    println!("tuned    = {tuned:?}");
    println!(
        "latency in ms from send to delivery over the peer link; 'seen' = earlier of the peer \
         link and the server path; datagrams/s = both directions, all kinds (DATA, SACK, STUN)"
    );
    println!(
        "{:>5} {:>5} {:<8} | {:>27} {:>6} | {:>27} {:>6} {:>7} | {:>9} {:>10} | {:>10}",
        "delay",
        "loss%",
        "links",
        "movement p50/p99/max",
        "deliv%",
        "chat p50/p99/max",
        "deliv%",
        "p99/RTT",
        "server ms",
        "seen chat p99",
        "datagrams/s"
    );
    for &delay in &opts.delay {
        for &loss in &opts.loss {
            let rate = loss / 100.0;
            let mut imp = Impairment::random(delay, rate);
            if let Some(burst) = opts.burst
                && rate > 0.0
            {
                imp.loss = Loss::bursty(rate, burst);
            }
            imp.jitter_ms = opts.jitter_ms;
            imp.reorder_rate = opts.reorder_percent / 100.0;
            imp.reorder_delay_ms = opts.reorder_ms;
            for (name, tuning) in [("defaults", LinkTuning::stack_defaults()), ("tuned", tuned)] {
                let mut scenario = Scenario::new(opts.seed, imp, tuning);
                scenario.traffic_ms = opts.traffic_s * 1000;
                if let Some(ms) = opts.server_path_ms {
                    scenario.server_path_ms = (ms > 0).then_some(ms);
                }
                let report = impairment::run(&scenario)?;
                print_row(delay, loss, name, &scenario, &report);
            }
        }
    }
    Ok(())
}

fn print_row(delay: u64, loss: f64, name: &str, scenario: &Scenario, r: &Report) {
    let triple = |f: &impairment::ChannelFigures| {
        format!("{:.1}/{:.1}/{:.1}", f.latency_ms(50.0), f.latency_ms(99.0), f.latency_ms(100.0))
    };
    let rtt_ms = (2 * delay).max(1) as f64;
    let server = scenario.server_path_ms.map_or("none".to_owned(), |ms| ms.to_string());
    println!(
        "{:>5} {:>5} {:<8} | {:>27} {:>6.2} | {:>27} {:>6.2} {:>6.2}x | {:>9} {:>10.1} | {:>10.1}",
        delay,
        loss,
        name,
        triple(&r.movement),
        100.0 * r.movement.delivery_ratio(),
        triple(&r.chat),
        100.0 * r.chat.delivery_ratio(),
        r.chat.latency_ms(99.0) / rtt_ms,
        server,
        r.chat.seen_ms(99.0),
        r.datagrams as f64 / (scenario.traffic_ms as f64 / 1000.0).max(1.0),
    );
}
