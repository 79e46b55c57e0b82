//! A char-server connection through the proxy: the game's bytes pass untouched; the proxy reads
//! who it is (`CH_ENTER`), which character it selects (`CH_SELECT_CHAR`), the character list and
//! made characters, and rewrites `HC_NOTIFY_ZONESVR` to a map door of that player's.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use ro_p2p_core::gate::{
    CH_ENTER, CharList, CharSelectReply, GateFramer, HC_ACCEPT_ENTER, HC_NOTIFY_ZONESVR,
    HC_NOTIFY_ZONESVR_OLD, MakeCharReply, parse_char_list, parse_char_select_reply,
    parse_make_char_reply, server_addresses,
};
use ro_p2p_core::packet::{GameStream, Verdict};
use ro_p2p_core::route::{Policy, RouteContext};
use tokio::net::TcpStream;

use crate::doors::{self, DoorKind};
use crate::follow::{self, Follower, Replies, Reply};
use crate::{Ctx, Player};

/// Serves one char-server connection arriving at the door of `upstream`.
pub(crate) async fn serve(ctx: Arc<Ctx>, client: TcpStream, upstream: SocketAddr) {
    ctx.stats.char_connections.fetch_add(1, Ordering::Relaxed);
    let follower = CharFollower {
        replies: Replies::new(GateFramer::char(ctx.version)),
        requests: GameStream::login_char(),
        player: None,
        chars: CharList { characters: Vec::new() },
        ctx,
    };
    follow::relay(client, upstream, follower).await;
}

struct CharFollower {
    ctx: Arc<Ctx>,
    replies: Replies,
    /// The game's side, framed (every char packet is server-only: nothing is diverted).
    requests: GameStream,
    player: Option<Player>,
    chars: CharList,
}

impl Follower for CharFollower {
    fn on_client_bytes(&mut self, bytes: &[u8]) {
        let CharFollower { ctx, requests, player, .. } = self;
        requests.feed(bytes, &Policy::default(), &RouteContext::SERVER_ONLY, |verdict| {
            let Verdict::Packet(p) = verdict else { return };
            if p.spec.id() == CH_ENTER
                && let Some(aid) = p.server_bytes.get(2..6)
            {
                let aid = u32::from_le_bytes([aid[0], aid[1], aid[2], aid[3]]);
                *player = Some(ctx.player(aid));
            }
        });
    }

    fn on_server_bytes(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        let CharFollower { ctx, replies, player, chars, .. } = self;
        let version = ctx.version;
        let stopped = replies.push(bytes, out, |reply| match reply {
            Reply::AccountId(aid) => {
                // The server's word on who this is, when CH_ENTER was not understood.
                if player.is_none() {
                    *player = Some(ctx.player(aid));
                }
            }
            Reply::Packet { id: HC_ACCEPT_ENTER, bytes } => {
                if let Ok(list) = parse_char_list(version, bytes) {
                    *chars = list;
                }
            }
            Reply::Packet { id: HC_NOTIFY_ZONESVR | HC_NOTIFY_ZONESVR_OLD, bytes } => {
                if let Some(player) = player.as_mut() {
                    zone_server(ctx, player, chars, bytes);
                }
            }
            Reply::Packet { bytes, .. } => {
                if let Ok(MakeCharReply::Accepted(info)) = parse_make_char_reply(version, bytes) {
                    chars.characters.push(info);
                }
            }
        });
        if let Some(e) = stopped {
            follow::stopped_following(ctx, "char", &e);
        }
    }

    fn rest(&self) -> &[u8] {
        self.replies.rest()
    }
}

/// The character is selected: the game is sent to a map door of this player's.
fn zone_server(ctx: &Arc<Ctx>, player: &mut Player, chars: &CharList, packet: &mut [u8]) {
    let Ok(CharSelectReply::Zone(zone)) = parse_char_select_reply(packet) else { return };
    player.char_name =
        chars.characters.iter().find(|c| c.char_id == zone.char_id).map(|c| c.name.clone());
    player.map = Some(zone.map.clone());
    ctx.remember(player.clone());
    let Ok(addresses) = server_addresses(packet) else { return };
    for address in addresses {
        let upstream = SocketAddr::from((address.ip, address.port));
        match doors::open(ctx, DoorKind::Map, upstream, player.clone()) {
            Ok(door) => {
                if let Err(e) = address.write(packet, *door.ip(), door.port()) {
                    tracing::warn!(aid = player.aid, "map server {upstream} not rewritten: {e}");
                }
            }
            Err(e) => tracing::warn!(aid = player.aid, "map server {upstream} not proxied: {e}"),
        }
    }
    tracing::info!(aid = player.aid, map = %zone.map, name = ?player.char_name, "character selected");
}
