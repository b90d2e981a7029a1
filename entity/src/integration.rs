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

/// An integration's `status`. The column stays text read as a `String` (not an `ActiveEnum`), so a row
/// whose status this build does not know (set by hand, or by a newer build) still loads and the doctor
/// can name it; code reads it with [`Model::status`] and writes it with [`Status::as_str`].
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// Relaying.
    Active,
    /// Stopped by the operator; agent replies that arrive meanwhile are kept.
    Paused,
    /// Stopped by a failure that needs someone (the reason is in `last_error`); retried.
    Error,
}

impl Status {
    /// Every status, in the order they are shown.
    pub const ALL: [Self; 3] = [Self::Active, Self::Paused, Self::Error];

    /// The stored (and shown) text.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Paused => "paused",
            Self::Error => "error",
        }
    }

    /// A stored text read back; `None` for one no build writes.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == text)
    }
}

impl Model {
    /// The integration's status; `None` when the stored text is none of [`Status`].
    pub fn status(&self) -> Option<Status> {
        Status::parse(&self.status)
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

#[cfg(test)]
mod tests {
    use super::Status;

    #[test]
    fn statuses_round_trip() {
        for status in Status::ALL {
            assert_eq!(Status::parse(status.as_str()), Some(status));
        }
        assert_eq!(Status::ALL.map(Status::as_str), ["active", "paused", "error"]);
        assert_eq!(Status::parse("Active"), None);
        assert_eq!(Status::parse(""), None);
    }
}
