//! Encryption of stored bodies at rest: XChaCha20-Poly1305 (RustCrypto's `chacha20poly1305`),
//! a fresh random 24-byte nonce per row, the row's dedup key as associated data (a body moved
//! to another row does not open), and the key's id stored beside each row.
//!
//! Keys are 32 bytes, given in base64 ([`Keys::parse`], [`Keys::from_env`], [`Keys::from_file`]);
//! the first encrypts, any decrypts (rotation: put the new key first, run `suki-ambient inbox
//! rekey`, then drop the old one). A [`KeyProvider`] of your own can take them from a KMS.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// The length of a stored body's nonce, in front of its ciphertext.
const NONCE_LEN: usize = 24;

/// One 32-byte body key. Its [`id`](Self::id) (16 hex digits of a SHA-256 of the key, under a
/// label of its own) is stored with each row it encrypts; the key itself is zeroized when
/// dropped and never shown (`Debug` prints the id).
pub struct BodyKey {
    id: String,
    key: Zeroizing<[u8; 32]>,
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
        Self { id, key }
    }

    /// A key from its base64 (standard or URL-safe, padded or not).
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
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
        Ok(Self::new(bytes))
    }

    /// The key's id, as stored with the rows it encrypts.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&*self.key).into())
    }

    /// `plain` sealed under this key with `aad` (the inbox uses the row's dedup key): the nonce,
    /// then the ciphertext and its tag, as the inbox stores a body.
    pub fn seal(&self, aad: &[u8], plain: &[u8]) -> Vec<u8> {
        // A fresh random nonce from the thread's CSPRNG (ChaCha12 seeded and reseeded from the
        // OS): XChaCha's 24 bytes make a random nonce safe to use without a counter; a system
        // call per body (the OS generator) cost as much as the encryption itself.
        let mut nonce = XNonce::default();
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut nonce);
        let mut out = Vec::with_capacity(NONCE_LEN + plain.len() + 16);
        out.extend_from_slice(&nonce);
        match self.cipher().encrypt(&nonce, Payload { msg: plain, aad }) {
            Ok(sealed) => out.extend_from_slice(&sealed),
            // The AEAD fails only past its length limit (256 GiB); bodies are kilobytes.
            Err(_) => out.clear(),
        }
        out
    }

    /// What [`seal`](Self::seal) sealed, if this key and `aad` open it (`None`: another key,
    /// another row's `aad`, or altered bytes).
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_LEN + 16 {
            return None;
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        self.cipher()
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .ok()
    }
}

impl fmt::Debug for BodyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodyKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
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
    /// The key new bodies are encrypted with; `None` stores them in clear.
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
        assert_ne!(sealed[..24], again[..24], "a fresh nonce each time");
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
