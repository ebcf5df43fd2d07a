//! `router`: the ready-made endpoint (verify → deduplicate → dispatch → answer).

use axum::Router;
use axum::extract::{Request, State};
use axum::routing::post;
use suki_ambient_core::{EventHandler, WebhookEndpoint};

use crate::WebhookResponse;
use crate::extract::read_verified;

/// A router answering `POST /` with the ready-made `endpoint`: verifies, deduplicates through
/// the endpoint's replay guard, dispatches to its handler, and answers 200 (also for duplicates
/// and unknown statuses), 4xx for bad input, 500 only when the handler fails.
///
/// Build the [`WebhookEndpoint`] once (verifier, handler, guard, policies) and mount the router
/// with `nest`:
///
/// ```
/// use axum::Router;
/// use suki_ambient_core::{NoopHandler, Verifier, WebhookEndpoint};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let verifier = Verifier::builder().secret("secret").build()?;
/// let endpoint = WebhookEndpoint::new(verifier, NoopHandler);
/// let app: Router = Router::new().nest("/webhooks/suki", suki_ambient_axum::router(endpoint));
/// # Ok(())
/// # }
/// ```
pub fn router<S, H>(endpoint: WebhookEndpoint<H>) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    H: EventHandler,
{
    Router::new()
        .route("/", post(handle::<H>))
        .with_state(endpoint)
}

async fn handle<H: EventHandler>(
    State(endpoint): State<WebhookEndpoint<H>>,
    req: Request,
) -> WebhookResponse {
    WebhookResponse(match read_verified(req, endpoint.verifier()).await {
        Ok(delivery) => endpoint.handle_verified(delivery).await,
        Err(err) => endpoint.reject(err),
    })
}
