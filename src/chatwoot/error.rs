//! Chatwoot failures and their classification.
//!
//! Chatwoot answers a role problem with 401, not 403, and tells the cases apart only by its error text
//! (see the reference, §1). [`ChatwootError::failure`] is the single place that turns status and text into
//! a [`Failure`] class; callers decide what a class means for them (an HTTP answer, a retry, a status).

use std::time::Duration;

/// What went wrong, as classified once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The token is unknown, missing, or not a user token (401 `Invalid Access Token`, …).
    Unauthorized,
    /// The token is valid but may not do this (401 `You are not authorized …`, account suspended, 403).
    Forbidden,
    /// 404, or an answer that is not Chatwoot's JSON (the URL is not a Chatwoot API).
    NotFound,
    /// 422, 402 (plan limit) and other 4xx: the request itself was refused.
    Invalid,
    /// 429: slow down (and retry later).
    RateLimited,
    /// 5xx: Chatwoot is up but failing (retryable).
    ServerError,
    /// DNS, refused connection, TLS, timeout (retryable).
    Unreachable,
}

impl Failure {
    /// Whether trying again later can succeed.
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::RateLimited | Self::ServerError | Self::Unreachable)
    }
}

/// What a 422 from message create means. Chatwoot answers 422 there for *any* exception
/// (`messages_controller.rb#create`: `rescue StandardError => e; render_could_not_create_error(e.message)`),
/// so the text decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unprocessable {
    /// `Validation failed: Too many messages`: the conversation had `CONVERSATION_MESSAGE_PER_MINUTE_LIMIT`
    /// (200) messages in the last minute (`message.rb#prevent_message_flooding`). Wait, then send.
    Flooded,
    /// A validation of the request itself (`Validation failed: …`, `param is missing …`): the same request
    /// fails again.
    Invalid,
    /// Any other exception (storage upload, Redis, a database timeout, or an after-commit callback, after
    /// which the message exists): look for the message, then try again.
    Unknown,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ChatwootError {
    /// No HTTP answer at all; the request did not reach Chatwoot (refused, DNS, TLS).
    #[error("{detail}")]
    Transport { detail: String },
    /// The request may or may not have been carried out (timed out, or the answer was cut off): Chatwoot
    /// may still complete it. Look before doing it again, and not before `waited` has passed once more.
    #[error("{detail}")]
    OutcomeUnknown { detail: String, waited: Duration },
    /// Chatwoot answered with a non-success status. `message` is Chatwoot's own error text.
    #[error("HTTP {status}: {message}")]
    Status { status: u16, message: String, retry_after: Option<Duration> },
    /// A success status whose body is not the JSON Chatwoot sends there.
    #[error("HTTP {status}: unexpected answer: {detail}")]
    Unexpected { status: u16, detail: String },
}

impl ChatwootError {
    /// The one classification of Chatwoot failures.
    pub fn failure(&self) -> Failure {
        match self {
            Self::Transport { .. } | Self::OutcomeUnknown { .. } => Failure::Unreachable,
            Self::Unexpected { .. } => Failure::NotFound,
            Self::Status { status, message, .. } => match *status {
                401 if message.starts_with("You are not authorized") || message == "Account is suspended" => {
                    Failure::Forbidden
                }
                401 => Failure::Unauthorized,
                403 => Failure::Forbidden,
                404 => Failure::NotFound,
                429 => Failure::RateLimited,
                500..=599 => Failure::ServerError,
                _ => Failure::Invalid,
            },
        }
    }

    /// For a 422, what it means (see [`Unprocessable`]).
    pub fn unprocessable(&self) -> Option<Unprocessable> {
        let Self::Status { status: 422, message, .. } = self else { return None };
        Some(if message.contains("Too many messages") {
            Unprocessable::Flooded
        } else if message.starts_with("Validation failed") || message.starts_with("param is missing") {
            Unprocessable::Invalid
        } else {
            Unprocessable::Unknown
        })
    }

    /// Chatwoot's HTTP status, when it answered.
    pub fn upstream_status(&self) -> Option<u16> {
        match self {
            Self::Transport { .. } | Self::OutcomeUnknown { .. } => None,
            Self::Status { status, .. } | Self::Unexpected { status, .. } => Some(*status),
        }
    }

    /// The `Detail:` text of the error table: `HTTP 401: Invalid Access Token`, or the transport error.
    pub fn detail(&self) -> String {
        self.to_string()
    }

    /// How long Chatwoot asked us to wait (429 `Retry-After`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Extracts Chatwoot's error text from an error body: `{"error":"…"}`, `{"message":"…"}` or
/// `{"errors":["…",…]}`; anything else (an HTML proxy page, rack-attack's `Retry later`) is shortened.
pub(crate) fn error_text(body: &[u8]) -> String {
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
        if let Some(text) = value.get("error").and_then(|v| v.as_str()) {
            return text.to_owned();
        }
        if let Some(text) = value.get("message").and_then(|v| v.as_str()) {
            return text.to_owned();
        }
        if let Some(list) = value.get("errors").and_then(|v| v.as_array()) {
            let texts: Vec<&str> = list.iter().filter_map(|v| v.as_str()).collect();
            if !texts.is_empty() {
                return texts.join(", ");
            }
        }
    }
    let text = String::from_utf8_lossy(body);
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.is_empty() {
        return "(empty body)".to_owned();
    }
    let mut short: String = one_line.chars().take(200).collect();
    if short.len() < one_line.len() {
        short.push('…');
    }
    short
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16, message: &str) -> ChatwootError {
        ChatwootError::Status { status, message: message.into(), retry_after: None }
    }

    #[test]
    fn classifies_chatwoot_answers() {
        assert_eq!(status(401, "Invalid Access Token").failure(), Failure::Unauthorized);
        assert_eq!(status(401, "You need to sign in or sign up before continuing.").failure(), Failure::Unauthorized);
        assert_eq!(status(401, "Access to this endpoint is not authorized for bots").failure(), Failure::Unauthorized);
        assert_eq!(status(401, "You are not authorized to do this action").failure(), Failure::Forbidden);
        assert_eq!(status(401, "You are not authorized to access this account").failure(), Failure::Forbidden);
        assert_eq!(status(401, "Account is suspended").failure(), Failure::Forbidden);
        assert_eq!(status(404, "Resource could not be found").failure(), Failure::NotFound);
        assert_eq!(status(422, "Name can't be blank").failure(), Failure::Invalid);
        assert_eq!(status(402, "Account limit exceeded. Upgrade to a higher plan").failure(), Failure::Invalid);
        assert_eq!(status(429, "Retry later").failure(), Failure::RateLimited);
        assert_eq!(status(503, "x").failure(), Failure::ServerError);
        assert_eq!(ChatwootError::Transport { detail: "connection refused".into() }.failure(), Failure::Unreachable);
        assert_eq!(status(401, "Invalid Access Token").detail(), "HTTP 401: Invalid Access Token");
    }

    #[test]
    fn tells_the_422s_of_message_create_apart() {
        assert_eq!(status(422, "Validation failed: Too many messages").unprocessable(), Some(Unprocessable::Flooded));
        assert_eq!(
            status(422, "Validation failed: Content is too long (maximum is 150000 characters)").unprocessable(),
            Some(Unprocessable::Invalid)
        );
        assert_eq!(
            status(422, "Net::ReadTimeout with #<TCPSocket:(closed)>").unprocessable(),
            Some(Unprocessable::Unknown)
        );
        assert_eq!(status(500, "Validation failed: Too many messages").unprocessable(), None);
    }

    #[test]
    fn extracts_error_texts() {
        assert_eq!(error_text(br#"{"error":"Invalid Access Token"}"#), "Invalid Access Token");
        assert_eq!(
            error_text(br#"{"message":"Phone number has already been taken","attributes":["phone_number"]}"#),
            "Phone number has already been taken"
        );
        assert_eq!(
            error_text(br#"{"errors":["You need to sign in or sign up before continuing."]}"#),
            "You need to sign in or sign up before continuing."
        );
        assert_eq!(error_text(b"Retry later\n"), "Retry later");
        assert_eq!(error_text(b""), "(empty body)");
        assert!(error_text("<html>x</html>".repeat(50).as_bytes()).ends_with('…'));
    }
}
