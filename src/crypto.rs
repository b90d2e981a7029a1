//! Sealing secrets at rest with XChaCha20-Poly1305.
//!
//! A sealed value reads `v1.<key id>.<base64url(nonce ‖ ciphertext)>`. The key id (8 hex characters derived
//! from the key) says which key sealed it, so that after a rotation values sealed with the previous key
//! (`BRIDGE_ENCRYPTION_KEY_PREVIOUS`) still open. Each value is bound to its row and column through the
//! associated data (`"<integration id>/<column>"`): a ciphertext copied to another row does not open.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use crate::secret::{Secret, base64_url};

const VERSION: &str = "v1";
const NONCE_LEN: usize = 24;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("sealed with an unknown key (key id {0}); set BRIDGE_ENCRYPTION_KEY_PREVIOUS to the key that sealed it")]
    UnknownKey(String),
    #[error("sealed value is malformed")]
    Malformed,
    #[error("sealed value does not open with its key (tampered, or sealed for another row)")]
    Tampered,
    #[error("the system random generator failed")]
    Random,
}

/// A 32-byte key with its id.
#[derive(Clone)]
pub struct EncryptionKey {
    id: String,
    cipher: XChaCha20Poly1305,
}

impl EncryptionKey {
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest([b"ryze-integrations key id:".as_slice(), bytes.as_slice()].concat());
        let id = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
        // A 32-byte slice is always a valid key for this cipher.
        let cipher = XChaCha20Poly1305::new(bytes.into());
        Self { id, cipher }
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}

impl std::fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EncryptionKey({})", self.id)
    }
}

/// Seals with the current key; opens with the current or the previous one.
#[derive(Clone, Debug)]
pub struct Sealer {
    current: EncryptionKey,
    previous: Option<EncryptionKey>,
}

impl Sealer {
    pub fn new(current: EncryptionKey, previous: Option<EncryptionKey>) -> Self {
        Self { current, previous }
    }

    pub fn current_key_id(&self) -> &str {
        self.current.id()
    }

    /// Seals `secret` for the given row and column.
    pub fn seal(&self, secret: &Secret, row: &str, column: &str) -> Result<String, CryptoError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|_| CryptoError::Random)?;
        let aad = associated_data(row, column);
        let nonce_array = XNonce::from(nonce);
        let ciphertext = self
            .current
            .cipher
            .encrypt(&nonce_array, Payload { msg: secret.expose().as_bytes(), aad: aad.as_bytes() })
            .map_err(|_| CryptoError::Malformed)?;
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&ciphertext);
        Ok(format!("{VERSION}.{}.{}", self.current.id(), base64_url(&blob)))
    }

    /// Opens a value sealed by [`Sealer::seal`] for the same row and column.
    pub fn open(&self, sealed: &str, row: &str, column: &str) -> Result<Secret, CryptoError> {
        use base64::Engine as _;
        let mut parts = sealed.splitn(3, '.');
        let (Some(VERSION), Some(key_id), Some(body)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(CryptoError::Malformed);
        };
        let key = [Some(&self.current), self.previous.as_ref()]
            .into_iter()
            .flatten()
            .find(|k| k.id() == key_id)
            .ok_or_else(|| CryptoError::UnknownKey(key_id.to_owned()))?;
        let blob = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(body).map_err(|_| CryptoError::Malformed)?;
        if blob.len() < NONCE_LEN {
            return Err(CryptoError::Malformed);
        }
        let (nonce, ciphertext) = blob.split_at(NONCE_LEN);
        let aad = associated_data(row, column);
        let clear = key
            .cipher
            .decrypt(
                &XNonce::try_from(nonce).map_err(|_| CryptoError::Malformed)?,
                Payload { msg: ciphertext, aad: aad.as_bytes() },
            )
            .map_err(|_| CryptoError::Tampered)?;
        String::from_utf8(clear).map(Secret::new).map_err(|_| CryptoError::Malformed)
    }

    /// Whether `sealed` was sealed with a key other than the current one (it should be re-sealed).
    pub fn needs_reseal(&self, sealed: &str) -> bool {
        sealed.split('.').nth(1) != Some(self.current.id())
    }
}

fn associated_data(row: &str, column: &str) -> String {
    format!("{row}/{column}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> EncryptionKey {
        EncryptionKey::from_bytes(&[byte; 32])
    }

    #[test]
    fn round_trip() {
        let sealer = Sealer::new(key(1), None);
        let sealed = sealer.seal(&Secret::new("cw-token"), "int_a", "chatwoot_token").unwrap();
        assert!(sealed.starts_with(&format!("v1.{}.", sealer.current_key_id())));
        assert!(!sealed.contains("cw-token"));
        assert_eq!(sealer.open(&sealed, "int_a", "chatwoot_token").unwrap().expose(), "cw-token");
    }

    #[test]
    fn nonces_are_fresh() {
        let sealer = Sealer::new(key(1), None);
        let a = sealer.seal(&Secret::new("x"), "r", "c").unwrap();
        let b = sealer.seal(&Secret::new("x"), "r", "c").unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn wrong_key_fails_with_unknown_key() {
        let sealed = Sealer::new(key(1), None).seal(&Secret::new("x"), "r", "c").unwrap();
        let other = Sealer::new(key(2), None);
        assert!(matches!(other.open(&sealed, "r", "c"), Err(CryptoError::UnknownKey(_))));
    }

    #[test]
    fn previous_key_still_opens_and_asks_for_reseal() {
        let sealed = Sealer::new(key(1), None).seal(&Secret::new("x"), "r", "c").unwrap();
        let rotated = Sealer::new(key(2), Some(key(1)));
        assert_eq!(rotated.open(&sealed, "r", "c").unwrap().expose(), "x");
        assert!(rotated.needs_reseal(&sealed));
        let resealed = rotated.seal(&Secret::new("x"), "r", "c").unwrap();
        assert!(!rotated.needs_reseal(&resealed));
    }

    #[test]
    fn bound_to_row_and_column() {
        let sealer = Sealer::new(key(1), None);
        let sealed = sealer.seal(&Secret::new("x"), "int_a", "chatwoot_token").unwrap();
        assert_eq!(sealer.open(&sealed, "int_b", "chatwoot_token"), Err(CryptoError::Tampered));
        assert_eq!(sealer.open(&sealed, "int_a", "instance_token"), Err(CryptoError::Tampered));
    }

    #[test]
    fn tampering_is_detected() {
        let sealer = Sealer::new(key(1), None);
        let mut sealed = sealer.seal(&Secret::new("x"), "r", "c").unwrap();
        let last = sealed.pop().unwrap();
        sealed.push(if last == 'A' { 'B' } else { 'A' });
        assert!(sealer.open(&sealed, "r", "c").is_err());
        assert_eq!(sealer.open("garbage", "r", "c"), Err(CryptoError::Malformed));
    }
}
