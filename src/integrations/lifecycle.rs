//! Deactivate, pause and resume.

use entity::integration::Model;

use super::{Status, chatwoot_client, open_sealed, sealed};
use crate::chatwoot::{ChatwootTarget, Failure};
use crate::error::{AppError, ChatwootContext};
use crate::state::Shared;
use crate::store;

/// What `DELETE /v1/integrations/{id}` did.
#[derive(Debug, serde::Serialize)]
pub struct Deactivated {
    pub id: String,
    pub deleted: bool,
    pub inbox_deleted: bool,
    /// Why the inbox was not deleted (empty when it was).
    pub detail: String,
}

/// Deletes the Chatwoot inbox (unless `keep_inbox`), then the integration. Chatwoot being unreachable does
/// not keep the integration alive: it is removed and the answer says what happened to the inbox.
pub async fn deactivate(
    shared: &Shared,
    http: &awc::Client,
    id: &str,
    keep_inbox: bool,
) -> Result<Deactivated, AppError> {
    let services = shared.services()?;
    let model = find(shared, id).await?;
    let _guard = services.instance_locks.lock(&model.instance).await;
    // Re-read under the lock: a concurrent delete may have won.
    let model = find(shared, id).await?;

    super::stop_actor(shared, &model.id).await;
    let (inbox_deleted, detail) = if keep_inbox {
        (false, "inbox kept (keepInbox=true)".to_owned())
    } else {
        delete_inbox(shared, http, &model).await
    };
    store::events::delete_for(&services.db, &model.id).await?;
    store::jobs::delete_for(&services.db, &model.id).await?;
    store::messages::delete_for(&services.db, &model.id).await?;
    store::chats::delete_for(&services.db, &model.id).await?;
    store::integrations::delete(&services.db, &model.id).await?;
    shared.webhook_keys.forget(&model.id);
    tracing::info!(integration_id = %model.id, instance = %model.instance, inbox_deleted, "integration deactivated");
    Ok(Deactivated { id: model.id, deleted: true, inbox_deleted, detail })
}

async fn delete_inbox(shared: &Shared, http: &awc::Client, model: &Model) -> (bool, String) {
    let Ok(services) = shared.services() else { return (false, "bridge is starting".into()) };
    let token = match open_sealed(&services.sealer, &model.chatwoot_token_sealed, &model.id, sealed::CHATWOOT_TOKEN) {
        Ok(token) => token,
        Err(e) => return (false, format!("inbox not deleted: {e}")),
    };
    let target = ChatwootTarget {
        base_url: model.chatwoot_base_url.clone(),
        account_id: model.chatwoot_account_id,
        token: token.clone(),
    };
    match chatwoot_client(shared, http, target, None).delete_inbox(model.inbox_id).await {
        Ok(()) => (true, String::new()),
        Err(e) if e.failure() == Failure::NotFound => (true, "the inbox was already gone in Chatwoot".into()),
        Err(e) => {
            let ctx = ChatwootContext {
                base_url: &model.chatwoot_base_url,
                account_id: model.chatwoot_account_id,
                action: "deleting the inbox",
            };
            let why = AppError::from_chatwoot(&e, ctx).redacted(&[token.expose()]);
            tracing::warn!(integration_id = %model.id, inbox_id = model.inbox_id, error = %why, "could not delete the Chatwoot inbox");
            (false, why.to_string())
        }
    }
}

/// Stops relaying. Agent replies that arrive meanwhile are kept.
pub async fn pause(shared: &Shared, id: &str) -> Result<Model, AppError> {
    set_status(shared, id, Status::Paused).await
}

/// Relays again; clears a previous error (the next failure sets it again).
pub async fn resume(shared: &Shared, id: &str) -> Result<Model, AppError> {
    set_status(shared, id, Status::Active).await
}

async fn set_status(shared: &Shared, id: &str, new_status: Status) -> Result<Model, AppError> {
    let services = shared.services()?;
    let model = find(shared, id).await?;
    let _guard = services.instance_locks.lock(&model.instance).await;
    let updated = store::integrations::set_status(&services.db, id, new_status, "")
        .await?
        .ok_or(AppError::IntegrationNotFound)?;
    if new_status == Status::Paused {
        super::stop_actor(shared, id).await;
    } else {
        super::start_actor(shared, id).await;
    }
    tracing::info!(integration_id = %id, status = new_status.as_str(), "integration status changed");
    Ok(updated)
}

/// The integration, or 404.
pub async fn find(shared: &Shared, id: &str) -> Result<Model, AppError> {
    let services = shared.services()?;
    store::integrations::find(&services.db, id).await?.ok_or(AppError::IntegrationNotFound)
}

/// The chats of an integration merged because they turned out to be one person, newest first.
pub async fn merges(shared: &Shared, id: &str) -> Result<Vec<entity::chat_merge::Model>, AppError> {
    let services = shared.services()?;
    find(shared, id).await?;
    Ok(store::chats::merges(&services.reader, id).await?)
}

/// All integrations, or the one of `instance`.
pub async fn list(shared: &Shared, instance: Option<&str>) -> Result<Vec<Model>, AppError> {
    let services = shared.services()?;
    Ok(store::integrations::list(&services.db, instance).await?)
}
