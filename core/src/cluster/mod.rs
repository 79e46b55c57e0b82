//! Cluster mode: several coordinator instances sharing one store serve one world.
//!
//! Each instance is an [`Instance`]: a sans-IO machine that owns one
//! [`Coordinator`](crate::coordinator::Coordinator) and decides everything cluster mode
//! decides: which zones it serves (leases taken on demand, renewed at half-life, served until
//! their end minus a drift margin, given up when fenced), where each connection's frames go
//! (its own core or the zone's owner over the bus), what the owner sends back, which seat
//! records to write (fenced by the lease; a disconnected player's with its grace, which the
//! store keeps as the record's TTL) and restore after a takeover (with no more grace than the
//! store kept), and when to retry a `detach` an owner did not hear or replay a `join` into a
//! new core. It does no I/O: the adapter runs the [`StoreOp`]s it outputs against the store
//! (Redis, or the in-memory one) and feeds each [`StoreReply`] back with its [`OpId`].
//!
//! What the store holds and the bus carries ([`Envelope`], [`SeatRecord`]) is the same JSON the
//! tokio adapter has written since cluster mode exists, so instances of both shapes interoperate
//! (one difference: an owner no longer forwards its core's `welcome` for a connection held
//! elsewhere, since the holder's own core already sent one; older holders dropped it anyway).
//! A seat's grace is kept beside its record, not in it, so older instances still read the
//! records (and give a disconnected seat a whole timeout, as they always did).

mod instance;
mod seats;
mod types;

pub use instance::{
    Config, FRAMES_QUEUED_MAX, Input, Instance, LostBecause, Output, REMOTE_CONN_BASE,
};
pub use seats::{SeatSync, SeatWrite};
pub use types::{
    Acquired, ENVELOPE_BYTES_MAX, Envelope, EnvelopeError, INSTANCE_ID_BYTES_MAX, InstanceId,
    InstanceIdError, Lease, LeaseHolder, OpId, SeatRecord, SentKind, StoreFailure, StoreOp,
    StoreReply, StoredSeat,
};

#[cfg(test)]
mod tests;
