//! A deterministic impairment harness for peer links: two endpoints of the sans-IO `rtc` stack
//! (what `webrtc` runs on) joined by an in-memory link with one-way delay, jitter, random or
//! bursty (Gilbert-Elliott) loss and reordering, all driven by a simulated clock and a seeded
//! RNG. No socket and no real time: each endpoint's timer is fed from the simulated clock, and
//! the loop jumps to the earliest of the next datagram arrival, the next timer of either stack
//! and the next message the traffic sends.
//!
//! The endpoints open the `movement` and `chat` channels with the adapter's own settings
//! ([`LinkTuning::channel_init`], the same setting engine as the links) and send the adapter's
//! chat nudges ([`TailProbe`]), so the figures are those of what [`crate::PeerLinks`]
//! configures. Both players walk (a movement frame every 100-200 ms) and chat (a line every
//! 0.8-1.2 s); each message's delivery latency is simulated time from `send` to the
//! receiver's `poll_read`. The handshake runs over a clean link with the base delay; the
//! impairment starts when both channels are open on both sides.
//!
//! The stack draws its own randomness (DTLS keys, SCTP verification tags and initial TSNs)
//! from the OS, but none of it changes when or how many datagrams are sent; loss, delay and
//! traffic come from [`Scenario::seed`] only, so a scenario gives the same figures every run
//! (a test checks it).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use rtc::data_channel::RTCDataChannelId;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::event::{RTCDataChannelEvent, RTCPeerConnectionEvent};
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::transport::{
    CandidateConfig, CandidateHostConfig, RTCIceCandidate, RTCIceCandidateInit,
};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};

use crate::config::LinksConfig;
use crate::event::Channel;
use crate::tuning::{LinkTuning, NUDGE_TEXT, TailProbe};

/// How datagrams are lost on one direction of the link.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Loss {
    /// No loss.
    None,
    /// Each datagram is lost with this probability (0.0 to 1.0), independently.
    Random {
        /// Probability of loss.
        rate: f64,
    },
    /// Gilbert-Elliott: a good state that loses nothing and a bad state that loses every
    /// datagram; each datagram first moves the chain.
    Bursty {
        /// Probability of going from good to bad, per datagram.
        good_to_bad: f64,
        /// Probability of going from bad to good, per datagram (1 / mean burst length).
        bad_to_good: f64,
    },
}

impl Loss {
    /// Bursty loss with this mean rate (0.0 to 1.0) in bursts of `mean_burst` datagrams.
    pub fn bursty(rate: f64, mean_burst: f64) -> Loss {
        let bad_to_good = 1.0 / mean_burst.max(1.0);
        let rate = rate.clamp(0.0, 0.99);
        Loss::Bursty { good_to_bad: bad_to_good * rate / (1.0 - rate), bad_to_good }
    }
}

/// What the link does to each datagram, the same in both directions (each direction draws its
/// own losses).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Impairment {
    /// Base one-way delay.
    pub one_way_delay_ms: u64,
    /// Extra delay drawn uniformly from 0 to this, per datagram; the link stays first in first
    /// out (a datagram never overtakes an earlier one) except for reordered ones.
    pub jitter_ms: u64,
    /// Loss.
    pub loss: Loss,
    /// Probability (0.0 to 1.0) that a datagram is held back `reorder_delay_ms` longer and
    /// may be overtaken.
    pub reorder_rate: f64,
    /// How long a reordered datagram is held back.
    pub reorder_delay_ms: u64,
}

impl Impairment {
    /// `one_way_delay_ms` and random loss of `loss_rate`, no jitter or reordering.
    pub fn random(one_way_delay_ms: u64, loss_rate: f64) -> Impairment {
        Impairment {
            one_way_delay_ms,
            jitter_ms: 0,
            loss: if loss_rate > 0.0 { Loss::Random { rate: loss_rate } } else { Loss::None },
            reorder_rate: 0.0,
            reorder_delay_ms: 0,
        }
    }
}

/// One run of the harness.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// Seeds the loss, delay and traffic.
    pub seed: u64,
    /// The link.
    pub impairment: Impairment,
    /// The links' tuning under test.
    pub tuning: LinkTuning,
    /// How long both players walk and chat (simulated); 15 s more follow for stragglers.
    pub traffic_ms: u64,
    /// A movement frame every this many ms (drawn uniformly between the two).
    pub walk_interval_ms: (u64, u64),
    /// A chat line every this many ms (drawn uniformly between the two).
    pub chat_interval_ms: (u64, u64),
    /// Size of a movement frame as sealed by the core (header, 5-byte packet, tag).
    pub walk_bytes: usize,
    /// Size of a chat frame as sealed by the core.
    pub chat_bytes: usize,
    /// The time from sender to receiver of the copy mirrored through the game server, if the
    /// route mirrors it (the default policy mirrors movement and chat); what a player sees is
    /// the earlier of the two.
    pub server_path_ms: Option<u64>,
}

impl Scenario {
    /// A ten-minute run of the usual traffic over `impairment` with `tuning`, and a server
    /// path twice the one-way delay (peers and server about equally far apart).
    pub fn new(seed: u64, impairment: Impairment, tuning: LinkTuning) -> Scenario {
        Scenario {
            seed,
            impairment,
            tuning,
            traffic_ms: 600_000,
            walk_interval_ms: (100, 200),
            chat_interval_ms: (800, 1_200),
            walk_bytes: 40,
            chat_bytes: 120,
            server_path_ms: Some(2 * impairment.one_way_delay_ms),
        }
    }
}

/// Why a run did not complete.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HarnessError {
    /// The stack refused a call.
    #[error("the WebRTC stack refused {call}: {message}")]
    Stack {
        /// What was called.
        call: &'static str,
        /// The stack's explanation.
        message: String,
    },
    /// The channels were not open on both sides within this much simulated time.
    #[error("channels not open within {within_ms} ms of simulated time")]
    NotConnected {
        /// The limit.
        within_ms: u64,
    },
    /// The loop took more steps than any run needs (a stack that never lets time advance).
    #[error("more than {steps} steps")]
    StepLimit {
        /// The limit.
        steps: u64,
    },
}

/// Delivery figures of one channel, both directions together.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChannelFigures {
    /// Messages sent.
    pub sent: u64,
    /// Messages delivered over the peer link.
    pub delivered: u64,
    /// Latency of each delivered message over the peer link, microseconds, sorted.
    pub latencies_us: Vec<u64>,
    /// What the receiver sees, per sent message: the earlier of the peer link and the server
    /// path (when there is one), microseconds, sorted.
    pub seen_us: Vec<u64>,
}

impl ChannelFigures {
    /// Delivered over the peer link / sent.
    pub fn delivery_ratio(&self) -> f64 {
        if self.sent == 0 { 0.0 } else { self.delivered as f64 / self.sent as f64 }
    }

    /// The `p`th percentile (nearest rank) of the peer-link latency, in ms.
    pub fn latency_ms(&self, p: f64) -> f64 {
        percentile_ms(&self.latencies_us, p)
    }

    /// The `p`th percentile (nearest rank) of what the receiver sees, in ms.
    pub fn seen_ms(&self, p: f64) -> f64 {
        percentile_ms(&self.seen_us, p)
    }
}

fn percentile_ms(sorted_us: &[u64], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted_us.len() as f64).ceil() as usize;
    sorted_us[rank.clamp(1, sorted_us.len()) - 1] as f64 / 1000.0
}

/// What one run measured.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    /// The `movement` channel.
    pub movement: ChannelFigures,
    /// The `chat` channel.
    pub chat: ChannelFigures,
    /// Datagrams sent on the link once the impairment started, both directions.
    pub datagrams: u64,
    /// Of those, lost by the link.
    pub datagrams_lost: u64,
    /// Nudges sent after chat frames.
    pub nudges: u64,
}

/// Most loop steps in one run (a ten-minute run takes a few hundred thousand).
const STEPS_MAX: u64 = 50_000_000;
/// Handshake limit, simulated.
const CONNECT_WITHIN_MS: u64 = 30_000;
/// Simulated time after the traffic stops for retransmissions to land.
const DRAIN_MS: u64 = 15_000;

fn stack<E: std::fmt::Display>(call: &'static str) -> impl FnOnce(E) -> HarnessError {
    move |e| HarnessError::Stack { call, message: e.to_string() }
}

/// A uniform draw in `[0, 1)`.
fn unit(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// A uniform draw in `lo..=hi`.
fn between(rng: &mut ChaCha8Rng, (lo, hi): (u64, u64)) -> u64 {
    let (lo, hi) = (lo.min(hi), lo.max(hi));
    match (hi - lo).checked_add(1) {
        Some(span) => lo + rng.next_u64() % span,
        None => rng.next_u64(),
    }
}

/// One direction of the link.
struct Wire {
    rng: ChaCha8Rng,
    bad: bool,
    /// Arrival time of the last datagram that kept its place, for first-in-first-out.
    last_arrival_us: u64,
}

impl Wire {
    /// When a datagram sent at `now_us` arrives, or `None` if it is lost. `impaired` false
    /// means only the base delay.
    fn carry(&mut self, imp: &Impairment, now_us: u64, impaired: bool) -> Option<u64> {
        let base = now_us.saturating_add(imp.one_way_delay_ms.saturating_mul(1000));
        if !impaired {
            self.last_arrival_us = self.last_arrival_us.max(base);
            return Some(self.last_arrival_us);
        }
        let lost = match imp.loss {
            Loss::None => false,
            Loss::Random { rate } => unit(&mut self.rng) < rate,
            Loss::Bursty { good_to_bad, bad_to_good } => {
                let flip = unit(&mut self.rng);
                self.bad = if self.bad { flip >= bad_to_good } else { flip < good_to_bad };
                self.bad
            }
        };
        let jitter = between(&mut self.rng, (0, imp.jitter_ms.saturating_mul(1000)));
        let reordered = unit(&mut self.rng) < imp.reorder_rate;
        if lost {
            return None;
        }
        if reordered {
            let held_us = imp.reorder_delay_ms.saturating_mul(1000);
            return Some(base.saturating_add(jitter).saturating_add(held_us));
        }
        self.last_arrival_us = self.last_arrival_us.max(base.saturating_add(jitter));
        Some(self.last_arrival_us)
    }
}

/// One player: its stack, its channels and its traffic.
struct Side {
    pc: RTCPeerConnection,
    addr: SocketAddr,
    channels: BTreeMap<Channel, RTCDataChannelId>,
    tail: TailProbe,
    rng: ChaCha8Rng,
    next_walk_us: u64,
    next_chat_us: u64,
    next_seq: u32,
}

impl Side {
    fn new(index: u8, tuning: &LinkTuning, seed: u64, now: Instant) -> Result<Side, HarnessError> {
        let pc = RTCPeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_setting_engine(LinksConfig::default().setting_engine())
            .build(now)
            .map_err(stack("build"))?;
        Ok(Side {
            pc,
            addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, index + 1)), 5000),
            channels: BTreeMap::new(),
            tail: TailProbe::new(tuning),
            rng: ChaCha8Rng::seed_from_u64(seed ^ (0x5eed_0000 + u64::from(index))),
            next_walk_us: u64::MAX,
            next_chat_us: u64::MAX,
            next_seq: 0,
        })
    }

    fn host_candidate(&self) -> Result<RTCIceCandidateInit, HarnessError> {
        let candidate = CandidateHostConfig {
            base_config: CandidateConfig {
                network: "udp".to_owned(),
                address: self.addr.ip().to_string(),
                port: self.addr.port(),
                component: 1,
                ..Default::default()
            },
            ..Default::default()
        }
        .new_candidate_host()
        .map_err(stack("new_candidate_host"))?;
        RTCIceCandidate::from(&candidate).to_json().map_err(stack("candidate to_json"))
    }

    fn open(&self) -> bool {
        self.channels.len() == 2
    }
}

/// A datagram on the wire, ordered by arrival then by when it was sent.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct InFlight {
    at_us: u64,
    order: u64,
    to: usize,
    bytes: Vec<u8>,
}

/// Message identity: sender, channel, sequence number.
type MessageKey = (u8, u8, u32);

struct Run<'a> {
    scenario: &'a Scenario,
    epoch: Instant,
    now_us: u64,
    sides: [Side; 2],
    wires: [Wire; 2],
    in_flight: BinaryHeap<Reverse<InFlight>>,
    order: u64,
    impaired: bool,
    sent: BTreeMap<MessageKey, u64>,
    delivered: BTreeMap<MessageKey, u64>,
    report: Report,
}

/// Runs `scenario` and measures it.
pub fn run(scenario: &Scenario) -> Result<Report, HarnessError> {
    let epoch = Instant::now();
    let sides = [
        Side::new(0, &scenario.tuning, scenario.seed, epoch)?,
        Side::new(1, &scenario.tuning, scenario.seed, epoch)?,
    ];
    let wire = |d: u64| Wire {
        rng: ChaCha8Rng::seed_from_u64(scenario.seed ^ (0x0019_a7e0_0000 + d)),
        bad: false,
        last_arrival_us: 0,
    };
    let mut run = Run {
        scenario,
        epoch,
        now_us: 0,
        sides,
        wires: [wire(0), wire(1)],
        in_flight: BinaryHeap::new(),
        order: 0,
        impaired: false,
        sent: BTreeMap::new(),
        delivered: BTreeMap::new(),
        report: Report::default(),
    };
    run.connect()?;
    run.exchange()?;
    Ok(run.finish())
}

impl Run<'_> {
    fn instant(&self, us: u64) -> Instant {
        self.epoch + Duration::from_micros(us)
    }

    /// Offer and answer with the channels created as the adapter creates them (by the offerer
    /// before its offer; with negotiated channels also by the answerer before its answer), and
    /// each side's host candidate.
    fn connect(&mut self) -> Result<(), HarnessError> {
        let now = self.instant(0);
        let tuning = self.scenario.tuning;
        let [a, b] = &mut self.sides;
        for channel in [Channel::Movement, Channel::Chat] {
            a.pc.create_data_channel(channel.label(), Some(tuning.channel_init(channel)))
                .map_err(stack("create_data_channel"))?;
        }
        let offer = a.pc.create_offer(None).map_err(stack("create_offer"))?;
        a.pc.set_local_description(now, offer.clone()).map_err(stack("set_local_description"))?;
        let offer = RTCSessionDescription::offer(offer.sdp).map_err(stack("offer"))?;
        b.pc.set_remote_description(now, offer).map_err(stack("set_remote_description"))?;
        if tuning.negotiated_channels {
            for channel in [Channel::Movement, Channel::Chat] {
                b.pc.create_data_channel(channel.label(), Some(tuning.channel_init(channel)))
                    .map_err(stack("create_data_channel"))?;
            }
        }
        let answer = b.pc.create_answer(None).map_err(stack("create_answer"))?;
        b.pc.set_local_description(now, answer.clone()).map_err(stack("set_local_description"))?;
        let answer = RTCSessionDescription::answer(answer.sdp).map_err(stack("answer"))?;
        a.pc.set_remote_description(now, answer).map_err(stack("set_remote_description"))?;
        let (ca, cb) = (a.host_candidate()?, b.host_candidate()?);
        a.pc.add_local_candidate(ca.clone()).map_err(stack("add_local_candidate"))?;
        b.pc.add_local_candidate(cb.clone()).map_err(stack("add_local_candidate"))?;
        a.pc.add_remote_candidate(cb).map_err(stack("add_remote_candidate"))?;
        b.pc.add_remote_candidate(ca).map_err(stack("add_remote_candidate"))?;
        self.pump()?;
        let mut steps = 0;
        while !(self.sides[0].open() && self.sides[1].open()) {
            if self.now_us > CONNECT_WITHIN_MS * 1000 {
                return Err(HarnessError::NotConnected { within_ms: CONNECT_WITHIN_MS });
            }
            self.step(u64::MAX, &mut steps)?;
        }
        Ok(())
    }

    /// The traffic over the impaired link, then the drain.
    fn exchange(&mut self) -> Result<(), HarnessError> {
        self.impaired = true;
        let start = self.now_us;
        let traffic_end = start.saturating_add(self.scenario.traffic_ms.saturating_mul(1000));
        for side in &mut self.sides {
            let walk_ms = between(&mut side.rng, self.scenario.walk_interval_ms);
            side.next_walk_us = start.saturating_add(walk_ms.saturating_mul(1000));
            let chat_ms = between(&mut side.rng, self.scenario.chat_interval_ms);
            side.next_chat_us = start.saturating_add(chat_ms.saturating_mul(1000));
        }
        let end = traffic_end.saturating_add(DRAIN_MS * 1000);
        let mut steps = 0;
        while self.now_us < end {
            self.step(traffic_end, &mut steps)?;
        }
        Ok(())
    }

    /// The stacks' timers, in simulated microseconds (rounded up so a timer is never handled
    /// before it is due).
    fn timeout_us(&mut self, side: usize) -> Option<u64> {
        let t = self.sides[side].pc.poll_timeout()?;
        let ns = t.saturating_duration_since(self.epoch).as_nanos();
        Some(u64::try_from(ns.div_ceil(1000)).unwrap_or(u64::MAX))
    }

    fn app_due_us(&self, traffic_end: u64) -> u64 {
        let mut due = u64::MAX;
        for side in &self.sides {
            let nudge = side.tail.next_due_ms().map_or(u64::MAX, |ms| ms.saturating_mul(1000));
            due = due.min(nudge).min(side.next_walk_us).min(side.next_chat_us);
        }
        if due >= traffic_end { u64::MAX } else { due }
    }

    /// Advances to the earliest pending event and handles everything due then.
    fn step(&mut self, traffic_end: u64, steps: &mut u64) -> Result<(), HarnessError> {
        *steps += 1;
        if *steps > STEPS_MAX {
            return Err(HarnessError::StepLimit { steps: STEPS_MAX });
        }
        let arrival = self.in_flight.peek().map_or(u64::MAX, |Reverse(d)| d.at_us);
        let timers = [0, 1].map(|i| self.timeout_us(i).unwrap_or(u64::MAX));
        let next = arrival.min(timers[0]).min(timers[1]).min(self.app_due_us(traffic_end));
        if next == u64::MAX {
            return Err(HarnessError::StepLimit { steps: *steps });
        }
        self.now_us = self.now_us.max(next);
        let now = self.instant(self.now_us);

        while let Some(Reverse(d)) = self.in_flight.peek() {
            if d.at_us > self.now_us {
                break;
            }
            let Some(Reverse(d)) = self.in_flight.pop() else { break };
            let from = self.sides[1 - d.to].addr;
            let to = &mut self.sides[d.to];
            let msg = TaggedBytesMut {
                now,
                transport: TransportContext {
                    local_addr: to.addr,
                    peer_addr: from,
                    ecn: None,
                    transport_protocol: TransportProtocol::UDP,
                },
                message: BytesMut::from(&d.bytes[..]),
            };
            // A datagram the stack rejects is dropped, as a socket driver would.
            let _ = to.pc.handle_read(msg);
            self.pump()?;
        }
        for (i, due) in timers.into_iter().enumerate() {
            if due <= self.now_us {
                self.sides[i].pc.handle_timeout(now).map_err(stack("handle_timeout"))?;
                self.pump()?;
            }
        }
        if self.impaired && self.now_us < traffic_end {
            for i in 0..2 {
                self.traffic(i)?;
            }
            self.pump()?;
        }
        Ok(())
    }

    /// Sends what side `i`'s player sends now.
    fn traffic(&mut self, i: usize) -> Result<(), HarnessError> {
        let now_us = self.now_us;
        let now = self.instant(now_us);
        let scenario = self.scenario;
        let side = &mut self.sides[i];
        let mut out: Vec<(Channel, u64)> = Vec::new();
        let mut sent = Vec::with_capacity(2);
        if side.next_walk_us <= now_us {
            out.push((Channel::Movement, side.next_walk_us));
            let ms = between(&mut side.rng, scenario.walk_interval_ms).max(1);
            side.next_walk_us = side.next_walk_us.saturating_add(ms.saturating_mul(1000));
        }
        if side.next_chat_us <= now_us {
            out.push((Channel::Chat, side.next_chat_us));
            let ms = between(&mut side.rng, scenario.chat_interval_ms).max(1);
            side.next_chat_us = side.next_chat_us.saturating_add(ms.saturating_mul(1000));
            side.tail.chat_sent(now_us / 1000);
        }
        for (channel, _) in out {
            let seq = side.next_seq;
            side.next_seq += 1;
            let len = match channel {
                Channel::Movement => scenario.walk_bytes,
                Channel::Chat => scenario.chat_bytes,
            };
            let mut bytes = BytesMut::zeroed(len.max(6));
            bytes[0] = i as u8;
            bytes[1] = channel as u8;
            bytes[2..6].copy_from_slice(&seq.to_le_bytes());
            let gone = || HarnessError::Stack {
                call: "data_channel",
                message: format!("{channel} channel gone"),
            };
            let id = *side.channels.get(&channel).ok_or_else(gone)?;
            let mut dc = side.pc.data_channel(id).ok_or_else(gone)?;
            dc.send(now, bytes).map_err(stack("send"))?;
            sent.push((i as u8, channel as u8, seq));
        }
        let mut nudges = 0;
        while side.tail.poll_nudge(now_us / 1000) {
            let id = side.channels.get(&Channel::Movement).copied();
            if let Some(mut dc) = id.and_then(|id| side.pc.data_channel(id)) {
                dc.send_text(now, NUDGE_TEXT).map_err(stack("send_text"))?;
                nudges += 1;
            }
        }
        self.report.nudges += nudges;
        for key in sent {
            self.sent.insert(key, now_us);
        }
        Ok(())
    }

    /// Drains both stacks: datagrams onto the wire, messages to the receiver's tally, events.
    fn pump(&mut self) -> Result<(), HarnessError> {
        for i in 0..2 {
            while let Some(msg) = self.sides[i].pc.poll_write() {
                if msg.transport.peer_addr != self.sides[1 - i].addr {
                    continue;
                }
                if self.impaired {
                    self.report.datagrams += 1;
                }
                let imp = &self.scenario.impairment;
                match self.wires[i].carry(imp, self.now_us, self.impaired) {
                    Some(at_us) => {
                        self.order += 1;
                        let bytes = msg.message.to_vec();
                        self.in_flight.push(Reverse(InFlight {
                            at_us,
                            order: self.order,
                            to: 1 - i,
                            bytes,
                        }));
                    }
                    None => self.report.datagrams_lost += 1,
                }
            }
            while let Some(msg) = self.sides[i].pc.poll_read() {
                if let RTCMessage::DataChannelMessage(_, m) = msg.message
                    && !m.is_string
                    && m.data.len() >= 6
                {
                    let seq = u32::from_le_bytes([m.data[2], m.data[3], m.data[4], m.data[5]]);
                    self.delivered.entry((m.data[0], m.data[1], seq)).or_insert(self.now_us);
                }
            }
            while let Some(event) = self.sides[i].pc.poll_event() {
                if let RTCPeerConnectionEvent::OnDataChannel(RTCDataChannelEvent::OnOpen(id)) =
                    event
                {
                    let side = &mut self.sides[i];
                    let label = side.pc.data_channel(id).map(|dc| dc.label().to_owned());
                    if let Some(channel) = label.as_deref().and_then(Channel::from_label) {
                        side.channels.insert(channel, id);
                    }
                }
            }
        }
        Ok(())
    }

    fn finish(mut self) -> Report {
        let server_us = self.scenario.server_path_ms.map(|ms| ms * 1000);
        for (&(from, channel, seq), &sent_us) in &self.sent {
            let figures = if channel == Channel::Chat as u8 {
                &mut self.report.chat
            } else {
                &mut self.report.movement
            };
            figures.sent += 1;
            let p2p = self.delivered.get(&(from, channel, seq)).map(|&at| at - sent_us);
            if let Some(us) = p2p {
                figures.delivered += 1;
                figures.latencies_us.push(us);
            }
            let seen = match (p2p, server_us) {
                (Some(p), Some(s)) => Some(p.min(s)),
                (p, s) => p.or(s),
            };
            if let Some(us) = seen {
                figures.seen_us.push(us);
            }
        }
        for figures in [&mut self.report.movement, &mut self.report.chat] {
            figures.latencies_us.sort_unstable();
            figures.seen_us.sort_unstable();
        }
        self.report
    }
}
