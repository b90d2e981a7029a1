//! Schema migrations, run by the service at startup (and by `cargo run -p migration -- up|status|…`).

pub use sea_orm_migration::prelude::*;

mod m20261121_000001_create_integrations;
mod m20261121_000002_create_inbound_events;
mod m20261121_000003_create_chats_and_message_map;
mod m20261121_000004_create_outbound_jobs;
mod m20261121_000005_message_map_attempted_at;
mod m20261121_000006_outbound_jobs_sending_at;
mod m20261201_000007_chat_identity;
mod m20261202_000008_leases;
mod m20261202_000009_chat_conversation_attempted_at;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261121_000001_create_integrations::Migration),
            Box::new(m20261121_000002_create_inbound_events::Migration),
            Box::new(m20261121_000003_create_chats_and_message_map::Migration),
            Box::new(m20261121_000004_create_outbound_jobs::Migration),
            Box::new(m20261121_000005_message_map_attempted_at::Migration),
            Box::new(m20261121_000006_outbound_jobs_sending_at::Migration),
            Box::new(m20261201_000007_chat_identity::Migration),
            Box::new(m20261202_000008_leases::Migration),
            Box::new(m20261202_000009_chat_conversation_attempted_at::Migration),
        ]
    }
}
