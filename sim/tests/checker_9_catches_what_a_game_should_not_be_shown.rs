//! Checker 9 (`game-shows-what-peers-did`) against a hand-made record: a peer's line drawn once
//! per frame that carried it passes; the same line drawn twice, a line no frame carried, a
//! line under another player's id and a packet no peer may produce are each caught.

use ro_p2p_core::packet::PeerEvent;
use ro_p2p_core::render::packets::notify_chat;
use ro_p2p_sim::check::Checkers;
use ro_p2p_sim::game::{Shown, ShownKind, account_of};
use ro_p2p_sim::record::{PeerDelivery, Recorder};

fn payload(event: PeerEvent<'_>) -> Vec<u8> {
    let mut p = Vec::new();
    event.encode(&mut p);
    p
}

fn chat_drawn(from: &str, text: &[u8]) -> ShownKind {
    let aid = account_of(from).unwrap();
    let mut bytes = Vec::new();
    notify_chat(aid, text, &mut bytes);
    ShownKind::Chat { aid, bytes }
}

fn shown(viewer: &str, what: ShownKind) -> Shown {
    Shown { t_ms: 100, viewer: viewer.into(), what }
}

fn delivered(from: &str, to: &str, event: PeerEvent<'_>) -> PeerDelivery {
    PeerDelivery { t_ms: 100, from: from.into(), to: to.into(), payload: payload(event) }
}

#[test]
fn a_line_drawn_once_per_opened_frame_passes() {
    let mut r = Recorder::default();
    let text = b"Player01 : hi";
    r.deliveries.push(delivered("client-1", "client-2", PeerEvent::Chat { text }));
    r.deliveries.push(delivered("client-1", "client-2", PeerEvent::Emote { kind: 3 }));
    r.shown.push(shown("client-2", chat_drawn("client-1", text)));
    let aid = account_of("client-1").unwrap();
    r.shown.push(shown("client-2", ShownKind::Emote { aid, kind: 3 }));
    assert!(Checkers::default().game_shown(&r).is_empty());
}

#[test]
fn a_line_drawn_twice_is_caught() {
    let mut r = Recorder::default();
    let text = b"Player01 : hi";
    r.deliveries.push(delivered("client-1", "client-2", PeerEvent::Chat { text }));
    r.shown.push(shown("client-2", chat_drawn("client-1", text)));
    r.shown.push(shown("client-2", chat_drawn("client-1", text)));
    let found = Checkers::default().game_shown(&r);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("drawn twice"), "{found:?}");
}

#[test]
fn a_line_no_frame_carried_or_under_another_players_id_is_caught() {
    let mut r = Recorder::default();
    let text = b"Player01 : hi";
    r.deliveries.push(delivered("client-1", "client-2", PeerEvent::Chat { text }));
    // Said by client-1, drawn as client-3's; and a line client-1 never sent client-2.
    r.shown.push(shown("client-2", chat_drawn("client-3", text)));
    r.shown.push(shown("client-2", chat_drawn("client-1", b"Player01 : other")));
    // client-1's frame reached client-2, not client-4.
    r.shown.push(shown("client-4", chat_drawn("client-1", text)));
    assert_eq!(Checkers::default().game_shown(&r).len(), 3);
}

#[test]
fn a_packet_no_peer_event_draws_is_caught() {
    let mut r = Recorder::default();
    // 0x00B4 (an NPC dialog) drawn into the game: server-only, never a peer's.
    r.shown.push(shown("client-2", ShownKind::Other { id: 0x00B4, len: 20 }));
    let found = Checkers::default().game_shown(&r);
    assert_eq!(found.len(), 1);
    assert!(found[0].contains("0x00b4"), "{found:?}");
}
