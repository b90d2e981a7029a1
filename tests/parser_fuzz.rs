//! Bounded fuzzing of every parser of outside input (RyzeAPI frames, Chatwoot webhooks, activation
//! bodies): random bytes and mutations of valid inputs never panic. Deterministic (seeded), CI-sized, on
//! stable. The coverage-guided fuzzing lives in `fuzz/` (`cargo fuzz`, run by `.ci/fuzz`); what it finds
//! is replayed here as plain regression cases.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ryze_integrations::chatwoot::webhook::{WebhookEvent, signature_is_valid};
use ryze_integrations::integrations::activation::ActivateRequest;
use ryze_integrations::relay::format::{markdown_to_whatsapp, whatsapp_to_markdown};
use ryze_integrations::relay::inbound::render;
use ryze_integrations::ryzeapi::event::{Envelope, MessageExchange};

/// xorshift64*: reproducible pseudo-random bytes without a crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n.max(1) as u64).unwrap()
    }
}

const SEEDS: &[&str] = &[
    r#"{"event":"message.exchange","eventId":"e1","data":{"id":"3EB0","direction":"incoming","chat":{"jid":"5511999998888@s.whatsapp.net","lid":"1@lid","type":"private"},"sender":{"jid":"5511999998888@s.whatsapp.net","name":"M"},"message":{"type":"image","content":"*a* _b_ ~c~","media":{"caption":"x","base64":"AAAA","fileName":"../a"},"context":{"quotedMessageId":"Q"},"reaction":{"messageId":"T","emoji":"👍"},"edit":{"original_id":"O","text":"t"},"location":{"latitude":1.5,"longitude":2},"contact":[{"display_name":"A","vcard":"TEL:+1"}],"poll":{"title":"p","options":["a",{"name":"b"}]}}}}"#,
    r#"{"event":"message_created","id":1,"content":"**b** [l](http://x) `c`","message_type":"outgoing","private":false,"source_id":null,"content_attributes":{"in_reply_to":2},"conversation":{"id":3,"contact_inbox":{"source_id":"5511@s.whatsapp.net"}},"attachments":[{"data_url":"http://x/a%2F..","file_type":"image"}]}"#,
    r#"{"instance":"suporte","instanceToken":"t","chatwootBaseUrl":"https://x/","chatwootAccountId":5,"chatwootApiToken":"t","inboxName":"n","signMessages":true}"#,
];

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..=rng.below(8) {
        let at = rng.below(out.len() + 1);
        match rng.below(5) {
            0 if !out.is_empty() => {
                let i = at.min(out.len() - 1);
                out[i] = u8::try_from(rng.below(256)).unwrap();
            }
            1 if at < out.len() => {
                out.remove(at);
            }
            2 => out.insert(at, b"{}[]\",:\\0x\xff"[rng.below(11)]),
            3 => {
                let start = rng.below(out.len() + 1);
                let end = (start + rng.below(40)).min(out.len());
                let piece = out[start..end].to_vec();
                out.splice(at..at, piece);
            }
            _ => out.truncate(at),
        }
    }
    out
}

fn exercise(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    if let Ok(envelope) = Envelope::parse(&text) {
        let _ = envelope.routing();
        let message = MessageExchange::from_data(&envelope.data);
        let _ = render(&message, true);
        let _ = render(&message, false);
    }
    if let Ok(event) = WebhookEvent::parse(bytes) {
        let _ = event.message().map(|m| (m.is_for_whatsapp(), m.in_reply_to(), m.is_deleted()));
        let _ = event.typing();
        let _ = event.conversation_status();
    }
    let _ = ActivateRequest::parse(bytes);
    let _ = markdown_to_whatsapp(&text);
    let _ = whatsapp_to_markdown(&text);
    let _ = signature_is_valid("s", &text, bytes, &text, 0);
}

#[test]
fn deeply_nested_json_is_refused_without_overflowing_the_stack() {
    for depth in [1_000, 100_000] {
        let mut frame = String::from("{\"event\":\"message.exchange\",\"data\":{\"message\":");
        frame.push_str(&"[".repeat(depth));
        frame.push_str(&"]".repeat(depth));
        frame.push_str("}}");
        assert!(Envelope::parse(&frame).is_err());
        exercise(frame.as_bytes());
    }
}

/// HMAC-SHA256 signature header of `<timestamp>.<body>`, as Chatwoot sends it.
fn chatwoot_signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    format!("sha256={}", mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// Found by `cargo fuzz` (chatwoot_webhook): `now - timestamp` overflowed for timestamps near i64::MIN.
#[test]
fn extreme_signature_timestamps_are_stale_not_an_overflow() {
    let now = 1_752_400_000;
    assert!(!signature_is_valid("s", "-9223372036854775808", b"", "", now));
    // Without overflow checks the difference wrapped to i64::MIN, whose `abs()` is negative: inside the window.
    let wrapping = now.wrapping_add(i64::MIN).to_string();
    let body = br#"{"event":"message_created"}"#;
    assert!(!signature_is_valid("s", &wrapping, body, &chatwoot_signature("s", &wrapping, body), now));
    for at in [i64::MIN, i64::MIN + 1, -1, i64::MAX] {
        let at = at.to_string();
        assert!(!signature_is_valid("s", &at, body, &chatwoot_signature("s", &at, body), now), "{at}");
    }
    let fresh = now.to_string();
    assert!(signature_is_valid("s", &fresh, body, &chatwoot_signature("s", &fresh, body), now + 300));
}

/// Found by the `cargo fuzz` target's property: a hex byte written with a sign (`+b` for `0b`) was accepted.
#[test]
fn signature_hex_is_digits_only() {
    let body = br#"{"event":"message_created"}"#;
    let good = chatwoot_signature("s", "1000", body);
    assert!(signature_is_valid("s", "1000", body, &good, 1000));
    assert!(signature_is_valid("s", "1000", body, &good.to_ascii_uppercase().replace("SHA256=", "sha256="), 1000));
    let hex = good.strip_prefix("sha256=").unwrap();
    let pair = (0..hex.len()).step_by(2).find(|i| hex.as_bytes()[*i] == b'0').expect("a byte below 0x10");
    let signed = format!("sha256={}+{}", &hex[..pair], &hex[pair + 1..]);
    assert!(!signature_is_valid("s", "1000", body, &signed, 1000), "{signed}");
}

#[test]
fn random_and_mutated_inputs_never_panic() {
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    for _ in 0..3_000 {
        let len = rng.below(300);
        let random: Vec<u8> = (0..len).map(|_| u8::try_from(rng.below(256)).unwrap()).collect();
        exercise(&random);
    }
    for seed in SEEDS {
        exercise(seed.as_bytes());
        for _ in 0..6_000 {
            let mutated = mutate(&mut rng, seed.as_bytes());
            exercise(&mutated);
        }
    }
}
