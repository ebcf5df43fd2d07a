//! The adapter conformance suite: one set of HTTP checks every adapter's ready-made endpoint
//! must pass over real HTTP on loopback.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;

use super::raw_http::{RawBody, RawResponse, send_raw};
use crate::{
    Clock, EventHandler, EventKind, FixedClock, HandlerError, SignedHeaders, UnixMillis, Verifier,
    WebhookEvent, WebhookMeta, WebhookSecret,
};

/// The current secret of the conformance verifier.
pub const CURRENT_SECRET: &str = "conformance-secret-current";
/// The previous secret (still accepted: a rotation in progress).
pub const PREVIOUS_SECRET: &str = "conformance-secret-previous";
/// The conformance verifier's body limit.
pub const BODY_LIMIT: usize = 64 * 1024;
/// The conformance verifier's body-read deadline.
pub const BODY_TIMEOUT: Duration = Duration::from_millis(1000);

const MARKER: &str = "PHI-MARKER-Jane-Roe";

/// An [`EventHandler`] that records what it was given, and fails once for chosen sessions.
#[derive(Default, Debug)]
pub struct RecordingHandler {
    seen: Mutex<Vec<Seen>>,
    fail_once: Mutex<HashSet<String>>,
}

/// One recorded call of a [`RecordingHandler`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    /// The event kind.
    pub kind: EventKind,
    /// The session id, when present.
    pub session_id: Option<String>,
    /// Which secret verified it.
    pub secret_index: usize,
}

impl RecordingHandler {
    /// A handler that records everything.
    pub fn new() -> Self {
        Self::default()
    }

    /// The next event of `session_id` makes the handler fail (once).
    pub fn fail_once(&self, session_id: &str) {
        self.fail_once
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(session_id.to_owned());
    }

    /// Every call so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// How many calls were for `session_id`.
    pub fn count(&self, session_id: &str) -> usize {
        self.seen()
            .iter()
            .filter(|s| s.session_id.as_deref() == Some(session_id))
            .count()
    }
}

#[async_trait]
impl EventHandler for RecordingHandler {
    async fn handle(&self, event: WebhookEvent, meta: WebhookMeta) -> Result<(), HandlerError> {
        let session_id = event.session_id().map(|s| s.as_str().to_owned());
        if let Some(id) = &session_id
            && self
                .fail_once
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(id)
        {
            return Err("conformance: handler asked to fail".into());
        }
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Seen {
                kind: event.kind(),
                session_id,
                secret_index: meta.secret_index,
            });
        Ok(())
    }
}

/// How the suite reaches an adapter: serve its ready-made endpoint on 127.0.0.1.
#[async_trait(?Send)]
pub trait Transport {
    /// Starts a server on an ephemeral loopback port whose ready-made endpoint uses `verifier`
    /// and `handler`, and returns the endpoint's `http://127.0.0.1:PORT/path` URL. The server
    /// may run until the test's runtime ends.
    async fn serve(&self, verifier: Verifier, handler: Arc<RecordingHandler>) -> String;
}

/// What the suite checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConformanceReport {
    /// Number of checks made (all passed).
    pub checks: usize,
}

struct Suite {
    url: String,
    handler: Arc<RecordingHandler>,
    /// The verifier's clock: the suite moves it.
    clock: FixedClock,
    failures: Vec<String>,
    checks: usize,
}

fn signed(secret: &str, at: UnixMillis, body: &[u8]) -> Vec<(String, String)> {
    let h = SignedHeaders::new(&WebhookSecret::from(secret), at, body);
    vec![
        ("generated-at".to_owned(), h.generated_at),
        ("X-API-Key".to_owned(), h.signature),
    ]
}

fn minutes(n: u64) -> u64 {
    n * 60 * 1000
}

impl Suite {
    fn now(&self) -> UnixMillis {
        self.clock.now()
    }

    async fn send(
        &mut self,
        name: &str,
        headers: &[(String, String)],
        body: RawBody,
    ) -> Option<RawResponse> {
        let refs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        match send_raw(&self.url, &refs, body).await {
            Ok(response) => Some(response),
            Err(err) => {
                self.failures.push(format!("{name}: request failed: {err}"));
                None
            }
        }
    }

    fn expect(
        &mut self,
        name: &str,
        response: Option<&RawResponse>,
        status: u16,
        code: Option<&str>,
    ) {
        self.checks += 1;
        let Some(response) = response else { return };
        if response.status != status {
            self.failures.push(format!(
                "{name}: expected status {status}, got {} ({})",
                response.status,
                String::from_utf8_lossy(&response.body)
            ));
            return;
        }
        let body = String::from_utf8_lossy(&response.body);
        if body.contains(MARKER) {
            self.failures
                .push(format!("{name}: response echoes the payload"));
        }
        if let Some(code) = code {
            let json = response.json();
            if json["error"] != code || !json["message"].is_string() {
                self.failures.push(format!(
                    "{name}: expected {{\"error\":\"{code}\",\"message\":...}}, got {body}"
                ));
            }
            let content_type = response.header("content-type").unwrap_or_default();
            if !content_type.starts_with("application/json") {
                self.failures.push(format!(
                    "{name}: rejection content-type is {content_type:?}"
                ));
            }
        }
    }

    async fn case(
        &mut self,
        name: &str,
        headers: Vec<(String, String)>,
        body: RawBody,
        status: u16,
        code: Option<&str>,
    ) {
        let response = self.send(name, &headers, body).await;
        self.expect(name, response.as_ref(), status, code);
    }

    fn expect_count(&mut self, name: &str, session: &str, count: usize) {
        self.checks += 1;
        let got = self.handler.count(session);
        if got != count {
            self.failures.push(format!(
                "{name}: handler ran {got} times for {session}, expected {count}"
            ));
        }
    }
}

fn event_body(event: &WebhookEvent) -> Vec<u8> {
    event.to_vec()
}

/// Runs every conformance check against `transport`'s ready-made endpoint.
///
/// The verifier accepts [`CURRENT_SECRET`] and [`PREVIOUS_SECRET`], tolerates ±5 minutes, limits
/// bodies to [`BODY_LIMIT`] and their reading to [`BODY_TIMEOUT`], and reads a [`FixedClock`]
/// that the suite moves. Checks: a valid event of each kind (200, handler called
/// once), unknown status (200), each missing or malformed header, tampered body, wrong secret,
/// stale and future timestamps, oversize with Content-Length (answered without reading the body)
/// and chunked without it, invalid JSON after a valid signature (400), duplicate and re-sent
/// deliveries (200, handler once), rotation, a failing handler (500, then a re-delivery is
/// processed), rejection bodies (`{"error","message"}`, JSON, no payload echo, no clock figures),
/// a body withheld or trickled (408 `body_timeout`), and a delivery that was fresh when its
/// headers arrived but stale when its body was complete (401 `stale`).
///
/// # Panics
/// With the list of failed checks, when any fails.
pub async fn run_conformance<T: Transport + ?Sized>(transport: &T) -> ConformanceReport {
    let clock = FixedClock::new(UnixMillis::now());
    let verifier = Verifier::builder()
        .secret(CURRENT_SECRET)
        .secret(PREVIOUS_SECRET)
        .tolerance(Duration::from_secs(300))
        .max_body_bytes(BODY_LIMIT)
        .body_timeout(BODY_TIMEOUT)
        .clock(clock.clone())
        .build()
        .expect("conformance verifier config is valid");
    let handler = Arc::new(RecordingHandler::new());
    let url = transport.serve(verifier, Arc::clone(&handler)).await;
    let mut s = Suite {
        url,
        handler,
        clock,
        failures: Vec::new(),
        checks: 0,
    };
    valid_events(&mut s).await;
    duplicates_and_rotation(&mut s).await;
    malformed_headers(&mut s).await;
    tampering_and_freshness(&mut s).await;
    body_limits(&mut s).await;
    slow_senders(&mut s).await;
    invalid_payloads(&mut s).await;
    handler_failure(&mut s).await;
    assert!(
        s.failures.is_empty(),
        "{} of {} conformance checks failed:\n  {}",
        s.failures.len(),
        s.checks,
        s.failures.join("\n  ")
    );
    ConformanceReport { checks: s.checks }
}

/// Valid events of each kind, chunked too, and an unknown status.
async fn valid_events(s: &mut Suite) {
    // Valid events of each kind.
    let kinds = [
        (
            "completed",
            super::completed("conf-completed", "enc-1"),
            EventKind::Completed,
        ),
        (
            "failed",
            super::failed("conf-failed", "enc-1"),
            EventKind::Failed,
        ),
        (
            "timed out",
            super::timed_out("conf-timed-out", "enc-1"),
            EventKind::TimedOut,
        ),
        (
            "cancelled",
            super::cancelled("conf-cancelled", "enc-1"),
            EventKind::Cancelled,
        ),
    ];
    for (name, event, kind) in kinds {
        let body = event_body(&event);
        let session = event
            .session_id()
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default();
        s.case(
            &format!("valid {name}"),
            signed(CURRENT_SECRET, s.now(), &body),
            RawBody::Sized(body),
            200,
            None,
        )
        .await;
        s.expect_count(&format!("valid {name}"), &session, 1);
        s.checks += 1;
        if !s
            .handler
            .seen()
            .iter()
            .any(|seen| seen.kind == kind && seen.session_id.as_deref() == Some(&session))
        {
            s.failures
                .push(format!("valid {name}: handler did not see a {kind} event"));
        }
    }

    // The documented success fixture shape, sent chunked (no Content-Length), within the limit.
    let body = event_body(&super::completed("conf-chunked", "enc-2"));
    s.case(
        "valid, chunked",
        signed(CURRENT_SECRET, s.now(), &body),
        RawBody::Chunked(body, 7),
        200,
        None,
    )
    .await;
    s.expect_count("valid, chunked", "conf-chunked", 1);

    // Unknown status: acknowledged, handed to on_unknown.
    let body =
        br#"{"status":"brand_new_status","session_id":"conf-unknown","encounter_id":"enc-3"}"#
            .to_vec();
    s.case(
        "unknown status",
        signed(CURRENT_SECRET, s.now(), &body),
        RawBody::Sized(body),
        200,
        None,
    )
    .await;
    s.checks += 1;
    if !s
        .handler
        .seen()
        .iter()
        .any(|x| x.kind == EventKind::Unknown)
    {
        s.failures
            .push("unknown status: on_unknown not called".to_owned());
    }
}

/// Duplicates, re-sends and secret rotation.
async fn duplicates_and_rotation(s: &mut Suite) {
    // Duplicate delivery (same bytes, same headers) and a re-send with a new signature.
    let body = event_body(&super::completed("conf-dup", "enc-4"));
    let headers = signed(CURRENT_SECRET, s.now(), &body);
    s.case(
        "duplicate: first",
        headers.clone(),
        RawBody::Sized(body.clone()),
        200,
        None,
    )
    .await;
    s.case(
        "duplicate: replay",
        headers,
        RawBody::Sized(body.clone()),
        200,
        None,
    )
    .await;
    let resent = signed(CURRENT_SECRET, UnixMillis(s.now().0 - 1500), &body);
    s.case(
        "duplicate: re-sent",
        resent,
        RawBody::Sized(body),
        200,
        None,
    )
    .await;
    s.expect_count("duplicate", "conf-dup", 1);

    // Rotation: the previous secret verifies and is reported as index 1; a third does not.
    let body = event_body(&super::completed("conf-rotated", "enc-5"));
    s.case(
        "rotation: previous secret",
        signed(PREVIOUS_SECRET, s.now(), &body),
        RawBody::Sized(body.clone()),
        200,
        None,
    )
    .await;
    s.checks += 1;
    if !s
        .handler
        .seen()
        .iter()
        .any(|x| x.session_id.as_deref() == Some("conf-rotated") && x.secret_index == 1)
    {
        s.failures
            .push("rotation: secret index 1 not reported".to_owned());
    }
    s.case(
        "rotation: unknown secret",
        signed("some-third-secret", s.now(), &body),
        RawBody::Sized(body),
        401,
        Some("mismatch"),
    )
    .await;
}

/// One row of the header table: the case's name, the headers sent, the status and code expected.
type HeaderCase = (String, Vec<(String, String)>, u16, Option<&'static str>);

/// Missing and malformed headers, as a table of [`HeaderCase`]s.
async fn malformed_headers(s: &mut Suite) {
    let body = event_body(&super::completed("conf-bad", "enc-6"));
    let good = signed(CURRENT_SECRET, s.now(), &body);
    let (at, sig) = (good[0].clone(), good[1].1.clone());
    let header = |name: &str, value: &str| (name.to_owned(), value.to_owned());
    let with_timestamp = |ts: &str| {
        let sig = crate::sign(&WebhookSecret::from(CURRENT_SECRET), ts, &body).to_hex();
        vec![header("generated-at", ts), header("x-api-key", &sig)]
    };
    let with_signature = |value: &str| vec![at.clone(), header("x-api-key", value)];
    let mut cases: Vec<HeaderCase> = vec![
        (
            "missing generated-at".into(),
            vec![good[1].clone()],
            401,
            Some("missing_timestamp"),
        ),
        (
            "missing x-api-key".into(),
            vec![at.clone()],
            401,
            Some("missing_signature"),
        ),
        ("no headers".into(), vec![], 401, None),
        (
            "empty x-api-key".into(),
            with_signature(""),
            401,
            Some("missing_signature"),
        ),
        (
            "generated-at sent twice".into(),
            vec![at.clone(), good[1].clone(), at.clone()],
            400,
            Some("malformed_timestamp"),
        ),
        (
            "uppercase hex, uppercase header name".into(),
            vec![at.clone(), header("X-API-KEY", &sig.to_uppercase())],
            200,
            None,
        ),
    ];
    for ts in [
        "17659777484.32",
        "-1765977748432",
        "abc",
        "1765977748432ms",
        "99999999999999999999999999",
    ] {
        cases.push((
            format!("malformed timestamp {ts}"),
            with_timestamp(ts),
            400,
            Some("malformed_timestamp"),
        ));
    }
    for (label, bad) in [
        ("truncated", sig[..62].to_owned()),
        ("non-hex", format!("{}g", &sig[..63])),
        ("base64", "uT6Af9KLpChTU/L60rX90rYVLX4Aeg==".to_owned()),
        ("too long", format!("{sig}00")),
    ] {
        cases.push((
            format!("malformed signature ({label})"),
            with_signature(&bad),
            401,
            Some("malformed_signature"),
        ));
    }
    for (name, headers, status, code) in cases {
        s.case(&name, headers, RawBody::Sized(body.clone()), status, code)
            .await;
    }
}

/// Tampered bodies, a wrong secret, stale and future timestamps.
async fn tampering_and_freshness(s: &mut Suite) {
    // Tampering, wrong secret, freshness.
    let body = event_body(&super::completed("conf-bad", "enc-6"));
    let tampered_source = event_body(&super::completed("conf-tampered", MARKER));
    let headers = signed(CURRENT_SECRET, s.now(), &tampered_source);
    let mut tampered = tampered_source.clone();
    let last = tampered.len() - 2;
    tampered[last] ^= 0x01;
    s.case(
        "tampered body",
        headers.clone(),
        RawBody::Sized(tampered),
        401,
        Some("mismatch"),
    )
    .await;
    let mut newline = tampered_source.clone();
    newline.push(b'\n');
    s.case(
        "trailing newline added",
        headers,
        RawBody::Sized(newline),
        401,
        Some("mismatch"),
    )
    .await;
    s.expect_count("tampered body", "conf-tampered", 0);
    s.case(
        "wrong secret",
        signed("not-the-secret", s.now(), &body),
        RawBody::Sized(body.clone()),
        401,
        Some("mismatch"),
    )
    .await;
    s.case(
        "stale",
        signed(CURRENT_SECRET, UnixMillis(s.now().0 - minutes(10)), &body),
        RawBody::Sized(body.clone()),
        401,
        Some("stale"),
    )
    .await;
    s.case(
        "future",
        signed(CURRENT_SECRET, UnixMillis(s.now().0 + minutes(10)), &body),
        RawBody::Sized(body.clone()),
        401,
        Some("future"),
    )
    .await;
    let stale = s
        .send(
            "stale: no clock figures in the answer",
            &signed(CURRENT_SECRET, UnixMillis(s.now().0 - minutes(10)), &body),
            RawBody::Sized(body.clone()),
        )
        .await;
    s.checks += 1;
    if let Some(answer) = stale {
        let text = String::from_utf8_lossy(&answer.body);
        if text.chars().any(|c| c.is_ascii_digit()) {
            s.failures.push(format!(
                "stale: the answer discloses the server's clock: {text}"
            ));
        }
    }
    let seconds = (s.now().0 / 1000).to_string();
    let sig = crate::sign(&WebhookSecret::from(CURRENT_SECRET), &seconds, &body).to_hex();
    s.case(
        "seconds instead of ms",
        vec![("generated-at".into(), seconds), ("x-api-key".into(), sig)],
        RawBody::Sized(body.clone()),
        401,
        Some("stale"),
    )
    .await;
}

/// Oversized bodies, declared and chunked, and one exactly at the limit.
async fn body_limits(s: &mut Suite) {
    // Oversize: declared (answered without the body being sent), and chunked without a length.
    let big = vec![b' '; BODY_LIMIT + 1];
    let headers = signed(CURRENT_SECRET, s.now(), &big);
    s.case(
        "oversize, Content-Length, body never sent",
        headers.clone(),
        RawBody::DeclaredOnly(big.len() as u64),
        413,
        Some("body_too_large"),
    )
    .await;
    s.case(
        "oversize, Content-Length",
        headers.clone(),
        RawBody::Sized(big.clone()),
        413,
        Some("body_too_large"),
    )
    .await;
    let huge = vec![b' '; 4 * BODY_LIMIT];
    let headers = signed(CURRENT_SECRET, s.now(), &huge);
    s.case(
        "oversize, chunked",
        headers,
        RawBody::Chunked(huge, 8 * 1024),
        413,
        Some("body_too_large"),
    )
    .await;
    let mut at_limit = event_body(&super::completed("conf-at-limit", "enc-7"));
    at_limit.resize(BODY_LIMIT, b' ');
    s.case(
        "exactly at the limit, chunked",
        signed(CURRENT_SECRET, s.now(), &at_limit),
        RawBody::Chunked(at_limit, 4096),
        200,
        None,
    )
    .await;
    s.expect_count("exactly at the limit", "conf-at-limit", 1);
}

/// Slow senders (cut at the body deadline) and a delivery that goes stale during its body.
async fn slow_senders(s: &mut Suite) {
    // Slow senders: a body withheld after its headers, and one trickled a byte at a time, are cut
    // at the body deadline.
    let body = event_body(&super::completed("conf-slow", "enc-9"));
    s.case(
        "body withheld after the headers",
        signed(CURRENT_SECRET, s.now(), &body),
        RawBody::Withheld(body.len() as u64, body[..10].to_vec()),
        408,
        Some("body_timeout"),
    )
    .await;
    s.case(
        "body trickled a byte at a time",
        signed(CURRENT_SECRET, s.now(), &body),
        RawBody::Trickled(body.clone(), BODY_TIMEOUT / 8),
        408,
        Some("body_timeout"),
    )
    .await;
    s.expect_count("slow senders", "conf-slow", 0);

    // Fresh when the headers arrived, stale when the body was complete: the clock moves past the
    // tolerance while the body is held back.
    let body = event_body(&super::completed("conf-stale-by-the-end", "enc-10"));
    let headers = signed(CURRENT_SECRET, s.now(), &body);
    let pause = BODY_TIMEOUT / 2;
    let held = RawBody::Paused(body.clone(), body.len() / 2, pause);
    let clock = s.clock.clone();
    let advance = async {
        tokio::time::sleep(pause / 3).await;
        clock.advance(Duration::from_secs(301));
    };
    let (response, ()) = tokio::join!(
        s.send("stale by the end of the body", &headers, held),
        advance
    );
    s.expect(
        "stale by the end of the body",
        response.as_ref(),
        401,
        Some("stale"),
    );
    s.expect_count("stale by the end of the body", "conf-stale-by-the-end", 0);
}

/// Verified bodies that are not valid payloads.
async fn invalid_payloads(s: &mut Suite) {
    // Verified but not a valid payload.
    let not_json = format!("not json {MARKER}").into_bytes();
    s.case(
        "invalid JSON after a valid signature",
        signed(CURRENT_SECRET, s.now(), &not_json),
        RawBody::Sized(not_json),
        400,
        Some("invalid_payload"),
    )
    .await;
    let wrong_type = format!(
        r#"{{"status":"success","session_id":"s","encounter_id":"e","sessions":"{MARKER}"}}"#
    )
    .into_bytes();
    s.case(
        "wrong field type after a valid signature",
        signed(CURRENT_SECRET, s.now(), &wrong_type),
        RawBody::Sized(wrong_type),
        400,
        Some("invalid_payload"),
    )
    .await;
    s.case(
        "empty body after a valid signature",
        signed(CURRENT_SECRET, s.now(), b""),
        RawBody::Sized(Vec::new()),
        400,
        Some("invalid_payload"),
    )
    .await;
}

/// A failing handler answers 500 and a re-delivery is processed.
async fn handler_failure(s: &mut Suite) {
    // The application's handler fails: 500; a re-delivery is then processed.
    s.handler.fail_once("conf-handler-fails");
    let body = event_body(&super::completed("conf-handler-fails", "enc-8"));
    let headers = signed(CURRENT_SECRET, s.now(), &body);
    s.case(
        "handler failure",
        headers.clone(),
        RawBody::Sized(body.clone()),
        500,
        Some("handler_failed"),
    )
    .await;
    s.case(
        "re-delivery after handler failure",
        headers,
        RawBody::Sized(body),
        200,
        None,
    )
    .await;
    s.expect_count("re-delivery after handler failure", "conf-handler-fails", 1);
}
