//! Corrections: after a write, the resources an earlier write left under the same identifiers
//! (the `200`s of conditional creates) are compared with what this write would have made. A
//! session first written to the wrong chart, or whose note changed, differs: [`OnConflict`]
//! says whether that fails the write (the default: a dead letter `fhir_conflict`, never a
//! silent success), keeps what is there, or supersedes it with new resources that `replaces`
//! the old ones, marking the old ones `entered-in-error` where the server allows.

use reqwest::Method;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::capabilities::{CreateMode, OnConflict, resource_ref};
use crate::client::{EntryResult, FhirClient, FhirRequest, NoteCheck, TransactionResult};
use crate::text::search_value;
use crate::write::WritePlan;
use crate::{FhirError, IDENTIFIER_SYSTEM, TransactionBundle};

/// A resource an earlier write left that differs from this write's.
struct Conflict {
    /// Its index in the result's entries.
    entry: usize,
    /// `Type/id`.
    location: String,
    /// As the EHR has it.
    existing: Value,
    /// Whether it is already retired (`entered-in-error`): superseded before, or by the EHR.
    retired: bool,
    /// Whether it is in another chart (another patient or encounter): retired as
    /// `entered-in-error`; otherwise the note changed, and an old note is `superseded`.
    moved: bool,
}

/// Why an earlier resource is retired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Retire {
    /// The note changed: a DocumentReference becomes `superseded` (a Composition, which has no
    /// such status in R4, `entered-in-error`).
    Superseded,
    /// It is in the wrong chart, or no longer said: `entered-in-error` (a Condition's
    /// `verificationStatus`).
    EnteredInError,
}

impl FhirClient {
    /// Decides, before anything else of the session is written, on the note a create matched
    /// (`entry`, a `200`): when it is in another chart or its content differs, `Fail` is the
    /// conflict now (nothing else written), `Keep` stops the write here (`Kept`: what the EHR
    /// has stays); the same note is `Unchanged`; `Supersede`, a new note, or a retired one go
    /// on (`Open`).
    pub(crate) async fn decide_on_note(
        &self,
        bundle: &TransactionBundle,
        entry: &EntryResult,
        policy: OnConflict,
        deadline: Option<std::time::Instant>,
    ) -> Result<NoteCheck, FhirError> {
        if entry.status != 200 || policy == OnConflict::Supersede {
            return Ok(NoteCheck::Open);
        }
        let (Some(part), Some(location)) = (entry.part, entry.location.as_deref()) else {
            return Ok(NoteCheck::Open);
        };
        let location = resource_ref(location).ok_or(FhirError::Answer)?;
        let existing = self.read(&location, deadline).await?;
        let ours: Value =
            serde_json::from_slice(&bundle.resource(part).map_err(FhirError::Mapping)?)
                .map_err(|_| FhirError::Answer)?;
        // A note superseded before: what counts is the session's current note (a correction
        // of a correction), if any is left.
        let retired = is_retired(&existing);
        let current = if retired {
            self.live_of_session(bundle, bundle.session(), "DocumentReference", deadline)
                .await?
        } else {
            vec![(location, existing)]
        };
        let mut differing = Vec::new();
        for (location, existing) in current {
            if !(refs(&ours) == refs(&existing)
                && self.same_note(&ours, &existing, deadline).await?)
            {
                differing.push(location);
            }
        }
        let Some(location) = differing.first().cloned() else {
            return Ok(if retired {
                NoteCheck::Open
            } else {
                NoteCheck::Unchanged
            });
        };
        if policy == OnConflict::Keep {
            tracing::info!(resource = %location, "suki fhir: the EHR has a different note under this session's identifier; kept as it is, nothing else written");
            return Ok(NoteCheck::Kept);
        }
        tracing::warn!(
            resources = %differing.join(", "),
            "suki fhir: the EHR has a different note under this session's identifier (another chart, or a changed note); nothing written"
        );
        Err(FhirError::Conflict {
            references: differing,
        })
    }

    /// Whether the EHR's note (`existing`) holds the text this write's (`ours`) does: compared
    /// inline when the EHR echoes `data`; by `Attachment.hash` when it keeps that; by reading
    /// the `Binary` its `attachment.url` names (under the base URL only: a token is never sent
    /// elsewhere). A note that cannot be compared is not taken as unchanged.
    async fn same_note(
        &self,
        ours: &Value,
        existing: &Value,
        deadline: Option<std::time::Instant>,
    ) -> Result<bool, FhirError> {
        let our_data = note_data(ours);
        if let Some(theirs) = note_data(existing) {
            return Ok(Some(theirs) == our_data);
        }
        let attachment = &existing["content"][0]["attachment"];
        if let (Some(theirs), Some(our_hash)) = (
            attachment["hash"].as_str(),
            ours["content"][0]["attachment"]["hash"].as_str(),
        ) {
            return Ok(theirs.trim() == our_hash);
        }
        if let Some(binary) = attachment["url"]
            .as_str()
            .and_then(|url| self.binary_at(url))
        {
            let binary = self.read(&binary, deadline).await?;
            if binary["resourceType"] == "Binary"
                && let Some(data) = binary["data"].as_str()
            {
                let theirs: String = data.chars().filter(|c| !c.is_whitespace()).collect();
                return Ok(Some(theirs) == our_data);
            }
        }
        tracing::warn!(
            "suki fhir: the EHR's note cannot be compared (no data, hash or readable Binary); taken as changed"
        );
        Ok(false)
    }

    /// `Binary/id` of an attachment URL that names a Binary of this server (relative, or
    /// under the base URL).
    fn binary_at(&self, url: &str) -> Option<String> {
        let base = self.base_url().as_str().trim_end_matches('/');
        let absolute = url.starts_with("http://") || url.starts_with("https://");
        if absolute && !url.starts_with(&format!("{base}/")) {
            return None;
        }
        resource_ref(url).filter(|r| r.starts_with("Binary/"))
    }
}

impl FhirClient {
    /// Compares the resources this write matched with what it would have written, and acts as
    /// `policy` says; rewrites the Provenance when its targets changed.
    pub(crate) async fn reconcile(
        &self,
        bundle: &TransactionBundle,
        plan: &WritePlan,
        result: &mut TransactionResult,
        policy: OnConflict,
        deadline: Option<std::time::Instant>,
    ) -> Result<(), FhirError> {
        let matched: Vec<usize> = (0..result.entries.len())
            .filter(|&i| {
                let e = &result.entries[i];
                // A note decided unchanged before the rest was written is not read again.
                let decided = e.resource_type == Some("DocumentReference")
                    && result.note == NoteCheck::Unchanged;
                e.status == 200
                    && e.resource_type != Some("Provenance")
                    && e.part.is_some()
                    && !decided
            })
            .collect();
        if matched.is_empty() {
            return Ok(());
        }
        let mut note_changed = false;
        let mut conflicts = Vec::new();
        for i in matched {
            let entry = &result.entries[i];
            let (Some(kind), Some(part), Some(location)) =
                (entry.resource_type, entry.part, entry.location.as_deref())
            else {
                continue;
            };
            let location = resource_ref(location).ok_or(FhirError::Answer)?;
            let existing = self.read(&location, deadline).await?;
            let ours: Value =
                serde_json::from_slice(&bundle.resource(part).map_err(FhirError::Mapping)?)
                    .map_err(|_| FhirError::Answer)?;
            let content_differs =
                kind == "DocumentReference" && !self.same_note(&ours, &existing, deadline).await?;
            note_changed |= content_differs;
            let moved = refs(&ours) != refs(&existing);
            let differs = moved || content_differs || (kind == "Composition" && note_changed);
            let retired = is_retired(&existing);
            if retired && policy != OnConflict::Supersede {
                tracing::info!(resource = %location, "suki fhir: the EHR retired this resource (entered-in-error); it is not written again");
                continue;
            }
            if differs || retired {
                conflicts.push(Conflict {
                    entry: i,
                    location,
                    existing,
                    retired,
                    moved,
                });
            }
        }
        // When the note changed, the diagnoses and orders it no longer has.
        let stale = if note_changed {
            self.stale(bundle, result, deadline).await?
        } else {
            Vec::new()
        };
        let live: Vec<&str> = conflicts
            .iter()
            .filter(|c| !c.retired)
            .map(|c| c.location.as_str())
            .chain(stale.iter().map(|(location, _)| location.as_str()))
            .collect();
        if !live.is_empty() {
            match policy {
                OnConflict::Fail => {
                    let references: Vec<String> = live.iter().map(|l| (*l).to_owned()).collect();
                    tracing::warn!(
                        resources = %references.join(", "),
                        "suki fhir: the EHR has different resources under this session's identifiers (another chart, or a changed note); not written"
                    );
                    return Err(FhirError::Conflict { references });
                }
                OnConflict::Keep => {
                    tracing::info!(
                        resources = %live.join(", "),
                        "suki fhir: the EHR has different resources under this session's identifiers; kept as they are"
                    );
                    return Ok(());
                }
                OnConflict::Supersede => {}
            }
        }
        let mut changed = false;
        for conflict in &conflicts {
            self.supersede(bundle, plan, result, conflict, deadline)
                .await?;
            changed = true;
        }
        for (location, existing) in &stale {
            self.retire(location, existing, Retire::EnteredInError, deadline)
                .await?;
            result.corrected.push(location.clone());
            changed = true;
        }
        // One current note: every live earlier version of the note and its Composition (a
        // correction of a correction) is retired too, not only the one the create matched.
        for kind in ["DocumentReference", "Composition"] {
            if let Some(keep) = result
                .entries
                .iter()
                .find(|e| e.resource_type == Some(kind))
                .and_then(|e| e.location.as_deref().and_then(resource_ref))
                && conflicts
                    .iter()
                    .any(|c| result.entries[c.entry].resource_type == Some(kind))
            {
                let reason = if conflicts.iter().any(|c| c.moved) {
                    Retire::EnteredInError
                } else {
                    Retire::Superseded
                };
                for (location, existing) in self
                    .live_of_session(bundle, bundle.session(), kind, deadline)
                    .await?
                {
                    if location != keep {
                        self.retire(&location, &existing, reason, deadline).await?;
                        result.corrected.push(location);
                        changed = true;
                    }
                }
            }
        }
        self.rewrite_provenance(bundle, result, changed, deadline)
            .await
    }

    /// A re-recorded visit (the context's `replaces`): the earlier session's live note and
    /// Composition are superseded, and its Conditions and orders retired (the new session
    /// carries its own for what still holds), so that the chart has one current note.
    pub(crate) async fn retire_replaced(
        &self,
        bundle: &TransactionBundle,
        result: &mut TransactionResult,
        deadline: Option<std::time::Instant>,
    ) -> Result<(), FhirError> {
        let Some(earlier) = bundle.replaces() else {
            return Ok(());
        };
        if Some(earlier) == bundle.session() {
            return Ok(());
        }
        for (kind, reason) in [
            ("DocumentReference", Retire::Superseded),
            ("Composition", Retire::Superseded),
            ("Condition", Retire::EnteredInError),
            ("MedicationRequest", Retire::EnteredInError),
        ] {
            for (location, existing) in self
                .live_of_session(bundle, Some(earlier), kind, deadline)
                .await?
            {
                self.retire(&location, &existing, reason, deadline).await?;
                tracing::info!(resource = %location, "suki fhir: the replaced session's resource is retired");
                result.corrected.push(location);
            }
        }
        Ok(())
    }

    /// The live (not retired) `kind` resources of `session` in this write's chart, found by
    /// the session's tag: `(Type/id, resource)`.
    async fn live_of_session(
        &self,
        bundle: &TransactionBundle,
        session: Option<&str>,
        kind: &str,
        deadline: Option<std::time::Instant>,
    ) -> Result<Vec<(String, Value)>, FhirError> {
        let Some(session) = session else {
            return Ok(Vec::new());
        };
        let tag = format!("_tag={IDENTIFIER_SYSTEM}|{}", search_value(session));
        let query = match bundle.chart_param(kind) {
            Some(chart) => format!("{chart}&{tag}"),
            None => tag,
        };
        let found = self.get_json(kind, Some(&query), deadline).await?;
        Ok(crate::write::search_matches(&found, kind)?
            .filter(|(_, r)| !is_retired(r))
            .map(|(id, r)| (format!("{kind}/{id}"), r.clone()))
            .collect())
    }

    /// `GET [base]/Type/id`.
    async fn read(
        &self,
        location: &str,
        deadline: Option<std::time::Instant>,
    ) -> Result<Value, FhirError> {
        self.get_json(location, None, deadline).await
    }

    /// `PUT [base]/Type/id` with `resource`, versioned (`If-Match`) when `version` is given.
    async fn update(
        &self,
        location: &str,
        resource: &Value,
        version: Option<&str>,
        deadline: Option<std::time::Instant>,
    ) -> Result<(), FhirError> {
        let body = serde_json::to_vec(resource).map_err(|_| FhirError::Answer)?;
        let if_match = version.map(|v| format!("W/\"{v}\""));
        self.call(
            &FhirRequest {
                method: Method::PUT,
                url: self.url(location, None),
                body: Some(body.into()),
                if_none_exist: None,
                public: false,
                if_match: if_match.as_deref(),
                retry: true,
            },
            deadline,
        )
        .await
        .map(|_| ())
    }

    /// The session's Conditions and MedicationRequests (found by its `_tag`) that this write
    /// did not name and that are not retired: `(Type/id, resource)`.
    async fn stale(
        &self,
        bundle: &TransactionBundle,
        result: &TransactionResult,
        deadline: Option<std::time::Instant>,
    ) -> Result<Vec<(String, Value)>, FhirError> {
        let Some(session) = bundle.session() else {
            return Ok(Vec::new());
        };
        let ours: Vec<&str> = bundle
            .summaries()
            .iter()
            .map(|s| s.if_none_exist.as_str())
            .collect();
        let mut stale = Vec::new();
        for kind in ["Condition", "MedicationRequest"] {
            if !result.entries.iter().any(|e| e.resource_type == Some(kind))
                && !bundle.summaries().iter().any(|s| s.resource_type == kind)
            {
                continue;
            }
            for (location, resource) in self
                .live_of_session(bundle, Some(session), kind, deadline)
                .await?
            {
                let Some(value) = identifier_value(&resource) else {
                    continue;
                };
                let query = format!("identifier={IDENTIFIER_SYSTEM}|{}", search_value(value));
                // Ours, or one that superseded ours (`<ours>/<version>`).
                let named = ours.iter().any(|o| {
                    query == *o
                        || query
                            .strip_prefix(*o)
                            .is_some_and(|rest| rest.starts_with('/'))
                });
                if !named {
                    stale.push((location, resource));
                }
            }
        }
        Ok(stale)
    }

    /// Creates the resource that supersedes `conflict` (unless done before: a conditional
    /// create on its own identifier) and retires the old one.
    async fn supersede(
        &self,
        bundle: &TransactionBundle,
        plan: &WritePlan,
        result: &mut TransactionResult,
        conflict: &Conflict,
        deadline: Option<std::time::Instant>,
    ) -> Result<(), FhirError> {
        let entry = &result.entries[conflict.entry];
        let (Some(kind), Some(part)) = (entry.resource_type, entry.part) else {
            return Ok(());
        };
        let mut ours: Value =
            serde_json::from_slice(&bundle.resource(part).map_err(FhirError::Mapping)?)
                .map_err(|_| FhirError::Answer)?;
        let old_value = identifier_value(&ours).unwrap_or_default().to_owned();
        let new_value = format!("{old_value}/{}", version_of(&ours));
        set_identifier_value(&mut ours, &new_value);
        if matches!(kind, "DocumentReference" | "Composition") {
            let target = serde_json::json!({"reference": conflict.location});
            let relation = if kind == "DocumentReference" {
                serde_json::json!({"code": "replaces", "target": target})
            } else {
                serde_json::json!({"code": "replaces", "targetReference": target})
            };
            match ours.get_mut("relatesTo").and_then(Value::as_array_mut) {
                Some(list) => list.push(relation),
                None => {
                    if let Value::Object(fields) = &mut ours {
                        fields.insert("relatesTo".into(), Value::Array(vec![relation]));
                    }
                }
            }
        }
        let body = serde_json::to_vec(&ours).map_err(|_| FhirError::Answer)?;
        let query = format!(
            "identifier={IDENTIFIER_SYSTEM}|{}",
            search_value(&new_value)
        );
        let mode = match plan.mode(kind) {
            CreateMode::SearchFirst => CreateMode::SearchFirst,
            _ => CreateMode::Conditional,
        };
        let (status, location) = self
            .create(
                kind,
                body.into(),
                &query,
                bundle.chart_param(kind).as_deref(),
                mode,
                deadline,
            )
            .await?;
        if !conflict.retired {
            let reason = if conflict.moved {
                Retire::EnteredInError
            } else {
                Retire::Superseded
            };
            self.retire(&conflict.location, &conflict.existing, reason, deadline)
                .await?;
        }
        tracing::info!(old = %conflict.location, new = %location, "suki fhir: resource superseded");
        result.corrected.push(conflict.location.clone());
        let entry = &mut result.entries[conflict.entry];
        entry.status = status;
        entry.location = Some(location);
        Ok(())
    }

    /// Retires `existing` (at `location`) as `reason` says, with `If-Match` on the version read:
    /// a `412` (someone, a clinician, changed it since) fails the write permanently
    /// (`fhir_412_…`: a clinician's edit is never overwritten); a server that refuses the
    /// update otherwise (4xx) keeps it, with a WARN; a retryable failure fails the write.
    async fn retire(
        &self,
        location: &str,
        existing: &Value,
        reason: Retire,
        deadline: Option<std::time::Instant>,
    ) -> Result<(), FhirError> {
        let mut retired = existing.clone();
        let kind = existing["resourceType"].as_str().unwrap_or_default();
        if let Value::Object(fields) = &mut retired {
            match kind {
                "Condition" => {
                    // con-5: no clinicalStatus with verificationStatus entered-in-error.
                    fields.remove("clinicalStatus");
                    fields.insert(
                        "verificationStatus".into(),
                        serde_json::json!({"coding": [{
                            "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                            "code": "entered-in-error",
                            "display": "Entered in Error"
                        }]}),
                    );
                }
                "DocumentReference" if reason == Retire::Superseded => {
                    fields.insert("status".into(), Value::from("superseded"));
                }
                _ => {
                    fields.insert("status".into(), Value::from("entered-in-error"));
                }
            }
        }
        let version = existing["meta"]["versionId"]
            .as_str()
            .filter(|v| crate::context::is_id(v));
        match self.update(location, &retired, version, deadline).await {
            Ok(()) => Ok(()),
            Err(err)
                if err.is_retryable()
                    || matches!(
                        err,
                        FhirError::Auth { status: 401 } | FhirError::Server { status: 412, .. }
                    ) =>
            {
                if matches!(err, FhirError::Server { status: 412, .. }) {
                    tracing::warn!(resource = %location, "suki fhir: the resource changed since it was read (a clinician's edit?); it is not overwritten");
                }
                Err(err)
            }
            Err(err) => {
                tracing::warn!(resource = %location, error = %err.code(), "suki fhir: the EHR did not let the old resource be marked entered-in-error; it stays as it is");
                Ok(())
            }
        }
    }

    /// When the Provenance matched an earlier one (or anything was corrected), makes its
    /// targets the resources this write stands for.
    async fn rewrite_provenance(
        &self,
        bundle: &TransactionBundle,
        result: &TransactionResult,
        changed: bool,
        deadline: Option<std::time::Instant>,
    ) -> Result<(), FhirError> {
        let Some(provenance) = result
            .entries
            .iter()
            .find(|e| e.resource_type == Some("Provenance"))
        else {
            return Ok(());
        };
        if provenance.status != 200 && !changed {
            return Ok(());
        }
        let Some(location) = provenance.location.as_deref().and_then(resource_ref) else {
            return Err(FhirError::Answer);
        };
        let targets: Vec<String> = result
            .entries
            .iter()
            .filter(|e| e.resource_type != Some("Provenance"))
            .filter_map(|e| e.location.as_deref().and_then(resource_ref))
            .collect();
        let existing = self.read(&location, deadline).await?;
        let mut theirs: Vec<String> = existing["target"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(|t| t["reference"].as_str().and_then(resource_ref))
            .collect();
        let mut wanted = targets.clone();
        theirs.sort();
        wanted.sort();
        if theirs == wanted {
            return Ok(());
        }
        let refs: Vec<&str> = targets.iter().map(String::as_str).collect();
        let mut rewritten: Value =
            serde_json::from_slice(&bundle.provenance_for(&refs).map_err(FhirError::Mapping)?)
                .map_err(|_| FhirError::Answer)?;
        if let (Value::Object(fields), Some(id)) = (&mut rewritten, location.split('/').nth(1)) {
            fields.insert("id".into(), Value::from(id));
        }
        tracing::info!(provenance = %location, "suki fhir: the Provenance names the session's resources again");
        let version = existing["meta"]["versionId"]
            .as_str()
            .filter(|v| crate::context::is_id(v));
        self.update(&location, &rewritten, version, deadline).await
    }
}

/// The chart a resource is in: its subject (`for` of a Task) and encounter, as `Type/id`.
fn refs(resource: &Value) -> (Option<String>, Option<String>) {
    let reference = |v: &Value| v["reference"].as_str().and_then(resource_ref);
    let subject = reference(&resource["subject"]).or_else(|| reference(&resource["for"]));
    let encounter = reference(&resource["encounter"])
        .or_else(|| reference(&resource["context"]["encounter"][0]));
    (subject, encounter)
}

/// A DocumentReference's inline note (base64, whitespace removed), when it has one.
fn note_data(resource: &Value) -> Option<String> {
    let data = resource["content"][0]["attachment"]["data"].as_str()?;
    Some(data.chars().filter(|c| !c.is_whitespace()).collect())
}

/// Whether the resource is marked `entered-in-error` (or, a note, `superseded`).
fn is_retired(resource: &Value) -> bool {
    let status = resource["status"].as_str();
    matches!(status, Some("entered-in-error" | "superseded"))
        || resource["verificationStatus"]["coding"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["code"] == "entered-in-error"))
}

/// The value of the resource's `urn:suki:session` identifier (a list on most resources, one
/// object on Composition).
fn identifier_value(resource: &Value) -> Option<&str> {
    let identifier = &resource["identifier"];
    let items: Vec<&Value> = match identifier {
        Value::Array(items) => items.iter().collect(),
        Value::Object(_) => vec![identifier],
        _ => Vec::new(),
    };
    items
        .into_iter()
        .find(|i| i["system"] == IDENTIFIER_SYSTEM)
        .and_then(|i| i["value"].as_str())
}

fn set_identifier_value(resource: &mut Value, value: &str) {
    let identifier = &mut resource["identifier"];
    match identifier {
        Value::Array(items) => {
            for item in items {
                if item["system"] == IDENTIFIER_SYSTEM {
                    item["value"] = Value::from(value);
                }
            }
        }
        Value::Object(_) => identifier["value"] = Value::from(value),
        _ => {}
    }
}

/// 12 hex digits naming a resource's version: all of its content (its chart, its text, a
/// Composition's sections, a Condition's codes), as this crate wrote it.
fn version_of(resource: &Value) -> String {
    let bytes = serde_json::to_vec(resource).unwrap_or_default();
    hex::encode(&Sha256::digest(&bytes)[..6])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_locations_and_states_are_read_defensively() {
        assert_eq!(
            resource_ref("https://ehr.example/fhir/Patient/1/_history/3").as_deref(),
            Some("Patient/1")
        );
        assert_eq!(
            resource_ref("Patient/a.b-1").as_deref(),
            Some("Patient/a.b-1")
        );
        assert_eq!(resource_ref("urn:uuid:1234"), None);
        assert_eq!(resource_ref("patient/1"), None);
        assert_eq!(resource_ref("Patient/../x"), None);
        let doc = serde_json::json!({"resourceType": "DocumentReference", "status": "current",
            "subject": {"reference": "Patient/1"}, "context": {"encounter": [{"reference": "Encounter/2"}]},
            "identifier": [{"system": IDENTIFIER_SYSTEM, "value": "s/note"}],
            "content": [{"attachment": {"data": "aGVs\nbG8="}}]});
        assert_eq!(
            refs(&doc),
            (Some("Patient/1".into()), Some("Encounter/2".into()))
        );
        assert_eq!(note_data(&doc).as_deref(), Some("aGVsbG8="));
        assert!(!is_retired(&doc));
        assert_eq!(identifier_value(&doc), Some("s/note"));
        let mut moved = doc.clone();
        moved["subject"]["reference"] = Value::from("Patient/2");
        assert_ne!(version_of(&doc), version_of(&moved));
        set_identifier_value(&mut moved, "s/note/x");
        assert_eq!(identifier_value(&moved), Some("s/note/x"));
        let condition =
            serde_json::json!({"verificationStatus": {"coding": [{"code": "entered-in-error"}]}});
        assert!(is_retired(&condition));
    }
}
