//! On a real rAthena at 20211103: player A walks, chats, emotes and turns in prontera, and
//! bystander B receives what the server sends for each (0x09FD, 0x008D, 0x00C0, 0x009C).

use ro_p2p_rathena::testing::{
    ANSWER, assert_server_kept_everyone, harness, is_chat_from, player, runtime,
};

#[test]
fn bystander_receives_walk_chat_emote_and_turn_at_20211103() {
    let Some(mut h) = harness(20211103, Vec::new()) else { return };
    runtime().block_on(async {
        let t0 = std::time::Instant::now();
        let mut a = player(&h, "alice1", "Alice One").await;
        let mut b = player(&h, "bobby1", "Bobby One").await;
        eprintln!("two players in prontera in {:.1} s", t0.elapsed().as_secs_f64());
        assert_eq!(a.map_name(), "prontera.gat");
        assert_eq!(a.position(), (156, 191));
        let token = a.web_auth_token().unwrap();
        assert_eq!(token.len(), 16, "{token:?}");
        assert!(token.bytes().all(|c| c.is_ascii_hexdigit()));
        let aid = a.account_id();
        assert!(a.char_id().is_some());

        // B sees A appear.
        let aid_bytes = aid.to_le_bytes();
        b.wait_for(
            |p| (0x09FD..=0x09FF).contains(&p.id) && p.bytes.get(5..9) == Some(&aid_bytes[..]),
            ANSWER,
        )
        .await
        .unwrap();

        a.walk_to(159, 188).await.unwrap();
        let walk =
            b.wait_for(|p| p.id == 0x09FD && p.u32_at(5) == Some(aid), ANSWER).await.unwrap();
        assert_eq!(walk.bytes.len(), 114);
        let (from, to) = ro_p2p_rathena::bot::decode_move(&walk.bytes[67..73]).unwrap();
        assert_eq!((from, to), ((156, 191), (159, 188)));
        a.wait_for(|p| p.id == 0x0087, ANSWER).await.unwrap();
        assert_eq!(a.position(), (159, 188));

        a.chat("hello from A").await.unwrap();
        let chat =
            b.wait_for(|p| is_chat_from(p, aid, "Alice One : hello from A"), ANSWER).await.unwrap();
        assert_eq!(chat.bytes.last(), Some(&0));
        a.wait_for(|p| p.id == 0x008E && p.contains(b"hello from A"), ANSWER).await.unwrap();

        a.emote(3).await.unwrap();
        let emote =
            b.wait_for(|p| p.id == 0x00C0 && p.u32_at(2) == Some(aid), ANSWER).await.unwrap();
        assert_eq!(emote.bytes, [&[0xC0, 0x00][..], &aid_bytes, &[3]].concat());

        a.turn(1, 5).await.unwrap();
        let turn =
            b.wait_for(|p| p.id == 0x009C && p.u32_at(2) == Some(aid), ANSWER).await.unwrap();
        assert_eq!(turn.bytes.len(), 9);
        assert_eq!((turn.u16_at(6), turn.bytes[8]), (Some(1), 5));

        assert!(!a.is_closed() && !b.is_closed());
    });
    assert_server_kept_everyone(&mut h);
    h.stop().unwrap();
}
