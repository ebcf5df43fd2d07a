//! A minimal FHIR R4 server standing in for the EHR: transaction Bundles of POSTs with
//! conditional create (`ifNoneExist` by `identifier` or `_tag`), search by identifier or tag,
//! reads; a bearer token; bounded. Faults apply to it like to the API (`Fault::on("/fhir")`).

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Map, Value, json};

use crate::routes::AppState;
use crate::state::new_id;

/// The most resources the sandbox's FHIR server keeps; a transaction that would pass it is
/// refused (422), so that a test in a loop cannot grow the sandbox without bound.
pub const MAX_FHIR_RESOURCES: usize = 10_000;
/// The largest transaction Bundle taken (bytes).
const MAX_BUNDLE_BYTES: usize = 8 * 1024 * 1024;
/// The most entries in one transaction.
const MAX_ENTRIES: usize = 1_000;

/// The resources written to the sandbox's FHIR server.
#[derive(Debug, Default)]
pub(crate) struct FhirStore {
    resources: Vec<Stored>,
}

#[derive(Debug)]
struct Stored {
    kind: String,
    id: String,
    resource: Value,
}

impl FhirStore {
    /// The resources of `kind` (all kinds for `None`), as stored (with `id` and `meta`).
    pub(crate) fn list(&self, kind: Option<&str>) -> Vec<Value> {
        self.resources
            .iter()
            .filter(|r| kind.is_none_or(|k| r.kind == k))
            .map(|r| r.resource.clone())
            .collect()
    }

    fn matching(&self, kind: &str, search: &Search) -> Vec<&Stored> {
        self.resources
            .iter()
            .filter(|r| r.kind == kind && search.matches(&r.resource))
            .collect()
    }
}

pub(crate) fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/fhir", post(transaction))
        .route("/fhir/{kind}", get(search))
        .route("/fhir/{kind}/{id}", get(read))
        .layer(DefaultBodyLimit::max(MAX_BUNDLE_BYTES))
        .route_layer(middleware::from_fn_with_state(state, require_token))
}

/// Every FHIR route needs `Authorization: Bearer <the sandbox's FHIR token>`, as an EHR would.
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
        return outcome(
            StatusCode::UNAUTHORIZED,
            "login",
            "a bearer token is required",
        );
    }
    next.run(request).await
}

/// An `OperationOutcome` answer.
fn outcome(status: StatusCode, code: &str, diagnostics: &str) -> Response {
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

/// A search on one parameter: `identifier=[system|]value` or `_tag=[system|]code`.
struct Search {
    tag: bool,
    system: Option<String>,
    value: String,
}

impl Search {
    /// The search a query string (`identifier=urn:x|abc`) asks for: `Err` names what the sandbox
    /// does not support.
    fn parse(query: &str) -> Result<Self, &'static str> {
        let mut params = query.split('&').filter(|p| !p.is_empty());
        let (Some(param), None) = (params.next(), params.next()) else {
            return Err("exactly one search parameter, identifier or _tag, is supported");
        };
        let (name, value) = param.split_once('=').ok_or("a parameter without a value")?;
        let tag = match name {
            "identifier" => false,
            "_tag" => true,
            _ => return Err("only identifier and _tag are supported"),
        };
        let value = percent_decode(value).ok_or("a value that is not percent-encoded UTF-8")?;
        let (system, value) = match value.split_once('|') {
            Some((system, value)) => (Some(system.to_owned()), value.to_owned()),
            None => (None, value),
        };
        if value.is_empty() {
            return Err("an empty search value");
        }
        Ok(Self { tag, system, value })
    }

    fn matches(&self, resource: &Value) -> bool {
        let (list, key) = if self.tag {
            (&resource["meta"]["tag"], "code")
        } else {
            (&resource["identifier"], "value")
        };
        // `identifier` is a list on most resources and one object on Composition.
        let items: Vec<&Value> = match list {
            Value::Array(items) => items.iter().collect(),
            Value::Object(_) => vec![list],
            _ => Vec::new(),
        };
        items.iter().any(|item| {
            item[key].as_str() == Some(self.value.as_str())
                && self
                    .system
                    .as_deref()
                    .is_none_or(|s| item["system"].as_str() == Some(s))
        })
    }
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = text.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
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
    let now = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    let mut responses = Vec::with_capacity(plans.len());
    for plan in plans {
        match plan {
            Plan::Create {
                kind,
                id,
                mut resource,
            } => {
                rewrite_references(&mut resource, &placeholders);
                if let Value::Object(fields) = &mut resource {
                    fields.insert("id".into(), Value::String(id.clone()));
                    let meta = fields
                        .entry("meta")
                        .or_insert_with(|| Value::Object(Map::new()));
                    if let Value::Object(meta) = meta {
                        meta.insert("versionId".into(), "1".into());
                        meta.insert("lastUpdated".into(), Value::String(now.clone()));
                    }
                }
                responses.push(json!({"response": {
                    "status": "201 Created",
                    "location": format!("{kind}/{id}/_history/1"),
                }}));
                store.resources.push(Stored { kind, id, resource });
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
        assert_eq!(s.system.as_deref(), Some("urn:suki:session"));
        assert_eq!(s.value, "s-1/note");
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
    }
}
