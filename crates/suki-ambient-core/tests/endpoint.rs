//! The shared ready-made endpoint: verify, parse, deduplicate, dispatch, answer.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use suki_ambient_core::testing::{self, FixedClock};
use suki_ambient_core::{
    EventHandler, HandlerError, SessionCompleted, UnixMillis, UnknownEvent, Verifier,
    WebhookEndpoint, WebhookMeta,
};

const NOW: u64 = 1_766_122_020_941;

#[derive(Default)]
struct Counting {
    completed: AtomicUsize,
    unknown: AtomicUsize,
    fail_next: AtomicUsize,
}

#[suki_ambient_core::async_trait]
impl EventHandler for Counting {
    async fn on_completed(
        &self,
        _e: SessionCompleted,
        _m: WebhookMeta,
    ) -> Result<(), HandlerError> {
        if self.fail_next.swap(0, Ordering::SeqCst) > 0 {
            return Err("MARKER handler failure with PHI".into());
        }
        self.completed.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    async fn on_unknown(&self, _e: UnknownEvent, _m: WebhookMeta) -> Result<(), HandlerError> {
        self.unknown.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

fn endpoint() -> (WebhookEndpoint<Arc<Counting>>, Arc<Counting>) {
    let verifier = Verifier::builder()
        .secret("k")
        .clock(FixedClock::new(UnixMillis(NOW)))
        .max_body_bytes(1024)
        .build()
        .unwrap();
    let handler = Arc::new(Counting::default());
    (
        WebhookEndpoint::new(verifier, Arc::clone(&handler)),
        handler,
    )
}

fn run<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn processes_once_and_acknowledges_duplicates_and_resends() {
    run(async {
        let (ep, h) = endpoint();
        let body = testing::completed("s-1", "e-1").to_vec();
        let (headers, body) = testing::signed("k", UnixMillis(NOW), body);
        let first = ep.handle(&headers, body.clone()).await;
        assert_eq!(first.status, 200);
        assert_eq!(first.body, Bytes::from_static(br#"{"status":"processed"}"#));
        let replay = ep.handle(&headers, body.clone()).await;
        assert_eq!(replay.status, 200);
        assert_eq!(
            replay.body,
            Bytes::from_static(br#"{"status":"duplicate"}"#)
        );
        // Re-sent with a new timestamp (new signature): same event, still once.
        let (headers2, body2) = testing::signed("k", UnixMillis(NOW - 1000), body);
        assert_eq!(ep.handle(&headers2, body2).await.status, 200);
        assert_eq!(h.completed.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn handler_failure_is_500_and_a_redelivery_is_processed() {
    run(async {
        let (ep, h) = endpoint();
        h.fail_next.store(1, Ordering::SeqCst);
        let (headers, body) =
            testing::signed("k", UnixMillis(NOW), testing::completed("s", "e").to_vec());
        let failed = ep.handle(&headers, body.clone()).await;
        assert_eq!(failed.status, 500);
        assert!(!String::from_utf8_lossy(&failed.body).contains("MARKER"));
        let again = ep.handle(&headers, body).await;
        assert_eq!(again.status, 200);
        assert_eq!(h.completed.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn rejections_and_unknown_statuses() {
    run(async {
        let (ep, h) = endpoint();
        let (headers, _) = testing::signed("k", UnixMillis(NOW), &b"{}"[..]);
        let tampered = ep.handle(&headers, Bytes::from_static(b"{ }")).await;
        assert_eq!(tampered.status, 401);
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&tampered.body).unwrap()["error"],
            "mismatch"
        );
        let (headers, body) = testing::signed("k", UnixMillis(NOW), &b"not json"[..]);
        let invalid = ep.handle(&headers, body).await;
        assert_eq!(invalid.status, 400);
        let (headers, body) = testing::signed("k", UnixMillis(NOW), vec![b' '; 2048]);
        assert_eq!(ep.handle(&headers, body).await.status, 413);
        let (headers, body) =
            testing::signed("k", UnixMillis(NOW), &br#"{"status":"brand_new"}"#[..]);
        assert_eq!(ep.handle(&headers, body.clone()).await.status, 200);
        assert_eq!(ep.handle(&headers, body).await.status, 200);
        assert_eq!(
            h.unknown.load(Ordering::SeqCst),
            1,
            "unknown deduplicated by delivery"
        );
        let missing = ep.handle_parts(None, Some("ab"), Bytes::new()).await;
        assert_eq!(missing.status, 401);
    });
}

#[tokio::test]
async fn every_rejection_is_logged_at_warn_with_its_code_and_no_header_value() {
    let capture = testing::LogCapture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_writer(capture.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let verifier = Verifier::builder()
        .secret("right-secret")
        .secret(" padded-secret\n")
        .clock(FixedClock::new(UnixMillis(NOW)))
        .build()
        .unwrap();
    let endpoint = WebhookEndpoint::new(verifier, Counting::default());
    let (headers, body) = testing::signed(
        "MARKER-wrong-secret",
        UnixMillis(NOW),
        testing::completed("MARKER-session", "e").to_vec(),
    );
    let signature = headers["x-api-key"].to_str().unwrap().to_owned();
    assert_eq!(endpoint.handle(&headers, body).await.status, 401);
    let logs = capture.text();
    assert!(logs.contains("WARN"), "{logs}");
    assert!(logs.contains("code=\"mismatch\""), "{logs}");
    assert!(logs.contains("secrets_tried=2"), "{logs}");
    assert!(
        logs.contains("secret #1 starts or ends with whitespace"),
        "{logs}"
    );
    assert!(
        !logs.contains(&signature) && !logs.contains("MARKER"),
        "{logs}"
    );
}
