//! At `info` the coordinator logs one structured line per join, leave, host change and refusal,
//! with the client's address and peer id, and never a token.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::*;
use ro_p2p_core::wire::{Capabilities, ClientMessage, ServerMessage, Zone};

/// Log lines, shared with the subscriber.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn lines(&self) -> Vec<String> {
        let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_owned).collect()
    }

    /// The lines with `event=<event>`, waiting (bounded) until there are `n`.
    async fn events(&self, event: &str, n: usize) -> Vec<String> {
        let needle = format!("event=\"{event}\"");
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let found: Vec<String> =
                self.lines().into_iter().filter(|l| l.contains(&needle)).collect();
            if found.len() >= n {
                return found;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "fewer than {n} {event} lines:\n{}",
                self.lines().join("\n")
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}

fn strong() -> Capabilities {
    Capabilities {
        cpu_cores: 8,
        cpu_mhz: 3600,
        memory_mb: 16_384,
        bandwidth_mbps: 500,
        latency_ms: 10,
    }
}

#[tokio::test]
async fn joins_leaves_host_changes_and_refusals_are_logged_with_the_address_and_no_token() {
    let captured = Captured::default();
    let sink = captured.clone();
    tracing_subscriber::fmt()
        .with_env_filter("info")
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .init();
    let server = TestServer::with_auth().await;
    let url = server.ws_url("/api/v1/signaling/ws");

    // A forged token is refused before the core; the line names the address, not the token.
    let forged = token_with(
        serde_json::json!({"sub": "mallory", "exp": NOW_UNIX_S + 60}),
        "wrong-secret-0123456789abcdef",
    );
    let _ = Client::connect(&url, &[("authorization", &format!("Bearer {forged}"))]).await;
    let refusals = captured.events("refusal", 1).await;
    assert!(refusals[0].contains("client=127.0.0.1"), "{refusals:?}");
    assert!(refusals[0].contains("code=auth-invalid"), "{refusals:?}");

    let alice_token = token("alice");
    let mut alice = Client::connect(&url, &[("authorization", &format!("Bearer {alice_token}"))])
        .await
        .unwrap();
    let join_as_host = ClientMessage::Join {
        peer_id: None,
        session_id: None,
        zone: Zone::new("prontera").unwrap(),
        capabilities: Some(strong()),
    };
    alice.send(&join_as_host).await;
    alice.expect(|m| matches!(m, ServerMessage::SessionJoined { .. })).await;
    let bob_token = token("bob");
    let mut bob =
        Client::connect(&url, &[("authorization", &format!("Bearer {bob_token}"))]).await.unwrap();
    bob.send(&join(None, "prontera")).await;
    bob.expect(|m| matches!(m, ServerMessage::SessionJoined { .. })).await;
    let joins = captured.events("join", 2).await;
    assert!(joins[0].contains("peer=alice") && joins[0].contains("zone=prontera"), "{joins:?}");
    assert!(joins[0].contains("client=127.0.0.1"), "{joins:?}");
    assert!(joins[1].contains("peer=bob") && joins[1].contains("host=alice"), "{joins:?}");

    // A refused request inside the protocol: bob joins a zone with a bad name.
    bob.send_text(r#"{"type":"join","zone":""}"#).await;
    bob.expect_error().await;
    let refusals = captured.events("refusal", 2).await;
    assert!(refusals[1].contains("peer=bob") && refusals[1].contains("client=127.0.0.1"));

    // The host leaves: one leave line, one host-change line (though every member is told).
    alice.send(&ClientMessage::Leave).await;
    alice.expect(|m| matches!(m, ServerMessage::SessionLeft { .. })).await;
    let leaves = captured.events("leave", 1).await;
    assert!(
        leaves[0].contains("peer=alice") && leaves[0].contains("reason=\"left\""),
        "{leaves:?}"
    );
    let changes = captured.events("host-change", 1).await;
    assert!(changes[0].contains("host=-"), "{changes:?}");

    // bob's socket goes away: a leave line with reason disconnected.
    drop(bob);
    let leaves = captured.events("leave", 2).await;
    assert!(leaves[1].contains("peer=bob") && leaves[1].contains("disconnected"), "{leaves:?}");

    let all = captured.lines().join("\n");
    for secret in [forged.as_str(), alice_token.as_str(), bob_token.as_str()] {
        assert!(!all.contains(secret), "a token reached the log:\n{all}");
    }
    assert_eq!(captured.events("host-change", 1).await.len(), 1, "{all}");
    server.shutdown().await;

    // Authentication off: the line names the peer id the join chose, not the anonymous one.
    let open = TestServer::open().await;
    let (_carol, _) = open.joined("carol", "geffen").await;
    let joins = captured.events("join", 3).await;
    assert!(joins[2].contains("peer=carol") && joins[2].contains("zone=geffen"), "{joins:?}");
    open.shutdown().await;
}
