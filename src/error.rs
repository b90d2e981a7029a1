//! `AppError`: every error the management and webhook API can answer, with its stable code, HTTP status
//! and exact message text (contract §2). This is the only place errors become HTTP responses.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError, web};
use serde::Serialize;

use crate::chatwoot::{ChatwootError, Failure};

#[derive(Debug, Clone, thiserror::Error)]
pub enum AppError {
    #[error("missing or invalid bridge token")]
    Unauthorized,
    #[error("bridge is starting")]
    NotReady,
    #[error("integration not found")]
    IntegrationNotFound,
    #[error("no such route")]
    RouteNotFound,
    /// A trace of a message the bridge has no record of: the text says what to check.
    #[error("{0}")]
    MessageNotFound(String),
    /// Unknown integration or wrong secret on the webhook route: nothing more is said.
    #[error("not found")]
    WebhookNotFound,
    #[error("invalid or stale webhook signature")]
    BadSignature,
    /// A known path asked with a method it does not serve; `allow` lists the ones it does (`Allow` header).
    #[error("method not allowed")]
    MethodNotAllowed { allow: String },
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("invalid body: {0}")]
    InvalidBody(String),
    /// The query string does not fit the route (e.g. `keepInbox=null`).
    #[error("invalid query string: {0}")]
    InvalidQuery(String),
    /// A path segment does not fit the route.
    #[error("invalid path: {0}")]
    InvalidPath(String),
    /// A Chatwoot failure during activation or management, already worded for RyzeAPI.
    #[error("{message}")]
    Chatwoot { code: &'static str, status: u16, message: String, detail: String, upstream_status: Option<u16> },
    #[error("chatwoot integration failed: persist integration: {0}")]
    PersistFailed(String),
    #[error("internal error")]
    Internal { detail: String },
}

/// What a Chatwoot failure was about, for the wording of the error table.
#[derive(Debug, Clone, Copy)]
pub struct ChatwootContext<'a> {
    pub base_url: &'a str,
    pub account_id: i64,
    /// What the bridge was doing, e.g. "creating the inbox" (used by the 422 row).
    pub action: &'a str,
}

impl AppError {
    /// Maps a classified Chatwoot failure to its row of the activation error table (contract §2.1).
    pub fn from_chatwoot(error: &ChatwootError, ctx: ChatwootContext<'_>) -> Self {
        let detail = error.detail();
        Self::chatwoot_row(error.failure(), detail, error.upstream_status(), ctx)
    }

    /// Same as [`AppError::from_chatwoot`] for a failure the bridge found itself (e.g. a role check).
    pub fn chatwoot_row(
        failure: Failure,
        detail: String,
        upstream_status: Option<u16>,
        ctx: ChatwootContext<'_>,
    ) -> Self {
        let ChatwootContext { base_url, account_id, action } = ctx;
        let (code, status, message) = match failure {
            Failure::NotFound => (
                "chatwoot_not_found",
                400,
                format!(
                    "Chatwoot account or endpoint not found — verify chatwootBaseUrl ({base_url}) and chatwootAccountId ({account_id}). Detail: {detail}"
                ),
            ),
            Failure::Invalid => (
                "chatwoot_invalid_request",
                400,
                format!("Chatwoot rejected the request as invalid — {action}. Detail: {detail}"),
            ),
            Failure::Unauthorized => (
                "chatwoot_unauthorized",
                401,
                format!("Chatwoot rejected the API token — verify chatwootApiToken. Detail: {detail}"),
            ),
            Failure::Forbidden => (
                "chatwoot_forbidden",
                403,
                format!(
                    "Chatwoot denied the request — verify the API token has admin scope on account {account_id}. Detail: {detail}"
                ),
            ),
            Failure::Unreachable | Failure::ServerError | Failure::RateLimited => (
                "chatwoot_unreachable",
                502,
                format!(
                    "Chatwoot is unreachable at {base_url} — verify chatwootBaseUrl and that the host is reachable from the server. Detail: {detail}"
                ),
            ),
        };
        Self::Chatwoot { code, status, message, detail, upstream_status }
    }

    /// The stable snake_case code of the error body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::NotReady => "not_ready",
            Self::IntegrationNotFound | Self::RouteNotFound | Self::MessageNotFound(_) | Self::WebhookNotFound => {
                "not_found"
            }
            Self::BadSignature => "invalid_signature",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::InvalidBody(_) => "invalid_body",
            Self::InvalidQuery(_) => "invalid_query",
            Self::InvalidPath(_) => "invalid_path",
            Self::Chatwoot { code, .. } => code,
            Self::PersistFailed(_) => "persist_failed",
            Self::Internal { .. } => "internal",
        }
    }

    /// Replaces every occurrence of the given secrets in the message and detail (defence in depth: a peer
    /// could echo a value back in its error text).
    pub fn redacted(mut self, secrets: &[&str]) -> Self {
        let scrub = |text: &mut String| {
            for secret in secrets.iter().filter(|s| s.len() >= 4) {
                if text.contains(secret) {
                    *text = text.replace(secret, "[redacted]");
                }
            }
        };
        match &mut self {
            Self::Chatwoot { message, detail, .. } => {
                scrub(message);
                scrub(detail);
            }
            Self::InvalidBody(text)
            | Self::InvalidQuery(text)
            | Self::InvalidPath(text)
            | Self::PersistFailed(text)
            | Self::Internal { detail: text } => scrub(text),
            _ => {}
        }
        self
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorFields<'a>,
}

#[derive(Serialize)]
struct ErrorFields<'a> {
    code: &'a str,
    message: String,
    detail: &'a str,
    upstream_status: Option<u16>,
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        let code = match self {
            Self::Unauthorized => 401,
            Self::NotReady => 503,
            Self::IntegrationNotFound | Self::RouteNotFound | Self::MessageNotFound(_) | Self::WebhookNotFound => 404,
            Self::BadSignature => 401,
            Self::MethodNotAllowed { .. } => 405,
            Self::PayloadTooLarge { .. } => 413,
            Self::InvalidBody(_) | Self::InvalidQuery(_) | Self::InvalidPath(_) => 400,
            Self::Chatwoot { status, .. } => *status,
            Self::PersistFailed(_) | Self::Internal { .. } => 500,
        };
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        let (detail, upstream_status) = match self {
            Self::Chatwoot { detail, upstream_status, .. } => (detail.as_str(), *upstream_status),
            Self::Internal { detail } => (detail.as_str(), None),
            _ => ("", None),
        };
        if self.status_code().is_server_error() {
            tracing::error!(code = self.code(), detail, "request failed: {self}");
        }
        let mut response = HttpResponse::build(self.status_code());
        if let Self::MethodNotAllowed { allow } = self {
            response.insert_header((actix_web::http::header::ALLOW, allow.as_str()));
        }
        response.json(ErrorBody {
            error: ErrorFields { code: self.code(), message: self.to_string(), detail, upstream_status },
        })
    }
}

/// The extractor errors of actix-web (query string, path, JSON body) answered through [`AppError`], so
/// that they keep the envelope too. Registered once for the whole app in [`crate::http::configure`].
pub fn extractor_configs(max_body_bytes: usize) -> (web::QueryConfig, web::PathConfig, web::JsonConfig) {
    use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
    // actix-web words these `Query deserialize error: <serde's text>`; the envelope's message already
    // says what failed, so serde's own text is what is kept.
    let query = web::QueryConfig::default().error_handler(|e, _req| {
        let text = match &e {
            QueryPayloadError::Deserialize(inner) => inner.to_string(),
            other => other.to_string(),
        };
        AppError::InvalidQuery(text).into()
    });
    let path = web::PathConfig::default().error_handler(|e, _req| {
        let text = match &e {
            PathError::Deserialize(inner) => inner.to_string(),
            other => other.to_string(),
        };
        AppError::InvalidPath(text).into()
    });
    let json = web::JsonConfig::default().limit(max_body_bytes).error_handler(move |e, _req| match e {
        JsonPayloadError::OverflowKnownLength { .. } | JsonPayloadError::Overflow { .. } => {
            AppError::PayloadTooLarge { limit: max_body_bytes }.into()
        }
        JsonPayloadError::Deserialize(inner) => AppError::InvalidBody(inner.to_string()).into(),
        JsonPayloadError::ContentType => AppError::InvalidBody("expected content-type application/json".into()).into(),
        other => AppError::InvalidBody(other.to_string()).into(),
    });
    (query, path, json)
}

impl From<crate::store::StoreError> for AppError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::Internal { detail: e.to_string() }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const CTX: ChatwootContext<'static> =
        ChatwootContext { base_url: "https://cw.example.com", account_id: 5, action: "creating the inbox" };

    #[test]
    fn wording_matches_the_contract() {
        let e = AppError::from_chatwoot(
            &ChatwootError::Status { status: 401, message: "Invalid Access Token".into(), retry_after: None },
            CTX,
        );
        assert_eq!(e.code(), "chatwoot_unauthorized");
        assert_eq!(e.status_code(), 401);
        assert_eq!(
            e.to_string(),
            "Chatwoot rejected the API token — verify chatwootApiToken. Detail: HTTP 401: Invalid Access Token"
        );

        let e = AppError::from_chatwoot(&ChatwootError::Transport { detail: "connection refused".into() }, CTX);
        assert_eq!(e.status_code(), 502);
        assert_eq!(
            e.to_string(),
            "Chatwoot is unreachable at https://cw.example.com — verify chatwootBaseUrl and that the host is reachable from the server. Detail: connection refused"
        );

        let e = AppError::from_chatwoot(
            &ChatwootError::Status { status: 404, message: "Resource could not be found".into(), retry_after: None },
            CTX,
        );
        assert_eq!(
            e.to_string(),
            "Chatwoot account or endpoint not found — verify chatwootBaseUrl (https://cw.example.com) and chatwootAccountId (5). Detail: HTTP 404: Resource could not be found"
        );
    }

    /// No route of the API has a path that can fail to deserialize (every segment is a `String`), so the
    /// path handler is checked here on a route that has one.
    #[actix_web::test]
    async fn extractor_errors_answer_in_the_envelope() {
        use actix_web::{App, test};
        let (query, path, json) = extractor_configs(1 << 20);
        let app = test::init_service(App::new().app_data(query).app_data(path).app_data(json).route(
            "/n/{n}",
            web::post().to(|n: web::Path<u32>, _b: web::Json<serde_json::Value>| async move {
                HttpResponse::Ok().body(n.to_string())
            }),
        ))
        .await;
        let req = test::TestRequest::post().uri("/n/abc").set_json(serde_json::json!({})).to_request();
        let res = test::call_service(&app, req).await;
        assert_eq!(res.status(), 400);
        let body: serde_json::Value = test::read_body_json(res).await;
        assert_eq!(body["error"]["code"], "invalid_path", "{body}");
        assert!(body["error"]["message"].as_str().unwrap().starts_with("invalid path: "), "{body}");
        let req = test::TestRequest::post()
            .uri("/n/5")
            .insert_header(("content-type", "application/json"))
            .set_payload("{")
            .to_request();
        let res = test::call_service(&app, req).await;
        assert_eq!(res.status(), 400);
        let body: serde_json::Value = test::read_body_json(res).await;
        assert_eq!(body["error"]["code"], "invalid_body", "{body}");
    }

    #[test]
    fn redaction_scrubs_message_and_detail() {
        let e = AppError::from_chatwoot(&ChatwootError::Transport { detail: "bad tok-123456".into() }, CTX)
            .redacted(&["tok-123456"]);
        let AppError::Chatwoot { message, detail, .. } = e else { panic!() };
        assert!(!message.contains("tok-123456") && !detail.contains("tok-123456"));
    }
}
