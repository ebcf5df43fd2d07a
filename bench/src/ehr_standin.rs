//! A FHIR server stand-in for the end-to-end benchmarks: it answers every write after a fixed
//! latency (a hosted EHR's round trip), declares conditional creates for the seven types the
//! write-back writes (and transactions when asked), and can be taken down (503 to everything)
//! and brought back, counting the requests it refused.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

/// The resource types the write-back writes.
const TYPES: [&str; 7] = [
    "DocumentReference",
    "Composition",
    "Condition",
    "MedicationRequest",
    "Provenance",
    "Communication",
    "Task",
];

/// The stand-in's switches and counters.
#[derive(Debug, Default)]
pub struct EhrStandIn {
    latency: Duration,
    transactions: bool,
    down: AtomicBool,
    requests: AtomicU64,
    refused: AtomicU64,
    next_id: AtomicU64,
}

impl EhrStandIn {
    /// Serves on loopback; its base URL (`http://127.0.0.1:port/fhir`) and the handle.
    pub async fn start(latency: Duration, transactions: bool) -> (String, Arc<Self>) {
        let state = Arc::new(Self {
            latency,
            transactions,
            ..Self::default()
        });
        let app = axum::Router::new()
            .route("/fhir/metadata", get(metadata))
            .route("/fhir", post(transaction))
            .route("/fhir/{kind}", post(create).get(search))
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}/fhir"), state)
    }

    /// Takes it down (every request answered 503 at once) or brings it back.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Requests answered so far (refused ones included).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    /// Requests refused (503) so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::SeqCst)
    }

    /// Counts a request; `Some(503)` while down, else waits the latency.
    async fn enter(&self) -> Option<Response> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            self.refused.fetch_add(1, Ordering::SeqCst);
            let outcome = json!({"resourceType": "OperationOutcome",
                "issue": [{"severity": "error", "code": "transient"}]});
            return Some((StatusCode::SERVICE_UNAVAILABLE, axum::Json(outcome)).into_response());
        }
        tokio::time::sleep(self.latency).await;
        None
    }

    fn id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::SeqCst)
    }
}

async fn metadata(State(ehr): State<Arc<EhrStandIn>>) -> Response {
    let resources: Vec<Value> = TYPES
        .iter()
        .map(|t| {
            json!({"type": t, "interaction": [{"code": "create"}, {"code": "read"},
                {"code": "search-type"}], "conditionalCreate": true})
        })
        .collect();
    let interaction = if ehr.transactions {
        json!([{"code": "transaction"}])
    } else {
        json!([{"code": "batch"}])
    };
    axum::Json(
        json!({"resourceType": "CapabilityStatement", "status": "active",
        "kind": "instance", "fhirVersion": "4.0.1", "format": ["json"],
        "rest": [{"mode": "server", "interaction": interaction, "resource": resources}]}),
    )
    .into_response()
}

async fn create(
    State(ehr): State<Arc<EhrStandIn>>,
    Path(kind): Path<String>,
    _headers: HeaderMap,
    _body: axum::body::Bytes,
) -> Response {
    if let Some(refused) = ehr.enter().await {
        return refused;
    }
    let id = ehr.id();
    (
        StatusCode::CREATED,
        [(header::LOCATION, format!("{kind}/{id}/_history/1"))],
        axum::Json(json!({"resourceType": kind, "id": id.to_string()})),
    )
        .into_response()
}

async fn transaction(State(ehr): State<Arc<EhrStandIn>>, body: axum::body::Bytes) -> Response {
    if let Some(refused) = ehr.enter().await {
        return refused;
    }
    let bundle: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let entries: Vec<Value> = bundle["entry"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|entry| {
            let kind = entry["resource"]["resourceType"]
                .as_str()
                .unwrap_or("Basic");
            json!({"response": {"status": "201 Created",
                "location": format!("{kind}/{}/_history/1", ehr.id())}})
        })
        .collect();
    axum::Json(
        json!({"resourceType": "Bundle", "type": "transaction-response",
        "entry": entries}),
    )
    .into_response()
}

async fn search(State(ehr): State<Arc<EhrStandIn>>) -> Response {
    if let Some(refused) = ehr.enter().await {
        return refused;
    }
    axum::Json(json!({"resourceType": "Bundle", "type": "searchset", "total": 0, "entry": []}))
        .into_response()
}
