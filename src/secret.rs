//! `Secret`: a string that never prints itself.
//!
//! Tokens and webhook secrets travel through the code as `Secret` so that a stray `{:?}` in a log line, an
//! error message or a panic shows `[redacted]` instead of the value. Reading the value is explicit
//! (`expose()`), which makes every place that needs it easy to audit.

use std::fmt;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The clear value. Call only where the value must leave the process (an HTTP header, a URL path, sealing).
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A fresh random secret: `bytes` random bytes, URL-safe base64 without padding.
    pub fn random(bytes: usize) -> Result<Self, getrandom::Error> {
        let mut buf = vec![0u8; bytes];
        getrandom::fill(&mut buf)?;
        Ok(Self(base64_url(&buf)))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// URL-safe base64 without padding (what random secrets and ids are written in).
pub fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Compares two secrets in time independent of where they differ (and of their lengths, by hashing first).
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    use sha2::{Digest, Sha256};
    use subtle::ConstantTimeEq;
    let (ha, hb) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    ha.as_slice().ct_eq(hb.as_slice()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(format!("{:?}", Some(s)), "Some([redacted])");
    }

    #[test]
    fn constant_time_eq_compares_values() {
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "abcd"));
        assert!(!constant_time_eq("", "x"));
    }

    #[test]
    fn random_secrets_differ() {
        let a = Secret::random(32).unwrap();
        let b = Secret::random(32).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), 43);
    }
}
