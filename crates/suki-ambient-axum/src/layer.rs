//! `VerifyWebhookLayer`: a tower layer that verifies before the inner service runs.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::BoxError;
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::Request;
use suki_ambient_core::Verifier;
use suki_ambient_core::adapter::log_rejection;
use tower_layer::Layer;
use tower_service::Service;

use crate::WebhookRejection;
use crate::extract::verify_request;

/// Verifies every request before the inner service: refused requests get the 4xx of
/// [`WebhookRejection`]; accepted ones reach the inner service with the verified
/// [`VerifiedDelivery`](suki_ambient_core::VerifiedDelivery) in their extensions and the same
/// body bytes.
///
/// Works with axum routers (`Router::layer`, `MethodRouter::layer`) and any tower/hyper 1
/// service taking `Request<axum::body::Body>`.
///
/// # Example
///
/// ```
/// use axum::{Extension, Router, routing::post};
/// use suki_ambient_axum::{VerifiedDelivery, VerifyWebhookLayer};
/// use suki_ambient_core::Verifier;
///
/// async fn receive(Extension(delivery): Extension<VerifiedDelivery>) -> &'static str {
///     // enqueue delivery.body, parse later
///     "ok"
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let verifier = Verifier::builder().secret("secret").build()?;
/// let app: Router = Router::new()
///     .route("/webhooks/suki", post(receive))
///     .layer(VerifyWebhookLayer::new(verifier));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct VerifyWebhookLayer {
    verifier: Verifier,
}

impl VerifyWebhookLayer {
    /// A layer verifying with `verifier`.
    pub fn new(verifier: Verifier) -> Self {
        Self { verifier }
    }
}

impl<S> Layer<S> for VerifyWebhookLayer {
    type Service = VerifyWebhookService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        VerifyWebhookService {
            inner,
            verifier: self.verifier.clone(),
        }
    }
}

/// The service made by [`VerifyWebhookLayer`].
#[derive(Clone, Debug)]
pub struct VerifyWebhookService<S> {
    inner: S,
    verifier: Verifier,
}

impl<S, B> Service<Request<B>> for VerifyWebhookService<S>
where
    S: Service<Request<Body>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: http_body_util::BodyExt<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The service that was polled ready is the one to call; leave a clone in its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let verifier = self.verifier.clone();
        Box::pin(async move {
            let (mut parts, body) = req.into_parts();
            match verify_request(&parts.headers, Body::new(body), &verifier).await {
                Ok(delivery) => {
                    let body = Body::from(delivery.body.clone());
                    parts.extensions.insert(delivery);
                    inner.call(Request::from_parts(parts, body)).await
                }
                Err(err) => {
                    log_rejection(&err, &verifier);
                    Ok(WebhookRejection(err).into_response())
                }
            }
        })
    }
}
