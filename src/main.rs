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
        Ok(cli::Command::Trace(args)) => return trace(&args).await,
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

/// `ryze-integrations trace`: asks the running bridge and prints the trace for a person.
async fn trace(args: &cli::TraceArgs) -> ExitCode {
    let token = std::env::var("BRIDGE_TOKEN").ok().filter(|t| !t.trim().is_empty()).or_else(|| {
        let dir = std::env::var("BRIDGE_DATA_DIR").unwrap_or_else(|_| "./data".to_owned());
        std::fs::read_to_string(std::path::Path::new(&dir).join("bridge.token")).ok().map(|t| t.trim().to_owned())
    });
    let Some(token) = token else {
        eprintln!("no bridge token: set BRIDGE_TOKEN (or BRIDGE_DATA_DIR to the bridge's data dir)");
        return ExitCode::from(cli::USAGE_ERROR);
    };
    let url = format!(
        "{}/v1/integrations/{}/trace?{}",
        args.url.trim_end_matches('/'),
        url::form_urlencoded::byte_serialize(args.integration.as_bytes()).collect::<String>(),
        args.query()
    );
    let client = awc::Client::builder().timeout(std::time::Duration::from_secs(15)).finish();
    let mut answer = match client.get(&url).insert_header(("authorization", format!("Bearer {token}"))).send().await {
        Ok(answer) => answer,
        Err(e) => {
            eprintln!("cannot reach the bridge at {}: {e}", args.url);
            return ExitCode::FAILURE;
        }
    };
    let status = answer.status();
    let body: serde_json::Value = match answer.json().limit(4 << 20).await {
        Ok(body) => body,
        Err(e) => {
            eprintln!("the bridge answered HTTP {status} with an unreadable body: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&body).unwrap_or_default());
        return if status.is_success() { ExitCode::SUCCESS } else { ExitCode::FAILURE };
    }
    if !status.is_success() {
        // The error envelope's message (for an unknown message: what to check), else the body as is.
        match body["error"]["message"].as_str() {
            Some(message) => eprintln!("{message}"),
            None => eprintln!("the bridge answered HTTP {status}: {body}"),
        }
        return ExitCode::FAILURE;
    }
    print!("{}", render_trace(&body));
    ExitCode::SUCCESS
}

/// The trace as lines for a person: what and where now, then one line per stage.
fn render_trace(trace: &serde_json::Value) -> String {
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    let mut out = format!("{}\n", text(&trace["summary"]));
    let ids = [
        ("direction", text(&trace["direction"])),
        (
            "WhatsApp",
            trace["whatsapp_ids"]
                .as_array()
                .map(|a| a.iter().map(text).collect::<Vec<_>>().join(", "))
                .unwrap_or_default(),
        ),
        ("Chatwoot message", trace["chatwoot_message_id"].as_i64().map(|n| n.to_string()).unwrap_or_default()),
        ("conversation", trace["conversation_id"].as_i64().map(|n| n.to_string()).unwrap_or_default()),
    ];
    let ids: Vec<String> = ids.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| format!("{k}: {v}")).collect();
    out.push_str(&format!("{}\n\n", ids.join(" · ")));
    for stage in trace["stages"].as_array().into_iter().flatten() {
        out.push_str(&format!("{}  {:<10} {}\n", text(&stage["at"]), text(&stage["stage"]), text(&stage["detail"])));
    }
    out
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
