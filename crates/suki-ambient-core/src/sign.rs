//! Signing: `sign` computes Suki's `X-API-Key` value; `SignedHeaders` builds both headers.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use http::{HeaderMap, HeaderValue};
use sha2::Sha256;

use crate::{GENERATED_AT_HEADER, SIGNATURE_HEADER, UnixMillis, VerifyError, WebhookSecret};

pub(crate) type HmacSha256 = Hmac<Sha256>;

/// Length of an HMAC-SHA-256 signature in bytes.
pub const SIGNATURE_LEN: usize = 32;

/// The HMAC state keyed with `secret`, before any data.
pub(crate) fn keyed(secret: &WebhookSecret) -> HmacSha256 {
    // PANIC: HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    <HmacSha256 as KeyInit>::new_from_slice(secret.expose()).expect("HMAC takes any key length")
}

/// Feeds Suki's signed text (`generated-at` + `:` + body) into a keyed state.
pub(crate) fn feed(mac: &mut HmacSha256, generated_at: &str, body: &[u8]) {
    mac.update(generated_at.as_bytes());
    mac.update(b":");
    mac.update(body);
}

/// An HMAC-SHA-256 signature: 32 bytes, sent as 64 hex digits in `X-API-Key`.
///
/// Signatures travel in the clear, so `Debug` and `Display` show the hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature(pub [u8; SIGNATURE_LEN]);

impl Signature {
    /// Lowercase hex, as Suki sends it.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Decodes 64 hex digits (either case) into a signature.
    ///
    /// # Errors
    /// [`VerifyError::InvalidSignature`] when the text is not exactly 64 hex digits.
    pub fn from_hex(text: &str) -> Result<Self, VerifyError> {
        let mut out = [0u8; SIGNATURE_LEN];
        hex::decode_to_slice(text.as_bytes(), &mut out)
            .map_err(|_| VerifyError::InvalidSignature)?;
        Ok(Self(out))
    }

    /// The raw bytes.
    pub fn into_inner(self) -> [u8; SIGNATURE_LEN] {
        self.0
    }
}

impl serde::Serialize for Signature {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for Signature {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::from_hex(&text).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", self.to_hex())
    }
}

/// Signs a delivery the way Suki does: `hex(HMAC-SHA-256(secret, generated_at + ":" + body))`.
///
/// `generated_at` is the exact header text (Unix milliseconds as decimal digits).
///
/// # Example
///
/// ```
/// use suki_ambient_core::{sign, WebhookSecret};
///
/// let sig = sign(&WebhookSecret::from("k"), "1766122020941", br#"{"status":"success"}"#);
/// assert_eq!(sig.to_hex().len(), 64);
/// ```
pub fn sign(secret: &WebhookSecret, generated_at: &str, body: &[u8]) -> Signature {
    let mut mac = keyed(secret);
    feed(&mut mac, generated_at, body);
    Signature(mac.finalize().into_bytes().into())
}

/// The two headers of a signed delivery: `generated-at` and `X-API-Key`.
///
/// # Example
///
/// ```
/// use suki_ambient_core::{SignedHeaders, UnixMillis, Verifier, WebhookSecret};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let secret = WebhookSecret::from("k");
/// let body = br#"{"status":"success","session_id":"s","encounter_id":"e"}"#;
/// let headers = SignedHeaders::new(&secret, UnixMillis::now(), body).to_header_map();
/// let verifier = Verifier::builder().secret(secret).build()?;
/// assert!(verifier.verify(&headers, body).is_ok());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SignedHeaders {
    /// The `generated-at` value: Unix milliseconds as decimal digits.
    pub generated_at: String,
    /// The `X-API-Key` value: lowercase hex of the signature.
    pub signature: String,
}

impl SignedHeaders {
    /// Signs `body` as generated at `at`.
    pub fn new(secret: &WebhookSecret, at: UnixMillis, body: &[u8]) -> Self {
        let generated_at = at.to_string();
        let signature = sign(secret, &generated_at, body).to_hex();
        Self {
            generated_at,
            signature,
        }
    }

    /// Signs `body` as generated now (system clock).
    pub fn now(secret: &WebhookSecret, body: &[u8]) -> Self {
        Self::new(secret, UnixMillis::now(), body)
    }

    /// `(name, value)` pairs, lowercase names, ready for any HTTP client.
    pub fn pairs(&self) -> [(&'static str, &str); 2] {
        [
            (GENERATED_AT_HEADER, &self.generated_at),
            (SIGNATURE_HEADER, &self.signature),
        ]
    }

    /// Adds both headers to `headers`, replacing earlier values. A value that is not valid
    /// header text (possible only if the public fields were set by hand) is left out, so the
    /// receiver reports the header as missing.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for (name, value) in self.pairs() {
            match HeaderValue::from_str(value) {
                Ok(value) => {
                    headers.insert(name, value);
                }
                Err(_) => {
                    headers.remove(name);
                }
            }
        }
    }

    /// A header map holding both headers.
    pub fn to_header_map(&self) -> HeaderMap {
        let mut headers = HeaderMap::with_capacity(2);
        self.apply(&mut headers);
        headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4231_case_2() {
        // RFC 4231 test case 2 ("Jefe"), fed through `feed` with an empty body so the signed
        // text is exactly "what do ya want for nothing?" + ":" ... so check HMAC alone instead.
        let mut mac = keyed(&WebhookSecret::from("Jefe"));
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn hand_made_invalid_values_are_left_out_not_panicked_on() {
        let bad = SignedHeaders {
            generated_at: "1\n2".into(),
            signature: "ab".into(),
        };
        let map = bad.to_header_map();
        assert!(map.get(GENERATED_AT_HEADER).is_none());
        assert_eq!(map.get(SIGNATURE_HEADER).unwrap(), "ab");
    }

    #[test]
    fn hex_round_trip_and_case() {
        let sig = sign(&WebhookSecret::from("k"), "1", b"x");
        assert_eq!(Signature::from_hex(&sig.to_hex()), Ok(sig));
        assert_eq!(Signature::from_hex(&sig.to_hex().to_uppercase()), Ok(sig));
        assert_eq!(
            Signature::from_hex(&sig.to_hex()[..62]),
            Err(VerifyError::InvalidSignature)
        );
        assert_eq!(
            Signature::from_hex(&format!("{}0", sig.to_hex())),
            Err(VerifyError::InvalidSignature)
        );
        assert_eq!(
            Signature::from_hex(&"g".repeat(64)),
            Err(VerifyError::InvalidSignature)
        );
    }
}
