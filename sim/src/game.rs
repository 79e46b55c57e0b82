//! What each game client is shown (checker 9).
//!
//! Players have account ids ([`account_of`]); each client's node is told them, since the
//! simulation names peers by host. The stub map server shows every game its own account id,
//! the server tick and the other players on its map ([`view_packets`]), as rAthena does, so the
//! node can draw peers. The client's observer frames the game's stream as the node hands it
//! out ([`GameReader`]) and records every packet the stub server did not send ([`Shown`]): a
//! peer drawn in, or the echo of the player's own peers-only action.

use ro_p2p_core::packet::PacketVersion;
use ro_p2p_core::render::packets::{self, Cell, ZC_AID, ZC_NOTIFY_TIME};
use ro_p2p_core::render::{AppearanceIds, UnitLayout, ZcFrame, ZcFramer, ZcLen, ZcTable};

/// The account id of player `client-N` is this plus N.
pub const ACCOUNT_BASE: u32 = 2_000_000;

/// How often the stub map server shows a game the players on its map, in ms.
pub const VIEW_INTERVAL_MS: u64 = 1_000;

/// The account id of the player on host `name` (`client-N`).
pub fn account_of(name: &str) -> Option<u32> {
    let n: u32 = name.strip_prefix("client-")?.parse().ok()?;
    ACCOUNT_BASE.checked_add(n)
}

/// The host of the player with account id `aid`.
pub fn name_of(aid: u32) -> Option<String> {
    aid.checked_sub(ACCOUNT_BASE).filter(|n| *n > 0).map(|n| format!("client-{n}"))
}

/// What the stub map server sends first on a connection of player `aid`: its account id.
pub fn hello(version: PacketVersion, aid: u32) -> Vec<u8> {
    if version.map_connection_starts_with_raw_account_id() {
        return aid.to_le_bytes().to_vec();
    }
    let mut p = ZC_AID.to_le_bytes().to_vec();
    p.extend_from_slice(&aid.to_le_bytes());
    p
}

/// The idle-unit packet of `version` for player `aid` standing at `cell` (`None` if the
/// version has none).
fn idle_unit(version: PacketVersion, aid: u32, cell: Cell) -> Option<Vec<u8>> {
    let form = AppearanceIds::of(version).idle()?;
    let mut p = vec![0u8; form.len];
    p.get_mut(0..2)?.copy_from_slice(&form.id.to_le_bytes());
    if ZcTable::of(version).get(form.id) == Some(ZcLen::Variable) {
        p.get_mut(2..4)?.copy_from_slice(&u16::try_from(form.len).ok()?.to_le_bytes());
    }
    p.get_mut(form.aid_at..form.aid_at + 4)?.copy_from_slice(&aid.to_le_bytes());
    if let Ok(layout) = UnitLayout::of(version) {
        p.get_mut(layout.pos_at..layout.pos_at + 3)?
            .copy_from_slice(&packets::pack_pos_dir(cell, 0));
    }
    Some(p)
}

/// The stub map server's periodic packets for a game: the server tick, then every other
/// player on `map` (`players`: host and map) standing where rAthena put it.
pub fn view_packets<'a>(
    version: PacketVersion,
    now_ms: u64,
    me: &str,
    map: &str,
    players: impl Iterator<Item = (&'a String, &'a String)>,
) -> Vec<u8> {
    let mut out = ZC_NOTIFY_TIME.to_le_bytes().to_vec();
    out.extend_from_slice(&(now_ms as u32).to_le_bytes());
    for (name, on) in players {
        if name == me || on != map {
            continue;
        }
        let Some(aid) = account_of(name) else { continue };
        let cell = Cell { x: 100 + (aid % 50) as u16, y: 100 };
        if let Some(p) = idle_unit(version, aid, cell) {
            out.extend_from_slice(&p);
        }
    }
    out
}

/// A packet in a game's stream that the stub map server did not send, as the game read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shown {
    /// When the node handed it out.
    pub t_ms: u64,
    /// The game (host) that was shown it.
    pub viewer: String,
    /// What it is.
    pub what: ShownKind,
}

/// The packets a node may draw into a game's stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShownKind {
    /// `0x008D`: unit `aid` said the whole packet `bytes`.
    Chat {
        /// The speaker's account id.
        aid: u32,
        /// The packet as drawn.
        bytes: Vec<u8>,
    },
    /// `0x00C0`: unit `aid` showed emote `kind`.
    Emote {
        /// The unit's account id.
        aid: u32,
        /// The emote.
        kind: u8,
    },
    /// `0x009C`: unit `aid` turned.
    Turn {
        /// The unit's account id.
        aid: u32,
        /// Head direction.
        head_dir: u8,
        /// Body direction.
        dir: u8,
    },
    /// The version's unit-walking packet or `0x0086`: unit `aid` walks to `to`.
    Walk {
        /// The unit's account id.
        aid: u32,
        /// The destination.
        to: (u16, u16),
    },
    /// `0x008E`: the player's own chat line, the whole packet.
    OwnChat {
        /// The packet as drawn.
        bytes: Vec<u8>,
    },
    /// `0x0087`: the player's own walk.
    OwnWalk,
    /// Any other packet id: nothing the node may draw.
    Other {
        /// The packet id.
        id: u16,
        /// Its length.
        len: usize,
    },
}

/// Frames one game's stream as its node hands it out and picks out what the stub server did
/// not send.
#[derive(Debug)]
pub struct GameReader {
    framer: ZcFramer,
    /// Raw account id bytes still to skip (before 20070521).
    raw_left: usize,
    idle_id: Option<u16>,
    walk: Option<(u16, usize)>,
}

impl GameReader {
    /// A reader for a game of `version`.
    pub fn new(version: PacketVersion) -> GameReader {
        GameReader {
            framer: ZcFramer::new(version),
            raw_left: if version.map_connection_starts_with_raw_account_id() { 4 } else { 0 },
            idle_id: AppearanceIds::of(version).idle().map(|f| f.id),
            walk: UnitLayout::of(version).ok().map(|l| (l.walk_id, l.move_at())),
        }
    }

    /// Reads `bytes` of the game's stream; returns what the stub server did not send, in
    /// order.
    pub fn read(&mut self, bytes: &[u8]) -> Vec<ShownKind> {
        let skip = self.raw_left.min(bytes.len());
        self.raw_left -= skip;
        self.framer.push(bytes.get(skip..).unwrap_or_default());
        let mut out = Vec::new();
        while let Some(frame) = self.framer.next_frame() {
            let ZcFrame::Packet { id, bytes: p } = frame else {
                out.push(ShownKind::Other { id: 0xFFFF, len: frame.bytes().len() });
                continue;
            };
            if id == ZC_AID || id == ZC_NOTIFY_TIME || Some(id) == self.idle_id {
                continue;
            }
            out.push(kind(self.walk, id, p));
        }
        out
    }
}

/// What packet `id` (`p`, whole) drawn into a game's stream is; `walk`: the version's
/// unit-walking packet id and where its move data is.
fn kind(walk: Option<(u16, usize)>, id: u16, p: &[u8]) -> ShownKind {
    let u32_at =
        |at: usize| p.get(at..at + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let dest = |at: usize| {
        let md: [u8; 6] = p.get(at..at + 6)?.try_into().ok()?;
        let to = packets::unpack_move_data(md).1;
        Some((to.x, to.y))
    };
    let other = ShownKind::Other { id, len: p.len() };
    match id {
        packets::ZC_NOTIFY_CHAT => match u32_at(4) {
            Some(aid) => ShownKind::Chat { aid, bytes: p.to_vec() },
            None => other,
        },
        packets::ZC_EMOTION => match (u32_at(2), p.get(6)) {
            (Some(aid), Some(&kind)) => ShownKind::Emote { aid, kind },
            _ => other,
        },
        packets::ZC_CHANGE_DIRECTION => match (u32_at(2), p.get(6), p.get(8)) {
            (Some(aid), Some(&head_dir), Some(&dir)) => ShownKind::Turn { aid, head_dir, dir },
            _ => other,
        },
        packets::ZC_NOTIFY_MOVE => match (u32_at(2), dest(6)) {
            (Some(aid), Some(to)) => ShownKind::Walk { aid, to },
            _ => other,
        },
        packets::ZC_NOTIFY_PLAYERCHAT => ShownKind::OwnChat { bytes: p.to_vec() },
        packets::ZC_NOTIFY_PLAYERMOVE => ShownKind::OwnWalk,
        _ => match walk {
            Some((walk_id, move_at)) if walk_id == id => {
                match (u32_at(packets::UNIT_AID_AT), dest(move_at)) {
                    (Some(aid), Some(to)) => ShownKind::Walk { aid, to },
                    _ => other,
                }
            }
            _ => other,
        },
    }
}
