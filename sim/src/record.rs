//! The shared record of one run: the event trace and the ground truth the checkers read
//! (with what the shared store of a multi-coordinator world saw, [`StoreEvent`]).
//!
//! Every host of the world runs on turmoil's single thread, so they share one [`Recorder`]
//! behind an `Rc<RefCell<..>>`. Hosts append what they did or observed; the runner reads it
//! after every step. Everything is ordered (vectors, `BTreeMap`), so the trace of a seed is the
//! same on every run, and its hash ([`Recorder::trace_hash`]) proves it.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use ro_p2p_tokio::cluster::InstanceView;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// The recorder shared by every host.
pub type Shared = Rc<RefCell<Recorder>>;

/// One line of `trace.jsonl`.
#[derive(Clone, Debug, Serialize)]
pub struct TraceEvent {
    /// Simulated time, in ms since the start.
    pub t_ms: u64,
    /// The host that recorded it.
    pub host: String,
    /// What happened.
    #[serde(flatten)]
    pub what: What,
}

/// What a trace line records.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum What {
    /// A signaling frame sent to the coordinator.
    SignalOut {
        /// The message type.
        msg: String,
        /// Its `to`, if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        to: Option<String>,
    },
    /// A signaling frame received from the coordinator.
    SignalIn {
        /// The message type.
        msg: String,
        /// Its `from` or `peer_id`, if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        from: Option<String>,
    },
    /// A client event of the core (lifecycle, links, keys).
    Client {
        /// The event as JSON.
        event: serde_json::Value,
    },
    /// A packet the game sent, its route and where it went.
    Packet {
        /// Connection key.
        conn: String,
        /// Sequence number on the connection.
        seq: u64,
        /// Ground-truth label.
        label: String,
        /// The router's route.
        route: String,
        /// Peers it was sealed to.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        peers: Vec<String>,
    },
    /// A peer frame opened by its receiver.
    PeerDelivered {
        /// Sender.
        from: String,
        /// Payload length.
        len: usize,
    },
    /// A fault applied by the runner.
    Fault {
        /// The fault as JSON.
        fault: serde_json::Value,
    },
    /// A phase began.
    Phase {
        /// `safety` or `liveness`.
        phase: String,
    },
    /// A host (re)started its software.
    Started {
        /// Incarnation number.
        incarnation: u64,
    },
    /// Multi-coordinator worlds: a takeover or a refused write the store saw, or which
    /// instance a fault hit.
    Cluster {
        /// The event as JSON.
        event: serde_json::Value,
    },
    /// A checker found a violation.
    Violation {
        /// Which checker.
        checker: String,
        /// What it found.
        detail: String,
    },
}

/// A peer frame as its receiver opened it (checker 1).
#[derive(Clone, Debug)]
pub struct PeerDelivery {
    /// When.
    pub t_ms: u64,
    /// Sender peer id.
    pub from: String,
    /// Receiver.
    pub to: String,
    /// The opened payload.
    pub payload: Vec<u8>,
}

/// A frame of a packet routed to peers only, handed to the transport for one peer (checker 6).
#[derive(Clone, Debug)]
pub struct PeersOnlyFrame {
    /// When.
    pub t_ms: u64,
    /// Sender.
    pub from: String,
    /// Recipient.
    pub to: String,
    /// The sealed frame's identity (a hash of its bytes).
    pub frame: u64,
    /// The packet's ground-truth label.
    pub label: String,
    /// The frame's id in its sender's stream, when it asked for an acknowledgement
    /// (peers-only chat and emotes; movement does not).
    pub seal: Option<ro_p2p_core::seal::FrameId>,
    /// Whether the recipient's player was still on the sender's map when the frame was routed.
    /// A player who has just changed maps is owed nothing from the old one (rAthena would not
    /// show it the line either); its node drops the frame as from a non-member.
    pub to_on_map: bool,
}

/// A relayed signaling message as its receiver saw it (checker 3).
#[derive(Clone, Debug)]
pub struct RelayedSignal {
    /// When.
    pub t_ms: u64,
    /// Receiver.
    pub to: String,
    /// The `from` the coordinator stamped.
    pub stamped_from: String,
    /// The sender named inside the body (written by the real sender).
    pub body_from: Option<String>,
    /// The session named inside the body.
    pub body_session: Option<String>,
}

/// The coordinator's session list, polled over its REST API (checkers 4 and 5).
#[derive(Clone, Debug, Default)]
pub struct SessionSnapshot {
    /// When.
    pub t_ms: u64,
    /// Session id -> (zone, members, connected, host).
    pub sessions: BTreeMap<String, SessionRow>,
}

/// One session as the coordinator lists it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionRow {
    /// Zone.
    pub zone: String,
    /// Seated members.
    pub members: Vec<String>,
    /// Members with a live connection.
    pub connected: Vec<String>,
    /// Host.
    pub host: Option<String>,
}

/// What one client looks like right now (checker 4), refreshed by the client host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientView {
    /// Lifecycle name.
    pub lifecycle: String,
    /// Session id, if joined.
    pub session: Option<String>,
    /// Zone.
    pub zone: Option<String>,
    /// Other members.
    pub members: Vec<String>,
    /// Host.
    pub host: Option<String>,
    /// Whether fallen back.
    pub fallen_back: bool,
    /// Peers whose links are open.
    pub open_links: Vec<String>,
}

/// Everything recorded in one run.
#[derive(Debug, Default)]
pub struct Recorder {
    /// The trace, in order.
    pub trace: Vec<TraceEvent>,
    /// Simulated now, set by the runner before every step.
    pub now_ms: u64,
    /// Per sender: every peer payload its generated packets may legitimately produce.
    pub allowed_payloads: BTreeMap<String, BTreeSet<Vec<u8>>>,
    /// Per sender: labels of server-only packets by their plain bytes (for violation texts).
    pub server_only_plain: BTreeMap<String, BTreeMap<Vec<u8>, String>>,
    /// Peer frames opened, in order.
    pub deliveries: Vec<PeerDelivery>,
    /// Per map connection (`host:port`): the plain packets the router sent to the server.
    pub server_expected: BTreeMap<String, Vec<Vec<u8>>>,
    /// Per map connection: what the map server decoded.
    pub server_received: BTreeMap<String, Vec<Vec<u8>>>,
    /// Per map connection: a decode error the map server hit.
    pub server_errors: BTreeMap<String, String>,
    /// Map connections whose client crashed (may end short).
    pub server_cut: BTreeSet<String>,
    /// Relayed signaling, in order.
    pub relayed: Vec<RelayedSignal>,
    /// Per client: every session id it has been joined to.
    pub sessions_seen: BTreeMap<String, BTreeSet<String>>,
    /// Per client: the current view.
    pub views: BTreeMap<String, ClientView>,
    /// Backoff delays announced (client, failures, delay_ms).
    pub backoffs: Vec<(String, u32, u64)>,
    /// Coordinator session lists, in order.
    pub snapshots: Vec<SessionSnapshot>,
    /// Frames a member sealed that were no peer event: (t_ms, from, to, why).
    pub invalid_frames: Vec<(u64, String, String, String)>,
    /// Frames of packets routed to peers only, in order (checker 6).
    pub peers_only_sent: Vec<PeersOnlyFrame>,
    /// Frames a node accepted: (from, to, frame identity) (checker 6).
    pub peer_frames_opened: BTreeSet<(String, String, u64)>,
    /// Peers-only frames whose sender sent the action to the server late, not confirmed by
    /// every peer: (sender, frame) (checker 6).
    pub late_copies: BTreeSet<(String, ro_p2p_core::seal::FrameId)>,
    /// Per client: when its player left a map or its host crashed: what was still unconfirmed
    /// then is abandoned by design (checker 6).
    pub left_or_crashed_ms: BTreeMap<String, Vec<u64>>,
    /// Packets routed to peers only while a member had no healthy link: (t_ms, what).
    pub peers_only_lost: Vec<(u64, String)>,
    /// Packets routed to peers only while a player on the sender's map, joined to the sender's
    /// session for at least `SETTLE_MS`, was not among the sender's members: (t_ms, what).
    pub peers_only_unknown: Vec<(u64, String)>,
    /// Per client: the map its player is on (ground truth, set by the player).
    pub player_zones: BTreeMap<String, String>,
    /// Per client: since when its view has been joined to its current session (or to none).
    pub session_since_ms: BTreeMap<String, u64>,
    /// Violations found by hosts themselves (e.g. a packet the router dropped).
    pub host_violations: Vec<(String, String)>,
    /// Multi-coordinator worlds: leases granted and fenced writes, in order (views apart).
    pub store_events: Vec<(u64, StoreEvent)>,
    /// Multi-coordinator worlds: the latest view each instance published.
    pub instance_views: Views,
    /// Packets drawn into games' streams that the stub map server did not send, in order
    /// (checker 9).
    pub shown: Vec<crate::game::Shown>,
    /// The rare events reached (not part of the trace).
    pub coverage: crate::coverage::Coverage,
}

impl Recorder {
    /// Appends a trace line at the current time.
    pub fn push(&mut self, host: &str, what: What) {
        let t_ms = self.now_ms;
        self.trace.push(TraceEvent { t_ms, host: host.to_owned(), what });
    }

    /// The SHA-256 of the whole trace as JSON lines.
    pub fn trace_hash(&self) -> String {
        let mut h = Sha256::new();
        for e in &self.trace {
            h.update(serde_json::to_string(e).unwrap_or_default().as_bytes());
            h.update(b"\n");
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The trace as JSON lines.
    pub fn trace_jsonl(&self) -> String {
        let mut out = String::new();
        for e in &self.trace {
            out.push_str(&serde_json::to_string(e).unwrap_or_default());
            out.push('\n');
        }
        out
    }

    /// A Mermaid sequence diagram of the signaling (client frames and coordinator replies,
    /// without heartbeats), with faults, phases and violations as notes.
    pub fn mermaid(&self) -> String {
        let id = |host: &str| host.replace('-', "_");
        let mut hosts: BTreeSet<&str> = BTreeSet::new();
        for e in &self.trace {
            if matches!(e.what, What::SignalOut { .. } | What::SignalIn { .. }) {
                hosts.insert(e.host.as_str());
            }
        }
        let mut out = String::from("sequenceDiagram\n    participant coordinator\n");
        for h in &hosts {
            out.push_str(&format!("    participant {} as {h}\n", id(h)));
        }
        for e in &self.trace {
            let line = match &e.what {
                // Heartbeats would drown the diagram; they stay in trace.jsonl.
                What::SignalOut { msg, .. } | What::SignalIn { msg, .. }
                    if msg == "ping" || msg == "pong" =>
                {
                    continue;
                }
                What::SignalOut { msg, to } => format!(
                    "    {}->>coordinator: {msg}{}",
                    id(&e.host),
                    to.as_deref().map(|t| format!(" to {t}")).unwrap_or_default()
                ),
                What::SignalIn { msg, from } => format!(
                    "    coordinator->>{}: {msg}{}",
                    id(&e.host),
                    from.as_deref().map(|f| format!(" from {f}")).unwrap_or_default()
                ),
                What::Fault { fault } => {
                    format!(
                        "    Note over coordinator: {} ms {}",
                        e.t_ms,
                        fault.to_string().replace(['{', '}', '"'], "")
                    )
                }
                What::Phase { phase } => format!("    Note over coordinator: {phase} phase"),
                What::Violation { checker, detail } => {
                    format!(
                        "    Note over coordinator: VIOLATION {checker}: {}",
                        detail.replace([';', '#', '{', '}', '"'], " ")
                    )
                }
                _ => continue,
            };
            out.push_str(&line);
            out.push('\n');
        }
        out
    }
}

/// What the store saw, for the cluster checkers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "store", rename_all = "kebab-case")]
pub enum StoreEvent {
    /// `acquire` gave (or extended) a zone's lease to an instance.
    Granted {
        /// Zone.
        zone: String,
        /// Instance.
        instance: String,
        /// Fencing epoch.
        epoch: u64,
    },
    /// A fenced write (seat put or remove) the store accepted.
    Wrote {
        /// Zone.
        zone: String,
        /// Writer.
        instance: String,
        /// The epoch it wrote under.
        epoch: u64,
    },
    /// A fenced write the store refused: the writer's lease was gone.
    Fenced {
        /// Zone.
        zone: String,
        /// Writer.
        instance: String,
        /// The stale epoch.
        epoch: u64,
    },
    /// An instance published its view.
    View {
        /// Instance.
        instance: String,
        /// The view.
        #[serde(skip)]
        view: InstanceView,
    },
}

/// The latest view each instance published, with when: for the end-of-run cluster checks.
pub type Views = BTreeMap<String, (u64, InstanceView)>;
