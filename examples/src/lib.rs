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
