//! The two headers Suki signs with, and how verification reads a header's text.

use http::HeaderMap;

/// Header carrying the Unix time in milliseconds at which Suki built the request.
pub const GENERATED_AT_HEADER: &str = "generated-at";
/// Header carrying the hex HMAC-SHA-256 signature (Suki calls it `X-API-Key`; it is not a key).
pub const SIGNATURE_HEADER: &str = "x-api-key";

/// The two headers' names, parsed once (a lookup by `&str` parses and validates the name on
/// every request).
pub(crate) static GENERATED_AT_NAME: http::HeaderName =
    http::HeaderName::from_static(GENERATED_AT_HEADER);
pub(crate) static SIGNATURE_NAME: http::HeaderName =
    http::HeaderName::from_static(SIGNATURE_HEADER);

pub(crate) fn header_text<'h>(headers: &'h HeaderMap, name: &http::HeaderName) -> &'h str {
    single_header_text(
        headers
            .get_all(name)
            .iter()
            .map(http::HeaderValue::as_bytes),
    )
}

/// The text of one header as verification reads it, from all of its raw values (for adapters on
/// other `http` versions): `""` (missing) when absent or empty; a text that fails the header's
/// own format check when it was sent more than once or is not visible ASCII, so that each
/// problem is reported at its place in the order of checks.
pub fn single_header_text<'h>(mut values: impl Iterator<Item = &'h [u8]>) -> &'h str {
    match (values.next(), values.next()) {
        (None, _) => "",
        (Some(_), Some(_)) => "!",
        (Some(value), None) => match std::str::from_utf8(value) {
            Ok(text) if text.bytes().all(|b| b.is_ascii_graphic() || b == b' ') => text,
            _ => "!",
        },
    }
}
