//! No side doors: with keys set, a marker planted in `additional_info` and in the note's text
//! never reaches the SQLite file or its WAL in clear, whichever way the row came (webhook,
//! `reconcile expect` + `reconcile`) and whatever happened to it (dead letter with what it
//! fetched, `retry`, done, `rekey`); a CLI without keys refuses to write beside sealed rows;
//! every CLI writer needs `--actor`; `inbox audit --verify` finds a re-chained log; and the
//! operator's paper cuts.

use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine as _;
use suki_ambient_core::{EventKind, HandlerError, SessionCompleted, SessionId};
use suki_ambient_inbox::{FetchResults, Inbox, InboxMeta, InboxWorker, Keys, LinkNeeds};

const BIN: &str = env!("CARGO_BIN_EXE_suki-ambient");
const INFO_MARKER: &str = "INFO-MARKER-41a7c";
const NOTE_MARKER: &str = "NOTE-MARKER-41b9d";

fn b64(byte: u8) -> String {
    base64::engine::general_purpose::STANDARD.encode([byte; 32])
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The CLI with `args`, as `actor` (none: no actor at all), with `keys` as SUKI_INBOX_KEYS.
fn cli(args: &[&str], actor: Option<&str>, keys: Option<&str>, token: Option<&str>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .stdin(Stdio::null())
        .env_remove("SUKI_INBOX_URL")
        .env_remove("SUKI_AUDIT_KEY")
        .env_remove("SUKI_WEBHOOK_SECRET");
    match actor {
        Some(actor) => cmd.env("SUKI_ACTOR", actor),
        None => cmd.env_remove("SUKI_ACTOR"),
    };
    match keys {
        Some(keys) => cmd.env("SUKI_INBOX_KEYS", keys),
        None => cmd.env_remove("SUKI_INBOX_KEYS"),
    };
    match token {
        Some(token) => cmd.env("SUKI_TOKEN", token),
        None => cmd.env_remove("SUKI_TOKEN"),
    };
    cmd.output().expect("run the CLI")
}

/// Fails every attempt while `down`, after the links were fetched (an EHR down).
struct Ehr {
    down: AtomicBool,
}

#[async_trait::async_trait]
impl suki_ambient_inbox::ResultsHandler for Ehr {
    async fn on_results(
        &self,
        _: SessionCompleted,
        _: suki_ambient_client::SessionResults,
        _: InboxMeta,
    ) -> Result<(), HandlerError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(Box::new(suki_ambient_inbox::Permanent("ehr_down")));
        }
        Ok(())
    }
    async fn on_failed(
        &self,
        _: suki_ambient_core::SessionFailed,
        _: InboxMeta,
    ) -> Result<(), HandlerError> {
        Ok(())
    }
    async fn on_ended(
        &self,
        _: EventKind,
        _: suki_ambient_core::SessionEnded,
        _: InboxMeta,
    ) -> Result<(), HandlerError> {
        Ok(())
    }
    fn links(&self) -> Option<LinkNeeds> {
        Some(LinkNeeds::required(&[
            suki_ambient_core::LinkKind::Contents,
        ]))
    }
}

/// Neither marker is in the database file or its WAL. Read by `grep` in another process: a
/// process that opens and closes the database file itself drops the POSIX locks SQLite holds
/// on it (its connections then read a torn WAL).
fn assert_no_marker(dir: &std::path::Path, step: &str) {
    for file in ["inbox.db", "inbox.db-wal"] {
        let path = dir.join(file);
        if !path.exists() {
            continue;
        }
        for marker in [INFO_MARKER, NOTE_MARKER] {
            assert!(
                !holds(&path, marker),
                "{step}: {file} holds {marker} in clear"
            );
        }
    }
}

/// Whether the file at `path` holds `marker` (read by `grep`, see above).
fn holds(path: &std::path::Path, marker: &str) -> bool {
    path.exists()
        && Command::new("grep")
            .args(["-a", "-F", "-q", marker])
            .arg(path)
            .status()
            .expect("grep")
            .success()
}

/// An axum receiver on loopback storing into `inbox`, set as the sandbox's webhook URL.
async fn serve(
    sandbox: &suki_ambient_sandbox::SandboxHandle,
    inbox: &Inbox,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    let verifier = sandbox.verifier_builder().build().expect("verifier");
    let endpoint = suki_ambient_core::WebhookEndpoint::inbox(verifier, inbox.clone());
    let app = axum::Router::new().nest("/webhooks/suki", suki_ambient_axum::router(endpoint));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    sandbox.set_webhook_url(Some(format!(
        "http://{}/webhooks/suki",
        listener.local_addr().expect("addr")
    )));
    tokio::spawn(async move { axum::serve(listener, app).await })
}

fn note() -> suki_ambient_core::api::NoteContent {
    serde_json::from_value(serde_json::json!({
        "summary": [{"title": "HPI", "content": NOTE_MARKER}]
    }))
    .expect("note")
}

fn info() -> serde_json::Map<String, serde_json::Value> {
    let mut info = serde_json::Map::new();
    info.insert("ehr_patient".into(), INFO_MARKER.into());
    info
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_keys_no_path_leaves_the_note_or_the_context_in_clear() {
    use suki_ambient_sandbox::{Sandbox, WebhookFault};
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}", dir.path().join("inbox.db").display());
    let keys = b64(1);
    let inbox = Inbox::connect(&url)
        .await
        .expect("inbox")
        .with_keys(Keys::parse(&keys).expect("keys"));
    let sandbox = Sandbox::builder().start().await.expect("sandbox");
    let server = serve(&sandbox, &inbox).await;
    let token = sandbox.issue_token(None);

    // 1. A webhook, with the partner's context and a note carrying markers.
    let delivered = sandbox.create_session(None);
    sandbox.set_additional_info(&delivered.session_id, info());
    sandbox
        .complete(&delivered.session_id)
        .await
        .expect("deliver");
    sandbox
        .set_results(&delivered.session_id, note(), Default::default())
        .expect("results");
    assert_no_marker(dir.path(), "webhook");

    // 2. A session whose webhook is lost, registered from the CLI with its context, then
    // recovered by `reconcile`.
    let lost = sandbox.create_session(None);
    let info_json = serde_json::Value::Object(info()).to_string();
    let expect = cli(
        &[
            "reconcile",
            "expect",
            "--url",
            &url,
            "--session",
            lost.session_id.as_str(),
            "--encounter",
            lost.encounter_id.as_str(),
            "--ended-at",
            "10m",
            "--grace",
            "1s",
            "--additional-info",
            &info_json,
        ],
        Some("alice"),
        Some(&keys),
        None,
    );
    assert!(expect.status.success(), "{}", stderr(&expect));
    sandbox.inject_webhook(WebhookFault::lose().session(&lost.session_id));
    sandbox.set_additional_info(&lost.session_id, info());
    sandbox.complete(&lost.session_id).await.expect("complete");
    sandbox
        .set_results(&lost.session_id, note(), Default::default())
        .expect("results");
    let reconcile = cli(
        &[
            "reconcile",
            "--url",
            &url,
            "--since",
            "2h",
            "--base-url",
            sandbox.base_url(),
            "--json",
        ],
        Some("alice"),
        Some(&keys),
        Some(&token),
    );
    assert!(reconcile.status.success(), "{}", stderr(&reconcile));
    let summary: serde_json::Value = serde_json::from_slice(&reconcile.stdout).expect("json");
    assert_eq!(summary["recovered"], 1, "{summary}");
    assert_eq!(
        inbox.key_counts().await.expect("keys").len(),
        1,
        "all sealed"
    );
    assert_no_marker(dir.path(), "reconcile");

    // 3. The EHR is down: both rows die with what they fetched kept (sealed).
    let client = suki_ambient_client::AmbientClient::builder()
        .base_url(sandbox.base_url())
        .token(token.clone())
        .build()
        .expect("client");
    let ehr = Arc::new(Ehr {
        down: AtomicBool::new(true),
    });
    let worker = |inbox: Inbox| {
        InboxWorker::builder(inbox, FetchResults::new(client.clone(), Arc::clone(&ehr))).build()
    };
    worker(inbox.clone())
        .drain(Duration::from_secs(5))
        .await
        .expect("drain");
    let dead = inbox
        .list(Some(suki_ambient_inbox::State::Dead), 10)
        .await
        .expect("dead");
    assert_eq!(dead.len(), 2);
    assert_no_marker(dir.path(), "dead letters");

    // 4. Retried from the CLI, done; then re-sealed under a new key.
    let retry = cli(
        &["inbox", "--url", &url, "retry", "--dead"],
        Some("alice"),
        Some(&keys),
        None,
    );
    assert!(retry.status.success(), "{}", stderr(&retry));
    ehr.down.store(false, Ordering::SeqCst);
    worker(inbox.clone())
        .drain(Duration::from_secs(5))
        .await
        .expect("drain");
    assert_eq!(inbox.status().await.expect("status").counts.done, 2);
    assert_no_marker(dir.path(), "retry");
    let rekey = cli(
        &["inbox", "--url", &url, "rekey"],
        Some("alice"),
        Some(&format!("{},{keys}", b64(2))),
        None,
    );
    assert!(rekey.status.success(), "{}", stderr(&rekey));
    assert!(
        stdout(&rekey).starts_with("2 row(s) re-sealed"),
        "{}",
        stdout(&rekey)
    );
    assert_no_marker(dir.path(), "rekey");

    // Every CLI write is in the audit log, by alice, with its counts; the chain is keyed.
    let audit = cli(
        &["inbox", "--url", &url, "audit", "--json"],
        None,
        None,
        None,
    );
    let entries: serde_json::Value = serde_json::from_slice(&audit.stdout).expect("json");
    let by_alice: Vec<(String, u64)> = entries
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["actor"] == "alice")
        .map(|e| {
            (
                e["action"].as_str().expect("action").to_owned(),
                e["rows"].as_u64().expect("rows"),
            )
        })
        .rev()
        .collect();
    assert_eq!(
        by_alice,
        [
            ("expect".to_owned(), 1),
            ("reconcile".to_owned(), 1),
            ("retry".to_owned(), 2),
            ("rekey".to_owned(), 2),
        ]
    );
    let verify = cli(
        &["inbox", "--url", &url, "audit", "--verify"],
        None,
        Some(&format!("{},{keys}", b64(2))),
        None,
    );
    assert!(verify.status.success(), "{}", stdout(&verify));
    assert!(
        stdout(&verify).contains("audit chain intact"),
        "{}",
        stdout(&verify)
    );
    server.abort();
    sandbox.shutdown().await;

    // The scan finds a marker that is there: the same context stored by an inbox without keys.
    let clear = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}", clear.path().join("inbox.db").display());
    let plain = Inbox::connect(&url).await.expect("inbox");
    let mut delivery = suki_ambient_inbox::conformance::delivery("s-9/completed");
    delivery.body = format!(r#"{{"additional_info":{{"ehr_patient":"{INFO_MARKER}"}}}}"#).into();
    plain.ingest(delivery).await.expect("ingest");
    let found = ["inbox.db", "inbox.db-wal"]
        .iter()
        .any(|file| holds(&clear.path().join(file), INFO_MARKER));
    assert!(found, "the scan sees a marker stored in clear");
}

/// A sealed inbox with one row and a keyed audit chain.
async fn sealed_inbox(dir: &std::path::Path) -> (String, Inbox) {
    let url = format!("sqlite://{}", dir.join("inbox.db").display());
    let inbox = Inbox::connect(&url)
        .await
        .expect("inbox")
        .with_keys(Keys::parse(&b64(1)).expect("keys"));
    inbox
        .ingest(suki_ambient_inbox::conformance::delivery("s-1/completed"))
        .await
        .expect("ingest");
    inbox.record_keys().await.expect("keys recorded");
    (url, inbox)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cli_without_keys_writes_nothing_beside_sealed_rows() {
    let dir = tempfile::tempdir().expect("dir");
    let (url, inbox) = sealed_inbox(dir.path()).await;
    let before = inbox.status().await.expect("status").counts;
    let expect = cli(
        &[
            "reconcile",
            "expect",
            "--url",
            &url,
            "--session",
            "s-2",
            "--encounter",
            "e-2",
            "--additional-info",
            r#"{"ehr_patient":"Patient/1"}"#,
        ],
        Some("alice"),
        None,
        None,
    );
    assert!(!expect.status.success());
    assert!(
        stderr(&expect).contains("sealed bodies and SUKI_INBOX_KEYS is not set"),
        "{}",
        stderr(&expect)
    );
    let reconcile = cli(
        &[
            "reconcile",
            "--url",
            &url,
            "--base-url",
            "http://127.0.0.1:9",
        ],
        Some("alice"),
        None,
        Some("a-token"),
    );
    assert!(!reconcile.status.success());
    assert!(
        stderr(&reconcile).contains("SUKI_INBOX_KEYS is not set"),
        "{}",
        stderr(&reconcile)
    );
    // The keyed chain is not continued with plain hashes either.
    let pause = cli(
        &["inbox", "--url", &url, "pause"],
        Some("alice"),
        None,
        None,
    );
    assert!(!pause.status.success());
    assert!(stderr(&pause).contains("audit key"), "{}", stderr(&pause));
    assert_eq!(inbox.status().await.expect("status").counts, before);
    assert!(
        inbox
            .store()
            .expectation(&SessionId::from("s-2"))
            .await
            .expect("read")
            .is_none(),
        "nothing registered"
    );
    assert!(inbox.pauses().await.expect("pauses").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cli_writer_needs_an_actor() {
    let dir = tempfile::tempdir().expect("dir");
    let (url, _inbox) = sealed_inbox(dir.path()).await;
    let keys = b64(1);
    for args in [
        vec!["inbox", "--url", &url, "retry", "1"],
        vec!["inbox", "--url", &url, "retry", "--dead"],
        vec!["inbox", "--url", &url, "replay", "--since", "1h"],
        vec!["inbox", "--url", &url, "replay", "--id", "1"],
        vec!["inbox", "--url", &url, "discard", "1", "--reason", "test"],
        vec!["inbox", "--url", &url, "pause"],
        vec!["inbox", "--url", &url, "resume"],
        vec!["inbox", "--url", &url, "purge", "--older-than", "7d"],
        vec!["inbox", "--url", &url, "rekey"],
        vec!["inbox", "--url", &url, "trace", "s-1"],
        vec![
            "reconcile",
            "expect",
            "--url",
            &url,
            "--session",
            "s",
            "--encounter",
            "e",
        ],
        vec![
            "reconcile",
            "--url",
            &url,
            "--base-url",
            "http://127.0.0.1:9",
        ],
    ] {
        let out = cli(&args, None, Some(&keys), Some("a-token"));
        assert!(!out.status.success(), "{args:?} ran without an actor");
        assert!(
            stderr(&out).contains("--actor"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reports_a_rechained_log_and_a_cut_end() {
    use suki_ambient_inbox::sqlx::{self, Connection as _};
    let dir = tempfile::tempdir().expect("dir");
    let (url, inbox) = sealed_inbox(dir.path()).await;
    let keys = b64(1);
    for _ in 0..3 {
        let out = cli(
            &["inbox", "--url", &url, "pause", "--reason", "maintenance"],
            Some("alice"),
            Some(&keys),
            None,
        );
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let checkpoint = cli(
        &["inbox", "--url", &url, "audit", "--checkpoint"],
        None,
        None,
        None,
    );
    assert!(checkpoint.status.success(), "{}", stderr(&checkpoint));
    let file = dir.path().join("checkpoint.json");
    std::fs::write(&file, &checkpoint.stdout).expect("keep the checkpoint");
    let file = file.display().to_string();

    // The insider drops the triggers, rewrites an actor and recomputes the chain.
    let entries = inbox
        .audit(suki_ambient_core::UnixMillis(0), 100)
        .await
        .expect("audit");
    let mut conn = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("connect");
    let mut sql = "DROP TRIGGER suki_inbox_audit_append_only; \
                   DROP TRIGGER suki_inbox_audit_no_delete;"
        .to_owned();
    let mut prev = String::new();
    for mut entry in entries.into_iter().rev() {
        if entry.actor == "alice" {
            entry.actor = "mallory".into();
        }
        let hash = suki_ambient_inbox::audit::audit_hash(&prev, &entry);
        sql.push_str(&format!(
            "UPDATE suki_inbox_audit SET actor = '{}', prev_hash = '{prev}', hash = '{hash}' \
             WHERE id = {};",
            entry.actor, entry.id
        ));
        prev = hash;
    }
    sqlx::raw_sql(&sql)
        .execute(&mut conn)
        .await
        .expect("tamper");
    let verify = cli(
        &["inbox", "--url", &url, "audit", "--verify"],
        None,
        Some(&keys),
        None,
    );
    assert!(!verify.status.success());
    assert!(
        stdout(&verify).contains("audit chain BROKEN"),
        "{}",
        stdout(&verify)
    );
    // Without a key the CLI cannot tell, and says the log is not protected.
    let unkeyed = cli(
        &["inbox", "--url", &url, "audit", "--verify"],
        None,
        None,
        None,
    );
    assert!(
        stdout(&unkeyed).contains("no entry is keyed"),
        "{}{}",
        stdout(&unkeyed),
        stderr(&unkeyed)
    );

    // A fresh inbox, intact but cut at the end: the checkpoint finds it.
    let other = tempfile::tempdir().expect("dir");
    let (url, _inbox) = sealed_inbox(other.path()).await;
    for _ in 0..3 {
        cli(
            &["inbox", "--url", &url, "pause", "--reason", "maintenance"],
            Some("alice"),
            Some(&keys),
            None,
        );
    }
    let checkpoint = cli(
        &["inbox", "--url", &url, "audit", "--checkpoint"],
        None,
        None,
        None,
    );
    std::fs::write(&file, &checkpoint.stdout).expect("keep the checkpoint");
    let mut conn = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("connect");
    sqlx::raw_sql(
        "DROP TRIGGER suki_inbox_audit_no_delete; \
         DELETE FROM suki_inbox_audit WHERE id = (SELECT MAX(id) FROM suki_inbox_audit)",
    )
    .execute(&mut conn)
    .await
    .expect("cut");
    let plain = cli(
        &["inbox", "--url", &url, "audit", "--verify"],
        None,
        Some(&keys),
        None,
    );
    assert!(
        plain.status.success(),
        "the chain alone cannot see a cut end"
    );
    let against = cli(
        &[
            "inbox",
            "--url",
            &url,
            "audit",
            "--verify",
            "--since-checkpoint",
            &file,
        ],
        None,
        Some(&keys),
        None,
    );
    assert!(!against.status.success());
    assert!(
        stdout(&against).contains("entries were removed from the end"),
        "{}",
        stdout(&against)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operators_paper_cuts() {
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}", dir.path().join("inbox.db").display());
    let inbox = Inbox::connect(&url).await.expect("inbox");
    inbox
        .ingest(suki_ambient_inbox::conformance::delivery("s-1/completed"))
        .await
        .expect("ingest");
    // The row is done (as a worker would leave it).
    {
        use suki_ambient_inbox::sqlx::{self, Connection as _};
        let mut conn = sqlx::SqliteConnection::connect(&url)
            .await
            .expect("connect");
        sqlx::raw_sql(&format!(
            "UPDATE suki_inbox_deliveries SET state = 'done', completed_at = {0}, updated_at = {0}",
            inbox.now().0
        ))
        .execute(&mut conn)
        .await
        .expect("done");
    }

    // A closed pipe ends the program quietly, as it ends `ls`.
    let mut child = Command::new(BIN)
        .args(["inbox", "--url", &url, "list"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));

    // Enum flags as the docs spell them.
    let key = dir.path().join("smart.pem");
    let keygen = cli(
        &[
            "fhir",
            "keygen",
            "--alg",
            "ES384",
            "--kid",
            "k1",
            "--out",
            &key.display().to_string(),
        ],
        None,
        None,
        None,
    );
    assert!(keygen.status.success(), "{}", stderr(&keygen));
    let listed = cli(
        &["inbox", "--url", &url, "list", "--state", "PENDING"],
        None,
        None,
        None,
    );
    assert!(listed.status.success(), "{}", stderr(&listed));

    // `retry` of a row that is not dead says why; `replay --id` runs one done row again.
    let id = inbox.list(None, 1).await.expect("list")[0].id.to_string();
    let retry = cli(
        &["inbox", "--url", &url, "retry", &id],
        Some("alice"),
        None,
        None,
    );
    assert!(!retry.status.success());
    assert!(
        stderr(&retry).contains(&format!(
            "was not retried: it is done (retry takes dead or pending rows); to run it again, \
             `suki-ambient inbox replay --id {id}`"
        )),
        "{}",
        stderr(&retry)
    );
    let replay = cli(
        &["inbox", "--url", &url, "replay", "--id", &id],
        Some("alice"),
        None,
        None,
    );
    assert!(replay.status.success(), "{}", stderr(&replay));
    assert_eq!(stdout(&replay).trim(), "1 row(s) due again");
    let again = cli(
        &["inbox", "--url", &url, "replay", "--id", &id],
        Some("alice"),
        None,
        None,
    );
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("replay takes done rows"),
        "{}",
        stderr(&again)
    );

    // Audit details show dates; --json keeps the milliseconds.
    let replay = cli(
        &["inbox", "--url", &url, "replay", "--since", "1h"],
        Some("alice"),
        None,
        None,
    );
    assert!(replay.status.success(), "{}", stderr(&replay));
    let audit = stdout(&cli(&["inbox", "--url", &url, "audit"], None, None, None));
    assert!(audit.contains("(completed since 20"), "{audit}");
    assert!(audit.contains("Z)"), "{audit}");
    let json = stdout(&cli(
        &["inbox", "--url", &url, "audit", "--json"],
        None,
        None,
        None,
    ));
    let entries: serde_json::Value = serde_json::from_str(&json).expect("json");
    let detail = entries[0]["detail"].as_str().expect("detail");
    assert!(
        detail
            .trim_start_matches("completed since ")
            .parse::<u64>()
            .is_ok(),
        "{detail}"
    );
}
