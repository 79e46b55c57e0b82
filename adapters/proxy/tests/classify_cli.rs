//! `ro-p2p classify`: the documented JSON lines, routes, desync and incomplete lines, and clear
//! failures for bad arguments and unreadable input.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn classify(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ro-p2p"))
        .arg("classify")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ro-p2p");
    child.stdin.take().expect("stdin").write_all(stdin).expect("write stdin");
    child.wait_with_output().expect("wait")
}

fn stdout_lines(out: &Output) -> Vec<String> {
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).expect("utf-8").lines().map(str::to_owned).collect()
}

/// Walk (0x035F), public chat, an NPC click (0x0090), an emote, then 2 bytes of a partial walk.
fn capture_20211103() -> Vec<u8> {
    let mut b = vec![0x5F, 0x03, 0x25, 0x8C, 0x84];
    let text = b"Alice : hi";
    b.extend([0xF3, 0x00, (4 + text.len()) as u8, 0x00]);
    b.extend(text);
    b.extend([0x90, 0x00, 1, 0, 0, 0, 1]);
    b.extend([0xBF, 0x00, 3]);
    b.extend([0x5F, 0x03]);
    b
}

#[test]
fn prints_one_documented_json_line_per_packet_and_an_incomplete_tail() {
    let lines = stdout_lines(&classify(&["--packetver", "20211103"], &capture_20211103()));
    assert_eq!(
        lines,
        [
            r#"{"offset":0,"id":"0x035F","len":5,"handler":"WalkToXY","category":"movement","route":"server+peers","reason":"policy movement=mirror"}"#,
            r#"{"offset":5,"id":"0x00F3","len":14,"handler":"GlobalMessage","category":"chat","route":"server+peers","reason":"policy chat=mirror"}"#,
            r#"{"offset":19,"id":"0x0090","len":7,"handler":"NpcClicked","category":"npc","route":"server","reason":"npc (never offloaded)"}"#,
            r#"{"offset":26,"id":"0x00BF","len":3,"handler":"Emotion","category":"emote","route":"server+peers","reason":"policy emote=mirror"}"#,
            r#"{"offset":29,"incomplete":true,"len":2,"route":"server","reason":"incomplete: the capture ends inside this packet"}"#,
        ]
    );
}

#[test]
fn policy_and_zone_change_the_route() {
    let walk = [0x5F, 0x03, 0x25, 0x8C, 0x84];
    let peers = stdout_lines(&classify(&["--policy", "movement=peers"], &walk));
    assert!(
        peers[0].ends_with(r#""route":"peers","reason":"policy movement=peers"}"#),
        "{peers:?}"
    );
    let outside = stdout_lines(&classify(
        &["--policy", "movement=peers", "--zone", "prontera", "--p2p-zones", "payon,geffen"],
        &walk,
    ));
    assert!(
        outside[0].ends_with(r#""route":"server","reason":"zone without p2p"}"#),
        "{outside:?}"
    );
    let inside =
        stdout_lines(&classify(&["--zone", "payon", "--p2p-zones", "payon,geffen"], &walk));
    assert!(
        inside[0].ends_with(r#""route":"server+peers","reason":"policy movement=mirror"}"#),
        "{inside:?}"
    );
    let server = stdout_lines(&classify(&["--policy", "movement=server"], &walk));
    assert!(server[0].ends_with(r#""route":"server","reason":"policy movement=server"}"#));
}

#[test]
fn unknown_id_prints_one_desync_line_with_the_rest_of_the_input() {
    let mut input = vec![0x5F, 0x03, 0x25, 0x8C, 0x84];
    input.extend([0xFF, 0xFF, 1, 2, 3, 4, 5, 6, 7, 8]);
    let lines = stdout_lines(&classify(&["--packetver", "20211103"], &input));
    assert_eq!(lines.len(), 2);
    assert_eq!(
        lines[1],
        r#"{"offset":5,"desync":true,"len":10,"route":"server","reason":"desync: unknown packet id 0xFFFF"}"#
    );
}

#[test]
fn obfuscated_capture_shows_de_obfuscated_ids() {
    // 0x0363 (WalkToXY at 20151104) XOR the first mask 0x738E.
    let wire_id = (0x0363u16 ^ 0x738E).to_le_bytes();
    let input = [wire_id[0], wire_id[1], 0x25, 0x8C, 0x84];
    let lines = stdout_lines(&classify(&["--packetver", "20151104"], &input));
    assert_eq!(
        lines,
        [
            r#"{"offset":0,"id":"0x0363","len":5,"handler":"WalkToXY","category":"movement","route":"server+peers","reason":"policy movement=mirror"}"#
        ]
    );
    let plain =
        stdout_lines(&classify(&["--packetver", "20151104", "--obfuscation", "off"], &input));
    assert!(plain[0].contains(r#""desync":true"#), "{plain:?}");
}

#[test]
fn server_only_packets_say_why() {
    let chat = |text: &[u8]| {
        let mut b = vec![0xF3, 0x00, (4 + text.len()) as u8, 0x00];
        b.extend(text);
        b
    };
    let mut input = chat(b"Alice : @warp prontera");
    input.extend([0xBF, 0x00, 3]); // an ordinary emote
    input.extend([0xBF, 0x00, 58]); // dice
    let lines = stdout_lines(&classify(&["--packetver", "20211103"], &input));
    assert!(lines[0].ends_with(r#""route":"server","reason":"chat-command"}"#), "{lines:?}");
    assert!(lines[1].contains(r#""reason":"policy emote=mirror""#), "{lines:?}");
    assert!(lines[2].ends_with(r#""route":"server","reason":"dice-emote"}"#), "{lines:?}");
}

#[test]
fn reads_a_file_argument() {
    let dir = std::env::temp_dir().join(format!("ro-p2p-classify-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("capture.bin");
    std::fs::write(&path, capture_20211103()).expect("write capture");
    let lines = stdout_lines(&classify(&[path.to_str().expect("utf-8 path")], b""));
    assert_eq!(lines.len(), 5);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn any_version_rathena_builds_is_accepted_with_its_family() {
    // A walk (0x035F, 5 bytes) is a walk at 20200401 in each family rAthena builds there.
    let walk = [0x5F, 0x03, 0x25, 0x8C, 0x84];
    for args in [
        &["--packetver", "20200401"][..],
        &["--packetver", "20200401", "--client", "re"][..],
        &["--packetver", "20200401", "--client", "zero"][..],
        &["--packetver", "20200401-zero"][..],
    ] {
        let lines = stdout_lines(&classify(args, &walk));
        assert_eq!(lines.len(), 1, "{args:?}");
        assert!(lines[0].contains(r#""handler":"WalkToXY""#), "{args:?}: {}", lines[0]);
        assert!(lines[0].contains(r#""route":"server+peers""#), "{args:?}: {}", lines[0]);
    }
}

#[test]
fn bad_arguments_and_unreadable_input_fail_with_a_clear_message() {
    for (args, needle) in [
        (&["--packetver", "20150105"][..], "no obfuscation keys"),
        (&["--packetver", "20180620", "--client", "main"][..], "only RagexeRE"),
        (&["--client", "ragexe"][..], "unknown client family"),
        (&["--policy", "npc=peers"][..], "npc can only be routed to the server"),
        (&["--policy", "walking=peers"][..], "unknown policy category"),
        (&["--obfuscation", "maybe"][..], "maybe"),
        (&["--zone", "prontera"][..], "--p2p-zones"),
        (&["/nonexistent/capture.bin"][..], "cannot read /nonexistent/capture.bin"),
    ] {
        let out = classify(args, b"");
        assert!(!out.status.success(), "{args:?} succeeded");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}
