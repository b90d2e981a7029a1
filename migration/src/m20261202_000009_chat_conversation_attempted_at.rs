//! `chats.conversation_attempted_at`: when the bridge last asked Chatwoot to open a conversation for the
//! chat and has not yet stored the answer. A process that dies, is paused past its lease or hands over
//! in between leaves it set: whoever relays the chat next waits until that call can no longer land, then
//! looks for the conversation before opening another (without it, a second conversation for one chat).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Chats::Table)
                    .add_column(timestamp_with_time_zone_null(Chats::ConversationAttemptedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(Table::alter().table(Chats::Table).drop_column(Chats::ConversationAttemptedAt).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Chats {
    Table,
    ConversationAttemptedAt,
}
