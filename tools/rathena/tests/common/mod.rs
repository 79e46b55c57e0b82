//! Shared steps of the real-server tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use ro_p2p_core::gate::Sex;
use ro_p2p_rathena::harness::{Harness, HarnessConfig, Server, start_or_skip};
use ro_p2p_rathena::{Bot, Packet};

/// Bound for anything the server should answer promptly.
pub const ANSWER: Duration = Duration::from_secs(10);

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

/// Logs in (registering the account), makes the character and enters the map.
pub async fn player(h: &Harness, user: &str, name: &str) -> Bot {
    let mut bot = Bot::connect_login(h.login_addr(), user, "pass1234", Sex::Male, h.packetver())
        .await
        .unwrap_or_else(|e| panic!("{user}: login: {e}"));
    bot.select_or_create_char(name).await.unwrap_or_else(|e| panic!("{user}: char: {e}"));
    bot.enter_map()
        .await
        .unwrap_or_else(|e| panic!("{user}: map: {e}\n{}", h.log_tail(Server::Map, 20)));
    bot
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
