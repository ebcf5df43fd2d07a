//! Helpers for the end-to-end tests: start a receiver on any of the three frameworks, each in
//! its own thread and runtime, serving the ready-made endpoint at `/webhooks/suki`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use suki_ambient::{EventHandler, HandlerError, Verifier, WebhookEvent, WebhookMeta, async_trait};
use tokio::sync::mpsc;

/// The three adapters.
pub const FRAMEWORKS: [&str; 3] = ["axum", "actix", "warp"];

/// Forwards every event to the test and counts calls.
#[derive(Clone)]
pub struct Forward {
    /// Where events go.
    pub tx: mpsc::UnboundedSender<WebhookEvent>,
    /// Handler calls.
    pub calls: Arc<AtomicUsize>,
}

impl Forward {
    /// A handler and the receiving end of its events.
    pub fn new() -> (Self, mpsc::UnboundedReceiver<WebhookEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Self {
                tx,
                calls: Arc::new(AtomicUsize::new(0)),
            },
            rx,
        )
    }

    /// Calls so far.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl EventHandler for Forward {
    async fn handle(&self, event: WebhookEvent, _meta: WebhookMeta) -> Result<(), HandlerError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.tx.send(event)?;
        Ok(())
    }
}

/// Starts `framework`'s ready-made endpoint with `verifier` and `handler`; returns its URL.
///
/// # Panics
/// On an unknown framework or when the server cannot start.
pub fn start_receiver(framework: &str, verifier: Verifier, handler: Forward) -> String {
    start_receiver_with(framework, verifier, handler)
}

/// [`start_receiver`] with any handler.
///
/// # Panics
/// On an unknown framework or when the server cannot start.
pub fn start_receiver_with<H: EventHandler + Clone>(
    framework: &str,
    verifier: Verifier,
    handler: H,
) -> String {
    let (tx, rx) = std::sync::mpsc::channel::<SocketAddr>();
    let framework = framework.to_owned();
    std::thread::spawn(move || match framework.as_str() {
        "axum" => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let app = axum::Router::new().nest(
                    "/webhooks/suki",
                    suki_ambient::axum::router(suki_ambient::WebhookEndpoint::new(
                        verifier, handler,
                    )),
                );
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                axum::serve(listener, app).await.unwrap();
            });
        }
        "warp" => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                use warp::Filter;
                let route =
                    warp::path!("webhooks" / "suki").and(suki_ambient::warp::webhook_filter(
                        suki_ambient::WebhookEndpoint::new(verifier, handler),
                    ));
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                warp::serve(route).incoming(listener).run().await;
            });
        }
        "actix" => {
            actix_web::rt::System::new().block_on(async move {
                let endpoint = suki_ambient::WebhookEndpoint::new(verifier, handler);
                let server = actix_web::HttpServer::new(move || {
                    actix_web::App::new().route(
                        "/webhooks/suki",
                        suki_ambient::actix::route(endpoint.clone()),
                    )
                })
                .workers(1)
                .bind(("127.0.0.1", 0))
                .unwrap();
                tx.send(server.addrs()[0]).unwrap();
                server.run().await.unwrap();
            });
        }
        other => panic!("unknown framework {other}"),
    });
    let addr = rx.recv().expect("receiver started");
    format!("http://{addr}/webhooks/suki")
}

/// A minimal HTTP/1.1 keep-alive client for load tests: one connection, one request at a time,
/// reconnecting (and resending) when the server closed the connection before answering.
pub mod http1 {
    use std::net::SocketAddr;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// One keep-alive connection.
    pub struct Conn {
        addr: SocketAddr,
        stream: Option<TcpStream>,
        buf: Vec<u8>,
    }

    /// A POST request's bytes (`Content-Length`, keep-alive).
    pub fn post(addr: SocketAddr, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
        let mut head = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let mut request = head.into_bytes();
        request.extend_from_slice(body);
        request
    }

    impl Conn {
        /// A connection to `addr` (opened on first use).
        pub fn new(addr: SocketAddr) -> Self {
            Self {
                addr,
                stream: None,
                buf: vec![0; 64 * 1024],
            }
        }

        /// Sends `request`; returns the status and body of the answer.
        ///
        /// # Errors
        /// When the server cannot be reached or answers garbage, after one reconnect.
        pub async fn send(&mut self, request: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
            for attempt in 0..2 {
                match self.try_send(request).await {
                    Ok(Some(answer)) => return Ok(answer),
                    // Closed before any answer: the request was not handled; resend once.
                    Ok(None) if attempt == 0 => self.stream = None,
                    Ok(None) => break,
                    Err(e) if attempt == 0 && self.stream.is_some() => {
                        let _ = e;
                        self.stream = None;
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(std::io::Error::other("connection closed without an answer"))
        }

        async fn try_send(&mut self, request: &[u8]) -> std::io::Result<Option<(u16, Vec<u8>)>> {
            if self.stream.is_none() {
                let stream = TcpStream::connect(self.addr).await?;
                stream.set_nodelay(true)?;
                self.stream = Some(stream);
            }
            let stream = self.stream.as_mut().expect("just connected");
            if stream.write_all(request).await.is_err() {
                return Ok(None);
            }
            let mut have = 0;
            loop {
                if have == self.buf.len() {
                    self.buf.resize(have * 2, 0);
                }
                let n = match stream.read(&mut self.buf[have..]).await {
                    Ok(n) => n,
                    Err(_) if have == 0 => return Ok(None),
                    Err(e) => return Err(e),
                };
                if n == 0 {
                    if have == 0 {
                        return Ok(None);
                    }
                    return Err(std::io::Error::other("connection closed mid-answer"));
                }
                have += n;
                let Some(end) = self.buf[..have].windows(4).position(|w| w == b"\r\n\r\n") else {
                    continue;
                };
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                let status: u16 = head
                    .split_whitespace()
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| std::io::Error::other("bad status line"))?;
                let mut len = 0;
                let mut close = false;
                for line in head.lines().skip(1) {
                    if let Some((name, value)) = line.split_once(':') {
                        if name.eq_ignore_ascii_case("content-length") {
                            len = value.trim().parse().unwrap_or(0);
                        }
                        if name.eq_ignore_ascii_case("connection")
                            && value.trim().eq_ignore_ascii_case("close")
                        {
                            close = true;
                        }
                    }
                }
                if have < end + 4 + len {
                    continue;
                }
                let body = self.buf[end + 4..end + 4 + len].to_vec();
                if close {
                    self.stream = None;
                }
                return Ok(Some((status, body)));
            }
        }
    }
}
