//! The headless peer's generated traffic is what a game client of each PACKETVER would send:
//! for every supported version, with and without id obfuscation, walking, chat and emotes
//! frame and classify as peer-eligible with the intended meaning, and NPC clicks, item use and
//! `@` commands as server-only, through the same `GameStream` the node uses.
#![allow(missing_docs)]

#[path = "../src/bin/peer/app.rs"]
mod app;

use app::{Action, PacketWriter};
use ro_p2p_core::packet::{Obfuscation, PacketVersion, PeerEvent};
use ro_p2p_core::route::{GameStream, Policy, Route, RouteContext, Verdict};

#[test]
fn generated_actions_classify_as_intended_at_every_version() {
    let actions = [
        (Action::Walk { x: 150, y: 200 }, Some("Move { x: 150, y: 200 }".to_owned())),
        (Action::Chat { text: "hello".into() }, Some(format!("{:?}", b"Poring : hello"))),
        (Action::Emote { kind: 3 }, Some("Emote { kind: 3 }".to_owned())),
        (Action::NpcClick { npc_id: 110_000_001 }, None),
        (Action::UseItem { index: 4 }, None),
        (Action::Command { line: "@warp prontera".into() }, None),
    ];
    for version in PacketVersion::REFERENCE {
        for obfuscation in [Obfuscation::On, Obfuscation::Off] {
            let mut writer = PacketWriter::new(version, obfuscation, "Poring");
            let mut stream = GameStream::new(version, obfuscation);
            let mut game = Vec::new();
            for (action, _) in &actions {
                game.extend(writer.write(action).unwrap());
            }
            let mut got = Vec::new();
            let mut server = Vec::new();
            stream.feed(&game, &Policy::default(), &RouteContext::ALL_READY, |v| {
                server.extend_from_slice(v.server_bytes());
                got.push(match v {
                    Verdict::Packet(p) => match p.route {
                        Route::Server => None,
                        Route::Peers(e) | Route::ServerAndPeers(e) => Some(match e.event() {
                            PeerEvent::Chat { text } => format!("{text:?}"),
                            other => format!("{other:?}"),
                        }),
                    },
                    other => panic!("{version:?} {obfuscation:?}: {other:?}"),
                });
            });
            let want: Vec<Option<String>> = actions.iter().map(|(_, w)| w.clone()).collect();
            assert_eq!(got, want, "{version:?} {obfuscation:?}");
            assert_eq!(server, game, "mirror: the server gets the game's bytes unchanged");
        }
    }
}
