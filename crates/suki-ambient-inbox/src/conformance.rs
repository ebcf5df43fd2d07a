//! The store conformance suite: every [`Store`] must pass it. The built-in stores run it in
//! their tests (SQLite in every `cargo test`, Postgres in CI); a store for another engine can
//! run it the same way:
//!
//! ```no_run
//! # async fn test() {
//! suki_ambient_inbox::conformance::run(|| async {
//!     suki_ambient_inbox::SqliteStore::connect("sqlite::memory:").await.unwrap()
//! })
//! .await;
//! # }
//! ```
//!
//! Each check gets a fresh, empty store from `fresh`. A failed check panics with its name.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use suki_ambient_core::{EventKind, Stored, UnixMillis};

use suki_ambient_core::{EncounterId, SessionId};

use crate::expect::{CheckOutcome, ExpectedSession, Resolution, SessionKind};
use crate::{
    Claim, ClaimRequest, FailedAttempt, Lease, NewDelivery, NewExpectation, Next, Selection,
    Source, State, Store,
};

/// A fixed start time for the checks (ms).
const T0: u64 = 1_700_000_000_000;
const LEASE: Duration = Duration::from_secs(60);

fn at(ms: u64) -> UnixMillis {
    UnixMillis(T0 + ms)
}

/// A delivery with `key`, received at `T0`.
pub fn delivery(key: &str) -> NewDelivery {
    NewDelivery {
        dedup_key: key.to_owned(),
        source: Source::Webhook,
        kind: EventKind::Completed,
        session_id: Some(SessionId::new(format!("session-{key}"))),
        encounter_id: Some(EncounterId::from("encounter")),
        generated_at: at(0),
        received_at: at(0),
        body: Bytes::from(format!(
            r#"{{"status":"success","session_id":"session-{key}","encounter_id":"encounter"}}"#
        )),
        key_id: None,
    }
}

/// Runs every check, each on a store from `fresh`.
pub async fn run<S, F, Fut>(fresh: F)
where
    S: Store,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    insert_and_dedupe(&fresh().await).await;
    claim_takes_due_rows_once(&fresh().await).await;
    expired_lease_is_reclaimed_and_fenced(&fresh().await).await;
    heartbeat_extends_the_lease(&fresh().await).await;
    failure_schedules_or_buries(&fresh().await).await;
    release_gives_back_without_counting(&fresh().await).await;
    retry_dead_rows(&fresh().await).await;
    hourly_counts_and_resolutions(&fresh().await).await;
    a_restarted_owner_takes_its_rows_back(&fresh().await).await;
    expectations_are_resolved_by_stored_events(&fresh().await).await;
    expectation_checks_are_leased_and_fenced(&fresh().await).await;
    counts_list_and_purge(&fresh().await).await;
    counts_follow_every_change(&fresh().await).await;
    retrying_rows_behind_any_backlog(&fresh().await).await;
    the_probe_writes(&fresh().await).await;
    one_worker_holds_the_maintenance_lease(&fresh().await).await;
    a_pass_records_its_checks_at_once(&fresh().await).await;
    each_attempt_is_in_the_timeline(&fresh().await).await;
    a_snooze_spends_no_attempt(&fresh().await).await;
    operators_act_with_an_audit_entry(&fresh().await).await;
    the_audit_log_is_a_chain_purged_only_from_its_start(&fresh().await).await;
    replay_and_discard(&fresh().await).await;
    pauses_hold_back_claims(&fresh().await).await;
    bodies_are_erased_after_their_retention(&fresh().await).await;
    bodies_are_sealed_as_they_are_written(&fresh().await).await;
    what_an_attempt_fetched_is_kept_until_done(&fresh().await).await;
    concurrent_claims_never_overlap(Arc::new(fresh().await), 8, 200).await;
}

/// The events of row `id` in a trace of `target`, as (event, attempt, code, detail, actor).
async fn timeline(
    store: &impl Store,
    target: &str,
    id: i64,
) -> Vec<(
    String,
    Option<u32>,
    Option<String>,
    Option<String>,
    Option<String>,
)> {
    store
        .trace(target, 100)
        .await
        .expect("trace")
        .events
        .into_iter()
        .filter(|e| e.delivery_id == id)
        .map(|e| (e.event, e.attempt, e.code, e.detail, e.actor))
        .collect()
}

async fn each_attempt_is_in_the_timeline(store: &impl Store) {
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

async fn a_snooze_spends_no_attempt(store: &impl Store) {
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

async fn operators_act_with_an_audit_entry(store: &impl Store) {
    let step = "operators_act_with_an_audit_entry";
    store
        .insert(&[delivery("d1"), delivery("d2"), delivery("d3")])
        .await
        .expect("insert");
    let claims = store.claim(req("w", at(1), 3)).await.expect("claim");
    for (c, code) in claims.iter().zip([
        "fetch_contents_401_invalid",
        "fetch_contents_404",
        "handler_failed",
    ]) {
        store
            .fail(failed(
                c.lease(),
                at(2 + c.record.id as u64),
                Next::Dead,
                code,
            ))
            .await
            .expect("fail");
    }
    let groups = store.dead_groups(10).await.expect("groups");
    assert_eq!(groups.len(), 3, "{step}: one group per code");
    assert!(groups.iter().all(|g| g.count == 1));
    let by_prefix = crate::Action::Retry(Selection::DeadMatching(
        crate::DeadFilter::new().code_prefix("fetch_contents_"),
    ));
    assert_eq!(
        store.preview(&by_prefix, at(10)).await.expect("preview"),
        2,
        "{step}: a dry run counts"
    );
    assert_eq!(
        store.audit(at(0), 100).await.expect("audit").len(),
        0,
        "{step}: a dry run records nothing"
    );
    assert_eq!(
        act(store, by_prefix, at(10)).await.expect("retry"),
        2,
        "{step}: by prefix"
    );
    let exact = crate::Action::Retry(Selection::DeadMatching(
        crate::DeadFilter::new().code("handler_failed").since(at(0)),
    ));
    assert_eq!(
        act(store, exact, at(11)).await.expect("retry"),
        1,
        "{step}: by code"
    );
    assert_eq!(store.counts().await.expect("counts").dead, 0);
    let retried = timeline(store, "session-d1", claims[0].record.id).await;
    assert_eq!(
        retried.last(),
        Some(&(
            "retried".to_owned(),
            None,
            None,
            None,
            Some("tester".to_owned())
        )),
        "{step}: the operator's action is in the row's timeline"
    );
    act(
        store,
        crate::Action::ViewTimeline {
            target: "session-d1".into(),
        },
        at(12),
    )
    .await
    .expect("view");
    let audit = store.audit(at(0), 100).await.expect("audit");
    let summary: Vec<_> = audit
        .iter()
        .map(|e| {
            (
                e.action.as_str(),
                e.rows,
                e.actor.as_str(),
                e.origin.as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("retry", 2, "tester", "conformance"),
            ("retry", 1, "tester", "conformance"),
            ("view_timeline", 0, "tester", "conformance"),
        ],
        "{step}: every action in the audit log"
    );
    assert_eq!(audit[2].target.as_deref(), Some("session-d1"));
    assert_eq!(
        store.audit(at(12), 100).await.expect("audit").len(),
        1,
        "{step}: since"
    );
    // The audit log outlives the rows it names; its own retention is explicit.
    let done = store.claim(req("w", at(20), 3)).await.expect("claim");
    for c in &done {
        store
            .complete(c.lease(), at(21), None)
            .await
            .expect("complete");
    }
    assert_eq!(
        act(store, crate::Action::Purge { before: at(22) }, at(30))
            .await
            .expect("purge"),
        3
    );
    assert!(
        store
            .trace("session-d1", 100)
            .await
            .expect("trace")
            .is_empty(),
        "{step}: a purged row's timeline goes with it"
    );
    assert_eq!(store.audit(at(0), 100).await.expect("audit").len(), 4);
    assert_eq!(
        act(store, crate::Action::PurgeAudit { before: at(12) }, at(40))
            .await
            .expect("purge audit"),
        2,
        "{step}: the audit log's own retention"
    );
    let left: Vec<_> = store
        .audit(at(0), 100)
        .await
        .expect("audit")
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(left, ["view_timeline", "purge", "purge_audit"]);
}

async fn the_audit_log_is_a_chain_purged_only_from_its_start(store: &impl Store) {
    let step = "the_audit_log_is_a_chain_purged_only_from_its_start";
    let verified = |label: &'static str| async move {
        let report = crate::operate::verify_chain(store).await.expect("verify");
        assert_eq!(report.broken, None, "{step}: {label}: {report:?}");
        report
    };
    assert_eq!(verified("empty").await.entries, 0);
    for (i, time) in [10, 11, 12, 20, 21].into_iter().enumerate() {
        let target = format!("s-{i}");
        act(store, crate::Action::ViewTimeline { target }, at(time))
            .await
            .expect("view");
    }
    let chain = store.audit_chain(0, 100).await.expect("chain");
    assert_eq!(chain.len(), 5, "{step}");
    assert_eq!(
        chain[0].prev_hash, "",
        "{step}: the first entry chains to nothing"
    );
    for pair in chain.windows(2) {
        assert_eq!(
            pair[1].prev_hash, pair[0].hash,
            "{step}: each chains to the one before"
        );
    }
    for entry in &chain {
        assert_eq!(
            entry.hash,
            crate::audit_hash(&entry.prev_hash, entry),
            "{step}"
        );
    }
    assert_eq!(
        store
            .last_audit("view_timeline")
            .await
            .expect("last")
            .map(|e| e.id),
        Some(chain[4].id),
        "{step}: the newest entry of an action"
    );
    assert_eq!(
        store.last_audit("rekey").await.expect("last"),
        None,
        "{step}"
    );
    let report = verified("five entries").await;
    assert_eq!(report.entries, 5);
    assert_eq!(report.newest, Some((chain[4].id, chain[4].hash.clone())));
    assert_eq!(store.audit_anchor().await.expect("anchor"), None, "{step}");

    // A purge deletes from the start, up to the first entry within retention, and leaves the
    // hash of the last one it deleted as the anchor the first remaining entry chains to.
    let purge = crate::Action::PurgeAudit { before: at(12) };
    assert_eq!(
        store.preview(&purge, at(30)).await.expect("preview"),
        2,
        "{step}"
    );
    assert_eq!(act(store, purge, at(30)).await.expect("purge"), 2, "{step}");
    assert_eq!(
        store.audit_anchor().await.expect("anchor"),
        Some(chain[1].hash.clone()),
        "{step}: the anchor is the last purged entry's hash"
    );
    let report = verified("after a purge").await;
    assert_eq!(
        report.entries, 4,
        "{step}: three kept and the purge's own entry"
    );
    // Nothing more to purge: no new anchor, the purge still recorded.
    let purge = crate::Action::PurgeAudit { before: at(12) };
    assert_eq!(act(store, purge, at(31)).await.expect("purge"), 0, "{step}");
    assert_eq!(
        store.audit_anchor().await.expect("anchor"),
        Some(chain[1].hash.clone()),
        "{step}"
    );
    // Everything purged: the next entry chains to the anchor.
    let purge = crate::Action::PurgeAudit { before: at(1_000) };
    assert_eq!(
        act(store, purge, at(1_000)).await.expect("purge"),
        5,
        "{step}"
    );
    let left = store.audit_chain(0, 100).await.expect("chain");
    assert_eq!(left.len(), 1, "{step}: only the purge's own entry");
    assert_eq!(
        Some(left[0].prev_hash.clone()),
        store.audit_anchor().await.expect("anchor"),
        "{step}: it chains to the anchor"
    );
    act(
        store,
        crate::Action::SignIn {
            role: "viewer".into(),
        },
        at(1_001),
    )
    .await
    .expect("sign in");
    assert_eq!(verified("after a whole purge").await.entries, 2);
}

async fn replay_and_discard(store: &impl Store) {
    let step = "replay_and_discard";
    let mut other = delivery("r3");
    other.kind = EventKind::Failed;
    store
        .insert(&[delivery("r1"), delivery("r2"), other, delivery("r4")])
        .await
        .expect("insert");
    let claims = store.claim(req("w", at(1), 4)).await.expect("claim");
    // r1 done long ago; r2 and r3 done lately; r4 dead then discarded.
    complete_each(store, &claims[..3], &[2, 1_000, 1_000]).await;
    store
        .fail(failed(
            claims[3].lease(),
            at(3),
            Next::Dead,
            "handler_failed",
        ))
        .await
        .expect("dead");
    let discard = crate::Action::Discard {
        id: claims[3].record.id,
        reason: "duplicate visit".into(),
    };
    assert_eq!(
        act(store, discard.clone(), at(1_001))
            .await
            .expect("discard"),
        1
    );
    assert_eq!(
        act(store, discard, at(1_002)).await.expect("discard"),
        0,
        "{step}: once"
    );
    let row = store
        .get(claims[3].record.id)
        .await
        .expect("get")
        .expect("row");
    assert_eq!(
        (row.state, row.last_error.as_deref()),
        (State::Done, Some("discarded")),
        "{step}: kept and marked"
    );
    assert_eq!(
        timeline(store, "session-r4", row.id).await.last(),
        Some(&(
            "discarded".to_owned(),
            None,
            None,
            Some("duplicate visit".to_owned()),
            Some("tester".to_owned())
        ))
    );
    let window = |kind| crate::Action::Replay {
        since: at(500),
        kind,
    };
    assert_eq!(
        store
            .preview(&window(None), at(2_000))
            .await
            .expect("preview"),
        2,
        "{step}: the window's finished rows, not the discarded one"
    );
    assert_eq!(
        act(store, window(Some(EventKind::Completed)), at(2_000))
            .await
            .expect("replay"),
        1,
        "{step}: one kind"
    );
    let replayed = store.claim(req("w", at(2_001), 10)).await.expect("claim");
    assert_eq!(replayed.len(), 1);
    assert_eq!(
        (
            replayed[0].record.id,
            replayed[0].record.attempts,
            replayed[0].record.round_attempts()
        ),
        (claims[1].record.id, 2, 1),
        "{step}: due again, its count going on, a new round of attempts"
    );
}

async fn bodies_are_sealed_as_they_are_written(store: &impl Store) {
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

async fn bodies_are_erased_after_their_retention(store: &impl Store) {
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
    let stale: Vec<crate::Resealed> = read_before
        .iter()
        .map(|b| crate::Resealed {
            id: b.id,
            was: b.key_id.clone(),
            key_id: "k2".into(),
            body: b.body.clone(),
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

async fn what_an_attempt_fetched_is_kept_until_done(store: &impl Store) {
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

async fn pauses_hold_back_claims(store: &impl Store) {
    let step = "pauses_hold_back_claims";
    let mut failed_event = delivery("p2");
    failed_event.kind = EventKind::Failed;
    store
        .insert(&[delivery("p1"), failed_event])
        .await
        .expect("insert");
    let pause = |kind| crate::Action::Pause {
        kind,
        reason: Some("EHR down".into()),
    };
    assert_eq!(
        store.preview(&pause(None), at(1)).await.expect("preview"),
        1
    );
    assert_eq!(act(store, pause(None), at(1)).await.expect("pause"), 1);
    assert_eq!(
        act(store, pause(None), at(2)).await.expect("pause"),
        0,
        "{step}: already"
    );
    act(store, pause(Some(EventKind::Completed)), at(3))
        .await
        .expect("pause");
    let pauses = store.pauses().await.expect("pauses");
    assert_eq!(pauses.len(), 2);
    assert!(pauses.iter().any(|p| p.kind.is_none()
        && p.paused_by == "tester"
        && p.reason.as_deref() == Some("EHR down")
        && p.paused_at == at(1)));
    // The claim itself reads the pauses: a worker that has not seen them yet (`paused`
    // empty) claims nothing while the whole inbox is paused.
    let claims = store.claim(req("w", at(5), 10)).await.expect("claim");
    assert!(
        claims.is_empty(),
        "{step}: paused at once, for every worker"
    );
    assert_eq!(
        act(store, crate::Action::Resume { kind: None }, at(6))
            .await
            .expect("resume"),
        1
    );
    assert_eq!(
        act(store, crate::Action::Resume { kind: None }, at(7))
            .await
            .expect("resume"),
        0
    );
    // A paused kind stays, whether or not the worker names it.
    for paused in [&[][..], &[EventKind::Completed][..]] {
        let claims = store
            .claim(ClaimRequest {
                paused,
                ..req("w", at(8), 10)
            })
            .await
            .expect("claim");
        assert!(
            claims.iter().all(|c| c.record.kind == EventKind::Failed),
            "{step}: a paused kind stays"
        );
    }
    assert_eq!(store.pauses().await.expect("pauses").len(), 1);
}

async fn insert_and_dedupe(store: &impl Store) {
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

async fn claim_takes_due_rows_once(store: &impl Store) {
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

async fn expired_lease_is_reclaimed_and_fenced(store: &impl Store) {
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

async fn heartbeat_extends_the_lease(store: &impl Store) {
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

async fn failure_schedules_or_buries(store: &impl Store) {
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

async fn release_gives_back_without_counting(store: &impl Store) {
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

async fn a_restarted_owner_takes_its_rows_back(store: &impl Store) {
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

/// An expected session `key` (its session id is `session-<key>`, as [`delivery`]'s), ended at
/// `T0`.
pub fn expected(key: &str) -> ExpectedSession {
    ExpectedSession::ambient(
        SessionId::new(format!("session-{key}")),
        EncounterId::new("encounter"),
        at(0),
    )
    .provider("provider-1")
}

async fn expectations_are_resolved_by_stored_events(store: &impl Store) {
    assert!(
        store
            .register(NewExpectation {
                expected: &expected("a"),
                first_check: at(300_000),
                now: at(0)
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
                now: at(1)
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

async fn expectation_checks_are_leased_and_fenced(store: &impl Store) {
    for key in ["a", "b", "c"] {
        store
            .register(NewExpectation {
                expected: &expected(key),
                first_check: at(100),
                now: at(0),
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

async fn hourly_counts_and_resolutions(store: &impl Store) {
    for key in ["a", "b"] {
        assert!(
            store
                .register(NewExpectation {
                    expected: &expected(key),
                    first_check: at(0),
                    now: at(0)
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

async fn retry_dead_rows(store: &impl Store) {
    store
        .insert(&[delivery("a"), delivery("b"), delivery("c")])
        .await
        .expect("insert");
    for c in store.claim(req("w1", at(0), 3)).await.expect("claim") {
        assert!(
            store
                .fail(failed(c.lease(), at(1), Next::Dead, "handler_failed"))
                .await
                .expect("fail")
        );
    }
    let a = store
        .list(Some(State::Dead), 10)
        .await
        .expect("list")
        .into_iter()
        .find(|r| r.dedup_key == "a")
        .expect("a");
    assert_eq!(
        retry(store, Selection::Id(a.id), at(2))
            .await
            .expect("retry"),
        1
    );
    let row = store.get(a.id).await.expect("get").expect("row");
    assert_eq!(
        (
            row.state,
            row.attempts,
            row.round_start,
            row.run_after,
            row.last_error.as_deref()
        ),
        (State::Pending, 1, 1, at(2), Some("handler_failed")),
        "retry: one row, its attempt count and last error kept, a new round begun"
    );
    assert_eq!(
        retry(store, Selection::Dead, at(3)).await.expect("retry"),
        2,
        "retry: every dead row"
    );
    assert_eq!(store.counts().await.expect("counts").pending, 3);
    let c = store
        .claim(req("w1", at(3), 1))
        .await
        .expect("claim")
        .remove(0);
    assert_eq!(
        retry(store, Selection::Id(c.record.id), at(4))
            .await
            .expect("retry"),
        0,
        "retry: a running row is left alone"
    );
}

async fn counts_list_and_purge(store: &impl Store) {
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
async fn true_counts(store: &impl Store) -> (u64, u64, u64, u64) {
    let rows = store.list(None, 100_000).await.expect("list");
    let n = |state: State| rows.iter().filter(|r| r.state == state).count() as u64;
    (
        n(State::Pending),
        n(State::Running),
        n(State::Done),
        n(State::Dead),
    )
}

async fn assert_counts(store: &impl Store, step: &str) {
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
async fn counts_follow_every_change(store: &impl Store) {
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
        .claim(req("w3", at(3_000 + LEASE.as_millis() as u64 + 1), 4))
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
async fn retrying_rows_behind_any_backlog(store: &impl Store) {
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

/// The health probe writes and succeeds on a healthy store, again and again.
async fn the_probe_writes(store: &impl Store) {
    store.probe(at(1)).await.expect("the_probe_writes: first");
    store.probe(at(2)).await.expect("the_probe_writes: again");
}

/// A pass's checks are recorded together; a check whose lease was taken over changes nothing,
/// and the others of the pass are recorded all the same.
async fn a_pass_records_its_checks_at_once(store: &impl Store) {
    for key in ["p1", "p2", "p3"] {
        store
            .register(NewExpectation {
                expected: &expected(key),
                first_check: at(100),
                now: at(0),
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
        crate::FinishedCheck {
            lease: claims[0].lease(),
            outcome: again.clone(),
        },
        crate::FinishedCheck {
            lease: stale,
            outcome: again.clone(),
        },
        crate::FinishedCheck {
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

/// A claim of up to `limit` for `owner` at `now`, under the suite's lease.
fn req(owner: &str, now: UnixMillis, limit: u32) -> ClaimRequest<'_> {
    ClaimRequest {
        owner,
        now,
        lease: LEASE,
        limit,
        paused: &[],
    }
}

/// Retries `which` as an operator.
async fn retry(
    store: &impl Store,
    which: Selection,
    now: UnixMillis,
) -> Result<u64, crate::StoreError> {
    act(store, crate::Action::Retry(which), now).await
}

/// Does `action` as the suite's operator.
async fn act(
    store: &impl Store,
    action: crate::Action,
    now: UnixMillis,
) -> Result<u64, crate::StoreError> {
    store
        .act(crate::Act {
            action: &action,
            actor: &crate::Actor::new("tester", "conformance"),
            now,
        })
        .await
}

/// Completes each of `claims` at its time in `times` (ms), asserting that each still held its
/// lease.
async fn complete_each(store: &impl Store, claims: &[Claim], times: &[u64]) {
    for (claim, ms) in claims.iter().zip(times) {
        assert!(
            store
                .complete(claim.lease(), at(*ms), None)
                .await
                .expect("complete"),
            "claim {} completes",
            claim.record.id
        );
    }
}

/// A failed attempt.
fn failed(lease: Lease, now: UnixMillis, next: Next, error: &str) -> FailedAttempt<'_> {
    FailedAttempt {
        lease,
        now,
        next,
        error,
        detail: None,
    }
}

/// Records one check through [`Expectations::finish_checks`](crate::Expectations::finish_checks).
async fn finish(
    store: &impl Store,
    lease: crate::ExpectationLease,
    now: UnixMillis,
    outcome: &CheckOutcome,
) -> bool {
    let done = store
        .finish_checks(
            now,
            &[crate::FinishedCheck {
                lease,
                outcome: outcome.clone(),
            }],
        )
        .await
        .expect("finish");
    assert_eq!(done.len(), 1);
    done[0]
}

/// The maintenance lease has one holder at a time: renewed by its holder, refused to another
/// until it expires, then taken over (and the old holder refused).
async fn one_worker_holds_the_maintenance_lease(store: &impl Store) {
    let lead = |owner, now, until| crate::Lead {
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

/// `workers` tasks claiming one row at a time from `rows` rows: each row is claimed once.
pub async fn concurrent_claims_never_overlap<S: Store>(store: Arc<S>, workers: usize, rows: usize) {
    let batch: Vec<_> = (0..rows).map(|i| delivery(&format!("row-{i}"))).collect();
    store.insert(&batch).await.expect("insert");
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..workers {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            let mut mine = Vec::new();
            loop {
                let claims = store
                    .claim(req(&format!("w{w}"), at(0), 1))
                    .await
                    .expect("claim");
                let Some(c) = claims.into_iter().next() else {
                    break;
                };
                mine.push(c.record.id);
                assert!(
                    store
                        .complete(c.lease(), at(1), None)
                        .await
                        .expect("complete")
                );
            }
            mine
        });
    }
    let mut seen = HashSet::new();
    let mut total = 0;
    while let Some(mine) = tasks.join_next().await {
        for id in mine.expect("worker task") {
            total += 1;
            assert!(
                seen.insert(id),
                "concurrent claims: row {id} was claimed twice"
            );
        }
    }
    assert_eq!(total, rows, "concurrent claims: every row claimed once");
    assert_eq!(store.counts().await.expect("counts").done, rows as u64);
}
