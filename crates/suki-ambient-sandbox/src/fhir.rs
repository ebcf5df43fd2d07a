//! The sandbox's EHR: the small FHIR R4 server the demo writes its note to. It takes what the
//! SDK's default write-back sends and nothing more: transaction Bundles of POSTs with
//! conditional create (`ifNoneExist` by `identifier` or `_tag`), a conditional create of one
//! resource (the note alone, written first when the EHR may have the session already),
//! versioned updates (what a later session of the encounter replaces is retired), searches by
//! identifier or tag, reads, and a CapabilityStatement saying so; a fixed bearer token; bounded.
//! Faults apply to it like to the API (`Fault::on("/fhir")`). EHRs that differ (no
//! transactions, no conditional create, SMART Backend Services, notes in a `Binary`) are the
//! tests' Medplum stand-in's (`tests/medplum`).

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::fhir_store::{MAX_FHIR_RESOURCES, Search, WRITABLE, stamp};
use crate::routes::AppState;
use crate::synth::new_id;

/// The largest transaction Bundle taken (bytes).
const MAX_BUNDLE_BYTES: usize = 8 * 1024 * 1024;
/// The most entries in one transaction.
const MAX_ENTRIES: usize = 1_000;

pub(crate) fn router(state: AppState) -> Router<AppState> {
    let protected = Router::new()
        .route("/fhir", post(transaction))
        .route("/fhir/{kind}", get(search).post(create))
        .route("/fhir/{kind}/{id}", get(read).put(update))
        .layer(DefaultBodyLimit::max(MAX_BUNDLE_BYTES))
        .route_layer(middleware::from_fn_with_state(state, require_token));
    // What a client reads before it has a token, as on any FHIR server.
    Router::new()
        .route("/fhir/metadata", get(metadata))
        .merge(protected)
}

/// Every FHIR route needs `Authorization: Bearer <token>`, as an EHR would: the sandbox's
/// FHIR token.
async fn require_token(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let expected = state.fhir_token.as_bytes();
    let same = presented.len() == expected.len()
        && presented
            .bytes()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if !same {
        crate::routes::drain(request).await;
        return outcome(
            StatusCode::UNAUTHORIZED,
            "login",
            "a bearer token is required",
        );
    }
    next.run(request).await
}

/// An `OperationOutcome` answer.
pub(crate) fn outcome(status: StatusCode, code: &str, diagnostics: &str) -> Response {
    fhir_json(
        status,
        &json!({
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": code, "diagnostics": diagnostics}],
        }),
    )
}

fn fhir_json(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/fhir+json")],
        body.to_string(),
    )
        .into_response()
}

/// A FHIR resource type name: `[A-Z][A-Za-z]{0,63}`.
fn is_type(kind: &str) -> bool {
    (1..=64).contains(&kind.len())
        && kind.starts_with(|c: char| c.is_ascii_uppercase())
        && kind.chars().all(|c| c.is_ascii_alphabetic())
}

/// What one entry of a transaction does.
enum Plan {
    Create {
        kind: String,
        id: String,
        resource: Value,
    },
    Matched {
        location: String,
    },
}

async fn transaction(State(state): State<AppState>, body: Bytes) -> Response {
    let bundle: Value = match serde_json::from_slice(&body) {
        Ok(bundle) => bundle,
        Err(_) => return outcome(StatusCode::BAD_REQUEST, "structure", "the body is not JSON"),
    };
    if bundle["resourceType"] != "Bundle" || bundle["type"] != "transaction" {
        return outcome(
            StatusCode::BAD_REQUEST,
            "not-supported",
            "only transaction Bundles are taken at the base URL",
        );
    }
    let empty = Vec::new();
    let entries = bundle["entry"].as_array().unwrap_or(&empty);
    if entries.len() > MAX_ENTRIES {
        return outcome(
            StatusCode::UNPROCESSABLE_ENTITY,
            "too-costly",
            "too many entries",
        );
    }
    let mut store = state.fhir();
    // All or nothing: every entry is planned before anything is stored.
    let mut plans = Vec::with_capacity(entries.len());
    let mut placeholders: HashMap<String, String> = HashMap::new();
    for entry in entries {
        let request = &entry["request"];
        if request["method"] != "POST" {
            return outcome(
                StatusCode::BAD_REQUEST,
                "not-supported",
                "the sandbox takes POST entries only",
            );
        }
        let kind = request["url"].as_str().unwrap_or_default();
        let resource = &entry["resource"];
        if !is_type(kind) || resource["resourceType"].as_str() != Some(kind) {
            return outcome(
                StatusCode::BAD_REQUEST,
                "invalid",
                "request.url must be the resource's type",
            );
        }
        let matched = match request["ifNoneExist"].as_str() {
            None => None,
            Some(query) => {
                let search = match Search::parse(query) {
                    Ok(search) => search,
                    Err(why) => return outcome(StatusCode::BAD_REQUEST, "not-supported", why),
                };
                let found = store.matching(kind, &search);
                match found.as_slice() {
                    [] => None,
                    [one] => Some(format!("{}/{}", one.kind, one.id)),
                    _ => {
                        return outcome(
                            StatusCode::PRECONDITION_FAILED,
                            "duplicate",
                            "ifNoneExist matched several resources",
                        );
                    }
                }
            }
        };
        let plan = match matched {
            Some(location) => Plan::Matched { location },
            None => Plan::Create {
                kind: kind.to_owned(),
                id: new_id(),
                resource: resource.clone(),
            },
        };
        if let Some(full_url) = entry["fullUrl"].as_str() {
            let target = match &plan {
                Plan::Create { kind, id, .. } => format!("{kind}/{id}"),
                Plan::Matched { location } => location.clone(),
            };
            placeholders.insert(full_url.to_owned(), target);
        }
        plans.push(plan);
    }
    let creates = plans
        .iter()
        .filter(|p| matches!(p, Plan::Create { .. }))
        .count();
    if store.resources.len() + creates > MAX_FHIR_RESOURCES {
        return outcome(
            StatusCode::UNPROCESSABLE_ENTITY,
            "too-costly",
            "the sandbox's FHIR server is full",
        );
    }
    let mut responses = Vec::with_capacity(plans.len());
    for plan in plans {
        match plan {
            Plan::Create {
                kind,
                id,
                mut resource,
            } => {
                rewrite_references(&mut resource, &placeholders);
                let location = store.insert(kind, id, resource);
                responses.push(json!({"response": {
                    "status": "201 Created",
                    "location": format!("{location}/_history/1"),
                }}));
            }
            Plan::Matched { location } => {
                responses.push(json!({"response": {
                    "status": "200 OK",
                    "location": format!("{location}/_history/1"),
                }}));
            }
        }
    }
    drop(store);
    fhir_json(
        StatusCode::OK,
        &json!({"resourceType": "Bundle", "type": "transaction-response", "entry": responses}),
    )
}

/// `POST /fhir/{kind}`: creates one resource, unless `If-None-Exist` matches one (`200` with
/// it) or several (`412`). The write-back sends a session's note alone this way when it writes
/// a session the EHR may already have (a replay, a second attempt), to decide a conflict on the
/// note before anything else is written.
async fn create(
    State(state): State<AppState>,
    Path(kind): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !is_type(&kind) {
        return outcome(StatusCode::NOT_FOUND, "not-found", "no such resource type");
    }
    let resource: Value = match serde_json::from_slice(&body) {
        Ok(resource) => resource,
        Err(_) => return outcome(StatusCode::BAD_REQUEST, "structure", "the body is not JSON"),
    };
    if resource["resourceType"].as_str() != Some(kind.as_str()) {
        return outcome(
            StatusCode::BAD_REQUEST,
            "invalid",
            "the resource's type is not the URL's",
        );
    }
    let minimal = headers
        .get("prefer")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("return=minimal"));
    let condition = match headers.get("if-none-exist") {
        Some(value) => match value
            .to_str()
            .map_err(|_| "not ASCII")
            .and_then(Search::parse)
        {
            Ok(search) => Some(search),
            Err(why) => return outcome(StatusCode::BAD_REQUEST, "not-supported", why),
        },
        None => None,
    };
    let mut store = state.fhir();
    if let Some(search) = &condition {
        let found: Vec<(String, Value)> = store
            .matching(&kind, search)
            .iter()
            .map(|r| (format!("{}/{}", r.kind, r.id), r.resource.clone()))
            .collect();
        match found.as_slice() {
            [] => {}
            [(location, existing)] => {
                return created(StatusCode::OK, &state, location, existing, minimal);
            }
            _ => {
                return outcome(
                    StatusCode::PRECONDITION_FAILED,
                    "duplicate",
                    "If-None-Exist matched several resources",
                );
            }
        }
    }
    if store.resources.len() >= MAX_FHIR_RESOURCES {
        return outcome(
            StatusCode::UNPROCESSABLE_ENTITY,
            "too-costly",
            "the sandbox's FHIR server is full",
        );
    }
    let location = store.insert(kind, new_id(), resource);
    let stored = store
        .resources
        .last()
        .map(|r| r.resource.clone())
        .unwrap_or_default();
    drop(store);
    created(StatusCode::CREATED, &state, &location, &stored, minimal)
}

/// A create's answer: the resource (none with `Prefer: return=minimal`), and its `Location`
/// (absolute, versioned).
fn created(
    status: StatusCode,
    state: &AppState,
    location: &str,
    resource: &Value,
    minimal: bool,
) -> Response {
    let mut response = if minimal {
        status.into_response()
    } else {
        fhir_json(status, resource)
    };
    if let Ok(value) = format!("{}fhir/{location}/_history/1", state.base_url).parse() {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// `PUT /fhir/{kind}/{id}`: replaces a resource the server has (a new version); a resource it
/// does not have is `404` (no create by update here). The write-back retires what a later
/// session of the encounter replaces this way (a versioned update, `If-Match`), so the demo's
/// EHR takes it: without it the SDK's default write would fail here on a visit's second
/// session.
async fn update(
    State(state): State<AppState>,
    Path((kind, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut resource: Value = match serde_json::from_slice(&body) {
        Ok(resource) => resource,
        Err(_) => return outcome(StatusCode::BAD_REQUEST, "structure", "the body is not JSON"),
    };
    if resource["resourceType"].as_str() != Some(kind.as_str())
        || resource["id"].as_str().is_some_and(|given| given != id)
    {
        return outcome(
            StatusCode::BAD_REQUEST,
            "invalid",
            "the resource's type and id are not the URL's",
        );
    }
    let mut store = state.fhir();
    let Some(stored) = store
        .resources
        .iter_mut()
        .find(|r| r.kind == kind && r.id == id)
    else {
        return outcome(StatusCode::NOT_FOUND, "not-found", "no such resource");
    };
    let current = stored.resource["meta"]["versionId"]
        .as_str()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(1);
    // Versioned updates (R4 "Managing Resource Contention"): `If-Match: W/"<versionId>"`.
    if let Some(wanted) = headers.get(header::IF_MATCH) {
        let wanted = wanted
            .to_str()
            .unwrap_or_default()
            .trim()
            .trim_start_matches("W/")
            .trim_matches('"');
        if wanted != current.to_string() {
            return outcome(
                StatusCode::PRECONDITION_FAILED,
                "conflict",
                "the resource changed since the version given in If-Match",
            );
        }
    }
    let version = current + 1;
    stamp(&mut resource, &id, version);
    stored.resource = resource.clone();
    drop(store);
    let mut response = fhir_json(StatusCode::OK, &resource);
    if let Ok(value) = format!("{}fhir/{kind}/{id}/_history/{version}", state.base_url).parse() {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// `GET /fhir/metadata`: the CapabilityStatement: transactions, and for each type of a
/// session conditional create (in a transaction), search and read.
async fn metadata() -> Response {
    let resources: Vec<Value> = WRITABLE
        .iter()
        .map(|kind| {
            json!({
                "type": kind,
                "interaction": [{"code": "create"}, {"code": "read"}, {"code": "update"}, {"code": "search-type"}],
                "conditionalCreate": true,
                "searchParam": [{"name": "identifier", "type": "token"}, {"name": "_tag", "type": "token"}],
            })
        })
        .collect();
    fhir_json(
        StatusCode::OK,
        &json!({
            "resourceType": "CapabilityStatement",
            "status": "active",
            "date": "2026-12-01",
            "kind": "instance",
            "fhirVersion": "4.0.1",
            "format": ["json"],
            "rest": [{"mode": "server", "interaction": [{"code": "transaction"}], "resource": resources}],
        }),
    )
}

/// Every `reference` naming an entry's `fullUrl` now names the resource it became (created or
/// matched), as R4's transaction rules ask.
fn rewrite_references(value: &mut Value, placeholders: &HashMap<String, String>) {
    match value {
        Value::Object(fields) => {
            for (key, field) in fields.iter_mut() {
                match field {
                    Value::String(text) if key == "reference" => {
                        if let Some(target) = placeholders.get(text.as_str()) {
                            *text = target.clone();
                        }
                    }
                    other => rewrite_references(other, placeholders),
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                rewrite_references(item, placeholders);
            }
        }
        _ => {}
    }
}

async fn search(
    State(state): State<AppState>,
    Path(kind): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    if !is_type(&kind) {
        return outcome(StatusCode::NOT_FOUND, "not-found", "no such resource type");
    }
    let query = query.unwrap_or_default();
    let store = state.fhir();
    let found: Vec<Value> = if query.is_empty() {
        store.list(Some(&kind))
    } else {
        match Search::parse(&query) {
            Ok(search) => store
                .matching(&kind, &search)
                .into_iter()
                .map(|r| r.resource.clone())
                .collect(),
            Err(why) => return outcome(StatusCode::BAD_REQUEST, "not-supported", why),
        }
    };
    drop(store);
    fhir_json(
        StatusCode::OK,
        &json!({
            "resourceType": "Bundle",
            "type": "searchset",
            "total": found.len(),
            "entry": found.into_iter().map(|r| json!({"resource": r})).collect::<Vec<_>>(),
        }),
    )
}

async fn read(State(state): State<AppState>, Path((kind, id)): Path<(String, String)>) -> Response {
    let store = state.fhir();
    match store
        .resources
        .iter()
        .find(|r| r.kind == kind && r.id == id)
    {
        Some(found) => fhir_json(StatusCode::OK, &found.resource),
        None => outcome(StatusCode::NOT_FOUND, "not-found", "no such resource"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn searches_parse_and_match() {
        let s = Search::parse("identifier=urn:suki:session%7Cs-1%2Fnote").expect("parses");
        assert_eq!(
            s.values,
            [(Some("urn:suki:session".to_owned()), "s-1/note".to_owned())]
        );
        // FHIR's escapes: an unescaped comma ORs two values, an escaped one is a comma.
        let or = Search::parse("identifier=urn:x|a,b").expect("parses");
        assert!(or.matches(&json!({"identifier": [{"value": "b"}]})));
        let one = Search::parse("identifier=urn:x|a%5C%2Cb").expect("parses");
        assert_eq!(one.values, [(Some("urn:x".to_owned()), "a,b".to_owned())]);
        assert!(!one.matches(&json!({"identifier": [{"system": "urn:x", "value": "b"}]})));
        assert!(one.matches(&json!({"identifier": [{"system": "urn:x", "value": "a,b"}]})));
        assert!(s.matches(
            &json!({"identifier": [{"system": "urn:suki:session", "value": "s-1/note"}]})
        ));
        assert!(
            s.matches(&json!({"identifier": {"system": "urn:suki:session", "value": "s-1/note"}}))
        );
        assert!(!s.matches(&json!({"identifier": [{"system": "other", "value": "s-1/note"}]})));
        let t = Search::parse("_tag=urn:suki:session|s-1/provenance").expect("parses");
        assert!(t.matches(
            &json!({"meta": {"tag": [{"system": "urn:suki:session", "code": "s-1/provenance"}]}})
        ));
        assert!(Search::parse("name=x").is_err());
        assert!(Search::parse("identifier=a&identifier=b").is_err());
        assert!(Search::parse("identifier=%ZZ").is_err());
        assert!(Search::parse("identifier=").is_err());
        // Scoped to a chart: ANDed with the identifier.
        let scoped = Search::parse("patient=Patient/p-1&identifier=urn:x|a").expect("parses");
        assert!(
            scoped.matches(&json!({"subject": {"reference": "Patient/p-1"},
            "identifier": [{"system": "urn:x", "value": "a"}]}))
        );
        assert!(
            !scoped.matches(&json!({"subject": {"reference": "Patient/p-2"},
            "identifier": [{"system": "urn:x", "value": "a"}]}))
        );
        assert!(
            scoped.matches(&json!({"for": {"reference": "https://ehr/Patient/p-1"},
            "identifier": [{"system": "urn:x", "value": "a"}]}))
        );
        assert!(Search::parse("patient=Patient/p-1").is_err());
        assert!(Search::parse("patient=Patient/1&subject=Patient/1&identifier=a").is_err());
    }
}
