//! Checker 6 bites: with the test-only switch, every peer transport silently loses game frames
//! once the network has healed. Seed 6 (movement and emotes peers-only, a fully linked session)
//! must then fail on `peers-only-delivered` with a reproduce line, and pass without it.

use ro_p2p_sim::{Options, run_seed};

#[test]
fn checkers_catch_peers_only_traffic_that_is_lost() {
    let options = Options {
        clients_max: 5,
        safety_ms: 8_000,
        liveness_ms: 8_000,
        sabotage_lose_peer_frames: true,
        ..Options::default()
    };
    let outcome = run_seed(6, options);
    let first = outcome.violations.first().expect("the sabotaged run must fail");
    assert_eq!(first.checker, "peers-only-delivered", "{first:?}");
    assert!(first.detail.contains("never reached"), "{}", first.detail);
    let line = outcome.reproduce();
    assert!(line.contains("--seed 6") && line.contains("--sabotage-lose-peer-frames"), "{line}");
    let clean = run_seed(6, Options { sabotage_lose_peer_frames: false, ..options });
    assert!(clean.passed(), "{:?}", clean.violations);
    let r = clean.recorder.borrow();
    assert!(!r.peers_only_sent.is_empty(), "seed 6 sent nothing peers-only");
}
