//! A login connection through the proxy: the game's bytes pass to the login server untouched;
//! `AC_ACCEPT_LOGIN` is read (account id, web auth token) and its char servers are rewritten to
//! the proxy's char doors.

use std::net::SocketAddr;
use std::sync::Arc;

use ro_p2p_core::gate::{GateEvent, NextServer, ReplyFollower};
use tokio::net::TcpStream;

use crate::doors;
use crate::follow::{self, Follower};
use crate::{Ctx, Player};

/// Serves one login connection.
pub(crate) async fn serve(ctx: Arc<Ctx>, client: TcpStream) {
    let upstream = ctx.config.login_server;
    let replies = ReplyFollower::login(ctx.version);
    follow::relay(client, upstream, LoginFollower { ctx, replies }).await;
}

struct LoginFollower {
    ctx: Arc<Ctx>,
    replies: ReplyFollower,
}

impl Follower for LoginFollower {
    fn on_client_bytes(&mut self, _bytes: &[u8]) {}

    fn on_server_bytes(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        let ctx = &self.ctx;
        // The char doors are shared: the player is told apart by CH_ENTER at the door.
        self.replies.push(bytes, out, |next, upstream, _| {
            if next != NextServer::Char {
                return None;
            }
            match doors::open_char(ctx, SocketAddr::V4(upstream), crate::charsrv::serve) {
                Ok(door) => Some(door),
                Err(e) => {
                    tracing::warn!("char server {upstream} not proxied: {e}");
                    None
                }
            }
        });
        while let Some(event) = self.replies.poll_event() {
            match event {
                GateEvent::LoggedIn(a) => {
                    tracing::info!(aid = a.account_id, "logged in");
                    if let Some(token) = &a.web_auth_token {
                        ctx.refresh_tokens(a.account_id, token);
                    }
                    ctx.remember(Player {
                        aid: a.account_id,
                        web_auth_token: a.web_auth_token,
                        ..Player::default()
                    });
                }
                GateEvent::Stopped(e) => follow::stopped_following(ctx, "login", &e),
                _ => {}
            }
        }
    }

    fn rest(&self) -> &[u8] {
        self.replies.rest()
    }
}
