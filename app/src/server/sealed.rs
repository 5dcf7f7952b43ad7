//! Secrets Salvage must read back, sealed at rest: webhook signing secrets.
//!
//! A password or an ingest key is kept as a hash; a signing secret cannot be, since each
//! delivery is signed with it. So it is sealed with XChaCha20-Poly1305 (the RustCrypto
//! `chacha20poly1305` crate: a random 192-bit nonce per seal, authenticated) under a key
//! from the settings, never from the database: a dump of PostgreSQL, or a backup of it,
//! carries only sealed text.
//!
//! Keys form a ring (`SALVAGE_WEBHOOK_SECRET_KEYS`: `id:base64,id:base64`): the first
//! seals, every one opens. To rotate, put a new key first, restart (start-up reseals
//! everything under it, as `salvage webhook reseal` does), then drop the old key.
//!
//! A sealed value reads `sealed:v1:<key id>:<base64 of nonce and ciphertext>`. A value
//! without the prefix is a secret stored before sealing existed: it still opens (as
//! itself) and the next reseal seals it.

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};

const PREFIX: &str = "sealed:v1:";
/// Bound into every seal: a value sealed for anything else does not open as a secret.
const ASSOCIATED: &[u8] = b"salvage: a secret at rest";
const NONCE_BYTES: usize = 24;

/// Why a secret could not be sealed or opened. Never carries the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("no key to seal secrets with: set SALVAGE_WEBHOOK_SECRET_KEYS (see README)")]
    NoKey,
    #[error("sealed under key `{0}`, which SALVAGE_WEBHOOK_SECRET_KEYS does not hold")]
    UnknownKey(String),
    #[error("the sealed secret does not open: altered, or sealed under another key `{0}`")]
    DoesNotOpen(String),
}

/// What is wrong with `SALVAGE_WEBHOOK_SECRET_KEYS`, naming the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyRingError {
    #[error("each key is `id:base64`, e.g. `2026-12:` and 32 random bytes in base64")]
    Shape,
    #[error("key id `{0}`: letters, digits, - and _, at most 32")]
    Id(String),
    #[error("key id `{0}` is given twice")]
    Twice(String),
    #[error("key `{0}` is not base64")]
    NotBase64(String),
    #[error(
        "key `{id}` is {bytes} bytes; it must be 32 (e.g. `head -c 32 /dev/urandom | base64`)"
    )]
    Length { id: String, bytes: usize },
}

/// The keys secrets are sealed and opened with; the first seals. `Debug` names the ids
/// only.
#[derive(Clone, Default)]
pub struct KeyRing {
    keys: Vec<(String, Key)>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.keys.iter().map(|(id, _)| id))
            .finish()
    }
}

impl KeyRing {
    /// Parses `id:base64-of-32-bytes` entries separated by commas. Ids are letters,
    /// digits, `-` and `_`, at most 32, each used once.
    pub fn parse(raw: &str) -> Result<Self, KeyRingError> {
        let mut keys: Vec<(String, Key)> = Vec::new();
        for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (id, encoded) = entry.split_once(':').ok_or(KeyRingError::Shape)?;
            let id = id.trim();
            if id.is_empty()
                || id.len() > 32
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(KeyRingError::Id(id.to_owned()));
            }
            if keys.iter().any(|(seen, _)| seen == id) {
                return Err(KeyRingError::Twice(id.to_owned()));
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .map_err(|_| KeyRingError::NotBase64(id.to_owned()))?;
            if bytes.len() != 32 {
                return Err(KeyRingError::Length {
                    id: id.to_owned(),
                    bytes: bytes.len(),
                });
            }
            keys.push((id.to_owned(), *Key::from_slice(&bytes)));
        }
        Ok(Self { keys })
    }

    /// Whether the ring has no key (nothing can be sealed).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Each key's id and bytes, the current one first: for another use of keys kept
    /// the same way (the backup manifests' signing keys).
    pub fn entries(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.keys
            .iter()
            .map(|(id, key)| (id.as_str(), key.as_slice()))
    }

    /// The id of the key that seals.
    pub fn current(&self) -> Option<&str> {
        self.keys.first().map(|(id, _)| id.as_str())
    }

    /// `secret` sealed under the current key, with a fresh random nonce.
    pub fn seal(&self, secret: &str) -> Result<String, SealError> {
        let (id, key) = self.keys.first().ok_or(SealError::NoKey)?;
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = XChaCha20Poly1305::new(key)
            .encrypt(
                &nonce,
                Payload {
                    msg: secret.as_bytes(),
                    aad: ASSOCIATED,
                },
            )
            .map_err(|_| SealError::DoesNotOpen(id.clone()))?;
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        Ok(format!(
            "{PREFIX}{id}:{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        ))
    }

    /// The secret in `stored` (a value without the prefix is returned as it is).
    pub fn open(&self, stored: &str) -> Result<String, SealError> {
        let Some(rest) = stored.strip_prefix(PREFIX) else {
            return Ok(stored.to_owned());
        };
        let (id, encoded) = rest.split_once(':').unwrap_or((rest, ""));
        let (_, key) = self
            .keys
            .iter()
            .find(|(known, _)| known == id)
            .ok_or_else(|| SealError::UnknownKey(id.to_owned()))?;
        let does_not_open = || SealError::DoesNotOpen(id.to_owned());
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| does_not_open())?;
        if bytes.len() < NONCE_BYTES {
            return Err(does_not_open());
        }
        let (nonce, sealed) = bytes.split_at(NONCE_BYTES);
        let opened = XChaCha20Poly1305::new(key)
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: ASSOCIATED,
                },
            )
            .map_err(|_| does_not_open())?;
        String::from_utf8(opened).map_err(|_| does_not_open())
    }

    /// Whether `stored` should be sealed again: stored plain, or under a key that is not
    /// the current one.
    pub fn needs_reseal(&self, stored: &str) -> bool {
        match (stored.strip_prefix(PREFIX), self.current()) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(rest), Some(current)) => rest.split(':').next() != Some(current),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> String {
        base64::engine::general_purpose::STANDARD.encode([byte; 32])
    }

    #[test]
    fn a_sealed_secret_opens_only_with_its_key_and_never_shows_in_the_stored_text() {
        let ring = KeyRing::parse(&format!("new:{},old:{}", key(1), key(2))).unwrap();
        let sealed = ring.seal("whsec_the_secret").unwrap();
        assert!(sealed.starts_with("sealed:v1:new:"), "{sealed}");
        assert!(!sealed.contains("the_secret"));
        assert_ne!(
            sealed,
            ring.seal("whsec_the_secret").unwrap(),
            "a new nonce each time"
        );
        assert_eq!(ring.open(&sealed).unwrap(), "whsec_the_secret");

        let old_only = KeyRing::parse(&format!("old:{}", key(2))).unwrap();
        assert_eq!(
            old_only.open(&sealed),
            Err(SealError::UnknownKey("new".into()))
        );
        let impostor = KeyRing::parse(&format!("new:{}", key(3))).unwrap();
        assert_eq!(
            impostor.open(&sealed),
            Err(SealError::DoesNotOpen("new".into()))
        );
        // One bit changed anywhere in the sealed bytes: refused, not a wrong secret.
        let (head, body) = sealed.rsplit_once(':').unwrap();
        let mut bytes = base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap();
        bytes[30] ^= 1;
        let altered = format!(
            "{head}:{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        );
        assert!(matches!(
            ring.open(&altered),
            Err(SealError::DoesNotOpen(_))
        ));
    }

    #[test]
    fn rotation_reseals_what_the_current_key_did_not_seal() {
        let old = KeyRing::parse(&format!("old:{}", key(2))).unwrap();
        let rotated = KeyRing::parse(&format!("new:{},old:{}", key(1), key(2))).unwrap();
        let under_old = old.seal("s1").unwrap();
        assert!(!old.needs_reseal(&under_old));
        assert!(rotated.needs_reseal(&under_old));
        assert!(rotated.needs_reseal("whsec_plain_from_before"));
        assert!(!rotated.needs_reseal(&rotated.seal("s2").unwrap()));
        assert_eq!(rotated.open(&under_old).unwrap(), "s1");
        assert_eq!(rotated.open("whsec_plain").unwrap(), "whsec_plain");
        assert!(!KeyRing::default().needs_reseal("whsec_plain"));
        assert_eq!(KeyRing::default().seal("x"), Err(SealError::NoKey));
    }

    #[test]
    fn a_malformed_key_ring_is_refused_with_the_reason() {
        for (raw, says) in [
            ("nocolon", "id:base64"),
            (&format!("a b:{}", key(1)) as &str, "letters"),
            ("a:not base64!", "base64"),
            ("a:AAAA", "32"),
            (&format!("a:{},a:{}", key(1), key(2)), "twice"),
        ] {
            let error = KeyRing::parse(raw).unwrap_err().to_string();
            assert!(error.contains(says), "{raw}: {error}");
        }
        let ring = KeyRing::parse(&format!(" k1:{} ", key(1))).unwrap();
        assert_eq!(format!("{ring:?}"), r#"["k1"]"#, "ids only");
    }
}
