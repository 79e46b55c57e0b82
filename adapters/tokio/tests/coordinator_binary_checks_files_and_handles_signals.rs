//! The real `ro-p2p-coordinator` binary as an operator runs it: `--check-config` and the start
//! refuse a configuration whose files are missing (naming the key, on stderr even when logging
//! goes to a file), SIGHUP reopens the log file (logrotate) without stopping, and SIGTERM and
//! SIGINT stop it gracefully (exit 0).
#![cfg(unix)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ro-p2p-coordinator");
/// Bound on waiting for the process to write what is expected.
const WAIT: Duration = Duration::from_secs(30);

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rop2p-coord-bin-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write_config(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("config.yaml");
    let text = format!(
        "coordinator:\n  host: 127.0.0.1\n  port: 0\n  require_authentication: false\n{body}"
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Waits until `file` contains `needle` (bounded); returns its text.
fn wait_for(file: &Path, needle: &str, child: &mut Child) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the coordinator exited ({status}) before writing {needle:?}; log:\n{text}");
        }
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in {} after {WAIT:?}:\n{text}",
            file.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(child: &Child, name: &str) {
    let ok = Command::new("kill").arg(format!("-{name}")).arg(child.id().to_string()).status();
    assert!(ok.unwrap().success(), "kill -{name}");
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "the coordinator did not stop within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn check_config_refuses_a_missing_certificate_and_log_directory() {
    let d = dir("check");
    let cfg = write_config(
        &d,
        "security:\n  ssl_cert: /nonexistent/cert.pem\n  ssl_key: /nonexistent/key.pem\n",
    );
    let o = run(&["--config", cfg.to_str().unwrap(), "--check-config"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("security.ssl_cert"), "{}", stderr(&o));
    assert!(stderr(&o).contains("/nonexistent/cert.pem"), "{}", stderr(&o));

    let cfg = write_config(&d, "logging:\n  file: /nonexistent-dir/coordinator.log\n");
    let o = run(&["--config", cfg.to_str().unwrap(), "--check-config"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("logging.file"), "{}", stderr(&o));
    // The start runs the same check.
    let o = run(&["--config", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("/nonexistent-dir"), "{}", stderr(&o));

    let log = d.join("coordinator.log");
    let cfg = write_config(&d, &format!("logging:\n  file: {}\n", log.display()));
    let o = run(&["--config", cfg.to_str().unwrap(), "--check-config"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!log.exists(), "--check-config created the log file");
}

#[test]
fn a_fatal_start_error_reaches_stderr_when_logging_goes_to_a_file() {
    let d = dir("fatal");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let log = d.join("coordinator.log");
    let cfg = write_config(&d, &format!("logging:\n  file: {}\n", log.display()));
    let o = run(&["--config", cfg.to_str().unwrap(), "--port", &port]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("cannot bind"), "stderr: {}", stderr(&o));
    assert!(std::fs::read_to_string(&log).unwrap().contains("cannot bind"));
}

#[test]
fn sighup_reopens_the_log_file_and_sigterm_or_sigint_stop_gracefully() {
    for stop in ["TERM", "INT"] {
        let d = dir(&format!("signals-{stop}"));
        let log = d.join("coordinator.log");
        let cfg = write_config(&d, &format!("logging:\n  file: {}\n", log.display()));
        let mut child = Command::new(BIN)
            .args(["--config", cfg.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for(&log, "coordinator listening", &mut child);
        // logrotate: move the file away, then signal.
        let rotated = d.join("coordinator.log.1");
        std::fs::rename(&log, &rotated).unwrap();
        signal(&child, "HUP");
        wait_for(&log, "log file reopened", &mut child);
        assert!(child.try_wait().unwrap().is_none(), "SIGHUP stopped the coordinator");
        signal(&child, stop);
        let status = wait_exit(&mut child);
        assert_eq!(status.code(), Some(0), "SIG{stop}");
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.contains(&format!("SIG{stop} received: stopping")), "{text}");
        assert!(text.contains("coordinator stopped"), "{text}");
        let old = std::fs::read_to_string(&rotated).unwrap();
        assert!(!old.contains("reopened"), "lines after the rotation went to the old file");
    }
}

/// `GET path` over plain HTTP/1.0; the response text.
fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn with_redis_configured_but_down_health_is_degraded_with_the_reason() {
    let d = dir("redis-down");
    // A port nothing listens on: bind, note it, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let log = d.join("coordinator.log");
    let cfg = write_config(
        &d,
        &format!(
            "  redis:\n    url: redis://127.0.0.1:{port}\nlogging:\n  file: {}\n",
            log.display()
        ),
    );
    let mut child = Command::new(BIN)
        .args(["--config", cfg.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let text = wait_for(&log, "cluster store unreachable", &mut child);
    assert!(
        text.contains("cluster mode"),
        "the start log does not say cluster mode is on:\n{text}"
    );
    let text = wait_for(&log, "coordinator listening", &mut child);
    let addr = text
        .split("local=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("listening address")
        .to_owned();
    let response = http_get(&addr, "/api/v1/health");
    signal(&child, "TERM");
    assert_eq!(wait_exit(&mut child).code(), Some(0));
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    let health: serde_json::Value = serde_json::from_str(body).expect(&response);
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["cluster"]["store"], "unreachable", "{health}");
    assert!(health["cluster"]["store_error"].as_str().is_some_and(|e| !e.is_empty()), "{health}");
}
