//! The core conformance suite over real HTTP on 127.0.0.1, against the ready-made service, each
//! extractor and the middleware (the last three dispatch through the same core endpoint).

use std::sync::Arc;

use actix_web::{App, HttpResponse, HttpServer, web};
use suki_ambient_actix::WebhookResponse;
use suki_ambient_actix::{SukiWebhook, VerifiedBody, VerifyWebhook};
use suki_ambient_core::testing::{RecordingHandler, Transport, run_conformance};
use suki_ambient_core::{VerifiedDelivery, Verifier, WebhookEndpoint};

type Endpoint = WebhookEndpoint<Arc<RecordingHandler>>;

/// Serves `configure` on an ephemeral loopback port, in this test's actix system.
fn serve<F>(configure: F) -> String
where
    F: Fn(&mut web::ServiceConfig) + Clone + Send + 'static,
{
    let server = HttpServer::new(move || App::new().configure(configure.clone()))
        .workers(1)
        .bind(("127.0.0.1", 0))
        .unwrap();
    let addr = server.addrs()[0];
    actix_web::rt::spawn(server.run());
    format!("http://{addr}/webhooks/suki")
}

struct ReadyMade;
#[suki_ambient_core::async_trait(?Send)]
impl Transport for ReadyMade {
    async fn serve(&self, verifier: Verifier, handler: Arc<RecordingHandler>) -> String {
        let endpoint = WebhookEndpoint::new(verifier, handler);
        serve(move |cfg| {
            cfg.route(
                "/webhooks/suki",
                suki_ambient_actix::route(endpoint.clone()),
            );
        })
    }
}

struct ViaVerifiedBody;
#[suki_ambient_core::async_trait(?Send)]
impl Transport for ViaVerifiedBody {
    async fn serve(&self, verifier: Verifier, handler: Arc<RecordingHandler>) -> String {
        async fn receive(endpoint: web::Data<Endpoint>, body: VerifiedBody) -> WebhookResponse {
            WebhookResponse(endpoint.handle_verified(body.into_inner()).await)
        }
        let endpoint = WebhookEndpoint::new(verifier.clone(), handler);
        serve(move |cfg| {
            cfg.app_data(web::Data::new(verifier.clone()))
                .app_data(web::Data::new(endpoint.clone()))
                .route("/webhooks/suki", web::post().to(receive));
        })
    }
}

struct ViaSukiWebhook;
#[suki_ambient_core::async_trait(?Send)]
impl Transport for ViaSukiWebhook {
    async fn serve(&self, verifier: Verifier, handler: Arc<RecordingHandler>) -> String {
        async fn receive(endpoint: web::Data<Endpoint>, webhook: SukiWebhook) -> WebhookResponse {
            let delivery = VerifiedDelivery {
                meta: webhook.meta,
                body: webhook.body,
            };
            WebhookResponse(endpoint.handle_verified(delivery).await)
        }
        let endpoint = WebhookEndpoint::new(verifier.clone(), handler);
        // A plain `Verifier` in app data works as well as `web::Data<Verifier>`.
        serve(move |cfg| {
            cfg.app_data(verifier.clone())
                .app_data(web::Data::new(endpoint.clone()))
                .route("/webhooks/suki", web::post().to(receive));
        })
    }
}

struct ViaMiddleware;
#[suki_ambient_core::async_trait(?Send)]
impl Transport for ViaMiddleware {
    async fn serve(&self, verifier: Verifier, handler: Arc<RecordingHandler>) -> String {
        async fn receive(
            endpoint: web::Data<Endpoint>,
            delivery: web::ReqData<VerifiedDelivery>,
            body: web::Bytes,
        ) -> WebhookResponse {
            assert_eq!(body, delivery.body, "the handler sees the same body");
            WebhookResponse(endpoint.handle_verified(delivery.into_inner()).await)
        }
        let endpoint = WebhookEndpoint::new(verifier.clone(), handler);
        serve(move |cfg| {
            cfg.app_data(web::Data::new(endpoint.clone())).service(
                web::resource("/webhooks/suki")
                    .wrap(VerifyWebhook::new(verifier.clone()))
                    .route(web::post().to(receive)),
            );
        })
    }
}

#[actix_web::test]
async fn ready_made_route() {
    let report = run_conformance(&ReadyMade).await;
    assert!(report.checks > 40);
}

#[actix_web::test]
async fn verified_body_extractor() {
    run_conformance(&ViaVerifiedBody).await;
}

#[actix_web::test]
async fn suki_webhook_extractor() {
    run_conformance(&ViaSukiWebhook).await;
}

#[actix_web::test]
async fn middleware() {
    run_conformance(&ViaMiddleware).await;
}

#[actix_web::test]
async fn missing_verifier_is_a_server_error_not_a_panic() {
    async fn receive(_w: SukiWebhook) -> HttpResponse {
        HttpResponse::Ok().finish()
    }
    let url = serve(|cfg| {
        cfg.route("/webhooks/suki", web::post().to(receive));
    });
    let response = suki_ambient_core::testing::send_raw(
        &url,
        &[],
        suki_ambient_core::testing::RawBody::Sized(b"{}".to_vec()),
    )
    .await
    .unwrap();
    assert_eq!(response.status, 500);
}

#[actix_web::test]
async fn a_body_consumed_by_an_earlier_extractor_is_named_not_a_mismatch() {
    // `web::Bytes` runs first and takes the payload: the webhook extractor finds none left.
    async fn receive(_raw: web::Bytes, _w: SukiWebhook) -> HttpResponse {
        HttpResponse::Ok().finish()
    }
    let verifier = Verifier::builder().secret("k").build().unwrap();
    let url = serve(move |cfg| {
        cfg.app_data(web::Data::new(verifier.clone()))
            .route("/webhooks/suki", web::post().to(receive));
    });
    let body = suki_ambient_core::testing::completed("s", "e").to_vec();
    let h = suki_ambient_core::SignedHeaders::new(
        &suki_ambient_core::WebhookSecret::from("k"),
        suki_ambient_core::UnixMillis::now(),
        &body,
    );
    let response = suki_ambient_core::testing::send_raw(
        &url,
        &[
            ("generated-at", h.generated_at.as_str()),
            ("x-api-key", h.signature.as_str()),
        ],
        suki_ambient_core::testing::RawBody::Sized(body),
    )
    .await
    .unwrap();
    assert_eq!(response.status, 500);
    assert_eq!(response.json()["error"], "body_already_consumed");
    assert!(
        response.json()["message"]
            .as_str()
            .unwrap()
            .contains("web::Bytes")
    );
}
