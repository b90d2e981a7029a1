//! Opening the WebSocket to RyzeAPI's `/ws/chatwoot/:instance`, and what a refusal means.

use std::time::Duration;

use actix_codec::Framed;
use awc::BoxedSocket;
use awc::error::WsClientError;
use awc::ws::Codec;

use crate::secret::Secret;

/// Events may carry base64 media (contract §3).
pub const MAX_FRAME_BYTES: usize = 64 * 1024 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// An open link.
pub type Link = Framed<BoxedSocket, Codec>;

/// Why the link could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// 401/403 on the upgrade: the bridge token is not accepted. Retried slowly.
    #[error("RyzeAPI rejected the bridge token")]
    Rejected { status: u16 },
    /// 404 on the upgrade: this RyzeAPI does not serve the route. Retried slowly.
    #[error("RyzeAPI has no /ws/chatwoot route — set BRIDGE_URL and BRIDGE_TOKEN on RyzeAPI")]
    NoRoute,
    /// Anything else (refused, DNS, timeout, 5xx): retried with backoff.
    #[error("RyzeAPI link failed: {0}")]
    Transient(String),
}

impl LinkError {
    /// Whether the failure needs an operator (and the slow retry), rather than patience.
    pub fn needs_operator(&self) -> bool {
        matches!(self, Self::Rejected { .. } | Self::NoRoute)
    }
}

/// `http(s)://host` → `ws(s)://host/ws/chatwoot/<instance>`.
pub fn ws_url(ryzeapi_url: &str, instance: &str) -> String {
    let base = ryzeapi_url.trim_end_matches('/');
    let base = if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        base.to_owned()
    };
    format!("{base}/ws/chatwoot/{instance}")
}

/// Opens the link with `Authorization: Bearer <bridge token>`.
pub async fn connect(http: &awc::Client, url: &str, bridge_token: &Secret) -> Result<Link, LinkError> {
    let request = http.ws(url).bearer_auth(bridge_token.expose()).max_frame_size(MAX_FRAME_BYTES).connect();
    match tokio::time::timeout(CONNECT_TIMEOUT, request).await {
        Err(_) => Err(LinkError::Transient(format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()))),
        Ok(Ok((_response, framed))) => Ok(framed.replace_codec(Codec::new().max_size(MAX_FRAME_BYTES).client_mode())),
        Ok(Err(WsClientError::InvalidResponseStatus(status))) => Err(match status.as_u16() {
            401 | 403 => LinkError::Rejected { status: status.as_u16() },
            404 => LinkError::NoRoute,
            other => LinkError::Transient(format!("upgrade answered HTTP {other}")),
        }),
        Ok(Err(e)) => Err(LinkError::Transient(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_websocket_urls() {
        assert_eq!(ws_url("http://ryzeapi:8080", "suporte"), "ws://ryzeapi:8080/ws/chatwoot/suporte");
        assert_eq!(ws_url("https://api.example.com/", "a.b"), "wss://api.example.com/ws/chatwoot/a.b");
    }
}
