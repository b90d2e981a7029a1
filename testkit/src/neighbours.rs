//! The bridge's neighbours, in process: a fake Chatwoot with one account seeded, and the RyzeAPI
//! simulator.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ryze_fakes::chatwoot::{FakeChatwoot, Role};
use ryze_fakes::ryzeapi::RyzeApiSim;

/// The Chatwoot account the tests and the bench activate integrations in.
pub const ACCOUNT: i64 = 5;

/// A fake Chatwoot with account [`ACCOUNT`] named `account_name`, and `users` (access token, role) in it.
pub fn seeded_chatwoot(account_name: &str, users: &[(&str, Role)]) -> Result<FakeChatwoot, String> {
    let chatwoot = FakeChatwoot::start().map_err(|e| format!("fake Chatwoot: {e}"))?;
    chatwoot.add_account(ACCOUNT, account_name);
    for (token, role) in users {
        chatwoot.add_user(token, &[(ACCOUNT, *role)]);
    }
    Ok(chatwoot)
}

/// Both neighbours: the RyzeAPI simulator (accepting `bridge_token` on its WebSocket) and a
/// [`seeded_chatwoot`].
pub struct Neighbours {
    pub chatwoot: FakeChatwoot,
    pub ryzeapi: RyzeApiSim,
}

impl Neighbours {
    pub fn start(bridge_token: &str, account_name: &str, users: &[(&str, Role)]) -> Result<Self, String> {
        let ryzeapi = RyzeApiSim::start(bridge_token).map_err(|e| format!("RyzeAPI simulator: {e}"))?;
        let chatwoot = seeded_chatwoot(account_name, users)?;
        Ok(Self { chatwoot, ryzeapi })
    }
}
