//! The coordinator binary under a low open-file limit serves as many connections as the limit
//! leaves room for and refuses the next with `server-full`, instead of letting `accept` fail.

mod common;

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Client, Proc, free_port, refused_upgrade};
use ro_p2p_tokio::server::{FD_RESERVE, connections_within_open_file_limit};

const WAIT: Duration = Duration::from_secs(10);
const OPEN_FILES: u64 = 100;

#[test]
fn the_fit_keeps_a_reserve_and_never_goes_to_zero() {
    assert_eq!(connections_within_open_file_limit(50_000, 1_024), 1_024 - FD_RESERVE as usize);
    assert_eq!(connections_within_open_file_limit(500, 1_048_576), 500);
    assert_eq!(connections_within_open_file_limit(500, 10), 1);
}

#[tokio::test]
async fn under_a_low_open_file_limit_the_binary_refuses_with_server_full_instead_of_failing_accept()
{
    if Command::new("bash").arg("-c").arg("true").status().is_err() {
        common::skip_or_fail("no bash to set the limit with");
        return;
    }
    let port = free_port();
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(format!("ulimit -n {OPEN_FILES} && exec \"$0\" --port {port} --log-level info"))
        .arg(env!("CARGO_BIN_EXE_ro-p2p-coordinator"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _child = Proc(child);
    // Its log up to the line that says it listens (it prints nothing after, at this level).
    let startup = tokio::time::timeout(
        WAIT,
        tokio::task::spawn_blocking(move || {
            let mut seen = String::new();
            for line in BufReader::new(stdout).lines() {
                let line = line.unwrap();
                seen.push_str(&line);
                seen.push('\n');
                if line.contains("coordinator listening") {
                    break;
                }
            }
            seen
        }),
    )
    .await
    .expect("the coordinator did not start")
    .unwrap();
    assert!(startup.contains("does not fit under the open-file limit"), "{startup}");
    let url = format!("ws://127.0.0.1:{port}/api/v1/signaling/ws");

    let room = connections_within_open_file_limit(50_000, OPEN_FILES);
    let mut clients = Vec::new();
    for i in 0..room {
        let client = Client::connect(&url, &[])
            .await
            .unwrap_or_else(|(_, closed)| panic!("connection {i} of {room}: {closed:?}"));
        clients.push(client);
    }
    let (status, body) = refused_upgrade(&url).await;
    assert_eq!(status, 503, "connection {} over the fitted limit of {room}", room + 1);
    assert_eq!(body["code"], "server-full", "{body}");
    assert!(startup.contains(&format!("serving_at_most={room}")), "{startup}");
}
