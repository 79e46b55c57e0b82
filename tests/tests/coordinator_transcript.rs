//! The transcript of a scripted session, as a reviewer reads it: three clients join one zone,
//! signal, one leaves, the host migrates, a key rotates. Each output is one line
//! `t=<ms> -> conn <n>: <json>` (or `close <code> <reason>`).

use ro_p2p_core::coordinator::{Config, ConnId, Coordinator, Identity, Input, Output};
use ro_p2p_core::wire::{
    Capabilities, ClientMessage, IceCandidate, IceServer, PeerId, Zone, encode_client,
    encode_server,
};
use ro_p2p_core::{Instant, Rng, SansIo};

struct Script {
    c: Coordinator,
    now: Instant,
    lines: Vec<String>,
}

impl Script {
    fn render(&mut self) {
        for out in self.c.drain_outputs() {
            let t = self.now.as_millis();
            self.lines.push(match out {
                Output::Send { conn, msg } => {
                    format!("t={t} -> conn {}: {}", conn.0, encode_server(&msg))
                }
                Output::Close { conn, code, reason } => {
                    format!("t={t} -> conn {}: close {code} {reason:?}", conn.0)
                }
            });
        }
    }

    fn at(&mut self, ms: u64) {
        // Fire every timer due on the way, at its own time.
        while let Some(due) = self.c.poll_timeout().filter(|d| d.as_millis() <= ms) {
            self.now = self.now.max(due);
            self.c.handle_timeout(self.now);
            self.render();
        }
        self.now = Instant::from_millis(ms);
    }

    fn input(&mut self, input: Input) {
        if let Input::Frame { conn, bytes } = &input {
            let text = String::from_utf8_lossy(bytes);
            self.lines.push(format!("t={} <- conn {}: {text}", self.now.as_millis(), conn.0));
        }
        self.c.handle_input(self.now, input);
        self.render();
    }

    fn send(&mut self, conn: u64, msg: ClientMessage) {
        let bytes = encode_client(&msg).into_bytes();
        self.input(Input::Frame { conn: ConnId(conn), bytes });
    }
}

fn peer(s: &str) -> PeerId {
    PeerId::new(s).unwrap()
}

fn caps(cpu_cores: u32, cpu_mhz: u32) -> Option<Capabilities> {
    Some(Capabilities {
        cpu_cores,
        cpu_mhz,
        memory_mb: 16_384,
        bandwidth_mbps: 200,
        latency_ms: 30,
    })
}

fn join(capabilities: Option<Capabilities>) -> ClientMessage {
    ClientMessage::Join {
        peer_id: None,
        session_id: None,
        zone: Zone::new("prontera").unwrap(),
        capabilities,
    }
}

fn scripted_session() -> Vec<String> {
    let config = Config {
        key_rotation_interval_s: 30,
        server_name: "ro-p2p-coordinator/test".into(),
        ..Config::default()
    };
    let mut s = Script {
        c: Coordinator::new(config, Rng::from_seed(2026)),
        now: Instant::ZERO,
        lines: Vec::new(),
    };
    let ice = vec![IceServer {
        urls: vec!["stun:stun.example.org:3478".into()],
        username: None,
        credential: None,
    }];
    for (conn, account) in [(1, "2000001"), (2, "2000002"), (3, "2000003")] {
        let identity = Identity::Account(peer(account));
        s.input(Input::Connected {
            conn: ConnId(conn),
            identity,
            ice_servers: ice.clone(),
            origin: None,
        });
    }
    s.at(100);
    s.send(1, join(caps(8, 3600)));
    s.at(200);
    s.send(2, join(caps(4, 3200)));
    s.at(300);
    s.send(3, join(None));
    s.at(400);
    s.send(
        3,
        ClientMessage::Offer {
            to: peer("2000001"),
            sdp: "v=0\r\no=- 3 1 IN IP4 0.0.0.0\r\n".into(),
        },
    );
    s.send(
        1,
        ClientMessage::Answer {
            to: peer("2000003"),
            sdp: "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n".into(),
        },
    );
    s.send(
        3,
        ClientMessage::IceCandidate {
            to: peer("2000001"),
            candidate: IceCandidate {
                candidate: "candidate:1 1 UDP 2122252543 192.0.2.3 50000 typ host".into(),
                sdp_mid: Some("0".into()),
                sdp_mline_index: Some(0),
            },
        },
    );
    s.at(1_000);
    s.send(2, ClientMessage::Ping { nonce: Some(1) });
    s.at(2_000);
    s.send(1, ClientMessage::Leave);
    s.at(2_100);
    s.send(3, ClientMessage::Offer { to: peer("2000001"), sdp: "v=0\r\n".into() });
    s.at(20_000);
    for conn in [2, 3] {
        s.send(conn, ClientMessage::Ping { nonce: None });
    }
    s.at(30_200);
    s.lines
}

#[test]
fn scripted_session_transcript() {
    insta::assert_snapshot!(scripted_session().join("\n"));
}

#[test]
fn scripted_session_replays_identically() {
    assert_eq!(scripted_session(), scripted_session());
}
