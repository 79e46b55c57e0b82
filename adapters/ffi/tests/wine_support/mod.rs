//! Cross-building the Windows DLL and running programs against it under wine, for the wine
//! tests (both the 32-bit game client's target and the 64-bit one).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// A Windows target the DLL is built for.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    /// The Rust target triple.
    pub triple: &'static str,
    /// Its MinGW C compiler.
    pub cc: &'static str,
    /// Pointer width, for messages.
    pub bits: u32,
}

/// The game client's target (32-bit) first, then the 64-bit one.
pub const TARGETS: [Target; 2] = [
    Target { triple: "i686-pc-windows-gnu", cc: "i686-w64-mingw32-gcc", bits: 32 },
    Target { triple: "x86_64-pc-windows-gnu", cc: "x86_64-w64-mingw32-gcc", bits: 64 },
];

/// The targets to run: both, or those `ROP2P_WINE_TARGETS` names by pointer width (`32`,
/// `64`, `32,64`).
pub fn targets() -> Vec<Target> {
    let only = std::env::var("ROP2P_WINE_TARGETS").unwrap_or_default();
    TARGETS
        .into_iter()
        .filter(|t| only.is_empty() || only.split(',').any(|b| b.trim() == t.bits.to_string()))
        .collect()
}

/// Whether the wine tests run: `ROP2P_WINE_TEST` set (CI sets it once wine is installed);
/// then a missing tool fails the test instead of skipping it.
pub fn enabled() -> bool {
    std::env::var_os("ROP2P_WINE_TEST").is_some()
}

pub fn run(cmd: &mut Command) -> std::process::Output {
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

fn has(bin: &str) -> bool {
    Command::new("which").arg(bin).output().is_ok_and(|o| o.status.success())
}

/// The wine loader for `target`: `wine` runs both PE32 and PE32+ (with `wine32:i386`
/// installed for PE32); Debian's `wine64` package binary when only that is there.
pub fn wine(target: Target) -> String {
    if has("wine") {
        return "wine".into();
    }
    if target.bits == 64 {
        if has("wine64") {
            return "wine64".into();
        }
        if Path::new("/usr/lib/wine/wine64").exists() {
            return "/usr/lib/wine/wine64".into();
        }
    } else if Path::new("/usr/lib/wine/wine").exists() {
        return "/usr/lib/wine/wine".into();
    }
    panic!(
        "no wine for {}-bit programs: apt-get install wine64 (and, after dpkg --add-architecture i386, wine32:i386)",
        target.bits
    );
}

/// The cargo target directory, found from the test binary (`target/debug/deps/x`).
pub fn target_root() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(3).unwrap().to_path_buf()
}

/// Cross-builds the debug DLL for `target`; returns the directory holding `ro_p2p_ffi.dll`
/// and its import library.
pub fn build_dll(target: Target) -> PathBuf {
    build_dll_profile(target, false)
}

/// Cross-builds the DLL for `target`, optimised when `release`; returns its directory.
pub fn build_dll_profile(target: Target, release: bool) -> PathBuf {
    assert!(has(target.cc), "{} missing: apt-get install gcc-mingw-w64-*", target.cc);
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["build", "-p", "ro-p2p-ffi", "--lib", "--target", target.triple]);
    if release {
        cmd.arg("--release");
    }
    run(&mut cmd);
    target_root().join(target.triple).join(if release { "release" } else { "debug" })
}

/// A folder `name` beside the DLL holding a copy of the DLL and the `bcryptprimitives.dll`
/// shim wine 8 needs (Rust's std imports `ProcessPrng`).
pub fn folder_with_dll(target: Target, lib_dir: &Path, name: &str) -> PathBuf {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let work = lib_dir.join(name);
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    std::fs::copy(lib_dir.join("ro_p2p_ffi.dll"), work.join("ro_p2p_ffi.dll")).unwrap();
    // `--kill-at`: the 32-bit export must be `ProcessPrng`, not the stdcall `ProcessPrng@8`.
    run(Command::new(target.cc)
        .args(["-shared", "-O2", "-Wl,--kill-at", "-o"])
        .arg(work.join("bcryptprimitives.dll"))
        .arg(crate_dir.join("tests/windows/bcryptprimitives_shim.c"))
        .arg("-ladvapi32"));
    work
}

/// Compiles `source` for `target` against the DLL's import library (so the DLL is in the
/// program's import table) into `exe`.
pub fn compile(target: Target, lib_dir: &Path, source: &Path, exe: &Path, libs: &[&str]) {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    run(Command::new(target.cc)
        .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-O1", "-I"])
        .arg(crate_dir.join("include"))
        .arg(source)
        .arg("-o")
        .arg(exe)
        .arg(lib_dir.join("libro_p2p_ffi.dll.a"))
        .args(libs));
}

/// A `wine` command for `exe` in `dir`, with the shim preferred and wine's own chatter off
/// (`ROP2P_WINEDEBUG` replaces the `WINEDEBUG` channels, e.g. `+winsock` to trace Winsock).
pub fn wine_command(target: Target, exe: &Path, dir: &Path) -> Command {
    let mut cmd = Command::new(wine(target));
    let channels = std::env::var("ROP2P_WINEDEBUG").unwrap_or_else(|_| "-all".into());
    cmd.arg(exe)
        .current_dir(dir)
        .env("WINEDEBUG", channels)
        .env("WINEDLLOVERRIDES", "bcryptprimitives=n")
        // Printing a panic's backtrace crashes 32-bit wine 8 (a page fault in its debugger
        // support); the panic itself is caught as it should be.
        .env("RUST_BACKTRACE", "0");
    cmd
}
