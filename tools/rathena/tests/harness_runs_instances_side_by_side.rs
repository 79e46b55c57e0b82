//! Two rAthena instances start at once on different ports, both stay alive, and stop by PID.

use ro_p2p_rathena::harness::{HarnessConfig, Server, pid_alive, start_or_skip};

#[test]
fn two_instances_start_side_by_side_and_stop_by_pid() {
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| start_or_skip(HarnessConfig::new(20211103)));
        let b = s.spawn(|| start_or_skip(HarnessConfig::new(20211103)));
        (a.join().unwrap(), b.join().unwrap())
    });
    let (Some(mut a), Some(mut b)) = (a, b) else { return };
    eprintln!(
        "started in {:.1} s and {:.1} s",
        a.start_duration().as_secs_f64(),
        b.start_duration().as_secs_f64()
    );
    assert_ne!(a.ports(), b.ports());
    a.check_alive().unwrap();
    b.check_alive().unwrap();
    assert!(a.log_contains(Server::Map, "Map Server is now online"));
    assert!(a.db_url().starts_with("mysql://ragnarok:ragnarok@127.0.0.1:"));
    assert_eq!(a.sql("SELECT COUNT(*) FROM login WHERE sex = 'S'").unwrap().trim(), "1");
    let b_dir = b.work_dir().to_path_buf();
    let state = b.detach();
    a.stop().unwrap();
    ro_p2p_rathena::harness::stop_state(&state);
    for pid in state.pids.values() {
        assert!(!pid_alive(*pid), "pid {pid} still running");
    }
    let _ = std::fs::remove_dir_all(b_dir);
}
