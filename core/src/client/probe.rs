//! Link measurement: a tiny ping/pong over the link itself, and what the recent ones say.
//!
//! A transport's own statistics do not give what the router needs: WebRTC's give an ICE
//! round-trip time (from STUN consent checks) but no loss for an unreliable data channel, and
//! STUN checks do not cross DTLS and SCTP the way frames do. So each link sends a probe every
//! probe interval on the movement channel; the peer answers at once; the round trip is timed
//! with the sender's clock only. The WebRTC adapter carries probes as *text* messages (the
//! client core only ever sends binary ones, so the two never mix and no framing byte is added
//! to the core's frames); the simulation's transport as its own datagrams. Both keep the books
//! here, so the measurement the client judges link health by ([`super::LinkEvent::Measured`])
//! is computed the same way everywhere. Pure: times are inputs (microseconds on any monotonic
//! clock the caller chooses).

use std::collections::VecDeque;

const PING_PREFIX: &str = "ro-p2p-ping:";
const PONG_PREFIX: &str = "ro-p2p-pong:";
/// Longest probe text accepted (prefix plus a u32).
const PROBE_TEXT_BYTES_MAX: usize = 32;

/// A probe message, as carried in a text data-channel message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeMessage {
    /// Asks the peer to echo `seq`.
    Ping(u32),
    /// Echoes a ping's `seq`.
    Pong(u32),
}

impl ProbeMessage {
    /// The text form.
    pub fn encode(self) -> String {
        match self {
            ProbeMessage::Ping(seq) => format!("{PING_PREFIX}{seq}"),
            ProbeMessage::Pong(seq) => format!("{PONG_PREFIX}{seq}"),
        }
    }

    /// Parses a text message; anything else (including an oversized text) is `None`.
    pub fn decode(bytes: &[u8]) -> Option<ProbeMessage> {
        if bytes.len() > PROBE_TEXT_BYTES_MAX {
            return None;
        }
        let text = core::str::from_utf8(bytes).ok()?;
        if let Some(seq) = text.strip_prefix(PING_PREFIX) {
            return seq.parse().ok().map(ProbeMessage::Ping);
        }
        if let Some(seq) = text.strip_prefix(PONG_PREFIX) {
            return seq.parse().ok().map(ProbeMessage::Pong);
        }
        None
    }
}

/// Outstanding probes and the outcome of the recent ones. Times are microseconds on any
/// monotonic clock the caller chooses.
#[derive(Debug)]
pub struct Probes {
    next_seq: u32,
    /// Sent and not yet answered or expired, oldest first.
    outstanding: VecDeque<(u32, u64)>,
    /// Outcome of the most recent resolved probes, oldest first: `Some(rtt_us)` or `None` (lost).
    recent: VecDeque<Option<u64>>,
    window: usize,
    timeout_us: u64,
}

impl Probes {
    /// Keeps the last `window` outcomes; a probe unanswered for `timeout_us` is lost.
    pub fn new(window: usize, timeout_us: u64) -> Self {
        let window = window.max(1);
        Probes {
            next_seq: 0,
            outstanding: VecDeque::new(),
            recent: VecDeque::with_capacity(window),
            window,
            timeout_us,
        }
    }

    /// Records a probe sent at `now_us` and returns its sequence number.
    pub fn ping(&mut self, now_us: u64) -> u32 {
        self.expire(now_us);
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        self.outstanding.push_back((seq, now_us));
        // Bounded even if expire is never called with a later time.
        while self.outstanding.len() > self.window {
            self.outstanding.pop_front();
            self.record(None);
        }
        seq
    }

    /// Records the answer to `seq` at `now_us`. Unknown, duplicate or expired answers are
    /// ignored.
    pub fn pong(&mut self, seq: u32, now_us: u64) {
        if let Some(pos) = self.outstanding.iter().position(|&(s, _)| s == seq)
            && let Some((_, sent_us)) = self.outstanding.remove(pos)
        {
            self.record(Some(now_us.saturating_sub(sent_us)));
        }
    }

    /// Counts probes older than the timeout as lost.
    pub fn expire(&mut self, now_us: u64) {
        while let Some(&(_, sent_us)) = self.outstanding.front() {
            if now_us.saturating_sub(sent_us) < self.timeout_us {
                break;
            }
            self.outstanding.pop_front();
            self.record(None);
        }
    }

    fn record(&mut self, outcome: Option<u64>) {
        if self.recent.len() == self.window {
            self.recent.pop_front();
        }
        self.recent.push_back(outcome);
    }

    /// `(rtt_ms, loss_percent)` over the recent probes: the median RTT of the answered ones
    /// (the timeout when none was answered), and the share lost. `None` before any probe
    /// resolved.
    pub fn summary(&self) -> Option<(u32, u8)> {
        if self.recent.is_empty() {
            return None;
        }
        let mut rtts: Vec<u64> = self.recent.iter().flatten().copied().collect();
        let lost = self.recent.len() - rtts.len();
        let loss_percent = (lost * 100 + self.recent.len() / 2) / self.recent.len();
        let rtt_us = if rtts.is_empty() {
            self.timeout_us
        } else {
            rtts.sort_unstable();
            rtts[rtts.len() / 2]
        };
        let rtt_ms = u32::try_from(rtt_us.saturating_add(500) / 1000).unwrap_or(u32::MAX);
        Some((rtt_ms, u8::try_from(loss_percent).unwrap_or(100)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_text_round_trips_and_rejects_everything_else() {
        for m in [ProbeMessage::Ping(0), ProbeMessage::Pong(u32::MAX), ProbeMessage::Ping(42)] {
            assert_eq!(ProbeMessage::decode(m.encode().as_bytes()), Some(m));
        }
        for bad in [
            &b""[..],
            b"ro-p2p-ping:",
            b"ro-p2p-ping:-1",
            b"ro-p2p-ping:4294967296",
            b"ro-p2p-pong:1x",
            b"hello",
            b"\xff\xfe",
            b"ro-p2p-ping:000000000000000000000001",
        ] {
            assert_eq!(ProbeMessage::decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn answered_probes_give_the_median_rtt_and_no_loss() {
        let mut p = Probes::new(10, 2_000_000);
        assert_eq!(p.summary(), None);
        for (i, rtt_us) in [1_000u64, 3_000, 2_000].into_iter().enumerate() {
            let t = i as u64 * 1_000_000;
            let seq = p.ping(t);
            p.pong(seq, t + rtt_us);
        }
        assert_eq!(p.summary(), Some((2, 0)));
    }

    #[test]
    fn unanswered_probes_count_as_lost_after_the_timeout() {
        let mut p = Probes::new(4, 2_000_000);
        let a = p.ping(0);
        p.pong(a, 1_000);
        let _lost = p.ping(1_000_000);
        p.expire(2_999_999);
        assert_eq!(p.summary(), Some((1, 0)), "not yet timed out");
        p.expire(3_000_000);
        assert_eq!(p.summary(), Some((1, 50)));
    }

    #[test]
    fn late_duplicate_and_unknown_pongs_are_ignored() {
        let mut p = Probes::new(4, 1_000);
        let a = p.ping(0);
        p.expire(5_000);
        p.pong(a, 6_000);
        p.pong(a, 6_000);
        p.pong(999, 6_000);
        assert_eq!(p.summary(), Some((1, 100)), "all lost: rtt is the timeout");
    }

    #[test]
    fn the_window_keeps_only_recent_outcomes() {
        let mut p = Probes::new(2, 1_000_000);
        p.ping(0);
        p.expire(2_000_000);
        for t in [3_000_000u64, 4_000_000] {
            let s = p.ping(t);
            p.pong(s, t + 4_000);
        }
        assert_eq!(p.summary(), Some((4, 0)));
    }

    #[test]
    fn outstanding_probes_stay_bounded_without_expiry() {
        let mut p = Probes::new(3, u64::MAX);
        for _ in 0..100 {
            p.ping(0);
        }
        assert!(p.outstanding.len() <= 3);
        assert_eq!(p.summary(), Some((u32::MAX, 100)));
    }
}
