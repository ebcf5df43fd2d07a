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

/// The test kit's keep-alive HTTP/1.1 client (one for the conformance suite, these tests and the
/// benches).
pub use suki_ambient::testing::http1;

/// An axum receiver on loopback storing into `inbox` at `/webhooks/suki`, made the sandbox's
/// webhook URL; abort the task to stop it.
pub async fn serve_inbox(
    sandbox: &suki_ambient::sandbox::SandboxHandle,
    inbox: &suki_ambient::inbox::Inbox,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    let verifier = sandbox.verifier_builder().build().expect("verifier");
    let app = axum::Router::new().nest(
        "/webhooks/suki",
        suki_ambient::axum::router(suki_ambient::WebhookEndpoint::inbox(
            verifier,
            inbox.clone(),
        )),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    sandbox.set_webhook_url(Some(format!(
        "http://{}/webhooks/suki",
        listener.local_addr().expect("addr")
    )));
    tokio::spawn(async move { axum::serve(listener, app).await })
}

/// An operator's replay of every completed row (they run again).
pub async fn replay_all(inbox: &suki_ambient::inbox::Inbox) {
    inbox
        .act(
            &suki_ambient::inbox::Actor::application(),
            suki_ambient::inbox::Action::Replay {
                since: suki_ambient::UnixMillis(0),
                kind: None,
            },
        )
        .await
        .expect("replay");
}

/// Panics, showing where, if any of `markers` (secrets, tokens, payload text) appears in
/// `everything` (captured logs, errors, `Debug` output, responses).
pub fn assert_no_marker<'a>(everything: &str, markers: impl IntoIterator<Item = &'a str>) {
    for marker in markers {
        if let Some(at) = everything.find(marker) {
            let from = at.saturating_sub(300);
            panic!(
                "{marker} leaked:\n...{}...",
                &everything[from..(at + marker.len() + 100).min(everything.len())]
            );
        }
    }
}
