//! What the example receivers share: a production-shaped HTTP/1.1 server loop for axum and warp
//! (hyper-util's connection builder with a timer), so that slow or idle connections cannot take
//! a receiver down. actix-web has the same settings built in; see `actix_receiver`.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// How long a client may take to send a request's headers, counted from the moment the server
/// starts waiting for them: on a new connection, and on a kept-alive one after each response,
/// so it is also the idle keep-alive timeout. Suki sends one small request per connection.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// At most this many connections are served at once; further ones wait in the listen backlog.
/// It stays well below the usual 1,024 file descriptors per process, which a flood of idle
/// connections would otherwise exhaust.
pub const MAX_CONNECTIONS: usize = 512;

/// The read buffer, and so the largest request head, per connection: 64 KiB, so that
/// unfinished giant headers cannot pile up memory (hyper's default allows ~400 KiB each).
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// How long a graceful shutdown waits for requests in flight before closing their connections.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Serves `service` (an axum `Router`, or `warp::service(filter)`) on `listener` until
/// `shutdown` completes, with [`HEADER_READ_TIMEOUT`], [`MAX_CONNECTIONS`] and
/// [`MAX_HEAD_BYTES`]. The body-read deadline is the verifier's own
/// ([`Verifier::body_timeout`](suki_ambient::Verifier::body_timeout), 10 s by default).
pub async fn serve<S, B>(listener: TcpListener, service: S, shutdown: impl Future<Output = ()>)
where
    S: tower_service::Service<
            http::Request<Incoming>,
            Response = http::Response<B>,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            break;
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    // Out of descriptors or a reset before accept: wait a moment, go on.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let connection = http.serve_connection(
            TokioIo::new(stream),
            TowerToHyperService::new(service.clone()),
        );
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // A closed or timed-out connection is routine; nothing to report.
            let _ = connection.await;
            drop(slot);
        });
    }
    tracing::info!("shutting down");
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await;
}

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
