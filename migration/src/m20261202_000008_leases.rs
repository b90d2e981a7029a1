//! Several replicas on one PostgreSQL: `replicas` (each running bridge process and when it was last
//! seen) and `integration_leases` (which replica owns each integration, until when, and the epoch that
//! fences a former owner's writes). Rows of `integration_leases` are never deleted: the epoch of an
//! integration only ever grows. SQLite gets the tables too (one schema), but a single process never uses
//! them.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Replicas::Table)
                    .if_not_exists()
                    .col(string(Replicas::Id).primary_key())
                    .col(text(Replicas::Url))
                    .col(timestamp_with_time_zone(Replicas::StartedAt))
                    .col(timestamp_with_time_zone(Replicas::SeenAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(IntegrationLeases::Table)
                    .if_not_exists()
                    .col(string(IntegrationLeases::IntegrationId).primary_key())
                    .col(string_null(IntegrationLeases::Owner))
                    .col(big_integer(IntegrationLeases::Epoch).default(0))
                    .col(timestamp_with_time_zone(IntegrationLeases::ExpiresAt))
                    .col(timestamp_with_time_zone_null(IntegrationLeases::AcquiredAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_integration_leases_owner")
                    .table(IntegrationLeases::Table)
                    .col(IntegrationLeases::Owner)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(IntegrationLeases::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(Replicas::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum Replicas {
    Table,
    Id,
    Url,
    StartedAt,
    SeenAt,
}

#[derive(DeriveIden)]
enum IntegrationLeases {
    Table,
    IntegrationId,
    Owner,
    Epoch,
    ExpiresAt,
    AcquiredAt,
}
