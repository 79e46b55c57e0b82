//! Packet tables: for each PACKETVER, every id a client may send, its length, rAthena handler and
//! category. Embedded at compile time from `core/data/*.csv` and parsed once on first use into an
//! id-indexed array, so a lookup is one array read.

use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

/// What a packet does on the server, from `ro_handler_categories.csv`.
///
/// Only [`Category::Movement`], [`Category::Chat`] and [`Category::Emote`] can ever be
/// peer-eligible; everything else is server-only whatever the policy says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Category {
    /// NPC dialogs, shops, scripts.
    Npc,
    /// Inventory, trade, vending, storage.
    Item,
    /// Skills and attacks.
    Skill,
    /// Quest log.
    Quest,
    /// Login, map entry, session.
    Auth,
    /// Walking and turning.
    Movement,
    /// Every chat handler (public, whisper, party, guild, clan, battleground).
    Chat,
    /// Emotes.
    Emote,
    /// Everything else.
    Other,
}

impl Category {
    /// Every category, in table order.
    pub const ALL: [Category; 9] = [
        Category::Npc,
        Category::Item,
        Category::Skill,
        Category::Quest,
        Category::Auth,
        Category::Movement,
        Category::Chat,
        Category::Emote,
        Category::Other,
    ];

    /// The lowercase name used in the CSVs, the policy syntax and the `classify` output.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Npc => "npc",
            Category::Item => "item",
            Category::Skill => "skill",
            Category::Quest => "quest",
            Category::Auth => "auth",
            Category::Movement => "movement",
            Category::Chat => "chat",
            Category::Emote => "emote",
            Category::Other => "other",
        }
    }

    /// Parses a lowercase category name.
    pub fn from_name(name: &str) -> Option<Category> {
        Category::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The length rule of one packet id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketLen {
    /// Always exactly this many bytes, id included (0 means rAthena refuses the id).
    Fixed(u16),
    /// A u16 little-endian total length at offset 2, accepted in
    /// [`VARIABLE_LEN_MIN`]..=[`VARIABLE_LEN_MAX`].
    Variable,
}

/// Smallest total length rAthena accepts for a variable-length packet.
pub const VARIABLE_LEN_MIN: u16 = 4;
/// Largest total length rAthena accepts for a variable-length packet.
pub const VARIABLE_LEN_MAX: u16 = 32768;

/// Which parser the classifier applies to a packet: derived from its handler and category when
/// the table is loaded. Only handlers named here can ever produce a peer event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Layout {
    /// `clif_parse_WalkToXY`.
    Walk,
    /// `clif_parse_ChangeDir`.
    Turn,
    /// `clif_parse_GlobalMessage`: public chat.
    PublicChat,
    /// `clif_parse_WisMessage`.
    Whisper,
    /// `clif_parse_PartyMessage`.
    PartyChat,
    /// `clif_parse_GuildMessage`.
    GuildChat,
    /// `clif_parse_clan_chat`.
    ClanChat,
    /// `clif_parse_BattleChat`.
    BattlegroundChat,
    /// `clif_parse_Emotion`.
    Emote,
    /// A movement/chat/emote-category handler this crate does not parse.
    Unrecognised,
    /// A category that is never peer-eligible.
    ServerOnly,
}

impl Layout {
    fn of(handler: &str, category: Category) -> Layout {
        match (handler, category) {
            ("clif_parse_WalkToXY", Category::Movement) => Layout::Walk,
            ("clif_parse_ChangeDir", Category::Movement) => Layout::Turn,
            ("clif_parse_GlobalMessage", Category::Chat) => Layout::PublicChat,
            ("clif_parse_WisMessage", Category::Chat) => Layout::Whisper,
            ("clif_parse_PartyMessage", Category::Chat) => Layout::PartyChat,
            ("clif_parse_GuildMessage", Category::Chat) => Layout::GuildChat,
            ("clif_parse_clan_chat", Category::Chat) => Layout::ClanChat,
            ("clif_parse_BattleChat", Category::Chat) => Layout::BattlegroundChat,
            ("clif_parse_Emotion", Category::Emote) => Layout::Emote,
            (_, Category::Movement | Category::Chat | Category::Emote) => Layout::Unrecognised,
            _ => Layout::ServerOnly,
        }
    }
}

/// One row of a packet table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PacketSpec {
    id: u16,
    len: PacketLen,
    handler: &'static str,
    category: Category,
    pub(crate) layout: Layout,
}

impl PacketSpec {
    /// The (de-obfuscated) packet id.
    pub fn id(&self) -> u16 {
        self.id
    }

    /// The length rule.
    pub fn len(&self) -> PacketLen {
        self.len
    }

    /// rAthena's handler, e.g. `clif_parse_WalkToXY`.
    pub fn handler(&self) -> &'static str {
        self.handler
    }

    /// The handler without its `clif_parse_` (or `logclif_parse_`, `chclif_parse_`) prefix, e.g.
    /// `WalkToXY`: what the `classify` tool prints.
    pub fn handler_name(&self) -> &'static str {
        match self.handler.find("parse_") {
            Some(at) => self.handler.get(at + "parse_".len()..).unwrap_or(self.handler),
            None => self.handler,
        }
    }

    /// The category.
    pub fn category(&self) -> Category {
        self.category
    }
}

/// A packet table: id-indexed, O(1) lookup.
#[derive(Debug)]
pub struct PacketTable {
    specs: Vec<PacketSpec>,
    /// `index[id]` is 0 for an unknown id, else 1 + the position in `specs`.
    index: Box<[u16; ID_COUNT]>,
}

/// Number of possible packet ids.
const ID_COUNT: usize = 1 << 16;

fn empty_index() -> Box<[u16; ID_COUNT]> {
    // Built on the heap: 128 KiB is too much for a test thread's stack in debug builds.
    match vec![0u16; ID_COUNT].into_boxed_slice().try_into() {
        Ok(index) => index,
        Err(_) => Box::new([0; ID_COUNT]),
    }
}

/// Why an embedded table failed to parse (checked by a unit test; at run time a table that fails
/// to parse is empty, which desyncs every connection: everything goes to the server).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TableError {
    /// A row has fewer than 4 columns.
    #[error("line {line}: expected id_hex,length,handler,category")]
    MissingColumns {
        /// 1-based line number.
        line: usize,
    },
    /// The id is not `0x` and 4 hex digits.
    #[error("line {line}: bad id")]
    BadId {
        /// 1-based line number.
        line: usize,
    },
    /// The length is neither `-1` nor a u16.
    #[error("line {line}: bad length")]
    BadLength {
        /// 1-based line number.
        line: usize,
    },
    /// The category is not one of the nine.
    #[error("line {line}: unknown category")]
    UnknownCategory {
        /// 1-based line number.
        line: usize,
    },
    /// The same id appears twice.
    #[error("line {line}: duplicate id")]
    DuplicateId {
        /// 1-based line number.
        line: usize,
    },
}

impl PacketTable {
    /// Parses `id_hex,length,handler,category[,...]` with a header line.
    pub(crate) fn parse(csv: &'static str) -> Result<PacketTable, TableError> {
        let mut specs = Vec::new();
        let mut index = empty_index();
        for (n, line) in csv.lines().enumerate().skip(1) {
            let line_no = n + 1;
            if line.trim().is_empty() {
                continue;
            }
            let mut cols = line.splitn(5, ',');
            let (Some(id), Some(len), Some(handler), Some(category)) =
                (cols.next(), cols.next(), cols.next(), cols.next())
            else {
                return Err(TableError::MissingColumns { line: line_no });
            };
            let id = id
                .strip_prefix("0x")
                .and_then(|h| u16::from_str_radix(h, 16).ok())
                .ok_or(TableError::BadId { line: line_no })?;
            let len = match len {
                "-1" => PacketLen::Variable,
                n => PacketLen::Fixed(
                    n.parse().map_err(|_| TableError::BadLength { line: line_no })?,
                ),
            };
            let category = Category::from_name(category.trim())
                .ok_or(TableError::UnknownCategory { line: line_no })?;
            let slot = index.get_mut(usize::from(id)).ok_or(TableError::BadId { line: line_no })?;
            if *slot != 0 {
                return Err(TableError::DuplicateId { line: line_no });
            }
            specs.push(PacketSpec {
                id,
                len,
                handler,
                category,
                layout: Layout::of(handler, category),
            });
            *slot = u16::try_from(specs.len()).map_err(|_| TableError::BadId { line: line_no })?;
        }
        specs.sort_by_key(|s| s.id);
        for (i, s) in specs.iter().enumerate() {
            if let (Some(slot), Ok(pos)) = (index.get_mut(usize::from(s.id)), u16::try_from(i + 1))
            {
                *slot = pos;
            }
        }
        Ok(PacketTable { specs, index })
    }

    fn parse_or_empty(csv: &'static str) -> PacketTable {
        PacketTable::parse(csv)
            .unwrap_or_else(|_| PacketTable { specs: Vec::new(), index: empty_index() })
    }

    /// The row of `id`, if the table has it.
    #[inline]
    pub fn get(&self, id: u16) -> Option<&PacketSpec> {
        let pos = self.index[usize::from(id)];
        self.specs.get(usize::from(pos).wrapping_sub(1))
    }

    /// Every row, sorted by id.
    pub fn iter(&self) -> impl Iterator<Item = &PacketSpec> {
        self.specs.iter()
    }

    /// Number of ids.
    pub fn len(&self) -> usize {
        self.specs.len()
    }

    /// Whether the table has no ids (only if an embedded CSV failed to parse).
    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    /// The login-server and char-server table (every packet `auth`).
    pub fn login_char() -> &'static PacketTable {
        &LOGIN_CHAR
    }
}

pub(crate) const CSV_20211103: &str = include_str!("../../data/ro_packets_20211103.csv");
pub(crate) const CSV_20180620: &str = include_str!("../../data/ro_packets_20180620.csv");
pub(crate) const CSV_20151104: &str = include_str!("../../data/ro_packets_20151104.csv");
pub(crate) const CSV_20120410: &str = include_str!("../../data/ro_packets_20120410.csv");
pub(crate) const CSV_LOGIN_CHAR: &str = include_str!("../../data/ro_packets_login_char.csv");

static T_20211103: LazyLock<PacketTable> =
    LazyLock::new(|| PacketTable::parse_or_empty(CSV_20211103));
static T_20180620: LazyLock<PacketTable> =
    LazyLock::new(|| PacketTable::parse_or_empty(CSV_20180620));
static T_20151104: LazyLock<PacketTable> =
    LazyLock::new(|| PacketTable::parse_or_empty(CSV_20151104));
static T_20120410: LazyLock<PacketTable> =
    LazyLock::new(|| PacketTable::parse_or_empty(CSV_20120410));
static LOGIN_CHAR: LazyLock<PacketTable> =
    LazyLock::new(|| PacketTable::parse_or_empty(CSV_LOGIN_CHAR));

/// The three u32 keys of rAthena's packet-id obfuscation for one PACKETVER.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObfuscationKeys(pub [u32; 3]);

/// A client PACKETVER this crate has tables for. Ids are only meaningful for one version.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum PacketVersion {
    /// 2021-11-03 RagexeRE, rAthena's default.
    #[default]
    V20211103,
    /// 2018-06-20, the default in 2018-2020.
    V20180620,
    /// 2015-11-04, the oldest rAthena still builds in CI; obfuscated by default.
    V20151104,
    /// 2012-04-10; obfuscated by default.
    V20120410,
}

/// A PACKETVER number this crate has no table for.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unsupported PACKETVER {given:?}: supported are 20211103, 20180620, 20151104, 20120410")]
pub struct UnsupportedPacketVersion {
    /// What was given.
    pub given: String,
}

impl PacketVersion {
    /// Every supported version, newest first.
    pub const ALL: [PacketVersion; 4] = [
        PacketVersion::V20211103,
        PacketVersion::V20180620,
        PacketVersion::V20151104,
        PacketVersion::V20120410,
    ];

    /// The PACKETVER number, e.g. 20211103.
    pub fn number(self) -> u32 {
        match self {
            PacketVersion::V20211103 => 20211103,
            PacketVersion::V20180620 => 20180620,
            PacketVersion::V20151104 => 20151104,
            PacketVersion::V20120410 => 20120410,
        }
    }

    /// The version with this PACKETVER number.
    pub fn from_number(number: u32) -> Result<PacketVersion, UnsupportedPacketVersion> {
        PacketVersion::ALL
            .into_iter()
            .find(|v| v.number() == number)
            .ok_or(UnsupportedPacketVersion { given: number.to_string() })
    }

    /// The client-to-map-server table of this version.
    pub fn table(self) -> &'static PacketTable {
        match self {
            PacketVersion::V20211103 => &T_20211103,
            PacketVersion::V20180620 => &T_20180620,
            PacketVersion::V20151104 => &T_20151104,
            PacketVersion::V20120410 => &T_20120410,
        }
    }

    /// rAthena's obfuscation keys for this version (all zero after 20180307: ids are plain).
    pub fn obfuscation_keys(self) -> ObfuscationKeys {
        match self {
            PacketVersion::V20211103 | PacketVersion::V20180620 => ObfuscationKeys([0, 0, 0]),
            PacketVersion::V20151104 => ObfuscationKeys([0x4C17_382A, 0x7ED1_74C9, 0x2996_1E4F]),
            PacketVersion::V20120410 => ObfuscationKeys([0x0158_1359, 0x452D_6FFA, 0x6AFB_6E2E]),
        }
    }

    /// Whether rAthena obfuscates packet ids at this version by default
    /// (20110817 <= PACKETVER <= 20180307 with `PACKET_OBFUSCATION`).
    pub fn obfuscated_by_default(self) -> bool {
        matches!(self, PacketVersion::V20151104 | PacketVersion::V20120410)
    }

    /// Whether the client NUL-terminates chat text (before 20151001) rather than sending none.
    pub fn chat_nul_terminated(self) -> bool {
        self.number() < 20151001
    }
}

impl FromStr for PacketVersion {
    type Err = UnsupportedPacketVersion;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.trim()
            .parse::<u32>()
            .ok()
            .and_then(|n| PacketVersion::from_number(n).ok())
            .ok_or_else(|| UnsupportedPacketVersion { given: s.to_string() })
    }
}

impl fmt::Display for PacketVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.number())
    }
}
