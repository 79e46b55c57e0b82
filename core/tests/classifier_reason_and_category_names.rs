//! The names users see in `ro-p2p classify` output, logs and metrics (issue 22: mutation testing
//! found that `as_str` returning `""` failed no test). Each reason and category has its own
//! fixed kebab-case name, and the category names are the policy syntax's.

use std::collections::BTreeSet;

use ro_p2p_core::packet::chat::ChatRejection;
use ro_p2p_core::packet::{Category, PeerCategory, ServerOnlyReason};
use ro_p2p_core::route::Policy;

#[test]
fn every_server_only_reason_has_its_own_name() {
    let named = [
        (ServerOnlyReason::Category(Category::Npc), "category"),
        (ServerOnlyReason::LoginOrCharServer, "login-or-char-server"),
        (ServerOnlyReason::UnrecognisedHandler, "unrecognised-handler"),
        (ServerOnlyReason::UnexpectedLayout, "unexpected-layout"),
        (ServerOnlyReason::Whisper, "whisper"),
        (ServerOnlyReason::PartyChat, "party-chat"),
        (ServerOnlyReason::GuildChat, "guild-chat"),
        (ServerOnlyReason::ClanChat, "clan-chat"),
        (ServerOnlyReason::BattlegroundChat, "battleground-chat"),
        (ServerOnlyReason::Chat(ChatRejection::Command), "chat-command"),
        (ServerOnlyReason::Chat(ChatRejection::TooLong), "chat-malformed"),
        (ServerOnlyReason::MuteEmote, "mute-emote"),
        (ServerOnlyReason::DiceEmote, "dice-emote"),
        (ServerOnlyReason::InvalidEmote, "invalid-emote"),
        (ServerOnlyReason::InvalidDirection, "invalid-direction"),
    ];
    for (reason, name) in named {
        assert_eq!(reason.as_str(), name, "{reason:?}");
    }
    let distinct: BTreeSet<&str> = named.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(distinct.len(), named.len(), "two reasons share a name");
}

#[test]
fn peer_category_names_are_the_policy_syntax() {
    let names: Vec<&str> = PeerCategory::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(names, ["movement", "chat", "emote"]);
    for category in PeerCategory::ALL {
        let policy: Policy = format!("{}=peers", category.as_str()).parse().unwrap();
        assert_eq!(policy.choice(category).as_str(), "peers", "{category:?}");
    }
}
