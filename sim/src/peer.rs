//! Simulated peer links: what the WebRTC adapter does, reduced to the datagram boundary.
//!
//! A [`Links`] table per client plays the adapter's part for the core [`Client`]: on
//! `ConnectPeer` it produces a local description and two candidates (a host candidate and a
//! relay candidate), applies the remote ones it is given, probes every candidate path over
//! turmoil UDP until one answers (`Connected`), then pings to measure round-trip time and loss
//! (`Measured`, from the core's `client::probe` books, as the WebRTC adapter measures) and reports `Closed` when the peer falls silent, `Failed` when no path answers.
//! The NAT model decides at send time which path can carry a datagram. Game frames travel
//! sealed by [`ro_p2p_core::seal`] exactly as in production.
//!
//! [`Client`]: ro_p2p_core::client::Client

use std::collections::{BTreeMap, VecDeque};

use ro_p2p_core::Instant;
use ro_p2p_core::client::probe::Probes;
use ro_p2p_core::client::{LinkEvent, Role, Signal};
use ro_p2p_core::wire::IceCandidate;

/// Datagram kinds.
pub mod kind {
    /// Connectivity check.
    pub const PROBE: u8 = 1;
    /// Answer to a check.
    pub const PROBE_ACK: u8 = 2;
    /// Keepalive with a sequence number.
    pub const PING: u8 = 3;
    /// Answer to a keepalive.
    pub const PONG: u8 = 4;
    /// A sealed game frame.
    pub const DATA: u8 = 5;
    /// The sender closed the link.
    pub const BYE: u8 = 6;
}

const MAGIC: u8 = 0x5A;
/// No path answered within this long: `Failed`.
pub const CONNECT_TIMEOUT_MS: u64 = 5_000;
/// Nothing received for this long on a connected link: `Closed`.
pub const SILENCE_TIMEOUT_MS: u64 = 3_000;
/// Probe and ping interval.
pub const PING_INTERVAL_MS: u64 = 250;
/// Pings per measurement window.
pub const WINDOW: usize = 8;
/// A ping unanswered this long counts as lost.
pub const PING_TIMEOUT_MS: u64 = 1_000;
/// A measurement is reported every this many pings.
const PINGS_PER_MEASUREMENT: u32 = 4;

/// How a datagram travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Path {
    /// Straight to the peer's host candidate.
    Direct,
    /// Through the relay host.
    Relay,
}

/// One datagram: header then body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram {
    /// Kind (see [`kind`]).
    pub kind: u8,
    /// Path it was sent on.
    pub path: Path,
    /// Sender peer id.
    pub from: String,
    /// Recipient peer id (also its host name).
    pub to: String,
    /// Body (sequence number, or a sealed frame).
    pub body: Vec<u8>,
}

impl Datagram {
    /// Encodes: magic, kind, path, from (len + bytes), to (len + bytes), body.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(6 + self.from.len() + self.to.len() + self.body.len());
        out.extend_from_slice(&[MAGIC, self.kind, u8::from(self.path == Path::Relay)]);
        for s in [&self.from, &self.to] {
            out.push(s.len().min(255) as u8);
            out.extend_from_slice(&s.as_bytes()[..s.len().min(255)]);
        }
        out.extend_from_slice(&self.body);
        out
    }

    /// Decodes, or `None` for anything malformed.
    pub fn decode(b: &[u8]) -> Option<Datagram> {
        let (&[magic, kind, path], rest) = b.split_first_chunk::<3>()?;
        if magic != MAGIC {
            return None;
        }
        let (&fl, rest) = rest.split_first()?;
        let from = std::str::from_utf8(rest.get(..usize::from(fl))?).ok()?.to_owned();
        let rest = rest.get(usize::from(fl)..)?;
        let (&tl, rest) = rest.split_first()?;
        let to = std::str::from_utf8(rest.get(..usize::from(tl))?).ok()?.to_owned();
        let body = rest.get(usize::from(tl)..)?.to_vec();
        let path = if path == 1 { Path::Relay } else { Path::Direct };
        Some(Datagram { kind, path, from, to, body })
    }
}

/// The recipient named in a datagram (what the relay forwards on).
pub fn datagram_recipient(b: &[u8]) -> Option<String> {
    Datagram::decode(b).map(|d| d.to)
}

/// One simulated peer connection.
#[derive(Debug)]
struct Link {
    role: Role,
    created: Instant,
    remote_described: bool,
    paths: Vec<Path>,
    connected: Option<Path>,
    last_rx: Instant,
    next_ping: Instant,
    /// The pings' books, kept as the WebRTC adapter keeps its probes' (the core's).
    probes: Probes,
    pings: u32,
}

/// What the links want done.
#[derive(Debug)]
pub enum LinkOut {
    /// Feed this event to the client core.
    Event(String, LinkEvent),
    /// Send this datagram.
    Send(Datagram),
}

/// Every link of one client.
#[derive(Debug)]
pub struct Links {
    me: String,
    session: String,
    links: BTreeMap<String, Link>,
    /// Pending work for the driver.
    pub out: VecDeque<LinkOut>,
}

impl Links {
    /// The links of client `me`.
    pub fn new(me: &str) -> Links {
        Links {
            me: me.to_owned(),
            session: String::new(),
            links: BTreeMap::new(),
            out: VecDeque::new(),
        }
    }

    /// The session the client is in (written into descriptions for checker 3).
    pub fn set_session(&mut self, session: &str) {
        self.session = session.to_owned();
    }

    fn description(&self, role: Role) -> String {
        let what = if role == Role::Offerer { "offer" } else { "answer" };
        format!("v=0 sim-{what} from={} session={}", self.me, self.session)
    }

    fn announce(&mut self, peer: &str, role: Role) {
        let sdp = self.description(role);
        self.out.push_back(LinkOut::Event(peer.to_owned(), LinkEvent::LocalDescription { sdp }));
        for (typ, host) in [("host", self.me.clone()), ("relay", "relay".to_owned())] {
            let line = format!(
                "candidate:1 1 udp 1 {host} 7000 typ {typ} from={} session={}",
                self.me, self.session
            );
            let c = IceCandidate::from_line(line);
            self.out.push_back(LinkOut::Event(peer.to_owned(), LinkEvent::LocalCandidate(c)));
        }
    }

    /// `ConnectPeer`.
    pub fn connect(&mut self, now: Instant, peer: &str, role: Role) {
        let link = Link {
            role,
            created: now,
            remote_described: false,
            paths: Vec::new(),
            connected: None,
            last_rx: now,
            next_ping: now,
            probes: Probes::new(WINDOW, PING_TIMEOUT_MS * 1_000),
            pings: 0,
        };
        self.links.insert(peer.to_owned(), link);
        if role == Role::Offerer {
            self.announce(peer, role);
        }
    }

    /// `DisconnectPeer`: forget the link and tell the peer.
    pub fn disconnect(&mut self, peer: &str) {
        if let Some(link) = self.links.remove(peer)
            && let Some(path) = link.connected
        {
            self.send(peer, kind::BYE, path, Vec::new());
        }
    }

    /// Forgets every link (the host crashed or the session ended).
    pub fn clear(&mut self) {
        let peers: Vec<String> = self.links.keys().cloned().collect();
        for p in peers {
            self.disconnect(&p);
        }
    }

    /// `SendSignal`.
    pub fn signal(&mut self, peer: &str, signal: Signal) {
        let Some(link) = self.links.get_mut(peer) else { return };
        match signal {
            Signal::Offer { .. } => {
                link.remote_described = true;
                let role = link.role;
                self.announce(peer, role);
            }
            Signal::Answer { .. } => link.remote_described = true,
            Signal::Candidate { candidate } => {
                let path = if candidate.candidate.contains("typ relay") {
                    Path::Relay
                } else {
                    Path::Direct
                };
                if !link.paths.contains(&path) {
                    link.paths.push(path);
                    link.paths.sort();
                }
            }
        }
    }

    fn send(&mut self, peer: &str, kind: u8, path: Path, body: Vec<u8>) {
        self.out.push_back(LinkOut::Send(Datagram {
            kind,
            path,
            from: self.me.clone(),
            to: peer.to_owned(),
            body,
        }));
    }

    /// The open path to `peer`, if connected.
    pub fn path(&self, peer: &str) -> Option<Path> {
        self.links.get(peer).and_then(|l| l.connected)
    }

    /// Sends a sealed frame to `peer` over its connected path; `false` if not connected.
    pub fn send_data(&mut self, peer: &str, frame: Vec<u8>) -> bool {
        match self.path(peer) {
            Some(path) => {
                self.send(peer, kind::DATA, path, frame);
                true
            }
            None => false,
        }
    }

    /// A datagram arrived; returns the sealed frame if it is game data from a connected peer.
    pub fn receive(&mut self, now: Instant, d: Datagram) -> Option<(String, Vec<u8>)> {
        let from = d.from.clone();
        let link = self.links.get_mut(&from)?;
        link.last_rx = now;
        match d.kind {
            kind::PROBE => {
                self.send(&from, kind::PROBE_ACK, d.path, d.body);
                // A check that arrives proves the path both ways (as in ICE): the peer may
                // already be sending on it.
                self.prove(now, &from, d.path);
                None
            }
            kind::PROBE_ACK => {
                self.prove(now, &from, d.path);
                None
            }
            kind::PING => {
                let path = link.connected.unwrap_or(d.path);
                self.send(&from, kind::PONG, path, d.body);
                None
            }
            kind::PONG => {
                let seq = d.body.get(..4).and_then(|b| b.try_into().ok()).map(u32::from_le_bytes);
                if let Some(seq) = seq {
                    link.probes.pong(seq, micros(now));
                }
                None
            }
            kind::DATA => {
                self.prove(now, &from, d.path);
                self.path(&from).is_some().then_some((from, d.body))
            }
            kind::BYE => {
                self.links.remove(&from);
                self.out.push_back(LinkOut::Event(from, LinkEvent::Closed));
                None
            }
            _ => None,
        }
    }

    /// A datagram from `peer` came over `path`: once the remote description is known, the link
    /// is connected on it.
    fn prove(&mut self, now: Instant, peer: &str, path: Path) {
        let Some(link) = self.links.get_mut(peer) else { return };
        if link.connected.is_none() && link.remote_described {
            link.connected = Some(path);
            link.next_ping = now;
            self.out.push_back(LinkOut::Event(peer.to_owned(), LinkEvent::Connected));
        }
    }

    /// Timers: probes, pings, measurements, connect and silence timeouts.
    pub fn tick(&mut self, now: Instant) {
        let peers: Vec<String> = self.links.keys().cloned().collect();
        for peer in peers {
            let Some(link) = self.links.get_mut(&peer) else { continue };
            if link.connected.is_none() {
                if now.millis_since(link.created) >= CONNECT_TIMEOUT_MS {
                    self.links.remove(&peer);
                    self.out.push_back(LinkOut::Event(peer, LinkEvent::Failed));
                    continue;
                }
                if link.remote_described && now >= link.next_ping {
                    link.next_ping = now.add_millis(PING_INTERVAL_MS);
                    let paths = link.paths.clone();
                    for path in paths {
                        self.send(&peer, kind::PROBE, path, Vec::new());
                    }
                }
                continue;
            }
            if now.millis_since(link.last_rx) >= SILENCE_TIMEOUT_MS {
                self.links.remove(&peer);
                self.out.push_back(LinkOut::Event(peer, LinkEvent::Closed));
                continue;
            }
            if now >= link.next_ping {
                link.next_ping = now.add_millis(PING_INTERVAL_MS);
                let now_us = micros(now);
                link.probes.expire(now_us);
                let summary = link.probes.summary();
                let seq = link.probes.ping(now_us);
                link.pings = link.pings.wrapping_add(1);
                let measure = link.pings % PINGS_PER_MEASUREMENT == 0;
                let path = link.connected.unwrap_or(Path::Direct);
                self.send(&peer, kind::PING, path, seq.to_le_bytes().to_vec());
                if measure && let Some((rtt_ms, loss_percent)) = summary {
                    self.out.push_back(LinkOut::Event(
                        peer,
                        LinkEvent::Measured { rtt_ms, loss_percent },
                    ));
                }
            }
        }
    }

    /// When [`Links::tick`] next has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.links
            .values()
            .map(|l| {
                if l.connected.is_none() {
                    let give_up = l.created.add_millis(CONNECT_TIMEOUT_MS);
                    if l.remote_described { l.next_ping.min(give_up) } else { give_up }
                } else {
                    l.next_ping.min(l.last_rx.add_millis(SILENCE_TIMEOUT_MS))
                }
            })
            .min()
    }
}

/// Reads `from=` and `session=` out of a simulated description or candidate (checker 3).
pub fn body_claims(body: &str) -> (Option<String>, Option<String>) {
    let field =
        |name: &str| body.split_whitespace().find_map(|w| w.strip_prefix(name)).map(str::to_owned);
    (field("from="), field("session="))
}

/// Simulated time in microseconds, as [`Probes`] counts it.
fn micros(now: Instant) -> u64 {
    now.as_millis().saturating_mul(1_000)
}
