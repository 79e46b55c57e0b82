//! Measures, on a loopback `redis-server` of its own, the round trips the cluster mode adds:
//! a bus hop (holder -> owner -> holder ping-pong, halved), a fenced seat write, and a lease
//! renewal. Ignored by default (it measures, it does not check); run with
//! `cargo test -p ro-p2p-tokio --release --test cluster_store_latency -- --ignored --nocapture`.

mod common;

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ro_p2p_core::wire::{PeerId, SessionId, Zone};
use ro_p2p_tokio::cluster::{
    Acquired, ClusterStore, InstanceId, RedisStore, SeatRecord, StoreConfig, TokioClock,
};

const ROUNDS: usize = 2_000;

fn percentiles(mut us: Vec<u128>) -> String {
    us.sort_unstable();
    let at = |p: f64| us[((us.len() as f64 - 1.0) * p) as usize];
    format!("p50 {} us, p99 {} us, max {} us", at(0.5), at(0.99), at(1.0))
}

#[tokio::test]
#[ignore = "a measurement; run it by name"]
async fn loopback_redis_bus_hop_and_fenced_write_latency() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let Ok(mut child) = Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", ""])
        .args(["--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
    else {
        common::skip_or_fail("redis-server is not installed");
        return;
    };
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let url = format!("redis://127.0.0.1:{port}/0");
    let clock = Arc::new(TokioClock::new());
    let open = |name: &str| {
        RedisStore::open_url(
            &url,
            InstanceId::new(name).unwrap(),
            StoreConfig::default(),
            clock.clone(),
        )
        .unwrap()
    };
    let (holder, owner) = (open("holder"), open("owner"));
    let mut holder_sub = holder.subscribe().await.unwrap();
    let mut owner_sub = owner.subscribe().await.unwrap();
    let zone = Zone::new("prontera").unwrap();
    let Acquired::Owned(lease) = owner.acquire(&zone, 60_000).await.unwrap() else { panic!() };

    // A frame of a typical ICE candidate's size.
    let frame = vec![b'x'; 300];
    let mut hop = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let t = Instant::now();
        holder.publish_to_owner(&zone, &lease.owner, &frame).await.unwrap();
        let m = owner_sub.recv().await.unwrap();
        owner.publish(&m.from, &m.payload).await.unwrap();
        holder_sub.recv().await.unwrap();
        hop.push(t.elapsed().as_micros() / 2);
    }
    let mut write = Vec::with_capacity(ROUNDS);
    for i in 0..ROUNDS {
        let seat = SeatRecord {
            peer_id: PeerId::new(format!("p{}", i % 50)).unwrap(),
            session_id: SessionId::new("s1").unwrap(),
            zone: zone.clone(),
            capabilities: None,
            host: false,
            connected_via: None,
            key_epoch: 1,
        };
        let t = Instant::now();
        owner.put_seat(&lease, &seat, None).await.unwrap();
        write.push(t.elapsed().as_micros());
    }
    let mut renew = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let t = Instant::now();
        owner.renew(&lease, 60_000).await.unwrap();
        renew.push(t.elapsed().as_micros());
    }
    println!("bus hop (one way, 300 B): {}", percentiles(hop));
    println!("fenced seat write:        {}", percentiles(write));
    println!("lease renewal:            {}", percentiles(renew));
    let _ = child.kill();
    let _ = child.wait();
}
