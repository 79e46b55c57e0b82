//! How a link's transport is tuned for loss: the data-channel settings of `movement` and
//! `chat`, and the chat tail-loss probe (the stack's setting engine, ICE timeouts only, is
//! [`LinksConfig::setting_engine`](crate::LinksConfig::setting_engine)). [`PeerLinks`] and the
//! impairment harness ([`crate::impairment`]) build their links from these same functions, so
//! the harness measures exactly what the adapter configures.
//!
//! What SCTP in webrtc-rs 0.21 (`rtc-sctp`) lets an application tune is little: the
//! retransmission timeout's floor, initial value and ceiling (1 s, 1 s, 60 s) and the delayed
//! acknowledgement (200 ms) are private constants, and the acknowledgement mode is
//! crate-private (see `docs/webrtc.md` for the files and lines). A lost chat line is therefore
//! recovered either by the retransmission timer (at least 1 s) or by fast retransmit, which
//! needs three later packets of the association to arrive and be acknowledged. The tail-loss
//! probe provides those packets: after each chat frame, a few tiny text messages ("nudges") on
//! the unreliable `movement` channel, which the peer ignores (it only answers probe texts).
//! Each nudge that arrives while the chat frame is missing draws an immediate SACK reporting
//! the gap, and the third such SACK makes the sender retransmit the chat frame within about
//! one round trip instead of one second.
//!
//! [`PeerLinks`]: crate::PeerLinks

use webrtc::data_channel::RTCDataChannelInit;

use crate::event::Channel;

/// The text of a nudge: a movement-channel text message the peer ignores (any text that is not
/// a probe is ignored, by this version and by earlier ones).
pub(crate) const NUDGE_TEXT: &str = "ro-p2p-nudge";

/// Most nudges after one chat frame.
pub const CHAT_NUDGES_MAX: u8 = 16;

/// Transport tuning of the links against loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkTuning {
    /// Nudges sent on the movement channel after each chat frame (0: none; at most
    /// [`CHAT_NUDGES_MAX`]). Fast retransmit needs three to arrive; the others cover lost ones.
    pub chat_nudges: u8,
    /// Time between the chat frame and the first nudge, and between nudges. Spacing them
    /// keeps them out of the chat frame's packet (and out of one burst of loss).
    pub chat_nudge_spacing_ms: u64,
    /// `Some(ms)`: movement is retransmitted while younger than this (partial reliability by
    /// lifetime); `None`: never retransmitted (`max_retransmits = 0`).
    pub movement_lifetime_ms: Option<u16>,
    /// Both ends create both channels themselves with fixed stream ids (out-of-band
    /// negotiation) instead of the offerer announcing them in band (DCEP). Needed for the
    /// answerer's `movement` to be unreliable at all: webrtc-rs 0.21 applies the reliability
    /// of a channel announced in band only on the side that announced it (see
    /// `docs/webrtc.md`). Both ends must agree.
    pub negotiated_channels: bool,
}

impl Default for LinkTuning {
    /// The tuned settings: six nudges 5 ms apart after each chat frame (the best of 3 to 8
    /// nudges 5 to 20 ms apart over five seeds at 2 and 5 % loss, `docs/webrtc.md`); channels
    /// negotiated out of band; movement never retransmitted.
    fn default() -> Self {
        LinkTuning {
            chat_nudges: 6,
            chat_nudge_spacing_ms: 5,
            movement_lifetime_ms: None,
            negotiated_channels: true,
        }
    }
}

impl LinkTuning {
    /// The links as they were before any tuning: the stack's SCTP defaults, movement
    /// unordered without retransmits, chat reliable and ordered, no nudges.
    pub fn stack_defaults() -> Self {
        LinkTuning {
            chat_nudges: 0,
            chat_nudge_spacing_ms: 0,
            movement_lifetime_ms: None,
            negotiated_channels: false,
        }
    }

    /// The data-channel settings for `channel`: movement unordered and unreliable (or reliable
    /// for `movement_lifetime_ms`), chat reliable and ordered.
    pub fn channel_init(&self, channel: Channel) -> RTCDataChannelInit {
        let negotiated = self.negotiated_channels.then_some(channel.stream_id());
        let init = match channel {
            Channel::Movement => match self.movement_lifetime_ms {
                Some(ms) => RTCDataChannelInit {
                    ordered: false,
                    max_packet_life_time: Some(ms),
                    ..Default::default()
                },
                None => RTCDataChannelInit {
                    ordered: false,
                    max_retransmits: Some(0),
                    ..Default::default()
                },
            },
            Channel::Chat => RTCDataChannelInit::default(),
        };
        RTCDataChannelInit { negotiated, ..init }
    }
}

/// When to send the nudges of the tail-loss probe: a series of `chat_nudges` nudges,
/// `chat_nudge_spacing_ms` apart, (re)started by each chat frame. Times are milliseconds on
/// any monotonic clock the caller chooses.
#[derive(Clone, Debug)]
pub struct TailProbe {
    nudges: u8,
    spacing_ms: u64,
    /// When the current series started, and how many of its nudges are sent.
    series: Option<(u64, u8)>,
}

impl TailProbe {
    /// An idle probe for `tuning`.
    pub fn new(tuning: &LinkTuning) -> Self {
        TailProbe {
            nudges: tuning.chat_nudges.min(CHAT_NUDGES_MAX),
            spacing_ms: tuning.chat_nudge_spacing_ms,
            series: None,
        }
    }

    /// A chat frame went out at `now_ms`: a new series of nudges follows it.
    pub fn chat_sent(&mut self, now_ms: u64) {
        if self.nudges > 0 {
            self.series = Some((now_ms, 0));
        }
    }

    /// When the next nudge is due, if any.
    pub fn next_due_ms(&self) -> Option<u64> {
        let (start, sent) = self.series?;
        Some(start.saturating_add(self.spacing_ms.saturating_mul(u64::from(sent) + 1)))
    }

    /// Whether a nudge is due at `now_ms`; if so, it counts as sent.
    pub fn poll_nudge(&mut self, now_ms: u64) -> bool {
        match (self.next_due_ms(), self.series.as_mut()) {
            (Some(due), Some((_, sent))) if due <= now_ms => {
                *sent += 1;
                if *sent >= self.nudges {
                    self.series = None;
                }
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chat_frame_is_followed_by_its_nudges_and_a_new_one_restarts_them() {
        let tuning =
            LinkTuning { chat_nudges: 3, chat_nudge_spacing_ms: 10, ..LinkTuning::default() };
        let mut probe = TailProbe::new(&tuning);
        assert_eq!(probe.next_due_ms(), None);
        assert!(!probe.poll_nudge(1_000));
        probe.chat_sent(100);
        assert_eq!(probe.next_due_ms(), Some(110));
        assert!(!probe.poll_nudge(109));
        assert!(probe.poll_nudge(110));
        assert_eq!(probe.next_due_ms(), Some(120));
        probe.chat_sent(115);
        let mut sent = Vec::new();
        for t in 115..200 {
            if probe.poll_nudge(t) {
                sent.push(t);
            }
        }
        assert_eq!(sent, vec![125, 135, 145]);
        assert_eq!(probe.next_due_ms(), None);
    }

    #[test]
    fn stack_defaults_send_no_nudges() {
        let mut probe = TailProbe::new(&LinkTuning::stack_defaults());
        probe.chat_sent(0);
        assert_eq!(probe.next_due_ms(), None);
    }

    #[test]
    fn channels_keep_their_reliability() {
        let tuning = LinkTuning::default();
        let movement = tuning.channel_init(Channel::Movement);
        assert!(!movement.ordered);
        assert_eq!(movement.max_retransmits, Some(0));
        let chat = tuning.channel_init(Channel::Chat);
        assert!(chat.ordered);
        assert_eq!((chat.max_retransmits, chat.max_packet_life_time), (None, None));
        let lifetime = LinkTuning { movement_lifetime_ms: Some(150), ..tuning };
        let movement = lifetime.channel_init(Channel::Movement);
        assert_eq!((movement.max_retransmits, movement.max_packet_life_time), (None, Some(150)));
    }
}
