//! Baseline for `rtt-bench`: the same 16-byte round trip over a `movement`-like channel
//! (unordered, no retransmits), straight on webrtc-rs without `PeerLinks`, to separate the
//! stack's cost from the adapter's.
//!
//! `cargo run --release -p ro-p2p-webrtc --example raw_stack_rtt -- [--current-thread]`

use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use tokio::sync::mpsc;
use webrtc::data_channel::{DataChannel, DataChannelEvent, RTCDataChannelInit};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceCandidateInit,
    RTCPeerConnectionIceEvent, RTCSessionDescription,
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const N: usize = 1000;
const WARMUP: usize = 50;

/// Forwards candidates and incoming channels to the benchmark.
struct Handler {
    candidates: mpsc::UnboundedSender<RTCIceCandidateInit>,
    channels: mpsc::UnboundedSender<Arc<dyn DataChannel>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Ok(candidate) = event.candidate.to_json() {
            let _ = self.candidates.send(candidate);
        }
    }

    async fn on_data_channel(&self, dc: Arc<dyn DataChannel>) {
        let _ = self.channels.send(dc);
    }
}

type Ends = (
    Arc<dyn PeerConnection>,
    mpsc::UnboundedReceiver<RTCIceCandidateInit>,
    mpsc::UnboundedReceiver<Arc<dyn DataChannel>>,
);

async fn peer() -> Result<Ends, BoxError> {
    let (candidates, candidates_rx) = mpsc::unbounded_channel();
    let (channels, channels_rx) = mpsc::unbounded_channel();
    let pc = PeerConnectionBuilder::new()
        .with_handler(Arc::new(Handler { candidates, channels }))
        .with_udp_addrs(vec!["127.0.0.1:0"])
        .build()
        .await?;
    Ok((Arc::new(pc), candidates_rx, channels_rx))
}

fn main() -> Result<(), BoxError> {
    let runtime = if std::env::args().any(|a| a == "--current-thread") {
        tokio::runtime::Builder::new_current_thread().enable_all().build()?
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?
    };
    runtime.block_on(run())
}

async fn run() -> Result<(), BoxError> {
    let (a, mut a_candidates, _) = peer().await?;
    let (b, mut b_candidates, mut b_channels) = peer().await?;
    let init =
        RTCDataChannelInit { ordered: false, max_retransmits: Some(0), ..Default::default() };
    let dc_a = a.create_data_channel("movement", Some(init)).await?;
    let offer = a.create_offer(None).await?;
    a.set_local_description(offer.clone()).await?;
    b.set_remote_description(RTCSessionDescription::offer(offer.sdp)?).await?;
    let answer = b.create_answer(None).await?;
    b.set_local_description(answer.clone()).await?;
    a.set_remote_description(RTCSessionDescription::answer(answer.sdp)?).await?;
    let (a2, b2) = (a.clone(), b.clone());
    tokio::spawn(async move {
        while let Some(c) = a_candidates.recv().await {
            let _ = b2.add_ice_candidate(c).await;
        }
    });
    tokio::spawn(async move {
        while let Some(c) = b_candidates.recv().await {
            let _ = a2.add_ice_candidate(c).await;
        }
    });
    while !matches!(dc_a.poll().await, Some(DataChannelEvent::OnOpen) | None) {}
    let dc_b = b_channels.recv().await.ok_or("no channel at b")?;
    tokio::spawn(async move {
        while let Some(event) = dc_b.poll().await {
            if let DataChannelEvent::OnMessage(msg) = event {
                let _ = dc_b.try_send(msg.data).await;
            }
        }
    });

    let mut rtts_us = Vec::with_capacity(N);
    for seq in 0..(WARMUP + N) as u64 {
        let start = Instant::now();
        let mut frame = BytesMut::from(&[0xA5u8; 16][..]);
        frame[..8].copy_from_slice(&seq.to_le_bytes());
        dc_a.try_send(frame).await?;
        loop {
            match dc_a.poll().await {
                Some(DataChannelEvent::OnMessage(msg)) if msg.data[..8] == seq.to_le_bytes() => {
                    break;
                }
                None => return Err("channel closed".into()),
                _ => {}
            }
        }
        if seq as usize >= WARMUP {
            rtts_us.push(start.elapsed().as_micros() as u64);
        }
    }
    rtts_us.sort_unstable();
    println!(
        "webrtc-rs without PeerLinks: p50 {} us   p99 {} us",
        rtts_us[rtts_us.len() / 2],
        rtts_us[rtts_us.len() * 99 / 100]
    );
    a.close().await?;
    b.close().await?;
    Ok(())
}
