//! Every client version rAthena distinguishes, from the tables `tools/packetdb/gen.py` generated
//! out of rAthena's own headers (`core/data/gen/`, see `docs/packets.md`).
//!
//! The index maps each PACKETVER interval (a start date up to the next one, where none of
//! rAthena's `PACKETVER` comparisons changes its result) and client family to a client-to-server
//! table, a server-to-client length table, the obfuscation keys and the offsets of the fields the
//! receive path writes. Identical tables are stored once. Everything is embedded at compile time
//! and parsed on first use.

use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

/// The client family, as rAthena's `PACKETVER_RE` / `PACKETVER_ZERO` defines select it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ClientFamily {
    /// Ragexe, the main client (`PACKETVER_MAIN_NUM`).
    Main,
    /// RagexeRE, the renewal test client (`PACKETVER_RE`).
    Re,
    /// The Zero client (`PACKETVER_ZERO`, on top of rAthena's main/RE choice for the date).
    Zero,
}

impl ClientFamily {
    /// Every family.
    pub const ALL: [ClientFamily; 3] = [ClientFamily::Main, ClientFamily::Re, ClientFamily::Zero];

    /// `main`, `re` or `zero`: the name in options and configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientFamily::Main => "main",
            ClientFamily::Re => "re",
            ClientFamily::Zero => "zero",
        }
    }

    /// Parses `main`, `re` or `zero` (case-insensitive).
    pub fn from_name(name: &str) -> Option<ClientFamily> {
        ClientFamily::ALL.into_iter().find(|f| f.as_str().eq_ignore_ascii_case(name.trim()))
    }

    /// rAthena's family for `packetver` when none is configured (`src/config/packets.hpp`):
    /// RagexeRE for 20151105..=20180703 and 20200902..=20211118, Ragexe otherwise.
    pub fn default_for(packetver: u32) -> ClientFamily {
        if (20151105..20180704).contains(&packetver) || (20200902..=20211118).contains(&packetver) {
            ClientFamily::Re
        } else {
            ClientFamily::Main
        }
    }
}

impl fmt::Display for ClientFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ClientFamily {
    type Err = UnknownClientFamily;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ClientFamily::from_name(s).ok_or_else(|| UnknownClientFamily { given: s.to_owned() })
    }
}

/// A client family name that is not `main`, `re` or `zero`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown client family {given:?}: expected main, re or zero")]
pub struct UnknownClientFamily {
    /// What was given.
    pub given: String,
}

/// Offsets and sizes the generator measured with `sizeof`/`offsetof` at one version (`None`
/// where the struct has no such field).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct GeneratedLayout {
    pub walk_id: Option<u16>,
    pub walk_size: Option<u16>,
    pub walk_objecttype: Option<u16>,
    pub walk_aid: Option<u16>,
    pub walk_gid: Option<u16>,
    pub walk_tick: Option<u16>,
    pub walk_move: Option<u16>,
    pub walk_xsize: Option<u16>,
    pub idle_id: Option<u16>,
    pub idle_size: Option<u16>,
    pub idle_objecttype: Option<u16>,
    pub idle_aid: Option<u16>,
    pub idle_gid: Option<u16>,
    pub idle_posdir: Option<u16>,
    pub idle_xsize: Option<u16>,
    pub idle_state: Option<u16>,
    pub spawn_id: Option<u16>,
    pub spawn_size: Option<u16>,
    pub spawn_objecttype: Option<u16>,
    pub spawn_aid: Option<u16>,
    pub spawn_gid: Option<u16>,
    pub spawn_posdir: Option<u16>,
    pub spawn_xsize: Option<u16>,
    pub emote_size: Option<u16>,
    pub turn_size: Option<u16>,
    pub chat_size: Option<u16>,
    pub char_size: Option<u16>,
    pub char_job: Option<u16>,
    pub char_level: Option<u16>,
    pub char_name: Option<u16>,
    pub char_slot: Option<u16>,
    pub char_map: Option<u16>,
    pub char_sex: Option<u16>,
}

impl GeneratedLayout {
    fn set(&mut self, column: &str, value: Option<u16>) {
        let slot = match column {
            "walk_id" => &mut self.walk_id,
            "walk_size" => &mut self.walk_size,
            "walk_objecttype" => &mut self.walk_objecttype,
            "walk_AID" => &mut self.walk_aid,
            "walk_GID" => &mut self.walk_gid,
            "walk_moveStartTime" => &mut self.walk_tick,
            "walk_MoveData" => &mut self.walk_move,
            "walk_xSize" => &mut self.walk_xsize,
            "idle_id" => &mut self.idle_id,
            "idle_size" => &mut self.idle_size,
            "idle_objecttype" => &mut self.idle_objecttype,
            "idle_AID" => &mut self.idle_aid,
            "idle_GID" => &mut self.idle_gid,
            "idle_PosDir" => &mut self.idle_posdir,
            "idle_xSize" => &mut self.idle_xsize,
            "idle_state" => &mut self.idle_state,
            "spawn_id" => &mut self.spawn_id,
            "spawn_size" => &mut self.spawn_size,
            "spawn_objecttype" => &mut self.spawn_objecttype,
            "spawn_AID" => &mut self.spawn_aid,
            "spawn_GID" => &mut self.spawn_gid,
            "spawn_PosDir" => &mut self.spawn_posdir,
            "spawn_xSize" => &mut self.spawn_xsize,
            "emote_size" => &mut self.emote_size,
            "turn_size" => &mut self.turn_size,
            "chat_size" => &mut self.chat_size,
            "char_size" => &mut self.char_size,
            "char_job" => &mut self.char_job,
            "char_level" => &mut self.char_level,
            "char_name" => &mut self.char_name,
            "char_CharNum" => &mut self.char_slot,
            "char_mapName" => &mut self.char_map,
            "char_sex" => &mut self.char_sex,
            _ => return,
        };
        *slot = value;
    }
}

/// Which of the generator's families a row was generated for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RowFamily {
    /// rAthena's default for the date (no family define).
    Default,
    /// `-DPACKETVER_RE` where the default is Ragexe.
    Re,
    /// `-DPACKETVER_ZERO`.
    Zero,
}

/// One row of `core/data/gen/index.csv`.
#[derive(Clone, Debug)]
pub(crate) struct VersionRow {
    pub from: u32,
    family: RowFamily,
    /// `None`: rAthena's headers refuse this version (`#error`).
    pub tables: Option<RowTables>,
}

/// What a row of the index points at.
#[derive(Clone, Debug)]
pub(crate) struct RowTables {
    pub cz: usize,
    pub zc: usize,
    pub keys: [u32; 3],
    pub layout: GeneratedLayout,
}

/// One table of a generated file: its rows, or the rows that differ from an earlier table.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Section {
    name: &'static str,
    /// The earlier table this one is a difference from (its position in the file).
    base: Option<usize>,
    /// The lines after the `table` line: rows (`0xID,...`, new or changed) and `-0xID`
    /// (removed).
    body: &'static str,
}

/// The parsed index and the table sections it points into.
#[derive(Debug, Default)]
pub(crate) struct Index {
    /// Sorted by `from`.
    pub rows: Vec<VersionRow>,
    /// Each client-to-server table (rows `id,len,handler,category,offsets`).
    pub cz: Vec<Section>,
    /// Each server-to-client table (rows `id,len,source`).
    pub zc: Vec<Section>,
}

/// Most tables a difference chain may pass through (the generator writes chains through
/// earlier tables only, so this only guards against a damaged file).
const CHAIN_MAX: usize = 4096;

/// The full rows of table `n` of `sections`, sorted by id: its base's rows with its own
/// applied. Empty if the chain is damaged.
pub(crate) fn resolve(sections: &[Section], n: usize) -> Vec<&'static str> {
    let mut chain = Vec::new();
    let mut at = Some(n);
    while let Some(i) = at {
        let Some(s) = sections.get(i) else { return Vec::new() };
        if chain.len() >= CHAIN_MAX || s.base.is_some_and(|b| b >= i) {
            return Vec::new();
        }
        chain.push(s.body);
        at = s.base;
    }
    let mut rows: std::collections::BTreeMap<u16, &'static str> = std::collections::BTreeMap::new();
    let id_of = |s: &str| {
        s.split(',')
            .next()
            .and_then(|h| h.trim().strip_prefix("0x"))
            .and_then(|h| u16::from_str_radix(h, 16).ok())
    };
    for body in chain.into_iter().rev() {
        for line in body.lines().filter(|l| !l.trim().is_empty()) {
            match line.strip_prefix('-') {
                Some(removed) => {
                    if let Some(id) = id_of(removed) {
                        rows.remove(&id);
                    }
                }
                None => {
                    if let Some(id) = id_of(line) {
                        rows.insert(id, line);
                    }
                }
            }
        }
    }
    rows.into_values().collect()
}

const INDEX_CSV: &str = include_str!("../../data/gen/index.csv");
const CZ_CSV: &str = include_str!("../../data/gen/cz.csv");
const ZC_CSV: &str = include_str!("../../data/gen/zc.csv");

/// Why the embedded index failed to parse (a unit test checks it parses).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IndexError {
    /// A table names a base that is no earlier table.
    #[error("a table's base is no earlier table")]
    BadBase,
    /// The index has no header line.
    #[error("index has no header")]
    NoHeader,
    /// A row is malformed.
    #[error("index line {line}: {what}")]
    BadRow {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        what: &'static str,
    },
}

/// Splits a multi-table file into its tables; each starts at a `table <name> [base <name>]`
/// line. `None` if a base names no earlier table.
fn sections(text: &'static str) -> Option<Vec<Section>> {
    // (line start, body start, name, base name)
    let mut heads: Vec<(usize, usize, &'static str, Option<&'static str>)> = Vec::new();
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        if let Some(rest) = line.strip_prefix("table ") {
            let mut words = rest.split_whitespace();
            let name = words.next().unwrap_or_default();
            let base = match (words.next(), words.next()) {
                (Some("base"), Some(b)) => Some(b),
                _ => None,
            };
            heads.push((at, at + line.len(), name, base));
        }
        at += line.len();
    }
    let mut out: Vec<Section> = Vec::with_capacity(heads.len());
    for (i, &(_, body_start, name, base)) in heads.iter().enumerate() {
        let end = heads.get(i + 1).map_or(text.len(), |&(s, ..)| s);
        let base = match base {
            None => None,
            Some(b) => Some(out.iter().position(|s| s.name == b)?),
        };
        out.push(Section { name, base, body: text.get(body_start..end).unwrap_or_default() });
    }
    Some(out)
}

impl Index {
    pub(crate) fn parse(
        index: &'static str,
        cz: &'static str,
        zc: &'static str,
    ) -> Result<Index, IndexError> {
        let cz = sections(cz).ok_or(IndexError::BadBase)?;
        let zc = sections(zc).ok_or(IndexError::BadBase)?;
        let mut lines = index.lines().enumerate().filter(|(_, l)| !l.starts_with('#'));
        let (_, header) = lines.next().ok_or(IndexError::NoHeader)?;
        let columns: Vec<&str> = header.split(',').collect();
        let mut rows = Vec::new();
        for (n, line) in lines {
            let bad = |what| IndexError::BadRow { line: n + 1, what };
            if line.trim().is_empty() {
                continue;
            }
            let cols: Vec<&str> = line.split(',').collect();
            let col = |name: &str| {
                columns.iter().position(|c| *c == name).and_then(|i| cols.get(i)).copied()
            };
            let from = col("from").and_then(|s| s.parse().ok()).ok_or(bad("bad from"))?;
            let family = match col("family") {
                Some("default") => RowFamily::Default,
                Some("re") => RowFamily::Re,
                Some("zero") => RowFamily::Zero,
                _ => return Err(bad("bad family")),
            };
            let tables = if col("built_as") == Some("refused") {
                None
            } else {
                let find = |secs: &[Section], name: Option<&str>| {
                    secs.iter().position(|s| Some(s.name) == name)
                };
                let cz = find(&cz, col("cz")).ok_or(bad("unknown cz table"))?;
                let zc = find(&zc, col("zc")).ok_or(bad("unknown zc table"))?;
                let key = |name| {
                    col(name)
                        .and_then(|s| s.strip_prefix("0x"))
                        .and_then(|h| u32::from_str_radix(h, 16).ok())
                        .ok_or(bad("bad key"))
                };
                let keys = [key("key0")?, key("key1")?, key("key2")?];
                let mut layout = GeneratedLayout::default();
                for (name, value) in columns.iter().zip(cols.iter()) {
                    layout.set(name, value.parse().ok());
                }
                Some(RowTables { cz, zc, keys, layout })
            };
            rows.push(VersionRow { from, family, tables });
        }
        rows.sort_by_key(|r| r.from);
        Ok(Index { rows, cz, zc })
    }

    /// The row for `packetver` in `family`, or why there is none.
    pub(crate) fn row(
        &self,
        packetver: u32,
        family: ClientFamily,
    ) -> Result<&RowTables, &'static str> {
        // Rows are sorted by `from`; every interval has a default row.
        let end = self.rows.partition_point(|r| r.from <= packetver);
        let Some(start) = self.rows.get(..end).and_then(|r| r.last()).map(|r| r.from) else {
            return Err("older than every client rAthena's headers distinguish");
        };
        let first = self.rows.partition_point(|r| r.from < start);
        let same_start = self.rows.get(first..end).unwrap_or_default();
        let default = ClientFamily::default_for(packetver);
        let wanted = match (family, default) {
            (f, d) if f == d => RowFamily::Default,
            (ClientFamily::Re, ClientFamily::Main) => RowFamily::Re,
            (ClientFamily::Zero, _) => RowFamily::Zero,
            _ => return Err("rAthena builds only RagexeRE at this date (src/config/packets.hpp)"),
        };
        let row = same_start.iter().find(|r| r.family == wanted);
        match row {
            Some(VersionRow { tables: Some(t), .. }) => Ok(t),
            Some(VersionRow { tables: None, .. }) => {
                Err("rAthena refuses to build it (no obfuscation keys for this date: \
                 src/map/clif_obfuscation.hpp)")
            }
            None => Err("no Zero client before 20171018"),
        }
    }

    /// One version per generated row that rAthena builds: the first date of each interval, in
    /// each family.
    pub(crate) fn versions(&self) -> impl Iterator<Item = (u32, ClientFamily)> + '_ {
        self.rows.iter().filter(|r| r.tables.is_some()).map(|r| {
            let family = match r.family {
                RowFamily::Default => ClientFamily::default_for(r.from),
                RowFamily::Re => ClientFamily::Re,
                RowFamily::Zero => ClientFamily::Zero,
            };
            (r.from, family)
        })
    }
}

/// The embedded index (empty if it failed to parse: then no version is supported).
pub(crate) static INDEX: LazyLock<Index> =
    LazyLock::new(|| Index::parse(INDEX_CSV, CZ_CSV, ZC_CSV).unwrap_or_default());

#[cfg(test)]
pub(crate) fn parse_embedded() -> Result<Index, IndexError> {
    Index::parse(INDEX_CSV, CZ_CSV, ZC_CSV)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(base: Option<usize>, body: &'static str) -> Section {
        Section { name: "t", base, body }
    }

    /// A table's rows are its base's with its own differences applied; a chain that points
    /// forward or at itself (a damaged file: the generator only writes earlier bases) resolves
    /// to nothing rather than to rows of a later table, or not at all.
    #[test]
    fn a_chain_resolves_through_earlier_tables_only() {
        let sections = [
            section(None, "0x0001,2,a,other\n0x0002,2,b,other\n"),
            section(Some(0), "-0x0001\n0x0003,2,c,other\n"),
            section(Some(3), "0x0004,2,d,other\n"),
            section(None, "0x0005,2,e,other\n"),
            section(Some(4), "0x0006,2,f,other\n"),
        ];
        assert_eq!(resolve(&sections, 1), ["0x0002,2,b,other", "0x0003,2,c,other"]);
        assert!(resolve(&sections, 2).is_empty(), "a base further on");
        assert!(resolve(&sections, 4).is_empty(), "a base of itself");
        assert!(resolve(&sections, 5).is_empty(), "no such table");
    }

    /// A malformed index row is reported at its line of the file, comments counted.
    #[test]
    fn a_malformed_index_row_is_reported_at_its_line() {
        let index =
            "# generated\nfrom,family,built_as\n20211103,default,refused\n20211104,odd,main\n";
        assert_eq!(
            Index::parse(index, "", "").map(|i| i.cz.len()),
            Err(IndexError::BadRow { line: 4, what: "bad family" })
        );
    }
}
