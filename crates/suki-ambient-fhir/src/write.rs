//! Write strategies: one transaction, or one create per resource (with the `If-None-Exist`
//! header, or a search by identifier first), chosen by the integrator or read from the server's
//! CapabilityStatement (`GET [base]/metadata`, cached).

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use reqwest::Method;
use serde_json::Value;

use suki_ambient_client::ClientError;

use crate::capabilities::CreateMode;
use crate::capabilities::{
    Capabilities, ERROR_TTL, REREAD_AFTER, Read, TYPES, WriteStrategy, again, resource_ref,
};
use crate::client::{
    EntryResult, FhirClient, FhirRequest, FhirResponse, NoteCheck, SkipReason, Skipped,
    TransactionResult,
};
use crate::context::is_id;
use crate::{FhirError, TransactionBundle};

/// How many creates of a per-resource write are in flight at once (after the note, before the
/// Provenance): few enough to be a good citizen of the EHR.
pub(crate) const CONCURRENT_CREATES: usize = 4;

/// What a write will do, and why: the strategy's decision for one server
/// ([`FhirClient::plan`]). `Display` prints it for `suki-ambient fhir capabilities`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct WritePlan {
    /// The strategy asked for.
    pub strategy: WriteStrategy,
    /// Whether the session goes as one transaction.
    pub transaction: bool,
    /// Without a transaction: how each resource type is created, in order.
    pub creates: Vec<(&'static str, CreateMode)>,
    /// Why, in a few lines.
    pub reasons: Vec<String>,
}

impl WritePlan {
    /// How `kind` is created in a per-resource write.
    pub fn mode(&self, kind: &str) -> CreateMode {
        self.creates
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(CreateMode::Skip, |(_, mode)| *mode)
    }

    /// The plan of `strategy` on a server with `capabilities` (`None` when they are unknown:
    /// explicit strategies then use `If-None-Exist`, which US Core servers SHALL support).
    pub fn new(
        strategy: WriteStrategy,
        capabilities: Option<&Capabilities>,
    ) -> Result<Self, FhirError> {
        let mut reasons = Vec::new();
        let mode_of = |kind: &'static str, reasons: &mut Vec<String>| match capabilities {
            None => CreateMode::Conditional,
            Some(caps) => {
                let cap = caps.of(kind);
                if cap.conditional_create {
                    CreateMode::Conditional
                } else {
                    reasons.push(format!(
                        "{kind}: no conditionalCreate declared: search by identifier, then create"
                    ));
                    CreateMode::SearchFirst
                }
            }
        };
        let plan = match strategy {
            WriteStrategy::Transaction => {
                reasons.push("transaction: asked for".into());
                Self {
                    strategy,
                    transaction: true,
                    creates: Vec::new(),
                    reasons,
                }
            }
            WriteStrategy::DocumentReferenceOnly => {
                reasons.push("document-only: the DocumentReference alone, asked for".into());
                let mode = mode_of("DocumentReference", &mut reasons);
                Self {
                    strategy,
                    transaction: false,
                    creates: vec![("DocumentReference", mode)],
                    reasons,
                }
            }
            WriteStrategy::PerResource => {
                reasons.push("per-resource: asked for".into());
                let creates = TYPES
                    .iter()
                    .map(|kind| (*kind, mode_of(kind, &mut reasons)))
                    .collect();
                Self {
                    strategy,
                    transaction: false,
                    creates,
                    reasons,
                }
            }
            WriteStrategy::Auto => {
                let Some(caps) = capabilities else {
                    return Err(FhirError::Capabilities(
                        "the auto strategy needs the server's CapabilityStatement",
                    ));
                };
                if caps.transaction {
                    // A transaction's entries are conditional creates: only where the server
                    // declares conditionalCreate for every type it takes is `ifNoneExist`
                    // honoured (otherwise a re-post creates everything again).
                    let blind: Vec<&str> = TYPES
                        .iter()
                        .copied()
                        .filter(|t| caps.of(t).create && !caps.of(t).conditional_create)
                        .collect();
                    if caps.of("DocumentReference").conditional_create && blind.is_empty() {
                        reasons.push(
                            "transaction: the CapabilityStatement lists the transaction interaction and conditionalCreate"
                                .into(),
                        );
                        return Ok(Self {
                            strategy,
                            transaction: true,
                            creates: Vec::new(),
                            reasons,
                        });
                    }
                    reasons.push(format!(
                        "per-resource: transactions are listed, but no conditionalCreate for {}: ifNoneExist would not be honoured",
                        if blind.is_empty() { "DocumentReference".to_owned() } else { blind.join(", ") }
                    ));
                } else {
                    reasons.push(
                        "per-resource: the CapabilityStatement lists no transaction interaction"
                            .into(),
                    );
                }
                Self::listed(strategy, caps, reasons)?
            }
        };
        Ok(plan)
    }
}

impl WritePlan {
    /// A create per resource of each type `caps` lists with `create`, in order; the others
    /// skipped. `Err` when the DocumentReference cannot be created.
    fn listed(
        strategy: WriteStrategy,
        caps: &Capabilities,
        mut reasons: Vec<String>,
    ) -> Result<Self, FhirError> {
        if !caps.of("DocumentReference").create {
            return Err(FhirError::Capabilities(
                "the server declares no create of DocumentReference",
            ));
        }
        let mut creates = Vec::new();
        for kind in TYPES {
            if !caps.of(kind).create {
                reasons.push(format!("{kind}: not written (no create declared)"));
                creates.push((kind, CreateMode::Skip));
            } else if caps.of(kind).conditional_create {
                creates.push((kind, CreateMode::Conditional));
            } else {
                reasons.push(format!(
                    "{kind}: no conditionalCreate declared: search (by patient and identifier), then create"
                ));
                creates.push((kind, CreateMode::SearchFirst));
            }
        }
        Ok(Self {
            strategy,
            transaction: false,
            creates,
            reasons,
        })
    }

    /// The plan after a transaction was refused as a whole: the same resources one at a time,
    /// as `caps` lists them (or all of them with `If-None-Exist` when they are unknown).
    pub(crate) fn without_transaction(
        strategy: WriteStrategy,
        caps: Option<&Capabilities>,
    ) -> Result<Self, FhirError> {
        let reasons = vec!["per-resource: the server refused the transaction".to_owned()];
        match caps {
            Some(caps) => Self::listed(strategy, caps, reasons),
            None => Ok(Self {
                strategy,
                transaction: false,
                creates: TYPES
                    .iter()
                    .map(|t| (*t, CreateMode::Conditional))
                    .collect(),
                reasons,
            }),
        }
    }

    /// Whether the plan writes `kind`.
    pub fn writes(&self, kind: &str) -> bool {
        self.transaction || self.mode(kind) != CreateMode::Skip
    }

    /// The SMART v2 scopes a write of `types` with this plan needs: `system/<Type>.c` for each
    /// type it creates and `system/<Type>.rs` for each (a matched create is read back and
    /// compared; a search-first create and a correction search), in the order of a
    /// per-resource write.
    pub fn scopes_for<'a>(&self, types: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let types: Vec<&str> = types.into_iter().collect();
        TYPES
            .iter()
            .filter(|t| types.contains(t) && self.writes(t))
            .flat_map(|t| [format!("system/{t}.c"), format!("system/{t}.rs")])
            .collect()
    }

    /// The scopes of every type the plan may write (a session's resources, and the
    /// `Communication`/`Task` of a session without a note): what a SMART auth that derives its
    /// scopes asks for.
    pub fn scopes(&self) -> Vec<String> {
        self.scopes_for(TYPES)
    }
}

impl fmt::Display for WritePlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "strategy: {}", self.strategy)?;
        if self.transaction {
            writeln!(f, "write: one transaction Bundle of conditional creates")?;
        } else {
            writeln!(f, "write: a create per resource, in this order:")?;
            for (kind, mode) in &self.creates {
                let how = match mode {
                    CreateMode::Conditional => "POST with If-None-Exist (identifier)",
                    CreateMode::SearchFirst => "search by patient and identifier, then POST",
                    CreateMode::Skip => "not written",
                };
                writeln!(f, "  {kind:<18} {how}")?;
            }
        }
        writeln!(f, "scopes needed (SMART): {}", self.scopes().join(" "))?;
        writeln!(f, "why:")?;
        for reason in &self.reasons {
            writeln!(f, "  - {reason}")?;
        }
        Ok(())
    }
}

impl FhirClient {
    /// The server's CapabilityStatement (`GET [base]/metadata`), read at most once per
    /// [`capabilities_ttl`](crate::FhirClientBuilder::capabilities_ttl); concurrent callers
    /// share one read, and a failed read is answered from memory for 30 s. A statement that is
    /// not JSON, not a CapabilityStatement or too large is a retryable error (a server in
    /// maintenance answers such pages).
    pub async fn capabilities(&self) -> Result<Arc<Capabilities>, FhirError> {
        self.capabilities_until(self.deadline()).await
    }

    pub(crate) async fn capabilities_until(
        &self,
        deadline: Option<Instant>,
    ) -> Result<Arc<Capabilities>, FhirError> {
        let cache = &self.inner.capabilities;
        let read = {
            let mut state = cache.lock();
            match &state.last {
                Some((at, Ok(caps))) if at.elapsed() < cache.ttl => return Ok(Arc::clone(caps)),
                Some((at, Err(err))) if at.elapsed() < ERROR_TTL => return Err(again(err, *at)),
                _ => {}
            }
            match &state.flight {
                Some(read) => read.clone(),
                None => {
                    use futures_util::FutureExt as _;
                    let client = self.clone();
                    let read: Read = async move {
                        let answer = client
                            .read_capabilities()
                            .await
                            .map(Arc::new)
                            .map_err(Arc::new);
                        let mut state = client.inner.capabilities.lock();
                        state.last = Some((Instant::now(), answer.clone()));
                        state.flight = None;
                        state.transaction_refused = false;
                        answer
                    }
                    .boxed()
                    .shared();
                    state.flight = Some(read.clone());
                    read
                }
            }
        };
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let answer = match left {
            Some(left) => tokio::time::timeout(left, read).await.map_err(|_| {
                FhirError::Transport(ClientError::Timeout {
                    kind: suki_ambient_client::TimeoutKind::Deadline,
                })
            })?,
            None => read.await,
        };
        answer.map_err(|err| again(&err, Instant::now()))
    }

    /// One read of `[base]/metadata`, with the client's retries.
    async fn read_capabilities(&self) -> Result<Capabilities, FhirError> {
        let answer = self
            .call(
                &FhirRequest {
                    method: Method::GET,
                    url: self.url("metadata", None),
                    body: None,
                    if_none_exist: None,
                    // Read without a token first (SMART servers serve it openly): no token is
                    // asked for before the plan says which scopes it needs.
                    public: true,
                    if_match: None,
                    retry: true,
                },
                self.deadline(),
            )
            .await
            .map_err(|err| match err {
                // An answer past the limit is a server's error page more often than a statement.
                FhirError::Transport(ClientError::ResponseTooLarge { .. }) => FhirError::Metadata {
                    code: "fhir_capabilities".into(),
                    retryable: true,
                    retry_in: std::time::Duration::ZERO,
                },
                err => err,
            })?;
        Capabilities::parse(&answer.body).map_err(|_| FhirError::Metadata {
            code: "fhir_capabilities".into(),
            retryable: true,
            retry_in: std::time::Duration::ZERO,
        })
    }

    /// What [`write`](Self::write) does on this server with the client's strategy, and why
    /// (reads the CapabilityStatement unless the strategy is [`WriteStrategy::Transaction`]).
    pub async fn plan(&self) -> Result<WritePlan, FhirError> {
        self.plan_until(self.deadline()).await
    }

    async fn plan_until(&self, deadline: Option<Instant>) -> Result<WritePlan, FhirError> {
        let strategy = self.inner.strategy;
        if strategy == WriteStrategy::Transaction {
            return WritePlan::new(strategy, None);
        }
        match self.capabilities_until(deadline).await {
            Ok(caps)
                if strategy == WriteStrategy::Auto
                    && caps.transaction
                    && self.inner.capabilities.transaction_refused() =>
            {
                WritePlan::without_transaction(strategy, Some(&caps))
            }
            Ok(caps) => WritePlan::new(strategy, Some(&caps)),
            // Explicit strategies do without a statement the server does not serve or that
            // cannot be read: If-None-Exist, as US Core servers SHALL support.
            Err(err)
                if strategy != WriteStrategy::Auto
                    && (!err.is_retryable() || err.code() == "fhir_capabilities") =>
            {
                tracing::debug!(error = %err, "no CapabilityStatement; creating with If-None-Exist");
                WritePlan::new(strategy, None)
            }
            Err(err) => Err(err),
        }
    }

    /// Writes `bundle`'s resources with the client's [`WriteStrategy`]: `Ok` with each
    /// written resource's answer (`201` created, `200` matched an earlier write). Every way is
    /// idempotent: writing a session again, or resuming after a failure part-way through a
    /// per-resource write, creates nothing twice. A resource an earlier write left that differs
    /// from this one (another chart, another note) is a conflict:
    /// [`write_with`](Self::write_with) `OnConflict::Fail`.
    pub async fn write(&self, bundle: &TransactionBundle) -> Result<TransactionResult, FhirError> {
        self.write_with(bundle, crate::OnConflict::Fail).await
    }

    /// [`write`](Self::write), with `on_conflict` deciding what happens when the EHR already
    /// has different resources under the session's identifiers.
    pub async fn write_with(
        &self,
        bundle: &TransactionBundle,
        on_conflict: crate::OnConflict,
    ) -> Result<TransactionResult, FhirError> {
        // One deadline for the whole write: the statement, the token, the writes, the
        // correction.
        self.write_checked(bundle, on_conflict, true).await
    }

    /// [`write_with`](Self::write_with); `check_first`: on a transaction server, the note is
    /// written (or matched) alone first and a conflict decided on it before the rest is
    /// written. The write-back skips that on a row's first attempt (nothing of the session
    /// can be in the EHR yet): one request less.
    pub(crate) async fn write_checked(
        &self,
        bundle: &TransactionBundle,
        on_conflict: crate::OnConflict,
        check_first: bool,
    ) -> Result<TransactionResult, FhirError> {
        let deadline = self.deadline();
        let work = self.write_until(bundle, on_conflict, check_first, deadline);
        match deadline {
            Some(end) => tokio::time::timeout_at(end.into(), work)
                .await
                .unwrap_or_else(|_| {
                    Err(FhirError::Transport(ClientError::Timeout {
                        kind: suki_ambient_client::TimeoutKind::Deadline,
                    }))
                }),
            None => work.await,
        }
    }

    async fn write_until(
        &self,
        bundle: &TransactionBundle,
        on_conflict: crate::OnConflict,
        check_first: bool,
        deadline: Option<Instant>,
    ) -> Result<TransactionResult, FhirError> {
        let mut plan = self.plan_until(deadline).await?;
        if !plan.transaction
            && plan.strategy != WriteStrategy::DocumentReferenceOnly
            && bundle
                .summaries()
                .iter()
                .any(|s| plan.mode(s.resource_type) == CreateMode::Skip)
        {
            // A plan that leaves parts out is not kept for the statement's whole lifetime: the
            // server may take them again after its maintenance or upgrade.
            let cache = &self.inner.capabilities;
            cache.forget_older_than(cache.recheck);
            plan = self.plan_until(deadline).await?;
        }
        self.check_scopes(bundle, &plan).await?;
        let mut note_created = None;
        let mut note_check = NoteCheck::Open;
        if check_first
            && plan.transaction
            && let Some(index) = bundle
                .summaries()
                .iter()
                .position(|s| s.resource_type == "DocumentReference")
        {
            // The note alone first: a conflict is decided before anything else is written.
            let note = self
                .create_entry(bundle, index, CreateMode::Conditional, deadline)
                .await?;
            note_check = self
                .decide_on_note(bundle, &note, on_conflict, deadline)
                .await?;
            if note_check == NoteCheck::Kept {
                return Ok(TransactionResult {
                    entries: vec![note],
                    corrected: Vec::new(),
                    skipped: Vec::new(),
                    note: NoteCheck::Kept,
                });
            }
            note_created = (note.status == 201).then_some(note.part);
        }
        let mut replanned = false;
        let mut result = loop {
            let written = if plan.transaction {
                self.post_until(bundle, deadline).await
            } else {
                self.write_each(bundle, &plan, on_conflict, deadline).await
            };
            match written {
                Ok(result) => break result,
                Err(err) if !replanned && stale_plan(&plan, &err) => {
                    // The server refused what its statement declared (a type's create, the
                    // transaction): it changed, or the statement was never right. Read it
                    // again and plan anew, once, within this attempt. Nothing was written by
                    // a refused transaction; a per-resource write resumes idempotently.
                    replanned = true;
                    tracing::warn!(
                        error = %err.code(),
                        transaction = plan.transaction,
                        "suki fhir: the server refused a write its CapabilityStatement allowed; reading it again and planning anew"
                    );
                    // Read again unless just read (a server that keeps refusing what it
                    // declares is not asked for its statement on every write).
                    let cache = &self.inner.capabilities;
                    cache.forget_older_than(cache.recheck.min(REREAD_AFTER));
                    let fresh = self.plan_until(deadline).await?;
                    plan = if plan.transaction && fresh.transaction {
                        // Still listed, yet refused (Medplum, for one, takes at most 8
                        // conditional entries in a transaction; other servers cap its size):
                        // the same resources one at a time, as the statement lists the types,
                        // and so until the statement is read again.
                        cache.refuse_transaction();
                        let caps = self.capabilities_until(deadline).await.ok();
                        WritePlan::without_transaction(plan.strategy, caps.as_deref())?
                    } else {
                        fresh
                    };
                    self.check_scopes(bundle, &plan).await?;
                }
                Err(err) => return Err(err),
            }
        };
        if result.note == NoteCheck::Kept {
            // Kept: the note the EHR has stays, and nothing else was written.
            return Ok(result);
        }
        if note_check == NoteCheck::Unchanged {
            result.note = NoteCheck::Unchanged;
        }
        // The note this write created alone, matched again by the transaction: created.
        if let Some(part) = note_created
            && let Some(entry) = result.entries.iter_mut().find(|e| e.part == part)
        {
            entry.status = 201;
        }
        self.reconcile(bundle, &plan, &mut result, on_conflict, deadline)
            .await?;
        self.retire_replaced(bundle, &mut result, deadline).await?;
        Ok(result)
    }

    /// Asks the auth for the scopes the plan needs, and checks those this write needs were
    /// granted.
    async fn check_scopes(
        &self,
        bundle: &TransactionBundle,
        plan: &WritePlan,
    ) -> Result<(), FhirError> {
        let needed = plan.scopes_for(bundle.summaries().iter().map(|s| s.resource_type));
        self.inner.auth.plan_scopes(&plan.scopes(), &needed).await
    }

    /// A create per resource, as `plan` says: the DocumentReference first (the note is what
    /// matters most when the EHR fails part-way), then the Composition, Conditions and
    /// MedicationRequests, [`CONCURRENT_CREATES`] at a time (nothing among them refers to
    /// another), then the Provenance naming the ids the server gave. The parts the plan skips
    /// are listed in the result's `skipped`, counted and said with a WARN once per plan.
    async fn write_each(
        &self,
        bundle: &TransactionBundle,
        plan: &WritePlan,
        on_conflict: crate::OnConflict,
        deadline: Option<Instant>,
    ) -> Result<TransactionResult, FhirError> {
        use futures_util::StreamExt;

        let planned: Vec<(usize, &'static str, CreateMode)> = bundle
            .summaries()
            .iter()
            .enumerate()
            .map(|(index, s)| (index, s.resource_type, plan.mode(s.resource_type)))
            .filter(|(_, _, mode)| *mode != CreateMode::Skip)
            .collect();
        let skipped = self.skipped(bundle, plan);
        let mut entries = Vec::with_capacity(planned.len());
        let (first, rest): (Vec<_>, Vec<_>) = planned
            .iter()
            .filter(|(_, kind, _)| *kind != "Provenance")
            .map(|(index, kind, mode)| (*index, *kind == "DocumentReference", *mode))
            .partition(|(_, note, _)| *note);
        let mut note_check = NoteCheck::Open;
        for (at, phase) in [first, rest].into_iter().enumerate() {
            // At most CONCURRENT_CREATES at once, in order. After a failure no new create is
            // started, but those already sent are waited for: the write ends only when nothing
            // of it can still land in the EHR after its outcome was reported.
            let mut queue = phase.into_iter();
            let mut running = futures_util::stream::FuturesOrdered::new();
            let mut failed = None;
            loop {
                while failed.is_none() && running.len() < CONCURRENT_CREATES {
                    let Some((index, _, mode)) = queue.next() else {
                        break;
                    };
                    running.push_back(self.create_entry(bundle, index, mode, deadline));
                }
                match running.next().await {
                    Some(Ok(entry)) => entries.push(entry),
                    Some(Err(err)) => {
                        failed.get_or_insert(err);
                    }
                    None => break,
                }
            }
            if let Some(err) = failed {
                return Err(err);
            }
            // The note is decided on before anything else is written: a conflict (another
            // chart, a changed note) writes nothing more; `Keep` stops here.
            if at == 0
                && let Some(note) = entries.first()
            {
                note_check = self
                    .decide_on_note(bundle, note, on_conflict, deadline)
                    .await?;
                if note_check == NoteCheck::Kept {
                    return Ok(TransactionResult {
                        entries,
                        corrected: Vec::new(),
                        skipped,
                        note: NoteCheck::Kept,
                    });
                }
            }
        }
        if let Some(&(index, kind, mode)) =
            planned.iter().find(|(_, kind, _)| *kind == "Provenance")
            && !entries.is_empty()
        {
            let targets: Vec<&str> = entries
                .iter()
                .filter_map(|e| e.location.as_deref())
                .collect();
            let body = bundle
                .provenance_for(&targets)
                .map_err(FhirError::Mapping)?;
            let summary = &bundle.summaries()[index];
            let (status, location) = self
                .create(
                    kind,
                    body,
                    &summary.if_none_exist,
                    bundle.chart_param(kind).as_deref(),
                    mode,
                    deadline,
                )
                .await?;
            entries.push(EntryResult {
                resource_type: Some(kind),
                status,
                location: Some(location),
                part: Some(index),
            });
        }
        let result = TransactionResult {
            entries,
            corrected: Vec::new(),
            skipped,
            note: note_check,
        };
        tracing::debug!(
            created = result.created(),
            matched = result.matched(),
            "fhir resources written one by one"
        );
        Ok(result)
    }

    /// The parts of `bundle` that `plan` leaves out, by type; counted in
    /// `suki_fhir_resources_skipped_total` and said with a WARN when the plan is new.
    fn skipped(&self, bundle: &TransactionBundle, plan: &WritePlan) -> Vec<Skipped> {
        let reason = if plan.strategy == WriteStrategy::DocumentReferenceOnly {
            SkipReason::DocumentOnly
        } else {
            SkipReason::NotSupported
        };
        let mut skipped: Vec<Skipped> = Vec::new();
        for summary in bundle.summaries() {
            let kind = summary.resource_type;
            if plan.mode(kind) != CreateMode::Skip {
                continue;
            }
            match skipped.iter_mut().find(|s| s.resource_type == kind) {
                Some(part) => part.count += 1,
                None => skipped.push(Skipped {
                    resource_type: kind,
                    count: 1,
                    reason,
                }),
            }
        }
        for part in &skipped {
            crate::metrics::skipped(part.resource_type, part.reason.as_str(), part.count);
        }
        if !skipped.is_empty() {
            let mut warned = self
                .inner
                .warned_plan
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if *warned != plan.creates {
                warned.clone_from(&plan.creates);
                let parts: Vec<String> = skipped.iter().map(ToString::to_string).collect();
                tracing::warn!(
                    skipped = %parts.join("; "),
                    strategy = %plan.strategy,
                    "suki fhir: parts of each session are not written to this EHR (said once per plan)"
                );
            }
        }
        skipped
    }

    /// Creates entry `index` of `bundle` as `mode` says.
    async fn create_entry(
        &self,
        bundle: &TransactionBundle,
        index: usize,
        mode: CreateMode,
        deadline: Option<Instant>,
    ) -> Result<EntryResult, FhirError> {
        let summary = &bundle.summaries()[index];
        let kind = summary.resource_type;
        let (status, location) = self
            .create(
                kind,
                bundle.resource(index).map_err(FhirError::Mapping)?,
                &summary.if_none_exist,
                bundle.chart_param(kind).as_deref(),
                mode,
                deadline,
            )
            .await
            .inspect_err(|err| {
                // The part the plan meant to write and could not: named, with the code the row
                // keeps (retried when transient, else a dead letter).
                tracing::warn!(
                    part = kind,
                    error = %err.code(),
                    retryable = err.is_retryable(),
                    "suki fhir: a planned part of the session could not be written"
                );
            })?;
        Ok(EntryResult {
            resource_type: Some(kind),
            status,
            location: Some(location),
            part: Some(index),
        })
    }

    /// Creates one resource unless its identifier (`query`) exists: `(201 or 200, Type/id)`.
    /// A search (before a plain create, or after a match that did not say where) is scoped to
    /// the chart (`chart`: `patient=…`), as vendor servers require.
    pub(crate) async fn create(
        &self,
        kind: &'static str,
        body: bytes::Bytes,
        query: &str,
        chart: Option<&str>,
        mode: CreateMode,
        deadline: Option<Instant>,
    ) -> Result<(u16, String), FhirError> {
        let search = match chart {
            Some(chart) => std::borrow::Cow::Owned(format!("{chart}&{query}")),
            None => std::borrow::Cow::Borrowed(query),
        };
        if mode == CreateMode::SearchFirst {
            match self.search(kind, &search, deadline).await?.as_slice() {
                [] => {}
                [id] => return Ok((200, format!("{kind}/{id}"))),
                _ => {
                    return Err(FhirError::Server {
                        status: 412,
                        code: "duplicate".into(),
                        retry_after: None,
                    });
                }
            }
        }
        let conditional = mode == CreateMode::Conditional;
        let answer = self
            .call(
                &FhirRequest {
                    method: Method::POST,
                    url: self.url(kind, None),
                    body: Some(body),
                    if_none_exist: conditional.then_some(query),
                    public: false,
                    if_match: None,
                    // A plain create is not sent twice: the worker's retry searches again.
                    retry: conditional,
                },
                deadline,
            )
            .await?;
        let status = if answer.status == 201 { 201 } else { 200 };
        if let Some(location) = created_at(&answer, kind) {
            return Ok((status, location));
        }
        // A server that matched without saying where (no Location, no resource): ask it.
        match self.search(kind, &search, deadline).await?.as_slice() {
            [id] => Ok((status, format!("{kind}/{id}"))),
            _ => Err(FhirError::Answer),
        }
    }
}

impl FhirClient {
    /// `GET [base]/<path>?<query>` (a read or a search), as JSON.
    pub(crate) async fn get_json(
        &self,
        path: &str,
        query: Option<&str>,
        deadline: Option<Instant>,
    ) -> Result<Value, FhirError> {
        let answer = self
            .call(
                &FhirRequest {
                    method: Method::GET,
                    url: self.url(path, query),
                    body: None,
                    if_none_exist: None,
                    public: false,
                    if_match: None,
                    retry: true,
                },
                deadline,
            )
            .await?;
        serde_json::from_slice(&answer.body).map_err(|_| FhirError::Answer)
    }

    /// The ids of the `kind` resources that `query` finds.
    async fn search(
        &self,
        kind: &str,
        query: &str,
        deadline: Option<Instant>,
    ) -> Result<Vec<String>, FhirError> {
        search_ids(&self.get_json(kind, Some(query), deadline).await?, kind)
    }
}

/// The ids of a searchset Bundle's `kind` entries (`Err` when it is not a Bundle).
fn search_ids(bundle: &Value, kind: &str) -> Result<Vec<String>, FhirError> {
    Ok(search_matches(bundle, kind)?
        .map(|(id, _)| id.to_owned())
        .collect())
}

/// A searchset Bundle's matches of `kind`: each one's id (a valid FHIR id) and resource;
/// `Err` when it is not a Bundle.
pub(crate) fn search_matches<'a>(
    bundle: &'a Value,
    kind: &'a str,
) -> Result<impl Iterator<Item = (&'a str, &'a Value)>, FhirError> {
    if bundle["resourceType"] != "Bundle" {
        return Err(FhirError::Answer);
    }
    Ok(bundle["entry"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|e| e["search"]["mode"].as_str().is_none_or(|m| m == "match"))
        .map(|e| &e["resource"])
        .filter(move |r| r["resourceType"] == kind)
        .filter_map(|r| Some((r["id"].as_str().filter(|id| is_id(id))?, r))))
}

/// Whether `err` says the plan no longer fits the server: a type's create refused as not
/// allowed or not supported (403, 404, 405, 501, `not-supported`), or, for `auto`, the
/// transaction refused as a whole (400, 405, 413, 422, 501; not a conflict).
fn stale_plan(plan: &WritePlan, err: &FhirError) -> bool {
    if plan.strategy == WriteStrategy::Transaction {
        return false;
    }
    match err {
        FhirError::Server { code, .. } if code == "not-supported" => true,
        FhirError::Server { status, code, .. } if plan.transaction => {
            plan.strategy == WriteStrategy::Auto
                && matches!(status, 400 | 405 | 413 | 422 | 501)
                && code != "conflict"
        }
        FhirError::Server { status, .. } => matches!(status, 403 | 404 | 405 | 501),
        FhirError::Auth { status: 403 } => !plan.transaction,
        _ => false,
    }
}

/// `kind/id` of a created (or matched) resource: from the `Location` header
/// (`[base]/Type/id/_history/v`), else from the returned resource's `id`.
fn created_at(answer: &FhirResponse, kind: &str) -> Option<String> {
    let of_kind = |reference: String| {
        reference
            .split_once('/')
            .is_some_and(|(t, _)| t == kind)
            .then_some(reference)
    };
    if let Some(found) = answer
        .location
        .as_deref()
        .and_then(resource_ref)
        .and_then(of_kind)
    {
        return Some(found);
    }
    let resource: Value = serde_json::from_slice(&answer.body).ok()?;
    let id = resource["id"].as_str().filter(|id| is_id(id))?;
    (resource["resourceType"] == kind).then(|| format!("{kind}/{id}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statement(transaction: bool, conditional: bool, types: &[&str]) -> Vec<u8> {
        let resources: Vec<Value> = types
            .iter()
            .map(|t| {
                serde_json::json!({"type": t, "interaction": [{"code": "create"}, {"code": "read"}],
                    "conditionalCreate": conditional})
            })
            .collect();
        let interaction = if transaction {
            serde_json::json!([{"code": "transaction"}])
        } else {
            serde_json::json!([{"code": "batch"}])
        };
        serde_json::to_vec(&serde_json::json!({"resourceType": "CapabilityStatement",
            "fhirVersion": "4.0.1",
            "rest": [{"mode": "server", "interaction": interaction, "resource": resources}]}))
        .expect("json")
    }

    #[test]
    fn auto_follows_the_capability_statement() {
        let caps = Capabilities::parse(&statement(true, true, &TYPES)).expect("parses");
        assert!(caps.transaction);
        assert_eq!(caps.fhir_version.as_deref(), Some("4.0.1"));
        assert!(
            WritePlan::new(WriteStrategy::Auto, Some(&caps))
                .expect("plan")
                .transaction
        );

        let caps = Capabilities::parse(&statement(false, true, &TYPES)).expect("parses");
        let plan = WritePlan::new(WriteStrategy::Auto, Some(&caps)).expect("plan");
        assert!(!plan.transaction);
        assert!(
            TYPES
                .iter()
                .all(|t| plan.mode(t) == CreateMode::Conditional)
        );

        let caps =
            Capabilities::parse(&statement(false, false, &["DocumentReference"])).expect("parses");
        let plan = WritePlan::new(WriteStrategy::Auto, Some(&caps)).expect("plan");
        assert_eq!(plan.mode("DocumentReference"), CreateMode::SearchFirst);
        assert_eq!(plan.mode("Composition"), CreateMode::Skip);
        assert_eq!(plan.mode("Provenance"), CreateMode::Skip);
        let text = plan.to_string();
        assert!(text.contains("no create declared"), "{text}");

        let caps = Capabilities::parse(&statement(false, true, &["Patient"])).expect("parses");
        let err = WritePlan::new(WriteStrategy::Auto, Some(&caps)).expect_err("no DocRef");
        assert_eq!(err.code(), "fhir_capabilities");
        assert!(WritePlan::new(WriteStrategy::Auto, None).is_err());
    }

    #[test]
    fn explicit_strategies_and_bad_statements() {
        let plan = WritePlan::new(WriteStrategy::DocumentReferenceOnly, None).expect("plan");
        assert_eq!(
            plan.creates,
            vec![("DocumentReference", CreateMode::Conditional)]
        );
        let caps = Capabilities::parse(&statement(true, false, &TYPES)).expect("parses");
        let plan = WritePlan::new(WriteStrategy::PerResource, Some(&caps)).expect("plan");
        assert!(!plan.transaction);
        assert_eq!(plan.mode("Condition"), CreateMode::SearchFirst);
        for bad in [
            &b"[]"[..],
            b"{\"resourceType\":\"Patient\"}",
            b"not json",
            b"{\"resourceType\":\"CapabilityStatement\"}",
        ] {
            assert!(Capabilities::parse(bad).is_err());
        }
        for name in ["auto", "transaction", "per-resource", "document-only"] {
            let strategy: WriteStrategy = name.parse().expect("parses");
            assert_eq!(strategy.as_str(), name);
        }
        assert!("both".parse::<WriteStrategy>().is_err());
    }

    #[test]
    fn locations_and_searches_are_read_defensively() {
        let answer = |location: Option<&str>, body: &str| FhirResponse {
            status: 201,
            location: location.map(str::to_owned),
            body: bytes::Bytes::from(body.to_owned()),
        };
        let kind = "DocumentReference";
        assert_eq!(
            created_at(
                &answer(
                    Some("https://ehr.example/fhir/DocumentReference/12/_history/1"),
                    ""
                ),
                kind
            )
            .as_deref(),
            Some("DocumentReference/12")
        );
        assert_eq!(
            created_at(&answer(Some("DocumentReference/ab-1"), ""), kind).as_deref(),
            Some("DocumentReference/ab-1")
        );
        assert_eq!(
            created_at(
                &answer(None, r#"{"resourceType":"DocumentReference","id":"9"}"#),
                kind
            )
            .as_deref(),
            Some("DocumentReference/9")
        );
        assert_eq!(created_at(&answer(Some("Patient/1"), "{}"), kind), None);
        assert_eq!(
            created_at(&answer(Some("DocumentReference/a b"), "{}"), kind),
            None
        );
        assert_eq!(
            created_at(
                &answer(None, r#"{"resourceType":"Patient","id":"9"}"#),
                kind
            ),
            None
        );
        let found = br#"{"resourceType":"Bundle","type":"searchset","entry":[
            {"resource":{"resourceType":"DocumentReference","id":"1"},"search":{"mode":"match"}},
            {"resource":{"resourceType":"OperationOutcome","id":"x"},"search":{"mode":"outcome"}},
            {"resource":{"resourceType":"DocumentReference","id":"../../x"}}]}"#;
        let found: Value = serde_json::from_slice(found).expect("json");
        assert_eq!(
            search_ids(&found, kind).expect("bundle"),
            vec!["1".to_owned()]
        );
        assert!(search_ids(&serde_json::json!({}), kind).is_err());
    }
}
