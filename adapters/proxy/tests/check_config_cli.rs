//! `ro-p2p check-config`: each client format and the coordinator's config.yaml are checked with
//! the runtime's own errors; ignored settings are named with the reason; backups come from a
//! resourceinfo.ini beside config.ini; a BOM is accepted and a missing `[P2P]` is named.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn check(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ro-p2p"))
        .arg("check-config")
        .args(args)
        .output()
        .expect("spawn ro-p2p")
}

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rop2p-check-config-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_owned()
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "stderr: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn err(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(1), "stdout: {}", String::from_utf8_lossy(&o.stdout));
    String::from_utf8(o.stderr.clone()).unwrap()
}

#[test]
fn the_guides_p2p_config_json_is_valid_and_its_ignored_settings_are_named() {
    let d = dir("json");
    let f = write(
        &d,
        "p2p_config.json",
        r#"{
          "coordinator": { "rest_api_url": "http://localhost:8001/api/v1",
                           "websocket_url": "ws://localhost:8001/api/v1/signaling/ws" },
          "security": { "enable_encryption": false },
          "zones": { "p2p_enabled_zones": ["prontera"], "fallback_on_failure": false }
        }"#,
    );
    let out = ok(&check(&[&f]));
    assert!(
        out.contains("coordinator (primary): ws://localhost:8001/api/v1/signaling/ws"),
        "{out}"
    );
    assert!(out.contains("zones: prontera"), "{out}");
    assert!(out.contains("warning: coordinator.rest_api_url: unsupported, ignored: "), "{out}");
    assert!(out.contains("warning: security.enable_encryption: unsupported, ignored: peer frames are always sealed"), "{out}");
    assert!(out.contains("warning: zones.fallback_on_failure: unsupported, ignored"), "{out}");

    let bad = write(
        &d,
        "bad.json",
        r#"{ "p2p": { "max_peers": 100000 }, "coordinator": { "websocket_url": "ws://h/ws" } }"#,
    );
    let e = err(&check(&[&bad]));
    assert!(e.contains("p2p.max_peers: must be between 0 and 1000, got 100000"), "{e}");
    let bad = write(
        &d,
        "policy.json",
        r#"{ "p2p": { "policy": "chat=nowhere" }, "coordinator": { "websocket_url": "ws://h/ws" } }"#,
    );
    assert!(err(&check(&[&bad])).contains("routing policy"));
}

#[test]
fn config_ini_takes_its_backups_from_resourceinfo_ini_beside_it() {
    let d = dir("ini");
    let ini = write(
        &d,
        "config.ini",
        "\u{feff}[Graphics]\nWidth=800\n[P2P]\nCoordinatorURL=ws://main.example/ws\nUpdateInterval=50\n",
    );
    write(
        &d,
        "resourceinfo.ini",
        "[P2P_HOSTS]\n0=ws://main.example/ws\n1=wss://backup.example/ws\n",
    );
    let out = ok(&check(&[&ini]));
    assert!(out.contains("coordinator (primary): ws://main.example/ws"), "{out}");
    assert!(out.contains("coordinator (backup): wss://backup.example/ws"), "{out}");
    assert!(out.contains("warning: P2P.UpdateInterval: unsupported, ignored"), "{out}");

    let other = write(&d, "other.ini", "[P2P_HOSTS]\n0=tcp://nope\n");
    let e = err(&check(&[&ini, "--resourceinfo", &other]));
    assert!(e.contains("other.ini: P2P_HOSTS.0"), "{e}");

    let none = write(&d, "game.ini", "[Graphics]\nWidth=800\n");
    let e = err(&check(&[&none, "--resourceinfo", &other]));
    assert!(e.contains("[P2P]: missing"), "{e}");
}

#[test]
fn config_yaml_is_checked_with_its_files() {
    let d = dir("yaml");
    let f = write(
        &d,
        "config.yaml",
        "coordinator:\n  port: 8001\n  require_authentication: false\nsecurity:\n  ssl_cert: /nonexistent/cert.pem\n  ssl_key: /nonexistent/key.pem\n",
    );
    let e = err(&check(&[&f]));
    assert!(e.contains("security.ssl_cert"), "{e}");
    let f = write(&d, "good.yml", "coordinator:\n  port: 8001\n  require_authentication: false\n");
    let out = ok(&check(&[&f]));
    assert!(out.contains("listen: 127.0.0.1:8001 (plain)"), "{out}");
    let f = write(&d, "typo.yaml", "coordinator:\n  prot: 8001\n  require_authentication: false\n");
    assert!(err(&check(&[&f])).contains("coordinator.prot: unknown key"));
    let f = write(&d, "config.txt", "");
    assert!(err(&check(&[&f])).contains("--kind"));
}
