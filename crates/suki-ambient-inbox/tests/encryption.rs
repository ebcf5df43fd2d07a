//! Bodies sealed at rest: a marker inside `additional_info` of a delivery stored with a key
//! appears nowhere in the SQLite files (database and WAL) or a Postgres dump, and the row is
//! processed with it; a row whose key is missing fails visibly and is processed once the key is
//! back; rotation keeps old rows readable.
#![cfg(any(feature = "sqlite", feature = "postgres"))]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use suki_ambient_core::{
    Bytes, HandlerError, SignedHeaders, UnixMillis, Verifier, WebhookEndpoint, WebhookEvent,
    WebhookSecret,
};
use suki_ambient_inbox::{BodyKey, Inbox, InboxMeta, InboxWorker, Keys, State};

const SECRET: &str = "encryption-test-secret";

fn key(byte: u8) -> BodyKey {
    BodyKey::new([byte; 32])
}

/// Suki's documented completed event, as another session whose `additional_info` carries
/// `marker` (what a partner's EHR references would be).
fn event(session: u32, marker: &str) -> Vec<u8> {
    let mut event: serde_json::Value = serde_json::from_str(include_str!(
        "../../../testdata/fixtures/webhooks/success.json"
    ))
    .expect("fixture");
    event["session_id"] = format!("a953839a-ddcd-407d-b9b0-{session:012x}").into();
    event["additional_info"]["patient_ref"] = marker.into();
    event.to_string().into_bytes()
}

/// Posts `body` to the endpoint, as Suki's delivery would be; the answer's status.
async fn post(inbox: &Inbox, body: Vec<u8>) -> u16 {
    let endpoint = WebhookEndpoint::inbox(
        Verifier::builder()
            .secret(SECRET)
            .build()
            .expect("verifier"),
        inbox.clone(),
    );
    let headers =
        SignedHeaders::new(&WebhookSecret::from(SECRET), UnixMillis::now(), &body).to_header_map();
    endpoint
        .handle(&headers, Bytes::from(body))
        .await
        .status
        .as_u16()
}

/// Stores `body` through the endpoint.
async fn deliver(inbox: &Inbox, body: Vec<u8>) {
    assert_eq!(post(inbox, body).await, 200);
}

/// Drains `inbox` with a handler that records each event's `additional_info` marker, until no
/// row is pending or running (a row failing with a millisecond back-off runs out of attempts
/// and is a dead letter by then).
async fn drain(inbox: &Inbox) -> Vec<String> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let handler = {
        let seen = Arc::clone(&seen);
        move |event: WebhookEvent, _meta: InboxMeta| {
            if let WebhookEvent::Completed(done) = &event {
                let marker = done
                    .additional_info
                    .as_ref()
                    .and_then(|info| info.get("patient_ref"))
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_owned();
                seen.lock().expect("lock").push(marker);
            }
            async { Ok::<(), HandlerError>(()) }
        }
    };
    InboxWorker::builder(inbox.clone(), handler)
        .backoff(Duration::from_millis(1), Duration::from_millis(2))
        .build()
        .drain(Duration::from_secs(30))
        .await
        .expect("drain");
    seen.lock().expect("lock").clone()
}

/// The SQLite database file and its WAL in `dir`, each with its bytes.
fn scan(dir: &std::path::Path) -> Vec<(&'static str, Vec<u8>)> {
    ["inbox.db", "inbox.db-wal"]
        .into_iter()
        .map(|file| (file, std::fs::read(dir.join(file)).unwrap_or_default()))
        .collect()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_body_is_nowhere_in_the_sqlite_files_and_is_processed() {
    let marker = format!("PHI-MARKER-{:016x}", fastrand::u64(..));
    // The positive control: without keys the same scan finds the marker, so its absence below
    // means something.
    let control = tempfile::tempdir().expect("dir");
    let plain = Inbox::connect(&common::sqlite_url(control.path(), "inbox.db"))
        .await
        .expect("inbox");
    deliver(&plain, event(1, &marker)).await;
    assert!(
        scan(control.path())
            .iter()
            .any(|(_, b)| contains(b, &marker)),
        "the scan finds a body stored in clear"
    );

    let dir = tempfile::tempdir().expect("dir");
    let url = common::sqlite_url(dir.path(), "inbox.db");
    let keys = Keys::new([key(1)]).expect("keys");
    let inbox = Inbox::connect(&url).await.expect("inbox").with_keys(keys);
    deliver(&inbox, event(1, &marker)).await;
    let row = inbox.list(None, 1).await.expect("list").remove(0);
    assert_eq!(row.key_id.as_deref(), Some(key(1).id()));
    for file in ["inbox.db", "inbox.db-wal"] {
        let bytes = std::fs::read(dir.path().join(file)).unwrap_or_default();
        assert!(
            !contains(&bytes, &marker),
            "{file} holds the marker in clear"
        );
        assert!(!contains(&bytes, "patient_ref"), "{file}");
    }
    assert_eq!(drain(&inbox).await, [marker], "processed with its content");
    assert_eq!(inbox.status().await.expect("status").counts.done, 1);
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_key_fails_visibly_and_rotation_keeps_old_rows_readable() {
    let dir = tempfile::tempdir().expect("dir");
    let url = common::sqlite_url(dir.path(), "inbox.db");
    let plain = Inbox::connect(&url).await.expect("inbox");
    deliver(&plain, event(2, "clear-1")).await;
    let old = plain.clone().with_keys(Keys::new([key(1)]).expect("keys"));
    deliver(&old, event(3, "old-1")).await;
    // A worker given only a new key: the clear row is processed, the sealed one fails with a
    // code naming the missing key, and stays (a dead letter once its attempts are spent).
    let wrong = plain.clone().with_keys(Keys::new([key(2)]).expect("keys"));
    let thresholds = suki_ambient_inbox::HealthThresholds::default();
    let health = wrong.health(&thresholds).await;
    assert!(
        health
            .problems
            .contains(&suki_ambient_inbox::ops::Problem::BodyKeysMissing),
        "health names the missing key before any row fails: {health:?}"
    );
    assert!(
        !old.health(&thresholds)
            .await
            .problems
            .contains(&suki_ambient_inbox::ops::Problem::BodyKeysMissing),
        "the inbox holding the key is fine"
    );
    assert_eq!(drain(&wrong).await, ["clear-1"]);
    let rows = wrong.list(None, 10).await.expect("list");
    let sealed = rows
        .iter()
        .find(|r| r.key_id.is_some())
        .expect("the sealed row");
    // Retried (here with a millisecond back-off) and then a dead letter: visible, kept.
    assert_eq!(sealed.state, State::Dead);
    assert_eq!(
        sealed.last_error.as_deref(),
        Some(format!("body_key_missing_{}", key(1).id()).as_str())
    );
    // Rotation: the new key first, the old one still there: old rows open, new ones are sealed
    // under the new key.
    let rotated = plain
        .clone()
        .with_keys(Keys::new([key(2), key(1)]).expect("keys"));
    deliver(&rotated, event(4, "new-1")).await;
    wrong
        .retry(suki_ambient_inbox::Selection::Id(sealed.id))
        .await
        .expect("retry");
    let mut seen = drain(&rotated).await;
    seen.sort();
    assert_eq!(seen, ["new-1", "old-1"]);
    let newest = rotated.list(None, 1).await.expect("list").remove(0);
    assert_eq!(newest.key_id.as_deref(), Some(key(2).id()));
    assert_eq!(rotated.status().await.expect("status").counts.done, 3);
    assert_eq!(
        suki_ambient_inbox::KeyProvider::ids(&Keys::new([key(2), key(1)]).expect("keys")),
        [key(2).id().to_owned(), key(1).id().to_owned()]
    );
}

/// `pg_dump` of the database at `url`, as text.
#[cfg(feature = "postgres")]
fn pg_dump(url: &str) -> Vec<u8> {
    let candidates = std::iter::once(std::path::PathBuf::from("pg_dump")).chain(
        std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .map(|d| d.path().join("bin/pg_dump")),
    );
    for bin in candidates {
        if let Ok(out) = std::process::Command::new(&bin)
            .arg("--dbname")
            .arg(url)
            .output()
            && out.status.success()
        {
            return out.stdout;
        }
    }
    panic!("pg_dump (Debian's postgresql-client) is needed");
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs SUKI_POSTGRES_URL (bash .ci/run starts one)"]
async fn a_sealed_body_is_nowhere_in_a_postgres_dump_and_a_missing_key_fails_visibly() {
    let url = common::fresh_postgres().await;
    let inbox = Inbox::connect(&url).await.expect("inbox");
    let sealing = inbox.clone().with_keys(Keys::new([key(1)]).expect("keys"));
    let marker = format!("PHI-MARKER-{:016x}", fastrand::u64(..));
    deliver(&sealing, event(5, &marker)).await;
    let dump = pg_dump(&url);
    assert!(contains(&dump, "suki_inbox_deliveries"), "a real dump");
    assert!(
        !contains(&dump, &marker),
        "the dump holds the marker in clear"
    );
    let wrong = inbox.clone().with_keys(Keys::new([key(2)]).expect("keys"));
    assert!(drain(&wrong).await.is_empty());
    let row = wrong.list(None, 1).await.expect("list").remove(0);
    assert_eq!(
        (row.state, row.last_error.as_deref()),
        (
            State::Dead,
            Some(format!("body_key_missing_{}", key(1).id()).as_str())
        )
    );
    wrong
        .retry(suki_ambient_inbox::Selection::Id(row.id))
        .await
        .expect("retry");
    assert_eq!(drain(&sealing).await, [marker]);
}

/// Rotation end to end: rows in clear and under the old key are re-sealed under the new one,
/// a page at a time; with the old key then removed, every row is still processed. A row under a
/// key nobody has is counted and left.
#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rekey_reseals_under_the_new_key_and_the_old_one_can_go() {
    let dir = tempfile::tempdir().expect("dir");
    let url = common::sqlite_url(dir.path(), "inbox.db");
    let plain = Inbox::connect(&url).await.expect("inbox");
    deliver(&plain, event(10, "clear")).await;
    let old = plain.clone().with_keys(Keys::new([key(1)]).expect("keys"));
    for n in 11..16 {
        deliver(&old, event(n, &format!("old-{n}"))).await;
    }
    let lost = plain.clone().with_keys(Keys::new([key(9)]).expect("keys"));
    deliver(&lost, event(16, "lost")).await;
    let rotated = plain
        .clone()
        .with_keys(Keys::new([key(2), key(1)]).expect("keys"));
    let mut pages = 0;
    let report = rotated
        .rekey(&suki_ambient_inbox::Actor::application(), 2, |_| pages += 1)
        .await
        .expect("rekey");
    assert_eq!(
        (
            report.examined,
            report.resealed,
            report.missing_key,
            report.current
        ),
        (7, 6, 1, 0)
    );
    assert_eq!(pages, 4, "a page at a time");
    let mut counts = rotated.key_counts().await.expect("counts");
    counts.sort();
    assert_eq!(
        counts,
        [
            (Some(key(2).id().to_owned()), 6),
            (Some(key(9).id().to_owned()), 1)
        ]
    );
    let again = rotated
        .rekey(&suki_ambient_inbox::Actor::application(), 100, |_| {})
        .await
        .expect("again");
    assert_eq!(
        (again.resealed, again.current),
        (0, 6),
        "resumable: nothing left to do"
    );
    // The old key removed: every re-sealed row is processed.
    let new_only = plain.clone().with_keys(Keys::new([key(2)]).expect("keys"));
    let mut seen = drain(&new_only).await;
    seen.sort();
    assert_eq!(
        seen,
        ["clear", "old-11", "old-12", "old-13", "old-14", "old-15"]
    );
    assert!(
        plain
            .rekey(&suki_ambient_inbox::Actor::application(), 10, |_| {})
            .await
            .is_err(),
        "rekey needs keys"
    );
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs SUKI_POSTGRES_URL (bash .ci/run starts one)"]
async fn rekey_on_postgres_loses_no_row() {
    let url = common::fresh_postgres().await;
    let plain = Inbox::connect(&url).await.expect("inbox");
    deliver(&plain, event(20, "clear")).await;
    let old = plain.clone().with_keys(Keys::new([key(1)]).expect("keys"));
    for n in 21..24 {
        deliver(&old, event(n, &format!("old-{n}"))).await;
    }
    let rotated = plain
        .clone()
        .with_keys(Keys::new([key(2), key(1)]).expect("keys"));
    let report = rotated
        .rekey(&suki_ambient_inbox::Actor::application(), 2, |_| {})
        .await
        .expect("rekey");
    assert_eq!((report.resealed, report.missing_key), (4, 0));
    assert_eq!(
        rotated.key_counts().await.expect("counts"),
        [(Some(key(2).id().to_owned()), 4)]
    );
    let new_only = plain.clone().with_keys(Keys::new([key(2)]).expect("keys"));
    let mut seen = drain(&new_only).await;
    seen.sort();
    assert_eq!(seen, ["clear", "old-21", "old-22", "old-23"]);
}

/// An erased body leaves no trace in the file (`secure_delete`) once the WAL is checkpointed;
/// the positive control is the same body found before the erase.
#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erased_body_is_overwritten_in_the_sqlite_file() {
    use suki_ambient_inbox::sqlx::{self, Connection as _};
    let dir = tempfile::tempdir().expect("dir");
    let url = common::sqlite_url(dir.path(), "inbox.db");
    let inbox = Inbox::connect(&url).await.expect("inbox");
    let marker = format!("PHI-MARKER-{:016x}", fastrand::u64(..));
    deliver(&inbox, event(7, &marker)).await;
    assert_eq!(drain(&inbox).await, std::slice::from_ref(&marker));
    let checkpoint = || async {
        let mut conn = sqlx::SqliteConnection::connect(&url)
            .await
            .expect("connect");
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&mut conn)
            .await
            .expect("checkpoint");
    };
    checkpoint().await;
    assert!(
        scan(dir.path()).iter().any(|(_, b)| contains(b, &marker)),
        "before the erase, the body is in the file"
    );
    assert_eq!(inbox.erase_bodies(Duration::ZERO).await.expect("erase"), 1);
    checkpoint().await;
    for (file, bytes) in scan(dir.path()) {
        assert!(
            !contains(&bytes, &marker),
            "{file} still holds the erased body"
        );
    }
}

/// A key provider with no current key (a KMS that does not answer): the delivery is refused
/// with 503 and health turns red; nothing is stored in clear.
#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_current_key_refuses_the_write_instead_of_storing_in_clear() {
    struct Unavailable;
    impl suki_ambient_inbox::KeyProvider for Unavailable {
        fn current(&self) -> Option<Arc<BodyKey>> {
            None
        }
        fn key(&self, _id: &str) -> Option<Arc<BodyKey>> {
            None
        }
        fn ids(&self) -> Vec<String> {
            Vec::new()
        }
    }
    let dir = tempfile::tempdir().expect("dir");
    let inbox = Inbox::connect(&common::sqlite_url(dir.path(), "inbox.db"))
        .await
        .expect("inbox")
        .with_keys(Unavailable);
    assert_eq!(
        post(&inbox, event(8, "PHI-not-stored")).await,
        503,
        "Suki is told to try again"
    );
    assert_eq!(inbox.status().await.expect("status").counts.pending, 0);
    let health = inbox
        .health(&suki_ambient_inbox::HealthThresholds::default())
        .await;
    assert!(!health.store_writable, "visible: {health:?}");
    for (file, bytes) in scan(dir.path()) {
        assert!(!contains(&bytes, "PHI-not-stored"), "{file}");
    }
}
