//! Who is connecting: JWT verification or rAthena's web auth token, the wall clock, and TURN
//! REST credentials.
//!
//! The coordinator core never sees a token. The service verifies it here and hands the core an
//! [`Identity`], which is the rAthena account id: in mode `jwt` the token's subject (HS256 only,
//! the algorithm pinned, `exp` and `nbf` checked against an injectable [`WallClock`]); in mode
//! `rathena` the account id of a `"<account id>:<web auth token>"` credential that rAthena's
//! `login` table admits ([`super::rathena`]). The same clock
//! stamps the expiry of the time-limited TURN credentials handed out in `session-joined` and by
//! `POST /api/v1/auth/login`.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use ro_p2p_core::coordinator::Identity;
use ro_p2p_core::coordinator::credential::WebAuthCredential;
use ro_p2p_core::wire::{IceServer, PeerId, limits};
use serde::{Deserialize, Serialize};

pub use super::auth_error::AuthError;
use super::rathena::RathenaAuth;

/// Seconds of clock skew tolerated on `exp` and `nbf`.
pub const CLOCK_LEEWAY_S: u64 = 30;

/// Wall-clock time in Unix seconds, injectable so tests and the simulation are deterministic.
pub trait WallClock: Send + Sync + fmt::Debug {
    /// Seconds since the Unix epoch.
    fn unix_now_s(&self) -> u64;
}

/// The operating system's clock (production).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl WallClock for SystemClock {
    fn unix_now_s(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }
}

/// A clock that says what it is told (tests, simulation).
#[derive(Debug, Default)]
pub struct ManualWallClock(AtomicU64);

impl ManualWallClock {
    /// A clock showing `unix_s`.
    pub fn new(unix_s: u64) -> Self {
        ManualWallClock(AtomicU64::new(unix_s))
    }

    /// Moves the clock to `unix_s`.
    pub fn set(&self, unix_s: u64) {
        self.0.store(unix_s, Ordering::Relaxed);
    }
}

impl WallClock for ManualWallClock {
    fn unix_now_s(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The claims a coordinator token carries. `sub` may be a string or a number (rAthena account
/// ids are integers).
#[derive(Debug, Deserialize)]
struct Claims {
    sub: serde_json::Value,
    exp: u64,
    #[serde(default)]
    nbf: Option<u64>,
}

/// Turns tokens into identities, or says why not.
#[derive(Clone)]
pub struct Authenticator {
    mode: Mode,
    clock: Arc<dyn WallClock>,
}

#[derive(Clone)]
enum Mode {
    Off,
    Jwt { key: DecodingKey, validation: Box<Validation> },
    Rathena(Arc<RathenaAuth>),
}

/// A connection that passed authentication.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admitted {
    /// Who it is.
    pub identity: Identity,
    /// Mode `rathena`: the credential it was admitted with (re-checked every interval).
    pub credential: Option<WebAuthCredential>,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match self.mode {
            Mode::Off => "off",
            Mode::Jwt { .. } => "jwt-hs256",
            Mode::Rathena(_) => "rathena",
        };
        f.debug_struct("Authenticator").field("mode", &mode).finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Authentication off (development): everyone is [`Identity::Anonymous`].
    pub fn off(clock: Arc<dyn WallClock>) -> Self {
        Authenticator { mode: Mode::Off, clock }
    }

    /// HS256 tokens signed with `secret` are required.
    pub fn hs256(secret: &[u8], clock: Arc<dyn WallClock>) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        // Time claims are checked below against the injected clock, not the system's.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let key = DecodingKey::from_secret(secret);
        Authenticator { mode: Mode::Jwt { key, validation: Box::new(validation) }, clock }
    }

    /// rAthena's web auth token, checked by `auth`, is required.
    pub fn rathena(auth: Arc<RathenaAuth>, clock: Arc<dyn WallClock>) -> Self {
        Authenticator { mode: Mode::Rathena(auth), clock }
    }

    /// Whether a token is required.
    pub fn required(&self) -> bool {
        !matches!(self.mode, Mode::Off)
    }

    /// The `rathena` mode's state, when that is the mode.
    pub fn rathena_auth(&self) -> Option<&Arc<RathenaAuth>> {
        match &self.mode {
            Mode::Rathena(r) => Some(r),
            _ => None,
        }
    }

    /// The identity for a connection from `origin` that presented `token` (or none), and in
    /// mode `rathena` the credential to re-check.
    pub async fn admit(
        &self,
        token: Option<&str>,
        origin: Option<IpAddr>,
    ) -> Result<Admitted, AuthError> {
        match (&self.mode, token) {
            (Mode::Rathena(_), None) => Err(AuthError::Missing {
                detail: "a credential `<account id>:<web auth token>` is required",
            }),
            (Mode::Rathena(r), Some(token)) => {
                let credential = r.admit(token, origin).await?;
                Ok(Admitted {
                    identity: Identity::Account(credential.peer_id()),
                    credential: Some(credential),
                })
            }
            _ => Ok(Admitted { identity: self.identify(token)?, credential: None }),
        }
    }

    /// The clock used for `exp`/`nbf` and TURN credential expiry.
    pub fn clock(&self) -> &Arc<dyn WallClock> {
        &self.clock
    }

    /// The identity for a connection that presented `token` (or none), in the modes that need
    /// no I/O (`off`, `jwt`); mode `rathena` needs [`Self::admit`].
    pub fn identify(&self, token: Option<&str>) -> Result<Identity, AuthError> {
        match (&self.mode, token) {
            (Mode::Off, _) => Ok(Identity::Anonymous),
            (Mode::Rathena(_), _) => Err(AuthError::Unavailable {
                detail: "internal: mode rathena checks credentials asynchronously".into(),
            }),
            (Mode::Jwt { .. }, None) => {
                Err(AuthError::Missing { detail: "a bearer token is required" })
            }
            (Mode::Jwt { .. }, Some(token)) => self.verify(token).map(Identity::Account),
        }
    }

    /// Verifies an HS256 token and returns its subject as a peer id.
    pub fn verify(&self, token: &str) -> Result<PeerId, AuthError> {
        let Mode::Jwt { key, validation } = &self.mode else {
            return Err(AuthError::Invalid { detail: "authentication is off".into() });
        };
        if token.len() > limits::TOKEN_BYTES_MAX {
            return Err(AuthError::Invalid {
                detail: format!(
                    "token is {} bytes, over the limit of {}",
                    token.len(),
                    limits::TOKEN_BYTES_MAX
                ),
            });
        }
        // The header first: a token naming another algorithm (`none` above all) is refused for
        // its algorithm, whatever its claims say.
        if let Some(alg) = header_alg(token)
            && alg != "HS256"
        {
            return Err(AuthError::Invalid {
                detail: format!("algorithm {alg:?} is refused: only HS256 is accepted"),
            });
        }
        let data = jsonwebtoken::decode::<Claims>(token, key, validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            let detail = match e.kind() {
                ErrorKind::InvalidSignature => "bad signature".to_owned(),
                ErrorKind::InvalidAlgorithm
                | ErrorKind::InvalidAlgorithmName
                | ErrorKind::MissingAlgorithm => "only HS256 is accepted".to_owned(),
                ErrorKind::Json(_) => "claims must hold `sub` and a numeric `exp`".to_owned(),
                _ => format!("malformed token ({e})"),
            };
            AuthError::Invalid { detail }
        })?;
        let claims = data.claims;
        let now = self.clock.unix_now_s();
        if claims.exp.saturating_add(CLOCK_LEEWAY_S) <= now {
            return Err(AuthError::Expired { exp_unix_s: claims.exp, now_unix_s: now });
        }
        if let Some(nbf) = claims.nbf
            && nbf > now.saturating_add(CLOCK_LEEWAY_S)
        {
            return Err(AuthError::NotYetValid { nbf_unix_s: nbf, now_unix_s: now });
        }
        let sub = match claims.sub {
            serde_json::Value::String(s) => s,
            serde_json::Value::Number(n) if n.is_u64() => n.to_string(),
            _ => return Err(AuthError::Invalid { detail: "`sub` is not an account id".into() }),
        };
        PeerId::new(sub)
            .map_err(|e| AuthError::Invalid { detail: format!("`sub` is not an account id: {e}") })
    }
}

/// The `alg` a token's header names, if the header decodes (base64url JSON with a string
/// `alg`).
fn header_alg(token: &str) -> Option<String> {
    let header = token.split('.').next()?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header.trim_end_matches('='))
        .ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let alg = value.get("alg")?.as_str()?;
    // Bounded: the detail goes into an error message.
    Some(alg.chars().take(32).collect())
}

/// A TURN server from the configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TurnServer {
    /// `turn:` or `turns:` URL.
    pub url: String,
    /// Static username (used when no shared secret is configured).
    #[serde(default)]
    pub username: Option<String>,
    /// Static credential (used when no shared secret is configured).
    #[serde(default)]
    pub credential: Option<String>,
}

/// The STUN/TURN servers handed to clients, with per-account TURN credentials.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IceConfig {
    /// `stun:` URLs, handed out as one ICE server.
    pub stun_servers: Vec<String>,
    /// TURN servers.
    pub turn_servers: Vec<TurnServer>,
    /// The secret shared with the TURN server (coturn `static-auth-secret`); when set, every
    /// TURN server gets time-limited credentials instead of its static ones.
    pub turn_shared_secret: Option<String>,
    /// How long time-limited TURN credentials stay valid, in seconds.
    pub turn_credential_ttl_s: u64,
}

impl IceConfig {
    /// The ICE servers for `account` at wall-clock time `now_unix_s` (at most
    /// [`limits::ICE_SERVERS_MAX`]).
    pub fn ice_servers(&self, account: &str, now_unix_s: u64) -> Vec<IceServer> {
        let mut out = Vec::new();
        if !self.stun_servers.is_empty() {
            out.push(IceServer {
                urls: self.stun_servers.clone(),
                username: None,
                credential: None,
            });
        }
        let expiry_unix_s = now_unix_s.saturating_add(self.turn_credential_ttl_s);
        for turn in &self.turn_servers {
            let (username, credential) = match &self.turn_shared_secret {
                Some(secret) => {
                    let (u, c) = turn_rest_credentials(secret.as_bytes(), account, expiry_unix_s);
                    (Some(u), Some(c))
                }
                None => (turn.username.clone(), turn.credential.clone()),
            };
            out.push(IceServer { urls: vec![turn.url.clone()], username, credential });
        }
        out.truncate(limits::ICE_SERVERS_MAX);
        out
    }
}

/// Time-limited TURN credentials per the TURN REST convention (coturn `use-auth-secret`):
/// username `<expiry unix s>:<account>`, password base64(HMAC-SHA1(secret, username)).
pub fn turn_rest_credentials(secret: &[u8], account: &str, expiry_unix_s: u64) -> (String, String) {
    let username = format!("{expiry_unix_s}:{account}");
    // HMAC accepts keys of any length, so this never fails.
    let credential = match Hmac::<sha1::Sha1>::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(username.as_bytes());
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    };
    (username, credential)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use ro_p2p_core::wire::ErrorCode;

    const SECRET: &[u8] = b"test-secret";
    const NOW: u64 = 1_800_000_000;

    fn auth() -> Authenticator {
        Authenticator::hs256(SECRET, Arc::new(ManualWallClock::new(NOW)))
    }

    fn token(claims: serde_json::Value) -> String {
        encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(SECRET)).unwrap()
    }

    #[test]
    fn valid_token_yields_its_subject() {
        let t = token(serde_json::json!({"sub": "2000001", "exp": NOW + 60}));
        assert_eq!(auth().verify(&t).unwrap().as_str(), "2000001");
        let t = token(serde_json::json!({"sub": 2000002, "exp": NOW + 60}));
        assert_eq!(auth().verify(&t).unwrap().as_str(), "2000002");
    }

    #[test]
    fn expired_and_immature_tokens_are_auth_expired() {
        let t = token(serde_json::json!({"sub": "1", "exp": NOW - 3600}));
        assert_eq!(auth().verify(&t).unwrap_err().code(), ErrorCode::AuthExpired);
        let t = token(serde_json::json!({"sub": "1", "exp": NOW + 7200, "nbf": NOW + 3600}));
        assert_eq!(auth().verify(&t).unwrap_err().code(), ErrorCode::AuthExpired);
    }

    #[test]
    fn forged_none_and_other_algorithms_are_auth_invalid() {
        let forged = encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"sub": "1", "exp": NOW + 60}),
            &EncodingKey::from_secret(b"other"),
        )
        .unwrap();
        let hs512 = encode(
            &Header::new(Algorithm::HS512),
            &serde_json::json!({"sub": "1", "exp": NOW + 60}),
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let none = format!(
            "{}.{}.",
            b64(r#"{"alg":"none","typ":"JWT"}"#),
            b64(&format!(r#"{{"sub":"1","exp":{}}}"#, NOW + 60))
        );
        let bad_sub = token(serde_json::json!({"sub": "a b", "exp": NOW + 60}));
        let no_exp = token(serde_json::json!({"sub": "1"}));
        let err = auth().verify(&none).unwrap_err().to_string();
        assert!(err.contains("algorithm \"none\"") && !err.contains("claims"), "{err}");
        let err = auth().verify(&hs512).unwrap_err().to_string();
        assert!(err.contains("only HS256"), "{err}");
        for t in [forged, hs512, none, bad_sub, no_exp, "garbage".into(), "x".repeat(5000)] {
            assert_eq!(auth().verify(&t).unwrap_err().code(), ErrorCode::AuthInvalid, "{t:.40}");
        }
    }

    #[test]
    fn missing_token_is_auth_required_and_auth_off_is_anonymous() {
        assert_eq!(auth().identify(None).unwrap_err().code(), ErrorCode::AuthRequired);
        let off = Authenticator::off(Arc::new(SystemClock));
        assert_eq!(off.identify(Some("whatever")).unwrap(), Identity::Anonymous);
    }

    #[test]
    fn turn_credentials_follow_the_rest_convention() {
        // Reference value computed with:
        // printf '1800086400:2000001' | openssl dgst -sha1 -hmac turnsecret -binary | base64
        let (user, pass) = turn_rest_credentials(b"turnsecret", "2000001", 1_800_086_400);
        assert_eq!(user, "1800086400:2000001");
        assert_eq!(pass, REFERENCE_TURN_PASSWORD);
        let ice = IceConfig {
            stun_servers: vec!["stun:stun.example.org:3478".into()],
            turn_servers: vec![TurnServer {
                url: "turn:turn.example.org".into(),
                ..Default::default()
            }],
            turn_shared_secret: Some("turnsecret".into()),
            turn_credential_ttl_s: 86_400,
        };
        let servers = ice.ice_servers("2000001", 1_800_000_000);
        assert_eq!(servers.len(), 2);
        assert_eq!(servers[1].username.as_deref(), Some("1800086400:2000001"));
        assert_eq!(servers[1].credential.as_deref(), Some(REFERENCE_TURN_PASSWORD));
    }

    const REFERENCE_TURN_PASSWORD: &str = "SzKzLhsV1WFx1JHLdcU+fDoxmXg=";
}
