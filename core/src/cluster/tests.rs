//! Unit tests of [`Instance`] against hand-written store replies (the cluster's properties are
//! model-tested in `tests/tests/cluster_model.rs`).

use super::*;
use crate::coordinator::{self, ConnId, Coordinator, Identity};
use crate::time::Instant;
use crate::wire::{PeerId, SessionId, Zone};
use crate::{Rng, SansIo};

fn zone() -> Zone {
    Zone::new("payon").unwrap()
}

fn me() -> InstanceId {
    InstanceId::new("a").unwrap()
}

fn instance() -> Instance {
    instance_named(me(), Instant::ZERO)
}

fn instance_named(id: InstanceId, now: Instant) -> Instance {
    let config = coordinator::Config { session_timeout_s: 5, ..coordinator::Config::default() };
    let core = Coordinator::new(config, Rng::from_seed(1));
    let cluster = Config { lease_ttl_ms: 2_000, maintain_interval_ms: 60_000 };
    Instance::new(id, cluster, core, now)
}

/// Answers every store operation with `answer` until none is asked; returns the operations.
fn serve(
    i: &mut Instance,
    now: u64,
    mut answer: impl FnMut(&StoreOp) -> Result<StoreReply, StoreFailure>,
) -> Vec<StoreOp> {
    let mut ops = Vec::new();
    for _ in 0..1_000 {
        let Some(out) = i.poll_output() else { return ops };
        if let Output::Store { id, op } = out {
            let result = answer(&op);
            ops.push(op);
            i.handle_input(Instant::from_millis(now), Input::Store { id, result });
        }
    }
    panic!("the instance keeps asking");
}

fn up(
    epoch: u64,
    seats: Vec<SeatRecord>,
) -> impl FnMut(&StoreOp) -> Result<StoreReply, StoreFailure> {
    move |op| {
        Ok(match op {
            StoreOp::Acquire { zone, .. } => StoreReply::Acquired(Acquired::Owned(Lease {
                zone: zone.clone(),
                owner: me(),
                epoch,
            })),
            StoreOp::ReadSeats { .. } => {
                StoreReply::Seats(seats.iter().cloned().map(StoredSeat::lasting).collect())
            }
            StoreOp::Publish { .. } => StoreReply::Published(1),
            StoreOp::PublishToOwner { .. } => StoreReply::PublishedToOwner(Some(1)),
            _ => StoreReply::Done,
        })
    }
}

fn down(_: &StoreOp) -> Result<StoreReply, StoreFailure> {
    Err(StoreFailure::Unavailable { reason: "down".to_owned() })
}

fn join(i: &mut Instance, now: u64, conn: u64, who: &str) {
    let now_i = Instant::from_millis(now);
    let identity = Identity::Account(PeerId::new(who).unwrap());
    i.handle_input(now_i, Input::Connected { conn: ConnId(conn), identity, ice_servers: vec![] });
    let bytes = br#"{"type":"join","zone":"payon"}"#.to_vec();
    i.handle_input(now_i, Input::Frame { conn: ConnId(conn), bytes });
}

/// Runs timers up to `until` with the store answering `answer`.
fn run_until(
    i: &mut Instance,
    until: u64,
    mut answer: impl FnMut(&StoreOp) -> Result<StoreReply, StoreFailure>,
) -> u64 {
    let mut now = 0;
    while let Some(t) = i.poll_timeout().map(Instant::as_millis).filter(|t| *t <= until) {
        now = t;
        i.handle_timeout(Instant::from_millis(t));
        serve(i, t, &mut answer);
    }
    now.max(until)
}

fn record(peer: &str, session: &SessionId) -> SeatRecord {
    SeatRecord {
        peer_id: PeerId::new(peer).unwrap(),
        session_id: session.clone(),
        zone: zone(),
        capabilities: None,
        host: false,
        connected_via: None,
        key_epoch: 1,
    }
}

/// Seed 203915 of the simulation in miniature: a session expires while the store is down (its
/// seat's removal cannot be written), the lease runs out, and the same instance takes the zone
/// back at the next epoch. The stale record must not bring the session back for another full
/// timeout; a record another owner may have written (an epoch further on) still is restored.
#[test]
fn a_zone_taken_back_at_the_next_epoch_does_not_restore_seats_that_ended_here() {
    for (epoch_back, restored) in [(6, false), (7, true)] {
        let mut i = instance();
        join(&mut i, 0, 1, "alice");
        serve(&mut i, 0, up(5, vec![]));
        assert!(i.serves(&zone(), Instant::ZERO));
        let session = i.core().sessions()[0].session_id.clone();
        i.handle_input(Instant::from_millis(100), Input::Disconnected { conn: ConnId(1) });
        serve(&mut i, 100, up(5, vec![]));
        // The store goes down: the session ends (5 s), the lease runs out (2 s less a margin).
        let now = run_until(&mut i, 6_000, down);
        assert!(i.core().sessions().is_empty() && i.owned_zones().is_empty(), "at {now}");

        join(&mut i, 6_000, 2, "bob");
        let stale = vec![record("alice", &session)];
        let ops = serve(&mut i, 6_000, up(epoch_back, stale));
        let alice = PeerId::new("alice").unwrap();
        assert_eq!(i.core().seat_zone(&alice).is_some(), restored, "epoch {epoch_back}");
        let removes_alice =
            ops.iter().any(|op| matches!(op, StoreOp::RemoveSeat { peer, .. } if *peer == alice));
        assert_eq!(removes_alice, !restored, "the stale record is removed from the store");
    }
}

/// A store that keeps seat records with the grace their writer gave them, as a TTL on its own
/// clock (here the tests' shared one), and hands leases to one instance at a time.
#[derive(Default)]
struct TtlStore {
    /// Peer -> (record, when the store forgets it).
    seats: std::collections::BTreeMap<PeerId, (SeatRecord, Option<u64>)>,
    epoch: u64,
    down: bool,
}

impl TtlStore {
    fn answer(
        &mut self,
        who: &InstanceId,
        now: u64,
        op: &StoreOp,
    ) -> Result<StoreReply, StoreFailure> {
        if self.down {
            return down(op);
        }
        self.seats.retain(|_, (_, until)| until.is_none_or(|t| now < t));
        Ok(match op {
            StoreOp::Acquire { zone, .. } => {
                self.epoch += 1;
                let lease = Lease { zone: zone.clone(), owner: who.clone(), epoch: self.epoch };
                StoreReply::Acquired(Acquired::Owned(lease))
            }
            StoreOp::PutSeat { seat, grace_until, .. } => {
                let until = grace_until.map(Instant::as_millis);
                self.seats.insert(seat.peer_id.clone(), (seat.clone(), until));
                StoreReply::Done
            }
            StoreOp::RemoveSeat { peer, .. } => {
                self.seats.remove(peer);
                StoreReply::Done
            }
            StoreOp::ReadSeats { .. } => StoreReply::Seats(
                self.seats
                    .values()
                    .map(|(record, until)| StoredSeat {
                        record: record.clone(),
                        grace_left_ms: until.map(|t| t - now),
                    })
                    .collect(),
            ),
            StoreOp::Publish { .. } => StoreReply::Published(1),
            StoreOp::PublishToOwner { .. } => StoreReply::PublishedToOwner(Some(1)),
            _ => StoreReply::Done,
        })
    }
}

/// Seed 203915 of the simulation in miniature, across two instances: alice, the only member of
/// her session, disconnects (her seat waits 5 s in grace at its owner `a`); `a` crashes; the
/// store is down for a while, so nobody can take the zone over; then `b` does. The record `a`
/// wrote for the disconnected seat carries its grace as a TTL, so `b` restores the seat with
/// only what is left of it, or not at all once it is over; never with a whole timeout of its own.
#[test]
fn a_takeover_after_an_outage_restores_a_disconnected_seat_with_only_its_remaining_grace() {
    let alice = PeerId::new("alice").unwrap();
    for (outage_ends, restored) in [(3_000, true), (5_200, false)] {
        let mut store = TtlStore::default();
        let a_id = me();
        let mut a = instance();
        join(&mut a, 0, 1, "alice");
        serve(&mut a, 0, |op| store.answer(&a_id, 0, op));
        a.handle_input(Instant::from_millis(100), Input::Disconnected { conn: ConnId(1) });
        let ops = serve(&mut a, 100, |op| store.answer(&a_id, 100, op));
        let put = ops.iter().find_map(|op| match op {
            StoreOp::PutSeat { seat, grace_until, .. } if seat.peer_id == alice => {
                Some((seat.connected_via.clone(), *grace_until))
            }
            _ => None,
        });
        assert_eq!(put, Some((None, Some(Instant::from_millis(5_100)))), "the grace is written");
        drop(a); // crashed

        // bob's join reaches `b` while the store is down: the zone cannot be taken.
        store.down = true;
        let b_id = InstanceId::new("b").unwrap();
        let mut b = instance_named(b_id.clone(), Instant::from_millis(1_000));
        join(&mut b, 1_000, 7, "bob");
        serve(&mut b, 1_000, |op| store.answer(&b_id, 1_000, op));
        assert!(b.owned_zones().is_empty());

        // The store is back: bob's next join takes the zone over.
        store.down = false;
        let t = outage_ends;
        let bytes = br#"{"type":"join","zone":"payon"}"#.to_vec();
        b.handle_input(Instant::from_millis(t), Input::Frame { conn: ConnId(7), bytes });
        serve(&mut b, t, |op| store.answer(&b_id, t, op));
        assert!(b.serves(&zone(), Instant::from_millis(t)));
        let grace = b.core().seat_grace_until(&alice);
        if restored {
            assert_eq!(grace, Some(Instant::from_millis(5_100)), "only the grace left");
            let end = run_until(&mut b, 5_100, |op| store.answer(&b_id, 5_100, op));
            assert!(b.core().seat_zone(&alice).is_none(), "gone at {end}, with a's deadline");
        } else {
            assert!(b.core().seat_zone(&alice).is_none(), "the grace is over: not restored");
        }
    }
    // A record without a grace (a connected player's, or an older version's) still gets a
    // whole timeout: the store does not know since when its player is gone.
    let mut b = instance_named(InstanceId::new("b").unwrap(), Instant::from_millis(3_000));
    join(&mut b, 3_000, 7, "bob");
    let session = SessionId::new("payon-1").unwrap();
    serve(&mut b, 3_000, up(9, vec![record("alice", &session)]));
    assert_eq!(b.core().seat_grace_until(&alice), Some(Instant::from_millis(8_000)));
}

#[test]
fn frames_wait_behind_a_join_whose_zone_is_being_taken_and_a_failed_take_is_refused() {
    let mut i = instance();
    join(&mut i, 0, 1, "alice");
    let bytes = br#"{"type":"ping","nonce":7}"#.to_vec();
    i.handle_input(Instant::ZERO, Input::Frame { conn: ConnId(1), bytes });
    let acquires = |outs: &[Output]| -> Vec<OpId> {
        outs.iter()
            .filter_map(|o| match o {
                Output::Store { id, op: StoreOp::Acquire { .. } } => Some(*id),
                _ => None,
            })
            .collect()
    };
    let texts = |outs: &[Output]| -> Vec<String> {
        outs.iter()
            .filter_map(|o| match o {
                Output::Send { text, .. } => Some(text.clone()),
                _ => None,
            })
            .collect()
    };
    let outs = i.drain_outputs();
    assert_eq!(texts(&outs).len(), 1, "only the welcome: the ping waits behind the join");
    let first = acquires(&outs);
    assert_eq!(first.len(), 1, "one acquire for the zone");
    i.handle_input(
        Instant::ZERO,
        Input::Store { id: first[0], result: down(&StoreOp::ReadSeats { zone: zone() }) },
    );
    let outs = i.drain_outputs();
    let sent = texts(&outs);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(sent[0].contains("zone-unavailable"), "{sent:?}");
    // The ping follows the connection to its zone, which is asked for again.
    assert_eq!(acquires(&outs).len(), 1);
    assert!(!i.serves(&zone(), Instant::ZERO) && i.owned_zones().is_empty());
}

#[test]
fn envelopes_round_trip_and_oversized_ones_are_refused() {
    use crate::wire::{ErrorCode, limits};
    let all = [
        Envelope::Attach {
            conn: ConnId(7),
            account: Some(PeerId::new("alice").unwrap()),
            ice_servers: Vec::new(),
        },
        Envelope::Frame { conn: ConnId(7), frame: r#"{"type":"ping"}"#.to_owned() },
        Envelope::Detach { conn: ConnId(7) },
        Envelope::Deliver {
            conn: ConnId(7),
            frame: r#"{"type":"pong"}"#.to_owned(),
            kind: SentKind::Other,
        },
        Envelope::Deliver {
            conn: ConnId(7),
            frame: r#"{"type":"offer","from":"bob","sdp":"v=0"}"#.to_owned(),
            kind: SentKind::Relay,
        },
        Envelope::Close {
            conn: ConnId(7),
            code: ErrorCode::ZoneUnavailable,
            reason: "owner lost".to_owned(),
        },
    ];
    for env in all {
        assert_eq!(Envelope::decode(&env.encode()).unwrap(), env);
        assert_eq!(env.conn(), ConnId(7));
    }
    // The wire form other instances (and older versions) read.
    assert_eq!(
        String::from_utf8(Envelope::Detach { conn: ConnId(7) }.encode()).unwrap(),
        r#"{"type":"detach","conn":7}"#
    );
    let big = Envelope::Frame { conn: ConnId(1), frame: "x".repeat(limits::FRAME_BYTES_MAX + 1) };
    assert!(matches!(Envelope::decode(&big.encode()), Err(EnvelopeError::FrameTooLarge { .. })));
    assert!(matches!(
        Envelope::decode(&vec![b' '; ENVELOPE_BYTES_MAX + 1]),
        Err(EnvelopeError::TooLarge { .. })
    ));
    assert!(matches!(Envelope::decode(b"{\"type\":\"nope\"}"), Err(EnvelopeError::Malformed(_))));
    // A delivery from an instance of an earlier version has no kind: it is `other`.
    assert_eq!(
        Envelope::decode(br#"{"type":"deliver","conn":7,"frame":"{}"}"#).unwrap(),
        Envelope::Deliver { conn: ConnId(7), frame: "{}".to_owned(), kind: SentKind::Other }
    );
}

/// The kind an adapter reads off a sent frame (latency of relays, the audit log's names) is the
/// message's own, decided before it was encoded: no adapter reads the JSON to find out.
#[test]
fn a_sent_frame_says_what_it_is() {
    let mut i = instance();
    let mut answer = up(5, vec![]);
    let mut sent = |i: &mut Instance, now: u64| -> Vec<(ConnId, String, SentKind)> {
        let mut out = Vec::new();
        while let Some(o) = i.poll_output() {
            match o {
                Output::Store { id, op } => {
                    let result = answer(&op);
                    i.handle_input(Instant::from_millis(now), Input::Store { id, result });
                }
                Output::Send { conn, text, kind } => out.push((conn, text, kind)),
                _ => {}
            }
        }
        out
    };
    join(&mut i, 0, 1, "alice");
    join(&mut i, 0, 2, "bob");
    let joined = sent(&mut i, 0);
    let kind_of = |frames: &[(ConnId, String, SentKind)], ty: &str| -> Vec<SentKind> {
        let tag = format!("{{\"type\":\"{ty}\"");
        frames.iter().filter(|(_, t, _)| t.starts_with(&tag)).map(|(_, _, k)| *k).collect()
    };
    assert_eq!(kind_of(&joined, "session-joined"), [SentKind::SessionJoined; 2], "{joined:?}");
    assert!(kind_of(&joined, "welcome").iter().all(|k| *k == SentKind::Other), "{joined:?}");
    let offer = br#"{"type":"offer","to":"alice","sdp":"v=0"}"#.to_vec();
    i.handle_input(Instant::from_millis(10), Input::Frame { conn: ConnId(2), bytes: offer });
    let relayed = sent(&mut i, 10);
    assert_eq!(relayed.len(), 1, "{relayed:?}");
    assert_eq!((relayed[0].0, relayed[0].2), (ConnId(1), SentKind::Relay));
    assert!(relayed[0].1.starts_with(r#"{"type":"offer""#), "{relayed:?}");
}
