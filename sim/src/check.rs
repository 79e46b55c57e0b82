//! The checkers, run by the runner after every simulation step (1 to 6 from issue 6).
//!
//! 1. `peer-eligible-only`: every frame a peer opened carries the peer event of a movement,
//!    public chat or emote packet its sender generated and rAthena's rules allow peers to see
//!    (no npc/item/skill, no whisper, no `@`/`#` command, no dice or mute emote).
//! 2. `server-exactly-once`: per map connection, what the stub map server decoded is, byte for
//!    byte, the sequence the router sent to the server (a prefix while in flight, all of it by
//!    the end), and every server-only packet was sent to the server.
//! 3. `signaling-in-session`: every relayed offer/answer/candidate carries the `from` of its
//!    real sender, and belongs to a session the coordinator told the receiver it had joined
//!    (`session-joined`, also one the client ignored because it had asked for another zone).
//! 4. `liveness-converges` (end of the liveness phase): every client in a P2P zone is joined,
//!    members of a session agree on the members and the host with each other and with the
//!    coordinator, and each session has at most one host.
//! 5. `bounded-timers`: no session without a connected member outlives the session timeout,
//!    and every backoff delay is within its exponential bound.
//! 6. `peers-only-delivered`: a packet the router sends to peers only (a category with policy
//!    `peers`) goes to every member of the session over a healthy link; a member without one
//!    (a blocked NAT, a dead link) must make the router fall back to the server for it, never
//!    lose it. And once the network has healed (the quiet end of the liveness phase), every
//!    such frame is opened by the peer it was sent to, unless that peer's player had already
//!    left the sender's map when it was routed; and every player settled in the sender's
//!    session is among the peers it goes to.
//! 7. `cluster-fencing` (multi-coordinator worlds, after every step): a zone's lease epochs
//!    only grow and one epoch is one instance's, and a stale owner never changes a zone's
//!    seats once a later epoch has been granted (the store's record of every fenced write).
//! 8. `cluster-single-owner` (end of the liveness phase): among the instances' live views,
//!    each zone has one owner and each session is served by one instance, with one host.
//! 9. `game-shows-what-peers-did` (after every step): every packet a node drew into its
//!    game's stream is one a session member's frame, opened by that node, carried (a walk,
//!    turn, chat line or emote of that member, under its account id), each such frame drawn
//!    at most once (no line shown twice), or the echo of one of the player's own eligible
//!    actions; nothing else (nothing server-only) is ever drawn.

use std::collections::{BTreeMap, BTreeSet};

use ro_p2p_core::client::Backoff;
use ro_p2p_core::node::PEER_ACK_TIMEOUT_MS;
use serde::Serialize;

use ro_p2p_core::packet::PeerEvent;
use ro_p2p_core::render::packets;

use crate::cluster::VIEW_INTERVAL_MS;
use crate::game::{ShownKind, account_of, name_of};
use crate::plan::{P2P_ZONES, Plan, QUIET_MS, SETTLE_MS};
use crate::record::{Recorder, StoreEvent};

/// A broken invariant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// Simulated ms when it was found.
    pub t_ms: u64,
    /// Which checker.
    pub checker: &'static str,
    /// What it found.
    pub detail: String,
}

/// Incremental checker state.
#[derive(Debug, Default)]
pub struct Checkers {
    deliveries_seen: usize,
    invalid_seen: usize,
    relayed_seen: usize,
    backoffs_seen: usize,
    host_seen: usize,
    peers_only_seen: usize,
    snapshots_seen: usize,
    compared: BTreeMap<String, usize>,
    empty_since: BTreeMap<String, u64>,
    store_seen: usize,
    /// Per zone: the highest lease epoch granted, and to whom.
    epochs: BTreeMap<String, (u64, String)>,
    /// Checker 9: deliveries indexed so far, and per (sender, receiver) the payloads opened
    /// and not yet matched with a drawn packet, with when.
    drawable_seen: usize,
    drawable: BTreeMap<(String, String), Vec<Opened>>,
    shown_seen: usize,
}

/// A payload a node opened (checker 9): when, and the bytes.
type Opened = (u64, Vec<u8>);

/// Whether a peer event, drawn under an account id, gives the packet a game was shown.
type Draws = Box<dyn Fn(&PeerEvent<'_>, u32) -> bool>;

/// How long an opened frame may wait to be drawn (checker 9): drawing happens when it opens,
/// so this is only slack.
const DRAW_WINDOW_MS: u64 = 10_000;

fn hex(b: &[u8]) -> String {
    b.iter().take(12).map(|x| format!("{x:02x}")).collect()
}

impl Checkers {
    /// Runs the step checkers (1, 2, 3, 5) over what is new in `r`.
    pub fn step(&mut self, r: &Recorder, session_timeout_ms: u64) -> Vec<Violation> {
        let mut v = Vec::new();
        let t_ms = r.now_ms;
        let mut push = |checker, detail| v.push(Violation { t_ms, checker, detail });

        for d in r.deliveries.iter().skip(self.deliveries_seen) {
            let allowed = r.allowed_payloads.get(&d.from).is_some_and(|s| s.contains(&d.payload));
            if !allowed {
                let what = r
                    .server_only_plain
                    .get(&d.from)
                    .and_then(|m| m.get(&d.payload))
                    .map(|l| format!("server-only {l} packet"))
                    .unwrap_or_else(|| "payload that is no eligible packet of its sender".into());
                push(
                    "peer-eligible-only",
                    format!("{} received from {} a {what} ({}...)", d.to, d.from, hex(&d.payload)),
                );
            }
        }
        self.deliveries_seen = r.deliveries.len();

        for detail in self.game_shown(r) {
            push("game-shows-what-peers-did", detail);
        }
        for (_, from, to, why) in r.invalid_frames.iter().skip(self.invalid_seen) {
            push(
                "peer-eligible-only",
                format!(
                    "{to} received from {from} a sealed frame that is no peer event ({why}): a server-only packet left the router"
                ),
            );
        }
        self.invalid_seen = r.invalid_frames.len();

        for (host, detail) in r.host_violations.iter().skip(self.host_seen) {
            push("server-exactly-once", format!("{host}: {detail}"));
        }
        self.host_seen = r.host_violations.len();

        for (_, detail) in r.peers_only_lost.iter().skip(self.peers_only_seen) {
            push("peers-only-delivered", detail.clone());
        }
        self.peers_only_seen = r.peers_only_lost.len();

        for (conn, got) in &r.server_received {
            let from = self.compared.get(conn).copied().unwrap_or(0);
            if from >= got.len() {
                continue;
            }
            let expected = r.server_expected.get(conn).map(Vec::as_slice).unwrap_or_default();
            for (i, packet) in got.iter().enumerate().skip(from) {
                match expected.get(i) {
                    Some(e) if e == packet => {}
                    Some(e) => push(
                        "server-exactly-once",
                        format!(
                            "{conn}: server packet #{i} is {} but the router sent {}",
                            hex(packet),
                            hex(e)
                        ),
                    ),
                    None => push(
                        "server-exactly-once",
                        format!(
                            "{conn}: server received packet #{i} ({}) the router never sent",
                            hex(packet)
                        ),
                    ),
                }
            }
            self.compared.insert(conn.clone(), got.len());
        }
        for (conn, e) in &r.server_errors {
            if let std::collections::btree_map::Entry::Vacant(slot) =
                self.compared.entry(format!("err:{conn}"))
            {
                slot.insert(0);
                push(
                    "server-exactly-once",
                    format!("{conn}: map server disconnected the client: {e}"),
                );
            }
        }

        for s in r.relayed.iter().skip(self.relayed_seen) {
            if s.body_from.as_deref() != Some(s.stamped_from.as_str()) {
                push(
                    "signaling-in-session",
                    format!(
                        "{} got signaling stamped from {} but sent by {:?}",
                        s.to, s.stamped_from, s.body_from
                    ),
                );
            }
            let member = s.body_session.as_ref().is_some_and(|sid| {
                r.sessions_seen.get(&s.to).is_some_and(|seen| seen.contains(sid))
            });
            if !member {
                push(
                    "signaling-in-session",
                    format!(
                        "{} got signaling from {} of session {:?}, never its own",
                        s.to, s.stamped_from, s.body_session
                    ),
                );
            }
        }
        self.relayed_seen = r.relayed.len();

        for (client, failures, delay_ms) in r.backoffs.iter().skip(self.backoffs_seen) {
            let bound = Backoff::delay_bound_ms(200, 2_000, *failures);
            if *delay_ms > bound {
                push(
                    "bounded-timers",
                    format!(
                        "{client}: backoff {delay_ms} ms after {failures} failures, bound {bound} ms"
                    ),
                );
            }
        }
        self.backoffs_seen = r.backoffs.len();

        for snap in r.snapshots.iter().skip(self.snapshots_seen) {
            self.empty_since.retain(|id, _| snap.sessions.contains_key(id));
            for (id, row) in &snap.sessions {
                if !row.connected.is_empty() {
                    self.empty_since.remove(id);
                    continue;
                }
                let since = *self.empty_since.entry(id.clone()).or_insert(snap.t_ms);
                // One poll interval and one sweep of slack.
                if snap.t_ms.saturating_sub(since) > session_timeout_ms + 2_500 {
                    push(
                        "bounded-timers",
                        format!(
                            "session {id} has had no connected member for {} ms (timeout {session_timeout_ms} ms)",
                            snap.t_ms - since
                        ),
                    );
                }
            }
        }
        self.snapshots_seen = r.snapshots.len();

        for (_, event) in r.store_events.iter().skip(self.store_seen) {
            match event {
                StoreEvent::Granted { zone, instance, epoch } => {
                    match self.epochs.get(zone) {
                        Some((max, _)) if epoch < max => push(
                            "cluster-fencing",
                            format!(
                                "{instance} was granted {zone} under epoch {epoch} after epoch {max}"
                            ),
                        ),
                        Some((max, owner)) if epoch == max && owner != instance => push(
                            "cluster-fencing",
                            format!("{instance} and {owner} both hold {zone} under epoch {epoch}"),
                        ),
                        _ => {}
                    }
                    let newer = self.epochs.get(zone).is_none_or(|(max, _)| epoch > max);
                    if newer {
                        self.epochs.insert(zone.clone(), (*epoch, instance.clone()));
                    }
                }
                StoreEvent::Wrote { zone, instance, epoch } => {
                    if let Some((max, owner)) = self.epochs.get(zone)
                        && epoch < max
                    {
                        push(
                            "cluster-fencing",
                            format!(
                                "stale owner {instance} changed {zone}'s seats under epoch {epoch} after {owner} took it over under epoch {max}"
                            ),
                        );
                    }
                }
                StoreEvent::Fenced { .. } | StoreEvent::View { .. } => {}
            }
        }
        self.store_seen = r.store_events.len();
        v
    }

    /// Checker 8 over the instances' views still live at the end (published within the view
    /// expiry): one owner per zone, one instance and one host per session.
    fn single_owner(r: &Recorder, push: &mut impl FnMut(&'static str, String)) {
        let live_from_ms = r.now_ms.saturating_sub(3 * VIEW_INTERVAL_MS);
        let mut owners: BTreeMap<&str, Vec<&String>> = BTreeMap::new();
        let mut served: BTreeMap<&str, Vec<(&String, Option<&str>)>> = BTreeMap::new();
        for (instance, (t_ms, view)) in &r.instance_views {
            if *t_ms < live_from_ms {
                continue;
            }
            for zone in view.zones.keys() {
                owners.entry(zone.as_str()).or_default().push(instance);
            }
            for s in &view.sessions {
                served
                    .entry(s.session_id.as_str())
                    .or_default()
                    .push((instance, s.host.as_ref().map(|h| h.as_str())));
            }
        }
        for (zone, by) in owners {
            if by.len() > 1 {
                push("cluster-single-owner", format!("zone {zone} is owned by {by:?}"));
            }
        }
        for (sid, by) in served {
            if by.len() > 1 {
                push("cluster-single-owner", format!("session {sid} is served by {by:?}"));
            }
        }
    }

    /// The end-of-run checks: checker 4, and checker 2's "all of it".
    pub fn finish(&mut self, r: &Recorder, plan: &Plan, live: &BTreeSet<String>) -> Vec<Violation> {
        let mut v = Vec::new();
        let t_ms = r.now_ms;
        let mut push = |checker, detail| v.push(Violation { t_ms, checker, detail });

        for (conn, expected) in &r.server_expected {
            if r.server_cut.contains(conn) {
                continue;
            }
            let got = r.server_received.get(conn).map(Vec::len).unwrap_or(0);
            // The last packets may still be in flight; more than a few missing is loss.
            if got + 8 < expected.len() {
                push(
                    "server-exactly-once",
                    format!(
                        "{conn}: the router sent {} packets to the server, it received {got}",
                        expected.len()
                    ),
                );
            }
        }

        let mut sessions: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for name in live {
            let Some(view) = r.views.get(name) else { continue };
            let in_p2p_zone = view.zone.as_deref().is_some_and(|z| P2P_ZONES.contains(&z));
            if in_p2p_zone && view.session.is_none() {
                push(
                    "liveness-converges",
                    format!(
                        "{name} in {:?} is {} after the network healed, not joined",
                        view.zone, view.lifecycle
                    ),
                );
            }
            if let Some(s) = &view.session {
                sessions.entry(s.clone()).or_default().push(name.clone());
            }
        }
        let snapshot = r.snapshots.last();
        for (sid, members) in &sessions {
            let truth: BTreeSet<&String> = members.iter().collect();
            let mut hosts = BTreeSet::new();
            for m in members {
                let Some(view) = r.views.get(m) else { continue };
                let mut seen: BTreeSet<&String> = view.members.iter().collect();
                seen.insert(m);
                if seen != truth {
                    push(
                        "liveness-converges",
                        format!(
                            "{m} sees session {sid} as {seen:?}, its joined members are {truth:?}"
                        ),
                    );
                }
                hosts.insert(view.host.clone());
            }
            if hosts.len() > 1 {
                push(
                    "liveness-converges",
                    format!("session {sid} has members disagreeing on the host: {hosts:?}"),
                );
            }
            if let Some(row) = snapshot.and_then(|s| s.sessions.get(sid)) {
                let coord: BTreeSet<&String> = row.connected.iter().collect();
                if coord != truth && snapshot.is_some_and(|s| s.t_ms + 1_200 >= t_ms) {
                    push(
                        "liveness-converges",
                        format!(
                            "coordinator lists session {sid} connected {coord:?}, clients joined {truth:?}"
                        ),
                    );
                }
            }
        }
        Self::single_owner(r, &mut push);
        // Checker 6, delivery: in the quiet end of the liveness phase the network is healed,
        // loss is off and nobody moves, so a peers-only frame sent early enough to land must
        // have been opened by its recipient.
        let quiet_from_ms = (plan.total_ms() + SETTLE_MS).saturating_sub(QUIET_MS);
        let mut missing: BTreeMap<(&str, &str), (usize, &str)> = BTreeMap::new();
        for f in &r.peers_only_sent {
            if f.t_ms < quiet_from_ms || f.t_ms + SETTLE_MS > t_ms {
                continue;
            }
            if !live.contains(&f.from) || !live.contains(&f.to) {
                continue;
            }
            // Zone changes stop when the quiet end begins, but a `leave` takes a signaling hop
            // to reach the other members: a frame routed in that hop goes to a player already
            // on another map, whose node rightly drops it (seed 105620).
            if !f.to_on_map {
                continue;
            }
            if !r.peer_frames_opened.contains(&(f.from.clone(), f.to.clone(), f.frame)) {
                let slot = missing.entry((f.from.as_str(), f.to.as_str())).or_insert((0, ""));
                slot.0 += 1;
                slot.1 = f.label.as_str();
            }
        }
        // The other half of a zone change: a player joined to the sender's session that the
        // sender never counted (a missed `peer-joined`) would get a peers-only packet from
        // nobody, while the sender's router thinks every member is linked.
        for (_, detail) in r.peers_only_unknown.iter().filter(|(t, _)| *t >= quiet_from_ms) {
            push("peers-only-delivered", detail.clone());
        }
        for ((from, to), (n, label)) in missing {
            push(
                "peers-only-delivered",
                format!(
                    "{n} packets {from} routed to peers only (last: {label}) never reached {to} in the healed network"
                ),
            );
        }
        // Checker 6 at any time, faults and loss included: a chat line or emote routed to peers
        // only asks each recipient for an acknowledgement; one that is not opened by its
        // recipient must have been sent to the server late by its sender. The only exemption
        // is the sender leaving the map or crashing before the acknowledgement was due (what
        // is unconfirmed then is abandoned by design, see docs/simulation.md).
        let due = PEER_ACK_TIMEOUT_MS + SETTLE_MS;
        let mut unsettled: BTreeMap<(&str, &str), (usize, &str, u64)> = BTreeMap::new();
        for f in &r.peers_only_sent {
            let Some(seal) = f.seal else { continue };
            if !f.to_on_map || f.t_ms + due > t_ms {
                continue;
            }
            if r.peer_frames_opened.contains(&(f.from.clone(), f.to.clone(), f.frame))
                || r.late_copies.contains(&(f.from.clone(), seal))
            {
                continue;
            }
            let abandoned = r.left_or_crashed_ms.get(&f.from).is_some_and(|times| {
                times.iter().any(|&at| at >= f.t_ms && at <= f.t_ms + PEER_ACK_TIMEOUT_MS)
            });
            if abandoned {
                continue;
            }
            let slot = unsettled.entry((f.from.as_str(), f.to.as_str())).or_insert((0, "", 0));
            slot.0 += 1;
            slot.1 = f.label.as_str();
            slot.2 = f.t_ms;
        }
        for ((from, to), (n, label, at)) in unsettled {
            push(
                "peers-only-delivered",
                format!(
                    "{n} packets {from} routed to peers only (last: {label} at {at} ms) were neither opened by {to} nor sent to the server late"
                ),
            );
        }
        v
    }
}

impl Checkers {
    /// Checker 9 over what is new in `r`: the violations' details.
    pub fn game_shown(&mut self, r: &Recorder) -> Vec<String> {
        for d in r.deliveries.iter().skip(self.drawable_seen) {
            let pair = (d.from.clone(), d.to.clone());
            self.drawable.entry(pair).or_default().push((d.t_ms, d.payload.clone()));
        }
        self.drawable_seen = r.deliveries.len();
        let mut out = Vec::new();
        for s in r.shown.iter().skip(self.shown_seen) {
            let viewer = &s.viewer;
            let own = account_of(viewer);
            let own_allowed = |event: &PeerEvent<'_>| {
                let mut payload = Vec::new();
                event.encode(&mut payload);
                r.allowed_payloads.get(viewer).is_some_and(|a| a.contains(&payload))
            };
            let (aid, matches): (u32, Draws) = match &s.what {
                ShownKind::OwnWalk => continue,
                ShownKind::OwnChat { bytes } => {
                    let said = r.allowed_payloads.get(viewer).is_some_and(|a| {
                        a.iter().any(|p| match PeerEvent::decode(p) {
                            Ok(PeerEvent::Chat { text }) => {
                                let mut echo = Vec::new();
                                packets::player_chat(text, &mut echo);
                                echo == *bytes
                            }
                            _ => false,
                        })
                    });
                    if !said {
                        out.push(format!(
                            "{viewer} was shown its own chat echo of a line it never said"
                        ));
                    }
                    continue;
                }
                ShownKind::Emote { aid, kind } if Some(*aid) == own => {
                    if !own_allowed(&PeerEvent::Emote { kind: *kind }) {
                        out.push(format!(
                            "{viewer} was shown its own emote {kind}, which it never showed"
                        ));
                    }
                    continue;
                }
                ShownKind::Other { id, len } => {
                    out.push(format!(
                        "{viewer} was shown a packet {id:#06x} ({len} bytes) that is neither the server's nor a peer's walk, turn, chat or emote"
                    ));
                    continue;
                }
                ShownKind::Chat { aid, bytes } => {
                    let bytes = bytes.clone();
                    (
                        *aid,
                        Box::new(move |e: &PeerEvent<'_>, aid: u32| match e {
                            PeerEvent::Chat { text } => {
                                let mut drawn = Vec::new();
                                packets::notify_chat(aid, text, &mut drawn);
                                drawn == bytes
                            }
                            _ => false,
                        }),
                    )
                }
                ShownKind::Emote { aid, kind } => {
                    let kind = *kind;
                    (*aid, Box::new(move |e: &PeerEvent<'_>, _| *e == PeerEvent::Emote { kind }))
                }
                ShownKind::Turn { aid, head_dir, dir } => {
                    let (head_dir, dir) = (*head_dir, *dir);
                    (
                        *aid,
                        Box::new(move |e: &PeerEvent<'_>, _| {
                            *e == PeerEvent::Turn { head_dir, dir }
                        }),
                    )
                }
                ShownKind::Walk { aid, to } => {
                    let (x, y) = *to;
                    (*aid, Box::new(move |e: &PeerEvent<'_>, _| *e == PeerEvent::Move { x, y }))
                }
            };
            let Some(from) = name_of(aid) else {
                out.push(format!(
                    "{viewer} was shown unit {aid}, which is no player, doing {:?}",
                    s.what
                ));
                continue;
            };
            let opened = self.drawable.get_mut(&(from.clone(), viewer.clone()));
            let found = opened.and_then(|list| {
                list.retain(|(t, _)| s.t_ms.saturating_sub(*t) <= DRAW_WINDOW_MS);
                let i = list
                    .iter()
                    .position(|(_, p)| PeerEvent::decode(p).is_ok_and(|e| matches(&e, aid)))?;
                Some(list.remove(i))
            });
            if found.is_none() {
                out.push(format!(
                    "{viewer} was shown {from} doing {:?}, which no frame from {from} that {viewer} opened carried (or it was drawn twice)",
                    s.what
                ));
            }
        }
        self.shown_seen = r.shown.len();
        out
    }
}

/// Members of one session with no open link between them at the end of the run, with their
/// NAT: a packet routed to peers only (policy `peers`) never reaches the other one of such a
/// pair, and the server does not see it either. Reported, not a violation: see
/// `docs/simulation.md` ("Findings").
pub fn unlinked_members(r: &Recorder, plan: &Plan, live: &BTreeSet<String>) -> Vec<String> {
    let mut out = Vec::new();
    for a in live {
        let Some(va) = r.views.get(a) else { continue };
        let Some(session) = &va.session else { continue };
        for b in live.iter().filter(|b| *b > a) {
            let Some(vb) = r.views.get(b) else { continue };
            if vb.session.as_ref() != Some(session) {
                continue;
            }
            if !va.open_links.contains(b) || !vb.open_links.contains(a) {
                out.push(format!("{a}~{b} ({:?})", plan.nat(a, b)));
            }
        }
    }
    out
}
