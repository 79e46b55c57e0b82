//! The two tables a cluster-mode hub keeps to move frames between connections and cores.
//!
//! On the instance holding a connection, [`ConnZones`] says which zone each frame belongs to:
//! a `join` names it (and may move the connection to another zone, hence another owner); every
//! other frame follows the connection's current zone. On the zone's owner, [`RemoteConns`]
//! numbers connections held elsewhere for the local core, from [`REMOTE_CONN_BASE`] up, so they
//! never collide with the owner's own connections, and maps the core's outputs back to
//! (holder, connection).

use std::collections::BTreeMap;

use ro_p2p_core::coordinator::ConnId;
use ro_p2p_core::wire::{ClientMessage, Zone, decode_client};

use super::InstanceId;

/// Core connection numbers from here on stand for connections held by other instances; the
/// service numbers its own from 1 and never gets near.
pub const REMOTE_CONN_BASE: u64 = 1 << 62;

/// Where one client frame goes, as the holder sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameZone {
    /// A `join` into `zone`; `previous` is the zone the connection leaves, if it was elsewhere
    /// (its owner must be told the connection is gone).
    Joins {
        /// The zone joined.
        zone: Zone,
        /// The zone left, if any and different.
        previous: Option<Zone>,
    },
    /// Any other frame of a connection in `zone`.
    In(Zone),
    /// A frame before any `join`: the local core answers it (with `not-in-session` or a
    /// decoding error).
    Unjoined,
}

/// Holder side: the zone each local connection is in.
#[derive(Debug, Default)]
pub struct ConnZones {
    zones: BTreeMap<ConnId, Zone>,
}

impl ConnZones {
    /// Where `frame` from `conn` goes; a `join` moves the connection to its zone.
    pub fn route(&mut self, conn: ConnId, frame: &[u8]) -> FrameZone {
        // Only a join changes the zone; a frame that does not decode goes where the connection
        // is, and that zone's core answers the error.
        if let Ok(ClientMessage::Join { zone, .. }) = decode_client(frame) {
            let previous = self.zones.insert(conn, zone.clone()).filter(|p| *p != zone);
            return FrameZone::Joins { zone, previous };
        }
        match self.zones.get(&conn) {
            Some(zone) => FrameZone::In(zone.clone()),
            None => FrameZone::Unjoined,
        }
    }

    /// The connection's zone, if it joined one.
    pub fn zone(&self, conn: ConnId) -> Option<&Zone> {
        self.zones.get(&conn)
    }

    /// Forgets a closed connection; returns the zone whose owner must be told.
    pub fn forget(&mut self, conn: ConnId) -> Option<Zone> {
        self.zones.remove(&conn)
    }
}

/// Owner side: local core numbers for connections other instances hold.
#[derive(Debug)]
pub struct RemoteConns {
    next: u64,
    by_remote: BTreeMap<(InstanceId, ConnId), ConnId>,
    by_local: BTreeMap<ConnId, (InstanceId, ConnId)>,
}

impl Default for RemoteConns {
    fn default() -> Self {
        RemoteConns {
            next: REMOTE_CONN_BASE,
            by_remote: BTreeMap::new(),
            by_local: BTreeMap::new(),
        }
    }
}

impl RemoteConns {
    /// The core's number for `holder`'s `conn`, new if unknown (an `attach`).
    pub fn attach(&mut self, holder: &InstanceId, conn: ConnId) -> ConnId {
        if let Some(local) = self.by_remote.get(&(holder.clone(), conn)) {
            return *local;
        }
        let local = ConnId(self.next);
        self.next += 1;
        self.by_remote.insert((holder.clone(), conn), local);
        self.by_local.insert(local, (holder.clone(), conn));
        local
    }

    /// The core's number for `holder`'s `conn`, if attached.
    pub fn local(&self, holder: &InstanceId, conn: ConnId) -> Option<ConnId> {
        self.by_remote.get(&(holder.clone(), conn)).copied()
    }

    /// Who holds the core's connection `local`, if it is a remote one.
    pub fn remote(&self, local: ConnId) -> Option<&(InstanceId, ConnId)> {
        self.by_local.get(&local)
    }

    /// Forgets `holder`'s `conn`; returns the core's number to disconnect.
    pub fn detach(&mut self, holder: &InstanceId, conn: ConnId) -> Option<ConnId> {
        let local = self.by_remote.remove(&(holder.clone(), conn))?;
        self.by_local.remove(&local);
        Some(local)
    }

    /// Forgets the core's connection `local` (the core closed it).
    pub fn forget_local(&mut self, local: ConnId) -> Option<(InstanceId, ConnId)> {
        let remote = self.by_local.remove(&local)?;
        self.by_remote.remove(&remote);
        Some(remote)
    }

    /// Forgets every connection `holder` held (it died); returns the core's numbers, in order.
    pub fn forget_holder(&mut self, holder: &InstanceId) -> Vec<ConnId> {
        let gone: Vec<(InstanceId, ConnId)> =
            self.by_remote.keys().filter(|(h, _)| h == holder).cloned().collect();
        gone.into_iter().filter_map(|(h, c)| self.detach(&h, c)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join(zone: &str) -> Vec<u8> {
        format!(r#"{{"type":"join","zone":"{zone}"}}"#).into_bytes()
    }

    #[test]
    fn a_join_names_the_zone_and_later_frames_follow_the_connection() {
        let mut t = ConnZones::default();
        let c = ConnId(1);
        assert_eq!(t.route(c, br#"{"type":"ping"}"#), FrameZone::Unjoined);
        let prontera = Zone::new("prontera").unwrap();
        assert_eq!(
            t.route(c, &join("prontera")),
            FrameZone::Joins { zone: prontera.clone(), previous: None }
        );
        assert_eq!(t.route(c, br#"{"type":"leave"}"#), FrameZone::In(prontera.clone()));
        assert_eq!(t.route(c, b"not json"), FrameZone::In(prontera.clone()));
        assert_eq!(
            t.route(c, &join("prontera")),
            FrameZone::Joins { zone: prontera.clone(), previous: None }
        );
        let geffen = Zone::new("geffen").unwrap();
        assert_eq!(
            t.route(c, &join("geffen")),
            FrameZone::Joins { zone: geffen.clone(), previous: Some(prontera) }
        );
        assert_eq!(t.forget(c), Some(geffen));
        assert_eq!(t.route(c, br#"{"type":"leave"}"#), FrameZone::Unjoined);
    }

    #[test]
    fn remote_connections_get_their_own_numbers_and_map_back() {
        let mut t = RemoteConns::default();
        let (a, b) = (InstanceId::new("a").unwrap(), InstanceId::new("b").unwrap());
        let a1 = t.attach(&a, ConnId(1));
        let b1 = t.attach(&b, ConnId(1));
        assert_ne!(a1, b1, "the same number on two holders is two connections");
        assert!(a1.0 >= REMOTE_CONN_BASE && b1.0 >= REMOTE_CONN_BASE);
        assert_eq!(t.attach(&a, ConnId(1)), a1, "attach is idempotent");
        assert_eq!(t.remote(b1), Some(&(b.clone(), ConnId(1))));
        let a2 = t.attach(&a, ConnId(2));
        assert_eq!(t.forget_holder(&a), [a1, a2]);
        assert_eq!(t.local(&a, ConnId(1)), None);
        assert_eq!(t.forget_local(b1), Some((b.clone(), ConnId(1))));
        assert_eq!(t.detach(&b, ConnId(1)), None);
    }
}
