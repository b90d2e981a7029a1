//! `POST /v1/integrations/activate`: validate, check the Chatwoot token and role, create (or reuse) the
//! API inbox, persist with sealed secrets, compensate on failure.

use std::time::{Duration, Instant};

use chrono::Utc;
use entity::integration::Model;
use serde_json::{Map, Value};

use super::{Status, chatwoot_client, new_integration_id, open_sealed, sealed};
use crate::chatwoot::version::{self, Version};
use crate::chatwoot::{ChatwootClient, ChatwootError, ChatwootTarget, Failure};
use crate::config::normalize_base_url;
use crate::error::{AppError, ChatwootContext};
use crate::secret::Secret;
use crate::state::{Services, Shared};
use crate::store;

/// RyzeAPI waits 60 s; the contract promises an answer within 20 s. Chatwoot calls share this budget.
const ACTIVATION_BUDGET: Duration = Duration::from_secs(19);

/// A validated activation request.
#[derive(Debug, Clone)]
pub struct ActivateRequest {
    pub instance: String,
    pub instance_token: Secret,
    pub ryzeapi_url: Option<String>,
    pub chatwoot_base_url: String,
    pub chatwoot_account_id: i64,
    pub chatwoot_api_token: Secret,
    pub inbox_name: Option<String>,
    pub sign_messages: bool,
    pub ignore_groups: bool,
    pub start_as_pending: bool,
    pub reopen_resolved: bool,
}

impl ActivateRequest {
    /// Parses and validates the JSON body. Unknown fields are ignored.
    pub fn parse(body: &[u8]) -> Result<Self, AppError> {
        let value: Value = serde_json::from_slice(body).map_err(|e| invalid(format!("malformed JSON ({e})")))?;
        let Value::Object(fields) = value else { return Err(invalid("the body must be a JSON object")) };
        // Not trimmed: openapi.json's pattern allows no spaces, and what the schema refuses the bridge refuses.
        let instance = match fields.get("instance") {
            Some(Value::String(s)) => s.clone(),
            _ => required_string(&fields, "instance")?,
        };
        let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
        if instance.is_empty() || instance.len() > 64 || !instance.chars().all(valid_char) {
            return Err(invalid("`instance` must be 1–64 characters of A–Z, a–z, 0–9, `_`, `.`, `-`"));
        }
        let base_url = |name: &str, value: String| {
            normalize_base_url(&value).map_err(|problem| invalid(format!("`{name}`: {problem}")))
        };
        // The length is the schema's `maxLength`, counted before trimming.
        let inbox_name = optional_string(&fields, "inboxName")?;
        if inbox_name.as_ref().is_some_and(|n| n.chars().count() > 255) {
            return Err(invalid("`inboxName` must be at most 255 characters"));
        }
        let inbox_name = inbox_name.filter(|n| !is_blank(n)).map(|n| n.trim().to_owned());
        Ok(Self {
            instance_token: Secret::new(required_string(&fields, "instanceToken")?),
            ryzeapi_url: optional_string(&fields, "ryzeapiUrl")?
                .filter(|u| !is_blank(u))
                .map(|u| base_url("ryzeapiUrl", u))
                .transpose()?,
            chatwoot_base_url: base_url("chatwootBaseUrl", required_string(&fields, "chatwootBaseUrl")?)?,
            chatwoot_account_id: account_id(&fields)?,
            chatwoot_api_token: Secret::new(required_string(&fields, "chatwootApiToken")?),
            inbox_name,
            sign_messages: flag(&fields, "signMessages")?,
            ignore_groups: flag(&fields, "ignoreGroups")?,
            start_as_pending: flag(&fields, "startAsPending")?,
            reopen_resolved: flag(&fields, "reopenResolved")?,
            instance,
        })
    }
}

fn invalid(what: impl Into<String>) -> AppError {
    AppError::InvalidBody(what.into())
}

/// Nothing but whitespace and control characters: what openapi.json's patterns call blank
/// (`[\s\x00-\x1f\x7f-\x9f]`), so that the bridge and the schema agree on every string.
fn is_blank(s: &str) -> bool {
    s.chars().all(|c| c.is_whitespace() || c.is_control())
}

fn required_string(fields: &Map<String, Value>, name: &str) -> Result<String, AppError> {
    match fields.get(name) {
        None | Some(Value::Null) => Err(invalid(format!("missing field `{name}`"))),
        Some(Value::String(s)) if is_blank(s) => Err(invalid(format!("`{name}` must not be empty"))),
        Some(Value::String(s)) => Ok(s.trim().to_owned()),
        Some(_) => Err(invalid(format!("`{name}` must be a string"))),
    }
}

fn optional_string(fields: &Map<String, Value>, name: &str) -> Result<Option<String>, AppError> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid(format!("`{name}` must be a string"))),
    }
}

fn flag(fields: &Map<String, Value>, name: &str) -> Result<bool, AppError> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(invalid(format!("`{name}` must be true or false"))),
    }
}

/// `chatwootAccountId`: a positive integer (a string of digits is accepted too, as some callers send one).
fn account_id(fields: &Map<String, Value>) -> Result<i64, AppError> {
    let parsed = match fields.get("chatwootAccountId") {
        None | Some(Value::Null) => return Err(invalid("missing field `chatwootAccountId`")),
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse::<i64>().ok(),
        Some(_) => None,
    };
    parsed.filter(|id| *id > 0).ok_or_else(|| invalid("`chatwootAccountId` must be a positive integer"))
}

/// The result of a successful activation.
#[derive(Debug)]
pub struct Activated {
    pub integration: Model,
    /// `false` when an existing integration of the instance was updated in place.
    pub created: bool,
}

/// Runs an activation end to end. See the module docs for the steps.
pub async fn activate(shared: &Shared, http: &awc::Client, request: ActivateRequest) -> Result<Activated, AppError> {
    let services = shared.services()?;
    let secrets = [request.chatwoot_api_token.expose().to_owned(), request.instance_token.expose().to_owned()];
    let secret_refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    run(shared, services, http, request).await.map_err(|e| e.redacted(&secret_refs))
}

/// The steps of an activation, in order. Each check comes before anything is created; an inbox created
/// for an activation that then fails to persist is deleted again.
async fn run(
    shared: &Shared,
    services: &Services,
    http: &awc::Client,
    request: ActivateRequest,
) -> Result<Activated, AppError> {
    let ryzeapi_url = ryzeapi_url_of(shared, &request)?;
    let deadline = Instant::now() + ACTIVATION_BUDGET;
    let target = ChatwootTarget {
        base_url: request.chatwoot_base_url.clone(),
        account_id: request.chatwoot_account_id,
        token: request.chatwoot_api_token.clone(),
    };
    let chatwoot = chatwoot_client(shared, http, target.clone(), Some(deadline));

    let _instance_guard = services.instance_locks.lock(&request.instance).await;

    let version = check_version(&chatwoot, &request).await?;
    check_administrator(&chatwoot, request.chatwoot_account_id, context(&request, "checking the token")).await?;
    let existing = store::integrations::find_by_instance(&services.db, &request.instance).await?;
    let (id, webhook_secret) = id_and_webhook_secret(services, existing.as_ref())?;
    let webhook_url = format!("{}/v1/webhooks/chatwoot/{id}/{}", shared.settings.public_url, webhook_secret.expose());
    let (inbox, inbox_created) = ensure_inbox(&chatwoot, &request, existing.as_ref(), &webhook_url).await?;
    let persisted = async {
        let sealed = seal_secrets(services, &id, &request, &webhook_secret, &inbox)?;
        let row = integration_row(&request, existing.as_ref(), &id, ryzeapi_url, &inbox, version, sealed);
        let integration = store_integration(shared, services, row, existing.is_some()).await?;
        if inbox_created && existing.is_some() {
            forget_old_conversations(services, &integration).await?;
        }
        Ok::<_, AppError>(integration)
    }
    .await;
    match persisted {
        Ok(integration) => Ok(start_integration(shared, integration, existing.is_none()).await),
        Err(error) => {
            if inbox_created {
                compensate(shared, http, target, inbox.id).await;
            }
            Err(error)
        }
    }
}

/// What the Chatwoot calls of this activation are about, for the wording of their errors.
fn context<'a>(request: &'a ActivateRequest, action: &'a str) -> ChatwootContext<'a> {
    ChatwootContext { base_url: &request.chatwoot_base_url, account_id: request.chatwoot_account_id, action }
}

/// The request's RyzeAPI URL, else the bridge's default (`RYZEAPI_URL`).
fn ryzeapi_url_of(shared: &Shared, request: &ActivateRequest) -> Result<String, AppError> {
    request
        .ryzeapi_url
        .clone()
        .or_else(|| shared.settings.ryzeapi_url.clone())
        .ok_or_else(|| invalid("missing field `ryzeapiUrl` (and the bridge has no RYZEAPI_URL default)"))
}

/// Chatwoot's version, when it tells it; an error when it is one the bridge does not support.
async fn check_version(chatwoot: &ChatwootClient, request: &ActivateRequest) -> Result<Option<String>, AppError> {
    let version = chatwoot_version(chatwoot)
        .await
        .map_err(|e| AppError::from_chatwoot(&e, context(request, "reading the Chatwoot version")))?;
    if let Some((what, detail)) = unsupported_version(version.as_deref()) {
        return Err(AppError::chatwoot_row(Failure::Invalid, detail, None, context(request, &what)));
    }
    Ok(version)
}

/// The stored integration's id and webhook secret (its webhook URL stays the same), else new ones.
fn id_and_webhook_secret(services: &Services, existing: Option<&Model>) -> Result<(String, Secret), AppError> {
    Ok(match existing {
        Some(model) => (
            model.id.clone(),
            open_sealed(&services.sealer, &model.webhook_secret_sealed, &model.id, sealed::WEBHOOK_SECRET)?,
        ),
        None => (
            new_integration_id()?,
            Secret::random(24).map_err(|e| AppError::Internal { detail: format!("random generator failed: {e}") })?,
        ),
    })
}

/// The API inbox, pointed at `webhook_url`: the stored one, updated, when it still exists in the same
/// Chatwoot account, else a new one. Returns whether it was created.
async fn ensure_inbox(
    chatwoot: &ChatwootClient,
    request: &ActivateRequest,
    existing: Option<&Model>,
    webhook_url: &str,
) -> Result<(crate::chatwoot::dto::Inbox, bool), AppError> {
    let inbox_name = request.inbox_name.clone().unwrap_or_else(|| request.instance.clone());
    // Reuse the stored inbox only when it lives in the same Chatwoot account.
    let reusable_inbox = existing
        .filter(|m| {
            m.chatwoot_base_url == request.chatwoot_base_url && m.chatwoot_account_id == request.chatwoot_account_id
        })
        .map(|m| m.inbox_id);
    let ctx = |action| context(request, action);
    Ok(match reusable_inbox {
        Some(inbox_id) => match chatwoot.get_inbox(inbox_id).await {
            Ok(_) => {
                let inbox = chatwoot
                    .update_inbox(inbox_id, &inbox_name, webhook_url)
                    .await
                    .map_err(|e| AppError::from_chatwoot(&e, ctx("updating the inbox")))?;
                (inbox, false)
            }
            Err(e) if e.failure() == Failure::NotFound && !matches!(e, ChatwootError::Unexpected { .. }) => {
                (create_inbox(chatwoot, &inbox_name, webhook_url, ctx("creating the inbox")).await?, true)
            }
            Err(e) => return Err(AppError::from_chatwoot(&e, ctx("reading the inbox"))),
        },
        None => (create_inbox(chatwoot, &inbox_name, webhook_url, ctx("creating the inbox")).await?, true),
    })
}

/// The integration's secrets as stored: sealed, each bound to the integration and its column.
struct SealedSecrets {
    instance_token: String,
    chatwoot_token: String,
    webhook: String,
    signing: Option<String>,
}

/// Seals the integration's secrets for its row.
fn seal_secrets(
    services: &Services,
    id: &str,
    request: &ActivateRequest,
    webhook_secret: &Secret,
    inbox: &crate::chatwoot::dto::Inbox,
) -> Result<SealedSecrets, AppError> {
    let seal = |secret: &Secret, column: &str| {
        services.sealer.seal(secret, id, column).map_err(|e| AppError::PersistFailed(format!("sealing {column}: {e}")))
    };
    Ok(SealedSecrets {
        instance_token: seal(&request.instance_token, sealed::INSTANCE_TOKEN)?,
        chatwoot_token: seal(&request.chatwoot_api_token, sealed::CHATWOOT_TOKEN)?,
        webhook: seal(webhook_secret, sealed::WEBHOOK_SECRET)?,
        signing: inbox
            .secret
            .as_ref()
            .filter(|s| !s.is_empty())
            .map(|s| seal(&Secret::new(s.clone()), sealed::SIGNING_SECRET))
            .transpose()?,
    })
}

/// The integration's row: the request's settings, the inbox, `active`; what an existing row knew and the
/// request does not tell (the Chatwoot version, the creation time) is kept.
fn integration_row(
    request: &ActivateRequest,
    existing: Option<&Model>,
    id: &str,
    ryzeapi_url: String,
    inbox: &crate::chatwoot::dto::Inbox,
    version: Option<String>,
    sealed: SealedSecrets,
) -> Model {
    let now = Utc::now();
    Model {
        id: id.to_owned(),
        instance: request.instance.clone(),
        ryzeapi_url,
        instance_token_sealed: sealed.instance_token,
        chatwoot_base_url: request.chatwoot_base_url.clone(),
        chatwoot_account_id: request.chatwoot_account_id,
        chatwoot_token_sealed: sealed.chatwoot_token,
        inbox_id: inbox.id,
        inbox_name: inbox.name.clone(),
        webhook_secret_sealed: sealed.webhook,
        signing_secret_sealed: sealed.signing,
        sign_messages: request.sign_messages,
        ignore_groups: request.ignore_groups,
        start_as_pending: request.start_as_pending,
        reopen_resolved: request.reopen_resolved,
        status: Status::Active.as_str().to_owned(),
        last_error: String::new(),
        chatwoot_version: version.or_else(|| existing.and_then(|m| m.chatwoot_version.clone())),
        created_at: existing.map_or(now, |m| m.created_at),
        updated_at: now,
    }
}

/// Writes the row (over the existing one, or as a new one).
async fn store_integration(shared: &Shared, services: &Services, row: Model, exists: bool) -> Result<Model, AppError> {
    let id = row.id.clone();
    let result = if exists {
        store::integrations::replace(&services.db, row).await
    } else {
        store::integrations::insert(&services.db, row).await
    };
    // The signing secret may have changed with the inbox.
    shared.webhook_keys.forget(&id);
    result.map_err(|e| AppError::PersistFailed(e.to_string()))
}

/// A new inbox for an existing integration: the chats' conversations were the old inbox's.
async fn forget_old_conversations(services: &Services, integration: &Model) -> Result<(), AppError> {
    store::chats::forget_conversations(&services.db, &integration.id)
        .await
        .map_err(|e| AppError::PersistFailed(e.to_string()))
}

/// Starts the integration's actor, now that it is stored.
async fn start_integration(shared: &Shared, integration: Model, created: bool) -> Activated {
    super::start_actor(shared, &integration.id).await;
    tracing::info!(integration_id = %integration.id, instance = %integration.instance, inbox_id = integration.inbox_id, created, "integration activated");
    Activated { integration, created }
}

/// Chatwoot below [`version::OLDEST_SUPPORTED`] drops `source_id`: every message typed on the phone would
/// come back as an agent's reply and be sent to WhatsApp again, in a loop. Returns what is wrong and the
/// detail. An unknown version passes (a proxy may hide the version JSON); the doctor says so.
fn unsupported_version(version: Option<&str>) -> Option<(String, String)> {
    let text = version?;
    let found = Version::parse(text).filter(|found| *found < version::OLDEST_SUPPORTED)?;
    let what = format!(
        "Chatwoot {found} is older than {}, the oldest version the bridge supports (before it Chatwoot drops `source_id`, so messages typed on the phone would echo back to WhatsApp); upgrade Chatwoot",
        version::OLDEST_SUPPORTED
    );
    Some((what, format!("GET /api answered version {text}")))
}

/// `GET /api`. `Ok(None)` when the answer is not the version JSON (very old or proxied Chatwoot): the
/// profile check that follows tells whether this is a Chatwoot at all. Unreachable is final.
async fn chatwoot_version(chatwoot: &ChatwootClient) -> Result<Option<String>, ChatwootError> {
    match chatwoot.api_info().await {
        Ok(info) => Ok(Some(info.version)),
        Err(e) if matches!(e.failure(), Failure::Unreachable | Failure::ServerError) => Err(e),
        Err(_) => Ok(None),
    }
}

/// The token must belong to an administrator of the account. A missing membership is told apart from a
/// missing account by asking the account itself (Chatwoot answers 404 or 401 there).
async fn check_administrator(
    chatwoot: &ChatwootClient,
    account_id: i64,
    ctx: ChatwootContext<'_>,
) -> Result<(), AppError> {
    let profile = chatwoot.profile().await.map_err(|e| AppError::from_chatwoot(&e, ctx))?;
    match profile.role_on(account_id) {
        Some("administrator") => Ok(()),
        Some(role) => Err(AppError::chatwoot_row(
            Failure::Forbidden,
            format!("the token's user is `{role}` on account {account_id}; `administrator` is required"),
            None,
            ctx,
        )),
        None => match chatwoot.list_inboxes().await {
            Err(e) => Err(AppError::from_chatwoot(&e, ctx)),
            // Super admins can reach accounts they are not members of; inbox creation will tell.
            Ok(_) => Ok(()),
        },
    }
}

async fn create_inbox(
    chatwoot: &ChatwootClient,
    name: &str,
    webhook_url: &str,
    ctx: ChatwootContext<'_>,
) -> Result<crate::chatwoot::dto::Inbox, AppError> {
    chatwoot.create_inbox(name, webhook_url).await.map_err(|e| AppError::from_chatwoot(&e, ctx))
}

/// Deletes an inbox this activation created, after persisting failed. Failure here is logged: the
/// activation already failed and says why.
async fn compensate(shared: &Shared, http: &awc::Client, target: ChatwootTarget, inbox_id: i64) {
    let chatwoot = chatwoot_client(shared, http, target, None);
    match chatwoot.delete_inbox(inbox_id).await {
        Ok(()) => tracing::warn!(inbox_id, "persisting the integration failed; deleted the inbox created for it"),
        Err(e) => {
            tracing::error!(inbox_id, error = %e, "persisting the integration failed and deleting its new inbox failed too; delete it in Chatwoot")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<ActivateRequest, String> {
        ActivateRequest::parse(json.as_bytes()).map_err(|e| e.to_string())
    }

    const OK: &str = r#"{"instance":"suporte","instanceToken":"it","chatwootBaseUrl":"https://cw.example.com/","chatwootAccountId":5,"chatwootApiToken":"ct","unknown":1}"#;

    #[test]
    fn parses_a_minimal_body_with_defaults() {
        let r = parse(OK).unwrap();
        assert_eq!(r.instance, "suporte");
        assert_eq!(r.chatwoot_base_url, "https://cw.example.com");
        assert_eq!(r.chatwoot_account_id, 5);
        assert!(r.ryzeapi_url.is_none() && r.inbox_name.is_none());
        assert!(!r.sign_messages && !r.ignore_groups && !r.start_as_pending && !r.reopen_resolved);
    }

    #[test]
    fn rejects_bad_fields_with_clear_words() {
        let cases = [
            ("{", "invalid body: malformed JSON"),
            ("[]", "invalid body: the body must be a JSON object"),
            (r#"{"instanceToken":"x"}"#, "invalid body: missing field `instance`"),
            (&OK.replace("suporte", "bad name"), "invalid body: `instance` must be 1–64"),
            (&OK.replace("suporte", &"a".repeat(65)), "invalid body: `instance` must be 1–64"),
            (
                &OK.replace(r#""chatwootAccountId":5"#, r#""chatwootAccountId":0"#),
                "invalid body: `chatwootAccountId` must be a positive integer",
            ),
            (
                &OK.replace(r#""chatwootAccountId":5"#, r#""chatwootAccountId":true"#),
                "invalid body: `chatwootAccountId` must be a positive integer",
            ),
            (
                &OK.replace("https://cw.example.com/", "ftp://x"),
                "invalid body: `chatwootBaseUrl`: `ftp://x` must start with http:// or https://",
            ),
            (&OK.replace(r#""ct""#, r#""  ""#), "invalid body: `chatwootApiToken` must not be empty"),
            // Blank as openapi.json's pattern has it: whitespace and control characters only.
            (&OK.replace(r#""ct""#, r#"" \u000b\u001c\u0085""#), "invalid body: `chatwootApiToken` must not be empty"),
            (&OK.replace("suporte", " suporte"), "invalid body: `instance` must be 1–64"),
            (
                &OK.replace(r#""unknown":1"#, &format!(r#""inboxName":"{} ""#, "a".repeat(255))),
                "invalid body: `inboxName` must be at most 255 characters",
            ),
            (
                &OK.replace(r#""unknown":1"#, r#""signMessages":"yes""#),
                "invalid body: `signMessages` must be true or false",
            ),
        ];
        for (body, expected) in cases {
            let err = parse(body).unwrap_err();
            assert!(err.starts_with(expected), "{body} → {err}");
        }
    }

    #[test]
    fn blank_is_what_the_schema_calls_blank() {
        // Python's `\s` (schemathesis) is Unicode's White_Space plus U+001C–U+001F, all within `is_blank`.
        for blank in ["", " ", "\u{b}", "\u{1c}\u{1f}", "\u{85}\u{a0}\u{3000}", "\u{0}\u{7f}\u{9f}"] {
            assert!(is_blank(blank), "{blank:?}");
        }
        for not_blank in ["a", " \u{1}x ", "\u{200b}", "é"] {
            assert!(!is_blank(not_blank), "{not_blank:?}");
        }
        let r = parse(&OK.replace(r#""unknown":1"#, r#""inboxName":" \u001c ","ryzeapiUrl":"\u0001""#)).unwrap();
        assert!(r.inbox_name.is_none() && r.ryzeapi_url.is_none());
    }

    #[test]
    fn accepts_a_numeric_string_account_id() {
        assert_eq!(
            parse(&OK.replace(r#""chatwootAccountId":5"#, r#""chatwootAccountId":"7""#)).unwrap().chatwoot_account_id,
            7
        );
    }
}
