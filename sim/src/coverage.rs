//! Rare-event coverage ("sometimes" assertions): which of the rare things a run is meant to
//! reach did this seed reach. A seed that passes every checker without ever migrating a host
//! or resuming a seat proves little about those paths; a sweep counts, per [`Rare`] event, how
//! many seeds reached it ([`Report`]) and fails when one is reached too seldom
//! ([`Report::shortfalls`]). The hosts and the runner feed [`Coverage`] as things happen; it is
//! part of the [`crate::record::Recorder`] and never of the trace, so the trace hash is
//! unchanged by it.

use std::collections::{BTreeMap, BTreeSet};

use ro_p2p_core::client::{ClientEvent, LinkHealth};

use crate::address::host_of;

/// A rare thing a run is meant to reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rare {
    /// A client saw its session's host change from one peer to another
    /// (`ClientEvent::HostChanged`).
    HostMigrated,
    /// A client was seated again with its seat kept through a reconnect (after a crash or a
    /// lost coordinator connection: `SessionJoined { resumed: true }`).
    SeatResumed,
    /// A frame held for a key not yet known was opened when the key arrived
    /// (`Node::opened_after_key`).
    OpenedAfterKey,
    /// Cluster mode: a zone's lease went to another coordinator than the one that held it
    /// (`StoreEvent::Granted`).
    ZoneHandover,
    /// A link to a peer came up again after an earlier link to the same peer closed or failed.
    PeerRelinked,
    /// A client fell back to the map server (`ClientEvent::Fallback`) and later joined a
    /// session again.
    FallbackRecovered,
    /// A peers-only chat line or emote was not confirmed by every peer in time and went to the
    /// map server late (`DriverEvent::LateServerCopy`).
    LateServerCopy,
}

impl Rare {
    /// Every listed event, in report order.
    pub const ALL: [Rare; 7] = [
        Rare::HostMigrated,
        Rare::SeatResumed,
        Rare::OpenedAfterKey,
        Rare::ZoneHandover,
        Rare::PeerRelinked,
        Rare::FallbackRecovered,
        Rare::LateServerCopy,
    ];

    /// Its name in reports and in a sweep child's summary line.
    pub fn as_str(self) -> &'static str {
        match self {
            Rare::HostMigrated => "host-migrated",
            Rare::SeatResumed => "seat-resumed",
            Rare::OpenedAfterKey => "opened-after-key",
            Rare::ZoneHandover => "zone-handover",
            Rare::PeerRelinked => "peer-relinked",
            Rare::FallbackRecovered => "fallback-recovered",
            Rare::LateServerCopy => "late-server-copy",
        }
    }

    /// The event named `name` ([`Rare::as_str`]).
    pub fn from_name(name: &str) -> Option<Rare> {
        Rare::ALL.into_iter().find(|r| r.as_str() == name)
    }

    /// Whether a world with `coordinators` instances can reach it at all (0: derived per seed,
    /// some seeds run a cluster). A zone handover needs two coordinators.
    pub fn applies(self, coordinators: usize) -> bool {
        self != Rare::ZoneHandover || coordinators != 1
    }
}

/// What one run reached, and the little state needed to tell a rare event from a common one.
#[derive(Debug, Default)]
pub struct Coverage {
    /// Times each event was reached.
    reached: BTreeMap<Rare, u64>,
    /// Per client: the session host it knows.
    hosts: BTreeMap<String, Option<String>>,
    /// Clients fallen back and not joined since.
    fallen_back: BTreeSet<String>,
    /// (client, peer) pairs whose link closed.
    closed_links: BTreeSet<(String, String)>,
    /// Per zone: the coordinator host whose instance holds its lease.
    zone_owner: BTreeMap<String, String>,
}

impl Coverage {
    /// Counts one occurrence of `rare`.
    pub fn hit(&mut self, rare: Rare) {
        *self.reached.entry(rare).or_default() += 1;
    }

    /// A client's signaling event.
    pub fn client_event(&mut self, client: &str, event: &ClientEvent) {
        match event {
            ClientEvent::SessionJoined { host, resumed, .. } => {
                if *resumed {
                    self.hit(Rare::SeatResumed);
                }
                if self.fallen_back.remove(client) {
                    self.hit(Rare::FallbackRecovered);
                }
                self.hosts.insert(client.to_owned(), host.as_ref().map(ToString::to_string));
            }
            ClientEvent::HostChanged { host } => {
                let new = host.as_ref().map(ToString::to_string);
                let old = self.hosts.insert(client.to_owned(), new.clone()).flatten();
                if old.is_some() && new.is_some() && old != new {
                    self.hit(Rare::HostMigrated);
                }
            }
            ClientEvent::SessionLeft { .. } => {
                self.hosts.remove(client);
            }
            ClientEvent::Fallback { active: true } => {
                self.fallen_back.insert(client.to_owned());
            }
            ClientEvent::LinkHealthChanged { peer, health } => {
                let pair = (client.to_owned(), peer.to_string());
                match health {
                    LinkHealth::Closed => {
                        self.closed_links.insert(pair);
                    }
                    LinkHealth::Open if self.closed_links.remove(&pair) => {
                        self.hit(Rare::PeerRelinked);
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }

    /// Cluster mode: the store granted (or extended) `zone`'s lease to `instance`.
    pub fn granted(&mut self, zone: &str, instance: &str) {
        let host = host_of(instance).to_owned();
        if let Some(before) = self.zone_owner.insert(zone.to_owned(), host.clone())
            && before != host
        {
            self.hit(Rare::ZoneHandover);
        }
    }

    /// The events reached at least once.
    pub fn reached(&self) -> BTreeSet<Rare> {
        self.reached.iter().filter(|(_, n)| **n > 0).map(|(r, _)| *r).collect()
    }

    /// How many times `rare` was reached.
    pub fn count(&self, rare: Rare) -> u64 {
        self.reached.get(&rare).copied().unwrap_or(0)
    }
}

/// `reached` as one field of a summary line: names joined by `,`, or `-` for none.
pub fn to_field(reached: &BTreeSet<Rare>) -> String {
    if reached.is_empty() {
        return "-".to_owned();
    }
    reached.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(",")
}

/// The events named in a summary field ([`to_field`]); unknown names are ignored.
pub fn from_field(field: &str) -> BTreeSet<Rare> {
    field.split(',').filter_map(Rare::from_name).collect()
}

/// A sweep's coverage: per event, how many seeds reached it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Seeds counted.
    pub seeds: u64,
    /// Seeds that reached each event.
    pub reached_by: BTreeMap<Rare, u64>,
}

/// An event reached by too few seeds.
#[derive(Clone, Debug, PartialEq)]
pub struct Shortfall {
    /// The event.
    pub rare: Rare,
    /// Seeds that reached it.
    pub seeds: u64,
    /// Its share of the seeds, in percent.
    pub percent: f64,
}

impl Report {
    /// Counts one seed that reached `reached`.
    pub fn add(&mut self, reached: &BTreeSet<Rare>) {
        self.seeds += 1;
        for r in reached {
            *self.reached_by.entry(*r).or_default() += 1;
        }
    }

    /// The share of seeds that reached `rare`, in percent.
    pub fn percent(&self, rare: Rare) -> f64 {
        let n = self.reached_by.get(&rare).copied().unwrap_or(0);
        n as f64 * 100.0 / self.seeds.max(1) as f64
    }

    /// The events that apply to worlds of `coordinators` ([`Rare::applies`]) reached by fewer
    /// than `min_percent` % of the seeds.
    pub fn shortfalls(&self, min_percent: f64, coordinators: usize) -> Vec<Shortfall> {
        Rare::ALL
            .into_iter()
            .filter(|r| r.applies(coordinators))
            .map(|rare| Shortfall {
                rare,
                seeds: self.reached_by.get(&rare).copied().unwrap_or(0),
                percent: self.percent(rare),
            })
            .filter(|s| s.percent < min_percent)
            .collect()
    }

    /// One line per event: `name: N/M seeds (P %)`, events that cannot apply marked so.
    pub fn lines(&self, coordinators: usize) -> Vec<String> {
        Rare::ALL
            .into_iter()
            .map(|r| {
                let n = self.reached_by.get(&r).copied().unwrap_or(0);
                let na = if r.applies(coordinators) { "" } else { " (n/a: one coordinator)" };
                format!("{}: {n}/{} seeds ({:.1} %){na}", r.as_str(), self.seeds, self.percent(r))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_field_round_trips() {
        let all: BTreeSet<Rare> = Rare::ALL.into_iter().collect();
        assert_eq!(from_field(&to_field(&all)), all);
        assert_eq!(to_field(&BTreeSet::new()), "-");
        assert!(from_field("-").is_empty());
        let names: BTreeSet<&str> = Rare::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), Rare::ALL.len(), "names are distinct");
    }

    #[test]
    fn a_report_flags_events_below_the_threshold_only_where_they_apply() {
        let mut report = Report::default();
        let mut most: BTreeSet<Rare> = Rare::ALL.into_iter().collect();
        most.remove(&Rare::ZoneHandover);
        for _ in 0..99 {
            report.add(&most);
        }
        report.add(&[Rare::ZoneHandover].into_iter().collect());
        assert_eq!(report.seeds, 100);
        // One seed in 100 is exactly 1 %: not below it.
        assert!(report.shortfalls(1.0, 0).is_empty());
        let short = report.shortfalls(1.5, 0);
        assert_eq!(short.len(), 1);
        assert_eq!((short[0].rare, short[0].seeds), (Rare::ZoneHandover, 1));
        // One coordinator: a zone handover cannot happen, so it is not required.
        assert!(report.shortfalls(1.5, 1).is_empty());
        assert!(report.lines(1)[3].contains("n/a"), "{:?}", report.lines(1));
    }

    #[test]
    fn a_host_change_is_a_migration_only_from_one_host_to_another() {
        use ro_p2p_core::wire::PeerId;
        let peer = |s: &str| PeerId::new(s).expect("a valid peer id");
        let mut c = Coverage::default();
        c.client_event("client-1", &ClientEvent::HostChanged { host: Some(peer("client-2")) });
        assert_eq!(c.count(Rare::HostMigrated), 0, "no host known before");
        c.client_event("client-1", &ClientEvent::HostChanged { host: Some(peer("client-2")) });
        assert_eq!(c.count(Rare::HostMigrated), 0, "the same host");
        c.client_event("client-1", &ClientEvent::HostChanged { host: Some(peer("client-3")) });
        assert_eq!(c.count(Rare::HostMigrated), 1);
        let open = LinkHealth::Open;
        c.client_event(
            "client-1",
            &ClientEvent::LinkHealthChanged { peer: peer("client-2"), health: open },
        );
        assert_eq!(c.count(Rare::PeerRelinked), 0, "a first link is no relink");
        let closed = LinkHealth::Closed;
        c.client_event(
            "client-1",
            &ClientEvent::LinkHealthChanged { peer: peer("client-2"), health: closed },
        );
        c.client_event(
            "client-1",
            &ClientEvent::LinkHealthChanged { peer: peer("client-2"), health: open },
        );
        assert_eq!(c.count(Rare::PeerRelinked), 1);
        c.granted("prontera", "coordinator-1.0");
        c.granted("prontera", "coordinator-1.1");
        assert_eq!(c.count(Rare::ZoneHandover), 0, "the same coordinator restarted");
        c.granted("prontera", "coordinator-2.0");
        assert_eq!(c.count(Rare::ZoneHandover), 1);
        assert_eq!(
            c.reached(),
            [Rare::HostMigrated, Rare::PeerRelinked, Rare::ZoneHandover].into_iter().collect()
        );
    }
}
