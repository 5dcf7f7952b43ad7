//! Passwords: argon2id hashes, never printed, checked in constant work.

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use secrecy::{ExposeSecret, SecretString};

use crate::error::AppError;
use crate::server::tokens::random_token;

/// An argon2id PHC string. Never serialised, and redacted in `Debug`.
#[derive(Clone)]
pub struct PasswordHash(String);

impl std::fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordHash(<redacted>)")
    }
}

impl PasswordHash {
    /// Wraps a stored hash.
    pub fn from_stored(phc: String) -> Self {
        Self(phc)
    }

    /// The PHC string, for storing.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// argon2id with OWASP's parameters: 19 MiB, 2 passes, 1 lane.
fn hasher() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("constant argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

fn hash_blocking(password: &str) -> Result<PasswordHash, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Ok(PasswordHash(
        hasher()
            .hash_password(password.as_bytes(), &salt)?
            .to_string(),
    ))
}

/// Hashes `password` on a blocking thread (argon2 takes tens of milliseconds of CPU).
pub async fn hash_password(password: SecretString) -> Result<PasswordHash, AppError> {
    tokio::task::spawn_blocking(move || hash_blocking(password.expose_secret()))
        .await
        .map_err(|error| AppError::internal("Password hashing task failed", error))?
        .map_err(|error| AppError::internal("Failed to hash a password", error))
}

/// A hash of a random password, verified against when an email has no account, so an
/// unknown email costs the same time as a wrong password.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        hash_blocking(&random_token())
            .map(|hash| hash.0)
            .unwrap_or_default()
    })
}

/// Checks `password` against `stored` (or against a dummy hash when there is no
/// account) on a blocking thread. Always does the full argon2 work.
pub async fn verify_password(password: SecretString, stored: Option<PasswordHash>) -> bool {
    tokio::task::spawn_blocking(move || {
        let (phc, real) = match &stored {
            Some(hash) => (hash.0.as_str(), true),
            None => (dummy_hash(), false),
        };
        let Ok(parsed) = argon2::PasswordHash::new(phc) else {
            return false;
        };
        let matches = hasher()
            .verify_password(password.expose_secret().as_bytes(), &parsed)
            .is_ok();
        matches && real
    })
    .await
    .unwrap_or(false)
}
