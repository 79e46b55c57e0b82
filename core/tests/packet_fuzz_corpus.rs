//! Replays the kept fuzz corpora of `fuzz/corpus/{packet_stream,chat_parse,coordinator_frames,
//! wire_decode}` through the same entry points the cargo-fuzz targets call, so CI on stable
//! checks every kept input.

use std::path::Path;

fn replay(target: &str, entry: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "corpus {} is empty", dir.display());
    for file in files {
        let data = std::fs::read(&file).expect("read corpus file");
        entry(&data);
    }
}

#[test]
fn packet_stream_corpus_replays_cleanly() {
    replay("packet_stream", ro_p2p_core::fuzz::packet_stream);
}

#[test]
fn chat_parse_corpus_replays_cleanly() {
    replay("chat_parse", ro_p2p_core::fuzz::chat_parse);
}

#[test]
fn coordinator_frames_corpus_replays_cleanly() {
    replay("coordinator_frames", ro_p2p_core::fuzz::coordinator_frames);
}

#[test]
fn wire_decode_corpus_replays_cleanly() {
    replay("wire_decode", ro_p2p_core::fuzz::wire_decode);
}
