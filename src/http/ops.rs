//! Operations routes (no token needed, no secrets shown): health, readiness, metrics, OpenAPI.

use actix_web::{HttpRequest, HttpResponse, web};

use crate::error::AppError;
use crate::state::Shared;
use crate::store;
use crate::store::events::WorkState;
use crate::telemetry::{Exposition, Gauge};

/// The OpenAPI document of the management API, shipped with the project.
pub const OPENAPI: &str = include_str!("../../openapi.json");

/// Each path is a resource of its own, so that another method on it answers 405 with `Allow: GET` (a
/// bare `cfg.route` guards the whole path and would answer 404).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/healthz").route(web::get().to(healthz)))
        .service(web::resource("/readyz").route(web::get().to(readyz)))
        .service(web::resource("/metrics").route(web::get().to(metrics)))
        .service(web::resource("/v1/openapi.json").route(web::get().to(openapi)));
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

async fn readyz(shared: web::Data<Shared>) -> Result<HttpResponse, AppError> {
    let services = shared.services()?;
    store::ping(&services.db).await.map_err(|e| AppError::Internal { detail: format!("database unreachable: {e}") })?;
    Ok(HttpResponse::Ok().json(serde_json::json!({"status": "ready"})))
}

/// OpenMetrics for a scraper that asks for it (Prometheus does), the text format 0.0.4 otherwise.
async fn metrics(request: HttpRequest, shared: web::Data<Shared>) -> Result<HttpResponse, AppError> {
    let mut gauges = vec![Gauge {
        name: "bridge_ready",
        help: "1 once migrations and boot have finished.",
        labels: vec![],
        value: if shared.services().is_ok() { 1.0 } else { 0.0 },
    }];
    if let Ok(services) = shared.services() {
        let counts = store::integrations::count_by_status(&services.reader).await?;
        for status in crate::integrations::Status::ALL.map(crate::integrations::Status::as_str) {
            let count = counts.iter().find(|(s, _)| s == status).map_or(0, |(_, n)| *n);
            gauges.push(Gauge {
                name: "bridge_integrations",
                help: "Integrations by status.",
                labels: vec![("status", status.to_owned())],
                value: count as f64,
            });
        }
    }
    if let Ok(services) = shared.services() {
        let (events_pending, events_failed) = store::events::totals(&services.reader).await?;
        let (jobs_pending, jobs_failed) = store::jobs::totals(&services.reader).await?;
        for (queue, state, value) in [
            ("to_chatwoot", WorkState::Pending, events_pending),
            ("to_chatwoot", WorkState::Failed, events_failed),
            ("to_whatsapp", WorkState::Pending, jobs_pending),
            ("to_whatsapp", WorkState::Failed, jobs_failed),
        ] {
            gauges.push(Gauge {
                name: "bridge_queue_items",
                help: "Stored work by direction and state (pending: not done yet; failed: failed for good).",
                labels: vec![("queue", queue.to_owned()), ("state", state.as_str().to_owned())],
                value: value as f64,
            });
        }
    }
    gauges.extend(shared.governors.gauges());
    for (state, count) in shared.live.count_by_state() {
        gauges.push(Gauge {
            name: "bridge_ryzeapi_links",
            help: "RyzeAPI WebSocket links by state.",
            labels: vec![("state", state.as_str().to_owned())],
            value: count as f64,
        });
    }
    let accept = request.headers().get(actix_web::http::header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Exposition::negotiate(accept);
    let body = shared
        .metrics
        .render(gauges, format)
        .map_err(|e| AppError::Internal { detail: format!("writing the metrics failed: {e}") })?;
    Ok(HttpResponse::Ok().content_type(format.content_type()).insert_header(("vary", "accept")).body(body))
}

async fn openapi() -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(OPENAPI)
}
