//! `outbound_jobs.sending_at`: when a RyzeAPI send of the job's next part started and its outcome is not
//! known yet, so that a replay looks for WhatsApp's echo of that send before sending again.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(OutboundJobs::Table)
                    .add_column(timestamp_with_time_zone_null(OutboundJobs::SendingAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(Table::alter().table(OutboundJobs::Table).drop_column(OutboundJobs::SendingAt).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum OutboundJobs {
    Table,
    SendingAt,
}
