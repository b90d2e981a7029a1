//! `ryzeapi-sim`: the test suite's RyzeAPI simulator as a program, to try the bridge by hand. It serves
//! `/ws/chatwoot/<instance>` and the REST send endpoints, and a page at `/` to write to the bridge as a
//! WhatsApp customer, drop the link, and see what agents sent.
//!
//! Environment: `BRIDGE_TOKEN` (required: the Bearer token the bridge sends on the WebSocket),
//! `RYZEAPI_SIM_BIND` (default `127.0.0.1:8081`), `RYZEAPI_SIM_INSTANCES` (comma-separated `name:token`,
//! default `suporte:instance-token`).

use std::process::ExitCode;

use ryze_fakes::ryzeapi::RyzeApiSim;

/// `name:token,name:token` → pairs.
fn parse_instances(list: &str) -> Result<Vec<(String, String)>, String> {
    let mut instances = Vec::new();
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        match entry.split_once(':') {
            Some((name, token)) if !name.trim().is_empty() && !token.trim().is_empty() => {
                instances.push((name.trim().to_owned(), token.trim().to_owned()));
            }
            _ => return Err(format!("`{entry}` is not `name:token`")),
        }
    }
    if instances.is_empty() {
        return Err("no instance given".into());
    }
    Ok(instances)
}

#[actix_web::main]
async fn main() -> ExitCode {
    let Some(token) = std::env::var("BRIDGE_TOKEN").ok().filter(|t| !t.trim().is_empty()) else {
        eprintln!(
            "ryzeapi-sim: BRIDGE_TOKEN is required (the Bearer token the bridge sends on /ws/chatwoot/<instance>)"
        );
        return ExitCode::from(2);
    };
    let bind = std::env::var("RYZEAPI_SIM_BIND").unwrap_or_else(|_| "127.0.0.1:8081".into());
    let list = std::env::var("RYZEAPI_SIM_INSTANCES").unwrap_or_else(|_| "suporte:instance-token".into());
    let instances = match parse_instances(&list) {
        Ok(instances) => instances,
        Err(e) => {
            eprintln!("ryzeapi-sim: RYZEAPI_SIM_INSTANCES: {e}");
            return ExitCode::from(2);
        }
    };
    let sim = match RyzeApiSim::start_on(&bind, token.trim()) {
        Ok(sim) => sim,
        Err(e) => {
            eprintln!("ryzeapi-sim: cannot listen on {bind}: {e}");
            return ExitCode::FAILURE;
        }
    };
    for (name, instance_token) in &instances {
        sim.add_instance(name, instance_token);
    }
    let names: Vec<String> = instances.iter().map(|(name, token)| format!("{name} (token `{token}`)")).collect();
    println!("RyzeAPI simulator listening on {} — UI at {}/, instances: {}", sim.url(), sim.url(), names.join(", "));
    let _ = actix_web::rt::signal::ctrl_c().await;
    ExitCode::SUCCESS
}
