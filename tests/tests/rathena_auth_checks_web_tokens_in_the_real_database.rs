//! Authentication mode `rathena` against a real MariaDB with rAthena's schema (the harness's),
//! through the read-only user and grant of `docs/operating.md`:
//!
//! - a valid `<account id>:<web auth token>` is admitted in each of the three places (header,
//!   `?token=`, first `auth` frame) and the peer id is the account id;
//! - a wrong token, another account's token, a disabled token, a server account's token, an
//!   unknown account, an empty, 5 KB or 1 MB credential and SQL metacharacters in every field
//!   are all refused with their codes, and the `login` table is unchanged;
//! - a disabled or replaced token closes the connection with `auth-revoked` within the
//!   re-check interval and gives up its seat (`peer-left`); the new token joins the same
//!   session again; in cluster mode too, without grace;
//! - a burst of failed checks from one address is rate limited;
//! - the database unreachable: admitted players stay, new ones get `auth-unavailable`,
//!   `/api/v1/health` says `degraded` with the reason, the metric counts `unavailable`; back,
//!   new logins work again.

mod rathena;

use std::sync::Arc;
use std::time::{Duration, Instant};

use rathena::auth::{
    Next, Relay, attempt, create_read_only_user, db_port, db_url, http_get, metric, rathena_config,
};
use rathena::{ANSWER, Coordinator, runtime};
use ro_p2p_rathena::harness::{HarnessConfig, start_or_skip};
use ro_p2p_tokio::cluster::{Clock, InstanceId, MemoryWorld, StoreConfig, TokioClock};
use ro_p2p_tokio::server::ClusterConfig;

const TOKEN_A: &str = "00112233445566aa";
const TOKEN_B: &str = "bbccddeeff001122";
const TOKEN_C: &str = "0123456789abcdef";
const TOKEN_S: &str = "5555555555555555";

#[test]
fn web_auth_tokens_are_checked_in_rathenas_database() {
    let dir = std::env::temp_dir().join(format!("ro-p2p-rathena-auth-{}", std::process::id()));
    let mut config = HarnessConfig::new(20211103);
    config.work_dir = dir;
    let Some(h) = start_or_skip(config) else { return };
    create_read_only_user(&h);
    let a = h.create_account("alice_auth", "pw", 'M', 0).unwrap();
    let b = h.create_account("bob_auth", "pw", 'F', 0).unwrap();
    let c = h.create_account("carol_auth", "pw", 'M', 0).unwrap();
    let set = |id: u32, token: &str, enabled: u8| {
        h.sql(&format!(
            "UPDATE login SET web_auth_token = '{token}', web_auth_token_enabled = {enabled} \
             WHERE account_id = {id}"
        ))
        .unwrap();
    };
    set(a, TOKEN_A, 1);
    set(b, TOKEN_B, 1);
    set(c, TOKEN_C, 0);
    // rAthena's own server account (`s1`, account 1, sex 'S').
    assert_eq!(h.sql("SELECT sex FROM login WHERE account_id = 1").unwrap().trim(), "S");
    set(1, TOKEN_S, 1);
    let table = "SELECT COUNT(*), SUM(CRC32(CONCAT_WS(',', account_id, userid, user_pass, sex, \
                 IFNULL(web_auth_token, '-'), web_auth_token_enabled))) FROM login";
    let before = h.sql(table).unwrap();

    let rt = runtime();
    rt.block_on(async {
        let url_db = db_url(db_port(&h));
        let coord = Coordinator::start_with(
            "127.0.0.1:0".parse().unwrap(),
            rathena_config(&url_db, 1, 1_000),
        )
        .await;
        let url = coord.url();

        // Valid, in the three places.
        let started = Instant::now();
        let (peer, mut sa) = attempt(&url, Some(&format!("{a}:{TOKEN_A}"))).await.admitted();
        println!("admitted in {} ms (first check, opens the pool)", started.elapsed().as_millis());
        assert_eq!(peer, a.to_string());
        let mut check_ms = Vec::new();
        for _ in 0..20 {
            let started = Instant::now();
            let (_, s) = attempt(&url, Some(&format!("{b}:{TOKEN_B}"))).await.admitted();
            check_ms.push(started.elapsed().as_secs_f64() * 1e3);
            drop(s);
        }
        check_ms.sort_by(f64::total_cmp);
        println!(
            "connect + check + welcome over loopback: median {:.1} ms, max {:.1} ms (20 logins)",
            check_ms[10], check_ms[19]
        );
        let (ws, _) =
            tokio_tungstenite::connect_async(format!("{url}?token={b}:{TOKEN_B}")).await.unwrap();
        drop(ws);
        {
            use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
            let mut req = url.as_str().into_client_request().unwrap();
            req.headers_mut()
                .insert("authorization", format!("Bearer {b}:{TOKEN_B}").parse().unwrap());
            let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
            use futures_util::StreamExt as _;
            let first = tokio::time::timeout(ANSWER, ws.next()).await.unwrap().unwrap().unwrap();
            assert!(first.to_string().contains("\"welcome\""), "{first}");
        }
        let (_, mut sb) = attempt(&url, Some(&format!("{b}:{TOKEN_B}"))).await.admitted();
        let joined_a = sa.join("prontera").await;
        let joined_b = sb.join("prontera").await;
        let session = joined_a["session_id"].clone();
        assert_eq!(joined_b["session_id"], session);

        // Refusals, each with its code.
        let huge = format!("{a}:{}", "a".repeat(1 << 20));
        let five_kb = format!("{a}:{}", "a".repeat(5_000));
        let cases: Vec<(&str, String, &[&str])> = vec![
            ("wrong token", format!("{a}:ffffffffffffffff"), &["auth-invalid"]),
            ("another account's token", format!("{a}:{TOKEN_B}"), &["auth-invalid"]),
            ("disabled token", format!("{c}:{TOKEN_C}"), &["auth-expired"]),
            ("server account", format!("1:{TOKEN_S}"), &["auth-invalid"]),
            ("unknown account", format!("99999999:{TOKEN_A}"), &["auth-invalid"]),
            ("upper-case token", format!("{a}:{}", TOKEN_A.to_uppercase()), &["auth-invalid"]),
            ("empty", String::new(), &["auth-invalid", "auth-required"]),
            ("5 KB", five_kb, &["auth-required", "too-large"]),
            ("1 MB", huge, &["too-large", "auth-required", ""]),
            ("SQL in the id", format!("1 OR 1=1:{TOKEN_A}"), &["auth-invalid"]),
            ("SQL in the id 2", format!("{a};DROP TABLE login:{TOKEN_A}"), &["auth-invalid"]),
            ("SQL in the token", format!("{a}:' OR '1'='1"), &["auth-invalid"]),
            ("SQL in the token 2", format!("{a}:\\' OR 1=1 -- "), &["auth-invalid"]),
            ("SQL as the whole", "' OR 1=1; -- ".to_owned(), &["auth-invalid"]),
            ("backtick", format!("{a}`:{TOKEN_A}"), &["auth-invalid"]),
        ];
        for (what, credential, codes) in &cases {
            let code = attempt(&url, Some(credential)).await.code();
            println!("{what}: {code}");
            assert!(codes.contains(&code.as_str()), "{what}: {code}, expected {codes:?}");
        }
        let page = http_get(coord.addr, "/metrics").await;
        assert!(metric(&page, "ro_p2p_auth_checks_total{result=\"token-disabled\"}") >= 1);
        assert!(metric(&page, "ro_p2p_auth_checks_total{result=\"server-account\"}") >= 1);
        assert!(metric(&page, "ro_p2p_auth_checks_total{result=\"malformed\"}") >= 5);
        assert!(metric(&page, "ro_p2p_auth_checks_total{result=\"ok\"}") >= 23);
        for token in [TOKEN_A, TOKEN_B, TOKEN_C, TOKEN_S] {
            assert!(!page.contains(token), "a token in /metrics");
        }
        // Nothing else affected: both seats are still there.
        sa.send(serde_json::json!({"type": "ping", "nonce": 7})).await;
        assert!(sa.frame("pong").await.is_some(), "A was dropped");

        // Revocation: A logs out (rAthena disables the token).
        set(a, TOKEN_A, 0);
        let started = Instant::now();
        assert_eq!(
            sa.closed(Duration::from_secs(1) + ANSWER).await.as_deref(),
            Some("auth-revoked")
        );
        println!(
            "disabled token -> auth-revoked in {} ms (interval 1 s)",
            started.elapsed().as_millis()
        );
        let left = sb.frame("peer-left").await.expect("B told that A left");
        assert_eq!(left["peer_id"], a.to_string());
        // A logs in again: a new token; the same session takes it back.
        set(a, "a1a1a1a1a1a1a1a1", 1);
        let (_, mut sa) = attempt(&url, Some(&format!("{a}:a1a1a1a1a1a1a1a1"))).await.admitted();
        let again = sa.join("prontera").await;
        assert_eq!(again["session_id"], session);
        assert!(again["peers"].to_string().contains(&format!("\"{b}\"")), "{again}");
        // B logs in elsewhere: its token is replaced.
        set(b, "b2b2b2b2b2b2b2b2", 1);
        assert_eq!(
            sb.closed(Duration::from_secs(1) + ANSWER).await.as_deref(),
            Some("auth-revoked")
        );
        let page = http_get(coord.addr, "/metrics").await;
        assert!(metric(&page, "ro_p2p_auth_revocations_total") >= 2, "{page}");
        coord.stop().await;

        // The same in cluster mode (one instance on an in-memory store): the revoked seat is
        // given up at once, not held in grace (the default grace is minutes).
        let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
        let world = MemoryWorld::new(clock, StoreConfig::default());
        let store = Arc::new(world.store(InstanceId::new("a").unwrap()));
        let mut config = rathena_config(&url_db, 1, 1_000);
        config.cluster =
            Some(ClusterConfig { view_interval_ms: 50, ..ClusterConfig::store(store) });
        let coord = Coordinator::start_with("127.0.0.1:0".parse().unwrap(), config).await;
        let url = coord.url();
        set(a, "a3a3a3a3a3a3a3a3", 1);
        set(b, "b3b3b3b3b3b3b3b3", 1);
        let (_, mut sa) = attempt(&url, Some(&format!("{a}:a3a3a3a3a3a3a3a3"))).await.admitted();
        let (_, mut sb) = attempt(&url, Some(&format!("{b}:b3b3b3b3b3b3b3b3"))).await.admitted();
        sa.join("prontera").await;
        sb.join("prontera").await;
        set(a, "a3a3a3a3a3a3a3a3", 0);
        assert_eq!(
            sa.closed(Duration::from_secs(1) + ANSWER).await.as_deref(),
            Some("auth-revoked")
        );
        let left = sb.frame("peer-left").await.expect("cluster mode: B told at once that A left");
        assert_eq!(left["peer_id"], a.to_string());
        coord.stop().await;
        set(a, "a1a1a1a1a1a1a1a1", 1);

        // A burst of failures from one address is rate limited, valid or not.
        let coord =
            Coordinator::start_with("127.0.0.1:0".parse().unwrap(), rathena_config(&url_db, 30, 3))
                .await;
        for _ in 0..3 {
            assert_eq!(
                attempt(&coord.url(), Some(&format!("{a}:ffffffffffffffff"))).await.code(),
                "auth-invalid"
            );
        }
        assert_eq!(
            attempt(&coord.url(), Some(&format!("{a}:ffffffffffffffff"))).await.code(),
            "rate-limited"
        );
        assert_eq!(
            attempt(&coord.url(), Some(&format!("{a}:a1a1a1a1a1a1a1a1"))).await.code(),
            "rate-limited"
        );
        let page = http_get(coord.addr, "/metrics").await;
        assert_eq!(metric(&page, "ro_p2p_auth_checks_total{result=\"rate-limited\"}"), 2);
        coord.stop().await;

        // The database unreachable, then back.
        let mut relay = Relay::start(format!("127.0.0.1:{}", db_port(&h)).parse().unwrap()).await;
        let coord = Coordinator::start_with(
            "127.0.0.1:0".parse().unwrap(),
            rathena_config(&db_url(relay.addr.port()), 1, 1_000),
        )
        .await;
        let url = coord.url();
        set(b, TOKEN_B, 1);
        let (_, mut sa) = attempt(&url, Some(&format!("{a}:a1a1a1a1a1a1a1a1"))).await.admitted();
        let (_, mut sb) = attempt(&url, Some(&format!("{b}:{TOKEN_B}"))).await.admitted();
        sa.join("prontera").await;
        sb.join("prontera").await;
        relay.cut();
        // The re-check finds the database gone within its interval.
        let deadline = tokio::time::Instant::now() + ANSWER;
        let health = loop {
            let health = http_get(coord.addr, "/api/v1/health").await;
            if health.contains("\"degraded\"") {
                break health;
            }
            assert!(tokio::time::Instant::now() < deadline, "never degraded: {health}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        println!("health while the database is down: {health}");
        assert!(health.contains("\"unreachable\"") && health.contains("\"reason\""), "{health}");
        assert!(!health.contains("not a URL"), "{health}");
        assert_eq!(attempt(&url, Some(&format!("{b}:{TOKEN_B}"))).await.code(), "auth-unavailable");
        // Admitted players stay through three more re-check intervals.
        sa.send(serde_json::json!({"type": "ping", "nonce": 1})).await;
        assert!(sa.frame("pong").await.is_some(), "A was dropped");
        let quiet = sb.next(Duration::from_secs(3)).await;
        assert!(!matches!(quiet, Some(Next::Closed(_))), "B was dropped: {quiet:?}");
        let page = http_get(coord.addr, "/metrics").await;
        assert!(metric(&page, "ro_p2p_auth_checks_total{result=\"unavailable\"}") >= 1, "{page}");
        assert!(page.contains("ro_p2p_auth_database_up 0"), "{page}");
        assert!(!page.contains("read-only pw") && !health.contains("read-only"), "password shown");
        relay.restore().await;
        let back = Instant::now();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(45);
        loop {
            match attempt(&url, Some(&format!("{c}:{TOKEN_C}"))).await.code().as_str() {
                // C's token is disabled: the database answered.
                "auth-expired" => break,
                "auth-unavailable" => {}
                other => panic!("unexpected {other}"),
            }
            assert!(tokio::time::Instant::now() < deadline, "the database never came back");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        println!("database back -> logins checked again after {} ms", back.elapsed().as_millis());
        let (_, _sc) = attempt(&url, Some(&format!("{b}:{TOKEN_B}"))).await.admitted();
        let health = http_get(coord.addr, "/api/v1/health").await;
        assert!(health.contains("\"status\":\"ok\""), "{health}");
        drop((sa, sb));
        coord.stop().await;
    });
    set(a, TOKEN_A, 1);
    set(b, TOKEN_B, 1);
    assert_eq!(h.sql(table).unwrap(), before, "the login table changed");
}
