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
    Selection, State, records::Claim, records::ClaimRequest, records::FailedAttempt,
    records::Lease, records::NewDelivery, records::NewExpectation, records::Next, records::Source,
    seam::Store,
};

mod destinations;
mod expectations;
mod operations;
mod queue;
mod read;

use expectations::*;
use operations::*;
use queue::*;
use read::*;

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
    sessions_without_a_note_are_listed_and_counted(&fresh().await).await;
    the_probe_writes(&fresh().await).await;
    one_worker_holds_the_maintenance_lease(&fresh().await).await;
    a_pass_records_its_checks_at_once(&fresh().await).await;
    each_attempt_is_in_the_timeline(&fresh().await).await;
    a_snooze_spends_no_attempt(&fresh().await).await;
    operators_act_with_an_audit_entry(&fresh().await).await;
    the_audit_log_is_a_chain_purged_only_from_its_start(&fresh().await).await;
    a_keyed_chain_and_the_floor_hold_in_the_store(&fresh().await).await;
    replay_and_discard(&fresh().await).await;
    pauses_hold_back_claims(&fresh().await).await;
    bodies_are_erased_after_their_retention(&fresh().await).await;
    bodies_are_sealed_as_they_are_written(&fresh().await).await;
    what_an_attempt_fetched_is_kept_until_done(&fresh().await).await;
    destinations::a_wait_spends_no_attempt_and_names_its_destination(&fresh().await).await;
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
        .act(crate::records::Act {
            action: &action,
            actor: &crate::Actor::new("tester", "conformance"),
            now,
            audit_key: None,
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
        waiting_for: None,
    }
}

/// Records one check through [`Expectations::finish_checks`](crate::store::Expectations::finish_checks).
async fn finish(
    store: &impl Store,
    lease: crate::expect::ExpectationLease,
    now: UnixMillis,
    outcome: &CheckOutcome,
) -> bool {
    let done = store
        .finish_checks(
            now,
            &[crate::expect::FinishedCheck {
                lease,
                outcome: outcome.clone(),
            }],
        )
        .await
        .expect("finish");
    assert_eq!(done.len(), 1);
    done[0]
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
