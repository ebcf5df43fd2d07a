//! The production shape: a receiver that stores every verified delivery in a durable inbox
//! before answering 200, and a worker that fetches each completed session's results from it.
//! Kill it at any moment (even `kill -9`) and start it again on the same inbox: every delivery
//! it acknowledged is processed.
//!
//! ```sh
//! SUKI_WEBHOOK_SECRET=... SUKI_TOKEN=... cargo run -p examples --bin inbox_receiver
//! # on Postgres:
//! SUKI_INBOX_URL=postgres://user@host/db ... cargo run -p examples --features postgres --bin inbox_receiver
//! ```
//!
//! Env: `SUKI_WEBHOOK_SECRET` (required); `SUKI_PARTNER_ID` and `SUKI_PARTNER_TOKEN` (partner
//! login, renewed before expiry) or `SUKI_TOKEN` (a static token); `SUKI_API_BASE_URL`
//! (default Suki staging), `SUKI_INBOX_URL` (default `sqlite://suki-inbox.db`; or
//! `postgres://…` with the package's `postgres` feature), `SUKI_WORKER_NAME` (default `inbox_receiver`: one
//! running receiver per name), `SUKI_WORKER_CONCURRENCY` (sessions processed at once: a
//! number, or `auto`, the default: adaptive up to `SUKI_WORKER_MAX_CONCURRENCY`, 256), `SUKI_INBOX_KEYS` (base64 keys, comma-separated, the current one first:
//! bodies are sealed at rest; in clear without it, with one WARN at start), `BIND` (default
//! `127.0.0.1:3000`), `RUST_LOG`.
//!
//! Also serves `GET /metrics` (Prometheus text format: the `suki_*` metrics, see
//! docs/operations.md) and `GET /healthz` (the inbox's health: 200 or 503 with JSON).
//!
//! Prints `listening on <url>` once, then exactly one line `processed <session_id> <kind>` each
//! time its handler finishes an event (`-` for an event without a session id).

use std::io::Write as _;
use std::process::ExitCode;

use axum::Router;
use suki_ambient::client::SessionResults;
use suki_ambient::inbox::{FetchResults, InboxMeta, InboxWorker, ResultsHandler};
use suki_ambient::{
    EventKind, HandlerError, SessionCompleted, SessionEnded, SessionFailed, WebhookEndpoint,
    async_trait,
};

/// What this service does with each event once its results are fetched: here, print the ids
/// (never the content: it is patient data). A real one writes the note to its EHR.
struct Notes;

fn processed(session_id: Option<&str>, kind: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "processed {} {kind}", session_id.unwrap_or("-"));
    let _ = out.flush();
}

#[async_trait]
impl ResultsHandler for Notes {
    /// Called only once every link the event carries was fetched: a link that failed for good
    /// (a revoked token, a 404) has made the row a dead letter instead (`inbox list --state
    /// dead`), so this never reports a note it does not have.
    async fn on_results(
        &self,
        done: SessionCompleted,
        results: SessionResults,
        _meta: InboxMeta,
    ) -> Result<(), HandlerError> {
        // A real service writes the note to its EHR here, keyed by meta.dedup_key.
        let _note = results.contents;
        processed(Some(done.session_id.as_str()), "completed");
        Ok(())
    }

    /// No note will come for a failed session: a real service tells the clinician.
    async fn on_failed(&self, failed: SessionFailed, meta: InboxMeta) -> Result<(), HandlerError> {
        tracing::warn!(id = meta.id, session = %failed.session_id, code = %failed.error_code, "session failed: no note");
        processed(Some(failed.session_id.as_str()), EventKind::Failed.as_str());
        Ok(())
    }

    /// Nor for one that timed out or was cancelled.
    async fn on_ended(
        &self,
        kind: EventKind,
        ended: SessionEnded,
        meta: InboxMeta,
    ) -> Result<(), HandlerError> {
        tracing::warn!(id = meta.id, session = %ended.session_id, %kind, "session ended without a note");
        processed(Some(ended.session_id.as_str()), kind.as_str());
        Ok(())
    }

    // An unknown status keeps the default: a dead letter `unknown_status`, retried after an
    // upgrade (`suki-ambient inbox retry --dead`).
}

#[tokio::main]
async fn main() -> ExitCode {
    let verifier = examples::start();
    // Partner login (renewed before expiry) or a static token; the inbox, sealed with
    // SUKI_INBOX_KEYS (see `examples::suki_client` and `examples::inbox`).
    let client = examples::suki_client();
    let inbox = examples::inbox().await;

    // The worker picks up whatever an earlier run acknowledged and did not finish. Its stable
    // name lets it take back at once what a killed earlier run was processing (one receiver per
    // name: give each host its own, e.g. SUKI_WORKER_NAME=$HOSTNAME).
    // The metrics the SDK emits, exported for Prometheus at /metrics (install the recorder
    // before anything records).
    let prometheus = match metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()
    {
        Ok(handle) => handle,
        Err(e) => {
            eprintln!("error: cannot install the metrics recorder: {e}");
            return ExitCode::FAILURE;
        }
    };
    let name = std::env::var("SUKI_WORKER_NAME").unwrap_or_else(|_| "inbox_receiver".into());
    // SUKI_WORKER_CONCURRENCY: a fixed number of rows at once, or `auto` (the default: the
    // limit adapts to the backlog and the latency, up to SUKI_WORKER_MAX_CONCURRENCY).
    let worker = examples::worker_concurrency(
        InboxWorker::builder(inbox.clone(), FetchResults::new(client, Notes)).owner(name),
    )
    .build()
    .spawn();

    let listener = examples::listen().await;
    let endpoint = WebhookEndpoint::inbox(verifier, inbox.clone());
    let app = Router::new()
        .nest("/webhooks/suki", suki_ambient::axum::router(endpoint))
        .nest(
            "/healthz",
            suki_ambient::inbox::health_router(inbox, Default::default()),
        )
        .route(
            "/metrics",
            axum::routing::get(move || {
                let prometheus = prometheus.clone();
                async move { prometheus.render() }
            }),
        );
    // Ctrl-C: the worker finishes or releases what it holds.
    examples::serve_with_worker(listener, app, worker).await
}
