//! SMART Backend Services (`client_credentials` with a signed JWT client assertion): the token
//! an EHR gives a registered backend, fetched and cached by [`SmartBackendAuth`], a
//! [`FhirAuth`]. The private key signs with RS384 or ES384 (AWS-LC, the library rustls links);
//! [`SmartKey::jwks`] prints the public key to register with the EHR.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RSA_PKCS1_SHA384, RsaKeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::Url;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use suki_ambient_client::ClientError;
use suki_ambient_client::toolkit::read_capped;
use zeroize::Zeroizing;

use crate::FhirError;
use crate::client::{FhirAuth, clean_code, parse_base};

/// How long a client assertion is valid: SMART asks for no more than five minutes.
const ASSERTION_LIFETIME: Duration = Duration::from_secs(290);
/// The lifetime assumed when the token answer gives none.
const DEFAULT_TOKEN_LIFETIME: u64 = 300;
/// The shortest lifetime a token is cached for: an answer of `expires_in: 0` (or a few
/// seconds) would otherwise cost a token request per write. A token the EHR refuses before
/// then is fetched again once (401), as any refused token is.
const MIN_TOKEN_LIFETIME: u64 = 30;
/// The largest token answer or SMART configuration read.
const MAX_ANSWER: u64 = 64 * 1024;

/// The private key of a SMART backend client: RSA (2048 bits or more, signs RS384) or EC P-384
/// (signs ES384), with the key id (`kid`) registered with the EHR. `Debug` shows the algorithm
/// and the key id only.
pub struct SmartKey {
    kid: String,
    key: KeyKind,
}

enum KeyKind {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

impl fmt::Debug for SmartKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmartKey")
            .field("alg", &self.algorithm())
            .field("kid", &self.kid)
            .field("key", &"***")
            .finish()
    }
}

impl SmartKey {
    /// The key in `pem` (PKCS#8 `PRIVATE KEY`, PKCS#1 `RSA PRIVATE KEY` or SEC1
    /// `EC PRIVATE KEY`), known to the EHR as `kid`.
    pub fn from_pem(pem: &str, kid: impl Into<String>) -> Result<Self, FhirError> {
        let kid = kid.into();
        if kid.is_empty() || kid.len() > 256 || kid.chars().any(char::is_control) {
            return Err(FhirError::Config(
                "the key id (kid) is empty, long or has controls".into(),
            ));
        }
        let refused = || {
            FhirError::Config(
                "the SMART key is not an RSA (2048+ bits) or EC P-384 private key in PEM".into(),
            )
        };
        let der = PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|_| refused())?;
        let key = match &der {
            PrivateKeyDer::Pkcs8(der) => RsaKeyPair::from_pkcs8(der.secret_pkcs8_der())
                .map(KeyKind::Rsa)
                .or_else(|_| {
                    EcdsaKeyPair::from_pkcs8(
                        &ECDSA_P384_SHA384_FIXED_SIGNING,
                        der.secret_pkcs8_der(),
                    )
                    .map(KeyKind::Ec)
                }),
            PrivateKeyDer::Pkcs1(der) => {
                RsaKeyPair::from_der(der.secret_pkcs1_der()).map(KeyKind::Rsa)
            }
            PrivateKeyDer::Sec1(der) => EcdsaKeyPair::from_private_key_der(
                &ECDSA_P384_SHA384_FIXED_SIGNING,
                der.secret_sec1_der(),
            )
            .map(KeyKind::Ec),
            _ => return Err(refused()),
        }
        .map_err(|_| refused())?;
        if let KeyKind::Rsa(rsa) = &key
            && rsa.public_modulus_len() < 256
        {
            return Err(refused());
        }
        Ok(Self { kid, key })
    }

    /// The key in the PEM file at `path`.
    pub fn from_pem_file(
        path: impl AsRef<Path>,
        kid: impl Into<String>,
    ) -> Result<Self, FhirError> {
        let text = Zeroizing::new(std::fs::read_to_string(path.as_ref()).map_err(|e| {
            FhirError::Config(format!("the SMART key file cannot be read: {}", e.kind()))
        })?);
        Self::from_pem(&text, kid)
    }

    /// The key in the environment variable `var` (its PEM text).
    pub fn from_env(var: &str, kid: impl Into<String>) -> Result<Self, FhirError> {
        let text =
            Zeroizing::new(std::env::var(var).map_err(|_| {
                FhirError::Config(format!("{var} is not set (the SMART key's PEM)"))
            })?);
        Self::from_pem(&text, kid)
    }

    /// A new private key as PKCS#8 PEM: `RS384` (RSA 2048) or `ES384` (EC P-384). Keep it as a
    /// secret; register its [`jwks`](Self::jwks) with the EHR.
    pub fn generate_pem(algorithm: &str) -> Result<Zeroizing<String>, FhirError> {
        let failed = || FhirError::Config("generating the key failed".into());
        let der: Zeroizing<Vec<u8>> = match algorithm {
            "RS384" => {
                let key =
                    RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).map_err(|_| failed())?;
                let der: aws_lc_rs::encoding::Pkcs8V1Der<'static> =
                    aws_lc_rs::encoding::AsDer::as_der(&key).map_err(|_| failed())?;
                Zeroizing::new(der.as_ref().to_vec())
            }
            "ES384" => {
                let doc = EcdsaKeyPair::generate_pkcs8(
                    &ECDSA_P384_SHA384_FIXED_SIGNING,
                    &SystemRandom::new(),
                )
                .map_err(|_| failed())?;
                Zeroizing::new(doc.as_ref().to_vec())
            }
            _ => return Err(FhirError::Config("the algorithm is RS384 or ES384".into())),
        };
        let b64 = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(&*der));
        let mut pem = Zeroizing::new(String::with_capacity(b64.len() + 80));
        pem.push_str("-----BEGIN PRIVATE KEY-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).unwrap_or_default());
            pem.push('\n');
        }
        pem.push_str("-----END PRIVATE KEY-----\n");
        Ok(pem)
    }

    /// `RS384` or `ES384`.
    pub fn algorithm(&self) -> &'static str {
        match self.key {
            KeyKind::Rsa(_) => "RS384",
            KeyKind::Ec(_) => "ES384",
        }
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWK Set (`{"keys":[…]}`), to register with the EHR (or serve at
    /// your JWKS URL).
    pub fn jwks(&self) -> String {
        let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        let jwk = match &self.key {
            KeyKind::Rsa(rsa) => {
                let public = rsa.public_key();
                serde_json::json!({
                    "kty": "RSA",
                    "alg": "RS384",
                    "use": "sig",
                    "key_ops": ["verify"],
                    "kid": self.kid,
                    "n": b64(public.modulus().big_endian_without_leading_zero()),
                    "e": b64(public.exponent().big_endian_without_leading_zero()),
                })
            }
            KeyKind::Ec(ec) => {
                // The uncompressed point: 0x04, x, y (48 bytes each on P-384).
                let point = ec.public_key().as_ref();
                let (x, y) = point
                    .get(1..)
                    .unwrap_or_default()
                    .split_at(point.len().saturating_sub(1) / 2);
                serde_json::json!({
                    "kty": "EC",
                    "crv": "P-384",
                    "alg": "ES384",
                    "use": "sig",
                    "key_ops": ["verify"],
                    "kid": self.kid,
                    "x": b64(x),
                    "y": b64(y),
                })
            }
        };
        serde_json::json!({ "keys": [jwk] }).to_string()
    }

    /// A signed JWT (compact JWS) of `claims`.
    ///
    /// Written here rather than with `jsonwebtoken` (decided in issue 42): the signature is
    /// aws-lc-rs's (the crate the SDK already links for AES-GCM, HKDF and HMAC), and what is
    /// left is RFC 7515's compact form, base64url of two JSON objects joined by dots. An
    /// independent verifier checks it (Node's `crypto.verify` in the Medplum stand-in, against
    /// the exported JWKS, RS384 and ES384: `tests/tests/medplum.rs`). `jsonwebtoken` would bring its own key
    /// parsing (PKCS#1 for RSA where we hold PKCS#8), `pem` and `simple_asn1`, and no JWKS export
    /// with `key_ops`, for these twenty lines.
    fn sign(&self, claims: &serde_json::Value) -> Result<String, FhirError> {
        let header = serde_json::json!({"alg": self.algorithm(), "kid": self.kid, "typ": "JWT"});
        let mut jwt = URL_SAFE_NO_PAD.encode(header.to_string());
        jwt.push('.');
        jwt.push_str(&URL_SAFE_NO_PAD.encode(claims.to_string()));
        let failed = || FhirError::Config("signing the client assertion failed".into());
        let rng = SystemRandom::new();
        let signature = match &self.key {
            KeyKind::Rsa(rsa) => {
                let mut signature = vec![0; rsa.public_modulus_len()];
                rsa.sign(&RSA_PKCS1_SHA384, &rng, jwt.as_bytes(), &mut signature)
                    .map_err(|_| failed())?;
                signature
            }
            KeyKind::Ec(ec) => ec
                .sign(&rng, jwt.as_bytes())
                .map_err(|_| failed())?
                .as_ref()
                .to_vec(),
        };
        jwt.push('.');
        jwt.push_str(&URL_SAFE_NO_PAD.encode(signature));
        Ok(jwt)
    }
}

/// SMART Backend Services authorization: a [`FhirAuth`] that gets an access token with the
/// `client_credentials` grant and a JWT client assertion signed by a [`SmartKey`]
/// (`iss` = `sub` = the client id, `aud` = the token endpoint, a unique `jti`, `exp` under five
/// minutes), from the token endpoint the server's `.well-known/smart-configuration` names (or
/// one given). The token is cached until shortly before it expires; when the EHR refuses it
/// (401) it is fetched again once before the request fails. Tokens and keys are never logged;
/// `Debug` shows `***` for them.
///
/// The scopes asked for are derived from the client's write plan unless given
/// ([`scopes`](SmartBackendAuthBuilder::scopes)), and the scope the token endpoint grants is
/// checked against what each write needs: a gap fails the write with
/// [`FhirError::ScopeMissing`] (`fhir_scope_missing`, naming the scope) before anything is sent.
///
/// ```no_run
/// use suki_ambient_fhir::{FhirClient, SmartBackendAuth, SmartKey};
///
/// # fn main() -> Result<(), suki_ambient_fhir::FhirError> {
/// let key = SmartKey::from_pem_file("/run/secrets/ehr-key.pem", "suki-2026-12")?;
/// let auth = SmartBackendAuth::builder("https://ehr.example/fhir/R4", "my-client-id", key)
///     .build()?;
/// let ehr = FhirClient::builder("https://ehr.example/fhir/R4").auth(auth).build()?;
/// # let _ = ehr;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct SmartBackendAuth {
    inner: Arc<SmartInner>,
}

struct SmartInner {
    http: reqwest::Client,
    fhir_base: Url,
    client_id: String,
    key: SmartKey,
    /// The scopes given to the builder; `None`: derived from the write plan.
    scopes: Option<String>,
    /// Whether the token endpoint must be on the FHIR server's origin.
    same_origin: bool,
    timeout: Duration,
    state: tokio::sync::Mutex<TokenState>,
    fetched: AtomicU64,
}

#[derive(Default)]
struct TokenState {
    endpoint: Option<Url>,
    /// The token, until when it is used, and the scope granted (`None`: the answer named
    /// none, so what was asked for, RFC 6749 §5.1).
    token: Option<(Zeroizing<String>, Instant, Option<String>)>,
    /// Derived scopes: every scope a write plan wanted so far (it only grows, so that
    /// sessions with and without, say, orders do not make the token change back and forth).
    derived: Vec<String>,
}

/// What a token is asked for before any plan is known: the note alone.
const FIRST_SCOPES: &str = "system/DocumentReference.c system/DocumentReference.rs";

impl fmt::Debug for SmartBackendAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmartBackendAuth")
            .field("fhir_base", &self.inner.fhir_base.as_str())
            .field("client_id", &self.inner.client_id)
            .field("scopes", &self.inner.scopes)
            .field("key", &self.inner.key)
            .field("token", &"***")
            .finish()
    }
}

/// Builds a [`SmartBackendAuth`].
#[derive(Debug)]
pub struct SmartBackendAuthBuilder {
    fhir_base: String,
    client_id: String,
    key: SmartKey,
    scopes: Option<String>,
    token_endpoint: Option<String>,
    same_origin: bool,
    timeout: Duration,
}

impl SmartBackendAuth {
    /// The client `client_id` of the FHIR server at `fhir_base_url`, signing with `key`.
    pub fn builder(
        fhir_base_url: impl Into<String>,
        client_id: impl Into<String>,
        key: SmartKey,
    ) -> SmartBackendAuthBuilder {
        SmartBackendAuthBuilder {
            fhir_base: fhir_base_url.into(),
            client_id: client_id.into(),
            key,
            scopes: None,
            token_endpoint: None,
            same_origin: false,
            timeout: Duration::from_secs(30),
        }
    }

    /// How many tokens were fetched so far (a metric for tests and dashboards).
    pub fn tokens_fetched(&self) -> u64 {
        self.inner.fetched.load(Ordering::Relaxed)
    }

    /// The token endpoint: the configured one, or the server's `.well-known/smart-configuration`'s.
    async fn endpoint(&self, state: &mut TokenState) -> Result<Url, FhirError> {
        if let Some(url) = &state.endpoint {
            return Ok(url.clone());
        }
        let inner = &self.inner;
        let mut url = inner.fhir_base.clone();
        let path = format!(
            "{}/.well-known/smart-configuration",
            url.path().trim_end_matches('/')
        );
        url.set_path(&path);
        url.set_query(None);
        let response = inner
            .http
            .get(url)
            .header(ACCEPT, "application/json")
            .timeout(inner.timeout)
            .send()
            .await
            .map_err(|e| FhirError::Transport(ClientError::transport(e)))?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(FhirError::Token {
                status,
                code: "no_smart_configuration".into(),
            });
        }
        let body = read_capped(response, MAX_ANSWER)
            .await
            .map_err(FhirError::Transport)?;
        let config: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|_| FhirError::Config("the SMART configuration is not JSON".into()))?;
        let endpoint = config["token_endpoint"].as_str().ok_or_else(|| {
            FhirError::Config("the SMART configuration names no token_endpoint".into())
        })?;
        let endpoint = token_endpoint(endpoint, &inner.fhir_base, inner.same_origin)?;
        state.endpoint = Some(endpoint.clone());
        Ok(endpoint)
    }

    /// A fresh access token and how long it lives.
    /// The scopes a token is asked for now.
    fn asked(&self, state: &TokenState) -> String {
        match &self.inner.scopes {
            Some(scopes) => scopes.clone(),
            None if state.derived.is_empty() => FIRST_SCOPES.to_owned(),
            None => state.derived.join(" "),
        }
    }

    /// The cached token, or a fresh one: with the scope granted (or asked for).
    async fn token(
        &self,
        state: &mut TokenState,
    ) -> Result<(Zeroizing<String>, String), FhirError> {
        let asked = self.asked(state);
        if let Some((token, until, granted)) = &state.token
            && Instant::now() < *until
        {
            return Ok((token.clone(), granted.clone().unwrap_or(asked)));
        }
        let endpoint = self.endpoint(state).await?;
        let (token, lifetime, granted) = self.fetch(&endpoint, &asked).await?;
        // Used until shortly before it expires: a fifth of its life early, at most a minute.
        let early = (lifetime / 5).min(Duration::from_secs(60));
        state.token = Some((
            token.clone(),
            Instant::now() + lifetime - early,
            granted.clone(),
        ));
        Ok((token, granted.unwrap_or(asked)))
    }

    async fn fetch(
        &self,
        endpoint: &Url,
        scopes: &str,
    ) -> Result<(Zeroizing<String>, Duration, Option<String>), FhirError> {
        let inner = &self.inner;
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let mut jti = [0u8; 16];
        aws_lc_rs::rand::fill(&mut jti)
            .map_err(|_| FhirError::Config("no random bytes for the jti".into()))?;
        let claims = serde_json::json!({
            "iss": inner.client_id,
            "sub": inner.client_id,
            "aud": endpoint.as_str(),
            "exp": (now + ASSERTION_LIFETIME).as_secs(),
            "jti": hex::encode(jti),
        });
        let assertion = Zeroizing::new(inner.key.sign(&claims)?);
        // Sized up front so that the assertion is never copied into a buffer left behind.
        let form = Zeroizing::new(
            form_urlencoded::Serializer::new(String::with_capacity(3 * assertion.len() + 256))
                .append_pair("grant_type", "client_credentials")
                .append_pair("scope", scopes)
                .append_pair(
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                )
                .append_pair("client_assertion", &assertion)
                .finish(),
        );
        let response = inner
            .http
            .post(endpoint.clone())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json")
            .timeout(inner.timeout)
            .body(form.as_bytes().to_vec())
            .send()
            .await
            .map_err(|e| FhirError::Transport(ClientError::transport(e)))?;
        let status = response.status().as_u16();
        let body = Zeroizing::new(
            read_capped(response, MAX_ANSWER)
                .await
                .map_err(FhirError::Transport)?
                .to_vec(),
        );
        let answer: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        if !(200..300).contains(&status) {
            let code = answer["error"]
                .as_str()
                .map_or_else(|| "unknown".to_owned(), clean_code);
            return Err(FhirError::Token { status, code });
        }
        let bad = |why: &str| FhirError::Token {
            status,
            code: why.to_owned(),
        };
        let token = answer["access_token"]
            .as_str()
            .filter(|t| !t.is_empty() && t.len() <= 16 * 1024)
            .ok_or_else(|| bad("no_access_token"))?;
        if !answer["token_type"]
            .as_str()
            .is_some_and(|t| t.eq_ignore_ascii_case("bearer"))
        {
            return Err(bad("not_bearer"));
        }
        let lifetime = token_lifetime(answer["expires_in"].as_u64());
        // The scope granted, when the answer names it (a list of scope tokens, nothing else).
        let granted = answer["scope"]
            .as_str()
            .filter(|s| s.len() <= 8 * 1024 && s.chars().all(|c| c.is_ascii_graphic() || c == ' '))
            .map(str::to_owned);
        inner.fetched.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            lifetime_s = lifetime.as_secs(),
            "smart: access token fetched"
        );
        Ok((Zeroizing::new(token.to_owned()), lifetime, granted))
    }
}

#[async_trait::async_trait]
impl FhirAuth for SmartBackendAuth {
    async fn bearer(&self) -> Result<Zeroizing<String>, FhirError> {
        // One fetch at a time: concurrent requests wait for it rather than each asking.
        let mut state = self.inner.state.lock().await;
        Ok(self.token(&mut state).await?.0)
    }

    /// Derived scopes grow to what the plan wants (a token asked with fewer is dropped); the
    /// scope granted must cover what this write needs.
    async fn plan_scopes(&self, wanted: &[String], needed: &[String]) -> Result<(), FhirError> {
        let mut state = self.inner.state.lock().await;
        if self.inner.scopes.is_none() {
            let before = state.derived.len();
            for scope in wanted {
                if !state.derived.contains(scope) {
                    state.derived.push(scope.clone());
                }
            }
            if state.derived.len() != before {
                state.token = None;
            }
        }
        let (_, granted) = self.token(&mut state).await?;
        match needed.iter().find(|scope| !granted_covers(&granted, scope)) {
            Some(scope) => {
                tracing::warn!(
                    scope = %scope,
                    "suki fhir: the token endpoint did not grant a scope the write plan needs"
                );
                Err(FhirError::ScopeMissing {
                    scope: scope.clone(),
                })
            }
            None => Ok(()),
        }
    }

    async fn rejected(&self, token: &str) -> bool {
        let mut state = self.inner.state.lock().await;
        if state
            .token
            .as_ref()
            .is_some_and(|(cached, _, _)| cached.as_str() == token)
        {
            state.token = None;
        }
        true
    }
}

impl SmartBackendAuthBuilder {
    /// The scopes asked for, space-separated, instead of those derived from the write plan.
    ///
    /// By default they are derived: `system/<Type>.c` and `system/<Type>.rs` for each type
    /// the [`FhirClient`](crate::FhirClient)'s plan writes (`suki-ambient fhir capabilities`
    /// prints them), and `system/DocumentReference.c system/DocumentReference.rs` before the
    /// first plan. Either way, a token whose granted `scope` lacks one a write needs fails
    /// that write with [`FhirError::ScopeMissing`] (SMART v1 `.write`/`.read`/`.*` and v2
    /// `.cruds` forms, and `system/*`, are understood).
    #[must_use]
    pub fn scopes(mut self, scopes: impl Into<String>) -> Self {
        self.scopes = Some(scopes.into());
        self
    }

    /// The token endpoint, instead of the one `.well-known/smart-configuration` names.
    #[must_use]
    pub fn token_endpoint(mut self, url: impl Into<String>) -> Self {
        self.token_endpoint = Some(url.into());
        self
    }

    /// Refuse a token endpoint on another origin (scheme, host and port) than the FHIR
    /// server's ([`FhirError::Config`]). Off by default: EHRs commonly keep their
    /// authorization server on a host of its own (Oracle Health's is
    /// `authorization.cerner.com` for `fhir-ehr.cerner.com`; Epic's shares the host), and
    /// SMART's discovery document is what names it. Either way the endpoint must be `https`
    /// (`http` only for an `http` FHIR server), carry no credentials, and is never followed
    /// through a redirect. Turn it on where the EHR's token endpoint is on its own origin, so
    /// that a tampered discovery document cannot send the signed assertion elsewhere.
    #[must_use]
    pub fn require_same_origin_token_endpoint(mut self, required: bool) -> Self {
        self.same_origin = required;
        self
    }

    /// The timeout of a discovery or token request (default 30 s).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The auth. `Err` for a base URL or token endpoint that is not `http(s)`, an empty
    /// client id or scope.
    pub fn build(self) -> Result<SmartBackendAuth, FhirError> {
        let fhir_base = parse_base(&self.fhir_base)?;
        let client_id = self.client_id.trim().to_owned();
        if client_id.is_empty() || client_id.len() > 256 {
            return Err(FhirError::Config(
                "the SMART client id is empty or too long".into(),
            ));
        }
        let scopes = match self.scopes {
            Some(given) => {
                let scopes = given.split_whitespace().collect::<Vec<_>>().join(" ");
                if scopes.is_empty() {
                    return Err(FhirError::Config("no SMART scope given".into()));
                }
                Some(scopes)
            }
            None => None,
        };
        let endpoint = self
            .token_endpoint
            .as_deref()
            .map(|url| token_endpoint(url, &fhir_base, self.same_origin))
            .transpose()?;
        // The token endpoint is not followed elsewhere: a redirect is an error.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(self.timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| FhirError::Config(format!("HTTP client: {e}")))?;
        Ok(SmartBackendAuth {
            inner: Arc::new(SmartInner {
                http,
                fhir_base,
                client_id,
                key: self.key,
                scopes,
                same_origin: self.same_origin,
                timeout: self.timeout,
                state: tokio::sync::Mutex::new(TokenState {
                    endpoint,
                    token: None,
                    derived: Vec::new(),
                }),
                fetched: AtomicU64::new(0),
            }),
        })
    }
}

/// Whether the granted scopes (space-separated) cover `needed` (`system/<Type>.<c|rs>`): a
/// `system/` scope of the type or `*`, with SMART v2 permissions (`cruds`, in order) that
/// include every letter needed, or SMART v1 `write` (c), `read` (rs) or `*`. A v2 scope with a
/// query (`?category=…`) grants part of a type only and is not taken as covering it.
pub(crate) fn granted_covers(granted: &str, needed: &str) -> bool {
    let Some((kind, wanted)) = needed
        .strip_prefix("system/")
        .and_then(|rest| rest.split_once('.'))
    else {
        return false;
    };
    granted.split_whitespace().any(|scope| {
        let Some((their_kind, perms)) = scope
            .strip_prefix("system/")
            .and_then(|rest| rest.split_once('.'))
        else {
            return false;
        };
        if their_kind != kind && their_kind != "*" {
            return false;
        }
        match perms {
            "*" => true,
            "write" => wanted.chars().all(|c| matches!(c, 'c' | 'u' | 'd')),
            "read" => wanted.chars().all(|c| matches!(c, 'r' | 's')),
            v2 => {
                !v2.is_empty()
                    && v2.chars().all(|c| "cruds".contains(c))
                    && wanted.chars().all(|c| v2.contains(c))
            }
        }
    })
}

/// How long a token answered with `expires_in` is kept: 5 minutes when it says nothing, at
/// least 30 s (`expires_in: 0` would cost a token request per write) and at most a day.
fn token_lifetime(expires_in: Option<u64>) -> Duration {
    Duration::from_secs(
        expires_in
            .unwrap_or(DEFAULT_TOKEN_LIFETIME)
            .clamp(MIN_TOKEN_LIFETIME, 24 * 60 * 60),
    )
}

/// A token endpoint: `https` (or `http` when the FHIR server itself is `http`, as a local test
/// server: never a downgrade), with a host, without credentials; on the FHIR server's origin
/// when `same_origin`.
fn token_endpoint(text: &str, fhir_base: &Url, same_origin: bool) -> Result<Url, FhirError> {
    let url = Url::parse(text.trim())
        .map_err(|_| FhirError::Config("the token endpoint is not a URL".into()))?;
    let scheme_ok =
        url.scheme() == "https" || (url.scheme() == "http" && fhir_base.scheme() == "http");
    if !scheme_ok || url.host().is_none() || !url.username().is_empty() || url.password().is_some()
    {
        return Err(FhirError::Config(
            "the token endpoint must be https (http only for an http FHIR server), with a host, without credentials".into(),
        ));
    }
    if same_origin && url.origin() != fhir_base.origin() {
        return Err(FhirError::Config(
            "the token endpoint is not on the FHIR server's origin (require_same_origin_token_endpoint)"
                .into(),
        ));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn granted_scopes_are_read_in_v1_and_v2_forms() {
        let covers = granted_covers;
        assert!(covers("system/Condition.crs", "system/Condition.c"));
        assert!(covers("system/Condition.crs", "system/Condition.rs"));
        assert!(covers("system/Condition.cruds", "system/Condition.rs"));
        assert!(covers("system/*.cs system/*.r", "system/Condition.c"));
        assert!(covers(
            "launch system/Condition.write",
            "system/Condition.c"
        ));
        assert!(covers("system/Condition.read", "system/Condition.rs"));
        assert!(covers("system/*.*", "system/Task.rs"));
        assert!(!covers("system/Condition.read", "system/Condition.c"));
        assert!(!covers("system/Condition.r", "system/Condition.rs"));
        assert!(!covers(
            "system/DocumentReference.crs",
            "system/Condition.c"
        ));
        assert!(!covers("user/Condition.crs", "system/Condition.c"));
        assert!(!covers(
            "system/Condition.c?category=x",
            "system/Condition.c"
        ));
        assert!(!covers("system/Condition.", "system/Condition.c"));
        assert!(!covers("", "system/Condition.c"));
        assert!(!covers("system/Condition.crs", "Condition.c"));
    }

    #[test]
    fn short_token_lifetimes_are_kept_thirty_seconds() {
        assert_eq!(token_lifetime(Some(0)), Duration::from_secs(30));
        assert_eq!(token_lifetime(Some(5)), Duration::from_secs(30));
        assert_eq!(token_lifetime(None), Duration::from_secs(300));
        assert_eq!(token_lifetime(Some(3_600)), Duration::from_secs(3_600));
        assert_eq!(token_lifetime(Some(u64::MAX)), Duration::from_secs(86_400));
    }

    #[test]
    fn endpoints_are_never_a_downgrade() {
        let https = Url::parse("https://ehr.example/fhir").expect("url");
        let http = Url::parse("http://127.0.0.1:1/fhir").expect("url");
        assert!(token_endpoint("https://auth.example/token", &https, false).is_ok());
        assert!(token_endpoint("http://auth.example/token", &https, false).is_err());
        assert!(token_endpoint("http://127.0.0.1:1/token", &http, false).is_ok());
        // Another origin is refused only when asked to be.
        assert!(token_endpoint("https://auth.example/token", &https, true).is_err());
        let same = format!(
            "{}://{}/oauth2/token",
            https.scheme(),
            https.host_str().unwrap_or("")
        );
        assert!(token_endpoint(&same, &https, true).is_ok());
        assert!(token_endpoint("https://u:p@auth.example/token", &https, false).is_err());
        assert!(token_endpoint("file:///etc/passwd", &http, false).is_err());
    }

    #[test]
    fn generated_keys_sign_and_publish_their_jwks() {
        for alg in ["RS384", "ES384"] {
            let pem = SmartKey::generate_pem(alg).expect("generated");
            let key = SmartKey::from_pem(&pem, "kid-1").expect("parses");
            assert_eq!(key.algorithm(), alg);
            assert!(!format!("{key:?}").contains("PRIVATE"), "{key:?}");
            let jwks: serde_json::Value = serde_json::from_str(&key.jwks()).expect("json");
            let jwk = &jwks["keys"][0];
            assert_eq!(jwk["kid"], "kid-1");
            assert_eq!(jwk["alg"], alg);
            assert!(jwk.get("d").is_none(), "no private part");
            if alg == "ES384" {
                assert_eq!(
                    URL_SAFE_NO_PAD
                        .decode(jwk["x"].as_str().expect("x"))
                        .expect("b64")
                        .len(),
                    48
                );
            } else {
                assert_eq!(
                    URL_SAFE_NO_PAD
                        .decode(jwk["n"].as_str().expect("n"))
                        .expect("b64")
                        .len(),
                    256
                );
            }
            let jwt = key.sign(&serde_json::json!({"iss": "c"})).expect("signed");
            assert_eq!(jwt.split('.').count(), 3);
        }
        assert!(SmartKey::generate_pem("HS256").is_err());
    }

    #[test]
    fn keys_that_are_not_rsa_or_p384_are_refused() {
        assert!(SmartKey::from_pem("not a pem", "k").is_err());
        assert!(
            SmartKey::from_pem(
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
                "k"
            )
            .is_err()
        );
    }
}
