//! The check shared by the real-rAthena tests at each PACKETVER: A (through the proxy) walks,
//! turns, chats and emotes; the observers (through the proxy) draw each action from the peer
//! link, and every packet drawn equals what rAthena sends the direct bystander D for the same
//! action (a walk's `moveStartTime` aside, a server tick the peer can only estimate).

use ro_p2p_core::packet::PacketVersion;
use ro_p2p_core::render::UnitLayout;
use ro_p2p_core::render::packets::UNIT_AID_AT;
use ro_p2p_proxy::{PlayerStatus, Proxy};
use ro_p2p_rathena::{Bot, Packet};

use super::{ANSWER, count_since, is_chat_from, wait_players};

/// Waits until `bot` has `n` packets matching `pred` since `mark`; returns them.
pub async fn wait_n(
    bot: &Bot,
    mark: usize,
    n: usize,
    pred: impl Fn(&Packet) -> bool,
) -> Vec<Packet> {
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

/// Peer events B's receive path handled (drawn or dropped as duplicates).
fn handled(ps: &[PlayerStatus], aid: u32) -> u64 {
    ps.iter().find(|p| p.aid == aid).map_or(0, |p| p.receive.rendered + p.receive.rejected)
}

/// A walks, turns, chats ("<name> : hello over the peer link") and emotes; each observer's
/// drawn copy equals D's from rAthena. Returns how many packets the observers drew.
pub async fn peers_drawn_as_rathena_sends(
    version: PacketVersion,
    proxy: &Proxy,
    a: &mut Bot,
    a_name: &str,
    observers: &[&Bot],
    d: &mut Bot,
) -> u64 {
    let layout = UnitLayout::of(version).expect("walking is drawable at this version");
    let aid = a.account_id();
    let ids: Vec<u32> = observers.iter().map(|b| b.account_id()).collect();
    let is_walk_of = |p: &Packet| p.id == layout.walk_id && p.u32_at(UNIT_AID_AT) == Some(aid);
    let without_tick = |p: &Packet| {
        let mut b = p.bytes.clone();
        if let Some(t) = b.get_mut(layout.tick_at..layout.tick_at + 4) {
            t.fill(0);
        }
        b
    };
    let handled_all = |ps: &[PlayerStatus]| ids.iter().map(|&i| handled(ps, i)).collect::<Vec<_>>();

    // Walk: the observers get the drawn walk and the server's (mirrored) one, or only the
    // server's when it came first (the peer's would only walk A in place); D the server's.
    let before = handled_all(&proxy.players().await);
    let marks: Vec<usize> = observers.iter().map(|b| b.mark()).collect();
    a.walk_to(159, 188).await.unwrap();
    let reference = d.wait_for(is_walk_of, ANSWER).await.unwrap();
    assert_eq!(reference.bytes.len(), layout.walk_len, "{version}: rAthena's walk");
    wait_players(proxy, "the peer's walk handled", ANSWER, |ps| {
        handled_all(ps).iter().zip(&before).all(|(now, was)| now > was)
    })
    .await;
    for (bot, &mark) in observers.iter().zip(&marks) {
        let walks = wait_n(bot, mark, 1, is_walk_of).await;
        assert!(walks.len() <= 2, "{walks:?}");
        for w in &walks {
            assert_eq!(without_tick(w), without_tick(&reference), "{version}: drawn walk");
        }
    }

    // Turn: drawn and mirrored, each equal to rAthena's.
    let marks: Vec<usize> = observers.iter().map(|b| b.mark()).collect();
    a.turn(1, 5).await.unwrap();
    let is_turn = |p: &Packet| p.id == 0x009C && p.u32_at(2) == Some(aid);
    let reference = d.wait_for(is_turn, ANSWER).await.unwrap();
    for (bot, &mark) in observers.iter().zip(&marks) {
        for t in wait_n(bot, mark, 2, is_turn).await {
            assert_eq!(t.bytes, reference.bytes, "{version}: drawn turn");
        }
    }

    // Chat and emote: shown once (the later copy is dropped), equal to rAthena's.
    let before = handled_all(&proxy.players().await);
    let marks: Vec<usize> = observers.iter().map(|b| b.mark()).collect();
    a.chat("hello over the peer link").await.unwrap();
    let line = format!("{a_name} : hello over the peer link");
    let reference = d.wait_for(|p| is_chat_from(p, aid, &line), ANSWER).await.unwrap();
    a.emote(3).await.unwrap();
    let is_emote = |p: &Packet| p.id == 0x00C0 && p.u32_at(2) == Some(aid);
    let emote_reference = d.wait_for(is_emote, ANSWER).await.unwrap();
    for (bot, &mark) in observers.iter().zip(&marks) {
        let chat = bot.wait_for_since(mark, |p| is_chat_from(p, aid, &line), ANSWER).await;
        assert_eq!(chat.unwrap().bytes, reference.bytes, "{version}: drawn chat");
        let emote = bot.wait_for_since(mark, is_emote, ANSWER).await.unwrap();
        assert_eq!(emote.bytes, emote_reference.bytes, "{version}: drawn emote");
    }
    // Barriers: D's line reaches the observers through the server only, after the server's
    // copies of A's chat and emote; and both peer copies have been handled (drawn or dropped
    // as duplicates).
    d.chat("barrier").await.unwrap();
    let did = d.account_id();
    for (bot, &mark) in observers.iter().zip(&marks) {
        bot.wait_for_since(mark, |p| is_chat_from(p, did, "barrier"), ANSWER).await.unwrap();
    }
    wait_players(proxy, "the peer copies handled", ANSWER, |ps| {
        handled_all(ps).iter().zip(&before).all(|(now, was)| *now >= was + 2)
    })
    .await;
    for (bot, &mark) in observers.iter().zip(&marks) {
        assert_eq!(count_since(bot, mark, |p| is_chat_from(p, aid, &line)), 1, "chat twice");
        assert_eq!(count_since(bot, mark, is_emote), 1, "emote twice");
    }
    let players = proxy.players().await;
    let drawn: u64 = players.iter().map(|p| p.receive.rendered).sum();
    let dropped: u64 = players.iter().map(|p| p.receive.server_duplicates_dropped).sum();
    eprintln!(
        "{version}: drawn from peers: {drawn}; server copies dropped as duplicates: {dropped}"
    );
    // Turns are drawn whatever came first (the game shows a turn twice without harm).
    assert!(drawn >= observers.len() as u64, "the observers drew at least A's turn: {players:#?}");
    drawn
}
