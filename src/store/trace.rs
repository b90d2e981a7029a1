//! The rows one message left behind, for the message trace (`integrations::trace`): the events that name
//! its WhatsApp id, its mappings, the jobs of its Chatwoot message, and what queues before it. Bounded
//! reads (a message has a handful of rows); payloads are never read (the rows come back with an empty one).

use entity::{chat, inbound_event, message_map, outbound_job};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait as _, DatabaseConnection, EntityTrait as _, Iterable as _, PaginatorTrait as _, QueryFilter as _,
    QueryOrder as _, QuerySelect as _,
};

use super::StoreError;
use super::events::WorkState;

/// Rows per kind at most.
const ROWS: u64 = 50;

/// The stored events about WhatsApp message `wa_id` (the message, its edits, reactions, revokes), oldest
/// first, without their payloads.
pub async fn events_about(
    db: &DatabaseConnection,
    integration_id: &str,
    wa_id: &str,
) -> Result<Vec<inbound_event::Model>, StoreError> {
    use inbound_event::Column;
    // The key classes `ryzeapi::event::Envelope::routing` gives message events.
    let keys: Vec<String> =
        ["msg", "edit", "revoke", "reaction"].iter().map(|class| format!("{class}:{wa_id}")).collect();
    Ok(inbound_event::Entity::find()
        .select_only()
        .columns(Column::iter().filter(|c| !matches!(c, Column::Payload)))
        .column_as(Expr::val(""), "payload")
        .filter(Column::IntegrationId.eq(integration_id))
        .filter(Column::MessageKey.is_in(keys))
        .order_by_asc(Column::Id)
        .limit(ROWS)
        .all(db)
        .await?)
}

/// The mappings of WhatsApp message `wa_id` (one, or one per part of a reply sent in parts).
pub async fn mappings_by_wa_id(
    db: &DatabaseConnection,
    integration_id: &str,
    wa_id: &str,
) -> Result<Vec<message_map::Model>, StoreError> {
    use message_map::Column;
    Ok(message_map::Entity::find()
        .filter(Column::IntegrationId.eq(integration_id))
        .filter(Column::WaId.eq(wa_id))
        .order_by_asc(Column::Id)
        .limit(ROWS)
        .all(db)
        .await?)
}

/// The mappings of Chatwoot message `chatwoot_id`.
pub async fn mappings_by_chatwoot_id(
    db: &DatabaseConnection,
    integration_id: &str,
    chatwoot_id: i64,
) -> Result<Vec<message_map::Model>, StoreError> {
    use message_map::Column;
    Ok(message_map::Entity::find()
        .filter(Column::IntegrationId.eq(integration_id))
        .filter(Column::ChatwootMessageId.eq(chatwoot_id))
        .order_by_asc(Column::Id)
        .limit(ROWS)
        .all(db)
        .await?)
}

/// The jobs of Chatwoot message `chatwoot_id` (send, retries, delete, ticks), oldest first, without payloads.
pub async fn jobs_about(
    db: &DatabaseConnection,
    integration_id: &str,
    chatwoot_id: i64,
) -> Result<Vec<outbound_job::Model>, StoreError> {
    use outbound_job::Column;
    Ok(outbound_job::Entity::find()
        .select_only()
        .columns(Column::iter().filter(|c| !matches!(c, Column::Payload)))
        .column_as(Expr::val(""), "payload")
        .filter(Column::IntegrationId.eq(integration_id))
        .filter(Column::ChatwootMessageId.eq(chatwoot_id))
        .order_by_asc(Column::Id)
        .limit(ROWS)
        .all(db)
        .await?)
}

/// Pending events of the chat stored before event `id`: what it waits behind.
pub async fn pending_before_event(
    db: &DatabaseConnection,
    integration_id: &str,
    chat_key: &str,
    id: i64,
) -> Result<u64, StoreError> {
    use inbound_event::Column;
    Ok(inbound_event::Entity::find()
        .filter(Column::IntegrationId.eq(integration_id))
        .filter(Column::ChatKey.eq(chat_key))
        .filter(Column::State.eq(WorkState::Pending))
        .filter(Column::Id.lt(id))
        .count(db)
        .await?)
}

/// Pending jobs of the conversation about earlier Chatwoot messages: what job `chatwoot_id` waits behind.
pub async fn pending_before_job(
    db: &DatabaseConnection,
    integration_id: &str,
    conversation_id: i64,
    chatwoot_id: i64,
) -> Result<u64, StoreError> {
    use outbound_job::Column;
    Ok(outbound_job::Entity::find()
        .filter(Column::IntegrationId.eq(integration_id))
        .filter(Column::ConversationId.eq(conversation_id))
        .filter(Column::State.eq(WorkState::Pending))
        .filter(Column::ChatwootMessageId.lt(chatwoot_id))
        .count(db)
        .await?)
}

pub async fn chat(db: &DatabaseConnection, id: i64) -> Result<Option<chat::Model>, StoreError> {
    Ok(chat::Entity::find_by_id(id).one(db).await?)
}
