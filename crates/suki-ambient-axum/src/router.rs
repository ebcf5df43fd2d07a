//! `router`: the ready-made endpoint (verify → deduplicate → dispatch → answer).

use axum::Router;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::post;
use suki_ambient_core::{EventHandler, Verifier, WebhookEndpoint};

use crate::extract::read_verified;
use crate::rejection::json_response;

/// A router answering `POST /` with the ready-made endpoint: verifies, deduplicates through an
/// in-memory replay guard, dispatches to `handler`, and answers 200 (also for duplicates and
/// unknown statuses), 4xx for bad input, 500 only when `handler` fails.
///
/// Mount it with `nest`:
///
/// ```
/// use axum::Router;
/// use suki_ambient_core::{NoopHandler, Verifier};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let verifier = Verifier::builder().secret("secret").build()?;
/// let app: Router = Router::new().nest("/webhooks/suki", suki_ambient_axum::router(verifier, NoopHandler));
/// # Ok(())
/// # }
/// ```
pub fn router<S, H>(verifier: Verifier, handler: H) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    H: EventHandler,
{
    router_with(WebhookEndpoint::new(verifier, handler))
}

/// [`router`] for a configured [`WebhookEndpoint`] (e.g. a shared replay guard or another TTL).
pub fn router_with<S, H>(endpoint: WebhookEndpoint<H>) -> Router<S>
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
) -> Response {
    let response = match read_verified(req, endpoint.verifier()).await {
        Ok(delivery) => endpoint.handle_verified(delivery).await,
        Err(err) => endpoint.reject(err),
    };
    json_response(response.status, response.body)
}
