//! Multi-coordinator worlds: several instances of the real service in cluster mode on one
//! shared in-memory store, with owner crashes and store faults. Kept small (5 clients, 16
//! simulated s) so the whole sim suite stays inside CI's budget.

use ro_p2p_sim::check::Checkers;
use ro_p2p_sim::plan::Fault;
use ro_p2p_sim::record::{Recorder, StoreEvent};
use ro_p2p_sim::{Options, Plan, run_seed};

fn small(coordinators: usize) -> Options {
    Options {
        clients_max: 5,
        safety_ms: 8_000,
        liveness_ms: 8_000,
        coordinators,
        ..Options::default()
    }
}

fn grants(r: &Recorder) -> Vec<(String, String, u64)> {
    r.store_events
        .iter()
        .filter_map(|(_, e)| match e {
            StoreEvent::Granted { zone, instance, epoch } => {
                Some((zone.clone(), instance.clone(), *epoch))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn seeds_with_several_coordinators_pass_every_checker() {
    // Derived multi-coordinator seeds (3 and 6: three instances, 5 and 9: two), and two
    // seeds forced to three instances.
    let runs = [(3, 0), (5, 0), (6, 0), (9, 0), (1, 3), (2, 2)];
    for (seed, n) in runs {
        let outcome = passes_with_several_coordinators(seed, small(n));
        let r = outcome.recorder.borrow();
        assert!(!grants(&r).is_empty(), "seed {seed}: no instance ever owned a zone");
        assert!(!r.instance_views.is_empty(), "seed {seed}: no instance published a view");
        assert!(!r.server_received.is_empty(), "seed {seed}: the map server received nothing");
    }
}

/// Seed 15 crashes the owner of a zone in the safety phase: another instance takes the zone
/// over under a higher epoch, and the world converges.
#[test]
fn a_crashed_owner_hands_its_zones_to_another_instance() {
    let outcome = run_seed(15, small(0));
    assert!(
        outcome.plan.faults.iter().any(|(_, f)| matches!(f, Fault::CrashOwner { .. })),
        "seed 15 no longer crashes an owner:\n{}",
        outcome.plan
    );
    assert!(outcome.passed(), "{:?}\nreproduce: {}", outcome.violations, outcome.reproduce());
    let r = outcome.recorder.borrow();
    let crashed = r.trace.iter().any(|e| {
        e.host == "runner"
            && serde_json::to_string(&e.what)
                .is_ok_and(|s| s.contains("\"crashed\":\"coordinator-"))
    });
    assert!(crashed, "the owner was not found and crashed");
    let g = grants(&r);
    let moved = g.iter().any(|(zone, instance, epoch)| {
        g.iter().any(|(z, i, e)| z == zone && i != instance && e > epoch)
    });
    assert!(moved, "no zone moved to another instance under a higher epoch: {g:?}");
}

#[test]
fn a_multi_coordinator_seed_gives_the_same_trace_twice() {
    let a = run_seed(9, small(0));
    let b = run_seed(9, small(0));
    assert!(a.plan.coordinators > 1);
    assert_eq!(a.trace_hash, b.trace_hash);
    assert_eq!(a.recorder.borrow().trace.len(), b.recorder.borrow().trace.len());
    assert!(a.recorder.borrow().trace.len() > 100, "the trace is nearly empty");
}

#[test]
fn a_seed_that_draws_one_coordinator_runs_the_single_coordinator_world() {
    let plan = Plan::derive(1, small(0));
    assert_eq!(plan.coordinators, 1);
    assert_eq!(plan.coordinator_hosts(), vec!["coordinator".to_owned()]);
    assert!(plan.faults.iter().all(|(_, f)| !matches!(
        f,
        Fault::CrashOwner { .. }
            | Fault::RestartInstances
            | Fault::StorePartition { .. }
            | Fault::StoreRepair { .. }
            | Fault::StoreDown
            | Fault::StoreUp
    )));
}

#[test]
fn the_plan_prints_the_cluster_and_its_store_faults() {
    let plan = Plan::derive(9, small(3));
    let text = plan.to_string();
    assert!(text.contains("coordinators: 3 instances"), "{text}");
    assert!(text.contains("store-partition"), "{text}");
    assert!(!text.contains("\"coordinator\""), "a fault names the single coordinator: {text}");
}

/// The fencing checker bites: a write under an epoch older than the zone's latest grant.
#[test]
fn the_fencing_checker_catches_a_stale_owner_writing_after_a_takeover() {
    let mut r = Recorder::default();
    let granted = |instance: &str, epoch| StoreEvent::Granted {
        zone: "prontera".into(),
        instance: instance.into(),
        epoch,
    };
    r.store_events.push((10, granted("coordinator-1.1", 7)));
    r.store_events.push((
        20,
        StoreEvent::Wrote { zone: "prontera".into(), instance: "coordinator-1.1".into(), epoch: 7 },
    ));
    r.store_events.push((30, granted("coordinator-2.1", 8)));
    let mut checkers = Checkers::default();
    assert!(checkers.step(&r, 5_000).is_empty(), "an honest takeover is no violation");
    r.store_events.push((
        40,
        StoreEvent::Wrote { zone: "prontera".into(), instance: "coordinator-1.1".into(), epoch: 7 },
    ));
    let found = checkers.step(&r, 5_000);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].checker, "cluster-fencing");
    assert!(found[0].detail.contains("stale owner coordinator-1.1"), "{}", found[0].detail);
    r.store_events.push((50, granted("coordinator-3.1", 8)));
    let found = checkers.step(&r, 5_000);
    assert_eq!(found.len(), 1, "two owners of one epoch: {found:?}");
}

/// Full-size seeds that failed while this was built. 123 and 153: a client that sent `leave`
/// while its zone's owner was dead was re-seated when the holder took the zone over (its last
/// `join` was replayed) and later joiners saw it as a member, even as host; fixed in the
/// cluster machine, now `core::cluster::Instance` (a refused `join` or a `leave` is not
/// replayed).
#[test]
fn regression_seeds_with_several_coordinators_pass_every_checker() {
    for seed in [123, 153] {
        passes_with_several_coordinators(seed, full(0));
    }
}

/// Findings of the multi-coordinator world, fixed (see `docs/simulation.md`, "Findings in
/// cluster mode"):
///
/// - 22 (small): an instance lost a zone and took it back; members live in its core were
///   never told the restored session's new key (fixed: `RestoreSeats` announces it).
/// - 42, 141: a stale seat record was restored onto a connection whose client was in another
///   zone (fixed: a record is attached only to a connection told that very session), and a
///   client that joined while the store was down was seated nowhere after the takeover (fixed:
///   placed again).
/// - 94: a `leave` refused while the zone had no owner left the client's old session in the
///   core, which a later takeover restored (fixed: a `leave` needs no owner).
/// - 6 (two instances): a `leave` the owner never heard left a live seat there (fixed: owed
///   `Detach`es are retried; the connection is placed afresh on its next frame).
/// - 3: a connection placed in the holder's own core after its owner missed a frame was skipped
///   by the takeover (fixed: placed nowhere until its next frame).
/// - 68, 140 (three instances): a holder cut off the bus missed a `host-changed` for good
///   (fixed: an unheard delivery detaches the connection, whose client then resumes).
/// - 80, and 598 with `--task-order 1` (three instances): a sender that heard `key-rotated`
///   first sealed a peers-only walk under an epoch its peer did not hold yet, and the peer
///   dropped it (fixed: the node holds such a frame until the key arrives).
#[test]
fn multi_coordinator_findings_stay_fixed() {
    let runs = [
        (22, small(0)),
        (42, full(0)),
        (141, full(0)),
        (94, full(0)),
        (3, full(0)),
        (6, full(2)),
        (68, full(3)),
        (140, full(3)),
        (80, full(3)),
        (598, Options { task_order: 1, ..full(3) }),
    ];
    for (seed, options) in runs {
        passes_with_several_coordinators(seed, options);
    }
}

/// Finding of the sweep after issue 23 (two instances, drawn with `--coordinators 0`): a payon
/// session outlived its timeout with no connected member (checker `bounded-timers`). Its only
/// member crashed at 3,430 ms; its owner crashed at 4,740 ms; the store was down from 7,625 to
/// 10,035 ms, so nobody could take payon over before then; the takeover restored the seat record
/// with a whole grace of its own (the record said the player was gone, not since when), and the
/// session stood until 12,510 ms. Fixed in issue 20: the record of a disconnected player is
/// written with its remaining grace as a TTL (the store forgets it when the grace ends), a read
/// returns what is left, and a takeover restores the seat with only that (docs/scaling.md).
/// (Earlier, the same seed failed when the owner itself took the zone back and restored a record
/// it could not remove: see docs/simulation.md.)
#[test]
fn seed_203915_a_session_without_members_expires_in_cluster_mode() {
    passes_with_several_coordinators(203915, full(0));
}

/// Runs `seed`, which must run with more than one coordinator and pass every checker.
fn passes_with_several_coordinators(seed: u64, options: Options) -> ro_p2p_sim::Outcome {
    let outcome = run_seed(seed, options);
    assert!(outcome.plan.coordinators > 1, "seed {seed} derived one coordinator");
    assert!(
        outcome.passed(),
        "seed {seed} failed: {:?}\nreproduce: {}",
        outcome.violations,
        outcome.reproduce()
    );
    outcome
}

fn full(coordinators: usize) -> Options {
    Options { coordinators, ..Options::default() }
}
