//! Entry points for the cargo-fuzz targets in `fuzz/`.
//!
//! Each target is one line calling a function here, so the same logic is exercised by the
//! normal test build (the kept corpus is replayed by a stable test).

/// Decodes arbitrary bytes as a client frame and as a server frame; must never panic, and a
/// successful decode must re-encode to a frame that decodes to the same value.
pub fn wire_decode(data: &[u8]) {
    use crate::wire::{decode_client, decode_server, encode_client, encode_server};
    if let Ok(msg) = decode_client(data) {
        let again = decode_client(encode_client(&msg).as_bytes());
        assert_eq!(again.as_ref(), Ok(&msg), "client message does not round-trip");
    }
    if let Ok(msg) = decode_server(data) {
        let again = decode_server(encode_server(&msg).as_bytes());
        assert_eq!(again.as_ref(), Ok(&msg), "server message does not round-trip");
    }
}
