//! One activated WhatsApp instance ↔ Chatwoot inbox pair.
//!
//! Columns ending in `_sealed` hold secrets sealed with XChaCha20-Poly1305 (see the service's `crypto`
//! module); they are never stored or returned in clear.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "integrations")]
pub struct Model {
    /// `int_` followed by 20 random base32 characters.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// RyzeAPI instance name; one integration per instance.
    #[sea_orm(unique)]
    pub instance: String,
    pub ryzeapi_url: String,
    pub instance_token_sealed: String,
    pub chatwoot_base_url: String,
    pub chatwoot_account_id: i64,
    pub chatwoot_token_sealed: String,
    pub inbox_id: i64,
    pub inbox_name: String,
    /// The random path secret of this integration's webhook URL.
    pub webhook_secret_sealed: String,
    /// Chatwoot's webhook signing secret (`inbox.secret`, Chatwoot ≥ 4.13), when Chatwoot gave one.
    pub signing_secret_sealed: Option<String>,
    pub sign_messages: bool,
    pub ignore_groups: bool,
    pub start_as_pending: bool,
    pub reopen_resolved: bool,
    /// `active`, `paused` or `error`.
    pub status: String,
    /// Plain-words reason for `error`; empty otherwise.
    pub last_error: String,
    /// Chatwoot version as reported by `GET /api`, when known.
    pub chatwoot_version: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
