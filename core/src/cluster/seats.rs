//! Keeping a zone's seat records in the store in step with the owner's core.
//!
//! After each drain of its core, a cluster-mode owner compares the sessions of the zones it owns
//! ([`SessionView`]s) with what it last wrote, and writes only the difference
//! ([`SeatSync::diff`]): a put for every new or changed seat, a remove for every seat gone. The
//! writes are fenced by the zone's lease. After a takeover the new owner starts from what the
//! store holds ([`SeatSync::adopt`]); after a failed write it does the same once the store is
//! back, so no remove is forgotten.

use std::collections::BTreeMap;

use crate::coordinator::SessionView;
use crate::wire::{Capabilities, PeerId, Zone};

use super::types::{InstanceId, SeatRecord};

/// One write to make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SeatWrite {
    /// Put this record.
    Put(SeatRecord),
    /// Remove this peer's seat from the zone.
    Remove {
        /// The zone.
        zone: Zone,
        /// The peer.
        peer: PeerId,
    },
}

/// What was last written, per zone.
#[derive(Debug, Default)]
pub struct SeatSync {
    written: BTreeMap<Zone, BTreeMap<PeerId, SeatRecord>>,
}

impl SeatSync {
    /// The seat records `sessions` (all of `zone`) stand for. `capabilities` and `holder` say
    /// what each peer reported and which instance holds its connection, if known.
    pub fn records(
        zone: &Zone,
        sessions: &[SessionView],
        capabilities: impl Fn(&PeerId) -> Option<Capabilities>,
        holder: impl Fn(&PeerId) -> Option<InstanceId>,
    ) -> BTreeMap<PeerId, SeatRecord> {
        let mut out = BTreeMap::new();
        for s in sessions.iter().filter(|s| &s.zone == zone) {
            for peer in &s.members {
                let connected = s.connected.contains(peer);
                out.insert(
                    peer.clone(),
                    SeatRecord {
                        peer_id: peer.clone(),
                        session_id: s.session_id.clone(),
                        zone: zone.clone(),
                        capabilities: capabilities(peer),
                        host: s.host.as_ref() == Some(peer),
                        connected_via: if connected { holder(peer) } else { None },
                        key_epoch: s.key_epoch,
                    },
                );
            }
        }
        out
    }

    /// The writes that bring the store from what was last written to `now` (from
    /// [`SeatSync::records`]), in peer order, removes first; records them as written.
    pub fn diff(&mut self, zone: &Zone, now: BTreeMap<PeerId, SeatRecord>) -> Vec<SeatWrite> {
        let before = self.written.remove(zone).unwrap_or_default();
        let mut writes: Vec<SeatWrite> = before
            .keys()
            .filter(|p| !now.contains_key(*p))
            .map(|p| SeatWrite::Remove { zone: zone.clone(), peer: p.clone() })
            .collect();
        writes.extend(
            now.iter()
                .filter(|(p, r)| before.get(*p) != Some(*r))
                .map(|(_, r)| SeatWrite::Put(r.clone())),
        );
        if !now.is_empty() {
            self.written.insert(zone.clone(), now);
        }
        writes
    }

    /// Starts `zone` from what the store holds (after a takeover, or a failed write).
    pub fn adopt(&mut self, zone: &Zone, stored: Vec<SeatRecord>) {
        let map: BTreeMap<PeerId, SeatRecord> = stored
            .into_iter()
            .filter(|s| &s.zone == zone)
            .map(|s| (s.peer_id.clone(), s))
            .collect();
        if map.is_empty() {
            self.written.remove(zone);
        } else {
            self.written.insert(zone.clone(), map);
        }
    }

    /// Forgets `zone` (lost to another owner: it writes from now on).
    pub fn forget(&mut self, zone: &Zone) {
        self.written.remove(zone);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Instant;
    use crate::wire::SessionId;

    fn peer(s: &str) -> PeerId {
        PeerId::new(s).unwrap()
    }

    fn view(
        zone: &str,
        session: &str,
        members: &[&str],
        connected: &[&str],
        host: &str,
    ) -> SessionView {
        SessionView {
            session_id: SessionId::new(session).unwrap(),
            zone: Zone::new(zone).unwrap(),
            members: members.iter().map(|m| peer(m)).collect(),
            connected: connected.iter().map(|m| peer(m)).collect(),
            host: Some(peer(host)),
            max_players: 8,
            created_at: Instant::from_millis(0),
            key_epoch: 1,
        }
    }

    #[test]
    fn only_changed_seats_are_written_and_gone_ones_removed() {
        let z = Zone::new("prontera").unwrap();
        let a = InstanceId::new("a").unwrap();
        let caps = |p: &PeerId| (p.as_str() == "alice").then(Capabilities::default);
        let via = |_: &PeerId| Some(a.clone());
        let mut sync = SeatSync::default();

        let first = [
            view("prontera", "s1", &["alice", "bob"], &["alice", "bob"], "alice"),
            view("geffen", "s9", &["zed"], &["zed"], "zed"),
        ];
        let writes = sync.diff(&z, SeatSync::records(&z, &first, caps, via));
        let puts: Vec<_> = writes
            .iter()
            .map(|w| match w {
                SeatWrite::Put(r) => (
                    r.peer_id.to_string(),
                    r.host,
                    r.capabilities.is_some(),
                    r.connected_via.is_some(),
                ),
                SeatWrite::Remove { .. } => panic!("nothing to remove yet"),
            })
            .collect();
        assert_eq!(
            puts,
            [("alice".to_owned(), true, true, true), ("bob".to_owned(), false, false, true)],
            "other zones are not ours"
        );

        // Nothing changed: nothing to write.
        assert!(sync.diff(&z, SeatSync::records(&z, &first, caps, via)).is_empty());

        // alice leaves, bob becomes host and disconnects (in grace), carol joins.
        let second = [view("prontera", "s1", &["bob", "carol"], &["carol"], "bob")];
        let writes = sync.diff(&z, SeatSync::records(&z, &second, caps, via));
        assert_eq!(writes.len(), 3);
        assert_eq!(writes[0], SeatWrite::Remove { zone: z.clone(), peer: peer("alice") });
        let SeatWrite::Put(bob) = &writes[1] else { panic!() };
        assert!(bob.host && bob.connected_via.is_none());
        let SeatWrite::Put(carol) = &writes[2] else { panic!() };
        assert_eq!(carol.peer_id, peer("carol"));

        // A new owner adopting the stored seats writes nothing for unchanged ones.
        let stored: Vec<SeatRecord> =
            SeatSync::records(&z, &second, caps, via).into_values().collect();
        let mut next = SeatSync::default();
        next.adopt(&z, stored);
        assert!(next.diff(&z, SeatSync::records(&z, &second, caps, via)).is_empty());
        assert_eq!(next.diff(&z, BTreeMap::new()).len(), 2, "an emptied zone removes every seat");
    }
}
