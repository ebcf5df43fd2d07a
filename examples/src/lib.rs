//! What the example receivers share: logging, the listener and start-up errors. They serve
//! through the SDK's hardened server loop, `suki_ambient::axum::Server` (actix-web has the same
//! settings built in; see `actix_receiver`).

use tokio::net::TcpListener;

/// Resolves on Ctrl-C (or at once if the signal cannot be listened for).
pub async fn ctrl_c() {
    let _ = tokio::signal::ctrl_c().await;
}

/// Logs to stderr (stdout carries the receivers' own output), at `RUST_LOG` (default `info`),
/// with colours only when stderr is a terminal, so log files get no escape codes.
pub fn init_logging() {
    use std::io::IsTerminal as _;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// What every receiver does first: logging, then the verifier for `SUKI_WEBHOOK_SECRET`. A
/// missing or unusable secret ends the program with a one-line error naming the variable.
pub fn start() -> suki_ambient::Verifier {
    init_logging();
    match suki_ambient::Verifier::builder()
        .secret_from_env("SUKI_WEBHOOK_SECRET")
        .build()
    {
        Ok(verifier) => verifier,
        Err(e) => exit(&format!("{e} (set it to the webhook secret from Suki)")),
    }
}

/// A listener on `BIND` (default `127.0.0.1:3000`), or the program ends with a one-line error.
pub async fn listen() -> TcpListener {
    let bind = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    match TcpListener::bind(&bind).await {
        Ok(listener) => listener,
        Err(e) => exit(&format!("cannot listen on {bind}: {e}")),
    }
}

/// Ends a program at start-up with `error: <message>` on stderr and a failure status.
pub fn exit(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1)
}

/// `worker` with the concurrency `SUKI_WORKER_CONCURRENCY` asks for: a number fixes how many
/// rows are processed at once; unset or `auto`, the limit adapts (from 16, up to
/// `SUKI_WORKER_MAX_CONCURRENCY`, default 256). Anything else ends the program with a one-line
/// error.
pub fn worker_concurrency(
    worker: suki_ambient::inbox::InboxWorkerBuilder,
) -> suki_ambient::inbox::InboxWorkerBuilder {
    let number = |name: &str, value: String| match value.parse::<usize>() {
        Ok(n) if n > 0 => n,
        _ => exit(&format!(
            "{name} must be a positive number (or `auto`), not {value:?}"
        )),
    };
    let worker = match env("SUKI_WORKER_MAX_CONCURRENCY") {
        Some(max) => worker.max_concurrency(number("SUKI_WORKER_MAX_CONCURRENCY", max)),
        None => worker,
    };
    match env("SUKI_WORKER_CONCURRENCY") {
        None => worker,
        Some(auto) if auto.eq_ignore_ascii_case("auto") => worker,
        Some(n) => worker.concurrency(number("SUKI_WORKER_CONCURRENCY", n)),
    }
}

/// A non-empty environment variable.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The client of Suki's follow-up APIs the inbox examples use: `SUKI_API_BASE_URL` (default
/// Suki staging), with partner login (`SUKI_PARTNER_ID`, `SUKI_PARTNER_TOKEN`) or a static token
/// (`SUKI_TOKEN`); the program ends with a one-line error without them.
///
/// Partner login renews the token before it expires; a static token cannot be renewed: once it
/// expires or is revoked, completed sessions become dead letters
/// (`fetch_contents_401_invalid_sdp_token`) until the process gets a new one and
/// `suki-ambient inbox retry --dead` runs.
pub fn suki_client() -> suki_ambient::client::AmbientClient {
    use suki_ambient::client::{AmbientClient, Environment, PartnerLogin};
    let builder = match env("SUKI_API_BASE_URL") {
        Some(url) => AmbientClient::builder().base_url(url),
        None => AmbientClient::builder().environment(Environment::Staging),
    };
    let builder = match (
        env("SUKI_PARTNER_ID"),
        env("SUKI_PARTNER_TOKEN"),
        env("SUKI_TOKEN"),
    ) {
        (Some(partner), Some(partner_token), _) => {
            builder.auth(PartnerLogin::new(partner, partner_token))
        }
        (_, _, Some(token)) => builder.token(token),
        _ => exit(
            "set SUKI_PARTNER_ID and SUKI_PARTNER_TOKEN (partner login), or SUKI_TOKEN (an sdp_suki_token)",
        ),
    };
    builder.build().unwrap_or_else(|e| exit(&e.to_string()))
}

/// The durable inbox at `SUKI_INBOX_URL` (default `sqlite://suki-inbox.db`), its bodies sealed
/// at rest with the keys of `SUKI_INBOX_KEYS` (base64, comma-separated, the current one first);
/// in clear without it, said once with a WARN. Its audit log is chained under `SUKI_AUDIT_KEY`
/// when set (else under the key derived from the body keys).
pub async fn inbox() -> suki_ambient::inbox::Inbox {
    use suki_ambient::inbox::{AuditKey, Inbox, Keys};
    let url = env("SUKI_INBOX_URL").unwrap_or_else(|| "sqlite://suki-inbox.db".into());
    let mut inbox = Inbox::connect(&url)
        .await
        .unwrap_or_else(|e| exit(&format!("cannot open the inbox: {e}")));
    match AuditKey::from_env("SUKI_AUDIT_KEY") {
        Ok(Some(key)) => inbox = inbox.with_audit_key(key),
        Ok(None) => {}
        Err(e) => exit(&format!("SUKI_AUDIT_KEY: {e}")),
    }
    match Keys::from_env("SUKI_INBOX_KEYS") {
        Ok(Some(keys)) => inbox.with_keys(keys),
        Ok(None) => {
            tracing::warn!(
                "SUKI_INBOX_KEYS is not set: webhook bodies are stored in clear (docs/security.md)"
            );
            inbox
        }
        Err(e) => exit(&format!("SUKI_INBOX_KEYS: {e}")),
    }
}

/// What the inbox examples do once their app is built: print `listening on <url>` (the tests
/// read it), serve `app` until Ctrl-C through the hardened server loop, then let `worker` finish
/// or release what it holds.
pub async fn serve_with_worker(
    listener: TcpListener,
    app: axum::Router,
    worker: suki_ambient::inbox::WorkerHandle,
) -> std::process::ExitCode {
    use std::io::Write as _;
    if let Ok(addr) = listener.local_addr() {
        println!("listening on http://{addr}/webhooks/suki");
        let _ = std::io::stdout().flush();
    }
    suki_ambient::axum::Server::new()
        .serve(listener, app, ctrl_c())
        .await;
    match worker.shutdown().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
