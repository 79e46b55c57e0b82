//! `rop2p_refresh_token`: an instance started with a token the coordinator refuses (expired)
//! keeps retrying; once given a fresh one it authenticates on the next attempt and joins its
//! zone's session. The coordinator runs in process with JWT authentication.

use std::ffi::CString;
use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ro_p2p_core::Rng;
use ro_p2p_ffi::dll::{
    RoP2pStartOptions, rop2p_refresh_token, rop2p_set_zone, rop2p_start_with, rop2p_stop,
};
use ro_p2p_ffi::status::RoP2pStatus;
use ro_p2p_tokio::server::{ManualWallClock, ServerConfig, Service};

const SECRET: &str = "refresh-test-secret-0123456789abcdef";
const NOW_UNIX_S: u64 = 1_800_000_000;
const WAIT: Duration = Duration::from_secs(30);

fn token(exp: u64) -> String {
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    let claims = serde_json::json!({"sub": "4242", "exp": exp});
    encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(SECRET.as_bytes()))
        .unwrap()
}

fn get(addr: SocketAddr, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let bearer = token(NOW_UNIX_S + 3600);
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Bearer {bearer}\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// Polls `path` until its response contains `needle` (bounded).
fn wait_for(addr: SocketAddr, path: &str, needle: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let body = get(addr, path);
        if body.contains(needle) {
            return;
        }
        assert!(Instant::now() < deadline, "no {needle:?} in {path} after {WAIT:?}:\n{body}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_expired_token_is_refused_and_the_refreshed_one_joins() {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    let config = ServerConfig {
        require_authentication: true,
        jwt_secret: Some(SECRET.to_owned()),
        ..ServerConfig::default()
    };
    let service = {
        let _entered = runtime.enter();
        Service::start(config, Rng::from_seed(3), Arc::new(ManualWallClock::new(NOW_UNIX_S)))
            .unwrap()
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = runtime.spawn(service.serve(
        listener,
        async move {
            let _ = stop_rx.await;
        },
        Duration::from_secs(2),
    ));

    let scratch = std::env::temp_dir().join(format!("rop2p-refresh-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    let config = CString::new(format!(
        "{{ coordinator: {{ websocket_url: \"ws://{addr}/api/v1/signaling/ws\", \
         reconnect_delay_ms: 50, max_retries: 100 }} }}"
    ))
    .unwrap();
    let log = CString::new(scratch.join("refresh.log").to_str().unwrap()).unwrap();
    let expired = CString::new(token(NOW_UNIX_S - 60)).unwrap();
    let loopback = CString::new("127.0.0.1").unwrap();
    let options = RoP2pStartOptions {
        token: expired.as_ptr(),
        peer_id: std::ptr::null(),
        udp_bind_ip: loopback.as_ptr(),
        account_id: 0,
        web_auth_token: std::ptr::null(),
    };
    let mut handle = 0u64;
    // SAFETY: NUL-terminated strings, a valid options struct and a writable handle.
    let status =
        unsafe { rop2p_start_with(config.as_ptr(), 1, log.as_ptr(), &options, &mut handle) };
    assert_eq!(status, RoP2pStatus::Ok);
    let zone = CString::new("prontera").unwrap();
    // SAFETY: a NUL-terminated string.
    assert_eq!(unsafe { rop2p_set_zone(handle, zone.as_ptr()) }, RoP2pStatus::Ok);

    wait_for(addr, "/metrics", "ro_p2p_rejects_total{code=\"auth-expired\"}");
    assert!(!get(addr, "/api/v1/sessions/list").contains("4242"));

    // SAFETY: NUL-terminated strings.
    unsafe {
        assert_eq!(rop2p_refresh_token(handle, c"".as_ptr()), RoP2pStatus::ErrInvalidArgument);
        assert_eq!(rop2p_refresh_token(handle, std::ptr::null()), RoP2pStatus::ErrNullPointer);
        let fresh = CString::new(token(NOW_UNIX_S + 3600)).unwrap();
        assert_eq!(rop2p_refresh_token(handle, fresh.as_ptr()), RoP2pStatus::Ok);
    }
    wait_for(addr, "/api/v1/sessions/list", "\"4242\"");

    assert_eq!(rop2p_stop(handle), RoP2pStatus::Ok);
    let _ = stop_tx.send(());
    runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(10), server).await })
        .expect("the coordinator stops")
        .unwrap()
        .unwrap();
}
