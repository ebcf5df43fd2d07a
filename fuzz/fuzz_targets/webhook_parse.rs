//! `WebhookEvent::from_slice` on arbitrary bytes: never panics; an event that parses
//! round-trips through serde; errors never quote the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use suki_ambient_core::WebhookEvent;

fuzz_target!(|data: &[u8]| {
    match WebhookEvent::from_slice(data) {
        Ok(event) => {
            let bytes = event.to_vec();
            let again = WebhookEvent::from_slice(&bytes).expect("serialized events parse");
            assert!(again == event, "round trip changed the event");
            let _ = format!("{event:?}");
        }
        Err(err) => {
            assert_eq!(err.status().as_u16(), 400);
            let _ = err.to_string();
        }
    }
});
