//! A manifest is trusted only when signed. Beside each `manifest.json` lies
//! `manifest.sig`: an HMAC-SHA256 of the manifest's exact bytes under a key from
//! `SALVAGE_BACKUP_SIGNING_KEYS`, which is kept outside the repository. Whoever can write
//! to the bucket can change a manifest, but cannot make its signature match. So a
//! restore, a verification and a drill check the signature before they read one field.
//!
//! The keys form a ring, as the webhook secret keys do: the first signs and any of them
//! verifies. To rotate, put a new key first and keep the old one for as long as backups
//! signed with it are kept.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::BackupError;
use crate::server::sealed::KeyRing;

/// The signature's key beside the manifest in a backup's folder.
pub const FILE_NAME: &str = "manifest.sig";

const ALGORITHM: &str = "hmac-sha256";
/// Bound into every MAC, so a key reused elsewhere signs nothing that passes as a manifest.
const CONTEXT: &[u8] = b"salvage backup manifest v1\n";

#[derive(Debug, Serialize, Deserialize)]
struct Signature {
    algorithm: String,
    /// The id of the key in `SALVAGE_BACKUP_SIGNING_KEYS`.
    key: String,
    /// The MAC, base64.
    mac: String,
}

fn mac_for(key: &[u8], manifest: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(CONTEXT);
    mac.update(manifest);
    mac
}

/// Refuses when there is no key to sign with.
pub fn require_key(keys: &KeyRing) -> Result<(), BackupError> {
    if keys.is_empty() {
        return Err(BackupError::Refused(
            "SALVAGE_BACKUP_SIGNING_KEYS is not set: a backup is not taken without a key to sign its manifest (see README)"
                .to_owned(),
        ));
    }
    Ok(())
}

/// `manifest.sig` for the manifest's bytes, under the current key.
pub fn sign(keys: &KeyRing, manifest: &[u8]) -> Result<Vec<u8>, BackupError> {
    require_key(keys)?;
    let (id, key) = keys.entries().next().expect("a key, checked above");
    let signature = Signature {
        algorithm: ALGORITHM.to_owned(),
        key: id.to_owned(),
        mac: base64::engine::general_purpose::STANDARD
            .encode(mac_for(key, manifest).finalize().into_bytes()),
    };
    serde_json::to_vec_pretty(&signature).map_err(|e| BackupError::Storage(e.to_string()))
}

/// Checks `signature` (the bytes of `manifest.sig`, `None` when there is none) against the
/// manifest's bytes, in constant time. Every refusal names the file at fault.
pub fn verify(
    keys: &KeyRing,
    manifest: &[u8],
    signature: Option<&[u8]>,
) -> Result<(), BackupError> {
    let refused = |why: String| Err(BackupError::Integrity(why));
    let Some(signature) = signature else {
        return refused(format!(
            "{FILE_NAME}: missing, so the backup is unsigned and not trusted"
        ));
    };
    let Ok(signature) = serde_json::from_slice::<Signature>(signature) else {
        return refused(format!("{FILE_NAME}: unreadable"));
    };
    if signature.algorithm != ALGORITHM {
        return refused(format!(
            "{FILE_NAME}: algorithm `{}`, expected {ALGORITHM}",
            signature.algorithm.chars().take(40).collect::<String>()
        ));
    }
    if keys.is_empty() {
        return refused(
            "SALVAGE_BACKUP_SIGNING_KEYS is not set: no manifest can be checked, so none is trusted"
                .to_owned(),
        );
    }
    let Some((_, key)) = keys.entries().find(|(id, _)| *id == signature.key) else {
        return refused(format!(
            "{FILE_NAME}: signed with key `{}`, which SALVAGE_BACKUP_SIGNING_KEYS does not hold",
            signature.key.chars().take(40).collect::<String>()
        ));
    };
    let Ok(expected) = base64::engine::general_purpose::STANDARD.decode(signature.mac.trim())
    else {
        return refused(format!("{FILE_NAME}: the MAC is not base64"));
    };
    mac_for(key, manifest).verify_slice(&expected).or_else(|_| {
        refused(format!(
            "manifest.json: its signature does not match (altered since it was signed, or signed with another key named `{}`)",
            signature.key
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(entries: &[(&str, u8)]) -> KeyRing {
        let text: Vec<String> = entries
            .iter()
            .map(|(id, byte)| {
                format!(
                    "{id}:{}",
                    base64::engine::general_purpose::STANDARD.encode([*byte; 32])
                )
            })
            .collect();
        KeyRing::parse(&text.join(",")).unwrap()
    }

    #[test]
    fn a_signed_manifest_verifies_under_any_key_of_the_ring_and_nothing_else_does() {
        let manifest = br#"{"backup_id":7}"#;
        let old = ring(&[("old", 1)]);
        let signed = sign(&old, manifest).unwrap();
        verify(&old, manifest, Some(&signed)).unwrap();
        // Rotated: a new key signs, the old one still verifies what it signed.
        let rotated = ring(&[("new", 2), ("old", 1)]);
        verify(&rotated, manifest, Some(&signed)).unwrap();
        let resigned = sign(&rotated, manifest).unwrap();
        assert!(String::from_utf8_lossy(&resigned).contains("\"new\""));

        let refusal = |keys: &KeyRing, manifest: &[u8], signature: Option<&[u8]>| {
            verify(keys, manifest, signature).unwrap_err().to_string()
        };
        let altered = br#"{"backup_id":8}"#;
        assert!(refusal(&old, altered, Some(&signed))
            .starts_with("manifest.json: its signature does not match"));
        assert!(refusal(&old, manifest, None).starts_with("manifest.sig: missing"));
        // Same id, other bytes: an attacker's key named like the real one.
        assert!(refusal(&ring(&[("old", 9)]), manifest, Some(&signed)).contains("does not match"));
        assert!(refusal(&ring(&[("other", 1)]), manifest, Some(&signed))
            .contains("signed with key `old`"));
        assert!(refusal(&KeyRing::default(), manifest, Some(&signed))
            .starts_with("SALVAGE_BACKUP_SIGNING_KEYS is not set"));
        assert!(refusal(&old, manifest, Some(b"{}")).contains("unreadable"));
        assert!(sign(&KeyRing::default(), manifest).is_err());
    }
}
