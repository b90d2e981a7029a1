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
    #[error("{reason}", reason = Refusal::Rejected.reason())]
    Rejected { status: u16 },
    /// 404 on the upgrade: this RyzeAPI does not serve the route. Retried slowly.
    #[error("{reason}", reason = Refusal::NoRoute.reason())]
    NoRoute,
    /// Anything else (refused, DNS, timeout, 5xx): retried with backoff.
    #[error("RyzeAPI link failed: {0}")]
    Transient(String),
}

impl LinkError {
    /// Whether the failure needs an operator (and the slow retry), rather than patience.
    pub fn needs_operator(&self) -> bool {
        self.refusal().is_some()
    }

    /// The refusal this failure is, if it needs an operator.
    pub fn refusal(&self) -> Option<Refusal> {
        match self {
            Self::Rejected { .. } => Some(Refusal::Rejected),
            Self::NoRoute => Some(Refusal::NoRoute),
            Self::Transient(_) => None,
        }
    }
}

/// A failure of the link that needs an operator: the one kind of error the link itself puts an integration
/// in `error` for, and takes it out of again once the link connects. The integration's `last_error` is the
/// only record of where its error came from (there is no column for it), so the text is written by
/// [`Refusal::reason`] (which `LinkError`'s `Display` is) and read back by [`Refusal::from_reason`], here
/// and nowhere else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The bridge token is not accepted (401/403).
    Rejected,
    /// RyzeAPI does not serve the route (404).
    NoRoute,
}

impl Refusal {
    const ALL: [Self; 2] = [Self::Rejected, Self::NoRoute];

    /// The words stored as the integration's `last_error`.
    pub const fn reason(self) -> &'static str {
        match self {
            Self::Rejected => "RyzeAPI rejected the bridge token",
            Self::NoRoute => "RyzeAPI has no /ws/chatwoot route — set BRIDGE_URL and BRIDGE_TOKEN on RyzeAPI",
        }
    }

    /// The refusal a stored `last_error` names; `None` for an error of another origin.
    pub fn from_reason(last_error: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|refusal| refusal.reason() == last_error)
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
    fn refusals_round_trip_through_their_stored_reason() {
        for error in [LinkError::Rejected { status: 401 }, LinkError::Rejected { status: 403 }, LinkError::NoRoute] {
            let refusal = error.refusal().unwrap();
            assert_eq!(error.to_string(), refusal.reason());
            assert_eq!(Refusal::from_reason(&error.to_string()), Some(refusal));
        }
        // The stored texts, as written before they were typed: an integration in `error` keeps them.
        assert_eq!(LinkError::Rejected { status: 401 }.to_string(), "RyzeAPI rejected the bridge token");
        assert_eq!(
            LinkError::NoRoute.to_string(),
            "RyzeAPI has no /ws/chatwoot route — set BRIDGE_URL and BRIDGE_TOKEN on RyzeAPI"
        );
        let transient = LinkError::Transient("upgrade answered HTTP 502".into());
        assert_eq!(transient.refusal(), None);
        assert_eq!(Refusal::from_reason(&transient.to_string()), None);
        assert_eq!(Refusal::from_reason(""), None);
        assert_eq!(Refusal::from_reason("Chatwoot token revoked"), None);
    }

    #[test]
    fn builds_websocket_urls() {
        assert_eq!(ws_url("http://ryzeapi:8080", "suporte"), "ws://ryzeapi:8080/ws/chatwoot/suporte");
        assert_eq!(ws_url("https://api.example.com/", "a.b"), "wss://api.example.com/ws/chatwoot/a.b");
    }
}
