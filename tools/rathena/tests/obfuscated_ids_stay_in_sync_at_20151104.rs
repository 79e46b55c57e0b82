//! On a real rAthena at 20151104 (packet ids obfuscated with a rolling key): a player logs in
//! (0x0069, 147-byte character entries, 0x0071), enters with the shuffled CZ_ENTER, a bystander
//! sees walk, chat, emote and turn, and over more than 1,000 client packets the server never
//! disconnects: every id the bot obfuscated was the one rAthena expected.

use ro_p2p_rathena::testing::{
    ANSWER, assert_server_kept_everyone, harness, is_chat_from, mixed_actions, player, runtime,
};

#[test]
fn obfuscated_client_stays_in_sync_over_a_thousand_packets_at_20151104() {
    let Some(mut h) = harness(20151104, Vec::new()) else { return };
    runtime().block_on(async {
        let mut a = player(&h, "oldalice", "Old Alice").await;
        let mut b = player(&h, "oldbobby", "Old Bobby").await;
        assert_eq!(a.web_auth_token(), None);
        assert_eq!(a.map_name(), "prontera.gat");
        let aid = a.account_id();

        a.walk_to(158, 189).await.unwrap();
        let walk =
            b.wait_for(|p| p.u32_at(5) == Some(aid) && p.bytes.len() > 60, ANSWER).await.unwrap();
        eprintln!(
            "bystander's walk packet at 20151104: {:#06X} ({} bytes)",
            walk.id,
            walk.bytes.len()
        );
        a.chat("old hello").await.unwrap();
        b.wait_for(|p| is_chat_from(p, aid, "Old Alice : old hello"), ANSWER).await.unwrap();
        a.emote(1).await.unwrap();
        b.wait_for(|p| p.id == 0x00C0 && p.u32_at(2) == Some(aid), ANSWER).await.unwrap();
        a.turn(0, 3).await.unwrap();
        b.wait_for(|p| p.id == 0x009C && p.u32_at(2) == Some(aid), ANSWER).await.unwrap();

        let t0 = std::time::Instant::now();
        mixed_actions(&mut a, "Old Alice", 1_000).await;
        a.chat("still here").await.unwrap();
        b.wait_for(|p| is_chat_from(p, aid, "Old Alice : still here"), ANSWER).await.unwrap();
        let sent = a.sent_count().await;
        eprintln!("{sent} client packets in {:.1} s, no disconnect", t0.elapsed().as_secs_f64());
        assert!(sent >= 1_000);
        assert!(!a.is_closed() && !b.is_closed());
    });
    assert_server_kept_everyone(&mut h);
    h.stop().unwrap();
}
