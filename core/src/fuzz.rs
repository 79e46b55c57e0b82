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

/// Opens arbitrary bytes as a sealed peer frame, then seals them as a payload and checks that
/// the genuine frame opens to the same bytes; must never panic.
pub fn seal_open(data: &[u8]) {
    use crate::seal::{Opener, SealConfig, Sealer};
    use crate::wire::{PeerId, SessionKey};
    use crate::{Instant, Rng};
    let Ok(sender) = PeerId::new("fuzz") else { return };
    let key = SessionKey { epoch: 1, key: [7; 32] };
    let mut opener = Opener::new(Instant::ZERO, sender.clone(), &key, SealConfig::default());
    let _ = opener.open(Instant::ZERO, data);
    let mut sealer = Sealer::new(sender, &key, &mut Rng::from_seed(0), SealConfig::default());
    if let Ok(frame) = sealer.seal(data) {
        let opened = opener.open(Instant::from_millis(1), &frame);
        assert_eq!(opened.as_deref(), Ok(data), "a genuine frame does not open");
    }
}
