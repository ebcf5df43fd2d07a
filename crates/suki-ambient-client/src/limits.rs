//! The limits every answer and every URL the client follows is held to: bodies read up to a
//! cap, and redirects and `_links` only within the base URL (the rules both the transport and
//! the partner login use, below both).

use bytes::Bytes;
use reqwest::Url;

use crate::error::ClientError;

/// How much of an error answer's body is read (for its error id).
pub(crate) const ERROR_BODY_BYTES: usize = 64 * 1024;

/// Reads a body up to `cap` bytes, streaming: a `Content-Length` above it fails at once, and a
/// body that grows past it is dropped (and its connection closed) at the first chunk that
/// crosses it, so that no more than `cap` (plus one chunk) is ever held.
pub async fn read_capped(mut response: reqwest::Response, cap: u64) -> Result<Bytes, ClientError> {
    let too_large = || ClientError::ResponseTooLarge { limit: cap };
    if response.content_length().is_some_and(|n| n > cap) {
        return Err(too_large());
    }
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(ClientError::transport)? {
        if body.len() as u64 + chunk.len() as u64 > cap {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// The first `cap` bytes of a body (the rest is not read): enough of an error answer to read its
/// code.
pub async fn read_prefix(
    mut response: reqwest::Response,
    cap: usize,
) -> Result<Bytes, ClientError> {
    let mut body = bytes::BytesMut::new();
    while body.len() < cap {
        match response.chunk().await.map_err(ClientError::transport)? {
            Some(chunk) => body.extend_from_slice(&chunk[..chunk.len().min(cap - body.len())]),
            None => break,
        }
    }
    Ok(body.freeze())
}

/// Whether `url` is on the base URL's origin and under its path (the base path ends with `/`).
pub(crate) fn within_base(base: &Url, url: &Url) -> bool {
    same_origin(base, url) && url.path().starts_with(base.path())
}

/// Whether a redirect to `url` may be followed: within the base URL, and with no segment that a
/// server or gateway might decode into another path (an encoded `/` or `\`, a `\`, a segment
/// that decodes to `.` or `..`). The client's own paths may hold an encoded `/` (an id with a
/// slash is one segment); a server's redirect may not.
pub fn redirect_allowed(base: &Url, url: &Url) -> bool {
    within_base(base, url) && !escapes(url.path())
}

/// A path with a segment that could leave its place once decoded.
pub(crate) fn escapes(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    if lower.contains("%2f") || lower.contains("%5c") || lower.contains('\\') {
        return true;
    }
    lower
        .split('/')
        .any(|segment| matches!(segment.replace("%2e", ".").as_str(), "." | ".."))
}

/// Scheme, host and port are the same. Field by field rather than comparing `origin()`s, which
/// allocate: this runs on every response.
pub(crate) fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host() == b.host()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// The default client's redirects: at most 5, and only within the base URL
/// (same origin, so never https to http, and under the base path). Any other redirect is not
/// followed: the 3xx answer comes back and the call fails with [`ClientError::Redirect`], before
/// `sdp_suki_token` (a custom header, which reqwest would carry along) is sent anywhere else.
pub fn redirect_policy(base: Url) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() > MAX_REDIRECTS || !redirect_allowed(&base, attempt.url()) {
            attempt.stop()
        } else {
            attempt.follow()
        }
    })
}

/// Same-origin redirects followed at most.
const MAX_REDIRECTS: usize = 5;
