//! The FHIR server's SMART Backend Services token endpoint: `client_credentials` with a JWT
//! client assertion (RS384 or ES384) signed by a registered client's key, checked as an EHR
//! checks it (signature against the registered JWK Set, `iss` = `sub` = the client, `aud` = this
//! endpoint, `exp` in the future and at most five minutes away, `jti` never seen before).

use std::time::{Duration, Instant, SystemTime};

use aws_lc_rs::signature::{
    ECDSA_P384_SHA384_FIXED, RSA_PKCS1_2048_8192_SHA384, RsaPublicKeyComponents, UnparsedPublicKey,
};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::fhir_store::percent_decode;
use crate::routes::AppState;

/// The most `jti`s remembered (then the oldest half is forgotten: the assertions they belong to
/// have expired long before the sandbox sees that many).
const MAX_JTIS: usize = 10_000;
/// The most tokens live at once.
const MAX_TOKENS: usize = 10_000;

/// An OAuth error answer.
fn oauth_error(status: StatusCode, error: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({ "error": error }).to_string(),
    )
        .into_response()
}

/// `POST /fhir/auth/token`.
pub(crate) async fn token(State(state): State<AppState>, body: Bytes) -> Response {
    let Ok(form) = std::str::from_utf8(&body) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    };
    let mut grant = None;
    let mut assertion_type = None;
    let mut assertion = None;
    let mut scope = None;
    for pair in form.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value);
        match name {
            "grant_type" => grant = value,
            "client_assertion_type" => assertion_type = value,
            "client_assertion" => assertion = value,
            "scope" => scope = value,
            _ => {}
        }
    }
    if grant.as_deref() != Some("client_credentials") {
        return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    }
    if assertion_type.as_deref() != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer") {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    }
    let (Some(assertion), Some(scope)) = (assertion, scope.filter(|s| !s.trim().is_empty())) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    };
    let audience = format!("{}fhir/auth/token", state.base_url);
    let jti = match verify(&state, &assertion, &audience) {
        Ok(jti) => jti,
        Err(()) => return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client"),
    };
    let ttl = state.fhir_options.smart_token_ttl;
    let mut store = state.fhir();
    if !store.jtis.insert(jti) {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    if store.jtis.len() > MAX_JTIS {
        store.jtis.clear();
    }
    let now = Instant::now();
    store.tokens.retain(|_, until| *until > now);
    if store.tokens.len() >= MAX_TOKENS {
        return oauth_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable");
    }
    let access = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
    store.tokens.insert(access.clone(), now + ttl);
    store.tokens_issued += 1;
    drop(store);
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        json!({
            "access_token": access,
            "token_type": "bearer",
            "expires_in": ttl.as_secs(),
            "scope": scope
                .split_whitespace()
                .filter(|s| state
                    .fhir_options
                    .smart_grants
                    .as_ref()
                    .is_none_or(|grants| grants.iter().any(|g| g == s)))
                .collect::<Vec<_>>()
                .join(" "),
        })
        .to_string(),
    )
        .into_response()
}

/// Checks a client assertion; `Ok` with its `jti`.
fn verify(state: &AppState, jwt: &str, audience: &str) -> Result<String, ()> {
    let mut parts = jwt.split('.');
    let (Some(head), Some(claims), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(());
    };
    let decode = |part: &str| URL_SAFE_NO_PAD.decode(part).map_err(|_| ());
    let header: Value = serde_json::from_slice(&decode(head)?).map_err(|_| ())?;
    let claims: Value = serde_json::from_slice(&decode(claims)?).map_err(|_| ())?;
    let signature = decode(signature)?;
    let client = claims["iss"].as_str().ok_or(())?;
    if claims["sub"].as_str() != Some(client) || claims["aud"].as_str() != Some(audience) {
        return Err(());
    }
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let exp = claims["exp"].as_u64().ok_or(())?;
    let five_minutes = Duration::from_secs(300 + 10).as_secs();
    if exp <= now || exp > now + five_minutes {
        return Err(());
    }
    let jti = claims["jti"]
        .as_str()
        .filter(|j| !j.is_empty() && j.len() <= 256)
        .ok_or(())?;
    let (alg, kid) = (header["alg"].as_str().ok_or(())?, header["kid"].as_str());
    let (_, jwks) = state
        .fhir_options
        .smart_clients
        .iter()
        .find(|(id, _)| id == client)
        .ok_or(())?;
    let signed = &jwt[..jwt.rfind('.').ok_or(())?];
    let keys = jwks["keys"].as_array().ok_or(())?;
    let verified = keys
        .iter()
        .filter(|k| kid.is_none_or(|kid| k["kid"].as_str() == Some(kid)))
        .filter(|k| k["alg"].as_str().is_none_or(|a| a == alg))
        .any(|key| check(alg, key, signed.as_bytes(), &signature));
    if verified {
        Ok(jti.to_owned())
    } else {
        Err(())
    }
}

/// Whether `signature` over `message` verifies with the JWK `key` under `alg`.
fn check(alg: &str, key: &Value, message: &[u8], signature: &[u8]) -> bool {
    let field = |name: &str| {
        key[name]
            .as_str()
            .and_then(|v| URL_SAFE_NO_PAD.decode(v).ok())
    };
    match (alg, key["kty"].as_str()) {
        ("RS384", Some("RSA")) => {
            let (Some(n), Some(e)) = (field("n"), field("e")) else {
                return false;
            };
            RsaPublicKeyComponents { n: &n, e: &e }
                .verify(&RSA_PKCS1_2048_8192_SHA384, message, signature)
                .is_ok()
        }
        ("ES384", Some("EC")) if key["crv"] == "P-384" => {
            let (Some(x), Some(y)) = (field("x"), field("y")) else {
                return false;
            };
            let mut point = Vec::with_capacity(97);
            point.push(4);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, point)
                .verify(message, signature)
                .is_ok()
        }
        _ => false,
    }
}
