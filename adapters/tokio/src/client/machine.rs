//! What this machine offers as a session host, measured for the client core's capabilities:
//! CPU cores, CPU clock, memory, and (on Linux) the fastest network interface's link speed.
//! The round trip to the coordinator is the core's to measure (heartbeats), so `latency_ms`
//! is left 0 here. A figure that cannot be read is 0, which meets only a minimum of 0.

use ro_p2p_core::wire::Capabilities;

/// Measures this machine (a few milliseconds: it reads OS counters, it does not benchmark).
pub fn measure() -> Capabilities {
    use sysinfo::{CpuRefreshKind, MemoryRefreshKind, RefreshKind, System};
    let sys = System::new_with_specifics(
        RefreshKind::nothing()
            .with_cpu(CpuRefreshKind::nothing().with_frequency())
            .with_memory(MemoryRefreshKind::nothing().with_ram()),
    );
    let cpu_cores =
        std::thread::available_parallelism().map_or(sys.cpus().len(), std::num::NonZeroUsize::get);
    let cpu_mhz = sys.cpus().iter().map(sysinfo::Cpu::frequency).max().unwrap_or(0);
    let memory_mb = sys.total_memory() / (1024 * 1024);
    Capabilities {
        cpu_cores: u32::try_from(cpu_cores).unwrap_or(u32::MAX),
        cpu_mhz: u32::try_from(cpu_mhz).unwrap_or(u32::MAX),
        memory_mb: u32::try_from(memory_mb).unwrap_or(u32::MAX),
        bandwidth_mbps: link_speed_mbps().unwrap_or(0),
        latency_ms: 0,
    }
}

/// The fastest up, non-loopback interface's link speed (Linux `/sys/class/net/*/speed`).
#[cfg(target_os = "linux")]
fn link_speed_mbps() -> Option<u32> {
    let dir = std::fs::read_dir("/sys/class/net").ok()?;
    dir.filter_map(Result::ok)
        .filter(|e| e.file_name() != "lo")
        .filter(|e| {
            std::fs::read_to_string(e.path().join("operstate")).is_ok_and(|s| s.trim() == "up")
        })
        // Virtual interfaces report -1 or nothing.
        .filter_map(|e| std::fs::read_to_string(e.path().join("speed")).ok()?.trim().parse().ok())
        .filter(|&s: &i64| s > 0)
        .max()
        .and_then(|s| u32::try_from(s).ok())
}

#[cfg(not(target_os = "linux"))]
fn link_speed_mbps() -> Option<u32> {
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_machine_has_cores_and_memory() {
        let c = super::measure();
        assert!(c.cpu_cores >= 1, "{c:?}");
        assert!(c.memory_mb >= 64, "{c:?}");
        assert_eq!(c.latency_ms, 0, "the core measures latency");
    }
}
