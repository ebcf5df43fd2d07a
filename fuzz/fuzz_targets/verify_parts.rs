//! `Verifier::verify_parts` and `adapter::check_head_parts` on arbitrary header texts and bodies: never
//! panics, every error is 4xx, and a random signature never verifies.
#![no_main]

use libfuzzer_sys::fuzz_target;
use suki_ambient_core::adapter::check_head_parts;
use suki_ambient_core::{FixedClock, UnixMillis, Verifier, sign};

fuzz_target!(|data: &[u8]| {
    // Layout: generated-at \xff signature \xff body (missing parts are empty).
    let mut parts = data.splitn(3, |&b| b == 0xff);
    let at = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let sig = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let body = parts.next().unwrap_or_default();
    let verifier = Verifier::builder()
        .secret("fuzz-secret")
        .secret("fuzz-secret-2")
        .clock(FixedClock::new(UnixMillis(1_766_122_020_941)))
        .max_body_bytes(4096)
        .build()
        .expect("valid config");
    match verifier.verify_parts(&at, &sig, body) {
        Ok(v) => {
            // Only a real signature verifies.
            let expected = sign(&"fuzz-secret".into(), &at, body);
            let expected2 = sign(&"fuzz-secret-2".into(), &at, body);
            let got = v.meta.signature;
            assert!(got == expected || got == expected2);
            let _ = v.parse();
        }
        Err(e) => {
            assert!((400..500).contains(&e.status().as_u16()));
            let _ = e.to_string();
        }
    }
    let _ = check_head_parts(&verifier, &at, &sig, Some(&sig));
    // A correct signature over the same input always verifies when the timestamp is fresh.
    if at.len() <= 19 && !at.is_empty() && at.bytes().all(|b| b.is_ascii_digit()) && body.len() <= 4096 {
        let good = sign(&"fuzz-secret".into(), &at, body).to_hex();
        let result = verifier.verify_parts(&at, &good, body);
        if let Err(e) = result {
            assert!(matches!(e.code(), "stale" | "future"), "{e}");
        }
    }
});
