//! `ro-p2p-core`: the sans-IO heart of ro-p2p.
//!
//! Private Ragnarok Online servers (rAthena) fan every player's walking, chat and emotes out to
//! everyone nearby. ro-p2p lets players send that social traffic to each other over WebRTC data
//! channels while everything authoritative stays on the server. This crate holds every protocol
//! decision and no I/O: the signaling [`wire`] format, the [`coordinator`] and [`client`] state
//! machines, the rAthena [`packet`] framer and classifier with its [`route`] policy, sealed peer
//! frames ([`seal`]) and [`config`] parsing; [`node`] composes the client side into the client
//! library, and [`render`] draws peers into the server's stream on the way back to the game.
//! Adapters (tokio, WebRTC, C ABI, the turmoil simulation) move bytes and time in and out; see
//! [`sansio`] for the contract they follow.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod client;
pub mod cluster;
pub mod config;
pub mod coordinator;
pub mod fuzz;
pub mod gate;
pub mod node;
pub mod packet;
pub mod render;
pub mod rng;
pub mod route;
pub mod sansio;
pub mod seal;
pub mod time;
pub mod wire;

pub use rng::Rng;
pub use sansio::SansIo;
pub use time::Instant;
