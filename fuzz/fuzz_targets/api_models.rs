//! The follow-up API models' decoding on arbitrary bytes: never panics; decoded values
//! round-trip through serde.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;
use suki_ambient_core::api::{
    ApiErrorBody, FormFillingStructuredData, LoginResponse, NoteContent, Recording, StatusResponse,
    StructuredData, Transcript,
};
use suki_ambient_core::decode_json;

fn check<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(data: &[u8]) {
    if let Ok(value) = decode_json::<T>(data) {
        let bytes = serde_json::to_vec(&value).expect("models serialize");
        let again: T = decode_json(&bytes).expect("serialized models decode");
        assert!(again == value, "round trip changed the value");
        let _ = format!("{value:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks the model, so the corpus can aim at each.
    let Some((&which, rest)) = data.split_first() else { return };
    match which % 8 {
        0 => check::<StatusResponse>(rest),
        1 => check::<Transcript>(rest),
        2 => check::<NoteContent>(rest),
        3 => check::<StructuredData>(rest),
        4 => check::<Recording>(rest),
        5 => check::<FormFillingStructuredData>(rest),
        6 => check::<ApiErrorBody>(rest),
        _ => check::<LoginResponse>(rest),
    }
});
