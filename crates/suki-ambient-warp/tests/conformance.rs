//! The core conformance suite over real HTTP on 127.0.0.1, against the ready-made filter and
//! against each extracting filter with `recover` (dispatching through the same core endpoint).

use std::sync::Arc;

use suki_ambient_core::testing::{RawBody, RecordingHandler, Transport, run_conformance, send_raw};
use suki_ambient_core::{VerifiedDelivery, Verifier, WebhookEndpoint};
use suki_ambient_warp::WebhookResponse;
use suki_ambient_warp::{
    SukiWebhook, VerifiedBody, recover, suki_webhook, verified_body, webhook_filter,
};
use warp::Filter;
use warp::reply::Reply;

type Endpoint = WebhookEndpoint<Arc<RecordingHandler>>;

async fn serve<F>(filter: F) -> String
where
    F: Filter + Clone + Send + Sync + 'static,
    F::Extract: Reply,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(warp::serve(filter).incoming(listener).run());
    format!("http://{addr}/webhooks/suki")
}

fn with_endpoint(
    endpoint: Endpoint,
) -> impl Filter<Extract = (Endpoint,), Error = std::convert::Infallible> + Clone {
    warp::any().map(move || endpoint.clone())
}

struct ReadyMade;
#[suki_ambient_core::async_trait(?Send)]
impl Transport for ReadyMade {
    async fn serve(&self, verifier: Verifier, handler: Arc<RecordingHandler>) -> String {
        serve(
            warp::path!("webhooks" / "suki")
                .and(webhook_filter(WebhookEndpoint::new(verifier, handler))),
        )
        .await
    }
}

struct ViaVerifiedBody;
#[suki_ambient_core::async_trait(?Send)]
impl Transport for ViaVerifiedBody {
    async fn serve(&self, verifier: Verifier, handler: Arc<RecordingHandler>) -> String {
        let endpoint = WebhookEndpoint::new(verifier.clone(), handler);
        let route = warp::post()
            .and(warp::path!("webhooks" / "suki"))
            .and(verified_body(verifier))
            .and(with_endpoint(endpoint))
            .then(|body: VerifiedBody, endpoint: Endpoint| async move {
                WebhookResponse(endpoint.handle_verified(body.into_inner()).await)
            })
            .recover(recover);
        serve(route).await
    }
}

struct ViaSukiWebhook;
#[suki_ambient_core::async_trait(?Send)]
impl Transport for ViaSukiWebhook {
    async fn serve(&self, verifier: Verifier, handler: Arc<RecordingHandler>) -> String {
        let endpoint = WebhookEndpoint::new(verifier.clone(), handler);
        let route = warp::post()
            .and(warp::path!("webhooks" / "suki"))
            .and(suki_webhook(verifier))
            .and(with_endpoint(endpoint))
            .then(|webhook: SukiWebhook, endpoint: Endpoint| async move {
                let delivery = VerifiedDelivery {
                    meta: webhook.meta,
                    body: webhook.body,
                };
                WebhookResponse(endpoint.handle_verified(delivery).await)
            })
            .recover(recover);
        serve(route).await
    }
}

#[tokio::test]
async fn ready_made_filter() {
    let report = run_conformance(&ReadyMade).await;
    assert!(report.checks > 40);
}

#[tokio::test]
async fn verified_body_filter() {
    run_conformance(&ViaVerifiedBody).await;
}

#[tokio::test]
async fn suki_webhook_filter() {
    run_conformance(&ViaSukiWebhook).await;
}

#[tokio::test]
async fn recover_passes_other_rejections_on() {
    let verifier = Verifier::builder().secret("k").build().unwrap();
    let webhook = warp::path!("webhooks" / "suki")
        .and(suki_webhook(verifier))
        .map(|_w: SukiWebhook| "ok");
    // A second route after ours: its own rejections must reach warp's default handling.
    let other = warp::path!("other")
        .and(warp::header::<u32>("x-number"))
        .map(|_n: u32| "other");
    let url = serve(webhook.recover(recover).or(other)).await;
    // Our rejection: JSON 401.
    let ours = send_raw(&url, &[], RawBody::Sized(b"{}".to_vec()))
        .await
        .unwrap();
    assert_eq!(ours.status, 401);
    assert_eq!(ours.json()["error"], "missing_timestamp");
    // Someone else's rejection (missing header on another path): not turned into our JSON.
    let other_url = url.replace("/webhooks/suki", "/other");
    let theirs = send_raw(&other_url, &[], RawBody::Sized(Vec::new()))
        .await
        .unwrap();
    assert_eq!(theirs.status, 400);
    assert!(
        theirs.json().is_null(),
        "not recovered by us: {:?}",
        String::from_utf8_lossy(&theirs.body)
    );
}
