//! The cluster store on Redis: leases, fenced writes and the bus as Lua scripts and pub/sub.
//!
//! Keys (all under [`StoreConfig::key_prefix`], `P` below):
//!
//! | key | type | what |
//! |---|---|---|
//! | `P lease:{zone}` | string `owner:epoch`, PX ttl | the zone's lease |
//! | `P epoch:{zone}` | integer, no expiry | the zone's last fencing epoch |
//! | `P seats:{zone}` | hash peer id -> JSON [`SeatRecord`], PX seat ttl | the zone's seats |
//! | `P seat-grace:{zone}` | hash peer id -> end of its grace on Redis's `TIME`, in ms, PX seat ttl | the graces of disconnected players' seats |
//! | `P view:{instance}` | JSON [`InstanceView`], PX ttl | an instance's published view |
//! | `P instances` | set of instance ids | whose views to read |
//! | `P bus:{instance}` | pub/sub channel | the instance's bus |
//!
//! Every check-then-write runs as one Lua script, so a lease cannot change between the check
//! and the write. A new epoch counter starts from Redis's clock in ms, so epochs keep
//! increasing even if Redis lost its data. One [`ConnectionManager`] carries commands and
//! reconnects by itself; each subscription has its own pub/sub connection, re-established by a
//! background task after an outage. Every operation is bounded by
//! [`StoreConfig::op_timeout_ms`].

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt as _;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSub};
use redis::{Client, ErrorKind, RedisError, Script};
use ro_p2p_core::config::RedisSettings;
use ro_p2p_core::wire::{PeerId, Zone};
use tokio::sync::mpsc;

use super::ClusterStore;
use super::types::{
    Acquired, BusMessage, Clock, InstanceId, InstanceView, Lease, LeaseHolder, SeatRecord,
    StoreConfig, StoreError, StoredSeat, Subscription, WorldView,
};

/// Takes a free lease with a new epoch, extends our own, or reports the holder.
/// KEYS: lease, epoch. ARGV: owner, ttl_ms. Returns {"1", owner, epoch} or
/// {"0", owner, epoch, pttl}.
const ACQUIRE: &str = r"
local cur = redis.call('GET', KEYS[1])
if cur then
  local sep = string.find(cur, ':', 1, true)
  local owner = string.sub(cur, 1, sep - 1)
  local epoch = string.sub(cur, sep + 1)
  if owner == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return {'1', owner, epoch}
  end
  return {'0', owner, epoch, tostring(redis.call('PTTL', KEYS[1]))}
end
if redis.call('EXISTS', KEYS[2]) == 0 then
  local t = redis.call('TIME')
  redis.call('SET', KEYS[2], string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)))
end
local e = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. e, 'PX', ARGV[2])
return {'1', ARGV[1], tostring(e)}
";

/// Extends a lease if the token still holds it. KEYS: lease. ARGV: token, ttl_ms.
/// Returns {"1"} or {"0", current holder or ""}.
const RENEW: &str = r"
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {'1'}
end
return {'0', cur or ''}
";

/// Deletes a lease if the token still holds it. KEYS: lease. ARGV: token. Returns 1 or 0.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
";

/// The lease's value and remaining time. KEYS: lease. Returns {} or {value, pttl}.
const READ_LEASE: &str = r"
local cur = redis.call('GET', KEYS[1])
if not cur then return {} end
return {cur, tostring(redis.call('PTTL', KEYS[1]))}
";

/// A fenced seat write. KEYS: lease, seats hash, graces hash. ARGV: token, peer, record JSON
/// ('' deletes), the zone's ttl_ms, grace_ms ('' for none). A grace is kept as its end on
/// Redis's own clock (`TIME`), so no instance's clock is stored: Redis 7.0 has no per-field
/// expiry, and the read script forgets what is over. Returns {"1"} or {"0", holder or ""}.
const FENCED_SEAT: &str = r"
local cur = redis.call('GET', KEYS[1])
if cur ~= ARGV[1] then
  return {'0', cur or ''}
end
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[2], ARGV[2])
  redis.call('HDEL', KEYS[3], ARGV[2])
else
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
  if ARGV[5] == '' then
    redis.call('HDEL', KEYS[3], ARGV[2])
  else
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    redis.call('HSET', KEYS[3], ARGV[2], string.format('%d', now + tonumber(ARGV[5])))
  end
end
for i = 2, 3 do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('PEXPIRE', KEYS[i], ARGV[4])
  end
end
return {'1'}
";

/// Every live seat of a zone with what is left of its grace; forgets the seats whose grace
/// is over. KEYS: seats hash, graces hash. Returns {peer, json, left ms or '', ...}.
const READ_SEATS: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local all = redis.call('HGETALL', KEYS[1])
local out = {}
for i = 1, #all, 2 do
  local peer, json = all[i], all[i + 1]
  local grace = redis.call('HGET', KEYS[2], peer)
  if not grace then
    table.insert(out, peer)
    table.insert(out, json)
    table.insert(out, '')
  elseif tonumber(grace) > now then
    table.insert(out, peer)
    table.insert(out, json)
    table.insert(out, string.format('%d', tonumber(grace) - now))
  else
    redis.call('HDEL', KEYS[1], peer)
    redis.call('HDEL', KEYS[2], peer)
  end
end
return out
";

/// Publishes to an instance's channel if it holds the lease. KEYS: lease. ARGV: channel
/// prefix, payload, instance. Returns -1 (the lease is not that instance's) or the receivers.
const PUBLISH_TO_OWNER: &str = r"
local cur = redis.call('GET', KEYS[1])
if not cur then return -1 end
local sep = string.find(cur, ':', 1, true)
if not sep or string.sub(cur, 1, sep - 1) ~= ARGV[3] then return -1 end
return redis.call('PUBLISH', ARGV[1] .. ARGV[3], ARGV[2])
";

#[derive(Debug)]
struct Scripts {
    acquire: Script,
    renew: Script,
    release: Script,
    read_lease: Script,
    fenced_seat: Script,
    read_seats: Script,
    publish_to_owner: Script,
}

impl Scripts {
    fn new() -> Self {
        Scripts {
            acquire: Script::new(ACQUIRE),
            renew: Script::new(RENEW),
            release: Script::new(RELEASE),
            read_lease: Script::new(READ_LEASE),
            fenced_seat: Script::new(FENCED_SEAT),
            read_seats: Script::new(READ_SEATS),
            publish_to_owner: Script::new(PUBLISH_TO_OWNER),
        }
    }
}

/// A handle on the cluster store in Redis, acting as one instance. Cheap to clone.
#[derive(Clone)]
pub struct RedisStore {
    client: Client,
    conn: ConnectionManager,
    instance: InstanceId,
    config: StoreConfig,
    clock: Arc<dyn Clock>,
    scripts: Arc<Scripts>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The client's connection info may hold the password.
        f.debug_struct("RedisStore")
            .field("instance", &self.instance)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A handle on the Redis of `settings` (URL, password, TLS, database; `key_prefix` replaces
    /// `config.key_prefix`) acting as `instance`. Does not wait for Redis: the first operation
    /// connects, and a Redis that is down gives [`StoreError::Unavailable`] until it is back.
    /// Must be called inside a tokio runtime.
    pub fn open(
        settings: &RedisSettings,
        instance: InstanceId,
        mut config: StoreConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<RedisStore, StoreError> {
        config.key_prefix.clone_from(&settings.key_prefix);
        Self::open_url(&settings.connection_url(), instance, config, clock)
    }

    /// As [`RedisStore::open`], from a `redis://`, `rediss://` or `unix://` URL.
    pub fn open_url(
        url: &str,
        instance: InstanceId,
        config: StoreConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<RedisStore, StoreError> {
        let client = Client::open(url).map_err(|e| StoreError::BadSettings {
            // The URL may hold the password: only the kind of error is reported.
            reason: format!("cannot use the Redis URL: {:?}", e.kind()),
        })?;
        let op = Duration::from_millis(config.op_timeout_ms.max(1));
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(op))
            .set_response_timeout(Some(op))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(Duration::from_millis(200));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), manager_config)
            .map_err(|e| StoreError::BadSettings { reason: e.to_string() })?;
        Ok(RedisStore { client, conn, instance, config, clock, scripts: Arc::new(Scripts::new()) })
    }

    fn key(&self, kind: &str, name: &str) -> String {
        format!("{}{kind}:{name}", self.config.key_prefix)
    }

    fn channel_prefix(&self) -> String {
        format!("{}bus:", self.config.key_prefix)
    }

    fn instances_key(&self) -> String {
        format!("{}instances", self.config.key_prefix)
    }

    /// Runs `op` within the operation timeout, mapping Redis errors to [`StoreError`].
    async fn run<T>(
        &self,
        op: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, StoreError> {
        let limit = Duration::from_millis(self.config.op_timeout_ms.max(1));
        match tokio::time::timeout(limit, op).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(map_error(&e)),
            Err(_) => Err(StoreError::Unavailable {
                reason: format!("no answer within {} ms", self.config.op_timeout_ms),
            }),
        }
    }

    fn ours(&self, lease: &Lease) -> Result<(), StoreError> {
        if lease.owner != self.instance {
            return Err(StoreError::NotOurLease {
                owner: lease.owner.clone(),
                instance: self.instance.clone(),
            });
        }
        Ok(())
    }

    fn bounded(&self, payload: &[u8]) -> Result<Vec<u8>, StoreError> {
        let max = self.config.bus_payload_bytes_max;
        if payload.len() > max {
            return Err(StoreError::MessageTooLarge { len: payload.len(), max });
        }
        Ok(BusMessage::encode(&self.instance, payload))
    }

    /// Writes (or with an empty `record`, removes) `peer`'s seat, fenced by `lease`.
    async fn fenced_seat(
        &self,
        lease: &Lease,
        peer: &str,
        record: &str,
        grace_ms: Option<u64>,
    ) -> Result<(), StoreError> {
        self.ours(lease)?;
        let mut conn = self.conn.clone();
        let zone = lease.zone.as_str();
        let mut inv = self.scripts.fenced_seat.key(self.key("lease", zone));
        inv.key(self.key("seats", zone)).key(self.key("seat-grace", zone));
        let keep_ms = self.config.seat_ttl_ms.max(grace_ms.unwrap_or(0)).max(1);
        let grace = grace_ms.map(|g| g.to_string()).unwrap_or_default();
        inv.arg(lease.token()).arg(peer).arg(record).arg(keep_ms).arg(grace);
        let reply: Vec<String> = self.run(inv.invoke_async(&mut conn)).await?;
        fenced_reply(lease, &reply)
    }

    /// Connects a pub/sub connection and subscribes it to this instance's channel.
    async fn connect_pubsub(&self) -> Result<PubSub, StoreError> {
        let channel = format!("{}{}", self.channel_prefix(), self.instance);
        let client = self.client.clone();
        self.run(async move {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok(pubsub)
        })
        .await
    }
}

/// Reads the reply of a fenced script: `{"1"}` or `{"0", holder}`.
fn fenced_reply(lease: &Lease, reply: &[String]) -> Result<(), StoreError> {
    match reply.first().map(String::as_str) {
        Some("1") => Ok(()),
        _ => Err(StoreError::Fenced {
            zone: lease.zone.clone(),
            epoch: lease.epoch,
            holder: reply.get(1).filter(|h| !h.is_empty()).cloned(),
        }),
    }
}

/// Splits a lease value `owner:epoch`.
fn parse_token(key: &str, token: &str) -> Result<(InstanceId, u64), StoreError> {
    let corrupt =
        |reason: &str| StoreError::Corrupt { key: key.to_owned(), reason: reason.to_owned() };
    let (owner, epoch) = token.rsplit_once(':').ok_or_else(|| corrupt("no ':' in the lease"))?;
    let owner = InstanceId::new(owner).map_err(|e| corrupt(&e.to_string()))?;
    let epoch = epoch.parse().map_err(|_| corrupt("epoch is not a number"))?;
    Ok((owner, epoch))
}

fn parse_non_negative(s: Option<&String>) -> u64 {
    // A count or a PTTL; PTTL is -1 (no expiry) or -2 (gone) in corner cases: both read as 0.
    s.and_then(|s| s.parse::<i64>().ok()).map_or(0, |v| u64::try_from(v).unwrap_or(0))
}

fn map_error(e: &RedisError) -> StoreError {
    // A wrong password or bad settings do not heal by retrying: refused, not unavailable.
    if matches!(e.kind(), ErrorKind::AuthenticationFailed | ErrorKind::InvalidClientConfig)
        || e.code() == Some("NOAUTH")
        || e.code() == Some("WRONGPASS")
    {
        return StoreError::Rejected { reason: e.to_string() };
    }
    if e.is_io_error()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || e.is_timeout()
        || e.is_unrecoverable_error()
    {
        StoreError::Unavailable { reason: e.to_string() }
    } else {
        StoreError::Rejected { reason: e.to_string() }
    }
}

#[async_trait]
impl ClusterStore for RedisStore {
    fn instance(&self) -> &InstanceId {
        &self.instance
    }

    async fn acquire(&self, zone: &Zone, ttl_ms: u64) -> Result<Acquired, StoreError> {
        let sent_at_ms = self.clock.now_ms();
        let mut conn = self.conn.clone();
        let lease_key = self.key("lease", zone.as_str());
        let mut inv = self.scripts.acquire.key(&lease_key);
        inv.key(self.key("epoch", zone.as_str())).arg(self.instance.as_str()).arg(ttl_ms.max(1));
        let reply: Vec<String> = self.run(inv.invoke_async(&mut conn)).await?;
        let corrupt = || StoreError::Corrupt {
            key: lease_key.clone(),
            reason: format!("unexpected acquire reply {reply:?}"),
        };
        let (Some(flag), Some(owner), Some(epoch)) = (reply.first(), reply.get(1), reply.get(2))
        else {
            return Err(corrupt());
        };
        let (owner, epoch) = parse_token(&lease_key, &format!("{owner}:{epoch}"))?;
        if flag == "1" {
            return Ok(Acquired::Owned(Lease {
                zone: zone.clone(),
                owner,
                epoch,
                expires_at_ms: sent_at_ms.saturating_add(ttl_ms),
            }));
        }
        Ok(Acquired::HeldBy(LeaseHolder {
            owner,
            epoch,
            remaining_ms: parse_non_negative(reply.get(3)),
        }))
    }

    async fn renew(&self, lease: &Lease, ttl_ms: u64) -> Result<Lease, StoreError> {
        self.ours(lease)?;
        let sent_at_ms = self.clock.now_ms();
        let mut conn = self.conn.clone();
        let mut inv = self.scripts.renew.key(self.key("lease", lease.zone.as_str()));
        inv.arg(lease.token()).arg(ttl_ms.max(1));
        let reply: Vec<String> = self.run(inv.invoke_async(&mut conn)).await?;
        fenced_reply(lease, &reply)?;
        Ok(Lease { expires_at_ms: sent_at_ms.saturating_add(ttl_ms), ..lease.clone() })
    }

    async fn release(&self, lease: &Lease) -> Result<bool, StoreError> {
        self.ours(lease)?;
        let mut conn = self.conn.clone();
        let mut inv = self.scripts.release.key(self.key("lease", lease.zone.as_str()));
        inv.arg(lease.token());
        let n: i64 = self.run(inv.invoke_async(&mut conn)).await?;
        Ok(n == 1)
    }

    async fn owner(&self, zone: &Zone) -> Result<Option<LeaseHolder>, StoreError> {
        let mut conn = self.conn.clone();
        let lease_key = self.key("lease", zone.as_str());
        let inv = self.scripts.read_lease.key(&lease_key);
        let reply: Vec<String> = self.run(inv.invoke_async(&mut conn)).await?;
        let Some(token) = reply.first() else { return Ok(None) };
        let (owner, epoch) = parse_token(&lease_key, token)?;
        Ok(Some(LeaseHolder { owner, epoch, remaining_ms: parse_non_negative(reply.get(1)) }))
    }

    async fn put_seat(
        &self,
        lease: &Lease,
        seat: &SeatRecord,
        grace_ms: Option<u64>,
    ) -> Result<(), StoreError> {
        if seat.zone != lease.zone {
            return Err(StoreError::WrongZone {
                lease: lease.zone.clone(),
                seat: seat.zone.clone(),
            });
        }
        let json = serde_json::to_string(seat).map_err(|e| StoreError::Corrupt {
            key: self.key("seats", lease.zone.as_str()),
            reason: e.to_string(),
        })?;
        let record = if grace_ms == Some(0) { "" } else { json.as_str() };
        self.fenced_seat(lease, seat.peer_id.as_str(), record, grace_ms).await
    }

    async fn remove_seat(&self, lease: &Lease, peer: &PeerId) -> Result<(), StoreError> {
        self.fenced_seat(lease, peer.as_str(), "", None).await
    }

    async fn seats(&self, zone: &Zone) -> Result<Vec<StoredSeat>, StoreError> {
        let mut conn = self.conn.clone();
        let key = self.key("seats", zone.as_str());
        let mut inv = self.scripts.read_seats.key(&key);
        inv.key(self.key("seat-grace", zone.as_str()));
        let flat: Vec<String> = self.run(inv.invoke_async(&mut conn)).await?;
        // By peer id, as HGETALL's order is the hash's own.
        let mut by_peer = std::collections::BTreeMap::new();
        for triple in flat.chunks_exact(3) {
            let (peer, json, left) = (&triple[0], &triple[1], &triple[2]);
            match serde_json::from_str::<SeatRecord>(json) {
                Ok(record) => {
                    let grace_left_ms = (!left.is_empty()).then(|| parse_non_negative(Some(left)));
                    by_peer.insert(peer.clone(), StoredSeat { record, grace_left_ms });
                }
                // One unreadable record must not block a takeover: skip it, loudly.
                Err(e) => tracing::warn!(%key, %peer, error = %e, "skipping an unreadable seat"),
            }
        }
        Ok(by_peer.into_values().collect())
    }

    async fn publish(&self, to: &InstanceId, payload: &[u8]) -> Result<usize, StoreError> {
        let bytes = self.bounded(payload)?;
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(format!("{}{to}", self.channel_prefix())).arg(bytes);
        let n: i64 = self.run(cmd.query_async(&mut conn)).await?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    async fn publish_to_owner(
        &self,
        zone: &Zone,
        owner: &InstanceId,
        payload: &[u8],
    ) -> Result<Option<usize>, StoreError> {
        let bytes = self.bounded(payload)?;
        let mut conn = self.conn.clone();
        let mut inv = self.scripts.publish_to_owner.key(self.key("lease", zone.as_str()));
        inv.arg(self.channel_prefix()).arg(bytes).arg(owner.as_str());
        let n: i64 = self.run(inv.invoke_async(&mut conn)).await?;
        Ok(usize::try_from(n).ok())
    }

    async fn subscribe(&self) -> Result<Subscription, StoreError> {
        let first = self.connect_pubsub().await?;
        let (tx, rx) = mpsc::channel(self.config.bus_queue_len.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(follow(self.clone(), first, tx, Arc::clone(&dropped)));
        Ok(Subscription { rx, dropped, task: Some(task.abort_handle()) })
    }

    async fn publish_view(&self, view: &InstanceView, ttl_ms: u64) -> Result<(), StoreError> {
        let key = self.key("view", self.instance.as_str());
        let json = serde_json::to_string(view)
            .map_err(|e| StoreError::Corrupt { key: key.clone(), reason: e.to_string() })?;
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg(&key)
            .arg(json)
            .arg("PX")
            .arg(ttl_ms.max(1))
            .ignore()
            .cmd("SADD")
            .arg(self.instances_key())
            .arg(self.instance.as_str())
            .ignore();
        self.run(pipe.query_async::<()>(&mut conn)).await
    }

    async fn world(&self) -> Result<WorldView, StoreError> {
        let mut conn = self.conn.clone();
        let mut members_cmd = redis::cmd("SMEMBERS");
        members_cmd.arg(self.instances_key());
        let mut ids: Vec<String> = self.run(members_cmd.query_async(&mut conn)).await?;
        ids.sort();
        let mut world = WorldView::default();
        if ids.is_empty() {
            return Ok(world);
        }
        let keys: Vec<String> = ids.iter().map(|id| self.key("view", id)).collect();
        let mut mget = redis::cmd("MGET");
        mget.arg(&keys);
        let views: Vec<Option<String>> = self.run(mget.query_async(&mut conn)).await?;
        let mut gone = Vec::new();
        for ((id, key), json) in ids.iter().zip(&keys).zip(views) {
            let parsed = json.and_then(|j| match serde_json::from_str::<InstanceView>(&j) {
                Ok(v) => Some(v),
                Err(e) => {
                    tracing::warn!(%key, error = %e, "skipping an unreadable instance view");
                    None
                }
            });
            match (InstanceId::new(id.as_str()), parsed) {
                (Ok(id), Some(view)) => {
                    world.instances.insert(id, view);
                }
                _ => gone.push(id.clone()),
            }
        }
        if !gone.is_empty() {
            // Expired views leave their id in the set: tidy up (best effort, the read is done).
            let mut srem = redis::cmd("SREM");
            srem.arg(self.instances_key()).arg(&gone);
            if let Err(e) = self.run(srem.query_async::<i64>(&mut conn)).await {
                tracing::debug!(error = %e, "could not forget expired instance views");
            }
        }
        Ok(world)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: String = self.run(redis::cmd("PING").query_async(&mut conn)).await?;
        Ok(())
    }
}

/// Shortest and longest pause between pub/sub reconnection attempts, in ms.
const RESUBSCRIBE_DELAY_MS: (u64, u64) = (50, 2_000);

/// Moves messages from the pub/sub connection to the subscription's queue, reconnecting after
/// an outage, until the subscription is dropped (which aborts this task).
async fn follow(
    store: RedisStore,
    first: PubSub,
    tx: mpsc::Sender<BusMessage>,
    dropped: Arc<AtomicU64>,
) {
    let max = store.config.bus_payload_bytes_max;
    let mut pubsub = Some(first);
    let mut delay_ms = RESUBSCRIBE_DELAY_MS.0;
    loop {
        if let Some(ps) = pubsub.take() {
            delay_ms = RESUBSCRIBE_DELAY_MS.0;
            let mut stream = ps.into_on_message();
            while let Some(msg) = stream.next().await {
                match BusMessage::decode(msg.get_payload_bytes(), max) {
                    Some(m) => match tx.try_send(m) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            dropped.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => return,
                    },
                    None => {
                        dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            tracing::warn!(instance = %store.instance, "bus subscription lost; reconnecting");
        }
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        delay_ms = (delay_ms * 2).min(RESUBSCRIBE_DELAY_MS.1);
        match store.connect_pubsub().await {
            Ok(ps) => {
                tracing::info!(instance = %store.instance, "bus subscription re-established");
                pubsub = Some(ps);
            }
            Err(e) => tracing::debug!(error = %e, "bus subscription still down"),
        }
    }
}
