//! The client's second machine: the peer links of the session, their topology and their
//! negotiation.
//!
//! The lifecycle machine (`Client`, in `mod.rs`) decides everything about the
//! coordinator and the session: when to connect and where, backoff and fallback, the heartbeat,
//! joining, and who the session's members, host and keys are. [`Links`] decides, from that
//! session view, everything about the links to the other members:
//!
//! - **which peers to link to**: a full mesh while the session has at most `max_connections`
//!   other members, otherwise a star around the host;
//! - **who offers**: the newcomer towards existing members, the non-host towards the host on a
//!   topology change, otherwise the lower peer id; glare (both sides offered) keeps the lower
//!   peer id's offer;
//! - **negotiation**: offers and answers in order, remote candidates buffered (at most
//!   `buffered_candidates_max`) until the remote description is applied, a deadline of
//!   `negotiation_timeout_ms` per link not yet connected;
//! - **relinking**: after a link dies the designated side offers again (with a per-peer backoff
//!   once links to that peer keep failing before they connect), and the other side offers
//!   itself if no offer came within one negotiation timeout;
//! - **health**: each link's health from the adapter's measurements.
//!
//! It sees neither frames nor transports: the client hands it decoded signaling and link
//! events with a [`Cx`] (the time, the settings, the RNG, the session view, the counters) and
//! turns its [`LinkOutput`]s into the client's outputs right after each call, so outputs keep the
//! order in which they were decided. Its one timer (the earliest negotiation deadline or
//! relink) is [`Links::poll_timeout`], which the client arms in its own timer table.

use std::collections::{BTreeMap, VecDeque};

use super::config::Config;
use super::link::{LinkEvent, LinkHealth, PeerLink, Role, Signal};
use super::stats::ClientStats;
use crate::rng::Rng;
use crate::time::Instant;
use crate::wire::{ClientMessage, IceCandidate, IceServer, PeerId};

/// The session as the links need it: who we are and who else is in it. Empty when there is no
/// session.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Topology<'a> {
    /// Our identity, once welcomed.
    pub(super) me: Option<&'a PeerId>,
    /// The other members, in join order.
    pub(super) members: &'a [PeerId],
    /// The session host, if any.
    pub(super) host: Option<&'a PeerId>,
    /// STUN/TURN servers from `session-joined`.
    pub(super) ice_servers: &'a [IceServer],
}

/// What one call into [`Links`] may read and draw from.
pub(super) struct Cx<'a> {
    /// The time of the call being handled.
    pub(super) now: Instant,
    /// The client's settings.
    pub(super) config: &'a Config,
    /// The client's RNG (the relink backoff's jitter).
    pub(super) rng: &'a mut Rng,
    /// The session view.
    pub(super) topology: Topology<'a>,
    /// The client's counters.
    pub(super) stats: &'a mut ClientStats,
}

/// What the links machine asks for; the client turns each into its own output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum LinkOutput {
    /// Create a link to `peer` in `role` (`Output::ConnectPeer`).
    Connect { peer: PeerId, role: Role, ice_servers: Vec<IceServer> },
    /// Tear the link to `peer` down (`Output::DisconnectPeer`).
    Disconnect { peer: PeerId },
    /// Apply remote signaling on the link to `peer` (`Output::SendSignal`).
    Signal { peer: PeerId, signal: Signal },
    /// A link's health changed (`ClientEvent::LinkHealthChanged`).
    Health { peer: PeerId, health: LinkHealth },
    /// Send this message to the coordinator (our local description or candidate).
    Send(ClientMessage),
}

/// The peer links of the session: one [`PeerLink`] per peer the adapter was asked to connect,
/// the relinks waiting, and the failures per peer that drive the relink backoff.
#[derive(Debug, Default)]
pub(super) struct Links {
    links: BTreeMap<PeerId, PeerLink>,
    /// When to offer to a peer without a link: on the non-designated side, if the designated
    /// side has not offered by then (it may not have noticed the link die, e.g. behind a
    /// one-way partition); on the designated side, when the per-peer backoff ends.
    relink_at: BTreeMap<PeerId, Instant>,
    /// Links in a row to each peer that ended before connecting (reset once one connects).
    link_failures: BTreeMap<PeerId, u32>,
    outputs: VecDeque<LinkOutput>,
}

impl Links {
    /// Every link, by peer id: its role and health.
    pub(super) fn list(&self) -> Vec<(PeerId, Role, LinkHealth)> {
        self.links.iter().map(|(p, l)| (p.clone(), l.role, l.health)).collect()
    }

    /// Peers whose links are open (connected and within limits).
    pub(super) fn healthy_peers(&self) -> Vec<PeerId> {
        self.links
            .iter()
            .filter(|(_, l)| l.health == LinkHealth::Open)
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// Each link's state, for the client's tests to check invariants on.
    #[cfg(test)]
    pub(super) fn values(&self) -> impl Iterator<Item = &PeerLink> {
        self.links.values()
    }

    /// The next output to turn into the client's; drained after every call.
    pub(super) fn poll_output(&mut self) -> Option<LinkOutput> {
        self.outputs.pop_front()
    }

    /// The earliest negotiation deadline or relink, if any.
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        let relinks = self.relink_at.values().copied();
        self.links.values().filter_map(|l| l.deadline).chain(relinks).min()
    }

    /// The session is over (or its identity changed): tears every link down and forgets the
    /// relinks and failures.
    pub(super) fn clear(&mut self) {
        let peers: Vec<PeerId> = self.links.keys().cloned().collect();
        for peer in peers {
            self.disconnect(&peer);
        }
        self.relink_at.clear();
        self.link_failures.clear();
    }

    /// The seat was kept through a reconnect: keeps the links to members still listed in
    /// `members` and drops the others.
    pub(super) fn keep_members(&mut self, members: &[PeerId]) {
        let gone: Vec<PeerId> =
            self.links.keys().filter(|p| !members.contains(p)).cloned().collect();
        for peer in gone {
            self.disconnect(&peer);
        }
    }

    /// We joined the session: drops the links its topology does not want, and the newcomer
    /// offers to every existing member it does.
    pub(super) fn on_joined(&mut self, cx: &mut Cx<'_>) {
        self.reconcile(cx, false);
        for peer in cx.topology.members {
            if !self.links.contains_key(peer) && wants_link(cx, peer) {
                self.connect(cx, peer.clone(), Role::Offerer);
            }
        }
    }

    /// `peer` left the session: its link goes.
    pub(super) fn on_peer_left(&mut self, peer: &PeerId) {
        self.disconnect(peer);
    }

    /// Drops links the topology no longer wants; with `rewire`, also creates the missing
    /// ones this side is designated to offer.
    pub(super) fn reconcile(&mut self, cx: &mut Cx<'_>, rewire: bool) {
        let linked: Vec<PeerId> = self.links.keys().cloned().collect();
        for peer in linked {
            if !wants_link(cx, &peer) {
                self.disconnect(&peer);
            }
        }
        let members = cx.topology.members;
        self.link_failures.retain(|p, _| members.contains(p));
        if rewire {
            for peer in members {
                if !self.links.contains_key(peer)
                    && !self.relink_at.contains_key(peer)
                    && wants_link(cx, peer)
                    && offers_on_rewire(cx, peer)
                {
                    self.connect(cx, peer.clone(), Role::Offerer);
                }
            }
        }
    }

    /// A remote offer from `from` (a member, or one the client has just added).
    pub(super) fn on_remote_offer(&mut self, cx: &mut Cx<'_>, from: PeerId, sdp: String) {
        let mut carried = Vec::new();
        match self.links.get(&from) {
            None => {
                let slots_free = self.links.len() < cx.config.max_connections;
                if !wants_link(cx, &from) && !slots_free {
                    cx.stats.offers_refused += 1;
                    return;
                }
            }
            Some(link) if link.role == Role::Offerer && !link.remote_described => {
                // Glare: both sides offered. The lower peer id keeps its offer.
                cx.stats.glares += 1;
                if cx.topology.me.is_some_and(|me| me < &from) {
                    return;
                }
                carried = link.buffered.clone();
                self.disconnect(&from);
            }
            Some(_) => {
                // A fresh offer on an established link: the peer restarted its side.
                self.disconnect(&from);
            }
        }
        self.connect(cx, from.clone(), Role::Answerer);
        self.signal(&from, Signal::Offer { sdp });
        for candidate in carried {
            self.signal(&from, Signal::Candidate { candidate });
        }
    }

    /// A remote answer to our offer.
    pub(super) fn on_remote_answer(&mut self, cx: &mut Cx<'_>, from: PeerId, sdp: String) {
        match self.links.get_mut(&from) {
            Some(link) if link.role == Role::Offerer && !link.remote_described => {
                link.remote_described = true;
                self.signal(&from, Signal::Answer { sdp });
                self.flush_candidates(&from);
            }
            _ => cx.stats.messages_ignored += 1,
        }
    }

    /// A remote candidate: applied once the remote description is, buffered until then.
    pub(super) fn on_remote_candidate(
        &mut self,
        cx: &mut Cx<'_>,
        from: PeerId,
        candidate: IceCandidate,
    ) {
        let max = cx.config.buffered_candidates_max;
        match self.links.get_mut(&from) {
            Some(link) if link.remote_described => {
                self.signal(&from, Signal::Candidate { candidate })
            }
            Some(link) if link.buffered.len() < max => link.buffered.push(candidate),
            Some(_) => cx.stats.candidates_dropped += 1,
            None => cx.stats.messages_ignored += 1,
        }
    }

    /// Something happened on the link to `peer`; `joined`: the client is a member of the
    /// session with a live coordinator connection (signaling can be sent, links re-offered).
    pub(super) fn on_link_event(
        &mut self,
        cx: &mut Cx<'_>,
        joined: bool,
        peer: PeerId,
        event: LinkEvent,
    ) {
        let Some(link) = self.links.get_mut(&peer) else {
            // A link already forgotten (and disconnected): nothing to do.
            return;
        };
        match event {
            LinkEvent::LocalDescription { sdp } => {
                let msg = match link.role {
                    Role::Offerer => ClientMessage::Offer { to: peer, sdp },
                    Role::Answerer => ClientMessage::Answer { to: peer, sdp },
                };
                if joined {
                    self.outputs.push_back(LinkOutput::Send(msg));
                } else {
                    cx.stats.signals_unsent += 1;
                }
            }
            LinkEvent::LocalCandidate(candidate) => {
                if joined {
                    let msg = ClientMessage::IceCandidate { to: peer, candidate };
                    self.outputs.push_back(LinkOutput::Send(msg));
                } else {
                    cx.stats.signals_unsent += 1;
                }
            }
            LinkEvent::Connected => {
                link.connected = true;
                link.deadline = None;
                self.link_failures.remove(&peer);
                self.reassess(cx, &peer);
            }
            LinkEvent::Measured { rtt_ms, loss_percent } => {
                link.rtt_ms = rtt_ms;
                link.loss_percent = loss_percent.min(100);
                self.reassess(cx, &peer);
            }
            LinkEvent::Failed | LinkEvent::Closed => {
                let had_connected = link.connected;
                self.disconnect(&peer);
                // A link that worked and ended starts afresh; one that never connected counts
                // towards the peer's backoff.
                let delay_ms = if had_connected {
                    self.link_failures.remove(&peer);
                    0
                } else {
                    self.link_failed(cx, &peer)
                };
                // The designated side tries again; the other waits for its offer, but only
                // for one negotiation timeout (after the backoff): the designated side may not
                // have noticed.
                if joined && wants_link(cx, &peer) {
                    if offers_on_rewire(cx, &peer) {
                        self.offer_again(cx, peer, delay_ms);
                    } else {
                        let wait = cx.config.negotiation_timeout_ms.saturating_add(delay_ms);
                        self.relink_at.insert(peer, cx.now.add_millis(wait));
                    }
                }
            }
        }
    }

    /// The timer of [`Links::poll_timeout`] fired: drops links that did not connect in time,
    /// then makes the relinks that are due.
    pub(super) fn handle_timeout(&mut self, cx: &mut Cx<'_>, joined: bool) {
        self.expire_negotiations(cx, joined);
        self.relink_due(cx, joined);
    }

    // ----- internals -----

    fn connect(&mut self, cx: &mut Cx<'_>, peer: PeerId, role: Role) {
        let ice_servers = cx.topology.ice_servers.to_vec();
        let deadline = cx.now.add_millis(cx.config.negotiation_timeout_ms);
        self.relink_at.remove(&peer);
        self.links.insert(peer.clone(), PeerLink::new(role, deadline));
        self.outputs.push_back(LinkOutput::Connect { peer: peer.clone(), role, ice_servers });
        self.outputs.push_back(LinkOutput::Health { peer, health: LinkHealth::Connecting });
    }

    fn disconnect(&mut self, peer: &PeerId) {
        if self.links.remove(peer).is_some() {
            self.outputs.push_back(LinkOutput::Disconnect { peer: peer.clone() });
            self.outputs
                .push_back(LinkOutput::Health { peer: peer.clone(), health: LinkHealth::Closed });
        }
    }

    /// Drops links that did not connect in time (an offer or answer lost on the way, a peer
    /// that vanished); when joined, the designated side offers again, so that a lost offer
    /// after a glare cannot leave both sides waiting for ever.
    fn expire_negotiations(&mut self, cx: &mut Cx<'_>, joined: bool) {
        let now = cx.now;
        let expired: Vec<PeerId> = self
            .links
            .iter()
            .filter(|(_, l)| l.deadline.is_some_and(|at| at <= now))
            .map(|(p, _)| p.clone())
            .collect();
        for peer in expired {
            cx.stats.negotiations_timed_out += 1;
            self.disconnect(&peer);
            let delay_ms = self.link_failed(cx, &peer);
            if joined && wants_link(cx, &peer) && offers_on_rewire(cx, &peer) {
                self.offer_again(cx, peer, delay_ms);
            }
        }
    }

    /// Counts a link to `peer` that ended before connecting; returns how long the next offer
    /// to it waits (0 after a first failure; see `Config::relink_backoff_base_ms`).
    fn link_failed(&mut self, cx: &mut Cx<'_>, peer: &PeerId) -> u64 {
        let k = self.link_failures.entry(peer.clone()).or_insert(0);
        *k = k.saturating_add(1);
        let Some(doublings) = k.checked_sub(2) else { return 0 };
        let full = cx
            .config
            .relink_backoff_base_ms
            .saturating_mul(1u64 << doublings.min(32))
            .min(cx.config.relink_backoff_cap_ms);
        cx.rng.range_inclusive(full / 2, full)
    }

    /// The designated side offers to `peer` again: now, or after `delay_ms` of backoff.
    fn offer_again(&mut self, cx: &mut Cx<'_>, peer: PeerId, delay_ms: u64) {
        if delay_ms == 0 {
            self.connect(cx, peer, Role::Offerer);
        } else {
            cx.stats.relinks_backed_off += 1;
            self.relink_at.insert(peer, cx.now.add_millis(delay_ms));
        }
    }

    /// Offers to peers whose link died on our side and whose designated side stayed silent.
    fn relink_due(&mut self, cx: &mut Cx<'_>, joined: bool) {
        let now = cx.now;
        let due: Vec<PeerId> =
            self.relink_at.iter().filter(|(_, at)| **at <= now).map(|(p, _)| p.clone()).collect();
        for peer in due {
            self.relink_at.remove(&peer);
            if joined && !self.links.contains_key(&peer) && wants_link(cx, &peer) {
                if !offers_on_rewire(cx, &peer) {
                    cx.stats.relinks += 1;
                }
                self.connect(cx, peer, Role::Offerer);
            }
        }
    }

    fn signal(&mut self, peer: &PeerId, signal: Signal) {
        self.outputs.push_back(LinkOutput::Signal { peer: peer.clone(), signal });
    }

    /// Applies candidates buffered before the remote description.
    fn flush_candidates(&mut self, peer: &PeerId) {
        let buffered = match self.links.get_mut(peer) {
            Some(link) => core::mem::take(&mut link.buffered),
            None => return,
        };
        for candidate in buffered {
            self.signal(peer, Signal::Candidate { candidate });
        }
    }

    fn reassess(&mut self, cx: &Cx<'_>, peer: &PeerId) {
        let (max_latency_ms, loss) = (cx.config.max_latency_ms, cx.config.loss_degraded_percent);
        let Some(link) = self.links.get_mut(peer) else { return };
        let health = link.assess(max_latency_ms, loss);
        if health != link.health {
            link.health = health;
            self.outputs.push_back(LinkOutput::Health { peer: peer.clone(), health });
        }
    }
}

/// Whether the topology wants a link between us and `peer`: a full mesh while the session has
/// at most `max_connections` other members, otherwise a star around the host (no links at all
/// when the session has no host).
fn wants_link(cx: &Cx<'_>, peer: &PeerId) -> bool {
    let t = &cx.topology;
    if !t.members.contains(peer) {
        return false;
    }
    if t.members.len() <= cx.config.max_connections {
        return true;
    }
    match (t.host, t.me) {
        (Some(host), Some(me)) if host == me => true,
        (Some(host), _) => host == peer,
        (None, _) => false,
    }
}

/// Who offers on a link created by a topology change (not by a join): the non-host towards the
/// host, otherwise the lower peer id.
fn offers_on_rewire(cx: &Cx<'_>, peer: &PeerId) -> bool {
    match (cx.topology.me, cx.topology.host) {
        (Some(me), Some(h)) if h == me => false,
        (_, Some(h)) if h == peer => true,
        (Some(me), _) => me < peer,
        (None, _) => false,
    }
}
