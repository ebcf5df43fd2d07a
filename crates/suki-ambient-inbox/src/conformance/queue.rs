//! The delivery queue's checks: insert and dedup, claims, leases and fencing, failures, snoozes,
//! releases, the timeline, sealed and erased bodies, what an attempt fetched, the maintenance lease.

use super::*;

pub(super) async fn each_attempt_is_in_the_timeline(store: &impl Store) {
    let step = "each_attempt_is_in_the_timeline";
    store.insert(&[delivery("t")]).await.expect("insert");
    let c = store
        .claim(req("w1", at(10), 1))
        .await
        .expect("claim")
        .remove(0);
    assert!(
        store
            .fail(FailedAttempt {
                detail: Some("contents 503"),
                ..failed(
                    c.lease(),
                    at(25),
                    Next::RetryAt(at(100)),
                    "fetch_contents_503"
                )
            })
            .await
            .expect("fail")
    );
    // Claimed, then lost: the lease expires and another worker claims it again.
    let c = store
        .claim(req("w2", at(100), 1))
        .await
        .expect("claim")
        .remove(0);
    let c2 = store
        .claim(req("w3", at(100 + 60_001), 1))
        .await
        .expect("claim")
        .remove(0);
    assert_ne!(c.record.fence, c2.record.fence);
    assert!(
        store
            .complete(c2.lease(), at(60_200), Some("contents ok"))
            .await
            .expect("complete")
    );
    let trace = store.trace("session-t", 100).await.expect("trace");
    assert_eq!(trace.deliveries.len(), 1, "{step}: found by session");
    assert_eq!(
        trace.deliveries[0].last_error, None,
        "{step}: a row that ended done shows no stale error (the timeline keeps it)"
    );
    let first = &trace.events[0];
    assert_eq!(
        (
            first.started_at,
            first.at,
            first.worker.as_deref(),
            first.next_run
        ),
        (Some(at(10)), at(25), Some("w1"), Some(at(100))),
        "{step}: an attempt's start, end, worker and next run"
    );
    assert_eq!(
        timeline(store, "session-t", c.record.id).await,
        [
            (
                "retry".to_owned(),
                Some(1),
                Some("fetch_contents_503".to_owned()),
                Some("contents 503".to_owned()),
                None
            ),
            ("lease_expired".to_owned(), Some(2), None, None, None),
            (
                "done".to_owned(),
                Some(3),
                None,
                Some("contents ok".to_owned()),
                None
            ),
        ],
        "{step}: every attempt and its outcome"
    );
    assert_eq!(
        store
            .trace("encounter", 100)
            .await
            .expect("trace")
            .deliveries
            .len(),
        1,
        "{step}: found by encounter"
    );
    assert!(
        store.trace("nobody", 100).await.expect("trace").is_empty(),
        "{step}: nothing known"
    );
    // A row retried again and again keeps its latest 20 attempts.
    store.insert(&[delivery("many")]).await.expect("insert");
    for i in 0..25u64 {
        let c = store
            .claim(req("w", at(1_000_000 + i * 10), 1))
            .await
            .expect("claim")
            .remove(0);
        store
            .fail(failed(
                c.lease(),
                at(1_000_000 + i * 10 + 1),
                Next::RetryAt(at(0)),
                "x",
            ))
            .await
            .expect("fail");
    }
    let events = store
        .trace("session-many", 100)
        .await
        .expect("trace")
        .events;
    assert_eq!(events.len(), 20, "{step}: the latest 20 attempts are kept");
    assert_eq!(
        events.last().and_then(|e| e.attempt),
        Some(25),
        "{step}: the latest"
    );
}

pub(super) async fn a_snooze_spends_no_attempt(store: &impl Store) {
    let step = "a_snooze_spends_no_attempt";
    store.insert(&[delivery("z")]).await.expect("insert");
    let c = store
        .claim(req("w", at(1), 1))
        .await
        .expect("claim")
        .remove(0);
    assert!(
        store
            .fail(failed(
                c.lease(),
                at(2),
                Next::Snooze(at(5_000)),
                "encounter_not_open"
            ))
            .await
            .expect("snooze")
    );
    let row = store.get(c.record.id).await.expect("get").expect("row");
    assert_eq!(
        (row.state, row.attempts, row.snoozes, row.run_after),
        (State::Pending, 0, 1, at(5_000)),
        "{step}: pending, no attempt spent, one snooze"
    );
    assert!(
        store
            .claim(req("w", at(4_999), 1))
            .await
            .expect("claim")
            .is_empty()
    );
    assert_eq!(
        timeline(store, "session-z", row.id).await[0].0,
        "snoozed",
        "{step}: in the timeline"
    );
}

pub(super) async fn bodies_are_sealed_as_they_are_written(store: &impl Store) {
    let step = "bodies_are_sealed_as_they_are_written";
    let key = crate::BodyKey::new([3; 32]);
    let mut already = delivery("e2");
    already.body = Bytes::from_static(b"sealed before");
    already.key_id = Some("k0".into());
    let stored = store
        .insert_with_key(&[delivery("e1"), already, delivery("e1")], Some(&key))
        .await
        .expect("insert");
    assert_eq!(
        stored,
        [Stored::Accepted, Stored::Accepted, Stored::Duplicate],
        "{step}"
    );
    store
        .insert_with_key(&[delivery("e3")], None)
        .await
        .expect("insert");
    let bodies = store.bodies(0, 10).await.expect("bodies");
    let body = |key: &str| {
        bodies
            .iter()
            .find(|b| b.dedup_key == delivery(key).dedup_key)
            .expect("stored")
    };
    let e1 = body("e1");
    assert_eq!(e1.key_id.as_deref(), Some(key.id()), "{step}: sealed");
    assert_ne!(e1.body, delivery("e1").body, "{step}: not in clear");
    assert_eq!(
        key.open(e1.dedup_key.as_bytes(), &e1.body).as_deref(),
        Some(&delivery("e1").body[..]),
        "{step}: opens with the key and the row's dedup key"
    );
    let e2 = body("e2");
    assert_eq!(
        (e2.key_id.as_deref(), &e2.body[..]),
        (Some("k0"), &b"sealed before"[..]),
        "{step}: a sealed body is not sealed again"
    );
    let e3 = body("e3");
    assert_eq!(
        (e3.key_id.as_deref(), &e3.body),
        (None, &delivery("e3").body),
        "{step}: no key, in clear"
    );
}

pub(super) async fn bodies_are_erased_after_their_retention(store: &impl Store) {
    let step = "bodies_are_erased_after_their_retention";
    let mut sealed = delivery("e2");
    sealed.key_id = Some("k1".into());
    store
        .insert(&[delivery("e1"), sealed, delivery("e3")])
        .await
        .expect("insert");
    let claims = store.claim(req("w", at(1), 3)).await.expect("claim");
    complete_each(store, &claims, &[100, 200, 1_000]).await;
    // A re-seal that read the bodies before an erase (the race of `inbox rekey` with the
    // hourly erase) never writes an erased body back.
    let read_before = store.bodies(0, 10).await.expect("bodies");
    assert_eq!(read_before.len(), 3);
    let mut keys = store.key_counts().await.expect("keys");
    keys.sort();
    assert_eq!(
        keys,
        [(None, 2), (Some("k1".to_owned()), 1)],
        "{step}: by key"
    );
    assert_eq!(
        store.erase_bodies(at(500), at(2_000)).await.expect("erase"),
        2,
        "{step}: the done rows past the body retention"
    );
    assert_eq!(
        store.erase_bodies(at(500), at(2_001)).await.expect("erase"),
        0
    );
    assert_eq!(
        store.key_counts().await.expect("keys"),
        [(None, 1)],
        "{step}: erased bodies are under no key"
    );
    let bodies = store.bodies(0, 10).await.expect("bodies");
    assert_eq!(bodies.len(), 1, "{step}: erased bodies are not re-sealed");
    let stale: Vec<crate::records::Resealed> = read_before
        .iter()
        .map(|b| crate::records::Resealed {
            id: b.id,
            was: b.key_id.clone(),
            key_id: "k2".into(),
            body: b.body.clone(),
            fetched: None,
        })
        .collect();
    assert_eq!(
        store.reseal(&stale).await.expect("reseal"),
        1,
        "{step}: only the body not erased is re-sealed"
    );
    assert_eq!(
        store.key_counts().await.expect("keys"),
        [(Some("k2".to_owned()), 1)],
        "{step}: the erased bodies stay erased"
    );
    let row = store
        .get(claims[0].record.id)
        .await
        .expect("get")
        .expect("kept");
    assert_eq!(row.state, State::Done, "{step}: the row's metadata stays");
    assert!(
        !store
            .trace("session-e1", 10)
            .await
            .expect("trace")
            .is_empty()
    );
    assert_eq!(
        act(
            store,
            crate::Action::Replay {
                since: at(0),
                kind: None
            },
            at(3_000)
        )
        .await
        .expect("replay"),
        1,
        "{step}: a row without its body is not replayed"
    );
    assert_eq!(store.counts().await.expect("counts").done, 2);
}

pub(super) async fn what_an_attempt_fetched_is_kept_until_done(store: &impl Store) {
    let step = "what_an_attempt_fetched_is_kept_until_done";
    store
        .insert(&[delivery("f1"), delivery("f2")])
        .await
        .expect("insert");
    let claims = store.claim(req("w", at(1), 2)).await.expect("claim");
    let (a, b) = (&claims[0], &claims[1]);
    assert_eq!(
        store.fetched(a.record.id).await.expect("fetched"),
        None,
        "{step}"
    );
    assert!(
        store
            .keep_fetched(a.lease(), b"kept-a")
            .await
            .expect("keep"),
        "{step}: kept under the lease"
    );
    assert!(
        store
            .keep_fetched(b.lease(), b"kept-b")
            .await
            .expect("keep")
    );
    let stale = Lease {
        id: a.record.id,
        fence: a.record.fence + 1,
    };
    assert!(
        !store.keep_fetched(stale, b"other").await.expect("keep"),
        "{step}: not under another lease"
    );
    assert!(
        store
            .fail(failed(
                a.lease(),
                at(2),
                Next::RetryAt(at(3)),
                "handler_failed"
            ))
            .await
            .expect("fail")
    );
    assert_eq!(
        store
            .fetched(a.record.id)
            .await
            .expect("fetched")
            .as_deref(),
        Some(&b"kept-a"[..]),
        "{step}: kept across a failed attempt"
    );
    let again = store.claim(req("w", at(4), 1)).await.expect("claim");
    assert_eq!(again[0].record.id, a.record.id);
    assert!(
        store
            .complete(again[0].lease(), at(5), None)
            .await
            .expect("complete")
    );
    assert_eq!(
        store.fetched(a.record.id).await.expect("fetched"),
        None,
        "{step}: cleared when done"
    );
    assert!(
        store
            .complete(b.lease(), at(5), None)
            .await
            .expect("complete")
    );
    assert_eq!(store.fetched(b.record.id).await.expect("fetched"), None);
    assert_eq!(
        store.fetched(-1).await.expect("fetched"),
        None,
        "{step}: no such row"
    );
}

pub(super) async fn insert_and_dedupe(store: &impl Store) {
    let first = store.insert(&[delivery("a")]).await.expect("insert");
    assert_eq!(
        first,
        [Stored::Accepted],
        "insert_and_dedupe: a new key is accepted"
    );
    let again = store.insert(&[delivery("a")]).await.expect("insert");
    assert_eq!(
        again,
        [Stored::Duplicate],
        "insert_and_dedupe: a stored key is a duplicate"
    );
    let batch = store
        .insert(&[delivery("b"), delivery("b"), delivery("c")])
        .await
        .expect("insert");
    assert_eq!(
        batch,
        [Stored::Accepted, Stored::Duplicate, Stored::Accepted],
        "insert_and_dedupe: duplicates within one batch"
    );
    // A batch larger than one statement can hold, with a duplicate spanning two statements.
    let mut big: Vec<_> = (0..600).map(|i| delivery(&format!("big-{i}"))).collect();
    big.push(delivery("big-3"));
    let stored = store.insert(&big).await.expect("insert");
    assert_eq!(
        stored.iter().filter(|s| **s == Stored::Accepted).count(),
        600,
        "insert_and_dedupe: a large batch"
    );
    assert_eq!(
        stored[600],
        Stored::Duplicate,
        "insert_and_dedupe: a duplicate across statements"
    );
    assert_eq!(
        store.insert(&[]).await.expect("insert"),
        [],
        "insert_and_dedupe: an empty batch"
    );
    assert_eq!(store.counts().await.expect("counts").pending, 603);
    let rows: Vec<_> = store
        .list(None, 1000)
        .await
        .expect("list")
        .into_iter()
        .filter(|r| !r.dedup_key.starts_with("big-"))
        .collect();
    assert_eq!(rows.len(), 3, "insert_and_dedupe: three rows");
    let a = rows.iter().find(|r| r.dedup_key == "a").expect("row a");
    assert_eq!(a.state, State::Pending);
    assert_eq!(a.attempts, 0);
    assert_eq!(a.source, Source::Webhook);
    assert_eq!(a.kind, EventKind::Completed);
    assert_eq!(a.session_id, Some(SessionId::from("session-a")));
    assert_eq!(a.received_at, at(0));
    assert_eq!(a.run_after, at(0), "insert_and_dedupe: due when received");
    let got = store.get(a.id).await.expect("get").expect("row a by id");
    assert_eq!(&got, a, "insert_and_dedupe: get matches list");
    assert!(store.get(i64::MAX).await.expect("get").is_none());
}

pub(super) async fn claim_takes_due_rows_once(store: &impl Store) {
    store
        .insert(&[delivery("a"), delivery("b")])
        .await
        .expect("insert");
    let early = store
        .claim(req("w1", UnixMillis(T0 - 1), 10))
        .await
        .expect("claim");
    assert!(
        early.is_empty(),
        "claim: nothing is due before it was received"
    );
    let claims = store.claim(req("w1", at(0), 1)).await.expect("claim");
    assert_eq!(claims.len(), 1, "claim: the limit is honoured");
    let c = &claims[0];
    assert_eq!(c.record.state, State::Running);
    assert_eq!(c.record.attempts, 1, "claim: counts the attempt");
    assert_eq!(c.record.lease_owner.as_deref(), Some("w1"));
    assert_eq!(
        c.record.run_after,
        at(60_000),
        "claim: run_after is the lease expiry"
    );
    assert_eq!(
        c.body,
        delivery(&c.record.dedup_key).body,
        "claim: the body intact"
    );
    let rest = store.claim(req("w2", at(1), 10)).await.expect("claim");
    assert_eq!(rest.len(), 1, "claim: the other row");
    assert_ne!(
        rest[0].record.id, c.record.id,
        "claim: a held row is not claimed again"
    );
    let none = store.claim(req("w3", at(2), 10)).await.expect("claim");
    assert!(none.is_empty(), "claim: both rows are held");
    assert!(
        store
            .complete(c.lease(), at(3), None)
            .await
            .expect("complete")
    );
    let done = store.get(c.record.id).await.expect("get").expect("row");
    assert_eq!(done.state, State::Done);
    assert_eq!(done.completed_at, Some(at(3)));
    assert_eq!(done.lease_owner, None);
    assert!(
        store
            .claim(req("w3", at(120_000), 10))
            .await
            .expect("claim")
            .iter()
            .all(|c| c.record.id != done.id),
        "claim: a done row is never claimed"
    );
}

pub(super) async fn expired_lease_is_reclaimed_and_fenced(store: &impl Store) {
    store.insert(&[delivery("a")]).await.expect("insert");
    let first = store
        .claim(req("w1", at(0), 1))
        .await
        .expect("claim")
        .remove(0);
    let second = store.claim(req("w2", at(60_000), 1)).await.expect("claim");
    assert_eq!(second.len(), 1, "fence: an expired lease is reclaimed");
    let second = &second[0];
    assert_eq!(second.record.id, first.record.id);
    assert!(
        second.record.fence > first.record.fence,
        "fence: a new token"
    );
    assert_eq!(
        second.record.attempts, 2,
        "fence: the crashed attempt counts"
    );
    let old = first.lease();
    assert!(
        !store
            .complete(old, at(60_001), None)
            .await
            .expect("complete"),
        "fence: stale completion refused"
    );
    assert!(
        !store
            .fail(failed(old, at(60_001), Next::Dead, "x"))
            .await
            .expect("fail"),
        "fence: stale failure refused"
    );
    assert!(
        !store.heartbeat(old, at(999_999)).await.expect("heartbeat"),
        "fence: stale heartbeat refused"
    );
    assert!(
        !store.release(old, at(60_001)).await.expect("release"),
        "fence: stale release refused"
    );
    let row = store.get(first.record.id).await.expect("get").expect("row");
    assert_eq!(
        row.state,
        State::Running,
        "fence: the new holder's row is untouched"
    );
    assert_eq!(row.lease_owner.as_deref(), Some("w2"));
    assert!(
        store
            .complete(second.lease(), at(60_002), None)
            .await
            .expect("complete")
    );
}

pub(super) async fn heartbeat_extends_the_lease(store: &impl Store) {
    store.insert(&[delivery("a")]).await.expect("insert");
    let c = store
        .claim(req("w1", at(0), 1))
        .await
        .expect("claim")
        .remove(0);
    assert!(
        store
            .heartbeat(c.lease(), at(120_000))
            .await
            .expect("heartbeat")
    );
    let none = store.claim(req("w2", at(90_000), 1)).await.expect("claim");
    assert!(none.is_empty(), "heartbeat: the extended lease holds");
    let taken = store.claim(req("w2", at(120_000), 1)).await.expect("claim");
    assert_eq!(taken.len(), 1, "heartbeat: expires at the new time");
}

pub(super) async fn failure_schedules_or_buries(store: &impl Store) {
    store
        .insert(&[delivery("a"), delivery("b")])
        .await
        .expect("insert");
    let claims = store.claim(req("w1", at(0), 2)).await.expect("claim");
    let (a, b) = (&claims[0], &claims[1]);
    assert!(
        store
            .fail(failed(
                a.lease(),
                at(1),
                Next::RetryAt(at(5_000)),
                "client_503"
            ))
            .await
            .expect("fail")
    );
    let row = store.get(a.record.id).await.expect("get").expect("row");
    assert_eq!(row.state, State::Pending);
    assert_eq!(row.run_after, at(5_000));
    assert_eq!(row.last_error.as_deref(), Some("client_503"));
    assert_eq!(row.lease_owner, None);
    assert!(
        store
            .claim(req("w1", at(4_999), 5))
            .await
            .expect("claim")
            .is_empty(),
        "fail: not due before run_after"
    );
    let again = store.claim(req("w1", at(5_000), 5)).await.expect("claim");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].record.attempts, 2);
    assert!(
        store
            .fail(failed(b.lease(), at(1), Next::Dead, "payload_invalid"))
            .await
            .expect("fail")
    );
    let dead = store.get(b.record.id).await.expect("get").expect("row");
    assert_eq!(dead.state, State::Dead);
    assert_eq!(dead.last_error.as_deref(), Some("payload_invalid"));
    assert!(
        store
            .claim(req("w1", at(10_000_000), 5))
            .await
            .expect("claim")
            .iter()
            .all(|c| c.record.id != dead.id),
        "fail: dead rows are never claimed"
    );
}

pub(super) async fn release_gives_back_without_counting(store: &impl Store) {
    store.insert(&[delivery("a")]).await.expect("insert");
    let c = store
        .claim(req("w1", at(0), 1))
        .await
        .expect("claim")
        .remove(0);
    assert!(store.release(c.lease(), at(10)).await.expect("release"));
    let row = store.get(c.record.id).await.expect("get").expect("row");
    assert_eq!(row.state, State::Pending);
    assert_eq!(row.attempts, 0, "release: the attempt is not counted");
    assert_eq!(row.run_after, at(10), "release: due at once");
    assert_eq!(
        store
            .claim(req("w2", at(10), 1))
            .await
            .expect("claim")
            .len(),
        1
    );
}

pub(super) async fn a_restarted_owner_takes_its_rows_back(store: &impl Store) {
    store
        .insert(&[delivery("a"), delivery("b"), delivery("c")])
        .await
        .expect("insert");
    let mine = store
        .claim(req("receiver-1", at(0), 2))
        .await
        .expect("claim");
    let theirs = store
        .claim(req("receiver-2", at(0), 1))
        .await
        .expect("claim")
        .remove(0);
    assert_eq!(
        store
            .release_owner("receiver-1", at(5))
            .await
            .expect("release_owner"),
        2
    );
    for c in &mine {
        let row = store.get(c.record.id).await.expect("get").expect("row");
        assert_eq!(
            (row.state, row.run_after, row.attempts),
            (State::Pending, at(5), 1),
            "release_owner: due now, attempt counted"
        );
        assert!(row.fence > c.record.fence, "release_owner: a new token");
        assert!(
            !store
                .complete(c.lease(), at(6), None)
                .await
                .expect("complete"),
            "release_owner: the old claim is fenced out"
        );
    }
    let other = store
        .get(theirs.record.id)
        .await
        .expect("get")
        .expect("row");
    assert_eq!(
        other.state,
        State::Running,
        "release_owner: another owner's row is untouched"
    );
    assert_eq!(
        store
            .claim(req("receiver-1", at(5), 5))
            .await
            .expect("claim")
            .len(),
        2
    );
}

/// The maintenance lease has one holder at a time: renewed by its holder, refused to another
/// until it expires, then taken over (and the old holder refused).
pub(super) async fn one_worker_holds_the_maintenance_lease(store: &impl Store) {
    let lead = |owner, now, until| crate::records::ChoreLease {
        task: "maintenance",
        owner,
        now: at(now),
        until: at(until),
    };
    let ask = |l| async move { store.lead(l).await.expect("lead") };
    assert!(ask(lead("a", 0, 100)).await, "free: a takes it");
    assert!(!ask(lead("b", 10, 110)).await, "held by a");
    assert!(ask(lead("a", 50, 150)).await, "a renews");
    assert!(!ask(lead("b", 120, 220)).await, "renewed until 150");
    assert!(ask(lead("b", 150, 250)).await, "expired: b takes over");
    assert!(!ask(lead("a", 160, 260)).await, "a lost it");
}
