//! `route`: the ready-made endpoint (verify → deduplicate → dispatch → answer) as a `Route`.

use actix_web::{HttpRequest, Route, web};
use suki_ambient_core::{EventHandler, WebhookEndpoint};

use crate::WebhookResponse;
use crate::extract::verify_request;

/// A `POST` route answering with the ready-made `endpoint`: verifies, deduplicates through the
/// endpoint's replay guard, dispatches to its handler, and answers 200 (also for duplicates and
/// unknown statuses), 4xx for bad input, 500 only when the handler fails.
///
/// Build the [`WebhookEndpoint`] once, **outside** `HttpServer::new`, and clone it into the
/// factory: every worker then shares one replay guard (built inside, each worker would get its
/// own, and a duplicate reaching another worker would be processed again).
///
/// ```
/// use actix_web::{App, HttpServer};
/// use suki_ambient_core::{NoopHandler, Verifier, WebhookEndpoint};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let verifier = Verifier::builder().secret("secret").build()?;
/// let endpoint = WebhookEndpoint::new(verifier, NoopHandler);
/// let server = HttpServer::new(move || {
///     App::new().route("/webhooks/suki", suki_ambient_actix::route(endpoint.clone()))
/// });
/// # let _ = server;
/// # Ok(())
/// # }
/// ```
pub fn route<H: EventHandler>(endpoint: WebhookEndpoint<H>) -> Route {
    web::post().to(move |req: HttpRequest, payload: web::Payload| {
        let endpoint = endpoint.clone();
        async move {
            WebhookResponse(
                match verify_request(req.headers(), payload.into_inner(), endpoint.verifier()).await
                {
                    Ok(delivery) => endpoint.handle_verified(delivery).await,
                    Err(err) => endpoint.reject(err),
                },
            )
        }
    })
}
