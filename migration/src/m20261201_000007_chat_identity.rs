//! One person, one contact: `chats.avatar_url` (the picture last given to the Chatwoot contact) and
//! `chat_merges`, the audit of every merge of two chats that turned out to be one person.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(Table::alter().table(Chats::Table).add_column(text_null(Chats::AvatarUrl)).to_owned())
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ChatMerges::Table)
                    .if_not_exists()
                    .col(big_pk_auto(ChatMerges::Id))
                    .col(string(ChatMerges::IntegrationId))
                    .col(big_integer(ChatMerges::SurvivorChatId))
                    .col(big_integer(ChatMerges::MergedChatId))
                    .col(big_integer_null(ChatMerges::SurvivorContactId))
                    .col(big_integer_null(ChatMerges::MergedContactId))
                    .col(big_integer_null(ChatMerges::ConversationId))
                    .col(text(ChatMerges::Aliases))
                    .col(text(ChatMerges::Reason))
                    .col(timestamp_with_time_zone(ChatMerges::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_chat_merges_integration")
                    .table(ChatMerges::Table)
                    .col(ChatMerges::IntegrationId)
                    .col(ChatMerges::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(ChatMerges::Table).to_owned()).await?;
        manager.alter_table(Table::alter().table(Chats::Table).drop_column(Chats::AvatarUrl).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum Chats {
    Table,
    AvatarUrl,
}

#[derive(DeriveIden)]
enum ChatMerges {
    Table,
    Id,
    IntegrationId,
    SurvivorChatId,
    MergedChatId,
    SurvivorContactId,
    MergedContactId,
    ConversationId,
    Aliases,
    Reason,
    CreatedAt,
}
