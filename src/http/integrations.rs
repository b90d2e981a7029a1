//! The management API RyzeAPI calls (contract §2): `/v1/integrations…`.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::{BridgeAuth, read_body};
use crate::error::AppError;
use crate::integrations::activation::{self, ActivateRequest};
use crate::integrations::lifecycle;
use crate::integrations::view::{ActivationView, IntegrationView, LiveState};
use crate::state::Shared;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/v1/integrations/activate").route(web::post().to(activate)))
        .service(web::resource("/v1/integrations").route(web::get().to(list)))
        .service(web::resource("/v1/integrations/{id}").route(web::get().to(show)).route(web::delete().to(delete)))
        .service(web::resource("/v1/integrations/{id}/pause").route(web::post().to(pause)))
        .service(web::resource("/v1/integrations/{id}/resume").route(web::post().to(resume)))
        .service(web::resource("/v1/integrations/{id}/merges").route(web::get().to(merges)))
        .service(web::resource("/v1/integrations/{id}/trace").route(web::get().to(trace)));
}

async fn activate(
    _auth: BridgeAuth,
    shared: web::Data<Shared>,
    http: web::Data<awc::Client>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, AppError> {
    shared.services()?;
    let body = read_body(&req, payload).await?;
    let request = ActivateRequest::parse(&body)?;
    let activated = activation::activate(&shared, &http, request).await?;
    let view = ActivationView::from(&activated.integration);
    Ok(if activated.created { HttpResponse::Created().json(view) } else { HttpResponse::Ok().json(view) })
}

#[derive(Deserialize)]
struct ListQuery {
    instance: Option<String>,
}

async fn list(
    _auth: BridgeAuth,
    shared: web::Data<Shared>,
    http: web::Data<awc::Client>,
    req: HttpRequest,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, AppError> {
    let models = lifecycle::list(&shared, query.instance.as_deref()).await?;
    let mut integrations = Vec::with_capacity(models.len());
    for model in models {
        let live = LiveState::of(&shared, &model.id, &model.chatwoot_base_url).await?;
        integrations.push(IntegrationView::new(model, live));
    }
    if req.headers().contains_key(crate::integrations::view::FORWARDED) {
        return Ok(HttpResponse::Ok().json(serde_json::json!({ "integrations": integrations })));
    }
    let integrations = crate::integrations::view::with_owners_views(&shared, &http, integrations).await;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "integrations": integrations })))
}

async fn show(
    _auth: BridgeAuth,
    shared: web::Data<Shared>,
    http: web::Data<awc::Client>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let model = lifecycle::find(&shared, &id).await?;
    if !req.headers().contains_key(crate::integrations::view::FORWARDED)
        && let Some(view) = crate::integrations::view::from_owner(&shared, &http, &model.id).await
    {
        return Ok(HttpResponse::Ok().json(view));
    }
    let live = LiveState::of(&shared, &model.id, &model.chatwoot_base_url).await?;
    Ok(HttpResponse::Ok().json(IntegrationView::new(model, live)))
}

#[derive(Deserialize)]
struct DeleteQuery {
    #[serde(rename = "keepInbox", default)]
    keep_inbox: bool,
}

async fn delete(
    _auth: BridgeAuth,
    shared: web::Data<Shared>,
    http: web::Data<awc::Client>,
    id: web::Path<String>,
    query: web::Query<DeleteQuery>,
) -> Result<HttpResponse, AppError> {
    let done = lifecycle::deactivate(&shared, &http, &id, query.keep_inbox).await?;
    Ok(HttpResponse::Ok().json(done))
}

async fn pause(_auth: BridgeAuth, shared: web::Data<Shared>, id: web::Path<String>) -> Result<HttpResponse, AppError> {
    let model = lifecycle::pause(&shared, &id).await?;
    let live = LiveState::of(&shared, &model.id, &model.chatwoot_base_url).await?;
    Ok(HttpResponse::Ok().json(IntegrationView::new(model, live)))
}

async fn resume(_auth: BridgeAuth, shared: web::Data<Shared>, id: web::Path<String>) -> Result<HttpResponse, AppError> {
    let model = lifecycle::resume(&shared, &id).await?;
    let live = LiveState::of(&shared, &model.id, &model.chatwoot_base_url).await?;
    Ok(HttpResponse::Ok().json(IntegrationView::new(model, live)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TraceQuery {
    #[serde(rename = "waId")]
    wa_id: Option<String>,
    #[serde(rename = "chatwootMessageId")]
    chatwoot_message_id: Option<i64>,
}

/// A WhatsApp message id as the trace route takes it (the `waId` pattern of openapi.json): 1–128 printable
/// ASCII characters without spaces, which every id WhatsApp and whatsmeow make is.
fn is_whatsapp_message_id(id: &str) -> bool {
    (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic())
}

/// Every stage of one message, by its WhatsApp id or its Chatwoot id (exactly one of the two).
async fn trace(
    _auth: BridgeAuth,
    shared: web::Data<Shared>,
    http: web::Data<awc::Client>,
    req: HttpRequest,
    id: web::Path<String>,
    query: web::Query<TraceQuery>,
) -> Result<HttpResponse, AppError> {
    use crate::integrations::trace::{self, Subject};
    let subject = match (&query.wa_id, query.chatwoot_message_id) {
        (Some(wa_id), None) if is_whatsapp_message_id(wa_id) => Subject::WhatsApp(wa_id.clone()),
        (None, Some(cw)) if cw > 0 => Subject::Chatwoot(cw),
        _ => {
            return Err(AppError::InvalidQuery(
                "give exactly one of `waId` (a WhatsApp message id: up to 128 printable ASCII characters, no spaces) or `chatwootMessageId` (a positive number)".to_owned(),
            ));
        }
    };
    let model = lifecycle::find(&shared, &id).await?;
    if !req.headers().contains_key(crate::integrations::view::FORWARDED)
        && let Some(path) = req.uri().path_and_query().map(|p| p.as_str().to_owned())
        && let Some(answer) = crate::integrations::view::forward_to_owner(&shared, &http, &model.id, &path).await
    {
        return Ok(HttpResponse::Ok().json(answer));
    }
    Ok(HttpResponse::Ok().json(trace::trace(&shared, &model.id, &subject).await?))
}

/// The audit of merged chats: which chats and contacts became one, when and why.
async fn merges(_auth: BridgeAuth, shared: web::Data<Shared>, id: web::Path<String>) -> Result<HttpResponse, AppError> {
    let merges: Vec<serde_json::Value> = lifecycle::merges(&shared, &id)
        .await?
        .into_iter()
        .map(|m| {
            serde_json::json!({
                "id": m.id, "survivor_chat_id": m.survivor_chat_id, "merged_chat_id": m.merged_chat_id,
                "contact_id": m.survivor_contact_id, "merged_contact_id": m.merged_contact_id,
                "conversation_id": m.conversation_id, "aliases": m.aliases.split(' ').collect::<Vec<_>>(),
                "reason": m.reason, "created_at": crate::integrations::view::timestamp(m.created_at),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "merges": merges })))
}
