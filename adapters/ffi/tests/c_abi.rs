//! Builds the cdylib, compiles the C tests in `tests/c/` with the system C compiler (`cc`, or
//! `$CC`) against the committed header, and runs them. The C++ compiler compiles the header too.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The longest any C program may run (the end-to-end one bounds each of its own waits).
const RUN_BOUND: std::time::Duration = std::time::Duration::from_secs(120);

/// The directory holding this profile's artifacts (`target/debug`), found from the test binary.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().to_path_buf()
}

/// The directory holding the cdylib to link against. `cargo test` builds this crate's library
/// with all its crate types for the integration tests, so the `.so` of exactly this build sits
/// beside the test binary in `deps/`; only when it is missing (a test binary run by hand after
/// a clean) is it built with a nested `cargo build` (whose feature set differs from the test
/// build's, so that costs a rebuild of the dependencies).
fn build_cdylib() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap().to_path_buf();
    if deps.join("libro_p2p_ffi.so").exists() {
        return deps;
    }
    let dir = profile_dir();
    let mut cargo = Command::new(env!("CARGO"));
    cargo.args(["build", "-p", "ro-p2p-ffi", "--lib"]);
    if dir.file_name().is_some_and(|n| n == "release") {
        cargo.arg("--release");
    }
    let status = cargo.status().expect("cargo runs");
    assert!(status.success(), "cargo build of the cdylib failed");
    assert!(dir.join("libro_p2p_ffi.so").exists(), "no libro_p2p_ffi.so in {}", dir.display());
    dir
}

fn compile_and_run(source: &str, args: &[&Path]) -> String {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    compile_and_run_at(&crate_dir.join("tests/c").join(source), args)
}

fn compile_and_run_at(source_path: &Path, args: &[&Path]) -> String {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let source = source_path.file_name().unwrap().to_str().unwrap();
    let lib_dir = build_cdylib();
    let out_dir = lib_dir.join("c-tests");
    std::fs::create_dir_all(&out_dir).unwrap();
    let exe = out_dir.join(source.trim_end_matches(".c"));
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let output = Command::new(&cc)
        .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-Wno-unused-function"])
        .arg("-I")
        .arg(crate_dir.join("include"))
        .arg(source_path)
        .arg("-o")
        .arg(&exe)
        .arg("-L")
        .arg(&lib_dir)
        .arg(format!("-Wl,-rpath,{}", lib_dir.display()))
        .arg("-lro_p2p_ffi")
        .output()
        .expect("the C compiler runs");
    assert!(
        output.status.success(),
        "{cc} failed on {source}:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Output goes to files and the run is bounded, so a hung program fails the test.
    let stdout_path = out_dir.join(format!("{source}.stdout"));
    let stderr_path = out_dir.join(format!("{source}.stderr"));
    let mut child = Command::new(&exe)
        .args(args)
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("the C test runs");
    let deadline = std::time::Instant::now() + RUN_BOUND;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let stdout = std::fs::read_to_string(&stdout_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    match status {
        Some(status) => {
            assert!(status.success(), "{source} failed ({status}):\n{stdout}\n{stderr}")
        }
        None => panic!("{source} did not end within {RUN_BOUND:?}:\n{stdout}\n{stderr}"),
    }
    stdout
}

#[test]
fn c_core_layer_routes_renders_and_survives_misuse() {
    let out = compile_and_run("core_layer.c", &[]);
    assert!(out.contains("all checks passed"), "{out}");
}

#[test]
fn c_batteries_layer_starts_from_both_configs_hooks_logs_and_stops() {
    let scratch = profile_dir().join("c-tests").join("batteries-scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let out = compile_and_run("batteries_layer.c", &[&scratch]);
    assert!(out.contains("all checks passed"), "{out}");
}

/// The coordinator service on 127.0.0.1:0 (authentication off, sessions in memory) on its own
/// runtime, while `loopback_e2e.c` runs four batteries handles against it over real WebRTC
/// on loopback.
#[test]
fn c_three_game_clients_see_each_others_walk_and_chat_over_webrtc_on_loopback() {
    use std::sync::Arc;
    use std::time::Duration;

    use ro_p2p_core::Rng;
    use ro_p2p_tokio::server::{ManualWallClock, ServerConfig, Service};

    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    let clock = Arc::new(ManualWallClock::new(1_800_000_000));
    let service = {
        let _entered = runtime.enter();
        Service::start(ServerConfig::default(), Rng::from_seed(8), clock).unwrap()
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = runtime.spawn(service.serve(
        listener,
        async move {
            let _ = stop_rx.await;
        },
        Duration::from_secs(2),
    ));
    let url = format!("ws://{addr}/api/v1/signaling/ws");
    let scratch = profile_dir().join("c-tests").join("e2e-scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let out = compile_and_run("loopback_e2e.c", &[Path::new(&url), &scratch]);
    println!("{out}");
    assert!(out.contains("all checks passed"), "{out}");
    // The handles log at debug: their log files also carry the WebRTC adapter's `tracing`
    // lines and the WebRTC stack's `log` lines, not only the DLL's own.
    let log = std::fs::read_to_string(scratch.join("e2e-2000001.log")).unwrap();
    assert!(log.contains("] [debug] ro_p2p_webrtc::links: "), "no adapter line in:\n{log}");
    assert!(log.contains("] [debug] rtc"), "no WebRTC stack line in:\n{log}");
    let _ = stop_tx.send(());
    runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(10), server).await })
        .expect("the coordinator stops")
        .unwrap()
        .unwrap();
}

#[test]
fn replay_example_prints_the_routing_of_its_demo_capture() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/c/replay.c");
    let out = compile_and_run_at(&example, &[]);
    assert!(out.contains("55 bytes to the server; to peers: move to (150, 200)"), "{out}");
    assert!(out.contains("packets 6: 6 to the server, 4 to peers"), "{out}");
}

#[test]
fn header_compiles_as_cpp() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out_dir = profile_dir().join("c-tests");
    std::fs::create_dir_all(&out_dir).unwrap();
    let src = out_dir.join("header_check.cpp");
    std::fs::write(&src, "#include \"ro_p2p.h\"\nint main() { return rop2p_version() ? 0 : 1; }\n")
        .unwrap();
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".to_string());
    let output = Command::new(&cxx)
        .args(["-std=c++11", "-Wall", "-Wextra", "-Werror", "-fsyntax-only"])
        .arg("-I")
        .arg(crate_dir.join("include"))
        .arg(&src)
        .output()
        .expect("the C++ compiler runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}
