//! `message_map.attempted_at`: when the last Chatwoot call for the message started, so that a replay
//! waits until that call can no longer land before it looks for the message.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(MessageMap::Table)
                    .add_column(timestamp_with_time_zone_null(MessageMap::AttemptedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(Table::alter().table(MessageMap::Table).drop_column(MessageMap::AttemptedAt).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum MessageMap {
    Table,
    AttemptedAt,
}
