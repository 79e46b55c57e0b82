//! Everything a seed decides, before anything runs: the packet version, the clients, the NAT
//! between every pair, the routing policy and the fault plan of the safety phase.
//!
//! The plan is a pure function of the seed (and the size options), printed first by the runner
//! so that a failing seed can be read before it is replayed.

use std::collections::BTreeMap;
use std::fmt;

use ro_p2p_core::Rng;
use ro_p2p_core::packet::PacketVersion;
use ro_p2p_core::route::{Choice, Policy};
use serde::Serialize;

/// Zones the clients walk between; the last one is not P2P-enabled.
pub const ZONES: &[&str] = &["prontera", "geffen", "payon", "izlude"];
/// Zones in `p2p_enabled_zones`.
pub const P2P_ZONES: &[&str] = &["prontera", "geffen", "payon"];

/// Slack for in-flight data at the end of a run, in ms: a run lasts [`Plan::total_ms`] plus
/// this.
pub const SETTLE_MS: u64 = 1_500;
/// The last part of the liveness phase without zone changes, in ms.
pub const QUIET_MS: u64 = 5_000;

/// How two clients can reach each other at the datagram boundary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Nat {
    /// Host candidates work both ways.
    Direct,
    /// Only through the relay (TURN) host.
    RelayOnly,
    /// Symmetric NAT on both sides and no relay allocation: nothing gets through.
    Blocked,
}

/// One fault of the safety phase, at a simulated time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "fault", rename_all = "kebab-case")]
pub enum Fault {
    /// Partition two hosts both ways.
    Partition {
        /// One host.
        a: String,
        /// The other.
        b: String,
    },
    /// Partition one direction only.
    PartitionOneway {
        /// Sender side that is cut.
        from: String,
        /// Receiver side.
        to: String,
    },
    /// Repair a partition (both ways).
    Repair {
        /// One host.
        a: String,
        /// The other.
        b: String,
    },
    /// Hold every message on a link (swizzle-clogging).
    Hold {
        /// One host.
        a: String,
        /// The other.
        b: String,
    },
    /// Release a held link.
    Release {
        /// One host.
        a: String,
        /// The other.
        b: String,
    },
    /// Set the per-datagram loss at the peer-link boundary, in percent.
    Loss {
        /// Percent of peer datagrams dropped.
        percent: u8,
    },
    /// Set the largest message latency of the whole network.
    Latency {
        /// Largest latency, in ms.
        max_ms: u64,
    },
    /// Crash the coordinator host.
    CrashCoordinator,
    /// Restart the coordinator host.
    RestartCoordinator,
    /// Crash a client host (churn).
    CrashClient {
        /// The client host.
        client: String,
    },
    /// Restart a crashed client host.
    RestartClient {
        /// The client host.
        client: String,
    },
    /// Multi-coordinator worlds: crash the coordinator instance that owns `zone`'s lease when
    /// the fault is applied (the runner records which one; none if the zone has no owner).
    CrashOwner {
        /// The zone whose owner dies.
        zone: String,
    },
    /// Multi-coordinator worlds: restart every crashed coordinator instance.
    RestartInstances,
    /// Multi-coordinator worlds: cut one instance off the shared store (it keeps its clients).
    StorePartition {
        /// The coordinator host.
        instance: String,
    },
    /// Multi-coordinator worlds: reconnect an instance to the store.
    StoreRepair {
        /// The coordinator host.
        instance: String,
    },
    /// Multi-coordinator worlds: the whole store stops answering (data kept).
    StoreDown,
    /// Multi-coordinator worlds: the store answers again.
    StoreUp,
}

/// Sizes and durations, from the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Options {
    /// Most clients of a world (the plan draws between half and all of them).
    pub clients_max: usize,
    /// Length of the safety phase, in simulated ms.
    pub safety_ms: u64,
    /// Length of the liveness phase, in simulated ms.
    pub liveness_ms: u64,
    /// Test-only: make one client send one NPC packet to a peer, to prove the checkers bite.
    pub sabotage_npc_to_peer: bool,
    /// Test-only: once the network has healed (the quiet end of the liveness phase), the peer
    /// transports silently lose every game frame, to prove checker 6 notices lost traffic.
    pub sabotage_lose_peer_frames: bool,
    /// Test-only: the fault plan is emptied after it is drawn (every other draw unchanged):
    /// nothing crashes, is cut off or loses anything, so no connection to the coordinator
    /// breaks and no seat is ever resumed. Proves the rare-event coverage
    /// ([`crate::coverage`]) notices a run that no longer reaches what faults produce.
    pub sabotage_no_faults: bool,
    /// turmoil's tick (simulated ms per step; the checkers run after each).
    pub tick_ms: u64,
    /// Coordinator instances (1 to [`COORDINATORS_MAX`]); 0: derived from each seed (see
    /// [`Plan::coordinators`]). The default is 1 while the multi-coordinator findings of
    /// `docs/simulation.md` are open, so the default sweep stays the single-coordinator one.
    pub coordinators: usize,
    /// Extra tokio task numbers drawn before the run (0 to 63): another order in which a
    /// crashed host's tasks are dropped, hence its sockets closed (see `run::align_task_ids`).
    /// A seed with the same task order replays exactly.
    pub task_order: u64,
    /// The client version of every world (`--packetver`, `--client`); `None`: drawn from each
    /// seed among [`PacketVersion::REFERENCE`] (the draw is made either way, so the rest of a
    /// seed's world does not change).
    #[serde(skip)]
    pub packet_version: Option<PacketVersion>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            clients_max: 16,
            safety_ms: 30_000,
            liveness_ms: 30_000,
            sabotage_npc_to_peer: false,
            sabotage_lose_peer_frames: false,
            sabotage_no_faults: false,
            tick_ms: 5,
            coordinators: 1,
            task_order: 0,
            packet_version: None,
        }
    }
}

/// What one seed derived.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    /// The seed.
    pub seed: u64,
    /// The options it ran with.
    pub options: Options,
    /// The client PACKETVER.
    pub version: u32,
    /// The client family (`main`, `re`, `zero`).
    pub client: String,
    /// Whether packet ids are obfuscated (the version's rAthena default).
    pub obfuscated: bool,
    /// Client host names, `client-1` ...
    pub clients: Vec<String>,
    /// Starting zone of each client.
    pub start_zones: BTreeMap<String, String>,
    /// NAT between each pair (keys ordered, `a < b`).
    pub nat: BTreeMap<(String, String), Nat>,
    /// Routing policy of every client.
    pub policy: String,
    /// Mean ms between two actions of a player.
    pub action_interval_ms: u64,
    /// Percent chance that an action is a zone change.
    pub zone_change_percent: u64,
    /// Coordinator instances: 1 is the single in-memory coordinator (host `coordinator`);
    /// 2 or more run in cluster mode on one shared store (hosts `coordinator-1` ...). With
    /// `--coordinators 0` drawn from its own stream of the seed (60% one, 20% two, 20% three),
    /// so a seed that draws 1 runs the world it always ran.
    pub coordinators: usize,
    /// The safety phase's faults, by simulated ms.
    pub faults: Vec<(u64, Fault)>,
}

impl Plan {
    /// Derives the plan of `seed`.
    pub fn derive(seed: u64, options: Options) -> Plan {
        let mut rng = Rng::from_seed(seed);
        let version = PacketVersion::REFERENCE
            .get(rng.below_inclusive(PacketVersion::REFERENCE.len() as u64 - 1) as usize)
            .copied()
            .unwrap_or_default();
        let version = options.packet_version.unwrap_or(version);
        let lo = options.clients_max.div_ceil(2).max(2);
        let n = rng.range_inclusive(lo as u64, options.clients_max.max(lo) as u64) as usize;
        let clients: Vec<String> = (1..=n).map(|i| format!("client-{i}")).collect();
        let mut start_zones = BTreeMap::new();
        for c in &clients {
            // Most players start in a P2P zone, a few where P2P is off.
            let z = if rng.chance(1, 8) {
                ZONES[3]
            } else {
                P2P_ZONES[rng.below_inclusive(2) as usize]
            };
            start_zones.insert(c.clone(), z.to_owned());
        }
        let (direct, relay) = match rng.below_inclusive(3) {
            0 => (100, 0),
            1 => (80, 15),
            2 => (60, 30),
            _ => (40, 30),
        };
        let mut nat = BTreeMap::new();
        for (i, a) in clients.iter().enumerate() {
            for b in clients.iter().skip(i + 1) {
                let roll = rng.below_inclusive(99);
                let kind = if roll < direct {
                    Nat::Direct
                } else if roll < direct + relay {
                    Nat::RelayOnly
                } else {
                    Nat::Blocked
                };
                nat.insert(pair(a, b), kind);
            }
        }
        let choices = [Choice::Mirror, Choice::Mirror, Choice::Peers, Choice::Server];
        let mut pick = || choices[rng.below_inclusive(3) as usize];
        let policy = Policy { movement: pick(), chat: pick(), emote: pick() };
        let action_interval_ms = rng.range_inclusive(100, 400);
        let zone_change_percent = rng.range_inclusive(0, 2);
        let mut faults = derive_faults(&mut rng, &clients, options.safety_ms);
        // The cluster's draws come from their own stream: the draws above stay what they were
        // before multi-coordinator worlds existed.
        let mut cluster_rng = Rng::from_seed(seed ^ 0x5CA1_E0D7_C1A5_7E55);
        let coordinators = match options.coordinators {
            n @ 1.. => n.min(COORDINATORS_MAX),
            0 => match cluster_rng.below_inclusive(99) {
                0..=59 => 1,
                60..=79 => 2,
                _ => 3,
            },
        };
        if coordinators > 1 {
            faults = cluster_faults(&mut cluster_rng, faults, coordinators, options.safety_ms);
        }
        if options.sabotage_no_faults {
            faults.clear();
        }
        Plan {
            seed,
            options,
            version: version.number(),
            client: version.family().to_string(),
            obfuscated: version.obfuscated_by_default(),
            clients,
            start_zones,
            nat,
            policy: policy.to_string(),
            action_interval_ms,
            zone_change_percent,
            coordinators,
            faults,
        }
    }

    /// The packet version.
    pub fn packet_version(&self) -> PacketVersion {
        PacketVersion::new(self.version, self.client.parse().ok()).unwrap_or_default()
    }

    /// NAT between two clients.
    pub fn nat(&self, a: &str, b: &str) -> Nat {
        self.nat.get(&pair(a, b)).copied().unwrap_or(Nat::Blocked)
    }

    /// Total simulated length, in ms.
    pub fn total_ms(&self) -> u64 {
        self.options.safety_ms + self.options.liveness_ms
    }

    /// The coordinator host names: `coordinator`, or `coordinator-1` ... in a cluster.
    pub fn coordinator_hosts(&self) -> Vec<String> {
        if self.coordinators <= 1 {
            vec!["coordinator".to_owned()]
        } else {
            (1..=self.coordinators).map(|i| format!("coordinator-{i}")).collect()
        }
    }
}

/// Most coordinator instances a world runs.
pub const COORDINATORS_MAX: usize = 5;

/// Turns the single-coordinator faults of a plan into a cluster's: a link to `coordinator`
/// becomes a link to one instance, a coordinator crash crashes the owner of a zone (and its
/// restart restarts the crashed instances), and store faults are added: instances cut off the
/// store and repaired, the store down for a while.
fn cluster_faults(
    rng: &mut Rng,
    faults: Vec<(u64, Fault)>,
    coordinators: usize,
    safety_ms: u64,
) -> Vec<(u64, Fault)> {
    let instance =
        |rng: &mut Rng| format!("coordinator-{}", rng.range_inclusive(1, coordinators as u64));
    let map = |rng: &mut Rng, h: &str| {
        if h == "coordinator" { instance(rng) } else { h.to_owned() }
    };
    // A repair (release) names the instance its partition (hold) was mapped to: the mapped
    // links of each original pair, oldest first.
    type Link = (String, String);
    let mut open: BTreeMap<(bool, Link), Vec<Link>> = BTreeMap::new();
    let mut mapped = |rng: &mut Rng, a: &str, b: &str, held: bool, opening: bool| {
        let key = (held, pair(a, b));
        if opening {
            let link = (map(rng, a), map(rng, b));
            open.entry(key).or_default().push(link.clone());
            link
        } else {
            match open.get_mut(&key).filter(|v| !v.is_empty()) {
                Some(v) => v.remove(0),
                None => (map(rng, a), map(rng, b)),
            }
        }
    };
    let mut out = Vec::new();
    for (t, f) in faults {
        let f = match f {
            Fault::Partition { a, b } => {
                let (a, b) = mapped(rng, &a, &b, false, true);
                Fault::Partition { a, b }
            }
            Fault::PartitionOneway { from, to } => {
                let (from, to) = mapped(rng, &from, &to, false, true);
                Fault::PartitionOneway { from, to }
            }
            Fault::Repair { a, b } => {
                let (a, b) = mapped(rng, &a, &b, false, false);
                Fault::Repair { a, b }
            }
            Fault::Hold { a, b } => {
                let (a, b) = mapped(rng, &a, &b, true, true);
                Fault::Hold { a, b }
            }
            Fault::Release { a, b } => {
                let (a, b) = mapped(rng, &a, &b, true, false);
                Fault::Release { a, b }
            }
            Fault::CrashCoordinator => Fault::CrashOwner {
                zone: P2P_ZONES[rng.below_inclusive(P2P_ZONES.len() as u64 - 1) as usize]
                    .to_owned(),
            },
            Fault::RestartCoordinator => Fault::RestartInstances,
            other => other,
        };
        out.push((t, f));
    }
    let start = 3_000.min(safety_ms);
    let end = safety_ms.saturating_sub(2_000).max(start);
    if end > start {
        for _ in 0..rng.range_inclusive(1, 3) {
            let t = rng.range_inclusive(start, end);
            let cut = instance(rng);
            let back = (t + rng.range_inclusive(500, 6_000)).min(end);
            out.push((t, Fault::StorePartition { instance: cut.clone() }));
            out.push((back, Fault::StoreRepair { instance: cut }));
        }
        if rng.chance(1, 2) {
            let t = rng.range_inclusive(start, end);
            out.push((t, Fault::StoreDown));
            out.push(((t + rng.range_inclusive(300, 4_000)).min(end), Fault::StoreUp));
        }
    }
    out.sort_by_key(|(t, _)| *t);
    out
}

/// The ordered key of a pair.
pub fn pair(a: &str, b: &str) -> (String, String) {
    if a <= b { (a.to_owned(), b.to_owned()) } else { (b.to_owned(), a.to_owned()) }
}

fn derive_faults(rng: &mut Rng, clients: &[String], safety_ms: u64) -> Vec<(u64, Fault)> {
    let mut faults = Vec::new();
    let any =
        |rng: &mut Rng| clients[rng.below_inclusive(clients.len() as u64 - 1) as usize].clone();
    // Leave the first few seconds for everyone to join, and the last ones for repairs.
    let start = 3_000.min(safety_ms);
    let end = safety_ms.saturating_sub(2_000).max(start);
    let mut t = start;
    let mut crashed_coordinator = false;
    let mut crashed: Vec<String> = Vec::new();
    let mut partitions: Vec<(String, String)> = Vec::new();
    let mut held: Vec<(String, String)> = Vec::new();
    let loss = rng.below_inclusive(3) * 5;
    if loss > 0 {
        faults.push((start, Fault::Loss { percent: loss as u8 }));
    }
    while t < end {
        t += rng.range_inclusive(400, 2_500);
        if t >= end {
            break;
        }
        match rng.below_inclusive(9) {
            0 | 1 => {
                let (a, b) = if rng.chance(1, 2) {
                    (any(rng), "coordinator".to_owned())
                } else {
                    (any(rng), any(rng))
                };
                if a != b {
                    if rng.chance(1, 3) {
                        faults.push((t, Fault::PartitionOneway { from: a.clone(), to: b.clone() }));
                    } else {
                        faults.push((t, Fault::Partition { a: a.clone(), b: b.clone() }));
                    }
                    partitions.push((a, b));
                }
            }
            2 => {
                if !partitions.is_empty() {
                    let at = rng.below_inclusive(partitions.len() as u64 - 1) as usize;
                    let (a, b) = partitions.swap_remove(at);
                    faults.push((t, Fault::Repair { a, b }));
                }
            }
            3 | 4 => {
                // Swizzle-clogging: hold a few links one at a time, release in random order.
                let mut links = Vec::new();
                for _ in 0..rng.range_inclusive(2, 4) {
                    let a = any(rng);
                    let b = if rng.chance(1, 2) { "coordinator".to_owned() } else { any(rng) };
                    if a != b
                        && !links.contains(&(a.clone(), b.clone()))
                        && !held.contains(&(a.clone(), b.clone()))
                    {
                        links.push((a, b));
                    }
                }
                let mut at = t;
                for (a, b) in &links {
                    faults.push((at, Fault::Hold { a: a.clone(), b: b.clone() }));
                    at += rng.range_inclusive(50, 300);
                }
                while !links.is_empty() {
                    let i = rng.below_inclusive(links.len() as u64 - 1) as usize;
                    let (a, b) = links.swap_remove(i);
                    at += rng.range_inclusive(100, 800);
                    faults.push((at.min(end), Fault::Release { a, b }));
                }
                held.clear();
            }
            5 => faults.push((t, Fault::Latency { max_ms: rng.range_inclusive(5, 120) })),
            6 => {
                if crashed_coordinator {
                    faults.push((t, Fault::RestartCoordinator));
                } else {
                    faults.push((t, Fault::CrashCoordinator));
                }
                crashed_coordinator = !crashed_coordinator;
            }
            7 | 8 => {
                if !crashed.is_empty() && rng.chance(1, 2) {
                    let client = crashed.swap_remove(0);
                    faults.push((t, Fault::RestartClient { client }));
                } else {
                    let client = any(rng);
                    if !crashed.contains(&client) {
                        crashed.push(client.clone());
                        faults.push((t, Fault::CrashClient { client }));
                    }
                }
            }
            _ => faults.push((t, Fault::Loss { percent: (rng.below_inclusive(4) * 5) as u8 })),
        }
    }
    faults.sort_by_key(|(t, _)| *t);
    faults
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "seed {}", self.seed)?;
        writeln!(
            f,
            "  PACKETVER {} {} (obfuscation {}), {} clients, policy {}",
            self.version,
            self.client,
            if self.obfuscated { "on" } else { "off" },
            self.clients.len(),
            self.policy
        )?;
        writeln!(
            f,
            "  actions every ~{} ms, zone change {}%, safety {} ms, liveness {} ms",
            self.action_interval_ms,
            self.zone_change_percent,
            self.options.safety_ms,
            self.options.liveness_ms
        )?;
        let zones: Vec<String> = self.start_zones.iter().map(|(c, z)| format!("{c}@{z}")).collect();
        writeln!(f, "  zones: {}", zones.join(" "))?;
        if self.coordinators > 1 {
            writeln!(
                f,
                "  coordinators: {} instances in cluster mode on one shared store ({})",
                self.coordinators,
                self.coordinator_hosts().join(" ")
            )?;
        }
        let mut counts = BTreeMap::new();
        for n in self.nat.values() {
            *counts.entry(*n).or_insert(0usize) += 1;
        }
        let odd: Vec<String> = self
            .nat
            .iter()
            .filter(|(_, n)| **n != Nat::Direct)
            .map(|((a, b), n)| {
                format!("{a}~{b}:{}", if *n == Nat::Blocked { "blocked" } else { "relay" })
            })
            .collect();
        writeln!(f, "  NAT: {counts:?}; {}", odd.join(" "))?;
        writeln!(f, "  faults ({}):", self.faults.len())?;
        for (t, fault) in &self.faults {
            writeln!(f, "    {t:>6} ms  {}", serde_json::to_string(fault).unwrap_or_default())?;
        }
        Ok(())
    }
}
