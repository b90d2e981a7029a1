//! `fake-chatwoot`: the test suite's fake Chatwoot as a program, to try the bridge with curl without a
//! real Chatwoot. Seeds account 1 with an administrator token and prints it.
//!
//! Environment: `FAKE_CHATWOOT_BIND` (default `127.0.0.1:3000`), `FAKE_CHATWOOT_TOKEN` (default
//! `fake-admin-token`).

use std::process::ExitCode;

use ryze_fakes::chatwoot::{FakeChatwoot, Role};

#[actix_web::main]
async fn main() -> ExitCode {
    let bind = std::env::var("FAKE_CHATWOOT_BIND").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let token = std::env::var("FAKE_CHATWOOT_TOKEN").unwrap_or_else(|_| "fake-admin-token".into());
    let fake = match FakeChatwoot::start_on(&bind) {
        Ok(fake) => fake,
        Err(e) => {
            eprintln!("fake-chatwoot: cannot listen on {bind}: {e}");
            return ExitCode::FAILURE;
        }
    };
    fake.add_account(1, "Demo account");
    fake.add_user(&token, &[(1, Role::Administrator)]);
    println!("fake Chatwoot 4.15.1 on {} — account 1, administrator token `{token}`", fake.url());
    let _ = actix_web::rt::signal::ctrl_c().await;
    ExitCode::SUCCESS
}
