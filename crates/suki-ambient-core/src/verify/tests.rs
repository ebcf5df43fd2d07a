//! The verifier's unit tests.

use super::*;
use crate::adapter::check_head;
use crate::sign;
use crate::time::FixedClock;

fn verifier(now: u64) -> Verifier {
    Verifier::builder()
        .secret("k")
        .clock(FixedClock::new(UnixMillis(now)))
        .build()
        .unwrap()
}

#[test]
fn parse_millis_bounds() {
    assert_eq!(parse_millis("0"), Some(UnixMillis(0)));
    assert_eq!(
        parse_millis("9999999999999999999"),
        Some(UnixMillis(9_999_999_999_999_999_999))
    );
    assert_eq!(parse_millis("10000000000000000000"), None);
    assert_eq!(parse_millis(""), None);
    assert_eq!(parse_millis("+1"), None);
    assert_eq!(parse_millis(" 1"), None);
    assert_eq!(parse_millis("１"), None); // full-width digit
}

#[test]
fn tolerance_boundaries_are_inclusive_both_ways() {
    let now = 1_766_122_020_941;
    let v = verifier(now);
    let tol = 300_000;
    for (at, ok) in [
        (now - tol, true),
        (now - tol - 1, false),
        (now + tol, true),
        (now + tol + 1, false),
    ] {
        let ts = at.to_string();
        let sig = sign(&WebhookSecret::from("k"), &ts, b"{}").to_hex();
        assert_eq!(v.verify_parts(&ts, &sig, b"{}").is_ok(), ok, "{at}");
    }
    let ts = (now - tol - 1).to_string();
    let sig = sign(&WebhookSecret::from("k"), &ts, b"{}").to_hex();
    assert_eq!(
        v.verify_parts(&ts, &sig, b"{}").unwrap_err(),
        VerifyError::TimestampTooOld {
            age_ms: tol + 1,
            tolerance_ms: tol
        }
    );
    let ts = (now + tol + 1).to_string();
    let sig = sign(&WebhookSecret::from("k"), &ts, b"{}").to_hex();
    assert_eq!(
        v.verify_parts(&ts, &sig, b"{}").unwrap_err(),
        VerifyError::TimestampInFuture {
            skew_ms: tol + 1,
            tolerance_ms: tol
        }
    );
}

#[test]
fn ignore_timestamp_accepts_any_age_but_not_any_format() {
    let v = Verifier::builder()
        .secret("k")
        .ignore_timestamp()
        .clock(FixedClock::new(UnixMillis(u64::MAX)))
        .build()
        .unwrap();
    let sig = sign(&WebhookSecret::from("k"), "1", b"x").to_hex();
    assert!(v.verify_parts("1", &sig, b"x").is_ok());
    let sig = sign(&WebhookSecret::from("k"), "1.5", b"x").to_hex();
    assert_eq!(
        v.verify_parts("1.5", &sig, b"x").unwrap_err(),
        VerifyError::InvalidTimestamp
    );
    assert_eq!(v.tolerance(), None);
}

#[test]
fn rotation_reports_the_matching_secret() {
    let v = Verifier::builder()
        .secret("old")
        .secret("new")
        .ignore_timestamp()
        .build()
        .unwrap();
    let sig = |k: &str| sign(&WebhookSecret::from(k), "1", b"x").to_hex();
    assert_eq!(
        v.verify_parts("1", &sig("old"), b"x")
            .unwrap()
            .meta
            .secret_index,
        0
    );
    assert_eq!(
        v.verify_parts("1", &sig("new"), b"x")
            .unwrap()
            .meta
            .secret_index,
        1
    );
    assert_eq!(
        v.verify_parts("1", &sig("third"), b"x").unwrap_err(),
        VerifyError::SignatureMismatch
    );
}

#[test]
fn headers_missing_empty_duplicate_and_non_ascii() {
    let v = verifier(1);
    let sig = sign(&WebhookSecret::from("k"), "1", b"x").to_hex();
    let mut h = HeaderMap::new();
    assert_eq!(
        v.verify(&h, b"x").unwrap_err(),
        VerifyError::MissingHeader {
            name: GENERATED_AT_HEADER
        }
    );
    h.insert(GENERATED_AT_HEADER, "1".parse().unwrap());
    assert_eq!(v.verify(&h, b"x").unwrap_err().code(), "missing_signature");
    h.insert(SIGNATURE_HEADER, "".parse().unwrap());
    assert_eq!(v.verify(&h, b"x").unwrap_err().code(), "missing_signature");
    h.insert(SIGNATURE_HEADER, sig.parse().unwrap());
    assert!(v.verify(&h, b"x").is_ok());
    h.append(SIGNATURE_HEADER, sig.parse().unwrap());
    assert_eq!(
        v.verify(&h, b"x").unwrap_err(),
        VerifyError::InvalidSignature
    );
    h.insert(SIGNATURE_HEADER, sig.parse().unwrap());
    h.append(GENERATED_AT_HEADER, "1".parse().unwrap());
    assert_eq!(
        v.verify(&h, b"x").unwrap_err(),
        VerifyError::InvalidTimestamp
    );
    h.insert(
        GENERATED_AT_HEADER,
        http::HeaderValue::from_bytes(b"1\xff").unwrap(),
    );
    assert_eq!(
        v.verify(&h, b"x").unwrap_err(),
        VerifyError::InvalidTimestamp
    );
    // A missing header wins over a malformed one.
    h.remove(SIGNATURE_HEADER);
    assert_eq!(v.verify(&h, b"x").unwrap_err().code(), "missing_signature");
}

#[test]
fn body_limit() {
    let v = Verifier::builder()
        .secret("k")
        .max_body_bytes(4)
        .ignore_timestamp()
        .build()
        .unwrap();
    let sig = sign(&WebhookSecret::from("k"), "1", b"12345").to_hex();
    assert_eq!(
        v.verify_parts("1", &sig, b"12345").unwrap_err(),
        VerifyError::BodyTooLarge { limit: 4 }
    );
    let sig = sign(&WebhookSecret::from("k"), "1", b"1234").to_hex();
    assert!(v.verify_parts("1", &sig, b"1234").is_ok());
}

#[test]
fn builder_refuses_unusable_configs() {
    assert_eq!(
        Verifier::builder().build().unwrap_err(),
        ConfigError::NoSecret
    );
    assert_eq!(
        Verifier::builder()
            .secret("a")
            .secret("")
            .build()
            .unwrap_err(),
        ConfigError::EmptySecret { index: 1 }
    );
    assert_eq!(
        Verifier::builder()
            .secret("a")
            .max_body_bytes(0)
            .build()
            .unwrap_err(),
        ConfigError::ZeroBodyLimit
    );
}

#[test]
fn debug_is_redacted() {
    let v = Verifier::builder().secret("MARKER-secret").build().unwrap();
    assert!(!format!("{v:?}").contains("MARKER"));
    let b = Verifier::builder().secret("MARKER-secret");
    assert!(!format!("{b:?}").contains("MARKER"));
}

#[test]
fn freshness_is_checked_again_when_the_body_is_complete() {
    let clock = FixedClock::new(UnixMillis(1_000_000));
    let v = Verifier::builder()
        .secret("k")
        .clock(clock.clone())
        .build()
        .unwrap();
    let sig = sign(&WebhookSecret::from("k"), "1000000", b"body").to_hex();
    let mut h = HeaderMap::new();
    h.insert(GENERATED_AT_HEADER, "1000000".parse().unwrap());
    h.insert(SIGNATURE_HEADER, sig.parse().unwrap());
    let head = check_head(&v, &h).unwrap();
    // The body trickles in for longer than the tolerance.
    clock.advance(DEFAULT_TOLERANCE + Duration::from_millis(1));
    assert_eq!(head.verify_body(&v, b"body").unwrap_err().code(), "stale");
    clock.set(UnixMillis(1_000_000));
    assert!(head.verify_body(&v, b"body").is_ok());
}

#[test]
fn secret_from_env_names_the_variable_and_defaults_hold() {
    let err = Verifier::builder()
        .secret_from_env("SUKI_TEST_SURELY_UNSET_VARIABLE")
        .build()
        .unwrap_err();
    assert_eq!(
        err,
        ConfigError::SecretEnv {
            name: "SUKI_TEST_SURELY_UNSET_VARIABLE".into(),
            not_unicode: false
        }
    );
    assert!(err.to_string().contains("SUKI_TEST_SURELY_UNSET_VARIABLE"));
    let v = Verifier::builder().secret("k").build().unwrap();
    assert_eq!(v.body_timeout(), DEFAULT_BODY_TIMEOUT);
    assert_eq!(
        Verifier::builder()
            .secret("k")
            .body_timeout(Duration::ZERO)
            .build()
            .unwrap_err(),
        ConfigError::ZeroBodyTimeout
    );
}

#[test]
fn one_order_of_checks_a_stale_oversized_delivery_is_stale_everywhere() {
    let v = Verifier::builder()
        .secret("k")
        .max_body_bytes(4)
        .clock(FixedClock::new(UnixMillis(10_000_000)))
        .build()
        .unwrap();
    let big = b"123456789";
    let sig = sign(&WebhookSecret::from("k"), "1", big).to_hex();
    assert_eq!(v.verify_parts("1", &sig, big).unwrap_err().code(), "stale");
    let mut h = HeaderMap::new();
    h.insert(GENERATED_AT_HEADER, "1".parse().unwrap());
    h.insert(SIGNATURE_HEADER, sig.parse().unwrap());
    h.insert(http::header::CONTENT_LENGTH, "9".parse().unwrap());
    assert_eq!(check_head(&v, &h).unwrap_err().code(), "stale");
}

#[test]
fn a_verified_delivery_round_trips_through_serde() {
    let v = Verifier::builder()
        .secret("k")
        .ignore_timestamp()
        .build()
        .unwrap();
    let body = Bytes::from_static(b"{\"status\":\"success\"}\xff");
    let sig = sign(&WebhookSecret::from("k"), "12", &body).to_hex();
    let delivery: VerifiedDelivery = v.verify_parts("12", &sig, body).unwrap();
    let json = serde_json::to_value(&delivery).unwrap();
    assert_eq!(json["meta"]["generated_at"], 12);
    assert_eq!(json["meta"]["signature"], sig);
    assert!(json["body"].is_string(), "base64 in JSON: {json}");
    let back: VerifiedDelivery = serde_json::from_value(json).unwrap();
    assert_eq!(back, delivery);
    let bad = serde_json::json!({"meta": {"generated_at": 1, "secret_index": 0, "signature": "zz"}, "body": ""});
    assert!(serde_json::from_value::<VerifiedDelivery>(bad).is_err());
}

#[test]
fn head_then_body_matches_verify() {
    let v = Verifier::builder()
        .secret("k")
        .max_body_bytes(8)
        .ignore_timestamp()
        .build()
        .unwrap();
    let sig = sign(&WebhookSecret::from("k"), "12", b"body").to_hex();
    let mut h = HeaderMap::new();
    h.insert(GENERATED_AT_HEADER, "12".parse().unwrap());
    h.insert(SIGNATURE_HEADER, sig.parse().unwrap());
    let head = check_head(&v, &h).unwrap();
    assert_eq!(head.generated_at(), UnixMillis(12));
    let by_parts = head.verify_body(&v, b"body").unwrap();
    assert_eq!(by_parts.meta, v.verify(&h, b"body").unwrap().meta);
    assert_eq!(
        head.verify_body(&v, b"bodx").unwrap_err(),
        VerifyError::SignatureMismatch
    );
    assert_eq!(
        head.verify_body(&v, b"123456789").unwrap_err(),
        VerifyError::BodyTooLarge { limit: 8 }
    );
    h.insert(http::header::CONTENT_LENGTH, "9".parse().unwrap());
    assert_eq!(
        check_head(&v, &h).unwrap_err(),
        VerifyError::BodyTooLarge { limit: 8 }
    );
}
