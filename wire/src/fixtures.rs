//! The recorded payloads in `fixtures/`, through the parsers and renderers as the bridge applies them.

use serde_json::Value;

use crate::chatwoot_webhook::{SIGNATURE_WINDOW_SECS, WebhookAttachment, WebhookEvent, signature_is_valid};
use crate::format::markdown_to_whatsapp;
use crate::identity;
use crate::render::{Action, Rendered, notice, render};
use crate::ryzeapi_event::{Envelope, INSTANCE_CHAT, MessageExchange, Routing, event_id_of};

const LIVE: &str = include_str!("../fixtures/ryzeapi/message-exchange-live.json");
const CATALOG: &str = include_str!("../fixtures/ryzeapi/message-exchange-catalog.json");
const GROUP: &str = include_str!("../fixtures/ryzeapi/message-exchange-group.json");
const IMAGE: &str = include_str!("../fixtures/ryzeapi/message-image.json");
const REVOKE: &str = include_str!("../fixtures/ryzeapi/message-revoke.json");
const STATUS: &str = include_str!("../fixtures/ryzeapi/message-status.json");
const QR: &str = include_str!("../fixtures/ryzeapi/instance-state-qr.json");
const CALL: &str = include_str!("../fixtures/ryzeapi/call-offer.json");

const CREATED: &str = include_str!("../fixtures/chatwoot/message-created.json");
const CREATED_FILES: &str = include_str!("../fixtures/chatwoot/message-created-attachments.json");
const DELETED: &str = include_str!("../fixtures/chatwoot/message-updated-deleted.json");
const TYPING: &str = include_str!("../fixtures/chatwoot/conversation-typing-on.json");
const RESOLVED: &str = include_str!("../fixtures/chatwoot/conversation-status-changed.json");

/// What the Chatwoot bodies were signed with (fixtures/README.md).
const SECRET: &str = "fuzz-signing-secret";
const TIMESTAMP: &str = "1752400000";
const NOW: i64 = 1_752_400_000;

fn envelope(frame: &str) -> Envelope {
    Envelope::parse(frame).unwrap()
}

fn message(frame: &str) -> MessageExchange {
    let envelope = envelope(frame);
    assert_eq!(envelope.event, "message.exchange");
    MessageExchange::from_data(&envelope.data)
}

fn post(action: Action) -> Rendered {
    match action {
        Action::Post(rendered) => rendered,
        Action::Revoke(target) => panic!("revoke {target}"),
    }
}

#[test]
fn live_layout() {
    let envelope = envelope(LIVE);
    assert_eq!(envelope.event_id.as_deref(), Some("evt-1"));
    assert_eq!(event_id_of(LIVE), envelope.event_id);
    assert_eq!(
        envelope.routing(),
        Routing { chat_key: "5511999999999@s.whatsapp.net".into(), message_key: Some("msg:3EB0A1B2C3".into()) }
    );
    let message = message(LIVE);
    assert_eq!(message.id, "3EB0A1B2C3");
    assert_eq!(message.direction, "incoming");
    assert_eq!(message.timestamp.as_deref(), Some("2026-11-21T10:00:00Z"));
    assert_eq!(message.kind, "text");
    assert_eq!(message.text.as_deref(), Some("Olá *tudo bem*? _sim_ ~não~ ```code```"));
    assert_eq!(message.quoted_id.as_deref(), Some("3EB0Q"));
    assert_eq!(message.chat.lid.as_deref(), Some("123456789012345@lid"));
    assert_eq!(message.chat.kind.as_deref(), Some("private"));
    // The sender's device suffix (`:12`) is not part of the JID.
    assert_eq!(message.sender.jid.as_deref(), Some("5511999999999@s.whatsapp.net"));
    assert_eq!(message.sender.picture_url.as_deref(), Some("https://pps.whatsapp.net/v/t61/p.jpg"));
    assert!(!message.is_own_echo());
    assert_eq!(
        identity::aliases(&message.chat),
        ["5511999999999@s.whatsapp.net", "551199999999@s.whatsapp.net", "123456789012345@lid"]
    );
    let rendered = post(render(&message, false));
    assert_eq!(rendered.content, "Olá **tudo bem**? _sim_ ~~não~~ ```code```");
    assert_eq!((rendered.reply_to.as_deref(), rendered.media_caption), (Some("3EB0Q"), None));
}

#[test]
fn catalog_layout() {
    let envelope = envelope(CATALOG);
    assert_eq!(envelope.event_id, None);
    assert_eq!(envelope.routing().message_key.as_deref(), Some("msg:wamid.1"));
    let message = message(CATALOG);
    // Every field from inside `data.message`, the text from `content.text`.
    assert_eq!(message.id, "wamid.1");
    assert_eq!(message.direction, "incoming");
    assert_eq!(message.timestamp.as_deref(), Some("2026-04-28T10:30:00Z"));
    assert_eq!(message.chat.jid.as_deref(), Some("5511999999999@s.whatsapp.net"));
    assert_eq!(message.chat.name.as_deref(), Some("João"));
    assert_eq!(message.sender.name.as_deref(), Some("João"));
    assert_eq!((message.kind.as_str(), message.text.as_deref()), ("text", Some("Hello *there*")));
    assert_eq!(post(render(&message, false)).content, "Hello **there**");
}

#[test]
fn group_message_names_its_sender() {
    let message = message(GROUP);
    assert_eq!(message.chat.key().as_deref(), Some("120363012345678901@g.us"));
    assert_eq!(identity::aliases(&message.chat), ["120363012345678901@g.us"]);
    assert_eq!(post(render(&message, true)).content, "**Ana** (+5511988887777):\nbom dia");
}

#[test]
fn image_with_caption() {
    // A numeric `eventId` is read as its digits.
    assert_eq!(envelope(IMAGE).event_id.as_deref(), Some("42"));
    let rendered = post(render(&message(IMAGE), false));
    assert_eq!(rendered.content, "📷 Image\n**legenda**");
    assert_eq!(rendered.media_caption.as_deref(), Some("**legenda**"));
}

#[test]
fn revoke_names_the_original() {
    assert_eq!(envelope(REVOKE).routing().message_key.as_deref(), Some("revoke:3EB0A1B2C3"));
    assert_eq!(render(&message(REVOKE), false), Action::Revoke("3EB0ORIG".into()));
}

#[test]
fn receipts_calls_and_states_route_by_chat_or_instance() {
    let status = envelope(STATUS);
    assert_eq!(status.routing(), Routing { chat_key: "5511999999999@s.whatsapp.net".into(), message_key: None });

    let call = envelope(CALL);
    assert_eq!(call.event, "call.update");
    assert_eq!(call.routing().chat_key, "5511999999999@s.whatsapp.net");
    assert_eq!(identity::phone_number(&call.routing().chat_key).as_deref(), Some("+5511999999999"));

    let state = envelope(QR);
    assert_eq!(state.routing(), Routing { chat_key: INSTANCE_CHAT.into(), message_key: None });
    assert_eq!(state.data.get("state").and_then(Value::as_str), Some("qr_ready"));
    assert!(notice("qr_ready").starts_with("📷 Scan this QR code"));
    let qr = state.data.get("qrCode").and_then(Value::as_str).unwrap();
    assert!(crate::qr_png::qr_png(qr).unwrap().starts_with(b"\x89PNG\r\n\x1a\n"));
}

#[test]
fn message_created_is_signed_and_parsed() {
    let signature = "sha256=910b1d9f6e73038e748e7b836eaa6d3d035e5fb2f2f552eed270d88ca4908508";
    let body = CREATED.as_bytes();
    assert!(signature_is_valid(SECRET, TIMESTAMP, body, signature, NOW));
    assert!(signature_is_valid(SECRET, TIMESTAMP, body, signature, NOW + SIGNATURE_WINDOW_SECS));
    assert!(!signature_is_valid(SECRET, TIMESTAMP, body, signature, NOW + SIGNATURE_WINDOW_SECS + 1));
    assert!(!signature_is_valid("another-secret", TIMESTAMP, body, signature, NOW));
    let tampered = CREATED.replace("Agent Ana", "Agent Bob");
    assert!(!signature_is_valid(SECRET, TIMESTAMP, tampered.as_bytes(), signature, NOW));

    let event = WebhookEvent::parse(body).unwrap();
    assert_eq!(event.event, "message_created");
    let message = event.message().unwrap();
    assert_eq!(message.id, 9001);
    assert_eq!(message.message_type, "outgoing");
    assert!(message.is_for_whatsapp());
    assert!(!message.is_deleted() && !message.has_external_error());
    assert_eq!(message.in_reply_to(), Some(8990));
    assert_eq!(message.sender_name.as_deref(), Some("Agent Ana"));
    assert_eq!(message.conversation_id, 34);
    assert_eq!(message.contact_source_id.as_deref(), Some("5511999999999@s.whatsapp.net"));
    assert_eq!(message.contact_phone.as_deref(), Some("+5511999999999"));
    assert_eq!(message.created_at.map(|t| t.to_rfc3339()).as_deref(), Some("2026-07-13T10:00:00.123+00:00"));
    assert!(message.attachments.is_empty());
    let content = message.content.as_deref().unwrap();
    assert_eq!(markdown_to_whatsapp(content), "Olá *Maria*, veja https://x.com/a?b=1 e `code`");
}

#[test]
fn message_created_with_attachments() {
    let signature = "sha256=17004d7aa9dcbc6664373ecd050f30a2d142ab35f6ee51434d34c42bab3ebeaf";
    assert!(signature_is_valid(SECRET, TIMESTAMP, CREATED_FILES.as_bytes(), signature, NOW));
    let message = WebhookEvent::parse(CREATED_FILES.as_bytes()).unwrap().message().unwrap();
    assert_eq!(message.content, None);
    assert_eq!(
        message.attachments,
        [
            WebhookAttachment {
                data_url: "https://chat.example/rails/active_storage/blobs/redirect/eyJfcmFpbHMi/photo%2F..%2Fx.jpg?disposition=inline".into(),
                file_type: "image".into(),
                content_type: Some("image/jpeg".into()),
                extension: Some("jpg".into()),
            },
            WebhookAttachment {
                data_url: "https://chat.example/a.mp3".into(),
                file_type: "audio".into(),
                content_type: None,
                extension: None,
            },
        ]
    );
}

#[test]
fn message_updated_deleted() {
    let signature = "sha256=83e15d967ee18cc3ac43e3e838003e530996a5c88c86ef9f460f3af7e980e94f";
    assert!(signature_is_valid(SECRET, TIMESTAMP, DELETED.as_bytes(), signature, NOW));
    let event = WebhookEvent::parse(DELETED.as_bytes()).unwrap();
    assert_eq!(event.event, "message_updated");
    assert!(event.message().unwrap().is_deleted());
}

#[test]
fn conversation_events() {
    let signature = "sha256=beb88872f43edf0cb030544dfdab92f5ed8c27b6a9fdd7a78e30ffb6228f0524";
    assert!(signature_is_valid(SECRET, TIMESTAMP, TYPING.as_bytes(), signature, NOW));
    let typing = WebhookEvent::parse(TYPING.as_bytes()).unwrap();
    assert_eq!(typing.typing(), Some((34, true, false)));
    assert!(typing.message().is_none());

    let resolved = WebhookEvent::parse(RESOLVED.as_bytes()).unwrap();
    assert_eq!(resolved.event, "conversation_status_changed");
    assert_eq!(resolved.conversation_status(), Some((34, "resolved".to_owned())));
    assert_eq!((resolved.message(), resolved.typing()), (None, None));
}
