//! Runs one seed: builds the turmoil world of its [`Plan`], steps it through the safety phase
//! (faults applied at their times) and the liveness phase (network healed, crashed hosts
//! restarted), runs the checkers after every step, and returns the [`Outcome`].

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::Duration;

use crate::address::{host_of, instance_id};
use crate::check::{Checkers, Violation};
use crate::client::{ClientCtx, client_host};
use crate::cluster::{Cluster, cluster_coordinator};
use crate::hosts::{coordinator, coordinator_config, map_server, observer, relay};
use crate::plan::{Fault, Options, Plan, QUIET_MS, SETTLE_MS};
use crate::record::{Recorder, Shared, StoreEvent, What};
use ro_p2p_tokio::cluster::InstanceId;

/// What one seed did.
#[derive(Debug)]
pub struct Outcome {
    /// The plan it ran.
    pub plan: Plan,
    /// Violations, the first one first (the run stops at the first step that has any).
    pub violations: Vec<Violation>,
    /// SHA-256 of the trace.
    pub trace_hash: String,
    /// Simulated ms run.
    pub simulated_ms: u64,
    /// The record (trace, ground truth).
    pub recorder: Shared,
    /// Session members left without a link between them at the end (see
    /// [`crate::check::unlinked_members`]).
    pub unlinked: Vec<String>,
}

impl Outcome {
    /// Whether every checker passed.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// The command line that replays this seed.
    pub fn reproduce(&self) -> String {
        reproduce_line(&self.plan)
    }
}

/// The command line that replays `plan`'s seed with its options.
pub fn reproduce_line(plan: &Plan) -> String {
    let mut line = format!("cargo run -p ro-p2p-sim --release -- --seed {}", plan.seed);
    for arg in option_args(&plan.options) {
        line.push(' ');
        line.push_str(&arg);
    }
    line
}

/// The `ro-p2p-sim` arguments that set `o` (those that differ from the defaults).
pub fn option_args(o: &Options) -> Vec<String> {
    let d = Options::default();
    let mut args = Vec::new();
    let mut num = |flag: &str, v: u64, default: u64| {
        if v != default {
            args.push(flag.to_owned());
            args.push(v.to_string());
        }
    };
    num("--clients", o.clients_max as u64, d.clients_max as u64);
    num("--safety-ms", o.safety_ms, d.safety_ms);
    num("--liveness-ms", o.liveness_ms, d.liveness_ms);
    num("--tick-ms", o.tick_ms, d.tick_ms);
    num("--coordinators", o.coordinators as u64, d.coordinators as u64);
    num("--task-order", o.task_order, d.task_order);
    if let Some(v) = o.packet_version {
        args.push("--packetver".to_owned());
        args.push(v.to_string());
    }
    if o.sabotage_npc_to_peer {
        args.push("--sabotage-npc-to-peer".to_owned());
    }
    if o.sabotage_lose_peer_frames {
        args.push("--sabotage-lose-peer-frames".to_owned());
    }
    if o.sabotage_no_faults {
        args.push("--sabotage-no-faults".to_owned());
    }
    args
}

/// Moves what the store saw into the record: views apart, every lease and write for the
/// checkers, and into the trace the takeovers (a zone's first grant of an epoch) and the
/// refused writes.
fn record_store(
    r: &mut Recorder,
    events: Vec<(u64, StoreEvent)>,
    grants: &mut BTreeMap<String, u64>,
) {
    for (t_ms, event) in events {
        match event {
            StoreEvent::View { instance, view } => {
                r.instance_views.insert(instance, (t_ms, view));
            }
            other => {
                let traced = match &other {
                    StoreEvent::Granted { zone, epoch, instance } => {
                        r.coverage.granted(zone, instance);
                        let new = grants.get(zone).is_none_or(|e| e < epoch);
                        if new {
                            grants.insert(zone.clone(), *epoch);
                        }
                        new
                    }
                    StoreEvent::Fenced { .. } => true,
                    _ => false,
                };
                if traced {
                    let event = serde_json::to_value(&other).unwrap_or_default();
                    r.push("store", What::Cluster { event });
                }
                r.store_events.push((t_ms, other));
            }
        }
    }
}

/// One run at a time per process: see [`align_task_ids`].
static ONE_RUN_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// tokio numbers tasks from one process-wide counter, and a runtime keeps its tasks in lists
/// sharded by that number (four for a current-thread runtime). When turmoil crashes a host, its
/// runtime drops the tasks shard by shard, so the order in which the host's sockets close, and
/// so which latency each close draws from the world's RNG, follows the task numbers modulo the
/// shard count. A run therefore starts from a number aligned to a multiple of 64 (cheap: at
/// most 63 empty tasks), and no other run in the process numbers tasks meanwhile
/// ([`ONE_RUN_AT_A_TIME`]): a seed then replays the same whether it runs first in a fresh
/// process, after other seeds, or in a test binary beside other tests. (Found as seed 598 of
/// `--coordinators 3`, which failed or passed depending on what ran before it.)
/// Then `extra` more numbers are drawn ([`Options::task_order`]).
fn align_task_ids(extra: u64) {
    const ALIGN: u64 = 64;
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().build() else { return };
    for _ in 0..ALIGN {
        let id = rt.spawn(async {}).id();
        // `task::Id` shows its number; the next task gets the next one.
        match id.to_string().parse::<u64>() {
            Ok(n) if n % ALIGN == ALIGN - 1 => break,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    for _ in 0..extra % ALIGN {
        drop(rt.spawn(async {}));
    }
}

/// Runs `seed` with `options`. Runs in one process take turns (see [`align_task_ids`]); a sweep
/// runs seeds in parallel in child processes.
pub fn run_seed(seed: u64, options: Options) -> Outcome {
    let _turn = ONE_RUN_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    align_task_ids(options.task_order);
    let plan = Plan::derive(seed, options);
    let recorder: Shared = Rc::new(RefCell::new(Recorder::default()));
    let total_ms = plan.total_ms() + SETTLE_MS;
    let mut sim = turmoil::Builder::new()
        .simulation_duration(Duration::from_millis(total_ms + 10_000))
        .tick_duration(Duration::from_millis(options.tick_ms.max(1)))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(10))
        .rng_seed(seed)
        .tcp_capacity(4096)
        .udp_capacity(4096)
        .build();
    let plan_rc = std::sync::Arc::new(plan.clone());

    let coordinator_hosts = plan.coordinator_hosts();
    let cluster = (plan.coordinators > 1).then(|| Rc::new(Cluster::new()));
    let mut incarnations: BTreeMap<String, Rc<Cell<u64>>> = BTreeMap::new();
    for (k, host) in coordinator_hosts.iter().enumerate() {
        let inc = Rc::new(Cell::new(0u64));
        incarnations.insert(host.clone(), inc.clone());
        let r = recorder.clone();
        match &cluster {
            None => sim.host(host.as_str(), move || coordinator(r.clone(), seed, inc.clone())),
            Some(cluster) => {
                let (cluster, name) = (cluster.clone(), host.clone());
                sim.host(host.as_str(), move || {
                    cluster_coordinator(
                        r.clone(),
                        seed,
                        name.clone(),
                        k as u64 + 1,
                        inc.clone(),
                        cluster.clone(),
                    )
                });
            }
        }
    }
    {
        let (r, p) = (recorder.clone(), plan_rc.clone());
        sim.host("map", move || map_server(r.clone(), p.clone()));
    }
    sim.host("relay", relay);
    {
        let (r, hosts) = (recorder.clone(), coordinator_hosts.clone());
        sim.host("observer", move || observer(r.clone(), hosts.clone()));
    }
    let loss = std::sync::Arc::new(std::sync::atomic::AtomicU8::new(0));
    let sabotage = Rc::new(Cell::new(options.sabotage_npc_to_peer));
    let quiet = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for (i, name) in plan.clients.iter().enumerate() {
        let ctx = Rc::new(ClientCtx {
            name: name.clone(),
            index: i + 1,
            plan: plan_rc.clone(),
            recorder: recorder.clone(),
            loss_percent: loss.clone(),
            incarnation: Cell::new(0),
            sabotage_pending: sabotage.clone(),
            quiet: quiet.clone(),
        });
        sim.host(name.as_str(), move || client_host(ctx.clone()));
    }

    let session_timeout_ms = coordinator_config().core.session_timeout_s * 1_000;
    let mut checkers = Checkers::default();
    let mut violations = Vec::new();
    let mut faults = plan.faults.iter().peekable();
    let mut crashed: BTreeSet<String> = BTreeSet::new();
    let mut coordinator_down = false;
    // Multi-coordinator worlds: crashed instances, and instance ids cut off the store.
    let mut instances_down: BTreeSet<String> = BTreeSet::new();
    let mut store_cut: BTreeSet<InstanceId> = BTreeSet::new();
    let mut grants: BTreeMap<String, u64> = BTreeMap::new();
    let mut liveness = false;
    let mut hosts: Vec<String> = plan.clients.clone();
    hosts.extend(coordinator_hosts.iter().cloned());
    hosts.push("relay".to_owned());
    recorder.borrow_mut().push("runner", What::Phase { phase: "safety".to_owned() });
    let mut now_ms = 0;
    while now_ms < total_ms {
        if !liveness && now_ms >= plan.options.safety_ms {
            liveness = true;
            let mut r = recorder.borrow_mut();
            r.push("runner", What::Phase { phase: "liveness".to_owned() });
            drop(r);
            for (i, a) in hosts.iter().enumerate() {
                for b in hosts.iter().skip(i + 1) {
                    sim.release(a.as_str(), b.as_str());
                    sim.repair(a.as_str(), b.as_str());
                }
            }
            loss.store(0, std::sync::atomic::Ordering::Relaxed);
            sim.set_max_message_latency(Duration::from_millis(10));
            if coordinator_down {
                sim.bounce("coordinator");
                coordinator_down = false;
            }
            if let Some(cluster) = &cluster {
                cluster.world.set_down(false);
                for id in std::mem::take(&mut store_cut) {
                    cluster.world.partition(&id, false);
                }
                for host in std::mem::take(&mut instances_down) {
                    sim.bounce(host.as_str());
                }
            }
            for c in std::mem::take(&mut crashed) {
                sim.bounce(c.as_str());
            }
        }
        while !liveness && faults.peek().is_some_and(|(t, _)| *t <= now_ms) {
            let Some((_, fault)) = faults.next() else { break };
            recorder.borrow_mut().push(
                "runner",
                What::Fault { fault: serde_json::to_value(fault).unwrap_or_default() },
            );
            match fault {
                Fault::Partition { a, b } => sim.partition(a.as_str(), b.as_str()),
                Fault::PartitionOneway { from, to } => {
                    sim.partition_oneway(from.as_str(), to.as_str())
                }
                Fault::Repair { a, b } => sim.repair(a.as_str(), b.as_str()),
                Fault::Hold { a, b } => sim.hold(a.as_str(), b.as_str()),
                Fault::Release { a, b } => sim.release(a.as_str(), b.as_str()),
                Fault::Loss { percent } => {
                    loss.store(*percent, std::sync::atomic::Ordering::Relaxed)
                }
                Fault::Latency { max_ms } => {
                    sim.set_max_message_latency(Duration::from_millis(*max_ms))
                }
                Fault::CrashCoordinator => {
                    sim.crash("coordinator");
                    coordinator_down = true;
                }
                Fault::RestartCoordinator => {
                    sim.bounce("coordinator");
                    coordinator_down = false;
                }
                Fault::CrashClient { client } => {
                    sim.crash(client.as_str());
                    crashed.insert(client.clone());
                    let mut r = recorder.borrow_mut();
                    let t_ms = r.now_ms;
                    r.left_or_crashed_ms.entry(client.clone()).or_default().push(t_ms);
                    let prefix = format!("{client}:");
                    let cut: Vec<String> = r
                        .server_expected
                        .keys()
                        .filter(|k| k.starts_with(&prefix))
                        .cloned()
                        .collect();
                    r.server_cut.extend(cut);
                    r.views.remove(client.as_str());
                }
                Fault::RestartClient { client } => {
                    sim.bounce(client.as_str());
                    crashed.remove(client.as_str());
                }
                Fault::CrashOwner { zone } => {
                    let owner = cluster.as_ref().and_then(|c| c.owner(zone));
                    let host = owner.as_ref().map(|id| host_of(id.as_str()).to_owned());
                    let hit = host.filter(|h| !instances_down.contains(h));
                    recorder.borrow_mut().push(
                        "runner",
                        What::Cluster {
                            event: serde_json::json!({
                                "crash-owner": zone,
                                "owner": owner.map(|o| o.to_string()),
                                "crashed": hit,
                            }),
                        },
                    );
                    if let Some(h) = hit {
                        sim.crash(h.as_str());
                        instances_down.insert(h);
                    }
                }
                Fault::RestartInstances => {
                    for h in std::mem::take(&mut instances_down) {
                        sim.bounce(h.as_str());
                    }
                }
                Fault::StorePartition { instance } | Fault::StoreRepair { instance } => {
                    let cut = matches!(fault, Fault::StorePartition { .. });
                    if let (Some(c), Some(inc)) = (&cluster, incarnations.get(instance)) {
                        let id = instance_id(instance, inc.get());
                        c.world.partition(&id, cut);
                        if cut {
                            store_cut.insert(id);
                        } else {
                            store_cut.remove(&id);
                        }
                    }
                }
                Fault::StoreDown | Fault::StoreUp => {
                    if let Some(c) = &cluster {
                        c.world.set_down(matches!(fault, Fault::StoreDown));
                    }
                }
            }
        }
        if now_ms + QUIET_MS >= total_ms {
            quiet.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        if let Err(e) = sim.step() {
            violations.push(Violation {
                t_ms: now_ms,
                checker: "harness",
                detail: format!("a host failed: {e}"),
            });
            break;
        }
        now_ms = sim.elapsed().as_millis() as u64;
        recorder.borrow_mut().now_ms = now_ms;
        if let Some(c) = &cluster {
            c.clock.set(now_ms);
            record_store(&mut recorder.borrow_mut(), c.drain(), &mut grants);
        }
        let found = checkers.step(&recorder.borrow(), session_timeout_ms);
        if !found.is_empty() {
            violations.extend(found);
            break;
        }
    }
    let live: BTreeSet<String> =
        plan.clients.iter().filter(|c| !crashed.contains(*c)).cloned().collect();
    let unlinked = crate::check::unlinked_members(&recorder.borrow(), &plan, &live);
    if violations.is_empty() {
        violations.extend(checkers.finish(&recorder.borrow(), &plan, &live));
    }
    {
        let mut r = recorder.borrow_mut();
        for v in &violations {
            r.push(
                "runner",
                What::Violation { checker: v.checker.to_owned(), detail: v.detail.clone() },
            );
        }
    }
    let trace_hash = recorder.borrow().trace_hash();
    Outcome { plan, violations, trace_hash, simulated_ms: now_ms, recorder, unlinked }
}
