//! The core conformance suite over real HTTP on 127.0.0.1, against the ready-made router and
//! against each extractor and the layer (dispatching through the same core endpoint).

use std::sync::Arc;

use axum::extract::State;
use axum::routing::post;
use axum::{Extension, Router};
use suki_ambient_axum::{SukiWebhook, VerifiedBody, VerifyWebhookLayer, WebhookResponse, router};
use suki_ambient_core::testing::{RecordingHandler, Transport, run_conformance};
use suki_ambient_core::{VerifiedDelivery, Verifier, WebhookEndpoint};

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/webhooks/suki")
}

type Endpoint = WebhookEndpoint<Arc<RecordingHandler>>;

#[derive(Clone)]
struct AppState {
    verifier: Verifier,
    endpoint: Endpoint,
}

impl axum::extract::FromRef<AppState> for Verifier {
    fn from_ref(state: &AppState) -> Verifier {
        state.verifier.clone()
    }
}

struct ReadyMade;
#[suki_ambient_core::async_trait(?Send)]
impl Transport for ReadyMade {
    async fn serve(&self, verifier: Verifier, handler: Arc<RecordingHandler>) -> String {
        serve(Router::new().nest(
            "/webhooks/suki",
            router(WebhookEndpoint::new(verifier, handler)),
        ))
        .await
    }
}

struct ViaVerifiedBody;
#[suki_ambient_core::async_trait(?Send)]
impl Transport for ViaVerifiedBody {
    async fn serve(&self, verifier: Verifier, handler: Arc<RecordingHandler>) -> String {
        async fn receive(State(state): State<AppState>, body: VerifiedBody) -> WebhookResponse {
            WebhookResponse(state.endpoint.handle_verified(body.into_inner()).await)
        }
        let endpoint = WebhookEndpoint::new(verifier.clone(), handler);
        let app = Router::new()
            .route("/webhooks/suki", post(receive))
            .with_state(AppState { verifier, endpoint });
        serve(app).await
    }
}

struct ViaSukiWebhook;
#[suki_ambient_core::async_trait(?Send)]
impl Transport for ViaSukiWebhook {
    async fn serve(&self, verifier: Verifier, handler: Arc<RecordingHandler>) -> String {
        async fn receive(State(state): State<AppState>, webhook: SukiWebhook) -> WebhookResponse {
            let delivery = VerifiedDelivery {
                meta: webhook.meta,
                body: webhook.body,
            };
            WebhookResponse(state.endpoint.handle_verified(delivery).await)
        }
        let endpoint = WebhookEndpoint::new(verifier.clone(), handler);
        let app = Router::new()
            .route("/webhooks/suki", post(receive))
            .with_state(AppState { verifier, endpoint });
        serve(app).await
    }
}

struct ViaLayer;
#[suki_ambient_core::async_trait(?Send)]
impl Transport for ViaLayer {
    async fn serve(&self, verifier: Verifier, handler: Arc<RecordingHandler>) -> String {
        async fn receive(
            State(endpoint): State<Endpoint>,
            Extension(delivery): Extension<VerifiedDelivery>,
            body: axum::body::Bytes,
        ) -> WebhookResponse {
            assert_eq!(body, delivery.body, "the inner service sees the same body");
            WebhookResponse(endpoint.handle_verified(delivery).await)
        }
        let endpoint = WebhookEndpoint::new(verifier.clone(), handler);
        let app = Router::new()
            .route("/webhooks/suki", post(receive))
            .layer(VerifyWebhookLayer::new(verifier))
            .with_state(endpoint);
        serve(app).await
    }
}

#[tokio::test]
async fn ready_made_router() {
    let report = run_conformance(&ReadyMade).await;
    assert!(report.checks > 40, "{report:?}");
    use std::io::Write as _;
    let _ = writeln!(
        std::io::stderr().lock(),
        "conformance: {} checks passed",
        report.checks
    );
}

#[tokio::test]
async fn verified_body_extractor() {
    run_conformance(&ViaVerifiedBody).await;
}

#[tokio::test]
async fn suki_webhook_extractor() {
    run_conformance(&ViaSukiWebhook).await;
}

#[tokio::test]
async fn tower_layer() {
    run_conformance(&ViaLayer).await;
}

/// The suite is not vacuous: an endpoint that accepts everything fails it.
struct AcceptsEverything;
#[suki_ambient_core::async_trait(?Send)]
impl Transport for AcceptsEverything {
    async fn serve(&self, _verifier: Verifier, _handler: Arc<RecordingHandler>) -> String {
        serve(Router::new().route(
            "/webhooks/suki",
            post(|_body: axum::body::Bytes| async { "ok" }),
        ))
        .await
    }
}

#[tokio::test]
#[should_panic(expected = "conformance checks failed")]
async fn suite_fails_an_endpoint_that_does_not_verify() {
    run_conformance(&AcceptsEverything).await;
}
