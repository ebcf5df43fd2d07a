//! The structured data's resources: Conditions from diagnoses, MedicationRequests from orders,
//! their codings (LOINC, ICD-10-CM, SNOMED CT, RxNorm, or the EHR's own systems) and the keys
//! their identifiers are derived from.

use super::*;

/// A Condition's content, cleaned, before it is written.
pub(super) struct Condition<'a> {
    coding: Vec<Coding<'a>>,
    text: Option<Cow<'a, str>>,
    note: Option<Cow<'a, str>>,
    laterality: Option<i64>,
    post_coordination: Option<i64>,
}

impl<'a> Condition<'a> {
    /// The Condition for `diagnosis`: `None` when it has neither a code nor a note.
    pub(super) fn of(diagnosis: &'a Diagnosis, mapping: &'a Mapping) -> Option<Self> {
        let coding = codings(&diagnosis.codes, mapping);
        let note = diagnosis.diagnosis_note.as_deref().and_then(fhir_text);
        let text = diagnosis
            .codes
            .iter()
            .find_map(|c| c.description.as_deref().and_then(fhir_text))
            .or_else(|| note.clone());
        if coding.is_empty() && text.is_none() {
            return None;
        }
        Some(Self {
            coding,
            text,
            note,
            laterality: diagnosis.laterality_indicator,
            post_coordination: diagnosis.post_coord_lex_flag,
        })
    }

    /// What identifies this diagnosis: its codings and text.
    pub(super) fn content_key(&self) -> Vec<u8> {
        let mut key = Vec::with_capacity(128);
        push_codings(&mut key, &self.coding);
        key.extend_from_slice(self.text.as_deref().unwrap_or_default().as_bytes());
        key
    }

    /// The Condition, its identifier `id`.
    pub(super) fn resource(&'a self, id: &'a str, shared: &Shared<'a>) -> r::Condition<'a> {
        let extension = [
            ("laterality_indicator", self.laterality),
            ("post_coord_lex_flag", self.post_coordination),
        ]
        .into_iter()
        .filter_map(|(name, value)| {
            Some(r::Extension {
                url: format!("{EXTENSION_BASE}{name}"),
                value_integer: value?.clamp(-2_147_483_648, 2_147_483_647),
            })
        })
        .collect();
        r::Condition {
            resource_type: "Condition",
            meta: shared.ai_meta(),
            extension,
            identifier: [identifier(id)],
            verification_status: CodeableConcept::of(Coding::constant(
                "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                "provisional",
                "Provisional",
            )),
            category: [CodeableConcept::of(Coding::constant(
                "http://terminology.hl7.org/CodeSystem/condition-category",
                "encounter-diagnosis",
                "Encounter Diagnosis",
            ))],
            code: CodeableConcept {
                coding: self.coding.clone(),
                text: self.text.as_deref(),
            },
            subject: shared.subject(),
            encounter: shared.encounter(),
            recorded_date: shared.at,
            note: self.note.as_deref().map(|text| [r::Annotation { text }]),
        }
    }
}

/// A draft MedicationRequest's content (intent `proposal`: no prescriber has ordered it),
/// cleaned, before it is written.
pub(super) struct MedicationRequest<'a> {
    coding: Vec<Coding<'a>>,
    name: Option<Cow<'a, str>>,
    dosage: Vec<Cow<'a, str>>,
    route: Option<Cow<'a, str>>,
}

impl<'a> MedicationRequest<'a> {
    /// The request for `order`: `None` when it has neither a name nor a code.
    pub(super) fn of(order: &'a MedicationOrder, mapping: &'a Mapping) -> Option<Self> {
        let coding = codings(&order.codes, mapping);
        let name = order.medication.as_deref().and_then(fhir_text);
        if coding.is_empty() && name.is_none() {
            return None;
        }
        Some(Self {
            coding,
            name,
            dosage: [order.dosage.as_deref(), order.frequency.as_deref()]
                .into_iter()
                .flatten()
                .filter_map(fhir_text)
                .collect(),
            route: order.route.as_deref().and_then(fhir_text),
        })
    }

    /// What identifies this order: its codings, name, dosage and route.
    pub(super) fn content_key(&self) -> Vec<u8> {
        let mut key = Vec::with_capacity(128);
        push_codings(&mut key, &self.coding);
        for part in [self.name.as_deref()]
            .into_iter()
            .chain(self.dosage.iter().map(|d| Some(d.as_ref())))
            .chain([self.route.as_deref()])
        {
            key.extend_from_slice(part.unwrap_or_default().as_bytes());
            key.push(b'\n');
        }
        key
    }

    /// The MedicationRequest, its identifier `id`.
    pub(super) fn resource(&'a self, id: &'a str, shared: &Shared<'a>) -> r::MedicationRequest<'a> {
        let dosage = (!self.dosage.is_empty() || self.route.is_some()).then(|| {
            [r::Dosage {
                text: (!self.dosage.is_empty()).then(|| self.dosage.join(", ")),
                route: self.route.as_deref().map(CodeableConcept::text),
            }]
        });
        r::MedicationRequest {
            resource_type: "MedicationRequest",
            meta: shared.ai_meta(),
            identifier: [identifier(id)],
            status: "draft",
            intent: "proposal",
            medication_codeable_concept: CodeableConcept {
                coding: self.coding.clone(),
                text: self.name.as_deref(),
            },
            subject: shared.subject(),
            encounter: shared.encounter(),
            authored_on: shared.at,
            dosage_instruction: dosage,
        }
    }
}

/// The names of a session's Conditions and MedicationRequests: `condition/<12 hex of the
/// content's SHA-256>`, `-2`, `-3`… for the same content again.
#[derive(Default)]
pub(super) struct Parts {
    seen: std::collections::HashMap<String, usize>,
}

impl Parts {
    pub(super) fn name(&mut self, kind: &str, content: &[u8]) -> String {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(content);
        let mut name = String::with_capacity(kind.len() + 16);
        name.push_str(kind);
        name.push('/');
        name.push_str(&hex::encode(&digest[..6]));
        let n = self.seen.entry(name.clone()).or_insert(0);
        *n += 1;
        if *n > 1 {
            name.push_str(&format!("-{n}"));
        }
        name
    }
}

/// Codings as `system|code` lines, in order.
pub(super) fn push_codings(key: &mut Vec<u8>, coding: &[Coding<'_>]) {
    for c in coding {
        key.extend_from_slice(c.system.as_bytes());
        key.push(b'|');
        key.extend_from_slice(c.code.as_deref().unwrap_or_default().as_bytes());
        key.push(b'\n');
    }
    key.push(b'\n');
}

/// Suki's codes as codings, ICD-10-CM and SNOMED CT first (the systems US Core binds), then IMO,
/// RxNorm and any other; codes that are empty once cleaned are left out.
pub(super) fn codings<'a>(codes: &'a [Code], mapping: &'a Mapping) -> Vec<Coding<'a>> {
    let rank = |c: &Code| match c.system {
        Some(CodeSystem::Icd10) => 0,
        Some(CodeSystem::Snomed) => 1,
        Some(CodeSystem::Imo) => 2,
        Some(CodeSystem::Rxcui) => 3,
        _ => 4,
    };
    let mut sorted: Vec<&Code> = codes.iter().collect();
    sorted.sort_by_key(|c| rank(c));
    sorted
        .into_iter()
        .filter_map(|c| {
            let code = code_token(&c.code)?;
            let system: Cow<'a, str> = match &c.system {
                Some(CodeSystem::Icd10) => ICD10_CM.into(),
                Some(CodeSystem::Snomed) => SNOMED.into(),
                Some(CodeSystem::Imo) => mapping.imo_system.as_str().into(),
                Some(CodeSystem::Rxcui) => RXNORM.into(),
                Some(other) => format!("{OTHER_CODE_TYPE}{}", uri_token(other.as_str())).into(),
                None => format!("{OTHER_CODE_TYPE}unknown").into(),
            };
            Some(Coding {
                system,
                code: Some(code),
                display: c.description.as_deref().and_then(fhir_text),
            })
        })
        .collect()
}

/// `text` as a FHIR `code` (`[^\s]+(\s[^\s]+)*`): cleaned, inner whitespace runs made one space
/// (borrowed when it needs no change, as most codes).
pub(super) fn code_token(text: &str) -> Option<Cow<'_, str>> {
    let cleaned = fhir_text(text)?;
    let single_spaced = !cleaned.contains("  ") && !cleaned.contains(['\t', '\n', '\r']);
    if single_spaced {
        return Some(cleaned);
    }
    Some(Cow::Owned(
        cleaned.split_whitespace().collect::<Vec<_>>().join(" "),
    ))
}

/// A code type as a URN segment: letters, digits, `-`, `.` and `_` kept, anything else `_`.
pub(super) fn uri_token(text: &str) -> String {
    let token: String = text
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if token.is_empty() {
        "unknown".to_owned()
    } else {
        token
    }
}

/// An absolute URI with no whitespace (FHIR `uri`, as a code system).
pub(super) fn is_absolute_uri(text: &str) -> bool {
    let Some((scheme, rest)) = text.split_once(':') else {
        return false;
    };
    !rest.is_empty()
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && !text.chars().any(|c| c.is_whitespace() || c.is_control())
}
