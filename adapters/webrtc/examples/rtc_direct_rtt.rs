//! Experiment for issue 7: the 16-byte round trip over a `movement`-like data channel
//! (unordered, no retransmits) with the sans-IO `rtc` crate driven directly: one UDP socket
//! per peer, each peer's stack driven by one task (no driver task, no channels between the
//! stack and the application), measured in the same run as raw UDP with the same
//! methodology as `rtt-bench` (1000 round trips after 50 warm-up, one in flight, echoed).
//!
//! `cargo run --release -p ro-p2p-webrtc --example rtc_direct_rtt -- [--current-thread]
//! [--no-coalesce] [N]`

#[path = "../src/bin/rtt-bench/cpu.rs"]
mod cpu;

use std::net::SocketAddr;
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

type BoxError = Box<dyn std::error::Error + Send + Sync>;

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
}

impl Sample {
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
            "{name:<20} p50 {:>7.1} us   p99 {:>7.1} us   mean {:>7.1} us   CPU {cpu} per round \
             trip   lost {}",
            self.percentile(50.0),
            self.percentile(99.0),
            self.mean(),
            self.lost
        );
    }
}

async fn rtc_rtt(n: usize, coalesce: bool) -> Result<Sample, BoxError> {
    let connect_start = Instant::now();
    let (mut a, b, dc) = connect(coalesce).await?;
    println!("rtc connected in {} ms", connect_start.elapsed().as_millis());
    let echo = tokio::spawn(echo(b));
    let mut sample = Sample { rtts_us: Vec::with_capacity(n), lost: 0, cpu_us_per_rtt: None };
    let mut cpu_start = None;
    for seq in 0..(WARMUP + n) as u64 {
        if seq as usize == WARMUP {
            cpu_start = cpu::process_cpu_ns();
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
    sample.cpu_us_per_rtt = cpu::cpu_us_per(cpu_start, cpu::process_cpu_ns(), n);
    echo.abort();
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
    let mut sample = Sample { rtts_us: Vec::with_capacity(n), lost: 0, cpu_us_per_rtt: None };
    let mut cpu_start = None;
    let mut buf = [0u8; 64];
    for seq in 0..(WARMUP + n) as u64 {
        if seq as usize == WARMUP {
            cpu_start = cpu::process_cpu_ns();
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
    sample.cpu_us_per_rtt = cpu::cpu_us_per(cpu_start, cpu::process_cpu_ns(), n);
    echo.abort();
    Ok(sample)
}

fn main() -> Result<(), BoxError> {
    let mut current_thread = false;
    let mut coalesce = true;
    let mut n = 1000;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--current-thread" => current_thread = true,
            "--no-coalesce" => coalesce = false,
            _ => {
                n = arg.parse().map_err(|_| {
                    format!("usage: [--current-thread] [--no-coalesce] [N]; got {arg}")
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
        let udp = udp_rtt(n).await?;
        let dc = rtc_rtt(n, coalesce).await?;
        udp.print("raw UDP");
        dc.print("rtc data channel");
        println!(
            "ratio (rtc / UDP): p50 {:.2}x   mean {:.2}x   CPU {:.2}x",
            dc.percentile(50.0) / udp.percentile(50.0),
            dc.mean() / udp.mean(),
            dc.cpu_us_per_rtt.unwrap_or(f64::NAN) / udp.cpu_us_per_rtt.unwrap_or(f64::NAN)
        );
        Ok(())
    })
}
