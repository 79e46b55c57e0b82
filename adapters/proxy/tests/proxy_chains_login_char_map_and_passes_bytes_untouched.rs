//! The proxy against scripted login, char and map servers on loopback (no rAthena, no
//! coordinator): it rewrites the char-server list and the map server to its doors, the game's
//! bytes reach each server exactly as sent, the servers' bytes reach the game exactly as sent
//! (but for the rewritten addresses), and garbage from either side passes untouched.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ro_p2p_core::config::ClientSettings;
use ro_p2p_core::gate::{self, CharSelectReply, LoginReply};
use ro_p2p_proxy::{Proxy, ProxyConfig};
use ro_p2p_webrtc::LinksConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const WAIT: Duration = Duration::from_secs(10);

/// A scripted server: for its one connection, answers the first `n` bytes received with a
/// script, records everything it receives.
struct Scripted {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<u8>>>,
}

impl Scripted {
    /// Sends `reply` once `after` bytes have arrived (0: at once), then records until closed.
    async fn start(after: usize, reply: Vec<u8>) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received: Arc<Mutex<Vec<u8>>> = Arc::default();
        let record = received.clone();
        tokio::spawn(async move {
            let Ok((mut s, _)) = listener.accept().await else { return };
            let mut sent = false;
            if after == 0 {
                s.write_all(&reply).await.unwrap();
                sent = true;
            }
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = s.read(&mut buf).await {
                let len = {
                    let mut r = record.lock().unwrap();
                    r.extend_from_slice(&buf[..n]);
                    r.len()
                };
                if !sent && len >= after {
                    s.write_all(&reply).await.unwrap();
                    sent = true;
                }
            }
        });
        Scripted { addr, received }
    }

    fn received(&self) -> Vec<u8> {
        self.received.lock().unwrap().clone()
    }
}

fn ipv4(addr: SocketAddr) -> (Ipv4Addr, u16) {
    match addr {
        SocketAddr::V4(a) => (*a.ip(), a.port()),
        SocketAddr::V6(_) => panic!("IPv4 only"),
    }
}

/// `AC_ACCEPT_LOGIN` (`0x0AC4`) naming one char server.
fn accept_login(aid: u32, token: &str, char_server: SocketAddr) -> Vec<u8> {
    let mut p = vec![0u8; 64 + 160];
    p[0..2].copy_from_slice(&0x0AC4u16.to_le_bytes());
    let len = p.len() as u16;
    p[2..4].copy_from_slice(&len.to_le_bytes());
    p[4..8].copy_from_slice(&111u32.to_le_bytes());
    p[8..12].copy_from_slice(&aid.to_le_bytes());
    p[12..16].copy_from_slice(&222u32.to_le_bytes());
    p[46] = 1;
    p[47..47 + token.len()].copy_from_slice(token.as_bytes());
    let (ip, port) = ipv4(char_server);
    p[64..68].copy_from_slice(&ip.octets());
    p[68..70].copy_from_slice(&port.to_le_bytes());
    p[70..77].copy_from_slice(b"rAthena");
    p
}

/// `HC_NOTIFY_ZONESVR` (`0x0AC5`) naming the map server.
fn notify_zonesvr(cid: u32, map: &str, map_server: SocketAddr) -> Vec<u8> {
    let mut p = vec![0u8; 156];
    p[0..2].copy_from_slice(&0x0AC5u16.to_le_bytes());
    p[2..6].copy_from_slice(&cid.to_le_bytes());
    p[6..6 + map.len()].copy_from_slice(map.as_bytes());
    let (ip, port) = ipv4(map_server);
    p[22..26].copy_from_slice(&ip.octets());
    p[26..28].copy_from_slice(&port.to_le_bytes());
    p
}

async fn read_exactly(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    tokio::time::timeout(WAIT, s.read_exact(&mut buf)).await.unwrap().unwrap();
    buf
}

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn proxy(login_server: SocketAddr) -> Proxy {
    // No coordinator URL: P2P is off, every byte goes to the servers.
    proxy_with(login_server, ClientSettings::default()).await
}

async fn proxy_with(login_server: SocketAddr, settings: ClientSettings) -> Proxy {
    Proxy::start(ProxyConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        login_server,
        public_ip: None,
        settings,
        links: LinksConfig::loopback(),
        door_wait_ms: 5_000,
        present_web_auth_token: false,
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn login_char_and_map_go_through_the_proxys_doors_byte_for_byte() {
    let aid: u32 = 2_000_001;
    let map = Scripted::start(0, vec![0x83, 0x02, 0x41, 0x84, 0x1E, 0x00]).await;
    let char_reply = {
        let mut r = aid.to_le_bytes().to_vec();
        r.extend(notify_zonesvr(150_000, "prontera.gat", map.addr));
        r
    };
    // The char server answers CH_ENTER (17 bytes) with the raw account id, then the zone
    // server straight away (a real one waits for CH_SELECT_CHAR; the proxy does not care).
    let char_server = Scripted::start(17, char_reply).await;
    let login_reply = accept_login(aid, "0123456789abcdef", char_server.addr);
    let login_server = Scripted::start(55, login_reply.clone()).await;
    let proxy = proxy(login_server.addr).await;

    // Login.
    let mut game = TcpStream::connect(proxy.local_addr()).await.unwrap();
    let ca_login = gate::ca_login(20211103, "alice", "secret", 0).unwrap();
    game.write_all(&ca_login).await.unwrap();
    let got = read_exactly(&mut game, login_reply.len()).await;
    let LoginReply::Accepted(accepted) = gate::parse_login_reply(&got).unwrap() else {
        panic!("not accepted")
    };
    assert_eq!(accepted.account_id, aid);
    assert_eq!(accepted.web_auth_token.as_deref(), Some("0123456789abcdef"));
    let door = SocketAddr::from((accepted.char_servers[0].ip, accepted.char_servers[0].port));
    assert_ne!(door, char_server.addr, "the char server is rewritten to a door of the proxy");
    assert_eq!(door.ip(), proxy.local_addr().ip());
    // Everything but the address is the login server's bytes.
    let mut expected = login_reply.clone();
    gate::rewrite_server_address(&mut expected, accepted.char_servers[0].ip, door.port()).unwrap();
    assert_eq!(got, expected);
    wait_for("the login bytes", || login_server.received() == ca_login).await;

    // Char.
    let mut game_char = TcpStream::connect(door).await.unwrap();
    let ch_enter = gate::ch_enter(aid, 111, 222, gate::Sex::Male);
    game_char.write_all(&ch_enter).await.unwrap();
    let got = read_exactly(&mut game_char, 4 + 156).await;
    assert_eq!(got[..4], aid.to_le_bytes());
    let CharSelectReply::Zone(zone) = gate::parse_char_select_reply(&got[4..]).unwrap() else {
        panic!("no zone server")
    };
    assert_eq!(zone.map, "prontera.gat");
    let map_door = SocketAddr::from((zone.ip, zone.port));
    assert_ne!(map_door, map.addr, "the map server is rewritten to a door of the proxy");
    wait_for("CH_ENTER", || char_server.received() == ch_enter).await;

    // Map: bytes both ways, untouched (P2P is off without a coordinator).
    let mut game_map = TcpStream::connect(map_door).await.unwrap();
    let got = read_exactly(&mut game_map, 6).await;
    assert_eq!(got, [0x83, 0x02, 0x41, 0x84, 0x1E, 0x00]);
    let cz_enter = enter(&mut game_map, aid).await;
    // A walk, then garbage: an id no table has.
    let walk = [0x5F, 0x03, 0x26, 0x85, 0xA0];
    game_map.write_all(&walk).await.unwrap();
    game_map.write_all(&[0xFF, 0xFF, 1, 2, 3]).await.unwrap();
    let mut all = cz_enter.clone();
    all.extend(walk);
    all.extend([0xFF, 0xFF, 1, 2, 3]);
    wait_for("the map bytes", || map.received() == all).await;

    let stats = proxy.stats();
    assert_eq!(stats.logins, 1);
    assert_eq!(stats.char_connections, 1);
    assert_eq!(stats.map_connections, 1);
    let players = proxy.players().await;
    assert_eq!(players.len(), 1);
    assert_eq!(players[0].aid, aid);
    assert_eq!(players[0].map.as_deref(), Some("prontera.gat"));
    assert!(!players[0].p2p_running, "no coordinator configured");
    proxy.stop().await;
}

#[tokio::test]
async fn garbage_from_the_login_server_passes_to_the_game_untouched() {
    // An id the login server never sends, then a valid-looking tail: everything passes as is.
    let garbage: Vec<u8> = vec![0xEE, 0xEE, 0x10, 0x00, 9, 9, 9, 9, 0x69, 0x00, 0xFF, 0xFF, 1];
    let login_server = Scripted::start(0, garbage.clone()).await;
    let proxy = proxy(login_server.addr).await;
    let mut game = TcpStream::connect(proxy.local_addr()).await.unwrap();
    let got = read_exactly(&mut game, garbage.len()).await;
    assert_eq!(got, garbage);
    // And the game's garbage reaches the server untouched.
    game.write_all(&[0x00, 0x00, 0x01]).await.unwrap();
    wait_for("the game's bytes", || login_server.received() == [0x00, 0x00, 0x01]).await;
    assert_eq!(proxy.stats().follow_stopped, 1);
    proxy.stop().await;
}

#[tokio::test]
async fn a_truncated_reply_reaches_the_game_when_the_server_closes() {
    // Half of an AC_ACCEPT_LOGIN, then the server closes: the game gets the half.
    let char_server = "127.0.0.1:1".parse().unwrap();
    let half = accept_login(5, "0123456789abcdef", char_server)[..100].to_vec();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sent = half.clone();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        s.write_all(&sent).await.unwrap();
        s.shutdown().await.unwrap();
    });
    let proxy = proxy(addr).await;
    let mut game = TcpStream::connect(proxy.local_addr()).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(WAIT, game.read_to_end(&mut got)).await.unwrap().unwrap();
    assert_eq!(got, half);
    proxy.stop().await;
}

/// A coordinator on loopback; the returned URL is its signaling endpoint.
async fn coordinator() -> String {
    use ro_p2p_tokio::server::{ServerConfig, Service, SystemClock};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = Service::start(
        ServerConfig::default(),
        ro_p2p_core::Rng::from_seed(3),
        Arc::new(SystemClock),
    )
    .unwrap();
    tokio::spawn(service.serve(listener, std::future::pending(), Duration::from_secs(1)));
    format!("ws://{addr}/api/v1/signaling/ws")
}

/// Logs in and selects through the proxy; returns the game's map connection.
async fn to_the_map(proxy: &Proxy, aid: u32) -> TcpStream {
    let mut game = TcpStream::connect(proxy.local_addr()).await.unwrap();
    game.write_all(&gate::ca_login(20211103, "alice", "secret", 0).unwrap()).await.unwrap();
    let got = read_exactly(&mut game, 64 + 160).await;
    let LoginReply::Accepted(a) = gate::parse_login_reply(&got).unwrap() else { panic!() };
    let door = SocketAddr::from((a.char_servers[0].ip, a.char_servers[0].port));
    let mut game_char = TcpStream::connect(door).await.unwrap();
    game_char.write_all(&gate::ch_enter(aid, 111, 222, gate::Sex::Male)).await.unwrap();
    let got = read_exactly(&mut game_char, 4 + 156).await;
    let CharSelectReply::Zone(zone) = gate::parse_char_select_reply(&got[4..]).unwrap() else {
        panic!()
    };
    TcpStream::connect(SocketAddr::from((zone.ip, zone.port))).await.unwrap()
}

async fn servers_for(aid: u32, map_reply: Vec<u8>) -> (Scripted, Scripted, Scripted) {
    let map = Scripted::start(23, map_reply).await;
    let mut char_reply = aid.to_le_bytes().to_vec();
    char_reply.extend(notify_zonesvr(150_000, "prontera.gat", map.addr));
    let char_server = Scripted::start(17, char_reply).await;
    let login = Scripted::start(55, accept_login(aid, "0123456789abcdef", char_server.addr)).await;
    (login, char_server, map)
}

/// Sends `CZ_ENTER` as the game would; returns its bytes.
async fn enter(game: &mut TcpStream, aid: u32) -> Vec<u8> {
    let v = ro_p2p_core::packet::PacketVersion::V20211103;
    let cz_enter = gate::cz_enter(v, aid, 150_000, 111, 0, gate::Sex::Male);
    game.write_all(&cz_enter).await.unwrap();
    cz_enter
}

fn p2p_settings(url: String) -> ClientSettings {
    let mut settings = ClientSettings::default();
    settings.coordinator_urls = vec![url];
    settings
}

#[tokio::test]
async fn garbage_from_the_map_server_reaches_the_game_untouched_and_stops_p2p() {
    let aid: u32 = 2_000_007;
    // ZC_AID, then an id no table has, then more bytes.
    let mut reply = vec![0x83, 0x02];
    reply.extend(aid.to_le_bytes());
    reply.extend([0xFE, 0xFF, 9, 8, 7, 6, 5, 4, 3, 2, 1]);
    let (login, _char, map) = servers_for(aid, reply.clone()).await;
    let proxy = proxy_with(login.addr, p2p_settings(coordinator().await)).await;
    let mut game = to_the_map(&proxy, aid).await;
    let cz_enter = enter(&mut game, aid).await;
    assert_eq!(read_exactly(&mut game, reply.len()).await, reply);
    wait_for("P2P to stop", || proxy.stats().p2p_stopped == 1).await;
    // The game's bytes still reach the server untouched.
    game.write_all(&[0x5F, 0x03, 0x26, 0x85, 0xA0]).await.unwrap();
    let mut all = cz_enter.clone();
    all.extend([0x5F, 0x03, 0x26, 0x85, 0xA0]);
    wait_for("the map bytes", || map.received() == all).await;
    proxy.stop().await;
}

#[tokio::test]
async fn garbage_from_the_game_reaches_the_map_server_untouched_and_stops_p2p() {
    let aid: u32 = 2_000_008;
    let (login, _char, map) = servers_for(aid, vec![0x83, 0x02, 8, 0x84, 0x1E, 0x00]).await;
    let proxy = proxy_with(login.addr, p2p_settings(coordinator().await)).await;
    let mut game = to_the_map(&proxy, aid).await;
    let cz_enter = enter(&mut game, aid).await;
    read_exactly(&mut game, 6).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while !proxy.players().await.iter().any(|p| p.aid == aid && p.p2p_running) {
        assert!(tokio::time::Instant::now() < deadline, "the player's node never ran");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A walk, then an id this PACKETVER does not have, then what looks like a chat packet,
    // one byte at a time.
    let garbage = [0x5F, 0x03, 0x26, 0x85, 0xA0, 0xFF, 0xFF, 0x01, 0xF3, 0x00, 0x06, 0x00, 0x41];
    for b in garbage {
        game.write_all(&[b]).await.unwrap();
    }
    let mut all = cz_enter.clone();
    all.extend(garbage);
    let deadline = tokio::time::Instant::now() + WAIT;
    while map.received() != all {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the map server got {:02X?}, not {all:02X?}",
            map.received()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    wait_for("P2P to stop", || proxy.stats().p2p_stopped == 1).await;
    proxy.stop().await;
}

#[tokio::test]
async fn a_packet_cut_short_by_the_game_closing_still_reaches_the_map_server() {
    let aid: u32 = 2_000_009;
    let (login, _char, map) = servers_for(aid, vec![0x83, 0x02, 9, 0x84, 0x1E, 0x00]).await;
    let proxy = proxy_with(login.addr, p2p_settings(coordinator().await)).await;
    let mut game = to_the_map(&proxy, aid).await;
    let cz_enter = enter(&mut game, aid).await;
    read_exactly(&mut game, 6).await;
    // The first three bytes of a walk, then the game goes.
    game.write_all(&[0x5F, 0x03, 0x26]).await.unwrap();
    game.shutdown().await.unwrap();
    drop(game);
    let mut all = cz_enter.clone();
    all.extend([0x5F, 0x03, 0x26]);
    wait_for("the cut packet", || map.received() == all).await;
    proxy.stop().await;
}
