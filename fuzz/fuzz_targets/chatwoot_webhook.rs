//! Fuzz target: one Chatwoot webhook delivery, through every pure step the bridge applies to it.
//!
//! Input: `<X-Chatwoot-Timestamp>\n<X-Chatwoot-Signature>\n<raw body>` (with fewer than two line breaks
//! the whole input is the body and the headers are missing). Steps, as in `integrations::webhooks` and
//! `relay::outbound::process` of the bridge, all of them in `ryze-wire`: the signature check,
//! `WebhookEvent::parse`, the accessors that decide what is stored, then the stored job's payload parsed
//! again and its Markdown converted for WhatsApp.
#![no_main]

use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use ryze_wire::chatwoot_webhook::{SIGNATURE_WINDOW_SECS, WebhookEvent, signature_is_valid};
use ryze_wire::format::{markdown_to_whatsapp, normalize_agent_text};

/// The signing secret the seeds in corpus/chatwoot_webhook were signed with.
const SECRET: &str = "fuzz-signing-secret";
/// "Now" for the timestamp window: the seeds' timestamp, so that their signatures verify.
const NOW: i64 = 1_752_400_000;

fuzz_target!(|data: &[u8]| {
    let (headers, body) = split(data);
    // actix gives a header only when it is visible ASCII; anything else reaches the check as missing.
    if let Some((timestamp, signature)) = headers {
        let accepted = signature_is_valid(SECRET, timestamp, body, signature, NOW);
        if accepted {
            // Never accept a signature that is not the HMAC of this very timestamp and body.
            let hex = signature.trim().strip_prefix("sha256=").map(str::to_ascii_lowercase);
            assert_eq!(hex, Some(sign(SECRET, timestamp.trim(), body)), "a wrong signature was accepted");
        }
    }
    // Whatever the body, Chatwoot's own signature verifies, and a stale or foreign one does not.
    let good = format!("sha256={}", sign(SECRET, &NOW.to_string(), body));
    assert!(signature_is_valid(SECRET, &NOW.to_string(), body, &good, NOW + SIGNATURE_WINDOW_SECS));
    assert!(!signature_is_valid(SECRET, &NOW.to_string(), body, &good, NOW + SIGNATURE_WINDOW_SECS + 1));
    assert!(!signature_is_valid("another-secret", &NOW.to_string(), body, &good, NOW));

    let Ok(event) = WebhookEvent::parse(body) else { return };
    // `integrations::webhooks::handle`: what is kept, and as which job kind.
    let message = event.message();
    if let Some(message) = &message {
        let _ = (message.is_for_whatsapp(), message.is_deleted(), message.has_external_error());
        let _ = message.in_reply_to();
    }
    let _ = event.conversation_status();
    let _ = event.typing();

    // The job stores the body as lossy UTF-8 and the outbound relay parses it again: that must be the
    // same message, or an agent's reply could go out different from what was accepted.
    let payload = String::from_utf8_lossy(body).into_owned();
    let stored = WebhookEvent::parse(payload.as_bytes()).ok().and_then(|e| e.message());
    assert_eq!(stored, message, "the stored webhook reads differently");
    if let Some(message) = stored {
        let text =
            message.content.as_deref().map(|c| markdown_to_whatsapp(&normalize_agent_text(c))).unwrap_or_default();
        let _ = message.sender_name.map(|agent| format!("*{agent}:*\n{text}"));
    }
});

/// `(Some((timestamp, signature)), body)` when the input starts with two header lines that are visible
/// ASCII, else `(None, body)`.
fn split(data: &[u8]) -> (Option<(&str, &str)>, &[u8]) {
    let mut parts = data.splitn(3, |b| *b == b'\n');
    let (Some(timestamp), Some(signature), Some(body)) = (parts.next(), parts.next(), parts.next()) else {
        return (None, data);
    };
    let visible = |bytes: &[u8]| bytes.iter().all(|b| *b == b'\t' || (0x20..0x7f).contains(b));
    if !visible(timestamp) || !visible(signature) {
        return (None, body);
    }
    match (std::str::from_utf8(timestamp), std::str::from_utf8(signature)) {
        (Ok(timestamp), Ok(signature)) => (Some((timestamp, signature)), body),
        _ => (None, body),
    }
}

/// Lower-case hex of HMAC-SHA256(secret, "<timestamp>.<body>"), as Chatwoot computes it.
fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()) else { return String::new() };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}
