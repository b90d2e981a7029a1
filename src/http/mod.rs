//! HTTP routes. Handlers are thin: parse, authorize, call `integrations`, shape the answer.

mod integrations;
mod ops;
mod webhooks;

use std::future::{Ready, ready};

use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use futures_util::StreamExt as _;

use crate::error::AppError;
use crate::secret::constant_time_eq;
use crate::state::Shared;

/// Largest request body accepted on any route.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Registers every route, and the extractor error handlers that keep query, path and JSON errors in the
/// error envelope.
pub fn configure(cfg: &mut web::ServiceConfig) {
    let (query, path, json) = crate::error::extractor_configs(MAX_BODY_BYTES);
    cfg.app_data(query).app_data(path).app_data(json);
    cfg.configure(ops::configure).configure(integrations::configure).configure(webhooks::configure);
}

/// The edge every request passes: logs it by its route *pattern* (`/v1/webhooks/chatwoot/{id}/{secret}`),
/// never its raw path (webhook paths carry a secret), and puts the answers actix-web makes itself in the
/// error envelope: a resource asked with a method it does not serve answers an empty 405 with `Allow`,
/// which becomes [`AppError::MethodNotAllowed`] with the same `Allow`.
pub fn log_request<S>(
    req: actix_web::dev::ServiceRequest,
    service: &S,
) -> impl std::future::Future<Output = Result<actix_web::dev::ServiceResponse, actix_web::Error>> + use<S>
where
    S: actix_web::dev::Service<
            actix_web::dev::ServiceRequest,
            Response = actix_web::dev::ServiceResponse,
            Error = actix_web::Error,
        >,
{
    let method = req.method().clone();
    let started = std::time::Instant::now();
    let response = service.call(req);
    async move {
        let response = envelope_bare_405(response.await?);
        let route = response.request().match_pattern().unwrap_or_else(|| "(no route)".to_owned());
        let status = response.status().as_u16();
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        if route.starts_with("/v1/") {
            tracing::info!(%method, %route, status, elapsed_ms, "http request");
        } else {
            tracing::debug!(%method, %route, status, elapsed_ms, "http request");
        }
        Ok(response)
    }
}

/// A 405 that actix-web answered itself (no handler ran, so no `AppError` and no body) in the envelope.
fn envelope_bare_405(response: actix_web::dev::ServiceResponse) -> actix_web::dev::ServiceResponse {
    use actix_web::ResponseError as _;
    use actix_web::http::{StatusCode, header};
    let bare = response.status() == StatusCode::METHOD_NOT_ALLOWED
        && response.response().error().is_none()
        && !response.headers().contains_key(header::CONTENT_TYPE);
    if !bare {
        return response;
    }
    let allow = response.headers().get(header::ALLOW).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let (req, _) = response.into_parts();
    actix_web::dev::ServiceResponse::new(req, AppError::MethodNotAllowed { allow }.error_response())
}

/// Answer for unknown routes.
pub async fn not_found() -> Result<actix_web::HttpResponse, AppError> {
    Err(AppError::RouteNotFound)
}

/// Proof that the request carried `Authorization: Bearer <BRIDGE_TOKEN>` (compared in constant time).
pub struct BridgeAuth;

impl FromRequest for BridgeAuth {
    type Error = AppError;
    type Future = Ready<Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let Some(shared) = req.app_data::<web::Data<Shared>>() else { return ready(Err(AppError::Unauthorized)) };
        let presented = req
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim);
        ready(match presented {
            Some(token) if constant_time_eq(token, shared.settings.bridge_token.expose()) => Ok(Self),
            _ => Err(AppError::Unauthorized),
        })
    }
}

/// Reads the whole body, refusing more than [`MAX_BODY_BYTES`] with 413 (as early as `Content-Length`
/// allows, else while streaming).
pub async fn read_body(req: &HttpRequest, mut payload: web::Payload) -> Result<web::Bytes, AppError> {
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
        return Err(AppError::PayloadTooLarge { limit: MAX_BODY_BYTES });
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| AppError::InvalidBody(format!("could not read the body ({e})")))?;
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(AppError::PayloadTooLarge { limit: MAX_BODY_BYTES });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}
