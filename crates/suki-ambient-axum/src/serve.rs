//! `Server`: serving an axum app (or any tower service, e.g. `warp::service(filter)`) so that
//! slow, idle or oversized connections cannot take it down (feature `serve`).

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

/// The smallest head limit hyper accepts.
const MIN_HEAD_BYTES: usize = 8 * 1024;

/// An HTTP/1.1 server loop with the limits `axum::serve` does not have: a header-read timeout
/// (which is also the idle keep-alive timeout: hyper restarts it after each response), a bound
/// on connections served at once (further ones wait in the listen backlog), a bound on the
/// request head, and a graceful shutdown. The body's deadline is the verifier's own
/// ([`body_timeout`](suki_ambient_core::VerifierBuilder::body_timeout), 10 s by default).
///
/// # Example
///
/// ```no_run
/// use suki_ambient_axum::Server;
///
/// # async fn run(app: axum::Router) -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// Server::new()
///     .serve(listener, app, async {
///         let _ = tokio::signal::ctrl_c().await;
///     })
///     .await;
/// # Ok(())
/// # }
/// ```
///
/// warp: `Server::new().serve(listener, warp::service(filter), shutdown)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub struct Server {
    header_read_timeout: Duration,
    max_connections: usize,
    max_head_bytes: usize,
    shutdown_grace: Duration,
}

impl Default for Server {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(5),
            max_connections: 512,
            max_head_bytes: 64 * 1024,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

impl Server {
    /// The defaults: header-read (and idle) timeout 5 s, 512 connections, a 64 KiB head, a
    /// 10 s shutdown grace.
    pub fn new() -> Self {
        Self::default()
    }

    /// How long a client may take to send a request's head, counted from when the server starts
    /// waiting for it: on a new connection, and on a kept-alive one after each response (so
    /// also the idle timeout).
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// At most this many connections served at once (at least 1); keep it well below the
    /// process's file descriptor limit, which a flood of idle connections would exhaust.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// The largest request head (request line and headers), in bytes, at least 8 KiB: a larger
    /// one is answered `431` and its connection closed.
    pub fn max_head_bytes(mut self, n: usize) -> Self {
        self.max_head_bytes = n.max(MIN_HEAD_BYTES);
        self
    }

    /// How long a graceful shutdown waits for requests in flight before closing them.
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// Serves `service` on `listener` until `shutdown` completes, then lets requests in flight
    /// finish within the grace period.
    pub async fn serve<S, B>(
        self,
        listener: TcpListener,
        service: S,
        shutdown: impl Future<Output = ()>,
    ) where
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
            .header_read_timeout(self.header_read_timeout)
            // The read buffer bounds memory per connection; the head size is checked on the
            // parsed head itself (one read can carry the buffer past its bound).
            .max_buf_size(self.max_head_bytes)
            .max_header_size(self.max_head_bytes)
            .keep_alive(true);
        let slots = Arc::new(Semaphore::new(self.max_connections));
        let graceful = GracefulShutdown::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let slot = tokio::select! {
                slot = Arc::clone(&slots).acquire_owned() => match slot {
                    Ok(slot) => slot,
                    Err(_) => break,
                },
                () = &mut shutdown => break,
            };
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
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
                TowerToHyperService::new(WithPeer {
                    inner: service.clone(),
                    peer,
                }),
            );
            let connection = graceful.watch(connection);
            tokio::spawn(async move {
                // A closed or timed-out connection is routine; nothing to report.
                let _ = connection.await;
                drop(slot);
            });
        }
        let _ = tokio::time::timeout(self.shutdown_grace, graceful.shutdown()).await;
    }
}

/// A service that gives each request its connection's peer address, as axum's
/// [`ConnectInfo`](axum::extract::ConnectInfo) (what `axum::serve` with
/// `into_make_service_with_connect_info` does), so handlers and rate limits see the client.
#[derive(Clone)]
struct WithPeer<S> {
    inner: S,
    peer: std::net::SocketAddr,
}

impl<S> tower_service::Service<http::Request<Incoming>> for WithPeer<S>
where
    S: tower_service::Service<http::Request<Incoming>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Incoming>) -> Self::Future {
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(self.peer));
        self.inner.call(request)
    }
}

/// Serves `app` with the [`Server`] defaults until `shutdown` completes: what to use instead
/// of `axum::serve` for a receiver on a network.
pub async fn serve(listener: TcpListener, app: axum::Router, shutdown: impl Future<Output = ()>) {
    Server::new().serve(listener, app, shutdown).await;
}
