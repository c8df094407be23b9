//! Sealing the cluster's secrets for storage outside the machine: AES-256-GCM with a key the operator keeps (a
//! hosted control plane's `--secret-key-file`), the way Kubernetes' `aesgcm` EncryptionConfiguration provider
//! encrypts Secrets at rest.
//!
//! A sealed value is `kaasd-sealed:v1:` followed by a random 96-bit nonce and the ciphertext with its tag. The
//! caller's `context` (e.g. the datastore key the value lives under) is authenticated too, so a value copied to
//! another key does not open. A new nonce per seal is safe here: a cluster seals a handful of values in its life,
//! far below the 2^32 messages per key that random 96-bit nonces allow.

use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

const PREFIX: &[u8] = b"kaasd-sealed:v1:";

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error(
        "the secret key must be 32 random bytes, base64-encoded ({0}); make one with `head -c 32 /dev/urandom | base64`"
    )]
    BadKey(String),
    #[error("the stored value cannot be opened with this secret key: it is not the key the cluster was created with")]
    WrongKey,
    #[error("the stored value is not sealed by kaasd (or by a newer kaasd): {0}")]
    Unrecognized(&'static str),
    #[error("the system's random number generator failed")]
    Random,
}

/// A 256-bit key that seals and opens values.
pub struct SecretKey {
    key: LessSafeKey,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("SecretKey(..)")
    }
}

impl SecretKey {
    /// Reads a key given as base64 text (standard alphabet, surrounding white space ignored), as Kubernetes'
    /// EncryptionConfiguration writes its `secret`.
    pub fn from_base64(text: &str) -> Result<SecretKey, SealError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|error| SealError::BadKey(format!("not base64: {error}")))?;
        if bytes.len() != 32 {
            return Err(SealError::BadKey(format!("it decodes to {} bytes", bytes.len())));
        }
        let key = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| SealError::BadKey("rejected".into()))?;
        Ok(SecretKey { key: LessSafeKey::new(key) })
    }

    /// Encrypts and authenticates `plaintext`, bound to `context`.
    pub fn seal(&self, context: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).map_err(|_| SealError::Random)?;
        let mut sealed = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(context), &mut sealed)
            .map_err(|_| SealError::Random)?;
        let mut out = Vec::with_capacity(PREFIX.len() + NONCE_LEN + sealed.len());
        out.extend_from_slice(PREFIX);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Checks and decrypts a value sealed by [`SecretKey::seal`] with the same key and `context`.
    pub fn open(&self, context: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        let body = sealed.strip_prefix(PREFIX).ok_or(SealError::Unrecognized("unknown prefix"))?;
        if body.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(SealError::Unrecognized("too short"));
        }
        let (nonce, ciphertext) = body.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Unrecognized("bad nonce"))?;
        let mut buffer = ciphertext.to_vec();
        let plaintext =
            self.key.open_in_place(nonce, Aad::from(context), &mut buffer).map_err(|_| SealError::WrongKey)?;
        Ok(plaintext.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SecretKey {
        SecretKey::from_base64(&base64::engine::general_purpose::STANDARD.encode([byte; 32])).unwrap()
    }

    #[test]
    fn a_sealed_value_opens_only_with_its_key_and_context() {
        let sealed = key(1).seal(b"/kaasd/pki", b"the CA").unwrap();
        assert!(sealed.starts_with(PREFIX));
        assert!(!sealed.windows(6).any(|window| window == b"the CA"), "the plaintext is not visible");
        assert_eq!(key(1).open(b"/kaasd/pki", &sealed).unwrap(), b"the CA");
        assert!(matches!(key(2).open(b"/kaasd/pki", &sealed), Err(SealError::WrongKey)));
        assert!(matches!(key(1).open(b"/elsewhere", &sealed), Err(SealError::WrongKey)));
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(matches!(key(1).open(b"/kaasd/pki", &tampered), Err(SealError::WrongKey)));
        assert!(matches!(key(1).open(b"/kaasd/pki", b"plain"), Err(SealError::Unrecognized(_))));
        assert_ne!(sealed, key(1).seal(b"/kaasd/pki", b"the CA").unwrap(), "each seal has its own nonce");
    }

    #[test]
    fn keys_must_be_32_bytes_of_base64() {
        let short = base64::engine::general_purpose::STANDARD.encode([0u8; 16]);
        let error = SecretKey::from_base64(&short).unwrap_err().to_string();
        assert!(error.contains("16 bytes") && error.contains("head -c 32 /dev/urandom | base64"), "{error}");
        assert!(SecretKey::from_base64("not base64!").is_err());
        let padded = format!("{}\n", base64::engine::general_purpose::STANDARD.encode([7u8; 32]));
        assert!(SecretKey::from_base64(&padded).is_ok(), "a trailing newline from a file is fine");
    }
}
