//! The state of a stored piece of work: an inbound event (`inbound_events.state`) or an outbound job
//! (`outbound_jobs.state`).

use sea_orm::entity::prelude::*;

/// Where a stored event or job is. Stored as its text; the column stays text (no migration).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum WorkState {
    /// Not done yet (queued, or being retried).
    #[sea_orm(string_value = "pending")]
    Pending,
    /// Processed; nothing left to do.
    #[sea_orm(string_value = "done")]
    Done,
    /// Given up for good (the reason is in `last_error`).
    #[sea_orm(string_value = "failed")]
    Failed,
}

impl WorkState {
    /// The stored (and shown) text.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::{ActiveEnum as _, Iterable as _};

    use super::WorkState;

    #[test]
    fn stored_texts_are_the_names_the_code_uses() {
        for state in WorkState::iter() {
            assert_eq!(state.to_value(), state.as_str());
            assert_eq!(WorkState::try_from_value(&state.as_str().to_owned()).ok(), Some(state));
        }
        assert_eq!(WorkState::iter().map(WorkState::as_str).collect::<Vec<_>>(), ["pending", "done", "failed"]);
    }
}
