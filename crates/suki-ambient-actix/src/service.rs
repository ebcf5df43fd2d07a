//! `service`: the ready-made route (verify → deduplicate → dispatch → answer).

use actix_web::{HttpRequest, Route, web};
use suki_ambient_core::{EventHandler, Verifier, WebhookEndpoint};

use crate::extract::verify_request;
use crate::rejection::json_response;

/// A `POST` route with the ready-made endpoint: verifies, deduplicates through an in-memory
/// replay guard, dispatches to `handler`, and answers 200 (also for duplicates and unknown
/// statuses), 4xx for bad input, 500 only when `handler` fails.
///
/// ```
/// use actix_web::App;
/// use suki_ambient_core::{NoopHandler, Verifier};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let verifier = Verifier::builder().secret("secret").build()?;
/// let app = App::new().route("/webhooks/suki", suki_ambient_actix::service(verifier, NoopHandler));
/// # let _ = app;
/// # Ok(())
/// # }
/// ```
pub fn service<H: EventHandler>(verifier: Verifier, handler: H) -> Route {
    service_with(WebhookEndpoint::new(verifier, handler))
}

/// [`service`] for a configured [`WebhookEndpoint`] (e.g. a shared replay guard or another TTL).
pub fn service_with<H: EventHandler>(endpoint: WebhookEndpoint<H>) -> Route {
    web::post().to(move |req: HttpRequest, payload: web::Payload| {
        let endpoint = endpoint.clone();
        async move {
            let response = match verify_request(
                req.headers(),
                payload.into_inner(),
                endpoint.verifier(),
            )
            .await
            {
                Ok(delivery) => endpoint.handle_verified(delivery).await,
                Err(err) => endpoint.reject(err),
            };
            json_response(response.status, response.body)
        }
    })
}
