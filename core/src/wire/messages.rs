//! The message enums of both directions and the limit-checking decoder.

use core::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use super::error::{ErrorCode, WireError};
use super::ids::{PeerId, SessionId, Zone};
use super::limits::*;

/// What a game client sends to the coordinator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ClientMessage {
    /// Authenticates with a bearer token, as the first message, when the WebSocket upgrade
    /// carried no `Authorization` header and no `?token=`.
    Auth {
        /// The JWT.
        token: String,
    },
    /// Joins the zone's session: a named one, or the best one the coordinator picks.
    Join {
        /// The client's own id; honoured only when authentication is off.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        peer_id: Option<PeerId>,
        /// A session to join; placement picks one when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session_id: Option<SessionId>,
        /// The rAthena map the player is on.
        zone: Zone,
        /// What the client's machine can offer as a session host.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        capabilities: Option<Capabilities>,
    },
    /// Leaves the current session (e.g. before a zone change).
    Leave,
    /// An SDP offer for a member of the same session.
    Offer {
        /// The recipient.
        to: PeerId,
        /// The SDP body.
        sdp: String,
    },
    /// An SDP answer for a member of the same session.
    Answer {
        /// The recipient.
        to: PeerId,
        /// The SDP body.
        sdp: String,
    },
    /// A trickled ICE candidate for a member of the same session.
    IceCandidate {
        /// The recipient.
        to: PeerId,
        /// The candidate.
        candidate: IceCandidate,
    },
    /// Reports new host capabilities (they may change host election).
    UpdateCapabilities {
        /// The new capabilities.
        capabilities: Capabilities,
    },
    /// Heartbeat; answered with `pong` carrying the same nonce.
    Ping {
        /// Echoed back in `pong`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nonce: Option<u64>,
    },
}

impl ClientMessage {
    /// Every `type` tag a client may send.
    pub const TYPES: &'static [&'static str] = &[
        "auth",
        "join",
        "leave",
        "offer",
        "answer",
        "ice-candidate",
        "update-capabilities",
        "ping",
    ];

    /// This message's `type` tag.
    pub fn type_name(&self) -> &'static str {
        match self {
            ClientMessage::Auth { .. } => "auth",
            ClientMessage::Join { .. } => "join",
            ClientMessage::Leave => "leave",
            ClientMessage::Offer { .. } => "offer",
            ClientMessage::Answer { .. } => "answer",
            ClientMessage::IceCandidate { .. } => "ice-candidate",
            ClientMessage::UpdateCapabilities { .. } => "update-capabilities",
            ClientMessage::Ping { .. } => "ping",
        }
    }
}

/// What the coordinator sends to a game client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ServerMessage {
    /// First message after the connection is authenticated.
    Welcome {
        /// The identity the coordinator assigned (the JWT subject, the rAthena account id).
        peer_id: PeerId,
        /// The protocol version ([`super::PROTOCOL_VERSION`]).
        protocol: u32,
        /// The coordinator's software and version, for logs.
        server: String,
        /// How often the client should `ping`, in milliseconds.
        heartbeat_interval_ms: u64,
        /// After this long without any frame the coordinator closes the connection.
        idle_timeout_ms: u64,
    },
    /// The client is a member of a session now.
    SessionJoined {
        /// The session.
        session_id: SessionId,
        /// Its zone.
        zone: Zone,
        /// The other members, oldest first.
        peers: Vec<PeerId>,
        /// The elected host, if any member qualifies.
        host: Option<PeerId>,
        /// STUN/TURN servers for the peer links.
        ice_servers: Vec<IceServer>,
        /// The current session key for sealing peer frames.
        key: SessionKey,
        /// `true` when this restores a seat kept during the reconnect grace period.
        resumed: bool,
    },
    /// The client left its session (answer to `leave`).
    SessionLeft {
        /// The session that was left.
        session_id: SessionId,
    },
    /// Another member joined the session.
    PeerJoined {
        /// The newcomer.
        peer_id: PeerId,
    },
    /// A member left the session.
    PeerLeft {
        /// Who left.
        peer_id: PeerId,
        /// Why.
        reason: PeerLeftReason,
    },
    /// The session's host changed (or there is none that qualifies).
    HostChanged {
        /// The session.
        session_id: SessionId,
        /// The new host.
        host: Option<PeerId>,
    },
    /// The session key was rotated; the previous epoch stays valid for a grace period.
    KeyRotated {
        /// The session.
        session_id: SessionId,
        /// The new key.
        key: SessionKey,
    },
    /// An SDP offer relayed from a member of the session.
    Offer {
        /// The sender, stamped by the coordinator.
        from: PeerId,
        /// The SDP body.
        sdp: String,
    },
    /// An SDP answer relayed from a member of the session.
    Answer {
        /// The sender, stamped by the coordinator.
        from: PeerId,
        /// The SDP body.
        sdp: String,
    },
    /// An ICE candidate relayed from a member of the session.
    IceCandidate {
        /// The sender, stamped by the coordinator.
        from: PeerId,
        /// The candidate.
        candidate: IceCandidate,
    },
    /// A request was refused or the connection is about to close.
    Error {
        /// Machine-readable reason.
        code: ErrorCode,
        /// Human-readable explanation.
        message: String,
    },
    /// Answer to `ping`.
    Pong {
        /// The nonce of the `ping`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nonce: Option<u64>,
    },
}

impl ServerMessage {
    /// Every `type` tag the coordinator may send.
    pub const TYPES: &'static [&'static str] = &[
        "welcome",
        "session-joined",
        "session-left",
        "peer-joined",
        "peer-left",
        "host-changed",
        "key-rotated",
        "offer",
        "answer",
        "ice-candidate",
        "error",
        "pong",
    ];

    /// This message's `type` tag.
    pub fn type_name(&self) -> &'static str {
        match self {
            ServerMessage::Welcome { .. } => "welcome",
            ServerMessage::SessionJoined { .. } => "session-joined",
            ServerMessage::SessionLeft { .. } => "session-left",
            ServerMessage::PeerJoined { .. } => "peer-joined",
            ServerMessage::PeerLeft { .. } => "peer-left",
            ServerMessage::HostChanged { .. } => "host-changed",
            ServerMessage::KeyRotated { .. } => "key-rotated",
            ServerMessage::Offer { .. } => "offer",
            ServerMessage::Answer { .. } => "answer",
            ServerMessage::IceCandidate { .. } => "ice-candidate",
            ServerMessage::Error { .. } => "error",
            ServerMessage::Pong { .. } => "pong",
        }
    }

    /// An `error` message with the given code and text (the text is truncated to its limit).
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        let mut message = message.into();
        if message.len() > ERROR_MESSAGE_BYTES_MAX {
            let mut cut = ERROR_MESSAGE_BYTES_MAX;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        ServerMessage::Error { code, message }
    }
}

/// Why a member left a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum PeerLeftReason {
    /// It sent `leave`, joined another session, or its connection was closed deliberately.
    Left,
    /// It disconnected and did not come back within the grace period.
    Timeout,
}

/// A host candidate's machine, as reported in `join` (the `[P2P]` host requirements of
/// `Data/config.ini` are the minimums the coordinator checks these against).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct Capabilities {
    /// CPU cores.
    pub cpu_cores: u32,
    /// CPU clock in MHz.
    pub cpu_mhz: u32,
    /// Memory in MB.
    pub memory_mb: u32,
    /// Network bandwidth in Mbps.
    pub bandwidth_mbps: u32,
    /// Latency to the coordinator in ms.
    pub latency_ms: u32,
}

/// An ICE candidate, as `RTCIceCandidateInit` has it.
///
/// On the wire it is an object `{candidate, sdp_mid?, sdp_mline_index?}`; a bare string is
/// accepted too and read as the candidate line.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct IceCandidate {
    /// The `candidate:...` line (empty for end-of-candidates).
    pub candidate: String,
    /// The media stream id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdp_mid: Option<String>,
    /// The media line index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdp_mline_index: Option<u16>,
}

impl IceCandidate {
    /// A candidate with only its line.
    pub fn from_line(candidate: impl Into<String>) -> Self {
        IceCandidate { candidate: candidate.into(), sdp_mid: None, sdp_mline_index: None }
    }
}

impl<'de> Deserialize<'de> for IceCandidate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Full {
            candidate: String,
            #[serde(default)]
            sdp_mid: Option<String>,
            #[serde(default)]
            sdp_mline_index: Option<u16>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Line(String),
            Full(Full),
        }
        match Either::deserialize(d)? {
            Either::Line(candidate) => Ok(IceCandidate::from_line(candidate)),
            Either::Full(f) => Ok(IceCandidate {
                candidate: f.candidate,
                sdp_mid: f.sdp_mid,
                sdp_mline_index: f.sdp_mline_index,
            }),
        }
    }
}

/// A STUN or TURN server, as `RTCIceServer` has it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IceServer {
    /// `stun:` or `turn:` URLs.
    pub urls: Vec<String>,
    /// TURN username (with time-limited credentials: `expiry:account`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// TURN password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// A session key for sealing peer frames: AES-256, numbered by epoch.
///
/// On the wire the key is 64 lowercase hex digits. `Debug` never prints the key.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SessionKey {
    /// Increases by one at every rotation, starting at 1.
    pub epoch: u32,
    /// The 256-bit key.
    #[serde(with = "hex32")]
    pub key: [u8; 32],
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionKey").field("epoch", &self.epoch).finish_non_exhaustive()
    }
}

mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(key: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(64);
        for b in key {
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 0xF)] as char);
        }
        s.serialize_str(&out)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let bytes = s.as_bytes();
        if bytes.len() != 64 {
            return Err(D::Error::custom("key must be 64 hex digits"));
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            let hi = nibble(pair[0]).ok_or_else(|| D::Error::custom("key is not hex"))?;
            let lo = nibble(pair[1]).ok_or_else(|| D::Error::custom("key is not hex"))?;
            out[i] = (hi << 4) | lo;
        }
        Ok(out)
    }

    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
}

/// Byte limits per top-level field name, checked before typed decoding so that an oversized
/// field is reported as `too-large` with its name rather than as a generic bad value.
const FIELD_LIMITS: &[(&str, &str, usize)] = &[
    ("sdp", "sdp", SDP_BYTES_MAX),
    ("token", "token", TOKEN_BYTES_MAX),
    ("to", "peer id", PEER_ID_BYTES_MAX),
    ("from", "peer id", PEER_ID_BYTES_MAX),
    ("peer_id", "peer id", PEER_ID_BYTES_MAX),
    ("host", "peer id", PEER_ID_BYTES_MAX),
    ("session_id", "session id", SESSION_ID_BYTES_MAX),
    ("zone", "zone", ZONE_BYTES_MAX),
    ("message", "message", ERROR_MESSAGE_BYTES_MAX),
    ("server", "server", ICE_FIELD_BYTES_MAX),
];

fn check_limits(obj: &Map<String, Value>) -> Result<(), WireError> {
    for (field, what, max) in FIELD_LIMITS {
        if let Some(Value::String(s)) = obj.get(*field)
            && s.len() > *max
        {
            return Err(WireError::TooLarge { what, len: s.len(), max: *max });
        }
    }
    match obj.get("candidate") {
        Some(Value::String(line)) => check_candidate_line(line)?,
        Some(Value::Object(c)) => {
            if let Some(Value::String(line)) = c.get("candidate") {
                check_candidate_line(line)?;
            }
            if let Some(Value::String(mid)) = c.get("sdp_mid")
                && mid.len() > SDP_MID_BYTES_MAX
            {
                return Err(WireError::TooLarge {
                    what: "sdp_mid",
                    len: mid.len(),
                    max: SDP_MID_BYTES_MAX,
                });
            }
        }
        _ => {}
    }
    if let Some(Value::Array(peers)) = obj.get("peers")
        && peers.len() > PEERS_MAX
    {
        return Err(WireError::TooLarge { what: "peers", len: peers.len(), max: PEERS_MAX });
    }
    if let Some(Value::Array(servers)) = obj.get("ice_servers") {
        if servers.len() > ICE_SERVERS_MAX {
            return Err(WireError::TooLarge {
                what: "ice_servers",
                len: servers.len(),
                max: ICE_SERVERS_MAX,
            });
        }
        for server in servers.iter().filter_map(Value::as_object) {
            let urls = server.get("urls").and_then(Value::as_array).into_iter().flatten();
            let texts = urls.chain(server.get("username")).chain(server.get("credential"));
            for s in texts.filter_map(Value::as_str) {
                if s.len() > ICE_FIELD_BYTES_MAX {
                    return Err(WireError::TooLarge {
                        what: "ice server field",
                        len: s.len(),
                        max: ICE_FIELD_BYTES_MAX,
                    });
                }
            }
        }
    }
    Ok(())
}

fn check_candidate_line(line: &str) -> Result<(), WireError> {
    if line.len() > CANDIDATE_BYTES_MAX {
        return Err(WireError::TooLarge {
            what: "candidate",
            len: line.len(),
            max: CANDIDATE_BYTES_MAX,
        });
    }
    Ok(())
}

fn truncated(s: &str, max: usize) -> String {
    let mut cut = s.len().min(max);
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s[..cut].to_owned()
}

/// Maps a serde error of typed decoding onto the protocol's error kinds.
fn classify_serde_error(err: serde_json::Error) -> WireError {
    let text = err.to_string();
    // serde's derive reports absent fields as "missing field `name`".
    if let Some(rest) = text.strip_prefix("missing field `")
        && let Some(end) = rest.find('`')
    {
        return WireError::MissingField { field: rest[..end].to_owned() };
    }
    WireError::BadValue { detail: truncated(&text, 200) }
}

pub(super) fn decode<T: DeserializeOwned>(frame: &[u8], types: &[&str]) -> Result<T, WireError> {
    if frame.len() > FRAME_BYTES_MAX {
        return Err(WireError::TooLarge { what: "frame", len: frame.len(), max: FRAME_BYTES_MAX });
    }
    let value: Value = serde_json::from_slice(frame)
        .map_err(|e| WireError::MalformedJson { detail: truncated(&e.to_string(), 200) })?;
    let Value::Object(obj) = &value else {
        return Err(WireError::MalformedJson { detail: "frame is not a JSON object".into() });
    };
    let ty = match obj.get("type") {
        None => return Err(WireError::MissingField { field: "type".into() }),
        Some(Value::String(ty)) => ty,
        Some(_) => return Err(WireError::BadValue { detail: "`type` must be a string".into() }),
    };
    if !types.contains(&ty.as_str()) {
        return Err(WireError::UnknownType { ty: truncated(ty, 64) });
    }
    check_limits(obj)?;
    serde_json::from_value(value).map_err(classify_serde_error)
}

pub(super) fn encode<T: Serialize>(msg: &T) -> String {
    // Serialising these types cannot fail: every map key is a string and no value is a float.
    serde_json::to_string(msg).unwrap_or_else(|e| {
        let err = ServerMessage::error(ErrorCode::Internal, e.to_string());
        serde_json::to_string(&err).unwrap_or_default()
    })
}
