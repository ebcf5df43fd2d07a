//! The client under faults: against the sandbox injecting 30% 503/429 (half with
//! `Retry-After`), 5% dropped connections and 5% latency spikes, 1,000 `fetch_results` all
//! complete within the retry policy; non-retryable 4xx surface at once; the deadline holds.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use suki_ambient::client::{AmbientClient, ClientError, PartnerLogin, RetryPolicy};
use suki_ambient::sandbox::{DEFAULT_PARTNER_ID, DEFAULT_PARTNER_TOKEN, Fault, Sandbox};
use suki_ambient::{LinkKind, WebhookEvent};
use tokio::sync::Semaphore;

const FETCHES: usize = 1_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_fetches_through_faults() {
    let sandbox = Sandbox::builder().start().await.unwrap();
    let mut events = Vec::with_capacity(FETCHES);
    for _ in 0..FETCHES {
        let s = sandbox.create_session(None);
        let WebhookEvent::Completed(done) = sandbox.complete_silently(&s.session_id).unwrap()
        else {
            unreachable!("complete_silently makes completed events")
        };
        events.push(done);
    }
    // Faults are tried in order; shares are conditional so the overall rates are 15% 503,
    // 15% 429 with Retry-After, 5% dropped connections, 5% latency spikes.
    sandbox.inject(Fault::status(503).share(0.15));
    // (`Retry-After: 0`: a longer one than the policy's 100 ms would end the call, for the
    // caller to reschedule.)
    sandbox.inject(Fault::status(429).retry_after("0").share(0.15 / 0.85));
    sandbox.inject(Fault::drop_connection().share(0.05 / 0.70));
    sandbox.inject(Fault::latency(Duration::from_millis(50)).share(0.05 / 0.65));

    let client = AmbientClient::builder()
        .base_url(sandbox.base_url())
        .auth(PartnerLogin::new(DEFAULT_PARTNER_ID, DEFAULT_PARTNER_TOKEN))
        .retry(
            // With ~35% of requests faulted, 20 attempts make a failed call a 1-in-10^9 event.
            RetryPolicy::default()
                .max_attempts(20)
                .base_delay(Duration::from_millis(5))
                .max_delay(Duration::from_millis(50))
                .max_retry_after(Duration::from_millis(100))
                // A third of the calls fail: the budget lets each retry (the default, a tenth,
                // is for outages, which the inbox's breakers wait out).
                .retry_budget(1_000),
        )
        .deadline(Duration::from_secs(20))
        .build()
        .unwrap();
    let limit = Arc::new(Semaphore::new(50));
    let started = Instant::now();
    let tasks: Vec<_> = events
        .iter()
        .cloned()
        .map(|done| {
            let client = client.clone();
            let limit = Arc::clone(&limit);
            tokio::spawn(async move {
                let _permit = limit.acquire().await.unwrap();
                client.fetch_results(&done).await
            })
        })
        .collect();
    let mut failures = Vec::new();
    for task in tasks {
        let results = task.await.unwrap();
        for (kind, err) in results.errors() {
            failures.push(format!("{} {kind}: {err}", results.session_id));
        }
    }
    let elapsed = started.elapsed();
    assert!(
        failures.is_empty(),
        "{} calls failed, e.g. {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );

    // Attempts per call, from the sandbox's request counts (every path is unique per session).
    let mut histogram: BTreeMap<u64, usize> = BTreeMap::new();
    for done in &events {
        for kind in LinkKind::ALL {
            let link = &done.links.get(kind)[0];
            let path = link.href.split('?').next().unwrap_or_default();
            *histogram.entry(sandbox.requests(path)).or_default() += 1;
        }
    }
    let calls: usize = histogram.values().sum();
    let requests: u64 = histogram.iter().map(|(a, n)| a * *n as u64).sum();
    use std::io::Write as _;
    let _ = writeln!(
        std::io::stderr().lock(),
        "client under faults: {FETCHES} fetch_results, {calls} calls, {requests} requests in {elapsed:?}; attempts per call: {histogram:?}"
    );
    assert_eq!(calls, FETCHES * 6);
    assert!(histogram.keys().any(|&a| a > 1), "faults were injected");
    assert!(
        histogram.keys().all(|&a| (1..=20).contains(&a)),
        "bounded by the policy"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_retryable_errors_surface_at_once_and_the_deadline_holds() {
    let sandbox = Sandbox::builder().start().await.unwrap();
    let s = sandbox.create_session(None);
    sandbox.complete_silently(&s.session_id).unwrap();
    let status_path = format!("/api/v1/ambient/session/{}/status", s.session_id);
    let client = AmbientClient::builder()
        .base_url(sandbox.base_url())
        .token(sandbox.issue_token(None))
        .retry(
            RetryPolicy::default()
                .max_attempts(10)
                .base_delay(Duration::from_millis(5)),
        )
        .deadline(Duration::from_millis(600))
        .build()
        .unwrap();
    for status in [400, 403, 404, 409, 412] {
        sandbox.inject(Fault::status(status).on(status_path.clone()).times(1));
        let before = sandbox.requests(&status_path);
        let err = client.session_status(&s.session_id).await.unwrap_err();
        assert_eq!(err.status(), Some(status));
        assert_eq!(
            sandbox.requests(&status_path) - before,
            1,
            "{status} is not retried"
        );
    }
    sandbox.inject(
        Fault::latency(Duration::from_secs(3))
            .on(status_path.clone())
            .share(1.0),
    );
    let started = Instant::now();
    let err = client.session_status(&s.session_id).await.unwrap_err();
    assert!(matches!(err, ClientError::Timeout { .. }), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "deadline of 600 ms respected: {:?}",
        started.elapsed()
    );
}
