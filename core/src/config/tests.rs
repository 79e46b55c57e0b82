use super::*;
use crate::client::ZoneFilter;

fn env(name: &str) -> Option<String> {
    match name {
        "JWT_SECRET" => Some("s3cret-shared-with-rathena".to_owned()),
        "TURN_USERNAME" => Some("turnuser".to_owned()),
        "TURN_PASSWORD" => Some("turnpass".to_owned()),
        "PORT" => Some("9001".to_owned()),
        _ => None,
    }
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn yaml(text: &str) -> Result<CoordinatorSettings, ConfigError> {
    CoordinatorSettings::from_yaml(text, &env)
}

/// Asserts that `text` fails with an error about `key` and returns the message.
fn yaml_err(text: &str, key: &str) -> String {
    let err = yaml(text).expect_err(text);
    assert_eq!(err.key(), Some(key), "{err}");
    let msg = err.to_string();
    assert!(msg.starts_with(key), "{msg}");
    msg
}

mod coordinator_yaml {
    use super::*;

    #[test]
    fn guide_integrated_config_parses_with_env_substitution() {
        let s = yaml(include_str!("fixtures/coordinator_integrated.yaml")).unwrap();
        assert!(s.enabled);
        assert_eq!(s.port, 8001);
        assert_eq!(s.host, "127.0.0.1");
        assert_eq!(s.websocket_path, "/api/v1/signaling/ws");
        assert_eq!((s.max_sessions_per_zone, s.max_players_per_session), (10, 50));
        assert_eq!(s.session_timeout_s, 300);
        assert_eq!(s.max_connections, 50_000);
        assert_eq!(s.stun_servers, vec!["stun:stun.l.google.com:19302".to_owned()]);
        assert!(s.turn_servers.is_empty());
        assert!(s.require_authentication);
        assert_eq!(s.jwt_secret.as_ref().map(Secret::expose), Some("s3cret-shared-with-rathena"));
        let redis = s.redis.unwrap();
        assert_eq!(
            redis.endpoint,
            RedisEndpoint::Parts { host: "localhost".into(), port: 6379, db: 1, password: None }
        );
        assert_eq!(redis.connection_url(), "redis://localhost:6379/1");
        assert_eq!(redis.key_prefix, "ro-p2p:");
    }

    #[test]
    fn guide_development_config_parses_without_secret() {
        let s = yaml(include_str!("fixtures/coordinator_development.yaml")).unwrap();
        assert!(!s.require_authentication);
        assert_eq!(s.jwt_secret, None);
        assert_eq!(s.logging.level, LogLevel::Debug);
        assert_eq!(s.redis, None);
    }

    #[test]
    fn guide_production_config_parses_with_tls_and_turn() {
        let s = yaml(include_str!("fixtures/coordinator_production.yaml")).unwrap();
        assert_eq!(s.max_sessions_per_zone, 20);
        assert_eq!(
            s.turn_servers,
            vec![TurnServer {
                url: "turn:your-turn-server.com:3478".into(),
                username: Some("turnuser".into()),
                credential: Some(Secret::new("turnpass")),
            }]
        );
        assert_eq!(
            s.tls,
            Some(TlsFiles {
                cert_path: "/etc/ssl/certs/your-server.crt".into(),
                key_path: "/etc/ssl/private/your-server.key".into(),
            })
        );
        assert_eq!(s.logging.level, LogLevel::Info);
        assert_eq!(s.logging.file.as_deref(), Some("/var/log/rathena/coordinator.log"));
        let ice = s.static_ice_servers();
        assert_eq!(ice.len(), 2);
        assert_eq!(ice[1].credential.as_deref(), Some("turnpass"));
    }

    #[test]
    fn guide_scenario_fragments_without_jwt_secret_are_rejected() {
        // The guide's deployment scenarios omit require_authentication, which defaults to true
        // in a file, and give no secret: a coordinator must not start open by accident.
        yaml_err(include_str!("fixtures/coordinator_small_server.yaml"), "coordinator.jwt_secret");
        yaml_err(include_str!("fixtures/coordinator_medium_server.yaml"), "coordinator.jwt_secret");
        // The large one's TURN servers have neither static nor time-limited credentials.
        let large = include_str!("fixtures/coordinator_large_server.yaml");
        yaml_err(large, "coordinator.turn_servers[0].credential");
        let large = large.replace("enabled: true", "enabled: true\n  turn_shared_secret: t");
        yaml_err(&large, "coordinator.jwt_secret");
        let large =
            large.replace("turn_shared_secret: t", "turn_shared_secret: t\n  jwt_secret: x");
        let s = yaml(&large).unwrap();
        assert!(s.dedicated_server);
        assert_eq!(s.turn_servers.len(), 2);
        assert_eq!(s.turn_credential_ttl_s, 86_400);
    }

    #[test]
    fn empty_file_gets_file_defaults_which_require_a_secret() {
        yaml_err("", "coordinator.jwt_secret");
        let s = yaml("coordinator:\n  jwt_secret: abc\n").unwrap();
        let d = CoordinatorSettings::default();
        assert_eq!(
            s,
            CoordinatorSettings {
                require_authentication: true,
                jwt_secret: Some(Secret::new("abc")),
                auth_mode: crate::config::AuthMode::Jwt,
                ..d
            }
        );
    }

    #[test]
    fn embedded_default_is_loopback_without_authentication() {
        let d = CoordinatorSettings::default();
        assert_eq!((d.host.as_str(), d.port), ("127.0.0.1", 8001));
        assert!(!d.require_authentication);
        assert_eq!(d.redis, None);
        assert_eq!((d.heartbeat_interval_ms, d.idle_timeout_s), (15_000, 45));
        assert_eq!(d.key_rotation_interval_s, 3600);
        assert_eq!(d.tls, None);
    }

    #[test]
    fn all_documented_keys_parse() {
        let s = yaml(
            r#"
coordinator:
  enabled: false
  host: "0.0.0.0"
  port: "${PORT}"
  websocket_path: /ws
  max_sessions_per_zone: 3
  max_players_per_session: 1000
  session_timeout_seconds: 60
  max_connections: 1234
  stun_servers: ["stun:a.example:3478", "stuns:b.example"]
  turn_servers:
    - "turn:c.example:3478"
  turn_shared_secret: tss
  turn_credential_ttl_seconds: 3600
  require_authentication: yes
  jwt_secret: "${JWT_SECRET}"
  dedicated_server: true
  heartbeat_interval_ms: 5000
  idle_timeout_seconds: 20
  key_rotation_interval_seconds: 600
  host_requirements: {min_cpu_cores: 2, min_cpu_mhz: 2000, min_memory_mb: 4096, min_bandwidth_mbps: 10, max_latency_ms: 80}
  rate_limit: {per_second: 10, burst: 30}
  redis: {url: "rediss://:pw@redis.example:6380/2", key_prefix: "world1:"}
security: {ssl_cert: a.pem, ssl_key: b.pem}
logging: {level: Warning, file: c.log, format: JSON}
"#,
        )
        .unwrap();
        assert!(!s.enabled);
        assert_eq!(s.port, 9001);
        assert_eq!(s.stun_servers.len(), 2);
        assert_eq!(s.turn_servers[0].username, None);
        assert_eq!(s.host_requirements.min_cpu_cores, 2);
        assert_eq!(s.rate_limit, RateLimit { per_second: 10, burst: 30, strikes_max: 20 });
        assert_eq!(s.redis.as_ref().unwrap().connection_url(), "rediss://:pw@redis.example:6380/2");
        assert_eq!(s.logging.level, LogLevel::Warn);
        assert_eq!(s.logging.format, LogFormat::Json);
        assert_eq!(s.heartbeat_interval_ms, 5000);
        assert_eq!(s.max_connections, 1234);
    }

    #[test]
    fn every_bad_value_names_its_key() {
        let ok = "  jwt_secret: x\n";
        let cases: &[(&str, &str)] = &[
            ("  max_players_per_session: 0\n", "coordinator.max_players_per_session"),
            ("  max_players_per_session: 1001\n", "coordinator.max_players_per_session"),
            ("  max_sessions_per_zone: -1\n", "coordinator.max_sessions_per_zone"),
            ("  port: 70000\n", "coordinator.port"),
            ("  port: eighty\n", "coordinator.port"),
            ("  port: [1]\n", "coordinator.port"),
            ("  host: \"a b\"\n", "coordinator.host"),
            ("  websocket_path: ws\n", "coordinator.websocket_path"),
            ("  session_timeout_seconds: 0\n", "coordinator.session_timeout_seconds"),
            ("  max_connections: 0\n", "coordinator.max_connections"),
            ("  max_connections: 1000001\n", "coordinator.max_connections"),
            ("  stun_servers: [\"http://x\"]\n", "coordinator.stun_servers[0]"),
            ("  stun_servers: \"stun:x\"\n", "coordinator.stun_servers"),
            (
                "  turn_servers: [{url: \"stun:x\", username: a, credential: b}]\n",
                "coordinator.turn_servers[0].url",
            ),
            ("  turn_servers: [{username: a, credential: b}]\n", "coordinator.turn_servers[0].url"),
            (
                "  turn_servers: [{url: \"turn:x\", username: a}]\n",
                "coordinator.turn_servers[0].credential",
            ),
            (
                "  turn_servers: [{url: \"turn:x\", credential: a}]\n",
                "coordinator.turn_servers[0].username",
            ),
            (
                "  turn_servers: [{url: \"turn:x\", username: a, credential: b, realm: c}]\n",
                "coordinator.turn_servers[0].realm",
            ),
            ("  turn_credential_ttl_seconds: 1\n", "coordinator.turn_credential_ttl_seconds"),
            ("  require_authentication: maybe\n", "coordinator.require_authentication"),
            ("  heartbeat_interval_ms: 50000\n", "coordinator.idle_timeout_seconds"),
            ("  key_rotation_interval_seconds: 0\n", "coordinator.key_rotation_interval_seconds"),
            (
                "  host_requirements: {min_cpu_cores: x}\n",
                "coordinator.host_requirements.min_cpu_cores",
            ),
            ("  host_requirements: {min_ram: 1}\n", "coordinator.host_requirements.min_ram"),
            ("  host_requirements: 5\n", "coordinator.host_requirements"),
            ("  rate_limit: {per_second: 0}\n", "coordinator.rate_limit.per_second"),
            ("  rate_limit: {per_second: 10, burst: 5}\n", "coordinator.rate_limit.burst"),
            ("  redis: {url: \"redis://x\", host: y}\n", "coordinator.redis.host"),
            ("  redis: {url: \"http://x\"}\n", "coordinator.redis.url"),
            ("  redis: {port: 0}\n", "coordinator.redis.port"),
            ("  redis: {hots: x}\n", "coordinator.redis.hots"),
            ("  max_player_per_session: 5\n", "coordinator.max_player_per_session"),
        ];
        for (line, key) in cases {
            let text = format!("coordinator:\n{ok}{line}");
            yaml_err(&text, key);
        }
        let msg = yaml_err(
            "coordinator:\n  jwt_secret: x\n  max_players_per_session: 0\n",
            "coordinator.max_players_per_session",
        );
        assert_eq!(msg, "coordinator.max_players_per_session: must be between 1 and 1000, got 0");
        yaml_err(
            "coordinator:\n  require_authentication: true\n  jwt_secret: \"\"\n",
            "coordinator.jwt_secret",
        );
        yaml_err("coordinator: {jwt_secret: x}\nsecurity: {ssl_cert: a}\n", "security.ssl_key");
        yaml_err("coordinator: {jwt_secret: x}\nsecurity: {ssl_key: a}\n", "security.ssl_cert");
        yaml_err(
            "coordinator: {jwt_secret: x}\nsecurity: {ssl_certificate: a}\n",
            "security.ssl_certificate",
        );
        yaml_err("coordinator: {jwt_secret: x}\nlogging: {level: loud}\n", "logging.level");
        yaml_err("coordinator: {jwt_secret: x}\nlogging: {format: xml}\n", "logging.format");
        yaml_err("coordinator: 5\n", "coordinator");
    }

    #[test]
    fn env_substitution_present_missing_and_escaped() {
        let s = yaml("coordinator:\n  jwt_secret: \"pre-${JWT_SECRET}-$${LITERAL}-$5\"\n").unwrap();
        assert_eq!(s.jwt_secret.unwrap().expose(), "pre-s3cret-shared-with-rathena-${LITERAL}-$5");
        let err = CoordinatorSettings::from_yaml(
            include_str!("fixtures/coordinator_production.yaml"),
            &no_env,
        )
        .unwrap_err();
        assert_eq!(
            err,
            ConfigError::MissingEnvVar {
                key: "coordinator.jwt_secret".into(),
                var: "JWT_SECRET".into()
            }
        );
        assert_eq!(
            err.to_string(),
            "coordinator.jwt_secret: environment variable JWT_SECRET is not set"
        );
        yaml_err("coordinator:\n  jwt_secret: \"${UNSET_ONE}\"\n", "coordinator.jwt_secret");
        yaml_err("coordinator:\n  jwt_secret: x\n  host: \"${HOST\"\n", "coordinator.host");
        yaml_err("coordinator:\n  jwt_secret: x\n  host: \"${1X}\"\n", "coordinator.host");
        let err = yaml("coordinator:\n  jwt_secret: x\n  turn_servers:\n    - {url: \"turn:x\", username: \"${NOPE}\", credential: y}\n")
            .unwrap_err();
        assert_eq!(err.key(), Some("coordinator.turn_servers[0].username"));
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let s = yaml(include_str!("fixtures/coordinator_production.yaml")).unwrap();
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("s3cret"), "{dbg}");
        assert!(!dbg.contains("turnpass"), "{dbg}");
    }

    #[test]
    fn syntax_errors_and_oversized_input_are_typed() {
        assert!(matches!(
            yaml("coordinator: [\n"),
            Err(ConfigError::Syntax { format: "yaml", .. })
        ));
        let deep = format!("x: {}{}", "[".repeat(100), "]".repeat(100));
        assert!(matches!(yaml(&deep), Err(ConfigError::TooDeep { .. })));
        let big = "#".repeat(CONFIG_BYTES_MAX + 1);
        assert!(matches!(yaml(&big), Err(ConfigError::TooLarge { .. })));
    }
}

mod client_json {
    use super::*;

    fn json_err(text: &str, key: &str) {
        let err = ClientSettings::from_json(text).expect_err(text);
        assert_eq!(err.key(), Some(key), "{err}");
        assert!(err.to_string().starts_with(key), "{err}");
    }

    #[test]
    fn guide_development_file_with_comments_parses() {
        let s =
            ClientSettings::from_json(include_str!("fixtures/client_development.json")).unwrap();
        assert_eq!(s.coordinator_urls, vec!["ws://localhost:8001/api/v1/signaling/ws".to_owned()]);
        assert!(s.p2p_enabled);
        assert_eq!(s.max_connections, 10);
        assert_eq!(s.log_level, LogLevel::Debug);
        // What the guide sets that does nothing is named, with the reason, in file order.
        let ignored: Vec<&str> = s.ignored.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(
            ignored,
            [
                "coordinator.rest_api_url",
                "coordinator.timeout_seconds",
                "security.enable_encryption",
                "security.enable_authentication",
                "logging.console_output",
            ]
        );
        assert_eq!(
            s.ignored[2].to_string(),
            "security.enable_encryption: unsupported, ignored: peer frames are always sealed \
             (AES-256-GCM)"
        );
        assert_eq!(s.zones, ZoneFilter::All);
        // Everything the guide does not give keeps its default.
        assert_eq!((s.connection_timeout_ms, s.reconnect_delay_ms, s.max_retries), (5000, 1000, 3));
        assert_eq!(s.compression_threshold_bytes, 1024);
        assert_eq!(s.packet_version, DEFAULT_PACKET_VERSION);
    }

    #[test]
    fn guide_production_file_parses_with_zone_list() {
        let s = ClientSettings::from_json(include_str!("fixtures/client_production.json")).unwrap();
        assert_eq!(
            s.coordinator_urls,
            vec!["wss://your-server.com:8001/api/v1/signaling/ws".to_owned()]
        );
        assert_eq!(s.max_connections, 50);
        assert_eq!(s.log_file.as_deref(), Some("p2p_dll.log"));
        let ignored: Vec<&str> = s.ignored.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(
            ignored,
            ["coordinator.rest_api_url", "coordinator.timeout_seconds", "security.tls_version"]
        );
        let z = |n: &str| crate::wire::Zone::new(n).unwrap();
        assert!(s.zones.allows(&z("prontera")) && s.zones.allows(&z("alberta")));
        assert!(!s.zones.allows(&z("gef_dun00")));
    }

    #[test]
    fn guide_zone_snippet_needs_a_coordinator_unless_p2p_is_off() {
        let zones = include_str!("fixtures/client_zones.json");
        json_err(zones, "coordinator.websocket_url");
        let off = zones.replacen('{', "{\"p2p\": {\"enabled\": false},", 1);
        let s = ClientSettings::from_json(&off).unwrap();
        assert!(!s.p2p_enabled);
        assert!(s.coordinator_urls.is_empty());
    }

    #[test]
    fn additions_parse_and_backups_follow_the_primary() {
        let s = ClientSettings::from_json(
            r#"{
            coordinator: {
                websocket_url: "wss://a.example/ws",
                backup_urls: ["wss://b.example/ws", "wss://a.example/ws", "ws://c.example:8001/ws"],
                connection_timeout_ms: 2000, reconnect_delay_ms: 250, max_retries: 5,
            },
            p2p: { max_latency_ms: 150, compression_threshold: 0, update_interval_ms: 100,
                   packet_version: 20190116, client: "zero", policy: "chat=server",
                   prefer_hosting: false,
                   host_requirements: { min_cpu_cores: 2 } },
            security: { key_rotation_interval_s: 600, tls_version: "TLS1.2", web_auth_token: true },
            zones: { p2p_enabled_zones: [] },
        }"#,
        )
        .unwrap();
        assert_eq!(
            s.coordinator_urls,
            ["wss://a.example/ws", "wss://b.example/ws", "ws://c.example:8001/ws"]
        );
        assert_eq!((s.connection_timeout_ms, s.reconnect_delay_ms, s.max_retries), (2000, 250, 5));
        assert_eq!((s.max_latency_ms, s.compression_threshold_bytes), (150, 0));
        assert_eq!(s.seal_config().compression_threshold_bytes, 0);
        assert_eq!(s.packet_version, 20190116);
        assert_eq!(s.client_family, Some(crate::packet::ClientFamily::Zero));
        assert_eq!(s.version().map(|v| v.to_string()), Ok("20190116-zero".to_owned()));
        assert_eq!(s.routing_policy.as_deref(), Some("chat=server"));
        assert!(!s.prefer_p2p_hosting);
        assert_eq!(s.host_requirements.min_cpu_cores, 2);
        assert_eq!(s.host_requirements.min_memory_mb, 8192);
        assert!(s.present_web_auth_token);
        assert!(!ClientSettings::default().present_web_auth_token);
        let ignored: Vec<&str> = s.ignored.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(ignored, ["p2p.update_interval_ms", "security.key_rotation_interval_s"]);
        assert_eq!(s.zones, ZoneFilter::Only(Default::default()));
        assert!(!s.zones.allows(&crate::wire::Zone::new("prontera").unwrap()));
    }

    #[test]
    fn every_bad_value_names_its_key() {
        let base = r#""websocket_url": "ws://x/ws""#;
        let cases: &[(&str, &str)] = &[
            (r#"{"coordinator": {"websocket_url": "http://x/ws"}}"#, "coordinator.websocket_url"),
            (r#"{"coordinator": {"websocket_url": "ws://"}}"#, "coordinator.websocket_url"),
            (r#"{"coordinator": {BASE, "rest_api_url": "ftp://x"}}"#, "coordinator.rest_api_url"),
            (r#"{"coordinator": {BASE, "timeout_seconds": 0}}"#, "coordinator.timeout_seconds"),
            (r#"{"coordinator": {BASE, "timeout_seconds": 1.5}}"#, "coordinator.timeout_seconds"),
            (r#"{"coordinator": {BASE, "max_retries": -1}}"#, "coordinator.max_retries"),
            (
                r#"{"coordinator": {BASE, "backup_urls": ["ws://y", 5, {}]}}"#,
                "coordinator.backup_urls[2]",
            ),
            (r#"{"coordinator": {BASE, "timeout": 3}}"#, "coordinator.timeout"),
            (r#"{"coordinator": {BASE}, "p2p": {"max_peers": "many"}}"#, "p2p.max_peers"),
            (r#"{"coordinator": {BASE}, "p2p": {"enabled": 2}}"#, "p2p.enabled"),
            (
                r#"{"coordinator": {BASE}, "security": {"web_auth_token": 2}}"#,
                "security.web_auth_token",
            ),
            (r#"{"coordinator": {BASE}, "p2p": {"packet_version": 2021}}"#, "p2p.packet_version"),
            (r#"{"coordinator": {BASE}, "p2p": {"client": "ragexe"}}"#, "p2p.client"),
            // rAthena builds only RagexeRE at this date; and has no keys for this one.
            (
                r#"{"coordinator": {BASE}, "p2p": {"packet_version": 20180620, "client": "main"}}"#,
                "p2p.client",
            ),
            (r#"{"coordinator": {BASE}, "p2p": {"packet_version": 20150105}}"#, "p2p.client"),
            (
                r#"{"coordinator": {BASE}, "p2p": {"host_requirements": {"cores": 1}}}"#,
                "p2p.host_requirements.cores",
            ),
            (
                r#"{"coordinator": {BASE}, "security": {"tls_version": "1.1"}}"#,
                "security.tls_version",
            ),
            (
                r#"{"coordinator": {BASE}, "security": {"enable_encryptoin": true}}"#,
                "security.enable_encryptoin",
            ),
            (r#"{"coordinator": {BASE}, "logging": {"level": "verbose"}}"#, "logging.level"),
            (
                r#"{"coordinator": {BASE}, "zones": {"p2p_enabled_zones": ["prontera", "way_too_long_name"]}}"#,
                "zones.p2p_enabled_zones[1]",
            ),
            (
                r#"{"coordinator": {BASE}, "zones": {"p2p_enabled_zones": "prontera"}}"#,
                "zones.p2p_enabled_zones",
            ),
            (r#"{"coordinator": {BASE}, "zone": {}}"#, "zone"),
        ];
        for (text, key) in cases {
            json_err(&text.replace("BASE", base), key);
        }
        assert!(matches!(
            ClientSettings::from_json("{"),
            Err(ConfigError::Syntax { format: "json5", .. })
        ));
        assert!(matches!(ClientSettings::from_json("[1]"), Err(ConfigError::WrongType { .. })));
    }
}

mod client_ini {
    use super::*;

    fn ini_err(config: &str, resourceinfo: Option<&str>, key: &str) {
        let err = ClientSettings::from_ini(config, resourceinfo).expect_err(config);
        assert_eq!(err.key(), Some(key), "{err}");
        assert!(err.to_string().starts_with(key), "{err}");
    }

    #[test]
    fn guide_config_ini_and_resourceinfo_parse_into_the_same_type() {
        let s = ClientSettings::from_ini(
            include_str!("fixtures/client_config.ini"),
            Some(include_str!("fixtures/client_resourceinfo.ini")),
        )
        .unwrap();
        let expected = ClientSettings {
            coordinator_urls: vec!["ws://localhost:8001/api/signaling/ws".to_owned()],
            ignored: s.ignored.clone(),
            ..ClientSettings::default()
        };
        let ignored: Vec<&str> = s.ignored.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(ignored, ["P2P.KeyRotationInterval", "P2P.UpdateInterval"]);
        assert!(s.ignored[0].reason.contains("key_rotation_interval_s"), "{:?}", s.ignored);
        // Every value the guide writes equals our default, and the one URL is not doubled.
        assert_eq!(s, expected);
    }

    #[test]
    fn a_byte_order_mark_is_skipped_and_a_missing_p2p_section_is_named() {
        let url = "CoordinatorURL=ws://h.example/ws\n";
        let s = ClientSettings::from_ini(&format!("\u{feff}[P2P]\n{url}"), None).unwrap();
        assert_eq!(s.coordinator_urls, ["ws://h.example/ws"]);
        let s = ClientSettings::from_json("\u{feff}{coordinator: {websocket_url: \"ws://h/ws\"}}")
            .unwrap();
        assert_eq!(s.coordinator_urls, ["ws://h/ws"]);
        let err = ClientSettings::from_ini("[Graphics]\nWidth=800\n", None).unwrap_err();
        assert_eq!(err, ConfigError::Missing { key: "[P2P]".to_owned() });
        assert_eq!(err.to_string(), "[P2P]: missing");
        // A resourceinfo.ini without [P2P_HOSTS] adds no backups.
        let s = ClientSettings::from_ini(&format!("[P2P]\n{url}"), Some("[Other]\nx=1\n")).unwrap();
        assert_eq!(s.coordinator_urls.len(), 1);
    }

    #[test]
    fn a_client_volunteers_as_host_only_when_it_prefers_to_and_meets_its_minimums() {
        use crate::wire::Capabilities;
        let strong = Capabilities {
            cpu_cores: 8,
            cpu_mhz: 3500,
            memory_mb: 16_384,
            bandwidth_mbps: 100,
            latency_ms: 20,
        };
        let s = ClientSettings::from_ini("[P2P]\nCoordinatorURL=ws://h/ws\n", None).unwrap();
        assert_eq!(s.volunteer(strong), Some(strong));
        let weak = Capabilities { cpu_cores: 2, ..strong };
        assert_eq!(s.volunteer(weak), None);
        let slow = Capabilities { latency_ms: 101, ..strong };
        assert_eq!(s.volunteer(slow), None);
        let lenient =
            ClientSettings::from_ini("[P2P]\nCoordinatorURL=ws://h/ws\nMinCPUCores=2\n", None)
                .unwrap();
        assert_eq!(lenient.volunteer(weak), Some(weak));
        let shy =
            ClientSettings::from_ini("[P2P]\nCoordinatorURL=ws://h/ws\nPreferP2PHosting=0\n", None)
                .unwrap();
        assert_eq!(shy.volunteer(strong), None);
    }

    #[test]
    fn keys_are_case_insensitive_and_other_sections_are_ignored() {
        let s = ClientSettings::from_ini(
            "[Graphics]\nWidth=800\n[p2p]\nenablep2p=0\nMAXCONNECTIONS=7\nCompressionThreshold = 2048 ; bigger\nMaxLatencyMS=80\nMinCPUCores=2\nwebauthtoken=1\n",
            None,
        )
        .unwrap();
        assert!(!s.p2p_enabled);
        assert!(s.present_web_auth_token);
        assert_eq!(s.max_connections, 7);
        assert_eq!(s.compression_threshold_bytes, 2048);
        assert_eq!(s.max_latency_ms, 80);
        assert_eq!(s.host_requirements.max_latency_ms, 80);
        assert_eq!(s.host_requirements.min_cpu_cores, 2);
    }

    #[test]
    fn resourceinfo_hosts_are_backups_in_numeric_order() {
        let s = ClientSettings::from_ini(
            "[P2P]\nCoordinatorURL=wss://main.example/ws\n",
            Some("[P2P_HOSTS]\n10=wss://c.example/ws\n1=wss://b.example/ws\n0=wss://main.example/ws\n"),
        )
        .unwrap();
        assert_eq!(
            s.coordinator_urls,
            ["wss://main.example/ws", "wss://b.example/ws", "wss://c.example/ws"]
        );
        let s = ClientSettings::from_ini("[P2P]\n", Some("[P2P_HOSTS]\n0=ws://only.example/ws\n"))
            .unwrap();
        assert_eq!(s.coordinator_urls, ["ws://only.example/ws"]);
    }

    #[test]
    fn coordinator_port_fills_a_url_without_one_and_must_agree_otherwise() {
        let s = ClientSettings::from_ini(
            "[P2P]\nCoordinatorURL=ws://host.example/ws\nCoordinatorPort=9000\n",
            None,
        )
        .unwrap();
        assert_eq!(s.coordinator_urls, ["ws://host.example:9000/ws"]);
        ini_err(
            "[P2P]\nCoordinatorURL=ws://h:8001/ws\nCoordinatorPort=9000\n",
            None,
            "P2P.CoordinatorPort",
        );
    }

    #[test]
    fn every_bad_value_names_its_key() {
        let url = "CoordinatorURL=ws://h/ws\n";
        let cases: &[(&str, &str)] = &[
            ("EnableP2P=maybe", "P2P.EnableP2P"),
            ("MaxRetries=-3", "P2P.MaxRetries"),
            ("ConnectionTimeout=5s", "P2P.ConnectionTimeout"),
            ("ConnectionTimeout=0", "P2P.ConnectionTimeout"),
            ("ReconnectDelay=99999999999999999999999", "P2P.ReconnectDelay"),
            ("MaxConnections=100000", "P2P.MaxConnections"),
            ("CompressionThreshold=abc", "P2P.CompressionThreshold"),
            ("KeyRotationInterval=0", "P2P.KeyRotationInterval"),
            ("CoordinatorPort=0", "P2P.CoordinatorPort"),
            ("MinCPUFrequency=fast", "P2P.MinCPUFrequency"),
            ("MaxLatencyMS=0", "P2P.MaxLatencyMS"),
            ("EnableP2p=1\nENABLEP2P=0", "P2P.ENABLEP2P"),
            ("EnableP2PX=1", "P2P.EnableP2PX"),
        ];
        for (line, key) in cases {
            ini_err(&format!("[P2P]\n{url}{line}\n"), None, key);
        }
        ini_err("[P2P]\nCoordinatorURL=http://h/ws\n", None, "P2P.CoordinatorURL");
        ini_err("[P2P]\nEnableP2P=1\n", None, "P2P.CoordinatorURL");
        ini_err("[P2P]\n", Some("[P2P_HOSTS]\nprimary=ws://h/ws\n"), "P2P_HOSTS.primary");
        ini_err("[P2P]\n", Some("[P2P_HOSTS]\n0=tcp://h\n"), "P2P_HOSTS.0");
    }
}

mod robustness {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, rng_seed: proptest::test_runner::RngSeed::Fixed(0xC0F1), ..ProptestConfig::default() })]

        /// Any text gives settings or a typed error, never a panic (invariant 5).
        #[test]
        fn arbitrary_text_never_panics(
            text in prop_oneof![
                any::<String>(),
                "[a-z_:\\[\\]{}\"', \\n0-9$-]{0,200}",
                "coordinator:\n  [a-z_]{1,30}: [a-z0-9\\[\\]{}$\"]{0,20}\n",
                "\\[P2P\\]\n[A-Za-z]{1,20}=[a-z0-9 ;]{0,10}\n",
            ],
        ) {
            let _ = CoordinatorSettings::from_yaml(&text, &env);
            let _ = ClientSettings::from_json(&text);
            let _ = ClientSettings::from_ini(&text, Some(&text));
        }
    }

    #[test]
    fn deeply_nested_input_is_refused_before_parsing() {
        let deep = "[".repeat(100_000);
        assert!(matches!(ClientSettings::from_json(&deep), Err(ConfigError::TooDeep { .. })));
        assert!(matches!(yaml(&deep), Err(ConfigError::TooDeep { .. })));
        let deep_yaml = (0..1400).map(|i| format!("{}a:\n", " ".repeat(i))).collect::<String>();
        assert!(yaml(&deep_yaml).is_err());
        let dashes = format!("{}x\n", "- ".repeat(200_000));
        assert!(yaml(&dashes).is_err());
    }
}

#[test]
fn trusted_proxies_are_ip_addresses() {
    let base = "coordinator:\n  require_authentication: false\n  trusted_proxies: ";
    let s = yaml(&format!("{base}[\"10.0.0.1\", \"::1\", \"10.0.0.1\"]\n")).unwrap();
    assert_eq!(
        s.trusted_proxies,
        ["10.0.0.1".parse::<core::net::IpAddr>().unwrap(), "::1".parse().unwrap()]
    );
    let err = yaml(&format!("{base}[\"proxy.example\"]\n")).unwrap_err();
    assert_eq!(err.key(), Some("coordinator.trusted_proxies[0]"), "{err}");
}

#[test]
fn sections_of_other_services_sharing_the_file_are_left_alone() {
    // The guide's integrated setup: the AI service keeps its own blocks (and its own
    // variables, unset in the coordinator's environment) in the same config.yaml.
    let s = CoordinatorSettings::from_yaml(
        "ai_service:\n  api_key: \"${OPENAI_API_KEY}\"\n  model: x\n\
         coordinator:\n  port: 8002\n  require_authentication: false\n",
        &no_env,
    )
    .unwrap();
    assert_eq!(s.port, 8002);
}

#[test]
fn a_file_without_a_coordinator_section_is_refused() {
    let err = CoordinatorSettings::from_yaml("cordinator:\n  port: 8002\n", &no_env).unwrap_err();
    assert_eq!(err, ConfigError::Missing { key: "coordinator".into() });
}

#[test]
fn client_settings_map_onto_the_client_state_machine_config() {
    let ini = "[P2P]\nEnableP2P=1\nReconnectDelay=1500\nMaxRetries=4\nMaxConnections=7\n\
               CoordinatorURL=ws://a:8001/api/signaling/ws\n";
    let settings = ClientSettings::from_ini(ini, None).unwrap();
    let c = settings.to_client_config();
    assert_eq!(c.reconnect_delay_ms, 1500);
    assert_eq!(c.max_retries, 4);
    assert_eq!(c.max_connections, 7);
    assert_eq!(c.coordinator_urls, settings.coordinator_urls);
    // An INI file has no zone list: every zone.
    let prontera = crate::wire::Zone::new("prontera").unwrap();
    assert!(c.zone_enabled(&prontera));

    let json = r#"{ "coordinator": { "websocket_url": "ws://a:8001/api/v1/signaling/ws" },
                   "zones": { "p2p_enabled_zones": ["geffen"] } }"#;
    let c = ClientSettings::from_json(json).unwrap().to_client_config();
    assert!(!c.zone_enabled(&prontera));
    assert!(c.zone_enabled(&crate::wire::Zone::new("geffen").unwrap()));
}

mod rathena_auth {
    use crate::config::{AuthMode, CoordinatorSettings};

    fn parse(yaml: &str) -> Result<CoordinatorSettings, String> {
        let env = |k: &str| (k == "DB_PASSWORD").then(|| "p@ss:w0rd".to_owned());
        CoordinatorSettings::from_yaml(yaml, &env).map_err(|e| e.to_string())
    }

    #[test]
    fn rathena_mode_needs_a_database_url_and_no_jwt_secret() {
        let s = parse(
            "coordinator:\n  auth:\n    mode: rathena\n    rathena:\n      database_url: \"mysql://p2p:${DB_PASSWORD}@db.example:3306/ragnarok\"\n      recheck_interval_seconds: 5\n      table: acct\n      columns: { sex: gender }\n",
        )
        .unwrap();
        assert_eq!(s.auth_mode, AuthMode::Rathena);
        assert!(s.require_authentication);
        let r = s.rathena_auth.unwrap();
        assert_eq!(r.database_url.expose(), "mysql://p2p:p@ss:w0rd@db.example:3306/ragnarok");
        assert_eq!(r.redacted_url(), "mysql://p2p:***@db.example:3306/ragnarok");
        assert_eq!(r.recheck_interval_s, 5);
        assert_eq!((r.schema.table.as_str(), r.schema.sex.as_str()), ("acct", "gender"));
        assert_eq!(r.schema.web_auth_token, "web_auth_token");
        assert!(!format!("{r:?}").contains("p@ss"));
    }

    #[test]
    fn bad_rathena_settings_name_their_key_and_hide_the_password() {
        let cases = [
            ("coordinator:\n  auth:\n    mode: rathena\n", "database_url"),
            (
                "coordinator:\n  auth:\n    mode: rathena\n    rathena:\n      database_url: \"postgres://u:secretpw@h/db\"\n",
                "database_url",
            ),
            (
                "coordinator:\n  auth:\n    mode: rathena\n    rathena:\n      database_url: \"mysql://u:secretpw@h/db\"\n      table: \"login`; DROP TABLE login; --\"\n",
                "table",
            ),
            (
                "coordinator:\n  auth:\n    mode: rathena\n    rathena:\n      database_url: \"mysql://u:secretpw@h/db\"\n      columns: { account_id: \"1x\" }\n",
                "columns.account_id",
            ),
            (
                "coordinator:\n  auth:\n    mode: rathena\n    rathena:\n      database_url: \"mysql://u:secretpw@h/db\"\n      recheck_interval_seconds: 0\n",
                "recheck_interval_seconds",
            ),
            ("coordinator:\n  require_authentication: false\n  auth:\n    mode: rathena\n", "mode"),
            ("coordinator:\n  auth:\n    mode: ldap\n", "mode"),
            ("coordinator:\n  auth:\n    mode: jwt\n", "jwt_secret"),
            (
                "coordinator:\n  auth:\n    mode: off\n    rathena:\n      database_url: \"mysql://u:secretpw@h/db\"\n",
                "rathena",
            ),
        ];
        for (yaml, key) in cases {
            let err = parse(yaml).unwrap_err();
            assert!(err.contains(key), "{yaml}: {err}");
            assert!(!err.contains("secretpw"), "{err}");
        }
    }

    #[test]
    fn without_an_auth_block_require_authentication_picks_jwt_or_off() {
        let s = parse("coordinator:\n  jwt_secret: x\n").unwrap();
        assert_eq!(s.auth_mode, AuthMode::Jwt);
        let s = parse("coordinator:\n  require_authentication: false\n").unwrap();
        assert_eq!(s.auth_mode, AuthMode::Off);
        let s = parse("coordinator:\n  auth: { mode: off }\n").unwrap();
        assert!(!s.require_authentication);
    }
}
