//! Graceful shutdown: every client gets a close frame saying `shutting-down`, then `serve`
//! returns.

mod common;

use common::*;

#[tokio::test]
async fn shutdown_sends_every_client_a_close_with_shutting_down() {
    let server = TestServer::open().await;
    let (mut a, _) = server.joined("alice", "prontera").await;
    let mut b = server.client().await;
    let closing = tokio::spawn(server.shutdown());
    for c in [&mut a, &mut b] {
        let (_, closed) = c.expect_close().await;
        assert_eq!(closed.code, Some(1001), "{closed:?}");
        assert_eq!(closed.error_code(), "shutting-down", "{closed:?}");
    }
    closing.await.unwrap();
}
