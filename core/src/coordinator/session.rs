//! Sessions, their seats, and the host election.
//!
//! A session belongs to one zone and holds up to `max_players_per_session` seats in join order.
//! A seat belongs to an identity; it is live while a connection is attached and in grace after
//! that connection went away, until the identity comes back or the grace ends. The host is
//! elected among live seats whose capabilities meet [`HostRequirements`].

use crate::time::Instant;
use crate::wire::{Capabilities, PeerId, SessionId, SessionKey, Zone};

use super::ConnId;
use super::config::HostRequirements;

/// One identity's place in a session.
#[derive(Clone, Debug)]
pub(crate) struct Seat {
    /// Whose seat.
    pub(crate) peer: PeerId,
    /// Whether a connection holds it or it waits for its identity to come back.
    pub(crate) state: SeatState,
    /// The connection that last received `session-joined` for this seat; a join on any other
    /// connection is a resume.
    pub(crate) announced_to: Option<ConnId>,
    /// The machine reported for host election.
    pub(crate) capabilities: Option<Capabilities>,
}

/// A seat's state, named for what it waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SeatState {
    /// A live connection holds the seat.
    Live(ConnId),
    /// The connection went away; the seat waits for the identity to return until `until`.
    AwaitingReconnect {
        /// When the grace ends.
        until: Instant,
    },
}

impl Seat {
    /// The live connection, if any.
    pub(crate) fn conn(&self) -> Option<ConnId> {
        match self.state {
            SeatState::Live(conn) => Some(conn),
            SeatState::AwaitingReconnect { .. } => None,
        }
    }
}

/// One session of a zone.
#[derive(Clone, Debug)]
pub(crate) struct Session {
    pub(crate) id: SessionId,
    pub(crate) zone: Zone,
    /// Seats in join order.
    pub(crate) seats: Vec<Seat>,
    pub(crate) host: Option<PeerId>,
    pub(crate) created_at: Instant,
    pub(crate) key: SessionKey,
}

impl Session {
    /// The seat of `peer`.
    pub(crate) fn seat(&self, peer: &PeerId) -> Option<&Seat> {
        self.seats.iter().find(|s| &s.peer == peer)
    }

    /// The seat of `peer`, mutably.
    pub(crate) fn seat_mut(&mut self, peer: &PeerId) -> Option<&mut Seat> {
        self.seats.iter_mut().find(|s| &s.peer == peer)
    }

    /// Live connections of the session, in join order, except `except`.
    pub(crate) fn live_conns_except(&self, except: Option<ConnId>) -> Vec<ConnId> {
        self.seats.iter().filter_map(Seat::conn).filter(|c| Some(*c) != except).collect()
    }

    /// Re-runs the election; returns the new host when it changed.
    pub(crate) fn elect(&mut self, req: &HostRequirements) -> Option<Option<PeerId>> {
        let next = elect(&self.seats, self.host.as_ref(), req);
        if next != self.host {
            self.host = next.clone();
            Some(next)
        } else {
            None
        }
    }
}

/// Whether a machine meets every minimum.
pub(crate) fn qualifies(caps: &Capabilities, req: &HostRequirements) -> bool {
    caps.cpu_cores >= req.min_cpu_cores
        && caps.cpu_mhz >= req.min_cpu_mhz
        && caps.memory_mb >= req.min_memory_mb
        && caps.bandwidth_mbps >= req.min_bandwidth_mbps
        && caps.latency_ms <= req.max_latency_ms
}

/// The deterministic, sticky election: the current host stays while it is live and qualifies;
/// otherwise the best live qualifying seat by (cores x MHz desc, memory desc, bandwidth desc,
/// latency asc, join order asc).
pub(crate) fn elect(
    seats: &[Seat],
    current: Option<&PeerId>,
    req: &HostRequirements,
) -> Option<PeerId> {
    let eligible =
        |s: &&Seat| s.conn().is_some() && s.capabilities.is_some_and(|c| qualifies(&c, req));
    if let Some(cur) = current
        && seats.iter().filter(eligible).any(|s| &s.peer == cur)
    {
        return Some(cur.clone());
    }
    seats
        .iter()
        .enumerate()
        .filter(|(_, s)| eligible(s))
        .filter_map(|(order, s)| s.capabilities.map(|c| (order, s, c)))
        .min_by_key(|(order, _, c)| {
            let compute = u64::from(c.cpu_cores) * u64::from(c.cpu_mhz);
            (
                core::cmp::Reverse(compute),
                core::cmp::Reverse(c.memory_mb),
                core::cmp::Reverse(c.bandwidth_mbps),
                c.latency_ms,
                *order,
            )
        })
        .map(|(_, s, _)| s.peer.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seat(name: &str, conn: Option<u64>, caps: Option<(u32, u32, u32, u32, u32)>) -> Seat {
        Seat {
            peer: PeerId::new(name).unwrap(),
            state: match conn {
                Some(c) => SeatState::Live(ConnId(c)),
                None => SeatState::AwaitingReconnect { until: Instant::ZERO },
            },
            announced_to: None,
            capabilities: caps.map(|(a, b, c, d, e)| Capabilities {
                cpu_cores: a,
                cpu_mhz: b,
                memory_mb: c,
                bandwidth_mbps: d,
                latency_ms: e,
            }),
        }
    }

    #[test]
    fn election_prefers_compute_then_memory_then_join_order_and_skips_unqualified() {
        let req = HostRequirements::default();
        let seats = vec![
            seat("weak", Some(1), Some((2, 2000, 4096, 50, 10))),
            seat("a", Some(2), Some((4, 3000, 8192, 100, 50))),
            seat("b", Some(3), Some((4, 3000, 16384, 100, 50))),
            seat("c", Some(4), Some((4, 3000, 16384, 100, 50))),
            seat("gone", None, Some((16, 5000, 65536, 1000, 1))),
            seat("laggy", Some(5), Some((16, 5000, 65536, 1000, 101))),
        ];
        assert_eq!(elect(&seats, None, &req), Some(PeerId::new("b").unwrap()));
        // Sticky: a qualifying live host stays even when a better one exists.
        let a = PeerId::new("a").unwrap();
        assert_eq!(elect(&seats, Some(&a), &req), Some(a));
        // A host that went into grace is replaced.
        let gone = PeerId::new("gone").unwrap();
        assert_eq!(elect(&seats, Some(&gone), &req), Some(PeerId::new("b").unwrap()));
        assert_eq!(elect(&seats[..1], None, &req), None);
    }

    #[test]
    fn election_ties_on_compute_and_memory_break_on_bandwidth_then_latency() {
        let req = HostRequirements::default();
        let seats = vec![
            seat("slow-link", Some(1), Some((8, 4000, 16384, 100, 10))),
            seat("far", Some(2), Some((8, 4000, 16384, 300, 90))),
            seat("near", Some(3), Some((8, 4000, 16384, 300, 30))),
            seat("near-too", Some(4), Some((8, 4000, 16384, 300, 30))),
        ];
        assert_eq!(elect(&seats, None, &req), Some(PeerId::new("near").unwrap()));
        assert_eq!(elect(&seats[..2], None, &req), Some(PeerId::new("far").unwrap()));
        // 4 x 8000 beats 8 x 3500 on compute even with less of everything else.
        let compute = vec![
            seat("many-cores", Some(1), Some((8, 3500, 65536, 1000, 1))),
            seat("fast-cores", Some(2), Some((4, 8000, 8192, 100, 99))),
        ];
        assert_eq!(elect(&compute, None, &req), Some(PeerId::new("fast-cores").unwrap()));
    }
}
