//! Decoding JSON into the models without letting a value into an error: `decode_json`.

use crate::PayloadError;

/// Decodes JSON into `T` with a [`PayloadError`] that holds no value from the input: the shared
/// decoder of the webhook and API models (the client uses it for response bodies).
///
/// # Errors
/// [`PayloadError`] with category, position and JSON path.
pub fn decode_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, PayloadError> {
    match serde_json::from_slice(bytes) {
        Ok(value) => Ok(value),
        // Decode again, tracking the path, only to describe the failure.
        Err(first) => {
            let mut de = serde_json::Deserializer::from_slice(bytes);
            match serde_path_to_error::deserialize::<_, T>(&mut de) {
                Err(err) => Err(PayloadError::from_path_error(err)),
                Ok(_) => Err(PayloadError::from_json(&first)),
            }
        }
    }
}
