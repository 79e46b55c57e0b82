//! [`WebRtcTransport`]: the peer links of this crate as the tokio client driver's
//! [`PeerTransport`], so the headless peer (`ro-p2p-peer`) and the C ABI (`ro-p2p-ffi`) run the
//! same one. It only translates: the driver's commands become [`PeerLinks`] calls, link events
//! become the client core's [`client::LinkEvent`]s and received frames.

use std::collections::VecDeque;
use std::sync::Arc;

use ro_p2p_core::client::{self, Role as CoreRole, Signal};
use ro_p2p_core::node::Channel as CoreChannel;
use ro_p2p_core::wire::{IceServer, PeerId};
use ro_p2p_tokio::client::{PeerTransport, TransportEvent};
use tokio::sync::mpsc;

use crate::{Channel, LinkEvent, LinksConfig, PeerLinks, Role};

/// The WebRTC adapter as the driver's [`PeerTransport`].
pub struct WebRtcTransport {
    links: Arc<PeerLinks>,
    events: mpsc::Receiver<LinkEvent>,
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
    async fn connect(&mut self, peer: PeerId, role: CoreRole, ice_servers: Vec<IceServer>) {
        let role = match role {
            CoreRole::Offerer => Role::Offerer,
            CoreRole::Answerer => Role::Answerer,
        };
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

    async fn send(&mut self, peer: &PeerId, channel: CoreChannel, frame: &[u8]) {
        let channel = match channel {
            CoreChannel::Movement => Channel::Movement,
            CoreChannel::Chat => Channel::Chat,
        };
        if let Err(e) = self.links.send(peer, channel, frame).await {
            tracing::debug!(%peer, error = %e, "frame not sent");
        }
    }

    async fn next_event(&mut self) -> Option<TransportEvent> {
        if let Some(event) = self.local.pop_front() {
            return Some(event);
        }
        let event = self.events.recv().await?;
        let link = |peer: PeerId, event| Some(TransportEvent::Link { peer, event });
        match event {
            LinkEvent::LocalSdp { peer, sdp } => {
                link(peer, client::LinkEvent::LocalDescription { sdp })
            }
            LinkEvent::LocalCandidate { peer, candidate } => {
                link(peer, client::LinkEvent::LocalCandidate(candidate))
            }
            LinkEvent::Connected { peer } => link(peer, client::LinkEvent::Connected),
            LinkEvent::Failed { peer, .. } => link(peer, client::LinkEvent::Failed),
            LinkEvent::Closed { peer } => link(peer, client::LinkEvent::Closed),
            LinkEvent::Measured { peer, rtt_ms, loss_percent } => {
                link(peer, client::LinkEvent::Measured { rtt_ms, loss_percent })
            }
            LinkEvent::Data { peer, bytes, .. } => Some(TransportEvent::Frame { peer, bytes }),
        }
    }

    async fn close(&mut self) {
        self.links.close_all().await;
    }
}
