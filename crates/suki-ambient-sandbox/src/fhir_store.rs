//! The sandbox's FHIR server's data: its options ([`FhirOptions`]), the resources it keeps
//! and the searches it answers. The request handlers (`fhir`, `fhir_smart`) use it; it uses
//! none of them.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Map, Value, json};

use crate::synth::new_id;

/// The most resources the sandbox's FHIR server keeps; a transaction that would pass it is
/// refused (422), so that a test in a loop cannot grow the sandbox without bound.
pub const MAX_FHIR_RESOURCES: usize = 10_000;
/// How the sandbox's FHIR server behaves: which writes it takes, and its SMART Backend Services
/// clients. The default takes transactions and honours `If-None-Exist`, with no SMART client.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct FhirOptions {
    pub(crate) transactions: bool,
    pub(crate) conditional_create: bool,
    pub(crate) smart_clients: Vec<(String, serde_json::Value)>,
    pub(crate) smart_token_ttl: Duration,
    /// The resource types a create is taken for (`None`: those of a session).
    pub(crate) writable: Option<Vec<String>>,
    /// The scopes its token endpoint grants at most (`None`: what is asked for).
    pub(crate) smart_grants: Option<Vec<String>>,
    /// Searches (but of Provenance) must name the patient.
    pub(crate) patient_searches: bool,
    /// DocumentReference notes are kept in a `Binary`.
    pub(crate) externalize_notes: bool,
}

impl Default for FhirOptions {
    fn default() -> Self {
        Self {
            transactions: true,
            conditional_create: true,
            smart_clients: Vec::new(),
            smart_token_ttl: Duration::from_secs(300),
            writable: None,
            smart_grants: None,
            patient_searches: false,
            externalize_notes: false,
        }
    }
}

/// The resource types the CapabilityStatement lists, by default.
pub(crate) const WRITABLE: [&str; 7] = [
    "DocumentReference",
    "Composition",
    "Condition",
    "MedicationRequest",
    "Provenance",
    "Communication",
    "Task",
];

impl FhirOptions {
    /// Whether transaction Bundles are taken at the base URL (default yes). Without them, the
    /// CapabilityStatement lists no `transaction` and a Bundle posted is refused (`400
    /// not-supported`), as an EHR that takes creates only.
    #[must_use]
    pub fn transactions(mut self, taken: bool) -> Self {
        self.transactions = taken;
        self
    }

    /// Whether `If-None-Exist` is honoured on a create (default yes). Without it the
    /// CapabilityStatement says `conditionalCreate: false` and the header is ignored: posting the
    /// same resource twice creates it twice, as on a server without conditional create.
    #[must_use]
    pub fn conditional_create(mut self, honoured: bool) -> Self {
        self.conditional_create = honoured;
        self
    }

    /// Registers a SMART Backend Services client: its id and public keys (a JWK Set, as
    /// `SmartKey::jwks` prints). Its signed client assertions get tokens at
    /// `/fhir/auth/token` (named by `/fhir/.well-known/smart-configuration`).
    #[must_use]
    pub fn smart_client(mut self, client_id: impl Into<String>, jwks: &str) -> Self {
        let keys = serde_json::from_str(jwks).unwrap_or(Value::Null);
        self.smart_clients.push((client_id.into(), keys));
        self
    }

    /// Only these resource types can be created (the CapabilityStatement lists only them; a
    /// create of another is `405`), as an EHR that takes the DocumentReference alone
    /// (`&["DocumentReference"]`). Default: any type (the statement lists those a session
    /// writes).
    #[must_use]
    pub fn writable(mut self, types: &[&str]) -> Self {
        self.writable = Some(types.iter().map(|t| (*t).to_owned()).collect());
        self
    }

    /// The token endpoint grants only those of the asked scopes that are among `scopes`
    /// (space-separated), and says so in its answer's `scope`: an EHR whose administrator
    /// granted the client fewer scopes than it asks for. Default: what is asked for.
    #[must_use]
    pub fn smart_grants(mut self, scopes: &str) -> Self {
        self.smart_grants = Some(scopes.split_whitespace().map(str::to_owned).collect());
        self
    }

    /// Whether a search must name the patient (`patient=` or `subject=`; default no): a
    /// clinical search without one is refused (`400 required`), as vendor servers refuse them.
    /// Provenance, which has no subject, is searched by tag alone.
    #[must_use]
    pub fn patient_searches(mut self, required: bool) -> Self {
        self.patient_searches = required;
        self
    }

    /// Whether a created DocumentReference's note is kept in a `Binary` (default no): a read
    /// answers `content.attachment.url` (`Binary/<id>`) instead of echoing `data` or `hash`, as
    /// Epic- and Oracle-class servers do.
    #[must_use]
    pub fn externalize_notes(mut self, externalize: bool) -> Self {
        self.externalize_notes = externalize;
        self
    }

    /// The lifetime of the access tokens its token endpoint issues (default 5 minutes).
    #[must_use]
    pub fn smart_token_ttl(mut self, ttl: Duration) -> Self {
        self.smart_token_ttl = ttl;
        self
    }
}

/// The resources written to the sandbox's FHIR server, and its SMART state.
#[derive(Debug, Default)]
pub(crate) struct FhirStore {
    pub(crate) resources: Vec<Stored>,
    /// Issued SMART access tokens and when they expire.
    pub(crate) tokens: HashMap<String, Instant>,
    /// Client assertions' `jti`s seen (a replayed assertion is refused).
    pub(crate) jtis: HashSet<String>,
    /// How many SMART tokens were issued.
    pub(crate) tokens_issued: u64,
    /// Notes go to a `Binary` ([`FhirOptions::externalize_notes`]).
    pub(crate) externalize: bool,
}

#[derive(Debug)]
pub(crate) struct Stored {
    pub(crate) kind: String,
    pub(crate) id: String,
    pub(crate) resource: Value,
}

impl FhirStore {
    /// An empty store; `externalize`: notes go to a `Binary`.
    pub(crate) fn new(externalize: bool) -> Self {
        Self {
            externalize,
            ..Self::default()
        }
    }

    /// The resources of `kind` (all kinds for `None`), as stored (with `id` and `meta`).
    pub(crate) fn list(&self, kind: Option<&str>) -> Vec<Value> {
        self.resources
            .iter()
            .filter(|r| kind.is_none_or(|k| r.kind == k))
            .map(|r| r.resource.clone())
            .collect()
    }

    /// Forgets every issued SMART token (an EHR rotating its keys, or tokens expiring early).
    pub(crate) fn expire_tokens(&mut self) {
        self.tokens.clear();
    }

    /// Stores `resource` as a new `kind` with a fresh id; its `Type/id`. With
    /// [`FhirOptions::externalize_notes`], a DocumentReference's inline note goes to a
    /// `Binary`, and the attachment keeps its `url` (no `data`, no `hash`).
    pub(crate) fn insert(&mut self, kind: String, id: String, mut resource: Value) -> String {
        if self.externalize && kind == "DocumentReference" {
            let contents = resource["content"].as_array().cloned().unwrap_or_default();
            let mut moved = Vec::with_capacity(contents.len());
            for mut content in contents {
                let attachment = &mut content["attachment"];
                if let Some(data) = attachment["data"].as_str().map(str::to_owned) {
                    let binary_id = new_id();
                    let mut binary = json!({
                        "resourceType": "Binary",
                        "contentType": attachment["contentType"].clone(),
                        "data": data,
                    });
                    stamp(&mut binary, &binary_id, 1);
                    self.resources.push(Stored {
                        kind: "Binary".into(),
                        id: binary_id.clone(),
                        resource: binary,
                    });
                    if let Value::Object(fields) = attachment {
                        fields.remove("data");
                        fields.remove("hash");
                        fields.insert("url".into(), Value::String(format!("Binary/{binary_id}")));
                    }
                }
                moved.push(content);
            }
            resource["content"] = Value::Array(moved);
        }
        stamp(&mut resource, &id, 1);
        let location = format!("{kind}/{id}");
        self.resources.push(Stored { kind, id, resource });
        location
    }

    pub(crate) fn matching(&self, kind: &str, search: &Search) -> Vec<&Stored> {
        self.resources
            .iter()
            .filter(|r| r.kind == kind && search.matches(&r.resource))
            .collect()
    }
}

/// A search on one parameter: `identifier=[system|]value` or `_tag=[system|]code`, with FHIR's
/// escapes: unescaped commas separate values any of which matches (as on a real server), `\,`
/// `\|` `\$` `\\` are the characters themselves.
pub(crate) struct Search {
    pub(crate) tag: bool,
    /// The values, ORed: each with its system when it names one.
    pub(crate) values: Vec<(Option<String>, String)>,
    /// `patient=` or `subject=`: the chart the resource must be in (ANDed).
    pub(crate) chart: Option<String>,
}

/// `text` split at each unescaped `sep`, the pieces still escaped.
fn split_unescaped(text: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut escaped) = (0, false);
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            c if c == sep => {
                parts.push(&text[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// `text` with FHIR's search escapes removed (`\x` is `x`).
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut escaped = false;
    for c in text.chars() {
        if !escaped && c == '\\' {
            escaped = true;
        } else {
            out.push(c);
            escaped = false;
        }
    }
    out
}

impl Search {
    /// The search a query string (`identifier=urn:x|abc`) asks for: `Err` names what the sandbox
    /// does not support.
    pub(crate) fn parse(query: &str) -> Result<Self, &'static str> {
        let mut chart = None;
        let mut token = None;
        for param in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = param.split_once('=').ok_or("a parameter without a value")?;
            match name {
                "patient" | "subject" if chart.is_none() => {
                    let value =
                        percent_decode(value).ok_or("a value that is not percent-encoded UTF-8")?;
                    chart = Some(unescape(&value));
                }
                "identifier" | "_tag" if token.is_none() => token = Some((name == "_tag", value)),
                _ => {
                    return Err(
                        "one identifier or _tag, and at most one patient or subject, are supported",
                    );
                }
            }
        }
        let Some((tag, value)) = token else {
            return Err("a search needs an identifier or _tag");
        };
        let value = percent_decode(value).ok_or("a value that is not percent-encoded UTF-8")?;
        let mut values = Vec::new();
        for alternative in split_unescaped(&value, ',') {
            let (system, value) = match split_unescaped(alternative, '|').as_slice() {
                [value] => (None, unescape(value)),
                [system, value] => (Some(unescape(system)), unescape(value)),
                _ => return Err("a value with more than one unescaped |"),
            };
            if value.is_empty() {
                return Err("an empty search value");
            }
            values.push((system, value));
        }
        Ok(Self { tag, values, chart })
    }

    pub(crate) fn matches(&self, resource: &Value) -> bool {
        if let Some(chart) = &self.chart {
            let subject = resource["subject"]["reference"]
                .as_str()
                .or_else(|| resource["for"]["reference"].as_str())
                .unwrap_or_default();
            if subject != chart && !subject.ends_with(&format!("/{chart}")) {
                return false;
            }
        }
        let (list, key) = if self.tag {
            (&resource["meta"]["tag"], "code")
        } else {
            (&resource["identifier"], "value")
        };
        // `identifier` is a list on most resources and one object on Composition.
        let items: Vec<&Value> = match list {
            Value::Array(items) => items.iter().collect(),
            Value::Object(_) => vec![list],
            _ => Vec::new(),
        };
        items.iter().any(|item| {
            self.values.iter().any(|(system, value)| {
                item[key].as_str() == Some(value.as_str())
                    && system
                        .as_deref()
                        .is_none_or(|s| item["system"].as_str() == Some(s))
            })
        })
    }
}

/// A form- or query-encoded value decoded (`+` is a space, `%XX` a byte), if every `%` starts
/// an escape and the result is UTF-8 (the decoder itself would keep a broken escape as text).
pub(crate) fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let escapes_whole = bytes.iter().enumerate().all(|(i, &b)| {
        b != b'%'
            || (bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    });
    if !escapes_whole {
        return None;
    }
    percent_encoding::percent_decode_str(&text.replace('+', " "))
        .decode_utf8()
        .ok()
        .map(std::borrow::Cow::into_owned)
}

impl FhirStore {
    /// Every literal reference to a kind this server stores names a resource it has, and no
    /// reference is a placeholder (`urn:uuid:`), which only a transaction can resolve.
    pub(crate) fn check_references(&self, value: &Value) -> Result<(), &'static str> {
        match value {
            Value::Object(fields) => {
                for (key, field) in fields {
                    match field {
                        Value::String(text) if key == "reference" => {
                            if text.starts_with("urn:") {
                                return Err("a placeholder reference outside a transaction");
                            }
                            if let Some((kind, id)) = text.split_once('/')
                                && self.resources.iter().any(|r| r.kind == kind)
                                && !self.resources.iter().any(|r| r.kind == kind && r.id == id)
                            {
                                return Err("a reference to a resource this server does not have");
                            }
                        }
                        other => self.check_references(other)?,
                    }
                }
                Ok(())
            }
            Value::Array(items) => items.iter().try_for_each(|i| self.check_references(i)),
            _ => Ok(()),
        }
    }
}

/// `resource` as stored: its `id`, and `meta.versionId` and `meta.lastUpdated` (now).
pub(crate) fn stamp(resource: &mut Value, id: &str, version: u64) {
    if let Value::Object(fields) = resource {
        fields.insert("id".into(), Value::String(id.to_owned()));
        let meta = fields
            .entry("meta")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(meta) = meta {
            meta.insert("versionId".into(), Value::String(version.to_string()));
            meta.insert(
                "lastUpdated".into(),
                Value::String(humantime::format_rfc3339_millis(SystemTime::now()).to_string()),
            );
        }
    }
}
