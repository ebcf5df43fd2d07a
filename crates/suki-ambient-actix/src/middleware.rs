//! `VerifyWebhook`: middleware that verifies before the handler runs.

use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::rc::Rc;

use actix_web::body::EitherBody;
use actix_web::dev::{Payload, Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::{Error, HttpMessage, ResponseError};

use suki_ambient_core::Verifier;
use suki_ambient_core::adapter::log_rejection;

use crate::WebhookRejection;
use crate::extract::verify_request;

/// Verifies every request before the wrapped service: refused requests get the 4xx of
/// [`WebhookRejection`]; accepted ones reach the handler with the same body and the
/// [`VerifiedDelivery`](suki_ambient_core::VerifiedDelivery) in request extensions
/// (`web::ReqData<VerifiedDelivery>`).
///
/// # Example
///
/// ```
/// use actix_web::{App, web};
/// use suki_ambient_actix::{VerifiedDelivery, VerifyWebhook};
/// use suki_ambient_core::Verifier;
///
/// async fn receive(delivery: web::ReqData<VerifiedDelivery>) -> &'static str {
///     // enqueue delivery.body, parse later
///     "ok"
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let verifier = Verifier::builder().secret("secret").build()?;
/// let app = App::new().service(
///     web::resource("/webhooks/suki")
///         .wrap(VerifyWebhook::new(verifier))
///         .route(web::post().to(receive)),
/// );
/// # let _ = app;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct VerifyWebhook {
    verifier: Verifier,
}

impl VerifyWebhook {
    /// Middleware verifying with `verifier`.
    pub fn new(verifier: Verifier) -> Self {
        Self { verifier }
    }
}

impl<S, B> Transform<S, ServiceRequest> for VerifyWebhook
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Transform = VerifyWebhookMiddleware<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(VerifyWebhookMiddleware {
            service: Rc::new(service),
            verifier: self.verifier.clone(),
        }))
    }
}

/// The service made by [`VerifyWebhook`].
#[derive(Debug)]
pub struct VerifyWebhookMiddleware<S> {
    service: Rc<S>,
    verifier: Verifier,
}

impl<S, B> Service<ServiceRequest> for VerifyWebhookMiddleware<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Error>>>>;

    forward_ready!(service);

    fn call(&self, mut req: ServiceRequest) -> Self::Future {
        let service = Rc::clone(&self.service);
        let verifier = self.verifier.clone();
        Box::pin(async move {
            let payload = req.take_payload();
            match verify_request(req.headers(), payload, &verifier).await {
                Ok(delivery) => {
                    req.set_payload(Payload::from(delivery.body.clone()));
                    req.extensions_mut().insert(delivery);
                    service
                        .call(req)
                        .await
                        .map(ServiceResponse::map_into_left_body)
                }
                Err(err) => {
                    log_rejection(&err, &verifier);
                    let response = WebhookRejection(err).error_response();
                    Ok(req.into_response(response).map_into_right_body())
                }
            }
        })
    }
}
