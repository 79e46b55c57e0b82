//! On a real rAthena at 20211103: a GM's `@where` is answered, and a dialog with an NPC loaded
//! in fast mode (mes, next, select, close) runs to its end.

mod common;

use common::{ANSWER, assert_server_kept_everyone, harness, player, runtime};
use ro_p2p_rathena::Packet;

const NPC_SCRIPT: &str = "prontera,156,194,4\tscript\tTestNpc\t97,{\n\
    \tmes \"[TestNpc]\";\n\
    \tmes \"Hello, traveller.\";\n\
    \tnext;\n\
    \tswitch(select(\"Yes:No\")) {\n\
    \tcase 1: mes \"You said yes.\"; break;\n\
    \tcase 2: mes \"You said no.\"; break;\n\
    \t}\n\
    \tclose;\n\
    }\n";

fn spawn_of(p: &Packet, name: &str) -> Option<u32> {
    ((0x09FD..=0x09FF).contains(&p.id) && p.contains(name.as_bytes())).then(|| p.u32_at(5))?
}

#[test]
fn gm_at_command_and_npc_dialog_get_their_answers_at_20211103() {
    let dir = std::env::temp_dir().join(format!("ro-p2p-npc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("test_npc.txt");
    std::fs::write(&script, NPC_SCRIPT).unwrap();
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
    assert_server_kept_everyone(&mut h);
    h.stop().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
