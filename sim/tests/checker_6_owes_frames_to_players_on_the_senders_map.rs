//! Checker 6 in the quiet end of a run, fed by hand: a peers-only frame is owed to a recipient
//! whose player was on the sender's map when it was routed (and lost if never opened), not to
//! one who had just left that map (seed 105620); and a player settled in the sender's session
//! that the sender did not count as a member is a violation (it got the packet from nobody).
//! At any time, faults included, a peers-only chat line or emote (a frame that asked for an
//! acknowledgement) is opened by its recipient or sent to the server late by its sender, unless
//! the sender left the map or crashed before the acknowledgement was due.

use std::collections::BTreeSet;

use ro_p2p_sim::check::Checkers;
use ro_p2p_sim::plan::{QUIET_MS, SETTLE_MS};
use ro_p2p_sim::record::{PeersOnlyFrame, Recorder};
use ro_p2p_sim::{Options, Plan};

fn world() -> (Plan, Recorder, BTreeSet<String>) {
    let plan = Plan::derive(1, Options::default());
    let r = Recorder { now_ms: plan.total_ms() + SETTLE_MS, ..Recorder::default() };
    let live = ["client-1", "client-2"].map(str::to_owned).into_iter().collect();
    (plan, r, live)
}

fn frame(t_ms: u64, to_on_map: bool) -> PeersOnlyFrame {
    PeersOnlyFrame {
        t_ms,
        from: "client-1".into(),
        to: "client-2".into(),
        frame: 7,
        label: "chat".into(),
        seal: None,
        to_on_map,
    }
}

fn peers_only_violations(r: &Recorder, plan: &Plan, live: &BTreeSet<String>) -> Vec<String> {
    Checkers::default()
        .finish(r, plan, live)
        .into_iter()
        .filter(|v| v.checker == "peers-only-delivered")
        .map(|v| v.detail)
        .collect()
}

#[test]
fn a_frame_never_opened_by_a_player_on_the_senders_map_is_lost() {
    let (plan, mut r, live) = world();
    let t_ms = plan.total_ms() - 1_000;
    r.peers_only_sent.push(frame(t_ms, true));
    let found = peers_only_violations(&r, &plan, &live);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("client-1 routed to peers only") && found[0].contains("client-2"));
    r.peer_frames_opened.insert(("client-1".into(), "client-2".into(), 7));
    assert!(peers_only_violations(&r, &plan, &live).is_empty(), "opened: nothing lost");
}

#[test]
fn a_frame_to_a_player_who_had_left_the_map_is_owed_nothing() {
    let (plan, mut r, live) = world();
    r.peers_only_sent.push(frame(plan.total_ms() - 1_000, false));
    assert!(peers_only_violations(&r, &plan, &live).is_empty());
}

#[test]
fn a_settled_member_the_sender_did_not_count_is_a_violation_in_the_quiet_end_only() {
    let (plan, mut r, live) = world();
    let quiet_from_ms = plan.total_ms() + SETTLE_MS - QUIET_MS;
    r.peers_only_unknown.push((quiet_from_ms - 5, "during faults: a signaling hop late".into()));
    assert!(peers_only_violations(&r, &plan, &live).is_empty());
    r.peers_only_unknown.push((quiet_from_ms, "client-1: chat not to [\"client-2\"]".into()));
    let found = peers_only_violations(&r, &plan, &live);
    assert_eq!(found, vec!["client-1: chat not to [\"client-2\"]".to_owned()]);
}

#[test]
fn an_acknowledged_frame_never_opened_is_owed_a_late_server_copy_at_any_time() {
    use ro_p2p_core::node::PEER_ACK_TIMEOUT_MS;
    use ro_p2p_core::seal::FrameId;
    let (plan, mut r, live) = world();
    let t_ms = 10_000; // during the faults, long before the quiet end
    let id = |counter| FrameId { epoch: 1, stream: 9, counter };
    r.peers_only_sent.push(PeersOnlyFrame { seal: Some(id(5)), ..frame(t_ms, true) });
    let found = peers_only_violations(&r, &plan, &live);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("neither opened by client-2 nor sent to the server late"));
    // The sender left the map after the acknowledgement was due: still owed.
    r.left_or_crashed_ms.insert("client-1".into(), vec![t_ms + PEER_ACK_TIMEOUT_MS + 1]);
    assert_eq!(peers_only_violations(&r, &plan, &live).len(), 1);
    // ... before it was due: abandoned by design.
    r.left_or_crashed_ms.insert("client-1".into(), vec![t_ms + PEER_ACK_TIMEOUT_MS / 2]);
    assert!(peers_only_violations(&r, &plan, &live).is_empty());
    r.left_or_crashed_ms.clear();
    // A late copy of that frame settles it; a late copy of another frame does not.
    r.late_copies.insert(("client-1".into(), id(6)));
    assert_eq!(peers_only_violations(&r, &plan, &live).len(), 1);
    r.late_copies.insert(("client-1".into(), id(5)));
    assert!(peers_only_violations(&r, &plan, &live).is_empty());
    // And so does the recipient opening it.
    r.late_copies.clear();
    r.peer_frames_opened.insert(("client-1".into(), "client-2".into(), 7));
    assert!(peers_only_violations(&r, &plan, &live).is_empty());
}
