//! The `inbound_events` table: RyzeAPI events stored before they are acknowledged.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(InboundEvents::Table)
                    .if_not_exists()
                    .col(big_integer(InboundEvents::Id).primary_key().auto_increment())
                    .col(string(InboundEvents::IntegrationId))
                    .col(string_null(InboundEvents::EventId))
                    .col(string_null(InboundEvents::MessageKey))
                    .col(string(InboundEvents::ChatKey))
                    .col(string(InboundEvents::Kind))
                    .col(text(InboundEvents::Payload))
                    .col(string(InboundEvents::State))
                    .col(integer(InboundEvents::Attempts))
                    .col(timestamp_with_time_zone_null(InboundEvents::NextAttemptAt))
                    .col(text(InboundEvents::LastError))
                    .col(timestamp_with_time_zone(InboundEvents::ReceivedAt))
                    .col(timestamp_with_time_zone_null(InboundEvents::ProcessedAt))
                    .to_owned(),
            )
            .await?;
        // NULLs never collide in a unique index (SQLite and PostgreSQL alike), so events without an
        // event id or message id are simply not deduplicated on that key.
        for (name, column) in [
            ("ux_inbound_events_event_id", InboundEvents::EventId),
            ("ux_inbound_events_message_key", InboundEvents::MessageKey),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(InboundEvents::Table)
                        .col(InboundEvents::IntegrationId)
                        .col(column)
                        .unique()
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("ix_inbound_events_pending")
                    .table(InboundEvents::Table)
                    .col(InboundEvents::IntegrationId)
                    .col(InboundEvents::State)
                    .col(InboundEvents::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(InboundEvents::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum InboundEvents {
    Table,
    Id,
    IntegrationId,
    EventId,
    MessageKey,
    ChatKey,
    Kind,
    Payload,
    State,
    Attempts,
    NextAttemptAt,
    LastError,
    ReceivedAt,
    ProcessedAt,
}
