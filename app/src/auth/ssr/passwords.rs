//! Passwords: argon2id hashes, never printed, checked in constant work.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use argon2::password_hash::{Output, ParamsString, Salt, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
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
fn params() -> Params {
    Params::new(19 * 1024, 2, 1, None).expect("constant argon2 parameters are valid")
}

/// argon2's working memory for one check: 1 KiB blocks, as many as the parameters use.
type Memory = Vec<Block>;

fn new_memory(blocks: usize) -> Memory {
    vec![Block::default(); blocks]
}

/// argon2 with `algorithm`, `version` and `params`, run in `memory` (grown only for a
/// stored hash made with more memory than Salvage's own parameters). Gives the PHC
/// string's parts, as `PasswordHasher::hash_password` does, without allocating the
/// working memory anew.
fn compute<'a>(
    password: &[u8],
    salt: Salt<'a>,
    (algorithm, version, params): (Algorithm, Version, Params),
    memory: &mut Memory,
) -> argon2::password_hash::Result<argon2::PasswordHash<'a>> {
    let mut salt_bytes = [0u8; 64];
    let salt_raw = salt.decode_b64(&mut salt_bytes)?;
    if memory.len() < params.block_count() {
        *memory = new_memory(params.block_count());
    }
    let argon2 = Argon2::new(algorithm, version, params.clone());
    let output = Output::init_with(
        params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN),
        |out| {
            argon2
                .hash_password_into_with_memory(password, salt_raw, out, &mut memory[..])
                .map_err(Into::into)
        },
    )?;
    Ok(argon2::PasswordHash {
        algorithm: algorithm.ident(),
        version: Some(version.into()),
        params: ParamsString::try_from(&params)?,
        salt: Some(salt),
        hash: Some(output),
    })
}

fn hash_blocking(
    password: &str,
    memory: &mut Memory,
) -> Result<PasswordHash, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    let ours = (Algorithm::Argon2id, Version::V0x13, params());
    Ok(PasswordHash(
        compute(password.as_bytes(), salt.as_salt(), ours, memory)?.to_string(),
    ))
}

/// Whether `password` hashes to `phc` (with the parameters `phc` names; the outputs are
/// compared in constant time).
fn verify_blocking(password: &str, phc: &str, memory: &mut Memory) -> bool {
    let Ok(stored) = argon2::PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (stored.salt, stored.hash) else {
        return false;
    };
    let with = Algorithm::try_from(stored.algorithm).and_then(|algorithm| {
        let version = stored
            .version
            .map_or(Ok(Version::default()), Version::try_from)?;
        Ok((algorithm, version, Params::try_from(&stored)?))
    });
    let Ok(with) = with else {
        return false;
    };
    compute(password.as_bytes(), salt, with, memory)
        .ok()
        .and_then(|computed| computed.hash)
        .is_some_and(|computed| computed == expected)
}

/// The process-wide bound on argon2 work. Each check takes tens of milliseconds of CPU and
/// 19 MiB of memory on a blocking thread, so a burst of sign-ins would otherwise cost
/// gigabytes; with the gate, at most `limit` run at once and the rest wait their turn,
/// up to `wait`, then get 503 with `Retry-After`.
///
/// The memory is the gate's too: one argon2 working area per permit, made the first time
/// it is needed and reused by every check after, so hashing holds at most `limit` × 19 MiB
/// however many checks come. (Left to the allocator, each check's 19 MiB landed in
/// whichever thread arena ran it and stayed there: a flood grew the process by gigabytes
/// and it never gave them back.)
pub struct PasswordGate {
    permits: tokio::sync::Semaphore,
    limit: usize,
    wait: Duration,
    running: AtomicUsize,
    peak: AtomicUsize,
    /// The working areas not in use; never more than `limit` exist.
    memory: Mutex<Vec<Memory>>,
    /// How many working areas were made.
    made: AtomicUsize,
}

static GATE: OnceLock<PasswordGate> = OnceLock::new();

/// Default permits: one per core. A check is all CPU (it never waits on anything), so
/// more permits than cores would only hold more memory, not finish sooner.
pub fn default_password_permits() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
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
            memory: Mutex::new(Vec::with_capacity(limit)),
            made: AtomicUsize::new(0),
        }
    }

    /// How many working areas the gate has made (at most [`Self::limit`]).
    pub fn memory_areas(&self) -> usize {
        self.made.load(Ordering::SeqCst)
    }

    /// How many checks may run at once.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The most checks that ever ran at once in this process.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }

    /// The idle working areas. A check that panicked mid-way leaves the lock poisoned
    /// but the list whole (it only pops and pushes), so it is used as it is.
    fn lock_memory(&self) -> std::sync::MutexGuard<'_, Vec<Memory>> {
        self.memory
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `work` on a blocking thread once a permit is free, in the permit's working
    /// memory. The permit moves into the thread, so it is held until the work ends even
    /// if the caller gives up.
    async fn run<T: Send + 'static>(
        &'static self,
        work: impl FnOnce(&mut Memory) -> T + Send + 'static,
    ) -> Result<T, AppError> {
        let permit = tokio::time::timeout(self.wait, self.permits.acquire())
            .await
            .map_err(|_| {
                tracing::warn!(permits = self.limit, "refused: password checks all busy");
                AppError::Unavailable {
                    stores: Vec::new(),
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
            // A permit is held, so at most `limit` areas are ever out or made.
            let mut memory = self.lock_memory().pop().unwrap_or_else(|| {
                self.made.fetch_add(1, Ordering::SeqCst);
                new_memory(params().block_count())
            });
            let result = work(&mut memory);
            self.lock_memory().push(memory);
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
        .run(move |memory| hash_blocking(password.expose_secret(), memory))
        .await?
        .map_err(|error| AppError::internal("Failed to hash a password", error))
}

/// A hash of a random password, verified against when an email has no account, so an
/// unknown email costs the same time as a wrong password.
fn dummy_hash(memory: &mut Memory) -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        hash_blocking(&random_token(), memory)
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
        .run(move |memory| match &stored {
            Some(hash) => verify_blocking(password.expose_secret(), &hash.0, memory),
            None => {
                let dummy = dummy_hash(memory);
                verify_blocking(password.expose_secret(), dummy, memory);
                false
            }
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
        let work = (0..12).map(|_| gate.run(|_| std::thread::sleep(Duration::from_millis(20))));
        for result in futures::future::join_all(work).await {
            result.unwrap();
        }
        assert_eq!(
            gate.peak(),
            2,
            "two permits, and twelve callers kept both busy"
        );
        assert_eq!(
            gate.memory_areas(),
            2,
            "one working area per permit, reused"
        );
    }

    #[test]
    fn hashes_read_both_ways_with_the_argon2_crates_own_hasher() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let mut memory = Vec::new();
        let ours = hash_blocking("correct horse battery staple", &mut memory).unwrap();
        assert!(ours.as_str().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        let parsed = argon2::PasswordHash::new(ours.as_str()).unwrap();
        Argon2::default()
            .verify_password(b"correct horse battery staple", &parsed)
            .expect("the crate's verifier accepts Salvage's hash");

        // A hash stored by the crate's own hasher (every account made before the gate
        // kept its memory), and one with other parameters (more memory than ours).
        for params in [params(), Params::new(32 * 1024, 3, 1, None).unwrap()] {
            let salt = SaltString::generate(&mut rand::rngs::OsRng);
            let theirs = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
                .hash_password(b"s3cret passphrase", &salt)
                .unwrap()
                .to_string();
            assert!(verify_blocking("s3cret passphrase", &theirs, &mut memory));
            assert!(!verify_blocking("s3cret passphrasE", &theirs, &mut memory));
        }
        assert!(!verify_blocking("anything", "not a hash", &mut memory));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_check_that_waits_too_long_for_a_permit_is_503() {
        let gate = leaked(1, Duration::from_millis(50));
        let slow = tokio::spawn(gate.run(|_| std::thread::sleep(Duration::from_millis(500))));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let error = gate.run(|_| ()).await.unwrap_err();
        assert_eq!(error.status_code(), 503);
        assert!(error.retry_after_secs().is_some());
        slow.await.unwrap().unwrap();
        gate.run(|_| ()).await.expect("a permit is free again");
    }
}
