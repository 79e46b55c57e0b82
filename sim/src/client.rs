//! A simulated game client: the production client driver
//! ([`ro_p2p_tokio::client::Driver`]) running the production [`Node`] (signaling client,
//! framer, router, sealer and openers), with a real WebSocket (tokio-tungstenite on turmoil TCP,
//! through [`SimConnector`]) and peer links at the datagram boundary ([`SimTransport`]); the
//! game's map-server connection; and a player drawing [`Action`]s and feeding their packets
//! through the driver's [`NodeHandle`]. A [`SimObserver`] inside the driver records every
//! decision for the checkers.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ro_p2p_core::client::{self, Client, ClientEvent, Input, LinkHealth};
use ro_p2p_core::node::{Channel, Node, NodeConfig, NodeStats, ReceiveDrop};
use ro_p2p_core::packet::{ClientEncoder, Obfuscation};
use ro_p2p_core::route::Policy;
use ro_p2p_core::seal::{FrameId, SealConfig, Sealer};
use ro_p2p_core::wire::{
    Capabilities, ClientMessage, PeerId, ServerMessage, Zone, decode_client, decode_server,
};
use ro_p2p_core::{Instant, Rng, SansIo};
use ro_p2p_tokio::client::{Driver, DriverEvent, DriverStopped, NodeHandle, Observer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use crate::address::{COORDINATOR_URL, MAP_PORT, coordinator_urls};
use crate::game::{GameReader, Shown, account_of};
use crate::peer::body_claims;
use crate::plan::{P2P_ZONES, Plan, SETTLE_MS, ZONES};
use crate::record::{ClientView, PeersOnlyFrame, RelayedSignal, Shared, What};
use crate::traffic::{Action, Built, Vocabulary, next_action};
use crate::transport::{SimConnector, SimTransport};

/// Everything a client host needs, shared across its incarnations.
#[derive(Debug)]
pub struct ClientCtx {
    /// Host name and peer id.
    pub name: String,
    /// 1-based index.
    pub index: usize,
    /// The seed's plan.
    pub plan: Arc<Plan>,
    /// The run's record.
    pub recorder: Shared,
    /// Current per-datagram loss, in percent (set by the runner).
    pub loss_percent: Arc<AtomicU8>,
    /// Incarnations so far.
    pub incarnation: Cell<u64>,
    /// Test-only sabotage still to do (shared by all clients: once per run).
    pub sabotage_pending: Rc<Cell<bool>>,
    /// The end of the liveness phase: players keep playing but change zones no more, so the
    /// convergence check sees a settled world.
    pub quiet: Arc<AtomicBool>,
}

/// The client's settings in the simulation (short timers, like the coordinator's).
pub fn client_config(name: &str, rng: &mut Rng) -> client::Config {
    let strong = rng.chance(1, 2);
    client::Config {
        coordinator_urls: vec![COORDINATOR_URL.to_owned()],
        token: None,
        peer_id: PeerId::new(name).ok(),
        reconnect_delay_ms: 200,
        backoff_cap_ms: 2_000,
        max_retries: 3,
        connection_timeout_ms: 2_000,
        p2p_enabled: true,
        p2p_enabled_zones: P2P_ZONES.iter().filter_map(|z| Zone::new(*z).ok()).collect(),
        max_connections: 5,
        max_latency_ms: 400,
        loss_degraded_percent: 50,
        capabilities: Some(Capabilities {
            cpu_cores: if strong { 8 } else { 2 },
            cpu_mhz: 3_600,
            memory_mb: 16_384,
            bandwidth_mbps: 500,
            latency_ms: 20,
        }),
        heartbeat_interval_ms: 1_000,
        negotiation_timeout_ms: 4_000,
        buffered_candidates_max: 32,
        relink_backoff_base_ms: 500,
        relink_backoff_cap_ms: 8_000,
    }
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

/// What the player is about to send, for the observer to record against the router's verdict.
#[derive(Debug)]
struct Pending {
    built: Built,
    conn_key: String,
    seq: u64,
}

/// The checkers' eyes inside the driver: records signaling, routing verdicts, peer frames and
/// events as the production [`Driver`] executes the node.
struct SimObserver {
    ctx: Rc<ClientCtx>,
    session: Arc<Mutex<String>>,
    pending: Rc<RefCell<Option<Pending>>>,
    /// The node's counters after the previous game send.
    stats: NodeStats,
    /// The label and plain bytes of a packet routed to peers only, while its frames are
    /// handed out.
    peers_only: Option<(String, Vec<u8>)>,
    /// Plain bytes of the latest peers-only chat and emote frames, by frame id, for their late
    /// server copies.
    peers_only_plain: std::collections::VecDeque<(FrameId, Vec<u8>)>,
    /// Late server copies the node has queued and the next game send hands out first.
    late_queue: Vec<Vec<u8>>,
    /// The game's stream as the node hands it out (checker 9).
    game: GameReader,
    /// The map connection's key in the record, once known.
    conn_key: Option<String>,
}

/// Peers-only frames whose plain bytes [`SimObserver`] keeps for late copies.
const PEERS_ONLY_PLAIN_KEPT: usize = 512;

impl Observer for SimObserver {
    fn signal_in(&mut self, _node: &Node, text: &str) {
        record_incoming(&self.ctx, text);
    }

    fn signal_out(&mut self, _node: &Node, frame: &str) {
        let (msg, to) = match decode_client(frame.as_bytes()) {
            Ok(m) => {
                let to = match &m {
                    ClientMessage::Offer { to, .. }
                    | ClientMessage::Answer { to, .. }
                    | ClientMessage::IceCandidate { to, .. } => Some(to.to_string()),
                    _ => None,
                };
                (m.type_name().to_owned(), to)
            }
            Err(_) => ("undecodable".to_owned(), None),
        };
        self.ctx.recorder.borrow_mut().push(&self.ctx.name, What::SignalOut { msg, to });
    }

    fn game_sent(&mut self, node: &Node, _bytes: &[u8], to_server: &[u8]) {
        let before = std::mem::replace(&mut self.stats, node.stats().clone());
        // Late server copies come first in `to_server`, in the order they were decided.
        let late = std::mem::take(&mut self.late_queue);
        let late_len: usize = late.iter().map(Vec::len).sum();
        let pending = self.pending.borrow_mut().take();
        if let Some(p) = &pending {
            self.conn_key = Some(p.conn_key.clone());
        }
        if let (false, Some(conn)) = (late.is_empty(), &self.conn_key) {
            let mut r = self.ctx.recorder.borrow_mut();
            r.server_expected.entry(conn.clone()).or_default().extend(late);
        }
        let Some(p) = pending else { return };
        let to_server = &to_server[late_len.min(to_server.len())..];
        let route = routed(&before, &self.stats);
        if route == "peers" {
            self.peers_only = Some((p.built.label.to_owned(), p.built.plain.clone()));
            // Peers only is allowed when every member has a healthy link: a member without one
            // would get the packet neither from a peer nor from the server.
            let healthy = node.client().route_inputs().healthy_peers;
            let missed: Vec<String> = node
                .client()
                .members()
                .iter()
                .filter(|m| !healthy.contains(m))
                .map(|m| m.to_string())
                .collect();
            let mut r = self.ctx.recorder.borrow_mut();
            let t_ms = r.now_ms;
            // A player settled in the sender's session that the sender does not count among
            // its members gets the packet from nobody (a membership change it never heard).
            let session = r.views.get(&self.ctx.name).and_then(|v| v.session.clone());
            let zone = r.player_zones.get(&self.ctx.name).cloned();
            let members = node.client().members();
            let unknown: Vec<String> = r
                .views
                .iter()
                .filter(|(name, v)| {
                    **name != self.ctx.name
                        && session.is_some()
                        && v.session == session
                        && r.player_zones.get(*name) == zone.as_ref()
                        && r.session_since_ms.get(*name).is_some_and(|s| s + SETTLE_MS <= t_ms)
                        && !members.iter().any(|m| m.as_str() == name.as_str())
                })
                .map(|(name, _)| name.clone())
                .collect();
            if !unknown.is_empty() {
                r.peers_only_unknown.push((
                    t_ms,
                    format!(
                        "{}: {} packet #{} routed to peers only, not to {unknown:?}, joined to its session for {SETTLE_MS} ms or more",
                        self.ctx.name, p.built.label, p.seq
                    ),
                ));
            }
            if !missed.is_empty() || healthy.is_empty() {
                r.peers_only_lost.push((
                    t_ms,
                    format!(
                        "{}: {} packet #{} routed to peers only, lost for members {missed:?} without a healthy link (healthy: {})",
                        self.ctx.name,
                        p.built.label,
                        p.seq,
                        healthy.len()
                    ),
                ));
            }
        }
        record_verdict(&self.ctx, &p, route, &before, &self.stats, !to_server.is_empty());
    }

    fn peer_frame_out(&mut self, peer: &PeerId, _channel: Channel, frame: &[u8]) {
        let Some((label, plain)) = &self.peers_only else { return };
        let seal = ro_p2p_core::seal::frame_id(frame);
        if let Some((id, true)) = seal
            && self.peers_only_plain.back().is_none_or(|(last, _)| *last != id)
        {
            if self.peers_only_plain.len() >= PEERS_ONLY_PLAIN_KEPT {
                self.peers_only_plain.pop_front();
            }
            self.peers_only_plain.push_back((id, plain.clone()));
        }
        let mut r = self.ctx.recorder.borrow_mut();
        let t_ms = r.now_ms;
        let to = peer.to_string();
        let to_on_map =
            r.player_zones.get(&self.ctx.name).is_some_and(|z| r.player_zones.get(&to) == Some(z));
        r.peers_only_sent.push(PeersOnlyFrame {
            t_ms,
            from: self.ctx.name.clone(),
            to,
            frame: frame_id(frame),
            label: label.clone(),
            seal: seal.filter(|(_, ack)| *ack).map(|(id, _)| id),
            to_on_map,
        });
    }

    fn peer_frame_in(
        &mut self,
        _node: &Node,
        peer: &PeerId,
        frame: &[u8],
        result: &Result<(), ReceiveDrop>,
    ) {
        if result.is_ok() {
            let mut r = self.ctx.recorder.borrow_mut();
            r.peer_frames_opened.insert((peer.to_string(), self.ctx.name.clone(), frame_id(frame)));
        }
    }

    fn event(&mut self, _node: &Node, event: &DriverEvent) {
        match event {
            DriverEvent::Client(e) => on_event(&self.ctx, &self.session, e),
            DriverEvent::ToGame { bytes, .. } => {
                let shown = self.game.read(bytes);
                let mut r = self.ctx.recorder.borrow_mut();
                let t_ms = r.now_ms;
                let viewer = &self.ctx.name;
                r.shown.extend(shown.into_iter().map(|what| Shown {
                    t_ms,
                    viewer: viewer.clone(),
                    what,
                }));
            }
            DriverEvent::Received { from, event } => {
                let mut payload = Vec::new();
                event.as_event().encode(&mut payload);
                record_delivery(&self.ctx, from.as_str(), payload);
            }
            DriverEvent::LateServerCopy { frame, .. } => {
                if let Some((_, plain)) =
                    self.peers_only_plain.iter().rev().find(|(id, _)| id == frame)
                {
                    self.late_queue.push(plain.clone());
                }
                let mut r = self.ctx.recorder.borrow_mut();
                r.late_copies.insert((self.ctx.name.clone(), *frame));
                r.coverage.hit(crate::coverage::Rare::LateServerCopy);
            }
            DriverEvent::Dropped { from, reason: ReceiveDrop::InvalidEvent(e) } => {
                // An honest sender never seals anything but a peer event.
                let mut r = self.ctx.recorder.borrow_mut();
                let t_ms = r.now_ms;
                r.invalid_frames.push((
                    t_ms,
                    from.to_string(),
                    self.ctx.name.clone(),
                    e.to_string(),
                ));
            }
            _ => {}
        }
    }

    fn stepped(&mut self, node: &Node) {
        self.peers_only = None;
        publish_view(&self.ctx, node.client());
        // Frames held for a key not yet known here were opened when it arrived.
        let mut r = self.ctx.recorder.borrow_mut();
        for (peer, frame) in node.opened_after_key() {
            r.coverage.hit(crate::coverage::Rare::OpenedAfterKey);
            r.peer_frames_opened.insert((peer.to_string(), self.ctx.name.clone(), frame_id(frame)));
        }
    }
}

/// A sealed frame's identity in the record (frames are unique: each has its own nonce).
fn frame_id(frame: &[u8]) -> u64 {
    frame
        .iter()
        .fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3))
}

/// How the router sent one packet, from the counters before and after.
fn routed(before: &NodeStats, after: &NodeStats) -> &'static str {
    if after.desyncs > before.desyncs {
        "desync"
    } else if after.packets_peers > before.packets_peers {
        "peers"
    } else if after.packets_mirrored > before.packets_mirrored {
        "server+peers"
    } else if after.packets_server > before.packets_server {
        "server"
    } else {
        "none"
    }
}

/// Runs one incarnation of a client host: the production driver with the node, and a player.
pub async fn client_host(ctx: Rc<ClientCtx>) -> turmoil::Result {
    let incarnation = ctx.incarnation.get() + 1;
    ctx.incarnation.set(incarnation);
    let name = ctx.name.clone();
    let plan = ctx.plan.clone();
    let recorder = ctx.recorder.clone();
    recorder.borrow_mut().push(&name, What::Started { incarnation });
    let epoch = tokio::time::Instant::now();
    let now = move || Instant::from_millis(epoch.elapsed().as_millis() as u64);

    let mut rng = Rng::from_seed(plan.seed ^ fnv(&name) ^ (incarnation << 48));
    let mut vocab_rng = Rng::from_seed(plan.seed ^ fnv(&name));
    let version = plan.packet_version();
    let vocab = Vocabulary::new(version, &mut vocab_rng)
        .map_err(|m| format!("PACKETVER {version} lacks {}", m.0))?;
    let policy: Policy = plan.policy.parse().map_err(|e| format!("{e}"))?;
    let obfuscation = if plan.obfuscated { Obfuscation::On } else { Obfuscation::Off };
    let character = format!("Player{:02}", ctx.index);

    let mut client = client_config(&name, &mut vocab_rng);
    client.coordinator_urls = coordinator_urls(&plan, ctx.index);
    let config = NodeConfig {
        client,
        packet_version: version,
        obfuscation,
        policy,
        seal: SealConfig::default(),
    };
    let mut node = Node::new(config, rng.fork(), Instant::ZERO);
    // Peers are named by host here; the game knows them by account id.
    if let Some(aid) = account_of(&name) {
        node.set_own_account_id(aid);
    }
    for other in &plan.clients {
        if let (Ok(peer), Some(aid)) = (PeerId::new(other.as_str()), account_of(other)) {
            node.set_peer_account_id(peer, aid);
        }
    }
    let start_zone = plan.start_zones.get(&name).cloned().unwrap_or_else(|| ZONES[0].to_owned());
    recorder.borrow_mut().player_zones.insert(name.clone(), start_zone.clone());
    if let Ok(z) = Zone::new(start_zone) {
        node.handle_input(Instant::ZERO, Input::ZoneChanged(z));
    }
    let session = Arc::new(Mutex::new(String::new()));
    let (inject_tx, inject_rx) = mpsc::unbounded_channel();
    let transport = SimTransport::bind(
        &name,
        plan.clone(),
        ctx.loss_percent.clone(),
        rng.fork(),
        session.clone(),
        inject_rx,
        plan.options.sabotage_lose_peer_frames.then(|| ctx.quiet.clone()),
    )
    .await?;
    let pending = Rc::new(RefCell::new(None));
    let observer = SimObserver {
        ctx: ctx.clone(),
        session,
        pending: pending.clone(),
        stats: NodeStats::default(),
        peers_only: None,
        peers_only_plain: std::collections::VecDeque::new(),
        late_queue: Vec::new(),
        game: GameReader::new(version),
        conn_key: None,
    };
    let (driver, handle, events) = Driver::new(node, SimConnector, transport);
    // Everything the checkers need comes through the observer, in order.
    drop(events);
    tokio::task::spawn_local(driver.with_observer(observer).run());

    // The game's connection to the map server (never faulted: it is not ours to break).
    let map = loop {
        match turmoil::net::TcpStream::connect(("map", MAP_PORT)).await {
            Ok(s) => break s,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let conn_key = format!("{name}:{}", map.local_addr()?.port());
    let (mut map_rx, mut map) = map.into_split();
    // What the map server sends goes through the node to the game (checker 9 reads it).
    let reader = handle.clone();
    tokio::task::spawn_local(async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match map_rx.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if reader.server_bytes(buf[..n].to_vec(), None).await.is_err() {
                break;
            }
        }
    });
    let mut encoder = ClientEncoder::new(version, obfuscation);
    let mut saboteur: Option<Sealer> = None;
    let mut seq = 0u64;
    let mut next_action_at = now().add_millis(rng.range_inclusive(0, plan.action_interval_ms * 2));

    loop {
        tokio::time::sleep_until(epoch + Duration::from_millis(next_action_at.as_millis())).await;
        let t = now();
        next_action_at = t.add_millis(
            rng.range_inclusive(plan.action_interval_ms / 2, plan.action_interval_ms * 3 / 2),
        );
        if rng.chance(plan.zone_change_percent, 100) && !ctx.quiet.load(Ordering::Relaxed) {
            let z = ZONES[rng.below_inclusive(ZONES.len() as u64 - 1) as usize];
            if let Ok(z) = Zone::new(z) {
                {
                    let mut r = recorder.borrow_mut();
                    let t_ms = r.now_ms;
                    r.left_or_crashed_ms.entry(name.clone()).or_default().push(t_ms);
                    r.player_zones.insert(name.clone(), z.to_string());
                }
                handle.zone_changed(z).await?;
            }
            continue;
        }
        let action = next_action(&mut rng);
        seq += 1;
        let built = vocab.build(&action, &character, &mut rng);
        let mut wire = Vec::new();
        encoder.encode(&built.plain, &mut wire);
        let plain = built.plain.clone();
        *pending.borrow_mut() = Some(Pending { built, conn_key: conn_key.clone(), seq });
        let server = handle.game_send(wire).await?;
        if !server.is_empty() {
            map.write_all(&server).await?;
        }
        if matches!(action, Action::NpcTalk) && ctx.sabotage_pending.get() {
            sabotage(&ctx, &handle, &mut saboteur, &inject_tx, &mut rng, plain).await?;
        }
    }
}

/// Test-only: leak one NPC packet to a peer, as a broken router would, sealed under the
/// player's identity and session key by a second sealer.
async fn sabotage(
    ctx: &ClientCtx,
    handle: &NodeHandle,
    saboteur: &mut Option<Sealer>,
    inject: &mpsc::UnboundedSender<crate::transport::Injected>,
    rng: &mut Rng,
    plain: Vec<u8>,
) -> Result<(), DriverStopped> {
    let (key, me, peer) = handle
        .inspect(|n| {
            let peer = n.client().route_inputs().healthy_peers.first().cloned();
            (n.client().current_key().cloned(), n.own_peer_id().cloned(), peer)
        })
        .await?;
    let (Some(key), Some(me), Some(peer)) = (key, me, peer) else { return Ok(()) };
    let sealer = saboteur.get_or_insert_with(|| Sealer::new(me, &key, rng, SealConfig::default()));
    let Ok(frame) = sealer.seal(&plain) else { return Ok(()) };
    let (sent_tx, sent_rx) = oneshot::channel();
    if inject.send((peer, frame, sent_tx)).is_ok() && sent_rx.await == Ok(true) {
        ctx.sabotage_pending.set(false);
    }
    Ok(())
}

fn publish_view(ctx: &ClientCtx, client: &Client) {
    let lifecycle = serde_json::to_value(client.lifecycle())
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let joined = client.lifecycle() == client::Lifecycle::Joined;
    let view = ClientView {
        lifecycle,
        session: if joined { client.session_id().map(|s| s.to_string()) } else { None },
        zone: client.zone().map(|z| z.to_string()),
        members: client.members().iter().map(|p| p.to_string()).collect(),
        host: client.host().map(|h| h.to_string()),
        fallen_back: client.is_fallen_back(),
        open_links: client
            .links()
            .into_iter()
            .filter(|(_, _, health)| matches!(health, LinkHealth::Open | LinkHealth::Degraded))
            .map(|(p, _, _)| p.to_string())
            .collect(),
    };
    let mut r = ctx.recorder.borrow_mut();
    if r.views.get(&ctx.name) != Some(&view) {
        if r.views.get(&ctx.name).map(|v| &v.session) != Some(&view.session) {
            let t_ms = r.now_ms;
            r.session_since_ms.insert(ctx.name.clone(), t_ms);
        }
        r.views.insert(ctx.name.clone(), view);
    }
}

fn record_incoming(ctx: &ClientCtx, text: &str) {
    let mut r = ctx.recorder.borrow_mut();
    let t_ms = r.now_ms;
    let Ok(msg) = decode_server(text.as_bytes()) else {
        r.push(&ctx.name, What::SignalIn { msg: "undecodable".to_owned(), from: None });
        return;
    };
    let (from, body) = match &msg {
        ServerMessage::Offer { from, sdp } | ServerMessage::Answer { from, sdp } => {
            (Some(from.to_string()), Some(sdp.clone()))
        }
        ServerMessage::IceCandidate { from, candidate } => {
            (Some(from.to_string()), Some(candidate.candidate.clone()))
        }
        ServerMessage::PeerJoined { peer_id } | ServerMessage::PeerLeft { peer_id, .. } => {
            (Some(peer_id.to_string()), None)
        }
        _ => (None, None),
    };
    // Membership as the coordinator states it: a client that asked for another zone before
    // this answer arrived ignores it (no `SessionJoined` event), yet was a member until its
    // leave reached the coordinator, and signaling relayed meanwhile is in session.
    if let ServerMessage::SessionJoined { session_id, .. } = &msg {
        r.sessions_seen.entry(ctx.name.clone()).or_default().insert(session_id.to_string());
    }
    if let (Some(stamped_from), Some(body)) = (&from, body) {
        let (body_from, body_session) = body_claims(&body);
        r.relayed.push(RelayedSignal {
            t_ms,
            to: ctx.name.clone(),
            stamped_from: stamped_from.clone(),
            body_from,
            body_session,
        });
    }
    r.push(&ctx.name, What::SignalIn { msg: msg.type_name().to_owned(), from });
}

fn on_event(ctx: &ClientCtx, session: &Mutex<String>, event: &ClientEvent) {
    let value = serde_json::to_value(event).unwrap_or_default();
    let mut r = ctx.recorder.borrow_mut();
    r.push(&ctx.name, What::Client { event: value });
    r.coverage.client_event(&ctx.name, event);
    match event {
        ClientEvent::Reconnecting { delay_ms, failures, .. } => {
            r.backoffs.push((ctx.name.clone(), *failures, *delay_ms));
        }
        ClientEvent::SessionJoined { session_id, .. } => {
            r.sessions_seen.entry(ctx.name.clone()).or_default().insert(session_id.to_string());
            if let Ok(mut s) = session.lock() {
                *s = session_id.to_string();
            }
        }
        _ => {}
    }
}

fn record_delivery(ctx: &ClientCtx, from: &str, payload: Vec<u8>) {
    let mut r = ctx.recorder.borrow_mut();
    let t_ms = r.now_ms;
    r.push(&ctx.name, What::PeerDelivered { from: from.to_owned(), len: payload.len() });
    r.deliveries.push(crate::record::PeerDelivery {
        t_ms,
        from: from.to_owned(),
        to: ctx.name.clone(),
        payload,
    });
}

/// Records one game packet's ground truth and the router's verdict on it.
fn record_verdict(
    ctx: &ClientCtx,
    p: &Pending,
    route: &str,
    before: &NodeStats,
    after: &NodeStats,
    to_server: bool,
) {
    let built = &p.built;
    let mut r = ctx.recorder.borrow_mut();
    match &built.peer_payload {
        Some(payload) => {
            r.allowed_payloads.entry(ctx.name.clone()).or_default().insert(payload.clone());
        }
        None => {
            r.server_only_plain
                .entry(ctx.name.clone())
                .or_default()
                .insert(built.plain.clone(), built.label.to_owned());
        }
    }
    if after.packets != before.packets + 1 || route == "desync" {
        r.host_violations.push((
            ctx.name.clone(),
            format!(
                "the router framed a {} packet as {route} ({} packets)",
                built.label,
                after.packets - before.packets
            ),
        ));
    }
    if built.peer_payload.is_none() && !to_server {
        r.host_violations.push((
            ctx.name.clone(),
            format!("server-only {} packet not sent to the server", built.label),
        ));
    }
    if to_server {
        r.server_expected.entry(p.conn_key.clone()).or_default().push(built.plain.clone());
    }
    r.push(
        &ctx.name,
        What::Packet {
            conn: p.conn_key.clone(),
            seq: p.seq,
            label: built.label.to_owned(),
            route: route.to_owned(),
            peers: Vec::new(),
        },
    );
}
