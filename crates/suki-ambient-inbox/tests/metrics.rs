//! A scripted run with a debugging recorder installed: the counts of every metric the run
//! touches (webhook outcomes, verify and handler timings, inbox, reconciler, client). One test
//! in this binary, so the global recorder sees only this run. Also the health check and route.
#![cfg(all(feature = "metrics", feature = "axum", feature = "sqlite"))]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use suki_ambient_client::{AmbientClient, RetryPolicy};
use suki_ambient_core::{
    Bytes, HandlerError, SignedHeaders, UnixMillis, WebhookEndpoint, WebhookEvent,
};
use suki_ambient_inbox::{
    ExpectedSession, FetchResults, HealthThresholds, Inbox, InboxMeta, InboxWorker, Permanent,
    Reconciler, ResultsHandler,
};
use suki_ambient_sandbox::{Fault, Sandbox, WebhookFault};

/// name{label=value,…} → value (counters as integers, histograms as their sample count).
fn snapshot(recorder: &metrics_util::debugging::Snapshotter) -> HashMap<String, f64> {
    recorder
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            let mut labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            let name = format!("{}{{{}}}", key.name(), labels.join(","));
            let value = match value {
                DebugValue::Counter(n) => n as f64,
                DebugValue::Gauge(g) => g.into_inner(),
                DebugValue::Histogram(samples) => samples.len() as f64,
            };
            (name, value)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scripted_run_emits_the_documented_metrics_and_no_ids() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this binary");

    let dir = tempfile::tempdir().expect("dir");
    let sandbox = Sandbox::builder().start().await.expect("sandbox");
    let inbox = Inbox::connect(&common::sqlite_url(dir.path(), "inbox.db"))
        .await
        .expect("inbox");
    let endpoint = WebhookEndpoint::inbox(
        sandbox.verifier_builder().build().expect("verifier"),
        inbox.clone(),
    );
    let secret = sandbox.webhook_secret();

    // Three deliveries accepted, one duplicate, one tampered (mismatch), one stale.
    let mut sessions = Vec::new();
    for _ in 0..3 {
        let s = sandbox.create_session(None);
        let body = suki_ambient_core::testing::completed(s.session_id.as_str(), "enc").to_vec();
        let headers = SignedHeaders::new(&secret, UnixMillis::now(), &body).to_header_map();
        assert_eq!(
            endpoint
                .handle(&headers, Bytes::from(body.clone()))
                .await
                .status,
            200
        );
        sessions.push((s, headers, body));
    }
    let (_, headers, body) = &sessions[0];
    assert_eq!(
        endpoint
            .handle(headers, Bytes::from(body.clone()))
            .await
            .status,
        200
    );
    let mut tampered = body.clone();
    tampered[0] = b' ';
    assert_eq!(
        endpoint.handle(headers, Bytes::from(tampered)).await.status,
        401
    );
    let stale = SignedHeaders::new(&secret, UnixMillis(1_000), body).to_header_map();
    assert_eq!(
        endpoint
            .handle(&stale, Bytes::from(body.clone()))
            .await
            .status,
        401
    );

    // The worker: two done, one dead.
    let dead_session = sessions[2].0.session_id.to_string();
    let handler = move |event: WebhookEvent, _meta: InboxMeta| {
        let dead = event.session_id().map(|s| s.as_str()) == Some(dead_session.as_str());
        async move {
            if dead {
                return Err::<(), HandlerError>(Box::new(Permanent("unknown_provider")));
            }
            Ok(())
        }
    };
    InboxWorker::builder(inbox.clone(), handler)
        .build()
        .drain(Duration::ZERO)
        .await
        .expect("drain");

    // The reconciler: one lost webhook recovered; its status poll answered 503 once first (the
    // check is rescheduled, not retried by the client; the sweep checks it again at once).
    let client = AmbientClient::builder()
        .base_url(sandbox.base_url())
        .token(sandbox.issue_token(None))
        .retry(RetryPolicy::default().base_delay(Duration::from_millis(5)))
        .build()
        .expect("client");
    let reconciler = Reconciler::builder(client, inbox.clone())
        .grace(Duration::ZERO)
        .build();
    let lost = sandbox.create_session(None);
    reconciler
        .register(ExpectedSession::ambient(
            lost.session_id.clone(),
            lost.encounter_id.clone(),
            UnixMillis::now(),
        ))
        .await
        .expect("expect");
    sandbox.set_webhook_url(Some("http://127.0.0.1:9/unused".into()));
    sandbox.inject_webhook(WebhookFault::lose());
    sandbox.complete(&lost.session_id).await.expect("complete");
    sandbox.inject(Fault::status(503).on("/api/v1/ambient/session/").times(1));
    let report = reconciler.check_due().await.expect("check");
    assert_eq!((report.again, report.recovered), (1, 0));
    let report = reconciler
        .sweep(Duration::from_secs(3_600))
        .await
        .expect("sweep");
    assert_eq!(report.recovered, 1);
    let health = inbox.health(&HealthThresholds::default()).await;
    assert!(health.is_healthy(), "{health:?}");

    let m = snapshot(&snapshotter);
    let get = |name: &str| m.get(name).copied().unwrap_or(0.0);
    let expected = [
        ("suki_webhook_requests_total{outcome=accepted}", 3.0),
        ("suki_webhook_requests_total{outcome=duplicate}", 1.0),
        ("suki_webhook_requests_total{outcome=mismatch}", 1.0),
        ("suki_webhook_requests_total{outcome=stale}", 1.0),
        ("suki_inbox_enqueued_total{source=webhook}", 3.0),
        ("suki_inbox_enqueued_total{source=poll}", 1.0),
        ("suki_inbox_attempts_total{result=done}", 2.0),
        ("suki_inbox_attempts_total{result=dead}", 1.0),
        ("suki_inbox_dead_total{}", 1.0),
        ("suki_handler_seconds{kind=completed}", 3.0),
        ("suki_inbox_depth{state=done}", 2.0),
        ("suki_inbox_depth{state=dead}", 1.0),
        ("suki_inbox_depth{state=pending}", 1.0),
        ("suki_reconciler_checks_total{result=recovered}", 1.0),
        ("suki_reconciler_recovered_total{}", 1.0),
        (
            "suki_client_requests_total{route=/api/v1/ambient/session/{id}/status,status=503}",
            1.0,
        ),
        (
            "suki_client_requests_total{route=/api/v1/ambient/session/{id}/status,status=2xx}",
            1.0,
        ),
        ("suki_reconciler_checks_total{result=again}", 1.0),
        ("suki_client_retries_total{reason=503}", 0.0),
    ];
    for (name, value) in expected {
        assert_eq!(get(name), value, "{name} in {m:#?}");
    }
    // Verification was timed for each complete body that reached the MAC (not the stale one).
    assert_eq!(get("suki_webhook_verify_seconds{}"), 5.0, "{m:#?}");
    // No label carries an id.
    let ids: Vec<String> = sessions
        .iter()
        .map(|(s, _, _)| s.session_id.to_string())
        .chain([lost.session_id.to_string()])
        .collect();
    for name in m.keys() {
        assert!(!ids.iter().any(|id| name.contains(id)), "{name}");
    }

    // The health route: 200 now; 503 when the oldest pending row is too old.
    let app = axum::Router::new().nest(
        "/healthz",
        suki_ambient_inbox::health_router(inbox.clone(), HealthThresholds::default()),
    );
    let strict = axum::Router::new().nest(
        "/healthz",
        suki_ambient_inbox::health_router(
            inbox.clone(),
            HealthThresholds {
                max_oldest_unfinished: Duration::ZERO,
                ..HealthThresholds::default()
            },
        ),
    );
    for (router, status, problems) in [
        (app, 200, "[]"),
        (strict, 503, "[\"oldest_unfinished_too_old\"]"),
    ] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/healthz", listener.local_addr().expect("addr"));
        let server = tokio::spawn(async move { axum::serve(listener, router).await });
        tokio::time::sleep(Duration::from_millis(5)).await;
        let answer = reqwest::get(&url).await.expect("get");
        assert_eq!(answer.status(), status);
        let json: serde_json::Value = answer.json().await.expect("json");
        assert_eq!(json["problems"].to_string(), problems, "{json}");
        assert_eq!(json["store_reachable"], true);
        assert_eq!(json["dead"], 1);
        server.abort();
    }

    // FetchResults: the recovered session's note with a revoked token (a dead letter), and a
    // delivery of a status this SDK does not know (a dead letter too).
    let revoked = AmbientClient::builder()
        .base_url(sandbox.base_url())
        .token(sandbox.issue_token(None))
        .build()
        .expect("client");
    sandbox.expire_tokens();
    let body = br#"{"status":"on_hold_forever","session_id":"s-unknown","encounter_id":"e"}"#;
    let headers = SignedHeaders::new(&secret, UnixMillis::now(), body).to_header_map();
    assert_eq!(
        endpoint
            .handle(&headers, Bytes::from_static(body))
            .await
            .status,
        200
    );
    InboxWorker::builder(inbox.clone(), FetchResults::new(revoked, Ignore))
        .build()
        .drain(Duration::ZERO)
        .await
        .expect("drain");
    let m = snapshot(&snapshotter);
    let get = |name: &str| m.get(name).copied().unwrap_or(0.0);
    for (name, value) in [
        (
            "suki_inbox_link_failures_total{link=contents,outcome=dead,status=401}",
            1.0,
        ),
        ("suki_inbox_unknown_status_total{}", 1.0),
        ("suki_inbox_dead_total{}", 2.0), // since the last snapshot
        ("suki_inbox_store_unwritable{}", 0.0),
    ] {
        assert_eq!(get(name), value, "{name} in {m:#?}");
    }
    assert!(
        m.contains_key("suki_inbox_store_unwritable{}"),
        "set by health"
    );
    for name in m.keys() {
        assert!(!ids.iter().any(|id| name.contains(id)), "{name}");
        assert!(!name.contains("on_hold_forever"), "{name}");
    }
    sandbox.shutdown().await;
}

/// A `ResultsHandler` that expects nothing to reach it in this run.
struct Ignore;

#[async_trait::async_trait]
impl ResultsHandler for Ignore {
    async fn on_results(
        &self,
        _: suki_ambient_core::SessionCompleted,
        _: suki_ambient_client::SessionResults,
        _: InboxMeta,
    ) -> Result<(), HandlerError> {
        Err("a note without its token".into())
    }
    async fn on_failed(
        &self,
        _: suki_ambient_core::SessionFailed,
        _: InboxMeta,
    ) -> Result<(), HandlerError> {
        Ok(())
    }
    async fn on_ended(
        &self,
        _: suki_ambient_core::EventKind,
        _: suki_ambient_core::SessionEnded,
        _: InboxMeta,
    ) -> Result<(), HandlerError> {
        Ok(())
    }
}
