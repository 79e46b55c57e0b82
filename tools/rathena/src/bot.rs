//! [`Bot`]: a headless Ragnarok Online game client for tests, driven step by step.
//!
//! Order: [`Bot::connect_login`] (registers the account with the `_M`/`_F` suffix if it does
//! not exist), [`Bot::select_or_create_char`], [`Bot::enter_map`] (connects where the char
//! server's `HC_NOTIFY_ZONESVR` says, so a proxy that rewrites it is followed), then actions
//! ([`Bot::walk_to`], [`Bot::chat`], [`Bot::emote`], [`Bot::turn`], [`Bot::command`], NPC
//! dialog, [`Bot::send_raw`]). On the map server a background task frames what the server sends
//! with the version's [`ZcFramer`] into a log ([`Bot::received`], [`Bot::wait_for`]) and the bot
//! sends `CZ_REQUEST_TIME` every [`KEEPALIVE_INTERVAL`]. Client packet ids are obfuscated with
//! the server's rolling key at versions that need it (20151104).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ro_p2p_core::gate::{
    self, CharList, CharSelectReply, CharacterInfo, GateError, GateFrame, GateFrameError,
    GateFramer, LoginAccepted, LoginReply, MakeCharReply, MapIds, Sex, ZoneServer,
};
use ro_p2p_core::packet::{ClientEncoder, Obfuscation, PacketVersion, UnsupportedPacketVersion};
use ro_p2p_core::render::{ZcDesyncReason, ZcFrame, ZcFramer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Notify;

/// How often the bot sends `CZ_REQUEST_TIME` on the map server (the real client: about 12 s).
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// How long each step of login, char select and map enter may take.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(15);
/// Most packets kept in the received log (the oldest are dropped beyond it).
pub const RECEIVED_MAX: usize = 200_000;

/// One packet the map server sent, framed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    /// Milliseconds since the bot was created.
    pub t_ms: u64,
    /// Its id.
    pub id: u16,
    /// All its bytes, id included.
    pub bytes: Vec<u8>,
}

impl Packet {
    /// Little-endian u16 at `off` (`None` past the end).
    pub fn u16_at(&self, off: usize) -> Option<u16> {
        match self.bytes.get(off..off + 2)? {
            &[a, b] => Some(u16::from_le_bytes([a, b])),
            _ => None,
        }
    }

    /// Little-endian u32 at `off` (`None` past the end).
    pub fn u32_at(&self, off: usize) -> Option<u32> {
        match self.bytes.get(off..off + 4)? {
            &[a, b, c, d] => Some(u32::from_le_bytes([a, b, c, d])),
            _ => None,
        }
    }

    /// The text from `off` to the first NUL or the end (lossy UTF-8).
    pub fn text_at(&self, off: usize) -> String {
        let rest = self.bytes.get(off..).unwrap_or_default();
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        String::from_utf8_lossy(rest.get(..end).unwrap_or_default()).into_owned()
    }

    /// Whether the bytes contain `needle`.
    pub fn contains(&self, needle: &[u8]) -> bool {
        !needle.is_empty() && self.bytes.windows(needle.len()).any(|w| w == needle)
    }
}

/// Why the bot could not go on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BotError {
    /// A socket operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
    /// What was waited for did not come in time.
    #[error("timed out after {timeout_ms} ms waiting for {waiting_for}")]
    Timeout {
        /// What.
        waiting_for: String,
        /// The bound.
        timeout_ms: u64,
    },
    /// The server closed the connection.
    #[error("the {server} server closed the connection ({stage})")]
    Closed {
        /// Which server.
        server: &'static str,
        /// What the bot was doing.
        stage: String,
    },
    /// The login server refused (`AC_REFUSE_LOGIN`: 0 unknown account, 1 wrong password, ...).
    #[error("login refused with error {error}")]
    LoginRefused {
        /// rAthena's code.
        error: u32,
    },
    /// The login or char server sent `SC_NOTIFY_BAN`.
    #[error("disconnected by the server (SC_NOTIFY_BAN {reason})")]
    Banned {
        /// rAthena's code.
        reason: u8,
    },
    /// The char server refused entry or the select.
    #[error("char server refused: {detail}")]
    CharRefused {
        /// What it said.
        detail: String,
    },
    /// The char server refused to make the character (`HC_REFUSE_MAKECHAR`).
    #[error("character creation refused with error {error}")]
    MakeCharRefused {
        /// rAthena's code.
        error: u8,
    },
    /// The account has no free slot for a new character.
    #[error("no free character slot")]
    NoFreeSlot,
    /// The map server refused `CZ_ENTER`.
    #[error("map server refused entry with packet {id:#06X}")]
    MapRefused {
        /// The packet it answered with.
        id: u16,
    },
    /// A login/char packet did not parse.
    #[error(transparent)]
    Gate(#[from] GateError),
    /// The login/char stream could not be framed.
    #[error(transparent)]
    Frame(#[from] GateFrameError),
    /// The map server's stream could not be framed with the version's table.
    #[error("map stream desynced: {0}")]
    MapDesync(ZcDesyncReason),
    /// No tables for this PACKETVER.
    #[error(transparent)]
    Packetver(#[from] UnsupportedPacketVersion),
    /// A step was called out of order.
    #[error("{step} needs {needs} first")]
    OutOfOrder {
        /// The step called.
        step: &'static str,
        /// The step it needs.
        needs: &'static str,
    },
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> BotError {
    let context = context.into();
    move |source| BotError::Io { context, source }
}

/// A login or char server connection, framed.
struct GateConn {
    stream: TcpStream,
    framer: GateFramer,
    server: &'static str,
}

enum GatePiece {
    AccountId(u32),
    Packet(Vec<u8>),
}

impl GateConn {
    async fn connect(
        addr: SocketAddr,
        framer: GateFramer,
        server: &'static str,
    ) -> Result<GateConn, BotError> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(io(format!("connect to the {server} server at {addr}")))?;
        let _ = stream.set_nodelay(true);
        Ok(GateConn { stream, framer, server })
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<(), BotError> {
        self.stream
            .write_all(bytes)
            .await
            .map_err(io(format!("send to the {} server", self.server)))
    }

    async fn next(&mut self, stage: &str) -> Result<GatePiece, BotError> {
        let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
        loop {
            match self.framer.next_frame()? {
                Some(GateFrame::AccountId { account_id, .. }) => {
                    return Ok(GatePiece::AccountId(account_id));
                }
                Some(GateFrame::Packet { bytes, .. }) => {
                    return Ok(GatePiece::Packet(bytes.to_vec()));
                }
                None => {}
            }
            let mut buf = [0u8; 8192];
            let n = tokio::time::timeout_at(deadline, self.stream.read(&mut buf))
                .await
                .map_err(|_| BotError::Timeout {
                    waiting_for: format!("{} server: {stage}", self.server),
                    timeout_ms: STEP_TIMEOUT.as_millis() as u64,
                })?
                .map_err(io(format!("read from the {} server", self.server)))?;
            if n == 0 {
                return Err(BotError::Closed { server: self.server, stage: stage.to_string() });
            }
            self.framer.push(&buf[..n]);
        }
    }

    /// The next packet whose id is in `ids` (others are skipped).
    async fn packet(&mut self, ids: &[u16], stage: &str) -> Result<Vec<u8>, BotError> {
        loop {
            if let GatePiece::Packet(p) = self.next(stage).await? {
                let id = p.get(..2).map(|b| u16::from_le_bytes([b[0], b[1]])).unwrap_or(0);
                if ids.contains(&id) {
                    return Ok(p);
                }
                tracing::debug!(id = format_args!("{id:#06X}"), stage, "skipped");
            }
        }
    }
}

/// What the map connection's reader task shares with the bot.
#[derive(Debug, Default)]
struct Inbox {
    packets: Vec<Packet>,
    /// Index of `packets[0]` in the whole history (older ones dropped beyond RECEIVED_MAX).
    first: usize,
    closed: bool,
    desync: Option<ZcDesyncReason>,
    position: (u16, u16),
    map: String,
}

struct MapWriter {
    half: OwnedWriteHalf,
    encoder: ClientEncoder,
    sent: u64,
}

struct MapConn {
    writer: Arc<tokio::sync::Mutex<MapWriter>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for MapConn {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// A headless game client. See the module doc for the order of the steps.
pub struct Bot {
    version: PacketVersion,
    ids: MapIds,
    user: String,
    sex: Sex,
    created: Instant,
    login: LoginAccepted,
    char_conn: Option<GateConn>,
    char_list: Option<CharList>,
    character: Option<CharacterInfo>,
    zone: Option<ZoneServer>,
    map: Option<MapConn>,
    inbox: Arc<Mutex<Inbox>>,
    notify: Arc<Notify>,
    cursor: usize,
}

impl std::fmt::Debug for Bot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bot")
            .field("user", &self.user)
            .field("version", &self.version)
            .field("account_id", &self.login.account_id)
            .field("character", &self.character.as_ref().map(|c| &c.name))
            .finish_non_exhaustive()
    }
}

fn lock(inbox: &Mutex<Inbox>) -> std::sync::MutexGuard<'_, Inbox> {
    inbox.lock().unwrap_or_else(|e| e.into_inner())
}

/// `x`, `y`, direction packed into 3 bytes as the client sends a walk target.
pub fn encode_pos(x: u16, y: u16, dir: u8) -> [u8; 3] {
    [(x >> 2) as u8, ((x << 6) as u8) | ((y >> 4) as u8 & 0x3F), ((y << 4) as u8) | (dir & 0x0F)]
}

/// A 3-byte packed position: `(x, y, dir)`.
pub fn decode_pos(p: &[u8]) -> Option<(u16, u16, u8)> {
    let &[a, b, c] = p.get(..3)? else { return None };
    let x = (u16::from(a) << 2) | (u16::from(b) >> 6);
    let y = ((u16::from(b) & 0x3F) << 4) | (u16::from(c) >> 4);
    Some((x, y, c & 0x0F))
}

/// A 6-byte packed move: `((x0, y0), (x1, y1))`.
pub fn decode_move(p: &[u8]) -> Option<((u16, u16), (u16, u16))> {
    let &[a, b, c, d, e, _] = p.get(..6)? else { return None };
    let (a, b, c, d, e) = (u16::from(a), u16::from(b), u16::from(c), u16::from(d), u16::from(e));
    let from = ((a << 2) | (b >> 6), ((b & 0x3F) << 4) | (c >> 4));
    let to = (((c & 0x0F) << 6) | (d >> 2), ((d & 0x03) << 8) | e);
    Some((from, to))
}

impl Bot {
    /// Logs in to the login server at `addr`. If `user` does not exist, it is registered by
    /// logging in again as `user_M` / `user_F` (rAthena's `new_account: yes`). The login
    /// connection is closed afterwards, as the game client does.
    pub async fn connect_login(
        addr: SocketAddr,
        user: &str,
        password: &str,
        sex: Sex,
        packetver: u32,
    ) -> Result<Bot, BotError> {
        let version = PacketVersion::from_number(packetver)?;
        let login = match login_once(addr, user, password, version).await? {
            LoginReply::Refused { error: 0, .. } => {
                let with_suffix = format!("{user}{}", sex.registration_suffix());
                login_once(addr, &with_suffix, password, version).await?
            }
            reply => reply,
        };
        let login = match login {
            LoginReply::Accepted(a) => a,
            LoginReply::Refused { error, .. } => return Err(BotError::LoginRefused { error }),
            LoginReply::Banned { reason } => return Err(BotError::Banned { reason }),
        };
        Ok(Bot {
            version,
            ids: gate::map_ids(version),
            user: user.to_string(),
            sex,
            created: Instant::now(),
            login,
            char_conn: None,
            char_list: None,
            character: None,
            zone: None,
            map: None,
            inbox: Arc::default(),
            notify: Arc::default(),
            cursor: 0,
        })
    }

    /// Connects to the (first) char server the login server named, and selects the character
    /// named `name`, making it in the first free slot if the account has none of that name.
    pub async fn select_or_create_char(&mut self, name: &str) -> Result<CharacterInfo, BotError> {
        let server = self.login.char_servers.first().ok_or(BotError::CharRefused {
            detail: "the login server listed no char server".into(),
        })?;
        let addr = SocketAddr::from((server.ip, server.port));
        let mut conn = GateConn::connect(addr, GateFramer::char(self.version), "char").await?;
        let l = &self.login;
        conn.send(&gate::ch_enter(l.account_id, l.login_id1, l.login_id2, l.sex)).await?;
        match conn.next("account id after CH_ENTER").await? {
            GatePiece::AccountId(aid) if aid == l.account_id => {}
            GatePiece::AccountId(aid) => {
                return Err(BotError::CharRefused { detail: format!("echoed account id {aid}") });
            }
            GatePiece::Packet(p) => {
                return Err(BotError::CharRefused {
                    detail: format!("{:02x?} instead of the account id", p),
                });
            }
        }
        let p = conn
            .packet(
                &[gate::HC_ACCEPT_ENTER, gate::HC_REFUSE_ENTER, gate::SC_NOTIFY_BAN],
                "character list",
            )
            .await?;
        let list = match p.get(..2) {
            Some([0x6B, 0x00]) => gate::parse_char_list(self.version, &p)?,
            Some([0x81, 0x00]) => {
                return Err(BotError::Banned { reason: p.get(2).copied().unwrap_or(0) });
            }
            _ => {
                return Err(BotError::CharRefused {
                    detail: format!("HC_REFUSE_ENTER {:02x?}", p),
                });
            }
        };
        let character = match list.named(name) {
            Some(c) => c.clone(),
            None => {
                let slot =
                    (0..15u8).find(|s| list.in_slot(*s).is_none()).ok_or(BotError::NoFreeSlot)?;
                conn.send(&gate::ch_make_char(self.version, name, slot, 1, 1, 0, self.sex)?)
                    .await?;
                let p = conn
                    .packet(
                        &[
                            gate::HC_ACCEPT_MAKECHAR,
                            gate::HC_ACCEPT_MAKECHAR_OLD,
                            gate::HC_REFUSE_MAKECHAR,
                        ],
                        "make-char reply",
                    )
                    .await?;
                match gate::parse_make_char_reply(self.version, &p)? {
                    MakeCharReply::Accepted(c) => c,
                    MakeCharReply::Refused { error } => {
                        return Err(BotError::MakeCharRefused { error });
                    }
                }
            }
        };
        conn.send(&gate::ch_select_char(character.slot)).await?;
        let p = conn
            .packet(
                &[
                    gate::HC_NOTIFY_ZONESVR,
                    gate::HC_NOTIFY_ZONESVR_OLD,
                    gate::HC_REFUSE_ENTER,
                    gate::HC_NOTIFY_ACCESSIBLE_MAPNAME,
                    gate::SC_NOTIFY_BAN,
                ],
                "HC_NOTIFY_ZONESVR",
            )
            .await?;
        if p.get(..2) == Some(&[0x81, 0x00]) {
            return Err(BotError::Banned { reason: p.get(2).copied().unwrap_or(0) });
        }
        match gate::parse_char_select_reply(&p)? {
            CharSelectReply::Zone(zone) => self.zone = Some(zone),
            other => return Err(BotError::CharRefused { detail: format!("{other:?}") }),
        }
        self.char_list = Some(list);
        self.character = Some(character.clone());
        self.char_conn = Some(conn);
        Ok(character)
    }

    /// Connects to the map server where `HC_NOTIFY_ZONESVR` said, sends `CZ_ENTER`, waits for
    /// `ZC_ACCEPT_ENTER`, sends `CZ_NOTIFY_ACTORINIT` (loaded) and waits until the server has
    /// put the character on the map (`ZC_MAPPROPERTY`): rAthena drops what a client sends
    /// before that. Returns the position.
    pub async fn enter_map(&mut self) -> Result<(u16, u16), BotError> {
        let (Some(zone), Some(character)) = (self.zone.clone(), self.character.clone()) else {
            return Err(BotError::OutOfOrder { step: "enter_map", needs: "select_or_create_char" });
        };
        let addr = SocketAddr::from((zone.ip, zone.port));
        let stream = TcpStream::connect(addr)
            .await
            .map_err(io(format!("connect to the map server at {addr}")))?;
        let _ = stream.set_nodelay(true);
        let (mut read, half) = stream.into_split();
        let obfuscation =
            if self.version.obfuscated_by_default() { Obfuscation::On } else { Obfuscation::Off };
        let writer = Arc::new(tokio::sync::Mutex::new(MapWriter {
            half,
            encoder: ClientEncoder::new(self.version, obfuscation),
            sent: 0,
        }));
        {
            let mut inbox = lock(&self.inbox);
            *inbox = Inbox { map: zone.map.clone(), ..Inbox::default() };
        }
        self.cursor = 0;
        let (inbox, notify, version, created) =
            (self.inbox.clone(), self.notify.clone(), self.version, self.created);
        let own_aid = self.login.account_id;
        let reader = tokio::spawn(async move {
            let mut framer = ZcFramer::new(version);
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match read.read(&mut buf).await {
                    Ok(0) | Err(_) => 0,
                    Ok(n) => n,
                };
                let mut guard = lock(&inbox);
                if n == 0 {
                    guard.closed = true;
                    drop(guard);
                    notify.notify_waiters();
                    return;
                }
                framer.push(&buf[..n]);
                let t_ms = created.elapsed().as_millis() as u64;
                while let Some(frame) = framer.next_frame() {
                    match frame {
                        ZcFrame::Packet { id, bytes } => {
                            track(&mut guard, own_aid, id, bytes);
                            guard.packets.push(Packet { t_ms, id, bytes: bytes.to_vec() });
                        }
                        ZcFrame::Desync { reason, .. } => guard.desync = Some(reason),
                        ZcFrame::PassThrough { .. } => {}
                    }
                }
                if guard.packets.len() > RECEIVED_MAX {
                    let drop_n = guard.packets.len() - RECEIVED_MAX;
                    guard.packets.drain(..drop_n);
                    guard.first += drop_n;
                }
                drop(guard);
                notify.notify_waiters();
            }
        });
        self.map = Some(MapConn { writer: writer.clone(), tasks: vec![reader] });
        let tick = self.tick();
        let l = &self.login;
        self.send_raw(&gate::cz_enter(
            self.version,
            l.account_id,
            character.char_id,
            l.login_id1,
            tick,
            l.sex,
        ))
        .await?;
        let accept = self
            .wait_for_named(
                "ZC_ACCEPT_ENTER",
                |p| matches!(p.id, 0x02EB | 0x0A18 | 0x0073 | 0x0074 | 0x0081 | 0x0B1B),
                STEP_TIMEOUT,
            )
            .await?;
        if matches!(accept.id, 0x0074 | 0x0081) {
            return Err(BotError::MapRefused { id: accept.id });
        }
        let (x, y, _) = decode_pos(accept.bytes.get(6..9).unwrap_or_default()).unwrap_or_default();
        lock(&self.inbox).position = (x, y);
        self.send_raw(&MapIds::LOADED.to_le_bytes()).await?;
        // rAthena ignores `CZ_NOTIFY_ACTORINIT` until the char server's data for the character
        // has arrived (it re-runs it then) and silently drops every other packet until the
        // character is placed on the map. Placing it sends the map property to the player
        // first thing, so nothing is sent before that arrives.
        self.wait_for_named(
            "ZC_MAPPROPERTY (on the map)",
            |p| matches!(p.id, 0x099B | 0x01D6),
            STEP_TIMEOUT,
        )
        .await?;
        let (w, ids, created) = (writer, self.ids, self.created);
        let keepalive = tokio::spawn(async move {
            let mut every = tokio::time::interval(KEEPALIVE_INTERVAL);
            every.tick().await;
            loop {
                every.tick().await;
                let mut p = ids.tick.to_le_bytes().to_vec();
                p.extend_from_slice(&(created.elapsed().as_millis() as u32).to_le_bytes());
                if send_on(&w, &p).await.is_err() {
                    return;
                }
            }
        });
        if let Some(m) = self.map.as_mut() {
            m.tasks.push(keepalive);
        }
        // The game client leaves the char server once it is on the map server.
        self.char_conn = None;
        Ok((x, y))
    }

    fn tick(&self) -> u32 {
        self.created.elapsed().as_millis() as u32
    }

    /// Sends one whole client packet with a plain id; the id is obfuscated if the version needs
    /// it (items, skills or anything the helpers do not cover).
    pub async fn send_raw(&self, packet: &[u8]) -> Result<(), BotError> {
        let map = self
            .map
            .as_ref()
            .ok_or(BotError::OutOfOrder { step: "send_raw", needs: "enter_map" })?;
        send_on(&map.writer, packet).await
    }

    /// Walks to cell `(x, y)` (`CZ_REQUEST_MOVE`).
    pub async fn walk_to(&self, x: u16, y: u16) -> Result<(), BotError> {
        let mut p = self.ids.walk.to_le_bytes().to_vec();
        p.extend_from_slice(&encode_pos(x, y, 0));
        self.send_raw(&p).await
    }

    /// Turns head and body (`CZ_CHANGE_DIRECTION`: head 0-2, dir 0-7).
    pub async fn turn(&self, head: u8, dir: u8) -> Result<(), BotError> {
        let mut p = self.ids.turn.to_le_bytes().to_vec();
        p.extend_from_slice(&[head, 0, dir]);
        self.send_raw(&p).await
    }

    /// Says `text` in public chat (`CZ_REQUEST_CHAT` with "Name : text").
    pub async fn chat(&self, text: &str) -> Result<(), BotError> {
        let name = self
            .char_name()
            .ok_or(BotError::OutOfOrder { step: "chat", needs: "select_or_create_char" })?;
        let mut body = format!("{name} : {text}").into_bytes();
        if self.version.chat_nul_terminated() {
            body.push(0);
        }
        let len = u16::try_from(4 + body.len()).unwrap_or(u16::MAX);
        let mut p = MapIds::CHAT.to_le_bytes().to_vec();
        p.extend_from_slice(&len.to_le_bytes());
        p.extend_from_slice(&body);
        self.send_raw(&p).await
    }

    /// Sends an `@` command (the game client sends them as public chat).
    pub async fn command(&self, command: &str) -> Result<(), BotError> {
        self.chat(command).await
    }

    /// Shows emote `kind` (`CZ_REQ_EMOTION`).
    pub async fn emote(&self, kind: u8) -> Result<(), BotError> {
        let mut p = MapIds::EMOTE.to_le_bytes().to_vec();
        p.push(kind);
        self.send_raw(&p).await
    }

    /// Clicks NPC `npc_id` (`CZ_CONTACTNPC`).
    pub async fn npc_click(&self, npc_id: u32) -> Result<(), BotError> {
        let mut p = MapIds::NPC_CLICK.to_le_bytes().to_vec();
        p.extend_from_slice(&npc_id.to_le_bytes());
        p.push(1);
        self.send_raw(&p).await
    }

    /// Presses "next" in NPC `npc_id`'s dialog (`CZ_REQ_NEXT_SCRIPT`).
    pub async fn npc_next(&self, npc_id: u32) -> Result<(), BotError> {
        let mut p = MapIds::NPC_NEXT.to_le_bytes().to_vec();
        p.extend_from_slice(&npc_id.to_le_bytes());
        self.send_raw(&p).await
    }

    /// Picks menu entry `choice` (1-based; 255 cancels) in NPC `npc_id`'s dialog
    /// (`CZ_CHOOSE_MENU`).
    pub async fn npc_menu(&self, npc_id: u32, choice: u8) -> Result<(), BotError> {
        let mut p = MapIds::NPC_MENU.to_le_bytes().to_vec();
        p.extend_from_slice(&npc_id.to_le_bytes());
        p.push(choice);
        self.send_raw(&p).await
    }

    /// Presses "close" in NPC `npc_id`'s dialog (`CZ_CLOSE_DIALOG`).
    pub async fn npc_close(&self, npc_id: u32) -> Result<(), BotError> {
        let mut p = MapIds::NPC_CLOSE.to_le_bytes().to_vec();
        p.extend_from_slice(&npc_id.to_le_bytes());
        self.send_raw(&p).await
    }

    /// Waits for the first packet after the bot's cursor that matches `pred`, and moves the
    /// cursor past it. Fails on timeout, a closed connection or a desynced stream.
    pub async fn wait_for(
        &mut self,
        pred: impl Fn(&Packet) -> bool,
        timeout: Duration,
    ) -> Result<Packet, BotError> {
        self.wait_for_named("a matching packet", pred, timeout).await
    }

    /// [`Bot::wait_for`] with a description for the timeout error.
    pub async fn wait_for_named(
        &mut self,
        what: &str,
        pred: impl Fn(&Packet) -> bool,
        timeout: Duration,
    ) -> Result<Packet, BotError> {
        let (index, packet) = self.wait_from(self.cursor, what, pred, timeout).await?;
        self.cursor = index + 1;
        Ok(packet)
    }

    /// Waits for the first packet at or after history index `from` (see [`Bot::mark`]) that
    /// matches `pred`, without moving the cursor.
    pub async fn wait_for_since(
        &self,
        from: usize,
        pred: impl Fn(&Packet) -> bool,
        timeout: Duration,
    ) -> Result<Packet, BotError> {
        self.wait_from(from, "a matching packet", pred, timeout).await.map(|(_, p)| p)
    }

    async fn wait_from(
        &self,
        from: usize,
        what: &str,
        pred: impl Fn(&Packet) -> bool,
        timeout: Duration,
    ) -> Result<(usize, Packet), BotError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let inbox = lock(&self.inbox);
                let start = from.saturating_sub(inbox.first);
                if let Some((i, p)) =
                    inbox.packets.iter().enumerate().skip(start).find(|(_, p)| pred(p))
                {
                    return Ok((inbox.first + i, p.clone()));
                }
                if let Some(reason) = inbox.desync {
                    return Err(BotError::MapDesync(reason));
                }
                if inbox.closed {
                    return Err(BotError::Closed {
                        server: "map",
                        stage: format!("waiting for {what}"),
                    });
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(BotError::Timeout {
                    waiting_for: what.to_string(),
                    timeout_ms: timeout.as_millis() as u64,
                });
            }
        }
    }

    /// The history index the next received packet will get (for [`Bot::wait_for_since`]).
    pub fn mark(&self) -> usize {
        let inbox = lock(&self.inbox);
        inbox.first + inbox.packets.len()
    }

    /// Every packet received on the map server so far (up to [`RECEIVED_MAX`]).
    pub fn received(&self) -> Vec<Packet> {
        lock(&self.inbox).packets.clone()
    }

    /// Packets received at or after history index `from`.
    pub fn received_since(&self, from: usize) -> Vec<Packet> {
        let inbox = lock(&self.inbox);
        inbox.packets.iter().skip(from.saturating_sub(inbox.first)).cloned().collect()
    }

    /// Whether the map server closed the connection.
    pub fn is_closed(&self) -> bool {
        lock(&self.inbox).closed
    }

    /// Client packets sent on the map server so far (keep-alives included).
    pub async fn sent_count(&self) -> u64 {
        match &self.map {
            Some(m) => m.writer.lock().await.sent,
            None => 0,
        }
    }

    /// The PACKETVER.
    pub fn version(&self) -> PacketVersion {
        self.version
    }

    /// The account id.
    pub fn account_id(&self) -> u32 {
        self.login.account_id
    }

    /// The account's sex as the login server reports it.
    pub fn sex(&self) -> Sex {
        self.login.sex
    }

    /// The login server's answer.
    pub fn login_reply(&self) -> &LoginAccepted {
        &self.login
    }

    /// The web auth token (from `0x0AC4`, PACKETVER >= 20170315).
    pub fn web_auth_token(&self) -> Option<&str> {
        self.login.web_auth_token.as_deref()
    }

    /// The selected character's id.
    pub fn char_id(&self) -> Option<u32> {
        self.character.as_ref().map(|c| c.char_id)
    }

    /// The selected character's name.
    pub fn char_name(&self) -> Option<&str> {
        self.character.as_ref().map(|c| c.name.as_str())
    }

    /// The char server's list of the account's characters (before any was made).
    pub fn char_list(&self) -> Option<&CharList> {
        self.char_list.as_ref()
    }

    /// Where `HC_NOTIFY_ZONESVR` sent the bot.
    pub fn zone(&self) -> Option<&ZoneServer> {
        self.zone.as_ref()
    }

    /// The current map, e.g. `prontera.gat`.
    pub fn map_name(&self) -> String {
        lock(&self.inbox).map.clone()
    }

    /// The last known cell: where the bot entered, or the target of its last walk the server
    /// accepted (`ZC_NOTIFY_PLAYERMOVE`), or where a warp put it.
    pub fn position(&self) -> (u16, u16) {
        lock(&self.inbox).position
    }
}

async fn send_on(writer: &tokio::sync::Mutex<MapWriter>, packet: &[u8]) -> Result<(), BotError> {
    let mut w = writer.lock().await;
    let mut out = Vec::with_capacity(packet.len());
    w.encoder.encode(packet, &mut out);
    w.half.write_all(&out).await.map_err(io("send to the map server"))?;
    w.sent += 1;
    Ok(())
}

/// Follows the bot's own position and map from what the server sends it.
fn track(inbox: &mut Inbox, own_aid: u32, id: u16, bytes: &[u8]) {
    match id {
        // ZC_NOTIFY_PLAYERMOVE: tick, move data
        0x0087 => {
            if let Some((_, to)) = decode_move(bytes.get(6..12).unwrap_or_default()) {
                inbox.position = to;
            }
        }
        // ZC_STOPMOVE: AID, x, y
        0x0088 if bytes.get(2..6) == Some(&own_aid.to_le_bytes()[..]) => {
            if let (Some(&[x0, x1]), Some(&[y0, y1])) = (bytes.get(6..8), bytes.get(8..10)) {
                inbox.position = (u16::from_le_bytes([x0, x1]), u16::from_le_bytes([y0, y1]));
            }
        }
        gate::ZC_NPCACK_MAPMOVE => {
            if let Ok(m) = gate::parse_map_move(bytes) {
                inbox.map = m.map;
                inbox.position = (m.x, m.y);
            }
        }
        _ => {}
    }
}

async fn login_once(
    addr: SocketAddr,
    user: &str,
    password: &str,
    version: PacketVersion,
) -> Result<LoginReply, BotError> {
    let mut conn = GateConn::connect(addr, GateFramer::login(version), "login").await?;
    conn.send(&gate::ca_login(version.number(), user, password, 0)?).await?;
    let p = conn
        .packet(
            &[
                gate::AC_ACCEPT_LOGIN,
                gate::AC_ACCEPT_LOGIN_OLD,
                gate::AC_REFUSE_LOGIN,
                gate::AC_REFUSE_LOGIN_OLD,
                gate::SC_NOTIFY_BAN,
            ],
            "the answer to CA_LOGIN",
        )
        .await?;
    Ok(gate::parse_login_reply(&p)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_roundtrip_through_the_packed_form() {
        for (x, y, d) in [(0, 0, 0), (156, 191, 4), (1023, 1023, 7), (5, 300, 1)] {
            assert_eq!(decode_pos(&encode_pos(x, y, d)), Some((x, y, d)));
        }
        assert_eq!(decode_pos(&[1, 2]), None);
    }

    #[test]
    fn move_data_decodes_both_cells() {
        // (156,191) -> (160,185) packed as rAthena's WBUFPOS2.
        let (x0, y0, x1, y1) = (156u16, 191u16, 160u16, 185u16);
        let p = [
            (x0 >> 2) as u8,
            ((x0 << 6) | ((y0 >> 4) & 0x3F)) as u8,
            ((y0 << 4) | ((x1 >> 6) & 0x0F)) as u8,
            ((x1 << 2) | ((y1 >> 8) & 0x03)) as u8,
            y1 as u8,
            0x88,
        ];
        assert_eq!(decode_move(&p), Some(((156, 191), (160, 185))));
    }
}
