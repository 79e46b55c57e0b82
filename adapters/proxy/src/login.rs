//! A login connection through the proxy: the game's bytes pass to the login server untouched;
//! `AC_ACCEPT_LOGIN` is read (account id, web auth token) and its char servers are rewritten to
//! the proxy's char doors.

use std::net::SocketAddr;
use std::sync::Arc;

use ro_p2p_core::gate::{
    AC_ACCEPT_LOGIN, AC_ACCEPT_LOGIN_OLD, GateFramer, LoginReply, parse_login_reply,
    server_addresses,
};
use tokio::net::TcpStream;

use crate::doors::{self, DoorKind};
use crate::follow::{self, Follower, Replies, Reply};
use crate::{Ctx, Player};

/// Serves one login connection.
pub(crate) async fn serve(ctx: Arc<Ctx>, client: TcpStream) {
    let upstream = ctx.config.login_server;
    let replies = Replies::new(GateFramer::login(ctx.version));
    follow::relay(client, upstream, LoginFollower { ctx, replies }).await;
}

struct LoginFollower {
    ctx: Arc<Ctx>,
    replies: Replies,
}

impl Follower for LoginFollower {
    fn on_client_bytes(&mut self, _bytes: &[u8]) {}

    fn on_server_bytes(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        let ctx = &self.ctx;
        let stopped = self.replies.push(bytes, out, |reply| {
            let Reply::Packet { id: AC_ACCEPT_LOGIN | AC_ACCEPT_LOGIN_OLD, bytes } = reply else {
                return;
            };
            accept_login(ctx, bytes);
        });
        if let Some(e) = stopped {
            follow::stopped_following(ctx, "login", &e);
        }
    }

    fn rest(&self) -> &[u8] {
        self.replies.rest()
    }
}

/// Remembers the player and sends the game to the proxy's char doors.
fn accept_login(ctx: &Arc<Ctx>, packet: &mut [u8]) {
    let accepted = match parse_login_reply(packet) {
        Ok(LoginReply::Accepted(a)) => a,
        Ok(_) => return,
        Err(e) => {
            tracing::warn!("login reply not understood: {e}; passed on untouched");
            return;
        }
    };
    let aid = accepted.account_id;
    ctx.remember(Player {
        aid,
        web_auth_token: accepted.web_auth_token.clone(),
        ..Player::default()
    });
    let addresses = match server_addresses(packet) {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(aid, "char server list not understood: {e}; passed on untouched");
            return;
        }
    };
    for address in addresses {
        let upstream = SocketAddr::from((address.ip, address.port));
        match doors::open(ctx, DoorKind::Char, upstream, ctx.player(aid)) {
            Ok(door) => {
                if let Err(e) = address.write(packet, *door.ip(), door.port()) {
                    tracing::warn!(aid, "char server {upstream} not rewritten: {e}");
                }
            }
            Err(e) => tracing::warn!(aid, "char server {upstream} not proxied: {e}"),
        }
    }
    tracing::info!(aid, "logged in");
}
