//! Steps shared by the test suites that run against a real rAthena (this crate's, and the
//! end-to-end suites of the proxy and the DLL): a player in the map, rAthena's own verdict on
//! the session, the packets tests look for, and a test NPC.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ro_p2p_core::gate::Sex;

use crate::harness::{Harness, HarnessConfig, Server, start_or_skip};
use crate::{Bot, Packet};

/// Bound for anything the server (or a peer) should answer promptly.
pub const ANSWER: Duration = Duration::from_secs(15);

/// An NPC at prontera 156,194 with a dialog: `mes`, `next`, a `select` of "Yes:No", `close`.
pub const NPC_DIALOG_SCRIPT: &str = "prontera,156,194,4\tscript\tTestNpc\t97,{\n\
    \tmes \"[TestNpc]\";\n\
    \tmes \"Hello, traveller.\";\n\
    \tnext;\n\
    \tswitch(select(\"Yes:No\")) {\n\
    \tcase 1: mes \"You said yes.\"; break;\n\
    \tcase 2: mes \"You said no.\"; break;\n\
    \t}\n\
    \tclose;\n\
    }\n";

/// A harness in fast mode at `packetver` with `npc_scripts`, or `None` (SKIPPED) outside CI
/// when rAthena or MariaDB is missing.
pub fn harness(packetver: u32, npc_scripts: Vec<PathBuf>) -> Option<Harness> {
    let mut config = HarnessConfig::new(packetver);
    config.npc_scripts = npc_scripts;
    let h = start_or_skip(config)?;
    eprintln!(
        "rAthena {packetver} ready in {:.1} s ({})",
        h.start_duration().as_secs_f64(),
        h.work_dir().display()
    );
    Some(h)
}

/// A multi-thread runtime for a test body.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// Logs in at `login` (rAthena's login server, or a proxy in front of it), registering the
/// account, makes the character and enters the map. Panics with the map server's log tail.
pub async fn player_at(h: &Harness, login: SocketAddr, user: &str, name: &str) -> Bot {
    let mut bot = Bot::connect_login(login, user, "pass1234", Sex::Male, h.packetver())
        .await
        .unwrap_or_else(|e| panic!("{user}: login: {e}"));
    bot.select_or_create_char(name).await.unwrap_or_else(|e| panic!("{user}: char: {e}"));
    bot.enter_map()
        .await
        .unwrap_or_else(|e| panic!("{user}: map: {e}\n{}", h.log_tail(Server::Map, 20)));
    bot
}

/// [`player_at`] straight to rAthena's login server.
pub async fn player(h: &Harness, user: &str, name: &str) -> Bot {
    player_at(h, h.login_addr(), user, name).await
}

/// rAthena logged nothing about refusing or dropping a client, and every process is alive.
pub fn assert_server_kept_everyone(h: &mut Harness) {
    h.check_alive().unwrap();
    for (server, needle) in [
        (Server::Map, "unsupported packet"),
        (Server::Map, "disconnecting session"),
        (Server::Map, "Packet Obfuscation: Client"),
        (Server::Map, "Wrong packet"),
        (Server::Char, "unsupported packet"),
        (Server::Login, "unsupported packet"),
    ] {
        let lines = h.log_lines(server, needle);
        assert!(lines.is_empty(), "{server} logged {needle:?}: {lines:#?}");
    }
}

/// `ZC_NOTIFY_CHAT` from `aid` whose text contains `text`.
pub fn is_chat_from(p: &Packet, aid: u32, text: &str) -> bool {
    p.id == 0x008D && p.u32_at(4) == Some(aid) && p.contains(text.as_bytes())
}

/// The unit id of a unit spawn or walk packet that names `name` (an NPC, a character).
pub fn spawn_of(p: &Packet, name: &str) -> Option<u32> {
    ((0x09FD..=0x09FF).contains(&p.id) && p.contains(name.as_bytes())).then(|| p.u32_at(5))?
}

/// `bot` (whose character is `name`) walks, turns, emotes and chats in turn, `n` actions in
/// all; after every hundredth it waits for rAthena's echo of its last chat line, which proves
/// the server read every packet before it (with obfuscated ids: every id was the one it
/// expected).
pub async fn mixed_actions(bot: &mut Bot, name: &str, n: u32) {
    for i in 0..n {
        match i % 4 {
            0 => bot.walk_to(150 + (i % 12) as u16, 185 + (i % 9) as u16).await.unwrap(),
            1 => bot.turn((i % 3) as u8, (i % 8) as u8).await.unwrap(),
            2 => bot.emote((i % 30) as u8).await.unwrap(),
            _ => bot.chat(&format!("line {i}")).await.unwrap(),
        }
        if i % 100 == 99 {
            let last = format!("{name} : line {i}");
            bot.wait_for(|p| p.id == 0x008E && p.contains(last.as_bytes()), ANSWER).await.unwrap();
        }
    }
}
