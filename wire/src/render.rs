//! What RyzeAPI events become as Chatwoot text: any `message.exchange` rendered as a message (or a
//! revoke), and an `instance.state` as a notice for the status conversation. Pure: the inbound relay
//! (`relay::inbound`, `relay::status` in the bridge) posts the result.

use serde_json::Value;

use crate::format::whatsapp_to_markdown;
use crate::identity;
use crate::ryzeapi_event::MessageExchange;

/// What an `instance.state` means, in words an agent understands.
pub fn notice(state: &str) -> String {
    match state {
        "connected" => "✅ WhatsApp is connected. Messages flow normally.".into(),
        "connecting" | "manual_reconnect" => "🔄 WhatsApp is connecting…".into(),
        "disconnected" | "keepalive_timeout" | "stream_error" | "connect_failure" => {
            "⚠️ WhatsApp is disconnected. Messages wait and go out when it reconnects.".into()
        }
        "keepalive_restored" => "✅ The WhatsApp connection recovered.".into(),
        "logged_out" => "🚪 WhatsApp logged out this number. Pair it again in RyzeAPI (scan a new QR code).".into(),
        "qr_ready" => "📷 Scan this QR code with WhatsApp (Settings → Linked devices → Link a device).".into(),
        "pair_success" => "🔗 The number was paired.".into(),
        "pair_error" => "❌ Pairing failed. Try again with a new QR code.".into(),
        "temp_banned" => "⛔ WhatsApp temporarily banned this number. Wait before sending again.".into(),
        "stream_replaced" => "⚠️ This number was opened in another session, which took over the connection.".into(),
        "client_outdated" => "⚠️ WhatsApp reports the client as outdated: update RyzeAPI.".into(),
        other => format!("ℹ️ WhatsApp state: {other}"),
    }
}

/// What a WhatsApp message becomes in Chatwoot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Post(Rendered),
    /// Delete the Chatwoot message of this WhatsApp id.
    Revoke(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The text when no file is attached (for media: a label and the caption).
    pub content: String,
    /// WhatsApp id of the message this one answers, reacts to or edits.
    pub reply_to: Option<String>,
    /// For media: the text to send *with* the file (the caption, after any group sender line).
    pub media_caption: Option<String>,
}

/// Renders any message type as Chatwoot text; nothing is dropped (unknown types become a placeholder).
pub fn render(message: &MessageExchange, is_group: bool) -> Action {
    let body = &message.body;
    let text = message.text.as_deref().map(whatsapp_to_markdown);
    let str_at = |path: &[&str]| {
        let mut value = body;
        for key in path {
            value = value.get(*key)?;
        }
        value.as_str().filter(|s| !s.is_empty()).map(str::to_owned)
    };
    let mut reply_to = message.quoted_id.clone();
    let mut media_caption = None;
    let content = match message.kind.as_str() {
        "text" | "extended_text" => text.unwrap_or_default(),
        "image" | "video" | "audio" | "ptt" | "ptv" | "document" | "sticker" => {
            let label = match message.kind.as_str() {
                "image" => "📷 Image".to_owned(),
                "video" => "🎥 Video".to_owned(),
                "audio" => "🎵 Audio".to_owned(),
                "ptt" => "🎤 Voice message".to_owned(),
                "ptv" => "🎥 Video note".to_owned(),
                "sticker" => "Sticker".to_owned(),
                _ => format!(
                    "📄 Document{}",
                    str_at(&["media", "fileName"]).map(|n| format!(": {n}")).unwrap_or_default()
                ),
            };
            let caption = str_at(&["media", "caption"]).map(|c| whatsapp_to_markdown(&c)).or(text);
            media_caption = Some(caption.clone().unwrap_or_default());
            match caption {
                Some(caption) => format!("{label}\n{caption}"),
                None => label,
            }
        }
        "location" => {
            let location = body.get("location").unwrap_or(&Value::Null);
            let coordinate =
                |key: &str, alt: &str| location.get(key).or_else(|| location.get(alt)).and_then(Value::as_f64);
            let mut lines = vec!["📍 Location".to_owned()];
            lines.extend(
                ["name", "address"].iter().filter_map(|k| location.get(*k).and_then(Value::as_str)).map(str::to_owned),
            );
            if let (Some(lat), Some(lng)) =
                (coordinate("latitude", "degreesLatitude"), coordinate("longitude", "degreesLongitude"))
            {
                lines.push(format!("https://maps.google.com/?q={lat},{lng}"));
            }
            lines.join("\n")
        }
        "contact" | "contacts" | "contact_array" => {
            render_contacts(body.get("contact").or_else(|| body.get("contacts")))
        }
        "reaction" => {
            let reaction = body.get("reaction").unwrap_or(&Value::Null);
            reply_to = reaction.get("messageId").and_then(Value::as_str).map(str::to_owned).or(reply_to);
            match reaction.get("emoji").and_then(Value::as_str).filter(|e| !e.is_empty()) {
                Some(emoji) => format!("Reacted {emoji}"),
                None => "Removed a reaction".to_owned(),
            }
        }
        "message_edit" => {
            reply_to = str_at(&["edit", "original_id"]).or(reply_to);
            let new_text = str_at(&["edit", "text"]).map(|t| whatsapp_to_markdown(&t)).or(text).unwrap_or_default();
            format!("✏️ Edited: {new_text}")
        }
        "message_revoke" => {
            let target =
                str_at(&["edit", "original_id"]).or_else(|| str_at(&["edit", "messageId"])).or(reply_to.clone());
            return match target {
                Some(target) => Action::Revoke(target),
                None => Action::Post(Rendered {
                    content: "🚫 A message was deleted".into(),
                    reply_to: None,
                    media_caption: None,
                }),
            };
        }
        "poll" | "poll_creation" => {
            let poll = body.get("poll").unwrap_or(&Value::Null);
            let title = poll.get("title").or_else(|| poll.get("name")).and_then(Value::as_str).unwrap_or("Poll");
            let options: Vec<String> = poll
                .get("options")
                .and_then(Value::as_array)
                .map(|o| {
                    o.iter()
                        .filter_map(|v| v.as_str().or_else(|| v.get("name").and_then(Value::as_str)))
                        .map(|o| format!("- {o}"))
                        .collect()
                })
                .unwrap_or_default();
            std::iter::once(format!("📊 {title}")).chain(options).collect::<Vec<_>>().join("\n")
        }
        "buttons_response" | "list_response" | "interactive_response" | "template_button_reply" => {
            let choice = text
                .or_else(|| str_at(&["interactive", "title"]))
                .or_else(|| str_at(&["button_response", "title"]))
                .or_else(|| str_at(&["list_response", "title"]))
                .or_else(|| str_at(&["interactive", "selectedButtonId"]))
                .or_else(|| str_at(&["interactive", "selectedRowId"]))
                .unwrap_or_else(|| "(no text)".into());
            format!("🔘 {choice}")
        }
        other => {
            let shown = text.map(|t| format!("\n{t}")).unwrap_or_default();
            format!("[WhatsApp message of type `{other}`]{shown}")
        }
    };
    let sender_line = (is_group && message.direction != "outgoing").then(|| {
        let sender = message.sender.name.clone().unwrap_or_else(|| "Unknown".into());
        match message.sender.jid.as_deref().and_then(identity::phone_number) {
            Some(phone) => format!("**{sender}** ({phone}):"),
            None => format!("**{sender}**:"),
        }
    });
    let with_sender = |text: String| match &sender_line {
        Some(line) if text.is_empty() => line.clone(),
        Some(line) => format!("{line}\n{text}"),
        None => text,
    };
    Action::Post(Rendered { content: with_sender(content), reply_to, media_caption: media_caption.map(with_sender) })
}

/// vCards (one or several) as readable text: name and numbers.
fn render_contacts(contact: Option<&Value>) -> String {
    let cards: Vec<&Value> = match contact {
        Some(Value::Array(list)) => list.iter().collect(),
        Some(one) => vec![one],
        None => Vec::new(),
    };
    let mut lines = Vec::new();
    for card in cards {
        let name = ["display_name", "displayName", "name"]
            .iter()
            .find_map(|k| card.get(*k).and_then(Value::as_str))
            .unwrap_or("Contact");
        lines.push(format!("👤 {name}"));
        let mut numbers: Vec<String> = ["phone_number", "phoneNumber"]
            .iter()
            .filter_map(|k| card.get(*k).and_then(Value::as_str))
            .map(str::to_owned)
            .collect();
        if let Some(vcard) = card.get("vcard").and_then(Value::as_str) {
            for line in vcard.lines().filter(|l| l.to_ascii_uppercase().starts_with("TEL")) {
                if let Some((_, number)) = line.split_once(':') {
                    let number = number.trim().to_owned();
                    if !numbers.contains(&number) {
                        numbers.push(number);
                    }
                }
            }
        }
        lines.extend(numbers.into_iter().map(|n| format!("📞 {n}")));
    }
    if lines.is_empty() { "👤 Contact".into() } else { lines.join("\n") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn message(body: Value) -> MessageExchange {
        MessageExchange::from_data(
            &json!({"id": "X1", "direction": "incoming", "chat": {"jid": "5511999998888@s.whatsapp.net"},
            "sender": {"jid": "5511999998888@s.whatsapp.net", "name": "Maria"}, "message": body}),
        )
    }

    fn post(action: Action) -> Rendered {
        match action {
            Action::Post(r) => r,
            Action::Revoke(t) => panic!("revoke {t}"),
        }
    }

    #[test]
    fn renders_every_kind_as_readable_text() {
        assert_eq!(post(render(&message(json!({"type": "text", "content": "*oi*"})), false)).content, "**oi**");
        assert_eq!(
            post(render(&message(json!({"type": "image", "media": {"caption": "foto"}})), false)).content,
            "📷 Image\nfoto"
        );
        let location = post(render(
            &message(json!({"type": "location", "location": {"latitude": -23.5, "longitude": -46.6, "name": "Loja"}})),
            false,
        ));
        assert_eq!(location.content, "📍 Location\nLoja\nhttps://maps.google.com/?q=-23.5,-46.6");
        let card = post(render(
            &message(
                json!({"type": "contact", "contact": {"display_name": "Ana", "vcard": "BEGIN:VCARD\nTEL;type=CELL:+55 11 91234-5678\nEND:VCARD"}}),
            ),
            false,
        ));
        assert_eq!(card.content, "👤 Ana\n📞 +55 11 91234-5678");
        let reaction =
            post(render(&message(json!({"type": "reaction", "reaction": {"messageId": "T", "emoji": "👍"}})), false));
        assert_eq!((reaction.content.as_str(), reaction.reply_to.as_deref()), ("Reacted 👍", Some("T")));
        let edit = post(render(
            &message(json!({"type": "message_edit", "edit": {"original_id": "O", "text": "novo"}})),
            false,
        ));
        assert_eq!((edit.content.as_str(), edit.reply_to.as_deref()), ("✏️ Edited: novo", Some("O")));
        assert_eq!(
            render(&message(json!({"type": "message_revoke", "edit": {"original_id": "O"}})), false),
            Action::Revoke("O".into())
        );
        let poll = post(render(
            &message(json!({"type": "poll", "poll": {"title": "Q?", "options": [{"name": "a"}, "b"]}})),
            false,
        ));
        assert_eq!(poll.content, "📊 Q?\n- a\n- b");
        assert_eq!(
            post(render(&message(json!({"type": "galaxy_message"})), false)).content,
            "[WhatsApp message of type `galaxy_message`]"
        );
        let quoted = post(render(
            &message(json!({"type": "text", "content": "sim", "context": {"quotedMessageId": "Q"}})),
            false,
        ));
        assert_eq!(quoted.reply_to.as_deref(), Some("Q"));
    }

    #[test]
    fn group_messages_name_their_sender() {
        let rendered = post(render(&message(json!({"type": "text", "content": "oi"})), true));
        assert_eq!(rendered.content, "**Maria** (+5511999998888):\noi");
    }

    #[test]
    fn notices_are_plain_words() {
        assert!(notice("logged_out").contains("Pair it again"));
        assert!(notice("temp_banned").contains("banned"));
        assert_eq!(notice("weird_state"), "ℹ️ WhatsApp state: weird_state");
    }
}
