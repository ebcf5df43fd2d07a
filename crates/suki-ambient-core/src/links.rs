//! `_links`: `Links` (the six documented keys typed, unknown keys kept), `Link`, `LinkKind`, and
//! the builders of a session's links from the route table.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// A link object: `{href, method, name, type}`.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct Link {
    /// Path (relative to the API base URL) or absolute URL of the resource.
    pub href: String,
    /// HTTP method, e.g. `GET`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// A name for the link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Media type of the resource (`type` on the wire).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
}

impl Link {
    /// A `GET` link to `href` returning JSON.
    pub fn get(href: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            href: href.into(),
            method: Some("GET".to_owned()),
            name: Some(name.into()),
            media_type: Some("application/json".to_owned()),
        }
    }

    /// The method, `GET` when absent.
    pub fn method_or_get(&self) -> &str {
        self.method.as_deref().unwrap_or("GET")
    }
}

/// The six documented `_links` keys.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
#[non_exhaustive]
pub enum LinkKind {
    /// `contents`: the session's note content.
    Contents,
    /// `encounter_content`: the encounter's note content.
    EncounterContent,
    /// `structured_data`: the session's structured data.
    StructuredData,
    /// `encounter_structured_data`: the encounter's structured data.
    EncounterStructuredData,
    /// `status`: the session status.
    Status,
    /// `transcripts`: the session transcript.
    Transcripts,
}

impl LinkKind {
    /// All six, in wire order of Suki's documentation.
    pub const ALL: [Self; 6] = [
        Self::Contents,
        Self::EncounterContent,
        Self::StructuredData,
        Self::EncounterStructuredData,
        Self::Status,
        Self::Transcripts,
    ];

    /// The key in `_links`.
    pub fn key(self) -> &'static str {
        match self {
            Self::Contents => "contents",
            Self::EncounterContent => "encounter_content",
            Self::StructuredData => "structured_data",
            Self::EncounterStructuredData => "encounter_structured_data",
            Self::Status => "status",
            Self::Transcripts => "transcripts",
        }
    }

    /// The kind for a `_links` key.
    pub fn from_key(key: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.key() == key)
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for LinkKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// `_links`: key → list of links. The six documented keys are typed; unknown keys are kept.
#[derive(Clone, Default, PartialEq, Debug)]
pub struct Links {
    known: [Vec<Link>; 6],
    other: BTreeMap<String, Value>,
}

impl Links {
    /// The links under a documented key (empty when absent).
    pub fn get(&self, kind: LinkKind) -> &[Link] {
        &self.known[kind.index()]
    }

    /// `contents`: the session's note content.
    pub fn contents(&self) -> &[Link] {
        self.get(LinkKind::Contents)
    }

    /// `encounter_content`.
    pub fn encounter_content(&self) -> &[Link] {
        self.get(LinkKind::EncounterContent)
    }

    /// `structured_data` (session).
    pub fn structured_data(&self) -> &[Link] {
        self.get(LinkKind::StructuredData)
    }

    /// `encounter_structured_data`.
    pub fn encounter_structured_data(&self) -> &[Link] {
        self.get(LinkKind::EncounterStructuredData)
    }

    /// `status`.
    pub fn status(&self) -> &[Link] {
        self.get(LinkKind::Status)
    }

    /// `transcripts`.
    pub fn transcripts(&self) -> &[Link] {
        self.get(LinkKind::Transcripts)
    }

    /// Every link under a documented key, with its kind.
    pub fn iter(&self) -> impl Iterator<Item = (LinkKind, &Link)> {
        LinkKind::ALL
            .into_iter()
            .flat_map(move |kind| self.get(kind).iter().map(move |link| (kind, link)))
    }

    /// Keys this SDK does not know, with their raw values.
    pub fn other(&self) -> &BTreeMap<String, Value> {
        &self.other
    }

    /// The links under an unknown key, when they have the link shape.
    pub fn other_links(&self, key: &str) -> Option<Vec<Link>> {
        serde_json::from_value(self.other.get(key)?.clone()).ok()
    }

    /// Adds a link under a documented key.
    pub fn push(&mut self, kind: LinkKind, link: Link) {
        self.known[kind.index()].push(link);
    }

    /// Adds a link under a documented key (builder style).
    #[must_use]
    pub fn with(mut self, kind: LinkKind, link: Link) -> Self {
        self.push(kind, link);
        self
    }

    /// Whether there is no link and no unknown key.
    pub fn is_empty(&self) -> bool {
        self.known.iter().all(Vec::is_empty) && self.other.is_empty()
    }
}

impl Serialize for Links {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        for kind in LinkKind::ALL {
            let links = self.get(kind);
            if !links.is_empty() {
                map.serialize_entry(kind.key(), links)?;
            }
        }
        for (key, value) in &self.other {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Links {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct LinksVisitor;
        impl<'de> Visitor<'de> for LinksVisitor {
            type Value = Links;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of link arrays")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Links, A::Error> {
                let mut links = Links::default();
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    match LinkKind::from_key(&key) {
                        Some(kind) => {
                            let list = map.next_value::<Option<Vec<Link>>>()?;
                            links.known[kind.index()] = list.unwrap_or_default();
                        }
                        None => {
                            let value = map.next_value::<Value>()?;
                            links.other.insert(key.into_owned(), value);
                        }
                    }
                }
                Ok(links)
            }
        }
        d.deserialize_map(LinksVisitor)
    }
}
