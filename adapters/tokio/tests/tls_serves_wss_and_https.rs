//! With a certificate configured, the same service speaks `wss://` and `https://`.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use ro_p2p_core::Rng;
use ro_p2p_core::wire::ServerMessage;
use ro_p2p_tokio::server::{ManualWallClock, ServerConfig, Service, tls};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn client_config() -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read(fixture("ca.pem")).unwrap();
    roots.add(CertificateDer::from_pem_slice(&ca).unwrap()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

#[tokio::test]
async fn wss_and_https_work_with_a_configured_certificate() {
    let tls_config =
        tls::load_server_config(&fixture("server.pem"), &fixture("server.key")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = ServerConfig { tls: true, ..ServerConfig::default() };
    let service =
        Service::start(config, Rng::from_seed(1), Arc::new(ManualWallClock::new(NOW_UNIX_S)))
            .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(service.serve(
        tls::TlsListener::new(listener, tls_config),
        async move {
            let _ = stopped.await;
        },
        Duration::from_secs(2),
    ));

    // A client that connects and never handshakes does not block others.
    let _idle = tokio::net::TcpStream::connect(addr).await.unwrap();

    // https
    let connector = tokio_rustls::TlsConnector::from(client_config());
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut tls = connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await.unwrap();
    tls.write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(WAIT, tls.read_to_end(&mut raw)).await.unwrap();
    let r = parse_response(&raw);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["status"], "ok");

    // wss
    let url = format!("wss://localhost:{}/api/v1/signaling/ws", addr.port());
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (ws, _) = tokio_tungstenite::client_async_tls_with_config(
        url.as_str(),
        tcp,
        None,
        Some(tokio_tungstenite::Connector::Rustls(client_config())),
    )
    .await
    .unwrap();
    let mut c = Client { ws, welcome: None };
    c.await_welcome().await.unwrap();
    assert!(matches!(c.welcome, Some(ServerMessage::Welcome { .. })));
    c.ping(5).await;

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), serving).await.unwrap().unwrap().unwrap();
}
