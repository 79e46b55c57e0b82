//! Size limits of the signaling protocol (protocol version 1).
//!
//! Every field an attacker controls has a bound; decoding checks them all.

/// Largest frame the coordinator or client accepts, in bytes.
pub const FRAME_BYTES_MAX: usize = 64 * 1024;
/// Largest SDP body in an `offer` or `answer`, in bytes.
pub const SDP_BYTES_MAX: usize = 32 * 1024;
/// Largest ICE candidate line, in bytes.
pub const CANDIDATE_BYTES_MAX: usize = 1024;
/// Largest `sdp_mid` of a candidate, in bytes.
pub const SDP_MID_BYTES_MAX: usize = 64;
/// Longest peer id, in bytes.
pub const PEER_ID_BYTES_MAX: usize = 64;
/// Longest session id, in bytes.
pub const SESSION_ID_BYTES_MAX: usize = 64;
/// Longest zone (rAthena map name), in bytes: `MAP_NAME_LENGTH` 12 minus the NUL.
pub const ZONE_BYTES_MAX: usize = 11;
/// Longest bearer token in an `auth` message, in bytes.
pub const TOKEN_BYTES_MAX: usize = 4096;
/// Longest human-readable `message` of an `error`, in bytes.
pub const ERROR_MESSAGE_BYTES_MAX: usize = 512;
/// Most peers listed in one `session-joined`.
pub const PEERS_MAX: usize = 1024;
/// Most ICE servers listed in one `session-joined`.
pub const ICE_SERVERS_MAX: usize = 16;
/// Longest ICE server URL or credential, in bytes.
pub const ICE_FIELD_BYTES_MAX: usize = 512;
