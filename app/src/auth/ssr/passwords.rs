//! Passwords: argon2id hashes, never printed, checked in constant work.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

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

/// The process-wide bound on argon2 work. Each check takes tens of milliseconds of CPU and
/// 19 MiB of memory on a blocking thread, so a burst of sign-ins would otherwise cost
/// gigabytes; with the gate, at most `limit` run at once and the rest wait their turn,
/// up to `wait`, then get 503 with `Retry-After`.
pub struct PasswordGate {
    permits: tokio::sync::Semaphore,
    limit: usize,
    wait: Duration,
    running: AtomicUsize,
    peak: AtomicUsize,
}

static GATE: OnceLock<PasswordGate> = OnceLock::new();

/// Default permits: twice the cores, so the CPU stays busy while one check waits.
pub fn default_password_permits() -> usize {
    2 * std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The default wait for a free permit.
pub const DEFAULT_PASSWORD_WAIT: Duration = Duration::from_secs(1);

/// Sets the gate's size and wait (`SALVAGE_ARGON2_PERMITS`, `SALVAGE_ARGON2_WAIT_MS`).
/// The first call wins: the gate is one per process, as the memory it guards is.
pub fn configure_password_gate(limit: usize, wait: Duration) {
    let _ = GATE.set(PasswordGate::new(limit, wait));
}

/// The process's gate (with the defaults unless configured first).
pub fn password_gate() -> &'static PasswordGate {
    GATE.get_or_init(|| PasswordGate::new(default_password_permits(), DEFAULT_PASSWORD_WAIT))
}

impl PasswordGate {
    fn new(limit: usize, wait: Duration) -> Self {
        let limit = limit.max(1);
        Self {
            permits: tokio::sync::Semaphore::new(limit),
            limit,
            wait,
            running: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        }
    }

    /// How many checks may run at once.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The most checks that ever ran at once in this process.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }

    /// Runs `work` on a blocking thread once a permit is free. The permit moves into the
    /// thread, so it is held until the work ends even if the caller gives up.
    async fn run<T: Send + 'static>(
        &'static self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, AppError> {
        let permit = tokio::time::timeout(self.wait, self.permits.acquire())
            .await
            .map_err(|_| {
                tracing::warn!(permits = self.limit, "refused: password checks all busy");
                AppError::Unavailable {
                    message: "Salvage is busy checking other passwords. Try again in a few \
                              seconds."
                        .into(),
                }
            })?
            .map_err(|error| AppError::internal("Password gate closed", error.to_string()))?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.peak.fetch_max(now, Ordering::SeqCst);
            let result = work();
            self.running.fetch_sub(1, Ordering::SeqCst);
            result
        })
        .await
        .map_err(|error| AppError::internal("Password task failed", error))
    }
}

/// Hashes `password` through the gate (argon2 takes tens of milliseconds of CPU).
pub async fn hash_password(password: SecretString) -> Result<PasswordHash, AppError> {
    password_gate()
        .run(move || hash_blocking(password.expose_secret()))
        .await?
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
/// account) through the gate. Always does the full argon2 work; 503 when the gate
/// stays full for its whole wait.
pub async fn verify_password(
    password: SecretString,
    stored: Option<PasswordHash>,
) -> Result<bool, AppError> {
    password_gate()
        .run(move || {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaked(limit: usize, wait: Duration) -> &'static PasswordGate {
        Box::leak(Box::new(PasswordGate::new(limit, wait)))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_more_checks_run_at_once_than_the_gate_has_permits() {
        let gate = leaked(2, Duration::from_secs(10));
        let work = (0..12).map(|_| gate.run(|| std::thread::sleep(Duration::from_millis(20))));
        for result in futures::future::join_all(work).await {
            result.unwrap();
        }
        assert_eq!(
            gate.peak(),
            2,
            "two permits, and twelve callers kept both busy"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_check_that_waits_too_long_for_a_permit_is_503() {
        let gate = leaked(1, Duration::from_millis(50));
        let slow = tokio::spawn(gate.run(|| std::thread::sleep(Duration::from_millis(500))));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let error = gate.run(|| ()).await.unwrap_err();
        assert_eq!(error.status_code(), 503);
        assert!(error.retry_after_secs().is_some());
        slow.await.unwrap().unwrap();
        gate.run(|| ()).await.expect("a permit is free again");
    }
}
