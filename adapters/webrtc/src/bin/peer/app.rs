//! The headless peer as a library: a [`Peer`] runs one client node (signaling over the tokio
//! driver, peer links over WebRTC), writes server-bound bytes to a map server over TCP, and
//! turns [`Action`]s (walk, chat, emote, NPC click, item use, `@` command) into the packets
//! the game client of a PACKETVER would send. `main.rs` wraps it in a CLI; the end-to-end tests
//! include this file and run peers as in-process tasks.
#![allow(dead_code)]

use std::io;
use std::net::SocketAddr;

use ro_p2p_core::client;
use ro_p2p_core::node::{Node, NodeConfig, NodeStats, ReceivedEvent};
use ro_p2p_core::packet::{
    KeySequence, Obfuscation, PacketLen, PacketSpec, PacketVersion, VARIABLE_LEN_MAX,
};
use ro_p2p_core::route::Policy;
use ro_p2p_core::wire::{PeerId, Zone};
use ro_p2p_core::{Instant, Rng};
use ro_p2p_tokio::client::{Connector, Driver, DriverEvent, NodeHandle, TcpConnector};
use ro_p2p_webrtc::{LinksConfig, WebRtcTransport};
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// One thing the simulated player does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    /// Walk to a cell.
    Walk {
        /// Destination x.
        x: u16,
        /// Destination y.
        y: u16,
    },
    /// Say something in public chat (sent as `"Name : text"`).
    Chat {
        /// The message.
        text: String,
    },
    /// Show an emote.
    Emote {
        /// rAthena's `emotion_type`.
        kind: u8,
    },
    /// Click an NPC.
    NpcClick {
        /// The NPC's unit id.
        npc_id: u32,
    },
    /// Use an inventory item.
    UseItem {
        /// The inventory index.
        index: u16,
    },
    /// Type a GM command (`@...`) in the chat box.
    Command {
        /// The command line, with its `@`.
        line: String,
    },
}

/// Builds the packets the game client of one PACKETVER writes for [`Action`]s, with ids
/// obfuscated as that client would.
#[derive(Clone, Debug)]
pub struct PacketWriter {
    version: PacketVersion,
    key: KeySequence,
    name: String,
}

/// An action the version's table has no packet for.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("PACKETVER {version} has no packet for handler {handler}")]
pub struct NoPacket {
    /// The version.
    pub version: u32,
    /// The rAthena handler searched for.
    pub handler: &'static str,
}

impl PacketWriter {
    /// A writer for a new map-server connection of `version`, as player `name`.
    pub fn new(version: PacketVersion, obfuscation: Obfuscation, name: &str) -> PacketWriter {
        let key = KeySequence::new(version.obfuscation_keys(), obfuscation);
        PacketWriter { version, key, name: name.to_owned() }
    }

    fn spec(
        &self,
        handler: &'static str,
        accept: impl Fn(PacketLen) -> bool,
    ) -> Result<&'static PacketSpec, NoPacket> {
        self.version
            .table()
            .iter()
            .filter(|s| s.handler_name() == handler && accept(s.len()))
            .min_by_key(|s| s.id())
            .ok_or(NoPacket { version: self.version.number(), handler })
    }

    /// The bytes the game writes for `action` (one packet).
    pub fn write(&mut self, action: &Action) -> Result<Vec<u8>, NoPacket> {
        let fixed = |n: u16| move |l: PacketLen| l == PacketLen::Fixed(n);
        let mut packet = match action {
            Action::Walk { x, y } => {
                let spec = self.spec("WalkToXY", |l| matches!(l, PacketLen::Fixed(5 | 9)))?;
                let (len, at) = if spec.len() == PacketLen::Fixed(5) { (5, 2) } else { (9, 6) };
                let mut p = header(spec, len);
                let (x, y) = (x.min(&1023), y.min(&1023));
                p[at] = (x >> 2) as u8;
                p[at + 1] = ((x << 6) as u8) | ((y >> 4) as u8 & 0x3F);
                p[at + 2] = (y << 4) as u8;
                p
            }
            Action::Chat { text } => {
                let line = format!("{} : {text}", self.name);
                self.chat_packet(line.as_bytes())?
            }
            // The game writes commands like chat, `Name : @where`; rAthena needs the prefix.
            Action::Command { line } => {
                let line = format!("{} : {line}", self.name);
                self.chat_packet(line.as_bytes())?
            }
            Action::Emote { kind } => {
                let spec = self.spec("Emotion", fixed(3))?;
                let mut p = header(spec, 3);
                p[2] = *kind;
                p
            }
            Action::NpcClick { npc_id } => {
                let spec = self.spec("NpcClicked", fixed(7))?;
                let mut p = header(spec, 7);
                p[2..6].copy_from_slice(&npc_id.to_le_bytes());
                p[6] = 1;
                p
            }
            Action::UseItem { index } => {
                let spec = self.spec("UseItem", |l| matches!(l, PacketLen::Fixed(n) if n >= 4))?;
                let PacketLen::Fixed(len) = spec.len() else {
                    return Err(NoPacket { version: self.version.number(), handler: "UseItem" });
                };
                let mut p = header(spec, usize::from(len));
                p[2..4].copy_from_slice(&index.to_le_bytes());
                p
            }
        };
        let id = u16::from_le_bytes([packet[0], packet[1]]) ^ self.key.mask();
        packet[..2].copy_from_slice(&id.to_le_bytes());
        self.key.advance();
        Ok(packet)
    }

    fn chat_packet(&self, text: &[u8]) -> Result<Vec<u8>, NoPacket> {
        let spec = self.spec("GlobalMessage", |l| l == PacketLen::Variable)?;
        let nul = usize::from(self.version.chat_nul_terminated());
        let max = usize::from(VARIABLE_LEN_MAX) - 4 - nul;
        let text = &text[..text.len().min(max)];
        let len = 4 + text.len() + nul;
        let mut p = header(spec, 4);
        p[2..4].copy_from_slice(&(len as u16).to_le_bytes());
        p.extend_from_slice(text);
        p.resize(len, 0);
        Ok(p)
    }
}

fn header(spec: &PacketSpec, len: usize) -> Vec<u8> {
    let mut p = vec![0u8; len];
    p[..2].copy_from_slice(&spec.id().to_le_bytes());
    p
}

/// Everything a [`Peer`] needs.
#[derive(Clone, Debug)]
pub struct PeerOptions {
    /// The signaling client's settings (coordinator URLs, token, peer id, zones, backoff).
    pub client: client::Config,
    /// The zone to join.
    pub zone: Zone,
    /// Where server-bound bytes go; `None` counts and discards them.
    pub map_server: Option<SocketAddr>,
    /// The game client's PACKETVER.
    pub packet_version: PacketVersion,
    /// Whether the game obfuscates packet ids.
    pub obfuscation: Obfuscation,
    /// Where each peer category goes.
    pub policy: Policy,
    /// WebRTC settings.
    pub links: LinksConfig,
    /// The name in chat lines.
    pub name: String,
    /// Seeds the node's randomness.
    pub seed: u64,
}

/// What one action did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Sent {
    /// Bytes written to the map server.
    pub server_bytes: usize,
    /// Peer frames queued (one per healthy peer).
    pub peer_frames: u64,
    /// Whether the packet was a fallback (peer-eligible, but peers were not usable).
    pub fallback: bool,
    /// `server`, `peers` or `server+peers`.
    pub route: &'static str,
}

/// A running headless peer.
pub struct Peer {
    /// The driver's handle.
    pub handle: NodeHandle,
    /// Driver events not yet taken.
    pub events: mpsc::Receiver<DriverEvent>,
    writer: PacketWriter,
    map: Option<TcpStream>,
    task: JoinHandle<Node>,
    stats: NodeStats,
}

impl Peer {
    /// Starts the driver, connects to the map server (if any) and enters the zone.
    pub async fn start(options: PeerOptions) -> io::Result<Peer> {
        Peer::start_with(options, TcpConnector::new()).await
    }

    /// [`Peer::start`] with another connector (TLS settings, another stream type).
    pub async fn start_with<C: Connector>(options: PeerOptions, connector: C) -> io::Result<Peer> {
        let config = NodeConfig {
            packet_version: options.packet_version,
            obfuscation: options.obfuscation,
            policy: options.policy,
            ..NodeConfig::with_client(options.client.clone())
        };
        let map = match options.map_server {
            Some(addr) => {
                let stream = TcpStream::connect(addr).await?;
                stream.set_nodelay(true)?;
                Some(stream)
            }
            None => None,
        };
        let node = Node::new(config, Rng::from_seed(options.seed), Instant::ZERO);
        let transport = WebRtcTransport::new(options.links.clone());
        let (driver, handle, events) = Driver::new(node, connector, transport);
        let task = tokio::spawn(driver.run());
        handle.zone_changed(options.zone.clone()).await.map_err(io::Error::other)?;
        let writer = PacketWriter::new(options.packet_version, options.obfuscation, &options.name);
        Ok(Peer { handle, events, writer, map, task, stats: NodeStats::default() })
    }

    /// The local address of the map-server connection.
    pub fn map_local_addr(&self) -> Option<SocketAddr> {
        self.map.as_ref().and_then(|m| m.local_addr().ok())
    }

    /// Does `action`: writes its packet through the node, the server-bound bytes to the map
    /// server; the driver sends the peer frames.
    pub async fn act(&mut self, action: &Action) -> io::Result<Sent> {
        let bytes = self.writer.write(action).map_err(io::Error::other)?;
        self.send_raw(bytes).await
    }

    /// Routes raw game bytes (any split; e.g. a capture) and writes the server's share.
    pub async fn send_raw(&mut self, bytes: Vec<u8>) -> io::Result<Sent> {
        let to_server = self.handle.game_send(bytes).await.map_err(io::Error::other)?;
        if let Some(map) = self.map.as_mut() {
            map.write_all(&to_server).await?;
        }
        let after = self.handle.stats().await.map_err(io::Error::other)?;
        let before = std::mem::replace(&mut self.stats, after.clone());
        let peers = after.packets_peers - before.packets_peers;
        let mirrored = after.packets_mirrored - before.packets_mirrored;
        let route = match (peers > 0, mirrored > 0, after.packets_server > before.packets_server) {
            (false, false, _) => "server",
            (true, false, false) => "peers",
            _ => "server+peers",
        };
        Ok(Sent {
            server_bytes: to_server.len(),
            peer_frames: after.frames_queued - before.frames_queued,
            fallback: after.fallbacks > before.fallbacks,
            route,
        })
    }

    /// The node's counters.
    pub async fn stats(&self) -> io::Result<NodeStats> {
        self.handle.stats().await.map_err(io::Error::other)
    }

    /// Peers whose links are healthy right now.
    pub async fn healthy_peers(&self) -> io::Result<Vec<PeerId>> {
        self.handle
            .inspect(|n| n.client().route_inputs().healthy_peers)
            .await
            .map_err(io::Error::other)
    }

    /// Leaves cleanly: `leave`, links closed, WebSocket closed, map connection shut.
    pub async fn shutdown(mut self) -> io::Result<Node> {
        let _ = self.handle.shutdown().await;
        if let Some(mut map) = self.map.take() {
            let _ = map.shutdown().await;
        }
        self.task.await.map_err(io::Error::other)
    }

    /// Ends at once, as a crash would: the driver task is aborted (its links and sockets are
    /// dropped, nothing is said to anyone).
    pub fn kill(self) {
        self.task.abort();
    }
}

/// One received event, as the peer prints it.
#[derive(Clone, Debug, Serialize)]
pub struct ReceivedLine<'a> {
    /// Who printed it.
    pub peer: &'a str,
    /// Always `received`.
    pub what: &'static str,
    /// The sender.
    pub from: &'a str,
    /// The event.
    pub event: &'a ReceivedEvent,
}
