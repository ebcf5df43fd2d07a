//! Admin routes under `/sandbox/`: drive the sandbox over HTTP (used by `suki-ambient sandbox`).

use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use serde::Deserialize;
use suki_ambient_core::{EncounterId, SessionId};

use crate::faults::{MAX_FAULT_LATENCY, MAX_RETRY_AFTER_LEN};
use crate::routes::{ApiError, AppState};
use crate::{Fault, SandboxControl, SandboxError};

pub(crate) fn router(control: SandboxControl) -> Router<AppState> {
    Router::new()
        .route("/sandbox/sessions", post(create))
        .route("/sandbox/sessions/{id}/{action}", post(act))
        .route("/sandbox/faults", post(add_fault).delete(clear_faults))
        .route(
            "/sandbox/webhook-faults",
            post(add_webhook_fault).delete(clear_webhook_faults),
        )
        .route("/sandbox/tokens", delete(expire_tokens))
        .route_layer(middleware::from_fn_with_state(
            control.clone(),
            require_token,
        ))
        .with_state(control)
}

/// Every admin route needs `Authorization: Bearer <admin token>`: a cross-site form or a
/// `fetch` without it (a browser cannot add it to a cross-site request without a CORS
/// preflight, which the sandbox never grants) is refused.
async fn require_token(
    State(control): State<SandboxControl>,
    request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !same(presented.as_bytes(), control.admin_token().as_bytes()) {
        return ApiError(StatusCode::UNAUTHORIZED, "admin_token_required").into_response();
    }
    next.run(request).await
}

/// Compares without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Deserialize, Default)]
struct CreateRequest {
    #[serde(default)]
    encounter_id: Option<String>,
    #[serde(default)]
    form_filling: bool,
}

async fn create(State(control): State<SandboxControl>, body: axum::body::Bytes) -> Response {
    let request: CreateRequest = if body.is_empty() {
        CreateRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(_) => return ApiError(StatusCode::BAD_REQUEST, "invalid_request").into_response(),
        }
    };
    let session = if request.form_filling {
        control.create_form_session()
    } else {
        control.create_session(request.encounter_id.map(EncounterId).as_ref())
    };
    let body =
        serde_json::json!({"session_id": session.session_id, "encounter_id": session.encounter_id});
    (StatusCode::CREATED, axum::Json(body)).into_response()
}

async fn act(
    State(control): State<SandboxControl>,
    Path((id, action)): Path<(String, String)>,
) -> Response {
    let id = SessionId(id);
    let result = match action.as_str() {
        "complete" => control.complete(&id).await,
        "fail" => control.fail(&id).await,
        "timeout" => control.time_out(&id).await,
        "cancel" => control.cancel(&id).await,
        "redeliver" => control.redeliver(&id).await,
        _ => return ApiError(StatusCode::NOT_FOUND, "unknown_action").into_response(),
    };
    match result {
        Ok(d) => axum::Json(serde_json::json!({
            "delivered": d.fate == crate::Fate::Sent,
            "fate": match d.fate {
                crate::Fate::Sent => "sent",
                crate::Fate::Lost => "lost",
                crate::Fate::Delayed(_) => "delayed",
            },
            "kind": d.kind.as_str(),
            "receiver_status": d.status,
            "receiver_body": d.body,
            "elapsed_ms": suki_ambient_core::time::millis(d.elapsed),
        }))
        .into_response(),
        Err(SandboxError::UnknownSession) => {
            ApiError(StatusCode::NOT_FOUND, "session_not_found").into_response()
        }
        Err(SandboxError::AlreadyEnded { .. }) => {
            ApiError(StatusCode::CONFLICT, "session_already_ended").into_response()
        }
        Err(SandboxError::NotEnded) => {
            ApiError(StatusCode::CONFLICT, "session_not_ended").into_response()
        }
        Err(err) => (
            StatusCode::BAD_GATEWAY,
            axum::Json(serde_json::json!({"delivered": false, "error": err.to_string()})),
        )
            .into_response(),
    }
}

#[derive(Deserialize)]
struct FaultRequest {
    #[serde(default)]
    status: Option<u16>,
    #[serde(default)]
    retry_after: Option<String>,
    #[serde(default)]
    latency_ms: Option<u64>,
    #[serde(default)]
    drop_connection: bool,
    #[serde(default)]
    on: Option<String>,
    #[serde(default)]
    times: Option<u64>,
    #[serde(default)]
    share: Option<f64>,
}

async fn add_fault(State(control): State<SandboxControl>, body: axum::body::Bytes) -> Response {
    let Ok(r) = serde_json::from_slice::<FaultRequest>(&body) else {
        return ApiError(StatusCode::BAD_REQUEST, "invalid_request").into_response();
    };
    // Every value is bounded: a fault must not be able to hang or break the sandbox itself.
    let latency = Duration::from_millis(r.latency_ms.unwrap_or(0));
    if latency > MAX_FAULT_LATENCY
        || r.status.is_some_and(|s| !(100..=599).contains(&s))
        || r.retry_after
            .as_ref()
            .is_some_and(|v| v.len() > MAX_RETRY_AFTER_LEN)
        || r.share.is_some_and(|p| !(0.0..=1.0).contains(&p))
        || r.on.as_ref().is_some_and(|p| p.len() > 1024)
    {
        return ApiError(StatusCode::BAD_REQUEST, "invalid_fault").into_response();
    }
    let mut fault = match (r.status, r.drop_connection) {
        (_, true) => Fault::drop_connection().with_latency(latency),
        (Some(status), false) => Fault::status(status).with_latency(latency),
        (None, false) => Fault::latency(latency),
    };
    if let Some(v) = r.retry_after {
        fault = fault.retry_after(v);
    }
    if let Some(prefix) = r.on {
        fault = fault.on(prefix);
    }
    fault = match (r.times, r.share) {
        (_, Some(share)) => fault.share(share),
        (Some(n), None) => fault.times(n),
        (None, None) => fault,
    };
    control.inject(fault);
    StatusCode::NO_CONTENT.into_response()
}

async fn clear_faults(State(control): State<SandboxControl>) -> StatusCode {
    control.clear_faults();
    StatusCode::NO_CONTENT
}

async fn expire_tokens(State(control): State<SandboxControl>) -> StatusCode {
    control.expire_tokens();
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookFaultRequest {
    /// Lose the webhooks (or, with `delay_ms`, hold them back).
    #[serde(default)]
    lose: bool,
    #[serde(default)]
    delay_ms: Option<u64>,
    #[serde(default)]
    share: Option<f64>,
    #[serde(default)]
    session: Option<String>,
}

/// `{"lose": true}` or `{"delay_ms": 2000}`, optionally with `"share"` and `"session"`.
async fn add_webhook_fault(
    State(control): State<SandboxControl>,
    body: axum::body::Bytes,
) -> Response {
    let Ok(r) = serde_json::from_slice::<WebhookFaultRequest>(&body) else {
        return ApiError(StatusCode::BAD_REQUEST, "invalid_request").into_response();
    };
    let mut fault = match (r.lose, r.delay_ms) {
        (true, None) => crate::WebhookFault::lose(),
        // Bounded by MAX_WEBHOOK_DELAY inside.
        (false, Some(ms)) => crate::WebhookFault::delay(std::time::Duration::from_millis(ms)),
        _ => return ApiError(StatusCode::BAD_REQUEST, "invalid_request").into_response(),
    };
    if let Some(share) = r.share {
        fault = fault.share(share);
    }
    if let Some(session) = r.session {
        fault = fault.session(&SessionId(session));
    }
    control.inject_webhook(fault);
    StatusCode::CREATED.into_response()
}

async fn clear_webhook_faults(State(control): State<SandboxControl>) -> StatusCode {
    control.clear_webhook_faults();
    StatusCode::NO_CONTENT
}
