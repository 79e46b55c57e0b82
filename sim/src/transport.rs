//! The production client driver's two plug points, over turmoil: [`SimConnector`] opens the
//! coordinator WebSocket's TCP stream on turmoil's network (the driver runs the real
//! tokio-tungstenite handshake on it), and [`SimTransport`] is the [`PeerTransport`] that plays
//! the WebRTC adapter's part with the simulated [`Links`] over turmoil UDP, applying the seed's
//! NAT model and per-datagram loss at send time.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ro_p2p_core::client::{Role, Signal};
use ro_p2p_core::node::Channel;
use ro_p2p_core::wire::{IceServer, PeerId};
use ro_p2p_core::{Instant, Rng};
use ro_p2p_tokio::client::{Connector, PeerTransport, TransportEvent, host_and_port};
use tokio::sync::{mpsc, oneshot};

use crate::address::{PEER_PORT, RELAY_PORT};
use crate::peer::{Datagram, LinkOut, Links, Path, kind};
use crate::plan::{Nat, Plan};

/// Dials the coordinator URL's host and port on turmoil's network.
#[derive(Clone, Copy, Debug, Default)]
pub struct SimConnector;

impl Connector for SimConnector {
    type Stream = turmoil::net::TcpStream;

    async fn open(&self, url: &str) -> io::Result<turmoil::net::TcpStream> {
        let (host, port) = host_and_port(url)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a ws:// URL"))?;
        turmoil::net::TcpStream::connect((host.as_str(), port)).await
    }
}

/// A frame sent outside the router (the test-only sabotage), and whether a link carried it.
pub type Injected = (PeerId, Vec<u8>, oneshot::Sender<bool>);

/// The peer links of one client over turmoil UDP.
pub struct SimTransport {
    me: String,
    links: Links,
    udp: turmoil::net::UdpSocket,
    buf: Vec<u8>,
    plan: Arc<Plan>,
    loss_percent: Arc<AtomicU8>,
    rng: Rng,
    session: Arc<Mutex<String>>,
    inject: Option<mpsc::UnboundedReceiver<Injected>>,
    /// Test-only sabotage: game frames are silently lost while this is set.
    lose_frames_when: Option<Arc<AtomicBool>>,
    epoch: tokio::time::Instant,
    ready: VecDeque<TransportEvent>,
}

impl SimTransport {
    /// Binds the client's peer socket. `session` is the session id the client is joined to
    /// (written into descriptions and candidates so checker 3 can see whose they are).
    pub async fn bind(
        me: &str,
        plan: Arc<Plan>,
        loss_percent: Arc<AtomicU8>,
        rng: Rng,
        session: Arc<Mutex<String>>,
        inject: mpsc::UnboundedReceiver<Injected>,
        lose_frames_when: Option<Arc<AtomicBool>>,
    ) -> io::Result<SimTransport> {
        let udp = turmoil::net::UdpSocket::bind(("0.0.0.0", PEER_PORT)).await?;
        Ok(SimTransport {
            me: me.to_owned(),
            links: Links::new(me),
            udp,
            buf: vec![0u8; 70_000],
            plan,
            loss_percent,
            rng,
            session,
            inject: Some(inject),
            lose_frames_when,
            epoch: tokio::time::Instant::now(),
            ready: VecDeque::new(),
        })
    }

    fn now(&self) -> Instant {
        Instant::from_millis(u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    /// Sends the links' datagrams and queues their events for the driver.
    async fn flush(&mut self) {
        while let Some(out) = self.links.out.pop_front() {
            match out {
                LinkOut::Event(peer, event) => {
                    if let Ok(peer) = PeerId::new(peer) {
                        self.ready.push_back(TransportEvent::Link { peer, event });
                    }
                }
                LinkOut::Send(d) => self.send_datagram(d).await,
            }
        }
    }

    async fn send_datagram(&mut self, d: Datagram) {
        let nat = self.plan.nat(&self.me, &d.to);
        let allowed = match d.path {
            Path::Direct => nat == Nat::Direct,
            Path::Relay => nat != Nat::Blocked,
        };
        if !allowed {
            return;
        }
        let loss = u64::from(self.loss_percent.load(Ordering::Relaxed));
        if d.kind != kind::BYE && loss > 0 && self.rng.chance(loss, 100) {
            return;
        }
        let bytes = d.encode();
        let _ = match d.path {
            Path::Direct => self.udp.send_to(&bytes, (d.to.as_str(), PEER_PORT)).await,
            Path::Relay => self.udp.send_to(&bytes, ("relay", RELAY_PORT)).await,
        };
    }

    fn sync_session(&mut self) {
        if let Ok(s) = self.session.lock() {
            self.links.set_session(&s);
        }
    }
}

impl PeerTransport for SimTransport {
    async fn connect(&mut self, peer: PeerId, role: Role, _ice_servers: Vec<IceServer>) {
        self.sync_session();
        let now = self.now();
        self.links.connect(now, peer.as_str(), role);
        self.flush().await;
    }

    async fn disconnect(&mut self, peer: &PeerId) {
        self.links.disconnect(peer.as_str());
        self.flush().await;
    }

    async fn signal(&mut self, peer: &PeerId, signal: Signal) {
        self.sync_session();
        self.links.signal(peer.as_str(), signal);
        self.flush().await;
    }

    async fn send(&mut self, peer: &PeerId, _channel: Channel, frame: &[u8]) {
        if self.lose_frames_when.as_ref().is_some_and(|f| f.load(Ordering::Relaxed)) {
            return;
        }
        self.links.send_data(peer.as_str(), frame.to_vec());
        self.flush().await;
    }

    async fn next_event(&mut self) -> Option<TransportEvent> {
        loop {
            self.flush().await;
            if let Some(ev) = self.ready.pop_front() {
                return Some(ev);
            }
            let wake = self
                .links
                .next_deadline()
                .map(|at| self.epoch + Duration::from_millis(at.as_millis().min(1 << 40)));
            let sleep = async {
                match wake {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let inject = &mut self.inject;
            let injected = async move {
                match inject.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            let (udp, buf) = (&self.udp, &mut self.buf);
            tokio::select! {
                biased;
                got = udp.recv_from(buf) => {
                    let Ok((n, _)) = got else { continue };
                    let Some(d) = Datagram::decode(&self.buf[..n]) else { continue };
                    if d.to != self.me {
                        continue;
                    }
                    let now = self.now();
                    if let Some((from, bytes)) = self.links.receive(now, d)
                        && let Ok(peer) = PeerId::new(from)
                    {
                        self.ready.push_back(TransportEvent::Frame { peer, bytes });
                    }
                }
                () = sleep => {
                    let now = self.now();
                    self.links.tick(now);
                }
                injected = injected => match injected {
                    Some((peer, frame, sent)) => {
                        let _ = sent.send(self.links.send_data(peer.as_str(), frame));
                    }
                    None => self.inject = None,
                },
            }
        }
    }

    async fn close(&mut self) {
        self.links.clear();
        self.flush().await;
    }
}
