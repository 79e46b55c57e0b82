//! Two `PeerLinks` in one process, signaling passed between them by the test (SDP and trickle
//! ICE), real WebRTC over 127.0.0.1. Every test bounds its time.

use std::time::Duration;

use ro_p2p_core::client::LinkEvent;
use ro_p2p_core::wire::PeerId;
use ro_p2p_webrtc::{Channel, LinkError, LinksConfig, LinksEvent, PeerLinks, Role};
use tokio::sync::mpsc;
use tokio::time::timeout;

const TEST_TIME_MAX: Duration = Duration::from_secs(30);

struct Side {
    id: PeerId,
    links: PeerLinks,
    rx: mpsc::Receiver<LinksEvent>,
    /// Every event except the signaling the harness relayed.
    seen: Vec<LinksEvent>,
    /// How many signaling events (SDP, candidates) it relayed from this side.
    relayed: usize,
}

impl Side {
    fn new(id: &str, config: LinksConfig) -> Side {
        let (links, rx) = PeerLinks::new(config);
        Side { id: PeerId::new(id).unwrap(), links, rx, seen: Vec::new(), relayed: 0 }
    }

    fn data(&self) -> Vec<(Channel, Vec<u8>)> {
        self.seen
            .iter()
            .filter_map(|e| match e {
                LinksEvent::Data { channel, bytes, .. } => Some((*channel, bytes.clone())),
                _ => None,
            })
            .collect()
    }

    fn has(&self, pred: impl Fn(&LinksEvent) -> bool) -> bool {
        self.seen.iter().any(pred)
    }
}

fn is_measured(e: &LinksEvent) -> bool {
    matches!(e, LinksEvent::Link { event: LinkEvent::Measured { .. }, .. })
}

fn fast_config() -> LinksConfig {
    LinksConfig { probe_interval_ms: 100, ..LinksConfig::loopback() }
}

/// Relays `from`'s signaling to `to`; anything else is kept in `from.seen`.
async fn handle(event: LinksEvent, from: &mut Side, to: &Side) {
    match event {
        LinksEvent::Link { peer, event: LinkEvent::LocalDescription { sdp } } => {
            assert_eq!(peer, to.id);
            from.relayed += 1;
            to.links.apply_remote_sdp(&from.id, sdp).await.expect("remote SDP applies");
        }
        LinksEvent::Link { peer, event: LinkEvent::LocalCandidate(candidate) } => {
            assert_eq!(peer, to.id);
            from.relayed += 1;
            to.links.apply_remote_candidate(&from.id, candidate).await.expect("candidate applies");
        }
        other => {
            assert_eq!(other.peer(), &to.id);
            if let Some(last) = from.seen.last() {
                assert!(!last.is_terminal(), "{other:?} after terminal {last:?}");
            }
            from.seen.push(other);
        }
    }
}

/// Runs the signaling relay until `done` holds for the two sides.
async fn run_until(a: &mut Side, b: &mut Side, done: impl Fn(&Side, &Side) -> bool) {
    while !done(a, b) {
        tokio::select! {
            Some(e) = a.rx.recv() => handle(e, a, b).await,
            Some(e) = b.rx.recv() => handle(e, b, a).await,
        }
    }
}

fn connected(s: &Side) -> bool {
    s.has(|e| matches!(e, LinksEvent::Link { event: LinkEvent::Connected, .. }))
}

async fn connected_pair(config: LinksConfig) -> (Side, Side) {
    let mut a = Side::new("alice", config.clone());
    let mut b = Side::new("bob", config);
    a.links.connect(b.id.clone(), Role::Offerer, Vec::new()).await.unwrap();
    b.links.connect(a.id.clone(), Role::Answerer, Vec::new()).await.unwrap();
    run_until(&mut a, &mut b, |a, b| connected(a) && connected(b)).await;
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_cross_both_channels_both_ways_and_disconnect_closes_the_peer() {
    timeout(TEST_TIME_MAX, async {
        let (mut a, mut b) = connected_pair(fast_config()).await;
        assert!(a.relayed >= 2 && b.relayed >= 2, "SDP and at least one candidate each way");
        assert_eq!(a.links.peers(), vec![b.id.clone()]);

        a.links.send(&b.id, Channel::Movement, b"move from alice").await.unwrap();
        a.links.send(&b.id, Channel::Chat, b"chat from alice").await.unwrap();
        b.links.send(&a.id, Channel::Movement, b"move from bob").await.unwrap();
        b.links.send(&a.id, Channel::Chat, b"chat from bob").await.unwrap();
        run_until(&mut a, &mut b, |a, b| a.data().len() == 2 && b.data().len() == 2).await;

        let mut got_b = b.data();
        got_b.sort();
        assert_eq!(
            got_b,
            vec![
                (Channel::Movement, b"move from alice".to_vec()),
                (Channel::Chat, b"chat from alice".to_vec()),
            ]
        );
        let mut got_a = a.data();
        got_a.sort();
        assert_eq!(
            got_a,
            vec![
                (Channel::Movement, b"move from bob".to_vec()),
                (Channel::Chat, b"chat from bob".to_vec()),
            ]
        );

        a.links.disconnect(&b.id).await.unwrap();
        run_until(&mut a, &mut b, |a, b| {
            a.seen.last().is_some_and(LinksEvent::is_terminal)
                && b.seen.last().is_some_and(LinksEvent::is_terminal)
        })
        .await;
        let closed =
            |peer: &PeerId| LinksEvent::Link { peer: peer.clone(), event: LinkEvent::Closed };
        assert_eq!(a.seen.last(), Some(&closed(&b.id)));
        assert_eq!(b.seen.last(), Some(&closed(&a.id)));
        assert!(a.links.peers().is_empty() && b.links.peers().is_empty());
        assert!(matches!(
            a.links.send(&b.id, Channel::Chat, b"late").await,
            Err(LinkError::UnknownPeer { .. })
        ));
    })
    .await
    .expect("within the test's time bound");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_is_reliable_and_ordered() {
    timeout(TEST_TIME_MAX, async {
        let (mut a, mut b) = connected_pair(fast_config()).await;
        let sent: Vec<Vec<u8>> =
            (0..200u32).map(|i| format!("chat line {i}").into_bytes()).collect();
        for line in &sent {
            a.links.send(&b.id, Channel::Chat, line).await.unwrap();
        }
        run_until(&mut a, &mut b, |_, b| b.data().len() == sent.len()).await;
        let got: Vec<Vec<u8>> = b
            .data()
            .into_iter()
            .map(|(c, bytes)| {
                assert_eq!(c, Channel::Chat);
                bytes
            })
            .collect();
        assert_eq!(got, sent);
        a.links.close_all().await;
    })
    .await
    .expect("within the test's time bound");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_nudges_never_show_up_as_data() {
    timeout(TEST_TIME_MAX, async {
        let (mut a, mut b) = connected_pair(fast_config()).await;
        assert!(a.links.config().tuning.chat_nudges > 0, "the default tuning nudges");
        a.links.send(&b.id, Channel::Chat, b"one chat line").await.unwrap();
        let measured = |s: &Side| s.seen.iter().filter(|e| is_measured(e)).count();
        let before = measured(&b);
        // Two more probe rounds (100 ms each) at b: the nudges (5 to 30 ms after the line)
        // have long arrived by then.
        run_until(&mut a, &mut b, |_, b| b.data().len() == 1 && measured(b) >= before + 2).await;
        assert_eq!(b.data(), vec![(Channel::Chat, b"one chat line".to_vec())]);
        a.links.close_all().await;
    })
    .await
    .expect("within the test's time bound");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connected_links_report_loopback_rtt_without_loss() {
    timeout(TEST_TIME_MAX, async {
        let (mut a, mut b) = connected_pair(fast_config()).await;
        let measured =
            |s: &Side| s.seen.iter().filter(|e| is_measured(e)).cloned().collect::<Vec<_>>();
        run_until(&mut a, &mut b, |a, b| measured(a).len() >= 3 && measured(b).len() >= 3).await;
        for m in measured(&a).into_iter().chain(measured(&b)) {
            let LinksEvent::Link { event: LinkEvent::Measured { rtt_ms, loss_percent }, .. } = m
            else {
                unreachable!()
            };
            assert!(rtt_ms < 100, "loopback RTT {rtt_ms} ms");
            assert_eq!(loss_percent, 0, "no probe lost on loopback");
        }
        // Probes are text messages: none surfaced as data.
        assert!(a.data().is_empty() && b.data().is_empty());
    })
    .await
    .expect("within the test's time bound");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_whose_signaling_never_arrives_fails_instead_of_hanging() {
    timeout(TEST_TIME_MAX, async {
        let config = LinksConfig { connect_timeout_ms: 1_500, ..LinksConfig::loopback() };
        let (links, mut rx) = PeerLinks::new(config);
        let ghost = PeerId::new("ghost").unwrap();
        let silent = PeerId::new("silent").unwrap();
        links.connect(ghost.clone(), Role::Offerer, Vec::new()).await.unwrap();
        links.connect(silent.clone(), Role::Answerer, Vec::new()).await.unwrap();

        let mut first_for_ghost = None;
        let mut failed = Vec::new();
        while failed.len() < 2 {
            let event = rx.recv().await.expect("links alive");
            if event.peer() == &ghost && first_for_ghost.is_none() {
                first_for_ghost = Some(event.clone());
            }
            // The backstop ends both (the log says `ConnectTimeout`).
            if let LinksEvent::Link { peer, event: LinkEvent::Failed } = event {
                failed.push(peer);
            }
        }
        failed.sort();
        assert_eq!(failed, vec![ghost.clone(), silent]);
        assert!(
            matches!(
                first_for_ghost,
                Some(LinksEvent::Link { event: LinkEvent::LocalDescription { .. }, .. })
            ),
            "the offer comes before any candidate"
        );
        assert!(links.peers().is_empty());
        // A failed link can be started again.
        links.connect(ghost.clone(), Role::Offerer, Vec::new()).await.unwrap();
        links.close_all().await;
    })
    .await
    .expect("within the test's time bound");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_commands_say_why() {
    timeout(TEST_TIME_MAX, async {
        let (links, _rx) = PeerLinks::new(LinksConfig { links_max: 1, ..LinksConfig::loopback() });
        let bob = PeerId::new("bob").unwrap();
        let carol = PeerId::new("carol").unwrap();
        assert!(matches!(
            links.send(&bob, Channel::Movement, b"x").await,
            Err(LinkError::UnknownPeer { .. })
        ));
        links.connect(bob.clone(), Role::Offerer, Vec::new()).await.unwrap();
        assert!(matches!(
            links.connect(bob.clone(), Role::Offerer, Vec::new()).await,
            Err(LinkError::AlreadyLinked { .. })
        ));
        assert!(matches!(
            links.connect(carol.clone(), Role::Answerer, Vec::new()).await,
            Err(LinkError::TooManyLinks { links: 1 })
        ));
        assert!(matches!(
            links.send(&bob, Channel::Chat, b"too early").await,
            Err(LinkError::ChannelNotOpen { channel: Channel::Chat, .. })
        ));
        assert!(matches!(
            links.send(&bob, Channel::Chat, &vec![0u8; 16 * 1024 + 1]).await,
            Err(LinkError::FrameTooLarge { len: 16385, max: 16384 })
        ));
        assert!(matches!(
            links.apply_remote_sdp(&bob, "not sdp".into()).await,
            Err(LinkError::BadRemoteSdp { role: Role::Offerer, .. })
        ));
        assert!(matches!(
            links.apply_remote_sdp(&carol, String::new()).await,
            Err(LinkError::UnknownPeer { .. })
        ));
        links.disconnect(&bob).await.unwrap();
        assert!(matches!(links.disconnect(&bob).await, Err(LinkError::UnknownPeer { .. })));
    })
    .await
    .expect("within the test's time bound");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_links_closes_the_peer_side() {
    timeout(TEST_TIME_MAX, async {
        let (a, mut b) = connected_pair(fast_config()).await;
        let a_id = a.id.clone();
        drop(a);
        loop {
            let event = b.rx.recv().await.expect("b's links alive");
            if event.is_terminal() {
                assert_eq!(event, LinksEvent::Link { peer: a_id, event: LinkEvent::Closed });
                break;
            }
        }
    })
    .await
    .expect("within the test's time bound");
}

/// The client core sends a link's remote candidates only after its SDP (it buffers early ones
/// itself: `local_offer_is_sent_and_remote_candidates_wait_for_the_answer` in the core), so the
/// links keep no buffer: a candidate first is refused, and the same candidate after the SDP
/// applies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_before_the_remote_sdp_is_refused_and_applies_after_it() {
    timeout(TEST_TIME_MAX, async {
        let mut a = Side::new("alice", fast_config());
        let mut b = Side::new("bob", fast_config());
        a.links.connect(b.id.clone(), Role::Offerer, Vec::new()).await.unwrap();
        b.links.connect(a.id.clone(), Role::Answerer, Vec::new()).await.unwrap();

        let mut offer = None;
        let candidate = loop {
            match a.rx.recv().await.expect("alice's links alive") {
                LinksEvent::Link { event: LinkEvent::LocalDescription { sdp }, .. } => {
                    offer = Some(sdp)
                }
                LinksEvent::Link { event: LinkEvent::LocalCandidate(candidate), .. } => {
                    assert!(offer.is_some(), "the offer is reported before any candidate");
                    break candidate;
                }
                other => panic!("unexpected {other:?}"),
            }
        };
        assert!(matches!(
            b.links.apply_remote_candidate(&a.id, candidate.clone()).await,
            Err(LinkError::RemoteSdpNotApplied { .. })
        ));
        b.links
            .apply_remote_sdp(&a.id, offer.expect("offer reported"))
            .await
            .expect("offer applies");
        b.links.apply_remote_candidate(&a.id, candidate).await.expect("candidate applies");
        run_until(&mut a, &mut b, |a, b| connected(a) && connected(b)).await;
    })
    .await
    .expect("within the test's time bound");
}

/// Bob runs on his own runtime, which is then shut down without closing anything: his links
/// vanish as if the process was killed. Alice must notice through ICE.
#[test]
fn a_peer_that_vanishes_ends_in_ice_failure() {
    let runtime =
        || tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build();
    let rt_alice = runtime().unwrap();
    let rt_bob = runtime().unwrap();
    let config = LinksConfig {
        ice_disconnected_timeout_ms: 1_000,
        ice_failed_timeout_ms: 2_000,
        ice_keepalive_interval_ms: 200,
        ..fast_config()
    };
    let mut a = rt_alice.block_on(async { Side::new("alice", config.clone()) });
    let mut b = rt_bob.block_on(async { Side::new("bob", config) });
    // Bob's peer connection, its driver and its tasks are spawned on his runtime.
    let (a_id, b_links) = (a.id.clone(), &b.links);
    rt_bob.block_on(b_links.connect(a_id, Role::Answerer, Vec::new())).unwrap();

    rt_alice.block_on(async {
        timeout(TEST_TIME_MAX, async {
            a.links.connect(b.id.clone(), Role::Offerer, Vec::new()).await.unwrap();
            run_until(&mut a, &mut b, |a, b| connected(a) && connected(b)).await;
        })
        .await
        .expect("connects in time");
    });

    rt_bob.shutdown_background();

    rt_alice.block_on(async {
        timeout(TEST_TIME_MAX, async {
            loop {
                let event = a.rx.recv().await.expect("alice's links alive");
                if event.is_terminal() {
                    // ICE failed (the log says `IceFailed`).
                    assert_eq!(
                        event,
                        LinksEvent::Link { peer: b.id.clone(), event: LinkEvent::Failed }
                    );
                    break;
                }
            }
        })
        .await
        .expect("the vanished peer is noticed in time");
        a.links.close_all().await;
    });
    drop(b);
}
