//! Test kit (feature `testing`): event builders, signed requests, the signature vectors and
//! Suki's documented JSON examples (embedded, so they work in any crate).

use base64::Engine as _;
use bytes::Bytes;
use http::HeaderMap;
use serde::Deserialize;

pub use crate::FixedClock;
use crate::{SignedHeaders, UnixMillis, WebhookSecret};

pub use crate::sample::{cancelled, completed, failed, links_for, timed_out};

/// Headers and body of a delivery of `body` signed with `secret` at `at`.
pub fn signed(secret: &str, at: UnixMillis, body: impl Into<Bytes>) -> (HeaderMap, Bytes) {
    let body = body.into();
    let headers = SignedHeaders::new(&WebhookSecret::from(secret), at, &body).to_header_map();
    (headers, body)
}

/// Embeds one file of the repository's `testdata/fixtures/`.
macro_rules! fixture_files {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_bytes!(concat!("../../testdata/fixtures/", $name)))),*]
    };
}

/// Suki's documented JSON examples (`testdata/fixtures/`), embedded at build time so the test kit
/// needs no files at run time: the path under `fixtures/` and the bytes.
pub const FIXTURES: &[(&str, &[u8])] = fixture_files![
    "api/error.json",
    "api/form-filling-structured-data.json",
    "api/login-response.json",
    "api/session-content.json",
    "api/session-status.json",
    "api/session-structured-data.json",
    "api/session-transcript.json",
    "webhooks/failure.json",
    "webhooks/success.json",
];

/// The signature vectors (`testdata/vectors/signatures.json`), computed with an independent
/// HMAC implementation; embedded at build time.
pub const SIGNATURE_VECTORS_JSON: &str = include_str!("../../testdata/vectors/signatures.json");

/// The bytes of a fixture, e.g. `fixture("webhooks/success.json")`.
///
/// # Panics
/// When there is no such fixture (a typo in a test).
pub fn fixture(relative: &str) -> Vec<u8> {
    FIXTURES
        .iter()
        .find(|(name, _)| *name == relative)
        .map(|(_, bytes)| bytes.to_vec())
        .unwrap_or_else(|| panic!("no fixture named {relative} (see testing::FIXTURES)"))
}

/// Every fixture under `fixtures/<dir>` (e.g. `"api"`), as (file name, bytes), sorted by name.
///
/// # Panics
/// When there is none (a typo in a test).
pub fn fixtures_in(dir: &str) -> Vec<(String, Vec<u8>)> {
    let prefix = format!("{}/", dir.trim_end_matches('/'));
    let files: Vec<_> = FIXTURES
        .iter()
        .filter_map(|(name, bytes)| {
            name.strip_prefix(&prefix)
                .map(|file| (file.to_owned(), bytes.to_vec()))
        })
        .collect();
    assert!(!files.is_empty(), "no fixtures under {dir}");
    files
}

/// One case of `vectors/signatures.json`.
#[derive(Clone, Debug)]
pub struct SignatureVector {
    /// Case name.
    pub name: String,
    /// The secret (UTF-8 string).
    pub secret: String,
    /// The `generated-at` header (empty = absent).
    pub generated_at: String,
    /// The `X-API-Key` header (empty = absent).
    pub signature: String,
    /// The verifier's clock.
    pub now_ms: u64,
    /// The tolerance.
    pub tolerance_ms: u64,
    /// `None` for `ok`, `Some(code)` for `error:<code>`.
    pub expected_error: Option<String>,
    /// The raw body.
    pub body: Vec<u8>,
}

#[derive(Deserialize)]
struct VectorFile {
    vectors: Vec<RawVector>,
}

#[derive(Deserialize)]
struct RawVector {
    name: String,
    secret: String,
    generated_at: String,
    signature: String,
    now_ms: u64,
    tolerance_ms: u64,
    expect: String,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    body_base64: Option<String>,
}

/// The signature vectors, decoded from [`SIGNATURE_VECTORS_JSON`].
///
/// # Panics
/// When the embedded file is malformed.
pub fn signature_vectors() -> Vec<SignatureVector> {
    let file: VectorFile = serde_json::from_str(SIGNATURE_VECTORS_JSON)
        .unwrap_or_else(|e| panic!("bad vectors file: {e}"));
    assert!(!file.vectors.is_empty(), "vectors file holds no vectors");
    file.vectors
        .into_iter()
        .map(|v| {
            let body = match (v.body, v.body_base64) {
                (Some(text), None) => text.into_bytes(),
                (None, Some(b64)) => base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .unwrap_or_else(|e| panic!("vector {}: bad base64: {e}", v.name)),
                _ => panic!("vector {} needs exactly one of body, body_base64", v.name),
            };
            let expected_error = match v.expect.as_str() {
                "ok" => None,
                other => Some(
                    other
                        .strip_prefix("error:")
                        .unwrap_or_else(|| panic!("vector {}: bad expect {other}", v.name))
                        .to_owned(),
                ),
            };
            SignatureVector {
                name: v.name,
                secret: v.secret,
                generated_at: v.generated_at,
                signature: v.signature,
                now_ms: v.now_ms,
                tolerance_ms: v.tolerance_ms,
                expected_error,
                body,
            }
        })
        .collect()
}

mod conformance;
pub mod http1;
mod raw_http;

pub use conformance::{
    BODY_LIMIT, BODY_TIMEOUT, CURRENT_SECRET, ConformanceReport, PREVIOUS_SECRET, RecordingHandler,
    Seen, Transport, run_conformance,
};
pub use raw_http::{RawBody, RawResponse, send_raw};

/// A `tracing_subscriber` writer that keeps everything written, for tests that check what was
/// logged (e.g. that no secret or payload content was).
///
/// # Example
///
/// ```
/// use suki_ambient_core::testing::LogCapture;
///
/// let capture = LogCapture::default();
/// let subscriber = tracing_subscriber::fmt().with_writer(capture.clone()).finish();
/// tracing::subscriber::with_default(subscriber, || tracing::info!("hello"));
/// assert!(capture.text().contains("hello"));
/// ```
#[derive(Clone, Default, Debug)]
pub struct LogCapture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl LogCapture {
    /// A subscriber logging every level, span openings and closings included, into this
    /// capture (no colours).
    pub fn trace_subscriber(&self) -> impl tracing::Subscriber + Send + Sync + 'static {
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(self.clone())
            .with_ansi(false)
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::FULL)
            .finish()
    }

    /// Everything written so far, as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(
            &self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
        .into_owned()
    }
}

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogCapture {
    type Writer = Self;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
