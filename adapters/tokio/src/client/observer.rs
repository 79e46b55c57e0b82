//! What a running [`Driver`](super::Driver) can report to a harness: every signaling frame in
//! and out, every game send with its routing, every sealed frame out and in, every event, and
//! the node after each step. The simulation's checkers read the node through it; production
//! uses [`NoObserver`]. An observer only watches: it gets shared references and cannot change
//! what the driver does.

use ro_p2p_core::node::{Channel, Node, ReceiveDrop};
use ro_p2p_core::wire::PeerId;

use super::DriverEvent;

/// Hooks the driver calls as things happen, on its own task. Every method has an empty
/// default. An observer need not be `Send`; a driver with one is `Send` only if it is.
pub trait Observer: 'static {
    /// A signaling frame arrived from the coordinator (before the node handles it).
    fn signal_in(&mut self, node: &Node, text: &str) {
        let _ = (node, text);
    }
    /// The node sends a signaling frame to the coordinator.
    fn signal_out(&mut self, node: &Node, text: &str) {
        let _ = (node, text);
    }
    /// The game's `bytes` were framed and routed; `to_server` is what goes to the map server.
    /// Peer frames for them follow as [`Observer::peer_frame_out`] before any other step.
    fn game_sent(&mut self, node: &Node, bytes: &[u8], to_server: &[u8]) {
        let _ = (node, bytes, to_server);
    }
    /// One sealed frame is handed to the transport for `peer`.
    fn peer_frame_out(&mut self, peer: &PeerId, channel: Channel, frame: &[u8]) {
        let _ = (peer, channel, frame);
    }
    /// A sealed frame from `peer` was handed to the node, with the node's verdict.
    fn peer_frame_in(
        &mut self,
        node: &Node,
        peer: &PeerId,
        frame: &[u8],
        result: &Result<(), ReceiveDrop>,
    ) {
        let _ = (node, peer, frame, result);
    }
    /// The driver emits `event` to the application.
    fn event(&mut self, node: &Node, event: &DriverEvent) {
        let _ = (node, event);
    }
    /// A step is done and every output of the node executed.
    fn stepped(&mut self, node: &Node) {
        let _ = node;
    }
}

/// Observes nothing (the default).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoObserver;

impl Observer for NoObserver {}
