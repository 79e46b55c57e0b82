//! The client driver: runs a sans-IO [`Node`] on tokio.
//!
//! [`Driver::run`] owns the node and does nothing but execute it: it opens the WebSocket to the
//! coordinator through a [`Connector`] (any `AsyncRead + AsyncWrite` stream; production dials
//! TCP and adds rustls for `wss://`, the simulation hands it turmoil streams), moves signaling
//! frames both ways, hands peer-link work to a [`PeerTransport`] (the WebRTC adapter in
//! production, turmoil UDP in the simulation) and feeds its events back, calls the node's
//! timers, and serves the application through a [`NodeHandle`]: the game's bytes in and the
//! server's share out, the server's bytes in and the game's stream out (peers, local echoes
//! and notices drawn in by the node: [`DriverEvent::ToGame`], or a [`GameSink`]), zone
//! changes, shutdown, and a stream of [`DriverEvent`]s. Time is `tokio::time`
//! relative to the driver's start, mapped onto [`ro_p2p_core::Instant`], so under turmoil the
//! same code runs on simulated time. Every decision stays in the core.

mod connector;
pub mod machine;
mod observer;

use std::future::Future;
use std::net::SocketAddrV4;
use std::pin::Pin;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use ro_p2p_core::client::{self, ClientEvent, CloseReason, LinkEvent, Role, Signal};
use ro_p2p_core::gate::ServerMove;
use ro_p2p_core::node::{Channel, Node, NodeStats, NotDrawn, PeerUse, ReceiveDrop, ReceivedEvent};
use ro_p2p_core::render::{MapChange, ReceiveStats, RenderRejected, ZcDesyncReason};
use ro_p2p_core::route::OwnNameError;
use ro_p2p_core::wire::{Capabilities, ErrorCode, IceServer, PeerId, Zone, limits};
use ro_p2p_core::{Instant, SansIo};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub use connector::{Connector, TcpConnector, host_and_port};
pub use observer::{NoObserver, Observer};

/// Commands queued from the application to the driver at most.
pub const COMMAND_QUEUE_LEN: usize = 256;
/// Events queued from the driver to the application at most; beyond that the driver waits.
pub const EVENT_QUEUE_LEN: usize = 1024;
/// The event sources [`Driver::run`] waits on: timer, WebSocket, connect, transport, commands.
const SOURCES: usize = 5;
/// The WebSocket's read buffer (tungstenite's default is 128 KiB).
pub const READ_BUFFER_BYTES: usize = 4 * 1024;
/// How long closing the WebSocket may take before it is dropped.
pub const CLOSE_LINGER_MS: u64 = 1_000;

/// Something a [`PeerTransport`] observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransportEvent {
    /// A link event for the client core (local SDP or candidate, connected, failed, closed,
    /// measured).
    Link {
        /// The link's peer.
        peer: PeerId,
        /// What happened.
        event: LinkEvent,
    },
    /// A sealed frame arrived from `peer`.
    Frame {
        /// The link's peer (as the transport knows it, not as the frame claims).
        peer: PeerId,
        /// The sealed bytes.
        bytes: Vec<u8>,
    },
}

/// The peer links, as the driver uses them. The driver calls each method as the node asks and
/// never waits on the network inside them for long; failures are reported as
/// [`TransportEvent::Link`] with [`LinkEvent::Failed`], not returned.
pub trait PeerTransport: Send + 'static {
    /// Starts a link to `peer` in `role` with these STUN/TURN servers.
    fn connect(
        &mut self,
        peer: PeerId,
        role: Role,
        ice_servers: Vec<IceServer>,
    ) -> impl Future<Output = ()> + Send;
    /// Tears the link to `peer` down.
    fn disconnect(&mut self, peer: &PeerId) -> impl Future<Output = ()> + Send;
    /// Applies remote signaling (an offer, an answer or a candidate) on the link to `peer`.
    fn signal(&mut self, peer: &PeerId, signal: Signal) -> impl Future<Output = ()> + Send;
    /// Sends one sealed frame to `peer` on `channel`; a frame that cannot be sent is dropped.
    fn send(
        &mut self,
        peer: &PeerId,
        channel: Channel,
        frame: &[u8],
    ) -> impl Future<Output = ()> + Send;
    /// The next event; `None` when the transport has ended. Must be cancel-safe (the driver
    /// polls it in `select!`).
    fn next_event(&mut self) -> impl Future<Output = Option<TransportEvent>> + Send;
    /// Closes every link (the driver is stopping).
    fn close(&mut self) -> impl Future<Output = ()> + Send;
}

/// A transport without peer links: every `connect` fails at once, so the node routes
/// everything to the server. For signaling-only clients and tests.
#[derive(Debug, Default)]
pub struct NoPeers {
    failed: std::collections::VecDeque<PeerId>,
}

impl PeerTransport for NoPeers {
    async fn connect(&mut self, peer: PeerId, _role: Role, _ice_servers: Vec<IceServer>) {
        self.failed.push_back(peer);
    }
    async fn disconnect(&mut self, _peer: &PeerId) {}
    async fn signal(&mut self, _peer: &PeerId, _signal: Signal) {}
    async fn send(&mut self, _peer: &PeerId, _channel: Channel, _frame: &[u8]) {}
    async fn next_event(&mut self) -> Option<TransportEvent> {
        match self.failed.pop_front() {
            Some(peer) => Some(TransportEvent::Link { peer, event: LinkEvent::Failed }),
            None => std::future::pending().await,
        }
    }
    async fn close(&mut self) {}
}

/// What the driver tells the application.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DriverEvent {
    /// An event of the signaling client (welcomed, joined, peers, fallback, key, stopped...).
    Client(ClientEvent),
    /// A peer did something the game should show.
    Received {
        /// The sender.
        from: PeerId,
        /// What it did.
        event: ReceivedEvent,
    },
    /// A frame from a peer was dropped.
    Dropped {
        /// The link it came on.
        from: PeerId,
        /// Why.
        reason: ReceiveDrop,
    },
    /// A chat line or emote sent to peers only was not confirmed by every peer in time
    /// ([`ro_p2p_core::node::Output::LateServerCopy`]): its bytes wait in the node for the map
    /// server. Call [`NodeHandle::game_send`] (with no bytes, unless the game sent some) and
    /// write what it returns to the server. (The node already expects the server's echo of it.)
    LateServerCopy {
        /// The action.
        event: ReceivedEvent,
        /// The frame it went to peers in.
        frame: ro_p2p_core::seal::FrameId,
    },
    /// Bytes for the game, in order: the server's packets with peers, local echoes and notices
    /// drawn in. Only without a [`GameSink`]; write them to the game as they are.
    ToGame {
        /// The bytes.
        bytes: Vec<u8>,
        /// The receive path's counters after them.
        stats: ReceiveStats,
    },
    /// A peer's event or a local echo was not drawn ([`ro_p2p_core::node::Output::NotDrawn`]).
    NotDrawn {
        /// The peer, or `None` for a local echo.
        from: Option<PeerId>,
        /// What.
        event: ReceivedEvent,
        /// Why.
        reason: NotDrawn,
    },
    /// Peers came into use or went out of it ([`ro_p2p_core::node::Output::PeerUse`]).
    PeerUse(PeerUse),
    /// The WebSocket to the coordinator could not be opened or broke.
    TransportClosed {
        /// The URL.
        url: String,
        /// What the driver saw.
        reason: CloseReason,
    },
}

/// Where a move to another map server sends the game instead (see
/// [`Node::on_server_bytes_redirecting`]).
pub type Redirect = Box<dyn FnMut(&ServerMove) -> Option<SocketAddrV4> + Send>;

/// Takes the game's bytes from the driver as the node makes them, on the driver's task (for an
/// application whose game thread reads them synchronously). Returns `false` to refuse them for
/// now (e.g. too much waits unread); they stay in the node and are offered again after the
/// driver's next step.
pub type GameSink = Box<dyn FnMut(&[u8]) -> bool + Send>;

/// What the node made of bytes from the map server ([`NodeHandle::server_bytes`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerBytesTaken {
    /// The map changes the server announced in them, oldest first.
    pub map_changes: Vec<MapChange>,
    /// Why the server-to-game stream desynced, if it has (peers are drawn no more).
    pub desync: Option<ZcDesyncReason>,
    /// The receive path's counters.
    pub stats: ReceiveStats,
}

/// What the application can ask of a running driver.
enum Command {
    GameSend {
        bytes: Vec<u8>,
        reply: oneshot::Sender<Vec<u8>>,
    },
    ServerBytes {
        bytes: Vec<u8>,
        redirect: Option<Redirect>,
        reply: oneshot::Sender<ServerBytesTaken>,
    },
    ServerClosed {
        reply: oneshot::Sender<()>,
    },
    Notice {
        text: String,
        reply: oneshot::Sender<Result<(), RenderRejected>>,
    },
    OwnAccountId(u32),
    NewMapConnection,
    OwnName {
        name: Vec<u8>,
        reply: oneshot::Sender<Result<(), OwnNameError>>,
    },
    Zone(Zone),
    Token(String),
    Capabilities(Option<Capabilities>),
    Inspect(Box<dyn FnOnce(&Node) + Send>),
    Shutdown,
}

/// The application's side of a running [`Driver`]. Cloneable; when every handle is dropped the
/// driver shuts down.
#[derive(Clone)]
pub struct NodeHandle {
    commands: mpsc::Sender<Command>,
}

/// The driver has stopped; the command could not be executed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the client driver has stopped")]
pub struct DriverStopped;

impl NodeHandle {
    /// Routes bytes the game wrote to the map server; returns the bytes to write to the server
    /// (peer frames are sent by the driver).
    pub async fn game_send(&self, bytes: Vec<u8>) -> Result<Vec<u8>, DriverStopped> {
        let (reply, rx) = oneshot::channel();
        self.commands.send(Command::GameSend { bytes, reply }).await.map_err(|_| DriverStopped)?;
        rx.await.map_err(|_| DriverStopped)
    }

    /// Bytes the map server sent to the game: the node draws peers in between its packets and
    /// the result reaches the game as [`DriverEvent::ToGame`] (or the [`GameSink`]) before this
    /// returns. A move to another map server is shown to `redirect` (see
    /// [`Node::on_server_bytes_redirecting`]).
    pub async fn server_bytes(
        &self,
        bytes: Vec<u8>,
        redirect: Option<Redirect>,
    ) -> Result<ServerBytesTaken, DriverStopped> {
        let (reply, rx) = oneshot::channel();
        let command = Command::ServerBytes { bytes, redirect, reply };
        self.commands.send(command).await.map_err(|_| DriverStopped)?;
        rx.await.map_err(|_| DriverStopped)
    }

    /// The map server closed the connection: a partial packet goes to the game as it is
    /// (before this returns, like [`NodeHandle::server_bytes`]).
    pub async fn server_closed(&self) -> Result<(), DriverStopped> {
        let (reply, rx) = oneshot::channel();
        self.commands.send(Command::ServerClosed { reply }).await.map_err(|_| DriverStopped)?;
        rx.await.map_err(|_| DriverStopped)
    }

    /// Draws a one-line notice into the game's stream ([`Node::draw_notice`]).
    pub async fn draw_notice(
        &self,
        text: String,
    ) -> Result<Result<(), RenderRejected>, DriverStopped> {
        let (reply, rx) = oneshot::channel();
        self.commands.send(Command::Notice { text, reply }).await.map_err(|_| DriverStopped)?;
        rx.await.map_err(|_| DriverStopped)
    }

    /// The player's own account id ([`Node::set_own_account_id`]).
    pub async fn set_own_account_id(&self, aid: u32) -> Result<(), DriverStopped> {
        self.commands.send(Command::OwnAccountId(aid)).await.map_err(|_| DriverStopped)
    }

    /// The game opened a new map-server connection.
    pub async fn new_map_connection(&self) -> Result<(), DriverStopped> {
        self.commands.send(Command::NewMapConnection).await.map_err(|_| DriverStopped)
    }

    /// The player's character name (see [`Node::set_own_name`]).
    pub async fn set_own_name(
        &self,
        name: Vec<u8>,
    ) -> Result<Result<(), OwnNameError>, DriverStopped> {
        let (reply, rx) = oneshot::channel();
        self.commands.send(Command::OwnName { name, reply }).await.map_err(|_| DriverStopped)?;
        rx.await.map_err(|_| DriverStopped)
    }

    /// The player is on a (new) map.
    pub async fn zone_changed(&self, zone: Zone) -> Result<(), DriverStopped> {
        self.commands.send(Command::Zone(zone)).await.map_err(|_| DriverStopped)
    }

    /// A fresh token for every later connection attempt (the live one stays); see
    /// [`client::Input::TokenRefreshed`].
    pub async fn refresh_token(&self, token: String) -> Result<(), DriverStopped> {
        self.commands.send(Command::Token(token)).await.map_err(|_| DriverStopped)
    }

    /// This machine's capabilities as measured now (`None`: not a host candidate); see
    /// [`client::Input::CapabilitiesMeasured`].
    pub async fn capabilities_measured(
        &self,
        capabilities: Option<Capabilities>,
    ) -> Result<(), DriverStopped> {
        self.commands.send(Command::Capabilities(capabilities)).await.map_err(|_| DriverStopped)
    }

    /// Runs `f` on the node (for stats, links, members) and returns its result.
    pub async fn inspect<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Node) -> R + Send + 'static,
    ) -> Result<R, DriverStopped> {
        let (tx, rx) = oneshot::channel();
        let job = Box::new(move |node: &Node| {
            let _ = tx.send(f(node));
        });
        self.commands.send(Command::Inspect(job)).await.map_err(|_| DriverStopped)?;
        rx.await.map_err(|_| DriverStopped)
    }

    /// The node's counters.
    pub async fn stats(&self) -> Result<NodeStats, DriverStopped> {
        self.inspect(|n| n.stats().clone()).await
    }

    /// Leaves the session, closes links and the WebSocket; [`Driver::run`] then returns.
    pub async fn shutdown(&self) -> Result<(), DriverStopped> {
        self.commands.send(Command::Shutdown).await.map_err(|_| DriverStopped)
    }
}

type Ws<S> = WebSocketStream<MaybeTlsStream<S>>;
type Connecting<S> = Pin<Box<dyn Future<Output = Result<Box<Ws<S>>, String>> + Send>>;

/// Runs one [`Node`] with a [`Connector`] and a [`PeerTransport`], reporting what it does to
/// an [`Observer`] (none by default; see [`Driver::with_observer`]).
pub struct Driver<C: Connector, T: PeerTransport, O: Observer = NoObserver> {
    node: Node,
    connector: std::sync::Arc<C>,
    transport: T,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<DriverEvent>,
    start: tokio::time::Instant,
    ws: Option<Ws<C::Stream>>,
    connecting: Option<Connecting<C::Stream>>,
    url: String,
    stopped: bool,
    /// The source [`Driver::run`] polls first in its next wait (rotates, for fairness).
    turn: usize,
    game_sink: Option<GameSink>,
    observer: O,
}

impl<C: Connector, T: PeerTransport> Driver<C, T, NoObserver> {
    /// A driver for `node`, whose [`Instant`] zero is now. Returns the driver (spawn
    /// [`Driver::run`]), the application's handle, and the event stream.
    ///
    /// The node must have been created at `Instant::ZERO` or later. Read the events (or drop
    /// the receiver): when [`EVENT_QUEUE_LEN`] of them are unread, the driver waits.
    pub fn new(
        node: Node,
        connector: C,
        transport: T,
    ) -> (Driver<C, T>, NodeHandle, mpsc::Receiver<DriverEvent>) {
        let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_QUEUE_LEN);
        let (ev_tx, ev_rx) = mpsc::channel(EVENT_QUEUE_LEN);
        let driver = Driver {
            node,
            connector: std::sync::Arc::new(connector),
            transport,
            commands: cmd_rx,
            events: ev_tx,
            start: tokio::time::Instant::now(),
            ws: None,
            connecting: None,
            url: String::new(),
            stopped: false,
            turn: 0,
            game_sink: None,
            observer: NoObserver,
        };
        (driver, NodeHandle { commands: cmd_tx }, ev_rx)
    }

    /// The same driver, reporting to `observer` (a test harness or simulation that checks
    /// what the node did; production needs none).
    pub fn with_observer<O: Observer>(self, observer: O) -> Driver<C, T, O> {
        Driver {
            node: self.node,
            connector: self.connector,
            transport: self.transport,
            commands: self.commands,
            events: self.events,
            start: self.start,
            ws: self.ws,
            connecting: self.connecting,
            url: self.url,
            stopped: self.stopped,
            turn: self.turn,
            game_sink: self.game_sink,
            observer,
        }
    }
}

impl<C: Connector, T: PeerTransport, O: Observer> Driver<C, T, O> {
    /// The same driver, handing the game's bytes to `sink` instead of
    /// [`DriverEvent::ToGame`].
    pub fn with_game_sink(mut self, sink: GameSink) -> Driver<C, T, O> {
        self.game_sink = Some(sink);
        self
    }
}

impl<C: Connector, T: PeerTransport, O: Observer> Driver<C, T, O> {
    fn now(&self) -> Instant {
        let ms = self.start.elapsed().as_millis();
        Instant::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
    }

    fn deadline(&self, at: Instant) -> tokio::time::Instant {
        self.start + Duration::from_millis(at.as_millis())
    }

    /// Runs until the node stops (after [`NodeHandle::shutdown`], every handle dropped, or the
    /// client stopping on its own); returns the node for inspection.
    pub async fn run(mut self) -> Node {
        loop {
            self.execute_outputs().await;
            self.flush_game().await;
            self.observer.stepped(&self.node);
            if self.stopped {
                break;
            }
            let wake = self.node.poll_timeout().map(|at| self.deadline(at));
            // Fair like an unbiased `select!`, but the first source polled rotates instead of
            // being drawn from tokio's RNG, so runs on a simulated clock replay exactly.
            let first = self.turn;
            self.turn = (self.turn + 1) % SOURCES;
            let step = {
                let sleep = async {
                    match wake {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                };
                let ws_next = async {
                    match self.ws.as_mut() {
                        Some(ws) => ws.next().await,
                        None => std::future::pending().await,
                    }
                };
                let connected = async {
                    match self.connecting.as_mut() {
                        Some(fut) => fut.await,
                        None => std::future::pending().await,
                    }
                };
                let transport_next = self.transport.next_event();
                let command_next = self.commands.recv();
                tokio::pin!(sleep, ws_next, connected, transport_next, command_next);
                std::future::poll_fn(|cx| {
                    for i in 0..SOURCES {
                        let ready = match (first + i) % SOURCES {
                            0 => sleep.as_mut().poll(cx).map(|()| Step::Timeout),
                            1 => ws_next.as_mut().poll(cx).map(Step::Ws),
                            2 => connected.as_mut().poll(cx).map(Step::Connected),
                            3 => transport_next.as_mut().poll(cx).map(Step::Transport),
                            _ => command_next.as_mut().poll(cx).map(Step::Command),
                        };
                        if ready.is_ready() {
                            return ready;
                        }
                    }
                    std::task::Poll::Pending
                })
                .await
            };
            self.on_step(step).await;
        }
        self.transport.close().await;
        self.close_ws().await;
        self.node
    }

    async fn on_step(&mut self, step: Step<C::Stream>) {
        let now = self.now();
        match step {
            Step::Timeout => self.node.handle_timeout(now),
            Step::Ws(Some(Ok(Message::Text(text)))) => {
                self.observer.signal_in(&self.node, text.as_str());
                self.node.handle_input(now, client::Input::Frame(text.as_bytes().to_vec()));
            }
            Step::Ws(Some(Ok(Message::Close(frame)))) => {
                self.ws = None;
                let (code, reason) = match frame {
                    Some(f) => (parse_close_code(&f.reason), f.reason.to_string()),
                    None => (None, String::new()),
                };
                let reason = CloseReason::ClosedByCoordinator { code, reason };
                self.closed(now, reason).await;
            }
            Step::Ws(Some(Ok(_))) => {} // binary, ping, pong: not part of the protocol
            Step::Ws(Some(Err(e))) => {
                self.ws = None;
                self.closed(now, CloseReason::Lost { detail: e.to_string() }).await;
            }
            Step::Ws(None) => {
                self.ws = None;
                let detail = "end of stream".to_owned();
                self.closed(now, CloseReason::Lost { detail }).await;
            }
            Step::Connected(res) => {
                self.connecting = None;
                match res {
                    Ok(ws) => {
                        self.ws = Some(*ws);
                        self.node.handle_input(now, client::Input::TransportOpened);
                    }
                    Err(detail) => {
                        self.closed(now, CloseReason::ConnectFailed { detail }).await;
                    }
                }
            }
            Step::Transport(Some(TransportEvent::Link { peer, event })) => {
                self.node.handle_input(now, client::Input::PeerLinkEvent { peer, event });
            }
            Step::Transport(Some(TransportEvent::Frame { peer, bytes })) => {
                let result = self.node.on_peer_frame(now, &peer, &bytes);
                self.observer.peer_frame_in(&self.node, &peer, &bytes, &result);
                if let Err(reason) = result {
                    self.emit(DriverEvent::Dropped { from: peer, reason }).await;
                }
            }
            Step::Transport(None) => {
                // The transport ended: no more links; keep signaling and the server path.
            }
            Step::Command(Some(cmd)) => self.on_command(now, cmd).await,
            Step::Command(None) => self.node.handle_input(now, client::Input::Shutdown),
        }
    }

    async fn on_command(&mut self, now: Instant, cmd: Command) {
        match cmd {
            Command::GameSend { bytes, reply } => {
                let to_server = self.game_send(now, &bytes);
                let _ = reply.send(to_server);
            }
            Command::ServerBytes { bytes, redirect, reply } => {
                match redirect {
                    Some(redirect) => self.node.on_server_bytes_redirecting(now, &bytes, redirect),
                    None => self.node.on_server_bytes(now, &bytes),
                }
                // The game's bytes leave before the reply, so a caller that reads its sink
                // after the reply finds them there.
                self.flush_game().await;
                let path = self.node.game_path();
                let desync = path.receive_stream().desync_reason();
                let stats = path.receive_stats();
                let map_changes = self.node.take_map_changes().collect();
                let _ = reply.send(ServerBytesTaken { map_changes, desync, stats });
            }
            Command::ServerClosed { reply } => {
                self.node.server_closed();
                self.flush_game().await;
                let _ = reply.send(());
            }
            Command::Notice { text, reply } => {
                let _ = reply.send(self.node.draw_notice(&text));
            }
            Command::OwnAccountId(aid) => self.node.set_own_account_id(aid),
            Command::NewMapConnection => self.node.new_map_connection(),
            Command::OwnName { name, reply } => {
                let _ = reply.send(self.node.set_own_name(&name));
            }
            Command::Zone(zone) => self.node.handle_input(now, client::Input::ZoneChanged(zone)),
            Command::Token(token) => {
                self.node.handle_input(now, client::Input::TokenRefreshed(token));
            }
            Command::Capabilities(c) => {
                self.node.handle_input(now, client::Input::CapabilitiesMeasured(c));
            }
            Command::Inspect(f) => f(&self.node),
            Command::Shutdown => self.node.handle_input(now, client::Input::Shutdown),
        }
    }

    fn game_send(&mut self, now: Instant, bytes: &[u8]) -> Vec<u8> {
        let mut to_server = Vec::with_capacity(bytes.len());
        self.node.on_game_send(now, bytes, &mut to_server);
        self.observer.game_sent(&self.node, bytes, &to_server);
        to_server
    }

    /// Hands the bytes the node has for the game to the sink or the application.
    async fn flush_game(&mut self) {
        let bytes = self.node.game_output();
        if bytes.is_empty() {
            return;
        }
        let n = bytes.len();
        match self.game_sink.as_mut() {
            Some(sink) => {
                if sink(bytes) {
                    self.node.consume_game_output(n);
                }
            }
            None => {
                let bytes = bytes.to_vec();
                self.node.consume_game_output(n);
                let stats = self.node.receive_stats();
                self.emit(DriverEvent::ToGame { bytes, stats }).await;
            }
        }
    }

    async fn closed(&mut self, now: Instant, reason: CloseReason) {
        let url = self.url.clone();
        self.emit(DriverEvent::TransportClosed { url, reason: reason.clone() }).await;
        self.node.handle_input(now, client::Input::TransportClosed(reason));
    }

    async fn emit(&mut self, event: DriverEvent) {
        self.observer.event(&self.node, &event);
        // A gone receiver only means nobody listens.
        let _ = self.events.send(event).await;
    }

    /// Executes every pending output of the node, in order, including those that executing
    /// them produced.
    async fn execute_outputs(&mut self) {
        while let Some(out) = self.node.poll_output() {
            match out {
                ro_p2p_core::node::Output::Client(out) => self.execute_client(out).await,
                ro_p2p_core::node::Output::SendPeerFrame { peer, channel, frame } => {
                    self.observer.peer_frame_out(&peer, channel, &frame);
                    self.transport.send(&peer, channel, &frame).await;
                }
                ro_p2p_core::node::Output::Received { from, event } => {
                    self.emit(DriverEvent::Received { from, event }).await;
                }
                ro_p2p_core::node::Output::LateServerCopy { event, frame } => {
                    self.emit(DriverEvent::LateServerCopy { event, frame }).await;
                }
                ro_p2p_core::node::Output::NotDrawn { from, event, reason } => {
                    self.emit(DriverEvent::NotDrawn { from, event, reason }).await;
                }
                ro_p2p_core::node::Output::PeerUse(usage) => {
                    self.emit(DriverEvent::PeerUse(usage)).await;
                }
                _ => {}
            }
        }
    }

    async fn execute_client(&mut self, out: client::Output) {
        match out {
            client::Output::OpenTransport { url } => {
                self.close_ws().await;
                self.url = url.clone();
                let connector = self.connector.clone();
                self.connecting = Some(Box::pin(open_websocket(connector, url)));
            }
            client::Output::SendFrame { frame } => {
                self.observer.signal_out(&self.node, &frame);
                let Some(ws) = self.ws.as_mut() else { return };
                if let Err(e) = ws.send(Message::Text(frame.into())).await {
                    self.ws = None;
                    let now = self.now();
                    self.closed(now, CloseReason::Lost { detail: e.to_string() }).await;
                }
            }
            client::Output::CloseTransport => self.close_ws().await,
            client::Output::ConnectPeer { peer, role, ice_servers } => {
                self.transport.connect(peer, role, ice_servers).await;
            }
            client::Output::DisconnectPeer { peer } => self.transport.disconnect(&peer).await,
            client::Output::SendSignal { peer, signal } => {
                self.transport.signal(&peer, signal).await;
            }
            client::Output::Event { event } => {
                if matches!(event, ClientEvent::Stopped { .. }) {
                    self.stopped = true;
                }
                self.emit(DriverEvent::Client(event)).await;
            }
            _ => {}
        }
    }

    async fn close_ws(&mut self) {
        self.connecting = None;
        if let Some(mut ws) = self.ws.take() {
            let linger = Duration::from_millis(CLOSE_LINGER_MS);
            let _ = tokio::time::timeout(linger, ws.close(None)).await;
        }
    }
}

enum Step<S> {
    Timeout,
    Ws(Option<Result<Message, tokio_tungstenite::tungstenite::Error>>),
    Connected(Result<Box<Ws<S>>, String>),
    Transport(Option<TransportEvent>),
    Command(Option<Command>),
}

/// Opens the stream and runs the WebSocket handshake (with TLS for `wss://`).
async fn open_websocket<C: Connector>(
    connector: std::sync::Arc<C>,
    url: String,
) -> Result<Box<Ws<C::Stream>>, String> {
    let stream = connector.open(&url).await.map_err(|e| format!("connect {url}: {e}"))?;
    // tungstenite zeroes its whole read buffer on every read; signaling frames are small, so
    // a small buffer saves that work (larger frames are still read, in several chunks).
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .max_message_size(Some(limits::FRAME_BYTES_MAX))
        .max_frame_size(Some(limits::FRAME_BYTES_MAX));
    let (ws, _response) = tokio_tungstenite::client_async_tls_with_config(
        url.as_str(),
        stream,
        Some(config),
        connector.tls(),
    )
    .await
    .map_err(|e| format!("handshake with {url}: {e}"))?;
    Ok(Box::new(ws))
}

/// The error code at the start of a close reason (`"<code>: <text>"`), if it is a known one.
pub fn parse_close_code(reason: &str) -> Option<ErrorCode> {
    let word = reason.split(':').next().unwrap_or_default().trim();
    let code: ErrorCode = serde_json::from_value(serde_json::Value::String(word.into())).ok()?;
    (code.as_str() == word).then_some(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reasons_name_their_code() {
        assert_eq!(parse_close_code("shutting-down: bye"), Some(ErrorCode::ShuttingDown));
        assert_eq!(parse_close_code("replaced"), Some(ErrorCode::Replaced));
        assert_eq!(parse_close_code("something else"), None);
        assert_eq!(parse_close_code(""), None);
    }
}

#[cfg(test)]
mod driver_tests {
    use std::sync::Arc;

    use ro_p2p_core::Rng;
    use ro_p2p_core::node::NodeConfig;

    use super::*;
    use crate::server::{ManualWallClock, ServerConfig, Service};

    const WAIT: Duration = Duration::from_secs(10);

    async fn next_client_event(
        events: &mut mpsc::Receiver<DriverEvent>,
        want: impl Fn(&ClientEvent) -> bool,
    ) -> ClientEvent {
        tokio::time::timeout(WAIT, async {
            loop {
                match events.recv().await {
                    Some(DriverEvent::Client(e)) if want(&e) => return e,
                    Some(_) => {}
                    None => panic!("driver ended"),
                }
            }
        })
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn a_driven_node_joins_routes_to_the_server_without_links_and_shuts_down() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let clock = Arc::new(ManualWallClock::new(1_800_000_000));
        let service = Service::start(ServerConfig::default(), Rng::from_seed(1), clock).unwrap();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let server = tokio::spawn(service.serve(
            listener,
            async move {
                let _ = stop_rx.await;
            },
            Duration::from_secs(2),
        ));
        let zone = Zone::new("prontera").unwrap();
        let client = client::Config {
            coordinator_urls: vec![format!("ws://{addr}/api/v1/signaling/ws")],
            peer_id: Some(PeerId::new("alice").unwrap()),
            p2p_enabled_zones: [zone.clone()].into_iter().collect(),
            ..client::Config::default()
        };
        let node = Node::new(NodeConfig::with_client(client), Rng::from_seed(2), Instant::ZERO);
        let (driver, handle, mut events) =
            Driver::new(node, TcpConnector::new(), NoPeers::default());
        let task = tokio::spawn(driver.run());
        handle.zone_changed(zone).await.unwrap();
        next_client_event(&mut events, |e| matches!(e, ClientEvent::SessionJoined { .. })).await;
        // LoadEndAck (0x007D): server only.
        let to_server = handle.game_send(vec![0x7D, 0x00]).await.unwrap();
        assert_eq!(to_server, [0x7D, 0x00]);
        assert_eq!(handle.stats().await.unwrap().packets_server, 1);
        handle.shutdown().await.unwrap();
        next_client_event(&mut events, |e| matches!(e, ClientEvent::Stopped { .. })).await;
        let node = tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
        assert_eq!(node.client().lifecycle(), client::Lifecycle::Closed);
        assert_eq!(handle.stats().await, Err(DriverStopped));
        let _ = stop_tx.send(());
        tokio::time::timeout(WAIT, server).await.unwrap().unwrap().unwrap();
    }
}
