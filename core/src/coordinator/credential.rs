//! rAthena's web auth token as a coordinator credential (authentication mode `rathena`).
//!
//! A client presents `"<account id>:<web auth token>"` (for example
//! `"2000001:0123456789abcdef"`) wherever a JWT may go: the `Authorization: Bearer` header,
//! `?token=`, or the first `auth` frame. The adapter reads the account's row of rAthena's
//! `login` table and this module decides, exactly as rAthena's web server does
//! (`src/web/auth.cpp`): the account exists, is not a server account (`sex = 'S'`), its
//! `web_auth_token` is the one presented and `web_auth_token_enabled` is 1. The same decision,
//! re-run on a fresh row, says whether an admitted connection keeps its credential; one that
//! does not is closed with `auth-revoked` ([`crate::coordinator::Input::Revoke`]).
//!
//! Also here: [`FailureLimiter`], which bounds the failed checks one address may cause (each
//! costs a database query).

use core::fmt;
use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::time::Instant;
use crate::wire::{ErrorCode, PeerId};

/// Characters of a web auth token: rAthena draws 16 lowercase hex digits
/// (`WEB_AUTH_TOKEN_LENGTH` 17 with the NUL).
pub const WEB_AUTH_TOKEN_LEN: usize = 16;
/// Longest credential string parsed (an account id of 10 digits, `:`, the token); anything
/// longer is refused before it is looked at.
pub const CREDENTIAL_BYTES_MAX: usize = 10 + 1 + WEB_AUTH_TOKEN_LEN;

/// A web auth token: 16 lowercase hex digits. Its `Debug` hides it (tokens never reach logs).
#[derive(Clone, PartialEq, Eq)]
pub struct WebAuthToken([u8; WEB_AUTH_TOKEN_LEN]);

impl WebAuthToken {
    /// Parses 16 lowercase hex digits.
    pub fn parse(s: &str) -> Result<WebAuthToken, CredentialRejection> {
        let bytes = s.as_bytes();
        if bytes.len() != WEB_AUTH_TOKEN_LEN
            || !bytes.iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
        {
            return Err(CredentialRejection::Malformed {
                detail: "the web auth token must be 16 lowercase hex digits",
            });
        }
        let mut out = [0u8; WEB_AUTH_TOKEN_LEN];
        out.copy_from_slice(bytes);
        Ok(WebAuthToken(out))
    }

    /// The token's text (for the database query and for clients building a credential).
    pub fn expose(&self) -> &str {
        // Only ASCII hex digits are ever stored.
        core::str::from_utf8(&self.0).unwrap_or("")
    }

    /// Whether `stored` (a `login.web_auth_token` value) is this token, compared in constant
    /// time and byte for byte (the database's collation may ignore case; this does not).
    pub fn matches(&self, stored: &[u8]) -> bool {
        if stored.len() != WEB_AUTH_TOKEN_LEN {
            return false;
        }
        self.0.iter().zip(stored).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

impl fmt::Debug for WebAuthToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebAuthToken(<hidden>)")
    }
}

/// What a client presents in mode `rathena`: its account id and its current web auth token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebAuthCredential {
    account_id: u32,
    token: WebAuthToken,
}

impl WebAuthCredential {
    /// A credential from its parts.
    pub fn new(account_id: u32, token: WebAuthToken) -> WebAuthCredential {
        WebAuthCredential { account_id, token }
    }

    /// Parses `"<account id>:<token>"`: a decimal account id from 1 to 4294967295 without sign
    /// or leading zeros, a colon, 16 lowercase hex digits. Anything else is
    /// [`CredentialRejection::Malformed`].
    pub fn parse(s: &str) -> Result<WebAuthCredential, CredentialRejection> {
        if s.is_empty() {
            return Err(CredentialRejection::Malformed { detail: "the credential is empty" });
        }
        if s.len() > CREDENTIAL_BYTES_MAX {
            return Err(CredentialRejection::Malformed {
                detail: "the credential is longer than `<account id>:<16 hex digits>`",
            });
        }
        let Some((id, token)) = s.split_once(':') else {
            return Err(CredentialRejection::Malformed {
                detail: "expected `<account id>:<web auth token>`",
            });
        };
        let digits = !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit());
        let account_id = match id.parse::<u32>() {
            Ok(n) if digits && n > 0 && !id.starts_with('0') => n,
            _ => {
                return Err(CredentialRejection::Malformed {
                    detail: "the account id must be a decimal number from 1 to 4294967295",
                });
            }
        };
        Ok(WebAuthCredential { account_id, token: WebAuthToken::parse(token)? })
    }

    /// The credential string a client sends: `"<account id>:<token>"`.
    pub fn encode(account_id: u32, token: &str) -> String {
        format!("{account_id}:{token}")
    }

    /// The rAthena account id.
    pub fn account_id(&self) -> u32 {
        self.account_id
    }

    /// The token.
    pub fn token(&self) -> &WebAuthToken {
        &self.token
    }

    /// The coordinator identity of this account: its id in decimal.
    pub fn peer_id(&self) -> PeerId {
        account_peer_id(self.account_id)
    }

    /// The decision of rAthena's web server for this credential, given the account's row
    /// (`None`: no row with that id).
    pub fn check(&self, row: Option<&AccountRow>) -> Result<(), CredentialRejection> {
        let Some(row) = row else {
            return Err(CredentialRejection::UnknownAccount);
        };
        if row.account_id != self.account_id {
            return Err(CredentialRejection::UnknownAccount);
        }
        if row.server_account {
            return Err(CredentialRejection::ServerAccount);
        }
        let matches = row.web_auth_token.as_deref().is_some_and(|t| self.token.matches(t));
        if !matches {
            return Err(CredentialRejection::TokenMismatch);
        }
        if !row.web_auth_token_enabled {
            return Err(CredentialRejection::TokenDisabled);
        }
        Ok(())
    }
}

/// The peer id of an rAthena account: its id in decimal.
pub fn account_peer_id(account_id: u32) -> PeerId {
    PeerId::from_account_id(account_id)
}

/// What the adapter read from rAthena's `login` table for one account.
#[derive(Clone, PartialEq, Eq)]
pub struct AccountRow {
    /// `account_id`.
    pub account_id: u32,
    /// `web_auth_token` (NULL: none).
    pub web_auth_token: Option<Vec<u8>>,
    /// `web_auth_token_enabled = 1`.
    pub web_auth_token_enabled: bool,
    /// `sex = 'S'`: an account the char and map servers use to log in.
    pub server_account: bool,
}

impl fmt::Debug for AccountRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccountRow")
            .field("account_id", &self.account_id)
            .field("web_auth_token", &self.web_auth_token.as_ref().map(|_| "<hidden>"))
            .field("web_auth_token_enabled", &self.web_auth_token_enabled)
            .field("server_account", &self.server_account)
            .finish()
    }
}

/// Why a web auth token credential is refused (at login) or withdrawn (at a re-check).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialRejection {
    /// Not `"<account id>:<16 lowercase hex digits>"`.
    #[error("malformed credential: {detail}")]
    Malformed {
        /// What was wrong.
        detail: &'static str,
    },
    /// No account has that id.
    #[error("account id and web auth token match no online account")]
    UnknownAccount,
    /// The account's token is another one (or none): a wrong guess, or the player logged in
    /// again since.
    #[error("account id and web auth token match no online account")]
    TokenMismatch,
    /// The token is right but rAthena disabled it: the player logged out of the game.
    #[error("the web auth token was disabled: the player is not logged in")]
    TokenDisabled,
    /// The account is a server account (`sex = 'S'`), which never plays.
    #[error("server accounts cannot use P2P")]
    ServerAccount,
}

impl CredentialRejection {
    /// The code a refused login gets: `auth-expired` for a disabled token (it was valid),
    /// `auth-invalid` for everything else. (A withdrawn credential is closed with
    /// `auth-revoked` whatever the reason.)
    pub fn code(&self) -> ErrorCode {
        match self {
            CredentialRejection::TokenDisabled => ErrorCode::AuthExpired,
            _ => ErrorCode::AuthInvalid,
        }
    }

    /// A metric label for the reason: `malformed`, `unknown-account`, `token-mismatch`,
    /// `token-disabled`, `server-account`.
    pub fn label(&self) -> &'static str {
        match self {
            CredentialRejection::Malformed { .. } => "malformed",
            CredentialRejection::UnknownAccount => "unknown-account",
            CredentialRejection::TokenMismatch => "token-mismatch",
            CredentialRejection::TokenDisabled => "token-disabled",
            CredentialRejection::ServerAccount => "server-account",
        }
    }
}

/// Bounds the failed checks one address may cause: a token bucket of `burst` failures per
/// address, refilled at `per_minute`. While an address's bucket is empty its checks are refused
/// (`rate-limited`) without a query. At most `addresses_max` addresses are tracked; when the
/// table is full, the address whose bucket is fullest (the least suspicious) is forgotten.
#[derive(Clone, Debug)]
pub struct FailureLimiter {
    burst: u32,
    per_minute: u32,
    addresses_max: usize,
    buckets: BTreeMap<IpAddr, Bucket>,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    /// Failures still allowed, in [`MILLI`] units per failure.
    allowance_milli: u64,
    refilled_at: Instant,
}

/// One failure, in allowance units: `per_minute` failures per 60,000 ms refill exactly
/// `per_minute` units per millisecond, with no rounding.
const MILLI: u64 = 60_000;

impl FailureLimiter {
    /// A limiter with `burst` failures per address, refilled at `per_minute`, over at most
    /// `addresses_max` addresses (each at least 1).
    pub fn new(burst: u32, per_minute: u32, addresses_max: usize) -> FailureLimiter {
        FailureLimiter {
            burst: burst.max(1),
            per_minute: per_minute.max(1),
            addresses_max: addresses_max.max(1),
            buckets: BTreeMap::new(),
        }
    }

    fn refill(&self, bucket: &mut Bucket, now: Instant) {
        let elapsed_ms = now.millis_since(bucket.refilled_at);
        let refill = elapsed_ms.saturating_mul(u64::from(self.per_minute));
        let cap = u64::from(self.burst) * MILLI;
        bucket.allowance_milli = bucket.allowance_milli.saturating_add(refill).min(cap);
        bucket.refilled_at = bucket.refilled_at.max(now);
    }

    /// Whether `ip` may have its credential checked now.
    pub fn allows(&mut self, now: Instant, ip: IpAddr) -> bool {
        let Some(mut bucket) = self.buckets.get(&ip).copied() else {
            return true;
        };
        self.refill(&mut bucket, now);
        let cap = u64::from(self.burst) * MILLI;
        if bucket.allowance_milli >= cap {
            self.buckets.remove(&ip);
            return true;
        }
        self.buckets.insert(ip, bucket);
        bucket.allowance_milli >= MILLI
    }

    /// Records a failed check from `ip`.
    pub fn failed(&mut self, now: Instant, ip: IpAddr) {
        let cap = u64::from(self.burst) * MILLI;
        let mut bucket = match self.buckets.get(&ip).copied() {
            Some(b) => b,
            None => {
                if self.buckets.len() >= self.addresses_max {
                    self.evict(now);
                }
                Bucket { allowance_milli: cap, refilled_at: now }
            }
        };
        self.refill(&mut bucket, now);
        bucket.allowance_milli = bucket.allowance_milli.saturating_sub(MILLI);
        self.buckets.insert(ip, bucket);
    }

    /// Addresses currently tracked.
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }

    fn evict(&mut self, now: Instant) {
        let cap = u64::from(self.burst) * MILLI;
        let fullest = self
            .buckets
            .iter()
            .map(|(ip, b)| {
                let mut b = *b;
                self.refill(&mut b, now);
                (b.allowance_milli.min(cap), *ip)
            })
            .max();
        if let Some((_, ip)) = fullest {
            self.buckets.remove(&ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef";

    fn row(token: &str, enabled: bool, sex: char) -> AccountRow {
        AccountRow {
            account_id: 2_000_001,
            web_auth_token: Some(token.as_bytes().to_vec()),
            web_auth_token_enabled: enabled,
            server_account: sex == 'S',
        }
    }

    #[test]
    fn credential_is_account_id_colon_sixteen_lowercase_hex_digits() {
        let c = WebAuthCredential::parse("2000001:0123456789abcdef").unwrap();
        assert_eq!(c.account_id(), 2_000_001);
        assert_eq!(c.token().expose(), TOKEN);
        assert_eq!(c.peer_id().as_str(), "2000001");
        assert_eq!(WebAuthCredential::encode(2_000_001, TOKEN), "2000001:0123456789abcdef");
        for bad in [
            "",
            ":",
            "2000001",
            "2000001:",
            ":0123456789abcdef",
            "0:0123456789abcdef",
            "02000001:0123456789abcdef",
            "+2000001:0123456789abcdef",
            "-1:0123456789abcdef",
            "4294967296:0123456789abcdef",
            "2000001:0123456789ABCDEF",
            "2000001:0123456789abcde",
            "2000001:0123456789abcdef0",
            "2000001:0123456789abcdeg",
            "2000001:' OR '1'='1' --",
            "1 OR 1=1:0123456789abcdef",
            "2000001:0123456789abcdef\0",
        ] {
            let err = WebAuthCredential::parse(bad).unwrap_err();
            assert!(matches!(err, CredentialRejection::Malformed { .. }), "{bad:?}");
            assert_eq!(err.code(), ErrorCode::AuthInvalid);
        }
        let huge = format!("1:{}", "a".repeat(1 << 20));
        assert!(matches!(
            WebAuthCredential::parse(&huge),
            Err(CredentialRejection::Malformed { .. })
        ));
    }

    #[test]
    fn check_follows_rathena_web_server() {
        let c = WebAuthCredential::parse("2000001:0123456789abcdef").unwrap();
        assert_eq!(c.check(Some(&row(TOKEN, true, 'M'))), Ok(()));
        assert_eq!(c.check(None), Err(CredentialRejection::UnknownAccount));
        assert_eq!(
            c.check(Some(&row("fedcba9876543210", true, 'M'))),
            Err(CredentialRejection::TokenMismatch)
        );
        // The database may compare case-insensitively; the check does not.
        assert_eq!(
            c.check(Some(&row("0123456789ABCDEF", true, 'M'))),
            Err(CredentialRejection::TokenMismatch)
        );
        assert_eq!(c.check(Some(&row(TOKEN, false, 'F'))), Err(CredentialRejection::TokenDisabled));
        assert_eq!(c.check(Some(&row(TOKEN, true, 'S'))), Err(CredentialRejection::ServerAccount));
        let mut none = row(TOKEN, true, 'M');
        none.web_auth_token = None;
        assert_eq!(c.check(Some(&none)), Err(CredentialRejection::TokenMismatch));
        let mut other = row(TOKEN, true, 'M');
        other.account_id = 2_000_002;
        assert_eq!(c.check(Some(&other)), Err(CredentialRejection::UnknownAccount));
        assert_eq!(CredentialRejection::TokenDisabled.code(), ErrorCode::AuthExpired);
    }

    #[test]
    fn tokens_never_show_in_debug_output() {
        let c = WebAuthCredential::parse("2000001:0123456789abcdef").unwrap();
        let shown = format!("{c:?} {:?}", row(TOKEN, true, 'M'));
        assert!(!shown.contains(TOKEN), "{shown}");
    }

    #[test]
    fn failure_limiter_refuses_a_burst_from_one_address_only() {
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let mut l = FailureLimiter::new(3, 6, 100);
        let t0 = Instant::from_millis(1_000);
        for _ in 0..3 {
            assert!(l.allows(t0, a));
            l.failed(t0, a);
        }
        assert!(!l.allows(t0, a));
        assert!(l.allows(t0, b));
        // 6 per minute: one more after 10 s.
        assert!(!l.allows(Instant::from_millis(10_999), a));
        assert!(l.allows(Instant::from_millis(11_000), a));
        // A full bucket is forgotten.
        assert!(l.allows(Instant::from_millis(100_000), a));
        assert_eq!(l.tracked(), 0);
    }

    #[test]
    fn failure_limiter_tracks_a_bounded_number_of_addresses() {
        let mut l = FailureLimiter::new(2, 1, 4);
        let now = Instant::from_millis(0);
        for i in 0..100u8 {
            l.failed(now, IpAddr::from([10, 0, 0, i]));
            assert!(l.tracked() <= 4);
        }
    }
}
