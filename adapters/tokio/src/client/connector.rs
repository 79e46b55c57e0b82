//! How the driver reaches a coordinator URL: a [`Connector`] opens the byte stream, the driver
//! runs the WebSocket handshake (and TLS for `wss://`) on top of it.

use std::future::Future;
use std::io;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};

/// Opens the byte stream under a coordinator WebSocket.
pub trait Connector: Send + Sync + 'static {
    /// The stream type (`tokio::net::TcpStream`, `turmoil::net::TcpStream`, ...).
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Opens a stream to the host and port of `url` (`ws://` or `wss://`).
    fn open(&self, url: &str) -> impl Future<Output = io::Result<Self::Stream>> + Send;

    /// The TLS client settings for `wss://` URLs; `None` uses rustls with the webpki roots.
    fn tls(&self) -> Option<tokio_tungstenite::Connector> {
        None
    }
}

/// Production: TCP to the URL's host and port; `wss://` with rustls (webpki roots, or a
/// configured client config, e.g. with a private CA).
#[derive(Clone, Debug, Default)]
pub struct TcpConnector {
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl TcpConnector {
    /// Plain TCP; `wss://` trusts the webpki roots.
    pub fn new() -> TcpConnector {
        TcpConnector::default()
    }

    /// `wss://` with these rustls client settings.
    pub fn with_tls(config: Arc<rustls::ClientConfig>) -> TcpConnector {
        TcpConnector { tls: Some(config) }
    }
}

impl Connector for TcpConnector {
    type Stream = tokio::net::TcpStream;

    async fn open(&self, url: &str) -> io::Result<tokio::net::TcpStream> {
        let (host, port) = host_and_port(url)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a ws:// URL"))?;
        let stream = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    fn tls(&self) -> Option<tokio_tungstenite::Connector> {
        self.tls.clone().map(tokio_tungstenite::Connector::Rustls)
    }
}

/// The host and port of a `ws://` or `wss://` URL (default ports 80 and 443; IPv6 hosts in
/// brackets).
pub fn host_and_port(url: &str) -> Option<(String, u16)> {
    let (rest, default_port) = if let Some(rest) = url.strip_prefix("ws://") {
        (rest, 80)
    } else if let Some(rest) = url.strip_prefix("wss://") {
        (rest, 443)
    } else {
        return None;
    };
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit('@').next()?;
    if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default_port,
            None => return None,
        };
        return Some((host.to_owned(), port));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().ok()?),
        None => (authority, default_port),
    };
    (!host.is_empty()).then(|| (host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_host_and_port_with_scheme_defaults() {
        let hp = |u| host_and_port(u);
        assert_eq!(hp("ws://127.0.0.1:8001/api/v1/signaling/ws"), Some(("127.0.0.1".into(), 8001)));
        assert_eq!(hp("wss://coord.example/ws?token=x"), Some(("coord.example".into(), 443)));
        assert_eq!(hp("ws://localhost"), Some(("localhost".into(), 80)));
        assert_eq!(hp("ws://[::1]:9/x"), Some(("::1".into(), 9)));
        assert_eq!(hp("http://x"), None);
        assert_eq!(hp("ws://:80/"), None);
        assert_eq!(hp("ws://host:notaport/"), None);
    }
}
