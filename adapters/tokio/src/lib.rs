//! `ro-p2p-tokio`: tokio adapters of ro-p2p (coordinator server, client driver, tools).
//!
//! [`server`] puts the sans-IO coordinator core on the network: axum WebSocket signaling, the
//! REST API, Prometheus metrics, JWT authentication, TURN REST credentials and TLS. The binary
//! `ro-p2p-coordinator` and the load generator `ro-p2p-loadgen` are thin shells around it; the
//! simulation runs the same [`server::Service`] on turmoil's listener. [`client`] drives the
//! client library's [`ro_p2p_core::node::Node`] over any stream and any peer transport.
//! [`cluster`] is what several instances share to serve one world (zone leases, a bus, seat
//! records, world-wide views), on Redis or in memory; the server uses it in cluster mode.

pub mod client;
pub mod cluster;
pub mod server;
