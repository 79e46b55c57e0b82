//! What players feel on a real rAthena (fast mode, 20211103), measured end to end:
//!
//! 1. From A's walk to B's game receiving the walk packet: through the peer link (the proxy with
//!    `movement=peers`: B's only copy is the one drawn from the peer) versus through rAthena
//!    (the proxy with P2P on and the default mirror policy, B's copy from the server when the
//!    peer's is cut: `--through server` runs the proxy without a coordinator).
//! 2. The proxy's cost on the server path: A's chat line to A's own echo from rAthena (a round
//!    trip through the proxy both ways) with the proxy in the path versus straight to rAthena,
//!    and the proxy process's CPU time per packet it relayed.
//!
//! The proxy runs as its own process (`target/release/ro-p2p proxy`), so its CPU time is its
//! own. Run:
//!
//! ```sh
//! cargo build --release --bin ro-p2p --example rathena_latency -p ro-p2p-proxy
//! target/release/examples/rathena_latency --actions 200
//! ```

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use ro_p2p_core::Rng;
use ro_p2p_core::gate::Sex;
use ro_p2p_rathena::harness::{HarnessConfig, Server};
use ro_p2p_rathena::{Bot, Harness, Packet};
use ro_p2p_tokio::server::{ServerConfig, Service, SystemClock};

#[derive(Debug, Parser)]
#[command(about = "Latency through the peer link vs through rAthena, and the proxy's cost")]
struct Args {
    /// Walks (and chat lines) measured per path.
    #[arg(long, default_value_t = 200)]
    actions: usize,
    /// Milliseconds between actions.
    #[arg(long, default_value_t = 60)]
    interval_ms: u64,
}

const ANSWER: Duration = Duration::from_secs(15);

/// A proxy process in front of `login`.
struct ProxyProcess {
    child: Child,
    addr: SocketAddr,
}

impl ProxyProcess {
    fn start(login: SocketAddr, coordinator: Option<&str>, policy: &str) -> ProxyProcess {
        let exe = std::env::current_exe().unwrap();
        let bin = exe.parent().and_then(|p| p.parent()).unwrap().join("ro-p2p");
        assert!(bin.exists(), "build it first: cargo build --release --bin ro-p2p");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut cmd = Command::new(bin);
        cmd.args(["proxy", "--listen", &addr.to_string(), "--login-server", &login.to_string()])
            .args(["--loopback", "--log", "warn"])
            .stdout(Stdio::null());
        if let Some(url) = coordinator {
            cmd.args(["--coordinator", url]);
        }
        if !policy.is_empty() {
            cmd.args(["--policy", policy]);
        }
        let child = cmd.spawn().unwrap();
        let deadline = Instant::now() + ANSWER;
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "the proxy did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        ProxyProcess { child, addr }
    }

    /// User + system CPU seconds the proxy process used so far.
    fn cpu_s(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = after.split_whitespace().collect();
        let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
        ticks / 100.0
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn player(h: &Harness, login: SocketAddr, user: &str, name: &str) -> Bot {
    let mut bot = Bot::connect_login(login, user, "pass1234", Sex::Male, h.packetver())
        .await
        .unwrap_or_else(|e| panic!("{user}: {e}"));
    bot.select_or_create_char(name).await.unwrap();
    bot.enter_map().await.unwrap_or_else(|e| panic!("{e}\n{}", h.log_tail(Server::Map, 20)));
    bot
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn summary(what: &str, mut ms: Vec<f64>) {
    ms.sort_by(|a, b| a.total_cmp(b));
    println!(
        "{what}: n={} p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms.len(),
        percentile(&ms, 0.5),
        percentile(&ms, 0.99),
        ms.last().copied().unwrap_or(0.0)
    );
}

fn is_walk_of(p: &Packet, aid: u32) -> bool {
    p.id == 0x09FD && p.u32_at(5) == Some(aid)
}

/// A walks back and forth `n` times; the time until B's game has the walk, per walk.
async fn walks(a: &Bot, b: &Bot, n: usize, interval: Duration) -> Vec<f64> {
    let aid = a.account_id();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let mark = b.mark();
        let to = if i % 2 == 0 { (159, 188) } else { (156, 191) };
        let t0 = Instant::now();
        a.walk_to(to.0, to.1).await.unwrap();
        b.wait_for_since(mark, |p| is_walk_of(p, aid), ANSWER).await.unwrap();
        out.push(t0.elapsed().as_secs_f64() * 1e3);
        tokio::time::sleep(interval).await;
    }
    out
}

/// A says `n` lines; the time until A's game has rAthena's echo, per line.
async fn echoes(a: &mut Bot, n: usize, interval: Duration) -> Vec<f64> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let text = format!("echo {i}");
        let t0 = Instant::now();
        a.chat(&text).await.unwrap();
        a.wait_for(|p| p.id == 0x008E && p.contains(text.as_bytes()), ANSWER).await.unwrap();
        out.push(t0.elapsed().as_secs_f64() * 1e3);
        tokio::time::sleep(interval).await;
    }
    out
}

/// [`echoes`] through `proxy`, with the proxy process's CPU time per client packet.
async fn echoes_through(
    proxy: &ProxyProcess,
    a: &mut Bot,
    n: usize,
    interval: Duration,
    how: &str,
) {
    let cpu0 = proxy.cpu_s();
    let sent0 = a.sent_count().await;
    let through = echoes(a, n, interval).await;
    let cpu = proxy.cpu_s() - cpu0;
    let packets = a.sent_count().await - sent0;
    summary(&format!("chat to own echo through the proxy ({how})"), through);
    println!(
        "proxy CPU ({how}): {:.1} ms for {packets} client packets and their answers: {:.0} us per packet",
        cpu * 1e3,
        cpu * 1e6 / packets.max(1) as f64
    );
}

async fn wait_for_links(a: &Bot, b: &Bot) {
    // Walk until B's game shows A's walk twice for one walk of A (drawn + mirrored): the
    // link is up. Bounded.
    let aid = a.account_id();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mark = b.mark();
        a.walk_to(157, 190).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        a.walk_to(156, 191).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let copies = b.received_since(mark).iter().filter(|p| is_walk_of(p, aid)).count();
        if copies >= 3 {
            return;
        }
        assert!(Instant::now() < deadline, "no peer link after 60 s");
    }
}

fn main() {
    let args = Args::parse();
    let interval = Duration::from_millis(args.interval_ms);
    let mut h = Harness::start(HarnessConfig::new(20211103)).expect("rAthena harness");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build();
    rt.unwrap().block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let coord = listener.local_addr().unwrap();
        let service =
            Service::start(ServerConfig::default(), Rng::from_seed(1), Arc::new(SystemClock))
                .unwrap();
        tokio::spawn(service.serve(listener, std::future::pending(), Duration::from_secs(1)));
        let url = format!("ws://{coord}/api/v1/signaling/ws");

        // 1. Walks through the peer link only.
        let proxy = ProxyProcess::start(h.login_addr(), Some(&url), "movement=peers");
        let a = player(&h, proxy.addr, "latalice1", "Lat Alice1").await;
        let b = player(&h, proxy.addr, "latbob01", "Lat Bob1").await;
        // With movement=peers the server never moves A: B's walks are the drawn ones only.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mark = b.mark();
            a.walk_to(157, 190).await.unwrap();
            let got = b
                .wait_for_since(mark, |p| is_walk_of(p, a.account_id()), Duration::from_secs(1))
                .await;
            if got.is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "no peer link after 60 s");
        }
        summary(
            "walk, A to B's game, through the peer link",
            walks(&a, &b, args.actions, interval).await,
        );
        drop((a, b));
        drop(proxy);

        // 2. Walks through rAthena (P2P off in the proxy) and straight to rAthena.
        let proxy = ProxyProcess::start(h.login_addr(), None, "");
        let mut a = player(&h, proxy.addr, "latalice2", "Lat Alice2").await;
        let b = player(&h, proxy.addr, "latbob02", "Lat Bob2").await;
        summary(
            "walk, A to B's game, through rAthena (via the proxy)",
            walks(&a, &b, args.actions, interval).await,
        );
        echoes_through(&proxy, &mut a, args.actions, interval, "P2P off").await;
        drop((a, b));
        drop(proxy);

        let proxy = ProxyProcess::start(h.login_addr(), Some(&url), "");
        let mut a = player(&h, proxy.addr, "latalice3", "Lat Alice3").await;
        let b = player(&h, proxy.addr, "latbob03", "Lat Bob3").await;
        wait_for_links(&a, &b).await;
        echoes_through(&proxy, &mut a, args.actions, interval, "P2P on, mirrored").await;
        drop((a, b));
        drop(proxy);

        let mut a = player(&h, h.login_addr(), "latdirect", "Lat Direct").await;
        let b = player(&h, h.login_addr(), "latdirectb", "Lat Directb").await;
        summary(
            "walk, A to B's game, straight to rAthena",
            walks(&a, &b, args.actions, interval).await,
        );
        summary(
            "chat to own echo straight to rAthena",
            echoes(&mut a, args.actions, interval).await,
        );
    });
    h.stop().unwrap();
}
