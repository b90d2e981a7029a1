//! A message's media, fetched before anything is created in Chatwoot: inline base64, a plain `s3Url`, or
//! RyzeAPI's media endpoint, with its MIME type and file name settled. Media that cannot be had after a
//! few attempts leaves the message to be posted as a labelled placeholder.

use std::time::Duration;

use serde_json::Value;

use super::RelayContext;
use super::step::{Outcome, Step};
use crate::ryzeapi::event::MessageExchange;

/// Where a message's media comes from: inline base64, a plain `s3Url`, or RyzeAPI's base64 endpoint.
pub(super) struct MediaSource<'a> {
    pub(super) http: &'a awc::Client,
    pub(super) relay: &'a RelayContext,
    /// Attempts so far for this event: after [`MEDIA_ATTEMPTS`] the message is posted without its file.
    pub(super) attempts: i32,
}

/// Attempts to get a message's media before posting it as a labelled placeholder instead.
const MEDIA_ATTEMPTS: i32 = 6;
const MAX_MEDIA_BYTES: usize = 64 * 1024 * 1024;

/// A downloaded file.
pub(super) struct MediaFile {
    bytes: Vec<u8>,
    mime: String,
    file_name: String,
    voice: bool,
}

impl MediaFile {
    pub(super) fn new(bytes: Vec<u8>, mime: &str, file_name: &str, voice: bool) -> Self {
        Self { bytes, mime: mime.to_owned(), file_name: file_name.to_owned(), voice }
    }

    pub(super) fn upload(&self) -> crate::chatwoot::Upload<'_> {
        crate::chatwoot::Upload {
            file_name: &self.file_name,
            content_type: &self.mime,
            bytes: &self.bytes,
            voice: self.voice,
        }
    }
}

impl MediaSource<'_> {
    /// The message's file; `Ok(None)` when it cannot be had (then the labelled placeholder is posted).
    pub(super) async fn fetch(&self, message: &MessageExchange) -> Step<Option<MediaFile>> {
        use base64::Engine as _;
        let media = message.body.get("media").cloned().unwrap_or(Value::Null);
        let text = |keys: &[&str]| {
            keys.iter().find_map(|k| media.get(*k).and_then(Value::as_str)).filter(|s| !s.is_empty()).map(str::to_owned)
        };
        let mut mime = text(&["mimeType", "mimetype", "mime_type"]);
        let bytes = if let Some(inline) = text(&["base64"]) {
            let data = inline.split_once("base64,").map_or(inline.as_str(), |(_, d)| d);
            base64::engine::general_purpose::STANDARD.decode(data.trim()).ok()
        } else {
            None
        };
        let bytes = match bytes {
            Some(bytes) => Some(bytes),
            None => match text(&["s3Url"]) {
                Some(url) => self.download(&url).await,
                None => None,
            },
        };
        let bytes = match bytes {
            Some(bytes) => bytes,
            None => {
                let ryzeapi = self.relay.ryzeapi_client(self.http.clone());
                match ryzeapi.fetch_media(&message.id).await {
                    Ok((bytes, reported)) => {
                        mime = mime.or(reported);
                        bytes
                    }
                    Err(e @ crate::ryzeapi::client::SendError::Retryable { .. })
                        if self.attempts + 1 < MEDIA_ATTEMPTS =>
                    {
                        return Err(Outcome::Retry { after: Duration::ZERO, error: format!("media: {e}") });
                    }
                    Err(e) => {
                        tracing::warn!(integration_id = %self.relay.integration_id, error = %e, "media unavailable; posting a placeholder");
                        return Ok(None);
                    }
                }
            }
        };
        if bytes.is_empty() || bytes.len() > MAX_MEDIA_BYTES {
            return Ok(None);
        }
        let mime = mime
            .map(|m| m.split(';').next().unwrap_or(&m).trim().to_ascii_lowercase())
            // Chatwoot previews only the types `file_type_helper.rb#image_file?` lists: `image/jpg` is not
            // one of them and would become a download.
            .map(|m| if m == "image/jpg" { "image/jpeg".to_owned() } else { m })
            .unwrap_or_else(|| default_mime(&message.kind).to_owned());
        let voice = message.kind == "ptt" || media.get("isVoiceNote").and_then(Value::as_bool) == Some(true);
        let file_name = text(&["fileName", "filename", "file_name"])
            .map(|n| n.chars().filter(|c| !matches!(c, '/' | '\\' | '\0')).collect::<String>())
            .filter(|n| !n.trim_start_matches('.').is_empty())
            .unwrap_or_else(|| format!("{}.{}", message.kind, extension(&mime)));
        Ok(Some(MediaFile { bytes, mime, file_name, voice }))
    }

    async fn download(&self, url: &str) -> Option<Vec<u8>> {
        let mut response = self.http.get(url).timeout(self.relay.call_timeout).send().await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        response.body().limit(MAX_MEDIA_BYTES).await.ok().map(|b| b.to_vec())
    }
}

fn default_mime(kind: &str) -> &'static str {
    match kind {
        "image" => "image/jpeg",
        "sticker" => "image/webp",
        "video" | "ptv" => "video/mp4",
        "audio" | "ptt" => "audio/ogg",
        _ => "application/octet-stream",
    }
}

fn extension(mime: &str) -> &'static str {
    match mime {
        "image/jpeg" => "jpg",
        "image/png" => "png",
        "image/webp" => "webp",
        "image/gif" => "gif",
        "video/mp4" => "mp4",
        "audio/ogg" => "ogg",
        "audio/mpeg" => "mp3",
        "audio/mp4" => "m4a",
        "application/pdf" => "pdf",
        _ => "bin",
    }
}
