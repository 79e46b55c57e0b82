//! Byte layouts of the server-to-client packets a game client shows for another player, and the
//! echoes rAthena sends the actor itself (`shared/data/zc/layouts.md` §2, §3). Every integer is
//! little-endian; positions use rAthena's big-endian bit packing.

use crate::packet::{GeneratedLayout, PacketVersion};

/// `ZC_NOTIFY_TIME`: the server tick, reply to a time request.
pub const ZC_NOTIFY_TIME: u16 = 0x007F;
/// `ZC_NOTIFY_VANISH`: a unit left the view.
pub const ZC_NOTIFY_VANISH: u16 = 0x0080;
/// `ZC_NOTIFY_MOVE`: minimal walk of a known unit (16 bytes).
pub const ZC_NOTIFY_MOVE: u16 = 0x0086;
/// `ZC_NOTIFY_PLAYERMOVE`: walk acknowledgement to the walker (12 bytes).
pub const ZC_NOTIFY_PLAYERMOVE: u16 = 0x0087;
/// `ZC_STOPMOVE`: a unit stops or slides to a cell (10 bytes).
pub const ZC_STOPMOVE: u16 = 0x0088;
/// `ZC_NOTIFY_CHAT`: public chat of another unit (variable).
pub const ZC_NOTIFY_CHAT: u16 = 0x008D;
/// `ZC_NOTIFY_PLAYERCHAT`: the speaker's own chat echo (variable).
pub const ZC_NOTIFY_PLAYERCHAT: u16 = 0x008E;
/// `ZC_NPCACK_MAPMOVE`: map change on the same map server (22 bytes).
pub const ZC_NPCACK_MAPMOVE: u16 = 0x0091;
/// `ZC_CHANGE_DIRECTION`: a unit turned (9 bytes).
pub const ZC_CHANGE_DIRECTION: u16 = 0x009C;
/// `ZC_EMOTION`: an emote (7 bytes).
pub const ZC_EMOTION: u16 = 0x00C0;
/// `ZC_AID`: the player's own account id, first packet of a map connection (6 bytes).
pub const ZC_AID: u16 = 0x0283;
/// `ZC_ACCEPT_ENTER` at 20211103, 20180620 and 20120410 (13 bytes).
pub const ZC_ACCEPT_ENTER: u16 = 0x02EB;
/// `ZC_ACCEPT_ENTER` at 20151104 (14 bytes).
pub const ZC_ACCEPT_ENTER2: u16 = 0x0A18;

/// Largest chat text rAthena puts in `ZC_NOTIFY_CHAT`, without the NUL (`CHAT_SIZE_MAX` - 1).
pub const CHAT_TEXT_MAX_BYTES: usize = 255;
/// Sub-cell offset of the cell centre, as rAthena's walk packets use.
pub const SUB_CELL_CENTRE: u8 = 8;

/// A map cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cell {
    /// x, 0..=1023.
    pub x: u16,
    /// y, 0..=1023.
    pub y: u16,
}

/// Packs `PosDir` (x:10, y:10, dir:4, most significant bit first).
pub fn pack_pos_dir(cell: Cell, dir: u8) -> [u8; 3] {
    let (x, y) = (cell.x & 0x3FF, cell.y & 0x3FF);
    [(x >> 2) as u8, ((x << 6) as u8) | ((y >> 4) as u8 & 0x3F), ((y << 4) as u8) | (dir & 0x0F)]
}

/// Unpacks `PosDir` into the cell and the direction nibble.
pub fn unpack_pos_dir(b: [u8; 3]) -> (Cell, u8) {
    let x = (u16::from(b[0]) << 2) | (u16::from(b[1]) >> 6);
    let y = ((u16::from(b[1]) & 0x3F) << 4) | (u16::from(b[2]) >> 4);
    (Cell { x, y }, b[2] & 0x0F)
}

/// Packs `MoveData` (x0, y0, x1, y1 of 10 bits, then sub-cell sx0, sy0 of 4 bits).
pub fn pack_move_data(from: Cell, to: Cell, sx0: u8, sy0: u8) -> [u8; 6] {
    let (x0, y0) = (from.x & 0x3FF, from.y & 0x3FF);
    let (x1, y1) = (to.x & 0x3FF, to.y & 0x3FF);
    [
        (x0 >> 2) as u8,
        ((x0 << 6) as u8) | ((y0 >> 4) as u8 & 0x3F),
        ((y0 << 4) as u8) | ((x1 >> 6) as u8 & 0x0F),
        ((x1 << 2) as u8) | ((y1 >> 8) as u8 & 0x03),
        y1 as u8,
        (sx0 << 4) | (sy0 & 0x0F),
    ]
}

/// Unpacks `MoveData` into source and destination cells.
pub fn unpack_move_data(b: [u8; 6]) -> (Cell, Cell) {
    let x0 = (u16::from(b[0]) << 2) | (u16::from(b[1]) >> 6);
    let y0 = ((u16::from(b[1]) & 0x3F) << 4) | (u16::from(b[2]) >> 4);
    let x1 = ((u16::from(b[2]) & 0x0F) << 6) | (u16::from(b[3]) >> 2);
    let y1 = ((u16::from(b[3]) & 0x03) << 8) | u16::from(b[4]);
    (Cell { x: x0, y: y0 }, Cell { x: x1, y: y1 })
}

fn put_u16(out: &mut [u8], at: usize, v: u16) {
    if let Some(s) = out.get_mut(at..at + 2) {
        s.copy_from_slice(&v.to_le_bytes());
    }
}

fn put_u32(out: &mut [u8], at: usize, v: u32) {
    if let Some(s) = out.get_mut(at..at + 4) {
        s.copy_from_slice(&v.to_le_bytes());
    }
}

pub(crate) fn get_u16(b: &[u8], at: usize) -> Option<u16> {
    let &[a, c] = b.get(at..at + 2)? else { return None };
    Some(u16::from_le_bytes([a, c]))
}

pub(crate) fn get_u32(b: &[u8], at: usize) -> Option<u32> {
    let &[a, c, d, e] = b.get(at..at + 4)? else { return None };
    Some(u32::from_le_bytes([a, c, d, e]))
}

/// `0x0086 ZC_NOTIFY_MOVE`: unit `aid` walks `from` -> `to`, starting at server `tick`.
pub fn notify_move(aid: u32, from: Cell, to: Cell, tick: u32) -> [u8; 16] {
    let mut p = [0u8; 16];
    put_u16(&mut p, 0, ZC_NOTIFY_MOVE);
    put_u32(&mut p, 2, aid);
    if let Some(s) = p.get_mut(6..12) {
        s.copy_from_slice(&pack_move_data(from, to, SUB_CELL_CENTRE, SUB_CELL_CENTRE));
    }
    put_u32(&mut p, 12, tick);
    p
}

/// `0x0087 ZC_NOTIFY_PLAYERMOVE`: the walker's own acknowledgement.
pub fn player_move(from: Cell, to: Cell, tick: u32) -> [u8; 12] {
    let mut p = [0u8; 12];
    put_u16(&mut p, 0, ZC_NOTIFY_PLAYERMOVE);
    put_u32(&mut p, 2, tick);
    if let Some(s) = p.get_mut(6..12) {
        s.copy_from_slice(&pack_move_data(from, to, SUB_CELL_CENTRE, SUB_CELL_CENTRE));
    }
    p
}

/// `0x009C ZC_CHANGE_DIRECTION`: unit `aid` faces `dir` with head `head_dir`.
pub fn change_direction(aid: u32, head_dir: u8, dir: u8) -> [u8; 9] {
    let mut p = [0u8; 9];
    put_u16(&mut p, 0, ZC_CHANGE_DIRECTION);
    put_u32(&mut p, 2, aid);
    put_u16(&mut p, 6, u16::from(head_dir));
    p[8] = dir;
    p
}

/// `0x00C0 ZC_EMOTION`: unit `aid` shows emote `kind`.
pub fn emotion(aid: u32, kind: u8) -> [u8; 7] {
    let mut p = [0u8; 7];
    put_u16(&mut p, 0, ZC_EMOTION);
    put_u32(&mut p, 2, aid);
    p[6] = kind;
    p
}

/// The chat text as rAthena sends it: cut at the first NUL and at [`CHAT_TEXT_MAX_BYTES`].
pub fn chat_text_as_sent(text: &[u8]) -> &[u8] {
    let text = text.split(|&b| b == 0).next().unwrap_or_default();
    text.get(..CHAT_TEXT_MAX_BYTES).unwrap_or(text)
}

/// `0x008D ZC_NOTIFY_CHAT`: unit `aid` says `text` (`"Name : message"`); NUL appended.
pub fn notify_chat(aid: u32, text: &[u8], out: &mut Vec<u8>) {
    let text = chat_text_as_sent(text);
    let len = 8 + text.len() + 1;
    out.extend_from_slice(&ZC_NOTIFY_CHAT.to_le_bytes());
    out.extend_from_slice(&(len as u16).to_le_bytes());
    out.extend_from_slice(&aid.to_le_bytes());
    out.extend_from_slice(text);
    out.push(0);
}

/// `0x008E ZC_NOTIFY_PLAYERCHAT`: the speaker's own echo of `text`; NUL appended.
pub fn player_chat(text: &[u8], out: &mut Vec<u8>) {
    let text = chat_text_as_sent(text);
    let len = 4 + text.len() + 1;
    out.extend_from_slice(&ZC_NOTIFY_PLAYERCHAT.to_le_bytes());
    out.extend_from_slice(&(len as u16).to_le_bytes());
    out.extend_from_slice(text);
    out.push(0);
}

/// Where the unit-appearance packets of one version keep their fields (layouts.md §3.1), as the
/// generator measured them with `offsetof` (`core/data/gen/index.csv`).
///
/// The idle and spawn packets equal the walking one without `moveStartTime` (4 bytes at
/// `tick_at`), with `PosDir[3]` at `pos_at` where walking has `MoveData[6]` at `pos_at + 4`,
/// and (idle only) a `state` byte after `xSize`, `ySize`: [`UnitLayout::of`] checks this holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnitLayout {
    /// The unit-walking id (`0x09FD` or `0x0914`).
    pub walk_id: u16,
    /// Its length.
    pub walk_len: usize,
    /// The idle (standing) id.
    pub idle_id: u16,
    /// Its length.
    pub idle_len: usize,
    /// The spawn id.
    pub spawn_id: u16,
    /// Its length.
    pub spawn_len: usize,
    /// Offset of `moveStartTime` in the walking packet.
    pub tick_at: usize,
    /// Offset of `PosDir` in the idle and spawn packets.
    pub pos_at: usize,
}

/// Where one appearance packet (walking, idle or spawn) keeps the unit's id and, where it has
/// one, `objecttype`: enough to learn which units the game shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppearanceForm {
    /// The packet id.
    pub id: u16,
    /// The size of the struct rAthena fills (the packet's length, or its usual length where
    /// the packet has a `PacketLength`).
    pub len: usize,
    /// Offset of the unit id (`AID` or `GID`).
    pub aid_at: usize,
    /// Offset of `objecttype` (0 for a player); `None` before 20071106, when these packets
    /// had none (a monster's or NPC's id never equals a peer's account id in rAthena).
    pub type_at: Option<usize>,
    /// Offset of `moveStartTime` (the walking packet only).
    pub tick_at: Option<usize>,
}

/// The appearance packets of one version, as the generator measured them: known at every
/// version, also where [`UnitLayout::of`] says walking cannot be drawn exactly, so that the
/// receive path still learns the units in view and draws peers' chat, emotes and turns there.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AppearanceIds {
    forms: [Option<AppearanceForm>; 3],
}

impl AppearanceIds {
    /// The appearance packets of `version`.
    pub fn of(version: PacketVersion) -> AppearanceIds {
        Self::from_generated(&version.generated_layout())
    }

    pub(crate) fn from_generated(g: &GeneratedLayout) -> AppearanceIds {
        type Field = Option<u16>;
        let form = |(id, len): (Field, Field), ty: Field, aid: Field, gid: Field, tick: Field| {
            Some(AppearanceForm {
                id: id?,
                len: usize::from(len?),
                aid_at: usize::from(aid.or(gid)?),
                type_at: ty.map(usize::from),
                tick_at: tick.map(usize::from),
            })
        };
        AppearanceIds {
            forms: [
                form(
                    (g.walk_id, g.walk_size),
                    g.walk_objecttype,
                    g.walk_aid,
                    g.walk_gid,
                    g.walk_tick,
                ),
                form((g.idle_id, g.idle_size), g.idle_objecttype, g.idle_aid, g.idle_gid, None),
                form(
                    (g.spawn_id, g.spawn_size),
                    g.spawn_objecttype,
                    g.spawn_aid,
                    g.spawn_gid,
                    None,
                ),
            ],
        }
    }

    /// The idle (standing) packet's form.
    pub fn idle(&self) -> Option<AppearanceForm> {
        self.forms[1]
    }

    /// The form of packet `id`, if it is one of this version's appearance packets.
    pub fn form(&self, id: u16) -> Option<AppearanceForm> {
        self.forms.iter().flatten().find(|f| f.id == id).copied()
    }

    /// The account id of the player an appearance packet `p` shows (`None` for another kind
    /// of unit, or a packet too short).
    pub fn player(&self, form: AppearanceForm, p: &[u8]) -> Option<u32> {
        if let Some(at) = form.type_at
            && p.get(at) != Some(&0)
        {
            return None;
        }
        get_u32(p, form.aid_at)
    }
}

/// Offset of the unit id (AID) in every appearance packet.
pub const UNIT_AID_AT: usize = 5;
/// Offset of `objecttype` (0 for a player) in every appearance packet.
pub const UNIT_TYPE_AT: usize = 4;

/// Why a version's unit-walking packet cannot be drawn exactly: the generated offsets do not
/// have the shape the template derivation relies on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WalkNotDrawable {
    /// The generator measured no walking, idle or spawn struct at this version.
    #[error("no unit-walking, idle or spawn layout was generated for this version")]
    NoLayout,
    /// `objecttype` is not at offset 4 or the unit id not at offset 5 (no `PacketLength`).
    #[error("the unit id is not at offset 5 (objecttype at {type_at:?}, id at {aid_at:?})")]
    UnitIdElsewhere {
        /// Where `objecttype` is, if anywhere.
        type_at: Option<u16>,
        /// Where the unit id is, if anywhere.
        aid_at: Option<u16>,
    },
    /// Idle and spawn are not the walking packet without `moveStartTime` and with `PosDir`.
    #[error("the idle and spawn packets are not the walking packet's shape minus its tick")]
    ShapesDiffer,
}

impl UnitLayout {
    /// The layout of `version`, or why walking cannot be drawn exactly at it.
    pub fn of(version: PacketVersion) -> Result<UnitLayout, WalkNotDrawable> {
        Self::from_generated(&version.generated_layout())
    }

    pub(crate) fn from_generated(g: &GeneratedLayout) -> Result<UnitLayout, WalkNotDrawable> {
        let need = |v: Option<u16>| v.map(usize::from).ok_or(WalkNotDrawable::NoLayout);
        let (walk_id, walk_len) = (need(g.walk_id)?, need(g.walk_size)?);
        let (idle_id, idle_len) = (need(g.idle_id)?, need(g.idle_size)?);
        let (spawn_id, spawn_len) = (need(g.spawn_id)?, need(g.spawn_size)?);
        for (type_at, aid, gid) in [
            (g.walk_objecttype, g.walk_aid, g.walk_gid),
            (g.idle_objecttype, g.idle_aid, g.idle_gid),
            (g.spawn_objecttype, g.spawn_aid, g.spawn_gid),
        ] {
            let aid_at = aid.or(gid);
            if type_at.map(usize::from) != Some(UNIT_TYPE_AT)
                || aid_at.map(usize::from) != Some(UNIT_AID_AT)
            {
                return Err(WalkNotDrawable::UnitIdElsewhere { type_at, aid_at });
            }
        }
        let (tick_at, move_at) = (need(g.walk_tick)?, need(g.walk_move)?);
        let pos_at = need(g.idle_posdir)?;
        let shape_holds = move_at == pos_at + 4
            && need(g.spawn_posdir)? == pos_at
            && tick_at < pos_at
            && need(g.walk_xsize)? == move_at + 6
            && need(g.idle_xsize)? == pos_at + 3
            && need(g.spawn_xsize)? == pos_at + 3
            && need(g.idle_state)? == pos_at + 5
            && walk_len == idle_len + 6
            && walk_len == spawn_len + 7;
        if !shape_holds {
            return Err(WalkNotDrawable::ShapesDiffer);
        }
        let id = |n: usize| u16::try_from(n).map_err(|_| WalkNotDrawable::NoLayout);
        Ok(UnitLayout {
            walk_id: id(walk_id)?,
            walk_len,
            idle_id: id(idle_id)?,
            idle_len,
            spawn_id: id(spawn_id)?,
            spawn_len,
            tick_at,
            pos_at,
        })
    }

    /// Offset of `MoveData` in the walking packet.
    pub fn move_at(&self) -> usize {
        self.pos_at + 4
    }

    /// Turns an appearance packet the server sent (walking, idle or spawn, whole, of this
    /// layout's exact length) into a walking template and the unit's current cell (for a
    /// walking packet, its destination). `None` for anything else.
    pub fn template_of(&self, packet: &[u8]) -> Option<(Vec<u8>, Cell)> {
        let id = get_u16(packet, 0)?;
        if id == self.walk_id && packet.len() == self.walk_len {
            let md: [u8; 6] = packet.get(self.move_at()..self.move_at() + 6)?.try_into().ok()?;
            return Some((packet.to_vec(), unpack_move_data(md).1));
        }
        let state_bytes = if id == self.idle_id && packet.len() == self.idle_len {
            1
        } else if id == self.spawn_id && packet.len() == self.spawn_len {
            0
        } else {
            return None;
        };
        let pos: [u8; 3] = packet.get(self.pos_at..self.pos_at + 3)?.try_into().ok()?;
        let (cell, _) = unpack_pos_dir(pos);
        let mut t = Vec::with_capacity(self.walk_len);
        t.extend_from_slice(packet.get(..self.tick_at)?);
        t.extend_from_slice(&[0; 4]);
        t.extend_from_slice(packet.get(self.tick_at..self.pos_at)?);
        t.extend_from_slice(&pack_move_data(cell, cell, SUB_CELL_CENTRE, SUB_CELL_CENTRE));
        // xSize, ySize; then skip idle's `state`.
        t.extend_from_slice(packet.get(self.pos_at + 3..self.pos_at + 5)?);
        t.extend_from_slice(packet.get(self.pos_at + 5 + state_bytes..)?);
        if t.len() != self.walk_len {
            return None;
        }
        put_u16(&mut t, 0, self.walk_id);
        put_u16(&mut t, 2, u16::try_from(self.walk_len).ok()?);
        Some((t, cell))
    }

    /// The unit-walking packet from a template: `from` -> `to` starting at `tick`.
    pub fn walking(&self, template: &[u8], from: Cell, to: Cell, tick: u32) -> Vec<u8> {
        let mut p = template.to_vec();
        put_u32(&mut p, self.tick_at, tick);
        if let Some(s) = p.get_mut(self.move_at()..self.move_at() + 6) {
            s.copy_from_slice(&pack_move_data(from, to, SUB_CELL_CENTRE, SUB_CELL_CENTRE));
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{GeneratedLayout, PacketVersion};

    /// Every coordinate rAthena can send (10 bits) survives packing, for `PosDir` and for both
    /// ends of `MoveData`: corners, powers of two around the byte boundaries, and the middle.
    #[test]
    fn positions_and_moves_survive_packing_over_the_whole_map_range() {
        let coords = [0u16, 1, 3, 4, 15, 16, 63, 64, 255, 256, 300, 511, 512, 767, 1000, 1023];
        for &x in &coords {
            for &y in &coords {
                let cell = Cell { x, y };
                for dir in [0u8, 7, 15] {
                    assert_eq!(unpack_pos_dir(pack_pos_dir(cell, dir)), (cell, dir), "{x},{y}");
                }
                let other = Cell { x: 1023 - y, y: 1023 - x };
                assert_eq!(unpack_move_data(pack_move_data(cell, other, 8, 8)), (cell, other));
                assert_eq!(unpack_move_data(pack_move_data(other, cell, 0, 15)), (other, cell));
            }
        }
    }

    /// Walking is drawn only where the generated layout has exactly the shape drawing assumes:
    /// change any one offset or size and the version is refused, with the reason.
    #[test]
    fn every_shape_condition_of_a_layout_is_needed() {
        let good = PacketVersion::V20211103.generated_layout();
        assert!(UnitLayout::from_generated(&good).is_ok());
        let off = |v: Option<u16>| v.map(|n| n + 1);
        type Shift = fn(&mut GeneratedLayout);
        let shifts: [(&str, Shift); 11] = [
            ("walk MoveData", |g| g.walk_move = g.walk_move.map(|n| n + 1)),
            ("spawn PosDir", |g| g.spawn_posdir = g.spawn_posdir.map(|n| n + 1)),
            ("walk tick at PosDir", |g| g.walk_tick = g.idle_posdir),
            ("walk xSize", |g| g.walk_xsize = g.walk_xsize.map(|n| n + 1)),
            ("idle xSize", |g| g.idle_xsize = g.idle_xsize.map(|n| n + 1)),
            ("spawn xSize", |g| g.spawn_xsize = g.spawn_xsize.map(|n| n + 1)),
            ("idle state", |g| g.idle_state = g.idle_state.map(|n| n + 1)),
            ("idle size", |g| g.idle_size = g.idle_size.map(|n| n + 1)),
            ("spawn size", |g| g.spawn_size = g.spawn_size.map(|n| n + 1)),
            ("walk size", |g| g.walk_size = g.walk_size.map(|n| n + 1)),
            ("idle PosDir", |g| g.idle_posdir = g.idle_posdir.map(|n| n + 1)),
        ];
        for (what, shift) in shifts {
            let mut g = good;
            shift(&mut g);
            assert_eq!(
                UnitLayout::from_generated(&g),
                Err(WalkNotDrawable::ShapesDiffer),
                "{what}"
            );
        }
        for (what, g) in [
            (
                "walk objecttype",
                GeneratedLayout { walk_objecttype: off(good.walk_objecttype), ..good },
            ),
            ("idle unit id", GeneratedLayout { idle_aid: off(good.idle_aid), ..good }),
        ] {
            assert!(
                matches!(
                    UnitLayout::from_generated(&g),
                    Err(WalkNotDrawable::UnitIdElsewhere { .. })
                ),
                "{what}"
            );
        }
    }

    /// A packet is a template only if both its id and its length are the form's: an unrelated
    /// packet of a walking or idle packet's length is not one, nor a form of another length.
    #[test]
    fn a_template_needs_the_forms_id_and_length_both() {
        let l = UnitLayout::of(PacketVersion::V20211103).expect("walking is drawn at 20211103");
        for (id, len) in [
            (0x7FFF, l.walk_len),
            (0x7FFF, l.idle_len),
            (0x7FFF, l.spawn_len),
            (l.walk_id, l.walk_len - 1),
            (l.walk_id, l.idle_len),
        ] {
            let mut p = vec![0u8; len];
            p[0..2].copy_from_slice(&id.to_le_bytes());
            assert_eq!(l.template_of(&p), None, "id {id:#06x}, {len} bytes");
        }
    }
}
