//! Prometheus text for `GET /metrics`, rendered from the core's [`Stats`] and the service's own
//! counters.
//!
//! Nothing here installs a global `metrics` recorder: the hub task owns a [`ServiceMetrics`]
//! value, so several servers can run in one process (tests, the simulation) without sharing
//! counters. The core counts what it decides (joins, relays, rejects it sends); the service adds
//! what only it sees (authentication failures, slow consumers, frames refused before the core,
//! the signaling latency from a frame's arrival to its relay being queued).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use ro_p2p_core::coordinator::Stats;
use ro_p2p_core::wire::ErrorCode;

/// Upper bounds of the signaling latency histogram buckets, in microseconds.
const LATENCY_BUCKETS_US: &[u64] =
    &[50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 20_000, 50_000, 100_000, 250_000, 1_000_000];

/// A fixed-bucket latency histogram.
#[derive(Clone, Debug)]
pub struct LatencyHistogram {
    counts: Vec<u64>,
    sum_us: u64,
    count: u64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram { counts: vec![0; LATENCY_BUCKETS_US.len()], sum_us: 0, count: 0 }
    }
}

impl LatencyHistogram {
    /// Records one observation.
    pub fn observe(&mut self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        if let Some(i) = LATENCY_BUCKETS_US.iter().position(|b| us <= *b) {
            self.counts[i] += 1;
        }
        self.sum_us = self.sum_us.saturating_add(us);
        self.count += 1;
    }

    /// How many observations were recorded.
    pub fn count(&self) -> u64 {
        self.count
    }
}

/// Counters only the service sees, owned by the hub task.
#[derive(Clone, Debug, Default)]
pub struct ServiceMetrics {
    /// Rejections decided by the service, not the core (auth, slow consumers, binary and
    /// oversized frames), by code.
    pub rejects: BTreeMap<ErrorCode, u64>,
    /// WebSocket connections handed to the core since start.
    pub connections_accepted: u64,
    /// Time from a signaling frame's arrival to its relay being queued.
    pub signaling_latency: LatencyHistogram,
}

impl ServiceMetrics {
    /// Counts one rejection by the service.
    pub fn reject(&mut self, code: ErrorCode) {
        *self.rejects.entry(code).or_default() += 1;
    }
}

fn escape(label: &str) -> String {
    let mut out = String::with_capacity(label.len());
    for c in label.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Appends the gauges the connection tasks keep (not the hub): signaling connections open,
/// authenticated or not, and those still waiting for their `auth` frame.
pub fn render_connection_gauges(out: &mut String, open: usize, pending_auth: usize) {
    header(
        out,
        "ro_p2p_connections_open",
        "gauge",
        "Signaling connections open on this instance, authenticated or not (counted against \
         max_connections).",
    );
    let _ = writeln!(out, "ro_p2p_connections_open {open}");
    header(
        out,
        "ro_p2p_connections_pending_auth",
        "gauge",
        "Signaling connections on this instance still waiting for their auth frame.",
    );
    let _ = writeln!(out, "ro_p2p_connections_pending_auth {pending_auth}");
}

/// Renders every metric in the Prometheus text exposition format (version 0.0.4).
pub fn render(
    stats: &Stats,
    service: &ServiceMetrics,
    uptime_s: u64,
    shutting_down: bool,
) -> String {
    let mut out = String::with_capacity(4096);

    header(&mut out, "ro_p2p_up", "gauge", "1 while serving, 0 once shutting down.");
    let _ = writeln!(out, "ro_p2p_up {}", u8::from(!shutting_down));
    header(&mut out, "ro_p2p_uptime_seconds", "gauge", "Seconds since the coordinator started.");
    let _ = writeln!(out, "ro_p2p_uptime_seconds {uptime_s}");

    header(
        &mut out,
        "ro_p2p_connections",
        "gauge",
        "Open signaling connections (connected peers).",
    );
    let _ = writeln!(out, "ro_p2p_connections {}", stats.connections);
    header(
        &mut out,
        "ro_p2p_connections_accepted_total",
        "counter",
        "Authenticated signaling connections since start.",
    );
    let _ = writeln!(out, "ro_p2p_connections_accepted_total {}", service.connections_accepted);

    header(&mut out, "ro_p2p_sessions", "gauge", "Live P2P sessions, by zone.");
    for (zone, n) in &stats.sessions_per_zone {
        let _ = writeln!(out, "ro_p2p_sessions{{zone=\"{}\"}} {n}", escape(zone.as_str()));
    }
    header(&mut out, "ro_p2p_players", "gauge", "Seated session members (P2P players), by zone.");
    for (zone, n) in &stats.players_per_zone {
        let _ = writeln!(out, "ro_p2p_players{{zone=\"{}\"}} {n}", escape(zone.as_str()));
    }
    header(
        &mut out,
        "ro_p2p_seats_in_grace",
        "gauge",
        "Seats kept for disconnected members within the reconnect grace period.",
    );
    let _ = writeln!(out, "ro_p2p_seats_in_grace {}", stats.seats_in_grace);

    let counters: [(&str, &str, u64); 6] = [
        ("ro_p2p_joins_total", "Session joins (including resumed seats).", stats.joins),
        ("ro_p2p_leaves_total", "Session leaves (explicit, replaced or timed out).", stats.leaves),
        ("ro_p2p_sessions_created_total", "Sessions created.", stats.sessions_created),
        ("ro_p2p_sessions_expired_total", "Sessions expired.", stats.sessions_expired),
        (
            "ro_p2p_host_changes_total",
            "Host elections that changed a session's host.",
            stats.host_changes,
        ),
        ("ro_p2p_key_rotations_total", "Session key rotations.", stats.key_rotations),
    ];
    for (name, help, value) in counters {
        header(&mut out, name, "counter", help);
        let _ = writeln!(out, "{name} {value}");
    }

    header(&mut out, "ro_p2p_relays_total", "counter", "Signals relayed between members, by type.");
    for (ty, n) in &stats.relays {
        let _ = writeln!(out, "ro_p2p_relays_total{{type=\"{}\"}} {n}", escape(ty));
    }

    header(
        &mut out,
        "ro_p2p_rejects_total",
        "counter",
        "Errors sent and connections closed, by code.",
    );
    let mut rejects: BTreeMap<ErrorCode, u64> = stats.rejects.clone();
    for (code, n) in &service.rejects {
        *rejects.entry(*code).or_default() += n;
    }
    for (code, n) in &rejects {
        let _ = writeln!(out, "ro_p2p_rejects_total{{code=\"{}\"}} {n}", code.as_str());
    }

    let name = "ro_p2p_signaling_latency_seconds";
    header(
        &mut out,
        name,
        "histogram",
        "Time from a signaling frame's arrival to its relay being queued to the recipient.",
    );
    let h = &service.signaling_latency;
    let mut cumulative = 0u64;
    for (bound_us, n) in LATENCY_BUCKETS_US.iter().zip(&h.counts) {
        cumulative += n;
        let le = *bound_us as f64 / 1e6;
        let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", h.count);
    let _ = writeln!(out, "{name}_sum {}", h.sum_us as f64 / 1e6);
    let _ = writeln!(out, "{name}_count {}", h.count);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_end_with_inf() {
        let mut m = ServiceMetrics::default();
        m.signaling_latency.observe(Duration::from_micros(80));
        m.signaling_latency.observe(Duration::from_millis(3));
        m.signaling_latency.observe(Duration::from_secs(5));
        m.reject(ErrorCode::AuthInvalid);
        let text = render(&Stats::default(), &m, 7, false);
        assert!(text.contains("ro_p2p_signaling_latency_seconds_bucket{le=\"0.0001\"} 1\n"));
        assert!(text.contains("ro_p2p_signaling_latency_seconds_bucket{le=\"0.005\"} 2\n"));
        assert!(text.contains("ro_p2p_signaling_latency_seconds_bucket{le=\"1\"} 2\n"));
        assert!(text.contains("ro_p2p_signaling_latency_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("ro_p2p_rejects_total{code=\"auth-invalid\"} 1\n"));
        assert!(text.contains("ro_p2p_uptime_seconds 7\n"));
    }
}
