//! The sandbox's FHIR server's data: the resources it keeps and the searches it answers. The
//! request handlers (`fhir`) use it; it uses none of them.

use std::time::SystemTime;

use serde_json::{Map, Value};

/// The most resources the sandbox's FHIR server keeps; a transaction that would pass it is
/// refused (422), so that a test in a loop cannot grow the sandbox without bound.
pub const MAX_FHIR_RESOURCES: usize = 10_000;
/// The resource types the CapabilityStatement lists: those of a session.
pub(crate) const WRITABLE: [&str; 7] = [
    "DocumentReference",
    "Composition",
    "Condition",
    "MedicationRequest",
    "Provenance",
    "Communication",
    "Task",
];

/// The resources written to the sandbox's FHIR server.
#[derive(Debug, Default)]
pub(crate) struct FhirStore {
    pub(crate) resources: Vec<Stored>,
}

#[derive(Debug)]
pub(crate) struct Stored {
    pub(crate) kind: String,
    pub(crate) id: String,
    pub(crate) resource: Value,
}

impl FhirStore {
    /// The resources of `kind` (all kinds for `None`), as stored (with `id` and `meta`).
    pub(crate) fn list(&self, kind: Option<&str>) -> Vec<Value> {
        self.resources
            .iter()
            .filter(|r| kind.is_none_or(|k| r.kind == k))
            .map(|r| r.resource.clone())
            .collect()
    }

    /// Stores `resource` as a new `kind` with id `id`; its `Type/id`.
    pub(crate) fn insert(&mut self, kind: String, id: String, mut resource: Value) -> String {
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
fn percent_decode(text: &str) -> Option<String> {
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
