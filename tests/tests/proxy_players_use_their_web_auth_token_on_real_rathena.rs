//! End to end against a real, unmodified rAthena (20211103, fast mode) with the coordinator in
//! authentication mode `rathena` (checking rAthena's own database through the read-only user of
//! `docs/operating.md`) and no JWT anywhere:
//!
//! - A and B log in through `ro-p2p proxy`; the proxy takes each one's account id and web auth
//!   token from the login reply it relays, and both join prontera's session and link up.
//! - C plays straight against rAthena and keeps a signaling connection open with its own
//!   credential (what a client that does not leave P2P with the game would do). C logs out of
//!   the game: rAthena disables the token `disable_webtoken_delay` (10 s) later, and the
//!   coordinator closes C with `auth-revoked` within the re-check interval after that; the
//!   others are told C left. C logs in again: its new token joins the same session.
//! - A logs out and in again through the proxy: A and B are linked again.

mod rathena;

use std::time::{Duration, Instant};

use rathena::auth::{
    Next, attempt, create_read_only_user, db_port, db_url, http_get, metric, rathena_config,
};
use rathena::{Coordinator, LINKS_UP, player, proxy_with, runtime, wait_linked, wait_players};
use ro_p2p_rathena::harness::{HarnessConfig, start_or_skip};

/// The re-check interval of this test.
const RECHECK_S: u64 = 2;
/// rAthena's `disable_webtoken_delay`.
const WEBTOKEN_DELAY_S: u64 = 10;

#[test]
fn players_through_the_proxy_authenticate_with_rathenas_web_auth_token() {
    let dir = std::env::temp_dir().join(format!("ro-p2p-proxy-webtoken-{}", std::process::id()));
    let mut config = HarnessConfig::new(20211103);
    config.work_dir = dir;
    let Some(mut h) = start_or_skip(config) else { return };
    create_read_only_user(&h);
    let rt = runtime();
    rt.block_on(async {
        let coord = Coordinator::start_with(
            "127.0.0.1:0".parse().unwrap(),
            rathena_config(&db_url(db_port(&h)), RECHECK_S, 1_000),
        )
        .await;
        let proxy = proxy_with(&h, &coord.url(), None, true).await;
        let login = proxy.local_addr();

        let a = player(&h, login, "annweb", "Ann Web").await;
        let b = player(&h, login, "benweb", "Ben Web").await;
        let (aid_a, aid_b) = (a.account_id(), b.account_id());
        assert!(a.web_auth_token().is_some(), "20211103 carries a web auth token");
        wait_linked(&proxy, &[aid_a, aid_b]).await;
        let page = http_get(coord.addr, "/metrics").await;
        assert!(metric(&page, "ro_p2p_auth_checks_total{result=\"ok\"}") >= 2, "{page}");
        assert_eq!(metric(&page, "ro_p2p_rejects_total{code=\"auth-invalid\"}"), 0, "{page}");

        // C: straight to rAthena, a signaling connection of its own with its credential.
        let c = player(&h, h.login_addr(), "cidweb", "Cid Web").await;
        let aid_c = c.account_id();
        let token_c = c.web_auth_token().unwrap().to_owned();
        let (peer, mut sc) = attempt(&coord.url(), Some(&format!("{aid_c}:{token_c}"))).await.admitted();
        assert_eq!(peer, aid_c.to_string());
        let joined = sc.join("prontera").await;
        let session = joined["session_id"].clone();
        wait_players(&proxy, "A told of C", LINKS_UP, |players| {
            players.iter().any(|p| p.aid == aid_a && p.session.as_deref() == session.as_str())
        })
        .await;

        // C logs out of the game; its signaling connection stays until the coordinator acts.
        drop(c);
        let logged_out = Instant::now();
        let bound = Duration::from_secs(RECHECK_S + WEBTOKEN_DELAY_S + 10);
        assert_eq!(sc.closed(bound).await.as_deref(), Some("auth-revoked"));
        let delay = logged_out.elapsed();
        println!(
            "logout -> auth-revoked in {} ms (disable_webtoken_delay {WEBTOKEN_DELAY_S} s + re-check every {RECHECK_S} s)",
            delay.as_millis()
        );
        assert!(delay <= Duration::from_secs(RECHECK_S + WEBTOKEN_DELAY_S + 3), "{delay:?}");
        let page = http_get(coord.addr, "/metrics").await;
        assert!(metric(&page, "ro_p2p_auth_revocations_total") >= 1, "{page}");

        // C logs in again: a new token, the same session.
        let c = player(&h, h.login_addr(), "cidweb", "Cid Web").await;
        let token_c2 = c.web_auth_token().unwrap().to_owned();
        assert_ne!(token_c2, token_c, "rAthena draws a new token per login");
        assert_eq!(
            attempt(&coord.url(), Some(&format!("{aid_c}:{token_c}"))).await.code(),
            "auth-invalid",
            "the old token is gone"
        );
        let (_, mut sc) = attempt(&coord.url(), Some(&format!("{aid_c}:{token_c2}"))).await.admitted();
        let again = sc.join("prontera").await;
        assert_eq!(again["session_id"], session);
        sc.send(serde_json::json!({"type": "leave"})).await;
        assert!(matches!(sc.next(Duration::from_secs(15)).await, Some(Next::Frame(_))));
        drop((sc, c));

        // A logs out and in again through the proxy: linked with B again.
        drop(a);
        wait_players(&proxy, "A's map connection gone", LINKS_UP, |players| {
            !players.iter().any(|p| p.aid == aid_a)
        })
        .await;
        let a = player(&h, login, "annweb", "Ann Web").await;
        wait_linked(&proxy, &[aid_a, aid_b]).await;
        drop((a, b));
        proxy.stop().await;
        coord.stop().await;
    });
    h.check_alive().unwrap();
}
