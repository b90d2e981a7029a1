//! Fuzz target: one RyzeAPI WebSocket text frame, through every pure step the bridge applies to it.
//!
//! The link actor (`integrations::actor::on_text`) parses the frame, falls back to `event_id_of` for a
//! malformed one, and routes it; the inbound relay (`relay::inbound::process`) parses the stored frame
//! again and, per event kind, normalises the message, renders it, derives the chat's aliases and
//! names, or builds the status notice. All of it is in `ryze-wire`, which touches no database and no
//! network.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ryze_wire::identity;
use ryze_wire::render::{Action, notice, render};
use ryze_wire::ryzeapi_event::{Envelope, INSTANCE_CHAT, MessageExchange, canonical_jid, event_id_of};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    // The actor skips frames that are not UTF-8 before parsing.
    let Ok(text) = std::str::from_utf8(data) else { return };
    let envelope = match Envelope::parse(text) {
        Ok(envelope) => envelope,
        Err(_) => {
            let _ = event_id_of(text);
            return;
        }
    };
    // The actor acknowledges with the envelope's id; a frame it cannot read is acknowledged with
    // `event_id_of`. Both must agree, or a frame could be stored under one id and acknowledged with another.
    assert_eq!(event_id_of(text), envelope.event_id, "two readings of eventId disagree");

    let routing = envelope.routing();
    // Ordering is per chat key: an empty key would merge unrelated events into one queue.
    assert!(!routing.chat_key.is_empty());

    match envelope.event.as_str() {
        "message.exchange" => message(&MessageExchange::from_data(&envelope.data)),
        "instance.state" => {
            let state = envelope.data.get("state").and_then(Value::as_str).unwrap_or("unknown");
            let _ = notice(state);
            // `qr_png` (for `qr_ready`) is left out: it is no parser (the `qrcode` crate encodes any text), and
            // one call writes ~1 MB of pixels with a bitwise CRC, 15–110 ms under instrumentation, which would
            // spend most of the run on a few inputs. Its unit tests cover it.
        }
        "call.update" => {
            if let Some(from) = envelope.data.get("from").and_then(Value::as_str).filter(|f| !f.is_empty()) {
                let jid = canonical_jid(from);
                let _ = identity::phone_number(&jid);
            }
        }
        // Receipts are ordered with their chat; `relay_receipt` reads only strings from them.
        "message.status" => {}
        _ => assert_eq!(routing.chat_key, INSTANCE_CHAT, "an event of no chat was routed to one"),
    }
});

/// What `relay_message_steps`, `ensure_chat` and `ensure_contact` compute from a message before any I/O.
fn message(message: &MessageExchange) {
    // Chat keys are stored and compared with aliases later: canonical JIDs must stay canonical.
    for jid in [&message.chat.jid, &message.chat.lid, &message.sender.jid].into_iter().flatten() {
        assert_eq!(&canonical_jid(jid), jid, "canonical_jid is not idempotent");
    }
    let _ = message.is_own_echo();
    let chat_kind = message.chat.kind.as_deref().unwrap_or("private");
    let chat_key = message.chat.key().unwrap_or_default();
    let is_group = chat_kind == "group" || chat_key.ends_with("@g.us");
    let aliases = identity::aliases(&message.chat);
    assert!(message.chat.key().is_none_or(|key| aliases.contains(&key)), "the chat key is one of its aliases");
    let _ = identity::phone_number(&chat_key);
    // The real call uses `is_group`; the other value covers the group sender line too.
    for group in [is_group, !is_group] {
        if let Action::Revoke(target) = render(message, group) {
            assert!(!target.is_empty(), "revoke of an empty id");
        }
    }
}
