//! Verification: `Verifier` checks `generated-at` and `X-API-Key` against the raw body.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hmac::Mac;
use http::HeaderMap;
use serde::{Deserialize, Serialize};

use crate::headers::{
    GENERATED_AT_HEADER, GENERATED_AT_NAME, SIGNATURE_HEADER, SIGNATURE_NAME, header_text,
};
use crate::sign::{HmacSha256, feed, keyed};
use crate::time::{Clock, SystemClock, UnixMillis};
use crate::{
    ConfigError, PayloadError, ReplayKey, Signature, VerifyError, WebhookEvent, WebhookSecret,
};

/// Default allowed distance between `generated-at` and the verifier's clock, either way.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);
/// Default body limit: 256 KiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 256 * 1024;
/// Default deadline for reading a body once the headers are in: 10 seconds. Suki's bodies are a
/// few kilobytes and arrive in one piece; a sender that needs longer is holding the connection.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds a [`Verifier`]; see [`Verifier::builder`].
#[must_use]
pub struct VerifierBuilder {
    secrets: Vec<WebhookSecret>,
    tolerance: Option<Duration>,
    clock: Arc<dyn Clock>,
    max_body_bytes: usize,
    body_timeout: Duration,
    env_error: Option<ConfigError>,
}

impl fmt::Debug for VerifierBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifierBuilder")
            .field("secrets", &self.secrets.len())
            .field("tolerance", &self.tolerance)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("body_timeout", &self.body_timeout)
            .finish_non_exhaustive()
    }
}

impl VerifierBuilder {
    /// Adds a secret. Call again to accept several during a rotation: any of them verifies, and
    /// `meta.secret_index` of the [`Verified`] result says which (in the order they were added).
    pub fn secret(mut self, secret: impl Into<WebhookSecret>) -> Self {
        self.secrets.push(secret.into());
        self
    }

    /// Adds the secret held by the environment variable `name` (e.g. `SUKI_WEBHOOK_SECRET`).
    /// When it is unset or not UTF-8, [`build`](Self::build) fails with an error that names the
    /// variable (and never shows a value).
    ///
    /// # Example
    ///
    /// ```
    /// use suki_ambient_core::{ConfigError, Verifier};
    ///
    /// let err = Verifier::builder().secret_from_env("SUKI_DOC_UNSET_VARIABLE").build().unwrap_err();
    /// assert_eq!(err.to_string(), "environment variable SUKI_DOC_UNSET_VARIABLE is not set");
    /// ```
    pub fn secret_from_env(mut self, name: &str) -> Self {
        match std::env::var(name) {
            Ok(value) => self.secrets.push(WebhookSecret::from(value)),
            Err(err) => {
                let not_unicode = matches!(err, std::env::VarError::NotUnicode(_));
                self.env_error.get_or_insert(ConfigError::SecretEnv {
                    name: name.to_owned(),
                    not_unicode,
                });
            }
        }
        self
    }

    /// Adds several secrets, in order.
    pub fn secrets<S: Into<WebhookSecret>>(mut self, secrets: impl IntoIterator<Item = S>) -> Self {
        self.secrets.extend(secrets.into_iter().map(Into::into));
        self
    }

    /// How far `generated-at` may be from the clock, in the past or the future (inclusive).
    /// Default [`DEFAULT_TOLERANCE`] (5 minutes). Millisecond precision.
    pub fn tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = Some(tolerance);
        self
    }

    /// Skips the freshness check (the format of `generated-at` is still checked, and it is still
    /// part of the signed text). For replaying recorded deliveries in tests or a backfill.
    pub fn ignore_timestamp(mut self) -> Self {
        self.tolerance = None;
        self
    }

    /// The clock for the freshness check (default [`SystemClock`]).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The largest body accepted, in bytes (default [`DEFAULT_MAX_BODY_BYTES`], 256 KiB). Every
    /// adapter enforces it while reading the body.
    pub fn max_body_bytes(mut self, limit: usize) -> Self {
        self.max_body_bytes = limit;
        self
    }

    /// How long reading a body may take once the headers are in (default
    /// [`DEFAULT_BODY_TIMEOUT`], 10 s). Every adapter enforces it; a body not complete by then is
    /// answered `408 body_timeout`, so a sender trickling bytes cannot hold a connection.
    pub fn body_timeout(mut self, timeout: Duration) -> Self {
        self.body_timeout = timeout;
        self
    }

    /// Builds the verifier, keying one HMAC state per secret. Logs a warning (never the value)
    /// for a secret that starts or ends with whitespace: it is used as given, and it is most
    /// often a copy-paste mistake that makes every delivery fail with `mismatch`.
    ///
    /// # Errors
    /// [`ConfigError`] when an environment variable named by
    /// [`secret_from_env`](Self::secret_from_env) is unset, no secret was given, a secret is
    /// empty, or the body limit or body timeout is zero.
    pub fn build(self) -> Result<Verifier, ConfigError> {
        if let Some(err) = self.env_error {
            return Err(err);
        }
        if self.secrets.is_empty() {
            return Err(ConfigError::NoSecret);
        }
        if let Some(index) = self.secrets.iter().position(WebhookSecret::is_empty) {
            return Err(ConfigError::EmptySecret { index });
        }
        if self.max_body_bytes == 0 {
            return Err(ConfigError::ZeroBodyLimit);
        }
        if self.body_timeout.is_zero() {
            return Err(ConfigError::ZeroBodyTimeout);
        }
        for (index, secret) in self.secrets.iter().enumerate() {
            if secret.has_surrounding_whitespace() {
                tracing::warn!(
                    secret_index = index,
                    "webhook secret #{index} starts or ends with whitespace (a trailing newline?); \
                     it is used as given, and deliveries signed without it will fail with `mismatch`"
                );
            }
        }
        Ok(Verifier {
            inner: Arc::new(Inner {
                keys: self.secrets.iter().map(keyed).collect(),
                tolerance_ms: self.tolerance.map(crate::time::millis),
                clock: self.clock,
                max_body_bytes: self.max_body_bytes,
                body_timeout: self.body_timeout,
            }),
        })
    }
}

/// Verifies Suki's webhook deliveries. Cheap to clone (an `Arc`), `Send + Sync`: build one at
/// start-up and share it.
///
/// The checks, in order: both headers present and non-empty → `generated-at` is 1 to 19 ASCII
/// digits → within the tolerance → `X-API-Key` decodes to 32 bytes → the body within the limit
/// → constant-time comparison against each secret's HMAC of `generated-at:body`.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use suki_ambient_core::Verifier;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # unsafe { std::env::set_var("SUKI_WEBHOOK_SECRET", "whsec-current") };
/// let verifier = Verifier::builder()
///     .secret_from_env("SUKI_WEBHOOK_SECRET") // the current secret
///     .secret("whsec-previous")              // during a rotation: either verifies
///     .tolerance(Duration::from_secs(300))   // the default
///     .build()?;
/// assert_eq!(verifier.secret_count(), 2);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

struct Inner {
    /// One pre-keyed HMAC state per secret, cloned per request.
    keys: Vec<HmacSha256>,
    tolerance_ms: Option<u64>,
    clock: Arc<dyn Clock>,
    max_body_bytes: usize,
    body_timeout: Duration,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("secrets", &self.inner.keys.len())
            .field("tolerance_ms", &self.inner.tolerance_ms)
            .field("max_body_bytes", &self.inner.max_body_bytes)
            .field("body_timeout", &self.inner.body_timeout)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// Starts a builder: at least one `.secret(..)`, then `.build()`.
    pub fn builder() -> VerifierBuilder {
        VerifierBuilder {
            secrets: Vec::new(),
            tolerance: Some(DEFAULT_TOLERANCE),
            clock: Arc::new(SystemClock),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            env_error: None,
        }
    }

    /// The body limit in bytes that adapters enforce while reading.
    pub fn max_body_bytes(&self) -> usize {
        self.inner.max_body_bytes
    }

    /// How long adapters wait for a body once the headers are in.
    pub fn body_timeout(&self) -> Duration {
        self.inner.body_timeout
    }

    /// The freshness tolerance, `None` when timestamps are ignored.
    pub fn tolerance(&self) -> Option<Duration> {
        self.inner.tolerance_ms.map(Duration::from_millis)
    }

    /// How many secrets are accepted.
    pub fn secret_count(&self) -> usize {
        self.inner.keys.len()
    }

    /// Verifies a delivery from its headers and raw body (`&[u8]`, `Vec<u8>`, `Bytes`...),
    /// which the result keeps.
    ///
    /// The checks, in this order everywhere (adapters too): both headers present (an empty one
    /// counts as missing; one sent twice is malformed) → `generated-at` is 1 to 19 ASCII digits →
    /// within the tolerance → `X-API-Key` decodes to 32 bytes → the body is within
    /// [`max_body_bytes`](Self::max_body_bytes) → constant-time comparison against each secret's
    /// HMAC of `generated-at:body`.
    ///
    /// # Errors
    /// The first check that fails, as a [`VerifyError`].
    ///
    /// # Example
    ///
    /// ```
    /// use suki_ambient_core::{HeaderMap, SignedHeaders, UnixMillis, Verifier, WebhookSecret};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let verifier = Verifier::builder().secret("whsec").build()?;
    /// let body = br#"{"status":"success","session_id":"s-1","encounter_id":"e-1"}"#;
    /// let headers: HeaderMap =
    ///     SignedHeaders::new(&WebhookSecret::from("whsec"), UnixMillis::now(), body).to_header_map();
    ///
    /// let verified = verifier.verify(&headers, &body[..])?;
    /// assert_eq!(verified.meta.secret_index, 0);
    /// assert_eq!(verified.parse()?.session_id().unwrap().as_str(), "s-1");
    /// # Ok(())
    /// # }
    /// ```
    pub fn verify<B: AsRef<[u8]>>(
        &self,
        headers: &HeaderMap,
        body: B,
    ) -> Result<Verified<B>, VerifyError> {
        self.verify_parts(
            header_text(headers, &GENERATED_AT_NAME),
            header_text(headers, &SIGNATURE_NAME),
            body,
        )
    }

    /// [`verify`](Self::verify) from the two header values as text, for frameworks on other
    /// `http` versions or for stored deliveries. An empty value counts as a missing header.
    ///
    /// # Errors
    /// The first check that fails, as a [`VerifyError`].
    pub fn verify_parts<B: AsRef<[u8]>>(
        &self,
        generated_at: &str,
        signature: &str,
        body: B,
    ) -> Result<Verified<B>, VerifyError> {
        let head = self.check_head_parts(generated_at, signature, None)?;
        // The body is already complete: the head's freshness check holds for it.
        self.authenticate(&head, body)
    }

    /// The head checks (presence, timestamp, tolerance, signature format, a declared length
    /// within the limit): what adapters run before reading a body
    /// ([`adapter::check_head`](crate::adapter::check_head)).
    pub(crate) fn check_head_parts<'h>(
        &self,
        generated_at: &'h str,
        signature: &str,
        content_length: Option<&str>,
    ) -> Result<CheckedHead<'h>, VerifyError> {
        require_present(generated_at, signature)?;
        let at = parse_millis(generated_at).ok_or(VerifyError::InvalidTimestamp)?;
        self.check_freshness(at)?;
        let signature = Signature::from_hex(signature)?;
        let declared = content_length.and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|len| len > self.inner.max_body_bytes as u64) {
            return Err(self.too_large());
        }
        Ok(CheckedHead {
            generated_at,
            at,
            signature,
        })
    }

    /// The body checks after [`check_head_parts`](Self::check_head_parts): the freshness window
    /// once more (the body may have taken a while: a delivery must still be fresh when it is
    /// complete), then the limit and the HMAC, in the one order of checks.
    pub(crate) fn verify_body<B: AsRef<[u8]>>(
        &self,
        head: &CheckedHead<'_>,
        body: B,
    ) -> Result<Verified<B>, VerifyError> {
        self.check_freshness(head.at)?;
        self.authenticate(head, body)
    }

    /// The body limit and the HMAC against each secret.
    pub(crate) fn authenticate<B: AsRef<[u8]>>(
        &self,
        head: &CheckedHead<'_>,
        body: B,
    ) -> Result<Verified<B>, VerifyError> {
        let bytes = body.as_ref();
        if bytes.len() > self.inner.max_body_bytes {
            return Err(self.too_large());
        }
        let stopwatch = crate::metrics::Stopwatch::start();
        let matched = self.find_secret(head, bytes);
        stopwatch.record(crate::metrics::WEBHOOK_VERIFY_SECONDS);
        match matched {
            Some(secret_index) => Ok(Verified {
                meta: WebhookMeta {
                    generated_at: head.at,
                    secret_index,
                    signature: head.signature,
                },
                body,
            }),
            None => Err(VerifyError::SignatureMismatch),
        }
    }

    /// The index of the secret whose MAC matches, compared in constant time.
    fn find_secret(&self, head: &CheckedHead<'_>, bytes: &[u8]) -> Option<usize> {
        for (secret_index, key) in self.inner.keys.iter().enumerate() {
            let mut mac = key.clone();
            feed(&mut mac, head.generated_at, bytes);
            // `verify_slice` compares in constant time.
            if mac.verify_slice(&head.signature.0).is_ok() {
                return Some(secret_index);
            }
        }
        None
    }

    fn too_large(&self) -> VerifyError {
        VerifyError::BodyTooLarge {
            limit: self.inner.max_body_bytes,
        }
    }

    /// `at` is within the tolerance of the clock now (always, when timestamps are ignored).
    fn check_freshness(&self, at: UnixMillis) -> Result<(), VerifyError> {
        let Some(tolerance_ms) = self.inner.tolerance_ms else {
            return Ok(());
        };
        let now = self.inner.clock.now();
        if now.0 >= at.0 {
            let age_ms = now.0 - at.0;
            if age_ms > tolerance_ms {
                return Err(VerifyError::TimestampTooOld {
                    age_ms,
                    tolerance_ms,
                });
            }
        } else {
            let skew_ms = at.0 - now.0;
            if skew_ms > tolerance_ms {
                return Err(VerifyError::TimestampInFuture {
                    skew_ms,
                    tolerance_ms,
                });
            }
        }
        Ok(())
    }
}

/// Both headers must be present (an empty value counts as absent), `generated-at` first.
fn require_present(generated_at: &str, signature: &str) -> Result<(), VerifyError> {
    if generated_at.is_empty() {
        return Err(VerifyError::MissingHeader {
            name: GENERATED_AT_HEADER,
        });
    }
    if signature.is_empty() {
        return Err(VerifyError::MissingHeader {
            name: SIGNATURE_HEADER,
        });
    }
    Ok(())
}

/// 1 to 19 ASCII digits (always fits in `u64`); anything else is `None`.
fn parse_millis(text: &str) -> Option<UnixMillis> {
    let bytes = text.as_bytes();
    if bytes.is_empty() || bytes.len() > 19 {
        return None;
    }
    let mut value: u64 = 0;
    for &b in bytes {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value * 10 + u64::from(b - b'0');
    }
    Some(UnixMillis(value))
}

/// A request head that passed [`adapter::check_head`](crate::adapter::check_head): the parsed
/// timestamp and signature, waiting for the body
/// ([`CheckedHead::verify_body`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckedHead<'h> {
    generated_at: &'h str,
    at: UnixMillis,
    signature: Signature,
}

impl CheckedHead<'_> {
    /// The authenticated-to-be timestamp.
    pub fn generated_at(&self) -> UnixMillis {
        self.at
    }

    /// Finishes verification once the body is read: the body limit, the freshness window once
    /// more (same clock), and the HMAC.
    ///
    /// # Errors
    /// [`VerifyError::BodyTooLarge`], [`VerifyError::TimestampTooOld`] /
    /// [`VerifyError::TimestampInFuture`], or [`VerifyError::SignatureMismatch`].
    pub fn verify_body<B: AsRef<[u8]>>(
        &self,
        verifier: &Verifier,
        body: B,
    ) -> Result<Verified<B>, VerifyError> {
        verifier.verify_body(self, body)
    }
}

/// What verification established about a delivery, besides its body. Serializable, so it can
/// travel with the body on a queue.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct WebhookMeta {
    /// The authenticated `generated-at`.
    pub generated_at: UnixMillis,
    /// Which configured secret matched (order of `.secret(..)` calls).
    pub secret_index: usize,
    /// The verified signature.
    pub signature: Signature,
}

impl WebhookMeta {
    /// The key identifying this exact signed delivery (SHA-256 of the authenticated timestamp
    /// and signature), computed on demand.
    pub fn replay_key(&self) -> ReplayKey {
        ReplayKey::for_delivery(self.generated_at, &self.signature)
    }
}

/// A delivery whose signature and timestamp checked out: what verification established
/// ([`meta`](Self::meta)) and the raw body, exactly as received.
///
/// Parsing is a separate step ([`parse`](Self::parse)), so an application can verify, put the
/// delivery on its own queue, answer 2xx and parse in a worker. [`VerifiedDelivery`] (an owned
/// body) is serializable for that: the body travels as base64 in human-readable formats (JSON)
/// and as bytes in binary ones.
///
/// # Example
///
/// ```
/// use suki_ambient_core::{Bytes, SignedHeaders, UnixMillis, VerifiedDelivery, Verifier, WebhookSecret};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let verifier = Verifier::builder().secret("whsec").build()?;
/// let body = Bytes::from_static(br#"{"status":"success","session_id":"s","encounter_id":"e"}"#);
/// let h = SignedHeaders::new(&WebhookSecret::from("whsec"), UnixMillis::now(), &body);
/// let delivery: VerifiedDelivery = verifier.verify_parts(&h.generated_at, &h.signature, body)?;
///
/// let queued = serde_json::to_string(&delivery)?; // onto your queue...
/// let dequeued: VerifiedDelivery = serde_json::from_str(&queued)?; // ...and off it
/// assert_eq!(dequeued, delivery);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Verified<B = Bytes> {
    /// What verification established.
    pub meta: WebhookMeta,
    /// The raw body, exactly as received.
    pub body: B,
}

/// A verified delivery with an owned body: what to enqueue when parsing happens later.
pub type VerifiedDelivery = Verified<Bytes>;

impl<B: AsRef<[u8]>> fmt::Debug for Verified<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verified")
            .field("meta", &self.meta)
            .field("body_len", &self.body.as_ref().len())
            .finish()
    }
}

impl<B: AsRef<[u8]>> Verified<B> {
    /// Parses the body into a [`WebhookEvent`].
    ///
    /// # Errors
    /// [`PayloadError`] when the body is not a valid webhook payload.
    pub fn parse(&self) -> Result<WebhookEvent, PayloadError> {
        WebhookEvent::from_slice(self.body.as_ref())
    }

    /// The same delivery with the body turned into another type (e.g. `Bytes::copy_from_slice`
    /// to keep a borrowed one).
    pub fn map_body<C>(self, f: impl FnOnce(B) -> C) -> Verified<C> {
        Verified {
            meta: self.meta,
            body: f(self.body),
        }
    }
}

impl<B: AsRef<[u8]>> Serialize for Verified<B> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        let mut state = serializer.serialize_struct("Verified", 2)?;
        state.serialize_field("meta", &self.meta)?;
        state.serialize_field("body", &BodyOut(self.body.as_ref()))?;
        state.end()
    }
}

impl<'de> Deserialize<'de> for Verified<Bytes> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Wire {
            meta: WebhookMeta,
            body: BodyIn,
        }
        let wire = Wire::deserialize(deserializer)?;
        Ok(Self {
            meta: wire.meta,
            body: Bytes::from(wire.body.0),
        })
    }
}

/// A body as base64 text (human-readable formats) or bytes.
struct BodyOut<'a>(&'a [u8]);

impl Serialize for BodyOut<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            use base64::Engine as _;
            serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(self.0))
        } else {
            serializer.serialize_bytes(self.0)
        }
    }
}

struct BodyIn(Vec<u8>);

impl<'de> Deserialize<'de> for BodyIn {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = BodyIn;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a base64 string or bytes")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<BodyIn, E> {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .map(BodyIn)
                    .map_err(|_| E::custom("body is not valid base64"))
            }
            fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<BodyIn, E> {
                Ok(BodyIn(bytes.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, bytes: Vec<u8>) -> Result<BodyIn, E> {
                Ok(BodyIn(bytes))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<BodyIn, A::Error> {
                let mut out = Vec::new();
                while let Some(byte) = seq.next_element::<u8>()? {
                    out.push(byte);
                }
                Ok(BodyIn(out))
            }
        }
        if deserializer.is_human_readable() {
            deserializer.deserialize_str(Visitor)
        } else {
            deserializer.deserialize_bytes(Visitor)
        }
    }
}

#[cfg(test)]
mod tests;
