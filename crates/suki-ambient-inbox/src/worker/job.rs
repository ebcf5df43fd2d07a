//! One claimed row's processing: the handler (plain or transactional) under a heartbeat, then
//! the row completed, retried, snoozed or dead-lettered, and what a failed attempt fetched kept.

use super::*;

/// One claimed row's processing.
pub(super) struct Job {
    pub(super) inbox: Inbox,
    pub(super) runner: Runner,
    pub(super) options: Options,
    pub(super) breakers: Arc<crate::flow::Breakers>,
}

/// What an attempt tells the concurrency limiter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Sample {
    /// The handler ran for this long, and no destination failed.
    Ran(Duration),
    /// A destination failed while it was thought up (an overload, not an outage its breaker
    /// waits out): fewer at once.
    Overloaded,
    /// Ran for this long, after waiting for a destination that is back: the backlog an
    /// outage left is worked off (the limit grows fast again).
    Resumed(Duration),
    /// Nothing to learn: the row waited for a breaker, or its body did not open.
    Nothing,
}

/// How an attempt ended.
pub(crate) enum Outcome {
    Done,
    Failed(Failure),
    /// The row was completed in the handler's transaction (transactional runner).
    Committed,
    /// The transactional completion found another worker's token: nothing was written.
    Fenced,
}

impl Job {
    pub(super) async fn run(self, claim: Claim) -> Sample {
        let lease = claim.lease();
        let record = &claim.record;
        let store = self.inbox.store_arc();
        let mut passage = crate::flow::Passage {
            breakers: Some(Arc::clone(&self.breakers)),
            ..Default::default()
        };
        // A row that waits for a destination is not attempted while the destination is down
        // (unless it is the one probe): back to waiting, no attempt spent, nothing sent.
        if let Some(destination) = &record.waiting_for {
            match self.breakers.gate(destination).await {
                crate::flow::Gate::Wait { until, reason } => {
                    self.wait(&store, record, lease, destination, until, &reason)
                        .await;
                    return Sample::Nothing;
                }
                crate::flow::Gate::Pass | crate::flow::Gate::Probe => {
                    passage.granted = Some(destination.clone());
                }
            }
        }
        let meta = InboxMeta {
            id: record.id,
            dedup_key: record.dedup_key.clone(),
            source: record.source,
            attempt: record.attempts,
            generated_at: record.generated_at,
            received_at: record.received_at,
            fetched: crate::handler::FetchLog::default(),
            outcome: crate::handler::FetchLog::default(),
            kept: crate::handler::FetchedLinks::default(),
            passage: passage.clone(),
        };
        let noted = meta.clone();
        let kept = meta.kept.clone();
        // Only a row that failed before can have kept anything (a first attempt reads nothing).
        if record.attempts > 1 || record.last_error.is_some() {
            self.load_kept(&store, record, &kept).await;
        }
        let mut ran = None;
        // A sealed body is opened with its key; one whose key is missing fails the attempt
        // (retried, then dead: visible, never dropped) until the key is given back.
        let body = self.inbox.open_body(record, claim.body.clone());
        let outcome = if record.round_attempts() > self.options.max_attempts {
            // Claimed again after the last attempt crashed the worker: stop here.
            Outcome::Failed(Failure::permanent("attempts_exhausted"))
        } else {
            match body.map(|body| WebhookEvent::from_slice(&body)) {
                Err(code) => {
                    tracing::warn!(id = record.id, error = %code, "suki inbox cannot open a stored body: give the worker's inbox the key it was sealed with");
                    Outcome::Failed(Failure::retryable(code))
                }
                Ok(Err(_)) => Outcome::Failed(Failure::permanent("payload_invalid")),
                Ok(Ok(event)) => {
                    // Stopped when the attempt ends, and also when this task is aborted.
                    let _heartbeat = AbortOnDrop(tokio::spawn(heartbeat(
                        Arc::clone(&store),
                        self.inbox.clone(),
                        lease,
                        self.options.heartbeat,
                        self.options.lease,
                    )));
                    let stopwatch = suki_ambient_core::metrics::Stopwatch::start();
                    let started = std::time::Instant::now();
                    let outcome = self.attempt(event, meta.clone(), lease).await;
                    stopwatch.record_handler(record.kind.as_str());
                    ran = Some(started.elapsed());
                    outcome
                }
            }
        };
        let now = self.inbox.now();
        let kind = record.kind.as_str();
        let detail = noted.take_detail();
        let detail = detail.as_deref();
        if matches!(outcome, Outcome::Failed(_)) {
            self.keep(&store, record, lease, &kept).await;
        }
        // The destinations the attempt reached answered, but the one it waits for.
        let waiting_for = match &outcome {
            Outcome::Failed(failure) => failure.waiting_for.as_deref(),
            _ => None,
        };
        let reached = passage.reached();
        for destination in &reached {
            if Some(destination.as_str()) != waiting_for {
                self.breakers.success(destination).await;
            }
        }
        // Let through before the handler ran, and not asked for by it: the handler got
        // through (the destination answered it), unless it stopped waiting for another one.
        if let Some(granted) = &passage.granted
            && !reached.contains(granted)
            && Some(granted.as_str()) != waiting_for
        {
            if waiting_for.is_some() {
                self.breakers.release_probe(granted).await;
            } else {
                self.breakers.success(granted).await;
            }
        }
        let sample = match (&outcome, ran) {
            (Outcome::Failed(f), _) if f.waiting_for.is_some() && f.gated_until.is_none() => {
                Sample::Overloaded
            }
            (Outcome::Failed(f), _) if f.gated_until.is_some() => Sample::Nothing,
            (_, Some(ran)) if passage.granted.is_some() => Sample::Resumed(ran),
            (_, Some(ran)) => Sample::Ran(ran),
            (_, None) => Sample::Nothing,
        };
        let waited_for = waiting_for.map(str::to_owned);
        let written = match outcome {
            Outcome::Failed(failure) if failure.waiting_for.is_some() => {
                let destination = failure.waiting_for.as_deref().unwrap_or_default();
                let until = match failure.gated_until {
                    Some(until) => until,
                    None => {
                        self.breakers
                            .failure(destination, &failure.code, failure.retry_after)
                            .await
                    }
                };
                // Never further off than the longest back-off; and due now if the
                // destination came back while this attempt was deciding to wait (its return
                // made the waiting rows due before this one was among them).
                let until = if failure.gated_until.is_some() && !self.breakers.is_open(destination)
                {
                    now
                } else {
                    until.min(now.saturating_add(self.options.max_delay))
                };
                tracing::info!(id = record.id, kind, destination, error = %failure.code, retry_in_ms = until.0.saturating_sub(now.0), "suki inbox row waits for a destination; no attempt spent");
                crate::metrics::attempt("waiting");
                store
                    .fail(crate::records::FailedAttempt {
                        lease,
                        now,
                        next: Next::Wait(until),
                        error: &failure.code,
                        detail,
                        waiting_for: Some(destination),
                    })
                    .await
            }
            Outcome::Committed => {
                crate::metrics::attempt("done");
                Ok(true)
            }
            Outcome::Fenced => Ok(false),
            Outcome::Done => {
                crate::metrics::attempt("done");
                store.complete(lease, now, detail).await
            }
            Outcome::Failed(failure)
                if failure.snooze.is_some() && record.snoozes < self.options.max_snoozes =>
            {
                let after = failure
                    .snooze
                    .unwrap_or_default()
                    .min(self.options.longest_snooze);
                tracing::info!(id = record.id, kind, snoozes = record.snoozes + 1, reason = %failure.code, retry_in_ms = suki_ambient_core::time::millis(after), "suki inbox handler snoozed a row");
                crate::metrics::attempt("snoozed");
                store
                    .fail(crate::records::FailedAttempt {
                        lease,
                        now,
                        next: Next::Snooze(UnixMillis(
                            now.0.saturating_add(suki_ambient_core::time::millis(after)),
                        )),
                        error: &failure.code,
                        detail,
                        waiting_for: None,
                    })
                    .await
            }
            Outcome::Failed(failure) => {
                if failure.snooze.is_some() {
                    tracing::warn!(id = record.id, kind, snoozes = record.snoozes, reason = %failure.code, "suki inbox row snoozed too often: this snooze counts as a failed attempt");
                }
                let next = if failure.permanent
                    || record.round_attempts() >= self.options.max_attempts
                {
                    tracing::warn!(id = record.id, kind, attempts = record.attempts, error = %failure.code, "suki inbox row is dead");
                    crate::metrics::attempt("dead");
                    Next::Dead
                } else {
                    let delay = backoff(
                        record.round_attempts(),
                        self.options.base_delay,
                        self.options.max_delay,
                        failure.retry_after,
                    );
                    tracing::info!(id = record.id, kind, attempt = record.attempts, error = %failure.code, retry_in_ms = suki_ambient_core::time::millis(delay), "suki inbox attempt failed; retrying later");
                    crate::metrics::attempt("retry");
                    Next::RetryAt(now.saturating_add(delay))
                };
                store
                    .fail(crate::records::FailedAttempt {
                        lease,
                        now,
                        next,
                        error: &failure.code,
                        detail,
                        waiting_for: None,
                    })
                    .await
            }
        };
        self.inbox.wrote(&written);
        // An outage is the breaker's to wait out, not a reason for fewer at once.
        let sample = match (&sample, &waited_for) {
            (Sample::Overloaded, Some(destination)) if self.breakers.is_open(destination) => {
                Sample::Nothing
            }
            _ => sample,
        };
        match written {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                id = record.id,
                kind,
                "suki inbox worker lost its lease; another worker owns the row, its result was not recorded"
            ),
            Err(err) => {
                tracing::error!(id = record.id, kind, error = %err, "suki inbox could not record an attempt; the row is retried when its lease expires")
            }
        }
        sample
    }

    /// Puts a row back to wait for `destination` without running it: pending until `until`,
    /// no attempt spent, its error kept.
    async fn wait(
        &self,
        store: &Arc<dyn crate::seam::Store>,
        record: &crate::DeliveryRecord,
        lease: Lease,
        destination: &str,
        until: UnixMillis,
        reason: &str,
    ) {
        let now = self.inbox.now();
        // Due now if the destination came back meanwhile (see `run`).
        let until = if self.breakers.is_open(destination) {
            until.min(now.saturating_add(self.options.max_delay))
        } else {
            now
        };
        let detail = format!("not attempted: {destination} is down ({reason})");
        let error = record.last_error.as_deref().unwrap_or(reason);
        let written = store
            .fail(crate::records::FailedAttempt {
                lease,
                now,
                next: Next::Wait(until),
                error,
                detail: Some(&detail),
                waiting_for: Some(destination),
            })
            .await;
        self.inbox.wrote(&written);
        if let Err(err) = written {
            tracing::warn!(id = record.id, error = %err, "suki inbox could not put a row back to wait; it comes back when its lease expires");
        }
    }

    /// Gives the attempt what an earlier one fetched and kept; anything amiss (a store error,
    /// a key not held) only means the links are fetched again.
    async fn load_kept(
        &self,
        store: &Arc<dyn crate::seam::Store>,
        record: &crate::DeliveryRecord,
        kept: &crate::handler::FetchedLinks,
    ) {
        match store.fetched(record.id).await {
            Ok(Some(blob)) => match self
                .inbox
                .open_fetched(&record.dedup_key, &blob)
                .and_then(|plain| crate::handler::FetchedLinks::decode(&plain))
            {
                Some(links) => kept.set_earlier(links),
                None => tracing::debug!(
                    id = record.id,
                    "suki inbox: the links kept by an earlier attempt do not open; fetching them again"
                ),
            },
            Ok(None) => {}
            Err(err) => {
                tracing::warn!(id = record.id, error = %err, "suki inbox could not read the links an earlier attempt kept; fetching them again");
            }
        }
    }

    /// Keeps, sealed like the body, what a failed attempt fetched, for the next attempt.
    async fn keep(
        &self,
        store: &Arc<dyn crate::seam::Store>,
        record: &crate::DeliveryRecord,
        lease: Lease,
        kept: &crate::handler::FetchedLinks,
    ) {
        /// Larger answers are fetched again rather than kept.
        const MOST: usize = 8 * 1024 * 1024;
        let Some(plain) = kept.take_now().filter(|p| p.len() <= MOST) else {
            return;
        };
        // With keys but no current one, nothing is kept in clear: fetched again next time.
        let Some(blob) = self.inbox.seal_fetched(&record.dedup_key, &plain) else {
            return;
        };
        if let Err(err) = store.keep_fetched(lease, &blob).await {
            tracing::warn!(id = record.id, error = %err, "suki inbox could not keep what the attempt fetched; the next attempt fetches it again");
        }
    }

    async fn attempt(&self, event: WebhookEvent, meta: InboxMeta, lease: Lease) -> Outcome {
        if let Some(limit) = &self.options.rate_limit {
            limit.wait().await;
        }
        match &self.runner {
            Runner::Plain(handler) => {
                // A panicking handler fails its attempt (retried like any error) instead of
                // taking the row's lease down with its task.
                let run = std::panic::AssertUnwindSafe(handler.handle(event, meta)).catch_unwind();
                match run.await {
                    Ok(Ok(())) => Outcome::Done,
                    Ok(Err(err)) => Outcome::Failed(Failure::classify(&err)),
                    Err(_) => Outcome::Failed(Failure::retryable("handler_panicked")),
                }
            }
            Runner::Transactional(handler) => match self.inbox.backend().transactions() {
                Some(store) => {
                    transactional_attempt(&**handler, store, event, meta, lease, self.inbox.now())
                        .await
                }
                // Checked when the worker was built; a store cannot lose its transactions.
                None => Outcome::Failed(Failure::retryable("no_transactions")),
            },
        }
    }
}

/// One attempt of the transactional runner: begin, the handler's writes, the fenced
/// completion, commit.
async fn transactional_attempt(
    handler: &dyn crate::transaction::ErasedTransactional,
    store: &dyn crate::seam::Transactions,
    event: WebhookEvent,
    meta: crate::InboxMeta,
    lease: crate::records::Lease,
    now: suki_ambient_core::UnixMillis,
) -> Outcome {
    use futures_util::FutureExt as _;
    let store_failed = |err: StoreError| {
        tracing::warn!(error = %err, "suki inbox transaction failed");
        Outcome::Failed(Failure::retryable("store_error"))
    };
    let mut tx = match store.begin().await {
        Ok(tx) => tx,
        Err(err) => return store_failed(err),
    };
    let noted = meta.clone();
    let run =
        std::panic::AssertUnwindSafe(handler.handle(event, meta, tx.connection())).catch_unwind();
    let failed = match run.await {
        Ok(Some(Ok(()))) => None,
        Ok(Some(Err(err))) => Some(Failure::classify(&err)),
        // Checked when the worker was built; a store cannot change its connection type.
        Ok(None) => Some(Failure::retryable("transaction_connection")),
        Err(_) => Some(Failure::retryable("handler_panicked")),
    };
    if let Some(failure) = failed {
        let _ = tx.rollback().await;
        return Outcome::Failed(failure);
    }
    // Last, so the row is locked only from here to the commit; a claim that took the row over
    // changed the token, and this matches nothing.
    let detail = noted.take_detail();
    match tx.complete(lease, now, detail.as_deref()).await {
        Ok(true) => match tx.commit().await {
            Ok(()) => Outcome::Committed,
            Err(err) => store_failed(err),
        },
        Ok(false) => {
            let _ = tx.rollback().await;
            Outcome::Fenced
        }
        Err(err) => {
            let _ = tx.rollback().await;
            store_failed(err)
        }
    }
}
