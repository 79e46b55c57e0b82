//! [`WebRtcTransport`]: the peer links of this crate as the tokio client driver's
//! [`PeerTransport`], so the headless peer (`ro-p2p-peer`) and the C ABI (`ro-p2p-ffi`) run the
//! same one. The links speak the client core's vocabulary already ([`client::Role`],
//! [`Channel`], [`client::LinkEvent`]); this only hands commands and events across.

use std::collections::VecDeque;
use std::sync::Arc;

use ro_p2p_core::client::{self, Role, Signal};
use ro_p2p_core::node::Channel;
use ro_p2p_core::wire::{IceServer, PeerId};
use ro_p2p_tokio::client::{PeerTransport, TransportEvent};
use tokio::sync::mpsc;

use crate::{LinksConfig, LinksEvent, PeerLinks};

/// The WebRTC adapter as the driver's [`PeerTransport`].
pub struct WebRtcTransport {
    links: Arc<PeerLinks>,
    events: mpsc::Receiver<LinksEvent>,
    /// Failures of commands, reported as link events before the adapter's own.
    local: VecDeque<TransportEvent>,
}

impl WebRtcTransport {
    /// Links with `config`.
    pub fn new(config: LinksConfig) -> WebRtcTransport {
        let (links, events) = PeerLinks::new(config);
        WebRtcTransport { links: Arc::new(links), events, local: VecDeque::new() }
    }

    fn failed(&mut self, peer: &PeerId) {
        let event = client::LinkEvent::Failed;
        self.local.push_back(TransportEvent::Link { peer: peer.clone(), event });
    }
}

impl PeerTransport for WebRtcTransport {
    async fn connect(&mut self, peer: PeerId, role: Role, ice_servers: Vec<IceServer>) {
        if let Err(e) = self.links.connect(peer.clone(), role, ice_servers).await {
            tracing::warn!(%peer, error = %e, "connect failed");
            self.failed(&peer);
        }
    }

    async fn disconnect(&mut self, peer: &PeerId) {
        let _ = self.links.disconnect(peer).await;
    }

    async fn signal(&mut self, peer: &PeerId, signal: Signal) {
        let result = match signal {
            Signal::Offer { sdp } | Signal::Answer { sdp } => {
                self.links.apply_remote_sdp(peer, sdp).await
            }
            Signal::Candidate { candidate } => {
                self.links.apply_remote_candidate(peer, candidate).await
            }
        };
        if let Err(e) = result {
            tracing::warn!(%peer, error = %e, "remote signaling refused");
        }
    }

    async fn send(&mut self, peer: &PeerId, channel: Channel, frame: &[u8]) {
        if let Err(e) = self.links.send(peer, channel, frame).await {
            tracing::debug!(%peer, error = %e, "frame not sent");
        }
    }

    async fn next_event(&mut self) -> Option<TransportEvent> {
        if let Some(event) = self.local.pop_front() {
            return Some(event);
        }
        match self.events.recv().await? {
            LinksEvent::Link { peer, event } => Some(TransportEvent::Link { peer, event }),
            LinksEvent::Data { peer, bytes, .. } => Some(TransportEvent::Frame { peer, bytes }),
        }
    }

    async fn close(&mut self) {
        self.links.close_all().await;
    }
}
