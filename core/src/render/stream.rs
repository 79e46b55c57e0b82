//! [`ReceiveStream`]: the server-to-client stream as the game client will read it, with peer
//! events rendered into it at packet boundaries, the server's duplicates of lines already shown
//! from a peer dropped, and local echoes for categories the policy keeps away from the server.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddrV4;

use super::framer::{ZcDesyncReason, ZcFrame, ZcFramer};
use super::packets::{
    self, AppearanceIds, Cell, UnitLayout, WalkNotDrawable, ZC_ACCEPT_ENTER, ZC_ACCEPT_ENTER2,
    ZC_AID, ZC_EMOTION, ZC_NOTIFY_CHAT, ZC_NOTIFY_MOVE, ZC_NOTIFY_PLAYERCHAT, ZC_NOTIFY_PLAYERMOVE,
    ZC_NOTIFY_TIME, ZC_NOTIFY_VANISH, ZC_NPCACK_MAPMOVE, ZC_STOPMOVE, get_u16, get_u32,
};
use crate::gate::{
    MapMove, ServerMove, ZC_NPCACK_SERVERMOVE, ZC_NPCACK_SERVERMOVE_OLD, parse_map_move,
    parse_server_move, rewrite_server_address,
};
use crate::packet::{PacketVersion, PeerEvent};
use crate::time::Instant;

/// Most bytes waiting for the game before rendered packets are refused (server bytes are never
/// refused: the game must see everything the server sent).
pub const OUTPUT_BYTES_MAX: usize = 256 * 1024;
/// Most units whose appearance is remembered.
pub const UNITS_MAX: usize = 2048;
/// Most lines (chat or emote) remembered for duplicate suppression.
pub const SHOWN_MAX: usize = 512;
/// Most map changes kept until [`ReceiveStream::take_map_changes`] (oldest dropped first).
pub const MAP_CHANGES_MAX: usize = 16;

/// A change of map the server announced to the game.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MapChange {
    /// `ZC_NPCACK_MAPMOVE`: another map on the same map server.
    SameServer(MapMove),
    /// `ZC_NPCACK_SERVERMOVE`: a map on another map server; the game reconnects there (to the
    /// address as the redirect of [`ReceiveStream::push_server_redirecting`] left it).
    OtherServer(ServerMove),
}

impl MapChange {
    /// The new map's name, e.g. `izlude.gat`.
    pub fn map(&self) -> &str {
        match self {
            MapChange::SameServer(m) => &m.map,
            MapChange::OtherServer(m) => &m.map,
        }
    }
}

/// How a peer's walk is drawn.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WalkForm {
    /// The version's unit-walking packet re-encoded from the last appearance the server sent
    /// (what current rAthena sends); `0x0086` when no appearance is cached.
    #[default]
    UnitWalking,
    /// Always `0x0086 ZC_NOTIFY_MOVE` (id, path, tick), as rAthena did until 2024-06.
    Minimal,
}

/// Settings of a [`ReceiveStream`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RenderConfig {
    /// The client's PACKETVER.
    pub version: PacketVersion,
    /// How walks are drawn.
    pub walk_form: WalkForm,
    /// How long a line shown from one source waits for its copy from the other.
    pub duplicate_window_ms: u64,
    /// Render only units the server has shown (layouts.md §6); otherwise the game may be handed
    /// ids it does not know.
    pub require_known_unit: bool,
}

impl RenderConfig {
    /// Defaults for `version`: unit-walking form, a 10 s duplicate window, known units only.
    pub fn new(version: PacketVersion) -> RenderConfig {
        RenderConfig {
            version,
            walk_form: WalkForm::UnitWalking,
            duplicate_window_ms: 10_000,
            require_known_unit: true,
        }
    }
}

/// Why a peer event or local echo was not rendered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RenderRejected {
    /// The server stream desynced; nothing is injected any more.
    #[error("server stream desynced ({0}); injection stopped")]
    Desynced(ZcDesyncReason),
    /// The server has not shown this unit to the game (or it has left the view).
    #[error("unit {aid} is not known to the game client")]
    UnknownUnit {
        /// The sender's account id.
        aid: u32,
    },
    /// A peer event claims the player's own account id.
    #[error("peer event from the player's own account id {aid}")]
    OwnAccount {
        /// The account id.
        aid: u32,
    },
    /// The same line already reached the game from the server, or (a walk) the server has
    /// already moved the unit to that cell: drawing it again would only walk it in place.
    #[error("already shown from the server")]
    Duplicate,
    /// A local emote echo needs the player's account id, which the server has not sent yet.
    #[error("own account id not known yet (no ZC_AID seen)")]
    OwnAccountUnknown,
    /// This version's walking packet cannot be drawn exactly (see
    /// [`ReceiveStream::walk_not_drawable`]): the server's copy of the walk shows it.
    #[error("peers' walking is not drawn at this version: {0}")]
    WalkNotDrawable(WalkNotDrawable),
    /// Before 20070521 the map connection starts with 4 raw bytes (the account id) that have
    /// not all arrived: nothing may be put before them.
    #[error("the map connection's raw account id has not arrived yet")]
    BeforeRawAccountId,
    /// The game has not read its bytes; rendered packets are refused until it does.
    #[error("{len} bytes wait for the game, over the limit of {max}")]
    OutputFull {
        /// Bytes waiting.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// Counters of a [`ReceiveStream`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReceiveStats {
    /// Whole packets from the server handed to the game.
    pub server_packets: u64,
    /// Bytes from the server handed to the game (after a desync too).
    pub server_bytes: u64,
    /// Server packets dropped as duplicates of lines shown from a peer.
    pub server_duplicates_dropped: u64,
    /// Peer events rendered.
    pub rendered: u64,
    /// Peer events not rendered (any [`RenderRejected`]).
    pub rejected: u64,
    /// Local echoes synthesised.
    pub local_echoes: u64,
}

#[derive(Clone, Debug)]
struct Unit {
    /// Walking packet of the unit, from the last appearance the server sent.
    template: Option<Vec<u8>>,
    cell: Option<Cell>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Peer,
    Server,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Line {
    Chat(Vec<u8>),
    Emote(u8),
}

#[derive(Clone, Debug)]
struct Shown {
    at: Instant,
    aid: u32,
    line: Line,
    source: Source,
}

/// What the game client has been shown: used to draw peers and to drop duplicates.
#[derive(Clone, Debug)]
struct View {
    /// The version's appearance layout, or why walking cannot be drawn at it.
    layout: Result<UnitLayout, WalkNotDrawable>,
    /// Where the version's appearance packets keep the unit id (at every version).
    appearance: AppearanceIds,
    config: RenderConfig,
    own_aid: Option<u32>,
    own_cell: Option<Cell>,
    /// Last server tick seen and when.
    tick: Option<(u32, Instant)>,
    units: BTreeMap<u32, Unit>,
    shown: VecDeque<Shown>,
    /// The player's own lines the server will echo although the game already showed them
    /// (late server copies of peers-only actions), with when they were expected.
    echoes: VecDeque<(Instant, Line)>,
}

impl View {
    fn tick_at(&self, now: Instant) -> u32 {
        match self.tick {
            // The server's u32 tick wraps; so does the estimate.
            Some((tick, at)) => tick.wrapping_add(now.millis_since(at) as u32),
            None => now.as_millis() as u32,
        }
    }

    fn expire(&mut self, now: Instant) {
        let window = self.config.duplicate_window_ms;
        while self.shown.front().is_some_and(|s| now.millis_since(s.at) > window) {
            self.shown.pop_front();
        }
    }

    /// Records that `line` of `aid` reached the game from `source`, unless the other source
    /// already showed it: then that record is consumed and `false` says "drop this copy".
    fn show_once(&mut self, now: Instant, aid: u32, line: Line, source: Source) -> bool {
        self.expire(now);
        if let Some(i) =
            self.shown.iter().position(|s| s.aid == aid && s.source != source && s.line == line)
        {
            self.shown.remove(i);
            return false;
        }
        if self.shown.len() >= SHOWN_MAX {
            self.shown.pop_front();
        }
        self.shown.push_back(Shown { at: now, aid, line, source });
        true
    }

    /// Whether the game should see the server's echo of one of the player's own lines: not
    /// when it was expected ([`ReceiveStream::expect_server_echo`]), which consumes that record.
    fn own_echo_once(&mut self, now: Instant, line: Line) -> bool {
        let window = self.config.duplicate_window_ms;
        while self.echoes.front().is_some_and(|(at, _)| now.millis_since(*at) > window) {
            self.echoes.pop_front();
        }
        match self.echoes.iter().position(|(_, l)| *l == line) {
            Some(i) => {
                self.echoes.remove(i);
                false
            }
            None => true,
        }
    }

    fn unit_mut(&mut self, aid: u32) -> Option<&mut Unit> {
        self.units.get_mut(&aid)
    }

    fn remember(&mut self, aid: u32, unit: Unit) {
        if self.units.len() >= UNITS_MAX && !self.units.contains_key(&aid) {
            // Forget an arbitrary (lowest id) unit: it is only drawn less richly afterwards.
            self.units.pop_first();
        }
        self.units.insert(aid, unit);
    }

    fn set_cell(&mut self, aid: u32, cell: Cell) {
        if Some(aid) == self.own_aid {
            self.own_cell = Some(cell);
        } else if let Some(u) = self.unit_mut(aid) {
            u.cell = Some(cell);
        }
    }

    /// Learns from one whole server packet; returns whether the game should see it.
    fn observe(&mut self, now: Instant, id: u16, p: &[u8]) -> bool {
        let layout = self.layout.ok();
        match id {
            ZC_AID => self.own_aid = get_u32(p, 2).or(self.own_aid),
            ZC_NOTIFY_TIME => {
                if let Some(t) = get_u32(p, 2) {
                    self.tick = Some((t, now));
                }
            }
            ZC_ACCEPT_ENTER | ZC_ACCEPT_ENTER2 => {
                if let Some(t) = get_u32(p, 2) {
                    self.tick = Some((t, now));
                }
                if let Some(&[a, b, c]) = p.get(6..9) {
                    self.own_cell = Some(packets::unpack_pos_dir([a, b, c]).0);
                }
            }
            ZC_NOTIFY_PLAYERMOVE => {
                if let Some(t) = get_u32(p, 2) {
                    self.tick = Some((t, now));
                }
                if let Some(md) = p.get(6..12).and_then(|s| <[u8; 6]>::try_from(s).ok()) {
                    self.own_cell = Some(packets::unpack_move_data(md).1);
                }
            }
            ZC_NOTIFY_MOVE => {
                if let Some(t) = get_u32(p, 12) {
                    self.tick = Some((t, now));
                }
                let md = p.get(6..12).and_then(|s| <[u8; 6]>::try_from(s).ok());
                if let (Some(aid), Some(md)) = (get_u32(p, 2), md) {
                    self.set_cell(aid, packets::unpack_move_data(md).1);
                }
            }
            ZC_STOPMOVE => {
                if let (Some(aid), Some(x), Some(y)) = (get_u32(p, 2), get_u16(p, 6), get_u16(p, 8))
                {
                    self.set_cell(aid, Cell { x, y });
                }
            }
            ZC_NOTIFY_VANISH => {
                if let Some(aid) = get_u32(p, 2) {
                    self.units.remove(&aid);
                }
            }
            ZC_NPCACK_MAPMOVE => {
                self.units.clear();
                self.shown.clear();
                self.echoes.clear();
                if let (Some(x), Some(y)) = (get_u16(p, 18), get_u16(p, 20)) {
                    self.own_cell = Some(Cell { x, y });
                }
            }
            ZC_NOTIFY_CHAT => {
                if let Some(aid) = get_u32(p, 4) {
                    let text = packets::chat_text_as_sent(p.get(8..).unwrap_or_default());
                    return self.show_once(now, aid, Line::Chat(text.to_vec()), Source::Server);
                }
            }
            ZC_NOTIFY_PLAYERCHAT => {
                let text = packets::chat_text_as_sent(p.get(4..).unwrap_or_default());
                return self.own_echo_once(now, Line::Chat(text.to_vec()));
            }
            ZC_EMOTION => {
                if let (Some(aid), Some(&kind)) = (get_u32(p, 2), p.get(6)) {
                    if Some(aid) == self.own_aid {
                        return self.own_echo_once(now, Line::Emote(kind));
                    }
                    return self.show_once(now, aid, Line::Emote(kind), Source::Server);
                }
            }
            _ if let Some(form) = self.appearance.form(id) => {
                if let Some(t) = form.tick_at.and_then(|at| get_u32(p, at)) {
                    self.tick = Some((t, now));
                }
                if let Some(aid) = self.appearance.player(form, p) {
                    let unit = match layout.and_then(|l| l.template_of(p)) {
                        Some((template, cell)) => {
                            Unit { template: Some(template), cell: Some(cell) }
                        }
                        // Walking not drawable at this version, or a length the layout does
                        // not know: the unit is shown (its chat, emotes and turns are drawn),
                        // its walks are not drawn in full.
                        None => Unit { template: None, cell: None },
                    };
                    self.remember(aid, unit);
                }
            }
            _ => {}
        }
        true
    }
}

/// The server-to-client stream of one map connection, with peers drawn into it.
///
/// Feed what the server sends with [`ReceiveStream::push_server`], what peers do with
/// [`ReceiveStream::push_peer_event`] and, when the policy kept one of the player's own actions
/// away from the server, [`ReceiveStream::push_local_echo`]; hand [`ReceiveStream::output`] to
/// the game and [`ReceiveStream::consume`] what it took. The output is always the server's
/// packets, whole and in order (minus duplicates of lines already shown from a peer), with
/// rendered packets between them; after a desync it is the server's bytes, untouched.
#[derive(Clone, Debug)]
pub struct ReceiveStream {
    /// The raw account id that starts a map connection before 20070521, while incomplete
    /// (`None` once taken, or at versions without it).
    raw_aid: Option<Vec<u8>>,
    framer: ZcFramer,
    view: View,
    out: Output,
    stats: ReceiveStats,
    changes: VecDeque<MapChange>,
}

/// Bytes for the game: `buf[start..]` are not taken yet.
#[derive(Clone, Debug, Default)]
struct Output {
    buf: Vec<u8>,
    start: usize,
}

impl Output {
    fn len(&self) -> usize {
        self.buf.len() - self.start
    }

    fn append(&mut self, bytes: &[u8]) {
        // All read is freed by `consume`; a reader that keeps a tail unread moves it to the
        // front once more than the bound was read before it.
        if self.start > OUTPUT_BYTES_MAX {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    fn ready(&self) -> &[u8] {
        self.buf.get(self.start..).unwrap_or_default()
    }

    fn consume(&mut self, n: usize) {
        self.start = self.start.saturating_add(n).min(self.buf.len());
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
    }
}

impl ReceiveStream {
    /// A stream with [`RenderConfig::new`] defaults.
    pub fn new(version: PacketVersion) -> ReceiveStream {
        ReceiveStream::with_config(RenderConfig::new(version))
    }

    /// A stream with explicit settings.
    pub fn with_config(config: RenderConfig) -> ReceiveStream {
        ReceiveStream {
            raw_aid: config
                .version
                .map_connection_starts_with_raw_account_id()
                .then(|| Vec::with_capacity(4)),
            framer: ZcFramer::new(config.version),
            view: View {
                layout: UnitLayout::of(config.version),
                appearance: AppearanceIds::of(config.version),
                config,
                own_aid: None,
                own_cell: None,
                tick: None,
                units: BTreeMap::new(),
                shown: VecDeque::new(),
                echoes: VecDeque::new(),
            },
            out: Output::default(),
            stats: ReceiveStats::default(),
            changes: VecDeque::new(),
        }
    }

    /// Why peers' walking is not drawn at this version, if it is not: a driver logs it once
    /// when the stream is made.
    pub fn walk_not_drawable(&self) -> Option<WalkNotDrawable> {
        self.view.layout.err()
    }

    /// Sets the player's own account id (when the integrator knows it before `ZC_AID`).
    pub fn set_own_account_id(&mut self, aid: u32) {
        self.view.own_aid = Some(aid);
    }

    /// The player's own account id, once known.
    pub fn own_account_id(&self) -> Option<u32> {
        self.view.own_aid
    }

    /// The estimated server tick at `now`: the last tick the server sent plus the time since.
    pub fn server_tick_at(&self, now: Instant) -> u32 {
        self.view.tick_at(now)
    }

    /// Whether the server has shown unit `aid` and it has not left the view.
    pub fn knows_unit(&self, aid: u32) -> bool {
        self.view.units.contains_key(&aid)
    }

    /// Why framing ended, if the stream desynced.
    pub fn desync_reason(&self) -> Option<ZcDesyncReason> {
        self.framer.desync_reason()
    }

    /// Counters.
    pub fn stats(&self) -> ReceiveStats {
        self.stats
    }

    fn append(&mut self, bytes: &[u8]) {
        self.out.append(bytes);
    }

    /// Takes bytes the map server sent to the game.
    pub fn push_server(&mut self, now: Instant, bytes: &[u8]) {
        self.push_server_redirecting(now, bytes, |_| None);
    }

    /// Takes bytes the map server sent to the game; a move to another map server
    /// (`ZC_NPCACK_SERVERMOVE`) is shown to `redirect`, and when it answers an address, the
    /// game is sent there instead (a proxy's door). Map changes are kept for
    /// [`ReceiveStream::take_map_changes`].
    pub fn push_server_redirecting(
        &mut self,
        now: Instant,
        bytes: &[u8],
        mut redirect: impl FnMut(&ServerMove) -> Option<SocketAddrV4>,
    ) {
        let bytes = self.take_raw_account_id(bytes);
        self.framer.push(bytes);
        loop {
            let ReceiveStream { framer, view, out, stats, changes, .. } = self;
            let Some(frame) = framer.next_frame() else { break };
            let mut rewritten = None;
            let keep = match frame {
                ZcFrame::Packet { id, bytes } => {
                    let keep = view.observe(now, id, bytes);
                    let change = match id {
                        ZC_NPCACK_MAPMOVE => parse_map_move(bytes).ok().map(MapChange::SameServer),
                        ZC_NPCACK_SERVERMOVE | ZC_NPCACK_SERVERMOVE_OLD => {
                            parse_server_move(bytes).ok().map(|to| {
                                if let Some(door) = redirect(&to) {
                                    let mut p = bytes.to_vec();
                                    if rewrite_server_address(&mut p, *door.ip(), door.port())
                                        .is_ok()
                                    {
                                        rewritten = Some(p);
                                    }
                                }
                                MapChange::OtherServer(to)
                            })
                        }
                        _ => None,
                    };
                    if let Some(change) = change {
                        if changes.len() >= MAP_CHANGES_MAX {
                            changes.pop_front();
                        }
                        changes.push_back(change);
                    }
                    if keep {
                        stats.server_packets += 1;
                    } else {
                        stats.server_duplicates_dropped += 1;
                    }
                    keep
                }
                ZcFrame::Desync { .. } | ZcFrame::PassThrough { .. } => true,
            };
            if keep {
                let bytes = rewritten.as_deref().unwrap_or(frame.bytes());
                stats.server_bytes += bytes.len() as u64;
                out.append(bytes);
            }
        }
    }

    /// Before 20070521 the map server's first 4 bytes are the account id with no header: they
    /// go to the game as they are and tell the player's own account id. Returns the rest.
    fn take_raw_account_id<'b>(&mut self, bytes: &'b [u8]) -> &'b [u8] {
        let Some(raw) = self.raw_aid.as_mut() else { return bytes };
        let (head, rest) = bytes.split_at(bytes.len().min(4 - raw.len()));
        raw.extend_from_slice(head);
        self.stats.server_bytes += head.len() as u64;
        self.out.append(head);
        if let Ok(aid) = <[u8; 4]>::try_from(raw.as_slice()) {
            self.view.own_aid = Some(u32::from_le_bytes(aid));
            self.raw_aid = None;
        }
        rest
    }

    /// The map changes the server announced since the last call, oldest first.
    pub fn take_map_changes(&mut self) -> impl Iterator<Item = MapChange> + '_ {
        self.changes.drain(..)
    }

    /// Ends the connection: a partial packet left in the framer is handed to the game as it is.
    pub fn finish(&mut self) {
        let pending = self.framer.pending().to_vec();
        if !pending.is_empty() {
            self.stats.server_bytes += pending.len() as u64;
            self.append(&pending);
            self.framer = ZcFramer::new(self.view.config.version);
        }
    }

    fn check_can_inject(&self) -> Result<(), RenderRejected> {
        if self.raw_aid.is_some() {
            return Err(RenderRejected::BeforeRawAccountId);
        }
        if let Some(reason) = self.framer.desync_reason() {
            return Err(RenderRejected::Desynced(reason));
        }
        if self.out.len() > OUTPUT_BYTES_MAX {
            return Err(RenderRejected::OutputFull { len: self.out.len(), max: OUTPUT_BYTES_MAX });
        }
        Ok(())
    }

    /// Draws what peer `aid` (its account id, which is its peer id) did, as the game shows
    /// another player doing it. A walk the server showed first is not drawn again (a walk the
    /// server shows after the peer's copy reaches the game twice); a chat line or emote already
    /// shown from the server is not shown again.
    pub fn push_peer_event(
        &mut self,
        now: Instant,
        aid: u32,
        event: &PeerEvent<'_>,
    ) -> Result<(), RenderRejected> {
        let result = self.render_peer_event(now, aid, event);
        match result {
            Ok(()) => self.stats.rendered += 1,
            Err(_) => self.stats.rejected += 1,
        }
        result
    }

    fn render_peer_event(
        &mut self,
        now: Instant,
        aid: u32,
        event: &PeerEvent<'_>,
    ) -> Result<(), RenderRejected> {
        self.check_can_inject()?;
        if Some(aid) == self.view.own_aid {
            return Err(RenderRejected::OwnAccount { aid });
        }
        let known = self.view.units.contains_key(&aid);
        if !known && self.view.config.require_known_unit {
            return Err(RenderRejected::UnknownUnit { aid });
        }
        let tick = self.view.tick_at(now);
        match *event {
            PeerEvent::Move { x, y } => {
                let to = Cell { x, y };
                let layout = self.view.layout.map_err(RenderRejected::WalkNotDrawable)?;
                let form = self.view.config.walk_form;
                if self.view.units.get(&aid).is_some_and(|u| u.cell == Some(to)) {
                    // The server's copy of this walk came first (or the peer walks in place).
                    return Err(RenderRejected::Duplicate);
                }
                let (from, template) = match self.view.unit_mut(aid) {
                    Some(u) => {
                        let from = u.cell.unwrap_or(to);
                        u.cell = Some(to);
                        (from, u.template.clone())
                    }
                    None => (to, None),
                };
                match (form, template) {
                    (WalkForm::UnitWalking, Some(t)) => {
                        let p = layout.walking(&t, from, to, tick);
                        self.append(&p);
                    }
                    _ => self.append(&packets::notify_move(aid, from, to, tick)),
                }
            }
            PeerEvent::Turn { head_dir, dir } => {
                self.append(&packets::change_direction(aid, head_dir, dir));
            }
            PeerEvent::Chat { text } => {
                let line = Line::Chat(packets::chat_text_as_sent(text).to_vec());
                if !self.view.show_once(now, aid, line, Source::Peer) {
                    return Err(RenderRejected::Duplicate);
                }
                let mut p = Vec::new();
                packets::notify_chat(aid, text, &mut p);
                self.append(&p);
            }
            PeerEvent::Emote { kind } => {
                if !self.view.show_once(now, aid, Line::Emote(kind), Source::Peer) {
                    return Err(RenderRejected::Duplicate);
                }
                self.append(&packets::emotion(aid, kind));
            }
        }
        Ok(())
    }

    /// Synthesises what rAthena would have echoed to the player for its own action that the
    /// policy sent to peers only: `0x0087` for a walk, `0x008E` for chat, its own `0x00C0` for
    /// an emote. A turn has no echo (rAthena sends none).
    pub fn push_local_echo(
        &mut self,
        now: Instant,
        event: &PeerEvent<'_>,
    ) -> Result<(), RenderRejected> {
        self.check_can_inject()?;
        let tick = self.view.tick_at(now);
        match *event {
            PeerEvent::Move { x, y } => {
                let to = Cell { x, y };
                let from = self.view.own_cell.unwrap_or(to);
                self.view.own_cell = Some(to);
                self.append(&packets::player_move(from, to, tick));
            }
            PeerEvent::Turn { .. } => return Ok(()),
            PeerEvent::Chat { text } => {
                let mut p = Vec::new();
                packets::player_chat(text, &mut p);
                self.append(&p);
            }
            PeerEvent::Emote { kind } => {
                let aid = self.view.own_aid.ok_or(RenderRejected::OwnAccountUnknown)?;
                self.append(&packets::emotion(aid, kind));
            }
        }
        self.stats.local_echoes += 1;
        Ok(())
    }

    /// The player's own peers-only chat line or emote, already shown by
    /// [`ReceiveStream::push_local_echo`], was sent to the server late
    /// ([`crate::node::Output::LateServerCopy`]): the server's echo of it (within the duplicate
    /// window) is not shown again. Walks and turns have no echo to expect.
    pub fn expect_server_echo(&mut self, now: Instant, event: &PeerEvent<'_>) {
        let line = match *event {
            PeerEvent::Chat { text } => Line::Chat(packets::chat_text_as_sent(text).to_vec()),
            PeerEvent::Emote { kind } => Line::Emote(kind),
            PeerEvent::Move { .. } | PeerEvent::Turn { .. } => return,
        };
        if self.view.echoes.len() >= SHOWN_MAX {
            self.view.echoes.pop_front();
        }
        self.view.echoes.push_back((now, line));
    }

    /// Draws a one-line notice for the player (`0x008E ZC_NOTIFY_PLAYERCHAT`, shown in the
    /// chat window like the player's own line) between whole server packets: how a hooking DLL
    /// tells the player that P2P turned on or off.
    pub fn push_notice(&mut self, text: &str) -> Result<(), RenderRejected> {
        self.check_can_inject()?;
        let mut p = Vec::new();
        packets::player_chat(text.as_bytes(), &mut p);
        self.append(&p);
        Ok(())
    }

    /// Bytes ready for the game, in order.
    pub fn output(&self) -> &[u8] {
        self.out.ready()
    }

    /// Marks the first `n` bytes of [`ReceiveStream::output`] as handed to the game.
    pub fn consume(&mut self, n: usize) {
        self.out.consume(n);
    }

    /// Moves every ready byte to `sink`.
    pub fn drain_into(&mut self, sink: &mut Vec<u8>) {
        sink.extend_from_slice(self.output());
        self.consume(usize::MAX);
    }

    /// Bytes from the server that wait for the rest of their packet.
    pub fn pending_server_bytes(&self) -> usize {
        self.framer.pending().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The game's bytes: `len` is what it has not read; all read frees the buffer; bytes read
    /// are moved out only once all was read or more than the bound was, so appending after a
    /// small partial read does not move the rest.
    #[test]
    fn output_frees_what_the_game_read_without_moving_bytes_on_every_append() {
        let mut out = Output::default();
        out.append(&[1; 10]);
        out.consume(4);
        assert_eq!((out.len(), out.ready()), (6, &[1u8; 6][..]));
        out.append(&[2; 10]);
        assert_eq!((out.buf.len(), out.start, out.len()), (20, 4, 16), "no move for 4 read bytes");
        out.consume(16);
        assert_eq!((out.buf.len(), out.start, out.len()), (0, 0, 0), "all read: freed");
        out.append(&[3; 10]);
        out.consume(5);
        out.consume(5);
        out.append(&[4; 3]);
        assert_eq!((out.buf.len(), out.start), (3, 0));
        // A reader that never catches up: once more than the bound was read, the read part goes.
        let mut out = Output::default();
        out.append(&vec![5; OUTPUT_BYTES_MAX + 2]);
        out.consume(OUTPUT_BYTES_MAX);
        out.append(&[6]);
        assert_eq!((out.buf.len(), out.start), (OUTPUT_BYTES_MAX + 3, OUTPUT_BYTES_MAX));
        out.consume(1);
        out.append(&[7]);
        assert_eq!((out.buf.len(), out.start, out.ready()), (3, 0, &[5, 6, 7][..]));
    }
}
