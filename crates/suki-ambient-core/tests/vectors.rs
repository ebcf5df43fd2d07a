//! Every case of `testdata/vectors/signatures.json`, through `verify` and `verify_parts`.

use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use suki_ambient_core::testing::{FixedClock, signature_vectors};
use suki_ambient_core::{GENERATED_AT_HEADER, SIGNATURE_HEADER, UnixMillis, Verifier};

fn outcome<T>(result: Result<T, suki_ambient_core::VerifyError>) -> Option<String> {
    result.err().map(|e| e.code().to_owned())
}

#[test]
fn every_vector_gives_the_expected_result_through_both_entry_points() {
    let vectors = signature_vectors();
    assert!(
        vectors.len() >= 70,
        "expected the full vector set, got {}",
        vectors.len()
    );
    for v in &vectors {
        let verifier = Verifier::builder()
            .secret(v.secret.as_str())
            .tolerance(Duration::from_millis(v.tolerance_ms))
            .clock(FixedClock::new(UnixMillis(v.now_ms)))
            .build()
            .unwrap();

        let parts = outcome(verifier.verify_parts(&v.generated_at, &v.signature, &v.body));
        assert_eq!(parts, v.expected_error, "verify_parts: {}", v.name);

        let mut headers = HeaderMap::new();
        // An empty value in the vectors means the header is absent.
        if !v.generated_at.is_empty() {
            headers.insert(
                GENERATED_AT_HEADER,
                HeaderValue::from_str(&v.generated_at).unwrap(),
            );
        }
        if !v.signature.is_empty() {
            // Header names are case-insensitive: use Suki's spelling.
            headers.insert("X-API-Key", HeaderValue::from_str(&v.signature).unwrap());
        }
        let full = outcome(verifier.verify(&headers, &v.body));
        assert_eq!(full, v.expected_error, "verify: {}", v.name);

        if v.expected_error.is_none() {
            let verified = verifier.verify(&headers, &v.body).unwrap();
            assert_eq!(verified.body, &v.body);
            assert_eq!(verified.meta.secret_index, 0);
            assert_eq!(verified.meta.generated_at.to_string(), v.generated_at);
            // Signing reproduces the vector's signature (lowercase).
            let again =
                suki_ambient_core::sign(&v.secret.as_str().into(), &v.generated_at, &v.body);
            assert_eq!(
                again.to_hex(),
                v.signature.to_lowercase(),
                "sign: {}",
                v.name
            );
        }
    }
}

#[test]
fn rotation_over_the_vectors_reports_the_right_index() {
    for v in signature_vectors()
        .iter()
        .filter(|v| v.expected_error.is_none())
    {
        let verifier = Verifier::builder()
            .secret("some-older-secret")
            .secret(v.secret.as_str())
            .ignore_timestamp()
            .build()
            .unwrap();
        let verified = verifier
            .verify_parts(&v.generated_at, &v.signature, &v.body)
            .unwrap();
        assert_eq!(verified.meta.secret_index, 1, "{}", v.name);
    }
    assert!(SIGNATURE_HEADER.eq_ignore_ascii_case("X-API-Key"));
}
