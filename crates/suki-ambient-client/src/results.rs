//! `fetch_results`: the links of a completed session, fetched concurrently; `retry_failed`.

use bytes::Bytes;
use serde::de::DeserializeOwned;
use suki_ambient_core::api::{NoteContent, StatusResponse, StructuredData, Transcript};
use suki_ambient_core::{Link, LinkKind, Links, SessionCompleted, SessionId};

use crate::{AmbientClient, ClientError};

/// The results a completed session's `_links` point to: one `Result` per link present (`None`
/// when the webhook had no such link), so one failure does not lose the others.
#[derive(Debug)]
#[non_exhaustive]
pub struct SessionResults {
    /// The session.
    pub session_id: SessionId,
    /// `status`.
    pub status: Option<Result<StatusResponse, ClientError>>,
    /// `contents`: the session's note.
    pub contents: Option<Result<NoteContent, ClientError>>,
    /// `encounter_content`: the encounter's note.
    pub encounter_content: Option<Result<NoteContent, ClientError>>,
    /// `structured_data`: the session's structured data.
    pub structured_data: Option<Result<StructuredData, ClientError>>,
    /// `encounter_structured_data`.
    pub encounter_structured_data: Option<Result<StructuredData, ClientError>>,
    /// `transcripts`: the transcript.
    pub transcript: Option<Result<Transcript, ClientError>>,
    /// The links that failed (kept to retry them; nothing is copied when all succeed).
    failed_links: Links,
}

impl SessionResults {
    /// The links that failed, with their errors.
    pub fn errors(&self) -> Vec<(LinkKind, &ClientError)> {
        fn err<T>(result: &Option<Result<T, ClientError>>) -> Option<&ClientError> {
            result.as_ref().and_then(|r| r.as_ref().err())
        }
        [
            (LinkKind::Status, err(&self.status)),
            (LinkKind::Contents, err(&self.contents)),
            (LinkKind::EncounterContent, err(&self.encounter_content)),
            (LinkKind::StructuredData, err(&self.structured_data)),
            (
                LinkKind::EncounterStructuredData,
                err(&self.encounter_structured_data),
            ),
            (LinkKind::Transcripts, err(&self.transcript)),
        ]
        .into_iter()
        .filter_map(|(kind, e)| e.map(|e| (kind, e)))
        .collect()
    }

    /// How many links were fetched (successfully or not).
    pub fn fetched(&self) -> usize {
        [
            self.status.is_some(),
            self.contents.is_some(),
            self.encounter_content.is_some(),
            self.structured_data.is_some(),
            self.encounter_structured_data.is_some(),
            self.transcript.is_some(),
        ]
        .into_iter()
        .filter(|x| *x)
        .count()
    }

    /// Whether every present link was fetched successfully.
    pub fn is_ok(&self) -> bool {
        self.errors().is_empty()
    }
}

impl SessionResults {
    /// Fetches again only the links that failed, keeping what succeeded (e.g. after a
    /// `503` burst outlasted the client's retries).
    pub async fn retry_failed(&mut self, client: &AmbientClient) {
        let failed: Vec<LinkKind> = self.errors().into_iter().map(|(kind, _)| kind).collect();
        if failed.is_empty() {
            return;
        }
        let fresh = client
            .fetch_links(&self.session_id, &self.failed_links, &failed)
            .await;
        let Self {
            status,
            contents,
            encounter_content,
            structured_data,
            encounter_structured_data,
            transcript,
            failed_links,
            ..
        } = fresh;
        self.failed_links = failed_links;
        // `fresh` holds a result exactly for the kinds that failed.
        replace(&mut self.status, status);
        replace(&mut self.contents, contents);
        replace(&mut self.encounter_content, encounter_content);
        replace(&mut self.structured_data, structured_data);
        replace(
            &mut self.encounter_structured_data,
            encounter_structured_data,
        );
        replace(&mut self.transcript, transcript);
    }
}

fn replace<T>(slot: &mut Option<T>, new: Option<T>) {
    if new.is_some() {
        *slot = new;
    }
}

impl AmbientClient {
    /// Follows every documented link of a completed session (the first of each kind),
    /// concurrently, over the client's connection pool.
    pub async fn fetch_results(&self, event: &SessionCompleted) -> SessionResults {
        self.fetch_results_with(event, &LinkKind::ALL).await
    }

    /// [`fetch_results`](Self::fetch_results) for the chosen kinds only, e.g.
    /// `&[LinkKind::Contents, LinkKind::StructuredData]` for the note and its codes.
    pub async fn fetch_results_with(
        &self,
        event: &SessionCompleted,
        what: &[LinkKind],
    ) -> SessionResults {
        self.fetch_links(&event.session_id, &event.links, what)
            .await
    }

    async fn fetch_links(
        &self,
        session_id: &SessionId,
        links: &Links,
        what: &[LinkKind],
    ) -> SessionResults {
        self.fetch_links_keeping(session_id, links, what, &[])
            .await
            .0
    }
}

impl AmbientClient {
    /// [`fetch_results_with`](Self::fetch_results_with), answering each link from `kept` (the
    /// JSON an earlier fetch of it returned) when it is there, fetching the others; also returns
    /// the JSON of every link answered successfully (kept or fetched), so that a caller that
    /// fails afterwards can keep them for its next attempt (the inbox does, sealed like bodies).
    /// A kept answer that no longer decodes is fetched again.
    pub async fn fetch_results_keeping(
        &self,
        event: &SessionCompleted,
        what: &[LinkKind],
        kept: &[(LinkKind, Bytes)],
    ) -> (SessionResults, Vec<(LinkKind, Bytes)>) {
        self.fetch_links_keeping(&event.session_id, &event.links, what, kept)
            .await
    }

    /// The links of `session_id` in `what`, each answered from `kept` or fetched.
    async fn fetch_links_keeping(
        &self,
        session_id: &SessionId,
        links: &Links,
        what: &[LinkKind],
        kept: &[(LinkKind, Bytes)],
    ) -> (SessionResults, Vec<(LinkKind, Bytes)>) {
        let pick = |kind: LinkKind| {
            what.contains(&kind)
                .then(|| links.get(kind).first())
                .flatten()
        };
        async fn one<T: DeserializeOwned>(
            client: &AmbientClient,
            kind: LinkKind,
            link: Option<&Link>,
            kept: &[(LinkKind, Bytes)],
        ) -> (Option<Result<T, ClientError>>, Option<(LinkKind, Bytes)>) {
            let Some(link) = link else {
                return (None, None);
            };
            if let Some((_, body)) = kept.iter().find(|(k, _)| *k == kind)
                && let Ok(value) = suki_ambient_core::decode_json::<T>(body)
            {
                return (Some(Ok(value)), Some((kind, body.clone())));
            }
            match client.follow_bytes(link).await {
                Ok(body) => match suki_ambient_core::decode_json::<T>(&body) {
                    Ok(value) => (Some(Ok(value)), Some((kind, body))),
                    Err(source) => (
                        Some(Err(ClientError::Decode {
                            what: "link",
                            source,
                        })),
                        None,
                    ),
                },
                Err(err) => (Some(Err(err)), None),
            }
        }
        let (
            (status, a),
            (contents, b),
            (encounter_content, c),
            (structured_data, d),
            (encounter_structured_data, e),
            (transcript, f),
        ) = tokio::join!(
            one(self, LinkKind::Status, pick(LinkKind::Status), kept),
            one(self, LinkKind::Contents, pick(LinkKind::Contents), kept),
            one(
                self,
                LinkKind::EncounterContent,
                pick(LinkKind::EncounterContent),
                kept
            ),
            one(
                self,
                LinkKind::StructuredData,
                pick(LinkKind::StructuredData),
                kept
            ),
            one(
                self,
                LinkKind::EncounterStructuredData,
                pick(LinkKind::EncounterStructuredData),
                kept
            ),
            one(
                self,
                LinkKind::Transcripts,
                pick(LinkKind::Transcripts),
                kept
            ),
        );
        let mut results = SessionResults {
            session_id: session_id.clone(),
            status,
            contents,
            encounter_content,
            structured_data,
            encounter_structured_data,
            transcript,
            failed_links: Links::default(),
        };
        let failed: Vec<LinkKind> = results.errors().into_iter().map(|(kind, _)| kind).collect();
        for kind in failed {
            if let Some(link) = links.get(kind).first() {
                results.failed_links.push(kind, link.clone());
            }
        }
        let answered = [a, b, c, d, e, f].into_iter().flatten().collect();
        (results, answered)
    }
}
