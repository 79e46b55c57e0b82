//! The tokio runtime of webrtc-rs with one change: a UDP socket whose ECN/GSO probing fails is
//! used as a plain datagram socket instead of failing the peer connection.
//!
//! webrtc-rs wraps every UDP socket (ICE and mDNS) in `quinn_udp::UdpSocketState`, whose probe
//! reads `IPV6_V6ONLY` even on an IPv4 socket. Windows answers it; wine 8 does not
//! (`getsockopt(IPPROTO_IPV6, IPV6_V6ONLY)` on an `AF_INET` socket returns `STATUS_NOT_SUPPORTED`,
//! i.e. `WSAEOPNOTSUPP`, OS error 10045), so under wine no peer connection could ever bind. A
//! socket that fails the probe here loses only what quinn-udp adds (ECN marks, GSO/GRO
//! batching, the destination address of each datagram), none of which the data channels need.

use std::fmt;
use std::future::Future;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use webrtc::runtime::{
    AsyncInterval, AsyncTcpListener, AsyncTcpStream, AsyncUdpSocket, JoinHandle, RecvMeta, Runtime,
    TokioRuntime, Transmit, UdpSockRef, UdpSocketState,
};

/// [`TokioRuntime`] whose [`wrap_udp_socket`](Runtime::wrap_udp_socket) falls back to a
/// [`PlainUdpSocket`] when the socket fails quinn-udp's probe (see the module doc).
#[derive(Debug)]
pub struct FallbackUdpRuntime {
    inner: TokioRuntime,
}

impl Default for FallbackUdpRuntime {
    fn default() -> Self {
        Self { inner: TokioRuntime }
    }
}

impl FallbackUdpRuntime {
    /// The runtime, ready for `PeerConnectionBuilder::with_runtime`.
    pub fn shared() -> Arc<dyn Runtime> {
        Arc::new(Self::default())
    }
}

impl Runtime for FallbackUdpRuntime {
    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) -> Box<dyn JoinHandle> {
        self.inner.spawn(future)
    }

    fn spawn_reactor(
        &self,
        reactor_pool_size: usize,
        future: Pin<Box<dyn Future<Output = ()> + Send>>,
    ) -> Box<dyn JoinHandle> {
        self.inner.spawn_reactor(reactor_pool_size, future)
    }

    fn wrap_udp_socket(&self, socket: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        // The probe only sets socket options; the tokio runtime runs it again on success.
        match UdpSocketState::new(UdpSockRef::from(&socket)) {
            Ok(_) => self.inner.wrap_udp_socket(socket),
            Err(e) => {
                tracing::info!(
                    "UDP socket {:?}: no ECN/GSO socket options ({e}); using plain datagrams",
                    socket.local_addr().ok()
                );
                Ok(Arc::new(PlainUdpSocket::new(socket)?))
            }
        }
    }

    fn wrap_tcp_listener(
        &self,
        listener: std::net::TcpListener,
    ) -> io::Result<Arc<dyn AsyncTcpListener>> {
        self.inner.wrap_tcp_listener(listener)
    }

    fn connect_tcp<'a>(
        &'a self,
        remote_addr: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = io::Result<Arc<dyn AsyncTcpStream>>> + Send + 'a>> {
        self.inner.connect_tcp(remote_addr)
    }

    fn resolve_host<'a>(
        &'a self,
        host: &'a str,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'a>> {
        self.inner.resolve_host(host)
    }

    fn now(&self) -> Instant {
        self.inner.now()
    }

    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        self.inner.sleep(duration)
    }

    fn interval(&self, period: Duration) -> Box<dyn AsyncInterval> {
        self.inner.interval(period)
    }

    fn block_on(&self, future: Pin<Box<dyn Future<Output = ()> + '_>>) {
        self.inner.block_on(future)
    }

    fn yield_now(&self) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        self.inner.yield_now()
    }

    fn name(&self) -> &'static str {
        "tokio (plain UDP fallback)"
    }
}

/// A UDP socket read and written one datagram per call with `recv_from`/`send_to`: no ECN,
/// no GSO/GRO, no per-datagram destination address.
pub struct PlainUdpSocket {
    io: tokio::net::UdpSocket,
}

impl PlainUdpSocket {
    /// Registers the bound `socket` with the current tokio runtime.
    pub fn new(socket: std::net::UdpSocket) -> io::Result<Self> {
        socket.set_nonblocking(true)?;
        Ok(Self { io: tokio::net::UdpSocket::from_std(socket)? })
    }
}

impl fmt::Debug for PlainUdpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlainUdpSocket").field("io", &self.io).finish()
    }
}

impl AsyncUdpSocket for PlainUdpSocket {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }

    fn poll_send(&self, cx: &mut Context<'_>, transmit: &Transmit<'_>) -> Poll<io::Result<usize>> {
        // `max_gso_segments` is 1, so each transmit is one datagram.
        self.io.poll_send_to(cx, transmit.contents, transmit.destination)
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let (Some(buf), Some(m)) = (bufs.first_mut(), meta.first_mut()) else {
            return Poll::Ready(Ok(0));
        };
        let mut read = tokio::io::ReadBuf::new(buf);
        match self.io.poll_recv_from(cx, &mut read) {
            Poll::Ready(Ok(addr)) => {
                let len = read.filled().len();
                // Non-exhaustive: filled field by field.
                *m = RecvMeta::default();
                m.addr = addr;
                m.len = len;
                m.stride = len.max(1);
                Poll::Ready(Ok(1))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A datagram goes out through `poll_send` and comes back through `poll_recv` with its
    /// sender and length, one per call.
    #[tokio::test]
    async fn plain_socket_carries_a_datagram_each_way() {
        let a = PlainUdpSocket::new(std::net::UdpSocket::bind("127.0.0.1:0").unwrap()).unwrap();
        let b = PlainUdpSocket::new(std::net::UdpSocket::bind("127.0.0.1:0").unwrap()).unwrap();
        let to = b.local_addr().unwrap();
        let transmit = Transmit {
            destination: to,
            ecn: None,
            contents: b"ping",
            segment_size: None,
            src_ip: None,
        };
        let sent = std::future::poll_fn(|cx| a.poll_send(cx, &transmit)).await.unwrap();
        assert_eq!(sent, 4);
        let mut storage = [0u8; 64];
        let mut meta = [RecvMeta::default()];
        let n = std::future::poll_fn(|cx| {
            let mut bufs = [IoSliceMut::new(&mut storage)];
            b.poll_recv(cx, &mut bufs, &mut meta)
        })
        .await
        .unwrap();
        assert_eq!(n, 1);
        assert_eq!(meta[0].addr, a.local_addr().unwrap());
        assert_eq!((meta[0].len, meta[0].stride), (4, 4));
        assert_eq!(&storage[..4], b"ping");
    }

    /// On a platform whose probe succeeds the runtime keeps quinn-udp's socket; either way
    /// the wrapped socket is bound where the given one was.
    #[tokio::test]
    async fn runtime_wraps_a_bound_socket() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let at = socket.local_addr().unwrap();
        let wrapped = FallbackUdpRuntime::default().wrap_udp_socket(socket).unwrap();
        assert_eq!(wrapped.local_addr().unwrap(), at);
    }
}
