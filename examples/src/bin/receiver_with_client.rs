//! A receiver whose handler hands each completed session to a worker task that owns the API
//! client and fetches the results: the answer to "how does my handler get a client?".
//!
//! ```sh
//! SUKI_WEBHOOK_SECRET=... SUKI_TOKEN=... cargo run -p examples --bin receiver_with_client
//! ```
//!
//! Env: `SUKI_WEBHOOK_SECRET` (required), `SUKI_TOKEN` (required), `SUKI_API_BASE_URL` (default
//! Suki staging), `BIND` (default `127.0.0.1:3000`), `RUST_LOG`. Prints
//! `fetched <session_id> <results>/<links>` for each completed session it processed.

use std::io::Write as _;
use std::process::ExitCode;

use axum::Router;
use suki_ambient::client::{AmbientClient, Environment};
use suki_ambient::{
    EventHandler, HandlerError, SessionCompleted, WebhookEndpoint, WebhookMeta, async_trait,
};
use tokio::sync::mpsc;

/// The handler only enqueues: it answers Suki at once, and the slow work (three to six API
/// calls) happens in the worker. A process-local channel loses what is queued if the process
/// dies; the durable inbox is the production answer.
struct Enqueue(mpsc::Sender<SessionCompleted>);

#[async_trait]
impl EventHandler for Enqueue {
    async fn on_completed(
        &self,
        done: SessionCompleted,
        _meta: WebhookMeta,
    ) -> Result<(), HandlerError> {
        // A full queue or a stopped worker fails the delivery (500), so it is not lost silently.
        self.0.send(done).await.map_err(|_| "the worker stopped")?;
        Ok(())
    }
}

/// The worker owns the client (one connection pool, one token) and fetches each session's
/// results through its `_links`.
async fn worker(client: AmbientClient, mut queue: mpsc::Receiver<SessionCompleted>) {
    while let Some(done) = queue.recv().await {
        let mut results = client.fetch_results(&done).await;
        if !results.is_ok() {
            // One more round for what failed (e.g. a 503 burst longer than the retries).
            results.retry_failed(&client).await;
        }
        let ok = results.fetched() - results.errors().len();
        for (kind, err) in results.errors() {
            tracing::warn!(session_id = %done.session_id, link = %kind, error = %err, "link failed");
        }
        // Ids and counts only: the content is patient data.
        println!("fetched {} {ok}/{}", done.session_id, results.fetched());
        let _ = std::io::stdout().flush();
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let verifier = examples::start();
    let Some(token) = std::env::var("SUKI_TOKEN").ok().filter(|t| !t.is_empty()) else {
        eprintln!("error: set SUKI_TOKEN to an sdp_suki_token");
        return ExitCode::FAILURE;
    };
    let builder = match std::env::var("SUKI_API_BASE_URL") {
        Ok(url) => AmbientClient::builder().base_url(url),
        Err(_) => AmbientClient::builder().environment(Environment::Staging),
    };
    let client = match builder.token(token).build() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (tx, rx) = mpsc::channel(1024);
    tokio::spawn(worker(client, rx));

    let listener = examples::listen().await;
    let endpoint = WebhookEndpoint::new(verifier, Enqueue(tx));
    let app = Router::new().nest("/webhooks/suki", suki_ambient::axum::router(endpoint));
    if let Ok(addr) = listener.local_addr() {
        println!("listening on http://{addr}/webhooks/suki");
    }
    suki_ambient::axum::Server::new()
        .serve(listener, app, examples::ctrl_c())
        .await;
    ExitCode::SUCCESS
}
