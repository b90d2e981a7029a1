//! Migration CLI: `DATABASE_URL=… cargo run -p migration -- up` (also `status`, `down`, `fresh`).

#[tokio::main]
async fn main() {
    sea_orm_migration::cli::run_cli(migration::Migrator).await;
}
