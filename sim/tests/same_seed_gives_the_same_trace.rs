//! Determinism: the same seed twice gives byte-identical traces.

use ro_p2p_sim::{Options, run_seed};

#[test]
fn same_seed_gives_the_same_trace_hash() {
    let options = Options {
        clients_max: 6,
        safety_ms: 8_000,
        liveness_ms: 6_000,
        sabotage_npc_to_peer: false,
        ..Options::default()
    };
    for seed in [5, 12] {
        let a = run_seed(seed, options);
        let b = run_seed(seed, options);
        assert_eq!(a.trace_hash, b.trace_hash, "seed {seed} diverged");
        assert_eq!(a.recorder.borrow().trace.len(), b.recorder.borrow().trace.len());
        assert!(a.recorder.borrow().trace.len() > 100, "seed {seed}: the trace is nearly empty");
    }
}

#[test]
fn different_seeds_give_different_traces() {
    let options = Options {
        clients_max: 4,
        safety_ms: 4_000,
        liveness_ms: 4_000,
        sabotage_npc_to_peer: false,
        ..Options::default()
    };
    assert_ne!(run_seed(1, options).trace_hash, run_seed(2, options).trace_hash);
}
