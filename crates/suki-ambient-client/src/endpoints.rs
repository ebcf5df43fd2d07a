//! The typed calls (one per endpoint of the route table) and `_links` following.

use reqwest::Url;
use serde::de::DeserializeOwned;
use suki_ambient_core::api::{
    FormFillingStructuredData, NoteContent, Recording, Route, StatusResponse, StructuredData,
    Transcript,
};
use suki_ambient_core::{EncounterId, Link, SessionId};

use crate::AmbientClient;
use crate::error::ClientError;
use crate::limits::{same_origin, within_base};

impl AmbientClient {
    /// The URL of `route` for `id`, with an optional query pair, under the base URL.
    fn route_url(
        &self,
        route: Route,
        id: &str,
        query: Option<(&str, bool)>,
    ) -> Result<Url, ClientError> {
        // A dot segment, encoded or not, would be resolved away when joined to the base URL.
        if id.is_empty() || id.bytes().all(|b| b == b'.') {
            return Err(ClientError::InvalidId);
        }
        let path = route.path(id);
        let mut url = self
            .inner
            .base_url
            .join(path.trim_start_matches('/'))
            .map_err(|_| ClientError::InvalidId)?;
        if let Some((name, value)) = query {
            url.query_pairs_mut()
                .append_pair(name, if value { "true" } else { "false" });
        }
        Ok(url)
    }

    /// One typed call: `route` for `id`, decoded into `T`.
    async fn call<T: DeserializeOwned>(
        &self,
        route: Route,
        id: &str,
        query: Option<(&str, bool)>,
        what: &'static str,
    ) -> Result<T, ClientError> {
        let url = self.route_url(route, id, query)?;
        self.get(url, route.template(), what).await
    }

    /// The session's status ([`Route::SessionStatus`]).
    ///
    /// # Errors
    /// [`ClientError`] after the retry policy is exhausted, or at once when not retryable;
    /// [`ClientError::InvalidId`] for an empty id or one made of dots.
    pub async fn session_status(&self, id: &SessionId) -> Result<StatusResponse, ClientError> {
        self.call(Route::SessionStatus, id.as_str(), None, "status")
            .await
    }

    /// The session's transcript ([`Route::SessionTranscript`]).
    ///
    /// # Errors
    /// As [`session_status`](Self::session_status).
    pub async fn session_transcript(&self, id: &SessionId) -> Result<Transcript, ClientError> {
        self.call(Route::SessionTranscript, id.as_str(), None, "transcript")
            .await
    }

    /// The session's note ([`Route::SessionContent`]); `cumulative` includes the encounter's
    /// earlier sessions.
    ///
    /// # Errors
    /// As [`session_status`](Self::session_status).
    pub async fn session_content(
        &self,
        id: &SessionId,
        cumulative: bool,
    ) -> Result<NoteContent, ClientError> {
        let query = Some(("cumulative", cumulative));
        self.call(Route::SessionContent, id.as_str(), query, "content")
            .await
    }

    /// The session's structured data ([`Route::SessionStructuredData`]).
    ///
    /// # Errors
    /// As [`session_status`](Self::session_status).
    pub async fn session_structured_data(
        &self,
        id: &SessionId,
    ) -> Result<StructuredData, ClientError> {
        let route = Route::SessionStructuredData;
        self.call(route, id.as_str(), None, "structured data").await
    }

    /// The encounter's note ([`Route::EncounterContent`]).
    ///
    /// # Errors
    /// As [`session_status`](Self::session_status).
    pub async fn encounter_content(&self, id: &EncounterId) -> Result<NoteContent, ClientError> {
        let route = Route::EncounterContent;
        self.call(route, id.as_str(), None, "encounter content")
            .await
    }

    /// The encounter's structured data ([`Route::EncounterStructuredData`]).
    ///
    /// # Errors
    /// As [`session_status`](Self::session_status).
    pub async fn encounter_structured_data(
        &self,
        id: &EncounterId,
    ) -> Result<StructuredData, ClientError> {
        let route = Route::EncounterStructuredData;
        self.call(route, id.as_str(), None, "encounter structured data")
            .await
    }

    /// The session's recording ([`Route::SessionRecording`], `?download=`). A 404 means the
    /// audio is still being processed (try later); 410 that it is gone.
    ///
    /// # Errors
    /// As [`session_status`](Self::session_status).
    pub async fn session_recording(
        &self,
        id: &SessionId,
        download: bool,
    ) -> Result<Recording, ClientError> {
        let query = Some(("download", download));
        self.call(Route::SessionRecording, id.as_str(), query, "recording")
            .await
    }

    /// A form-filling session's status ([`Route::FormFillingStatus`]).
    ///
    /// # Errors
    /// As [`session_status`](Self::session_status).
    pub async fn form_filling_status(&self, id: &SessionId) -> Result<StatusResponse, ClientError> {
        let route = Route::FormFillingStatus;
        self.call(route, id.as_str(), None, "form-filling status")
            .await
    }

    /// A form-filling session's structured data ([`Route::FormFillingStructuredData`]).
    ///
    /// # Errors
    /// As [`session_status`](Self::session_status).
    pub async fn form_filling_structured_data(
        &self,
        id: &SessionId,
    ) -> Result<FormFillingStructuredData, ClientError> {
        let route = Route::FormFillingStructuredData;
        self.call(route, id.as_str(), None, "form-filling structured data")
            .await
    }

    /// The route template of a URL under the base (for spans: never an id), or `{link}`.
    fn template_of(&self, url: &Url) -> &'static str {
        let base = self.inner.base_url.path();
        url.path()
            .strip_prefix(base.trim_end_matches('/'))
            .and_then(Route::match_path)
            .map_or("{link}", |(route, _)| route.template())
    }

    /// Follows a webhook `_links` entry and returns the JSON.
    ///
    /// A relative `href` is joined to the base URL (its query kept). An absolute `href` to
    /// another origin, one carrying credentials, or a method other than `GET` is refused with
    /// [`ClientError::InvalidLink`]: the token is only ever sent to the API base URL.
    ///
    /// # Errors
    /// [`ClientError::InvalidLink`], or as [`session_status`](Self::session_status).
    pub async fn follow(&self, link: &Link) -> Result<serde_json::Value, ClientError> {
        self.follow_as(link).await
    }

    /// [`follow`](Self::follow) into a typed model, e.g. `follow_as::<Transcript>(link)`.
    ///
    /// # Errors
    /// As [`follow`](Self::follow).
    pub async fn follow_as<T: DeserializeOwned>(&self, link: &Link) -> Result<T, ClientError> {
        let url = self.resolve(link)?;
        let template = self.template_of(&url);
        self.get(url, template, "link").await
    }

    /// [`follow`](Self::follow), the answer's bytes as received (JSON, not decoded).
    pub(crate) async fn follow_bytes(&self, link: &Link) -> Result<bytes::Bytes, ClientError> {
        let url = self.resolve(link)?;
        let template = self.template_of(&url);
        self.get_bytes(url, template).await
    }

    /// The URL a link resolves to, or why it is refused.
    ///
    /// # Errors
    /// [`ClientError::InvalidLink`].
    pub fn resolve(&self, link: &Link) -> Result<Url, ClientError> {
        if !link.method_or_get().eq_ignore_ascii_case("GET") {
            return Err(ClientError::InvalidLink {
                reason: "only GET links are followed",
            });
        }
        let url = self
            .inner
            .base_url
            .join(&link.href)
            .map_err(|_| ClientError::InvalidLink {
                reason: "href is neither a URL nor a path",
            })?;
        if !same_origin(&self.inner.base_url, &url) {
            return Err(ClientError::InvalidLink {
                reason: "href points to another origin; the token is only sent to the API base URL",
            });
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(ClientError::InvalidLink {
                reason: "href carries credentials",
            });
        }
        // `join` has already resolved `.`/`..` segments (percent-encoded ones too).
        if !within_base(&self.inner.base_url, &url) {
            return Err(ClientError::InvalidLink {
                reason: "href leaves the base URL's path; the token is only sent under it",
            });
        }
        Ok(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(base: &str) -> AmbientClient {
        AmbientClient::builder()
            .base_url(base)
            .token("t")
            .build()
            .unwrap()
    }

    #[test]
    fn links_resolve_against_the_base_origin_only() {
        let c = client("http://127.0.0.1:9/prefix");
        let ok = |href: &str| c.resolve(&Link::get(href, "x")).map(|u| u.to_string());
        assert_eq!(
            ok("api/v1/ambient/session/s/content?cumulative=true").unwrap(),
            "http://127.0.0.1:9/prefix/api/v1/ambient/session/s/content?cumulative=true"
        );
        assert_eq!(
            ok("http://127.0.0.1:9/prefix/api/x").unwrap(),
            "http://127.0.0.1:9/prefix/api/x"
        );
        for bad in [
            // Outside the base path: another application behind the same gateway.
            "/api/v1/ambient/session/s/content",
            "http://127.0.0.1:9/api/x",
            "../admin",
            "https://evil.example/api",
            "//evil.example/x",
            "http://127.0.0.1:10/x",
            "https://127.0.0.1:9/x",
            "http://user:pw@127.0.0.1:9/x",
            "javascript:alert(1)",
        ] {
            assert!(
                matches!(ok(bad), Err(ClientError::InvalidLink { .. })),
                "{bad}"
            );
        }
        let mut post = Link::get("/x", "x");
        post.method = Some("POST".into());
        assert!(matches!(
            c.resolve(&post),
            Err(ClientError::InvalidLink { .. })
        ));
    }

    #[test]
    fn ids_are_one_encoded_segment_and_dot_ids_are_refused() {
        let c = client("http://127.0.0.1:9/prefix/");
        let url = c.route_url(Route::SessionStatus, "a/b?c#d", None).unwrap();
        assert_eq!(
            url.path(),
            "/prefix/api/v1/ambient/session/a%2Fb%3Fc%23d/status"
        );
        assert_eq!(url.query(), None);
        let url = c
            .route_url(Route::SessionContent, "s", Some(("cumulative", true)))
            .unwrap();
        assert_eq!(url.query(), Some("cumulative=true"));
        for id in ["", ".", ".."] {
            assert!(matches!(
                c.route_url(Route::SessionStatus, id, None),
                Err(ClientError::InvalidId)
            ));
        }
    }

    #[test]
    fn templates_hide_ids() {
        let c = client("http://127.0.0.1:9/prefix/");
        let url = |p: &str| Url::parse(&format!("http://127.0.0.1:9{p}")).unwrap();
        assert_eq!(
            c.template_of(&url("/prefix/api/v1/ambient/session/123/content")),
            "/api/v1/ambient/session/{id}/content"
        );
        assert_eq!(c.template_of(&url("/prefix/elsewhere")), "{link}");
    }
}
