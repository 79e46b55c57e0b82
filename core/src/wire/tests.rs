use super::*;

fn peer(s: &str) -> PeerId {
    PeerId::new(s).unwrap()
}

fn key(epoch: u32) -> SessionKey {
    SessionKey { epoch, key: core::array::from_fn(|i| i as u8) }
}

fn sample_client_messages() -> Vec<ClientMessage> {
    vec![
        ClientMessage::Auth { token: "eyJhbGciOiJIUzI1NiJ9.e30.sig".into() },
        ClientMessage::Join {
            peer_id: Some(peer("2000001")),
            session_id: Some(SessionId::new("prontera-1").unwrap()),
            zone: Zone::new("prontera").unwrap(),
            capabilities: Some(Capabilities {
                cpu_cores: 8,
                cpu_mhz: 3600,
                memory_mb: 16384,
                bandwidth_mbps: 300,
                latency_ms: 20,
            }),
        },
        ClientMessage::Join {
            peer_id: None,
            session_id: None,
            zone: Zone::new("geffen").unwrap(),
            capabilities: None,
        },
        ClientMessage::Leave,
        ClientMessage::Offer {
            to: peer("2000002"),
            sdp: "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\n".into(),
        },
        ClientMessage::Answer { to: peer("2000001"), sdp: "v=0\r\n".into() },
        ClientMessage::IceCandidate {
            to: peer("2000002"),
            candidate: IceCandidate {
                candidate: "candidate:1 1 UDP 2122252543 192.0.2.1 50000 typ host".into(),
                sdp_mid: Some("0".into()),
                sdp_mline_index: Some(0),
            },
        },
        ClientMessage::UpdateCapabilities { capabilities: Capabilities::default() },
        ClientMessage::Ping { nonce: Some(7) },
    ]
}

fn sample_server_messages() -> Vec<ServerMessage> {
    vec![
        ServerMessage::Welcome {
            peer_id: peer("2000001"),
            protocol: PROTOCOL_VERSION,
            server: "ro-p2p-coordinator/0.1.0".into(),
            heartbeat_interval_ms: 15_000,
            idle_timeout_ms: 45_000,
        },
        ServerMessage::SessionJoined {
            session_id: SessionId::new("prontera-1").unwrap(),
            zone: Zone::new("prontera").unwrap(),
            peers: vec![peer("2000002"), peer("2000003")],
            host: Some(peer("2000002")),
            ice_servers: vec![
                IceServer {
                    urls: vec!["stun:stun.l.google.com:19302".into()],
                    username: None,
                    credential: None,
                },
                IceServer {
                    urls: vec!["turn:turn.example.com:3478".into()],
                    username: Some("1767225600:2000001".into()),
                    credential: Some("c2VjcmV0".into()),
                },
            ],
            key: key(1),
            resumed: false,
        },
        ServerMessage::SessionLeft { session_id: SessionId::new("prontera-1").unwrap() },
        ServerMessage::PeerJoined { peer_id: peer("2000004") },
        ServerMessage::PeerLeft { peer_id: peer("2000003"), reason: PeerLeftReason::Timeout },
        ServerMessage::HostChanged {
            session_id: SessionId::new("prontera-1").unwrap(),
            host: Some(peer("2000001")),
        },
        ServerMessage::KeyRotated {
            session_id: SessionId::new("prontera-1").unwrap(),
            key: key(2),
        },
        ServerMessage::Offer { from: peer("2000001"), sdp: "v=0\r\n".into() },
        ServerMessage::Answer { from: peer("2000002"), sdp: "v=0\r\n".into() },
        ServerMessage::IceCandidate {
            from: peer("2000001"),
            candidate: IceCandidate::from_line("candidate:1 1 UDP 1 192.0.2.1 50000 typ host"),
        },
        ServerMessage::error(ErrorCode::NotInSession, "2000009 is not in your session"),
        ServerMessage::Pong { nonce: Some(7) },
    ]
}

#[test]
fn every_client_type_is_sampled_and_listed() {
    let sampled: std::collections::BTreeSet<_> =
        sample_client_messages().iter().map(ClientMessage::type_name).collect();
    let listed: std::collections::BTreeSet<_> = ClientMessage::TYPES.iter().copied().collect();
    assert_eq!(sampled, listed);
    for msg in sample_client_messages() {
        let json: serde_json::Value = serde_json::from_str(&encode_client(&msg)).unwrap();
        assert_eq!(json["type"], msg.type_name());
    }
}

#[test]
fn every_server_type_is_sampled_and_listed() {
    let sampled: std::collections::BTreeSet<_> =
        sample_server_messages().iter().map(ServerMessage::type_name).collect();
    let listed: std::collections::BTreeSet<_> = ServerMessage::TYPES.iter().copied().collect();
    assert_eq!(sampled, listed);
    for msg in sample_server_messages() {
        let json: serde_json::Value = serde_json::from_str(&encode_server(&msg)).unwrap();
        assert_eq!(json["type"], msg.type_name());
    }
}

#[test]
fn client_messages_round_trip_and_match_snapshots() {
    let mut lines = Vec::new();
    for msg in sample_client_messages() {
        let text = encode_client(&msg);
        assert_eq!(decode_client(text.as_bytes()), Ok(msg));
        lines.push(text);
    }
    insta::assert_snapshot!("client_messages", lines.join("\n"));
}

#[test]
fn server_messages_round_trip_and_match_snapshots() {
    let mut lines = Vec::new();
    for msg in sample_server_messages() {
        let text = encode_server(&msg);
        assert_eq!(decode_server(text.as_bytes()), Ok(msg));
        lines.push(text);
    }
    insta::assert_snapshot!("server_messages", lines.join("\n"));
}

#[test]
fn the_guides_join_shape_decodes() {
    let m = decode_client(br#"{"type":"join","peer_id":"p1","session_id":"s1","zone":"prontera"}"#)
        .unwrap();
    assert!(matches!(m, ClientMessage::Join { zone, .. } if zone.as_str() == "prontera"));
}

#[test]
fn candidate_may_be_a_bare_line() {
    let m =
        decode_client(br#"{"type":"ice-candidate","to":"p2","candidate":"candidate:1 1 UDP 1 h"}"#)
            .unwrap();
    let ClientMessage::IceCandidate { candidate, .. } = m else { panic!("wrong type") };
    assert_eq!(candidate, IceCandidate::from_line("candidate:1 1 UDP 1 h"));
}

#[test]
fn unknown_fields_are_ignored() {
    let m = decode_client(br#"{"type":"ping","nonce":1,"future":"x"}"#).unwrap();
    assert_eq!(m, ClientMessage::Ping { nonce: Some(1) });
}

fn code_of(frame: &[u8]) -> ErrorCode {
    decode_client(frame).unwrap_err().code()
}

#[test]
fn malformed_json_is_rejected() {
    assert_eq!(code_of(b"{not json"), ErrorCode::MalformedJson);
    assert_eq!(code_of(b"[1,2,3]"), ErrorCode::MalformedJson);
    assert_eq!(code_of(b"\xff\xfe"), ErrorCode::MalformedJson);
    assert_eq!(code_of(b""), ErrorCode::MalformedJson);
}

#[test]
fn unknown_type_is_rejected() {
    assert_eq!(
        decode_client(br#"{"type":"welcome","peer_id":"x"}"#),
        Err(WireError::UnknownType { ty: "welcome".into() })
    );
    assert_eq!(code_of(br#"{"type":"teleport"}"#), ErrorCode::UnknownType);
}

#[test]
fn missing_fields_are_named() {
    assert_eq!(
        decode_client(br#"{"zone":"prontera"}"#),
        Err(WireError::MissingField { field: "type".into() })
    );
    assert_eq!(
        decode_client(br#"{"type":"join"}"#),
        Err(WireError::MissingField { field: "zone".into() })
    );
    assert_eq!(
        decode_client(br#"{"type":"offer","to":"b"}"#),
        Err(WireError::MissingField { field: "sdp".into() })
    );
}

#[test]
fn oversized_frames_and_fields_are_too_large() {
    let big = vec![b' '; limits::FRAME_BYTES_MAX + 1];
    assert!(matches!(decode_client(&big), Err(WireError::TooLarge { what: "frame", .. })));
    let sdp = "x".repeat(limits::SDP_BYTES_MAX + 1);
    let frame = format!(r#"{{"type":"offer","to":"b","sdp":"{sdp}"}}"#);
    assert!(matches!(
        decode_client(frame.as_bytes()),
        Err(WireError::TooLarge { what: "sdp", .. })
    ));
    let cand = "c".repeat(limits::CANDIDATE_BYTES_MAX + 1);
    let frame =
        format!(r#"{{"type":"ice-candidate","to":"b","candidate":{{"candidate":"{cand}"}}}}"#);
    assert!(matches!(
        decode_client(frame.as_bytes()),
        Err(WireError::TooLarge { what: "candidate", .. })
    ));
    assert!(matches!(
        decode_client(br#"{"type":"join","zone":"abcdefghijkl"}"#),
        Err(WireError::TooLarge { what: "zone", len: 12, max: 11 })
    ));
    let id = "p".repeat(65);
    let frame = format!(r#"{{"type":"offer","to":"{id}","sdp":""}}"#);
    assert!(matches!(
        decode_client(frame.as_bytes()),
        Err(WireError::TooLarge { what: "peer id", .. })
    ));
}

#[test]
fn bad_values_are_rejected() {
    assert_eq!(code_of(br#"{"type":7}"#), ErrorCode::BadValue);
    assert_eq!(code_of(br#"{"type":"join","zone":"pron tera"}"#), ErrorCode::BadValue);
    assert_eq!(code_of(br#"{"type":"join","zone":""}"#), ErrorCode::BadValue);
    assert_eq!(code_of(br#"{"type":"join","zone":42}"#), ErrorCode::BadValue);
    assert_eq!(code_of(br#"{"type":"offer","to":"a b","sdp":""}"#), ErrorCode::BadValue);
    assert_eq!(
        code_of(br#"{"type":"join","zone":"x","capabilities":{"cpu_cores":-1}}"#),
        ErrorCode::BadValue
    );
    assert_eq!(code_of(br#"{"type":"ping","nonce":"soon"}"#), ErrorCode::BadValue);
}

#[test]
fn unknown_error_codes_from_newer_servers_decode_as_other() {
    let m = decode_server(br#"{"type":"error","code":"brand-new","message":"?"}"#).unwrap();
    assert!(matches!(m, ServerMessage::Error { code: ErrorCode::Other, .. }));
}

#[test]
fn session_key_debug_hides_the_key() {
    let text = format!("{:?}", key(3));
    assert!(text.contains("epoch: 3"));
    assert!(!text.contains("key:"));
}

#[test]
fn error_messages_are_truncated_to_their_limit() {
    let ServerMessage::Error { message, .. } =
        ServerMessage::error(ErrorCode::Internal, "é".repeat(1000))
    else {
        unreachable!()
    };
    assert!(message.len() <= limits::ERROR_MESSAGE_BYTES_MAX);
}

#[test]
fn error_codes_serialise_as_their_wire_names() {
    for code in ErrorCode::ALL {
        assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
    }
}

proptest::proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
        crate::fuzz::wire_decode(&data);
    }

    #[test]
    fn arbitrary_json_objects_never_panic(
        ty in proptest::sample::select(ClientMessage::TYPES.to_vec()),
        field in "[a-z_]{1,12}",
        value in proptest::prelude::any::<String>(),
    ) {
        let frame = serde_json::json!({ "type": ty, field: value, "to": "p", "zone": "z" });
        crate::fuzz::wire_decode(frame.to_string().as_bytes());
    }
}
