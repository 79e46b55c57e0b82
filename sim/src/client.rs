//! A simulated game client: the production [`Node`] (signaling client, framer, router, sealer
//! and openers) driven over a real WebSocket (tokio-tungstenite on turmoil TCP), the game's
//! map-server connection, sealed peer frames over the simulated [`Links`], and a player drawing
//! [`Action`]s. Every decision is recorded for the checkers.
//!
//! Until the shared client driver of `ro_p2p_tokio` exists, this module is its own small
//! driver loop: one task, a `biased` select over transport events, UDP and the earliest timer.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use ro_p2p_core::client::{self, Client, ClientEvent, CloseReason, Input, Output};
use ro_p2p_core::node::{self, Node, NodeConfig, ReceiveDrop};
use ro_p2p_core::packet::{ClientEncoder, Obfuscation};
use ro_p2p_core::route::Policy;
use ro_p2p_core::seal::{SealConfig, Sealer};
use ro_p2p_core::wire::{
    Capabilities, ClientMessage, ErrorCode, PeerId, ServerMessage, Zone, decode_client,
    decode_server,
};
use ro_p2p_core::{Instant, Rng, SansIo};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::hosts::{COORDINATOR_PORT, MAP_PORT, PEER_PORT, RELAY_PORT};
use crate::peer::{Datagram, LinkOut, Links, Path, body_claims, kind};
use crate::plan::{Nat, P2P_ZONES, Plan, ZONES};
use crate::record::{ClientView, RelayedSignal, Shared, What};
use crate::traffic::{Action, Vocabulary, next_action};

/// Everything a client host needs, shared across its incarnations.
#[derive(Debug)]
pub struct ClientCtx {
    /// Host name and peer id.
    pub name: String,
    /// 1-based index.
    pub index: usize,
    /// The seed's plan.
    pub plan: Rc<Plan>,
    /// The run's record.
    pub recorder: Shared,
    /// Current per-datagram loss, in percent (set by the runner).
    pub loss_percent: Rc<Cell<u8>>,
    /// Incarnations so far.
    pub incarnation: Cell<u64>,
    /// Test-only sabotage still to do (shared by all clients: once per run).
    pub sabotage_pending: Rc<Cell<bool>>,
    /// The end of the liveness phase: players keep playing but change zones no more, so the
    /// convergence check sees a settled world.
    pub quiet: Rc<Cell<bool>>,
}

/// The coordinator URL every client uses.
pub const COORDINATOR_URL: &str = "ws://coordinator:8001/api/v1/signaling/ws";

enum Transport {
    Opened(u64, mpsc::UnboundedSender<Message>),
    Frame(u64, String),
    Closed(u64, CloseReason),
}

struct Conn {
    generation: u64,
    out: Option<mpsc::UnboundedSender<Message>>,
    task: tokio::task::JoinHandle<()>,
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
    }
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

async fn connect_transport(generation: u64, url: String, tx: mpsc::UnboundedSender<Transport>) {
    let failed =
        |detail: String| Transport::Closed(generation, CloseReason::ConnectFailed { detail });
    let stream = match turmoil::net::TcpStream::connect(("coordinator", COORDINATOR_PORT)).await {
        Ok(s) => s,
        Err(e) => {
            let _ = tx.send(failed(e.to_string()));
            return;
        }
    };
    let ws = match tokio_tungstenite::client_async(url, stream).await {
        Ok((ws, _)) => ws,
        Err(e) => {
            let _ = tx.send(failed(e.to_string()));
            return;
        }
    };
    let (mut sink, mut frames) = ws.split();
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Message>();
    if tx.send(Transport::Opened(generation, out_tx)).is_err() {
        return;
    }
    let reason = loop {
        tokio::select! {
            biased;
            out = out_rx.recv() => match out {
                Some(m) => {
                    if let Err(e) = sink.send(m).await {
                        break CloseReason::Lost { detail: e.to_string() };
                    }
                }
                None => {
                    let _ = sink.close().await;
                    return;
                }
            },
            incoming = frames.next() => match incoming {
                Some(Ok(Message::Text(t))) => {
                    if tx.send(Transport::Frame(generation, t.to_string())).is_err() {
                        return;
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    let (code, reason) = match frame {
                        Some(f) => {
                            let word = f.reason.split(':').next().unwrap_or_default().trim().to_owned();
                            let code: Option<ErrorCode> =
                                serde_json::from_value(serde_json::Value::String(word)).ok();
                            (code, f.reason.to_string())
                        }
                        None => (None, String::new()),
                    };
                    break CloseReason::ClosedByCoordinator { code, reason };
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => break CloseReason::Lost { detail: e.to_string() },
                None => break CloseReason::Lost { detail: "end of stream".to_owned() },
            },
        }
    };
    let _ = tx.send(Transport::Closed(generation, reason));
}

/// The test-only saboteur's own sealer (a second stream under the player's identity).
struct Keys {
    sealer: Option<Sealer>,
}

/// Runs one incarnation of a client host.
pub async fn client_host(ctx: Rc<ClientCtx>) -> turmoil::Result {
    let incarnation = ctx.incarnation.get() + 1;
    ctx.incarnation.set(incarnation);
    let name = ctx.name.clone();
    let plan = ctx.plan.clone();
    let recorder = ctx.recorder.clone();
    recorder.borrow_mut().push(&name, What::Started { incarnation });
    let epoch = tokio::time::Instant::now();
    let now = move || Instant::from_millis(epoch.elapsed().as_millis() as u64);
    let to_tokio = move |at: Instant| epoch + Duration::from_millis(at.as_millis().min(1 << 40));

    let mut rng = Rng::from_seed(plan.seed ^ fnv(&name) ^ (incarnation << 48));
    let mut vocab_rng = Rng::from_seed(plan.seed ^ fnv(&name));
    let version = plan.packet_version();
    let vocab = Vocabulary::new(version, &mut vocab_rng)
        .map_err(|m| format!("PACKETVER {version} lacks {}", m.0))?;
    let policy: Policy = plan.policy.parse().map_err(|e| format!("{e}"))?;
    let obfuscation = if plan.obfuscated { Obfuscation::On } else { Obfuscation::Off };
    let character = format!("Player{:02}", ctx.index);

    let config = NodeConfig {
        client: client_config(&name, &mut vocab_rng),
        packet_version: version,
        obfuscation,
        policy,
        seal: SealConfig::default(),
    };
    let mut client = Node::new(config, rng.fork(), now());
    let start_zone = plan.start_zones.get(&name).cloned().unwrap_or_else(|| ZONES[0].to_owned());
    if let Ok(z) = Zone::new(start_zone) {
        client.handle_input(now(), Input::ZoneChanged(z));
    }

    // The game's connection to the map server (never faulted: it is not ours to break).
    let mut map = loop {
        match turmoil::net::TcpStream::connect(("map", MAP_PORT)).await {
            Ok(s) => break s,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let conn_key = format!("{name}:{}", map.local_addr()?.port());
    let mut encoder = ClientEncoder::new(version, obfuscation);
    let udp = turmoil::net::UdpSocket::bind(("0.0.0.0", PEER_PORT)).await?;
    let mut buf = vec![0u8; 70_000];

    let (tx, mut rx) = mpsc::unbounded_channel::<Transport>();
    let mut conn: Option<Conn> = None;
    let mut generation = 0u64;
    let mut links = Links::new(&name);
    let mut keys = Keys { sealer: None };
    let mut next_action_at = now().add_millis(rng.range_inclusive(0, plan.action_interval_ms * 2));
    let mut seq = 0u64;

    loop {
        // Drain the core and the links until both are quiet.
        loop {
            let mut busy = false;
            while let Some(out) = client.poll_output() {
                busy = true;
                let out = match out {
                    node::Output::Client(out) => out,
                    node::Output::SendPeerFrame { peer, frame, .. } => {
                        links.send_data(peer.as_str(), frame.to_vec());
                        continue;
                    }
                    node::Output::Received { from, event } => {
                        let mut payload = Vec::new();
                        event.as_event().encode(&mut payload);
                        record_delivery(&ctx, from.as_str(), payload);
                        continue;
                    }
                    _ => continue,
                };
                match out {
                    Output::OpenTransport { url } => {
                        if let Some(old) = conn.take() {
                            old.task.abort();
                        }
                        generation += 1;
                        let task = tokio::task::spawn_local(connect_transport(
                            generation,
                            url,
                            tx.clone(),
                        ));
                        conn = Some(Conn { generation, out: None, task });
                    }
                    Output::SendFrame { frame } => {
                        let (msg, to) = match decode_client(frame.as_bytes()) {
                            Ok(m) => {
                                let to = match &m {
                                    ClientMessage::Offer { to, .. }
                                    | ClientMessage::Answer { to, .. }
                                    | ClientMessage::IceCandidate { to, .. } => {
                                        Some(to.to_string())
                                    }
                                    _ => None,
                                };
                                (m.type_name().to_owned(), to)
                            }
                            Err(_) => ("undecodable".to_owned(), None),
                        };
                        recorder.borrow_mut().push(&name, What::SignalOut { msg, to });
                        if let Some(out) = conn.as_ref().and_then(|c| c.out.as_ref()) {
                            let _ = out.send(Message::Text(frame.into()));
                        }
                    }
                    Output::CloseTransport => {
                        if let Some(old) = conn.take() {
                            old.task.abort();
                        }
                    }
                    Output::ConnectPeer { peer, role, .. } => {
                        links.connect(now(), peer.as_str(), role)
                    }
                    Output::DisconnectPeer { peer } => links.disconnect(peer.as_str()),
                    Output::SendSignal { peer, signal } => links.signal(peer.as_str(), signal),
                    Output::Event { event } => {
                        on_event(&ctx, &mut links, &event);
                    }
                    _ => {}
                }
            }
            while let Some(out) = links.out.pop_front() {
                busy = true;
                match out {
                    LinkOut::Event(peer, event) => {
                        if let Ok(peer) = PeerId::new(peer) {
                            client.handle_input(now(), Input::PeerLinkEvent { peer, event });
                        }
                    }
                    LinkOut::Send(d) => send_datagram(&ctx, &udp, &mut rng, d).await,
                }
            }
            if !busy {
                break;
            }
        }
        publish_view(&ctx, client.client(), &links);

        let deadline = [client.poll_timeout(), links.next_deadline(), Some(next_action_at)]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(next_action_at);
        tokio::select! {
            biased;
            ev = rx.recv() => {
                let Some(ev) = ev else { continue };
                let current = conn.as_ref().map(|c| c.generation);
                match ev {
                    Transport::Opened(g, out) if Some(g) == current => {
                        if let Some(c) = conn.as_mut() {
                            c.out = Some(out);
                        }
                        client.handle_input(now(), Input::TransportOpened);
                    }
                    Transport::Frame(g, text) if Some(g) == current => {
                        record_incoming(&ctx, &text);
                        client.handle_input(now(), Input::Frame(text.into_bytes()));
                    }
                    Transport::Closed(g, reason) if Some(g) == current => {
                        conn = None;
                        client.handle_input(now(), Input::TransportClosed(reason));
                    }
                    _ => {}
                }
            }
            got = udp.recv_from(&mut buf) => {
                let Ok((n, _)) = got else { continue };
                let Some(d) = Datagram::decode(&buf[..n]) else { continue };
                if d.to != name {
                    continue;
                }
                if let Some((from, frame)) = links.receive(now(), d)
                    && let Ok(from) = PeerId::new(from)
                    && let Err(ReceiveDrop::InvalidEvent(e)) = client.on_peer_frame(now(), &from, &frame)
                {
                    // An honest sender never seals anything but a peer event.
                    let mut r = recorder.borrow_mut();
                    let t_ms = r.now_ms;
                    r.invalid_frames.push((t_ms, from.to_string(), name.clone(), e.to_string()));
                }
            }
            () = tokio::time::sleep_until(to_tokio(deadline)) => {
                let t = now();
                if client.poll_timeout().is_some_and(|d| d <= t) {
                    client.handle_timeout(t);
                }
                links.tick(t);
                if t >= next_action_at {
                    next_action_at = t.add_millis(rng.range_inclusive(plan.action_interval_ms / 2, plan.action_interval_ms * 3 / 2));
                    if rng.chance(plan.zone_change_percent, 100) && !ctx.quiet.get() {
                        let z = ZONES[rng.below_inclusive(ZONES.len() as u64 - 1) as usize];
                        if let Ok(z) = Zone::new(z) {
                            client.handle_input(t, Input::ZoneChanged(z));
                        }
                    } else {
                        let action = next_action(&mut rng);
                        seq += 1;
                        let server = play(&ctx, &mut client, &mut keys, &mut links, &vocab, &mut encoder, &mut rng, &character, &conn_key, seq, &action, t);
                        if !server.is_empty() {
                            map.write_all(&server).await?;
                        }
                    }
                }
            }
        }
    }
}

fn publish_view(ctx: &ClientCtx, client: &Client, links: &Links) {
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
            .filter(|(p, _, _)| links.path(p.as_str()).is_some())
            .map(|(p, _, _)| p.to_string())
            .collect(),
    };
    let mut r = ctx.recorder.borrow_mut();
    if r.views.get(&ctx.name) != Some(&view) {
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

fn on_event(ctx: &ClientCtx, links: &mut Links, event: &ClientEvent) {
    let value = serde_json::to_value(event).unwrap_or_default();
    let mut r = ctx.recorder.borrow_mut();
    r.push(&ctx.name, What::Client { event: value });
    match event {
        ClientEvent::Reconnecting { delay_ms, failures, .. } => {
            r.backoffs.push((ctx.name.clone(), *failures, *delay_ms));
        }
        ClientEvent::SessionJoined { session_id, .. } => {
            r.sessions_seen.entry(ctx.name.clone()).or_default().insert(session_id.to_string());
            links.set_session(session_id.as_str());
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

async fn send_datagram(ctx: &ClientCtx, udp: &turmoil::net::UdpSocket, rng: &mut Rng, d: Datagram) {
    let nat = ctx.plan.nat(&ctx.name, &d.to);
    let allowed = match d.path {
        Path::Direct => nat == Nat::Direct,
        Path::Relay => nat != Nat::Blocked,
    };
    if !allowed {
        return;
    }
    let loss = u64::from(ctx.loss_percent.get());
    if d.kind != kind::BYE && loss > 0 && rng.chance(loss, 100) {
        return;
    }
    let bytes = d.encode();
    let _ = match d.path {
        Path::Direct => udp.send_to(&bytes, (d.to.as_str(), PEER_PORT)).await,
        Path::Relay => udp.send_to(&bytes, ("relay", RELAY_PORT)).await,
    };
}

/// One game action: the packet goes through the node's real framer, router and sealer; returns
/// the bytes for the map server.
#[allow(clippy::too_many_arguments)]
fn play(
    ctx: &ClientCtx,
    node: &mut Node,
    keys: &mut Keys,
    links: &mut Links,
    vocab: &Vocabulary,
    encoder: &mut ClientEncoder,
    rng: &mut Rng,
    character: &str,
    conn_key: &str,
    seq: u64,
    action: &Action,
    now: Instant,
) -> Vec<u8> {
    let built = vocab.build(action, character, rng);
    let mut wire = Vec::new();
    encoder.encode(&built.plain, &mut wire);
    let before = node.stats().clone();
    let mut server = Vec::new();
    node.on_game_send(now, &wire, &mut server);
    let after = node.stats();
    let route = if after.desyncs > before.desyncs {
        "desync"
    } else if after.packets_peers > before.packets_peers {
        "peers"
    } else if after.packets_mirrored > before.packets_mirrored {
        "server+peers"
    } else if after.packets_server > before.packets_server {
        "server"
    } else {
        "none"
    };
    let to_server = !server.is_empty();
    let mut r = ctx.recorder.borrow_mut();
    match &built.peer_payload {
        Some(p) => {
            r.allowed_payloads.entry(ctx.name.clone()).or_default().insert(p.clone());
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
        r.server_expected.entry(conn_key.to_owned()).or_default().push(built.plain.clone());
    }
    // Test-only sabotage: leak one NPC packet to a peer, as a broken router would.
    let inputs = node.client().route_inputs();
    if matches!(action, Action::NpcTalk)
        && ctx.sabotage_pending.get()
        && let (Some(key), Some(me), Some(peer)) =
            (node.client().current_key(), node.own_peer_id(), inputs.healthy_peers.first())
    {
        let sealer = keys
            .sealer
            .get_or_insert_with(|| Sealer::new(me.clone(), key, rng, SealConfig::default()));
        if let Ok(frame) = sealer.seal(&built.plain)
            && links.send_data(peer.as_str(), frame)
        {
            ctx.sabotage_pending.set(false);
        }
    }
    r.push(
        &ctx.name,
        What::Packet {
            conn: conn_key.to_owned(),
            seq,
            label: built.label.to_owned(),
            route: route.to_owned(),
            peers: Vec::new(),
        },
    );
    server
}
