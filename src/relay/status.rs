//! The status conversation: one per inbox (contact "WhatsApp status", identifier
//! `ryze-status:<instance>`), where the bridge tells agents about the WhatsApp connection in plain words,
//! shows the pairing QR code as a scannable image, and answers `/status` and `/help`. It receives notices
//! even when resolved.

use entity::chat;
use sea_orm::DatabaseConnection;
use serde_json::{Map, Value};

use super::Outcome;
use super::RelayContext;
use super::conversation::ensure_contact;
use super::inbound::{Post, post_once};
use super::media::MediaFile;
use super::qr_png::qr_png;
use super::step::{Step, outcome_of, store_failed};
use crate::chatwoot::ChatwootClient;
use crate::ryzeapi::event::Party;
use crate::store;
use crate::store::chats::ChatKind;
use crate::store::messages::Direction;
use ryze_wire::keys::{self, BridgeKey};

/// What an `instance.state` means, in words an agent understands: pure, in the wire crate.
pub use ryze_wire::render::notice;

const NAME: &str = "WhatsApp status";

/// The instance's status chat, created (with its contact) on first use.
async fn status_chat(db: &DatabaseConnection, relay: &RelayContext, chatwoot: &ChatwootClient) -> Step<chat::Model> {
    let key = keys::status_chat_key(&relay.instance);
    let aliases = vec![key.clone()];
    let chat = match store::chats::find_by_aliases(db, &relay.integration_id, &aliases).await.map_err(store_failed)? {
        Some((chat, _)) => chat,
        None => store::chats::create(db, &relay.integration_id, &key, ChatKind::Status, NAME, &aliases)
            .await
            .map_err(store_failed)?,
    };
    ensure_contact(db, relay, chatwoot, chat, &Party::default()).await
}

/// `instance.state` → a notice (and the QR code as a PNG for `qr_ready`) in the status conversation.
pub(crate) async fn instance_state(
    db: &DatabaseConnection,
    relay: &RelayContext,
    chatwoot: &ChatwootClient,
    data: &Value,
    row_id: i64,
) -> Outcome {
    let state = data.get("state").and_then(Value::as_str).unwrap_or("unknown");
    let qr = data.get("qrCode").or_else(|| data.get("qrcode")).and_then(Value::as_str).filter(|q| !q.is_empty());
    let file = match (state, qr) {
        ("qr_ready", Some(qr)) => qr_file(qr),
        _ => None,
    };
    let result = async {
        let chat = status_chat(db, relay, chatwoot).await?;
        let key = BridgeKey::Event(row_id).to_string();
        let text = notice(state);
        let post = Post {
            wa_id: &key,
            direction: Direction::Incoming,
            content: &text,
            attributes: Map::new(),
            file: file.as_ref(),
            retrying: true,
        };
        post_once(db, relay, chatwoot, &chat, post).await
    }
    .await;
    outcome_of(result)
}

/// The QR code as a PNG file: RyzeAPI sends either a PNG data URL or the QR text itself.
fn qr_file(qr: &str) -> Option<MediaFile> {
    use base64::Engine as _;
    let bytes = match qr.strip_prefix("data:image/png;base64,") {
        Some(encoded) => base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?,
        None => match qr_png(qr) {
            Ok(png) => png,
            Err(error) => {
                tracing::warn!(%error, "QR code not rendered");
                return None;
            }
        },
    };
    Some(MediaFile::new(bytes, "image/png", "whatsapp-qr.png", false))
}

/// Whether the chat is a status conversation (agents' messages there are commands, not WhatsApp sends).
pub fn is_status_chat(chat: &chat::Model) -> bool {
    chat.kind == ChatKind::Status
}

/// The integration's state as `/status` reports it. The relay only posts the answer; the figures come
/// from the layer that runs the integration (`integrations::view`), which the relay must not name.
pub trait StatusReport: Send + Sync {
    fn summary(&self) -> futures_util::future::LocalBoxFuture<'_, Result<StatusFigures, String>>;
}

/// What `/status` shows.
#[derive(Debug, Clone, Default)]
pub struct StatusFigures {
    pub link_state: &'static str,
    pub since: Option<String>,
    pub reconnects: u64,
    pub to_chatwoot_pending: u64,
    pub to_whatsapp_pending: u64,
    pub failed: u64,
    pub events_received: u64,
    pub messages_to_chatwoot: u64,
    pub messages_to_whatsapp: u64,
}

/// An agent typed in the status conversation: answer `/status` and `/help` there.
pub(crate) async fn command(
    db: &DatabaseConnection,
    relay: &RelayContext,
    chatwoot: &ChatwootClient,
    chat: &chat::Model,
    chatwoot_message_id: i64,
    text: &str,
) -> Step<()> {
    let answer = match text.split_whitespace().next().unwrap_or_default() {
        "/status" => summary(relay).await,
        "/help" => "Commands here:\n- `/status`: the WhatsApp connection, queues and totals\n- `/help`: this list\n\nThis conversation receives WhatsApp connection notices; messages typed here are not sent to WhatsApp.".to_owned(),
        _ => "Messages here are not sent to WhatsApp. Type `/help` for the commands.".to_owned(),
    };
    let key = BridgeKey::Command(chatwoot_message_id).to_string();
    let post = Post {
        wa_id: &key,
        direction: Direction::Incoming,
        content: &answer,
        attributes: Map::new(),
        file: None,
        retrying: true,
    };
    post_once(db, relay, chatwoot, chat, post).await
}

async fn summary(relay: &RelayContext) -> String {
    let live = match relay.status_report.summary().await {
        Ok(live) => live,
        Err(e) => return format!("Status unavailable: {e}"),
    };
    let since = live.since.as_deref().unwrap_or("-");
    format!(
        "**{}** — link to RyzeAPI: {} since {since} ({} reconnects)\nTo Chatwoot: {} pending · To WhatsApp: {} pending · Failed: {}\nTotals: {} events received, {} messages to Chatwoot, {} to WhatsApp",
        relay.instance,
        live.link_state,
        live.reconnects,
        live.to_chatwoot_pending,
        live.to_whatsapp_pending,
        live.failed,
        live.events_received,
        live.messages_to_chatwoot,
        live.messages_to_whatsapp,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qr_from_text_or_data_url() {
        let from_text = qr_file("2@abc").unwrap();
        assert!(from_text.upload().bytes.starts_with(b"\x89PNG"));
        let from_url = qr_file("data:image/png;base64,iVBORw0KGgo=").unwrap();
        assert_eq!(from_url.upload().bytes, b"\x89PNG\r\n\x1a\n");
    }
}
