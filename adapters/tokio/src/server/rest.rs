//! The REST API: login, discovery, placement, session views, health and metrics.
//!
//! Every handler is a thin translation between HTTP and the hub: it parses and validates the
//! request itself (so a bad body is a typed `{"code", "message"}` error, never axum's plain
//! text), asks the hub over its channel with a oneshot for the reply, and maps the answer to
//! JSON with the right status. When authentication is on, the session endpoints need the same
//! bearer token as the WebSocket; health and metrics are open (bind them to a private network
//! or put them behind the proxy if that matters).

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ro_p2p_core::coordinator::{Identity, Placement};
use ro_p2p_core::wire::{ErrorCode, IceServer, PeerId, SessionId, Zone};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::AppState;
use super::auth::AuthError;
use super::conns::{Event, Query as HubQuery};

/// A REST error: the status and the `{"code", "message"}` body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// Machine-readable code, as on the WebSocket.
    pub code: ErrorCode,
    /// Human-readable explanation.
    pub message: String,
}

impl ApiError {
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError { code, message: message.into() }
    }

    /// The HTTP status for this error's code.
    pub fn status(&self) -> StatusCode {
        match self.code {
            ErrorCode::AuthRequired | ErrorCode::AuthInvalid | ErrorCode::AuthExpired => {
                StatusCode::UNAUTHORIZED
            }
            ErrorCode::SessionNotFound => StatusCode::NOT_FOUND,
            ErrorCode::ZoneFull | ErrorCode::SessionFull => StatusCode::CONFLICT,
            ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::ShuttingDown
            | ErrorCode::ZoneUnavailable
            | ErrorCode::ServerFull
            | ErrorCode::AuthUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        ApiError::new(e.code(), e.to_string())
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: ErrorCode,
    message: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut resp =
            (status, Json(ErrorBody { code: self.code, message: &self.message })).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

type ApiResult<T> = Result<Json<T>, ApiError>;

/// The bearer token of an `Authorization` header, if any.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

impl AppState {
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> HubQuery,
    ) -> Result<T, ApiError> {
        let (tx, rx) = oneshot::channel();
        let stopped = || ApiError::new(ErrorCode::ShuttingDown, "the coordinator is stopping");
        self.hub.send(Event::Query(make(tx))).await.map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())
    }

    /// The caller's identity for the session endpoints (anonymous when auth is off).
    async fn rest_identity(
        &self,
        headers: &HeaderMap,
        origin: Option<std::net::IpAddr>,
    ) -> Result<Identity, ApiError> {
        Ok(self.shared.auth.admit(bearer(headers), origin).await?.identity)
    }

    async fn count_reject<T>(&self, r: Result<T, ApiError>) -> Result<T, ApiError> {
        if let Err(e) = &r
            && matches!(
                e.code,
                ErrorCode::AuthRequired
                    | ErrorCode::AuthInvalid
                    | ErrorCode::AuthExpired
                    | ErrorCode::AuthUnavailable
            )
        {
            let _ = self.hub.send(Event::Rejected { code: e.code }).await;
        }
        r
    }
}

/// The client's address, as the accept loop recorded it.
fn origin(client: Option<axum::Extension<super::ClientIp>>) -> Option<std::net::IpAddr> {
    client.and_then(|axum::Extension(super::ClientIp(ip))| ip)
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        let code = if e.is_data() { ErrorCode::BadValue } else { ErrorCode::MalformedJson };
        ApiError::new(code, e.to_string())
    })
}

fn parse_zone(zone: Option<&str>) -> Result<Zone, ApiError> {
    let zone = zone.ok_or_else(|| ApiError::new(ErrorCode::MissingField, "`zone` is required"))?;
    Zone::new(zone).map_err(|e| ApiError::new(ErrorCode::BadValue, e.to_string()))
}

/// Body of `POST /api/v1/auth/login`.
#[derive(Debug, Default, Deserialize)]
struct LoginRequest {
    #[serde(default)]
    token: Option<String>,
}

/// Answer of `POST /api/v1/auth/login`.
#[derive(Debug, Serialize)]
pub struct LoginResponse {
    /// The account id (token subject), or `null` when authentication is off (the id is then
    /// taken from the client's `join`).
    pub peer_id: Option<PeerId>,
    /// STUN/TURN servers, TURN with time-limited credentials.
    pub ice_servers: Vec<IceServer>,
    /// Where to open the signaling WebSocket.
    pub websocket_url: String,
    /// How often to `ping` on the WebSocket, in milliseconds.
    pub heartbeat_interval_ms: u64,
}

pub(crate) async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    client: Option<axum::Extension<super::ClientIp>>,
    body: Bytes,
) -> ApiResult<LoginResponse> {
    let result = async {
        let req: LoginRequest = if body.iter().all(u8::is_ascii_whitespace) {
            LoginRequest::default()
        } else {
            parse_json(&body)?
        };
        let token = req.token.as_deref().or_else(|| bearer(&headers));
        let identity = state.shared.auth.admit(token, origin(client)).await?.identity;
        let peer_id = match identity {
            Identity::Account(peer) => Some(peer),
            _ => None,
        };
        let account = peer_id.as_ref().map_or("anonymous", PeerId::as_str);
        let now_unix_s = state.shared.auth.clock().unix_now_s();
        let ice_servers = state.shared.ice.ice_servers(account, now_unix_s);
        let path = &state.shared.websocket_path;
        let websocket_url = match &state.shared.public_url {
            // Configured: the request's `Host` is the client's word and is not reflected.
            Some(base) => format!("{base}{path}"),
            None => {
                let host = headers
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .filter(|h| {
                        !h.is_empty()
                            && h.bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b))
                    })
                    .unwrap_or("127.0.0.1:8001");
                let origin = origin(client);
                let behind_tls = origin
                    .is_some_and(|ip| state.shared.trusted_proxies.contains(&ip))
                    && forwarded_https(&headers);
                let scheme = if state.shared.tls || behind_tls { "wss" } else { "ws" };
                format!("{scheme}://{host}{path}")
            }
        };
        Ok(LoginResponse {
            peer_id,
            ice_servers,
            websocket_url,
            heartbeat_interval_ms: state.shared.heartbeat_interval_ms,
        })
    }
    .await;
    state.count_reject(result).await.map(Json)
}

#[derive(Debug, Deserialize)]
pub(crate) struct ZoneQuery {
    zone: Option<String>,
}

/// Answer of `GET /api/v1/sessions/discover`.
#[derive(Debug, Serialize)]
pub struct DiscoverResponse {
    /// The zone asked about.
    pub zone: Zone,
    /// Its sessions.
    pub sessions: Vec<ro_p2p_core::coordinator::SessionView>,
}

pub(crate) async fn discover(
    State(state): State<AppState>,
    headers: HeaderMap,
    client: Option<axum::Extension<super::ClientIp>>,
    query: Result<Query<ZoneQuery>, QueryRejection>,
) -> ApiResult<DiscoverResponse> {
    let result = async {
        state.rest_identity(&headers, origin(client)).await?;
        let Query(q) = query.map_err(|e| ApiError::new(ErrorCode::BadValue, e.body_text()))?;
        let zone = parse_zone(q.zone.as_deref())?;
        let sessions = state.ask(|tx| HubQuery::Discover(zone.clone(), tx)).await?;
        Ok(DiscoverResponse { zone, sessions })
    }
    .await;
    state.count_reject(result).await.map(Json)
}

/// Body of `POST /api/v1/sessions/join`.
#[derive(Debug, Deserialize)]
struct JoinRequest {
    #[serde(default)]
    zone: Option<String>,
}

/// Answer of `POST /api/v1/sessions/join`: where a `join` for this zone would go now.
#[derive(Debug, Serialize)]
pub struct JoinResponse {
    /// The zone.
    pub zone: Zone,
    /// `existing` (join `session_id`) or `new` (a session will be created).
    pub placement: &'static str,
    /// The session to join, for `existing`.
    pub session_id: Option<SessionId>,
    /// Where to open the signaling WebSocket and send `join`.
    pub websocket_path: String,
}

pub(crate) async fn join(
    State(state): State<AppState>,
    headers: HeaderMap,
    client: Option<axum::Extension<super::ClientIp>>,
    body: Bytes,
) -> ApiResult<JoinResponse> {
    let result = async {
        state.rest_identity(&headers, origin(client)).await?;
        let req: JoinRequest = parse_json(&body)?;
        let zone = parse_zone(req.zone.as_deref())?;
        let placement = state.ask(|tx| HubQuery::Placement(zone.clone(), tx)).await?;
        let (placement, session_id) = match placement {
            Ok(Placement::Existing(id)) => ("existing", Some(id)),
            Ok(Placement::New) => ("new", None),
            Err(code) => {
                return Err(ApiError::new(code, format!("no seat available in zone {zone}")));
            }
        };
        Ok(JoinResponse {
            zone,
            placement,
            session_id,
            websocket_path: state.shared.websocket_path.clone(),
        })
    }
    .await;
    state.count_reject(result).await.map(Json)
}

/// Answer of `GET /api/v1/sessions/list`.
#[derive(Debug, Serialize)]
pub struct ListResponse {
    /// Every session, by zone then id.
    pub sessions: Vec<ro_p2p_core::coordinator::SessionView>,
}

/// Whether a reverse proxy says the client came over TLS: `Forwarded: ...;proto=https` (the
/// first element, RFC 7239) or else `X-Forwarded-Proto: https`. Only asked of trusted proxies.
fn forwarded_https(headers: &HeaderMap) -> bool {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(forwarded) = text(header::FORWARDED.as_str()) {
        let first = forwarded.split(',').next().unwrap_or_default();
        return first.split(';').any(|pair| {
            pair.split_once('=').is_some_and(|(k, v)| {
                k.trim().eq_ignore_ascii_case("proto")
                    && v.trim().trim_matches('"').eq_ignore_ascii_case("https")
            })
        });
    }
    text("x-forwarded-proto").is_some_and(|p| {
        p.split(',').next().is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
    })
}

pub(crate) async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    client: Option<axum::Extension<super::ClientIp>>,
) -> ApiResult<ListResponse> {
    let result = async {
        state.rest_identity(&headers, origin(client)).await?;
        let sessions = state.ask(HubQuery::Sessions).await?;
        Ok(ListResponse { sessions })
    }
    .await;
    state.count_reject(result).await.map(Json)
}

pub(crate) async fn session(
    State(state): State<AppState>,
    headers: HeaderMap,
    client: Option<axum::Extension<super::ClientIp>>,
    Path(id): Path<String>,
) -> ApiResult<ro_p2p_core::coordinator::SessionView> {
    let result = async {
        state.rest_identity(&headers, origin(client)).await?;
        let id =
            SessionId::new(id).map_err(|e| ApiError::new(ErrorCode::BadValue, e.to_string()))?;
        let view = state.ask(|tx| HubQuery::Session(id.clone(), tx)).await?;
        view.ok_or_else(|| ApiError::new(ErrorCode::SessionNotFound, format!("no session {id}")))
    }
    .await;
    state.count_reject(result).await.map(Json)
}

pub(crate) async fn health(State(state): State<AppState>) -> Response {
    match state.ask(HubQuery::Health).await {
        Ok(mut h) => {
            h.connections_pending_auth = state.shared.tracker.pending_auth_count();
            if let Some(r) = state.shared.auth.rathena_auth() {
                let auth = r.health();
                // Admitted players keep playing; only new logins fail: degraded, not down.
                if auth.database != "ok" && h.status == "ok" {
                    h.status = "degraded";
                }
                h.auth = Some(auth);
            }
            let status = if h.status == "ok" || h.status == "degraded" {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            (status, Json(h)).into_response()
        }
        Err(e) => e.into_response(),
    }
}

pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    match state.ask(HubQuery::Metrics).await {
        Ok(mut text) => {
            let tracker = &state.shared.tracker;
            super::metrics::render_connection_gauges(
                &mut text,
                tracker.open_count(),
                tracker.pending_auth_count(),
            );
            if let Some(r) = state.shared.auth.rathena_auth() {
                r.render_metrics(&mut text);
            }
            ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text)
                .into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// Turns every error response the framework writes itself (a path that is not UTF-8, a body
/// over the limit, a wrong method, ...) into the API's `{"code", "message"}` JSON, keeping its
/// status; responses that are JSON already pass unchanged.
pub(crate) async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if json {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 1024).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let message = if text.trim().is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text.trim().to_owned()
    };
    let code = match status {
        StatusCode::METHOD_NOT_ALLOWED => "method-not-allowed",
        StatusCode::NOT_FOUND => "not-found",
        StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => {
            ErrorCode::TooLarge.as_str()
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::BadValue.as_str(),
        s if s.is_server_error() => ErrorCode::Internal.as_str(),
        _ => ErrorCode::BadValue.as_str(),
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::CONTENT_TYPE);
    let body = serde_json::json!({ "code": code, "message": message });
    (parts, Json(body)).into_response()
}

/// Refuses a request with more than [`super::HEADERS_MAX`] header fields or
/// [`super::HEADER_BYTES_MAX`] bytes of them: `431` with `too-large`.
pub(crate) async fn header_limits(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let headers = req.headers();
    let bytes: usize = headers.iter().map(|(k, v)| k.as_str().len() + v.len()).sum();
    if headers.len() > super::HEADERS_MAX || bytes > super::HEADER_BYTES_MAX {
        let message = format!(
            "{} header fields, {bytes} bytes: the limits are {} fields and {} bytes",
            headers.len(),
            super::HEADERS_MAX,
            super::HEADER_BYTES_MAX
        );
        let body = serde_json::json!({ "code": ErrorCode::TooLarge.as_str(), "message": message });
        return (StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, Json(body)).into_response();
    }
    next.run(req).await
}

pub(crate) async fn not_found() -> Response {
    let body = serde_json::json!({"code": "not-found", "message": "no such endpoint"});
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}
