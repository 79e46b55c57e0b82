//! The same `Service` runs on turmoil's simulated network and clock (as the simulation will
//! run it): signaling between two hosts works, and the idle timeout fires in simulated time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use ro_p2p_core::Rng;
use ro_p2p_core::wire::{ClientMessage, PeerId, ServerMessage, Zone, decode_server, encode_client};
use ro_p2p_tokio::server::{ManualWallClock, ServerConfig, Service};
use tokio_tungstenite::tungstenite::Message;

/// turmoil's listener as an axum listener (the orphan rule needs the newtype).
struct SimListener(turmoil::net::TcpListener);

impl axum::serve::Listener for SimListener {
    type Io = turmoil::net::TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            if let Ok(pair) = self.0.accept().await {
                return pair;
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

type SimWs = tokio_tungstenite::WebSocketStream<turmoil::net::TcpStream>;

async fn connect() -> SimWs {
    let tcp = turmoil::net::TcpStream::connect(("coordinator", 8001)).await.unwrap();
    let (ws, _) = tokio_tungstenite::client_async("ws://coordinator:8001/api/v1/signaling/ws", tcp)
        .await
        .unwrap();
    ws
}

async fn next(ws: &mut SimWs) -> Result<ServerMessage, String> {
    match ws.next().await {
        Some(Ok(Message::Text(t))) => Ok(decode_server(t.as_bytes()).unwrap()),
        Some(Ok(Message::Close(f))) => Err(f.map(|f| f.reason.to_string()).unwrap_or_default()),
        other => Err(format!("{other:?}")),
    }
}

/// Joins `prontera` and returns the members already there.
async fn join(ws: &mut SimWs, peer: &str) -> Vec<PeerId> {
    let msg = ClientMessage::Join {
        peer_id: Some(PeerId::new(peer).unwrap()),
        session_id: None,
        zone: Zone::new("prontera").unwrap(),
        capabilities: None,
    };
    ws.send(Message::text(encode_client(&msg))).await.unwrap();
    loop {
        if let ServerMessage::SessionJoined { peers, .. } = next(ws).await.unwrap() {
            return peers;
        }
    }
}

fn sim() -> turmoil::Sim<'static> {
    let mut sim = turmoil::Builder::new().simulation_duration(Duration::from_secs(120)).build();
    sim.host("coordinator", || async {
        let listener = turmoil::net::TcpListener::bind("0.0.0.0:8001").await?;
        let config = ServerConfig::default();
        let service = Service::start(
            config,
            Rng::from_seed(11),
            Arc::new(ManualWallClock::new(1_800_000_000)),
        )?;
        service
            .serve(SimListener(listener), std::future::pending(), Duration::from_secs(1))
            .await?;
        Ok(())
    });
    sim
}

#[test]
fn signaling_works_between_simulated_hosts() {
    let mut sim = sim();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    sim.client("alice", async move {
        let mut ws = connect().await;
        join(&mut ws, "alice").await;
        loop {
            if let ServerMessage::Offer { from, sdp } = next(&mut ws).await? {
                assert_eq!((from.as_str(), sdp.as_str()), ("bob", "v=0 sim"));
                tx.send(()).unwrap();
                return Ok(());
            }
        }
    });
    sim.client("bob", async {
        let mut ws = connect().await;
        let alice = PeerId::new("alice").unwrap();
        if !join(&mut ws, "bob").await.contains(&alice) {
            // Wait for alice to be a member before offering to her.
            while next(&mut ws).await? != (ServerMessage::PeerJoined { peer_id: alice.clone() }) {}
        }
        let offer =
            ClientMessage::Offer { to: PeerId::new("alice").unwrap(), sdp: "v=0 sim".into() };
        ws.send(Message::text(encode_client(&offer))).await?;
        // Keep the connection until alice is done.
        let _ = next(&mut ws).await;
        Ok(())
    });
    while rx.try_recv().is_err() {
        sim.step().unwrap();
    }
}

#[test]
fn idle_timeout_fires_in_simulated_time() {
    let mut sim = sim();
    sim.client("silent", async {
        let start = tokio::time::Instant::now();
        let mut ws = connect().await;
        assert!(matches!(next(&mut ws).await, Ok(ServerMessage::Welcome { .. })));
        let reason = next(&mut ws).await.unwrap_err();
        assert!(reason.starts_with("idle-timeout"), "{reason}");
        let waited = start.elapsed();
        // The default idle timeout is 45 s of simulated time.
        assert!(
            waited >= Duration::from_secs(45) && waited < Duration::from_secs(47),
            "{waited:?}"
        );
        Ok(())
    });
    sim.run().unwrap();
}

#[test]
fn a_connection_that_never_sends_a_request_is_closed_after_the_header_read_timeout() {
    use tokio::io::AsyncReadExt as _;
    let mut sim = sim();
    sim.client("silent", async {
        let start = tokio::time::Instant::now();
        let mut tcp = turmoil::net::TcpStream::connect(("coordinator", 8001)).await.unwrap();
        let mut buf = [0u8; 256];
        // The server ends the connection (EOF, or an error once it reset it).
        let n = tcp.read(&mut buf).await.unwrap_or(0);
        let waited = start.elapsed();
        assert_eq!(n, 0, "the server sent {:?}", String::from_utf8_lossy(&buf[..n]));
        let timeout = ro_p2p_tokio::server::HEADER_READ_TIMEOUT;
        assert!(
            waited >= timeout && waited < timeout + Duration::from_secs(1),
            "closed after {waited:?}"
        );
        Ok(())
    });
    sim.run().unwrap();
}
