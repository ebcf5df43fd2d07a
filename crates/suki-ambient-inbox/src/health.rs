//! `Inbox::readiness`: whether this process can store deliveries (for a load balancer's
//! readiness probe), and `Inbox::health`: whether notes are flowing (for alerting).

use std::time::Duration;

use serde::Serialize;

use crate::{Inbox, StoreError};

/// Limits past which [`Inbox::health`] reports a problem.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HealthThresholds {
    /// The oldest unfinished (pending or running) row may be at most this old (default
    /// 15 min): past it the worker is down or falling behind.
    pub max_oldest_unfinished: Duration,
    /// A worker of this process must have gone round its loop within this (default 60 s;
    /// not checked when no worker runs in this process).
    pub max_worker_heartbeat: Duration,
    /// At most this many dead rows (default: not checked; a dead letter needs a person, not a
    /// restart, so it should page rather than fail a readiness probe).
    pub max_dead: Option<u64>,
    /// How often at most a health check writes to the store to prove it can commit (default
    /// 5 s; checks in between use the latest result, and every write the inbox makes counts
    /// too), so that a flood of probes costs the store one small write per interval.
    pub write_probe_every: Duration,
    /// How long the store may take to answer a check before it counts as down (default 1 s):
    /// the write probe (then `store_unwritable`: a database locked by another process makes it
    /// wait) and the read of the counts (then `store_unreachable`: a server that is down makes
    /// the pool wait for a connection) run at once, each within it, so that a check answers
    /// within about this long whatever the store does.
    pub write_probe_timeout: Duration,
    /// How old the counts a check reports may be (default 1 s): checks within it share one read
    /// of the store, so that a flood of probes costs the store at most one read a second.
    pub counts_max_age: Duration,
    /// A write of the inbox (an ingest, a claim, a completion) that failed keeps health red
    /// for this long unless one succeeds after it (default 60 s; a failed ingest, only an ingest
    /// that succeeds after it): the probe is a tiny write that can still succeed while a
    /// delivery cannot be stored (a full disk), and so can a claim.
    pub write_failure_window: Duration,
}

impl Default for HealthThresholds {
    fn default() -> Self {
        Self {
            max_oldest_unfinished: Duration::from_secs(15 * 60),
            max_worker_heartbeat: Duration::from_secs(60),
            max_dead: None,
            write_probe_every: Duration::from_secs(5),
            write_probe_timeout: Duration::from_secs(1),
            write_failure_window: Duration::from_secs(60),
            counts_max_age: Duration::from_secs(1),
        }
    }
}

/// Whether the inbox is healthy ([`Health::status`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// No problem found.
    Ok,
    /// No problem found, and processing is paused by an operator (the whole inbox or some
    /// kinds): deliveries are stored, and the unfinished rows' age is not a problem meanwhile.
    Paused,
    /// At least one problem.
    Unhealthy,
}

/// A problem [`Inbox::health`] found; serialized as its snake_case name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Problem {
    /// The store cannot commit (a full disk, a locked or read-only database, a deleted
    /// database file, a server that cannot commit): deliveries are being refused.
    StoreUnwritable,
    /// The store did not answer.
    StoreUnreachable,
    /// The oldest unfinished row waits longer than
    /// [`max_oldest_unfinished`](HealthThresholds::max_oldest_unfinished).
    OldestUnfinishedTooOld,
    /// A worker of this process has not gone round its loop within
    /// [`max_worker_heartbeat`](HealthThresholds::max_worker_heartbeat).
    WorkerStalled,
    /// More dead rows than [`max_dead`](HealthThresholds::max_dead).
    TooManyDead,
    /// This process is shutting down ([`Inbox::shutting_down`]).
    ShuttingDown,
    /// Stored bodies are sealed under a key this process does not hold: their rows will fail
    /// (`body_key_missing_<id>`) until the key is given back ([`Inbox::with_keys`]). Read at
    /// most every 10 minutes.
    BodyKeysMissing,
    /// A destination the worker calls (Suki's API, an EHR) is down (its breaker is open):
    /// notes wait for it without spending attempts ([`Health::destinations`] says which, since
    /// when, and how many). Never a readiness failure: webhooks keep being stored.
    DestinationDown,
}

impl Problem {
    /// What it means, in a few words for the person on call (the console's verdict).
    pub fn describe(self) -> &'static str {
        match self {
            Self::StoreUnwritable => "the store cannot commit writes",
            Self::StoreUnreachable => "the store does not answer",
            Self::OldestUnfinishedTooOld => "the oldest unfinished row waits too long",
            Self::WorkerStalled => "this process's worker has stalled",
            Self::TooManyDead => "too many dead letters",
            Self::ShuttingDown => "this process is shutting down",
            Self::BodyKeysMissing => {
                "stored bodies are sealed under a key this process does not hold"
            }
            Self::DestinationDown => "a destination the notes need is down; they wait for it",
        }
    }

    /// Its snake_case name, as serialized (`store_unwritable`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::StoreUnwritable => "store_unwritable",
            Self::StoreUnreachable => "store_unreachable",
            Self::OldestUnfinishedTooOld => "oldest_unfinished_too_old",
            Self::WorkerStalled => "worker_stalled",
            Self::TooManyDead => "too_many_dead",
            Self::ShuttingDown => "shutting_down",
            Self::BodyKeysMissing => "body_keys_missing",
            Self::DestinationDown => "destination_down",
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What [`Inbox::health`] found. Serializes to the JSON the health route answers:
/// `{"status":"ok","store_reachable":true,"store_writable":true,"oldest_unfinished_seconds":null,
/// "dead":0,"worker_heartbeat_seconds":0.4,"problems":[],"paused":[]}`. `status` is `paused` (200)
/// when an operator paused processing and nothing is wrong.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Health {
    /// `ok`, or `unhealthy` when there is a problem.
    pub status: HealthStatus,
    /// Whether the store answered.
    pub store_reachable: bool,
    /// Whether the store can commit: the write probe succeeded, and no write of the inbox (an
    /// ingest, a claim, a completion) failed within the last
    /// [`write_failure_window`](HealthThresholds::write_failure_window) without one succeeding
    /// after it.
    pub store_writable: bool,
    /// Seconds since the oldest unfinished (pending or running) row was received (`null`:
    /// none, or the store did not answer).
    pub oldest_unfinished_seconds: Option<f64>,
    /// Dead rows (`null` when the store did not answer).
    pub dead: Option<u64>,
    /// Seconds since a worker of this process went round its loop (`null`: none runs here).
    pub worker_heartbeat_seconds: Option<f64>,
    /// What is wrong, if anything.
    pub problems: Vec<Problem>,
    /// What an operator paused: `"all"` or event kinds (empty when nothing is).
    pub paused: Vec<String>,
    /// The destinations the workers found down, and those back since (each with the rows
    /// waiting for it), and a line for the person on call each.
    pub destinations: Vec<DestinationHealth>,
    /// Whether every stored body opens with a key this process holds.
    pub key_check: crate::records::KeyCheck,
}

/// A destination as [`Health`] shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct DestinationHealth {
    /// What the store records of it.
    #[serde(flatten)]
    pub record: crate::records::DestinationRecord,
    /// `EHR fhir.example unreachable since 10:02 UTC (fhir_503_transient, 4m 0s), 143 notes
    /// waiting, next probe in 20s`.
    pub summary: String,
}

impl Health {
    /// No problem found.
    pub fn is_healthy(&self) -> bool {
        self.problems.is_empty()
    }
}

/// What [`Inbox::readiness`] found. Serializes to the JSON the readiness route answers:
/// `{"ready":true,"problems":[]}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Readiness {
    /// Whether this process can store deliveries.
    pub ready: bool,
    /// Why not: `store_unwritable` or `shutting_down` (empty when ready).
    pub problems: Vec<Problem>,
}

impl Inbox {
    /// Whether this process can store deliveries now: its store commits (the latest write and
    /// the write probe, as in [`health`](Self::health)) and it is not
    /// [shutting down](Self::shutting_down). Nothing else: a backlog, a stalled worker or dead
    /// letters do not make a receiver unready, because Suki sends each webhook once — a
    /// receiver taken out of the load balancer while it could still store would lose notes.
    /// Wire it to the readiness probe; [`health`](Self::health) is for alerting.
    pub async fn readiness(&self, thresholds: &HealthThresholds) -> Readiness {
        self.probe_writes(thresholds).await;
        let mut problems = Vec::new();
        if !self.writes().writable(thresholds.write_failure_window) {
            problems.push(Problem::StoreUnwritable);
        }
        if self.is_draining() {
            problems.push(Problem::ShuttingDown);
        }
        Readiness {
            ready: problems.is_empty(),
            problems,
        }
    }

    /// Checks that the store can commit (the latest write, and a one-row write probe at most
    /// every [`write_probe_every`](HealthThresholds::write_probe_every)), the counts (O(1)),
    /// the age of the oldest unfinished row (an index read), the dead rows and this process's
    /// worker against `thresholds`. Also refreshes the depth gauges (feature `metrics`).
    ///
    /// It turns red by itself when the store stops committing, and green again with the first
    /// write that succeeds, with no restart.
    pub async fn health(&self, thresholds: &HealthThresholds) -> Health {
        // The probe, the counts and the key check at once, each bounded: a check answers within
        // about `write_probe_timeout` however the store fails.
        let bound = thresholds.write_probe_timeout;
        let (_, recent, key_check, destinations) = tokio::join!(
            self.probe_writes(thresholds),
            async {
                match tokio::time::timeout(bound, self.recent_status(thresholds.counts_max_age))
                    .await
                {
                    Ok(recent) => recent,
                    Err(_) => {
                        tracing::error!(
                            timeout_ms = suki_ambient_core::time::millis(bound),
                            "suki inbox health check: the store did not answer in time"
                        );
                        None
                    }
                }
            },
            self.key_check(),
            async {
                tokio::time::timeout(bound, self.destinations())
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or_default()
            },
        );
        let mut problems = Vec::new();
        let now = self.now();
        let destinations: Vec<DestinationHealth> = destinations
            .into_iter()
            .map(|record| DestinationHealth {
                summary: crate::display::destination(&record, now),
                record,
            })
            .collect();
        if destinations.iter().any(|d| !d.record.up) {
            problems.push(Problem::DestinationDown);
        }
        let writable = self.writes().writable(thresholds.write_failure_window);
        crate::metrics::store_writable(writable);
        if !writable {
            problems.push(Problem::StoreUnwritable);
        }
        let worker = self.worker_heartbeat_age();
        if worker.is_some_and(|age| age > thresholds.max_worker_heartbeat) {
            problems.push(Problem::WorkerStalled);
        }
        if key_check == crate::records::KeyCheck::Missing {
            problems.push(Problem::BodyKeysMissing);
        }
        let mut paused = Vec::new();
        let (reachable, oldest, dead) = match recent {
            Some((status, pauses)) => {
                paused = pauses
                    .iter()
                    .map(|p| p.kind.as_ref().map_or("all", |k| k.as_str()).to_owned())
                    .collect();
                if paused.is_empty()
                    && status
                        .oldest_unfinished_age
                        .is_some_and(|age| age > thresholds.max_oldest_unfinished)
                {
                    problems.push(Problem::OldestUnfinishedTooOld);
                }
                if thresholds
                    .max_dead
                    .is_some_and(|max| status.counts.dead > max)
                {
                    problems.push(Problem::TooManyDead);
                }
                (
                    true,
                    status.oldest_unfinished_age.map(|a| a.as_secs_f64()),
                    Some(status.counts.dead),
                )
            }
            None => {
                problems.insert(0, Problem::StoreUnreachable);
                (false, None, None)
            }
        };
        Health {
            status: if !problems.is_empty() {
                HealthStatus::Unhealthy
            } else if !paused.is_empty() {
                HealthStatus::Paused
            } else {
                HealthStatus::Ok
            },
            paused,
            store_reachable: reachable,
            store_writable: writable,
            oldest_unfinished_seconds: oldest,
            dead,
            worker_heartbeat_seconds: worker.map(|a| a.as_secs_f64()),
            problems,
            destinations,
            key_check,
        }
    }
}

impl Inbox {
    /// The status read at most `max_age` ago (read now when older; a check that finds a read
    /// under way waits for it); `None` when the store did not answer.
    async fn recent_status(
        &self,
        max_age: Duration,
    ) -> Option<(crate::records::InboxStatus, Vec<crate::records::Pause>)> {
        let mut last = self.health_cache().lock().await;
        let fresh = last.as_ref().is_some_and(|(at, _)| at.elapsed() < max_age);
        if !fresh {
            let read = async { Ok::<_, StoreError>((self.status().await?, self.pauses().await?)) };
            let counts = match read.await {
                Ok((status, pauses)) => Some((status.counts, pauses)),
                Err(err) => {
                    tracing::error!(error = %err, "suki inbox health check: the store did not answer");
                    None
                }
            };
            *last = Some((tokio::time::Instant::now(), counts));
        }
        let (counts, pauses) = last.as_ref().and_then(|(_, read)| read.clone())?;
        Some((self.status_of(counts), pauses))
    }

    /// Runs the write probe when the latest is older than `write_probe_every`; a check that
    /// finds one under way waits for it and uses its result.
    async fn probe_writes(&self, thresholds: &HealthThresholds) {
        let due = |last: &Option<tokio::time::Instant>| {
            last.is_none_or(|at| at.elapsed() >= thresholds.write_probe_every)
        };
        let mut last = self.writes().probed.lock().await;
        if !due(&last) {
            return;
        }
        let result = match tokio::time::timeout(
            thresholds.write_probe_timeout,
            self.backend().probe(self.now()),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(StoreError::Timeout(thresholds.write_probe_timeout)),
        };
        if let Err(err) = &result {
            tracing::error!(error = %err, "suki inbox health: the store cannot commit a write");
        }
        self.writes().record_probe(result.is_ok());
        *last = Some(tokio::time::Instant::now());
    }
}

/// An axum router for probes (feature `axum`): `GET /` and `GET /status` answer
/// [`Inbox::health`]'s JSON, 200 when healthy and 503 otherwise (for alerting: a backlog, a
/// stalled worker, dead letters); `GET /ready` answers [`Inbox::readiness`]'s, 503 only when
/// this process cannot store deliveries or is shutting down (for a load balancer's readiness
/// probe). Mount it where your probes look:
/// `Router::new().nest("/healthz", suki_ambient_inbox::health_router(inbox, Default::default()))`
/// serves `/healthz`, `/healthz/status` and `/healthz/ready`.
#[cfg(feature = "axum")]
pub fn health_router(inbox: Inbox, thresholds: HealthThresholds) -> axum::Router {
    use std::sync::{Arc, Mutex, PoisonError};

    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;

    /// The latest answer, served again while it is younger than `counts_max_age`: a flood of
    /// probes costs a lock and a copy per request, not a check.
    type Answer = (tokio::time::Instant, StatusCode, axum::body::Bytes);
    let last: Arc<Mutex<Option<Answer>>> = Arc::default();
    let ready_inbox = inbox.clone();
    let status = axum::routing::get(move || {
        let (inbox, last) = (inbox.clone(), Arc::clone(&last));
        async move {
            let cached = last
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .as_ref()
                .filter(|(at, _, _)| at.elapsed() < thresholds.counts_max_age)
                .map(|(_, status, body)| (*status, body.clone()));
            let (status, body) = match cached {
                Some(answer) => answer,
                None => {
                    let health = inbox.health(&thresholds).await;
                    let status = if health.is_healthy() {
                        StatusCode::OK
                    } else {
                        StatusCode::SERVICE_UNAVAILABLE
                    };
                    let body = axum::body::Bytes::from(
                        serde_json::to_string(&health).unwrap_or_else(|_| "{}".to_owned()),
                    );
                    *last.lock().unwrap_or_else(PoisonError::into_inner) =
                        Some((tokio::time::Instant::now(), status, body.clone()));
                    (status, body)
                }
            };
            (
                status,
                [
                    (header::CONTENT_TYPE, "application/json"),
                    (header::CACHE_CONTROL, "no-store"),
                ],
                body,
            )
                .into_response()
        }
    });
    let ready = axum::routing::get(move || {
        let inbox = ready_inbox.clone();
        async move {
            let readiness = inbox.readiness(&thresholds).await;
            let code = if readiness.ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            (
                code,
                [
                    (header::CONTENT_TYPE, "application/json"),
                    (header::CACHE_CONTROL, "no-store"),
                ],
                serde_json::to_string(&readiness).unwrap_or_else(|_| "{}".to_owned()),
            )
                .into_response()
        }
    });
    axum::Router::new()
        .route("/", status.clone())
        .route("/status", status)
        .route("/ready", ready)
}
