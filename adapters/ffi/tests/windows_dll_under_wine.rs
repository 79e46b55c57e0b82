//! The C tests against the Windows DLL, under wine. Opt-in (it cross-builds the DLL, which takes
//! minutes): `ROP2P_WINE_TEST=1 cargo test -p ro-p2p-ffi --test windows_dll_under_wine`. Needs
//! the `x86_64-pc-windows-gnu` target, `x86_64-w64-mingw32-gcc` and `wine64` (or `wine`); see
//! docs/dll.md. Without `ROP2P_WINE_TEST` it passes without doing anything.

use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "x86_64-pc-windows-gnu";
const CC: &str = "x86_64-w64-mingw32-gcc";

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `wine64`, `wine`, or Debian's `wine64` package binary, which is not on PATH.
fn wine() -> &'static str {
    let has = |bin: &str| Command::new("which").arg(bin).output().is_ok_and(|o| o.status.success());
    if has("wine64") {
        "wine64"
    } else if has("wine") {
        "wine"
    } else {
        "/usr/lib/wine/wine64"
    }
}

#[test]
fn c_tests_pass_against_the_windows_dll_under_wine() {
    if std::env::var_os("ROP2P_WINE_TEST").is_none() {
        eprintln!("skipped: set ROP2P_WINE_TEST=1 to cross-build the DLL and run it under wine");
        return;
    }
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let exe = std::env::current_exe().unwrap();
    let target_root: PathBuf = exe.ancestors().nth(3).unwrap().to_path_buf();
    run(Command::new(env!("CARGO")).args([
        "build",
        "-p",
        "ro-p2p-ffi",
        "--lib",
        "--target",
        TARGET,
    ]));
    let lib_dir = target_root.join(TARGET).join("debug");
    let work = lib_dir.join("wine-tests");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::copy(lib_dir.join("ro_p2p_ffi.dll"), work.join("ro_p2p_ffi.dll")).unwrap();
    run(Command::new(CC)
        .args(["-shared", "-O2", "-o"])
        .arg(work.join("bcryptprimitives.dll"))
        .arg(crate_dir.join("tests/windows/bcryptprimitives_shim.c"))
        .arg("-ladvapi32"));
    for test in ["core_layer", "batteries_layer"] {
        let exe = work.join(format!("{test}.exe"));
        run(Command::new(CC)
            .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-I"])
            .arg(crate_dir.join("include"))
            .arg(crate_dir.join(format!("tests/c/{test}.c")))
            .arg("-o")
            .arg(&exe)
            .arg(lib_dir.join("libro_p2p_ffi.dll.a")));
        let out = run(Command::new(wine())
            .arg(&exe)
            .arg(".")
            .current_dir(&work)
            .env("WINEDEBUG", "-all")
            .env("WINEDLLOVERRIDES", "bcryptprimitives=n"));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("all checks passed"), "{test}: {stdout}");
    }
}
