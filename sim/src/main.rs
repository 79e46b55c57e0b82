//! `ro-p2p-sim`: runs simulation seeds (see docs/simulation.md).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use ro_p2p_core::packet::PacketVersion;
use ro_p2p_sim::coverage::{self, Rare, Report};
use ro_p2p_sim::run::option_args;
use ro_p2p_sim::{Options, Plan, run_seed};

/// Deterministic simulation of ro-p2p: one seed, or a sweep of seeds.
#[derive(Debug, Parser)]
#[command(name = "ro-p2p-sim", version)]
struct Args {
    /// Run this one seed and print its plan, result and trace hash.
    #[arg(long, conflicts_with = "seeds")]
    seed: Option<u64>,
    /// Sweep seeds `A..B` (B excluded).
    #[arg(long)]
    seeds: Option<String>,
    /// Write `trace.jsonl` and `signaling.mmd` (Mermaid) of the run (with `--seed`) into DIR.
    #[arg(long, value_name = "DIR")]
    trace: Option<PathBuf>,
    /// Most clients of a world.
    #[arg(long, default_value_t = Options::default().clients_max)]
    clients: usize,
    /// Safety phase length, in simulated ms.
    #[arg(long, default_value_t = Options::default().safety_ms)]
    safety_ms: u64,
    /// Liveness phase length, in simulated ms.
    #[arg(long, default_value_t = Options::default().liveness_ms)]
    liveness_ms: u64,
    /// Test-only: one client leaks one NPC packet to a peer (the checkers must catch it).
    #[arg(long)]
    sabotage_npc_to_peer: bool,
    /// Test-only: peer links silently lose every game frame at the end (checker 6 must fail).
    #[arg(long)]
    sabotage_lose_peer_frames: bool,
    /// Test-only: the fault plan is empty (the rare-event coverage must notice: no seat resumed).
    #[arg(long)]
    sabotage_no_faults: bool,
    /// A sweep fails if a listed rare event (docs/simulation.md, "Rare-event coverage") is
    /// reached by fewer than this percentage of its seeds. Default: 1 for sweeps of 500 seeds
    /// or more, no threshold below that (the report is printed either way).
    #[arg(long, value_name = "P")]
    coverage_min_percent: Option<f64>,
    /// A sweep runs every seed twice, each in its own process, and fails a seed whose two
    /// trace hashes differ.
    #[arg(long)]
    twice: bool,
    /// Simulated ms per step (the checkers run after every step).
    #[arg(long, default_value_t = Options::default().tick_ms)]
    tick_ms: u64,
    /// Seeds run in parallel by a sweep (default: one per core), each in its own process, as
    /// its reproduce line runs it: a seed's result does not depend on the parallelism.
    #[arg(long)]
    jobs: Option<usize>,
    /// Extra tokio task numbers drawn before the run (0 to 63): explores another order in which
    /// a crashed host's sockets close (docs/simulation.md, "Determinism").
    #[arg(long, default_value_t = Options::default().task_order)]
    task_order: u64,
    /// Internal (a sweep's child process): print only one summary line.
    #[arg(long, hide = true, requires = "seed")]
    summary: bool,
    /// Coordinator instances (1: the single in-memory coordinator; 2 to 5: cluster mode on one
    /// shared store; 0: derived from each seed, 1 to 3).
    #[arg(long, default_value_t = Options::default().coordinators)]
    coordinators: usize,
    /// The client version of every world: any PACKETVER rAthena builds, optionally with the
    /// family (`20200401-zero`); default: drawn from each seed among the four reference ones.
    #[arg(long, value_parser = parse_version)]
    packetver: Option<PacketVersion>,
}

fn parse_version(s: &str) -> Result<PacketVersion, String> {
    s.parse().map_err(|e: ro_p2p_core::packet::UnsupportedPacketVersion| e.to_string())
}

fn parse_range(s: &str) -> Option<(u64, u64)> {
    let (a, b) = s.split_once("..")?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let options = Options {
        clients_max: args.clients.max(2),
        safety_ms: args.safety_ms,
        liveness_ms: args.liveness_ms,
        sabotage_npc_to_peer: args.sabotage_npc_to_peer,
        sabotage_lose_peer_frames: args.sabotage_lose_peer_frames,
        sabotage_no_faults: args.sabotage_no_faults,
        tick_ms: args.tick_ms.max(1),
        coordinators: args.coordinators,
        task_order: args.task_order,
        packet_version: args.packetver,
    };
    if let Some(range) = &args.seeds {
        let Some((a, b)) = parse_range(range) else {
            eprintln!("--seeds expects A..B, got {range:?}");
            return ExitCode::from(2);
        };
        let jobs = args
            .jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
            .max(1);
        let total = b.saturating_sub(a);
        let min_percent = args
            .coverage_min_percent
            .or((total >= COVERAGE_DEFAULT_SEEDS).then_some(COVERAGE_DEFAULT_PERCENT));
        return sweep(a, b, options, jobs, Sweep { min_percent, twice: args.twice });
    }
    let seed = args.seed.unwrap_or(0);
    if args.summary {
        let outcome = run_seed(seed, options);
        let first = outcome
            .violations
            .first()
            .map(|v| format!("[{}] {}", v.checker, v.detail).replace(['\t', '\n'], " "))
            .unwrap_or_default();
        let verdict = if outcome.passed() { "pass" } else { "fail" };
        let reached = coverage::to_field(&outcome.recorder.borrow().coverage.reached());
        println!(
            "{SUMMARY}\t{}\t{verdict}\t{}\t{reached}\t{first}",
            outcome.simulated_ms, outcome.trace_hash
        );
        return ExitCode::SUCCESS;
    }
    let plan = Plan::derive(seed, options);
    print!("{plan}");
    let started = std::time::Instant::now();
    let outcome = run_seed(seed, options);
    let wall = started.elapsed().as_secs_f64();
    if let Some(dir) = &args.trace {
        let r = outcome.recorder.borrow();
        let written = std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(dir.join("trace.jsonl"), r.trace_jsonl()))
            .and_then(|()| std::fs::write(dir.join("signaling.mmd"), r.mermaid()));
        match written {
            Ok(()) => println!(
                "trace: {} ({} events), diagram: {}",
                dir.join("trace.jsonl").display(),
                r.trace.len(),
                dir.join("signaling.mmd").display()
            ),
            Err(e) => eprintln!("cannot write the trace into {}: {e}", dir.display()),
        }
    }
    println!(
        "simulated {:.1} s in {wall:.2} s wall ({:.1}x), trace {} events, hash {}",
        outcome.simulated_ms as f64 / 1000.0,
        outcome.simulated_ms as f64 / 1000.0 / wall.max(1e-9),
        outcome.recorder.borrow().trace.len(),
        outcome.trace_hash
    );
    {
        let r = outcome.recorder.borrow();
        let acked = r.peers_only_sent.iter().filter(|f| f.seal.is_some()).count();
        if acked > 0 {
            println!(
                "peers-only chat and emote frames: {acked}, opened {}, sent to the server late {}",
                r.peers_only_sent
                    .iter()
                    .filter(|f| f.seal.is_some())
                    .filter(|f| r.peer_frames_opened.contains(&(
                        f.from.clone(),
                        f.to.clone(),
                        f.frame
                    )))
                    .count(),
                r.late_copies.len()
            );
        }
    }
    {
        let r = outcome.recorder.borrow();
        let counts: Vec<String> = Rare::ALL
            .into_iter()
            .filter(|rare| rare.applies(outcome.plan.coordinators))
            .map(|rare| format!("{} {}", rare.as_str(), r.coverage.count(rare)))
            .collect();
        println!("rare events reached (times): {}", counts.join(", "));
    }
    if !outcome.unlinked.is_empty() {
        println!(
            "note: {} session member pairs have no link (policy {}): {}",
            outcome.unlinked.len(),
            outcome.plan.policy,
            outcome.unlinked.join(" ")
        );
    }
    let code = if outcome.passed() {
        println!("PASS");
        ExitCode::SUCCESS
    } else {
        for v in &outcome.violations {
            println!("VIOLATION [{}] at {} ms: {}", v.checker, v.t_ms, v.detail);
        }
        println!("FAIL");
        ExitCode::FAILURE
    };
    let line = outcome.reproduce();
    println!("reproduce: {line}");
    if let Some(built) = built_line(&line) {
        println!("reproduce (this binary, no rebuild): {built}");
    }
    code
}

/// The reproduce line run by this very binary: `cargo run -p ro-p2p-sim` alone unifies the
/// dependencies' features differently from a `--workspace` build and can rebuild the whole tree.
fn built_line(cargo_line: &str) -> Option<String> {
    let exe = std::env::current_exe().ok()?;
    let args = cargo_line.split_once(" -- ")?.1;
    Some(format!("{} {args}", exe.display()))
}

/// The first word of a `--summary` line.
const SUMMARY: &str = "ro-p2p-sim-summary";

/// Sweeps of at least this many seeds get a coverage threshold by default.
const COVERAGE_DEFAULT_SEEDS: u64 = 500;

/// The default coverage threshold, in percent of the seeds.
const COVERAGE_DEFAULT_PERCENT: f64 = 1.0;

/// How a sweep judges its seeds beyond the checkers.
#[derive(Clone, Copy, Debug)]
struct Sweep {
    /// Fail when a rare event is reached by fewer than this percentage of seeds.
    min_percent: Option<f64>,
    /// Run every seed twice and compare the trace hashes.
    twice: bool,
}

/// Runs `seed` in a child process (this binary with `--seed N --summary`), so that nothing a
/// run leaves in the process (tokio's task numbers) reaches another.
fn run_child(seed: u64, options: &Options) -> Done {
    let plan = Plan::derive(seed, *options);
    let reproduce = ro_p2p_sim::run::reproduce_line(&plan);
    let broken = |why: String| Done {
        seed,
        simulated_ms: 0,
        hash: String::new(),
        reached: Default::default(),
        failure: Some((why, reproduce.clone())),
    };
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return broken(format!("[runner] cannot find this binary: {e}")),
    };
    let output = std::process::Command::new(exe)
        .arg("--seed")
        .arg(seed.to_string())
        .args(option_args(options))
        .arg("--summary")
        .stderr(std::process::Stdio::inherit())
        .output();
    let output = match output {
        Ok(o) => o,
        Err(e) => return broken(format!("[runner] cannot start the seed's process: {e}")),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let Some(line) = stdout.lines().find(|l| l.starts_with(SUMMARY)) else {
        return broken(format!(
            "[runner] the seed's process ended without a result ({})",
            output.status
        ));
    };
    let mut fields = line.splitn(6, '\t').skip(1);
    let simulated_ms = fields.next().and_then(|f| f.parse().ok()).unwrap_or(0);
    let verdict = fields.next().unwrap_or("fail");
    let hash = fields.next().unwrap_or("").to_owned();
    let reached = coverage::from_field(fields.next().unwrap_or("-"));
    let first = fields.next().unwrap_or("").to_owned();
    let failure = (verdict != "pass").then(|| (first, reproduce.clone()));
    Done { seed, simulated_ms, hash, reached, failure }
}

/// Runs `seed` twice, each in its own process; a seed whose trace hashes differ fails.
fn run_child_twice(seed: u64, options: &Options) -> Done {
    let first = run_child(seed, options);
    if first.failure.is_some() {
        return first;
    }
    let second = run_child(seed, options);
    if second.failure.is_some() || second.hash == first.hash {
        return second;
    }
    let reproduce = ro_p2p_sim::run::reproduce_line(&Plan::derive(seed, *options));
    let why = format!(
        "[determinism] two runs of the seed gave different trace hashes: {} then {}",
        first.hash, second.hash
    );
    Done { failure: Some((why, reproduce)), ..first }
}

/// What a sweep keeps of one seed.
struct Done {
    seed: u64,
    simulated_ms: u64,
    hash: String,
    reached: std::collections::BTreeSet<Rare>,
    failure: Option<(String, String)>,
}

fn sweep(a: u64, b: u64, options: Options, jobs: usize, how: Sweep) -> ExitCode {
    let started = std::time::Instant::now();
    let total = b.saturating_sub(a);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(a));
    let (tx, rx) = std::sync::mpsc::channel::<Done>();
    let mut workers = Vec::new();
    for _ in 0..jobs.min(total.max(1) as usize) {
        let (next, tx) = (next.clone(), tx.clone());
        workers.push(std::thread::spawn(move || {
            loop {
                let seed = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if seed >= b {
                    return;
                }
                let done = if how.twice {
                    run_child_twice(seed, &options)
                } else {
                    run_child(seed, &options)
                };
                if tx.send(done).is_err() {
                    return;
                }
            }
        }));
    }
    drop(tx);
    let mut failures = Vec::new();
    let mut simulated_ms = 0u64;
    let mut done = 0u64;
    let mut report = Report::default();
    for d in rx {
        done += 1;
        report.add(&d.reached);
        simulated_ms += d.simulated_ms;
        if let Some((first, line)) = d.failure {
            failures.push((d.seed, first, line));
        }
        let width = 30;
        let filled = (done * width / total.max(1)) as usize;
        let elapsed = started.elapsed().as_secs_f64();
        eprint!(
            "\r[{}{}] {done}/{total} seeds, {} failed, {:.2} seeds/s ",
            "#".repeat(filled),
            "-".repeat(width as usize - filled),
            failures.len(),
            done as f64 / elapsed.max(1e-9)
        );
        let _ = std::io::stderr().flush();
    }
    for w in workers {
        let _ = w.join();
    }
    eprintln!();
    failures.sort();
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{total} seeds in {elapsed:.1} s with {jobs} jobs: {:.2} seeds/s ({:.0} seeds/min), {:.1} simulated s per wall s, {} failed",
        total as f64 / elapsed.max(1e-9),
        total as f64 * 60.0 / elapsed.max(1e-9),
        simulated_ms as f64 / 1000.0 / elapsed.max(1e-9),
        failures.len()
    );
    if how.twice {
        println!("every seed ran twice, in separate processes; trace hashes compared");
    }
    for (seed, first, line) in &failures {
        println!("FAIL seed {seed}: {first}");
        println!("  reproduce: {line}");
        if let Some(built) = built_line(line) {
            println!("  reproduce (this binary, no rebuild): {built}");
        }
    }
    println!("rare-event coverage (seeds that reached each event):");
    for line in report.lines(options.coordinators) {
        println!("  {line}");
    }
    let mut short = Vec::new();
    if let Some(min) = how.min_percent {
        short = report.shortfalls(min, options.coordinators);
        for s in &short {
            println!(
                "COVERAGE FAIL {}: reached by {} of {} seeds ({:.1} %), below {min} %",
                s.rare.as_str(),
                s.seeds,
                report.seeds,
                s.percent
            );
        }
    }
    if failures.is_empty() && short.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
