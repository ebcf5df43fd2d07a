//! The sandbox's FHIR server stands in for an EHR (tested here, where the mapping is: the
//! sandbox does not depend on this crate): a session's transaction Bundle posted twice
//! creates each resource once; references to entries' placeholders name the stored resources;
//! searches, a bearer token, faults, and refusals with OperationOutcomes.

mod common;

use serde_json::{Value, json};
use suki_ambient_sandbox::{Fault, Sandbox};

fn session_bundle(session: &str) -> Vec<u8> {
    common::typical_bundle(session).to_json()
}

async fn post(http: &reqwest::Client, base: &str, token: &str, body: Vec<u8>) -> (u16, Value) {
    let response = http
        .post(base)
        .bearer_auth(token)
        .header("content-type", "application/fhir+json")
        .body(body)
        .send()
        .await
        .expect("post");
    let status = response.status().as_u16();
    (status, json_of(response).await)
}

async fn json_of(response: reqwest::Response) -> Value {
    serde_json::from_slice(&response.bytes().await.expect("body")).expect("json answer")
}

fn statuses(answer: &Value) -> Vec<&str> {
    answer["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["response"]["status"].as_str().expect("status"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_posted_twice_creates_each_resource_once() {
    let sandbox = Sandbox::builder().start().await.expect("sandbox");
    let (base, token) = (sandbox.fhir_base_url(), sandbox.fhir_token().to_owned());
    let http = reqwest::Client::new();

    let (status, first) = post(&http, &base, &token, session_bundle("s-fhir-1")).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["type"], "transaction-response");
    // A note, a Composition, 4 Conditions, 2 MedicationRequests, a Provenance.
    assert_eq!(statuses(&first), ["201 Created"; 9]);
    assert_eq!(sandbox.fhir_resources(None).len(), 9);

    let (status, again) = post(&http, &base, &token, session_bundle("s-fhir-1")).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(statuses(&again), ["200 OK"; 9], "nothing created twice");
    assert_eq!(sandbox.fhir_resources(None).len(), 9);
    let locations = |answer: &Value| -> Vec<String> {
        answer["entry"]
            .as_array()
            .expect("entries")
            .iter()
            .map(|e| {
                e["response"]["location"]
                    .as_str()
                    .expect("location")
                    .to_owned()
            })
            .collect()
    };
    assert_eq!(locations(&first), locations(&again), "the same resources");

    // Another session creates its own.
    let (_, other) = post(&http, &base, &token, session_bundle("s-fhir-2")).await;
    assert_eq!(statuses(&other), ["201 Created"; 9]);
    assert_eq!(sandbox.fhir_resources(Some("DocumentReference")).len(), 2);

    // Placeholders became the stored resources' references; the EHR's stayed as given.
    let provenance = &sandbox.fhir_resources(Some("Provenance"))[0];
    let note = &sandbox.fhir_resources(Some("DocumentReference"))[0];
    assert_eq!(
        provenance["target"][0]["reference"],
        format!("DocumentReference/{}", note["id"].as_str().expect("id"))
    );
    assert_eq!(note["subject"]["reference"], "Patient/p-1");
    assert_eq!(note["meta"]["versionId"], "1");

    // Search by identifier, by tag, and read.
    let found = http
        .get(format!(
            "{base}/DocumentReference?identifier=urn:suki:session%7Cs-fhir-1/note"
        ))
        .bearer_auth(&token)
        .send()
        .await
        .expect("search");
    let found = json_of(found).await;
    assert_eq!(found["total"], 1);
    let id = found["entry"][0]["resource"]["id"].as_str().expect("id");
    let read = http
        .get(format!("{base}/DocumentReference/{id}"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("read");
    assert_eq!(read.status(), 200);
    let tagged = http
        .get(format!(
            "{base}/Provenance?_tag=urn:suki:session|s-fhir-2/provenance"
        ))
        .bearer_auth(&token)
        .send()
        .await
        .expect("search");
    let tagged = json_of(tagged).await;
    assert_eq!(tagged["total"], 1);
    sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_tokens_and_refusals() {
    let sandbox = Sandbox::builder().start().await.expect("sandbox");
    let (base, token) = (sandbox.fhir_base_url(), sandbox.fhir_token().to_owned());
    let http = reqwest::Client::new();

    // No token, a wrong one: 401 with an OperationOutcome.
    let (status, answer) = post(&http, &base, "wrong", session_bundle("s-1")).await;
    assert_eq!(status, 401);
    assert_eq!(answer["resourceType"], "OperationOutcome");
    assert_eq!(answer["issue"][0]["code"], "login");

    // A 503 from the EHR, then it recovers; nothing was stored by the failed post.
    sandbox.inject(Fault::status(503).on("/fhir").times(1));
    let response = http
        .post(&base)
        .bearer_auth(&token)
        .body(session_bundle("s-1"))
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 503);
    assert!(sandbox.fhir_resources(None).is_empty());
    let (status, _) = post(&http, &base, &token, session_bundle("s-1")).await;
    assert_eq!(status, 200);

    // Refusals: not a transaction, a PUT, a type mismatch, an unsupported match, not JSON.
    let refusals = [
        json!({"resourceType": "Bundle", "type": "batch", "entry": []}),
        json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {"resourceType": "Patient"}, "request": {"method": "PUT", "url": "Patient/1"}}]}),
        json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Condition"}}]}),
        json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient",
             "ifNoneExist": "name=smith"}}]}),
    ];
    for bundle in refusals {
        let (status, answer) = post(&http, &base, &token, bundle.to_string().into_bytes()).await;
        assert_eq!(status, 400, "{bundle}");
        assert_eq!(answer["resourceType"], "OperationOutcome");
    }
    let (status, _) = post(&http, &base, &token, b"not json".to_vec()).await;
    assert_eq!(status, 400);

    // Two resources with one identifier: a conditional create on it is 412, and stores nothing.
    let twin =
        json!({"resourceType": "Basic", "identifier": [{"system": "urn:x", "value": "twin"}]});
    let plain = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": twin, "request": {"method": "POST", "url": "Basic"}},
        {"resource": twin, "request": {"method": "POST", "url": "Basic"}}]});
    let (status, _) = post(&http, &base, &token, plain.to_string().into_bytes()).await;
    assert_eq!(status, 200);
    let before = sandbox.fhir_resources(None).len();
    let conditional = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Basic"}, "request": {"method": "POST", "url": "Basic"}},
        {"resource": twin, "request": {"method": "POST", "url": "Basic",
         "ifNoneExist": "identifier=urn:x|twin"}}]});
    let (status, answer) = post(&http, &base, &token, conditional.to_string().into_bytes()).await;
    assert_eq!(status, 412, "{answer}");
    assert_eq!(sandbox.fhir_resources(None).len(), before, "all or nothing");
    sandbox.shutdown().await;
}
