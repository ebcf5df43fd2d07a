//! The `inbox_receiver` example killed with SIGKILL mid-load and restarted on the same inbox:
//! every delivery it answered 200 is processed at least once, and the duplicates of a handler
//! run are bounded by the kills.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use suki_ambient::sandbox::{Fault, Sandbox, SandboxHandle};

const SECRET: &str = "inbox-example-secret";
/// The worker's default concurrency: at most this many handler runs can be cut off by a kill
/// after printing and before their row is marked done.
const CONCURRENCY: usize = 4;

struct Receiver {
    child: Child,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the receiver on `inbox_url`; its stdout lines go to `lines`. Returns it and its URL.
fn start(
    sandbox: &SandboxHandle,
    inbox_url: &str,
    lines: &mpsc::Sender<String>,
) -> (Receiver, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_inbox_receiver"))
        .env("SUKI_WEBHOOK_SECRET", SECRET)
        .env("SUKI_TOKEN", sandbox.issue_token(None))
        .env("SUKI_API_BASE_URL", sandbox.base_url())
        .env("SUKI_INBOX_URL", inbox_url)
        // Bodies sealed at rest (32 bytes of 0x01, base64): the restarted run opens what the
        // killed one sealed.
        .env("SUKI_INBOX_KEYS", format!("{}AQE=", "AQEB".repeat(10)))
        .env("BIND", "127.0.0.1:0")
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start inbox_receiver");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = stdout.next().expect("a first line").expect("utf-8");
    let url = first
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_owned();
    let lines = lines.clone();
    std::thread::spawn(move || {
        for line in stdout.map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    (Receiver { child }, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_and_restarted_it_processes_everything_it_acknowledged() {
    let dir = tempfile::tempdir().expect("dir");
    let inbox_url = format!("sqlite://{}", dir.path().join("inbox.db").display());
    let sandbox = Sandbox::builder()
        .webhook_secret(SECRET)
        .start()
        .await
        .expect("sandbox");
    // Slow API answers, so that kills land while the worker is fetching.
    sandbox.inject(Fault::latency(Duration::from_millis(20)).share(1.0));
    let (tx, rx) = mpsc::channel();

    let mut acknowledged = Vec::new();
    let mut kills = 0;
    for round in 0..4 {
        let (receiver, url) = start(&sandbox, &inbox_url, &tx);
        sandbox.set_webhook_url(Some(url));
        for _ in 0..15 {
            let session = sandbox.create_session(None);
            let delivery = sandbox
                .complete(&session.session_id)
                .await
                .expect("deliver");
            assert_eq!(delivery.status, 200, "{}", delivery.body);
            acknowledged.push(session.session_id.to_string());
        }
        if round < 3 {
            // SIGKILL, with the worker still busy with what was just acknowledged.
            drop(receiver);
            kills += 1;
        } else {
            // The last run finishes everything; wait for it, then stop it.
            let printed = collect(&rx, &acknowledged, Duration::from_secs(60));
            drop(receiver);
            let missing: Vec<_> = acknowledged
                .iter()
                .filter(|s| !printed.contains_key(*s))
                .collect();
            assert!(
                missing.is_empty(),
                "acknowledged but never processed: {missing:?}"
            );
            let duplicates: usize = printed.values().map(|n| n - 1).sum();
            assert!(
                duplicates <= kills * CONCURRENCY,
                "{duplicates} duplicate runs after {kills} kills"
            );
        }
    }
    sandbox.shutdown().await;
}

/// Reads `processed <session> completed` lines until every session in `expected` was seen or
/// `limit` passed; how often each session was processed.
fn collect(
    rx: &mpsc::Receiver<String>,
    expected: &[String],
    limit: Duration,
) -> HashMap<String, usize> {
    let deadline = Instant::now() + limit;
    let mut printed: HashMap<String, usize> = HashMap::new();
    while expected.iter().any(|s| !printed.contains_key(s)) {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            break;
        };
        let mut parts = line.split(' ');
        assert_eq!(parts.next(), Some("processed"), "unexpected line {line:?}");
        let session = parts.next().expect("a session id").to_owned();
        assert_eq!(parts.next(), Some("completed"), "{line:?}");
        *printed.entry(session).or_default() += 1;
    }
    // Lines from earlier runs that were already in the channel are counted too: drain the rest.
    while let Ok(line) = rx.try_recv() {
        if let Some(session) = line.split(' ').nth(1) {
            *printed.entry(session.to_owned()).or_default() += 1;
        }
    }
    printed
}
