//! End to end against a real, unmodified rAthena (20211103, fast mode), through `ro-p2p proxy`
//! with the real coordinator and WebRTC on loopback. Players A, B and C play through the proxy;
//! D plays straight against rAthena and is the reference bystander: what rAthena itself sends.
//!
//! - A walks, turns, chats and emotes: B and C show each from the peer link (turns twice, with
//!   the mirrored server copy; chat and emotes once, the later copy dropped; a walk once more
//!   from the server, or only from the server when its copy came first), and every packet
//!   drawn equals what rAthena sends D for the same action, tick aside.
//! - An `@` command reaches the server and is answered; an NPC dialog works; an item packet
//!   never reaches a peer.
//! - A warps to izlude: A's node leaves the prontera session and joins izlude's.
//! - rAthena disconnects nobody and logs no refusal.

mod rathena;

use rathena::{
    ANSWER, Coordinator, NPC_DIALOG_SCRIPT, assert_server_kept_everyone, count_since, drawn,
    player, proxy, runtime, spawn_of, status, wait_linked, wait_players,
};
use ro_p2p_core::packet::PacketVersion;
use ro_p2p_rathena::harness::{HarnessConfig, start_or_skip};

/// The dialog NPC, and a warper to izlude in reach of the players' start.
fn npc_scripts() -> String {
    format!(
        "{NPC_DIALOG_SCRIPT}prontera,153,191,4\tscript\tWarper\t97,{{\n\twarp \"izlude\",0,0;\n\tend;\n}}\n"
    )
}

#[test]
fn players_through_the_proxy_see_peers_as_rathena_draws_them() {
    let dir = std::env::temp_dir().join(format!("ro-p2p-proxy-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("test_npcs.txt");
    std::fs::write(&script, npc_scripts()).unwrap();
    let mut config = HarnessConfig::new(20211103);
    config.npc_scripts = vec![script];
    let Some(mut h) = start_or_skip(config) else { return };
    let gm_aid = h.create_account("gmalice", "pass1234", 'M', 99).unwrap();
    runtime().block_on(async {
        let coordinator = Coordinator::start("127.0.0.1:0".parse().unwrap()).await;
        let proxy = proxy(&h, &coordinator.url(), None).await;
        let login = proxy.local_addr();
        let mut a = player(&h, login, "gmalice", "Alice Proxy").await;
        let b = player(&h, login, "bobproxy", "Bob Proxy").await;
        let c = player(&h, login, "carolproxy", "Carol Proxy").await;
        let mut d = player(&h, h.login_addr(), "davedirect", "Dave Direct").await;
        let aid = a.account_id();
        assert_eq!(aid, gm_aid);
        let (bid, cid) = (b.account_id(), c.account_id());
        wait_linked(&proxy, &[aid, bid, cid]).await;
        assert!(proxy.players().await.iter().all(|p| p.map.as_deref() == Some("prontera.gat")));

        // Walk, turn, chat, emote: drawn from the peer link as rAthena draws them.
        drawn::peers_drawn_as_rathena_sends(
            PacketVersion::V20211103,
            &proxy,
            &mut a,
            "Alice Proxy",
            &[&b, &c],
            &mut d,
        )
        .await;

        // An @ command goes to the server only and is answered; no peer sees it.
        let marks = [b.mark(), c.mark()];
        a.command("@where Alice Proxy").await.unwrap();
        a.wait_for(|p| p.contains(b"prontera") && p.contains(b"Alice Proxy"), ANSWER)
            .await
            .unwrap();
        for (bot, mark) in [(&b, marks[0]), (&c, marks[1])] {
            assert_eq!(count_since(bot, mark, |p| p.contains(b"@where")), 0);
        }

        // An item packet goes to the server only: A seals nothing for it.
        let sealed = status(&proxy, aid).await.node.frames_sealed;
        let server_before = status(&proxy, aid).await.node.packets_server;
        let use_item = PacketVersion::V20211103
            .table()
            .iter()
            .find(|s| s.handler_name() == "UseItem")
            .unwrap();
        let mut item = vec![
            0u8;
            usize::from(match use_item.len() {
                ro_p2p_core::packet::PacketLen::Fixed(n) => n,
                ro_p2p_core::packet::PacketLen::Variable => 8,
            })
        ];
        item[..2].copy_from_slice(&use_item.id().to_le_bytes());
        item[2..4].copy_from_slice(&2u16.to_le_bytes());
        a.send_raw(&item).await.unwrap();
        wait_players(&proxy, "the item packet routed", ANSWER, |ps| {
            ps.iter().any(|p| p.aid == aid && p.node.packets_server > server_before)
        })
        .await;
        assert_eq!(status(&proxy, aid).await.node.frames_sealed, sealed, "an item was sealed");

        // An NPC dialog through the proxy.
        let npc = b.wait_for_since(0, |p| spawn_of(p, "TestNpc").is_some(), ANSWER).await.unwrap();
        let npc_id = spawn_of(&npc, "TestNpc").unwrap();
        a.npc_click(npc_id).await.unwrap();
        a.wait_for(|p| p.contains(b"Hello, traveller."), ANSWER).await.unwrap();
        a.npc_next(npc_id).await.unwrap();
        a.wait_for(|p| p.id == 0x00B7, ANSWER).await.unwrap();
        a.npc_menu(npc_id, 1).await.unwrap();
        a.wait_for(|p| p.contains(b"You said yes."), ANSWER).await.unwrap();
        a.npc_close(npc_id).await.unwrap();

        // A warps to izlude: its node leaves prontera's session and joins izlude's.
        let prontera_session = status(&proxy, aid).await.session.unwrap();
        let warper =
            d.wait_for_since(0, |p| spawn_of(p, "Warper").is_some(), ANSWER).await.unwrap();
        let warper_id = spawn_of(&warper, "Warper").unwrap();
        a.npc_click(warper_id).await.unwrap();
        a.wait_for(|p| p.id == 0x0091 && p.contains(b"izlude"), ANSWER).await.unwrap();
        wait_players(&proxy, "A in izlude's session", ANSWER, |ps| {
            ps.iter().any(|p| {
                p.aid == aid
                    && p.map.as_deref() == Some("izlude.gat")
                    && p.session.as_ref().is_some_and(|s| *s != prontera_session)
            })
        })
        .await;
        wait_players(&proxy, "B and C without A", ANSWER, |ps| {
            ps.iter().filter(|p| p.aid == bid || p.aid == cid).all(|p| {
                p.session.as_deref() == Some(&prontera_session[..])
                    && !p.healthy_peers.contains(&aid.to_string())
            })
        })
        .await;

        for bot in [&a, &b, &c, &d] {
            assert!(!bot.is_closed(), "rAthena closed a player's connection");
        }
        assert_eq!(proxy.stats().p2p_stopped, 0);
        assert_eq!(proxy.stats().follow_stopped, 0);
        proxy.stop().await;
        coordinator.stop().await;
    });
    assert_server_kept_everyone(&mut h);
    h.stop().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
