//! WhatsApp message id ↔ Chatwoot message id, each unique per integration.
//!
//! A row is written *before* the Chatwoot message is created (`attempted`) so that a crash between
//! the Chatwoot call and the bookkeeping is noticed on replay, and resolved by looking the message up
//! instead of creating it twice.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "message_map")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub integration_id: String,
    pub wa_id: String,
    pub chatwoot_message_id: Option<i64>,
    pub conversation_id: Option<i64>,
    pub chat_id: i64,
    /// `incoming` (customer → Chatwoot), `outgoing` (phone or agent → WhatsApp).
    pub direction: Direction,
    /// `pending` (recorded), `attempted` (a Chatwoot call started; outcome unknown) or `created`.
    pub state: MappingState,
    /// Last tick set on the Chatwoot message (`sent`, `delivered`, `read`, `failed`), or `revoked`.
    pub last_status: Option<Tick>,
    pub created_at: DateTimeUtc,
    /// When the last Chatwoot call for this message started.
    pub attempted_at: Option<DateTimeUtc>,
}

/// Which way a message went, stored as Chatwoot's `message_type` of it (`incoming`, `outgoing`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum Direction {
    /// The customer's message, into Chatwoot.
    #[sea_orm(string_value = "incoming")]
    Incoming,
    /// Sent from the phone or by an agent, to WhatsApp.
    #[sea_orm(string_value = "outgoing")]
    Outgoing,
}

impl Direction {
    /// The stored text, which is also the Chatwoot `message_type`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Incoming => "incoming",
            Self::Outgoing => "outgoing",
        }
    }
}

/// How far the creation of the Chatwoot message got.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum MappingState {
    /// Recorded, no Chatwoot call made yet.
    #[sea_orm(string_value = "pending")]
    Pending,
    /// A Chatwoot call was started: it may or may not have created the message.
    #[sea_orm(string_value = "attempted")]
    Attempted,
    /// The Chatwoot message exists and its id is known.
    #[sea_orm(string_value = "created")]
    Created,
}

impl MappingState {
    /// The stored text.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Attempted => "attempted",
            Self::Created => "created",
        }
    }
}

/// The last tick set on a Chatwoot message, in the order ticks move: a tick is only ever replaced by a
/// higher one. `Failed` is apart from that order (a failure can come after any tick, and any tick after
/// it) and sorts lowest, as having no tick does; `Revoked` (deleted for everyone) sorts above every tick,
/// so none replaces it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum Tick {
    #[sea_orm(string_value = "failed")]
    Failed,
    #[sea_orm(string_value = "sent")]
    Sent,
    #[sea_orm(string_value = "delivered")]
    Delivered,
    #[sea_orm(string_value = "read")]
    Read,
    /// Deleted for everyone on WhatsApp (and in Chatwoot): no later tick, delete or echo of the delete acts
    /// on it again. Never sent to Chatwoot as a tick.
    #[sea_orm(string_value = "revoked")]
    Revoked,
}

impl Tick {
    /// The stored text, which is also Chatwoot's `status` of the message (but for `revoked`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Failed => "failed",
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Read => "read",
            Self::Revoked => "revoked",
        }
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

#[cfg(test)]
mod tests {
    use sea_orm::{ActiveEnum as _, Iterable as _};

    use super::*;

    #[test]
    fn stored_texts_are_the_names_the_code_uses() {
        for direction in Direction::iter() {
            assert_eq!(direction.to_value(), direction.as_str());
            assert_eq!(Direction::try_from_value(&direction.as_str().to_owned()).ok(), Some(direction));
        }
        for state in MappingState::iter() {
            assert_eq!(state.to_value(), state.as_str());
            assert_eq!(MappingState::try_from_value(&state.as_str().to_owned()).ok(), Some(state));
        }
        for tick in Tick::iter() {
            assert_eq!(tick.to_value(), tick.as_str());
            assert_eq!(Tick::try_from_value(&tick.as_str().to_owned()).ok(), Some(tick));
        }
        assert!(Direction::try_from_value(&"outgoin".to_owned()).is_err());
    }

    #[test]
    fn ticks_only_move_forward() {
        assert!(Tick::Sent < Tick::Delivered && Tick::Delivered < Tick::Read && Tick::Read < Tick::Revoked);
        assert!(Tick::Failed < Tick::Sent);
        assert!(None < Some(Tick::Sent));
    }
}
