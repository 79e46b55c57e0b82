//! On a real rAthena at 20211103: a GM's `@where` is answered, and a dialog with an NPC loaded
//! in fast mode (mes, next, select, close) runs to its end; the `ro-p2p-bot` binary runs a
//! script of JSON lines against the same server.

use ro_p2p_rathena::testing::{
    ANSWER, NPC_DIALOG_SCRIPT, assert_server_kept_everyone, harness, player, runtime, spawn_of,
};

#[test]
fn gm_at_command_and_npc_dialog_get_their_answers_at_20211103() {
    let dir = std::env::temp_dir().join(format!("ro-p2p-npc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("test_npc.txt");
    std::fs::write(&script, NPC_DIALOG_SCRIPT).unwrap();
    let Some(mut h) = harness(20211103, vec![script]) else { return };
    let gm_aid = h.create_account("gmuser1", "pass1234", 'M', 99).unwrap();
    runtime().block_on(async {
        let mut gm = player(&h, "gmuser1", "Gm Tester").await;
        assert_eq!(gm.account_id(), gm_aid);

        // @where answers with the character's map and cell.
        gm.command("@where Gm Tester").await.unwrap();
        let answer = gm
            .wait_for(|p| p.contains(b"prontera") && p.contains(b"Gm Tester"), ANSWER)
            .await
            .unwrap();
        eprintln!("@where answered with {:#06X}: {:?}", answer.id, answer.text_at(4));

        // The NPC is in view; click it and walk its dialog.
        let mut p = player(&h, "npcuser1", "Npc Talker").await;
        let npc = p.wait_for(|pkt| spawn_of(pkt, "TestNpc").is_some(), ANSWER).await.unwrap();
        let npc_id = spawn_of(&npc, "TestNpc").unwrap();
        p.npc_click(npc_id).await.unwrap();
        p.wait_for(|pkt| pkt.contains(b"Hello, traveller."), ANSWER).await.unwrap();
        p.wait_for(|pkt| pkt.id == 0x00B5 && pkt.u32_at(2) == Some(npc_id), ANSWER).await.unwrap();
        p.npc_next(npc_id).await.unwrap();
        let menu = p.wait_for(|pkt| pkt.id == 0x00B7, ANSWER).await.unwrap();
        assert_eq!(menu.u32_at(4), Some(npc_id));
        assert!(menu.contains(b"Yes:No"));
        p.npc_menu(npc_id, 1).await.unwrap();
        p.wait_for(|pkt| pkt.contains(b"You said yes."), ANSWER).await.unwrap();
        p.wait_for(|pkt| pkt.id == 0x00B6 && pkt.u32_at(2) == Some(npc_id), ANSWER).await.unwrap();
        p.npc_close(npc_id).await.unwrap();

        // Still in sync with the server after the dialog: a chat line comes back.
        p.chat("after the dialog").await.unwrap();
        p.wait_for(|pkt| pkt.id == 0x008E && pkt.contains(b"after the dialog"), ANSWER)
            .await
            .unwrap();
        assert!(!gm.is_closed() && !p.is_closed());
    });

    // The binary: a script of JSON lines in, JSON lines out.
    let script = dir.join("script.jsonl");
    std::fs::write(
        &script,
        "{\"walk\":{\"x\":158,\"y\":190}}\n{\"chat\":{\"text\":\"from the cli\"}}\n\
         {\"wait_for\":{\"id\":\"0x008e\",\"timeout_ms\":10000}}\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ro-p2p-bot"))
        .args([
            "--login",
            &h.login_addr().to_string(),
            "--user",
            "cliuser1",
            "--password",
            "pass1234",
        ])
        .args(["--packetver", "20211103", "--linger-ms", "0", "--script"])
        .arg(&script)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let lines: Vec<serde_json::Value> =
        stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines[0]["event"], "login");
    assert!(lines.iter().any(|l| l["event"] == "map" && l["map"] == "prontera.gat"));
    assert!(lines.iter().any(|l| l["event"] == "packet" && l["id"] == "0x008e"));
    assert_eq!(lines.iter().filter(|l| l["event"] == "done").count(), 3);

    assert_server_kept_everyone(&mut h);
    h.stop().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
