//! The read model's checks: counts (and that they follow every change), lists, purge, the
//! retrying rows behind a backlog, the health probe.

use super::*;

pub(super) async fn counts_list_and_purge(store: &impl Store) {
    let mut late = delivery("late");
    late.received_at = at(500);
    store
        .insert(&[delivery("a"), delivery("b"), delivery("c"), late])
        .await
        .expect("insert");
    let claims = store.claim(req("w1", at(1_000), 2)).await.expect("claim");
    assert!(
        store
            .complete(claims[0].lease(), at(1_000), None)
            .await
            .expect("complete")
    );
    assert!(
        store
            .fail(failed(claims[1].lease(), at(1_000), Next::Dead, "x"))
            .await
            .expect("fail")
    );
    let counts = store.counts().await.expect("counts");
    assert_eq!(
        (counts.pending, counts.running, counts.done, counts.dead),
        (2, 0, 1, 1),
        "counts: by state"
    );
    assert_eq!(
        counts.oldest_unfinished_received_at,
        Some(at(0)),
        "counts: oldest pending"
    );
    let pending = store.list(Some(State::Pending), 10).await.expect("list");
    assert_eq!(pending.len(), 2);
    assert!(pending[0].id > pending[1].id, "list: newest first");
    assert_eq!(
        store.list(None, 3).await.expect("list").len(),
        3,
        "list: limit"
    );
    assert_eq!(
        store.purge(at(1_000)).await.expect("purge"),
        0,
        "purge: only rows completed before"
    );
    assert_eq!(
        store.purge(at(1_001)).await.expect("purge"),
        1,
        "purge: the done row"
    );
    let counts = store.counts().await.expect("counts");
    assert_eq!(
        (counts.done, counts.dead, counts.pending),
        (0, 1, 2),
        "purge: dead and pending rows stay"
    );
}

/// The counts by state as the rows say they are (what the kept counts must equal).
pub(super) async fn true_counts(store: &impl Store) -> (u64, u64, u64, u64) {
    let rows = store.list(None, 100_000).await.expect("list");
    let n = |state: State| rows.iter().filter(|r| r.state == state).count() as u64;
    (
        n(State::Pending),
        n(State::Running),
        n(State::Done),
        n(State::Dead),
    )
}

pub(super) async fn assert_counts(store: &impl Store, step: &str) {
    let c = store.counts().await.expect("counts");
    assert_eq!(
        (c.pending, c.running, c.done, c.dead),
        true_counts(store).await,
        "counts_follow_every_change: after {step}"
    );
}

/// The counts a store keeps (O(1) to read) equal the rows' states after every kind of change:
/// inserts with duplicates, claims, heartbeats, completions, failures, releases, takeovers,
/// retries and purges.
pub(super) async fn counts_follow_every_change(store: &impl Store) {
    assert_counts(store, "nothing").await;
    let batch: Vec<_> = (0..20).map(|i| delivery(&format!("c-{i}"))).collect();
    store.insert(&batch).await.expect("insert");
    store.insert(&batch[..5]).await.expect("insert duplicates");
    assert_counts(store, "inserts and duplicates").await;
    let claims = store.claim(req("w1", at(1_000), 8)).await.expect("claim");
    assert_counts(store, "a claim").await;
    assert!(
        store
            .heartbeat(claims[0].lease(), at(2_000))
            .await
            .expect("heartbeat")
    );
    assert!(
        store
            .complete(claims[0].lease(), at(2_000), None)
            .await
            .expect("complete")
    );
    assert!(
        store
            .complete(claims[1].lease(), at(2_000), None)
            .await
            .expect("complete")
    );
    assert!(
        store
            .fail(failed(claims[2].lease(), at(2_000), Next::Dead, "x"))
            .await
            .expect("fail")
    );
    assert!(
        store
            .fail(failed(
                claims[3].lease(),
                at(2_000),
                Next::RetryAt(at(3_000)),
                "y"
            ))
            .await
            .expect("fail")
    );
    assert!(
        store
            .release(claims[4].lease(), at(2_000))
            .await
            .expect("release")
    );
    assert_counts(store, "completions, failures and a release").await;
    assert_eq!(
        store
            .release_owner("w1", at(2_000))
            .await
            .expect("release owner"),
        3
    );
    assert_counts(store, "an owner's release").await;
    // Leases that expired, taken over by another claim (running → running: no change).
    let again = store.claim(req("w2", at(3_000), 100)).await.expect("claim");
    let over = store
        .claim(req(
            "w3",
            at(3_000 + suki_ambient_core::time::millis(LEASE) + 1),
            4,
        ))
        .await
        .expect("claim");
    assert!(!again.is_empty() && !over.is_empty());
    assert_counts(store, "a takeover of expired leases").await;
    assert_eq!(
        retry(store, Selection::Dead, at(4_000))
            .await
            .expect("retry"),
        1
    );
    assert_counts(store, "a retry of the dead").await;
    assert_eq!(store.purge(at(5_000)).await.expect("purge"), 2);
    assert_counts(store, "a purge").await;
}

/// The retrying rows are listed however many new rows are pending in front of them (the
/// console's "stuck" list), latest change first; new and finished rows are not.
pub(super) async fn retrying_rows_behind_any_backlog(store: &impl Store) {
    store
        .insert(&[delivery("r-1"), delivery("r-2"), delivery("r-3")])
        .await
        .expect("insert");
    let claims = store.claim(req("w1", at(1_000), 3)).await.expect("claim");
    assert!(
        store
            .fail(failed(
                claims[0].lease(),
                at(1_000),
                Next::RetryAt(at(9_000_000)),
                "first"
            ))
            .await
            .expect("fail")
    );
    assert!(
        store
            .fail(failed(
                claims[1].lease(),
                at(2_000),
                Next::RetryAt(at(9_000_000)),
                "second"
            ))
            .await
            .expect("fail")
    );
    assert!(
        store
            .complete(claims[2].lease(), at(2_000), None)
            .await
            .expect("complete")
    );
    // 300 new rows, all pending and due before the retrying ones.
    let backlog: Vec<_> = (0..300).map(|i| delivery(&format!("new-{i}"))).collect();
    store.insert(&backlog).await.expect("insert");
    let running = store.claim(req("w2", at(3_000), 1)).await.expect("claim");
    let retrying = store.retrying(10).await.expect("retrying");
    let keys: Vec<&str> = retrying.iter().map(|r| r.dedup_key.as_str()).collect();
    assert_eq!(
        keys,
        [running[0].record.dedup_key.as_str(), "r-2", "r-1"],
        "retrying_rows_behind_any_backlog: the running row and the two failures, latest first"
    );
    assert_eq!(retrying[1].last_error.as_deref(), Some("second"));
    assert_eq!(store.retrying(1).await.expect("retrying").len(), 1, "limit");
}

/// Sessions that ended without a note are listed by kind, newest first, and counted since a
/// time; a completed session is not among them, and asking for completed ones is refused.
pub(super) async fn sessions_without_a_note_are_listed_and_counted(store: &impl Store) {
    let mut rows = Vec::new();
    for (key, kind, received) in [
        ("f-1", EventKind::Failed, 1_000),
        ("c-1", EventKind::Cancelled, 2_000),
        ("f-2", EventKind::Failed, 3_000),
        ("t-1", EventKind::TimedOut, 4_000),
        ("ok-1", EventKind::Completed, 5_000),
    ] {
        let mut row = delivery(key);
        row.kind = kind;
        row.received_at = at(received);
        rows.push(row);
    }
    store.insert(&rows).await.expect("insert");
    let failed = store
        .without_note(EventKind::Failed, 10)
        .await
        .expect("without note");
    let keys: Vec<&str> = failed.iter().map(|r| r.dedup_key.as_str()).collect();
    assert_eq!(
        keys,
        ["f-2", "f-1"],
        "without_note: failed ones, newest first"
    );
    assert_eq!(
        store
            .without_note(EventKind::TimedOut, 10)
            .await
            .expect("timed out")
            .len(),
        1
    );
    assert_eq!(
        store
            .without_note(EventKind::Failed, 1)
            .await
            .expect("limit")
            .len(),
        1
    );
    assert!(matches!(
        store.without_note(EventKind::Completed, 10).await,
        Err(crate::StoreError::Refused(_))
    ));
    assert_eq!(store.count_without_note(at(0)).await.expect("count"), 4);
    assert_eq!(store.count_without_note(at(2_000)).await.expect("count"), 3);
    assert_eq!(store.count_without_note(at(9_000)).await.expect("count"), 0);
}

/// The health probe writes and succeeds on a healthy store, again and again.
pub(super) async fn the_probe_writes(store: &impl Store) {
    store.probe(at(1)).await.expect("the_probe_writes: first");
    store.probe(at(2)).await.expect("the_probe_writes: again");
}
