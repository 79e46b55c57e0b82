//! Server-to-client (ZC) length tables per PACKETVER: which ids the map server sends and how
//! long each is. Generated from rAthena's headers (`core/data/gen/zc.csv`, one table per distinct
//! result, see `docs/packets.md`), plus the quirks of `shared/data/zc/layouts.md` §1 that are in
//! no table.

use std::sync::{LazyLock, OnceLock};

use crate::packet::PacketVersion;

/// The length rule of one ZC id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZcLen {
    /// Always exactly this many bytes, id included.
    Fixed(u16),
    /// A u16 little-endian total length at offset 2, at least [`ZC_VARIABLE_LEN_MIN`].
    Variable,
}

/// Smallest total length of a variable-length ZC packet (id and length field).
pub const ZC_VARIABLE_LEN_MIN: u16 = 4;

/// Ids and lengths added to every table: in none of the CSVs, but on the wire.
/// `0x025D`: `clif_Auction_close` sends it with `packet_len(0x25E)` = 4 (layouts.md §1).
/// `0x0086`: `ZC_NOTIFY_MOVE`, 16 bytes, which this module injects (layouts.md §3.1).
/// Both have fixed lengths.
const QUIRKS: [(u16, u16); 2] = [(0x025D, 4), (0x0086, 16)];

/// A ZC length table: id-indexed, O(1) lookup.
#[derive(Debug)]
pub struct ZcTable {
    /// `lens[id]`: 0 unknown, -1 variable, else the fixed length.
    lens: Vec<i32>,
    count: usize,
}

impl ZcTable {
    /// Parses rows `id_hex,length,source`. A malformed row is skipped (a unit test
    /// checks that none is): an id missing from the table desyncs the stream, which only stops
    /// injection, so a bad row can never corrupt what the game receives.
    fn parse<'a>(rows: impl Iterator<Item = &'a str>) -> ZcTable {
        let mut lens = vec![0i32; 1 << 16];
        let mut count = 0;
        for line in rows {
            let mut cols = line.split(',');
            let (Some(id), Some(len)) = (cols.next(), cols.next()) else { continue };
            let Some(id) =
                id.trim().strip_prefix("0x").and_then(|h| u16::from_str_radix(h, 16).ok())
            else {
                continue;
            };
            let Ok(len) = len.trim().parse::<i32>() else { continue };
            if let Some(slot) = lens.get_mut(usize::from(id)) {
                if *slot == 0 {
                    count += 1;
                }
                *slot = len;
            }
        }
        for (id, len) in QUIRKS {
            if let Some(slot) = lens.get_mut(usize::from(id)) {
                if *slot == 0 {
                    count += 1;
                }
                *slot = i32::from(len);
            }
        }
        ZcTable { lens, count }
    }

    /// The length rule of `id`, or `None` if the server never sends it at this version (or it
    /// is registered with a length that cannot be framed).
    #[inline]
    pub fn get(&self, id: u16) -> Option<ZcLen> {
        match *self.lens.get(usize::from(id))? {
            -1 => Some(ZcLen::Variable),
            n if n >= 2 => u16::try_from(n).ok().map(ZcLen::Fixed),
            _ => None,
        }
    }

    /// Every id with its length rule, ascending.
    pub fn iter(&self) -> impl Iterator<Item = (u16, ZcLen)> + '_ {
        (0..=u16::MAX).filter_map(|id| self.get(id).map(|len| (id, len)))
    }

    /// Number of ids in the table.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the table has no ids.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The ZC table of `version` (empty if the embedded data failed to parse: then the stream
    /// desyncs at once and nothing is injected).
    pub fn of(version: PacketVersion) -> &'static ZcTable {
        static EMPTY: LazyLock<ZcTable> = LazyLock::new(|| ZcTable::parse(std::iter::empty()));
        static TABLES: LazyLock<Vec<OnceLock<ZcTable>>> = LazyLock::new(|| {
            (0..crate::packet::zc_sections().len()).map(|_| OnceLock::new()).collect()
        });
        let Some(n) = version.zc_table_index() else { return &EMPTY };
        match (TABLES.get(n), crate::packet::zc_sections().get(n)) {
            (Some(cell), Some(_)) => {
                cell.get_or_init(|| ZcTable::parse(crate::packet::zc_rows(n).into_iter()))
            }
            _ => &EMPTY,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `len` counts distinct ids, a row repeated for an id counted once, with the quirks every
    /// table has; variable lengths are `-1`.
    #[test]
    fn a_table_counts_each_id_once_with_its_quirks() {
        let t = ZcTable::parse(["0x0001,6,a", "0x0002,-1,b", "0x0001,8,again", "junk"].into_iter());
        assert_eq!((t.len(), t.is_empty()), (2 + QUIRKS.len(), false));
        assert_eq!((t.get(0x0001), t.get(0x0002)), (Some(ZcLen::Fixed(8)), Some(ZcLen::Variable)));
        let quirk_again = ZcTable::parse(["0x0086,16,notify-move"].into_iter());
        assert_eq!(quirk_again.len(), QUIRKS.len(), "a quirk already in the rows counts once");
        let none = ZcTable::parse(std::iter::empty());
        assert_eq!((none.len(), none.is_empty()), (QUIRKS.len(), false));
        assert!(ZcTable { lens: vec![0; 4], count: 0 }.is_empty());
        assert!(ZcTable::of(PacketVersion::V20211103).len() > 500);
    }
}
