//! The client's state x input table as a snapshot: for each lifecycle state, each kind of
//! input, the next state and every output. A diff of this snapshot is a design review.

use std::fmt::Write as _;

use ro_p2p_core::client::{Client, CloseReason, Config, Input, Lifecycle, LinkEvent, Output};
use ro_p2p_core::wire::{
    Capabilities, ErrorCode, PeerId, ServerMessage, SessionId, SessionKey, Zone, encode_server,
};
use ro_p2p_core::{Instant, Rng, SansIo};

fn pid(s: &str) -> PeerId {
    PeerId::new(s).unwrap()
}
fn zone(s: &str) -> Zone {
    Zone::new(s).unwrap()
}
fn frame(msg: ServerMessage) -> Input {
    Input::Frame(encode_server(&msg).into_bytes())
}
fn welcome() -> Input {
    frame(ServerMessage::Welcome {
        peer_id: pid("me"),
        protocol: 1,
        server: "coord".into(),
        heartbeat_interval_ms: 1_000,
        idle_timeout_ms: 3_000,
    })
}
fn session_joined() -> Input {
    frame(ServerMessage::SessionJoined {
        session_id: SessionId::new("s1").unwrap(),
        zone: zone("prontera"),
        peers: vec![pid("a")],
        host: Some(pid("a")),
        ice_servers: vec![],
        key: SessionKey { epoch: 1, key: [7; 32] },
        resumed: false,
    })
}

fn config() -> Config {
    Config {
        coordinator_urls: vec!["ws://primary".into(), "ws://backup".into()],
        p2p_enabled_zones: [zone("prontera"), zone("geffen")].into_iter().collect(),
        max_retries: 1,
        ..Config::default()
    }
}

/// A client driven into `target`, with its outputs so far drained.
fn client_in(target: Lifecycle) -> (Client, Instant) {
    let now = Instant::from_millis(0);
    let mut c = Client::new(config(), Rng::from_seed(1), now);
    c.drain_outputs();
    let steps: Vec<Input> = match target {
        Lifecycle::Connecting => vec![],
        Lifecycle::ExpectWelcome => vec![Input::TransportOpened],
        Lifecycle::ExpectZone => {
            vec![Input::ZoneChanged(zone("izlude")), Input::TransportOpened, welcome()]
        }
        Lifecycle::ExpectSessionJoined => {
            vec![Input::ZoneChanged(zone("prontera")), Input::TransportOpened, welcome()]
        }
        Lifecycle::Joined => vec![
            Input::ZoneChanged(zone("prontera")),
            Input::TransportOpened,
            welcome(),
            session_joined(),
        ],
        Lifecycle::BackingOff => vec![
            Input::ZoneChanged(zone("prontera")),
            Input::TransportClosed(CloseReason::ConnectFailed { detail: "refused".into() }),
        ],
        Lifecycle::FallenBack => vec![
            Input::ZoneChanged(zone("prontera")),
            Input::TransportClosed(CloseReason::ConnectFailed { detail: "refused".into() }),
            Input::TransportClosed(CloseReason::ConnectFailed { detail: "refused".into() }),
        ],
        Lifecycle::Closed => vec![Input::Shutdown],
    };
    let mut now = now;
    for input in steps {
        c.handle_input(now, input);
        c.drain_outputs();
        // The backing-off states need their retry timer to open the next attempt.
        if c.lifecycle() == Lifecycle::BackingOff && target == Lifecycle::FallenBack {
            now = c.poll_timeout().unwrap();
            c.handle_timeout(now);
            c.drain_outputs();
        }
    }
    assert_eq!(c.lifecycle(), target, "could not reach {target:?}");
    (c, now)
}

enum Stimulus {
    Input(&'static str, fn() -> Input),
    Timeout,
}

fn stimuli() -> Vec<Stimulus> {
    vec![
        Stimulus::Input("transport-opened", || Input::TransportOpened),
        Stimulus::Input("frame welcome", welcome),
        Stimulus::Input("frame session-joined", session_joined),
        Stimulus::Input("frame peer-joined b", || {
            frame(ServerMessage::PeerJoined { peer_id: pid("b") })
        }),
        Stimulus::Input("frame offer from b", || {
            frame(ServerMessage::Offer { from: pid("b"), sdp: "v=0".into() })
        }),
        Stimulus::Input("frame error zone-full", || {
            frame(ServerMessage::error(ErrorCode::ZoneFull, "full"))
        }),
        Stimulus::Input("frame garbage", || Input::Frame(b"{\"type\":7}".to_vec())),
        Stimulus::Input("transport-closed lost", || {
            Input::TransportClosed(CloseReason::Lost { detail: "reset".into() })
        }),
        Stimulus::Input("zone-changed geffen (p2p)", || Input::ZoneChanged(zone("geffen"))),
        Stimulus::Input("zone-changed izlude (no p2p)", || Input::ZoneChanged(zone("izlude"))),
        Stimulus::Input("peer-link a connected", || Input::PeerLinkEvent {
            peer: pid("a"),
            event: LinkEvent::Connected,
        }),
        Stimulus::Input("token-refreshed", || Input::TokenRefreshed("fresh".into())),
        Stimulus::Input("capabilities-measured 8 cores", || {
            Input::CapabilitiesMeasured(Some(Capabilities {
                cpu_cores: 8,
                cpu_mhz: 3600,
                memory_mb: 16_384,
                bandwidth_mbps: 0,
                latency_ms: 20,
            }))
        }),
        Stimulus::Input("shutdown", || Input::Shutdown),
        Stimulus::Timeout,
    ]
}

fn render(o: &Output) -> String {
    match o {
        Output::SendFrame { frame } => format!("send-frame {frame}"),
        other => serde_json::to_string(other).unwrap(),
    }
}

#[test]
fn state_by_input_table_matches_snapshot() {
    let states = [
        Lifecycle::Connecting,
        Lifecycle::ExpectWelcome,
        Lifecycle::ExpectZone,
        Lifecycle::ExpectSessionJoined,
        Lifecycle::Joined,
        Lifecycle::BackingOff,
        Lifecycle::FallenBack,
        Lifecycle::Closed,
    ];
    let mut table = String::new();
    for state in states {
        writeln!(table, "## {state:?}").unwrap();
        for stimulus in stimuli() {
            let (mut c, now) = client_in(state);
            let label = match &stimulus {
                Stimulus::Input(label, input) => {
                    c.handle_input(now, input());
                    (*label).to_owned()
                }
                Stimulus::Timeout => match c.poll_timeout() {
                    Some(at) => {
                        c.handle_timeout(at);
                        format!("timeout at +{}ms", at.millis_since(now))
                    }
                    None => "timeout (none armed)".to_owned(),
                },
            };
            writeln!(table, "{label} -> {:?}", c.lifecycle()).unwrap();
            for o in c.drain_outputs() {
                writeln!(table, "    {}", render(&o)).unwrap();
            }
        }
        table.push('\n');
    }
    insta::assert_snapshot!(table);
}
