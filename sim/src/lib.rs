//! `ro-p2p-sim`: deterministic simulation of ro-p2p under turmoil.
//!
//! One seed gives one [`plan::Plan`] (packet version, clients, NAT per pair, routing policy,
//! fault plan) and one world: the real coordinator service ([`hosts::coordinator`]) on
//! turmoil's TCP listener, a stub rAthena map server that decodes every byte with rAthena's
//! rules, a relay, and one host per game client ([`client::client_host`]) running the core
//! client over a real WebSocket, the real packet framer and router, and sealed peer frames over
//! simulated links at the datagram boundary ([`peer`]). [`run::run_seed`] steps it through a
//! safety phase with faults and a liveness phase healed, and runs the [`check`]ers after every
//! step. Everything observable goes into the [`record`]; the same seed gives the same trace.
//! A seed may derive several coordinators instead of one ([`cluster`]): each runs the real
//! service in cluster mode on one shared in-memory store, with store faults in the plan.
//! How to run it, and what is and is not simulated: `docs/simulation.md`.
//!
//! The modules are layered, each using only those below it (`tests/tests/no_import_cycles.rs`
//! keeps it so): [`plan`], [`game`], [`peer`] and [`traffic`] at the bottom; [`address`] (ports,
//! URLs, instance ids); [`coverage`]; [`record`] (the trace and ground truth, store events
//! included); [`hosts`] and [`transport`]; [`cluster`] and [`client`]; [`check`]; [`run`] on top.

pub mod address;
pub mod check;
pub mod client;
pub mod cluster;
pub mod coverage;
pub mod game;
pub mod hosts;
pub mod peer;
pub mod plan;
pub mod record;
pub mod run;
pub mod traffic;
pub mod transport;

pub use plan::{Options, Plan};
pub use run::{Outcome, run_seed};
