//! The cluster store contract, one generic body per behaviour, run against `MemoryStore` (with a
//! manual clock) and against `RedisStore` on a real `redis-server` that each test starts on a
//! free loopback port in its own temporary directory (skipped, with a message, if the binary is
//! not installed).
//!
//! Against Redis, time is real: lease lifetimes are short and "advance" sleeps. Against memory,
//! "advance" moves the manual clock and nothing sleeps.

mod common;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use ro_p2p_core::wire::{Capabilities, PeerId, SessionId, Zone};
use ro_p2p_tokio::cluster::{
    Acquired, BusMessage, ClusterStore, InstanceId, InstanceView, Lease, ManualClock, MemoryWorld,
    RedisStore, SeatRecord, SessionSummary, StoreConfig, StoreError, StoredSeat, Subscription,
    TokioClock,
};

// ---------------------------------------------------------------------------------------------
// Harnesses

trait Harness {
    /// A handle acting as instance `name`.
    fn store(&self, name: &str) -> Arc<dyn ClusterStore>;
    /// Lets `ms` of store time pass.
    async fn advance(&self, ms: u64);
    /// Stops the store (data is kept).
    async fn stop(&mut self);
    /// Starts it again.
    async fn start(&mut self);
}

fn id(s: &str) -> InstanceId {
    InstanceId::new(s).unwrap()
}

fn zone(s: &str) -> Zone {
    Zone::new(s).unwrap()
}

fn config() -> StoreConfig {
    StoreConfig { bus_payload_bytes_max: 1024, op_timeout_ms: 500, ..StoreConfig::default() }
}

struct Memory {
    world: MemoryWorld,
    clock: Arc<ManualClock>,
}

impl Memory {
    fn new() -> Self {
        let clock = Arc::new(ManualClock::at(1_000));
        Memory { world: MemoryWorld::new(clock.clone(), config()), clock }
    }
}

impl Harness for Memory {
    fn store(&self, name: &str) -> Arc<dyn ClusterStore> {
        Arc::new(self.world.store(id(name)))
    }
    async fn advance(&self, ms: u64) {
        self.clock.advance(ms);
    }
    async fn stop(&mut self) {
        self.world.set_down(true);
    }
    async fn start(&mut self) {
        self.world.set_down(false);
    }
}

/// A `redis-server` of our own: free port, temporary directory, append-only file fsynced on
/// every write (so a stop and start loses nothing).
struct Redis {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
    clock: Arc<TokioClock>,
    extra_args: Vec<String>,
}

static NEXT_DIR: AtomicU32 = AtomicU32::new(0);

impl Redis {
    /// `None` (after saying so) when `redis-server` is not installed.
    async fn new() -> Option<Self> {
        Self::with_args(&[]).await
    }

    /// As [`Redis::new`], with more `redis-server` arguments.
    async fn with_args(extra_args: &[&str]) -> Option<Self> {
        let installed = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !installed {
            common::skip_or_fail(
                "redis-server is not installed (apt-get install -y redis-server); \
                 the Redis half of the contract did not run",
            );
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = std::env::temp_dir().join(format!(
            "ro-p2p-redis-{}-{}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut r = Redis {
            port,
            dir,
            child: None,
            clock: Arc::new(TokioClock::new()),
            extra_args: extra_args.iter().map(|a| (*a).to_owned()).collect(),
        };
        r.start().await;
        Some(r)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

impl Harness for Redis {
    fn store(&self, name: &str) -> Arc<dyn ClusterStore> {
        Arc::new(RedisStore::open_url(&self.url(), id(name), config(), self.clock.clone()).unwrap())
    }
    async fn advance(&self, ms: u64) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
    async fn start(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--appendonly", "yes", "--appendfsync", "always", "--save", ""])
            .args(&self.extra_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        // Wait (bounded) until it accepts connections.
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("redis-server did not start on port {}", self.port);
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `body` against memory, then (if installed) against Redis.
macro_rules! contract {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test]
            async fn memory() {
                let mut h = super::Memory::new();
                super::$body(&mut h).await;
            }

            #[tokio::test]
            async fn redis() {
                if let Some(mut h) = super::Redis::new().await {
                    super::$body(&mut h).await;
                }
            }
        }
    };
}

async fn recv(sub: &mut Subscription) -> BusMessage {
    tokio::time::timeout(Duration::from_secs(5), sub.recv()).await.unwrap().unwrap()
}

fn owned(a: Acquired) -> Lease {
    match a {
        Acquired::Owned(l) => l,
        Acquired::HeldBy(h) => panic!("expected to own the lease, held by {h:?}"),
    }
}

fn seat(peer: &str, session: &str, z: &str, host: bool) -> SeatRecord {
    SeatRecord {
        peer_id: PeerId::new(peer).unwrap(),
        session_id: SessionId::new(session).unwrap(),
        zone: zone(z),
        capabilities: Some(Capabilities {
            cpu_cores: 8,
            cpu_mhz: 3000,
            memory_mb: 16_000,
            bandwidth_mbps: 100,
            latency_ms: 20,
        }),
        host,
        connected_via: Some(id("a")),
        key_epoch: 2,
    }
}

const TTL_MS: u64 = 400;

/// The records of a read, without their graces.
fn records(stored: Vec<StoredSeat>) -> Vec<SeatRecord> {
    stored.into_iter().map(|s| s.record).collect()
}

// ---------------------------------------------------------------------------------------------
// Contract bodies

async fn lease_is_exclusive_renewable_and_taken_over_with_higher_epochs(h: &mut impl Harness) {
    let (a, b) = (h.store("a"), h.store("b"));
    let z = zone("prontera");
    let first = owned(a.acquire(&z, TTL_MS).await.unwrap());
    assert_eq!(first.owner, id("a"));

    match b.acquire(&z, TTL_MS).await.unwrap() {
        Acquired::HeldBy(holder) => {
            assert_eq!((holder.owner, holder.epoch), (id("a"), first.epoch));
            assert!(holder.remaining_ms <= TTL_MS);
        }
        other => panic!("b took a held lease: {other:?}"),
    }
    // Acquiring again as the holder extends, same epoch.
    assert_eq!(owned(a.acquire(&z, TTL_MS).await.unwrap()).epoch, first.epoch);

    // Renewals keep it past its first lifetime.
    for _ in 0..3 {
        h.advance(TTL_MS / 2).await;
        a.renew(&first, TTL_MS).await.unwrap();
    }
    assert!(matches!(b.acquire(&z, TTL_MS).await.unwrap(), Acquired::HeldBy(_)));
    assert_eq!(b.owner(&z).await.unwrap().unwrap().owner, id("a"));

    // Unrenewed, it expires and b takes over with a higher epoch; a is fenced.
    h.advance(TTL_MS + 200).await;
    assert_eq!(b.owner(&z).await.unwrap(), None);
    let second = owned(b.acquire(&z, TTL_MS).await.unwrap());
    assert!(second.epoch > first.epoch, "{} <= {}", second.epoch, first.epoch);
    match a.renew(&first, TTL_MS).await {
        Err(StoreError::Fenced { epoch, holder, .. }) => {
            assert_eq!(epoch, first.epoch);
            assert_eq!(holder, Some(format!("b:{}", second.epoch)));
        }
        other => panic!("stale renew: {other:?}"),
    }
    assert!(!a.release(&first).await.unwrap(), "a released b's lease");
    assert!(b.release(&second).await.unwrap());
    assert_eq!(a.owner(&z).await.unwrap(), None);

    // Even its own earlier holder gets a new epoch after a release.
    let third = owned(b.acquire(&z, TTL_MS).await.unwrap());
    assert!(third.epoch > second.epoch);
    // A lease is shown only by its owner.
    assert!(matches!(a.renew(&third, TTL_MS).await, Err(StoreError::NotOurLease { .. })));
    // Other zones are independent.
    assert!(matches!(a.acquire(&zone("geffen"), TTL_MS).await.unwrap(), Acquired::Owned(_)));
}

async fn a_fenced_old_owner_cannot_write(h: &mut impl Harness) {
    let (a, b) = (h.store("a"), h.store("b"));
    let z = zone("payon");
    let old = owned(a.acquire(&z, TTL_MS).await.unwrap());
    a.put_seat(&old, &seat("alice", "s1", "payon", true), None).await.unwrap();

    // a pauses past its lease; b takes over.
    h.advance(TTL_MS + 200).await;
    let new = owned(b.acquire(&z, TTL_MS).await.unwrap());

    let stale = a.put_seat(&old, &seat("mallory", "s1", "payon", true), None).await;
    assert!(
        matches!(&stale, Err(StoreError::Fenced { epoch, holder: Some(h), .. })
            if *epoch == old.epoch && *h == format!("b:{}", new.epoch)),
        "{stale:?}"
    );
    let stale = a.remove_seat(&old, &PeerId::new("alice").unwrap()).await;
    assert!(matches!(stale, Err(StoreError::Fenced { .. })), "{stale:?}");
    let peers: Vec<_> =
        b.seats(&z).await.unwrap().into_iter().map(|s| s.record.peer_id.to_string()).collect();
    assert_eq!(peers, ["alice"], "the fenced writes changed nothing");

    // The new owner writes; a seat of another zone is refused.
    b.put_seat(&new, &seat("bob", "s1", "payon", false), None).await.unwrap();
    b.remove_seat(&new, &PeerId::new("alice").unwrap()).await.unwrap();
    let wrong = b.put_seat(&new, &seat("carol", "s2", "geffen", false), None).await;
    assert!(matches!(wrong, Err(StoreError::WrongZone { .. })), "{wrong:?}");
    let peers: Vec<_> =
        b.seats(&z).await.unwrap().into_iter().map(|s| s.record.peer_id.to_string()).collect();
    assert_eq!(peers, ["bob"]);
}

async fn seat_records_survive_their_owner(h: &mut impl Harness) {
    let z = zone("morocc");
    let written = vec![
        seat("alice", "s1", "morocc", true),
        seat("bob", "s1", "morocc", false),
        SeatRecord {
            capabilities: None,
            connected_via: None,
            ..seat("carol", "s2", "morocc", true)
        },
    ];
    {
        let a = h.store("a");
        let lease = owned(a.acquire(&z, TTL_MS).await.unwrap());
        for s in written.iter().rev() {
            a.put_seat(&lease, s, None).await.unwrap();
        }
        // a dies here: its handle is dropped and nobody renews.
    }
    let b = h.store("b");
    h.advance(TTL_MS + 200).await;
    let lease = owned(b.acquire(&z, TTL_MS).await.unwrap());
    assert_eq!(lease.owner, id("b"));
    assert_eq!(records(b.seats(&z).await.unwrap()), written, "by peer id, as written");
    assert!(b.seats(&zone("other")).await.unwrap().is_empty());
}

/// A disconnected player's seat written with its grace as a TTL: reads return what is left of
/// it, the store forgets it when it is over (even with nobody to remove it: its owner is gone),
/// a rewrite without a grace (the player is back) keeps the record, and a grace of 0 removes it.
async fn a_seat_written_with_a_grace_lives_only_as_long_as_it(h: &mut impl Harness) {
    let z = zone("alberta");
    let gone =
        |peer: &str| SeatRecord { connected_via: None, ..seat(peer, "s1", "alberta", false) };
    {
        let a = h.store("a");
        let lease = owned(a.acquire(&z, TTL_MS).await.unwrap());
        a.put_seat(&lease, &gone("alice"), Some(2_000)).await.unwrap();
        a.put_seat(&lease, &seat("bob", "s1", "alberta", true), None).await.unwrap();
        // carol disconnects, then comes back: her record is rewritten without a grace.
        a.put_seat(&lease, &gone("carol"), Some(2_000)).await.unwrap();
        a.put_seat(&lease, &seat("carol", "s1", "alberta", false), None).await.unwrap();
        // dave's grace is over by the time the write runs.
        a.put_seat(&lease, &seat("dave", "s1", "alberta", false), None).await.unwrap();
        a.put_seat(&lease, &gone("dave"), Some(0)).await.unwrap();
        // a crashes here: nobody renews its lease or removes a seat.
    }
    h.advance(500).await;
    let b = h.store("b");
    let read = b.seats(&z).await.unwrap();
    let peers: Vec<_> = read.iter().map(|s| s.record.peer_id.to_string()).collect();
    assert_eq!(peers, ["alice", "bob", "carol"], "by peer id; dave's was removed");
    let left = read[0].grace_left_ms.expect("alice's record carries what is left of her grace");
    assert!(left > 0 && left <= 1_500, "alice has {left} ms left of 2000 after 500");
    assert_eq!(read[0].record, gone("alice"));
    assert_eq!((read[1].grace_left_ms, read[2].grace_left_ms), (None, None));
    assert_eq!(read[2].record, seat("carol", "s1", "alberta", false));

    h.advance(1_600).await;
    let lease = owned(b.acquire(&z, TTL_MS).await.unwrap());
    let peers: Vec<_> =
        b.seats(&z).await.unwrap().into_iter().map(|s| s.record.peer_id.to_string()).collect();
    assert_eq!(peers, ["bob", "carol"], "alice's grace is over: the store forgot her seat");
    // Removing a record the store already forgot is no error.
    b.remove_seat(&lease, &PeerId::new("alice").unwrap()).await.unwrap();
}

async fn bus_delivers_between_handles_within_bounds(h: &mut impl Harness) {
    let (a, b) = (h.store("a"), h.store("b"));
    let mut sub_a = a.subscribe().await.unwrap();
    let mut sub_b = b.subscribe().await.unwrap();
    assert_eq!(b.publish(&id("a"), b"{\"frame\":1}").await.unwrap(), 1);
    let m = recv(&mut sub_a).await;
    assert_eq!((m.from, m.payload), (id("b"), b"{\"frame\":1}".to_vec()));

    // To the zone's owner, in one step, only while it holds the zone.
    let z = zone("alberta");
    assert_eq!(a.publish_to_owner(&z, &id("b"), b"x").await.unwrap(), None, "no lease");
    owned(b.acquire(&z, TTL_MS).await.unwrap());
    assert_eq!(a.publish_to_owner(&z, &id("c"), b"x").await.unwrap(), None, "not c's lease");
    assert_eq!(a.publish_to_owner(&z, &id("b"), b"to-owner").await.unwrap(), Some(1));
    let m = recv(&mut sub_b).await;
    assert_eq!((m.from, m.payload), (id("a"), b"to-owner".to_vec()));
    assert!(sub_b.try_recv().is_none(), "the refused sends reached nobody");

    // An owner that listens no more (dead, lease not expired yet) receives nothing.
    let c = h.store("c");
    owned(c.acquire(&zone("comodo"), TTL_MS).await.unwrap());
    assert_eq!(a.publish_to_owner(&zone("comodo"), &id("c"), b"void").await.unwrap(), Some(0));

    // Bounded: the limit passes, one byte more does not.
    let max = config().bus_payload_bytes_max;
    assert_eq!(a.publish(&id("b"), &vec![b'x'; max]).await.unwrap(), 1);
    assert_eq!(recv(&mut sub_b).await.payload.len(), max);
    let big = a.publish(&id("b"), &vec![b'x'; max + 1]).await;
    assert_eq!(big, Err(StoreError::MessageTooLarge { len: max + 1, max }));

    // Nobody listens on c's channel; a dropped subscription stops listening.
    assert_eq!(a.publish(&id("c"), b"lost").await.unwrap(), 0);
    drop(sub_a);
    let mut after = 1;
    for _ in 0..100 {
        after = b.publish(&id("a"), b"gone").await.unwrap();
        if after == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(after, 0);
    assert!(sub_b.try_recv().is_none());
    assert_eq!(sub_b.dropped(), 0);
}

async fn world_view_merges_instances_and_forgets_expired_ones(h: &mut impl Harness) {
    let (a, b) = (h.store("a"), h.store("b"));
    let summary = |session: &str, z: &str, members: &[&str]| SessionSummary {
        session_id: SessionId::new(session).unwrap(),
        zone: zone(z),
        members: members.iter().map(|m| PeerId::new(*m).unwrap()).collect(),
        connected: members.iter().map(|m| PeerId::new(*m).unwrap()).collect(),
        host: members.first().map(|m| PeerId::new(*m).unwrap()),
        max_players: 8,
        key_epoch: 1,
        created_at_ms: Some(7),
    };
    let view_a = InstanceView {
        zones: [(zone("z1"), 5)].into(),
        sessions: vec![summary("s1", "z1", &["alice"])],
        connections: 3,
        counters: [("relays".to_owned(), 10)].into(),
    };
    // b took z1 over (higher epoch) before a's view expired, and owns z2.
    let view_b = InstanceView {
        zones: [(zone("z1"), 6), (zone("z2"), 1)].into(),
        sessions: vec![summary("s1", "z1", &["alice", "bob"]), summary("s2", "z2", &["carol"])],
        connections: 4,
        counters: [("relays".to_owned(), 5), ("joins".to_owned(), 2)].into(),
    };
    a.publish_view(&view_a, TTL_MS).await.unwrap();
    b.publish_view(&view_b, 60_000).await.unwrap();

    let world = a.world().await.unwrap();
    assert_eq!(world.instances.keys().cloned().collect::<Vec<_>>(), [id("a"), id("b")]);
    assert_eq!(world.sessions(), view_b.sessions, "z1 counts for its newer owner");
    assert_eq!(world.connections(), 7);
    assert_eq!(world.counters(), [("joins".to_owned(), 2), ("relays".to_owned(), 15)].into());
    assert_eq!(world.discover(&zone("z2")), vec![summary("s2", "z2", &["carol"])]);
    assert_eq!(world.session(&SessionId::new("s1").unwrap()).unwrap().members.len(), 2);

    h.advance(TTL_MS + 200).await;
    let world = b.world().await.unwrap();
    assert_eq!(world.instances.keys().cloned().collect::<Vec<_>>(), [id("b")]);
    assert_eq!(world.connections(), 4);
}

async fn an_outage_gives_typed_errors_and_recovers_without_restart(h: &mut impl Harness) {
    let (a, b) = (h.store("a"), h.store("b"));
    let z = zone("izlude");
    let long_ms = 30_000;
    let lease = owned(a.acquire(&z, long_ms).await.unwrap());
    a.put_seat(&lease, &seat("alice", "s1", "izlude", true), None).await.unwrap();
    let mut sub_a = a.subscribe().await.unwrap();
    a.ping().await.unwrap();

    h.stop().await;
    let unavailable = |r: Result<(), StoreError>| {
        assert!(matches!(r, Err(StoreError::Unavailable { .. })), "{r:?}");
    };
    unavailable(a.ping().await);
    unavailable(a.renew(&lease, long_ms).await.map(|_| ()));
    unavailable(b.acquire(&z, long_ms).await.map(|_| ()));
    unavailable(b.publish(&id("a"), b"x").await.map(|_| ()));
    unavailable(b.seats(&z).await.map(|_| ()));
    unavailable(b.subscribe().await.map(|_| ()));

    h.start().await;
    // The same handles recover (bounded wait for reconnection).
    let mut ok = false;
    for _ in 0..100 {
        if a.ping().await.is_ok() && b.ping().await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "the handles did not recover");
    a.renew(&lease, long_ms).await.unwrap();
    assert!(matches!(b.acquire(&z, long_ms).await.unwrap(), Acquired::HeldBy(_)));
    assert_eq!(records(b.seats(&z).await.unwrap()), vec![seat("alice", "s1", "izlude", true)]);

    // The subscription follows: a message published after the restart arrives.
    let mut delivered = 0;
    for _ in 0..100 {
        delivered = b.publish(&id("a"), b"after").await.unwrap();
        if delivered > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(delivered, 1, "the subscription did not come back");
    let m = tokio::time::timeout(Duration::from_secs(5), sub_a.recv()).await.unwrap().unwrap();
    assert_eq!(m.payload, b"after");
}

async fn concurrent_acquirers_get_exactly_one_owner(h: &mut impl Harness) {
    let z = zone("racing");
    let stores: Vec<_> = (0..8).map(|i| h.store(&format!("i{i}"))).collect();
    let tries = stores.iter().map(|s| s.acquire(&z, 10_000));
    let outcomes = futures_util::future::join_all(tries).await;
    let owners: Vec<Lease> = outcomes
        .into_iter()
        .filter_map(|o| match o.unwrap() {
            Acquired::Owned(l) => Some(l),
            Acquired::HeldBy(_) => None,
        })
        .collect();
    assert_eq!(owners.len(), 1, "{owners:?}");
    let holder = stores[0].owner(&z).await.unwrap().unwrap();
    assert_eq!((holder.owner, holder.epoch), (owners[0].owner.clone(), owners[0].epoch));
}

contract!(lease, lease_is_exclusive_renewable_and_taken_over_with_higher_epochs);
contract!(fencing, a_fenced_old_owner_cannot_write);
contract!(seats_survive, seat_records_survive_their_owner);
contract!(seat_grace, a_seat_written_with_a_grace_lives_only_as_long_as_it);
contract!(bus, bus_delivers_between_handles_within_bounds);
contract!(world_view, world_view_merges_instances_and_forgets_expired_ones);
contract!(outage, an_outage_gives_typed_errors_and_recovers_without_restart);
contract!(race, concurrent_acquirers_get_exactly_one_owner);

// ---------------------------------------------------------------------------------------------
// Redis only: settings from config.yaml

#[tokio::test]
async fn redis_settings_password_and_database_are_used_and_a_wrong_password_is_refused() {
    use ro_p2p_core::config::{RedisEndpoint, RedisSettings, Secret};
    let Some(r) = Redis::with_args(&["--requirepass", "s3cret pass"]).await else { return };
    let settings = |password: Option<&str>, db: u32| RedisSettings {
        endpoint: RedisEndpoint::Parts {
            host: "127.0.0.1".to_owned(),
            port: r.port,
            db,
            password: password.map(Secret::new),
        },
        tls: false,
        key_prefix: "world1:".to_owned(),
    };
    let open = |password: Option<&str>, db: u32| {
        RedisStore::open(&settings(password, db), id("a"), config(), r.clock.clone()).unwrap()
    };

    let wrong = open(Some("nope"), 1).ping().await;
    assert!(
        matches!(wrong, Err(StoreError::Rejected { .. } | StoreError::Unavailable { .. })),
        "{wrong:?}"
    );
    let missing = open(None, 1).ping().await;
    assert!(matches!(missing, Err(StoreError::Rejected { .. })), "{missing:?}");
    // The password is not in the error text.
    assert!(!format!("{wrong:?}{missing:?}").contains("s3cret"));

    let db1 = open(Some("s3cret pass"), 1);
    db1.ping().await.unwrap();
    owned(db1.acquire(&zone("prontera"), 10_000).await.unwrap());
    // Another database is another world; the prefix is the settings' one.
    let db2 = open(Some("s3cret pass"), 2);
    assert_eq!(db2.owner(&zone("prontera")).await.unwrap(), None);
    let keys: Vec<String> = {
        let client =
            redis::Client::open(format!("redis://:s3cret%20pass@127.0.0.1:{}/1", r.port)).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        redis::cmd("KEYS").arg("*").query_async(&mut conn).await.unwrap()
    };
    let mut keys = keys;
    keys.sort();
    assert_eq!(keys, ["world1:epoch:prontera", "world1:lease:prontera"]);
}

// ---------------------------------------------------------------------------------------------
// Faults only the in-memory store can inject

#[tokio::test]
async fn memory_partitioned_instance_is_cut_off_alone_and_misses_its_messages() {
    let h = Memory::new();
    let (a, b) = (h.store("a"), h.store("b"));
    let mut sub_a = a.subscribe().await.unwrap();
    let z = zone("prontera");
    let lease = owned(a.acquire(&z, TTL_MS).await.unwrap());

    h.world.partition(&id("a"), true);
    assert!(matches!(a.renew(&lease, TTL_MS).await, Err(StoreError::Unavailable { .. })));
    assert_eq!(b.publish(&id("a"), b"lost").await.unwrap(), 0);
    // The rest of the world carries on: a's lease runs out and b takes the zone.
    h.advance(TTL_MS + 1).await;
    let taken = owned(b.acquire(&z, TTL_MS).await.unwrap());
    assert!(taken.epoch > lease.epoch);

    h.world.partition(&id("a"), false);
    assert!(matches!(a.renew(&lease, TTL_MS).await, Err(StoreError::Fenced { .. })));
    assert_eq!(b.publish(&id("a"), b"back").await.unwrap(), 1);
    assert_eq!(sub_a.try_recv().unwrap().payload, b"back", "the lost message never arrives");
    assert!(sub_a.try_recv().is_none());
}

#[tokio::test]
async fn memory_epochs_keep_increasing_after_the_store_loses_its_data() {
    let h = Memory::new();
    let a = h.store("a");
    let z = zone("prontera");
    let before = owned(a.acquire(&z, TTL_MS).await.unwrap());
    h.advance(10).await;
    h.world.wipe();
    assert_eq!(a.owner(&z).await.unwrap(), None);
    let after = owned(a.acquire(&z, TTL_MS).await.unwrap());
    assert!(after.epoch > before.epoch, "{} <= {}", after.epoch, before.epoch);
    assert!(matches!(a.renew(&before, TTL_MS).await, Err(StoreError::Fenced { .. })));
}

#[tokio::test]
async fn memory_full_subscription_queue_drops_and_counts() {
    let clock = Arc::new(ManualClock::at(0));
    let world = MemoryWorld::new(clock, StoreConfig { bus_queue_len: 2, ..config() });
    let (a, b) = (world.store(id("a")), world.store(id("b")));
    let mut sub = a.subscribe().await.unwrap();
    for i in 0..5u8 {
        assert_eq!(b.publish(&id("a"), &[i]).await.unwrap(), 1);
    }
    assert_eq!(sub.dropped(), 3);
    assert_eq!(sub.try_recv().unwrap().payload, [0]);
    assert_eq!(sub.try_recv().unwrap().payload, [1]);
    assert!(sub.try_recv().is_none());
}
