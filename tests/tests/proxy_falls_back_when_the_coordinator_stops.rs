//! End to end against a real rAthena (20211103) through `ro-p2p proxy`, with chat routed to
//! peers only: the coordinator is stopped mid-session and restarted. Every line A says reaches
//! B exactly once and in order, through the peer link before and after, through the server
//! while the coordinator is away (the fallback); rAthena receives every line routed to it, in
//! order (D, playing straight against rAthena, sees exactly those); A sees its own echo of every
//! line; P2P resumes when the coordinator is back; rAthena disconnects nobody.

mod rathena;

use rathena::{
    ANSWER, Coordinator, LINKS_UP, assert_server_kept_everyone, is_chat_from, player, proxy,
    runtime, status, wait_linked, wait_players,
};
use ro_p2p_rathena::harness::{HarnessConfig, start_or_skip};
use ro_p2p_rathena::{Bot, Packet};

/// The lines of A that `bot` was shown since `mark`, in order.
fn lines_of(bot: &Bot, mark: usize, aid: u32, prefix: &str) -> Vec<String> {
    bot.received_since(mark)
        .iter()
        .filter(|p| is_chat_from(p, aid, prefix))
        .map(|p| p.text_at(8))
        .collect()
}

/// A's own echo (`ZC_NOTIFY_PLAYERCHAT`) of `text`.
fn is_echo(p: &Packet, text: &str) -> bool {
    p.id == 0x008E && p.contains(text.as_bytes())
}

async fn say(a: &mut Bot, text: &str) {
    a.chat(text).await.unwrap();
    a.wait_for(|p| is_echo(p, text), ANSWER).await.unwrap();
}

#[test]
fn players_fall_back_to_the_server_and_back_without_losing_a_line() {
    let Some(mut h) = start_or_skip(HarnessConfig::new(20211103)) else { return };
    runtime().block_on(async {
        let coordinator = Coordinator::start("127.0.0.1:0".parse().unwrap()).await;
        let addr = coordinator.addr;
        let proxy = proxy(&h, &coordinator.url(), Some("chat=peers")).await;
        let mut a = player(&h, proxy.local_addr(), "fallalice", "Fall Alice").await;
        let b = player(&h, proxy.local_addr(), "fallbob", "Fall Bob").await;
        let d = player(&h, h.login_addr(), "falldave", "Fall Dave").await;
        let (aid, bid) = (a.account_id(), b.account_id());
        wait_linked(&proxy, &[aid, bid]).await;
        let (b_mark, d_mark) = (b.mark(), d.mark());
        let mut said = Vec::new();

        // Linked: peers only. D (the server) never sees these.
        for i in 0..10 {
            let text = format!("peer line {i}");
            say(&mut a, &text).await;
            said.push(format!("Fall Alice : {text}"));
        }
        let last = said.last().unwrap().clone();
        b.wait_for_since(b_mark, |p| is_chat_from(p, aid, &last), ANSWER).await.unwrap();
        assert!(status(&proxy, aid).await.node.packets_peers >= 10);

        // The coordinator goes away: everyone falls back to the server.
        coordinator.stop().await;
        wait_players(&proxy, "A and B fallen back", ANSWER, |ps| {
            ps.iter().filter(|p| p.aid == aid || p.aid == bid).all(|p| !p.peers_usable)
        })
        .await;
        let fallbacks_before = status(&proxy, aid).await.node.fallbacks;
        let mut to_server = Vec::new();
        for i in 0..30 {
            let text = format!("server line {i}");
            say(&mut a, &text).await;
            said.push(format!("Fall Alice : {text}"));
            to_server.push(format!("Fall Alice : {text}"));
            if i % 3 == 0 {
                a.walk_to(150 + i as u16 % 10, 186).await.unwrap();
            }
        }
        assert!(status(&proxy, aid).await.node.fallbacks >= fallbacks_before + 30);
        let last = to_server.last().unwrap().clone();
        d.wait_for_since(d_mark, |p| is_chat_from(p, aid, &last), ANSWER).await.unwrap();
        assert_eq!(
            lines_of(&d, d_mark, aid, "Fall Alice : "),
            to_server,
            "rAthena got exactly the lines routed to it, in order"
        );

        // The coordinator is back on its address: P2P resumes.
        let coordinator = Coordinator::start(addr).await;
        tokio::time::timeout(LINKS_UP, wait_linked(&proxy, &[aid, bid])).await.unwrap();
        for i in 0..10 {
            let text = format!("again line {i}");
            say(&mut a, &text).await;
            said.push(format!("Fall Alice : {text}"));
        }
        let last = said.last().unwrap().clone();
        b.wait_for_since(b_mark, |p| is_chat_from(p, aid, &last), ANSWER).await.unwrap();
        assert_eq!(
            lines_of(&b, b_mark, aid, "Fall Alice : "),
            said,
            "B saw every line once, in order"
        );
        assert_eq!(
            lines_of(&d, d_mark, aid, "Fall Alice : "),
            to_server,
            "the peers-only lines after the restart did not reach the server"
        );
        for bot in [&a, &b, &d] {
            assert!(!bot.is_closed(), "rAthena closed a player's connection");
        }
        proxy.stop().await;
        coordinator.stop().await;
    });
    assert_server_kept_everyone(&mut h);
    h.stop().unwrap();
}
