use std::net::Ipv4Addr;

use super::*;
use crate::packet::{ClientEncoder, Obfuscation, PacketLen, PacketVersion, ServerDecoder};

const V21: PacketVersion = PacketVersion::V20211103;
const V15: PacketVersion = PacketVersion::V20151104;

/// An `AC_ACCEPT_LOGIN` as rAthena 20211103 fills it (`loginclif.cpp`), with `servers` entries.
fn accept_login_0ac4(servers: &[([u8; 4], u16, &str)]) -> Vec<u8> {
    let mut p = vec![0u8; 64];
    p[0..2].copy_from_slice(&0x0AC4u16.to_le_bytes());
    p[4..8].copy_from_slice(&111u32.to_le_bytes());
    p[8..12].copy_from_slice(&2_000_001u32.to_le_bytes());
    p[12..16].copy_from_slice(&222u32.to_le_bytes());
    p[46] = 1;
    p[47..63].copy_from_slice(b"0123456789abcdef");
    for (ip, port, name) in servers {
        let mut s = vec![0u8; 160];
        s[0..4].copy_from_slice(ip);
        s[4..6].copy_from_slice(&port.to_le_bytes());
        s[6..6 + name.len()].copy_from_slice(name.as_bytes());
        s[26..28].copy_from_slice(&7u16.to_le_bytes());
        p.extend_from_slice(&s);
    }
    let len = p.len() as u16;
    p[2..4].copy_from_slice(&len.to_le_bytes());
    p
}

fn accept_login_0069() -> Vec<u8> {
    let mut p = vec![0u8; 47 + 32];
    p[0..2].copy_from_slice(&0x0069u16.to_le_bytes());
    p[2..4].copy_from_slice(&79u16.to_le_bytes());
    p[4..8].copy_from_slice(&5u32.to_le_bytes());
    p[8..12].copy_from_slice(&2_000_002u32.to_le_bytes());
    p[12..16].copy_from_slice(&6u32.to_le_bytes());
    p[46] = 0;
    p[47..51].copy_from_slice(&[127, 0, 0, 1]);
    p[51..53].copy_from_slice(&6121u16.to_le_bytes());
    p[53..59].copy_from_slice(b"rAthen");
    p
}

fn info(version: PacketVersion, cid: u32, name: &str, slot: u8) -> Vec<u8> {
    // Offsets written independently of InfoLayout: from rAthena's CHARACTER_INFO by hand.
    let (len, job_at, level_at, name_at, slot_at, map_at, sex_at) = match version {
        PacketVersion::V20211103 => (175, 84, 92, 108, 138, 142, 174),
        PacketVersion::V20151104 => (147, 56, 64, 80, 110, 114, 146),
        _ => unreachable!(),
    };
    let mut e = vec![0u8; len];
    e[0..4].copy_from_slice(&cid.to_le_bytes());
    // job and level tell the characters apart: 4000 + slot, 90 + slot
    e[job_at..job_at + 2].copy_from_slice(&(4000 + u16::from(slot)).to_le_bytes());
    e[level_at..level_at + 2].copy_from_slice(&(90 + u16::from(slot)).to_le_bytes());
    e[name_at..name_at + name.len()].copy_from_slice(name.as_bytes());
    e[slot_at] = slot;
    e[map_at..map_at + 12].copy_from_slice(b"prontera.gat");
    e[sex_at] = 1;
    e
}

fn char_list(version: PacketVersion, chars: &[(u32, &str, u8)]) -> Vec<u8> {
    let mut p = vec![0u8; 27];
    p[0..2].copy_from_slice(&0x006Bu16.to_le_bytes());
    for &(cid, name, slot) in chars {
        p.extend_from_slice(&info(version, cid, name, slot));
    }
    let len = p.len() as u16;
    p[2..4].copy_from_slice(&len.to_le_bytes());
    p
}

fn zonesvr_0ac5() -> Vec<u8> {
    let mut p = vec![0u8; 156];
    p[0..2].copy_from_slice(&0x0AC5u16.to_le_bytes());
    p[2..6].copy_from_slice(&150_000u32.to_le_bytes());
    p[6..18].copy_from_slice(b"prontera.gat");
    p[22..26].copy_from_slice(&[127, 0, 0, 1]);
    p[26..28].copy_from_slice(&5121u16.to_le_bytes());
    p
}

#[test]
fn ca_login_is_55_bytes_with_fields_where_rathena_reads_them() {
    let p = ca_login(20211103, "alice_M", "secret", 0).unwrap();
    assert_eq!(p.len(), 55);
    assert_eq!(&p[0..2], &[0x64, 0x00]);
    assert_eq!(u32::from_le_bytes(p[2..6].try_into().unwrap()), 20211103);
    assert_eq!(&p[6..13], b"alice_M");
    assert_eq!(p[13], 0);
    assert_eq!(&p[30..36], b"secret");
    assert_eq!(p[54], 0);
}

#[test]
fn names_that_leave_no_room_for_the_nul_are_refused() {
    let long = "x".repeat(24);
    assert_eq!(
        ca_login(1, &long, "pw", 0),
        Err(GateError::FieldTooLong { field: "user name", len: 24, max: 23 })
    );
    assert!(ch_make_char(V21, &long, 0, 1, 1, 0, Sex::Male).is_err());
    assert!(ca_login(1, &"x".repeat(23), "pw", 0).is_ok());
}

#[test]
fn accept_login_0ac4_yields_keys_token_and_char_servers() {
    let p = accept_login_0ac4(&[([127, 0, 0, 1], 6121, "rAthena"), ([10, 0, 0, 2], 6122, "two")]);
    let LoginReply::Accepted(a) = parse_login_reply(&p).unwrap() else { panic!() };
    assert_eq!((a.login_id1, a.account_id, a.login_id2), (111, 2_000_001, 222));
    assert_eq!(a.sex, Sex::Male);
    assert_eq!(a.web_auth_token.as_deref(), Some("0123456789abcdef"));
    assert_eq!(a.char_servers.len(), 2);
    let s = &a.char_servers[1];
    assert_eq!(
        (s.ip, s.port, s.name.as_str(), s.ip_offset),
        (Ipv4Addr::new(10, 0, 0, 2), 6122, "two", 224)
    );
    assert_eq!(a.char_servers[0].users, 7);
}

#[test]
fn accept_login_0069_has_no_token_and_32_byte_servers() {
    let LoginReply::Accepted(a) = parse_login_reply(&accept_login_0069()).unwrap() else {
        panic!()
    };
    assert_eq!(a.account_id, 2_000_002);
    assert_eq!(a.sex, Sex::Female);
    assert_eq!(a.web_auth_token, None);
    assert_eq!(a.char_servers.len(), 1);
    assert_eq!(a.char_servers[0].ip, Ipv4Addr::LOCALHOST);
    assert_eq!(a.char_servers[0].port, 6121);
    assert_eq!(a.char_servers[0].name, "rAthen");
}

#[test]
fn refusal_and_ban_are_told_apart() {
    let mut r = vec![0u8; 26];
    r[0..2].copy_from_slice(&0x083Eu16.to_le_bytes());
    r[2] = 1;
    assert_eq!(
        parse_login_reply(&r),
        Ok(LoginReply::Refused { error: 1, unblock_time: String::new() })
    );
    assert_eq!(parse_login_reply(&[0x81, 0, 6]), Ok(LoginReply::Banned { reason: 6 }));
    assert_eq!(parse_login_reply(&[0x99, 0, 6]), Err(GateError::UnexpectedId { id: 0x99 }));
}

#[test]
fn truncated_or_mislabelled_replies_are_errors_not_panics() {
    let p = accept_login_0ac4(&[([127, 0, 0, 1], 6121, "a")]);
    for cut in 0..p.len() {
        assert!(parse_login_reply(&p[..cut]).is_err(), "cut {cut}");
    }
    let z = zonesvr_0ac5();
    for cut in 0..z.len() {
        assert!(parse_char_select_reply(&z[..cut]).is_err());
        assert!(server_addresses(&z[..cut]).is_err());
    }
    let l = char_list(V21, &[(1, "a", 0)]);
    for cut in 0..l.len() {
        assert!(parse_char_list(V21, &l[..cut]).is_err());
    }
    assert!(parse_make_char_reply(V21, &[0x6F, 0x0B, 1]).is_err());
    assert!(parse_server_move(&[0x92, 0]).is_err());
    assert!(parse_map_move(&[]).is_err());
    assert!(parse_cz_enter(V21, &[0x36, 0x04, 1]).is_err());
}

#[test]
fn character_entry_sizes_match_rathena_per_version() {
    assert_eq!(character_info_len(V21), 175);
    assert_eq!(character_info_len(V15), 147);
    assert_eq!(character_info_len(PacketVersion::V20180620), 155);
    assert_eq!(character_info_len(PacketVersion::V20120410), 144);
}

#[test]
fn char_list_parses_at_both_shared_versions() {
    for v in [V21, V15] {
        let p = char_list(v, &[(150_000, "Alice", 0), (150_001, "Bob", 2)]);
        let list = parse_char_list(v, &p).unwrap();
        assert_eq!(list.characters.len(), 2);
        let bob = list.in_slot(2).unwrap();
        assert_eq!(
            (bob.char_id, bob.name.as_str(), bob.map.as_str()),
            (150_001, "Bob", "prontera.gat")
        );
        assert_eq!(bob.sex, Some(Sex::Male));
        assert_eq!((bob.job, bob.base_level), (4002, 92), "{v}");
        assert_eq!(list.named("Alice").unwrap().slot, 0);
    }
    let empty = char_list(V21, &[]);
    assert!(parse_char_list(V21, &empty).unwrap().characters.is_empty());
}

#[test]
fn make_char_reply_uses_the_versions_id_and_size() {
    let mut p = 0x0B6Fu16.to_le_bytes().to_vec();
    p.extend_from_slice(&info(V21, 9, "Neo", 1));
    assert_eq!(p.len(), 177);
    let MakeCharReply::Accepted(c) = parse_make_char_reply(V21, &p).unwrap() else { panic!() };
    assert_eq!((c.char_id, c.name.as_str(), c.slot), (9, "Neo", 1));
    let mut p = 0x006Du16.to_le_bytes().to_vec();
    p.extend_from_slice(&info(V15, 10, "Old", 0));
    let MakeCharReply::Accepted(c) = parse_make_char_reply(V15, &p).unwrap() else { panic!() };
    assert_eq!(c.name, "Old");
    assert_eq!(parse_make_char_reply(V21, &[0x6E, 0, 2]), Ok(MakeCharReply::Refused { error: 2 }));
}

#[test]
fn char_builders_match_rathena_layouts() {
    let e = ch_enter(2_000_001, 111, 222, Sex::Female);
    assert_eq!(e.len(), 17);
    assert_eq!(&e[0..2], &[0x65, 0]);
    assert_eq!(u32::from_le_bytes(e[10..14].try_into().unwrap()), 222);
    assert_eq!(e[16], 0);
    assert_eq!(ch_select_char(2), vec![0x66, 0, 2]);
    assert_eq!(ch_ping(7), vec![0x87, 0x01, 7, 0, 0, 0]);
    let m = ch_make_char(V21, "Neo", 1, 2, 3, 0, Sex::Male).unwrap();
    assert_eq!(m.len(), 36);
    assert_eq!(&m[0..2], &[0x39, 0x0A]);
    assert_eq!((m[26], m[27], m[29], m[35]), (1, 2, 3, 1));
    assert_eq!(ch_make_char(V15, "Neo", 1, 2, 3, 0, Sex::Male).unwrap().len(), 36);
    let old = ch_make_char(PacketVersion::V20120410, "Neo", 1, 2, 3, 0, Sex::Male).unwrap();
    assert_eq!((old.len(), &old[0..2]), (31, &[0x70u8, 0x09][..]));
}

#[test]
fn zonesvr_both_forms_yield_char_map_and_address() {
    let CharSelectReply::Zone(z) = parse_char_select_reply(&zonesvr_0ac5()).unwrap() else {
        panic!()
    };
    assert_eq!(z.char_id, 150_000);
    assert_eq!((z.map.as_str(), z.map_base()), ("prontera.gat", "prontera"));
    assert_eq!((z.ip, z.port), (Ipv4Addr::LOCALHOST, 5121));
    let mut old = zonesvr_0ac5()[..28].to_vec();
    old[0..2].copy_from_slice(&0x0071u16.to_le_bytes());
    assert_eq!(parse_char_select_reply(&old), Ok(CharSelectReply::Zone(z)));
    assert_eq!(parse_char_select_reply(&[0x6C, 0, 1]), Ok(CharSelectReply::Refused { error: 1 }));
    assert_eq!(parse_char_select_reply(&[0x40, 0x08, 4, 0]), Ok(CharSelectReply::NoMapServer));
}

#[test]
fn rewrite_moves_every_address_and_nothing_else() {
    let before = accept_login_0ac4(&[([127, 0, 0, 1], 6121, "a"), ([127, 0, 0, 2], 6122, "b")]);
    let mut p = before.clone();
    let to = Ipv4Addr::new(192, 168, 1, 9);
    assert_eq!(rewrite_server_address(&mut p, to, 7000), Ok(2));
    let LoginReply::Accepted(a) = parse_login_reply(&p).unwrap() else { panic!() };
    for s in &a.char_servers {
        assert_eq!((s.ip, s.port), (to, 7000));
    }
    let changed: Vec<usize> = (0..p.len()).filter(|&i| p[i] != before[i]).collect();
    assert!(
        changed.iter().all(|&i| (64..70).contains(&i) || (224..230).contains(&i)),
        "{changed:?}"
    );

    let mut z = zonesvr_0ac5();
    assert_eq!(rewrite_server_address(&mut z, to, 7001), Ok(1));
    let CharSelectReply::Zone(zone) = parse_char_select_reply(&z).unwrap() else { panic!() };
    assert_eq!((zone.ip, zone.port, zone.char_id), (to, 7001, 150_000));

    let mut old = accept_login_0069();
    assert_eq!(rewrite_server_address(&mut old, to, 7002), Ok(1));
    assert_eq!(&old[47..53], &[192, 168, 1, 9, 0x5A, 0x1B]);
}

#[test]
fn server_move_both_forms_and_their_rewrite() {
    let mut p = vec![0u8; 28];
    p[0..2].copy_from_slice(&0x0092u16.to_le_bytes());
    p[2..12].copy_from_slice(b"izlude.gat");
    p[18..20].copy_from_slice(&128u16.to_le_bytes());
    p[20..22].copy_from_slice(&146u16.to_le_bytes());
    p[22..26].copy_from_slice(&[127, 0, 0, 1]);
    p[26..28].copy_from_slice(&5122u16.to_le_bytes());
    let m = parse_server_move(&p).unwrap();
    assert_eq!((m.map.as_str(), m.x, m.y, m.port), ("izlude.gat", 128, 146, 5122));
    let mut long = p.clone();
    long[0..2].copy_from_slice(&0x0AC7u16.to_le_bytes());
    long.resize(156, 0);
    assert_eq!(parse_server_move(&long), Ok(m));
    assert_eq!(rewrite_server_address(&mut long, Ipv4Addr::new(1, 2, 3, 4), 9), Ok(1));
    assert_eq!(parse_server_move(&long).unwrap().ip, Ipv4Addr::new(1, 2, 3, 4));
    let mut mm = p[..22].to_vec();
    mm[0..2].copy_from_slice(&0x0091u16.to_le_bytes());
    assert_eq!(parse_map_move(&mm), Ok(MapMove { map: "izlude.gat".into(), x: 128, y: 146 }));
    let mut other = mm.clone();
    assert_eq!(
        rewrite_server_address(&mut other, Ipv4Addr::LOCALHOST, 1),
        Err(GateError::UnexpectedId { id: 0x91 })
    );
    assert_eq!(other, mm);
}

#[test]
fn cz_enter_per_version_roundtrips_and_is_what_the_map_table_expects() {
    for v in PacketVersion::REFERENCE {
        let p = cz_enter(v, 2_000_001, 150_000, 111, 42, Sex::Male);
        let ids = map_ids(v);
        assert_eq!(p.len(), ids.enter_len, "{v}");
        assert_eq!(
            parse_cz_enter(v, &p),
            Ok(MapEnter {
                account_id: 2_000_001,
                char_id: 150_000,
                login_id1: 111,
                client_tick: 42,
                sex: Sex::Male
            })
        );
        let table = v.table();
        let check = |id: u16, handler: &str, len: Option<u16>| {
            let spec = table.get(id).unwrap_or_else(|| panic!("{v}: {id:#06X} missing"));
            assert_eq!(spec.handler(), handler, "{v} {id:#06X}");
            if let Some(n) = len {
                assert_eq!(spec.len(), PacketLen::Fixed(n), "{v} {id:#06X}");
            }
        };
        check(ids.enter, "clif_parse_WantToConnection", Some(ids.enter_len as u16));
        check(ids.walk, "clif_parse_WalkToXY", Some(5));
        check(ids.tick, "clif_parse_TickSend", Some(6));
        check(ids.turn, "clif_parse_ChangeDir", Some(5));
        check(MapIds::LOADED, "clif_parse_LoadEndAck", Some(2));
        check(MapIds::CHAT, "clif_parse_GlobalMessage", None);
        check(MapIds::EMOTE, "clif_parse_Emotion", Some(3));
        check(MapIds::NPC_CLICK, "clif_parse_NpcClicked", Some(7));
        check(MapIds::NPC_NEXT, "clif_parse_NpcNextClicked", Some(6));
        check(MapIds::NPC_MENU, "clif_parse_NpcSelectMenu", Some(7));
        check(MapIds::NPC_CLOSE, "clif_parse_NpcCloseClicked", Some(6));
    }
}

#[test]
fn obfuscated_cz_enter_is_read_back_by_rathenas_decoder() {
    let mut enc = ClientEncoder::new(V15, Obfuscation::On);
    let mut wire = Vec::new();
    enc.encode(&cz_enter(V15, 1, 2, 3, 4, Sex::Female), &mut wire);
    assert_ne!(&wire[0..2], &[0x60, 0x03]);
    let mut dec = ServerDecoder::new(V15, Obfuscation::On);
    dec.push(&wire);
    let got = dec.next_packet().unwrap().unwrap();
    assert_eq!(parse_cz_enter(V15, &got.bytes).unwrap().char_id, 2);
}

#[test]
fn char_stream_frames_the_raw_account_id_then_packets_in_any_split() {
    let mut stream = 2_000_001u32.to_le_bytes().to_vec();
    let mut enter2 = vec![0x2D, 0x08, 29, 0];
    enter2.resize(29, 0);
    stream.extend_from_slice(&enter2);
    stream.extend_from_slice(&char_list(V21, &[(1, "a", 0)]));
    stream.extend_from_slice(&[0xA0, 0x09, 1, 0, 0, 0]);
    stream.extend_from_slice(&[0x0D, 0x02, 4, 0]);
    let mut pin = vec![0xB9, 0x08];
    pin.resize(12, 0);
    stream.extend_from_slice(&pin);
    stream.extend_from_slice(&zonesvr_0ac5());
    for split in [1, 3, 7, stream.len()] {
        let mut f = GateFramer::char(V21);
        let mut got = Vec::new();
        for chunk in stream.chunks(split) {
            f.push(chunk);
            while let Some(frame) = f.next_frame().unwrap() {
                got.push(match frame {
                    GateFrame::AccountId { account_id, .. } => u32::from(account_id == 2_000_001),
                    GateFrame::Packet { id, .. } => u32::from(id),
                });
            }
        }
        assert_eq!(got, vec![1, 0x082D, 0x006B, 0x09A0, 0x020D, 0x08B9, 0x0AC5], "split {split}");
        assert!(f.pending().is_empty());
    }
}

#[test]
fn login_stream_frames_and_unknown_ids_stop_it_with_the_bytes_kept() {
    let mut f = GateFramer::login(V15);
    f.push(&accept_login_0069());
    f.push(&[0x34, 0x12, 0, 0]);
    assert!(matches!(f.next_frame(), Ok(Some(GateFrame::Packet { id: 0x0069, .. }))));
    let e = f.next_frame().unwrap_err();
    assert_eq!(e, GateFrameError::UnknownId { server: GateServer::Login, id: 0x1234 });
    assert_eq!(f.next_frame().unwrap_err(), e);
    assert_eq!(f.pending(), &[0x34, 0x12, 0, 0]);
    assert_eq!(f.error(), Some(e));

    let mut f = GateFramer::char(V21);
    f.push(&[1, 0, 0, 0, 0x6B, 0, 2, 0]);
    assert!(matches!(f.next_frame(), Ok(Some(GateFrame::AccountId { account_id: 1, .. }))));
    assert!(matches!(
        f.next_frame(),
        Err(GateFrameError::ImpossibleLength { id: 0x6B, len: 2, .. })
    ));
}

#[test]
fn make_char_reply_length_in_the_char_framer_follows_the_version() {
    assert_eq!(gate_packet_len(GateServer::Char, V21, 0x0B6F), Some(Some(177)));
    assert_eq!(gate_packet_len(GateServer::Char, V15, 0x006D), Some(Some(149)));
    assert_eq!(gate_packet_len(GateServer::Login, V21, 0x006B), None);
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn parsers_and_framers_never_panic_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = parse_login_reply(&bytes);
            let _ = parse_char_list(V21, &bytes);
            let _ = parse_char_list(V15, &bytes);
            let _ = parse_make_char_reply(V21, &bytes);
            let _ = parse_char_select_reply(&bytes);
            let _ = parse_server_move(&bytes);
            let _ = parse_map_move(&bytes);
            let _ = parse_cz_enter(V15, &bytes);
            let mut b = bytes.clone();
            let _ = rewrite_server_address(&mut b, Ipv4Addr::LOCALHOST, 1);
            for server in [GateServer::Login, GateServer::Char] {
                let mut f = GateFramer::new(server, V21);
                f.push(&bytes);
                let mut total = 0;
                while let Ok(Some(frame)) = f.next_frame() {
                    total += frame.bytes().len();
                }
                prop_assert_eq!(total + f.pending().len(), bytes.len());
            }
        }
    }
}
