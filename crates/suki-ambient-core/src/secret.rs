//! `WebhookSecret`: the partner's HMAC key, zeroized on drop and never printed.

use std::fmt;

use zeroize::Zeroizing;

/// The webhook secret Suki issued at onboarding: the HMAC-SHA-256 key.
///
/// Built from a string (its UTF-8 bytes become the key, exactly as given: surrounding whitespace
/// is part of the key) or from raw bytes. The bytes are wiped from memory when the value is
/// dropped, `Debug` prints `WebhookSecret(<redacted>)`, and there is no getter for the plaintext.
///
/// # Example
///
/// ```
/// use suki_ambient_core::WebhookSecret;
///
/// let secret = WebhookSecret::from("whsec-from-onboarding");
/// assert_eq!(format!("{secret:?}"), "WebhookSecret(<redacted>)");
/// ```
#[derive(Clone)]
pub struct WebhookSecret(Zeroizing<Vec<u8>>);

impl WebhookSecret {
    /// A secret from raw key bytes.
    pub fn from_bytes(bytes: impl Into<Vec<u8>>) -> Self {
        Self(Zeroizing::new(bytes.into()))
    }

    /// The key length in bytes (the only thing about the key that may be shown).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the key is empty (an empty key is refused by [`crate::VerifierBuilder::build`]).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether the key starts or ends with ASCII whitespace: usually a copy-paste or a file's
    /// trailing newline, which makes every signature mismatch.
    pub fn has_surrounding_whitespace(&self) -> bool {
        let ws = |b: &u8| b.is_ascii_whitespace();
        self.0.first().is_some_and(ws) || self.0.last().is_some_and(ws)
    }

    /// The key bytes, for the HMAC only.
    pub(crate) fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl From<&str> for WebhookSecret {
    fn from(s: &str) -> Self {
        Self::from_bytes(s.as_bytes())
    }
}

impl From<String> for WebhookSecret {
    fn from(s: String) -> Self {
        Self(Zeroizing::new(s.into_bytes()))
    }
}

impl From<&String> for WebhookSecret {
    fn from(s: &String) -> Self {
        Self::from(s.as_str())
    }
}

impl From<Vec<u8>> for WebhookSecret {
    fn from(bytes: Vec<u8>) -> Self {
        Self::from_bytes(bytes)
    }
}

impl From<&[u8]> for WebhookSecret {
    fn from(bytes: &[u8]) -> Self {
        Self::from_bytes(bytes)
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_no_byte_of_the_secret() {
        let secret = WebhookSecret::from("MARKER-s3cr3t-Zq9");
        let shown = format!("{secret:?} {secret:#?}");
        assert!(!shown.contains("MARKER"));
        assert!(!shown.contains("Zq9"));
        // Not even the hex or the byte values.
        assert!(!shown.contains(&hex::encode(b"MARKER")));
        assert!(!shown.contains("77")); // 'M' = 77
        assert_eq!(shown, "WebhookSecret(<redacted>) WebhookSecret(<redacted>)");
    }

    #[test]
    fn string_secret_is_its_utf8_bytes() {
        let secret = WebhookSecret::from("κλειδί ");
        assert_eq!(secret.expose(), "κλειδί ".as_bytes());
        assert_eq!(secret.len(), "κλειδί ".len());
    }
}
