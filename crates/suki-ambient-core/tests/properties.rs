//! Property tests: sign → verify accepts; any single-byte change rejects; arbitrary input never panics.

use http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;
use suki_ambient_core::testing::FixedClock;
use suki_ambient_core::{UnixMillis, Verifier, VerifyError, WebhookEvent, WebhookSecret, sign};

const NOW: u64 = 1_766_122_020_941;

fn verifier(secret: &[u8]) -> Verifier {
    Verifier::builder()
        .secret(WebhookSecret::from_bytes(secret))
        .clock(FixedClock::new(UnixMillis(NOW)))
        .max_body_bytes(1 << 20)
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn sign_then_verify_accepts(
        secret in prop::collection::vec(any::<u8>(), 1..80),
        skew in -300_000i64..=300_000,
        body in prop::collection::vec(any::<u8>(), 0..2048),
    ) {
        let at = NOW.checked_add_signed(skew).unwrap().to_string();
        let sig = sign(&WebhookSecret::from_bytes(secret.clone()), &at, &body);
        let v = verifier(&secret);
        prop_assert!(v.verify_parts(&at, &sig.to_hex(), &body).is_ok());
        prop_assert!(v.verify_parts(&at, &sig.to_hex().to_uppercase(), &body).is_ok());
    }

    #[test]
    fn any_single_byte_change_is_rejected(
        secret in prop::collection::vec(any::<u8>(), 1..40),
        body in prop::collection::vec(any::<u8>(), 1..512),
        which in 0usize..3,
        index in any::<prop::sample::Index>(),
        delta in 1u8..=255,
    ) {
        let at = NOW.to_string();
        let sig = sign(&WebhookSecret::from_bytes(secret.clone()), &at, &body).to_hex();
        let v = verifier(&secret);
        let (mut at_b, mut sig_b, mut body_b) = (at.into_bytes(), sig.clone().into_bytes(), body);
        let target = match which { 0 => &mut at_b, 1 => &mut sig_b, _ => &mut body_b };
        let i = index.index(target.len());
        target[i] = target[i].wrapping_add(delta);
        let at_s = String::from_utf8_lossy(&at_b).into_owned();
        let sig_s = String::from_utf8_lossy(&sig_b).into_owned();
        let result = v.verify_parts(&at_s, &sig_s, &body_b);
        // A hex digit changed only in case ('a' → 'A') is the same byte, rightly accepted.
        let same_sig = which == 1 && sig_s.eq_ignore_ascii_case(&sig);
        if !same_sig {
            prop_assert!(result.is_err(), "accepted a modified delivery");
        }
    }

    #[test]
    fn arbitrary_headers_and_bodies_never_panic(
        at in ".{0,40}",
        sig in ".{0,80}",
        body in prop::collection::vec(any::<u8>(), 0..1024),
    ) {
        let v = verifier(b"k");
        let result = v.verify_parts(&at, &sig, &body);
        if let Err(err) = &result {
            prop_assert!((400..500).contains(&err.status().as_u16()));
            prop_assert!(!err.to_string().contains(&sig) || sig.is_empty() || sig.len() < 4);
        }
        let _ = WebhookEvent::from_slice(&body);
    }

    #[test]
    fn arbitrary_header_maps_never_panic(
        values in prop::collection::vec((0usize..3, prop::collection::vec(32u8..127, 0..70)), 0..5),
        body in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let names = ["generated-at", "x-api-key", "content-type"];
        let mut headers = HeaderMap::new();
        for (name, value) in values {
            headers.append(HeaderName::from_static(names[name]), HeaderValue::from_bytes(&value).unwrap());
        }
        let v = verifier(b"k");
        match v.verify(&headers, &body) {
            Ok(_) => prop_assert!(false, "random headers verified"),
            Err(VerifyError::BodyTooLarge { .. }) => prop_assert!(false, "small body too large"),
            Err(_) => {}
        }
    }

    #[test]
    fn arbitrary_json_objects_parse_or_fail_cleanly(
        status in prop_oneof![Just("success".to_owned()), Just("failure".to_owned()), Just("timeout".to_owned()), ".{0,12}"],
        fields in prop::collection::btree_map("[a-z_]{1,12}", any::<i32>(), 0..6),
    ) {
        let mut map = serde_json::Map::new();
        map.insert("status".into(), status.into());
        for (k, n) in fields { map.insert(k, n.into()); }
        let bytes = serde_json::to_vec(&map).unwrap();
        if let Ok(event) = WebhookEvent::from_slice(&bytes) {
            let again = WebhookEvent::from_slice(&event.to_vec()).unwrap();
            prop_assert_eq!(again, event);
        }
    }
}
