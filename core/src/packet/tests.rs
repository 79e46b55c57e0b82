//! The packet tables: the embedded and generated tables parse, equal the hand-checked ones,
//! and every version rAthena knows is reachable by number and family.

use super::*;

/// The hand-checked client-to-server tables (`core/data/ro_packets_*.csv`), kept to compare the
/// generated ones with.
const HAND: [(PacketVersion, &str, usize); 4] = [
    (PacketVersion::V20211103, include_str!("../../data/ro_packets_20211103.csv"), 400),
    (PacketVersion::V20180620, include_str!("../../data/ro_packets_20180620.csv"), 364),
    (PacketVersion::V20151104, include_str!("../../data/ro_packets_20151104.csv"), 339),
    (PacketVersion::V20120410, include_str!("../../data/ro_packets_20120410.csv"), 266),
];

#[test]
fn embedded_tables_parse_with_expected_row_counts() {
    for (_, csv, rows) in HAND {
        assert_eq!(PacketTable::parse(csv).map(|t| t.len()), Ok(rows));
    }
    assert_eq!(PacketTable::parse(table::CSV_LOGIN_CHAR).map(|t| t.len()), Ok(29));
    let index = versions::parse_embedded().expect("generated index parses");
    assert_eq!(index.cz.len(), versions::INDEX.cz.len());
    for n in 0..index.cz.len() {
        let t = PacketTable::generated(n).expect("generated table parses");
        assert!(!t.is_empty(), "table {n}");
    }
    for n in 0..index.zc.len() {
        let rows = versions::resolve(&index.zc, n);
        assert!(rows.len() > 100, "zc table {n}");
        for row in rows {
            let mut cols = row.split(',');
            let id = cols.next().and_then(|h| h.strip_prefix("0x"));
            assert!(id.is_some_and(|h| u16::from_str_radix(h, 16).is_ok()), "{row}");
            let len = cols.next().and_then(|l| l.parse::<i32>().ok());
            assert!(len.is_some_and(|l| l == -1 || (0..=u16::MAX.into()).contains(&l)), "{row}");
        }
    }
    assert_eq!(PacketVersion::V20211103.table().len(), 400);
}

#[test]
fn generated_tables_equal_the_hand_checked_ones() {
    for (version, csv, _) in HAND {
        let hand = PacketTable::parse(csv).unwrap();
        let rows = |t: &PacketTable| -> Vec<(u16, PacketLen, &str, Category)> {
            t.iter().map(|s| (s.id(), s.len(), s.handler(), s.category())).collect()
        };
        assert_eq!(rows(version.table()), rows(&hand), "{version}");
    }
}

#[test]
fn every_generated_version_is_reachable_by_number_and_family() {
    let all: Vec<PacketVersion> = PacketVersion::every().collect();
    // 1,213 interval starts and families at the pinned commit, 373 of them refused by rAthena.
    assert!(all.len() > 800, "{} versions", all.len());
    for v in &all {
        assert_eq!(PacketVersion::new(v.number(), Some(v.family())), Ok(*v));
        assert_eq!(v.to_string().parse::<PacketVersion>(), Ok(*v));
        assert!(!v.table().is_empty(), "{v}");
    }
    for v in PacketVersion::REFERENCE {
        assert_eq!(PacketVersion::from_number(v.number()), Ok(v));
        // Its interval starts at or before it, in the same family.
        let start = all.iter().filter(|s| s.family() == v.family() && s.number() <= v.number());
        let start = start.max_by_key(|s| s.number()).unwrap();
        assert!(std::ptr::eq(start.table(), v.table()), "{v} and {start}");
    }
    // Between two thresholds a version has its interval's tables.
    assert_eq!(
        PacketVersion::from_number(20200401).unwrap().table().iter().count(),
        PacketVersion::from_number(20200402).unwrap().table().iter().count()
    );
}

#[test]
fn versions_rathena_refuses_are_refused_with_the_reason() {
    let reason = |n: u32, f: Option<ClientFamily>| PacketVersion::new(n, f).unwrap_err().reason;
    // An obfuscated-era date with no keys: rAthena's clif_obfuscation.hpp #errors.
    assert!(reason(20150105, None).contains("obfuscation keys"));
    // No Ragexe at a RagexeRE-only date.
    assert!(reason(20180620, Some(ClientFamily::Main)).contains("RagexeRE"));
    assert!(reason(20100101, Some(ClientFamily::Zero)).contains("Zero"));
    assert!(reason(20000101, None).contains("older"));
    assert!("20200401-ragexe".parse::<PacketVersion>().is_err());
    assert!("2021".parse::<PacketVersion>().is_err());
    // What used to be refused is now a version.
    let v: PacketVersion = "20200401".parse().unwrap();
    assert_eq!((v.number(), v.family()), (20200401, ClientFamily::Main));
    let z: PacketVersion = "20200401-zero".parse().unwrap();
    assert_eq!(z.to_string(), "20200401-zero");
    assert_eq!(PacketVersion::new(20180620, Some(ClientFamily::Re)), Ok(PacketVersion::V20180620));
}

#[test]
fn rathena_default_family_follows_its_config() {
    use ClientFamily::{Main, Re};
    for (n, f) in [
        (20151104, Main),
        (20151105, Re),
        (20180703, Re),
        (20180704, Main),
        (20200901, Main),
        (20200902, Re),
        (20211118, Re),
        (20211119, Main),
    ] {
        assert_eq!(ClientFamily::default_for(n), f, "{n}");
    }
}

/// One packet of `handler` at `version` (a variable one with 8 bytes of text after its header).
fn packet_of(version: PacketVersion, handler: &str) -> Vec<u8> {
    let spec = version.table().iter().find(|s| s.handler() == handler);
    let spec = spec.unwrap_or_else(|| panic!("{handler} at {version}"));
    let mut p = spec.id().to_le_bytes().to_vec();
    match spec.len() {
        PacketLen::Fixed(n) => p.resize(usize::from(n), b'a'),
        PacketLen::Variable => {
            p.extend_from_slice(&12u16.to_le_bytes());
            p.extend_from_slice(b"A : hi!\0");
        }
    }
    p
}

/// Each chat handler that is not public chat stays on the server for its own reason, which
/// users see in `classify` output and metrics; a movement, chat or emote handler this crate does
/// not parse (a categories file newer than the code) is server-only as unrecognised.
#[test]
fn every_chat_but_public_chat_is_server_only_for_its_own_reason() {
    let v = PacketVersion::V20211103;
    for (handler, reason) in [
        ("clif_parse_WisMessage", ServerOnlyReason::Whisper),
        ("clif_parse_PartyMessage", ServerOnlyReason::PartyChat),
        ("clif_parse_GuildMessage", ServerOnlyReason::GuildChat),
        ("clif_parse_clan_chat", ServerOnlyReason::ClanChat),
        ("clif_parse_BattleChat", ServerOnlyReason::BattlegroundChat),
    ] {
        let packet = packet_of(v, handler);
        let c = classify_packet(v, &packet).unwrap_or_else(|| panic!("{handler} frames"));
        assert_eq!(c.server_only_reason(), Some(reason), "{handler}");
    }
    let newer: &'static PacketTable = Box::leak(Box::new(
        PacketTable::parse(
            "id,len,handler,category\n0x0F01,-1,clif_parse_Shout,chat\n\
             0x0F02,4,clif_parse_Hop,movement\n0x0F03,3,clif_parse_Wink,emote\n",
        )
        .expect("parses"),
    ));
    for (id, packet) in [
        (0x0F01, &[0x01, 0x0F, 6, 0, b'h', b'i'][..]),
        (0x0F02, &[0x02, 0x0F, 1, 2][..]),
        (0x0F03, &[0x03, 0x0F, 1][..]),
    ] {
        let spec = newer.get(id).expect("the row");
        let c = classify::classify(
            classify::Dialect::Map { nul_chat: false },
            &chat::OwnName::UNKNOWN,
            spec,
            packet,
        );
        assert_eq!(c.server_only_reason(), Some(ServerOnlyReason::UnrecognisedHandler), "{id:#x}");
    }
}

/// A malformed row is reported at its own line of the CSV (the header is line 1).
#[test]
fn a_malformed_row_is_reported_at_its_line() {
    let csv = "id,len,handler,category\n0x0001,2,clif_parse_A,other\n0x0002,x,clif_parse_B,other\n";
    assert_eq!(PacketTable::parse(csv).map(|t| t.len()), Err(TableError::BadLength { line: 3 }));
    let csv = "id,len,handler,category\n0x0001,2,clif_parse_A\n";
    assert_eq!(
        PacketTable::parse(csv).map(|t| t.len()),
        Err(TableError::MissingColumns { line: 2 })
    );
}

#[test]
fn a_table_of_only_its_header_is_empty() {
    let t = PacketTable::parse("id,len,handler,category\n").expect("parses");
    assert!(t.is_empty());
    assert_eq!(t.len(), 0);
    assert!(!PacketVersion::V20211103.table().is_empty());
}

/// rAthena obfuscates ids by default from 20110817 until the keys become zero after 20180307;
/// chat text is NUL-terminated before 20151001.
#[test]
fn obfuscation_and_nul_terminated_chat_follow_the_version() {
    let at = |n| PacketVersion::from_number(n).unwrap_or_else(|e| panic!("{n}: {e}"));
    for (n, obfuscated) in
        [(20110718, false), (20110817, true), (20151104, true), (20180307, true), (20180308, false)]
    {
        assert_eq!(at(n).obfuscated_by_default(), obfuscated, "{n}");
    }
    assert!(!PacketVersion::V20211103.obfuscated_by_default());
    for (n, nul) in [(20150916, true), (20151001, false), (20151007, false)] {
        assert_eq!(at(n).chat_nul_terminated(), nul, "{n}");
    }
}
