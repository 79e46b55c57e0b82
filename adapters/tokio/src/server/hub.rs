//! The single owner of the coordinator core.
//!
//! One task owns the [`Coordinator`] and everything that changes with it (the outbound queue of
//! each connection, the service's metrics). Connection tasks and REST handlers talk to it only
//! through [`Event`]s on one bounded channel; REST queries carry a oneshot for the reply. After
//! every input the hub drains the core's outputs into the per-connection queues with
//! `try_send`: a full queue closes that client with `slow-consumer` and nobody else waits.
//! Between inputs it sleeps until the core's `poll_timeout`. No lock exists, so none is held
//! across an await.
//!
//! Time: the hub maps `tokio::time::Instant` (simulated under turmoil) onto the core's
//! millisecond [`CoreInstant`] relative to the instant the hub started.

use std::collections::BTreeMap;

use axum::extract::ws::Utf8Bytes;
use ro_p2p_core::cluster::SentKind;
use ro_p2p_core::coordinator::{ConnId, Coordinator, Input, Output};
use ro_p2p_core::wire::{ErrorCode, ServerMessage, encode_server};
use ro_p2p_core::{Instant as CoreInstant, SansIo};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::audit::Audit;
use super::conns::{ConnHandle, Event, Query, Queued, queue_text};
use super::health::Health;
use super::metrics::{self, ServiceMetrics};

/// Most events handled per wake-up of the hub before it checks its timer again.
const EVENT_BATCH_MAX: usize = 64;

/// The task state that owns the core.
pub(crate) struct Hub {
    core: Coordinator,
    conns: BTreeMap<ConnId, ConnHandle>,
    metrics: ServiceMetrics,
    epoch: Instant,
    shutting_down: bool,
    audit: Audit,
}

impl Hub {
    pub(crate) fn new(core: Coordinator) -> Self {
        Hub {
            core,
            conns: BTreeMap::new(),
            metrics: ServiceMetrics::default(),
            epoch: Instant::now(),
            shutting_down: false,
            audit: Audit::default(),
        }
    }

    fn now(&self) -> CoreInstant {
        let ms = Instant::now().saturating_duration_since(self.epoch).as_millis();
        CoreInstant::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
    }

    fn to_tokio(&self, at: CoreInstant) -> Instant {
        self.epoch + std::time::Duration::from_millis(at.as_millis().min(u64::MAX / 4))
    }

    /// Runs until every sender of `events` is gone.
    pub(crate) async fn run(mut self, mut events: mpsc::Receiver<Event>) {
        let far = Instant::now() + std::time::Duration::from_secs(86_400 * 365);
        let sleep = tokio::time::sleep_until(far);
        tokio::pin!(sleep);
        let mut armed: Option<Instant> = None;
        loop {
            let wake = self.core.poll_timeout().map(|t| self.to_tokio(t));
            if wake != armed {
                sleep.as_mut().reset(wake.unwrap_or(far));
                armed = wake;
            }
            // Biased, so a simulated run replays exactly (an unbiased select draws from
            // tokio's unseeded RNG): the timer first, ready once per deadline, so it cannot
            // starve the events.
            tokio::select! {
                biased;
                () = &mut sleep, if armed.is_some() => {
                    armed = None;
                    let now = self.now();
                    self.core.handle_timeout(now);
                    self.drain(None);
                }
                ev = events.recv() => match ev {
                    Some(ev) => {
                        self.handle(ev);
                        // Under load more events are already queued: handle a batch before
                        // going back to the select and the timer (fewer wake-ups per event).
                        for _ in 1..EVENT_BATCH_MAX {
                            match events.try_recv() {
                                Ok(ev) => self.handle(ev),
                                Err(_) => break,
                            }
                        }
                    }
                    None => break,
                },
            }
        }
    }

    fn handle(&mut self, ev: Event) {
        match ev {
            Event::Connected { conn, identity, ice_servers, origin, handle } => {
                self.metrics.connections_accepted += 1;
                self.conns.insert(conn, handle);
                self.audit.connected(conn, origin);
                let now = self.now();
                let input = Input::Connected { conn, identity, ice_servers, origin };
                self.core.handle_input(now, input);
                self.drain(None);
            }
            Event::Frame { conn, bytes, arrived } => {
                if !self.conns.contains_key(&conn) {
                    return; // already closed by us; the socket task has not noticed yet
                }
                let now = self.now();
                self.core.handle_input(now, Input::Frame { conn, bytes });
                self.drain(Some(arrived));
            }
            Event::Binary { conn } | Event::Control { conn } => {
                if !self.conns.contains_key(&conn) {
                    return;
                }
                let now = self.now();
                let input = match ev {
                    Event::Binary { .. } => Input::Binary { conn },
                    _ => Input::Control { conn },
                };
                self.core.handle_input(now, input);
                self.drain(None);
            }
            Event::Disconnected { conn } => {
                // Whether we or the client closed it, the core learns once.
                self.conns.remove(&conn);
                let now = self.now();
                self.core.handle_input(now, Input::Disconnected { conn });
                self.drain(None);
                self.audit.disconnected(conn);
            }
            Event::Revoke { conn, reason } => {
                if !self.conns.contains_key(&conn) {
                    return;
                }
                let now = self.now();
                self.core.handle_input(now, Input::Revoke { conn, reason });
                self.drain(None);
            }
            Event::Rejected { code } => self.metrics.reject(code),
            Event::Query(q) => self.answer(q),
            Event::Shutdown => {
                self.shutting_down = true;
                let now = self.now();
                self.core.handle_input(now, Input::Shutdown);
                self.drain(None);
            }
        }
    }

    fn answer(&mut self, q: Query) {
        // A dropped receiver means the HTTP client went away; nothing to do.
        match q {
            Query::Health(tx) => {
                let _ = tx.send(self.health());
            }
            Query::Sessions(tx) => {
                let _ = tx.send(self.core.sessions());
            }
            Query::Session(id, tx) => {
                let _ = tx.send(self.core.session(&id));
            }
            Query::Discover(zone, tx) => {
                let _ = tx.send(self.core.discover(&zone));
            }
            Query::Placement(zone, tx) => {
                let _ = tx.send(self.core.placement(&zone));
            }
            Query::Metrics(tx) => {
                let stats = self.core.stats();
                let uptime_s = self.now().as_millis() / 1000;
                let _ =
                    tx.send(metrics::render(&stats, &self.metrics, uptime_s, self.shutting_down));
            }
        }
    }

    fn health(&self) -> Health {
        let stats = self.core.stats();
        Health {
            status: if self.shutting_down { "shutting-down" } else { "ok" },
            uptime_s: self.now().as_millis() / 1000,
            connections: self.core.connection_count(),
            connections_pending_auth: 0, // filled in by the REST handler
            sessions: stats.sessions_per_zone.values().sum(),
            version: env!("CARGO_PKG_VERSION"),
            auth: None,
            cluster: None,
        }
    }

    /// Executes the core's outputs; `arrived` is when the triggering frame arrived, for the
    /// signaling latency of relays.
    fn drain(&mut self, arrived: Option<Instant>) {
        while let Some(out) = self.core.poll_output() {
            match out {
                Output::Send { conn, msg } => {
                    let kind = SentKind::of(&msg);
                    if kind == SentKind::SessionJoined {
                        self.audit.identify(conn, self.core.peer_of(conn));
                    }
                    self.audit.sent(conn, &msg);
                    let relay = kind == SentKind::Relay;
                    if self.send(conn, &msg)
                        && relay
                        && let Some(arrived) = arrived
                    {
                        self.metrics.signaling_latency.observe(arrived.elapsed());
                    }
                }
                Output::Close { conn, code, reason } => {
                    if let Some(handle) = self.conns.remove(&conn) {
                        self.audit.closing(conn, code, &reason);
                        handle.close(code, reason);
                    }
                }
            }
        }
    }

    /// Queues `msg` for `conn`; a full queue closes it as a slow consumer. Returns whether the
    /// message was queued.
    fn send(&mut self, conn: ConnId, msg: &ServerMessage) -> bool {
        if !self.conns.contains_key(&conn) {
            return false;
        }
        let text = Utf8Bytes::from(encode_server(msg));
        match queue_text(&mut self.conns, conn, text) {
            Queued::Yes => true,
            Queued::Gone => false,
            Queued::SlowConsumer => {
                self.metrics.reject(ErrorCode::SlowConsumer);
                let now = self.now();
                self.core.handle_input(now, Input::Disconnected { conn });
                // The core's reaction (peer-left to the others, ...) is drained by the caller's
                // loop, which is still running.
                false
            }
        }
    }
}
