//! `FhirClient::check`: the onboarding test for a new EHR. It writes one clearly labelled probe
//! DocumentReference (`status: entered-in-error`, no clinical content) to a test patient, twice
//! with `If-None-Exist`, reads it back, and reports what the server does with what the
//! write-back relies on.

use std::fmt;
use std::time::Instant;

use reqwest::Method;
use serde_json::{Value, json};

use crate::capabilities::resource_ref;
use crate::client::{FhirClient, FhirRequest};
use crate::text::search_value;
use crate::{FhirError, Reference};

/// The identifier system of probes: never a session's.
pub const PROBE_SYSTEM: &str = "urn:suki:probe";

/// What [`FhirClient::check`] found out about a server. `Display` prints it for `suki-ambient
/// fhir check`, with what each answer means for the write-back.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Onboarding {
    /// The probe, as the server named it (`DocumentReference/id`).
    pub probe: String,
    /// The create answered a `Location` header.
    pub returns_location: bool,
    /// The second create with `If-None-Exist` matched the first (no copy).
    pub honours_if_none_exist: bool,
    /// A search by patient and identifier finds the probe (the server keeps identifiers).
    pub keeps_identifiers: bool,
    /// How the server keeps the note: `inline` (`attachment.data`), `binary`
    /// (`attachment.url`), or `unknown`.
    pub content: &'static str,
    /// The server keeps `Attachment.hash`.
    pub keeps_hash: bool,
}

impl fmt::Display for Onboarding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let yes = |b: bool| if b { "yes" } else { "NO" };
        writeln!(
            f,
            "probe: {} (status entered-in-error, no clinical content)",
            self.probe
        )?;
        writeln!(
            f,
            "returns Location on create:        {}",
            yes(self.returns_location)
        )?;
        writeln!(
            f,
            "honours If-None-Exist:             {}{}",
            yes(self.honours_if_none_exist),
            if self.honours_if_none_exist {
                ""
            } else {
                " (a second probe was created: use a plan that searches first; the write-back's auto strategy does when conditionalCreate is not declared)"
            }
        )?;
        writeln!(
            f,
            "keeps identifiers (patient search): {}{}",
            yes(self.keeps_identifiers),
            if self.keeps_identifiers {
                ""
            } else {
                " (the write-back cannot find what it wrote: retries may copy; do not go live)"
            }
        )?;
        writeln!(f, "keeps the note:                    {}", self.content)?;
        writeln!(
            f,
            "keeps Attachment.hash:             {}",
            yes(self.keeps_hash)
        )
    }
}

impl FhirClient {
    /// The onboarding test for a new EHR: writes a probe DocumentReference for `patient` (a
    /// test patient), labelled as a probe and `entered-in-error` so that no chart shows it as a
    /// note, then reports whether the server returns `Location`, honours `If-None-Exist`,
    /// keeps identifiers (found again by a patient-scoped search), and inlines the note or
    /// keeps it in a `Binary`. Needs create and search of DocumentReference.
    pub async fn check(&self, patient: &Reference) -> Result<Onboarding, FhirError> {
        let deadline = self.deadline();
        let mut nonce = [0u8; 8];
        aws_lc_rs::rand::fill(&mut nonce)
            .map_err(|_| FhirError::Config("no random bytes for the probe".into()))?;
        let value = hex::encode(nonce);
        let text = "suki-ambient onboarding probe: not a clinical note";
        let probe = json!({
            "resourceType": "DocumentReference",
            "identifier": [{"system": PROBE_SYSTEM, "value": value}],
            "status": "entered-in-error",
            "type": {"coding": [{"system": "http://loinc.org", "code": "11506-3",
                "display": "Progress note"}], "text": "suki-ambient onboarding probe"},
            "category": [{"coding": [{
                "system": "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category",
                "code": "clinical-note", "display": "Clinical Note"}]}],
            "subject": {"reference": patient.as_str()},
            "description": text,
            "content": [{"attachment": {
                "contentType": "text/plain; charset=utf-8",
                "data": base64_of(text.as_bytes()),
                "hash": base64_of(aws_lc_rs::digest::digest(
                    &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, text.as_bytes()).as_ref()),
                "title": "suki-ambient onboarding probe",
            }}],
        });
        let body = bytes::Bytes::from(serde_json::to_vec(&probe).map_err(|_| FhirError::Answer)?);
        let query = format!("identifier={PROBE_SYSTEM}|{}", search_value(&value));
        let first = self.post_probe(&body, &query, deadline).await?;
        let returns_location = first.location.is_some();
        let location = first
            .location
            .as_deref()
            .and_then(resource_ref)
            .or_else(|| {
                serde_json::from_slice::<Value>(&first.body)
                    .ok()
                    .and_then(|r| r["id"].as_str().map(|id| format!("DocumentReference/{id}")))
            });
        let second = self.post_probe(&body, &query, deadline).await?;
        let honours_if_none_exist = second.status == 200
            || (second.status == 201
                && second.location.as_deref().and_then(resource_ref) == location
                && location.is_some());
        let chart = format!("patient={}", search_value(patient.as_str()));
        let found = self
            .get_json(
                "DocumentReference",
                Some(&format!("{chart}&{query}")),
                deadline,
            )
            .await?;
        let hits: Vec<&Value> = found["entry"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|e| &e["resource"])
            .filter(|r| r["resourceType"] == "DocumentReference")
            .collect();
        let keeps_identifiers = !hits.is_empty();
        let stored = match (&location, hits.first()) {
            (_, Some(hit)) => (*hit).clone(),
            (Some(location), None) => self.get_json(location, None, deadline).await?,
            (None, None) => Value::Null,
        };
        let attachment = &stored["content"][0]["attachment"];
        let content = if attachment["data"].is_string() {
            "inline"
        } else if attachment["url"].is_string() {
            "binary"
        } else {
            "unknown"
        };
        Ok(Onboarding {
            probe: location.unwrap_or_else(|| "DocumentReference (id not returned)".into()),
            returns_location,
            honours_if_none_exist,
            keeps_identifiers,
            content,
            keeps_hash: attachment["hash"].is_string(),
        })
    }

    async fn post_probe(
        &self,
        body: &bytes::Bytes,
        query: &str,
        deadline: Option<Instant>,
    ) -> Result<crate::client::FhirResponse, FhirError> {
        self.call(
            &FhirRequest {
                method: Method::POST,
                url: self.url("DocumentReference", None),
                body: Some(body.clone()),
                if_none_exist: Some(query),
                public: false,
                if_match: None,
                // A probe is never sent twice blindly: it tests exactly that.
                retry: false,
            },
            deadline,
        )
        .await
    }
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
