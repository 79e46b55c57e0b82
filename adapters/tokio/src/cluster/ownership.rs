//! Which zones this instance serves: leases taken on demand, renewed at half-life, given up.
//!
//! [`ZoneOwnership`] is what a cluster-mode hub asks before feeding a frame to its core: "is
//! this zone mine, or whose is it?" ([`ZoneOwnership::route`]); and what it calls on a timer
//! ([`ZoneOwnership::tick`]) to keep its leases and learn which ones it lost. Its rules:
//!
//! - A zone nobody holds is taken on its first frame; one held elsewhere is routed there.
//! - A lease is renewed once half its lifetime has passed.
//! - While the store is unreachable, a lease is still served until its conservative deadline
//!   (minus a margin for clock drift between instances), then reported lost; a zone not held
//!   yet is refused with [`ErrorCode::ZoneUnavailable`]. When the store is back, nothing needs
//!   a restart: the next call simply works.
//! - A renewal that finds another holder reports the zone lost at once ([`LostBecause::Fenced`]):
//!   the hub must drop that zone's sessions without telling their clients anything, the new
//!   owner now speaks for them.

use std::collections::BTreeMap;
use std::sync::Arc;

use ro_p2p_core::wire::{ErrorCode, Zone};

use super::{Acquired, ClusterStore, InstanceId, Lease, StoreError};

/// Where a zone's frames go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ZoneRoute {
    /// This instance owns the zone under this lease: feed the local core.
    Local(Lease),
    /// Another instance owns it: forward over the bus.
    Remote(InstanceId),
}

/// Why a zone cannot be routed now.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OwnershipError {
    /// The store is unreachable and this instance does not hold the zone: it cannot be taken.
    #[error("zone {zone} cannot be taken while the cluster store is unreachable: {source}")]
    StoreUnreachable {
        /// The zone.
        zone: Zone,
        /// The store's error.
        source: StoreError,
    },
    /// The store failed otherwise.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl OwnershipError {
    /// The code to send the client.
    pub fn code(&self) -> ErrorCode {
        ErrorCode::ZoneUnavailable
    }
}

/// Why a held zone was given up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LostBecause {
    /// Another instance holds it now (this one was too slow to renew).
    Fenced,
    /// The store stayed unreachable until the lease's deadline.
    Expired,
}

/// The zones this instance holds, with their leases.
#[derive(Debug)]
pub struct ZoneOwnership {
    store: Arc<dyn ClusterStore>,
    ttl_ms: u64,
    leases: BTreeMap<Zone, Lease>,
}

impl ZoneOwnership {
    /// Holds nothing yet; leases will last `ttl_ms` (at least 10 ms).
    pub fn new(store: Arc<dyn ClusterStore>, ttl_ms: u64) -> Self {
        ZoneOwnership { store, ttl_ms: ttl_ms.max(10), leases: BTreeMap::new() }
    }

    /// The margin for clock drift: a lease is served only until this long before its deadline.
    pub fn drift_margin_ms(&self) -> u64 {
        self.ttl_ms / 10
    }

    fn serve_until_ms(&self, lease: &Lease) -> u64 {
        lease.expires_at_ms.saturating_sub(self.drift_margin_ms())
    }

    /// The leases held, by zone.
    pub fn held(&self) -> &BTreeMap<Zone, Lease> {
        &self.leases
    }

    /// Where `zone`'s frames go at `now_ms`; takes the zone if nobody holds it.
    pub async fn route(&mut self, zone: &Zone, now_ms: u64) -> Result<ZoneRoute, OwnershipError> {
        if let Some(lease) = self.leases.get(zone) {
            if now_ms < self.serve_until_ms(lease) {
                return Ok(ZoneRoute::Local(lease.clone()));
            }
            self.leases.remove(zone);
        }
        match self.store.acquire(zone, self.ttl_ms).await {
            Ok(Acquired::Owned(lease)) => {
                self.leases.insert(zone.clone(), lease.clone());
                Ok(ZoneRoute::Local(lease))
            }
            Ok(Acquired::HeldBy(holder)) => Ok(ZoneRoute::Remote(holder.owner)),
            Err(source @ StoreError::Unavailable { .. }) => {
                Err(OwnershipError::StoreUnreachable { zone: zone.clone(), source })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// When [`ZoneOwnership::tick`] has work next (the earliest half-life), if anything is held.
    pub fn next_tick_ms(&self) -> Option<u64> {
        self.leases.values().map(|l| l.expires_at_ms.saturating_sub(self.ttl_ms / 2)).min()
    }

    /// Renews every lease past its half-life; returns the zones lost, in zone order.
    pub async fn tick(&mut self, now_ms: u64) -> Vec<(Zone, LostBecause)> {
        let due: Vec<Lease> = self
            .leases
            .values()
            .filter(|l| now_ms >= l.expires_at_ms.saturating_sub(self.ttl_ms / 2))
            .cloned()
            .collect();
        let mut lost = Vec::new();
        for lease in due {
            match self.store.renew(&lease, self.ttl_ms).await {
                Ok(renewed) => {
                    self.leases.insert(lease.zone.clone(), renewed);
                }
                Err(StoreError::Fenced { .. } | StoreError::NotOurLease { .. }) => {
                    self.leases.remove(&lease.zone);
                    lost.push((lease.zone, LostBecause::Fenced));
                }
                Err(e) => {
                    if now_ms >= self.serve_until_ms(&lease) {
                        tracing::warn!(zone = %lease.zone, error = %e, "lease ran out unrenewed");
                        self.leases.remove(&lease.zone);
                        lost.push((lease.zone, LostBecause::Expired));
                    } else {
                        tracing::debug!(zone = %lease.zone, error = %e, "lease renewal failed");
                    }
                }
            }
        }
        lost
    }

    /// Forgets `zone`'s lease without a store call (a fenced write showed it is gone).
    pub fn forget(&mut self, zone: &Zone) {
        self.leases.remove(zone);
    }

    /// Gives every lease up (graceful shutdown), so other instances take the zones at once.
    pub async fn release_all(&mut self) {
        for (zone, lease) in std::mem::take(&mut self.leases) {
            if let Err(e) = self.store.release(&lease).await {
                tracing::warn!(%zone, error = %e, "could not release a lease; it will expire");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{ManualClock, MemoryWorld, StoreConfig};

    const TTL_MS: u64 = 1_000;

    fn setup() -> (MemoryWorld, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::at(0));
        (MemoryWorld::new(clock.clone(), StoreConfig::default()), clock)
    }

    fn ownership(world: &MemoryWorld, name: &str) -> ZoneOwnership {
        ZoneOwnership::new(Arc::new(world.store(InstanceId::new(name).unwrap())), TTL_MS)
    }

    fn zone(s: &str) -> Zone {
        Zone::new(s).unwrap()
    }

    #[tokio::test]
    async fn a_free_zone_is_taken_and_a_held_one_is_routed_to_its_owner() {
        let (world, _) = setup();
        let (mut a, mut b) = (ownership(&world, "a"), ownership(&world, "b"));
        let z = zone("prontera");
        assert!(matches!(a.route(&z, 0).await.unwrap(), ZoneRoute::Local(_)));
        assert_eq!(b.route(&z, 0).await.unwrap(), ZoneRoute::Remote(InstanceId::new("a").unwrap()));
        assert!(b.held().is_empty());
    }

    #[tokio::test]
    async fn leases_renew_at_half_life_and_survive_an_outage_until_their_deadline() {
        let (world, clock) = setup();
        let mut a = ownership(&world, "a");
        let z = zone("prontera");
        a.route(&z, 0).await.unwrap();
        assert_eq!(a.next_tick_ms(), Some(TTL_MS / 2));
        clock.set(600);
        assert!(a.tick(600).await.is_empty());
        assert_eq!(a.held()[&z].expires_at_ms, 1_600);

        world.set_down(true);
        clock.set(1_200);
        assert!(a.tick(1_200).await.is_empty(), "kept while the deadline is ahead");
        assert!(matches!(a.route(&z, 1_200).await.unwrap(), ZoneRoute::Local(_)));
        let refused = a.route(&zone("geffen"), 1_200).await.unwrap_err();
        assert!(matches!(refused, OwnershipError::StoreUnreachable { .. }));
        assert_eq!(refused.code(), ErrorCode::ZoneUnavailable);
        clock.set(1_500);
        assert_eq!(a.tick(1_500).await, [(z.clone(), LostBecause::Expired)], "1600 - 100 margin");

        world.set_down(false);
        assert!(matches!(a.route(&z, 1_700).await.unwrap(), ZoneRoute::Local(_)));
    }

    #[tokio::test]
    async fn a_partitioned_owner_learns_it_was_fenced_when_it_comes_back() {
        let (world, clock) = setup();
        let (mut a, mut b) = (ownership(&world, "a"), ownership(&world, "b"));
        let z = zone("payon");
        let ZoneRoute::Local(first) = a.route(&z, 0).await.unwrap() else { panic!() };
        world.partition(&InstanceId::new("a").unwrap(), true);
        clock.set(1_001);
        let ZoneRoute::Local(second) = b.route(&z, 1_001).await.unwrap() else { panic!() };
        assert!(second.epoch > first.epoch);
        world.partition(&InstanceId::new("a").unwrap(), false);
        // a's own deadline (900 with the margin) has passed too, but the store says why.
        assert_eq!(a.tick(1_001).await, [(z.clone(), LostBecause::Fenced)]);
        assert_eq!(
            a.route(&z, 1_001).await.unwrap(),
            ZoneRoute::Remote(InstanceId::new("b").unwrap())
        );
        b.release_all().await;
        assert!(matches!(a.route(&z, 1_002).await.unwrap(), ZoneRoute::Local(_)));
    }
}
