//! Operator configuration: one documented struct, read from the environment once at startup.
//!
//! [`Settings::from_env`] validates every variable and fails with one line naming the variable. Missing
//! secrets (`BRIDGE_TOKEN`, `BRIDGE_ENCRYPTION_KEY`) are generated on first start and kept in the data dir
//! with mode 0600, so the embedded default needs no configuration at all.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::crypto::EncryptionKey;
use crate::secret::Secret;

/// File in the data dir holding the generated bridge token.
pub const TOKEN_FILE: &str = "bridge.token";
/// File in the data dir holding the generated encryption key.
pub const KEY_FILE: &str = "bridge.key";
const DEFAULT_PORT: u16 = 8080;

/// Everything the bridge reads from its environment.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `BRIDGE_TOKEN`: shared service token. RyzeAPI sends it as `Authorization: Bearer …` on `/v1/*`; the
    /// bridge sends it the same way when it opens `/ws/chatwoot/:instance`. Default: generated on first
    /// start, stored in `<data dir>/bridge.token` and printed once.
    pub bridge_token: Secret,
    /// `BRIDGE_PUBLIC_URL`: base URL at which Chatwoot reaches the bridge's webhook route.
    /// Default: `http://localhost:<port>`. No trailing slash.
    pub public_url: String,
    /// `RYZEAPI_URL`: RyzeAPI base URL used when an activation carries no `ryzeapiUrl`.
    pub ryzeapi_url: Option<String>,
    /// `DATABASE_URL`: `sqlite://…` (embedded default: `sqlite://<data dir>/bridge.db?mode=rwc`) or
    /// `postgres://…`.
    pub database_url: String,
    /// `BRIDGE_ENCRYPTION_KEY`: 32 bytes, base64; seals secrets at rest. Default: a random key created in
    /// `<data dir>/bridge.key` (mode 0600), with a warning.
    pub encryption_key: EncryptionKey,
    /// `BRIDGE_ENCRYPTION_KEY_PREVIOUS`: the key before the last rotation; values it sealed still open, and
    /// are re-sealed with the current key at boot (then this can be removed).
    pub previous_encryption_key: Option<EncryptionKey>,
    /// `BRIDGE_DATA_DIR`: embedded database, generated key and token. Default `./data`.
    pub data_dir: PathBuf,
    /// `BIND`: listen address. Default `127.0.0.1:8080` while the token is a generated one (a fresh
    /// install is not exposed before someone sets a token on purpose), else `0.0.0.0:8080`.
    pub bind: SocketAddr,
    /// `LOG_FORMAT`: `text` (default) or `json`. The filter itself is `RUST_LOG` (default `info`).
    pub log_format: LogFormat,
    /// `BRIDGE_CHATWOOT_TIMEOUT_MS`: timeout of one Chatwoot call. Default 10000 (the contract's 10 s).
    pub chatwoot_timeout: Duration,
    /// `BRIDGE_RETRY_MIN_MS` / `BRIDGE_RETRY_MAX_MS`: first and longest wait before retrying a Chatwoot or
    /// RyzeAPI call that failed for a passing reason (429, 5xx, network). Defaults 2000 and 300000: minutes, not
    /// seconds.
    pub relay_retry: (Duration, Duration),
    /// `BRIDGE_VERSION_CHECK_MS`: how often each integration reads Chatwoot's version again (default 6 h);
    /// features that depend on it (message ticks from 4.2) follow an upgrade without re-activation.
    pub version_check_every: Duration,
    /// `BRIDGE_RETENTION_MS`: how long processed events and sent replies are kept before they are pruned
    /// (default 3 days). Failed ones are kept until the integration is deleted. Long enough for RyzeAPI's
    /// re-deliveries and an unanswered send's echo to find their rows; short enough that the tables stay
    /// small at thousands of messages a second.
    pub retention: Duration,
    /// `BRIDGE_CHATWOOT_MESSAGES_PER_MINUTE`: most messages the bridge creates in one Chatwoot conversation
    /// in any minute (default 180). Chatwoot refuses the 200th message of a minute in a conversation
    /// (`CONVERSATION_MESSAGE_PER_MINUTE_LIMIT`), agents' and activity messages included: the margin is
    /// theirs. A backlog replay or a busy group waits instead of being refused.
    pub conversation_messages_per_minute: usize,
    /// `BRIDGE_UNPROCESSABLE_GIVE_UP_MS`: how long a message that Chatwoot keeps refusing with a 422 of no
    /// known meaning (any exception there is a 422) is retried before it is marked failed (default 600000,
    /// ten minutes; the retries back off as any Chatwoot failure does).
    pub unprocessable_give_up: Duration,
    /// `BRIDGE_REPLY_ORDER_WINDOW_MS`: how long an agent's reply waits for the webhooks of replies Chatwoot
    /// created before it (default 500; 0 sends in arrival order). Chatwoot delivers webhooks from up to 10
    /// Sidekiq threads at once, so two replies a moment apart can arrive swapped; within the window they go
    /// out in the order Chatwoot created them. Every reply waits this long once.
    pub reply_order_window: Duration,
    /// `BRIDGE_CHATWOOT_RATE_LIMIT`: requests a minute the whole bridge makes to one Chatwoot, shared by all
    /// its integrations (default 3000, Rack::Attack's `RACK_ATTACK_LIMIT` per client IP; 0: unlimited). A
    /// Chatwoot on a loopback address is unlimited by default, as Rack::Attack exempts 127.0.0.1 and ::1.
    pub chatwoot_rate_limit: Option<u32>,
    /// `BRIDGE_CHATWOOT_RATE_LIMITS`: per-host budgets where a Chatwoot was set otherwise
    /// (`RACK_ATTACK_LIMIT`, `RACK_ATTACK_ALLOWED_IPS`): `host[:port]=N,…`, 0 for unlimited.
    pub chatwoot_rate_limits: HashMap<String, Option<u32>>,
    /// `BRIDGE_CONTACT_LOOKUP_TIMEOUT_MS`: the longest a person's first message waits for RyzeAPI's contact
    /// look-up, which finds the other form (phone JID or LID) of someone seen by one form only (default
    /// 2000). Slower, failing or missing: the message goes on, and the split is repaired when an event
    /// names both forms.
    pub contact_lookup_within: Duration,
    /// `BRIDGE_REPLICA_NAME`: this process's name among the replicas sharing one PostgreSQL (default: the
    /// host name and the data dir). A process that starts under the name of one that died takes its
    /// integrations back at once instead of waiting for their leases to expire; give every replica its own.
    pub replica_name: Option<String>,
    /// `BRIDGE_REPLICA_URL`: where the other replicas reach this one's API, to show an integration's live
    /// state from any replica (default `http://<host>:<port>` of `BIND`).
    pub replica_url: Option<String>,
    /// `BRIDGE_LEASE_TTL_MS`: how long a replica's hold on an integration lasts without renewal (default
    /// 10000; renewed every fifth of it). A replica that stops renewing loses its integrations to the others
    /// this long after its last renewal; it stops relaying them itself before that.
    pub lease_ttl: Duration,
    /// Timing of the RyzeAPI link (contract §3 defaults; the `BRIDGE_LINK_*_MS` variables exist for tests).
    pub link: LinkTiming,
    /// What was generated on this start (reported once at startup, never again).
    pub generated: Generated,
}

/// Timing of the RyzeAPI WebSocket link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkTiming {
    /// `BRIDGE_LINK_RECONNECT_MIN_MS`: first reconnect delay (default 500).
    pub reconnect_min: Duration,
    /// `BRIDGE_LINK_RECONNECT_MAX_MS`: longest reconnect delay (default 30000).
    pub reconnect_max: Duration,
    /// `BRIDGE_LINK_STABLE_MS`: connected this long, the next failure starts from the first delay again (60000).
    pub stable_after: Duration,
    /// `BRIDGE_LINK_PING_MS`: how often the bridge pings (default 20000).
    pub ping_every: Duration,
    /// `BRIDGE_LINK_DEAD_MS`: no frame for this long means the link is dead (default 60000).
    pub dead_after: Duration,
    /// `BRIDGE_LINK_REJECTED_RETRY_MS`: retry interval after a 401/403/404 on the upgrade (default 300000).
    pub rejected_retry: Duration,
}

impl Default for LinkTiming {
    fn default() -> Self {
        Self {
            reconnect_min: Duration::from_millis(500),
            reconnect_max: Duration::from_secs(30),
            stable_after: Duration::from_secs(60),
            ping_every: Duration::from_secs(20),
            dead_after: Duration::from_secs(60),
            rejected_retry: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Which secrets this start created in the data dir.
#[derive(Debug, Clone, Default)]
pub struct Generated {
    /// The bridge token was read from or created in the data dir (not given by the operator).
    pub token_from_data_dir: bool,
    /// A new token was created on this start; it is printed once.
    pub new_token: bool,
    /// A new encryption key file was created on this start.
    pub new_key: bool,
}

/// A setting that cannot be used. Displayed as one line naming the variable.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {variable}: {problem}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

fn bad(variable: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError { variable, problem: problem.into() }
}

impl Settings {
    /// Reads the process environment, creating missing secrets in the data dir.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&std::env::vars().collect())
    }

    /// Same as [`Settings::from_env`] with explicit variables (tests, tools).
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let get = |name: &str| vars.get(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());

        let data_dir = PathBuf::from(get("BRIDGE_DATA_DIR").unwrap_or_else(|| "./data".to_owned()));
        let log_format = match get("LOG_FORMAT").as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => return Err(bad("LOG_FORMAT", format!("must be `text` or `json`, not `{other}`"))),
        };
        let millis = |name: &'static str, default: Duration| match get(name) {
            None => Ok(default),
            Some(v) => match v.parse::<u64>() {
                Ok(ms) if ms > 0 => Ok(Duration::from_millis(ms)),
                _ => Err(bad(name, "must be a positive number of milliseconds")),
            },
        };
        let defaults = LinkTiming::default();
        let link = LinkTiming {
            reconnect_min: millis("BRIDGE_LINK_RECONNECT_MIN_MS", defaults.reconnect_min)?,
            reconnect_max: millis("BRIDGE_LINK_RECONNECT_MAX_MS", defaults.reconnect_max)?,
            stable_after: millis("BRIDGE_LINK_STABLE_MS", defaults.stable_after)?,
            ping_every: millis("BRIDGE_LINK_PING_MS", defaults.ping_every)?,
            dead_after: millis("BRIDGE_LINK_DEAD_MS", defaults.dead_after)?,
            rejected_retry: millis("BRIDGE_LINK_REJECTED_RETRY_MS", defaults.rejected_retry)?,
        };
        let chatwoot_timeout = millis("BRIDGE_CHATWOOT_TIMEOUT_MS", Duration::from_secs(10))?;
        let version_check_every = millis("BRIDGE_VERSION_CHECK_MS", Duration::from_secs(6 * 3600))?;
        let retention = millis("BRIDGE_RETENTION_MS", Duration::from_secs(3 * 24 * 3600))?;
        let relay_retry = (
            millis("BRIDGE_RETRY_MIN_MS", Duration::from_secs(2))?,
            millis("BRIDGE_RETRY_MAX_MS", Duration::from_secs(300))?,
        );
        let count = |name: &'static str, default: u64| match get(name) {
            None => Ok(default),
            Some(v) => v.parse::<u64>().map_err(|_| bad(name, "must be a whole number (0 or more)")),
        };
        let conversation_messages_per_minute =
            usize::try_from(count("BRIDGE_CHATWOOT_MESSAGES_PER_MINUTE", 180)?.max(1)).unwrap_or(usize::MAX);
        let unprocessable_give_up = millis("BRIDGE_UNPROCESSABLE_GIVE_UP_MS", Duration::from_secs(600))?;
        let reply_order_window = Duration::from_millis(count("BRIDGE_REPLY_ORDER_WINDOW_MS", 500)?);
        let contact_lookup_within = millis("BRIDGE_CONTACT_LOOKUP_TIMEOUT_MS", Duration::from_secs(2))?;
        let budget = |n: u64| u32::try_from(n).ok().filter(|n| *n > 0);
        let chatwoot_rate_limit = budget(count("BRIDGE_CHATWOOT_RATE_LIMIT", 3000)?);
        let mut chatwoot_rate_limits = HashMap::new();
        for entry in get("BRIDGE_CHATWOOT_RATE_LIMITS").unwrap_or_default().split(',').filter(|e| !e.trim().is_empty())
        {
            let parsed = entry.split_once('=').and_then(|(host, n)| Some((host.trim(), n.trim().parse::<u64>().ok()?)));
            let Some((host, n)) = parsed.filter(|(host, _)| !host.is_empty()) else {
                return Err(bad(
                    "BRIDGE_CHATWOOT_RATE_LIMITS",
                    format!("`{entry}` is not `host[:port]=requests per minute`"),
                ));
            };
            chatwoot_rate_limits.insert(host.to_ascii_lowercase(), budget(n));
        }
        let ryzeapi_url = get("RYZEAPI_URL").map(|u| parse_http_url("RYZEAPI_URL", &u)).transpose()?;
        let replica_name = get("BRIDGE_REPLICA_NAME");
        let replica_url = get("BRIDGE_REPLICA_URL").map(|u| parse_http_url("BRIDGE_REPLICA_URL", &u)).transpose()?;
        let lease_ttl = millis("BRIDGE_LEASE_TTL_MS", Duration::from_secs(10))?.max(Duration::from_millis(500));
        let database_url = match get("DATABASE_URL") {
            Some(url) => validate_database_url(&url)?,
            None => default_database_url(&data_dir),
        };

        let encryption_key =
            get("BRIDGE_ENCRYPTION_KEY").map(|k| parse_key("BRIDGE_ENCRYPTION_KEY", &k)).transpose()?;
        let previous_encryption_key = get("BRIDGE_ENCRYPTION_KEY_PREVIOUS")
            .map(|k| parse_key("BRIDGE_ENCRYPTION_KEY_PREVIOUS", &k))
            .transpose()?;
        let bind_given = get("BIND")
            .map(|b| {
                b.parse::<SocketAddr>().map_err(|_| bad("BIND", format!("`{b}` is not an address like 0.0.0.0:8080")))
            })
            .transpose()?;
        let public_url_given = get("BRIDGE_PUBLIC_URL").map(|u| parse_http_url("BRIDGE_PUBLIC_URL", &u)).transpose()?;
        let token_given = get("BRIDGE_TOKEN");
        if token_given.as_ref().is_some_and(|t| t.len() < 16) {
            return Err(bad("BRIDGE_TOKEN", "must be at least 16 characters"));
        }

        // Everything parsable is parsed; only now touch the data dir.
        let mut generated = Generated::default();
        let needs_dir = encryption_key.is_none() || token_given.is_none() || database_url.starts_with("sqlite://");
        if needs_dir {
            create_private_dir(&data_dir)?;
        }
        let encryption_key = match encryption_key {
            Some(key) => key,
            None => {
                let (key, created) = load_or_create_key(&data_dir)?;
                generated.new_key = created;
                key
            }
        };
        let bridge_token = match token_given {
            Some(t) => Secret::new(t),
            None => {
                let (token, created) = load_or_create_token(&data_dir)?;
                generated.token_from_data_dir = true;
                generated.new_token = created;
                token
            }
        };
        let bind = bind_given.unwrap_or_else(|| {
            let host = if generated.token_from_data_dir { [127, 0, 0, 1] } else { [0, 0, 0, 0] };
            SocketAddr::from((host, DEFAULT_PORT))
        });
        let public_url = public_url_given.unwrap_or_else(|| format!("http://localhost:{}", bind.port()));

        Ok(Self {
            bridge_token,
            public_url,
            ryzeapi_url,
            database_url,
            encryption_key,
            previous_encryption_key,
            data_dir,
            bind,
            log_format,
            chatwoot_timeout,
            relay_retry,
            version_check_every,
            retention,
            conversation_messages_per_minute,
            unprocessable_give_up,
            reply_order_window,
            contact_lookup_within,
            chatwoot_rate_limit,
            chatwoot_rate_limits,
            replica_name,
            replica_url,
            lease_ttl,
            link,
            generated,
        })
    }
}

/// The embedded default database: a SQLite file in the data dir.
pub fn default_database_url(data_dir: &Path) -> String {
    format!("sqlite://{}?mode=rwc", data_dir.join("bridge.db").display())
}

/// Validates an http(s) base URL and removes one trailing `/`.
pub fn parse_http_url(variable: &'static str, value: &str) -> Result<String, ConfigError> {
    normalize_base_url(value).map_err(|problem| bad(variable, problem))
}

/// Validates an http(s) base URL and removes one trailing `/`. The error says what is wrong, in words.
pub fn normalize_base_url(value: &str) -> Result<String, String> {
    let parsed = url::Url::parse(value).map_err(|e| format!("`{value}` is not a URL ({e})"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("`{value}` must start with http:// or https://"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{value}` has no host"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(format!("`{value}` must not carry a query or fragment"));
    }
    Ok(value.strip_suffix('/').unwrap_or(value).to_owned())
}

fn validate_database_url(url: &str) -> Result<String, ConfigError> {
    if url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(url.to_owned())
    } else {
        let scheme = url.split(':').next().unwrap_or_default();
        Err(bad("DATABASE_URL", format!("unknown scheme `{scheme}`; use sqlite://… or postgres://…")))
    }
}

fn parse_key(variable: &'static str, value: &str) -> Result<EncryptionKey, ConfigError> {
    use base64::Engine as _;
    let engines = [&base64::engine::general_purpose::STANDARD, &base64::engine::general_purpose::URL_SAFE];
    let bytes = engines
        .iter()
        .find_map(|engine| engine.decode(value).ok())
        .ok_or_else(|| bad(variable, "is not valid base64"))?;
    let key: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| bad(variable, format!("must decode to 32 bytes, got {}", bytes.len())))?;
    Ok(EncryptionKey::from_bytes(&key))
}

/// Creates the data dir readable by the owner only (it holds the key, the token and the database).
fn create_private_dir(dir: &Path) -> Result<(), ConfigError> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|e| bad("BRIDGE_DATA_DIR", format!("cannot create `{}`: {e}", dir.display())))
}

fn load_or_create_key(dir: &Path) -> Result<(EncryptionKey, bool), ConfigError> {
    use base64::Engine as _;
    let path = dir.join(KEY_FILE);
    if let Some(text) = read_private_file(&path)? {
        return Ok((parse_key("BRIDGE_ENCRYPTION_KEY", &text).map_err(|e| in_file(e, &path))?, false));
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| bad("BRIDGE_ENCRYPTION_KEY", format!("cannot generate a key: {e}")))?;
    write_private_file(&path, &base64::engine::general_purpose::STANDARD.encode(bytes))?;
    Ok((EncryptionKey::from_bytes(&bytes), true))
}

fn load_or_create_token(dir: &Path) -> Result<(Secret, bool), ConfigError> {
    let path = dir.join(TOKEN_FILE);
    if let Some(text) = read_private_file(&path)? {
        return Ok((Secret::new(text), false));
    }
    let token = Secret::random(32).map_err(|e| bad("BRIDGE_TOKEN", format!("cannot generate a token: {e}")))?;
    write_private_file(&path, token.expose())?;
    Ok((token, true))
}

fn in_file(e: ConfigError, path: &Path) -> ConfigError {
    bad(e.variable, format!("{} (in {})", e.problem, path.display()))
}

fn read_private_file(path: &Path) -> Result<Option<String>, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text.trim().to_owned()).filter(|t| !t.is_empty())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(bad("BRIDGE_DATA_DIR", format!("cannot read `{}`: {e}", path.display()))),
    }
}

fn write_private_file(path: &Path, contents: &str) -> Result<(), ConfigError> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file =
        options.open(path).map_err(|e| bad("BRIDGE_DATA_DIR", format!("cannot create `{}`: {e}", path.display())))?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| bad("BRIDGE_DATA_DIR", format!("cannot write `{}`: {e}", path.display())))
}

/// Builds one awc client per worker thread (awc's `Client` is not `Send`); redirects are never followed
/// (a Chatwoot or RyzeAPI URL that redirects is reported, not silently followed with the token).
pub fn http_client() -> awc::Client {
    awc::Client::builder().disable_redirects().finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)], dir: &Path) -> HashMap<String, String> {
        let mut map: HashMap<String, String> = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        map.insert("BRIDGE_DATA_DIR".into(), dir.display().to_string());
        map
    }

    #[test]
    fn embedded_default_generates_token_and_key_once() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("nested").join("data");
        let first = Settings::from_vars(&vars(&[], &data)).unwrap();
        assert!(first.generated.new_token && first.generated.new_key);
        assert_eq!(first.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(first.public_url, "http://localhost:8080");
        assert!(first.database_url.starts_with("sqlite://") && first.database_url.ends_with("bridge.db?mode=rwc"));
        let second = Settings::from_vars(&vars(&[], &data)).unwrap();
        assert!(!second.generated.new_token && !second.generated.new_key);
        assert_eq!(first.bridge_token, second.bridge_token);
        assert_eq!(first.encryption_key.id(), second.encryption_key.id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&data).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700, "a fresh data dir is private");
        }
        #[cfg(unix)]
        for file in [TOKEN_FILE, KEY_FILE] {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(data.join(file)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
    }

    #[test]
    fn explicit_token_binds_all_interfaces() {
        let dir = tempfile::tempdir().unwrap();
        let s = Settings::from_vars(&vars(&[("BRIDGE_TOKEN", "a-long-enough-token")], dir.path())).unwrap();
        assert_eq!(s.bind.to_string(), "0.0.0.0:8080");
        assert_eq!(s.bridge_token.expose(), "a-long-enough-token");
    }

    #[test]
    fn bad_values_name_the_variable() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("BRIDGE_ENCRYPTION_KEY", "c2hvcnQ="),
            ("BRIDGE_ENCRYPTION_KEY", "%%%"),
            ("DATABASE_URL", "mysql://x"),
            ("RYZEAPI_URL", "ftp://x"),
            ("BRIDGE_PUBLIC_URL", "not a url"),
            ("BIND", "localhost"),
            ("LOG_FORMAT", "xml"),
            ("BRIDGE_TOKEN", "short"),
        ];
        for (name, value) in cases {
            let err = Settings::from_vars(&vars(&[(name, value)], dir.path())).unwrap_err();
            let line = err.to_string();
            assert!(line.starts_with(&format!("configuration error: {name}: ")), "{line}");
            assert!(!line.contains('\n'), "{line}");
        }
    }

    #[test]
    fn base_url_loses_one_trailing_slash() {
        assert_eq!(normalize_base_url("https://cw.example.com/").unwrap(), "https://cw.example.com");
        assert_eq!(normalize_base_url("http://cw:3000").unwrap(), "http://cw:3000");
        assert!(normalize_base_url("cw.example.com").is_err());
    }
}
