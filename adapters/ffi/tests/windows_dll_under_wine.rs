//! The C tests against the Windows DLL, 32-bit (the game client's) and 64-bit, under wine.
//! Opt-in (it cross-builds the DLL twice, which takes minutes):
//! `ROP2P_WINE_TEST=1 cargo test -p ro-p2p-ffi --test windows_dll_under_wine`; with it set, a
//! missing tool fails the test. Needs both Windows targets, both MinGW compilers,
//! `wine64` and `wine32:i386`; see docs/dll.md. Otherwise it passes without doing anything.

mod wine_support;

use std::path::Path;

use wine_support::{build_dll, compile, folder_with_dll, run, wine_command};

#[test]
fn c_tests_pass_against_the_windows_dll_under_wine_32_and_64_bit() {
    if !wine_support::enabled() {
        eprintln!("skipped: set ROP2P_WINE_TEST=1 to cross-build the DLL and run it under wine");
        return;
    }
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    for target in wine_support::targets() {
        let lib_dir = build_dll(target);
        let work = folder_with_dll(target, &lib_dir, "wine-tests");
        for test in ["core_layer", "batteries_layer"] {
            let exe = work.join(format!("{test}.exe"));
            compile(target, &lib_dir, &crate_dir.join(format!("tests/c/{test}.c")), &exe, &[]);
            let out = run(wine_command(target, &exe, &work).arg("."));
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(stdout.contains("all checks passed"), "{test} ({}-bit): {stdout}", target.bits);
        }
    }
}
