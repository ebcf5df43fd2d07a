//! The expectations' checks: resolution by stored events, leased and fenced checks, a pass's
//! checks recorded at once, the hourly counts and resolutions.

use super::*;

pub(super) async fn expectations_are_resolved_by_stored_events(store: &impl Store) {
    assert!(
        store
            .register(NewExpectation {
                expected: &expected("a"),
                first_check: at(300_000),
                now: at(0),
                context: Some(b"\0{\"ehr_patient\":\"Patient/1\"}"),
            })
            .await
            .expect("expect"),
        "expect: new"
    );
    assert!(
        !store
            .register(NewExpectation {
                expected: &expected("a"),
                first_check: at(1),
                now: at(1),
                context: None,
            })
            .await
            .expect("expect"),
        "expect: once per session"
    );
    let a = store
        .expectation(&SessionId::from("session-a"))
        .await
        .expect("get")
        .expect("row");
    assert_eq!(
        (a.next_check, a.checks, a.resolution),
        (at(300_000), 0, None)
    );
    assert_eq!(
        (a.provider_id.as_deref(), a.kind),
        (Some("provider-1"), SessionKind::Ambient)
    );
    assert_eq!(
        a.context
            .as_ref()
            .map(crate::expect::SealedContext::as_bytes),
        Some(&b"\0{\"ehr_patient\":\"Patient/1\"}"[..]),
        "the context is kept as given"
    );
    // The webhook's insert resolves it, in the same statement.
    let mut webhook = delivery("a");
    webhook.received_at = at(7);
    store.insert(&[webhook]).await.expect("insert");
    let a = store
        .expectation(&SessionId::from("session-a"))
        .await
        .expect("get")
        .expect("row");
    assert_eq!(
        (a.resolution, a.resolved_at),
        (Some(Resolution::Webhook), Some(at(7))),
        "resolved by the webhook"
    );
    // An event of unknown status does not resolve; a polled one resolves as `poll`.
    store
        .register(NewExpectation {
            expected: &expected("b"),
            first_check: at(300_000),
            now: at(0),
            context: None,
        })
        .await
        .expect("expect");
    let mut unknown = delivery("b-unknown");
    unknown.session_id = Some(SessionId::from("session-b"));
    unknown.kind = EventKind::Unknown;
    store.insert(&[unknown]).await.expect("insert");
    assert_eq!(
        store
            .expectation(&SessionId::from("session-b"))
            .await
            .expect("get")
            .expect("row")
            .resolution,
        None
    );
    let mut polled = delivery("b");
    polled.source = Source::Poll;
    store.insert(&[polled]).await.expect("insert");
    assert_eq!(
        store
            .expectation(&SessionId::from("session-b"))
            .await
            .expect("get")
            .expect("row")
            .resolution,
        Some(Resolution::Poll)
    );
    // Expecting a session whose webhook is already stored: resolved at once.
    store.insert(&[delivery("c")]).await.expect("insert");
    store
        .register(NewExpectation {
            expected: &expected("c"),
            first_check: at(300_000),
            now: at(9),
            context: None,
        })
        .await
        .expect("expect");
    let c = store
        .expectation(&SessionId::from("session-c"))
        .await
        .expect("get")
        .expect("row");
    assert_eq!(
        (c.resolution, c.resolved_at),
        (Some(Resolution::Webhook), Some(at(9))),
        "expect after the webhook"
    );
    assert!(
        store
            .claim_expectations(req("r", at(10_000_000), 10))
            .await
            .expect("claim")
            .is_empty(),
        "resolved ones are never checked"
    );
    assert_eq!(store.expectations(10).await.expect("list").len(), 3);
}

pub(super) async fn expectation_checks_are_leased_and_fenced(store: &impl Store) {
    for key in ["a", "b", "c"] {
        store
            .register(NewExpectation {
                expected: &expected(key),
                first_check: at(100),
                now: at(0),
                context: None,
            })
            .await
            .expect("expect");
    }
    assert!(
        store
            .claim_expectations(req("r1", at(99), 10))
            .await
            .expect("claim")
            .is_empty(),
        "not due before next_check"
    );
    let claims = store
        .claim_expectations(req("r1", at(100), 2))
        .await
        .expect("claim");
    assert_eq!(claims.len(), 2, "the limit");
    assert!(
        claims
            .iter()
            .all(|c| c.checks == 1 && c.lease_owner.as_deref() == Some("r1"))
    );
    let rest = store
        .claim_expectations(req("r2", at(101), 10))
        .await
        .expect("claim");
    assert_eq!(rest.len(), 1, "a held expectation is not claimed again");
    let (first, second, third) = (&claims[0], &claims[1], &rest[0]);
    // Not ended yet: checked again later.
    let again = CheckOutcome::Again {
        next_check: at(5_000),
        status: "running".to_owned(),
    };
    assert!(finish(store, first.lease(), at(200), &again).await);
    let row = store
        .expectation(&first.session_id)
        .await
        .expect("get")
        .expect("row");
    assert_eq!(
        (row.next_check, row.last_status.as_deref(), row.lease_owner),
        (at(5_000), Some("running"), None)
    );
    // An expired claim is taken over; the old holder is fenced out.
    let taken = store
        .claim_expectations(req("r3", at(200_000), 10))
        .await
        .expect("claim");
    let retaken = taken
        .iter()
        .find(|c| c.session_id == second.session_id)
        .expect("taken over");
    assert_eq!(retaken.checks, 2);
    assert!(
        !finish(store, second.lease(), at(60_200), &again).await,
        "stale lease refused"
    );
    // Ended: its event was stored by the poll (the trigger resolved it) or was already there.
    let stored = CheckOutcome::Recovered {
        status: "completed".to_owned(),
    };
    assert!(finish(store, retaken.lease(), at(60_300), &stored).await);
    let row = store
        .expectation(&retaken.session_id)
        .await
        .expect("get")
        .expect("row");
    assert_eq!(
        row.resolution,
        Some(Resolution::Poll),
        "no stored event: resolved by the poll"
    );
    // Given up; a sweep reopens it, leaves resolved ones alone.
    let third_now = taken
        .iter()
        .find(|c| c.session_id == third.session_id)
        .expect("third");
    let gave_up = CheckOutcome::GaveUp {
        status: "running".to_owned(),
    };
    assert!(finish(store, third_now.lease(), at(60_400), &gave_up).await);
    assert_eq!(
        store
            .expectation(&third.session_id)
            .await
            .expect("get")
            .expect("row")
            .resolution,
        Some(Resolution::GaveUp)
    );
    assert_eq!(
        store.sweep(at(0), at(270_000)).await.expect("sweep"),
        2,
        "the given-up and the unresolved one (their leases expired)"
    );
    let reopened = store
        .expectation(&third.session_id)
        .await
        .expect("get")
        .expect("row");
    assert_eq!(
        (reopened.resolution, reopened.next_check),
        (None, at(270_000))
    );
    assert_eq!(
        store
            .expectation(&retaken.session_id)
            .await
            .expect("get")
            .expect("row")
            .resolution,
        Some(Resolution::Poll)
    );
    assert_eq!(
        store.sweep(at(1), at(270_000)).await.expect("sweep"),
        0,
        "only sessions ended since"
    );
    let held = store
        .claim_expectations(req("r4", at(270_000), 10))
        .await
        .expect("claim");
    assert_eq!(held.len(), 2);
    assert_eq!(
        store.sweep(at(0), at(270_001)).await.expect("sweep"),
        0,
        "one under a live lease is left to the reconciler checking it"
    );
}

pub(super) async fn hourly_counts_and_resolutions(store: &impl Store) {
    for key in ["a", "b"] {
        assert!(
            store
                .register(NewExpectation {
                    expected: &expected(key),
                    first_check: at(0),
                    now: at(0),
                    context: None,
                })
                .await
                .expect("expect")
        );
    }
    let mut next_hour = delivery("next-hour");
    next_hour.received_at = at(3_600_005);
    let mut before = delivery("before");
    before.received_at = UnixMillis(T0 - 7_200_000);
    store
        .insert(&[delivery("a"), next_hour, before])
        .await
        .expect("insert");
    let mut hours = store.hourly(at(0)).await.expect("hourly");
    hours.sort_by_key(|h| h.hour_start);
    let first = T0 / 3_600_000 * 3_600_000;
    assert_eq!(
        hours
            .iter()
            .map(|h| (h.hour_start.0, h.state, h.count))
            .collect::<Vec<_>>(),
        vec![
            (first, State::Pending, 1),
            (first + 3_600_000, State::Pending, 1)
        ],
        "by hour of reception, only since the given time"
    );
    let counts = store.expectation_counts().await.expect("counts");
    assert_eq!(
        (
            counts.expected,
            counts.webhook,
            counts.open,
            counts.poll,
            counts.gave_up
        ),
        (2, 1, 1, 0, 0)
    );
}

/// A pass's checks are recorded together; a check whose lease was taken over changes nothing,
/// and the others of the pass are recorded all the same.
pub(super) async fn a_pass_records_its_checks_at_once(store: &impl Store) {
    for key in ["p1", "p2", "p3"] {
        store
            .register(NewExpectation {
                expected: &expected(key),
                first_check: at(100),
                now: at(0),
                context: None,
            })
            .await
            .expect("expect");
    }
    let claims = store
        .claim_expectations(req("r1", at(100), 10))
        .await
        .expect("claim");
    assert_eq!(claims.len(), 3);
    let again = CheckOutcome::Again {
        next_check: at(9_000),
        status: "running".to_owned(),
    };
    let mut stale = claims[1].lease();
    stale.fence -= 1;
    let checks = [
        crate::expect::FinishedCheck {
            lease: claims[0].lease(),
            outcome: again.clone(),
        },
        crate::expect::FinishedCheck {
            lease: stale,
            outcome: again.clone(),
        },
        crate::expect::FinishedCheck {
            lease: claims[2].lease(),
            outcome: CheckOutcome::GaveUp {
                status: "running".to_owned(),
            },
        },
    ];
    assert_eq!(
        store.finish_checks(at(200), &checks).await.expect("finish"),
        [true, false, true]
    );
    let row = |id: &SessionId| {
        let id = id.clone();
        async move { store.expectation(&id).await.expect("get").expect("row") }
    };
    assert_eq!(row(&claims[0].session_id).await.next_check, at(9_000));
    assert_eq!(
        row(&claims[1].session_id).await.lease_owner.as_deref(),
        Some("r1"),
        "the stale check changed nothing"
    );
    assert_eq!(
        row(&claims[2].session_id).await.resolution,
        Some(Resolution::GaveUp)
    );
    assert!(
        store
            .finish_checks(at(300), &[])
            .await
            .expect("none")
            .is_empty()
    );
}
