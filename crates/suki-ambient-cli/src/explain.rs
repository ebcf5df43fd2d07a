//! `verify --explain`: which common mistake would have produced the received signature.

use base64::Engine as _;
use suki_ambient_core::{Signature, UnixMillis, VerifyError, WebhookSecret, sign};

/// Hints for a failed verification: each names a mistake under which the received signature
/// (or timestamp) would have been right.
pub(crate) fn explain(
    err: &VerifyError,
    secret: &str,
    generated_at: &str,
    signature: &str,
    body: &[u8],
    now: UnixMillis,
) -> Vec<String> {
    let mut hints = Vec::new();
    match err {
        VerifyError::TimestampTooOld { .. } | VerifyError::TimestampInFuture { .. } => {
            if generated_at.len() <= 11 {
                hints.push(format!(
                    "generated-at looks like seconds ({generated_at}); Suki sends milliseconds ({})",
                    now.0
                ));
            } else if generated_at.len() >= 15 {
                hints.push(
                    "generated-at looks like microseconds or nanoseconds; Suki sends milliseconds"
                        .into(),
                );
            } else {
                hints.push(
                    "the clocks differ by more than the tolerance: check NTP on this host".into(),
                );
            }
        }
        VerifyError::InvalidSignature => {
            if let Some(hint) = base64_hint(secret, generated_at, signature, body) {
                hints.push(hint);
            }
        }
        VerifyError::SignatureMismatch => {
            let Ok(received) = Signature::from_hex(signature) else {
                return hints;
            };
            for (mistake, candidate_secret, text) in candidates(secret, generated_at, body) {
                if hmac(candidate_secret.as_bytes(), &text) == received.0 {
                    hints.push(mistake);
                }
            }
        }
        _ => {}
    }
    if hints.is_empty() && matches!(err, VerifyError::SignatureMismatch) {
        hints.push(
            "no common mistake explains it: check the secret (staging vs production, a rotation) and that the body is byte for byte what was sent".into(),
        );
    }
    hints
}

/// HMAC-SHA-256 of arbitrary bytes: the candidates are not all of Suki's `a:b` shape.
fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    use hmac::{KeyInit, Mac};
    // PANIC: HMAC accepts keys of any length.
    let mut mac =
        <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key).expect("any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Suki's signed text: `at:body`.
fn signed_text(at: &str, body: &[u8]) -> Vec<u8> {
    let mut text = Vec::with_capacity(at.len() + 1 + body.len());
    text.extend_from_slice(at.as_bytes());
    text.push(b':');
    text.extend_from_slice(body);
    text
}

/// (mistake, secret used, signed text) for each common mistake.
fn candidates(secret: &str, at: &str, body: &[u8]) -> Vec<(String, String, Vec<u8>)> {
    let std = |at: &str, body: Vec<u8>| signed_text(at, &body);
    let mut out = Vec::new();
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
        for (label, bytes) in [
            ("compact", serde_json::to_vec(&value).unwrap_or_default()),
            (
                "pretty-printed",
                serde_json::to_vec_pretty(&value).unwrap_or_default(),
            ),
            ("Python json.dumps-style", python_style(&value).into_bytes()),
        ] {
            if bytes != body {
                out.push((
                    format!("the signer re-serialized the JSON ({label}, keys sorted) before signing: sign and send the same raw bytes, never re-encoded JSON"),
                    secret.to_owned(),
                    std(at, bytes),
                ));
            }
        }
        // Re-serialization that kept the keys in their original order (JavaScript's
        // JSON.stringify, Python's json.dumps of a parsed dict): only the spacing changed.
        for (label, layout) in [
            ("compact", Layout::Compact),
            ("pretty-printed", Layout::Pretty),
            ("Python json.dumps-style", Layout::Python),
        ] {
            let bytes = respace(body, layout);
            if bytes != body {
                out.push((
                    format!("the signer re-serialized the JSON ({label}, keys in their original order) before signing: sign and send the same raw bytes, never re-encoded JSON"),
                    secret.to_owned(),
                    std(at, bytes),
                ));
            }
        }
    }
    // Line endings. Each candidate is what the signer signed; `body` is what arrived.
    let ending =
        |label: &str, signed: Vec<u8>| (label.to_owned(), secret.to_owned(), std(at, signed));
    out.push(ending(
        "the body lost a trailing newline after signing (the signer's copy ends with one): send the exact bytes that were signed",
        [body, b"\n"].concat(),
    ));
    out.push(ending(
        "the body lost a trailing CRLF after signing (the signer's copy ends with \\r\\n)",
        [body, b"\r\n"].concat(),
    ));
    if let Some(signed) = body.strip_suffix(b"\r\n") {
        out.push(ending(
            "the body gained a trailing CRLF after signing: send it with curl --data-binary, not -d",
            signed.to_vec(),
        ));
    }
    if let Some(signed) = body.strip_suffix(b"\n") {
        out.push(ending(
            "the body gained a trailing newline after signing (an editor or `echo` added it): send the exact signed bytes (curl --data-binary @file)",
            signed.to_vec(),
        ));
    }
    if body.windows(2).any(|w| w == b"\r\n") {
        out.push(ending(
            "the body's line endings were converted from LF to CRLF after signing",
            String::from_utf8_lossy(body)
                .replace("\r\n", "\n")
                .into_bytes(),
        ));
    }
    if let Ok(ms) = at.parse::<u64>() {
        out.push((
            format!(
                "the signer used seconds ({}) in the signed text while the header has milliseconds",
                ms / 1000
            ),
            secret.to_owned(),
            std(&(ms / 1000).to_string(), body.to_vec()),
        ));
    }
    let mut dot = at.as_bytes().to_vec();
    dot.push(b'.');
    dot.extend_from_slice(body);
    out.push((
        "the signer joined timestamp and body with '.' instead of ':'".into(),
        secret.to_owned(),
        dot,
    ));
    out.push((
        "the signer MACed the body alone, without `generated-at:`".into(),
        secret.to_owned(),
        body.to_vec(),
    ));
    let mut concat = at.as_bytes().to_vec();
    concat.extend_from_slice(body);
    out.push((
        "the signer joined timestamp and body with no separator".into(),
        secret.to_owned(),
        concat,
    ));
    for (label, variant) in [
        (
            "whitespace around the secret: the signer trimmed it, the verifier did not (trim the configured secret)",
            secret.trim().to_owned(),
        ),
        (
            "whitespace around the secret: the signer's copy ends with a newline (read from a file?)",
            format!("{secret}\n"),
        ),
        (
            "whitespace around the secret: the signer's copy ends with a space",
            format!("{secret} "),
        ),
    ] {
        if variant != secret {
            out.push((label.into(), variant, std(at, body.to_vec())));
        }
    }
    out
}

/// How [`respace`] lays JSON out.
#[derive(Clone, Copy)]
enum Layout {
    /// No whitespace at all.
    Compact,
    /// Two-space indentation, `": "` (JavaScript's `JSON.stringify(v, null, 2)`).
    Pretty,
    /// `", "` and `": "` on one line (Python's `json.dumps` defaults).
    Python,
}

/// The same JSON tokens, in the same order, with the whitespace of `layout`: what a signer that
/// parsed and re-encoded the body with an order-preserving library would have signed.
fn respace(body: &[u8], layout: Layout) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() * 2);
    let mut depth = 0usize;
    let (mut in_string, mut escaped) = (false, false);
    let newline = |out: &mut Vec<u8>, depth: usize| {
        out.push(b'\n');
        out.extend(std::iter::repeat_n(b' ', depth * 2));
    };
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        i += 1;
        if in_string {
            out.push(b);
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b' ' | b'\t' | b'\n' | b'\r' => {}
            b'"' => {
                in_string = true;
                out.push(b);
            }
            b'{' | b'[' => {
                out.push(b);
                depth += 1;
                // An empty object or array stays `{}` / `[]`.
                let next = body[i..].iter().find(|c| !c.is_ascii_whitespace());
                if matches!(layout, Layout::Pretty) && !matches!(next, Some(b'}' | b']')) {
                    newline(&mut out, depth);
                }
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                if matches!(layout, Layout::Pretty) && !matches!(out.last(), Some(b'{' | b'[')) {
                    newline(&mut out, depth);
                }
                out.push(b);
            }
            b',' => {
                out.push(b);
                match layout {
                    Layout::Pretty => newline(&mut out, depth),
                    Layout::Python => out.push(b' '),
                    Layout::Compact => {}
                }
            }
            b':' => {
                out.push(b);
                if !matches!(layout, Layout::Compact) {
                    out.push(b' ');
                }
            }
            _ => out.push(b),
        }
    }
    out
}

/// Python's default `json.dumps` separators: `", "` and `": "`.
fn python_style(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Array(items) => {
            format!(
                "[{}]",
                items
                    .iter()
                    .map(python_style)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
        serde_json::Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!(
                    "{}: {}",
                    serde_json::Value::String(k.clone()),
                    python_style(v)
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

fn base64_hint(secret: &str, at: &str, signature: &str, body: &[u8]) -> Option<String> {
    let engines = [
        base64::engine::general_purpose::STANDARD,
        base64::engine::general_purpose::URL_SAFE,
    ];
    let decoded = engines
        .iter()
        .find_map(|e| e.decode(signature.trim()).ok())?;
    let expected = sign(&WebhookSecret::from(secret), at, body);
    (decoded.as_slice() == expected.0.as_slice())
        .then(|| "X-API-Key is base64; Suki sends the signature as hex (64 hex digits)".to_owned())
}
