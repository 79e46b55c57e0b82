//! Experiment for issue 7: the 16-byte round trip over a `movement`-like data channel
//! (unordered, no retransmits) with the sans-IO `rtc` crate driven directly: one UDP socket
//! per peer, each peer's stack driven by one task (no driver task, no channels between the
//! stack and the application), measured in the same run as raw UDP with the same
//! methodology as `rtt-bench` (1000 round trips after 50 warm-up, one in flight, echoed).
//!
//! Two ways of driving it: `direct`, where the measuring task owns its peer's stack and the
//! echo task owns the other (the floor of this stack), and `links-shaped`, the plumbing a
//! `PeerLinks` on this stack would have: the stack behind a mutex shared by a driver task per
//! peer (socket, timers) and the application's `send` (which writes to the socket itself),
//! received frames handed to the application over a bounded channel, the echo done by an
//! application task. Each path also reports CPU time and heap allocations per round trip (both
//! ends, whole process).
//!
//! `cargo run --release -p ro-p2p-webrtc --example rtc_direct_rtt -- [--current-thread]
//! [--no-coalesce] [udp|direct|links-shaped|links-shaped-late] [N]` (naming a path runs only
//! that one). `links-shaped-late` is `links-shaped` with the driver flushing after the
//! application had a chance to answer a delivered frame, so an echo and the SACK it follows
//! share a datagram.

#[path = "../src/bin/rtt-bench/alloc_count.rs"]
mod alloc_count;
#[path = "../src/bin/rtt-bench/cpu.rs"]
mod cpu;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rtc::data_channel::{RTCDataChannelId, RTCDataChannelInit};
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::event::{RTCDataChannelEvent, RTCPeerConnectionEvent};
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::transport::{
    CandidateConfig, CandidateHostConfig, RTCIceCandidate, RTCIceCandidateInit,
};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use tokio::net::UdpSocket;
use tokio::sync::{Notify, mpsc};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// CPU time and allocations from the start of a measurement, per round trip at its end.
struct Cost {
    cpu_ns: Option<u64>,
    allocations: u64,
}

impl Cost {
    fn start() -> Cost {
        Cost { cpu_ns: cpu::process_cpu_ns(), allocations: alloc_count::allocations() }
    }

    fn finish(self, sample: &mut Sample, n: usize) {
        sample.cpu_us_per_rtt = cpu::cpu_us_per(self.cpu_ns, cpu::process_cpu_ns(), n);
        let allocations = alloc_count::allocations() - self.allocations;
        sample.allocations_per_rtt = allocations as f64 / n.max(1) as f64;
    }
}

const FRAME_BYTES: usize = 16;
const WARMUP: usize = 50;
const ECHO_TIMEOUT: Duration = Duration::from_secs(1);
/// Stands in for "no timer": a day.
const IDLE: Duration = Duration::from_secs(86_400);

/// One peer: its stack and its socket, driven by whoever owns it.
struct Peer {
    pc: RTCPeerConnection,
    socket: UdpSocket,
    local_addr: SocketAddr,
    buf: Vec<u8>,
    /// Data channels that reported open.
    open: Vec<RTCDataChannelId>,
    /// Send consecutive DTLS records for one address as one datagram.
    coalesce: bool,
}

/// Largest datagram built by coalescing records (under a 1280-byte IPv6 minimum MTU).
const COALESCED_BYTES_MAX: usize = 1200;

/// DTLS records start with a content type of 20 to 63 (RFC 7983); STUN starts with 0 or 1.
fn is_dtls(datagram: &[u8]) -> bool {
    matches!(datagram.first(), Some(20..=63))
}

/// What woke a peer up.
enum Wake {
    Datagram(usize, SocketAddr),
    Timer,
}

impl Peer {
    async fn new(coalesce: bool) -> Result<Peer, BoxError> {
        let socket = UdpSocket::bind("127.0.0.1:0").await?;
        let local_addr = socket.local_addr()?;
        let pc = RTCPeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .build(Instant::now())?;
        Ok(Peer { pc, socket, local_addr, buf: vec![0; 2048], open: Vec::new(), coalesce })
    }

    /// The host candidate of this peer's socket, as the remote side receives it.
    fn host_candidate(&self) -> Result<RTCIceCandidateInit, BoxError> {
        let candidate = CandidateHostConfig {
            base_config: CandidateConfig {
                network: "udp".to_owned(),
                address: self.local_addr.ip().to_string(),
                port: self.local_addr.port(),
                component: 1,
                ..Default::default()
            },
            ..Default::default()
        }
        .new_candidate_host()?;
        Ok(RTCIceCandidate::from(&candidate).to_json()?)
    }

    /// Sends every datagram the stack has queued; with `coalesce`, consecutive DTLS records
    /// for one address travel in one datagram (DTLS allows several records per datagram), which
    /// saves a system call when a SACK and a DATA packet go out together.
    async fn flush(&mut self) -> Result<(), BoxError> {
        let mut pending: Option<(SocketAddr, BytesMut)> = None;
        while let Some(msg) = self.pc.poll_write() {
            let to = msg.transport.peer_addr;
            let dtls = self.coalesce && is_dtls(&msg.message);
            if dtls
                && let Some((pending_to, buf)) = pending.as_mut()
                && *pending_to == to
                && buf.len() + msg.message.len() <= COALESCED_BYTES_MAX
            {
                buf.extend_from_slice(&msg.message);
                continue;
            }
            if let Some((pending_to, buf)) = pending.take() {
                self.socket.send_to(&buf, pending_to).await?;
            }
            if dtls {
                pending = Some((to, msg.message));
            } else {
                self.socket.send_to(&msg.message, to).await?;
            }
        }
        if let Some((to, buf)) = pending {
            self.socket.send_to(&buf, to).await?;
        }
        Ok(())
    }

    fn drain_events(&mut self) {
        while let Some(event) = self.pc.poll_event() {
            if let RTCPeerConnectionEvent::OnDataChannel(RTCDataChannelEvent::OnOpen(id)) = event {
                self.open.push(id);
            }
        }
    }

    /// Waits for one datagram or the stack's timer, and hands it to the stack.
    async fn step(&mut self) -> Result<(), BoxError> {
        let deadline = self.pc.poll_timeout().unwrap_or_else(|| Instant::now() + IDLE);
        // A datagram already queued needs no timer armed and no wait.
        let ready = match self.socket.try_recv_from(&mut self.buf) {
            Ok((n, from)) => Some(Wake::Datagram(n, from)),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
            Err(e) => return Err(e.into()),
        };
        let wake = if let Some(wake) = ready {
            wake
        } else if deadline <= Instant::now() {
            Wake::Timer
        } else {
            let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline));
            tokio::select! {
                biased;
                r = self.socket.recv_from(&mut self.buf) => { let (n, from) = r?; Wake::Datagram(n, from) }
                _ = sleep => Wake::Timer,
            }
        };
        match wake {
            Wake::Datagram(n, peer_addr) => self.pc.handle_read(TaggedBytesMut {
                now: Instant::now(),
                transport: TransportContext {
                    local_addr: self.local_addr,
                    peer_addr,
                    ecn: None,
                    transport_protocol: TransportProtocol::UDP,
                },
                message: BytesMut::from(&self.buf[..n]),
            })?,
            Wake::Timer => self.pc.handle_timeout(Instant::now())?,
        }
        Ok(())
    }
}

/// Offer/answer and candidates exchanged in process; both stacks driven in this task until
/// each side has its channel open.
async fn connect(coalesce: bool) -> Result<(Peer, Peer, RTCDataChannelId), BoxError> {
    let (mut a, mut b) = (Peer::new(coalesce).await?, Peer::new(coalesce).await?);
    let init =
        RTCDataChannelInit { ordered: false, max_retransmits: Some(0), ..Default::default() };
    let dc_a = a.pc.create_data_channel("movement", Some(init))?.id();
    let offer = a.pc.create_offer(None)?;
    a.pc.set_local_description(Instant::now(), offer.clone())?;
    b.pc.set_remote_description(Instant::now(), RTCSessionDescription::offer(offer.sdp)?)?;
    let answer = b.pc.create_answer(None)?;
    b.pc.set_local_description(Instant::now(), answer.clone())?;
    a.pc.set_remote_description(Instant::now(), RTCSessionDescription::answer(answer.sdp)?)?;
    let (ca, cb) = (a.host_candidate()?, b.host_candidate()?);
    a.pc.add_local_candidate(ca.clone())?;
    b.pc.add_local_candidate(cb.clone())?;
    a.pc.add_remote_candidate(cb)?;
    b.pc.add_remote_candidate(ca)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.open.is_empty() || b.open.is_empty() {
        if Instant::now() > deadline {
            return Err("not connected within 10 s".into());
        }
        for p in [&mut a, &mut b] {
            p.flush().await?;
            p.drain_events();
        }
        // Whichever side has input first; the other is polled on the next turn.
        tokio::select! {
            r = a.step() => r?,
            r = b.step() => r?,
        }
    }
    Ok((a, b, dc_a))
}

/// Echoes every data-channel message back on its channel, until the stack closes.
async fn echo(mut b: Peer) -> Result<(), BoxError> {
    loop {
        b.step().await?;
        while let Some(msg) = b.pc.poll_read() {
            if let RTCMessage::DataChannelMessage(id, m) = msg.message
                && let Some(mut dc) = b.pc.data_channel(id)
            {
                dc.send(Instant::now(), m.data)?;
            }
        }
        b.flush().await?;
        b.drain_events();
    }
}

fn frame(seq: u64) -> BytesMut {
    let mut f = BytesMut::from(&[0xA5u8; FRAME_BYTES][..]);
    f[..8].copy_from_slice(&seq.to_le_bytes());
    f
}

struct Sample {
    rtts_us: Vec<u64>,
    lost: usize,
    cpu_us_per_rtt: Option<f64>,
    allocations_per_rtt: f64,
}

impl Sample {
    fn new(n: usize) -> Sample {
        Sample {
            rtts_us: Vec::with_capacity(n),
            lost: 0,
            cpu_us_per_rtt: None,
            allocations_per_rtt: 0.0,
        }
    }

    fn percentile(&self, p: f64) -> f64 {
        let mut v = self.rtts_us.clone();
        v.sort_unstable();
        if v.is_empty() {
            return f64::NAN;
        }
        v[(((p / 100.0) * (v.len() - 1) as f64).round() as usize).min(v.len() - 1)] as f64
    }

    fn mean(&self) -> f64 {
        self.rtts_us.iter().sum::<u64>() as f64 / self.rtts_us.len().max(1) as f64
    }

    fn print(&self, name: &str) {
        let cpu = self.cpu_us_per_rtt.map_or(String::from("n/a"), |us| format!("{us:.1} us"));
        println!(
            "{name:<20} p50 {:>6.1} us   p99 {:>7.1} us   mean {:>6.1} us   per round trip: CPU \
             {cpu}, {:.1} allocations   lost {}",
            self.percentile(50.0),
            self.percentile(99.0),
            self.mean(),
            self.allocations_per_rtt,
            self.lost
        );
    }
}

async fn rtc_rtt(n: usize, coalesce: bool) -> Result<Sample, BoxError> {
    let connect_start = Instant::now();
    let (mut a, b, dc) = connect(coalesce).await?;
    println!("rtc connected in {} ms", connect_start.elapsed().as_millis());
    let echo = tokio::spawn(echo(b));
    let mut sample = Sample::new(n);
    let mut cost = None;
    for seq in 0..(WARMUP + n) as u64 {
        if seq as usize == WARMUP {
            cost = Some(Cost::start());
        }
        let start = Instant::now();
        a.pc.data_channel(dc).ok_or("channel gone")?.send(start, frame(seq))?;
        a.flush().await?;
        // The round trip ends when the echo is delivered to the application; what the stack
        // sends in reply (a SACK) goes out after that, as in any driver.
        let echoed = tokio::time::timeout(ECHO_TIMEOUT, async {
            loop {
                a.step().await?;
                let mut got = None;
                while let Some(msg) = a.pc.poll_read() {
                    if let RTCMessage::DataChannelMessage(_, m) = msg.message
                        && m.data.get(..8) == Some(&seq.to_le_bytes()[..])
                    {
                        got = Some(start.elapsed());
                    }
                }
                a.flush().await?;
                a.drain_events();
                if let Some(rtt) = got {
                    return Ok::<_, BoxError>(rtt);
                }
            }
        })
        .await;
        if seq as usize >= WARMUP {
            match echoed {
                Ok(r) => sample.rtts_us.push(r?.as_micros() as u64),
                Err(_) => sample.lost += 1,
            }
        }
    }
    if let Some(cost) = cost {
        cost.finish(&mut sample, n);
    }
    echo.abort();
    Ok(sample)
}

/// One peer as a `PeerLinks` on this stack would hold it: the stack behind a mutex that the
/// driver task and the application's `send` share; the socket shared by both.
struct SharedPeer {
    state: Mutex<SharedState>,
    socket: UdpSocket,
    local_addr: SocketAddr,
    coalesce: bool,
    /// Wakes the driver when a `send` made the stack's next timer earlier than its sleep.
    rearm: Notify,
}

struct SharedState {
    pc: RTCPeerConnection,
    /// When the driver will wake up at the latest.
    driver_deadline: Instant,
}

/// What woke a driver up.
enum DriverWake {
    Datagram(usize, SocketAddr),
    Timer,
    Rearm,
}

impl SharedPeer {
    fn new(peer: Peer) -> Arc<SharedPeer> {
        let Peer { pc, socket, local_addr, coalesce, .. } = peer;
        let state = Mutex::new(SharedState { pc, driver_deadline: Instant::now() });
        Arc::new(SharedPeer { state, socket, local_addr, coalesce, rearm: Notify::new() })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SharedState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes what the stack queued without waiting: a full socket buffer drops the datagram
    /// (SCTP retransmits what is reliable), as UDP would.
    fn flush_now(&self, pc: &mut RTCPeerConnection) -> Result<(), BoxError> {
        let send = |buf: &[u8], to: SocketAddr| match self.socket.try_send_to(buf, to) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(e),
        };
        let mut pending: Option<(SocketAddr, BytesMut)> = None;
        while let Some(msg) = pc.poll_write() {
            let to = msg.transport.peer_addr;
            let dtls = self.coalesce && is_dtls(&msg.message);
            if dtls
                && let Some((pending_to, buf)) = pending.as_mut()
                && *pending_to == to
                && buf.len() + msg.message.len() <= COALESCED_BYTES_MAX
            {
                buf.extend_from_slice(&msg.message);
                continue;
            }
            if let Some((pending_to, buf)) = pending.take() {
                send(&buf, pending_to)?;
            }
            if dtls {
                pending = Some((to, msg.message));
            } else {
                send(&msg.message, to)?;
            }
        }
        if let Some((to, buf)) = pending {
            send(&buf, to)?;
        }
        Ok(())
    }

    /// The application's send: enqueue, write to the socket, and wake the driver only if its
    /// timer must move earlier.
    fn send(&self, dc: RTCDataChannelId, data: BytesMut) -> Result<(), BoxError> {
        let mut st = self.lock();
        st.pc.data_channel(dc).ok_or("channel gone")?.send(Instant::now(), data)?;
        self.flush_now(&mut st.pc)?;
        let earlier = st.pc.poll_timeout().is_some_and(|t| t < st.driver_deadline);
        drop(st);
        if earlier {
            self.rearm.notify_one();
        }
        Ok(())
    }
}

/// The driver task of one peer: datagrams and timers into the stack, its datagrams out, its
/// received messages to the application over `deliver`.
async fn drive(
    peer: Arc<SharedPeer>,
    deliver: mpsc::Sender<BytesMut>,
    flush_late: bool,
) -> Result<(), BoxError> {
    let mut buf = vec![0u8; 2048];
    let mut delivered = Vec::new();
    loop {
        let deadline = {
            let mut st = peer.lock();
            let deadline = st.pc.poll_timeout().unwrap_or_else(|| Instant::now() + IDLE);
            st.driver_deadline = deadline;
            deadline
        };
        let wake = {
            let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline));
            tokio::select! {
                biased;
                r = peer.socket.recv_from(&mut buf) => { let (n, from) = r?; DriverWake::Datagram(n, from) }
                _ = peer.rearm.notified() => DriverWake::Rearm,
                _ = sleep => DriverWake::Timer,
            }
        };
        {
            let mut st = peer.lock();
            match wake {
                DriverWake::Datagram(n, peer_addr) => st.pc.handle_read(TaggedBytesMut {
                    now: Instant::now(),
                    transport: TransportContext {
                        local_addr: peer.local_addr,
                        peer_addr,
                        ecn: None,
                        transport_protocol: TransportProtocol::UDP,
                    },
                    message: BytesMut::from(&buf[..n]),
                })?,
                DriverWake::Timer => st.pc.handle_timeout(Instant::now())?,
                DriverWake::Rearm => {}
            }
            while let Some(msg) = st.pc.poll_read() {
                if let RTCMessage::DataChannelMessage(_, m) = msg.message {
                    delivered.push(m.data);
                }
            }
            if delivered.is_empty() || !flush_late {
                peer.flush_now(&mut st.pc)?;
            }
            while st.pc.poll_event().is_some() {}
        }
        if !delivered.is_empty() {
            for data in delivered.drain(..) {
                deliver.send(data).await?;
            }
            if flush_late {
                // The application may answer at once: its `send` then writes our SACK in the
                // same datagram as its DATA. Whatever is still queued goes out here.
                tokio::task::yield_now().await;
                peer.flush_now(&mut peer.lock().pc)?;
            }
        }
    }
}

async fn links_shaped_rtt(n: usize, coalesce: bool, flush_late: bool) -> Result<Sample, BoxError> {
    let (a, b, dc_a) = connect(coalesce).await?;
    let dc_b = *b.open.first().ok_or("no channel at b")?;
    let (a, b) = (SharedPeer::new(a), SharedPeer::new(b));
    let (a_tx, mut a_rx) = mpsc::channel(4096);
    let (b_tx, mut b_rx) = mpsc::channel::<BytesMut>(4096);
    let drivers = [
        tokio::spawn(drive(a.clone(), a_tx, flush_late)),
        tokio::spawn(drive(b.clone(), b_tx, flush_late)),
    ];
    let echo = tokio::spawn(async move {
        while let Some(data) = b_rx.recv().await {
            if b.send(dc_b, data).is_err() {
                return;
            }
        }
    });
    let mut sample = Sample::new(n);
    let mut cost = None;
    for seq in 0..(WARMUP + n) as u64 {
        if seq as usize == WARMUP {
            cost = Some(Cost::start());
        }
        let start = Instant::now();
        a.send(dc_a, frame(seq))?;
        let echoed = tokio::time::timeout(ECHO_TIMEOUT, async {
            while let Some(data) = a_rx.recv().await {
                if data.get(..8) == Some(&seq.to_le_bytes()[..]) {
                    return Some(start.elapsed());
                }
            }
            None
        })
        .await;
        if seq as usize >= WARMUP {
            match echoed {
                Ok(Some(rtt)) => sample.rtts_us.push(rtt.as_micros() as u64),
                Ok(None) => return Err("driver ended".into()),
                Err(_) => sample.lost += 1,
            }
        }
    }
    if let Some(cost) = cost {
        cost.finish(&mut sample, n);
    }
    echo.abort();
    for d in drivers {
        d.abort();
    }
    Ok(sample)
}

async fn udp_rtt(n: usize) -> Result<Sample, BoxError> {
    let a = UdpSocket::bind("127.0.0.1:0").await?;
    let b = UdpSocket::bind("127.0.0.1:0").await?;
    a.connect(b.local_addr()?).await?;
    let echo = tokio::spawn(async move {
        let mut buf = [0u8; 64];
        while let Ok((len, from)) = b.recv_from(&mut buf).await {
            if b.send_to(&buf[..len], from).await.is_err() {
                return;
            }
        }
    });
    let mut sample = Sample::new(n);
    let mut cost = None;
    let mut buf = [0u8; 64];
    for seq in 0..(WARMUP + n) as u64 {
        if seq as usize == WARMUP {
            cost = Some(Cost::start());
        }
        let start = Instant::now();
        a.send(&frame(seq)).await?;
        let echoed = tokio::time::timeout(ECHO_TIMEOUT, async {
            loop {
                let len = a.recv(&mut buf).await?;
                if buf.get(..8) == Some(&seq.to_le_bytes()[..]) && len >= 8 {
                    return Ok::<_, std::io::Error>(());
                }
            }
        })
        .await;
        let rtt_us = start.elapsed().as_micros() as u64;
        if seq as usize >= WARMUP {
            match echoed {
                Ok(r) => {
                    r?;
                    sample.rtts_us.push(rtt_us);
                }
                Err(_) => sample.lost += 1,
            }
        }
    }
    if let Some(cost) = cost {
        cost.finish(&mut sample, n);
    }
    echo.abort();
    Ok(sample)
}

fn main() -> Result<(), BoxError> {
    let mut current_thread = false;
    let mut coalesce = true;
    // One path alone, for strace and perf.
    let mut only: Option<String> = None;
    let mut n = 1000;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--current-thread" => current_thread = true,
            "--no-coalesce" => coalesce = false,
            "udp" | "direct" | "links-shaped" | "links-shaped-late" => only = Some(arg.clone()),
            _ => {
                n = arg.parse().map_err(|_| {
                    format!(
                        "usage: [--current-thread] [--no-coalesce] [udp|direct|links-shaped|links-shaped-late] \
                         [N]; got {arg}"
                    )
                })?
            }
        }
    }
    let runtime = if current_thread {
        tokio::runtime::Builder::new_current_thread().enable_all().build()?
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?
    };
    let flavor = if current_thread { "current-thread" } else { "multi-thread, 2 workers" };
    println!(
        "rtc_direct_rtt: {n} round trips of a {FRAME_BYTES}-byte frame on 127.0.0.1, \
         {WARMUP} warm-up each, tokio {flavor}, coalescing records: {coalesce}"
    );
    runtime.block_on(async {
        if let Some(path) = only {
            let sample = match path.as_str() {
                "udp" => udp_rtt(n).await?,
                "direct" => rtc_rtt(n, coalesce).await?,
                "links-shaped" => links_shaped_rtt(n, coalesce, false).await?,
                _ => links_shaped_rtt(n, coalesce, true).await?,
            };
            sample.print(&path);
            return Ok(());
        }
        let udp = udp_rtt(n).await?;
        let direct = rtc_rtt(n, coalesce).await?;
        let shaped = links_shaped_rtt(n, coalesce, false).await?;
        let late = links_shaped_rtt(n, coalesce, true).await?;
        udp.print("raw UDP");
        direct.print("rtc direct");
        shaped.print("rtc links-shaped");
        late.print("rtc links-shaped-late");
        for (name, dc) in
            [("direct", &direct), ("links-shaped", &shaped), ("links-shaped-late", &late)]
        {
            println!(
                "ratio rtc {name} / UDP: p50 {:.2}x   mean {:.2}x   CPU {:.2}x",
                dc.percentile(50.0) / udp.percentile(50.0),
                dc.mean() / udp.mean(),
                dc.cpu_us_per_rtt.unwrap_or(f64::NAN) / udp.cpu_us_per_rtt.unwrap_or(f64::NAN)
            );
        }
        Ok(())
    })
}
