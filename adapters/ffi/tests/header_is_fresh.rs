//! The committed C header is what cbindgen generates from the current source. Regenerate with
//! `ROP2P_UPDATE_HEADER=1 cargo test -p ro-p2p-ffi --test header_is_fresh`.

use std::path::Path;

#[test]
fn committed_header_matches_the_source() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).unwrap();
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen failed")
        .write(&mut generated);
    let generated = String::from_utf8(generated).unwrap();
    let path = crate_dir.join("include/ro_p2p.h");
    if std::env::var_os("ROP2P_UPDATE_HEADER").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "adapters/ffi/include/ro_p2p.h is stale: run \
         ROP2P_UPDATE_HEADER=1 cargo test -p ro-p2p-ffi --test header_is_fresh"
    );
}
