//! `POST /v1/webhooks/chatwoot/{id}/{secret}`: Chatwoot's inbox webhook. Answered as soon as the event is
//! stored (Chatwoot gives up after 5 s and never retries); the work happens afterwards.

use actix_web::{HttpRequest, HttpResponse, web};

use super::read_body;
use crate::error::AppError;
use crate::integrations::webhooks::{self, Signature};
use crate::state::Shared;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/v1/webhooks/chatwoot/{id}/{secret}").route(web::post().to(receive)));
}

async fn receive(
    shared: web::Data<Shared>,
    http: web::Data<awc::Client>,
    path: web::Path<(String, String)>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, AppError> {
    let (id, secret) = path.into_inner();
    let body = read_body(&req, payload).await?;
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let signature = Signature { signature: header("x-chatwoot-signature"), timestamp: header("x-chatwoot-timestamp") };
    webhooks::accept(&shared, &http, &id, &secret, signature, &body).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({"ok": true})))
}
