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
    ANSWER, Coordinator, NPC_DIALOG_SCRIPT, assert_server_kept_everyone, count_since, is_chat_from,
    player, proxy, runtime, spawn_of, status, wait_linked, wait_players,
};
use ro_p2p_core::packet::PacketVersion;
use ro_p2p_rathena::harness::{HarnessConfig, start_or_skip};
use ro_p2p_rathena::{Bot, Packet};

/// The dialog NPC, and a warper to izlude in reach of the players' start.
fn npc_scripts() -> String {
    format!(
        "{NPC_DIALOG_SCRIPT}prontera,153,191,4\tscript\tWarper\t97,{{\n\twarp \"izlude\",0,0;\n\tend;\n}}\n"
    )
}

/// Offset of `moveStartTime` in `ZC_NOTIFY_MOVEENTRY` (`0x09FD`): the only field that may
/// differ between a drawn walk and rAthena's.
const MOVE_START_TIME_AT: usize = 37;

fn is_walk_of(p: &Packet, aid: u32) -> bool {
    p.id == 0x09FD && p.u32_at(5) == Some(aid)
}

/// A walk packet with its tick zeroed.
fn without_tick(p: &Packet) -> Vec<u8> {
    let mut b = p.bytes.clone();
    if let Some(t) = b.get_mut(MOVE_START_TIME_AT..MOVE_START_TIME_AT + 4) {
        t.fill(0);
    }
    b
}

/// Waits until `bot` has `n` packets matching `pred` since `mark`; returns them.
async fn wait_n(bot: &Bot, mark: usize, n: usize, pred: impl Fn(&Packet) -> bool) -> Vec<Packet> {
    let deadline = tokio::time::Instant::now() + ANSWER;
    loop {
        let got: Vec<Packet> = bot.received_since(mark).into_iter().filter(|p| pred(p)).collect();
        if got.len() >= n {
            return got;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {n} packets after {ANSWER:?}: {got:?}",
            got.len()
        );
        // The next packet wakes the wait; a bounded wait for any packet at all.
        let _ =
            bot.wait_for_since(bot.mark(), |_| true, std::time::Duration::from_millis(200)).await;
    }
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

        // What B's and C's receive paths did with peer events (drawn or dropped as duplicates).
        let handled = |ps: &[ro_p2p_proxy::PlayerStatus], aid: u32| {
            ps.iter().find(|p| p.aid == aid).map_or(0, |p| p.receive.rendered + p.receive.rejected)
        };

        // Walk: B and C get the drawn walk and the server's (mirrored) one, or only the
        // server's when it came first (the peer's would only walk A in place); D the server's.
        let players = proxy.players().await;
        let handled_before = [handled(&players, bid), handled(&players, cid)];
        let marks = [b.mark(), c.mark(), d.mark()];
        a.walk_to(159, 188).await.unwrap();
        let reference = d.wait_for(|p| is_walk_of(p, aid), ANSWER).await.unwrap();
        assert_eq!(reference.bytes.len(), 114);
        wait_players(&proxy, "the peer's walk handled", ANSWER, |ps| {
            handled(ps, bid) > handled_before[0] && handled(ps, cid) > handled_before[1]
        })
        .await;
        for (bot, mark) in [(&b, marks[0]), (&c, marks[1])] {
            let walks = wait_n(bot, mark, 1, |p| is_walk_of(p, aid)).await;
            assert!(walks.len() <= 2, "{walks:?}");
            for w in &walks {
                assert_eq!(without_tick(w), without_tick(&reference), "drawn walk != rAthena's");
            }
        }

        // Turn: drawn and mirrored, each equal to rAthena's.
        let marks = [b.mark(), c.mark(), d.mark()];
        a.turn(1, 5).await.unwrap();
        let is_turn = |p: &Packet| p.id == 0x009C && p.u32_at(2) == Some(aid);
        let reference = d.wait_for(is_turn, ANSWER).await.unwrap();
        for (bot, mark) in [(&b, marks[0]), (&c, marks[1])] {
            for t in wait_n(bot, mark, 2, is_turn).await {
                assert_eq!(t.bytes, reference.bytes);
            }
        }

        // Chat and emote: shown once (the later copy is dropped), equal to rAthena's.
        let players = proxy.players().await;
        let handled_before = [handled(&players, bid), handled(&players, cid)];
        let marks = [b.mark(), c.mark(), d.mark()];
        a.chat("hello over the peer link").await.unwrap();
        let line = "Alice Proxy : hello over the peer link";
        let reference = d.wait_for(|p| is_chat_from(p, aid, line), ANSWER).await.unwrap();
        a.emote(3).await.unwrap();
        let is_emote = |p: &Packet| p.id == 0x00C0 && p.u32_at(2) == Some(aid);
        let emote_reference = d.wait_for(is_emote, ANSWER).await.unwrap();
        for (bot, mark) in [(&b, marks[0]), (&c, marks[1])] {
            let chat = bot.wait_for_since(mark, |p| is_chat_from(p, aid, line), ANSWER).await;
            assert_eq!(chat.unwrap().bytes, reference.bytes);
            let emote = bot.wait_for_since(mark, is_emote, ANSWER).await.unwrap();
            assert_eq!(emote.bytes, emote_reference.bytes);
        }
        // Barriers: D's line reaches B and C through the server only, after the server's
        // copies of A's chat and emote; and both peer copies have been handled (drawn or
        // dropped as duplicates).
        d.chat("barrier").await.unwrap();
        let did = d.account_id();
        for (bot, mark) in [(&b, marks[0]), (&c, marks[1])] {
            bot.wait_for_since(mark, |p| is_chat_from(p, did, "barrier"), ANSWER).await.unwrap();
        }
        wait_players(&proxy, "the peer copies handled", ANSWER, |ps| {
            handled(ps, bid) >= handled_before[0] + 2 && handled(ps, cid) >= handled_before[1] + 2
        })
        .await;
        for (bot, mark) in [(&b, marks[0]), (&c, marks[1])] {
            assert_eq!(count_since(bot, mark, |p| is_chat_from(p, aid, line)), 1, "chat twice");
            assert_eq!(count_since(bot, mark, is_emote), 1, "emote twice");
        }
        let players = proxy.players().await;
        let drawn: u64 = players.iter().map(|p| p.receive.rendered).sum();
        let dropped: u64 = players.iter().map(|p| p.receive.server_duplicates_dropped).sum();
        eprintln!("drawn from peers: {drawn}; server copies dropped as duplicates: {dropped}");
        // Turns are drawn whatever came first (the game shows a turn twice without harm).
        assert!(drawn >= 2, "B and C drew at least A's turn: {players:#?}");

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
