//! `Route`: every path of Suki's API, spelled once. The client's calls and span names, the
//! sandbox's routing and the `_links` builders all come from this table.

use std::fmt;

use crate::{EncounterId, Link, LinkKind, Links, SessionId};

/// One endpoint of Suki's API.
///
/// # Example
///
/// ```
/// use suki_ambient_core::LinkKind;
/// use suki_ambient_core::api::Route;
///
/// assert_eq!(Route::SessionStatus.template(), "/api/v1/ambient/session/{id}/status");
/// assert_eq!(Route::SessionStatus.path("a/b"), "/api/v1/ambient/session/a%2Fb/status");
/// assert_eq!(
///     Route::match_path("/api/v1/ambient/encounter/e-1/content"),
///     Some((Route::EncounterContent, "e-1"))
/// );
/// assert_eq!(Route::SessionTranscript.link_kind(), Some(LinkKind::Transcripts));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum Route {
    /// `POST /api/v1/auth/login`.
    Login,
    /// `GET /api/v1/ambient/session/{id}/status`.
    SessionStatus,
    /// `GET /api/v1/ambient/session/{id}/transcript`.
    SessionTranscript,
    /// `GET /api/v1/ambient/session/{id}/content` (`?cumulative=`).
    SessionContent,
    /// `GET /api/v1/ambient/session/{id}/structured-data`.
    SessionStructuredData,
    /// `GET /api/v1/ambient/session/{id}/recording` (`?download=`).
    SessionRecording,
    /// `GET /api/v1/ambient/encounter/{id}/content`.
    EncounterContent,
    /// `GET /api/v1/ambient/encounter/{id}/structured-data`.
    EncounterStructuredData,
    /// `GET /api/v1/form-filling/session/{id}/status`.
    FormFillingStatus,
    /// `GET /api/v1/form-filling/session/{id}/structured-data`.
    FormFillingStructuredData,
}

/// What a route's `{id}` names.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum RouteId {
    /// No id (login).
    None,
    /// An Ambient or form-filling session id.
    Session,
    /// An encounter id.
    Encounter,
}

const API: &str = "/api/v1/";

impl Route {
    /// Every route.
    pub const ALL: [Self; 10] = [
        Self::Login,
        Self::SessionStatus,
        Self::SessionTranscript,
        Self::SessionContent,
        Self::SessionStructuredData,
        Self::SessionRecording,
        Self::EncounterContent,
        Self::EncounterStructuredData,
        Self::FormFillingStatus,
        Self::FormFillingStructuredData,
    ];

    /// The path before the id and the part after it (below `/api/v1/`).
    const fn parts(self) -> (&'static str, &'static str) {
        match self {
            Self::Login => ("auth/login", ""),
            Self::SessionStatus => ("ambient/session/", "/status"),
            Self::SessionTranscript => ("ambient/session/", "/transcript"),
            Self::SessionContent => ("ambient/session/", "/content"),
            Self::SessionStructuredData => ("ambient/session/", "/structured-data"),
            Self::SessionRecording => ("ambient/session/", "/recording"),
            Self::EncounterContent => ("ambient/encounter/", "/content"),
            Self::EncounterStructuredData => ("ambient/encounter/", "/structured-data"),
            Self::FormFillingStatus => ("form-filling/session/", "/status"),
            Self::FormFillingStructuredData => ("form-filling/session/", "/structured-data"),
        }
    }

    /// The path with `{id}` where the id goes, e.g. `/api/v1/ambient/session/{id}/status`: the
    /// form axum routes use, and what the client's spans show (never an id).
    pub const fn template(self) -> &'static str {
        match self {
            Self::Login => "/api/v1/auth/login",
            Self::SessionStatus => "/api/v1/ambient/session/{id}/status",
            Self::SessionTranscript => "/api/v1/ambient/session/{id}/transcript",
            Self::SessionContent => "/api/v1/ambient/session/{id}/content",
            Self::SessionStructuredData => "/api/v1/ambient/session/{id}/structured-data",
            Self::SessionRecording => "/api/v1/ambient/session/{id}/recording",
            Self::EncounterContent => "/api/v1/ambient/encounter/{id}/content",
            Self::EncounterStructuredData => "/api/v1/ambient/encounter/{id}/structured-data",
            Self::FormFillingStatus => "/api/v1/form-filling/session/{id}/status",
            Self::FormFillingStructuredData => "/api/v1/form-filling/session/{id}/structured-data",
        }
    }

    /// What `{id}` names.
    pub const fn id(self) -> RouteId {
        match self {
            Self::Login => RouteId::None,
            Self::EncounterContent | Self::EncounterStructuredData => RouteId::Encounter,
            _ => RouteId::Session,
        }
    }

    /// The HTTP method (`POST` for login, `GET` for the rest).
    pub const fn method(self) -> &'static str {
        match self {
            Self::Login => "POST",
            _ => "GET",
        }
    }

    /// The path for `id`, which is percent-encoded as one segment (every byte but ASCII letters,
    /// digits, `-`, `.`, `_`, `~`). `id` is ignored by [`Route::Login`].
    pub fn path(self, id: &str) -> String {
        let (before, after) = self.parts();
        let mut path = String::with_capacity(API.len() + before.len() + id.len() + after.len());
        path.push_str(API);
        path.push_str(before);
        if self.id() != RouteId::None {
            encode_segment(id, &mut path);
        }
        path.push_str(after);
        path
    }

    /// The route a path belongs to, and the id in it (as it appears in the path, still
    /// percent-encoded). `None` for anything else, an empty id, or an id with a `/`.
    pub fn match_path(path: &str) -> Option<(Self, &str)> {
        let rest = path.strip_prefix(API)?;
        Self::ALL.into_iter().find_map(|route| {
            let (before, after) = route.parts();
            let tail = rest.strip_prefix(before)?;
            if route.id() == RouteId::None {
                return tail.is_empty().then_some((route, ""));
            }
            let id = tail.strip_suffix(after)?;
            (!id.is_empty() && !id.contains('/')).then_some((route, id))
        })
    }

    /// The `_links` key a webhook uses for this route, if any.
    pub const fn link_kind(self) -> Option<LinkKind> {
        match self {
            Self::SessionContent => Some(LinkKind::Contents),
            Self::EncounterContent => Some(LinkKind::EncounterContent),
            Self::SessionStructuredData | Self::FormFillingStructuredData => {
                Some(LinkKind::StructuredData)
            }
            Self::EncounterStructuredData => Some(LinkKind::EncounterStructuredData),
            Self::SessionStatus | Self::FormFillingStatus => Some(LinkKind::Status),
            Self::SessionTranscript => Some(LinkKind::Transcripts),
            Self::Login | Self::SessionRecording => None,
        }
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.template())
    }
}

/// Appends `id` percent-encoded as a path segment. `.` and `..` are encoded too (`%2E`), so that
/// no id can be a dot segment once it is joined to a base URL: the URL standard reads `%2E%2E`
/// as `..` as well, so the client refuses such ids before building a URL.
fn encode_segment(id: &str, out: &mut String) {
    for byte in id.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'~') {
            out.push(char::from(byte));
        } else if byte == b'.' && !id.bytes().all(|b| b == b'.') {
            out.push('.');
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
}

/// Building `_links` from the route table (the links live below the routes).
impl Links {
    /// The six documented links of an Ambient session, relative to the API base URL, built
    /// from the [route table](Route) (what the sandbox sends, and a way to fetch by
    /// ids alone).
    pub fn for_session(session_id: &SessionId, encounter_id: &EncounterId) -> Self {
        Self::from_routes(
            &[
                Route::SessionContent,
                Route::EncounterContent,
                Route::SessionStructuredData,
                Route::EncounterStructuredData,
                Route::SessionStatus,
                Route::SessionTranscript,
            ],
            session_id,
            encounter_id.as_str(),
        )
    }

    /// The two links of a form-filling session (`status` and `structured_data`), relative to the
    /// API base URL.
    pub fn for_form_filling(session_id: &SessionId) -> Self {
        Self::from_routes(
            &[Route::FormFillingStatus, Route::FormFillingStructuredData],
            session_id,
            "",
        )
    }

    fn from_routes(routes: &[Route], session_id: &SessionId, encounter_id: &str) -> Self {
        use RouteId;
        let mut links = Self::default();
        for &route in routes {
            let Some(kind) = route.link_kind() else {
                continue;
            };
            let id = match route.id() {
                RouteId::Encounter => encounter_id,
                _ => session_id.as_str(),
            };
            links.push(kind, Link::get(route.path(id), kind.key()));
        }
        links
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_paths_and_matches_agree_for_every_route() {
        for route in Route::ALL {
            let path = route.path("id-1");
            assert_eq!(path, route.template().replace("{id}", "id-1"));
            let expected_id = if route.id() == RouteId::None {
                ""
            } else {
                "id-1"
            };
            assert_eq!(Route::match_path(&path), Some((route, expected_id)));
        }
        assert_eq!(Route::match_path("/api/v1/ambient/session//status"), None);
        assert_eq!(
            Route::match_path("/api/v1/ambient/session/a/b/status"),
            None
        );
        assert_eq!(Route::match_path("/api/v2/auth/login"), None);
        assert_eq!(Route::match_path("/elsewhere"), None);
    }

    #[test]
    fn ids_are_one_encoded_segment() {
        assert_eq!(
            Route::SessionStatus.path("a/b?c#d e"),
            "/api/v1/ambient/session/a%2Fb%3Fc%23d%20e/status"
        );
        assert_eq!(
            Route::SessionStatus.path(".."),
            "/api/v1/ambient/session/%2E%2E/status"
        );
        assert_eq!(
            Route::SessionStatus.path("v1.2"),
            "/api/v1/ambient/session/v1.2/status"
        );
        assert_eq!(Route::Login.path("ignored"), "/api/v1/auth/login");
    }
}
