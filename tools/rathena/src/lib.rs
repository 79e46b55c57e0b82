//! `ro-p2p-rathena`: a real, unmodified rAthena in the loop of ro-p2p's tests.
//!
//! Everything else in the workspace checks ro-p2p against its own models of Ragnarok Online.
//! This crate runs the real thing: [`harness`] starts a private MariaDB and rAthena's login,
//! char and map servers (from `../shared/rathena` or a source tree) on free local ports, and
//! [`bot`] is a headless game client that logs in, makes a character, enters the map and walks,
//! chats, emotes, talks to NPCs and sends `@` commands, recording every packet it receives. The
//! packet layouts it speaks come from `ro_p2p_core::gate` (login, char, map enter),
//! `ro_p2p_core::packet` (map ids, obfuscation) and `ro_p2p_core::render` (server framing), so
//! the bot also proves those against the server. `ro-p2p proxy`'s end-to-end tests drive both.

pub mod bot;
pub mod harness;
pub mod testing;

pub use bot::{Bot, BotError, Packet};

pub use harness::{Harness, HarnessConfig, HarnessError, RathenaSource, Server, start_or_skip};
