//! The `integrations` table.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Integrations::Table)
                    .if_not_exists()
                    .col(string(Integrations::Id).primary_key())
                    .col(string(Integrations::Instance).unique_key())
                    .col(string(Integrations::RyzeapiUrl))
                    .col(text(Integrations::InstanceTokenSealed))
                    .col(string(Integrations::ChatwootBaseUrl))
                    .col(big_integer(Integrations::ChatwootAccountId))
                    .col(text(Integrations::ChatwootTokenSealed))
                    .col(big_integer(Integrations::InboxId))
                    .col(string(Integrations::InboxName))
                    .col(text(Integrations::WebhookSecretSealed))
                    .col(text_null(Integrations::SigningSecretSealed))
                    .col(boolean(Integrations::SignMessages))
                    .col(boolean(Integrations::IgnoreGroups))
                    .col(boolean(Integrations::StartAsPending))
                    .col(boolean(Integrations::ReopenResolved))
                    .col(string(Integrations::Status))
                    .col(text(Integrations::LastError))
                    .col(string_null(Integrations::ChatwootVersion))
                    .col(timestamp_with_time_zone(Integrations::CreatedAt))
                    .col(timestamp_with_time_zone(Integrations::UpdatedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(Integrations::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum Integrations {
    Table,
    Id,
    Instance,
    RyzeapiUrl,
    InstanceTokenSealed,
    ChatwootBaseUrl,
    ChatwootAccountId,
    ChatwootTokenSealed,
    InboxId,
    InboxName,
    WebhookSecretSealed,
    SigningSecretSealed,
    SignMessages,
    IgnoreGroups,
    StartAsPending,
    ReopenResolved,
    Status,
    LastError,
    ChatwootVersion,
    CreatedAt,
    UpdatedAt,
}
