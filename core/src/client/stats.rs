//! The client's counters of what it ignored or dropped, kept by both of its machines (the
//! lifecycle in `mod.rs` and the links in `links.rs`).

use serde::Serialize;

/// Counters of everything the client ignored or dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ClientStats {
    /// Transports opened.
    pub attempts: u64,
    /// Frames from the coordinator that did not decode.
    pub frames_undecodable: u64,
    /// Decodable messages that make no sense in the current state (stale after a zone change,
    /// or for a peer without a link).
    pub messages_ignored: u64,
    /// Remote ICE candidates dropped because a peer's buffer was full.
    pub candidates_dropped: u64,
    /// Local descriptions or candidates that could not be sent (no joined connection).
    pub signals_unsent: u64,
    /// Offers refused because the topology allows no more links.
    pub offers_refused: u64,
    /// Offers that collided with ours (glare), whichever side won.
    pub glares: u64,
    /// Links dropped because they did not connect within `negotiation_timeout_ms`.
    pub negotiations_timed_out: u64,
    /// Links this, the non-designated, side offered again because the designated side did not
    /// within a negotiation timeout after the link died.
    pub relinks: u64,
    /// Offers to a peer put off by the per-peer backoff, after links to it kept failing.
    pub relinks_backed_off: u64,
}
