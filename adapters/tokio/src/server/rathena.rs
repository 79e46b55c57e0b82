//! Authentication mode `rathena`: the web auth token, read from rAthena's own `login` table.
//!
//! The decisions (what a credential is, whether a row admits it, what revocation does to a
//! seat) are the core's ([`ro_p2p_core::coordinator::credential`]); this module does the I/O:
//! a MySQL connection pool ([`mysql_async`], prepared statements, TLS when the URL asks with
//! `?require_ssl=true`), a timeout on every query, the database's health with exponential
//! backoff while it is unreachable, the per-address limit on failed checks, the counters for
//! `/metrics`, and the registry of admitted credentials that the re-check loop
//! ([`recheck_loop`]) reads in batches of [`RECHECK_BATCH`] accounts per query.
//!
//! Tokens are never logged and never appear in a metric: the credential types hide them in
//! `Debug`, and errors name the account id at most.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mysql_async::prelude::Queryable as _;
use ro_p2p_core::Instant as CoreInstant;
use ro_p2p_core::config::{LoginSchema, RathenaAuthSettings, redact_url_password};
use ro_p2p_core::coordinator::ConnId;
use ro_p2p_core::coordinator::credential::{
    AccountRow, CredentialRejection, FailureLimiter, WebAuthCredential,
};
use tokio::time::Instant;

use super::auth_error::AuthError;
use super::conns::Event;
pub use super::health::AuthHealth;

/// Accounts per re-check query (`WHERE account_id IN (?, ... ?)` with this many
/// placeholders; a short batch repeats its last id, so one prepared statement serves all).
pub const RECHECK_BATCH: usize = 64;
/// First wait after the database failed, in milliseconds; doubles per failure.
pub const BACKOFF_BASE_MS: u64 = 500;
/// Longest wait between attempts while the database is unreachable, in milliseconds.
pub const BACKOFF_MAX_MS: u64 = 30_000;
/// Most addresses whose failed checks are tracked.
pub const FAILURE_ADDRESSES_MAX: usize = 65_536;

/// The result labels of `ro_p2p_auth_checks_total`.
pub const CHECK_RESULTS: &[&str] = &[
    "ok",
    "malformed",
    "unknown-account",
    "token-mismatch",
    "token-disabled",
    "server-account",
    "unavailable",
    "rate-limited",
];

/// Why the `rathena` mode cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RathenaAuthError {
    /// The database URL is not one the MySQL client understands (the URL is not repeated: it
    /// holds the password).
    #[error("coordinator.auth.rathena.database_url ({url}) is invalid: {detail}")]
    BadUrl {
        /// The URL with its password hidden.
        url: String,
        /// What the client said.
        detail: String,
    },
}

/// The database's health, with the backoff of reconnection attempts.
#[derive(Debug, Default)]
struct DbHealth {
    /// Consecutive failures (0: up).
    failures: u32,
    /// While down: no attempt before this instant.
    retry_at: Option<Instant>,
    /// While down: why (no secrets in it).
    reason: Option<String>,
}

/// The `rathena` mode's state: pool, health, limiter, counters and admitted credentials.
pub struct RathenaAuth {
    pool: mysql_async::Pool,
    schema: LoginSchema,
    redacted_url: String,
    query_timeout: Duration,
    recheck_interval: Duration,
    health: Mutex<DbHealth>,
    limiter: Mutex<FailureLimiter>,
    epoch: Instant,
    checks: BTreeMap<&'static str, AtomicU64>,
    revocations: AtomicU64,
    admitted: Mutex<BTreeMap<ConnId, WebAuthCredential>>,
}

impl std::fmt::Debug for RathenaAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RathenaAuth").field("database", &self.redacted_url).finish_non_exhaustive()
    }
}

impl RathenaAuth {
    /// The mode for `settings`. No connection is opened yet (the first check opens one), so a
    /// database that is down at start only degrades the service.
    pub fn new(settings: &RathenaAuthSettings) -> Result<RathenaAuth, RathenaAuthError> {
        let redacted_url = redact_url_password(settings.database_url.expose());
        let opts = mysql_async::Opts::from_url(settings.database_url.expose()).map_err(|e| {
            RathenaAuthError::BadUrl { url: redacted_url.clone(), detail: scrub(&e.to_string()) }
        })?;
        let max = usize::try_from(settings.pool_max.max(1)).unwrap_or(8);
        let constraints = mysql_async::PoolConstraints::new(0, max)
            .unwrap_or_else(|| mysql_async::PoolConstraints::new(0, 8).expect("0 <= 8"));
        let pool_opts = mysql_async::PoolOpts::default()
            .with_constraints(constraints)
            .with_inactive_connection_ttl(Duration::from_secs(60));
        let opts =
            mysql_async::OptsBuilder::from_opts(opts).pool_opts(pool_opts).stmt_cache_size(8);
        Ok(RathenaAuth {
            pool: mysql_async::Pool::new(opts),
            schema: settings.schema.clone(),
            redacted_url,
            query_timeout: Duration::from_millis(settings.query_timeout_ms),
            recheck_interval: Duration::from_secs(settings.recheck_interval_s),
            health: Mutex::default(),
            limiter: Mutex::new(FailureLimiter::new(
                settings.failed_checks_burst,
                settings.failed_checks_per_minute,
                FAILURE_ADDRESSES_MAX,
            )),
            epoch: Instant::now(),
            checks: CHECK_RESULTS.iter().map(|r| (*r, AtomicU64::new(0))).collect(),
            revocations: AtomicU64::new(0),
            admitted: Mutex::default(),
        })
    }

    /// How often admitted credentials are re-checked.
    pub fn recheck_interval(&self) -> Duration {
        self.recheck_interval
    }

    fn core_now(&self) -> CoreInstant {
        let ms = Instant::now().saturating_duration_since(self.epoch).as_millis();
        CoreInstant::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
    }

    fn count(&self, result: &'static str) {
        if let Some(n) = self.checks.get(result) {
            n.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Checks a presented credential string for a new connection from `origin`.
    pub async fn admit(
        &self,
        token: &str,
        origin: Option<IpAddr>,
    ) -> Result<WebAuthCredential, AuthError> {
        if let Some(ip) = origin
            && !lock(&self.limiter).allows(self.core_now(), ip)
        {
            self.count("rate-limited");
            return Err(AuthError::RateLimited);
        }
        let refused = |this: &Self, why: CredentialRejection| {
            this.count(why.label());
            if let Some(ip) = origin {
                lock(&this.limiter).failed(this.core_now(), ip);
            }
            AuthError::Refused(why)
        };
        let credential = match WebAuthCredential::parse(token) {
            Ok(c) => c,
            Err(why) => return Err(refused(self, why)),
        };
        let rows = match self.fetch(&[credential.account_id()]).await {
            Ok(rows) => rows,
            Err(detail) => {
                self.count("unavailable");
                return Err(AuthError::Unavailable { detail });
            }
        };
        match credential.check(rows.get(&credential.account_id())) {
            Ok(()) => {
                self.count("ok");
                Ok(credential)
            }
            Err(why) => {
                tracing::debug!(
                    account = credential.account_id(),
                    reason = why.label(),
                    "web auth token refused"
                );
                Err(refused(self, why))
            }
        }
    }

    /// Remembers that `conn` was admitted with `credential` (for the re-checks).
    pub fn register(&self, conn: ConnId, credential: WebAuthCredential) {
        lock(&self.admitted).insert(conn, credential);
    }

    /// Forgets `conn` (its connection ended).
    pub fn unregister(&self, conn: ConnId) {
        lock(&self.admitted).remove(&conn);
    }

    /// Re-checks every admitted credential, in batches of [`RECHECK_BATCH`] accounts per
    /// query. Returns the connections whose credential was withdrawn, with why; on a database
    /// failure, nobody (admitted players stay) and the error.
    pub async fn recheck(&self) -> Result<Vec<(ConnId, CredentialRejection)>, String> {
        let admitted: Vec<(ConnId, WebAuthCredential)> =
            lock(&self.admitted).iter().map(|(c, cred)| (*c, cred.clone())).collect();
        let mut accounts: Vec<u32> = admitted.iter().map(|(_, c)| c.account_id()).collect();
        accounts.sort_unstable();
        accounts.dedup();
        if accounts.is_empty() && lock(&self.health).failures > 0 {
            // Nobody to re-check, but the database is down: probe it (account 0 never exists),
            // so health recovers without waiting for a login.
            self.fetch(&[0]).await?;
        }
        let mut rows = BTreeMap::new();
        for chunk in accounts.chunks(RECHECK_BATCH) {
            rows.extend(self.fetch(chunk).await?);
        }
        let mut revoked = Vec::new();
        for (conn, cred) in admitted {
            if let Err(why) = cred.check(rows.get(&cred.account_id())) {
                revoked.push((conn, why));
            }
        }
        self.revocations.fetch_add(revoked.len() as u64, Ordering::Relaxed);
        Ok(revoked)
    }

    /// Whether the database is considered down and the next attempt is not due yet; then the
    /// time to wait.
    fn backing_off(&self) -> Option<Duration> {
        let h = lock(&self.health);
        let at = h.retry_at?;
        let now = Instant::now();
        (at > now).then(|| at - now)
    }

    /// Reads the rows of `accounts` (at most [`RECHECK_BATCH`]), keyed by account id.
    async fn fetch(&self, accounts: &[u32]) -> Result<BTreeMap<u32, AccountRow>, String> {
        if let Some(wait) = self.backing_off() {
            let reason = lock(&self.health).reason.clone().unwrap_or_default();
            return Err(format!(
                "the account database is unreachable ({reason}); next attempt in {} ms",
                wait.as_millis()
            ));
        }
        let result = tokio::time::timeout(self.query_timeout, self.query(accounts)).await;
        let result = match result {
            Ok(r) => r.map_err(|e| scrub(&e.to_string())),
            Err(_) => Err(format!("no answer within {} ms", self.query_timeout.as_millis())),
        };
        let mut h = lock(&self.health);
        match result {
            Ok(rows) => {
                if h.failures > 0 {
                    tracing::info!(database = %self.redacted_url, "account database reachable again");
                }
                *h = DbHealth::default();
                Ok(rows)
            }
            Err(detail) => {
                h.failures = h.failures.saturating_add(1);
                let shift = h.failures.saturating_sub(1).min(16);
                let wait_ms = BACKOFF_BASE_MS.saturating_mul(1 << shift).min(BACKOFF_MAX_MS);
                h.retry_at = Some(Instant::now() + Duration::from_millis(wait_ms));
                tracing::warn!(
                    database = %self.redacted_url,
                    failures = h.failures,
                    retry_in_ms = wait_ms,
                    error = %detail,
                    "account database unreachable"
                );
                h.reason = Some(detail.clone());
                Err(format!("the account database is unreachable: {detail}"))
            }
        }
    }

    async fn query(
        &self,
        accounts: &[u32],
    ) -> Result<BTreeMap<u32, AccountRow>, mysql_async::Error> {
        let s = &self.schema;
        let select = format!(
            "SELECT `{id}`, `{tok}`, `{en}` = 1, `{sex}` = 'S' FROM `{t}` WHERE `{id}`",
            id = s.account_id,
            tok = s.web_auth_token,
            en = s.web_auth_token_enabled,
            sex = s.sex,
            t = s.table
        );
        let (sql, params): (String, Vec<mysql_async::Value>) = if accounts.len() == 1 {
            (format!("{select} = ?"), vec![accounts[0].into()])
        } else {
            let marks = vec!["?"; RECHECK_BATCH].join(", ");
            let last = accounts.last().copied().unwrap_or(0);
            let params = (0..RECHECK_BATCH)
                .map(|i| accounts.get(i).copied().unwrap_or(last).into())
                .collect();
            (format!("{select} IN ({marks})"), params)
        };
        let mut conn = self.pool.get_conn().await?;
        let rows: Vec<mysql_async::Row> = conn.exec(sql, params).await?;
        let mut out = BTreeMap::new();
        for mut row in rows {
            let int = |v: Option<mysql_async::Value>| -> Option<u64> {
                mysql_async::from_value_opt::<u64>(v?).ok()
            };
            let Some(id) = int(row.take(0)).and_then(|n| u32::try_from(n).ok()) else {
                continue;
            };
            let token = match row.take::<mysql_async::Value, usize>(1) {
                Some(mysql_async::Value::Bytes(b)) => Some(b),
                _ => None,
            };
            let enabled = int(row.take(2)) == Some(1);
            let server = int(row.take(3)) == Some(1);
            out.insert(
                id,
                AccountRow {
                    account_id: id,
                    web_auth_token: token,
                    web_auth_token_enabled: enabled,
                    server_account: server,
                },
            );
        }
        Ok(out)
    }

    /// What `/api/v1/health` shows.
    pub fn health(&self) -> AuthHealth {
        let h = lock(&self.health);
        AuthHealth {
            mode: "rathena",
            database: if h.failures == 0 { "ok" } else { "unreachable" },
            reason: h.reason.clone(),
            admitted: lock(&self.admitted).len(),
        }
    }

    /// Appends `ro_p2p_auth_*` to a Prometheus text page.
    pub fn render_metrics(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP ro_p2p_auth_checks_total Web auth token checks of new connections, by result.\n# TYPE ro_p2p_auth_checks_total counter"
        );
        for (result, n) in &self.checks {
            let _ = writeln!(
                out,
                "ro_p2p_auth_checks_total{{result=\"{result}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP ro_p2p_auth_revocations_total Connections closed with auth-revoked by the re-checks.\n# TYPE ro_p2p_auth_revocations_total counter\nro_p2p_auth_revocations_total {}",
            self.revocations.load(Ordering::Relaxed)
        );
        let up = lock(&self.health).failures == 0;
        let _ = writeln!(
            out,
            "# HELP ro_p2p_auth_database_up 1 while rAthena's account database answers, 0 while it is unreachable.\n# TYPE ro_p2p_auth_database_up gauge\nro_p2p_auth_database_up {}",
            u8::from(up)
        );
    }

    /// Waits until the next re-check is due: the interval, or sooner when the database is
    /// down and its next attempt comes first.
    async fn wait_for_recheck(&self) {
        let wait = match self.backing_off() {
            Some(b) if lock(&self.health).failures > 0 => b.min(self.recheck_interval),
            _ => self.recheck_interval,
        };
        tokio::time::sleep(wait.max(Duration::from_millis(50))).await;
    }
}

/// A database error's text, with the password of any URL it quotes hidden.
fn scrub(message: &str) -> String {
    if message.contains("://") { redact_url_password(message) } else { message.to_owned() }
}

/// A poisoned lock only means another task panicked mid-update of plain data; carry on.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Re-checks the admitted credentials every interval and hands each withdrawn one to the hub
/// (`auth-revoked`). Ends when the hub is gone.
pub(crate) async fn recheck_loop(
    auth: std::sync::Arc<RathenaAuth>,
    hub: tokio::sync::mpsc::WeakSender<Event>,
) {
    loop {
        auth.wait_for_recheck().await;
        let Some(tx) = hub.upgrade() else { return };
        let revoked = match auth.recheck().await {
            Ok(r) => r,
            // Logged by `fetch`; everyone admitted stays.
            Err(_) => continue,
        };
        for (conn, why) in revoked {
            tracing::info!(
                conn = conn.0,
                reason = why.label(),
                "web auth token withdrawn: closing"
            );
            let reason = match why {
                CredentialRejection::TokenDisabled => {
                    "the player logged out of the game: its web auth token was disabled".to_owned()
                }
                CredentialRejection::TokenMismatch => {
                    "the player logged in again: its web auth token was replaced".to_owned()
                }
                other => other.to_string(),
            };
            if tx.send(Event::Revoke { conn, reason }).await.is_err() {
                return;
            }
        }
    }
}
