//! `MapError`: why a session's results could not be mapped. Messages name no PHI.

/// Why a session's results could not become a Bundle (or a reference could not be read).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MapError {
    /// A reference given by the integrator is not a FHIR reference.
    #[error("not a FHIR reference: {0}")]
    Reference(&'static str),
    /// The note has no section with text: there is no document to write.
    #[error("the session's note has no section with text")]
    EmptyNote,
    /// A code system given by the integrator is not an absolute URI.
    #[error("the IMO code system is not an absolute URI")]
    CodeSystem,
    /// A resource could not be written as JSON (serde_json refused a value).
    #[error("a resource could not be written as JSON")]
    Json,
}

/// Why a transaction could not be written to the FHIR server. Messages name statuses and FHIR
/// issue codes, never the Bundle, a token, or the server's diagnostics (which may echo the note).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FhirError {
    /// The server answered an error status; `code` is its `OperationOutcome`'s first issue code
    /// (`invalid`, `duplicate`, `processing`…), or `unknown`.
    #[error("the FHIR server answered {status} ({code})")]
    Server {
        /// HTTP status.
        status: u16,
        /// The first issue's code.
        code: String,
        /// The server's `Retry-After`, when it sent one.
        retry_after: Option<std::time::Duration>,
    },
    /// The server refused the credentials (401, 403).
    #[error("the FHIR server refused the credentials ({status})")]
    Auth {
        /// HTTP status.
        status: u16,
    },
    /// Timeouts, connection failures, a refused redirect, an answer past the size limit: the
    /// SDK client's transport errors.
    #[error(transparent)]
    Transport(suki_ambient_client::ClientError),
    /// A 2xx answer that is not what was asked for (a `transaction-response` Bundle, a
    /// created resource's location, a searchset).
    #[error("the FHIR server's answer is not what the request asks for")]
    Answer,
    /// The EHR already has resources under the session's identifiers that differ from this
    /// write's (another chart, or a changed note): `references` names them (`Type/id`). See
    /// [`OnConflict`](crate::OnConflict).
    #[error("the EHR has different resources under this session's identifiers: {}", references.join(", "))]
    Conflict {
        /// The differing resources.
        references: Vec<String>,
    },
    /// A `transaction-response` that does not answer every entry sent (none, or fewer or more
    /// than the Bundle's): what was written is unknown. Retryable: every entry is a conditional
    /// create, so posting the Bundle again writes nothing twice.
    #[error("the FHIR server answered {answered} entries for the {sent} sent")]
    EntryCount {
        /// Entries in the Bundle.
        sent: usize,
        /// Entries in the answer.
        answered: usize,
    },
    /// An entry of a `transaction-response` answered a status other than 2xx: that resource was
    /// not written. Retryable when the status is (429, 503…).
    #[error("the FHIR server answered {status} for a {resource_type} entry")]
    Entry {
        /// The entry's HTTP status.
        status: u16,
        /// The entry's resource type.
        resource_type: &'static str,
    },
    /// The server's CapabilityStatement is unreadable, or declares no way to write the note.
    #[error("the FHIR server's capabilities: {0}")]
    Capabilities(&'static str),
    /// The server's CapabilityStatement could not be read, now or within the last 30 s (a
    /// failure is remembered that long, so that a server that is down is asked once, not by
    /// every write): `code` is the read's error code (`fhir_503_transient`, `fhir_timeout`,
    /// `fhir_capabilities` for a statement that is not one).
    #[error("the FHIR server's CapabilityStatement could not be read ({code})")]
    Metadata {
        /// The read's error code.
        code: String,
        /// Whether reading it again later may succeed.
        retryable: bool,
        /// How long the failure is still remembered: a retry sooner meets it again.
        retry_in: std::time::Duration,
    },
    /// The token endpoint granted fewer scopes than the write plan needs: `scope` is the first
    /// one missing (`system/Condition.c`). Ask the EHR's administrator to grant it, or write
    /// less (`WriteStrategy::DocumentReferenceOnly`).
    #[error("the token grants no {scope}, which the write plan needs")]
    ScopeMissing {
        /// The scope needed and not granted.
        scope: String,
    },
    /// The server refused a token the auth had just issued afresh after it refused the cached
    /// one (a 401 twice): revoked at once, or not yet valid there. Retryable (the auth works:
    /// it issued a token); a server that never takes its tokens ends the row a dead letter
    /// after its attempts (`fhir_401_fresh_token`).
    #[error("the FHIR server refused a freshly issued token (401)")]
    FreshTokenRefused,
    /// The authorization server refused or failed to issue a token (SMART Backend Services);
    /// `code` is its OAuth `error` (`invalid_client`, `invalid_scope`…), cleaned, or `unknown`.
    #[error("the token endpoint answered {status} ({code})")]
    Token {
        /// HTTP status.
        status: u16,
        /// The OAuth error code.
        code: String,
    },
    /// The client or the token source is misconfigured.
    #[error("FHIR client configuration: {0}")]
    Config(String),
    /// A resource to post could not be mapped (see [`MapError`]).
    #[error("the resource could not be mapped: {0}")]
    Mapping(MapError),
}

impl FhirError {
    /// Whether posting again later may succeed: 408, 429, 500, 502, 503, 504, timeouts and
    /// connection failures. A transaction of conditional creates is safe to post again.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Server { status, .. } => matches!(status, 408 | 429 | 500 | 502 | 503 | 504),
            Self::Transport(err) => err.is_retryable(),
            Self::Token { status, .. } | Self::Entry { status, .. } => {
                matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
            }
            Self::EntryCount { .. } | Self::FreshTokenRefused => true,
            Self::Metadata { retryable, .. } => *retryable,
            Self::Auth { .. }
            | Self::Answer
            | Self::Capabilities(_)
            | Self::Conflict { .. }
            | Self::ScopeMissing { .. }
            | Self::Config(_)
            | Self::Mapping(_) => false,
        }
    }

    /// How long to wait before trying again, when the error says (a remembered failure to read
    /// the CapabilityStatement).
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Self::Metadata { retry_in, .. } if !retry_in.is_zero() => Some(*retry_in),
            Self::Server { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Whether the error says the FHIR server (or its token endpoint) is unavailable, not that
    /// this write is wrong: a transport error or timeout, `408`, `429` or `5xx`, an answer
    /// that is not one (a 2xx of garbage, a transaction half answered), credentials the
    /// server refuses (`401`/`403` to a token it issued, a token endpoint failing), a
    /// CapabilityStatement that cannot be read. `FhirWriteBack` then makes the row wait for the
    /// EHR (its circuit breaker) without spending an attempt; the row's own errors (a 4xx
    /// about the resource, a conflict, a missing scope) still count.
    pub fn is_outage(&self) -> bool {
        let unavailable = |status: u16| status == 408 || status == 429 || status >= 500;
        match self {
            Self::Server { status, .. } | Self::Entry { status, .. } => unavailable(*status),
            Self::Transport(err) => {
                err.is_outage() || matches!(err, suki_ambient_client::ClientError::Decode { .. })
            }
            Self::Token { status, .. } => unavailable(*status) || matches!(status, 400 | 401),
            Self::Auth { .. }
            | Self::FreshTokenRefused
            | Self::Answer
            | Self::EntryCount { .. } => true,
            Self::Metadata { retryable, .. } => *retryable,
            Self::Conflict { .. }
            | Self::Capabilities(_)
            | Self::ScopeMissing { .. }
            | Self::Config(_)
            | Self::Mapping(_) => false,
        }
    }

    /// A short code for logs and dead letters: `fhir_503_transient`, `fhir_401`, `fhir_timeout`…
    pub fn code(&self) -> String {
        match self {
            Self::Server { status, code, .. } => format!("fhir_{status}_{code}"),
            Self::Auth { status } => format!("fhir_{status}"),
            Self::Transport(suki_ambient_client::ClientError::Timeout { .. }) => {
                "fhir_timeout".to_owned()
            }
            Self::Transport(suki_ambient_client::ClientError::Redirect { .. }) => {
                "fhir_redirect".to_owned()
            }
            Self::Transport(suki_ambient_client::ClientError::ResponseTooLarge { .. }) => {
                "fhir_answer_too_large".to_owned()
            }
            Self::Transport(_) => "fhir_transport".to_owned(),
            Self::Answer => "fhir_bad_answer".to_owned(),
            Self::EntryCount { .. } => "fhir_entry_count".to_owned(),
            Self::Entry { status, .. } => format!("fhir_entry_{status}"),
            Self::Capabilities(_) => "fhir_capabilities".to_owned(),
            Self::Metadata { code, .. } => code.clone(),
            Self::ScopeMissing { .. } => "fhir_scope_missing".to_owned(),
            Self::FreshTokenRefused => "fhir_401_fresh_token".to_owned(),
            Self::Conflict { .. } => "fhir_conflict".to_owned(),
            Self::Token { status, code } => format!("fhir_token_{status}_{code}"),
            Self::Config(_) => "fhir_config".to_owned(),
            Self::Mapping(_) => "fhir_mapping".to_owned(),
        }
    }
}
