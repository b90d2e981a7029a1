//! RyzeAPI's REST API for agent replies (contract §4): sends, revokes, read marks, presence.
//!
//! Every call carries `token: <instanceToken>`; sends carry `"source": "chatwoot"` so the echo that comes
//! back over the link is recognised. [`SendError`] is the one classification of RyzeAPI failures into
//! retryable and final, with the final ones worded for the agent who sees them in Chatwoot.

use std::time::{Duration, Instant};

use awc::http::Method;
use serde_json::{Value, json};

use crate::secret::Secret;
use crate::telemetry::Metrics;

/// The `source` label of every send (the bridge's own echoes carry it back).
pub const SOURCE: &str = "chatwoot";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Network trouble, 429, 5xx, or the instance briefly disconnected: try again after `after`.
    #[error("{detail}")]
    Retryable { detail: String, after: Option<Duration> },
    /// No answer (timeout, connection cut): the send may or may not have happened. Retryable, but a
    /// repeat must first make sure the first one did not go out.
    #[error("{detail}")]
    Unanswered { detail: String },
    /// RyzeAPI refused the message for good; `reason` is in plain words for the agent.
    #[error("{reason}")]
    Final { reason: String },
}

impl SendError {
    /// The plain-words reason shown in Chatwoot when retries are exhausted.
    pub fn reason(&self) -> String {
        match self {
            Self::Final { reason } => reason.clone(),
            Self::Retryable { detail, .. } if detail.contains("not connected") => {
                "The WhatsApp number is disconnected from RyzeAPI — reconnect it, then retry".to_owned()
            }
            Self::Retryable { detail, .. } | Self::Unanswered { detail } => {
                format!("WhatsApp could not be reached ({detail})")
            }
        }
    }
}

/// A person as RyzeAPI's contact look-up knows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownContact {
    /// The phone JID (`5511…@s.whatsapp.net`).
    pub jid: Option<String>,
    /// The `@lid` form.
    pub lid: Option<String>,
    pub name: Option<String>,
}

/// How long a typing indicator lasts on WhatsApp unless cleared earlier.
pub const PRESENCE_SECONDS: u64 = 10;

pub struct RyzeApiClient {
    http: awc::Client,
    base_url: String,
    instance: String,
    token: Secret,
    timeout: Duration,
    metrics: Metrics,
    /// The lease the calls are made under (reads go out regardless; they change nothing).
    fence: crate::fence::Fence,
}

/// A media message to send.
#[derive(Debug, Clone)]
pub struct Media<'a> {
    /// `image`, `video`, `audio` or `document`.
    pub media_type: &'a str,
    /// A data URL (`data:<mime>;base64,…`) or a URL RyzeAPI can fetch.
    pub media: &'a str,
    pub mime_type: &'a str,
    pub file_name: &'a str,
    pub caption: Option<&'a str>,
    pub voice: bool,
}

impl RyzeApiClient {
    pub fn new(
        http: awc::Client,
        base_url: &str,
        instance: &str,
        token: Secret,
        timeout: Duration,
        metrics: Metrics,
    ) -> Self {
        Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            instance: instance.to_owned(),
            token,
            timeout,
            metrics,
            fence: crate::fence::Fence::always(),
        }
    }

    /// No call goes out unless `fence` holds at the moment it would be sent.
    pub fn with_fence(mut self, fence: crate::fence::Fence) -> Self {
        self.fence = fence;
        self
    }

    /// Sends a text; returns the WhatsApp message id.
    /// How long a call may take before it counts as unanswered.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub async fn send_text(&self, number: &str, text: &str, reply_to: Option<&str>) -> Result<String, SendError> {
        let mut body = json!({"number": number, "message": text, "source": SOURCE});
        if let Some(reply_to) = reply_to {
            body["replyTo"] = json!(reply_to);
        }
        let answer =
            self.call("send_text", Method::POST, &format!("/api/message/text/{}", self.instance), body).await?;
        message_id(&answer)
    }

    /// Sends a media message; returns the WhatsApp message id.
    pub async fn send_media(
        &self,
        number: &str,
        media: &Media<'_>,
        reply_to: Option<&str>,
    ) -> Result<String, SendError> {
        let mut body = json!({
            "number": number, "mediaType": media.media_type, "mediaUrl": media.media, "mimeType": media.mime_type,
            "fileName": media.file_name, "source": SOURCE,
        });
        if let Some(caption) = media.caption.filter(|c| !c.is_empty()) {
            body["message"] = json!(caption);
        }
        if media.voice {
            body["isVoice"] = json!(true);
        }
        if let Some(reply_to) = reply_to {
            body["replyTo"] = json!(reply_to);
        }
        let answer =
            self.call("send_media", Method::POST, &format!("/api/message/media/{}", self.instance), body).await?;
        message_id(&answer)
    }

    /// Deletes a message for everyone.
    pub async fn revoke(&self, message_id: &str) -> Result<(), SendError> {
        let body = json!({"messageId": message_id, "deleteForEveryone": true});
        self.call("revoke", Method::DELETE, &format!("/api/chat/delete/{}", self.instance), body).await.map(|_| ())
    }

    /// Marks a customer's message (and those before it) as read.
    /// Marks a received message read. In groups RyzeAPI needs its author's JID as `sender`.
    pub async fn mark_read(&self, message_id: &str, number: &str, sender: Option<&str>) -> Result<(), SendError> {
        let mut body = json!({"messageId": message_id, "number": number});
        if let Some(sender) = sender {
            body["sender"] = json!(sender);
        }
        self.call("mark_read", Method::POST, &format!("/api/chat/markRead/{}", self.instance), body).await.map(|_| ())
    }

    /// Shows (`typing`) or clears (`paused`) the typing indicator, for [`PRESENCE_SECONDS`] at most (Chatwoot
    /// sends `typing_off` when the agent stops; this bounds an indicator whose `off` was lost).
    pub async fn presence(&self, number: &str, state: &str) -> Result<(), SendError> {
        // `duration` is in seconds (RyzeAPI caps it at 60, then pauses by itself).
        let body = json!({"number": number, "state": state, "duration": PRESENCE_SECONDS});
        self.call("presence", Method::POST, &format!("/api/chat/presence/{}", self.instance), body).await.map(|_| ())
    }

    /// What WhatsApp knows of a person: `GET /api/chat/contacts/<instance>?number=<jid>` answers the
    /// contact's phone `jid` and `lid` when they are in the synced address book (`found: false`
    /// otherwise; docs: api/chat/contacts-list). `within` bounds the call: a slow or missing route must
    /// never hold a message up for long.
    pub async fn lookup_contact(&self, number: &str, within: Duration) -> Result<Option<KnownContact>, SendError> {
        let query: String = url::form_urlencoded::Serializer::new(String::new()).append_pair("number", number).finish();
        let url = format!("{}/api/chat/contacts/{}?{query}", self.base_url, self.instance);
        let started = Instant::now();
        let sent = self.http.get(&url).insert_header(("token", self.token.expose())).timeout(within).send().await;
        let mut response = match sent {
            Ok(response) => response,
            Err(e) => {
                self.metrics.observe_call("ryzeapi", "lookup_contact", "unanswered", started.elapsed());
                return Err(SendError::Unanswered { detail: e.to_string() });
            }
        };
        let status = response.status().as_u16();
        let bytes = response.body().limit(1024 * 1024).await.unwrap_or_default();
        self.metrics.observe_call("ryzeapi", "lookup_contact", status, started.elapsed());
        if !(200..300).contains(&status) {
            return Err(classify(status, "contact look-up refused", None));
        }
        let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let contact = answer.get("contact").or_else(|| answer.get("data")).unwrap_or(&answer);
        let found = contact.get("found").or_else(|| answer.get("found")).and_then(Value::as_bool).unwrap_or(true);
        let text = |key: &str| contact.get(key).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned);
        let known =
            KnownContact { jid: text("jid"), lid: text("lid"), name: text("name").or_else(|| text("pushName")) };
        Ok((found && (known.jid.is_some() || known.lid.is_some())).then_some(known))
    }

    /// A received message's media from `GET /api/chat/base64/<instance>?messageId=` (404: not stored yet,
    /// retryable). Returns the bytes and the MIME type RyzeAPI reports.
    pub async fn fetch_media(&self, message_id: &str) -> Result<(Vec<u8>, Option<String>), SendError> {
        use base64::Engine as _;
        let query: String =
            url::form_urlencoded::Serializer::new(String::new()).append_pair("messageId", message_id).finish();
        let path = format!("/api/chat/base64/{}?{query}", self.instance);
        let started = Instant::now();
        let url = format!("{}{path}", self.base_url);
        let sent = self.http.get(&url).insert_header(("token", self.token.expose())).timeout(self.timeout).send().await;
        let mut response = sent.map_err(|e| SendError::Unanswered { detail: e.to_string() })?;
        let status = response.status().as_u16();
        let bytes = response.body().limit(96 * 1024 * 1024).await.map_err(|e| SendError::Retryable {
            detail: format!("reading RyzeAPI's answer failed: {e}"),
            after: None,
        })?;
        self.metrics.observe_call("ryzeapi", "fetch_media", status, started.elapsed());
        if status == 404 {
            return Err(SendError::Retryable { detail: "media not stored yet (HTTP 404)".into(), after: None });
        }
        let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if !(200..300).contains(&status) {
            let text = answer.get("error").and_then(|e| e.get("message")).and_then(Value::as_str).unwrap_or("");
            return Err(classify(status, text, None));
        }
        let pick =
            |key: &str| answer.get("data").and_then(|d| d.get(key)).or_else(|| answer.get(key)).and_then(Value::as_str);
        let encoded = pick("base64").ok_or_else(|| SendError::Final { reason: "RyzeAPI returned no media".into() })?;
        let encoded = encoded.split_once("base64,").map_or(encoded, |(_, data)| data);
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|e| SendError::Final { reason: format!("RyzeAPI returned unreadable media ({e})") })?;
        Ok((decoded, pick("mimetype").or_else(|| pick("mime_type")).map(str::to_owned)))
    }

    async fn call(&self, operation: &'static str, method: Method, path: &str, body: Value) -> Result<Value, SendError> {
        let started = Instant::now();
        let result = self.exchange(method, path, body).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(SendError::Retryable { .. }) => "retryable",
            Err(SendError::Unanswered { .. }) => "unanswered",
            Err(SendError::Final { .. }) => "final",
        };
        self.metrics.observe_call("ryzeapi", operation, outcome, started.elapsed());
        result
    }

    async fn exchange(&self, method: Method, path: &str, body: Value) -> Result<Value, SendError> {
        if !self.fence.holds() {
            // Never sent: safe to try again, by whoever holds the lease by then.
            return Err(SendError::Retryable { detail: crate::fence::Fenced.to_string(), after: None });
        }
        let url = format!("{}{path}", self.base_url);
        let sent = self
            .http
            .request(method, &url)
            .insert_header(("token", self.token.expose()))
            .timeout(self.timeout)
            .send_json(&body)
            .await;
        let mut response = sent.map_err(|e| SendError::Unanswered { detail: e.to_string() })?;
        let status = response.status().as_u16();
        let reset = response
            .headers()
            .get("x-ratelimit-reset")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let bytes = response
            .body()
            .limit(4 * 1024 * 1024)
            .await
            .map_err(|e| SendError::Unanswered { detail: format!("reading RyzeAPI's answer failed: {e}") })?;
        let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            return Ok(answer);
        }
        let text = answer
            .get("error")
            .and_then(|e| e.get("message"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).chars().take(200).collect());
        Err(classify(status, &text, reset))
    }
}

/// The one classification of RyzeAPI answers.
fn classify(status: u16, text: &str, reset: Option<u64>) -> SendError {
    let detail = format!("HTTP {status}: {text}");
    match status {
        429 => {
            let after = reset.and_then(|at| {
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
                Some(Duration::from_secs(at.saturating_sub(now).max(1)))
            });
            SendError::Retryable { detail, after }
        }
        500..=599 => SendError::Retryable { detail, after: None },
        413 => SendError::Final { reason: "The file is too large for WhatsApp".to_owned() },
        401 | 403 => SendError::Final {
            reason: "RyzeAPI refused the instance token — re-activate the integration with the current token"
                .to_owned(),
        },
        _ if text.to_ascii_lowercase().contains("not on whatsapp")
            || text.to_ascii_lowercase().contains("not registered") =>
        {
            SendError::Final { reason: "This number is not on WhatsApp".to_owned() }
        }
        _ if text.to_ascii_lowercase().contains("not connected") => SendError::Retryable { detail, after: None },
        _ => SendError::Final { reason: format!("WhatsApp refused the message: {text}") },
    }
}

fn message_id(answer: &Value) -> Result<String, SendError> {
    answer
        .get("data")
        .and_then(|d| d.get("messageId").or_else(|| d.get("id")))
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        // It probably went out: whether it did is for WhatsApp's echo to tell before any repeat.
        .ok_or_else(|| SendError::Unanswered { detail: "RyzeAPI accepted the message without a message id".to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_answers() {
        assert!(matches!(classify(503, "Instance is not connected to WhatsApp", None), SendError::Retryable { .. }));
        assert!(matches!(classify(400, "Instance is not connected to WhatsApp", None), SendError::Retryable { .. }));
        assert_eq!(
            classify(400, "number not on WhatsApp", None),
            SendError::Final { reason: "This number is not on WhatsApp".into() }
        );
        assert_eq!(
            classify(413, "too big", None),
            SendError::Final { reason: "The file is too large for WhatsApp".into() }
        );
        assert!(matches!(classify(429, "Rate limit exceeded", None), SendError::Retryable { after: None, .. }));
        let far = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 30;
        let SendError::Retryable { after: Some(after), .. } = classify(429, "x", Some(far)) else { panic!() };
        assert!(after >= Duration::from_secs(29) && after <= Duration::from_secs(31));
        assert_eq!(
            classify(503, "Instance is not connected to WhatsApp", None).reason(),
            "The WhatsApp number is disconnected from RyzeAPI — reconnect it, then retry"
        );
    }
}
