//! Chatwoot versions and what each one brings: the one list of version gates the bridge, the doctor and
//! the fake share. Each gate names the Chatwoot change it follows (`../shared/reference/chatwoot-fidelity.md`).

use std::fmt;

/// A Chatwoot release, `major.minor.patch` (a suffix such as `-ce` is ignored; a missing part is 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(pub u64, pub u64, pub u64);

/// Whether a dotted Chatwoot version (`4.15.1`) is at least `(major, minor)`. Unparsable versions count as 0.
pub fn version_at_least(version: &str, (major, minor): (u64, u64)) -> bool {
    Version::parse(version).unwrap_or(Version(0, 0, 0)) >= Version(major, minor, 0)
}

impl Version {
    /// `4.15.1` → `Version(4, 15, 1)`; `None` when not even the major part is a number.
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.trim().trim_start_matches('v').split('.').map(|part| {
            let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<u64>().ok()
        });
        let major = parts.next().flatten()?;
        Some(Self(major, parts.next().flatten().unwrap_or(0), parts.next().flatten().unwrap_or(0)))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// The oldest Chatwoot the bridge works with: `source_id` on message create arrived in 3.4.0
/// (`app/builders/messages/message_builder.rb`, "fix: accepting external source_id (#8359)"). Older
/// releases drop it, and every message typed on the phone would echo back to WhatsApp in a loop.
pub const OLDEST_SUPPORTED: Version = Version(3, 4, 0);
/// Message ticks: `PATCH …/messages/{id}` with `status` for API inboxes (`Messages::StatusUpdateService`).
pub const STATUS_TICKS: Version = Version(4, 2, 0);
/// `content_attributes` on message create (`message_builder.rb#message_params`, #12782): before it only
/// `in_reply_to` (a Chatwoot id) survives, so quotes by external id do not resolve.
pub const CONTENT_ATTRIBUTES: Version = Version(4, 9, 0);
/// The dashboard editor's `\`+newline line breaks reach API-inbox webhooks from 4.9 until the webhook
/// content normalizer (PR #13950, merged 2026-03-30; taken here as first released in 4.13).
pub const BACKSLASH_BREAKS: Version = Version(4, 9, 0);
pub const BACKSLASH_BREAKS_FIXED: Version = Version(4, 13, 0);
/// API inboxes sign their webhooks (`X-Chatwoot-Signature`), and admins can reset the secret (PR #13892).
pub const SIGNING: Version = Version(4, 13, 0);
/// Webhooks go through SafeFetch, which refuses private addresses.
pub const SAFE_FETCH: Version = Version(4, 14, 0);
/// `SAFE_FETCH_ALLOW_PRIVATE_NETWORK=true` lets webhooks reach private addresses again.
pub const SAFE_FETCH_OVERRIDE: Version = Version(4, 14, 1);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_orders_versions() {
        assert_eq!(Version::parse("4.15.1"), Some(Version(4, 15, 1)));
        assert_eq!(Version::parse("4.1"), Some(Version(4, 1, 0)));
        assert_eq!(Version::parse("v4.14.0-ce"), Some(Version(4, 14, 0)));
        assert_eq!(Version::parse("unknown"), None);
        assert!(Version(3, 3, 9) < OLDEST_SUPPORTED && OLDEST_SUPPORTED < Version(3, 13, 6));
        assert_eq!(Version(4, 2, 0).to_string(), "4.2.0");
    }
}
