//! Sandbox → each adapter's ready-made endpoint → client `fetch_results`, for all four event
//! kinds, with faults: injected 503/429 (with `Retry-After`) the client recovers from, a
//! re-delivered webhook the receiver deduplicates, a tampered one it refuses.

use std::time::{Duration, Instant};

use integration_tests::{FRAMEWORKS, Forward, start_receiver};
use suki_ambient::client::{AmbientClient, PartnerLogin, RetryPolicy};
use suki_ambient::sandbox::{DEFAULT_PARTNER_ID, DEFAULT_PARTNER_TOKEN, Fault, Sandbox};
use suki_ambient::{EventKind, WebhookEvent};

async fn next(rx: &mut tokio::sync::mpsc::UnboundedReceiver<WebhookEvent>) -> WebhookEvent {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("the receiver handed over an event in time")
        .expect("the receiver is running")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_kind_through_every_adapter_and_back_through_the_client() {
    for framework in FRAMEWORKS {
        let sandbox = Sandbox::builder().start().await.unwrap();
        let (handler, mut events) = Forward::new();
        let url = start_receiver(
            framework,
            sandbox.verifier_builder().build().unwrap(),
            handler.clone(),
        );
        sandbox.set_webhook_url(Some(url));
        let client = AmbientClient::builder()
            .base_url(sandbox.base_url())
            .auth(PartnerLogin::new(DEFAULT_PARTNER_ID, DEFAULT_PARTNER_TOKEN))
            .retry(RetryPolicy::default().base_delay(Duration::from_millis(20)))
            .build()
            .unwrap();

        // Completed: the receiver verifies, the client follows all six links.
        let s = sandbox.create_session(None);
        let d = sandbox.complete(&s.session_id).await.unwrap();
        assert_eq!(
            (d.kind, d.status),
            (EventKind::Completed, 200),
            "{framework}: {}",
            d.body
        );
        let WebhookEvent::Completed(done) = next(&mut events).await else {
            panic!("{framework}: expected a completed event")
        };
        assert_eq!(done.session_id, s.session_id);
        let results = client.fetch_results(&done).await;
        assert_eq!(results.fetched(), 6, "{framework}");
        assert!(results.is_ok(), "{framework}: {:?}", results.errors());
        assert_eq!(
            results.transcript.unwrap().unwrap().final_transcript.len(),
            4
        );

        // The other kinds.
        for kind in [EventKind::Failed, EventKind::TimedOut, EventKind::Cancelled] {
            let s = sandbox.create_session(None);
            let d = match kind {
                EventKind::Failed => sandbox.fail(&s.session_id).await,
                EventKind::TimedOut => sandbox.time_out(&s.session_id).await,
                _ => sandbox.cancel(&s.session_id).await,
            }
            .unwrap();
            assert_eq!((d.kind, d.status), (kind, 200), "{framework}");
            let event = next(&mut events).await;
            assert_eq!(
                (event.kind(), event.session_id()),
                (kind, Some(&s.session_id)),
                "{framework}"
            );
        }
        assert_eq!(handler.calls(), 4, "{framework}");

        // A re-delivered webhook is acknowledged and not processed again.
        let again = sandbox
            .deliver(&WebhookEvent::Completed(done.clone()))
            .await
            .unwrap();
        assert_eq!(again.status, 200, "{framework}");
        assert!(
            again.body.contains("duplicate"),
            "{framework}: {}",
            again.body
        );
        // A tampered one is refused.
        let tampered = sandbox
            .deliver_tampered(&WebhookEvent::Completed(done.clone()))
            .await
            .unwrap();
        assert_eq!(tampered.status, 401, "{framework}");
        assert_eq!(handler.calls(), 4, "{framework}: no extra handler call");

        // The client recovers from 503 and 429 with Retry-After.
        sandbox.inject(Fault::status(503).on("/api/v1/ambient/session/").times(1));
        sandbox.inject(
            Fault::status(429)
                .retry_after("1")
                .on("/api/v1/ambient/")
                .times(1),
        );
        let started = Instant::now();
        let results = client.fetch_results(&done).await;
        assert!(results.is_ok(), "{framework}: {:?}", results.errors());
        assert!(
            started.elapsed() >= Duration::from_secs(1),
            "Retry-After honoured"
        );
        sandbox.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_and_an_expired_token_are_recovered_from() {
    let sandbox = Sandbox::builder().start().await.unwrap();
    let (handler, mut events) = Forward::new();
    sandbox.set_webhook_url(Some(start_receiver(
        "axum",
        sandbox.verifier_builder().build().unwrap(),
        handler,
    )));
    let client = AmbientClient::builder()
        .base_url(sandbox.base_url())
        .auth(PartnerLogin::new(DEFAULT_PARTNER_ID, DEFAULT_PARTNER_TOKEN))
        .retry(RetryPolicy::default().base_delay(Duration::from_millis(10)))
        .build()
        .unwrap();
    let s = sandbox.create_session(None);
    sandbox.complete(&s.session_id).await.unwrap();
    let WebhookEvent::Completed(done) = next(&mut events).await else {
        panic!()
    };
    sandbox.inject(
        Fault::drop_connection()
            .on("/api/v1/ambient/session/")
            .times(2),
    );
    sandbox.expire_tokens();
    let results = client.fetch_results(&done).await;
    assert!(results.is_ok(), "{:?}", results.errors());
}
