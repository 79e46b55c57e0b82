//! CPU time of this process, for figures that stay honest on a busy machine.
//!
//! The sum of every thread's run time from `/proc/self/task/*/schedstat` (nanoseconds, Linux):
//! the same figure `getrusage(RUSAGE_SELF)` reports for live threads, read without `unsafe`.
//! Threads that exited during a measurement are not counted, so measure while they all live.

/// CPU time used so far by this process's live threads, in nanoseconds; `None` off Linux.
pub fn process_cpu_ns() -> Option<u64> {
    let mut total_ns = 0u64;
    for entry in std::fs::read_dir("/proc/self/task").ok()? {
        let path = entry.ok()?.path().join("schedstat");
        // A thread may exit between the listing and the read; it then counts as nothing.
        let Ok(text) = std::fs::read_to_string(path) else { continue };
        total_ns += text.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total_ns)
}

/// CPU time spent between two readings, in microseconds per unit of work.
pub fn cpu_us_per(start_ns: Option<u64>, end_ns: Option<u64>, units: usize) -> Option<f64> {
    let spent_ns = end_ns?.checked_sub(start_ns?)?;
    Some(spent_ns as f64 / 1000.0 / units.max(1) as f64)
}
