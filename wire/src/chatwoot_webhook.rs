//! Chatwoot's inbox webhook: payloads (reference §6) and their signature (Chatwoot ≥ 4.13).

use serde_json::Value;

/// How far `X-Chatwoot-Timestamp` may be from now.
pub const SIGNATURE_WINDOW_SECS: i64 = 300;

/// Verifies `X-Chatwoot-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>` and the
/// timestamp window. Comparison is constant-time.
pub fn signature_is_valid(secret: &str, timestamp: &str, body: &[u8], signature: &str, now_unix: i64) -> bool {
    use hmac::{Hmac, Mac};
    let Ok(at) = timestamp.trim().parse::<i64>() else { return false };
    // `abs_diff`: a subtraction overflows for timestamps near i64::MIN (found by fuzzing: a panic with
    // overflow checks, and without them a wrap to i64::MIN that passed the window).
    if now_unix.abs_diff(at) > SIGNATURE_WINDOW_SECS.unsigned_abs() {
        return false;
    }
    let Some(hex) = signature.trim().strip_prefix("sha256=") else { return false };
    let Some(expected) = decode_hex(hex) else { return false };
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()) else { return false };
    mac.update(timestamp.trim().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    // Only hex digits: `from_str_radix` alone also takes a sign, so `+f` would pass as `0f` (a second spelling
    // of a valid signature; found by the fuzz target's property).
    if !hex.len().is_multiple_of(2) || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok()).collect()
}

/// One webhook delivery.
#[derive(Debug, Clone)]
pub struct WebhookEvent {
    pub event: String,
    pub body: Value,
}

impl WebhookEvent {
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        let value: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON ({e})"))?;
        let event = value.get("event").and_then(Value::as_str).ok_or("no `event`")?.to_owned();
        Ok(Self { event, body: value })
    }

    /// The message of `message_created` / `message_updated`.
    pub fn message(&self) -> Option<WebhookMessage> {
        WebhookMessage::from_value(&self.body)
    }

    /// The conversation (display id) and its status, for conversation events.
    pub fn conversation_status(&self) -> Option<(i64, String)> {
        let id = self.body.get("id").and_then(Value::as_i64)?;
        let status = self.body.get("status").and_then(Value::as_str)?;
        Some((id, status.to_owned()))
    }

    /// Typing events: the conversation, whether typing started, and whether it was a private note.
    pub fn typing(&self) -> Option<(i64, bool, bool)> {
        let on = match self.event.as_str() {
            "conversation_typing_on" => true,
            "conversation_typing_off" => false,
            _ => return None,
        };
        let conversation = self.body.get("conversation").and_then(|c| c.get("id")).and_then(Value::as_i64)?;
        let private = self.body.get("is_private").and_then(Value::as_bool).unwrap_or(false);
        // Agents carry `type: "user"` (`User#webhook_data`); bots say `agent_bot` and contacts say nothing
        // (`Contact#webhook_data` has no `type`).
        let by_agent = self.body.get("user").and_then(|u| u.get("type")).and_then(Value::as_str) == Some("user");
        by_agent.then_some((conversation, on, private))
    }
}

/// A message as the webhook shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookMessage {
    pub id: i64,
    pub content: Option<String>,
    /// `incoming`, `outgoing`, `template` (a string in webhooks).
    pub message_type: String,
    pub private: bool,
    pub source_id: Option<String>,
    pub content_attributes: Value,
    pub sender_name: Option<String>,
    /// Conversation display id.
    pub conversation_id: i64,
    /// The contact_inbox `source_id` of the conversation (the bridge sets it to the chat's JID).
    pub contact_source_id: Option<String>,
    pub contact_phone: Option<String>,
    pub attachments: Vec<WebhookAttachment>,
    /// When Chatwoot created the message (`created_at`, ISO 8601 in webhooks).
    pub created_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookAttachment {
    pub data_url: String,
    /// `image`, `video`, `audio`, `file`, …
    pub file_type: String,
    pub content_type: Option<String>,
    pub extension: Option<String>,
}

impl WebhookMessage {
    fn from_value(v: &Value) -> Option<Self> {
        let conversation = v.get("conversation")?;
        let str_of = |value: &Value, key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
        let attachments = v
            .get("attachments")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(|a| {
                        Some(WebhookAttachment {
                            data_url: str_of(a, "data_url")?,
                            file_type: str_of(a, "file_type").unwrap_or_else(|| "file".into()),
                            content_type: str_of(a, "content_type"),
                            extension: str_of(a, "extension"),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(Self {
            id: v.get("id").and_then(Value::as_i64)?,
            content: str_of(v, "content"),
            message_type: str_of(v, "message_type").unwrap_or_default(),
            private: v.get("private").and_then(Value::as_bool).unwrap_or(false),
            source_id: str_of(v, "source_id"),
            content_attributes: v.get("content_attributes").cloned().unwrap_or(Value::Null),
            sender_name: v.get("sender").and_then(|s| str_of(s, "available_name").or_else(|| str_of(s, "name"))),
            conversation_id: conversation.get("id").and_then(Value::as_i64)?,
            contact_source_id: conversation.get("contact_inbox").and_then(|c| str_of(c, "source_id")),
            contact_phone: conversation
                .get("meta")
                .and_then(|m| m.get("sender"))
                .and_then(|s| str_of(s, "phone_number")),
            attachments,
            created_at: str_of(v, "created_at")
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
                .map(|t| t.with_timezone(&chrono::Utc)),
        })
    }

    /// An agent's (or template's) message meant for the customer: not a private note, not created by the
    /// bridge (those carry a `source_id`).
    pub fn is_for_whatsapp(&self) -> bool {
        matches!(self.message_type.as_str(), "outgoing" | "template") && !self.private && self.source_id.is_none()
    }

    pub fn is_deleted(&self) -> bool {
        self.content_attributes.get("deleted").and_then(Value::as_bool) == Some(true)
    }

    /// Whether the message still shows a send failure (`content_attributes.external_error` set and not
    /// null). An agent's retry clears it: Chatwoot's `retry` sets the status `sent`, which writes
    /// `external_error: nil` (the key stays, as `null`), then replaces the attributes (`{}` in 4.10.1; all
    /// but `external_error` with the open PR #15912), so neither an empty object nor its absence is the sign.
    pub fn has_external_error(&self) -> bool {
        self.content_attributes.get("external_error").is_some_and(|e| !e.is_null())
    }

    /// The Chatwoot id this message answers (`content_attributes.in_reply_to`).
    pub fn in_reply_to(&self) -> Option<i64> {
        self.content_attributes.get("in_reply_to").and_then(Value::as_i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sign(secret: &str, ts: &str, body: &[u8]) -> String {
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{ts}.").as_bytes());
        mac.update(body);
        let bytes = mac.finalize().into_bytes();
        format!("sha256={}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
    }

    #[test]
    fn signatures() {
        let body = br#"{"event":"message_created"}"#;
        let good = sign("s3cret", "1000", body);
        assert!(signature_is_valid("s3cret", "1000", body, &good, 1100));
        assert!(!signature_is_valid("s3cret", "1000", body, &good, 1000 + 301), "stale");
        assert!(!signature_is_valid("other", "1000", body, &good, 1100), "wrong secret");
        assert!(!signature_is_valid("s3cret", "1000", b"tampered", &good, 1100));
        assert!(!signature_is_valid("s3cret", "1000", body, "sha256=zz", 1100));
        assert!(!signature_is_valid("s3cret", "x", body, &good, 1100));
    }

    #[test]
    fn typing_counts_only_from_agents() {
        let typing = |user: Value| {
            let body = json!({"event": "conversation_typing_on", "user": user, "conversation": {"id": 7}, "is_private": false});
            WebhookEvent::parse(body.to_string().as_bytes()).unwrap().typing()
        };
        assert_eq!(typing(json!({"id": 1, "name": "Ana", "type": "user"})), Some((7, true, false)));
        assert_eq!(typing(json!({"id": 2, "name": "Maria", "phone_number": "+5511"})), None, "a contact has no type");
        assert_eq!(typing(json!({"id": 3, "name": "Bot", "type": "agent_bot"})), None);
    }

    #[test]
    fn a_retry_is_told_by_the_cleared_external_error() {
        let message = |attributes: Value| {
            let body = json!({"event": "message_updated", "id": 1, "message_type": "outgoing", "content_attributes": attributes,
                "conversation": {"id": 2}});
            WebhookEvent::parse(body.to_string().as_bytes()).unwrap().message().unwrap()
        };
        assert!(message(json!({"external_error": "Number not on WhatsApp"})).has_external_error());
        assert!(!message(json!({"external_error": null})).has_external_error(), "Chatwoot 4.10 keeps the key as null");
        assert!(!message(json!({"in_reply_to": 5})).has_external_error(), "PR #15912 keeps other attributes");
        assert!(!message(json!({})).has_external_error());
    }

    #[test]
    fn reads_an_agent_message() {
        let body = json!({"event":"message_created","id":9001,"content":"Olá **Maria**","message_type":"outgoing","private":false,
            "source_id":null,"content_attributes":{"in_reply_to":8990},"sender":{"id":3,"name":"Agent Ana","type":"user"},
            "conversation":{"id":34,"contact_inbox":{"source_id":"5511@s.whatsapp.net"},"meta":{"sender":{"phone_number":"+5511"}}},
            "attachments":[{"data_url":"http://cw/a.jpg","file_type":"image","content_type":"image/jpeg","extension":"jpg"}]});
        let event = WebhookEvent::parse(body.to_string().as_bytes()).unwrap();
        let m = event.message().unwrap();
        assert!(m.is_for_whatsapp());
        assert_eq!(m.conversation_id, 34);
        assert_eq!(m.in_reply_to(), Some(8990));
        assert_eq!(m.sender_name.as_deref(), Some("Agent Ana"));
        assert_eq!(m.contact_source_id.as_deref(), Some("5511@s.whatsapp.net"));
        assert_eq!(m.attachments.len(), 1);
        let mut private = body.clone();
        private["private"] = json!(true);
        assert!(!WebhookEvent::parse(private.to_string().as_bytes()).unwrap().message().unwrap().is_for_whatsapp());
        let mut own = body;
        own["source_id"] = json!("WAID:X");
        assert!(!WebhookEvent::parse(own.to_string().as_bytes()).unwrap().message().unwrap().is_for_whatsapp());
    }
}
