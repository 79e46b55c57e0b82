//! A char-server connection through the proxy: the game's bytes pass untouched; the proxy reads
//! who it is (`CH_ENTER`), the character list and the character selected, and rewrites
//! `HC_NOTIFY_ZONESVR` to a map door of that player's.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use ro_p2p_core::gate::{CH_ENTER, GateEvent, NextServer, PlayerFacts, ReplyFollower};
use ro_p2p_core::route::{GameStream, Policy, RouteContext, Verdict};
use tokio::net::TcpStream;

use crate::doors;
use crate::follow::{self, Follower};
use crate::{Ctx, Player};

/// Serves one char-server connection arriving at the door of `upstream`.
pub(crate) async fn serve(ctx: Arc<Ctx>, client: TcpStream, upstream: SocketAddr) {
    ctx.stats.char_connections.fetch_add(1, Ordering::Relaxed);
    let follower = CharFollower {
        replies: ReplyFollower::char(ctx.version),
        requests: GameStream::login_char(),
        ctx,
    };
    follow::relay(client, upstream, follower).await;
}

struct CharFollower {
    ctx: Arc<Ctx>,
    replies: ReplyFollower,
    /// The game's side, framed (every char packet is server-only: nothing is diverted).
    requests: GameStream,
}

/// The player as the proxy knows it: what the login said, and what this connection did.
fn player(ctx: &Ctx, facts: &PlayerFacts) -> Option<Player> {
    let mut player = ctx.player(facts.account_id?);
    player.char_name = facts.char_name.clone().or(player.char_name);
    player.map = facts.map.clone().or(player.map);
    Some(player)
}

impl Follower for CharFollower {
    fn on_client_bytes(&mut self, bytes: &[u8]) {
        let replies = &mut self.replies;
        self.requests.feed(bytes, &Policy::default(), &RouteContext::SERVER_ONLY, |verdict| {
            let Verdict::Packet(p) = verdict else { return };
            if p.spec.id() == CH_ENTER
                && let Some(&[a, b, c, d]) = p.server_bytes.get(2..6)
            {
                replies.set_account_id(u32::from_le_bytes([a, b, c, d]));
            }
        });
    }

    fn on_server_bytes(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        let ctx = &self.ctx;
        self.replies.push(bytes, out, |next, upstream, facts| {
            if next != NextServer::Map {
                return None;
            }
            let Some(player) = player(ctx, facts) else {
                tracing::warn!("a character was selected by an unknown account; not proxied");
                return None;
            };
            match doors::open_map(ctx, SocketAddr::V4(upstream), player, crate::map::serve) {
                Ok(door) => Some(door),
                Err(e) => {
                    tracing::warn!("map server {upstream} not proxied: {e}");
                    None
                }
            }
        });
        while let Some(event) = self.replies.poll_event() {
            match event {
                GateEvent::ZoneServer(zone) => {
                    if let Some(player) = player(ctx, self.replies.facts()) {
                        tracing::info!(
                            aid = player.aid,
                            map = %zone.map,
                            name = ?player.char_name,
                            "character selected"
                        );
                        ctx.remember(player);
                    }
                }
                GateEvent::Stopped(e) => follow::stopped_following(ctx, "char", &e),
                _ => {}
            }
        }
    }

    fn rest(&self) -> &[u8] {
        self.replies.rest()
    }
}
