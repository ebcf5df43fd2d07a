//! Encryption of stored bodies at rest: AES-256-GCM (AWS-LC's, through `aws-lc-rs`, which the
//! client's TLS already links), a fresh random 12-byte nonce per row from AWS-LC's generator, the
//! row's dedup key as associated data (a body moved to another row does not open), and the key's
//! id stored beside each row.
//!
//! A stored body is one format byte (`1`: AES-256-GCM), the nonce, then the ciphertext and its
//! 16-byte tag. Random 96-bit nonces keep a key safe for 2^32 bodies (NIST SP 800-38D §8.3):
//! rotate a key well before it has sealed four billion bodies.
//!
//! Keys are 32 bytes, given in base64 ([`Keys::parse`], [`Keys::from_env`], [`Keys::from_file`]);
//! the first encrypts, any decrypts (rotation: put the new key first, run `suki-ambient inbox
//! rekey`, then drop the old one). A [`KeyProvider`] of your own can take them from a KMS.

use std::fmt;
use std::sync::Arc;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::{hkdf, hmac};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// The first byte of a body sealed with AES-256-GCM: the format, so that another can follow.
const FORMAT_AES_256_GCM: u8 = 1;
/// The length of a stored body's nonce, after its format byte.
const NONCE_LEN: usize = 12;
/// The length of the tag after the ciphertext.
const TAG_LEN: usize = 16;

/// One 32-byte body key. Its [`id`](Self::id) (16 hex digits of a SHA-256 of the key, under a
/// label of its own) is stored with each row it encrypts; the key is never shown (`Debug` prints
/// the id), and the copies this crate and AWS-LC hold are wiped when it is dropped.
pub struct BodyKey {
    id: String,
    cipher: LessSafeKey,
    /// The audit key derived from it ([`AuditKey::derived`](crate::AuditKey)).
    audit: Arc<AuditKey>,
}

impl BodyKey {
    /// A key from its 32 bytes.
    pub fn new(bytes: [u8; 32]) -> Self {
        let key = Zeroizing::new(bytes);
        let mut hash = Sha256::new();
        hash.update(b"suki-ambient-inbox key id\0");
        hash.update(&key[..]);
        let digest = hash.finalize();
        let id = hex::encode(&digest[..8]);
        // Expanded once into AWS-LC's context (which cleanses its memory when freed), not for
        // every body.
        let cipher = match UnboundKey::new(&AES_256_GCM, &key[..]) {
            Ok(key) => LessSafeKey::new(key),
            // PANIC: AES-256-GCM takes any 32-byte key; AWS-LC refuses only other lengths.
            Err(_) => unreachable!("a 32-byte AES-256-GCM key is always accepted"),
        };
        let audit = Arc::new(AuditKey::derived(&key));
        Self { id, cipher, audit }
    }

    /// The audit key derived from this key (HKDF-SHA-256 under a label of its own, so it
    /// reveals nothing of this key): what chains the audit log when no
    /// [`SUKI_AUDIT_KEY`](crate::AuditKey::from_env) is given.
    pub fn audit_key(&self) -> Arc<AuditKey> {
        Arc::clone(&self.audit)
    }

    /// A key from its base64 (standard or URL-safe, padded or not).
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        decode_key(text).map(|bytes| Self::new(*bytes))
    }

    /// The key's id, as stored with the rows it encrypts.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `plain` sealed under this key with `aad` (the inbox uses the row's dedup key): the format
    /// byte, the nonce, then the ciphertext and its tag, as the inbox stores a body.
    /// Empty only when AWS-LC has no randomness or the body is past AES-GCM's 64 GiB limit
    /// (the inbox's own writes then fail rather than store it).
    pub fn seal(&self, aad: &[u8], plain: &[u8]) -> Vec<u8> {
        self.try_seal(aad, plain).unwrap_or_default()
    }

    /// [`seal`](Self::seal), `None` where it would be empty.
    pub(crate) fn try_seal(&self, aad: &[u8], plain: &[u8]) -> Option<Vec<u8>> {
        // A fresh random nonce from AWS-LC's own generator (its CTR-DRBG, seeded from the OS):
        // the module that encrypts also makes its nonces, as a FIPS reading asks.
        let mut nonce = [0u8; NONCE_LEN];
        // No randomness: nothing sealed, never a predictable nonce.
        aws_lc_rs::rand::fill(&mut nonce).ok()?;
        // Encrypted in place in the stored body's own buffer: one allocation, no copy.
        let mut out = Vec::with_capacity(1 + NONCE_LEN + plain.len() + TAG_LEN);
        out.push(FORMAT_AES_256_GCM);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plain);
        match self.cipher.seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut out[1 + NONCE_LEN..],
        ) {
            Ok(tag) => out.extend_from_slice(tag.as_ref()),
            // AES-GCM fails only past its length limit (64 GiB); bodies are kilobytes.
            Err(_) => return None,
        }
        Some(out)
    }

    /// What [`seal`](Self::seal) sealed, if this key and `aad` open it (`None`: another key,
    /// another row's `aad`, or altered bytes).
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        let (&format, rest) = sealed.split_first()?;
        if format != FORMAT_AES_256_GCM || rest.len() < NONCE_LEN + TAG_LEN {
            return None;
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut in_out = ciphertext.to_vec();
        let plain_len = self
            .cipher
            .open_in_place(nonce, Aad::from(aad), &mut in_out)
            .ok()?
            .len();
        in_out.truncate(plain_len);
        Some(in_out)
    }
}

impl fmt::Debug for BodyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodyKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// What starts a keyed audit entry's hash.
pub(crate) const MAC_PREFIX: &str = "hmac-sha256:";

/// One 32-byte audit key. Its [`id`](Self::id) (16 hex digits of a SHA-256 of the key under a
/// label of its own) is written in each MAC it makes, so that a rotation shows in the chain and
/// older entries are checked with the key that chained them; the key is never shown (`Debug`
/// prints the id), and AWS-LC wipes its copy when it is dropped.
pub struct AuditKey {
    id: String,
    key: hmac::Key,
}

impl AuditKey {
    /// A key from its 32 bytes.
    pub fn new(bytes: [u8; 32]) -> Self {
        let bytes = Zeroizing::new(bytes);
        let mut hash = Sha256::new();
        hash.update(b"suki-ambient-inbox audit key id\0");
        hash.update(&bytes[..]);
        let id = hex::encode(&hash.finalize()[..8]);
        Self {
            id,
            key: hmac::Key::new(hmac::HMAC_SHA256, &bytes[..]),
        }
    }

    /// A key from its base64 (standard or URL-safe, padded or not), as `SUKI_AUDIT_KEY` holds it.
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        decode_key(text).map(|bytes| Self::new(*bytes))
    }

    /// The key in the environment variable `var` (e.g. `SUKI_AUDIT_KEY`); `Ok(None)` when it is
    /// unset or empty.
    pub fn from_env(var: &str) -> Result<Option<Self>, KeyError> {
        match std::env::var(var) {
            Ok(text) if !text.trim().is_empty() => Self::from_base64(&text).map(Some),
            _ => Ok(None),
        }
    }

    /// The audit key derived from a body key's bytes: HKDF-SHA-256 with a label of its own.
    pub(crate) fn derived(body_key: &[u8; 32]) -> Self {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"suki-ambient-inbox").extract(body_key);
        let mut out = Zeroizing::new([0u8; 32]);
        let filled = prk
            .expand(&[b"audit chain v1"], hkdf::HKDF_SHA256)
            .and_then(|okm| okm.fill(&mut out[..]));
        // PANIC: HKDF-SHA-256 expands to at most 255 × 32 bytes; 32 are always given.
        assert!(filled.is_ok(), "HKDF-SHA-256 expands 32 bytes");
        Self::new(*out)
    }

    /// The key's id, as each MAC it makes names it.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// HMAC-SHA-256 under this key of what `feed` gives, as `hmac-sha256:<id>:<hex>`.
    pub(crate) fn tag(&self, feed: impl FnOnce(&mut dyn FnMut(&[u8]))) -> String {
        let mut context = hmac::Context::with_key(&self.key);
        feed(&mut |bytes| context.update(bytes));
        let tag = context.sign();
        format!("{MAC_PREFIX}{}:{}", self.id, hex::encode(tag.as_ref()))
    }
}

impl fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl PartialEq for AuditKey {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for AuditKey {}

/// A 32-byte key from its base64 (standard or URL-safe, padded or not), wiped when dropped.
pub(crate) fn decode_key(text: &str) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    let text = text.trim();
    let decoded = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
            .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(text))
            .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text))
            .map_err(|_| KeyError::NotBase64)?,
    );
    let bytes: [u8; 32] = decoded[..]
        .try_into()
        .map_err(|_| KeyError::WrongLength(decoded.len()))?;
    Ok(Zeroizing::new(bytes))
}

/// A key could not be read. Its message names no key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Not base64.
    #[error("an inbox key is not base64")]
    NotBase64,
    /// Not 32 bytes once decoded.
    #[error("an inbox key is {0} bytes, not 32")]
    WrongLength(usize),
    /// No key was given.
    #[error("no inbox key given")]
    Empty,
    /// The key file could not be read.
    #[error("cannot read the inbox key file: {0}")]
    File(#[source] std::io::Error),
}

/// Where the inbox's body keys come from: the one that encrypts new bodies, and any by id to
/// decrypt. Implement it to take keys from a KMS (cache them: it is called for every row).
pub trait KeyProvider: Send + Sync + 'static {
    /// The key new bodies are encrypted with. `None`: none now (a KMS not answering): an inbox
    /// given this provider then refuses to store (503 to Suki, health red) rather than store a
    /// body in clear.
    fn current(&self) -> Option<Arc<BodyKey>>;

    /// The key with this id, if this provider has it.
    fn key(&self, id: &str) -> Option<Arc<BodyKey>>;

    /// The ids of every key this provider has (the current one first).
    fn ids(&self) -> Vec<String>;
}

/// Keys held in memory: the first encrypts, any decrypts.
#[derive(Clone)]
pub struct Keys {
    keys: Vec<Arc<BodyKey>>,
}

impl Keys {
    /// These keys, the first current.
    pub fn new(keys: impl IntoIterator<Item = BodyKey>) -> Result<Self, KeyError> {
        let keys: Vec<_> = keys.into_iter().map(Arc::new).collect();
        if keys.is_empty() {
            return Err(KeyError::Empty);
        }
        Ok(Self { keys })
    }

    /// Base64 keys separated by commas, spaces or lines, the first current.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        Self::new(
            text.split(|c: char| c == ',' || c.is_whitespace())
                .filter(|k| !k.is_empty())
                .map(BodyKey::from_base64)
                .collect::<Result<Vec<_>, _>>()?,
        )
    }

    /// The keys in the environment variable `var` (e.g. `SUKI_INBOX_KEYS`); `Ok(None)` when it is
    /// unset or empty.
    pub fn from_env(var: &str) -> Result<Option<Self>, KeyError> {
        match std::env::var(var) {
            Ok(text) if !text.trim().is_empty() => {
                let text = Zeroizing::new(text);
                Self::parse(&text).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// The keys in a file (as [`parse`](Self::parse) reads them).
    pub fn from_file(path: impl AsRef<std::path::Path>) -> Result<Self, KeyError> {
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(KeyError::File)?);
        Self::parse(&text)
    }
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.keys.iter().map(|k| k.id()))
            .finish()
    }
}

impl KeyProvider for Keys {
    fn current(&self) -> Option<Arc<BodyKey>> {
        self.keys.first().cloned()
    }

    fn key(&self, id: &str) -> Option<Arc<BodyKey>> {
        self.keys.iter().find(|k| k.id() == id).cloned()
    }

    fn ids(&self) -> Vec<String> {
        self.keys.iter().map(|k| k.id().to_owned()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> BodyKey {
        BodyKey::new([byte; 32])
    }

    #[test]
    fn a_sealed_body_opens_with_its_key_and_row_only() {
        let k = key(1);
        let sealed = k.seal(b"s-1/completed", b"{\"marker\":\"PHI-123\"}");
        assert!(!sealed.windows(7).any(|w| w == b"PHI-123"), "encrypted");
        assert_eq!(
            k.open(b"s-1/completed", &sealed).as_deref(),
            Some(&b"{\"marker\":\"PHI-123\"}"[..])
        );
        assert_eq!(k.open(b"s-2/completed", &sealed), None, "another row's");
        assert_eq!(key(2).open(b"s-1/completed", &sealed), None, "another key");
        let mut tampered = sealed.clone();
        *tampered.last_mut().expect("tag") ^= 1;
        assert_eq!(k.open(b"s-1/completed", &tampered), None, "tampered");
        assert_eq!(k.open(b"s-1/completed", &sealed[..10]), None, "cut short");
        let again = k.seal(b"s-1/completed", b"{\"marker\":\"PHI-123\"}");
        assert_ne!(sealed[..13], again[..13], "a fresh nonce each time");
        assert_eq!(sealed.len(), 1 + 12 + 20 + 16, "format, nonce, body, tag");
        let mut other_format = sealed.clone();
        other_format[0] = 2;
        assert_eq!(
            k.open(b"s-1/completed", &other_format),
            None,
            "unknown format"
        );
        assert_eq!(k.open(b"s-1/completed", &[]), None, "empty");
    }

    #[test]
    fn keys_read_from_base64_and_never_show() {
        let b64 = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        let keys = Keys::parse(&format!(
            " {b64},\n{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([8u8; 32])
        ))
        .expect("two keys");
        assert_eq!(keys.ids().len(), 2);
        assert_eq!(
            keys.current().expect("current").id(),
            BodyKey::new([7; 32]).id()
        );
        assert!(keys.key(BodyKey::new([8; 32]).id()).is_some());
        let shown = format!("{keys:?} {:?}", keys.current());
        assert!(!shown.contains(&b64) && !shown.contains("7, 7"), "{shown}");
        assert!(matches!(Keys::parse(""), Err(KeyError::Empty)));
        assert!(matches!(
            Keys::parse("not base64!"),
            Err(KeyError::NotBase64)
        ));
        assert!(matches!(
            Keys::parse(&base64::engine::general_purpose::STANDARD.encode([1u8; 16])),
            Err(KeyError::WrongLength(16))
        ));
        assert_eq!(BodyKey::new([7; 32]).id().len(), 16);
    }
}
