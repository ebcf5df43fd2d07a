//! The operators' checks: actions with their audit entries, the audit chain and its purge,
//! replay, discard, pauses and retrying dead rows.

use super::*;

pub(super) async fn operators_act_with_an_audit_entry(store: &impl Store) {
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
        crate::records::DeadFilter::new().code_prefix("fetch_contents_"),
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
        crate::records::DeadFilter::new()
            .code("handler_failed")
            .since(at(0)),
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
            ("view_timeline", 0, "tester", "conformance"),
            ("retry", 1, "tester", "conformance"),
            ("retry", 2, "tester", "conformance"),
        ],
        "{step}: every action in the audit log, newest first"
    );
    assert_eq!(audit[0].target.as_deref(), Some("session-d1"));
    assert_eq!(
        store.audit(at(0), 2).await.expect("audit")[0].action,
        "view_timeline",
        "{step}: a limit keeps the newest"
    );
    let changes: Vec<_> = store
        .audit_changes(at(0), 2)
        .await
        .expect("changes")
        .into_iter()
        .map(|e| (e.action, e.rows))
        .collect();
    assert_eq!(
        changes,
        [("retry".to_owned(), 1), ("retry".to_owned(), 2)],
        "{step}: what changed, newest first, views left out"
    );
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
    // The suite's clock is in 2023: a floor of 0 days lets its purges through the store's own
    // check of the floor (six years when none is recorded).
    act(store, crate::Action::AuditFloor { days: 0 }, at(35))
        .await
        .expect("floor");
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
    assert_eq!(
        left,
        ["purge_audit", "audit_floor", "purge", "view_timeline"],
        "newest first"
    );
}

pub(super) async fn the_audit_log_is_a_chain_purged_only_from_its_start(store: &impl Store) {
    let step = "the_audit_log_is_a_chain_purged_only_from_its_start";
    let verified = |label: &'static str| async move {
        let report = crate::audit::verify_chain(store, &crate::audit::AuditKeys::default(), None)
            .await
            .expect("verify");
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
            crate::records::audit_hash(&entry.prev_hash, entry),
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
    act(store, crate::Action::AuditFloor { days: 0 }, at(25))
        .await
        .expect("floor");
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
        report.entries, 5,
        "{step}: three kept, the floor's entry and the purge's own"
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
        6,
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

pub(super) async fn replay_and_discard(store: &impl Store) {
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

pub(super) async fn pauses_hold_back_claims(store: &impl Store) {
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

pub(super) async fn retry_dead_rows(store: &impl Store) {
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

pub(super) async fn a_keyed_chain_and_the_floor_hold_in_the_store(store: &impl Store) {
    let step = "a_keyed_chain_and_the_floor_hold_in_the_store";
    let key = crate::AuditKey::new([7; 32]);
    let keyed = |action: crate::Action, now: UnixMillis| {
        let key = &key;
        async move {
            store
                .act(crate::records::Act {
                    action: &action,
                    actor: &crate::Actor::new("tester", "conformance"),
                    now,
                    audit_key: Some(key),
                })
                .await
        }
    };
    act(
        store,
        crate::Action::ViewTimeline {
            target: "plain".into(),
        },
        at(1),
    )
    .await
    .expect("a plain entry");
    keyed(
        crate::Action::ViewTimeline {
            target: "keyed".into(),
        },
        at(2),
    )
    .await
    .expect("a keyed entry");
    let chain = store.audit_chain(0, 10).await.expect("chain");
    assert_eq!(chain.len(), 2, "{step}");
    assert_eq!(
        chain[1].hash,
        key.mac(&chain[0].hash, &chain[1]),
        "{step}: the entry's hash is its MAC under the act's key, chained to the one before"
    );
    // A writer without the key cannot continue the keyed chain with a plain hash.
    let refused = act(
        store,
        crate::Action::ViewTimeline { target: "x".into() },
        at(3),
    )
    .await;
    assert!(
        matches!(refused, Err(crate::StoreError::Refused(_))),
        "{step}: a keyless append to a keyed chain is refused: {refused:?}"
    );
    assert_eq!(
        store.audit_chain(0, 10).await.expect("chain").len(),
        2,
        "{step}"
    );
    let keys = crate::audit::AuditKeys {
        explicit: Some(std::sync::Arc::new(crate::AuditKey::new([7; 32]))),
        body: None,
    };
    let report = crate::audit::verify_chain(store, &keys, None)
        .await
        .expect("verify");
    assert_eq!(report.broken, None, "{step}: {report:?}");
    assert_eq!((report.keyed, report.unkeyed), (1, 1), "{step}");

    // The floor, recorded, is enforced by the store itself: a purge within it is refused even
    // when it comes straight to the store (not through `Inbox::act`'s own check).
    let now = UnixMillis::now();
    keyed(crate::Action::AuditFloor { days: 30 }, now)
        .await
        .expect("floor");
    let within = crate::Action::PurgeAudit {
        before: now.saturating_sub(std::time::Duration::from_secs(86_400)),
    };
    let refused = keyed(within, now).await;
    assert!(
        refused.is_err(),
        "{step}: a purge within the recorded floor is refused by the store: {refused:?}"
    );
    assert_eq!(
        store.audit_chain(0, 10).await.expect("chain").len(),
        3,
        "{step}"
    );
}
