//! Flow control's checks: a wait spends no attempt and names its destination; destinations
//! are shared (down, one probe at a time, up again making their waiting rows due).

use super::*;
use crate::{records::ChoreLease, records::DestinationDown};

pub(super) async fn a_wait_spends_no_attempt_and_names_its_destination(store: &impl Store) {
    let step = "a_wait_spends_no_attempt_and_names_its_destination";
    store
        .insert(&[delivery("w1"), delivery("w2")])
        .await
        .expect("insert");
    let claims = store.claim(req("w", at(10), 2)).await.expect("claim");
    assert_eq!(claims.len(), 2, "{step}");
    for c in &claims {
        assert!(
            store
                .fail(FailedAttempt {
                    waiting_for: Some("ehr:fhir.example"),
                    ..failed(
                        c.lease(),
                        at(20),
                        Next::Wait(at(5_000)),
                        "fhir_503_transient"
                    )
                })
                .await
                .expect("wait"),
            "{step}"
        );
    }
    let row = store
        .get(claims[0].record.id)
        .await
        .expect("get")
        .expect("row");
    assert_eq!(row.state, State::Pending, "{step}");
    assert_eq!(row.attempts, 0, "{step}: the wait spent no attempt");
    assert_eq!(row.snoozes, 0, "{step}: nor a snooze");
    assert_eq!(
        row.waiting_for.as_deref(),
        Some("ehr:fhir.example"),
        "{step}"
    );
    assert_eq!(
        row.last_error.as_deref(),
        Some("fhir_503_transient"),
        "{step}"
    );
    assert_eq!(row.run_after, at(5_000), "{step}");
    let events = timeline(store, "session-w1", row.id).await;
    assert_eq!(events.len(), 1, "{step}: {events:?}");
    assert_eq!(events[0].0, "waiting", "{step}");
    assert_eq!(events[0].2.as_deref(), Some("fhir_503_transient"), "{step}");
    assert!(
        store
            .claim(req("w", at(100), 2))
            .await
            .expect("claim")
            .is_empty(),
        "{step}: not due before its time"
    );

    // Down, then seen by every reader with the rows that wait for it.
    store
        .destination_down(DestinationDown {
            name: "ehr:fhir.example",
            reason: "fhir_503_transient",
            now: at(20),
            next_probe: at(1_000),
        })
        .await
        .expect("down");
    let down = store.destinations().await.expect("destinations");
    assert_eq!(down.len(), 1, "{step}");
    assert!(!down[0].up, "{step}");
    assert_eq!(down[0].down_since, Some(at(20)), "{step}");
    assert_eq!(down[0].waiting, 2, "{step}");
    assert_eq!(
        down[0].reason.as_deref(),
        Some("fhir_503_transient"),
        "{step}"
    );

    // One probe at a time, not before its time.
    let probe = |owner, now, until| ChoreLease {
        task: "ehr:fhir.example",
        owner,
        now: at(now),
        until: at(until),
    };
    assert!(
        !store
            .take_probe(probe("a", 500, 2_000))
            .await
            .expect("probe"),
        "{step}: not before the next probe's time"
    );
    assert!(
        store
            .take_probe(probe("a", 1_000, 2_000))
            .await
            .expect("probe"),
        "{step}"
    );
    assert!(
        !store
            .take_probe(probe("b", 1_100, 2_100))
            .await
            .expect("probe"),
        "{step}: one probe at a time in the fleet"
    );
    // The probe failed: further off, still down since the start, the lease given up.
    store
        .destination_down(DestinationDown {
            name: "ehr:fhir.example",
            reason: "fhir_timeout",
            now: at(1_200),
            next_probe: at(3_000),
        })
        .await
        .expect("down again");
    let down = store.destinations().await.expect("destinations");
    assert_eq!(down[0].down_since, Some(at(20)), "{step}");
    assert_eq!(down[0].probes, 1, "{step}");
    assert_eq!(down[0].next_probe, at(3_000), "{step}");
    assert!(
        !store
            .take_probe(probe("b", 2_000, 4_000))
            .await
            .expect("probe"),
        "{step}"
    );
    assert!(
        store
            .take_probe(probe("b", 3_000, 4_000))
            .await
            .expect("probe"),
        "{step}"
    );
    // An expired probe lease is taken over.
    assert!(
        store
            .take_probe(probe("c", 4_000, 5_000))
            .await
            .expect("probe"),
        "{step}"
    );

    // Back: its waiting rows are due now.
    assert_eq!(
        store
            .destination_up("ehr:fhir.example", at(4_100))
            .await
            .expect("up"),
        2,
        "{step}"
    );
    let up = store.destinations().await.expect("destinations");
    assert!(up[0].up, "{step}");
    assert_eq!(up[0].down_since, None, "{step}");
    let again = store.claim(req("w", at(4_100), 2)).await.expect("claim");
    assert_eq!(again.len(), 2, "{step}: due at once");
    assert_eq!(again[0].record.attempts, 1, "{step}: its first attempt");
    assert!(
        store
            .complete(again[0].lease(), at(4_200), None)
            .await
            .expect("complete"),
        "{step}"
    );
    let done = store
        .get(again[0].record.id)
        .await
        .expect("get")
        .expect("row");
    assert_eq!(
        done.waiting_for, None,
        "{step}: waits for nothing once done"
    );
    assert!(
        !store
            .take_probe(probe("d", 9_000, 10_000))
            .await
            .expect("probe"),
        "{step}: nothing to probe while it is up"
    );
}
