//! The console in a real browser: headless Chromium (driven through chromedriver) signs in,
//! sees the seeded inbox, a screenshot is taken, the retry button of a dead row is clicked and
//! the row goes back to pending. Without the token nothing is served.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{ClientBuilder, Locator};
use suki_ambient_core::{HandlerError, UnixMillis, WebhookEvent};
use suki_ambient_inbox::conformance::{delivery, expected};
use suki_ambient_inbox::{
    Inbox, InboxMeta, InboxWorker, Permanent, State, ops::CheckOutcome, ops::Source,
    store::DeliveryQueue as _, store::Expectations as _,
};

fn sqlite_url(dir: &std::path::Path, name: &str) -> String {
    format!("sqlite://{}", dir.join(name).display())
}

const TOKEN: &str = "console-test-token-6f1c2a";
const VIEWER_TOKEN: &str = "console-viewer-token-93be07";

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A seeded inbox: three done rows (one recovered by a poll), two dead ones, one waiting for
/// its retry behind 300 new pending rows; five expected sessions.
async fn seeded(dir: &std::path::Path) -> Inbox {
    let inbox = Inbox::connect(&sqlite_url(dir, "inbox.db"))
        .await
        .expect("inbox");
    let now = UnixMillis::now();
    // The reconciler's side: five sessions expected; two webhooks arrive, one is recovered by a
    // poll, one is still awaited, one was given up.
    // Seeded from outside, through a store of its own on the same file.
    let store = suki_ambient_inbox::SqliteStore::connect(&sqlite_url(dir, "inbox.db"))
        .await
        .expect("store");
    for key in ["ok-1", "ok-2", "lost-1", "waiting-1", "quiet-1"] {
        let next_check = if key == "quiet-1" {
            now
        } else {
            UnixMillis(now.0 + 3_600_000)
        };
        store
            .register(suki_ambient_inbox::store::NewExpectation {
                expected: &expected(key),
                first_check: next_check,
                now,
                context: None,
            })
            .await
            .expect("expect");
    }
    let quiet = store
        .claim_expectations(suki_ambient_inbox::store::ClaimRequest {
            owner: "seed",
            now,
            lease: Duration::from_secs(60),
            limit: 10,
            paused: &[],
        })
        .await
        .expect("claim");
    assert_eq!(quiet.len(), 1);
    let gave_up = CheckOutcome::GaveUp {
        status: "running".to_owned(),
    };
    assert_eq!(
        store
            .finish_checks(
                now,
                &[suki_ambient_inbox::store::FinishedCheck {
                    lease: quiet[0].lease(),
                    outcome: gave_up,
                }]
            )
            .await
            .expect("finish"),
        [true]
    );
    let rows: Vec<_> = ["ok-1", "ok-2", "dead-1", "dead-2", "flaky-1", "lost-1"]
        .iter()
        .map(|key| {
            let mut d = delivery(key);
            d.received_at = now;
            d.generated_at = now;
            if *key == "lost-1" {
                d.source = Source::Poll;
            }
            d
        })
        .collect();
    store.insert(&rows).await.expect("insert");
    // A session Suki made no note for (it failed): counted on the page.
    let mut no_note = delivery("nonote-1");
    no_note.kind = suki_ambient_core::EventKind::Failed;
    no_note.received_at = now;
    no_note.body = suki_ambient_core::testing::failed("session-nonote-1", "encounter")
        .to_vec()
        .into();
    store.insert(&[no_note]).await.expect("insert");
    let handler = |event: WebhookEvent, _meta: InboxMeta| async move {
        let id = event
            .session_id()
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default();
        if id.starts_with("session-dead") {
            return Err::<(), HandlerError>(Box::new(Permanent("unknown_provider")));
        }
        if id.starts_with("session-flaky") {
            return Err::<(), HandlerError>("upstream timeout".into());
        }
        Ok(())
    };
    InboxWorker::builder(inbox.clone(), handler)
        .backoff(Duration::from_secs(600), Duration::from_secs(1800))
        .build()
        .drain(Duration::ZERO)
        .await
        .expect("drain");
    // 300 new deliveries arrive after them: the retrying row must still show.
    let backlog: Vec<_> = (0..300)
        .map(|i| {
            let mut d = delivery(&format!("new-{i}"));
            d.received_at = now;
            d
        })
        .collect();
    store.insert(&backlog).await.expect("insert");
    inbox
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromedriver (bash .ci/run installs them)"]
async fn the_console_in_headless_chromium_shows_the_inbox_and_retries_a_dead_row() {
    let dir = tempfile::tempdir().expect("dir");
    let inbox = seeded(dir.path()).await;
    let counts = inbox.status().await.expect("status").counts;
    assert_eq!((counts.done, counts.dead, counts.pending), (4, 2, 301));
    let expectations = inbox.store().expectation_counts().await.expect("counts");
    assert_eq!(
        (
            expectations.expected,
            expectations.webhook,
            expectations.poll,
            expectations.open,
            expectations.gave_up
        ),
        (5, 2, 1, 1, 1)
    );
    let dead_id = inbox.list(Some(State::Dead), 10).await.expect("list")[0].id;

    let (base, server) = serve_console(inbox.clone()).await;

    // Without the token: the login form, no data, and no state change.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http");
    let anonymous = http.get(base.clone()).send().await.expect("get");
    assert_eq!(anonymous.status(), 401);
    let csp = anonymous.headers()["content-security-policy"]
        .to_str()
        .expect("csp")
        .to_owned();
    assert!(
        csp.starts_with("default-src 'none'") && !csp.contains("script-src"),
        "{csp}"
    );
    let text = anonymous.text().await.expect("body");
    assert!(
        text.contains("Console token") && !text.contains("session-dead"),
        "{text}"
    );
    // A forged POST without a sign-in is refused before anything else looks at it.
    let forged = http
        .post(format!("{base}/retry/{dead_id}"))
        .form(&[("csrf", "x")])
        .send()
        .await
        .expect("post");
    assert_eq!(forged.status(), 401);
    assert_eq!(
        inbox.get(dead_id).await.expect("get").expect("row").state,
        State::Dead
    );
    // A bearer token opens it (for scripts); a wrong one does not.
    let wrong = http
        .get(base.clone())
        .bearer_auth("nope")
        .send()
        .await
        .expect("get");
    assert_eq!(wrong.status(), 401);
    let page = http
        .get(base.clone())
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("get");
    assert_eq!(page.status(), 200);
    let text = page.text().await.expect("body");
    assert!(
        text.contains("<svg") && text.contains("unknown_provider"),
        "{text}"
    );
    // The top line, and the retrying row behind the backlog of new ones.
    assert!(
        text.contains("<b>Degraded</b>: 2 dead letter(s) need a person; 1 row(s) being retried; 1 expected session(s) given up"),
        "{text}"
    );
    assert!(
        text.contains("session-flaky-1") && text.contains("handler_failed"),
        "{text}"
    );
    assert!(!text.contains("session-new-1"), "new rows are not stuck");
    assert!(
        text.contains("<b class=\"bad\">1</b><span>sessions without a note (24 h)</span>"),
        "{text}"
    );
    assert!(
        !text.contains("success") && !text.contains("encounter\""),
        "never a body: {text}"
    );

    // The browser.
    let (driver, c) = browser().await;
    sign_in(&c, &base, TOKEN).await;
    let source = c.source().await.expect("source");
    assert!(
        source.contains("session-dead-1") && source.contains("Retry all dead"),
        "{source}"
    );
    let shot = c.screenshot().await.expect("screenshot");
    assert!(
        shot.starts_with(b"\x89PNG") && shot.len() > 10_000,
        "a real picture"
    );
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("console.png");
    std::fs::write(&out, &shot).expect("write screenshot");

    // The retry button of a dead row: the row is pending again and leaves the dead list.
    c.find(Locator::Css(&format!("#retry-{dead_id}")))
        .await
        .expect("retry button")
        .click()
        .await
        .expect("click");
    // The POST, its redirect and the new page take a moment: wait for the row to change,
    // then for the reloaded page (the row, retried with a fresh attempt count and its last error
    // kept, is no longer a dead letter: it is listed as pending among the rows being retried).
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let row = inbox.get(dead_id).await.expect("get").expect("row");
        if row.state == State::Pending {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the click did not retry the row: {:?}",
            row.state
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    loop {
        let source = c.source().await.expect("source");
        let row = format!("id=\"row-{dead_id}\"><td>{dead_id}</td><td class=\"state\">");
        if source.contains("Dead letters")
            && source.contains(&format!("{row}pending"))
            && !source.contains(&format!("{row}dead"))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the page still lists the row: {source}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.close().await.expect("close");
    drop(driver);
    server.abort();
}

/// A destination the workers found down: the verdict says so and "Destinations" names it,
/// since when, why and how many notes wait, in the browser (screenshot
/// `console-destinations.png` in the target's test folder).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromedriver (bash .ci/run installs them)"]
async fn the_console_in_headless_chromium_shows_a_destination_down() {
    use suki_ambient_inbox::{ops::DestinationDown, store::DeliveryQueue as _};
    let dir = tempfile::tempdir().expect("dir");
    let inbox = Inbox::connect(&sqlite_url(dir.path(), "inbox.db"))
        .await
        .expect("inbox");
    let store = suki_ambient_inbox::SqliteStore::connect(&sqlite_url(dir.path(), "inbox.db"))
        .await
        .expect("store");
    let now = UnixMillis::now();
    store
        .destination_down(DestinationDown {
            name: "ehr:fhir.example",
            reason: "fhir_503_transient",
            now: UnixMillis(now.0 - 4 * 60_000),
            next_probe: UnixMillis(now.0 + 20_000),
        })
        .await
        .expect("down");
    let (base, server) = serve_console(inbox.clone()).await;
    let (driver, c) = browser().await;
    sign_in(&c, &base, TOKEN).await;
    let source = page_shows(&c, "Destinations").await;
    assert!(
        source.contains("EHR fhir.example unreachable since")
            && source.contains("fhir_503_transient, 4m")
            && source.contains("0 notes waiting, next probe in"),
        "{source}"
    );
    assert!(
        source.contains("destination_down"),
        "the verdict names it: {source}"
    );
    let shot = c.screenshot().await.expect("screenshot");
    assert!(shot.starts_with(b"\x89PNG") && shot.len() > 10_000);
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    std::fs::write(out.join("console-destinations.png"), &shot).expect("write screenshot");
    c.close().await.expect("close");
    drop(driver);
    server.abort();
}

/// Headless Chromium through chromedriver.
async fn browser() -> (Driver, fantoccini::Client) {
    let port = free_port();
    let driver = Driver(
        Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian package chromium-driver)"),
    );
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".to_owned(),
        serde_json::json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-quic", "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--window-size=1100,1000"]
        }),
    );
    for _ in 0..50 {
        match ClientBuilder::rustls()
            .expect("rustls")
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(c) => return (driver, c),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    panic!("no WebDriver session");
}

/// Opens the console at `base` and signs in with `token`; waits for the dashboard.
async fn sign_in(c: &fantoccini::Client, base: &str, token: &str) {
    c.goto(base).await.expect("goto");
    let source = c.source().await.expect("source");
    assert!(
        !source.contains("session-dead"),
        "nothing before signing in"
    );
    c.find(Locator::Css("input[name=token]"))
        .await
        .expect("token field")
        .send_keys(token)
        .await
        .expect("type");
    c.find(Locator::Css("button[type=submit]"))
        .await
        .expect("sign in")
        .click()
        .await
        .expect("click");
    if c.wait()
        .at_most(Duration::from_secs(5))
        .for_element(Locator::Css("svg[role=img]"))
        .await
        .is_err()
    {
        panic!(
            "no dashboard: {} {}",
            c.current_url().await.expect("url"),
            c.source().await.expect("source")
        );
    }
}

/// Clicks `css` and waits until `done` holds (the POST, its redirect and the new page).
async fn click_until<F, Fut>(c: &fantoccini::Client, css: &str, done: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|_| panic!("{css}"))
        .click()
        .await
        .expect("click");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !done().await {
        assert!(std::time::Instant::now() < deadline, "{css} did nothing");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Types `id` into the search box (emptied first) and submits it.
async fn search(c: &fantoccini::Client, id: &str) {
    let field = c.find(Locator::Css("#search")).await.expect("search box");
    field.clear().await.expect("clear");
    field.send_keys(id).await.expect("type");
    c.find(Locator::Css("#search-go"))
        .await
        .expect("find")
        .click()
        .await
        .expect("click");
}

/// Waits until the page's source contains `text`.
async fn page_shows(c: &fantoccini::Client, text: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let source = c.source().await.expect("source");
        if source.contains(text) {
            return source;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the page never showed {text:?}: {source}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromedriver (bash .ci/run installs them)"]
async fn operators_find_a_visit_pause_replay_retry_a_group_and_discard_in_headless_chromium() {
    let dir = tempfile::tempdir().expect("dir");
    let inbox = seeded(dir.path()).await;
    let (base, server) = serve_console(inbox.clone()).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http");
    // A viewer sees, and may not act.
    let page = http
        .get(base.clone())
        .bearer_auth(VIEWER_TOKEN)
        .send()
        .await
        .expect("get");
    assert_eq!(page.status(), 200);
    let text = page.text().await.expect("body");
    assert!(
        text.contains("Signed in as <b>support</b> (viewer)") && !text.contains("Retry all dead"),
        "{text}"
    );
    assert!(
        text.contains("<b class=\"bad\">307</b><span>bodies in clear</span>"),
        "the seeded inbox has no keys: {text}"
    );
    let dead_id = inbox.list(Some(State::Dead), 10).await.expect("list")[0].id;
    let refused = http
        .post(format!("{base}/retry/{dead_id}"))
        .bearer_auth(VIEWER_TOKEN)
        .form(&[("csrf", "x")])
        .send()
        .await
        .expect("post");
    assert_eq!(refused.status(), 403, "a viewer cannot act");
    assert_eq!(
        inbox.list(Some(State::Dead), 10).await.expect("list").len(),
        2
    );

    let (driver, c) = browser().await;
    sign_in(&c, &base, TOKEN).await;
    page_shows(&c, "Signed in as <b>on-call</b> (operator)").await;

    // Where is this visit's note? The search box leads to its timeline.
    search(&c, "session-flaky-1").await;
    let timeline = page_shows(&c, "id=\"timeline\"").await;
    assert!(
        timeline.contains("attempt 1 by") && timeline.contains("retry handler_failed"),
        "{timeline}"
    );
    let shot = c.screenshot().await.expect("screenshot");
    assert!(shot.starts_with(b"\x89PNG") && shot.len() > 10_000);
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    std::fs::write(out.join("console-timeline.png"), &shot).expect("write screenshot");
    search(&c, "nobody-at-all").await;
    page_shows(&c, "Nothing known about nobody-at-all").await;
    c.goto(&base).await.expect("home");

    // Pause: stored by every worker's store, health says paused; then resume.
    click_until(&c, "#pause", || async {
        !inbox.pauses().await.expect("pauses").is_empty()
    })
    .await;
    page_shows(&c, "<b>Paused</b>").await;
    let health = inbox
        .health(&suki_ambient_inbox::HealthThresholds::default())
        .await;
    assert_eq!(health.status, suki_ambient_inbox::HealthStatus::Paused);
    click_until(&c, "#resume-all", || async {
        inbox.pauses().await.expect("pauses").is_empty()
    })
    .await;

    // Dead letters grouped by code: retry this group.
    let groups = inbox.dead_groups(10).await.expect("groups");
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].count, 2);
    let dashboard = page_shows(&c, "Retry this group (2)").await;
    assert!(dashboard.contains("unknown_provider"), "{dashboard}");
    // The dead letters by code, at the height of the page where they are.
    c.execute(
        "document.getElementById('groups').scrollIntoView();",
        vec![],
    )
    .await
    .ok();
    let shot = c.screenshot().await.expect("screenshot");
    std::fs::write(out.join("console-dead-letters.png"), &shot).expect("write screenshot");
    click_until(&c, "#retry-group-0", || async {
        inbox.status().await.expect("status").counts.dead == 0
    })
    .await;

    // Discard one (now pending) row with a reason: kept, marked, never processed.
    let target = inbox.list(Some(State::Pending), 400).await.expect("list");
    let target = target
        .iter()
        .find(|r| {
            r.session_id
                .as_ref()
                .is_some_and(|s| s.as_str() == "session-dead-2")
        })
        .expect("the retried row")
        .id;
    page_shows(&c, &format!("id=\"discard-{target}\"")).await;
    c.find(Locator::Css(&format!("#reason-{target}")))
        .await
        .expect("reason")
        .send_keys("duplicate visit")
        .await
        .expect("type");
    click_until(&c, &format!("#discard-{target}"), || async {
        inbox.get(target).await.expect("get").expect("row").state == State::Done
    })
    .await;

    // Replay: the dry run shows how many first, then the button does it.
    c.goto(&base).await.expect("home");
    c.find(Locator::Css("#replay-preview"))
        .await
        .expect("replay form")
        .click()
        .await
        .expect("click");
    let preview = page_shows(&c, "id=\"replay-count\"").await;
    assert!(preview.contains("This would make 4 row(s)"), "{preview}");
    click_until(&c, "#replay-confirm", || async {
        inbox.status().await.expect("status").counts.done == 1
    })
    .await;
    c.goto(&base).await.expect("home");
    page_shows(&c, "Recent operator actions").await;
    let shot = c.screenshot().await.expect("screenshot");
    std::fs::write(out.join("console-operators.png"), &shot).expect("write screenshot");

    // Every action is in the audit log, under the token's name, the sign-in first.
    let audit = inbox.audit(UnixMillis(0), 100).await.expect("audit");
    // (Newest first: read oldest first here.)
    let actions: Vec<(&str, &str, u64)> = audit
        .iter()
        .rev()
        .map(|e| (e.actor.as_str(), e.action.as_str(), e.rows))
        .collect();
    assert_eq!(
        actions,
        [
            ("on-call", "sign_in", 0),
            ("on-call", "view_timeline", 0),
            ("on-call", "view_timeline", 0),
            ("on-call", "pause", 1),
            ("on-call", "resume", 1),
            ("on-call", "retry", 2),
            ("on-call", "discard", 1),
            ("on-call", "replay", 4),
        ]
    );
    assert!(audit.iter().all(|e| e.origin.starts_with("console")));
    c.close().await.expect("close");
    drop(driver);
    server.abort();
}

/// Serves the console of `inbox` at `/admin/suki` on loopback; its URL.
async fn serve_console(inbox: Inbox) -> (String, tokio::task::JoinHandle<std::io::Result<()>>) {
    let app = axum::Router::new().nest(
        "/admin/suki",
        suki_ambient_console::router(
            inbox,
            suki_ambient_console::Access::new()
                .operator("on-call", TOKEN)
                .viewer("support", VIEWER_TOKEN),
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}/admin/suki", listener.local_addr().expect("addr"));
    (
        base,
        tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .await
        }),
    )
}

fn assert_secured(answer: &reqwest::Response, what: &str) {
    let h = answer.headers();
    for name in [
        "content-security-policy",
        "x-frame-options",
        "cache-control",
        "x-content-type-options",
        "referrer-policy",
    ] {
        assert!(h.contains_key(name), "{what}: no {name} in {h:?}");
    }
    assert_eq!(h["cache-control"], "no-store", "{what}");
}

/// Authentication is the outermost layer: whatever an unauthenticated request asks (a bad path
/// parameter, another method, another content type), the answer is 401 with the sign-in form;
/// and every answer, authenticated or not, carries the security headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_is_authenticated_first_and_carries_the_headers() {
    let dir = tempfile::tempdir().expect("dir");
    let inbox = Inbox::connect(&sqlite_url(dir.path(), "inbox.db"))
        .await
        .expect("inbox");
    let (base, server) = serve_console(inbox).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http");
    let requests = |bearer: Option<&str>| {
        let with = |r: reqwest::RequestBuilder| match bearer {
            Some(token) => r.bearer_auth(token),
            None => r,
        };
        vec![
            (
                "POST /retry/abc",
                with(
                    http.post(format!("{base}/retry/abc"))
                        .form(&[("csrf", "x")]),
                ),
            ),
            ("PUT /", with(http.put(base.clone()))),
            (
                "POST /retry-dead as JSON",
                with(
                    http.post(format!("{base}/retry-dead"))
                        .json(&serde_json::json!({})),
                ),
            ),
            ("GET /nothing", with(http.get(format!("{base}/nothing")))),
            ("GET /", with(http.get(base.clone()))),
        ]
    };
    for (what, request) in requests(None) {
        let answer = request.send().await.expect("send");
        assert_eq!(answer.status(), 401, "{what}");
        assert_secured(&answer, what);
        assert!(
            answer.text().await.expect("body").contains("Console token"),
            "{what}"
        );
    }
    let expected = [400, 405, 415, 404, 200];
    for ((what, request), status) in requests(Some(TOKEN)).into_iter().zip(expected) {
        let answer = request.send().await.expect("send");
        assert_eq!(answer.status(), status, "{what}");
        assert_secured(&answer, what);
    }
    server.abort();
}

/// A sign-in lasts 12 hours and sign-out revokes it (the old cookie opens nothing); wrong
/// tokens are rate-limited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_ins_expire_sign_out_revokes_and_wrong_tokens_are_limited() {
    let dir = tempfile::tempdir().expect("dir");
    let inbox = Inbox::connect(&sqlite_url(dir.path(), "inbox.db"))
        .await
        .expect("inbox");
    let (base, server) = serve_console(inbox).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http");
    let sign_in = |token: &'static str| {
        http.post(format!("{base}/login"))
            .form(&[("token", token)])
            .send()
    };
    let answer = sign_in(TOKEN).await.expect("sign in");
    assert_eq!(answer.status(), 303);
    let set = answer.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .to_owned();
    assert!(
        set.contains("HttpOnly") && set.contains("Max-Age=43200"),
        "{set}"
    );
    assert!(!set.contains(TOKEN), "{set}");
    let cookie = set.split(';').next().expect("pair").to_owned();
    let with_cookie = || {
        http.get(base.clone())
            .header("cookie", cookie.clone())
            .send()
    };
    assert_eq!(with_cookie().await.expect("get").status(), 200);
    // A second sign-in is another cookie; signing the first out revokes it alone.
    let other = sign_in(TOKEN).await.expect("sign in");
    let other = other.headers()["set-cookie"].to_str().expect("cookie");
    let other = other.split(';').next().expect("pair").to_owned();
    assert_ne!(other, cookie);
    let out = http
        .post(format!("{base}/logout"))
        .header("cookie", cookie.clone())
        .send()
        .await
        .expect("logout");
    assert_eq!(out.status(), 303);
    assert_eq!(with_cookie().await.expect("get").status(), 401, "revoked");
    let still = http
        .get(base.clone())
        .header("cookie", other)
        .send()
        .await
        .expect("get");
    assert_eq!(still.status(), 200);

    for _ in 0..10 {
        assert_eq!(
            sign_in("wrong-token-xxxxxxxx")
                .await
                .expect("send")
                .status(),
            401
        );
    }
    let limited = sign_in(TOKEN).await.expect("send");
    assert_eq!(
        limited.status(),
        429,
        "even the right token waits out the minute, from that client"
    );
    assert_eq!(limited.headers()["retry-after"], "60");
    assert_secured(&limited, "429");

    // The limit is per client: the operator at another address is not locked out.
    let from = |ip: [u8; 4]| {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .local_address(std::net::IpAddr::from(ip))
            .build()
            .expect("http")
    };
    let operator = from([127, 0, 0, 2]);
    let answer = operator
        .post(format!("{base}/login"))
        .form(&[("token", TOKEN)])
        .send()
        .await
        .expect("sign in");
    assert_eq!(answer.status(), 303, "another client signs in");

    // Wrong bearer tokens count and are limited the same way, per client.
    let guesser = from([127, 0, 0, 3]);
    for _ in 0..10 {
        let answer = guesser
            .get(base.clone())
            .bearer_auth("wrong-token-yyyyyyyy")
            .send()
            .await
            .expect("get");
        assert_eq!(answer.status(), 401);
    }
    let answer = guesser
        .get(base.clone())
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("get");
    assert_eq!(answer.status(), 429, "the guesser waits out the minute");
    let answer = operator
        .get(base.clone())
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("get");
    assert_eq!(answer.status(), 200, "others are not affected");
    server.abort();
}

/// A viewer signing in again and again pushes out only viewers' older sign-ins, never an
/// operator's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_cannot_sign_operators_out() {
    let dir = tempfile::tempdir().expect("dir");
    let inbox = Inbox::connect(&sqlite_url(dir.path(), "inbox.db"))
        .await
        .expect("inbox");
    let (base, server) = serve_console(inbox.clone()).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http");
    let sign_in = |token: &'static str| {
        http.post(format!("{base}/login"))
            .form(&[("token", token)])
            .send()
    };
    let cookie = |answer: reqwest::Response| {
        answer.headers()["set-cookie"]
            .to_str()
            .expect("cookie")
            .split(';')
            .next()
            .expect("pair")
            .to_owned()
    };
    let operator = cookie(sign_in(TOKEN).await.expect("sign in"));
    let first_viewer = cookie(sign_in(VIEWER_TOKEN).await.expect("sign in"));
    for _ in 0..200 {
        assert_eq!(sign_in(VIEWER_TOKEN).await.expect("sign in").status(), 303);
    }
    let status = |cookie: String| http.get(base.clone()).header("cookie", cookie).send();
    assert_eq!(status(operator).await.expect("get").status(), 200);
    assert_eq!(
        status(first_viewer).await.expect("get").status(),
        401,
        "the oldest viewer's sign-in went"
    );
    let sign_ins = inbox
        .audit(suki_ambient_core::UnixMillis(0), 1_000)
        .await
        .expect("audit")
        .iter()
        .filter(|e| e.action == "sign_in")
        .count();
    assert_eq!(sign_ins, 202, "every sign-in is recorded");
    server.abort();
}

/// The latest operator actions are the newest ones, and a viewer's many timeline views cannot
/// push an operator's action out of the list; the page says when older ones exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_latest_actions_are_the_newest_and_views_do_not_hide_them() {
    let dir = tempfile::tempdir().expect("dir");
    let inbox = Inbox::connect(&sqlite_url(dir.path(), "inbox.db"))
        .await
        .expect("inbox");
    let operator = suki_ambient_inbox::Actor::new("on-call", "test");
    let viewer = suki_ambient_inbox::Actor::new("support", "test");
    for i in 0..25 {
        let kind = Some(suki_ambient_core::EventKind::Completed);
        let action = if i % 2 == 0 {
            suki_ambient_inbox::Action::Pause {
                kind,
                reason: Some(format!("step {i}")),
            }
        } else {
            suki_ambient_inbox::Action::Resume { kind }
        };
        inbox.act(&operator, action).await.expect("act");
    }
    for _ in 0..1_000 {
        let view = suki_ambient_inbox::Action::ViewTimeline {
            target: "s-1".into(),
        };
        inbox.act(&viewer, view).await.expect("view");
    }
    let (base, server) = serve_console(inbox).await;
    let page = reqwest::Client::new()
        .get(base)
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("page");
    let table = page
        .split("<table id=\"audit\">")
        .nth(1)
        .and_then(|t| t.split("</table>").next())
        .expect("the latest actions");
    assert_eq!(table.matches("<tr><td>").count(), 20, "{table}");
    assert!(!table.contains("view_timeline"), "{table}");
    // The newest of the 25 (a pause, the 25th) comes first.
    let first = table.split("<tr><td>").nth(1).expect("a row");
    assert!(first.contains("pause"), "{first}");
    assert!(
        page.contains("id=\"audit-more\""),
        "older actions are said to exist"
    );
    server.abort();
}

/// The key check: a console holding the inbox's keys checks that every stored body opens;
/// one without body keys (the CLI's, given only SUKI_AUDIT_KEY) says "not configured" and
/// fails nothing for it; one holding other keys says "missing" and fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_check_with_without_and_with_the_wrong_keys() {
    use suki_ambient_inbox::{AuditKey, BodyKey, Keys};
    let dir = tempfile::tempdir().expect("dir");
    let url = sqlite_url(dir.path(), "inbox.db");
    let sealed = Inbox::connect(&url)
        .await
        .expect("inbox")
        .with_keys(Keys::new([BodyKey::new([1; 32])]).expect("keys"));
    let mut delivery = suki_ambient_inbox::conformance::delivery("s-1/completed");
    delivery.received_at = UnixMillis::now();
    sealed.ingest(delivery).await.expect("ingest");
    let page = |inbox: Inbox| async move {
        let (base, server) = serve_console(inbox).await;
        let page = reqwest::Client::new()
            .get(base)
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("get")
            .text()
            .await
            .expect("page");
        server.abort();
        page
    };
    let with_keys = page(sealed.clone()).await;
    assert!(with_keys.contains("key check: ok"), "{with_keys}");
    assert!(!with_keys.contains("body_keys_missing"), "{with_keys}");

    let audit_only = Inbox::open(&url)
        .await
        .expect("open")
        .with_audit_key(AuditKey::new([3; 32]));
    let without = page(audit_only).await;
    assert!(without.contains("key check: not configured"), "{without}");
    assert!(!without.contains("Failing"), "{without}");

    let wrong = Inbox::open(&url)
        .await
        .expect("open")
        .with_keys(Keys::new([BodyKey::new([2; 32])]).expect("keys"));
    let missing = page(wrong).await;
    assert!(missing.contains("key check: missing"), "{missing}");
    assert!(missing.contains("Failing"), "{missing}");
    assert!(missing.contains("body_keys_missing"), "{missing}");
}
