//! The sandbox's HTTP API: Suki's paths, auth rules and error bodies.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde::Deserialize;
use serde::Serialize;
use suki_ambient_core::api::{
    ApiErrorBody, LoginRequest, LoginResponse, NoteContent, StatusResponse, StructuredData,
};

use crate::state::{SessionKind, Shared, TokenInfo};
use suki_ambient_core::api::Route;

pub(crate) type AppState = Arc<Shared>;

/// Suki's error answer: `{"code": status, "message": id}`.
pub(crate) struct ApiError(pub(crate) StatusCode, pub(crate) &'static str);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json(self.0, &ApiErrorBody::new(self.0.as_u16(), self.1))
    }
}

fn json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

fn ok<T: Serialize>(body: &T) -> Response {
    json(StatusCode::OK, body)
}

/// The API plus extra (admin) routes that share the fault and counting layer.
pub(crate) fn router_with_admin(state: AppState, admin: Router<AppState>) -> Router {
    let api = Router::new()
        .route(Route::SessionStatus.template(), get(session_status))
        .route(Route::SessionTranscript.template(), get(session_transcript))
        .route(Route::SessionContent.template(), get(session_content))
        .route(
            Route::SessionStructuredData.template(),
            get(session_structured_data),
        )
        .route(Route::SessionRecording.template(), get(session_recording))
        .route(Route::EncounterContent.template(), get(encounter_content))
        .route(
            Route::EncounterStructuredData.template(),
            get(encounter_structured_data),
        )
        .route(Route::FormFillingStatus.template(), get(form_status))
        .route(
            Route::FormFillingStructuredData.template(),
            get(form_structured_data),
        )
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            authorize,
        ));
    Router::new()
        .route(Route::Login.template(), post(login))
        .merge(api)
        .route("/sandbox/audio/{file}", get(audio))
        .merge(admin)
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "not_found") })
        .layer(middleware::from_fn_with_state(Arc::clone(&state), faults))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            loopback_host,
        ))
        .with_state(state)
}

/// Refuses requests whose `Host` is not a loopback name when the sandbox is bound to loopback:
/// a web page that rebinds its own domain to 127.0.0.1 sends its own domain as `Host`.
async fn loopback_host(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if state.loopback_hosts_only {
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !is_loopback_host(host) {
            return ApiError(StatusCode::MISDIRECTED_REQUEST, "host_not_allowed").into_response();
        }
    }
    next.run(request).await
}

/// `localhost`, `127.x.y.z` or `[::1]`, with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Counts requests and applies injected faults before anything else.
async fn faults(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    let fired = {
        let mut world = state.world();
        world.requests.count(&path);
        let fired = world
            .faults
            .iter_mut()
            .find_map(|f| f.fire(&method, &path).then(|| f.clone()));
        world.faults.retain(|f| !f.spent());
        fired
    };
    let Some(fault) = fired else {
        return next.run(request).await;
    };
    if !fault.latency.is_zero() {
        tokio::time::sleep(fault.latency).await;
    }
    if fault.lose_answer {
        // The work is done; the answer never arrives.
        let _ = next.run(request).await;
        return cut_response();
    }
    if fault.drop_connection {
        return cut_response();
    }
    match fault.status {
        Some(status) => {
            // The request's body is read first, so that the connection stays usable: a client
            // that reuses it for its next request does not find it closed under it.
            drain(request).await;
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            let id = match status.as_u16() {
                429 => "too_many_requests",
                500 => "internal_server_error",
                502 => "bad_gateway",
                503 => "service_unavailable",
                504 => "request_timeout",
                _ => "sandbox_fault",
            };
            let mut response = ApiError(status, id).into_response();
            if let Some(value) = fault
                .retry_after
                .as_deref()
                .and_then(|v| header::HeaderValue::from_str(v).ok())
            {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
        None => next.run(request).await,
    }
}

/// A response whose head promises a body that fails: the connection is cut mid-response.
fn cut_response() -> Response {
    let stream = futures_util::stream::once(async {
        Err::<bytes::Bytes, std::io::Error>(std::io::Error::other(
            "sandbox fault: connection dropped",
        ))
    });
    let mut response = Response::new(Body::from_stream(stream));
    response.headers_mut().insert(
        header::CONTENT_LENGTH,
        header::HeaderValue::from_static("100"),
    );
    response
}

/// Reads and drops what is left of `request`'s body (at most 8 MiB), before an answer that does
/// not read it: hyper closes a connection whose request body was left unread, and a client
/// reusing it races that close.
pub(crate) async fn drain(request: Request) {
    let _ = axum::body::to_bytes(request.into_body(), 8 * 1024 * 1024).await;
}

/// Suki's auth rules: `sdp_suki_token` must be a live token; `sdp_provider_id` is required
/// when configured, and must match the provider a token was issued for.
async fn authorize(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let Some(token) = headers.get("sdp_suki_token").and_then(|v| v.to_str().ok()) else {
        return ApiError(StatusCode::UNAUTHORIZED, "invalid_sdp_token").into_response();
    };
    let provider = headers.get("sdp_provider_id").and_then(|v| v.to_str().ok());
    {
        let world = state.world();
        let Some(info) = world
            .tokens
            .get(token)
            .filter(|t| t.expires > SystemTime::now())
        else {
            return ApiError(StatusCode::UNAUTHORIZED, "invalid_sdp_token").into_response();
        };
        if provider.is_none() && state.require_provider_id && info.provider_id.is_none() {
            return ApiError(StatusCode::BAD_REQUEST, "missing_sdp_provider_id_header")
                .into_response();
        }
        if let (Some(given), Some(bound)) = (provider, info.provider_id.as_deref())
            && given != bound
        {
            return ApiError(StatusCode::BAD_REQUEST, "invalid_sdp_provider_id").into_response();
        }
    }
    next.run(request).await
}

/// Issues a JWT-shaped token (not signed: the sandbox checks its own table).
pub(crate) fn issue_token(state: &Shared, provider_id: Option<String>) -> String {
    let mut world = state.world();
    world.token_serial += 1;
    let expires = SystemTime::now() + state.token_ttl;
    let exp = expires
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    let enc = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let token = format!(
        "{}.{}.{}",
        enc(serde_json::json!({"alg": "none", "typ": "JWT"})),
        enc(
            serde_json::json!({"iss": "suki-ambient-sandbox", "sub": world.token_serial, "exp": exp, "provider_id": provider_id})
        ),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(fastrand::u64(..).to_be_bytes())
    );
    // A bounded table: expired tokens go, and past the bound the one closest to expiry.
    let now = SystemTime::now();
    if world.tokens.len() >= crate::MAX_TOKENS {
        world.tokens.retain(|_, t| t.expires > now);
    }
    if world.tokens.len() >= crate::MAX_TOKENS
        && let Some(oldest) = world
            .tokens
            .iter()
            .min_by_key(|(_, t)| t.expires)
            .map(|(k, _)| k.clone())
    {
        world.tokens.remove(&oldest);
    }
    world.tokens.insert(
        token.clone(),
        TokenInfo {
            expires,
            provider_id,
        },
    );
    token
}

/// The largest login request read (a partner id, a JWT, a provider id).
pub(crate) const MAX_LOGIN_BODY: usize = 16 * 1024;
/// The longest provider id accepted.
const MAX_PROVIDER_ID: usize = 256;

/// Login, as Suki's: JSON only (a cross-site form or `text/plain` POST from a web page is
/// refused, and a browser cannot send JSON cross-site without a CORS preflight, which the
/// sandbox never grants), from no other web origin, with a bounded body.
async fn login(State(state): State<AppState>, request: Request) -> Response {
    let headers = request.headers();
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return ApiError(StatusCode::UNSUPPORTED_MEDIA_TYPE, "json_required").into_response();
    }
    let foreign = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|origin| {
            !origin
                .split_once("://")
                .is_some_and(|(_, authority)| is_loopback_host(authority))
        });
    if foreign {
        return ApiError(StatusCode::FORBIDDEN, "origin_not_allowed").into_response();
    }
    let Ok(body) = axum::body::to_bytes(request.into_body(), MAX_LOGIN_BODY).await else {
        return ApiError(StatusCode::PAYLOAD_TOO_LARGE, "request_too_large").into_response();
    };
    let Ok(request) = serde_json::from_slice::<LoginRequest>(&body) else {
        return ApiError(StatusCode::BAD_REQUEST, "invalid_request").into_response();
    };
    if request
        .provider_id
        .as_ref()
        .is_some_and(|p| p.len() > MAX_PROVIDER_ID)
    {
        return ApiError(StatusCode::BAD_REQUEST, "invalid_sdp_provider_id").into_response();
    }
    let known = state
        .partners
        .iter()
        .any(|(id, token)| *id == request.partner_id && *token == request.partner_token);
    if !known {
        return ApiError(StatusCode::UNAUTHORIZED, "invalid_partner_token").into_response();
    }
    let suki_token = issue_token(&state, request.provider_id);
    ok(&LoginResponse { suki_token })
}

fn unknown() -> Response {
    ApiError(StatusCode::NOT_FOUND, "session_not_found").into_response()
}

fn not_ready() -> Response {
    ApiError(StatusCode::CONFLICT, "content_not_ready").into_response()
}

/// Runs `f` on a completed session's content, with Suki's errors otherwise.
fn with_session(
    state: &Shared,
    id: &str,
    kind: SessionKind,
    f: impl FnOnce(&crate::synth::Generated) -> Response,
) -> Response {
    let world = state.world();
    match world.sessions.get(id) {
        Some(session) if session.kind == kind => match &session.generated {
            Some(generated) => f(generated),
            None => not_ready(),
        },
        _ => unknown(),
    }
}

async fn session_status(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let world = state.world();
    match world
        .sessions
        .get(&id)
        .filter(|s| s.kind == SessionKind::Ambient)
    {
        Some(session) => ok(&StatusResponse {
            status: session.status.clone(),
        }),
        None => unknown(),
    }
}

async fn session_transcript(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    with_session(&state, &id, SessionKind::Ambient, |g| ok(&g.transcript))
}

#[derive(Deserialize)]
struct ContentQuery {
    #[serde(default)]
    cumulative: Option<String>,
}

async fn session_content(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<ContentQuery>,
) -> Response {
    let cumulative = match q.cumulative.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return ApiError(StatusCode::BAD_REQUEST, "invalid_cumulative").into_response(),
    };
    if !cumulative {
        return with_session(&state, &id, SessionKind::Ambient, |g| ok(&g.note));
    }
    // Cumulative: this session's note after those of the encounter's earlier sessions.
    let world = state.world();
    let Some(session) = world
        .sessions
        .get(&id)
        .filter(|s| s.kind == SessionKind::Ambient)
    else {
        return unknown();
    };
    if session.generated.is_none() {
        return not_ready();
    }
    let mut note = NoteContent::default();
    for sid in world
        .encounters
        .get(&session.encounter_id)
        .into_iter()
        .flatten()
    {
        if let Some(g) = world.sessions.get(sid).and_then(|s| s.generated.as_ref()) {
            note.summary.extend(g.note.summary.iter().cloned());
            note.structured_data
                .extend(g.note.structured_data.iter().cloned());
        }
        if *sid == id {
            break;
        }
    }
    ok(&note)
}

async fn session_structured_data(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Response {
    with_session(&state, &id, SessionKind::Ambient, |g| ok(&g.structured))
}

async fn session_recording(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let world = state.world();
    match world
        .sessions
        .get(&id)
        .filter(|s| s.kind == SessionKind::Ambient)
    {
        Some(session) => match &session.generated {
            Some(g) => ok(&g.recording),
            // Suki: 404 while the recording is still being processed.
            None => ApiError(StatusCode::NOT_FOUND, "recording_not_ready").into_response(),
        },
        None => unknown(),
    }
}

/// The completed sessions of an encounter, in order; 404 for an unknown one, 409 when none is
/// complete yet.
fn encounter_parts<T>(
    state: &Shared,
    id: &str,
    part: impl Fn(&crate::synth::Generated) -> T,
) -> Result<Vec<T>, ApiError> {
    let world = state.world();
    let Some(sessions) = world.encounters.get(id) else {
        return Err(ApiError(StatusCode::NOT_FOUND, "encounter_not_found"));
    };
    let parts: Vec<T> = sessions
        .iter()
        .filter_map(|sid| world.sessions.get(sid)?.generated.as_ref().map(&part))
        .collect();
    if parts.is_empty() {
        return Err(ApiError(StatusCode::CONFLICT, "content_not_ready"));
    }
    Ok(parts)
}

async fn encounter_content(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match encounter_parts(&state, &id, |g| g.note.clone()) {
        Ok(notes) => {
            let mut all = NoteContent::default();
            for note in notes {
                all.summary.extend(note.summary);
                all.structured_data.extend(note.structured_data);
            }
            ok(&all)
        }
        Err(err) => err.into_response(),
    }
}

async fn encounter_structured_data(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Response {
    match encounter_parts(&state, &id, |g| g.structured.clone()) {
        Ok(parts) => {
            let mut all = StructuredData::default();
            for part in parts {
                let body = part.structured_data;
                if let Some(dx) = body.diagnoses {
                    all.structured_data
                        .diagnoses
                        .get_or_insert_with(Default::default)
                        .values
                        .extend(dx.values);
                }
                if let Some(meds) = body.orders.and_then(|o| o.medication_orders) {
                    all.structured_data
                        .orders
                        .get_or_insert_with(Default::default)
                        .medication_orders
                        .get_or_insert_with(Default::default)
                        .partial_values
                        .extend(meds.partial_values);
                }
            }
            ok(&all)
        }
        Err(err) => err.into_response(),
    }
}

async fn form_status(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let world = state.world();
    match world
        .sessions
        .get(&id)
        .filter(|s| s.kind == SessionKind::FormFilling)
    {
        Some(session) => ok(&StatusResponse {
            status: session.status.clone(),
        }),
        None => unknown(),
    }
}

async fn form_structured_data(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    with_session(&state, &id, SessionKind::FormFilling, |g| ok(&g.form))
}

async fn audio(Path(file): Path<String>) -> Response {
    // A second of silence: 8 kHz, 8-bit mono WAV.
    let mut wav = Vec::with_capacity(44 + 8000);
    let data_len: u32 = 8000;
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data_len).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes());
    wav.extend_from_slice(&8000u32.to_le_bytes());
    wav.extend_from_slice(&8000u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes());
    wav.extend_from_slice(&8u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&data_len.to_le_bytes());
    wav.resize(44 + data_len as usize, 128);
    if !file.ends_with(".wav") {
        return ApiError(StatusCode::NOT_FOUND, "not_found").into_response();
    }
    (StatusCode::OK, [(header::CONTENT_TYPE, "audio/wav")], wav).into_response()
}
