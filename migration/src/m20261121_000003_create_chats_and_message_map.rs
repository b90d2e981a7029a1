//! `chats`, `chat_aliases` and `message_map`.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Chats::Table)
                    .if_not_exists()
                    .col(big_integer(Chats::Id).primary_key().auto_increment())
                    .col(string(Chats::IntegrationId))
                    .col(string(Chats::ChatKey))
                    .col(string(Chats::Kind))
                    .col(string(Chats::Name))
                    .col(big_integer_null(Chats::ContactId))
                    .col(string_null(Chats::ContactSourceId))
                    .col(big_integer_null(Chats::ConversationId))
                    .col(string_null(Chats::ConversationStatus))
                    .col(timestamp_with_time_zone(Chats::CreatedAt))
                    .col(timestamp_with_time_zone(Chats::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        unique(manager, "ux_chats_key", Chats::Table, [Chats::IntegrationId, Chats::ChatKey]).await?;
        manager
            .create_table(
                Table::create()
                    .table(ChatAliases::Table)
                    .if_not_exists()
                    .col(big_integer(ChatAliases::Id).primary_key().auto_increment())
                    .col(string(ChatAliases::IntegrationId))
                    .col(string(ChatAliases::Alias))
                    .col(big_integer(ChatAliases::ChatId))
                    .to_owned(),
            )
            .await?;
        unique(manager, "ux_chat_aliases", ChatAliases::Table, [ChatAliases::IntegrationId, ChatAliases::Alias])
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(MessageMap::Table)
                    .if_not_exists()
                    .col(big_integer(MessageMap::Id).primary_key().auto_increment())
                    .col(string(MessageMap::IntegrationId))
                    .col(string(MessageMap::WaId))
                    .col(big_integer_null(MessageMap::ChatwootMessageId))
                    .col(big_integer_null(MessageMap::ConversationId))
                    .col(big_integer(MessageMap::ChatId))
                    .col(string(MessageMap::Direction))
                    .col(string(MessageMap::State))
                    .col(string_null(MessageMap::LastStatus))
                    .col(timestamp_with_time_zone(MessageMap::CreatedAt))
                    .to_owned(),
            )
            .await?;
        unique(manager, "ux_message_map_wa", MessageMap::Table, [MessageMap::IntegrationId, MessageMap::WaId]).await?;
        unique(
            manager,
            "ux_message_map_chatwoot",
            MessageMap::Table,
            [MessageMap::IntegrationId, MessageMap::ChatwootMessageId],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [MessageMap::Table.into_iden(), ChatAliases::Table.into_iden(), Chats::Table.into_iden()] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}

async fn unique<T: IntoIden + Copy + 'static, C: IntoIden + 'static>(
    manager: &SchemaManager<'_>,
    name: &str,
    table: T,
    columns: [C; 2],
) -> Result<(), DbErr> {
    let mut index = Index::create();
    index.name(name).table(table).unique();
    for column in columns {
        index.col(column);
    }
    manager.create_index(index.to_owned()).await
}

#[derive(DeriveIden, Clone, Copy)]
enum Chats {
    Table,
    Id,
    IntegrationId,
    ChatKey,
    Kind,
    Name,
    ContactId,
    ContactSourceId,
    ConversationId,
    ConversationStatus,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum ChatAliases {
    Table,
    Id,
    IntegrationId,
    Alias,
    ChatId,
}

#[derive(DeriveIden, Clone, Copy)]
enum MessageMap {
    Table,
    Id,
    IntegrationId,
    WaId,
    ChatwootMessageId,
    ConversationId,
    ChatId,
    Direction,
    State,
    LastStatus,
    CreatedAt,
}
