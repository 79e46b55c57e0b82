//! `ro-p2p-webrtc`: peer links over WebRTC data channels (webrtc-rs 0.21).
//!
//! The client core (`ro_p2p_core::client`) makes every protocol decision: who offers, when to
//! connect or drop a peer, how frames are sealed. This crate only executes: [`PeerLinks`] takes
//! its commands (`connect`, `apply_remote_sdp`, `apply_remote_candidate`, `send`,
//! `disconnect`) and reports [`LinksEvent`]s on a tokio channel: the core's own link events
//! (local SDP and candidates to relay, `Connected`, `Failed`, `Closed`, and periodic `Measured`
//! RTT/loss for link health) and received frames, with the core's `Role` and `Channel`. One peer connection per peer, with a `movement` channel (unordered, no
//! retransmits) and a `chat` channel (reliable, ordered), created by both ends with fixed
//! stream ids (see [`LinkTuning`]).
//! RTT and loss come from a small ping/pong over the movement channel (text messages, which
//! never mix with the core's binary frames; the bookkeeping is the core's
//! `client::probe`, shared with the simulation), not from the stack's ICE statistics; see
//! `docs/webrtc.md`. [`WebRtcTransport`] plugs the links into the tokio client driver.
//! [`LinkTuning`] is how the links are tuned against loss (chat nudges, channel reliability);
//! [`impairment`] measures it in simulated time over a lossy, delayed link.

mod config;
mod error;
mod event;
pub mod impairment;
mod links;
mod transport;
mod tuning;
mod udp;

pub use config::LinksConfig;
pub use error::LinkError;
pub use event::{Channel, FailReason, LinksEvent, Role};
pub use links::PeerLinks;
pub use transport::WebRtcTransport;
pub use tuning::{CHAT_NUDGES_MAX, LinkTuning, TailProbe};
pub use udp::{FallbackUdpRuntime, PlainUdpSocket};
