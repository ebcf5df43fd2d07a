//! The `suki-ambient` binary: shared vectors, explanations, one-line errors, send, fetch, demo.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use suki_ambient_core::testing::signature_vectors;

const BIN: &str = env!("CARGO_BIN_EXE_suki-ambient");

fn run(args: &[&str], secret: Option<&str>, stdin: &[u8]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.env_remove("SUKI_WEBHOOK_SECRET")
        .env_remove("SUKI_TOKEN")
        .env_remove("SUKI_INBOX_URL")
        .env("SUKI_ACTOR", "tester");
    if let Some(secret) = secret {
        cmd.env("SUKI_WEBHOOK_SECRET", secret);
    }
    let mut child = cmd.spawn().unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn last_line(o: &Output) -> String {
    stdout(o).lines().last().unwrap_or_default().to_owned()
}

#[test]
fn verify_agrees_with_every_shared_vector() {
    for v in signature_vectors() {
        let now = v.now_ms.to_string();
        let tol = v.tolerance_ms.to_string();
        let out = run(
            &[
                "verify",
                "--generated-at",
                &v.generated_at,
                "--signature",
                &v.signature,
                "--now-ms",
                &now,
                "--tolerance-ms",
                &tol,
                "-",
            ],
            Some(&v.secret),
            &v.body,
        );
        let expected = v.expected_error.clone().unwrap_or_else(|| "ok".into());
        assert_eq!(last_line(&out), expected, "{}: {}", v.name, stderr(&out));
        assert_eq!(
            out.status.success(),
            v.expected_error.is_none(),
            "{}",
            v.name
        );
    }
}

fn sign_headers(secret: &str, at: &str, body: &[u8]) -> String {
    let out = run(
        &["sign", "--generated-at", at, "--json"],
        Some(secret),
        body,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    json["x-api-key"].as_str().unwrap().to_owned()
}

#[test]
fn sign_then_verify_and_the_plain_and_curl_outputs() {
    let body = br#"{"status":"success"}"#;
    let sig = sign_headers("k", "1766122020941", body);
    let out = run(
        &[
            "verify",
            "--generated-at",
            "1766122020941",
            "--signature",
            &sig,
            "--now-ms",
            "1766122020941",
        ],
        Some("k"),
        body,
    );
    assert_eq!(stdout(&out).trim(), "ok");
    let plain = run(
        &["sign", "--generated-at", "1766122020941"],
        Some("k"),
        body,
    );
    assert_eq!(
        stdout(&plain),
        format!("generated-at: 1766122020941\nX-API-Key: {sig}\n")
    );
    let curl = run(
        &[
            "sign",
            "--generated-at",
            "1766122020941",
            "--curl",
            "http://127.0.0.1:3000/webhooks/suki",
        ],
        Some("k"),
        body,
    );
    assert!(stdout(&curl).starts_with("curl "), "{}", stdout(&curl));
    assert!(stdout(&curl).contains("--data-binary"));
}

/// The signature a sender making `mistake` would produce, and the hint expected for it.
fn explained(signature: &str, at: &str, body: &[u8], secret: &str) -> String {
    let out = run(
        &[
            "verify",
            "--explain",
            "--generated-at",
            at,
            "--signature",
            signature,
            "--now-ms",
            "1766122020941",
            "-",
        ],
        Some(secret),
        body,
    );
    assert!(!out.status.success());
    stdout(&out)
}

#[test]
fn explain_names_the_common_mistakes() {
    let at = "1766122020941";
    let body = br#"{"status":"success","session_id":"s"}"#.to_vec();
    let pretty =
        serde_json::to_vec_pretty(&serde_json::from_slice::<serde_json::Value>(&body).unwrap())
            .unwrap();
    let mut nl = body.clone();
    nl.push(b'\n');
    let cases: Vec<(String, &str)> = vec![
        (sign_headers("k", at, &pretty), "re-serialized"),
        (sign_headers("k", at, &nl), "trailing newline"),
        (sign_headers("k", "1766122020", &body), "seconds"),
        (sign_headers("k ", at, &body), "whitespace"),
    ];
    for (sig, needle) in cases {
        let out = explained(&sig, at, &body, "k");
        assert!(
            out.contains(needle),
            "expected a hint with {needle:?}:\n{out}"
        );
        assert_eq!(out.lines().last().unwrap(), "mismatch");
    }
    // The direction of a newline or CRLF difference is named correctly.
    let out = explained(&sign_headers("k", at, &nl), at, &body, "k");
    assert!(out.contains("lost a trailing newline"), "{out}");
    let out = explained(&sign_headers("k", at, &body), at, &nl, "k");
    assert!(out.contains("gained a trailing newline"), "{out}");
    let crlf = [&body[..], b"\r\n"].concat();
    let out = explained(&sign_headers("k", at, &body), at, &crlf, "k");
    assert!(out.contains("gained a trailing CRLF"), "{out}");
    let out = explained(&sign_headers("k", at, &crlf), at, &body, "k");
    assert!(out.contains("lost a trailing CRLF"), "{out}");
    // Re-serialized with the keys kept in their (unsorted) order: compact, pretty, Python.
    let unsorted = br#"{"status": "success", "session_id": "s", "encounter_id": "e", "_links": {"status": [{"href": "/x", "method": "GET"}], "contents": []}}"#.to_vec();
    let compact = br#"{"status":"success","session_id":"s","encounter_id":"e","_links":{"status":[{"href":"/x","method":"GET"}],"contents":[]}}"#.to_vec();
    let pretty_unsorted = b"{\n  \"status\": \"success\",\n  \"session_id\": \"s\",\n  \"encounter_id\": \"e\",\n  \"_links\": {\n    \"status\": [\n      {\n        \"href\": \"/x\",\n        \"method\": \"GET\"\n      }\n    ],\n    \"contents\": []\n  }\n}".to_vec();
    for (signed, received, label) in [
        (&compact, &unsorted, "compact, keys in their original order"),
        (
            &unsorted,
            &compact,
            "Python json.dumps-style, keys in their original order",
        ),
        (
            &pretty_unsorted,
            &compact,
            "pretty-printed, keys in their original order",
        ),
    ] {
        let out = explained(&sign_headers("k", at, signed), at, received, "k");
        assert!(out.contains(label), "expected {label:?}:\n{out}");
    }
    // '.' separator and body-only MACs, computed independently here.
    use hmac::{KeyInit, Mac};
    let mac = |data: &[u8]| {
        let mut m = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(b"k").unwrap();
        m.update(data);
        m.finalize().into_bytes()
    };
    let dot = [at.as_bytes(), b".", &body].concat();
    let out = explained(&hex(&mac(&dot)), at, &body, "k");
    assert!(out.contains("'.'"), "{out}");
    let out = explained(&hex(&mac(&body)), at, &body, "k");
    assert!(out.contains("body alone"), "{out}");
    // base64 instead of hex.
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD
        .encode(mac(&[at.as_bytes(), b":", &body].concat()));
    let out = explained(&b64, at, &body, "k");
    assert!(out.contains("base64"), "{out}");
    assert_eq!(out.lines().last().unwrap(), "malformed_signature");
    // Seconds in the header: stale, and said so.
    let out = explained(
        &sign_headers("k", "1766122020", &body),
        "1766122020",
        &body,
        "k",
    );
    assert!(out.contains("looks like seconds"), "{out}");
    // Nothing matches: a clear statement.
    let out = explained(&"ab".repeat(32), at, &body, "k");
    assert!(out.contains("no common mistake"), "{out}");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn errors_are_one_clear_line() {
    let cases: Vec<(Vec<&str>, Option<&str>, &str)> = vec![
        (vec!["sign", "-"], None, "SUKI_WEBHOOK_SECRET"),
        (
            vec!["sign", "/no/such/file.json"],
            Some("k"),
            "cannot read /no/such/file.json",
        ),
        (
            vec!["sign", "--secret-file", "/no/such/secret"],
            None,
            "cannot read the secret file",
        ),
        (vec!["send", "--url", "not a url"], Some("k"), "not a URL"),
        (
            vec!["send", "--url", "http://127.0.0.1:9/webhooks/suki"],
            Some("k"),
            "cannot reach",
        ),
        (
            vec!["sign", "--generated-at", "12.5"],
            Some("k"),
            "milliseconds",
        ),
        (
            vec![
                "fetch",
                "--base-url",
                "http://127.0.0.1:9",
                "--session",
                "s",
            ],
            None,
            "SUKI_TOKEN",
        ),
    ];
    for (args, secret, needle) in cases {
        let out = run(&args, secret, b"{}");
        assert!(!out.status.success(), "{args:?}");
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.starts_with("error: ") && err.contains(needle),
            "{args:?}: {err}"
        );
        assert!(!err.contains("panicked"));
    }
    // A non-numeric timestamp in verify is a verification result, not a crash.
    let out = run(
        &[
            "verify",
            "--generated-at",
            "abc",
            "--signature",
            &"0".repeat(64),
        ],
        Some("k"),
        b"{}",
    );
    assert_eq!(last_line(&out), "malformed_timestamp");
}

#[test]
fn the_demo_runs_the_whole_flow() {
    let out = run(&["demo"], None, b"");
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    for needle in [
        "[6/11]",
        "[9/11]",
        "[10/11]",
        "[11/11]",
        "EHR: 1 DocumentReference (docStatus preliminary), 1 Composition",
        "the same row run again: 0 new resources in the EHR",
        "1 checked, 1 recovered",
        "(poll) processed on attempt 1",
        "answered 200 {\"status\":\"duplicate\"}: the handler ran once",
        "3 done, 0 pending, 0 dead",
        "1 delivery pending on disk",
        "it waited 1 time(s) for Suki's API (fetch_",
        "spending no attempt",
        "processed",
        "mismatch",
        "duplicate",
        "Diagnosis:",
        "Transcript",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_and_fetch_against_the_sandbox_and_a_receiver() {
    use suki_ambient_core::NoopHandler;
    let sandbox = suki_ambient_sandbox::Sandbox::builder()
        .start()
        .await
        .unwrap();
    let verifier = suki_ambient_core::Verifier::builder()
        .secret("cli-secret")
        .build()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/webhooks/suki", listener.local_addr().unwrap());
    let app = axum::Router::new().nest(
        "/webhooks/suki",
        suki_ambient_axum::router(suki_ambient_core::WebhookEndpoint::new(
            verifier,
            NoopHandler,
        )),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let send = |args: Vec<String>, secret: &'static str| {
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run(&args, Some(secret), b"")
        })
    };
    for event in ["completed", "failed", "timed-out", "cancelled"] {
        let out = send(
            vec![
                "send".into(),
                "--url".into(),
                url.clone(),
                "--event".into(),
                event.into(),
                "--json".into(),
            ],
            "cli-secret",
        )
        .await
        .unwrap();
        assert!(out.status.success(), "{event}: {}", stderr(&out));
        let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        assert_eq!(json["status"], 200, "{event}");
    }
    let out = send(
        vec!["send".into(), "--url".into(), url.clone()],
        "wrong-secret",
    )
    .await
    .unwrap();
    assert!(!out.status.success());
    assert!(stdout(&out).starts_with("401"));

    let session = sandbox.create_session(None);
    sandbox.complete_silently(&session.session_id).unwrap();
    let token = sandbox.issue_token(None);
    let base = sandbox.base_url().to_owned();
    let id = session.session_id.to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(["fetch", "--base-url", &base, "--session", &id])
            .env("SUKI_TOKEN", token)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("status: completed")
            && text.contains("4 segments")
            && text.contains("1 diagnoses"),
        "{text}"
    );

    // The same with partner credentials: the CLI logs in itself.
    let base = sandbox.base_url().to_owned();
    let id = session.session_id.to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args([
                "fetch",
                "--base-url",
                &base,
                "--session",
                &id,
                "--what",
                "status",
            ])
            .args(["--partner-id", suki_ambient_sandbox::DEFAULT_PARTNER_ID])
            .env_remove("SUKI_TOKEN")
            .env(
                "SUKI_PARTNER_TOKEN",
                suki_ambient_sandbox::DEFAULT_PARTNER_TOKEN,
            )
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("status: completed"),
        "{}",
        stdout(&out)
    );
    // --partner-id without its token is a one-line error naming the variable.
    let out = Command::new(BIN)
        .args([
            "fetch",
            "--env",
            "staging",
            "--session",
            "s",
            "--partner-id",
            "p",
        ])
        .env_remove("SUKI_PARTNER_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("SUKI_PARTNER_TOKEN"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn no_secret_or_payload_in_cli_output() {
    let secret = "CLI-SECRET-MARKER";
    let body = br#"{"status":"success","session_id":"s","encounter_id":"e","additional_info":{"n":"CLI-PHI-MARKER"}}"#;
    let sig = sign_headers(secret, "1766122020941", body);
    let mut outputs = vec![
        run(
            &["sign", "--generated-at", "1766122020941"],
            Some(secret),
            body,
        ),
        run(
            &[
                "verify",
                "--explain",
                "--generated-at",
                "1766122020941",
                "--signature",
                &sig,
                "--now-ms",
                "1766122020941",
            ],
            Some(secret),
            b"{}",
        ),
        run(
            &[
                "verify",
                "--explain",
                "--json",
                "--generated-at",
                "1766122020941",
                "--signature",
                &"0".repeat(64),
            ],
            Some(secret),
            body,
        ),
        run(
            &["verify", "--generated-at", "1", "--signature", &sig],
            Some(secret),
            body,
        ),
        run(
            &[
                "send",
                "--url",
                "http://127.0.0.1:9/x",
                "--event",
                "completed",
            ],
            Some(secret),
            b"",
        ),
    ];
    outputs.push(run(
        &["sign", "--secret-file", "/nonexistent/CLI-SECRET-MARKER"],
        None,
        body,
    ));
    for out in outputs {
        let text = format!("{}{}", stdout(&out), stderr(&out));
        assert!(!text.contains("CLI-PHI-MARKER"), "{text}");
        // The secret file's *path* may be named in an error; the secret's value never is.
        assert!(
            !text
                .replace("/nonexistent/CLI-SECRET-MARKER", "")
                .contains(secret),
            "{text}"
        );
    }
}

#[test]
fn sandbox_refuses_the_environment_secret_unless_asked() {
    let out = run(
        &["sandbox", "--bind", "127.0.0.1:0"],
        Some("a-production-secret"),
        b"",
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("--use-env-secret"), "{err}");
    assert!(!err.contains("a-production-secret"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one-line error: {err}");
    let out = run(&["sandbox", "--bind", "127.0.0.1:0"], None, b"");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--secret-file"));
}

#[tokio::test(flavor = "multi_thread")]
async fn send_to_a_missing_route_is_not_delivered_and_prints_no_credentials() {
    let sandbox = suki_ambient_sandbox::Sandbox::builder()
        .start()
        .await
        .unwrap();
    let url = format!(
        "http://user:pw@{}/webhooks/suki?token=SECRET-QUERY",
        sandbox
            .base_url()
            .trim_start_matches("http://")
            .trim_end_matches('/')
    );
    let out = tokio::task::spawn_blocking(move || run(&["send", "--url", &url], Some("k"), b""))
        .await
        .unwrap();
    assert!(!out.status.success());
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        text.contains("not delivered") && text.contains("404"),
        "{text}"
    );
    assert!(
        !text.contains("SECRET-QUERY") && !text.contains("pw@"),
        "{text}"
    );
}

/// `inbox list --kind`: the sessions that ended without a note, by kind.
#[tokio::test]
async fn inbox_list_kind_shows_sessions_without_a_note() {
    use suki_ambient_core::{
        Bytes, SignedHeaders, UnixMillis, Verifier, WebhookEndpoint, WebhookSecret,
    };
    use suki_ambient_inbox::Inbox;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("inbox.db").display());
    let inbox = Inbox::connect(&url).await.unwrap();
    let endpoint = WebhookEndpoint::inbox(
        Verifier::builder().secret("s").build().unwrap(),
        inbox.clone(),
    );
    for event in [
        suki_ambient_core::testing::completed("ok-1", "enc"),
        suki_ambient_core::testing::failed("failed-1", "enc"),
        suki_ambient_core::testing::cancelled("cancelled-1", "enc"),
    ] {
        let body = event.to_vec();
        let headers =
            SignedHeaders::new(&WebhookSecret::from("s"), UnixMillis::now(), &body).to_header_map();
        assert_eq!(
            endpoint.handle(&headers, Bytes::from(body)).await.status,
            200
        );
    }
    let list = |kind: &str| {
        run(
            &["inbox", "--url", url.as_str(), "list", "--kind", kind],
            None,
            b"",
        )
    };
    let failed = list("failed");
    assert!(failed.status.success(), "{}", stderr(&failed));
    let text = stdout(&failed);
    assert!(
        text.contains("failed-1") && !text.contains("ok-1") && !text.contains("cancelled-1"),
        "{text}"
    );
    assert!(stdout(&list("cancelled")).contains("cancelled-1"));
    assert!(!stdout(&list("timed-out")).contains("-1"));
    assert!(
        !list("completed").status.success(),
        "only kinds without a note"
    );
}

/// `inbox status`: a destination the workers found down, with why, since when and how many
/// notes wait (and `destinations` in `--json`).
#[tokio::test]
async fn inbox_status_shows_a_destination_down() {
    use suki_ambient_core::UnixMillis;
    use suki_ambient_inbox::{SqliteStore, ops::DestinationDown, store::DeliveryQueue as _};
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("inbox.db").display());
    // What a worker records when the EHR's breaker opens.
    let store = SqliteStore::connect(&url).await.unwrap();
    let now = UnixMillis::now();
    store
        .destination_down(DestinationDown {
            name: "ehr:fhir.example",
            reason: "fhir_503_transient",
            now,
            next_probe: UnixMillis(now.0 + 20_000),
        })
        .await
        .unwrap();
    let out = run(&["inbox", "--url", url.as_str(), "status"], None, b"");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("DOWN     EHR fhir.example unreachable since")
            && text.contains("(fhir_503_transient")
            && text.contains("0 notes waiting, next probe in"),
        "{text}"
    );
    let out = run(
        &["inbox", "--url", url.as_str(), "--json", "status"],
        None,
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["destinations"][0]["name"], "ehr:fhir.example");
    assert_eq!(json["destinations"][0]["up"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_status_list_show_retry_and_purge() {
    use suki_ambient_core::{
        Bytes, HandlerError, SignedHeaders, UnixMillis, Verifier, WebhookEndpoint, WebhookEvent,
        WebhookSecret,
    };
    use suki_ambient_inbox::{Inbox, InboxMeta, InboxWorker, Permanent};
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("inbox.db").display());
    let inbox = Inbox::connect(&url).await.unwrap();
    let endpoint = WebhookEndpoint::inbox(
        Verifier::builder().secret("s").build().unwrap(),
        inbox.clone(),
    );
    for session in ["ok-1", "ok-2", "dead-1"] {
        let body = suki_ambient_core::testing::completed(session, "enc").to_vec();
        let headers =
            SignedHeaders::new(&WebhookSecret::from("s"), UnixMillis::now(), &body).to_header_map();
        assert_eq!(
            endpoint.handle(&headers, Bytes::from(body)).await.status,
            200
        );
    }
    let handler = |event: WebhookEvent, _meta: InboxMeta| async move {
        if event.session_id().map(|s| s.as_str()) == Some("dead-1") {
            return Err::<(), HandlerError>(Box::new(Permanent("unknown_provider")));
        }
        Ok(())
    };
    InboxWorker::builder(inbox.clone(), handler)
        .build()
        .drain(std::time::Duration::ZERO)
        .await
        .unwrap();

    let inbox_cmd = |args: &[&str]| {
        let mut all = vec!["inbox", "--url", url.as_str()];
        all.extend_from_slice(args);
        run(&all, None, b"")
    };
    let status = inbox_cmd(&["status"]);
    assert!(status.status.success(), "{}", stderr(&status));
    let text = stdout(&status);
    assert!(
        text.contains("done     2") && text.contains("dead     1"),
        "{text}"
    );
    let json = inbox_cmd(&["status", "--json"]);
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(
        (value["done"].as_u64(), value["dead"].as_u64()),
        (Some(2), Some(1))
    );

    let list = inbox_cmd(&["list", "--state", "dead"]);
    let text = stdout(&list);
    assert!(
        text.contains("dead-1") && text.contains("unknown_provider"),
        "{text}"
    );
    assert!(!text.contains("ok-1"), "{text}");
    let rows: serde_json::Value =
        serde_json::from_slice(&inbox_cmd(&["list", "--json"]).stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 3);
    let dead_id = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["state"] == "dead")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    // Never a body: no link, no status string of the payload.
    for output in [
        &list,
        &inbox_cmd(&["list", "--json"]),
        &inbox_cmd(&["show", &dead_id.to_string()]),
    ] {
        let text = stdout(output);
        assert!(
            !text.contains("_links") && !text.contains("href") && !text.contains("success"),
            "{text}"
        );
    }
    let show = stdout(&inbox_cmd(&["show", &dead_id.to_string()]));
    assert!(
        show.contains("dead-1/completed") && show.contains("unknown_provider"),
        "{show}"
    );
    let missing = inbox_cmd(&["show", "999999"]);
    assert!(!missing.status.success());
    assert_eq!(stderr(&missing).trim(), "error: no row 999999");

    let retried = inbox_cmd(&["retry", "--dead"]);
    assert_eq!(stdout(&retried).trim(), "1 row(s) due now");
    assert_eq!(inbox.status().await.unwrap().counts.pending, 1);
    assert!(
        !inbox_cmd(&["retry", "999999"]).status.success(),
        "retrying nothing fails"
    );

    let purged = inbox_cmd(&["purge", "--older-than", "0s"]);
    assert_eq!(stdout(&purged).trim(), "2 done row(s) purged");
    let bad = inbox_cmd(&["purge", "--older-than", "soon"]);
    assert!(!bad.status.success());
    let unsupported = run(&["inbox", "--url", "mysql://x", "status"], None, b"");
    assert!(
        stderr(&unsupported).contains("unsupported inbox URL"),
        "{}",
        stderr(&unsupported)
    );
}

/// The operators' commands: a visit's timeline, bulk retry by code with a dry run, replay,
/// discard, pause and resume, `reconcile expect`, and the audit log naming the OS user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_trace_controls_and_audit() {
    use suki_ambient_core::{HandlerError, UnixMillis, WebhookEvent};
    use suki_ambient_inbox::conformance::delivery;
    use suki_ambient_inbox::{Inbox, InboxMeta, InboxWorker, Permanent};
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("inbox.db").display());
    let inbox = Inbox::connect(&url).await.unwrap();
    let rows: Vec<_> = ["ok", "auth-1", "auth-2", "gone"]
        .iter()
        .map(|k| delivery(k))
        .collect();
    for row in rows {
        inbox.ingest(row).await.unwrap();
    }
    let handler = |event: WebhookEvent, _meta: InboxMeta| async move {
        match event.session_id().map(|s| s.as_str().to_owned()).as_deref() {
            Some("session-auth-1" | "session-auth-2") => {
                Err::<(), HandlerError>(Box::new(Permanent("fetch_contents_401_invalid_sdp_token")))
            }
            Some("session-gone") => {
                Err::<(), HandlerError>(Box::new(Permanent("fetch_contents_404")))
            }
            _ => Ok(()),
        }
    };
    InboxWorker::builder(inbox.clone(), handler)
        .build()
        .drain(std::time::Duration::ZERO)
        .await
        .unwrap();
    let inbox_cmd = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_suki-ambient"));
        cmd.args(["inbox", "--url", url.as_str()])
            .args(args)
            .env("SUKI_ACTOR", "alice")
            .env_remove("SUKI_WEBHOOK_SECRET");
        cmd.output().unwrap()
    };

    // Where is this visit's note?
    let trace = inbox_cmd(&["trace", "session-auth-1"]);
    assert!(trace.status.success(), "{}", stderr(&trace));
    let text = stdout(&trace);
    assert!(
        text.contains("received completed (webhook)")
            && text.contains("attempt 1 by")
            && text.contains("dead fetch_contents_401_invalid_sdp_token"),
        "{text}"
    );
    let by_encounter: serde_json::Value =
        serde_json::from_slice(&inbox_cmd(&["trace", "encounter", "--json"]).stdout).unwrap();
    assert_eq!(by_encounter["deliveries"].as_array().unwrap().len(), 4);
    let nothing = inbox_cmd(&["trace", "nobody"]);
    assert!(!nothing.status.success());
    assert_eq!(stdout(&nothing).trim(), "nothing known about nobody");

    // Bulk retry by code prefix, dry run first.
    let dry = inbox_cmd(&[
        "retry",
        "--dead",
        "--code",
        "fetch_contents_401",
        "--dry-run",
    ]);
    assert_eq!(
        stdout(&dry).trim(),
        "would retry 2 row(s) (dry run: nothing changed)"
    );
    assert_eq!(inbox.status().await.unwrap().counts.dead, 3);
    let retried = inbox_cmd(&[
        "retry",
        "--dead",
        "--code",
        "fetch_contents_401",
        "--since",
        "1h",
    ]);
    assert_eq!(stdout(&retried).trim(), "2 row(s) due now");
    assert!(
        !inbox_cmd(&["retry", "7", "--code", "x"]).status.success(),
        "--code goes with --dead"
    );

    // Discard the 404 with a reason; a second discard changes nothing and says so.
    let gone = inbox.trace("session-gone").await.unwrap().deliveries[0].id;
    let discarded = inbox_cmd(&["discard", &gone.to_string(), "--reason", "visit deleted"]);
    assert_eq!(stdout(&discarded).trim(), "1 row(s) discarded");
    let again = inbox_cmd(&["discard", &gone.to_string(), "--reason", "again"]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("only a dead or pending row"),
        "{}",
        stderr(&again)
    );

    // Replay what was processed lately (not the discarded row).
    let dry = inbox_cmd(&[
        "replay",
        "--since",
        "1h",
        "--kind",
        "completed",
        "--dry-run",
    ]);
    assert_eq!(
        stdout(&dry).trim(),
        "would replay 1 row(s) (dry run: nothing changed)"
    );
    let replayed = inbox_cmd(&["replay", "--since", "1h", "--json"]);
    let value: serde_json::Value = serde_json::from_slice(&replayed.stdout).unwrap();
    assert_eq!(value["replayed"], 1);
    assert!(
        !inbox_cmd(&["replay", "--since", "1h", "--kind", "sideways"])
            .status
            .success()
    );

    // Pause and resume.
    let paused = inbox_cmd(&["pause", "--reason", "EHR maintenance"]);
    assert!(
        stdout(&paused).starts_with("paused the inbox"),
        "{}",
        stdout(&paused)
    );
    let status = stdout(&inbox_cmd(&["status"]));
    assert!(
        status.contains("PAUSED   all kinds by alice") && status.contains("EHR maintenance"),
        "{status}"
    );
    assert_eq!(
        stdout(&inbox_cmd(&["pause"])).trim(),
        "the inbox was already paused"
    );
    assert_eq!(stdout(&inbox_cmd(&["resume"])).trim(), "resumed the inbox");

    // An expected session, from the command line.
    let expect = Command::new(env!("CARGO_BIN_EXE_suki-ambient"))
        .args([
            "reconcile",
            "expect",
            "--url",
            &url,
            "--session",
            "s-cli",
            "--encounter",
            "e-cli",
            "--ended-at",
            "10m",
        ])
        .env("SUKI_ACTOR", "alice")
        .output()
        .unwrap();
    assert!(expect.status.success(), "{}", stderr(&expect));
    assert!(
        stdout(&expect).starts_with("expecting session s-cli"),
        "{}",
        stdout(&expect)
    );
    let record = inbox
        .store()
        .expectation(&suki_ambient_core::SessionId::from("s-cli"))
        .await
        .unwrap()
        .expect("registered");
    assert_eq!(record.encounter_id.as_str(), "e-cli");
    let text = stdout(&inbox_cmd(&["trace", "e-cli"]));
    assert!(
        text.contains("session s-cli ended (expected by the reconciler)"),
        "{text}"
    );

    // Every action, by whom, from where.
    let audit: serde_json::Value =
        serde_json::from_slice(&inbox_cmd(&["audit", "--json"]).stdout).unwrap();
    let actions: Vec<(String, String, u64)> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap().to_owned(),
                e["action"].as_str().unwrap().to_owned(),
                e["rows"].as_u64().unwrap(),
            )
        })
        .collect();
    let expected: Vec<(String, String, u64)> = [
        ("view_timeline", 0),
        ("view_timeline", 0),
        ("view_timeline", 0),
        ("retry", 2),
        ("discard", 1),
        ("discard", 0),
        ("replay", 1),
        ("pause", 1),
        ("pause", 0),
        ("resume", 1),
        ("expect", 1),
        ("view_timeline", 0),
    ]
    .iter()
    .rev() // newest first
    .map(|(a, n)| ("alice".to_owned(), (*a).to_owned(), *n))
    .collect();
    assert_eq!(actions, expected);
    // A limit keeps the newest, and says that older ones exist.
    let limited = inbox_cmd(&["audit", "--limit", "2"]);
    let table = stdout(&limited);
    assert!(
        table.contains("view_timeline") && table.contains("expect") && !table.contains("retry"),
        "{table}"
    );
    assert!(
        stderr(&limited).contains("older entries exist"),
        "{}",
        stderr(&limited)
    );
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["origin"].as_str().unwrap().starts_with("cli@")),
        "{audit}"
    );
    let table = stdout(&inbox_cmd(&["audit", "--since", "1h"]));
    assert!(
        table.contains("alice") && table.contains("visit deleted"),
        "{table}"
    );
    let verified = inbox_cmd(&["audit", "--verify"]);
    assert!(verified.status.success(), "{}", stderr(&verified));
    assert!(
        stdout(&verified).starts_with("audit chain intact: 12 entries"),
        "{}",
        stdout(&verified)
    );

    // No actor, no action: the audit log must name who acted (reading needs no name).
    let nameless = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_suki-ambient"))
            .args(["inbox", "--url", url.as_str()])
            .args(args)
            .env_remove("SUKI_ACTOR")
            .output()
            .unwrap()
    };
    let refused = nameless(&["pause", "--reason", "x"]);
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("--actor"), "{}", stderr(&refused));
    assert!(nameless(&["status"]).status.success());
    let named = nameless(&["--actor", "bob", "resume"]);
    assert!(named.status.success(), "{}", stderr(&named));
    let last = inbox.audit(UnixMillis(0), 100).await.unwrap();
    assert_eq!(last.first().map(|e| e.actor.as_str()), Some("bob"));
}

/// `inbox rekey` re-seals bodies under the first key of SUKI_INBOX_KEYS; `status` shows the
/// bodies by key; without the variable, one clear line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_rekey_and_status_by_key() {
    use base64::Engine as _;
    use suki_ambient_inbox::conformance::delivery;
    use suki_ambient_inbox::{BodyKey, Inbox, Keys};
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("inbox.db").display());
    let b64 = |byte: u8| base64::engine::general_purpose::STANDARD.encode([byte; 32]);
    let old = Inbox::connect(&url)
        .await
        .unwrap()
        .with_keys(Keys::parse(&b64(1)).unwrap());
    for k in ["a", "b", "c"] {
        old.ingest(delivery(k)).await.unwrap();
    }
    let new_id = BodyKey::new([2; 32]).id().to_owned();
    let inbox_cmd = |args: &[&str], keys: Option<String>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_suki-ambient"));
        cmd.args(["inbox", "--url", url.as_str()])
            .args(args)
            .env("SUKI_ACTOR", "tester");
        match keys {
            Some(keys) => cmd.env("SUKI_INBOX_KEYS", keys),
            None => cmd.env_remove("SUKI_INBOX_KEYS"),
        };
        cmd.output().unwrap()
    };
    let missing = inbox_cmd(&["rekey"], None);
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("SUKI_INBOX_KEYS"),
        "{}",
        stderr(&missing)
    );
    let bad = inbox_cmd(&["rekey"], Some("not-a-key".into()));
    assert!(stderr(&bad).contains("not base64"), "{}", stderr(&bad));
    assert!(
        !stderr(&bad).contains("not-a-key"),
        "no key material in errors"
    );
    let rekey = inbox_cmd(
        &["rekey", "--batch", "2"],
        Some(format!("{},{}", b64(2), b64(1))),
    );
    assert!(rekey.status.success(), "{}", stderr(&rekey));
    assert!(
        stdout(&rekey).starts_with("3 row(s) re-sealed under the current key"),
        "{}",
        stdout(&rekey)
    );
    let status = stdout(&inbox_cmd(&["status"], None));
    assert!(
        status.contains(&format!("bodies encrypted under key {new_id}: 3")),
        "{status}"
    );
    let b1 = b64(1);
    let b2 = b64(2);
    for out in [&rekey, &inbox_cmd(&["status", "--json"], None)] {
        let text = format!("{}{}", stdout(out), stderr(out));
        assert!(
            !text.contains(&b1) && !text.contains(&b2),
            "no key in output"
        );
    }
}

/// Text from outside (a session id, an error code) cannot drive the terminal: `inbox list` and
/// `show` print control characters escaped, and the state column stays aligned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_output_escapes_control_characters() {
    use suki_ambient_inbox::Inbox;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("inbox.db").display());
    let inbox = Inbox::connect(&url).await.unwrap();
    let mut row = suki_ambient_inbox::conformance::delivery("evil");
    row.session_id = Some(suki_ambient_core::SessionId::from(
        "evil\u{1b}]0;pwned\u{7}\u{1b}[2J",
    ));
    row.dedup_key = "evil\u{1b}[2J/completed".to_owned();
    inbox.ingest(row).await.unwrap();
    let list = run(&["inbox", "--url", &url, "list"], None, b"");
    let show = run(&["inbox", "--url", &url, "show", "1"], None, b"");
    for out in [&list, &show] {
        assert!(out.status.success(), "{}", stderr(out));
        let text = stdout(out);
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{7}'),
            "{text:?}"
        );
        assert!(text.contains("evil\\u{1b}]0;pwned"), "{text}");
    }
    let lines: Vec<String> = stdout(&list).lines().map(str::to_owned).collect();
    assert_eq!(
        lines[0].find("STATE"),
        lines[1].find("pending"),
        "the state column is aligned: {lines:?}"
    );
}

/// The CLI never invents an inbox: a mistyped path is an error naming it, and creates no file;
/// a file that is not an inbox is left alone; `init` is the one command that creates one.
#[test]
fn the_cli_opens_existing_inboxes_only() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("typo.db");
    let url = format!("sqlite://{}", typo.display());
    let reconcile = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .env("SUKI_TOKEN", "a-token")
            .env_remove("SUKI_INBOX_URL")
            .output()
            .unwrap()
    };
    for args in [
        &["inbox", "--url", url.as_str(), "status"][..],
        &["inbox", "--url", url.as_str(), "list"][..],
        &[
            "reconcile",
            "--url",
            url.as_str(),
            "--base-url",
            "http://127.0.0.1:9",
        ][..],
    ] {
        let out = if args[0] == "reconcile" {
            reconcile(args)
        } else {
            run(args, None, b"")
        };
        assert!(!out.status.success(), "{args:?}");
        assert!(
            stderr(&out).contains(&format!("no inbox at {url}")),
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(!typo.exists(), "{args:?} created {}", typo.display());
    }
    // Some other SQLite database: not an inbox, and not turned into one.
    let other = dir.path().join("other.db");
    std::fs::write(&other, b"").unwrap();
    let other_url = format!("sqlite://{}", other.display());
    let out = run(&["inbox", "--url", &other_url, "status"], None, b"");
    assert!(stderr(&out).contains("no inbox at"), "{}", stderr(&out));
    assert_eq!(
        std::fs::metadata(&other).unwrap().len(),
        0,
        "left as it was"
    );

    let init = run(&["inbox", "--url", &url, "init"], None, b"");
    assert!(init.status.success(), "{}", stderr(&init));
    assert_eq!(stdout(&init).trim(), "inbox ready (0 row(s))");
    let status = run(&["inbox", "--url", &url, "status"], None, b"");
    assert!(status.status.success(), "{}", stderr(&status));
    assert!(
        stdout(&status).starts_with("pending  0"),
        "{}",
        stdout(&status)
    );
}

#[test]
fn inbox_migrations_print_the_sql_in_order_without_an_inbox() {
    for (args, dialect) in [
        (
            &["inbox", "migrations", "--print"][..],
            suki_ambient_inbox::store::Dialect::Sqlite,
        ),
        (
            &["inbox", "migrations", "--print", "--postgres"][..],
            suki_ambient_inbox::store::Dialect::Postgres,
        ),
    ] {
        let out = run(args, None, b"");
        assert!(out.status.success(), "{}", stderr(&out));
        let text = stdout(&out);
        let mut at = 0;
        for m in suki_ambient_inbox::store::migrations(dialect) {
            let header = format!(
                "-- suki-ambient-inbox {} (sha256 {})",
                m.file_name(),
                m.checksum()
            );
            let found = text[at..]
                .find(&header)
                .unwrap_or_else(|| panic!("{header}"));
            at += found + header.len();
            assert!(
                text[at..].trim_start().starts_with(m.sql.trim()),
                "{}",
                m.file_name()
            );
        }
        assert!(!text.contains("_sqlx_migrations"));
    }
    let out = run(&["inbox", "migrations", "--json"], None, b"");
    let list: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(list[0]["file"], "0001_deliveries.sql");
    let out = run(&["inbox", "status"], None, b"");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--url or SUKI_INBOX_URL"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_recovers_a_lost_webhook_with_a_line_per_session_on_a_terminal() {
    use suki_ambient_core::UnixMillis;
    use suki_ambient_inbox::{ExpectedSession, Inbox, Reconciler, ops::Resolution};
    use suki_ambient_sandbox::{Sandbox, WebhookFault};
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("inbox.db").display());
    let inbox = Inbox::connect(&url).await.unwrap();
    let sandbox = Sandbox::builder().start().await.unwrap();
    sandbox.inject_webhook(WebhookFault::lose());
    sandbox.set_webhook_url(Some("http://127.0.0.1:9/unused".into()));
    let client = suki_ambient_client::AmbientClient::builder()
        .base_url(sandbox.base_url())
        .token(sandbox.issue_token(None))
        .build()
        .unwrap();
    // The integrator's side: two sessions expected; one ends and its webhook is lost, the other
    // is still running.
    let reconciler = Reconciler::builder(client, inbox.clone()).build();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let session = sandbox.create_session(None);
        reconciler
            .register(ExpectedSession::ambient(
                session.session_id.clone(),
                session.encounter_id.clone(),
                UnixMillis::now(),
            ))
            .await
            .unwrap();
        ids.push(session.session_id);
    }
    sandbox.complete(&ids[0]).await.unwrap();

    let token = sandbox.issue_token(None);
    let args = [
        BIN,
        "reconcile",
        "--url",
        url.as_str(),
        "--since",
        "2h",
        "--base-url",
        sandbox.base_url(),
    ];
    // On a terminal (a pseudo-terminal from `script`): a line per session, then the summary.
    let line = args
        .iter()
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let out = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env("SUKI_TOKEN", &token)
        .env("SUKI_ACTOR", "tester")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!("{}  recovered (completed)", ids[0])),
        "{text}"
    );
    assert!(
        text.contains(&format!("{}  not ended yet (running)", ids[1])),
        "{text}"
    );
    assert!(
        text.contains(
            "checked 2: 1 recovered, 0 already in the inbox, 1 not ended yet, 0 given up"
        ),
        "{text}"
    );
    assert!(!text.contains(&token), "no token in the output");
    let record = inbox.store().expectation(&ids[0]).await.unwrap().unwrap();
    assert_eq!(record.resolution, Some(Resolution::Poll));

    // Not a terminal: the summary only; --json for scripts. Nothing left to recover.
    let mut cmd = Command::new(BIN);
    cmd.args(&args[1..])
        .arg("--json")
        .env("SUKI_TOKEN", &token)
        .env("SUKI_ACTOR", "tester");
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (
            value["checked"].as_u64(),
            value["recovered"].as_u64(),
            value["not_ended"].as_u64()
        ),
        (Some(1), Some(0), Some(1))
    );
    // Without a token: one clear line.
    let out = run(&args[1..], None, b"");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no API token"), "{}", stderr(&out));
    sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_console_serves_only_with_the_token() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("inbox.db").display());
    suki_ambient_inbox::Inbox::connect(&url).await.unwrap();
    let mut child = Command::new(BIN)
        .args(["inbox", "--url", &url, "console", "--bind", "127.0.0.1:0"])
        .env("SUKI_CONSOLE_TOKEN", "a-console-token-for-tests")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let address = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap()
        .to_owned();
    let anonymous = reqwest::get(&address).await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let page = reqwest::Client::new()
        .get(&address)
        .bearer_auth("a-console-token-for-tests")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Dead letters"));
    // An idle connection and a half-sent head are closed by the server (they stayed open
    // with `axum::serve`, and enough of them locked a signed-in person out).
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = address
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let mut idle = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let mut half = tokio::net::TcpStream::connect(&addr).await.unwrap();
        half.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        for stream in [&mut idle, &mut half] {
            let mut buf = Vec::new();
            let closed = tokio::time::timeout(
                std::time::Duration::from_secs(15),
                stream.read_to_end(&mut buf),
            )
            .await;
            assert!(closed.is_ok(), "the console kept a slow connection open");
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    // Without a token (or a short one): one clear line, no server.
    for token in [None, Some("short")] {
        let mut cmd = Command::new(BIN);
        cmd.args(["inbox", "--url", &url, "console", "--bind", "127.0.0.1:0"])
            .env_remove("SUKI_CONSOLE_TOKEN");
        if let Some(token) = token {
            cmd.env("SUKI_CONSOLE_TOKEN", token);
        }
        let out = cmd.output().unwrap();
        assert!(!out.status.success());
        assert!(
            stderr(&out).contains("SUKI_CONSOLE_TOKEN") && stderr(&out).contains("16 characters"),
            "{}",
            stderr(&out)
        );
    }
}

#[test]
fn fhir_bundle_maps_the_documented_fixtures_offline() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/fixtures/api");
    let content = format!("{root}/session-content.json");
    let structured = format!("{root}/session-structured-data.json");
    let args = [
        "fhir",
        "bundle",
        "--content",
        &content,
        "--structured-data",
        &structured,
        "--session",
        "s-cli-1",
        "--patient",
        "Patient/p1",
        "--encounter",
        "Encounter/e1",
        "--at",
        "2026-11-30T10:00:00Z",
        "--note-type",
        "11488-4",
        "--doc-status",
        "final",
    ];
    let out = run(&args, None, b"");
    assert!(out.status.success(), "{}", stderr(&out));
    let bundle: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    assert_eq!(bundle["type"], "transaction");
    let doc = &bundle["entry"][0]["resource"];
    assert_eq!(doc["docStatus"], "final");
    assert_eq!(doc["type"]["coding"][0]["display"], "Consult note");
    assert_eq!(doc["date"], "2026-11-30T10:00:00.000Z");
    let condition = bundle["entry"][2]["request"]["ifNoneExist"]
        .as_str()
        .expect("ifNoneExist");
    assert!(
        condition.starts_with("identifier=urn:suki:session|s-cli-1/condition/")
            && condition.len() == "identifier=urn:suki:session|s-cli-1/condition/".len() + 12,
        "{condition}"
    );
    // The same input gives the same bytes: a re-post creates nothing.
    assert_eq!(stdout(&run(&args, None, b"")), stdout(&out));

    let bad = run(
        &[
            "fhir",
            "bundle",
            "--content",
            &content,
            "--session",
            "s",
            "--patient",
            "p1",
        ],
        None,
        b"",
    );
    assert!(!bad.status.success());
    assert_eq!(
        stderr(&bad).trim(),
        "error: --patient: not a FHIR reference: not Type/id"
    );
    let status = format!("{root}/session-status.json");
    let empty = run(
        &[
            "fhir",
            "bundle",
            "--content",
            &status,
            "--session",
            "s",
            "--patient",
            "Patient/1",
        ],
        None,
        b"",
    );
    assert!(!empty.status.success());
    assert_eq!(
        stderr(&empty).trim(),
        "error: the session's note has no section with text"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fhir_post_writes_a_session_once() {
    let sandbox = suki_ambient_sandbox::Sandbox::builder()
        .start()
        .await
        .expect("sandbox");
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/fixtures/api");
    let args: Vec<String> = [
        "fhir",
        "post",
        "--fhir-url",
        &sandbox.fhir_base_url(),
        "--content",
        &format!("{root}/session-content.json"),
        "--structured-data",
        &format!("{root}/session-structured-data.json"),
        "--session",
        "s-cli-post",
        "--patient",
        "Patient/p1",
        "--at",
        "2026-11-30T10:00:00Z",
    ]
    .map(str::to_owned)
    .to_vec();
    let post = |token: Option<String>, args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            let mut cmd = Command::new(BIN);
            cmd.args(&args).env_remove("SUKI_FHIR_TOKEN");
            if let Some(token) = token {
                cmd.env("SUKI_FHIR_TOKEN", token);
            }
            cmd.output().expect("run")
        })
    };
    let token = sandbox.fhir_token().to_owned();
    let first = post(Some(token.clone()), args.clone()).await.expect("join");
    assert!(first.status.success(), "{}", stderr(&first));
    assert_eq!(last_line(&first), "4 created, 0 already there");
    assert!(
        stdout(&first).contains("created DocumentReference"),
        "{}",
        stdout(&first)
    );
    let again = post(Some(token.clone()), args.clone()).await.expect("join");
    assert_eq!(last_line(&again), "0 created, 4 already there");
    assert_eq!(sandbox.fhir_resources(None).len(), 4);

    let missing = post(None, args.clone()).await.expect("join");
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("SUKI_FHIR_TOKEN"),
        "{}",
        stderr(&missing)
    );
    let refused = post(Some("not-the-token".into()), args)
        .await
        .expect("join");
    assert!(!refused.status.success());
    assert_eq!(
        stderr(&refused).trim(),
        "error: the FHIR server refused the credentials (401)"
    );
    assert!(!stderr(&refused).contains("not-the-token"));
    sandbox.shutdown().await;
}

/// `fhir keygen` makes a SMART key (never over an existing file) whose JWKS `fhir jwks` prints
/// again; `fhir capabilities` explains the per-resource plan of an EHR without transactions;
/// `fhir post --strategy per-resource` with SMART writes the session once. The EHR is the
/// Medplum stand-in (`tests/medplum`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node.js and tests/medplum's packages (npm ci --prefix tests/medplum)"]
async fn fhir_smart_keys_capabilities_and_a_per_resource_post() {
    let dir = tempfile::tempdir().expect("dir");
    let key = dir.path().join("ehr.pem");
    let key_arg = key.display().to_string();
    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            Command::new(BIN)
                .args(&args)
                .env_remove("SUKI_FHIR_TOKEN")
                .output()
                .expect("run")
        })
    };
    let args = |list: &[&str]| list.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>();
    let made = run(args(&[
        "fhir", "keygen", "--kid", "cli-key", "--out", &key_arg,
    ]))
    .await
    .expect("join");
    assert!(made.status.success(), "{}", stderr(&made));
    let jwks = stdout(&made);
    assert!(
        jwks.contains("\"kid\":\"cli-key\"") && jwks.contains("ES384"),
        "{jwks}"
    );
    assert!(!jwks.contains("PRIVATE"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).expect("key").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let again = run(args(&["fhir", "keygen", "--kid", "x", "--out", &key_arg]))
        .await
        .expect("join");
    assert!(!again.status.success(), "never overwritten");
    let printed = run(args(&[
        "fhir", "jwks", "--key", &key_arg, "--kid", "cli-key",
    ]))
    .await
    .expect("join");
    assert_eq!(stdout(&printed).trim(), jwks.trim());

    let ehr = medplum_ehr::Medplum::start(
        medplum_ehr::Options::default()
            .transactions(false)
            .smart_client("cli-client", jwks.trim()),
    );
    let base = ehr.base_url().to_owned();
    let caps = run(args(&["fhir", "capabilities", "--base-url", &base]))
        .await
        .expect("join");
    assert!(caps.status.success(), "{}", stderr(&caps));
    let text = stdout(&caps);
    assert!(text.contains("transactions no"), "{text}");
    assert!(text.contains("a create per resource"), "{text}");
    assert!(
        text.contains("DocumentReference  POST with If-None-Exist"),
        "{text}"
    );

    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/fixtures/api");
    let content = format!("{root}/session-content.json");
    let post = args(&[
        "fhir",
        "post",
        "--fhir-url",
        &base,
        "--strategy",
        "per-resource",
        "--smart-client-id",
        "cli-client",
        "--smart-kid",
        "cli-key",
        "--smart-key",
        &key_arg,
        "--content",
        &content,
        "--session",
        "s-cli-smart",
        "--patient",
        "Patient/p1",
        "--at",
        "2026-11-30T10:00:00Z",
    ]);
    let first = run(post.clone()).await.expect("join");
    assert!(first.status.success(), "{}", stderr(&first));
    assert_eq!(last_line(&first), "3 created, 0 already there");
    let second = run(post.clone()).await.expect("join");
    assert_eq!(last_line(&second), "0 created, 3 already there");
    assert_eq!(ehr.resources(None).await.len(), 3);
    assert_eq!(ehr.tokens_issued().await, 2, "one token per run");

    // The same session for another patient: refused, then superseded on request.
    let moved: Vec<String> = post
        .iter()
        .map(|a| {
            if a == "Patient/p1" {
                "Patient/p2".to_owned()
            } else {
                a.clone()
            }
        })
        .collect();
    let refused = run(moved.clone()).await.expect("join");
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("different resources under this session's identifiers"),
        "{}",
        stderr(&refused)
    );
    let mut supersede = moved;
    supersede.extend(["--on-conflict".to_owned(), "supersede".to_owned()]);
    let corrected = run(supersede).await.expect("join");
    assert!(corrected.status.success(), "{}", stderr(&corrected));
    assert!(
        stdout(&corrected).contains("retired DocumentReference/"),
        "{}",
        stdout(&corrected)
    );

    // The onboarding probe, with the same SMART client: a labelled, entered-in-error note.
    let check = run(args(&[
        "fhir",
        "check",
        "--fhir-url",
        &base,
        "--patient",
        "Patient/probe-1",
        "--smart-client-id",
        "cli-client",
        "--smart-kid",
        "cli-key",
        "--smart-key",
        &key_arg,
    ]))
    .await
    .expect("join");
    assert!(check.status.success(), "{}", stderr(&check));
    let text = stdout(&check);
    assert!(
        text.contains("honours If-None-Exist:             yes")
            && text.contains("keeps identifiers (patient search): yes")
            && text.contains("keeps the note:                    inline"),
        "{text}"
    );
}
