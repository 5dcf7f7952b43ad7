//! Backup files encrypted at rest with age (the `age` crate, the age-encryption.org/v1
//! format, X25519 recipients): a dump or a ClickHouse file streams through age's writer
//! on its way to the target, so nothing readable reaches the repository and memory stays
//! flat. Salvage holds one identity (`SALVAGE_BACKUP_AGE_IDENTITY`, the secret key
//! `age-keygen` prints), encrypts to its public key and decrypts with it; the `age` tool
//! decrypts a file by hand with the same key.
//!
//! The manifest says whether a backup's files are encrypted (it is signed, so that cannot
//! be flipped), and its sizes and SHA-256 are those of the stored, encrypted bytes: a
//! verification checks them and decrypts to count the rows. The manifest itself stays
//! readable (table names and counts, no data), so a repository lists its recovery points
//! before any key is loaded.

use std::io::{self, Read, Write};
use std::str::FromStr;

use secrecy::ExposeSecret;

use super::BackupError;

/// The identity backup files are encrypted to and decrypted with.
#[derive(Clone)]
pub struct Encryption {
    identity: age::x25519::Identity,
}

impl std::fmt::Debug for Encryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The public key only: it identifies the identity and reveals nothing.
        write!(f, "Encryption({})", self.identity.to_public())
    }
}

impl Encryption {
    /// Reads an age secret key (`AGE-SECRET-KEY-1…`); the error never repeats it.
    pub fn parse(secret: &str) -> Result<Self, String> {
        age::x25519::Identity::from_str(secret.trim())
            .map(|identity| Self { identity })
            .map_err(|_| {
                "expected an age secret key (AGE-SECRET-KEY-1…, as age-keygen prints)".into()
            })
    }

    /// A new random identity (tests, and an installation's first key).
    pub fn generate() -> Self {
        Self {
            identity: age::x25519::Identity::generate(),
        }
    }

    /// The secret key, as `age-keygen` writes it.
    pub fn secret(&self) -> String {
        self.identity.to_string().expose_secret().to_owned()
    }

    /// The public key files are encrypted to (`age1…`).
    pub fn public_key(&self) -> String {
        self.identity.to_public().to_string()
    }

    /// `output` wrapped so that what is written to it is encrypted; call
    /// [`age::stream::StreamWriter::finish`] to end the stream.
    pub fn encrypting<W: Write>(&self, output: W) -> io::Result<age::stream::StreamWriter<W>> {
        let recipient = self.identity.to_public();
        age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
            .map_err(io::Error::other)?
            .wrap_output(output)
    }

    /// `input` (an encrypted file) decrypted as it is read. A file altered anywhere, cut
    /// short, or encrypted to another key fails as it is read, never silently.
    pub fn decrypting<R: Read>(&self, input: R) -> io::Result<age::stream::StreamReader<R>> {
        let decryptor = age::Decryptor::new(input).map_err(decrypt_error)?;
        decryptor
            .decrypt(std::iter::once(&self.identity as &dyn age::Identity))
            .map_err(decrypt_error)
    }
}

fn decrypt_error(error: age::DecryptError) -> io::Error {
    match error {
        age::DecryptError::NoMatchingKeys => {
            io::Error::other("encrypted to another key than SALVAGE_BACKUP_AGE_IDENTITY's")
        }
        other => io::Error::other(format!("cannot be decrypted: {other}")),
    }
}

/// The identity to read a backup with: `None` when its files are plain; a refusal when
/// they are encrypted and no identity is set.
pub fn for_reading(
    encrypted: bool,
    encryption: Option<&Encryption>,
) -> Result<Option<Encryption>, BackupError> {
    match (encrypted, encryption) {
        (false, _) => Ok(None),
        (true, Some(encryption)) => Ok(Some(encryption.clone())),
        (true, None) => Err(BackupError::Refused(
            "the backup's files are encrypted: set SALVAGE_BACKUP_AGE_IDENTITY to the key they were encrypted with".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_encrypted_reads_back_only_with_its_key_and_only_unaltered() {
        let key = Encryption::generate();
        let again = Encryption::parse(&key.secret()).unwrap();
        assert_eq!(again.public_key(), key.public_key());
        assert!(
            !format!("{key:?}").contains("AGE-SECRET-KEY"),
            "Debug hides the secret"
        );

        let plain = b"COPY public.accounts (id, email) FROM stdin;\n".repeat(2000);
        let mut sealed = Vec::new();
        let mut writer = key.encrypting(&mut sealed).unwrap();
        writer.write_all(&plain).unwrap();
        writer.finish().unwrap();
        assert!(sealed.starts_with(b"age-encryption.org/v1"));
        assert!(
            !sealed.windows(14).any(|w| w == b"public.account"),
            "nothing readable"
        );

        let mut read = Vec::new();
        again
            .decrypting(&sealed[..])
            .unwrap()
            .read_to_end(&mut read)
            .unwrap();
        assert_eq!(read, plain);

        let other = Encryption::generate();
        let error = other.decrypting(&sealed[..]).err().unwrap().to_string();
        assert!(error.contains("another key"), "{error}");

        let mut flipped = sealed.clone();
        let middle = flipped.len() / 2;
        flipped[middle] ^= 1;
        let mut sink = Vec::new();
        let failed = key
            .decrypting(&flipped[..])
            .and_then(|mut r| r.read_to_end(&mut sink));
        assert!(failed.is_err(), "an altered byte fails the read");
        let cut = &sealed[..sealed.len() - 10];
        let failed = key
            .decrypting(cut)
            .and_then(|mut r| r.read_to_end(&mut sink));
        assert!(failed.is_err(), "a file cut short fails the read");

        assert!(Encryption::parse("not a key").is_err());
        assert!(for_reading(true, None).is_err());
        assert!(for_reading(false, None).unwrap().is_none());
    }
}
