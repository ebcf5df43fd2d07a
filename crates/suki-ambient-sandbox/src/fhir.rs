//! A minimal FHIR R4 server standing in for the EHR: transaction Bundles of POSTs with
//! conditional create (`ifNoneExist` by `identifier` or `_tag`), creates of one resource (with
//! the `If-None-Exist` header), search by identifier or tag, reads, a CapabilityStatement that
//! says which of these it takes; a bearer token, fixed or issued by its SMART Backend Services
//! token endpoint; bounded. Faults apply to it like to the API (`Fault::on("/fhir")`).
//! [`FhirOptions`] makes it an EHR that refuses transactions, or ignores `If-None-Exist`.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
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

/// How the sandbox's FHIR server behaves: which writes it takes, and its SMART Backend Services
/// clients. The default takes transactions and honours `If-None-Exist`, with no SMART client.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct FhirOptions {
    pub(crate) transactions: bool,
    pub(crate) conditional_create: bool,
    pub(crate) smart_clients: Vec<(String, serde_json::Value)>,
    pub(crate) smart_token_ttl: Duration,
    /// The resource types a create is taken for (`None`: those of a session).
    pub(crate) writable: Option<Vec<String>>,
    /// The scopes its token endpoint grants at most (`None`: what is asked for).
    pub(crate) smart_grants: Option<Vec<String>>,
    /// Searches (but of Provenance) must name the patient.
    pub(crate) patient_searches: bool,
    /// DocumentReference notes are kept in a `Binary`.
    pub(crate) externalize_notes: bool,
}

impl Default for FhirOptions {
    fn default() -> Self {
        Self {
            transactions: true,
            conditional_create: true,
            smart_clients: Vec::new(),
            smart_token_ttl: Duration::from_secs(300),
            writable: None,
            smart_grants: None,
            patient_searches: false,
            externalize_notes: false,
        }
    }
}

/// The resource types the CapabilityStatement lists, by default.
const WRITABLE: [&str; 7] = [
    "DocumentReference",
    "Composition",
    "Condition",
    "MedicationRequest",
    "Provenance",
    "Communication",
    "Task",
];

impl FhirOptions {
    /// Whether transaction Bundles are taken at the base URL (default yes). Without them, the
    /// CapabilityStatement lists no `transaction` and a Bundle posted is refused (`400
    /// not-supported`), as an EHR that takes creates only.
    #[must_use]
    pub fn transactions(mut self, taken: bool) -> Self {
        self.transactions = taken;
        self
    }

    /// Whether `If-None-Exist` is honoured on a create (default yes). Without it the
    /// CapabilityStatement says `conditionalCreate: false` and the header is ignored: posting the
    /// same resource twice creates it twice, as on a server without conditional create.
    #[must_use]
    pub fn conditional_create(mut self, honoured: bool) -> Self {
        self.conditional_create = honoured;
        self
    }

    /// Registers a SMART Backend Services client: its id and public keys (a JWK Set, as
    /// `SmartKey::jwks` prints). Its signed client assertions get tokens at
    /// `/fhir/auth/token` (named by `/fhir/.well-known/smart-configuration`).
    #[must_use]
    pub fn smart_client(mut self, client_id: impl Into<String>, jwks: &str) -> Self {
        let keys = serde_json::from_str(jwks).unwrap_or(Value::Null);
        self.smart_clients.push((client_id.into(), keys));
        self
    }

    /// Only these resource types can be created (the CapabilityStatement lists only them; a
    /// create of another is `405`), as an EHR that takes the DocumentReference alone
    /// (`&["DocumentReference"]`). Default: any type (the statement lists those a session
    /// writes).
    #[must_use]
    pub fn writable(mut self, types: &[&str]) -> Self {
        self.writable = Some(types.iter().map(|t| (*t).to_owned()).collect());
        self
    }

    /// The token endpoint grants only those of the asked scopes that are among `scopes`
    /// (space-separated), and says so in its answer's `scope`: an EHR whose administrator
    /// granted the client fewer scopes than it asks for. Default: what is asked for.
    #[must_use]
    pub fn smart_grants(mut self, scopes: &str) -> Self {
        self.smart_grants = Some(scopes.split_whitespace().map(str::to_owned).collect());
        self
    }

    /// Whether a search must name the patient (`patient=` or `subject=`; default no): a
    /// clinical search without one is refused (`400 required`), as vendor servers refuse them.
    /// Provenance, which has no subject, is searched by tag alone.
    #[must_use]
    pub fn patient_searches(mut self, required: bool) -> Self {
        self.patient_searches = required;
        self
    }

    /// Whether a created DocumentReference's note is kept in a `Binary` (default no): a read
    /// answers `content.attachment.url` (`Binary/<id>`) instead of echoing `data` or `hash`, as
    /// Epic- and Oracle-class servers do.
    #[must_use]
    pub fn externalize_notes(mut self, externalize: bool) -> Self {
        self.externalize_notes = externalize;
        self
    }

    /// The lifetime of the access tokens its token endpoint issues (default 5 minutes).
    #[must_use]
    pub fn smart_token_ttl(mut self, ttl: Duration) -> Self {
        self.smart_token_ttl = ttl;
        self
    }
}

/// The resources written to the sandbox's FHIR server, and its SMART state.
#[derive(Debug, Default)]
pub(crate) struct FhirStore {
    resources: Vec<Stored>,
    /// Issued SMART access tokens and when they expire.
    pub(crate) tokens: HashMap<String, Instant>,
    /// Client assertions' `jti`s seen (a replayed assertion is refused).
    pub(crate) jtis: HashSet<String>,
    /// How many SMART tokens were issued.
    pub(crate) tokens_issued: u64,
    /// Notes go to a `Binary` ([`FhirOptions::externalize_notes`]).
    pub(crate) externalize: bool,
}

#[derive(Debug)]
struct Stored {
    kind: String,
    id: String,
    resource: Value,
}

impl FhirStore {
    /// An empty store; `externalize`: notes go to a `Binary`.
    pub(crate) fn new(externalize: bool) -> Self {
        Self {
            externalize,
            ..Self::default()
        }
    }

    /// The resources of `kind` (all kinds for `None`), as stored (with `id` and `meta`).
    pub(crate) fn list(&self, kind: Option<&str>) -> Vec<Value> {
        self.resources
            .iter()
            .filter(|r| kind.is_none_or(|k| r.kind == k))
            .map(|r| r.resource.clone())
            .collect()
    }

    /// Forgets every issued SMART token (an EHR rotating its keys, or tokens expiring early).
    pub(crate) fn expire_tokens(&mut self) {
        self.tokens.clear();
    }

    /// Stores `resource` as a new `kind` with a fresh id; its `Type/id`. With
    /// [`FhirOptions::externalize_notes`], a DocumentReference's inline note goes to a
    /// `Binary`, and the attachment keeps its `url` (no `data`, no `hash`).
    fn insert(&mut self, kind: String, id: String, mut resource: Value) -> String {
        if self.externalize && kind == "DocumentReference" {
            let contents = resource["content"].as_array().cloned().unwrap_or_default();
            let mut moved = Vec::with_capacity(contents.len());
            for mut content in contents {
                let attachment = &mut content["attachment"];
                if let Some(data) = attachment["data"].as_str().map(str::to_owned) {
                    let binary_id = new_id();
                    let mut binary = json!({
                        "resourceType": "Binary",
                        "contentType": attachment["contentType"].clone(),
                        "data": data,
                    });
                    stamp(&mut binary, &binary_id, 1);
                    self.resources.push(Stored {
                        kind: "Binary".into(),
                        id: binary_id.clone(),
                        resource: binary,
                    });
                    if let Value::Object(fields) = attachment {
                        fields.remove("data");
                        fields.remove("hash");
                        fields.insert("url".into(), Value::String(format!("Binary/{binary_id}")));
                    }
                }
                moved.push(content);
            }
            resource["content"] = Value::Array(moved);
        }
        stamp(&mut resource, &id, 1);
        let location = format!("{kind}/{id}");
        self.resources.push(Stored { kind, id, resource });
        location
    }

    fn matching(&self, kind: &str, search: &Search) -> Vec<&Stored> {
        self.resources
            .iter()
            .filter(|r| r.kind == kind && search.matches(&r.resource))
            .collect()
    }
}

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
        .route(
            "/fhir/.well-known/smart-configuration",
            get(smart_configuration),
        )
        .route("/fhir/auth/token", post(crate::fhir_smart::token))
        .layer(DefaultBodyLimit::max(64 * 1024))
        .merge(protected)
}

/// Every FHIR route needs `Authorization: Bearer <token>`, as an EHR would: the sandbox's
/// fixed FHIR token, or one its SMART token endpoint issued and has not expired.
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
    let issued = !same
        && !presented.is_empty()
        && state
            .fhir()
            .tokens
            .get(presented)
            .is_some_and(|until| Instant::now() < *until);
    if !same && !issued {
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

/// A search on one parameter: `identifier=[system|]value` or `_tag=[system|]code`, with FHIR's
/// escapes: unescaped commas separate values any of which matches (as on a real server), `\,`
/// `\|` `\$` `\\` are the characters themselves.
struct Search {
    tag: bool,
    /// The values, ORed: each with its system when it names one.
    values: Vec<(Option<String>, String)>,
    /// `patient=` or `subject=`: the chart the resource must be in (ANDed).
    chart: Option<String>,
}

/// `text` split at each unescaped `sep`, the pieces still escaped.
fn split_unescaped(text: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut escaped) = (0, false);
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            c if c == sep => {
                parts.push(&text[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// `text` with FHIR's search escapes removed (`\x` is `x`).
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut escaped = false;
    for c in text.chars() {
        if !escaped && c == '\\' {
            escaped = true;
        } else {
            out.push(c);
            escaped = false;
        }
    }
    out
}

impl Search {
    /// The search a query string (`identifier=urn:x|abc`) asks for: `Err` names what the sandbox
    /// does not support.
    fn parse(query: &str) -> Result<Self, &'static str> {
        let mut chart = None;
        let mut token = None;
        for param in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = param.split_once('=').ok_or("a parameter without a value")?;
            match name {
                "patient" | "subject" if chart.is_none() => {
                    let value =
                        percent_decode(value).ok_or("a value that is not percent-encoded UTF-8")?;
                    chart = Some(unescape(&value));
                }
                "identifier" | "_tag" if token.is_none() => token = Some((name == "_tag", value)),
                _ => {
                    return Err(
                        "one identifier or _tag, and at most one patient or subject, are supported",
                    );
                }
            }
        }
        let Some((tag, value)) = token else {
            return Err("a search needs an identifier or _tag");
        };
        let value = percent_decode(value).ok_or("a value that is not percent-encoded UTF-8")?;
        let mut values = Vec::new();
        for alternative in split_unescaped(&value, ',') {
            let (system, value) = match split_unescaped(alternative, '|').as_slice() {
                [value] => (None, unescape(value)),
                [system, value] => (Some(unescape(system)), unescape(value)),
                _ => return Err("a value with more than one unescaped |"),
            };
            if value.is_empty() {
                return Err("an empty search value");
            }
            values.push((system, value));
        }
        Ok(Self { tag, values, chart })
    }

    fn matches(&self, resource: &Value) -> bool {
        if let Some(chart) = &self.chart {
            let subject = resource["subject"]["reference"]
                .as_str()
                .or_else(|| resource["for"]["reference"].as_str())
                .unwrap_or_default();
            if subject != chart && !subject.ends_with(&format!("/{chart}")) {
                return false;
            }
        }
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
            self.values.iter().any(|(system, value)| {
                item[key].as_str() == Some(value.as_str())
                    && system
                        .as_deref()
                        .is_none_or(|s| item["system"].as_str() == Some(s))
            })
        })
    }
}

pub(crate) fn percent_decode(text: &str) -> Option<String> {
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
    if !state.fhir_options.transactions {
        return outcome(
            StatusCode::BAD_REQUEST,
            "not-supported",
            "this server takes no transactions: create each resource",
        );
    }
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
        if !state.fhir_takes(kind) {
            return outcome(
                StatusCode::BAD_REQUEST,
                "not-supported",
                "this server takes no create of this resource type",
            );
        }
        let matched = match request["ifNoneExist"].as_str() {
            // A server without conditional create ignores it, as its statement says.
            _ if !state.fhir_options.conditional_create => None,
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

/// `POST /fhir/{kind}`: creates one resource, unless `If-None-Exist` (when honoured) matches
/// one (`200` with it) or several (`412`). References to the kinds this server stores must name
/// a resource it has; a `urn:uuid` placeholder outside a transaction is refused.
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
    if !state.fhir_takes(&kind) {
        return outcome(
            StatusCode::METHOD_NOT_ALLOWED,
            "not-supported",
            "this server takes no create of this resource type",
        );
    }
    let minimal = headers
        .get("prefer")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("return=minimal"));
    let condition = match headers.get("if-none-exist") {
        Some(_) if !state.fhir_options.conditional_create => None,
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
    if let Err(why) = store.check_references(&resource) {
        return outcome(StatusCode::BAD_REQUEST, "invalid", why);
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

impl FhirStore {
    /// Every literal reference to a kind this server stores names a resource it has, and no
    /// reference is a placeholder (`urn:uuid:`), which only a transaction can resolve.
    fn check_references(&self, value: &Value) -> Result<(), &'static str> {
        match value {
            Value::Object(fields) => {
                for (key, field) in fields {
                    match field {
                        Value::String(text) if key == "reference" => {
                            if text.starts_with("urn:") {
                                return Err("a placeholder reference outside a transaction");
                            }
                            if let Some((kind, id)) = text.split_once('/')
                                && self.resources.iter().any(|r| r.kind == kind)
                                && !self.resources.iter().any(|r| r.kind == kind && r.id == id)
                            {
                                return Err("a reference to a resource this server does not have");
                            }
                        }
                        other => self.check_references(other)?,
                    }
                }
                Ok(())
            }
            Value::Array(items) => items.iter().try_for_each(|i| self.check_references(i)),
            _ => Ok(()),
        }
    }
}

/// `PUT /fhir/{kind}/{id}`: replaces a resource the server has (a new version); a resource it
/// does not have is `404` (no create by update here).
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
    if let Err(why) = store.check_references(&resource) {
        return outcome(StatusCode::BAD_REQUEST, "invalid", why);
    }
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

/// `resource` as stored: its `id`, and `meta.versionId` and `meta.lastUpdated` (now).
fn stamp(resource: &mut Value, id: &str, version: u64) {
    if let Value::Object(fields) = resource {
        fields.insert("id".into(), Value::String(id.to_owned()));
        let meta = fields
            .entry("meta")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(meta) = meta {
            meta.insert("versionId".into(), Value::String(version.to_string()));
            meta.insert(
                "lastUpdated".into(),
                Value::String(humantime::format_rfc3339_millis(SystemTime::now()).to_string()),
            );
        }
    }
}

/// `GET /fhir/metadata`: the CapabilityStatement, as the options make the server.
async fn metadata(State(state): State<AppState>) -> Response {
    let options = &state.fhir_options;
    let interactions: Vec<Value> = if options.transactions {
        vec![json!({"code": "transaction"})]
    } else {
        Vec::new()
    };
    let resources: Vec<Value> = WRITABLE
        .iter()
        .filter(|kind| state.fhir_takes(kind))
        .map(|kind| {
        json!({
            "type": kind,
            "interaction": [{"code": "create"}, {"code": "read"}, {"code": "update"}, {"code": "search-type"}],
            "conditionalCreate": options.conditional_create,
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
            "rest": [{"mode": "server", "interaction": interactions, "resource": resources}],
        }),
    )
}

/// `GET /fhir/.well-known/smart-configuration`: where the SMART token endpoint is.
async fn smart_configuration(State(state): State<AppState>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        json!({
            "token_endpoint": format!("{}fhir/auth/token", state.base_url),
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
            "scopes_supported": ["system/*.c", "system/*.rs", "system/*.write", "system/*.read"],
            "capabilities": ["client-confidential-asymmetric"],
        })
        .to_string(),
    )
        .into_response()
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
            // As vendor servers: a clinical search names the patient.
            Ok(search)
                if search.chart.is_none()
                    && state.fhir_options.patient_searches
                    && kind != "Provenance" =>
            {
                return outcome(
                    StatusCode::BAD_REQUEST,
                    "required",
                    "a search of this type needs the patient (patient= or subject=)",
                );
            }
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
