//! The receive path: the map server's bytes to the game client, with peers drawn into them.
//!
//! [`crate::packet`] decides where the player's own packets go; this module is the other
//! direction. A [`ReceiveStream`] frames the server-to-client (ZC) stream of one map connection
//! with the version's length table ([`ZcTable`], from `core/data/zc/`), learns from it what the
//! game has been shown (its own account id, the server tick, the units in view and their looks),
//! and renders each [`PeerEvent`](crate::packet::PeerEvent) that arrives from a peer as the
//! packet the game client of that PACKETVER shows for another player: the unit-walking packet
//! (or `0x0086`), `0x009C` turn, `0x008D` chat, `0x00C0` emote, keyed by the peer's account id.
//! Rendered packets enter only between whole server packets; the server's copy of a chat line
//! or emote already shown from a peer is dropped (and the other way round); when the policy
//! keeps an action away from the server, the echo rAthena would have sent the actor is
//! synthesised. If the server stream cannot be framed, injection stops and its bytes pass
//! untouched. Layouts and their sources: `shared/data/zc/layouts.md`, `core/data/zc/README.md`.

mod framer;
pub mod packets;
mod stream;
mod table;

pub use framer::{ZcDesyncReason, ZcFrame, ZcFramer};
pub use packets::{AppearanceForm, AppearanceIds, Cell, UnitLayout, WalkNotDrawable};
pub use stream::{
    MAP_CHANGES_MAX, MapChange, OUTPUT_BYTES_MAX, ReceiveStats, ReceiveStream, RenderConfig,
    RenderRejected, SHOWN_MAX, UNITS_MAX, WalkForm,
};
pub use table::{ZC_VARIABLE_LEN_MIN, ZcLen, ZcTable};

use crate::wire::PeerId;

/// The account id (unit id) of a peer: the coordinator assigns the peer id from the token's
/// subject, which is the rAthena account id in decimal. `None` if it is not such a number
/// (digits only: no sign, and a peer id is never empty).
pub fn account_id_of(peer: &PeerId) -> Option<u32> {
    let s = peer.as_str();
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests;
