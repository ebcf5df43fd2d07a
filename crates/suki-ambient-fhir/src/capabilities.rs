//! What a FHIR server can do, and how this crate is told to write to it: the
//! [`WriteStrategy`], the resource types it writes, the server's [`Capabilities`] (read from its
//! CapabilityStatement) and their cache, how each type is created ([`CreateMode`]), what to do
//! on a conflict ([`OnConflict`]), and the references a server answers with. The bottom
//! room of the write-back: the transport (`client`), the planning (`write`) and the corrections
//! (`correct`) use it; it uses none of them.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::FhirError;

/// How a session's resources are written to the EHR ([`FhirClientBuilder::strategy`]).
///
/// [`FhirClientBuilder::strategy`]: crate::FhirClientBuilder::strategy
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum WriteStrategy {
    /// Read the server's CapabilityStatement (once an hour) and choose: a transaction when the
    /// server takes them (and, when it refuses one as a whole with a 400, 413 or 422, the same
    /// resources one at a time); otherwise a create per resource the server can create, each
    /// with `If-None-Exist` where it declares `conditionalCreate`, or after a search by
    /// identifier where it does not. A server that cannot create `DocumentReference` is an
    /// error.
    #[default]
    Auto,
    /// One transaction Bundle of conditional creates (all or nothing).
    Transaction,
    /// A create per resource, in order: DocumentReference, Composition, Conditions,
    /// MedicationRequests, then the Provenance naming the ids the server gave them (US Core's
    /// "Writing Clinical Notes": individual POSTs).
    PerResource,
    /// The DocumentReference only (Oracle Health Millennium documents no other write).
    DocumentReferenceOnly,
}

impl WriteStrategy {
    /// The name used by the CLI and `FHIR_STRATEGY`: `auto`, `transaction`, `per-resource`,
    /// `document-only`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Transaction => "transaction",
            Self::PerResource => "per-resource",
            Self::DocumentReferenceOnly => "document-only",
        }
    }
}

impl std::str::FromStr for WriteStrategy {
    type Err = FhirError;

    fn from_str(text: &str) -> Result<Self, FhirError> {
        match text.trim() {
            "auto" => Ok(Self::Auto),
            "transaction" => Ok(Self::Transaction),
            "per-resource" => Ok(Self::PerResource),
            "document-only" => Ok(Self::DocumentReferenceOnly),
            _ => Err(FhirError::Config(
                "the strategy is one of auto, transaction, per-resource, document-only".into(),
            )),
        }
    }
}

impl fmt::Display for WriteStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The resource types a session may write, in the order of a per-resource write (the last two
/// for a session with no note).
pub(crate) const TYPES: [&str; 7] = [
    "DocumentReference",
    "Composition",
    "Condition",
    "MedicationRequest",
    "Provenance",
    "Communication",
    "Task",
];

/// What a server's CapabilityStatement says about the writes this crate makes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// Its FHIR version (`4.0.1`), when given.
    pub fhir_version: Option<String>,
    /// Whether it takes transaction Bundles (`rest.interaction` has `transaction`).
    pub transaction: bool,
    /// Per resource type this crate writes: whether it can be created, conditionally.
    pub resources: BTreeMap<String, ResourceCapability>,
}

/// What a server can do with one resource type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResourceCapability {
    /// `interaction` has `create`.
    pub create: bool,
    /// `conditionalCreate` is true: the server honours `If-None-Exist`.
    pub conditional_create: bool,
}

impl Capabilities {
    /// Reads a CapabilityStatement (JSON). `Err` when it is not one or has no server part.
    pub fn parse(json: &[u8]) -> Result<Self, FhirError> {
        let statement: Value = serde_json::from_slice(json)
            .map_err(|_| FhirError::Capabilities("the metadata is not JSON"))?;
        if statement["resourceType"] != "CapabilityStatement" {
            return Err(FhirError::Capabilities(
                "the metadata is not a CapabilityStatement",
            ));
        }
        let rests = statement["rest"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        let Some(rest) = rests
            .iter()
            .find(|r| r["mode"] == "server")
            .or_else(|| rests.first())
        else {
            return Err(FhirError::Capabilities(
                "the CapabilityStatement has no rest part",
            ));
        };
        let has = |interactions: &Value, code: &str| {
            interactions
                .as_array()
                .is_some_and(|list| list.iter().any(|i| i["code"] == code))
        };
        let mut resources = BTreeMap::new();
        for resource in rest["resource"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let Some(kind) = resource["type"].as_str() else {
                continue;
            };
            if let Some(kind) = TYPES.iter().find(|t| **t == kind) {
                resources.insert(
                    (*kind).to_owned(),
                    ResourceCapability {
                        create: has(&resource["interaction"], "create"),
                        conditional_create: resource["conditionalCreate"] == true,
                    },
                );
            }
        }
        Ok(Self {
            fhir_version: statement["fhirVersion"]
                .as_str()
                .filter(|v| v.len() <= 16)
                .map(str::to_owned),
            transaction: has(&rest["interaction"], "transaction"),
            resources,
        })
    }

    pub(crate) fn of(&self, kind: &str) -> ResourceCapability {
        self.resources.get(kind).copied().unwrap_or_default()
    }
}

/// A statement read more recently than this is not read again when the server refuses a write
/// it allowed (at most the client's `capabilities_recheck`).
pub(crate) const REREAD_AFTER: Duration = Duration::from_secs(5);

/// How long a failed read of the CapabilityStatement is remembered: writes in that time fail
/// with its error at once instead of each asking a server that is down.
pub(crate) const ERROR_TTL: Duration = Duration::from_secs(30);

/// A read's answer, shared by every caller that waited for it.
pub(crate) type ReadAnswer = Result<Arc<Capabilities>, Arc<FhirError>>;
pub(crate) type Read =
    futures_util::future::Shared<futures_util::future::BoxFuture<'static, ReadAnswer>>;

/// The server's CapabilityStatement, kept for a while: one read in flight at a time (the
/// others share it, each within its own deadline), no lock held across the read, a failure
/// remembered for [`ERROR_TTL`].
pub(crate) struct CapabilityCache {
    pub(crate) ttl: Duration,
    /// How old a statement may be when a plan made from it leaves parts of a session out.
    pub(crate) recheck: Duration,
    state: std::sync::Mutex<CacheState>,
}

#[derive(Default)]
pub(crate) struct CacheState {
    /// The last read's answer and when it came.
    pub(crate) last: Option<(Instant, ReadAnswer)>,
    /// The read in flight.
    pub(crate) flight: Option<Read>,
    /// The server refused a transaction although this statement lists them (a cap on a
    /// transaction's size, say): `auto` writes one resource at a time until it is read again.
    pub(crate) transaction_refused: bool,
}

impl CapabilityCache {
    pub(crate) fn new(ttl: Duration, recheck: Duration) -> Self {
        Self {
            ttl,
            recheck,
            state: std::sync::Mutex::new(CacheState::default()),
        }
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, CacheState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Remembers, for the statement held, that the server refused a transaction.
    pub(crate) fn refuse_transaction(&self) {
        self.lock().transaction_refused = true;
    }

    pub(crate) fn transaction_refused(&self) -> bool {
        self.lock().transaction_refused
    }

    /// Forgets the statement if it was read longer than `age` ago.
    pub(crate) fn forget_older_than(&self, age: Duration) {
        let mut state = self.lock();
        if state
            .last
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() >= age)
        {
            state.last = None;
        }
    }
}

/// A remembered failure (read at `at`), as the caller's own error.
pub(crate) fn again(err: &FhirError, at: Instant) -> FhirError {
    FhirError::Metadata {
        code: err.code(),
        retryable: err.is_retryable(),
        retry_in: ERROR_TTL.saturating_sub(at.elapsed()),
    }
}

/// `Type/id` of a reference or location (`[base]/Type/id[/_history/v]`).
pub(crate) fn resource_ref(text: &str) -> Option<String> {
    let path = text.split(['?', '#']).next()?;
    let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let n = parts.len();
    let (kind, id) = if n >= 4 && parts[n - 2] == "_history" {
        (parts[n - 4], parts[n - 3])
    } else if n >= 2 {
        (parts[n - 2], parts[n - 1])
    } else {
        return None;
    };
    let kind_ok = kind.starts_with(|c: char| c.is_ascii_uppercase())
        && kind.len() <= 64
        && kind.chars().all(|c| c.is_ascii_alphanumeric());
    (kind_ok && crate::context::is_id(id)).then(|| format!("{kind}/{id}"))
}

/// How one resource type is created without a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CreateMode {
    /// `POST [base]/Type` with `If-None-Exist: identifier=…`: the server matches atomically.
    Conditional,
    /// `GET [base]/Type?identifier=…`, then a plain `POST` when nothing matched. Two writers of
    /// the same session at the same instant could both create (the inbox's lease makes that a
    /// crash-and-lease-expiry case); a later write then finds two and fails visibly
    /// (`fhir_412_duplicate`).
    SearchFirst,
    /// Not written: the server cannot create this type.
    Skip,
}

/// What [`FhirClient::write_with`](crate::FhirClient::write_with) (and the write-back) does when the EHR already has
/// resources under a session's identifiers that differ from what the write would make: another
/// patient or encounter, another note text, or (when the note changed) diagnoses and orders the
/// new note no longer has.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnConflict {
    /// The write fails with [`FhirError::Conflict`] naming the resources (a dead letter
    /// `fhir_conflict` in the inbox): someone decides. The default.
    #[default]
    Fail,
    /// What the EHR has stays; the write succeeds (said with an INFO).
    Keep,
    /// Each differing resource is superseded: a new one (identifier `<old>/<12 hex>`, from its
    /// content) is created — a DocumentReference or Composition with `relatesTo` `replaces`
    /// the old one — and the old one is marked `entered-in-error` (a PUT; a server that
    /// refuses it keeps it, with a WARN). Diagnoses and orders the new note no longer has are
    /// marked too, and the Provenance is rewritten to name the new resources.
    Supersede,
}
