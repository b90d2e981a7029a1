//! The command line: `ryze-integrations [serve]`, `ryze-integrations doctor …`, `--help`, `--version`.
//!
//! Parsed by clap (derive), which gives the conventions for free: `--help`/`-h` and `--version`/`-V` answer
//! and exit 0, a bad flag prints what is wrong and the usage and exits 2, `--name=value` and `--name value`
//! both work. The settings section of `--help` is built from the doc comments of the one `Settings` struct
//! (`src/config.rs`, embedded at build time), the same source `docs/configuration.md` is generated from, so
//! there is no second list to keep in step.

use clap::{Args, CommandFactory as _, FromArgMatches as _, Parser, Subcommand};

/// The source of `src/config.rs`: its doc comments are the settings reference.
const CONFIG_SOURCE: &str = include_str!("config.rs");

/// Exit status of a usage or configuration error.
pub const USAGE_ERROR: u8 = 2;

/// RyzeIntegrations: the WhatsApp (RyzeAPI) ↔ Chatwoot bridge.
///
/// Without a command it starts the bridge (`serve`). Every setting comes from the environment; they are
/// listed below.
#[derive(Debug, Parser)]
#[command(name = "ryze-integrations", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the bridge: the management API, the Chatwoot webhook and one RyzeAPI link per integration (the
    /// default when no command is given).
    Serve,
    /// Check that Chatwoot (and RyzeAPI) are wired correctly; changes nothing (docs/doctor.md).
    ///
    /// Without the Chatwoot options it checks every stored integration (same environment as the bridge);
    /// with them, that Chatwoot, token and account before an activation.
    #[command(
        after_help = "exit status: 0 when no check failed (warnings allowed), 1 when one did, 2 for a usage error"
    )]
    Doctor(DoctorArgs),
    /// Follow one message through the bridge: every stage, with times, and where it stopped and why.
    ///
    /// Asks the running bridge (`GET /v1/integrations/{id}/trace`) with the bridge token (`BRIDGE_TOKEN`, or
    /// the generated one in the data dir).
    #[command(
        after_help = "exit status: 0 when the bridge answered, 1 when it did not or refused, 2 for a usage error"
    )]
    Trace(TraceArgs),
}

#[derive(Debug, Args)]
pub struct TraceArgs {
    /// The integration id (`int_…`).
    pub integration: String,
    /// The message: a WhatsApp message id, or a Chatwoot message id (all digits).
    pub message: String,
    /// Take an all-digit id as a WhatsApp id, not a Chatwoot one.
    #[arg(long)]
    pub whatsapp: bool,
    /// The bridge's base URL.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// The raw JSON answer instead of the text.
    #[arg(long)]
    pub json: bool,
}

impl TraceArgs {
    /// The query string of the trace route.
    pub fn query(&self) -> String {
        let chatwoot = !self.whatsapp && !self.message.is_empty() && self.message.bytes().all(|b| b.is_ascii_digit());
        let (name, value) = if chatwoot { ("chatwootMessageId", &self.message) } else { ("waId", &self.message) };
        let value: String = url::form_urlencoded::byte_serialize(value.as_bytes()).collect();
        format!("{name}={value}")
    }
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Chatwoot base URL to probe (with --chatwoot-token and --account).
    #[arg(long, value_name = "URL")]
    pub chatwoot_url: Option<String>,
    /// A user token of that Chatwoot; `-` reads it from standard input (keeps it out of the process list).
    #[arg(long, value_name = "TOKEN")]
    pub chatwoot_token: Option<String>,
    /// The Chatwoot account id.
    #[arg(long, value_name = "ID")]
    pub account: Option<String>,
    /// One JSON document instead of the checklist.
    #[arg(long)]
    pub json: bool,
}

impl DoctorArgs {
    /// The words `doctor::run` takes (it checks that the three Chatwoot options go together).
    pub fn to_words(&self) -> Vec<String> {
        let mut words = Vec::new();
        for (flag, value) in [
            ("--chatwoot-url", &self.chatwoot_url),
            ("--chatwoot-token", &self.chatwoot_token),
            ("--account", &self.account),
        ] {
            if let Some(value) = value {
                words.push(flag.to_owned());
                words.push(value.clone());
            }
        }
        if self.json {
            words.push("--json".to_owned());
        }
        words
    }
}

/// What the command line asks for, or the exit status when it was already answered (help, version,
/// usage error: clap has printed it).
pub fn parse<I, T>(args: I) -> Result<Command, u8>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let command = Cli::command().after_help(settings_help());
    let parsed = command.try_get_matches_from(args).and_then(|matches| Cli::from_arg_matches(&matches));
    match parsed {
        Ok(cli) => Ok(cli.command.unwrap_or(Command::Serve)),
        Err(e) => {
            let _ = e.print();
            Err(u8::try_from(e.exit_code()).unwrap_or(USAGE_ERROR))
        }
    }
}

/// One setting of `Settings` (or `LinkTiming`), as its doc comment describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The variable(s), e.g. `` `BRIDGE_RETRY_MIN_MS` / `BRIDGE_RETRY_MAX_MS` `` without the backticks.
    pub variables: String,
    pub default: String,
    pub meaning: String,
}

/// Every field of `Settings` and `LinkTiming` whose doc comment starts by naming its variable(s)
/// (`` `BRIDGE_…`: meaning ``), in declaration order: the rule `tests/docs.rs` builds
/// `docs/configuration.md` with.
pub fn settings() -> Vec<Setting> {
    let mut settings = Vec::new();
    let mut doc: Vec<&str> = Vec::new();
    let mut in_struct = false;
    for line in CONFIG_SOURCE.lines().map(str::trim) {
        if line.starts_with("pub struct Settings") || line.starts_with("pub struct LinkTiming") {
            in_struct = true;
        } else if in_struct && line == "}" {
            in_struct = false;
        } else if !in_struct {
            continue;
        } else if let Some(text) = line.strip_prefix("///") {
            doc.push(text.trim());
        } else {
            let text = doc.join(" ");
            doc.clear();
            if !line.starts_with("pub ") {
                continue;
            }
            if let Some((variables, meaning)) = text.split_once(": ").filter(|(v, _)| v.starts_with('`')) {
                settings.push(Setting {
                    variables: variables.replace('`', ""),
                    default: default_of(meaning),
                    meaning: meaning.to_owned(),
                });
            }
        }
    }
    settings
}

/// The default a doc comment states: `Default: X.`, `Default X.`, `Defaults X.`, `(default X)`,
/// `(embedded default: X)`, `` `X` (default) ``, or a trailing `(N).`; else `none`.
fn default_of(meaning: &str) -> String {
    let sentence = |rest: &str| rest.split(". ").next().unwrap_or(rest).trim_end_matches('.').trim().to_owned();
    let parenthesis = |rest: &str| rest.split([')', ';']).next().unwrap_or(rest).trim().to_owned();
    for marker in ["Default: ", "Defaults ", "Default "] {
        if let Some((_, rest)) = meaning.split_once(marker) {
            return sentence(rest);
        }
    }
    if let Some((before, _)) = meaning.split_once(" (default)") {
        return before.rsplit(' ').next().unwrap_or(before).to_owned();
    }
    for marker in ["(default ", "default: "] {
        if let Some((_, rest)) = meaning.split_once(marker) {
            return parenthesis(rest);
        }
    }
    if let Some(number) = meaning
        .trim_end_matches('.')
        .strip_suffix(')')
        .and_then(|m| m.rsplit_once('('))
        .map(|(_, n)| n)
        .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
    {
        return number.to_owned();
    }
    "none".to_owned()
}

/// The settings section of `--help`.
pub fn settings_help() -> String {
    let mut text = String::from(
        "Settings (environment variables; a bad value stops startup with exit status 2 and one line naming it;\n\
         RUST_LOG sets the log filter, default `info`):\n",
    );
    for setting in settings() {
        text.push_str(&format!("\n  {}\n", setting.variables));
        text.push_str(&wrap(&format!("default: {}", setting.default), 6));
        text.push_str(&wrap(&setting.meaning, 6));
    }
    text.push_str(
        "\nExit status: 0 ok, 1 the bridge stopped on an error (or doctor found a failure), 2 usage or configuration error.",
    );
    text
}

/// `text` in lines of at most 100 columns, each indented by `indent`.
fn wrap(text: &str, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && indent + line.chars().count() + 1 + word.chars().count() > 100 {
            out.push_str(&format!("{pad}{line}\n"));
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        out.push_str(&format!("{pad}{line}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn find(variables: &str) -> Setting {
        settings().into_iter().find(|s| s.variables == variables).unwrap()
    }

    #[test]
    fn the_command_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_documented_setting_is_listed_with_its_default() {
        let all = settings();
        assert!(all.len() >= 20, "{all:?}");
        assert_eq!(find("BRIDGE_DATA_DIR").default, "`./data`");
        assert_eq!(find("BRIDGE_CHATWOOT_TIMEOUT_MS").default, "10000 (the contract's 10 s)");
        assert_eq!(find("BRIDGE_REPLY_ORDER_WINDOW_MS").default, "500");
        assert_eq!(find("LOG_FORMAT").default, "`text`");
        assert_eq!(find("RYZEAPI_URL").default, "none");
        assert_eq!(find("BRIDGE_LINK_STABLE_MS").default, "60000");
        assert_eq!(find("DATABASE_URL").default, "`sqlite://<data dir>/bridge.db?mode=rwc`");
    }

    #[test]
    fn no_command_is_serve_and_doctor_words_round_trip() {
        assert!(matches!(parse(["ryze-integrations"]), Ok(Command::Serve)));
        let Ok(Command::Doctor(args)) =
            parse(["ryze-integrations", "doctor", "--chatwoot-url=http://cw", "--account", "5", "--json"])
        else {
            panic!()
        };
        assert_eq!(args.to_words(), ["--chatwoot-url", "http://cw", "--account", "5", "--json"]);
        assert_eq!(parse(["ryze-integrations", "--bogus"]).err(), Some(2));
    }
}
