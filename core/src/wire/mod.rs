//! The signaling protocol: JSON over WebSocket, one object per frame, `"type"` tag in kebab-case.
//!
//! [`ClientMessage`] is what a game client sends to the coordinator; [`ServerMessage`] what the
//! coordinator sends back. Both encode and decode here, with the limits of [`limits`] enforced on
//! every decode: a frame an attacker controls gives a typed [`WireError`] or a valid value, never
//! a panic. Unknown fields are ignored (a newer client may add optional fields), unknown types are
//! rejected. The protocol version is [`PROTOCOL_VERSION`], announced in `welcome`.

mod error;
mod ids;
pub mod limits;
mod messages;

pub use error::{ErrorCode, WireError};
pub use ids::{ANONYMOUS_PREFIX, IdError, PeerId, SessionId, Zone};
pub use messages::{
    Capabilities, ClientMessage, IceCandidate, IceServer, PeerLeftReason, ServerMessage, SessionKey,
};

/// The signaling protocol version this build speaks, sent in `welcome`.
pub const PROTOCOL_VERSION: u32 = 1;

/// Decodes one client-to-coordinator frame, enforcing every limit.
pub fn decode_client(frame: &[u8]) -> Result<ClientMessage, WireError> {
    messages::decode(frame, ClientMessage::TYPES)
}

/// Decodes one coordinator-to-client frame, enforcing every limit.
pub fn decode_server(frame: &[u8]) -> Result<ServerMessage, WireError> {
    messages::decode(frame, ServerMessage::TYPES)
}

/// Encodes a client-to-coordinator message as one JSON text frame.
pub fn encode_client(msg: &ClientMessage) -> String {
    messages::encode(msg)
}

/// Encodes a coordinator-to-client message as one JSON text frame.
pub fn encode_server(msg: &ServerMessage) -> String {
    messages::encode(msg)
}

#[cfg(test)]
mod tests;
