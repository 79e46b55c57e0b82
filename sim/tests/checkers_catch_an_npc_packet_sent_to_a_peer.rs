//! The checkers bite: with the test-only sabotage switch, one client seals one NPC packet to a
//! peer, as a broken router would. The run must fail on checker 1 with a reproduce line.

use ro_p2p_sim::{Options, run_seed};

#[test]
fn checkers_catch_an_npc_packet_sent_to_a_peer() {
    let options = Options {
        clients_max: 4,
        safety_ms: 8_000,
        liveness_ms: 8_000,
        sabotage_npc_to_peer: true,
        ..Options::default()
    };
    let outcome = run_seed(3, options);
    let first = outcome.violations.first().expect("the sabotaged run must fail");
    assert_eq!(first.checker, "peer-eligible-only");
    assert!(first.detail.contains("no peer event"), "{}", first.detail);
    let line = outcome.reproduce();
    assert!(line.contains("--seed 3") && line.contains("--sabotage-npc-to-peer"), "{line}");
    // The same seed without the sabotage passes: the violation is the sabotage's.
    let clean = run_seed(3, Options { sabotage_npc_to_peer: false, ..options });
    assert!(clean.passed(), "{:?}", clean.violations);
}
