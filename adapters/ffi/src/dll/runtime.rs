//! The background runtime of one instance: a tokio runtime owned by the handle (two worker
//! threads named `rop2p-runtime`) running the tokio client [`Driver`] over a [`TcpConnector`]
//! (`ws://` and `wss://`) and the WebRTC [`WebRtcTransport`]; a task that takes the driver's
//! events into the shared [`DllState`]; and one plain thread (`rop2p-events`) that calls the
//! integrator's callback, so a callback may call back into the library (the runtime's own
//! threads must never block on it).

use std::future::Future;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use ro_p2p_core::node::{Node, NodeConfig};
use ro_p2p_core::{Instant, Rng};
use ro_p2p_tokio::client::{Driver, NodeHandle, TcpConnector};
use ro_p2p_webrtc::{LinksConfig, WebRtcTransport};
use tokio::task::JoinHandle;

use super::state::Shared;
use crate::status::{Failure, RoP2pStatus};

/// Worker threads of the runtime.
pub const RUNTIME_WORKERS: usize = 2;
/// How long the runtime's remaining tasks get after the driver stopped.
const RUNTIME_SHUTDOWN_MS: u64 = 1_000;

/// A running background runtime.
pub(crate) struct Background {
    runtime: Option<tokio::runtime::Runtime>,
    /// The driver's handle: the node is reached only through it.
    pub node: NodeHandle,
    driver: Option<JoinHandle<Node>>,
    pump: Option<JoinHandle<()>>,
    wake: Option<mpsc::Sender<()>>,
    events_thread: Option<std::thread::JoinHandle<()>>,
}

/// What [`Background::stop`] saw.
pub(crate) enum Stopped {
    /// The node left its session and the driver returned in time.
    Cleanly,
    /// The bound passed; the driver was aborted.
    TimedOut,
}

impl Background {
    /// Starts the runtime, the driver for a node built from `config` and the event pump.
    pub fn start(
        config: NodeConfig,
        seed: [u8; 32],
        links: LinksConfig,
        shared: Arc<Shared>,
    ) -> Result<Background, Failure> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(RUNTIME_WORKERS)
            .thread_name("rop2p-runtime")
            .enable_all()
            .build()
            .map_err(|e| Failure::new(RoP2pStatus::ErrRuntime, format!("runtime: {e}")))?;
        let (wake, woken) = mpsc::channel::<()>();
        let deliverer = shared.clone();
        let events_thread = std::thread::Builder::new()
            .name("rop2p-events".into())
            .spawn(move || {
                while woken.recv().is_ok() {
                    deliverer.deliver();
                }
            })
            .map_err(|e| Failure::new(RoP2pStatus::ErrRuntime, format!("events thread: {e}")))?;
        let _entered = runtime.enter();
        let node = Node::new(config, Rng::from_entropy_bytes(seed), Instant::ZERO);
        let transport = WebRtcTransport::new(links);
        let (driver, handle, mut events) = Driver::new(node, TcpConnector::new(), transport);
        let driver = driver.with_game_sink(super::state::game_sink(shared.clone()));
        let driver = runtime.spawn(driver.run());
        let pump_wake = wake.clone();
        let pump = runtime.spawn(async move {
            while let Some(event) = events.recv().await {
                shared.lock().on_driver_event(event);
                let _ = pump_wake.send(());
            }
        });
        drop(_entered);
        Ok(Background {
            runtime: Some(runtime),
            node: handle,
            driver: Some(driver),
            pump: Some(pump),
            wake: Some(wake),
            events_thread: Some(events_thread),
        })
    }

    /// Runs `f` to completion on the runtime from the caller's thread. Refused from inside a
    /// tokio runtime (blocking there would stall it).
    pub fn block_on<F: Future>(&self, f: F) -> Result<F::Output, Failure> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(Failure::new(
                RoP2pStatus::ErrRuntime,
                "called from inside a tokio runtime; call from the game's own threads",
            ));
        }
        let runtime = self
            .runtime
            .as_ref()
            .ok_or_else(|| Failure::new(RoP2pStatus::ErrClosed, "the runtime has stopped"))?;
        Ok(runtime.block_on(f))
    }

    /// Asks the node to leave its session, waits up to `bound` for the driver to return
    /// (aborting it after), shuts the runtime down and ends the events thread. Idempotent.
    pub fn stop(&mut self, bound: Duration) -> Stopped {
        let Some(runtime) = self.runtime.take() else { return Stopped::Cleanly };
        let node = self.node.clone();
        let driver = self.driver.take();
        let pump = self.pump.take();
        let aborts: Vec<_> = driver
            .iter()
            .map(JoinHandle::abort_handle)
            .chain(pump.iter().map(JoinHandle::abort_handle))
            .collect();
        let outcome = runtime.block_on(async move {
            tokio::time::timeout(bound, async move {
                let _ = node.shutdown().await;
                if let Some(driver) = driver {
                    let _ = driver.await;
                }
                // The pump ends when the driver's event channel closes.
                if let Some(pump) = pump {
                    let _ = pump.await;
                }
            })
            .await
        });
        let stopped = match outcome {
            Ok(()) => Stopped::Cleanly,
            Err(_) => {
                for abort in aborts {
                    abort.abort();
                }
                Stopped::TimedOut
            }
        };
        runtime.shutdown_timeout(Duration::from_millis(RUNTIME_SHUTDOWN_MS));
        self.wake = None;
        if let Some(thread) = self.events_thread.take() {
            // A callback that stops the instance runs on that thread: it cannot join itself.
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
        stopped
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if tokio::runtime::Handle::try_current().is_err() {
            self.stop(Duration::from_millis(RUNTIME_SHUTDOWN_MS));
        } else if let Some(runtime) = self.runtime.take() {
            // Inside a runtime a runtime cannot be dropped with a wait.
            runtime.shutdown_background();
        }
    }
}
