//! `outbound_jobs`: Chatwoot webhook work for WhatsApp, stored before the webhook is answered.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(OutboundJobs::Table)
                    .if_not_exists()
                    .col(big_integer(OutboundJobs::Id).primary_key().auto_increment())
                    .col(string(OutboundJobs::IntegrationId))
                    .col(big_integer(OutboundJobs::ChatwootMessageId))
                    .col(string(OutboundJobs::Kind))
                    .col(big_integer(OutboundJobs::ConversationId))
                    .col(text(OutboundJobs::Payload))
                    .col(string(OutboundJobs::State))
                    .col(integer(OutboundJobs::Attempts))
                    .col(integer(OutboundJobs::PartsSent))
                    .col(text(OutboundJobs::LastError))
                    .col(timestamp_with_time_zone(OutboundJobs::CreatedAt))
                    .col(timestamp_with_time_zone_null(OutboundJobs::ProcessedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_outbound_jobs_message_kind")
                    .table(OutboundJobs::Table)
                    .col(OutboundJobs::IntegrationId)
                    .col(OutboundJobs::ChatwootMessageId)
                    .col(OutboundJobs::Kind)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_outbound_jobs_pending")
                    .table(OutboundJobs::Table)
                    .col(OutboundJobs::IntegrationId)
                    .col(OutboundJobs::State)
                    .col(OutboundJobs::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(OutboundJobs::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum OutboundJobs {
    Table,
    Id,
    IntegrationId,
    ChatwootMessageId,
    Kind,
    ConversationId,
    Payload,
    State,
    Attempts,
    PartsSent,
    LastError,
    CreatedAt,
    ProcessedAt,
}
