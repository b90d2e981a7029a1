//! The `ryze-integrations` binary: parse the command line (`src/cli.rs`), then load settings, set up
//! logging, run. `ryze-integrations doctor …` checks the wiring instead (see `docs/doctor.md`).

mod cli;

use std::process::ExitCode;

use ryze_integrations::config::Settings;

/// glibc's malloc took ~13 % of the bridge's CPU under load (`perf`, docs/performance.md); mimalloc's
/// thread-local free lists cost a fraction of that.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[actix_web::main]
async fn main() -> ExitCode {
    // One TLS provider for the whole process (see docs: awc's connector needs one to be chosen).
    let _ = rustls::crypto::ring::default_provider().install_default();
    match cli::parse(std::env::args_os()) {
        Ok(cli::Command::Serve) => {}
        Ok(cli::Command::Doctor(args)) => return ryze_integrations::doctor::run(&args.to_words()).await,
        Err(status) => return ExitCode::from(status),
    }
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(cli::USAGE_ERROR);
        }
    };
    ryze_integrations::telemetry::init_logging(settings.log_format);
    announce_generated(&settings);
    match ryze_integrations::run(settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("stopping: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A generated token is shown exactly once, on the start that created it; afterwards only its file path.
fn announce_generated(settings: &Settings) {
    let dir = settings.data_dir.display();
    if settings.generated.new_token {
        println!(
            "Generated BRIDGE_TOKEN (saved in {dir}/bridge.token, shown only this once): {}",
            settings.bridge_token.expose()
        );
    } else if settings.generated.token_from_data_dir {
        tracing::info!("using the bridge token stored in {dir}/bridge.token");
    }
    if settings.generated.new_key {
        tracing::warn!(
            "no BRIDGE_ENCRYPTION_KEY set: generated {dir}/bridge.key; back it up, without it stored tokens cannot be opened"
        );
    }
}
