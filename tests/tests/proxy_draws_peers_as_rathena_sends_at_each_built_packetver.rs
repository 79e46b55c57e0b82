//! End to end against a real, unmodified rAthena at PACKETVERs other than its default, through
//! `ro-p2p proxy` with the real coordinator and WebRTC on loopback: 20151104 (Ragexe, packet
//! ids obfuscated, prebuilt servers) and 20180620 (RagexeRE, built from the shared source by
//! the harness on first use, `ro-p2p-rathena build`, and cached under `target/rathena/`). A and B play through the
//! proxy, D straight against rAthena; what B's receive path draws for A's walk, turn, chat and
//! emote equals what rAthena sends D, with the layouts the generator derived for the version
//! (20211103 is covered by `proxy_players_see_each_other_on_real_rathena`).

mod rathena;

use rathena::{
    Coordinator, assert_server_kept_everyone, drawn, player, proxy, runtime, wait_linked,
};
use ro_p2p_core::packet::PacketVersion;
use ro_p2p_rathena::harness::{HarnessConfig, start_or_skip};

fn peers_drawn_as_rathena_sends_at(packetver: u32) {
    let version = PacketVersion::from_number(packetver).unwrap();
    let Some(mut h) = start_or_skip(HarnessConfig::new(packetver)) else { return };
    runtime().block_on(async {
        let coordinator = Coordinator::start("127.0.0.1:0".parse().unwrap()).await;
        let proxy = proxy(&h, &coordinator.url(), None).await;
        let login = proxy.local_addr();
        let mut a = player(&h, login, &format!("va{packetver}"), "Vera Proxy").await;
        let b = player(&h, login, &format!("vb{packetver}"), "Vince Proxy").await;
        let mut d = player(&h, h.login_addr(), &format!("vd{packetver}"), "Vic Direct").await;
        wait_linked(&proxy, &[a.account_id(), b.account_id()]).await;
        drawn::peers_drawn_as_rathena_sends(version, &proxy, &mut a, "Vera Proxy", &[&b], &mut d)
            .await;
        for bot in [&a, &b, &d] {
            assert!(!bot.is_closed(), "rAthena closed a player's connection");
        }
        assert_eq!(proxy.stats().p2p_stopped, 0);
        proxy.stop().await;
        coordinator.stop().await;
    });
    assert_server_kept_everyone(&mut h);
    h.stop().unwrap();
}

#[test]
fn at_20151104_obfuscated_ragexe() {
    peers_drawn_as_rathena_sends_at(20151104);
}

/// The first run builds rAthena at 20180620 from the shared source (at `-O0`: about 5
/// CPU-minutes), cached under `target/rathena/` by commit and PACKETVER; CI starts that build in
/// the background at its beginning, and this test waits for it (the harness's lock).
#[test]
fn at_20180620_ragexere_built_from_source() {
    peers_drawn_as_rathena_sends_at(20180620);
}
