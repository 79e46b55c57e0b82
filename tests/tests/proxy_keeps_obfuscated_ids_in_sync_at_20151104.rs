//! End to end against a real rAthena at 20151104 (client packet ids obfuscated with a rolling
//! key) through `ro-p2p proxy`, with movement routed to peers only: every diverted walk and
//! turn is a packet the server never sees, so the proxy must re-obfuscate each later packet
//! with the server's key. Over more than 1,000 client packets rAthena never disconnects the
//! player and keeps answering; the bystander B draws A's walks from the peer link.

mod rathena;

use rathena::{
    ANSWER, Coordinator, assert_server_kept_everyone, is_chat_from, mixed_actions, player, proxy,
    runtime, status, wait_linked,
};
use ro_p2p_rathena::harness::{HarnessConfig, start_or_skip};

#[test]
fn diverted_packets_do_not_desync_the_servers_key_over_a_thousand_packets() {
    let Some(mut h) = start_or_skip(HarnessConfig::new(20151104)) else { return };
    runtime().block_on(async {
        let coordinator = Coordinator::start("127.0.0.1:0".parse().unwrap()).await;
        let proxy = proxy(&h, &coordinator.url(), Some("movement=peers")).await;
        let mut a = player(&h, proxy.local_addr(), "obfalice", "Obf Alice").await;
        let mut b = player(&h, proxy.local_addr(), "obfbob", "Obf Bob").await;
        let (aid, bid) = (a.account_id(), b.account_id());
        wait_linked(&proxy, &[aid, bid]).await;

        mixed_actions(&mut a, "Obf Alice", 1_000).await;
        a.chat("still in sync").await.unwrap();
        b.wait_for(|p| is_chat_from(p, aid, "Obf Alice : still in sync"), ANSWER).await.unwrap();
        let sent = a.sent_count().await;
        assert!(sent >= 1_000, "{sent} client packets");
        let sa = status(&proxy, aid).await;
        eprintln!(
            "A: {} packets, {} to peers only, {} to the server only, {} mirrored, {} fallbacks",
            sa.node.packets,
            sa.node.packets_peers,
            sa.node.packets_server,
            sa.node.packets_mirrored,
            sa.node.fallbacks
        );
        assert!(sa.node.packets_peers >= 400, "walks and turns were diverted: {sa:#?}");
        assert_eq!(sa.node.desyncs, 0);
        let sb = status(&proxy, bid).await;
        assert!(sb.receive.rendered >= 400, "B drew A's walks and turns: {sb:#?}");
        assert!(!a.is_closed() && !b.is_closed(), "rAthena closed a player's connection");
        assert_eq!(proxy.stats().p2p_stopped, 0);
        proxy.stop().await;
        coordinator.stop().await;
    });
    assert_server_kept_everyone(&mut h);
    h.stop().unwrap();
}
