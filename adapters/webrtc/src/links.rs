//! [`PeerLinks`]: one WebRTC peer connection per peer, executing the client core's commands
//! and reporting [`LinkEvent`]s.
//!
//! Each link owns an `RTCPeerConnection` with two data channels, `movement` (unordered,
//! `max_retransmits = 0`) and `chat` (reliable, ordered), set up by [`LinkTuning`](crate::LinkTuning). By default
//! both ends create both channels with fixed stream ids (negotiated out of band: the offerer
//! before its offer, the answerer when it applies the offer); with
//! `negotiated_channels = false` the offerer announces them in band (DCEP) and the answerer
//! receives them from the stack and recognises them by label. A link is `Connected` when both
//! are open on that side. Four kinds of task feed the event channel or the wire: the stack's
//! callbacks (candidates, ICE and connection state, incoming channels), one pump per data
//! channel (open, messages, close), and per link a timeout guard, a probe loop and the chat
//! nudges ([`TailProbe`]). A per-link gate serialises their events so that the terminal event
//! is the link's last, whichever task reports it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::BytesMut;
use ro_p2p_core::wire::{IceCandidate, IceServer, PeerId};
use tokio::sync::mpsc;
use tokio::time::Instant;
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceCandidateInit, RTCIceConnectionState, RTCIceServer, RTCPeerConnectionIceEvent,
    RTCPeerConnectionState, RTCSessionDescription,
};

use crate::config::LinksConfig;
use crate::error::LinkError;
use crate::event::{Channel, FailReason, LinksEvent, Role};
use crate::tuning::{NUDGE_TEXT, TailProbe};
use crate::udp::FallbackUdpRuntime;
use ro_p2p_core::client::LinkEvent;
use ro_p2p_core::client::probe::{ProbeMessage, Probes};

/// Labels longer than this are truncated in [`FailReason::UnexpectedChannel`].
const LABEL_BYTES_MAX: usize = 64;

/// The peer links of one local client: one peer connection per remote peer.
///
/// Create it with [`PeerLinks::new`], which also returns the receiver of [`LinksEvent`]s; drain
/// that receiver continuously (the links wait when it is full). Commands take `&self`, so the
/// links can be shared (e.g. in an `Arc`) between the task that sends frames and the task that
/// applies signaling. Must be used inside a tokio runtime.
pub struct PeerLinks {
    config: Arc<LinksConfig>,
    events: mpsc::Sender<LinksEvent>,
    links: Mutex<BTreeMap<PeerId, Link>>,
    /// STUN hosts already looked up, and whether they resolved (each is warned about once).
    stun_resolves: tokio::sync::Mutex<BTreeMap<String, bool>>,
}

/// Most STUN hosts remembered as looked up.
const STUN_HOSTS_MAX: usize = 64;

/// What a command needs of a live link.
type LiveLink = (Role, Arc<dyn PeerConnection>, Arc<LinkShared>);

/// One peer's link, as the map holds it.
struct Link {
    role: Role,
    pc: Arc<dyn PeerConnection>,
    shared: Arc<LinkShared>,
}

impl PeerLinks {
    /// Links with `config`, and the receiver of their events.
    pub fn new(config: LinksConfig) -> (PeerLinks, mpsc::Receiver<LinksEvent>) {
        let (events, rx) = mpsc::channel(config.event_queue_len.max(1));
        let links = PeerLinks {
            config: Arc::new(config),
            events,
            links: Mutex::new(BTreeMap::new()),
            stun_resolves: tokio::sync::Mutex::new(BTreeMap::new()),
        };
        (links, rx)
    }

    /// The settings in use.
    pub fn config(&self) -> &LinksConfig {
        &self.config
    }

    /// Peers with a live link (connecting or connected), in order.
    pub fn peers(&self) -> Vec<PeerId> {
        let links = lock(&self.links);
        links.iter().filter(|(_, l)| !l.shared.is_ended()).map(|(p, _)| p.clone()).collect()
    }

    /// `servers` without the STUN URLs whose host does not resolve (an offline machine, a
    /// typo): one clear warning per host instead of the WebRTC stack's error per link.
    async fn resolvable(&self, servers: Vec<IceServer>) -> Vec<IceServer> {
        let mut known = self.stun_resolves.lock().await;
        let mut out = Vec::with_capacity(servers.len());
        for mut server in servers {
            let mut kept = Vec::with_capacity(server.urls.len());
            for url in std::mem::take(&mut server.urls) {
                let Some(host) = stun_host(&url) else {
                    kept.push(url);
                    continue;
                };
                let ok = match known.get(&host) {
                    Some(ok) => *ok,
                    None => {
                        let ok = match tokio::net::lookup_host(host.as_str()).await {
                            Ok(mut addrs) => addrs.next().is_some(),
                            Err(e) => {
                                tracing::warn!(
                                    "STUN server {url} does not resolve ({e}): links use host \
                                     candidates only (enough on one machine or a LAN; across \
                                     the internet give the coordinator a reachable stun_servers)"
                                );
                                false
                            }
                        };
                        if known.len() < STUN_HOSTS_MAX {
                            known.insert(host, ok);
                        }
                        ok
                    }
                };
                if ok {
                    kept.push(url);
                }
            }
            if !kept.is_empty() {
                server.urls = kept;
                out.push(server);
            }
        }
        out
    }

    /// Starts a link to `peer`. The offerer creates the channels and reports its offer as
    /// [`LinkEvent::LocalDescription`]; the answerer waits for
    /// [`apply_remote_sdp`](Self::apply_remote_sdp). `ice_servers` empty means
    /// `ice_servers_default`. The client core gives up on a link that does not connect within
    /// its negotiation timeout; `connect_timeout_ms` is only a backstop, longer than that, for
    /// a link nobody disconnects (it then ends in `Failed`, logged as `ConnectTimeout`).
    pub async fn connect(
        &self,
        peer: PeerId,
        role: Role,
        ice_servers: Vec<IceServer>,
    ) -> Result<(), LinkError> {
        self.check_room(&peer)?;
        let shared =
            Arc::new(LinkShared::new(peer.clone(), self.config.clone(), self.events.clone()));
        let ice_servers = if !self.config.use_ice_servers {
            Vec::new()
        } else if ice_servers.is_empty() {
            self.resolvable(self.config.ice_servers_default.clone()).await
        } else {
            self.resolvable(ice_servers).await
        };
        let rtc_config = RTCConfigurationBuilder::default()
            .with_ice_servers(ice_servers.into_iter().map(rtc_ice_server).collect())
            .build();
        let settings = self.config.setting_engine();
        let pc = PeerConnectionBuilder::new()
            .with_configuration(rtc_config)
            .with_setting_engine(settings)
            .with_runtime(FallbackUdpRuntime::shared())
            .with_handler(Arc::new(Handler { shared: shared.clone() }))
            .with_udp_addrs(self.config.udp_bind_addrs.clone())
            .with_data_channel_send_buffer_limit(self.config.send_buffer_bytes_max)
            .build()
            .await
            .map_err(stack_error)?;
        let pc: Arc<dyn PeerConnection> = Arc::new(pc);
        *lock(&shared.pc) = Some(pc.clone());

        // Checked again: another connect may have raced this one while the stack built.
        let refused = {
            let mut links = lock(&self.links);
            links.retain(|_, l| !l.shared.is_ended());
            if links.contains_key(&peer) {
                Some(LinkError::AlreadyLinked { peer: peer.clone() })
            } else if links.len() >= self.config.links_max {
                Some(LinkError::TooManyLinks { links: self.config.links_max })
            } else {
                links.insert(peer.clone(), Link { role, pc: pc.clone(), shared: shared.clone() });
                None
            }
        };
        if let Some(e) = refused {
            shared.retire_silently().await;
            shared.teardown();
            return Err(e);
        }
        tokio::spawn(connect_timeout(shared.clone()));

        if role == Role::Offerer
            && let Err(e) = offer(&pc, &shared).await
        {
            {
                // Only this link: a disconnect and a new connect may have replaced it meanwhile.
                let mut links = lock(&self.links);
                if links.get(&peer).is_some_and(|l| Arc::ptr_eq(&l.shared, &shared)) {
                    links.remove(&peer);
                }
            }
            shared.retire_silently().await;
            shared.teardown();
            return Err(e);
        }
        Ok(())
    }

    fn check_room(&self, peer: &PeerId) -> Result<(), LinkError> {
        let mut links = lock(&self.links);
        links.retain(|_, l| !l.shared.is_ended());
        if links.contains_key(peer) {
            return Err(LinkError::AlreadyLinked { peer: peer.clone() });
        }
        if links.len() >= self.config.links_max {
            return Err(LinkError::TooManyLinks { links: self.config.links_max });
        }
        Ok(())
    }

    fn link(&self, peer: &PeerId) -> Result<LiveLink, LinkError> {
        let links = lock(&self.links);
        match links.get(peer) {
            Some(l) if !l.shared.is_ended() => Ok((l.role, l.pc.clone(), l.shared.clone())),
            _ => Err(LinkError::UnknownPeer { peer: peer.clone() }),
        }
    }

    /// Applies the peer's SDP: the answer for an offerer; the offer for an answerer, which then
    /// reports its answer as [`LinkEvent::LocalDescription`]. The client core sends a link's
    /// remote candidates only after its remote SDP (it buffers them itself), so this crate
    /// keeps no buffer of its own: apply them in that order.
    pub async fn apply_remote_sdp(&self, peer: &PeerId, sdp: String) -> Result<(), LinkError> {
        if sdp.len() > self.config.sdp_bytes_max {
            return Err(LinkError::SdpTooLarge { len: sdp.len(), max: self.config.sdp_bytes_max });
        }
        let (role, pc, shared) = self.link(peer)?;
        let bad_sdp = |e: webrtc::error::Error| LinkError::BadRemoteSdp {
            peer: peer.clone(),
            role,
            message: e.to_string(),
        };
        if shared.remote_sdp_applied() {
            return Err(LinkError::BadRemoteSdp {
                peer: peer.clone(),
                role,
                message: "remote SDP already applied".into(),
            });
        }
        let desc = match role {
            Role::Offerer => RTCSessionDescription::answer(sdp),
            Role::Answerer => RTCSessionDescription::offer(sdp),
        }
        .map_err(bad_sdp)?;
        pc.set_remote_description(desc).await.map_err(bad_sdp)?;
        if role == Role::Answerer {
            if self.config.tuning.negotiated_channels {
                create_channels(&pc, &shared).await?;
            }
            let answer = pc.create_answer(None).await.map_err(stack_error)?;
            pc.set_local_description(answer.clone()).await.map_err(stack_error)?;
            shared.local_sdp(answer.sdp).await;
        }
        lock(&shared.state).remote_sdp_applied = true;
        Ok(())
    }

    /// Applies one of the peer's ICE candidates, after its SDP
    /// ([`LinkError::RemoteSdpNotApplied`] before). An empty candidate line (end-of-candidates)
    /// is accepted and ignored.
    pub async fn apply_remote_candidate(
        &self,
        peer: &PeerId,
        candidate: IceCandidate,
    ) -> Result<(), LinkError> {
        let (_, pc, shared) = self.link(peer)?;
        if candidate.candidate.is_empty() {
            return Ok(());
        }
        let init = RTCIceCandidateInit {
            candidate: candidate.candidate,
            sdp_mid: candidate.sdp_mid,
            sdp_mline_index: candidate.sdp_mline_index,
            ..RTCIceCandidateInit::default()
        };
        if !shared.remote_sdp_applied() {
            return Err(LinkError::RemoteSdpNotApplied { peer: peer.clone() });
        }
        pc.add_ice_candidate(init).await.map_err(|e| LinkError::BadRemoteCandidate {
            peer: peer.clone(),
            message: e.to_string(),
        })
    }

    /// Sends one (already sealed) frame to `peer` on `channel`. Never waits for the network:
    /// a full send buffer drops the frame with [`LinkError::SendBufferFull`].
    pub async fn send(
        &self,
        peer: &PeerId,
        channel: Channel,
        bytes: &[u8],
    ) -> Result<(), LinkError> {
        if bytes.len() > self.config.frame_bytes_max {
            return Err(LinkError::FrameTooLarge {
                len: bytes.len(),
                max: self.config.frame_bytes_max,
            });
        }
        let (_, _, shared) = self.link(peer)?;
        let not_open = || LinkError::ChannelNotOpen { peer: peer.clone(), channel };
        let dc = shared.open_channel(channel).ok_or_else(not_open)?;
        dc.try_send(BytesMut::from(bytes)).await.map_err(|e| match e {
            webrtc::error::Error::ErrSendBufferFull => {
                LinkError::SendBufferFull { peer: peer.clone(), channel }
            }
            webrtc::error::Error::ErrDataChannelClosed => not_open(),
            other => stack_error(other),
        })?;
        if channel == Channel::Chat {
            shared.chat_sent();
        }
        Ok(())
    }

    /// Closes the link to `peer`: reports [`LinkEvent::Closed`] (unless the link already ended)
    /// and releases its sockets before returning. The peer sees `Closed` too.
    pub async fn disconnect(&self, peer: &PeerId) -> Result<(), LinkError> {
        let link = lock(&self.links).remove(peer);
        let Some(link) = link else {
            return Err(LinkError::UnknownPeer { peer: peer.clone() });
        };
        link.shared.end(LinkEvent::Closed).await;
        link.shared.close().await;
        Ok(())
    }

    /// Closes every link, as [`disconnect`](Self::disconnect) does.
    pub async fn close_all(&self) {
        let links = std::mem::take(&mut *lock(&self.links));
        for link in links.into_values() {
            link.shared.end(LinkEvent::Closed).await;
            link.shared.close().await;
        }
    }
}

impl Drop for PeerLinks {
    fn drop(&mut self) {
        // The stack's drivers hold our handlers, which hold the connections: without an
        // explicit close they would keep each other alive.
        for link in lock(&self.links).values() {
            link.shared.teardown();
        }
    }
}

/// Creates both data channels as [`LinkTuning`](crate::LinkTuning) says.
async fn create_channels(
    pc: &Arc<dyn PeerConnection>,
    shared: &Arc<LinkShared>,
) -> Result<(), LinkError> {
    for channel in [Channel::Movement, Channel::Chat] {
        let init = shared.config.tuning.channel_init(channel);
        let dc = pc.create_data_channel(channel.label(), Some(init)).await.map_err(stack_error)?;
        shared.attach(channel, dc);
    }
    Ok(())
}

/// Creates the channels and the offer, and reports it.
async fn offer(pc: &Arc<dyn PeerConnection>, shared: &Arc<LinkShared>) -> Result<(), LinkError> {
    create_channels(pc, shared).await?;
    let offer = pc.create_offer(None).await.map_err(stack_error)?;
    pc.set_local_description(offer.clone()).await.map_err(stack_error)?;
    shared.local_sdp(offer.sdp).await;
    Ok(())
}

/// Ends a link nobody connected or disconnected in time (a backstop: the client core drops a
/// link that misses its negotiation timeout, which is shorter).
async fn connect_timeout(shared: Arc<LinkShared>) {
    let timeout_ms = shared.config.connect_timeout_ms;
    tokio::time::sleep(Duration::from_millis(timeout_ms)).await;
    if !shared.is_ended() && !lock(&shared.state).connected {
        shared.fail(FailReason::ConnectTimeout { timeout_ms }).await;
    }
}

/// Sends a probe every `probe_interval_ms` and reports the measurement of the previous ones.
async fn probe_loop(shared: Arc<LinkShared>) {
    let mut tick =
        tokio::time::interval(Duration::from_millis(shared.config.probe_interval_ms.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if shared.is_ended() {
            return;
        }
        let now_us = shared.now_us();
        let (seq, summary, dc) = {
            let mut st = lock(&shared.state);
            st.probes.expire(now_us);
            let summary = st.probes.summary();
            (st.probes.ping(now_us), summary, st.channel(Channel::Movement))
        };
        if let Some((rtt_ms, loss_percent)) = summary {
            shared.emit(LinkEvent::Measured { rtt_ms, loss_percent }).await;
        }
        if let Some(dc) = dc {
            // A probe that cannot be sent is simply lost, which is what it measures.
            let _ = dc.try_send_text(&ProbeMessage::Ping(seq).encode()).await;
        }
    }
}

/// Sends the chat nudges ([`TailProbe`]) on the movement channel until the link ends.
async fn nudge_loop(shared: Arc<LinkShared>) {
    loop {
        let due_ms = lock(&shared.state).tail.next_due_ms();
        match due_ms {
            None => shared.nudge.notified().await,
            Some(due_ms) => {
                let at = shared.started + Duration::from_millis(due_ms);
                tokio::select! {
                    () = tokio::time::sleep_until(at) => {}
                    () = shared.nudge.notified() => {}
                }
            }
        }
        if shared.is_ended() {
            return;
        }
        let now_ms = shared.now_us() / 1000;
        let (due, dc) = {
            let mut st = lock(&shared.state);
            (st.tail.poll_nudge(now_ms), st.channel(Channel::Movement))
        };
        if due && let Some(dc) = dc {
            // A nudge that cannot be sent is lost like any other; the retransmission timer
            // remains.
            let _ = dc.try_send_text(NUDGE_TEXT).await;
        }
    }
}

/// Forwards one data channel's events until it closes.
async fn pump(shared: Arc<LinkShared>, channel: Channel, dc: Arc<dyn DataChannel>) {
    while let Some(event) = dc.poll().await {
        match event {
            DataChannelEvent::OnOpen => shared.channel_open(channel).await,
            DataChannelEvent::OnMessage(msg) if msg.is_string && channel == Channel::Movement => {
                shared.probe_message(&dc, &msg.data).await;
            }
            // The core sends binary only; text on chat is nobody's.
            DataChannelEvent::OnMessage(msg) if msg.is_string => {}
            DataChannelEvent::OnMessage(msg) => {
                let peer = shared.peer.clone();
                shared
                    .send_event(LinksEvent::Data { peer, channel, bytes: Vec::from(msg.data) })
                    .await;
            }
            DataChannelEvent::OnClose => break,
            _ => {}
        }
    }
    shared.closed().await;
}

/// The part of a link that the stack's callbacks and the link's tasks share.
struct LinkShared {
    peer: PeerId,
    config: Arc<LinksConfig>,
    events: mpsc::Sender<LinksEvent>,
    started: Instant,
    /// Serialises events; `true` once the terminal event went out (nothing follows it).
    gate: tokio::sync::Mutex<bool>,
    /// Mirrors the gate's flag for synchronous readers.
    ended: AtomicBool,
    state: Mutex<LinkState>,
    /// Taken on teardown, which breaks the handler -> shared -> connection cycle.
    pc: Mutex<Option<Arc<dyn PeerConnection>>>,
    /// Wakes the nudge loop: a chat frame went out, or the link ended.
    nudge: tokio::sync::Notify,
}

/// A link's mutable state. Its lock is never held across an `.await`.
struct LinkState {
    channels: BTreeMap<Channel, (Arc<dyn DataChannel>, bool)>,
    connected: bool,
    /// ICE last reported `disconnected` or `failed`.
    ice_lost: bool,
    /// Local candidates wait here until the local SDP has been reported.
    local_sdp_reported: bool,
    pending_local: Vec<IceCandidate>,
    /// Whether the remote SDP has been applied (candidates are taken from then on).
    remote_sdp_applied: bool,
    probes: Probes,
    /// When the next chat nudge is due.
    tail: TailProbe,
}

impl LinkState {
    fn channel(&self, channel: Channel) -> Option<Arc<dyn DataChannel>> {
        self.channels.get(&channel).map(|(dc, _)| dc.clone())
    }
}

impl LinkShared {
    fn new(peer: PeerId, config: Arc<LinksConfig>, events: mpsc::Sender<LinksEvent>) -> Self {
        let probes = Probes::new(config.probe_window, config.probe_timeout_ms.saturating_mul(1000));
        let tail = TailProbe::new(&config.tuning);
        LinkShared {
            peer,
            config,
            events,
            started: Instant::now(),
            gate: tokio::sync::Mutex::new(false),
            ended: AtomicBool::new(false),
            state: Mutex::new(LinkState {
                channels: BTreeMap::new(),
                connected: false,
                ice_lost: false,
                local_sdp_reported: false,
                pending_local: Vec::new(),
                remote_sdp_applied: false,
                probes,
                tail,
            }),
            pc: Mutex::new(None),
            nudge: tokio::sync::Notify::new(),
        }
    }

    fn now_us(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn is_ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    fn remote_sdp_applied(&self) -> bool {
        lock(&self.state).remote_sdp_applied
    }

    /// Reports a non-terminal link event, unless the link has ended.
    async fn emit(&self, event: LinkEvent) {
        self.send_event(LinksEvent::Link { peer: self.peer.clone(), event }).await;
    }

    /// Reports a non-terminal event, unless the link has ended.
    async fn send_event(&self, event: LinksEvent) {
        let ended = self.gate.lock().await;
        if !*ended {
            // A dropped receiver means nobody listens any more; nothing to do.
            let _ = self.events.send(event).await;
        }
    }

    /// Reports the terminal event, unless one was already reported. Returns whether it did.
    async fn end(&self, event: LinkEvent) -> bool {
        let mut ended = self.gate.lock().await;
        if *ended {
            return false;
        }
        *ended = true;
        self.ended.store(true, Ordering::Release);
        self.nudge.notify_one();
        let _ = self.events.send(LinksEvent::Link { peer: self.peer.clone(), event }).await;
        true
    }

    async fn fail(&self, reason: FailReason) {
        if self.end(LinkEvent::Failed).await {
            tracing::info!(peer = %self.peer, %reason, "peer link failed");
            self.teardown();
        }
    }

    async fn closed(&self) {
        if self.end(LinkEvent::Closed).await {
            self.teardown();
        }
    }

    /// Ends the link without an event (a `connect` that returned an error never existed).
    async fn retire_silently(&self) {
        *self.gate.lock().await = true;
        self.ended.store(true, Ordering::Release);
        self.nudge.notify_one();
    }

    /// A chat frame went out: its nudges follow.
    fn chat_sent(&self) {
        if self.config.tuning.chat_nudges > 0 {
            let now_ms = self.now_us() / 1000;
            lock(&self.state).tail.chat_sent(now_ms);
            self.nudge.notify_one();
        }
    }

    /// Closes the channels and the connection in the background.
    fn teardown(&self) {
        let pc = lock(&self.pc).take();
        let channels = std::mem::take(&mut lock(&self.state).channels);
        if pc.is_none() && channels.is_empty() {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(close_link(pc, channels));
        }
    }

    /// Closes the channels and the connection, and waits for it.
    async fn close(&self) {
        let pc = lock(&self.pc).take();
        let channels = std::mem::take(&mut lock(&self.state).channels);
        close_link(pc, channels).await;
    }

    /// Reports the local SDP, then the candidates gathered meanwhile.
    async fn local_sdp(&self, sdp: String) {
        self.emit(LinkEvent::LocalDescription { sdp }).await;
        let pending = {
            let mut st = lock(&self.state);
            st.local_sdp_reported = true;
            std::mem::take(&mut st.pending_local)
        };
        for candidate in pending {
            self.emit(LinkEvent::LocalCandidate(candidate)).await;
        }
    }

    async fn local_candidate(&self, candidate: IceCandidate) {
        {
            let mut st = lock(&self.state);
            if !st.local_sdp_reported {
                if st.pending_local.len() < self.config.pending_candidates_max {
                    st.pending_local.push(candidate);
                }
                return;
            }
        }
        self.emit(LinkEvent::LocalCandidate(candidate)).await;
    }

    /// Takes a data channel into the link and starts pumping its events.
    fn attach(self: &Arc<Self>, channel: Channel, dc: Arc<dyn DataChannel>) {
        lock(&self.state).channels.insert(channel, (dc.clone(), false));
        tokio::spawn(pump(self.clone(), channel, dc));
    }

    fn open_channel(&self, channel: Channel) -> Option<Arc<dyn DataChannel>> {
        let st = lock(&self.state);
        match st.channels.get(&channel) {
            Some((dc, true)) => Some(dc.clone()),
            _ => None,
        }
    }

    async fn channel_open(self: &Arc<Self>, channel: Channel) {
        let now_connected = {
            let mut st = lock(&self.state);
            if let Some((_, open)) = st.channels.get_mut(&channel) {
                *open = true;
            }
            let all_open = st.channels.len() == 2 && st.channels.values().all(|(_, open)| *open);
            let now_connected = all_open && !st.connected;
            st.connected |= all_open;
            now_connected
        };
        if now_connected {
            self.emit(LinkEvent::Connected).await;
            tokio::spawn(probe_loop(self.clone()));
            if self.config.tuning.chat_nudges > 0 {
                tokio::spawn(nudge_loop(self.clone()));
            }
        }
    }

    async fn probe_message(&self, dc: &Arc<dyn DataChannel>, text: &[u8]) {
        match ProbeMessage::decode(text) {
            Some(ProbeMessage::Ping(seq)) => {
                let _ = dc.try_send_text(&ProbeMessage::Pong(seq).encode()).await;
            }
            Some(ProbeMessage::Pong(seq)) => {
                let now_us = self.now_us();
                lock(&self.state).probes.pong(seq, now_us);
            }
            None => {}
        }
    }
}

async fn close_link(
    pc: Option<Arc<dyn PeerConnection>>,
    channels: BTreeMap<Channel, (Arc<dyn DataChannel>, bool)>,
) {
    // Closing the channels first resets their SCTP streams, which the peer sees as a close
    // at once; closing only the connection would leave it to notice by ICE timeout.
    for (dc, _) in channels.values() {
        let _ = dc.close().await;
    }
    if let Some(pc) = pc {
        let _ = pc.close().await;
    }
}

/// The stack's callbacks for one link.
struct Handler {
    shared: Arc<LinkShared>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        match event.candidate.to_json() {
            Ok(init) => {
                let candidate = IceCandidate {
                    candidate: init.candidate,
                    sdp_mid: init.sdp_mid,
                    sdp_mline_index: init.sdp_mline_index,
                };
                self.shared.local_candidate(candidate).await;
            }
            Err(e) => tracing::warn!(peer = %self.shared.peer, "unusable local candidate: {e}"),
        }
    }

    async fn on_ice_connection_state_change(&self, state: RTCIceConnectionState) {
        tracing::debug!(peer = %self.shared.peer, ?state, "ICE state");
        lock(&self.shared.state).ice_lost =
            matches!(state, RTCIceConnectionState::Disconnected | RTCIceConnectionState::Failed);
        if state == RTCIceConnectionState::Failed {
            self.shared.fail(FailReason::IceFailed).await;
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        tracing::debug!(peer = %self.shared.peer, ?state, "connection state");
        match state {
            RTCPeerConnectionState::Failed => {
                // The stack may report the connection failed before ICE does; when ICE had
                // already lost the peer, that is the cause.
                let ice_lost = lock(&self.shared.state).ice_lost;
                let reason =
                    if ice_lost { FailReason::IceFailed } else { FailReason::ConnectionFailed };
                self.shared.fail(reason).await;
            }
            RTCPeerConnectionState::Closed => self.shared.closed().await,
            _ => {}
        }
    }

    async fn on_data_channel(&self, dc: Arc<dyn DataChannel>) {
        let label = dc.label().await.unwrap_or_default();
        match Channel::from_label(&label) {
            Some(channel) if lock(&self.shared.state).channel(channel).is_none() => {
                self.shared.attach(channel, dc);
            }
            _ => {
                let mut label = label;
                truncate(&mut label, LABEL_BYTES_MAX);
                let _ = dc.close().await;
                self.shared.fail(FailReason::UnexpectedChannel { label }).await;
            }
        }
    }
}

/// `host:port` of a `stun:`/`stuns:` URL (default port 3478), `None` for other URLs.
fn stun_host(url: &str) -> Option<String> {
    let rest = url.strip_prefix("stun:").or_else(|| url.strip_prefix("stuns:"))?;
    let rest = rest.split('?').next().unwrap_or(rest);
    let has_port = match rest.rfind(']') {
        Some(i) => rest[i..].contains(':'),
        None => rest.contains(':'),
    };
    Some(if has_port { rest.to_owned() } else { format!("{rest}:3478") })
}

fn rtc_ice_server(s: IceServer) -> RTCIceServer {
    RTCIceServer {
        urls: s.urls,
        username: s.username.unwrap_or_default(),
        credential: s.credential.unwrap_or_default(),
    }
}

fn stack_error(e: webrtc::error::Error) -> LinkError {
    LinkError::Stack(e.to_string())
}

fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

/// Locks a std mutex; a panic elsewhere while holding it does not make the state unusable here.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turn_credentials_from_the_coordinator_reach_the_stack() {
        let server = IceServer {
            urls: vec!["turn:turn.example:3478?transport=udp".into()],
            username: Some("1763700000:2000001".into()),
            credential: Some("c2VjcmV0".into()),
        };
        let rtc = rtc_ice_server(server);
        assert_eq!(rtc.urls, vec!["turn:turn.example:3478?transport=udp".to_string()]);
        assert_eq!(rtc.username, "1763700000:2000001");
        assert_eq!(rtc.credential, "c2VjcmV0");
        let stun = rtc_ice_server(IceServer {
            urls: vec!["stun:stun.example:3478".into()],
            username: None,
            credential: None,
        });
        assert!(stun.username.is_empty() && stun.credential.is_empty());
    }

    #[test]
    fn stun_hosts_get_the_default_port() {
        assert_eq!(
            stun_host("stun:stun.l.google.com:19302").as_deref(),
            Some("stun.l.google.com:19302")
        );
        assert_eq!(stun_host("stun:h.example").as_deref(), Some("h.example:3478"));
        assert_eq!(stun_host("stuns:[::1]").as_deref(), Some("[::1]:3478"));
        assert_eq!(stun_host("turn:t.example:3478?transport=udp"), None);
    }

    #[tokio::test]
    async fn stun_servers_that_do_not_resolve_are_dropped_and_turn_kept() {
        let (links, _events) = PeerLinks::new(LinksConfig::default());
        let server =
            |url: &str| IceServer { urls: vec![url.to_owned()], username: None, credential: None };
        let kept = links
            .resolvable(vec![
                server("stun:nonexistent.invalid:3478"),
                server("stun:127.0.0.1:3478"),
                server("turn:nonexistent.invalid:3478"),
            ])
            .await;
        let urls: Vec<&str> = kept.iter().flat_map(|s| s.urls.iter().map(String::as_str)).collect();
        assert_eq!(urls, ["stun:127.0.0.1:3478", "turn:nonexistent.invalid:3478"]);
        assert_eq!(links.stun_resolves.lock().await.get("nonexistent.invalid:3478"), Some(&false));
    }

    #[test]
    fn long_labels_are_cut_on_a_char_boundary() {
        let mut s = "é".repeat(40);
        truncate(&mut s, 63);
        assert_eq!(s.len(), 62);
        let mut short = String::from("chat");
        truncate(&mut short, 64);
        assert_eq!(short, "chat");
    }
}
