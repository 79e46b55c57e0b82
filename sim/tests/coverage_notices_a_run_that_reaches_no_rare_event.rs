//! The rare-event coverage bites: seeds that resume a seat after their coordinator connection
//! broke stop reaching it under the test-only sabotage that empties the fault plan, and the
//! coverage report (and a sweep with a threshold) goes red for it.

use std::collections::BTreeSet;
use std::process::Command;

use ro_p2p_sim::coverage::{Rare, Report};
use ro_p2p_sim::{Options, run_seed};

/// Seeds of [`small`] that resume a seat (found with `ro-p2p-sim --seed N` and its small
/// options: "rare events reached").
const SEEDS: [u64; 2] = [4, 5];

fn small() -> Options {
    Options { clients_max: 5, safety_ms: 8_000, liveness_ms: 8_000, ..Options::default() }
}

fn reached(seed: u64, options: Options) -> BTreeSet<Rare> {
    let outcome = run_seed(seed, options);
    assert!(outcome.passed(), "seed {seed}: {:?}", outcome.violations);
    outcome.recorder.borrow().coverage.reached()
}

#[test]
fn an_empty_fault_plan_resumes_no_seat_and_the_report_goes_red() {
    let sabotaged = Options { sabotage_no_faults: true, ..small() };
    let (mut clean, mut broken) = (Report::default(), Report::default());
    for seed in SEEDS {
        let with_faults = reached(seed, small());
        assert!(with_faults.contains(&Rare::SeatResumed), "seed {seed}: {with_faults:?}");
        clean.add(&with_faults);
        let without = reached(seed, sabotaged);
        assert!(!without.contains(&Rare::SeatResumed), "seed {seed}: {without:?}");
        broken.add(&without);
    }
    let short = |r: &Report| -> Vec<Rare> {
        r.shortfalls(50.0, 1).into_iter().map(|s| s.rare).collect::<Vec<_>>()
    };
    assert!(!short(&clean).contains(&Rare::SeatResumed), "{:?}", clean.lines(1));
    assert!(short(&broken).contains(&Rare::SeatResumed), "{:?}", broken.lines(1));
}

fn sweep(extra: &[&str]) -> (bool, String) {
    let range = format!("{}..{}", SEEDS[0], SEEDS[1] + 1);
    let out = Command::new(env!("CARGO_BIN_EXE_ro-p2p-sim"))
        .args(["--seeds", &range, "--jobs", "1", "--clients", "5"])
        .args(["--safety-ms", "8000", "--liveness-ms", "8000", "--coverage-min-percent", "50"])
        .args(extra)
        .output()
        .expect("run the sweep");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn a_sweep_with_a_threshold_fails_on_an_event_reached_too_seldom() {
    let (ok, out) = sweep(&["--twice"]);
    assert!(out.contains("every seed ran twice"), "{out}");
    assert!(out.contains("seat-resumed: 2/2 seeds (100.0 %)"), "{out}");
    assert!(!out.contains("COVERAGE FAIL seat-resumed"), "{out}");
    assert!(!out.contains("[determinism]"), "{out}");
    // The clean seeds may miss another event at 50 % (a coverage failure), never a checker.
    assert!(ok || out.contains("COVERAGE FAIL"), "{out}");
    assert!(!out.contains("FAIL seed"), "{out}");
    let (ok, out) = sweep(&["--sabotage-no-faults"]);
    assert!(!ok, "{out}");
    assert!(out.contains("COVERAGE FAIL seat-resumed: reached by 0 of 2 seeds"), "{out}");
}
