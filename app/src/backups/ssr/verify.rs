//! Verification: every file's size and SHA-256 against the manifest, and every file's
//! rows decoded and counted against it (ClickHouse files by reading their `Native`
//! blocks; the PostgreSQL dump by `pg_restore` streaming its data). The result and its
//! time are recorded on the backup and in the history, so verification is visible and not
//! repeated blindly; a failure raises `backup_verify_failed`.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::super::{BackupStatus, StoreKind};
use super::catalogue::{self, Stored};
use super::encryption::Encryption;
use super::manifest::{self, Manifest};
use super::signature;
use super::storage::LocalCopy;
use super::BackupError;
use super::{clickhouse as ch, postgres as pg};
use crate::alerts::ssr::{store::raise_event, Signal};
use crate::alerts::Severity;
use crate::auth::ssr::Actor;
use crate::error::AppError;
use crate::history::ssr::{append, NewEntry};
use crate::history::Outcome;
use crate::jobs::ssr::{CheckFuture, Job, JobContext, JobFuture, Report, ON_DEMAND};
use crate::jobs::RunStatus;
use crate::server::AppState;

crate::history::ssr::details! {
    /// A backup read back and checked against its manifest.
    struct BackupVerified for Backup {
        backup_id: i64,
        store: StoreKind,
        verify: bool,
        error: Option<String>,
    }
}

/// A verification, as recorded: what is wrong with the backup (nothing when it matches
/// its manifest) and its history entry. The `verify-backup` job's report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    pub backup_id: i64,
    pub store: StoreKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub history_id: i64,
}

impl Verification {
    /// The backup's status after it.
    pub fn status(&self) -> BackupStatus {
        match self.error {
            None => BackupStatus::Verified,
            Some(_) => BackupStatus::VerifyFailed,
        }
    }
}

/// What the `verify-backup` job verifies.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyRequest {
    pub backup_id: i64,
}

/// Verifies a backup on demand (the console's Verify, `salvage backup verify`): a run of
/// the runner with its record and heartbeat, never an untracked task.
pub static VERIFY_BACKUP: Job = Job {
    name: crate::backups::VERIFY_JOB,
    description: "Checks every file of a backup against its manifest: size, SHA-256 and rows.",
    schedule: ON_DEMAND,
    grace: std::time::Duration::ZERO,
    run: run_verify_job,
    permission: crate::auth::Permission::Operate,
    check: Some(check_request),
};

fn check_request(state: AppState, _actor: Actor, input: serde_json::Value) -> CheckFuture {
    Box::pin(async move {
        let request: VerifyRequest = crate::jobs::ssr::read_input(input)?;
        verifiable(&state, request.backup_id).await.map(drop)
    })
}

fn run_verify_job(ctx: JobContext) -> JobFuture {
    Box::pin(async move {
        let request: VerifyRequest = ctx.input()?;
        let verification = verify(&ctx.state, request.backup_id, &ctx.actor).await?;
        Ok(Box::new(verification) as Box<dyn Report>)
    })
}

impl Report for Verification {
    fn status(&self) -> RunStatus {
        match self.error {
            None => RunStatus::Succeeded,
            Some(_) => RunStatus::Failed,
        }
    }

    fn rows(&self) -> i64 {
        0
    }

    fn error(&self) -> Option<String> {
        self.error.clone()
    }

    fn history_id(&self) -> Option<i64> {
        Some(self.history_id)
    }

    fn details(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// Backup `id`, when it is complete and so can be verified; a conflict saying why not.
async fn verifiable(state: &AppState, id: i64) -> Result<Stored, AppError> {
    catalogue::load_complete(&state.pg, id)
        .await?
        .map_err(|why| AppError::Conflict {
            message: format!("Nothing to verify: {why}."),
        })
}

/// Verifies backup `id` and records the result. `Err` means it could not be checked or
/// recorded (no such backup, PostgreSQL down); what is wrong with the backup is the
/// verification's `error`.
pub async fn verify(state: &AppState, id: i64, actor: &Actor) -> Result<Verification, AppError> {
    let stored = verifiable(state, id).await?;
    let started = state.clock.now();
    let result = check(state, &stored).await.map_err(|e| e.to_string());
    let now = state.clock.now();
    let store = stored.backup.store;
    let pg_err = AppError::wrap("Record a verification");
    let mut tx = state.pg.begin().await.map_err(&pg_err)?;
    catalogue::record_verification(
        &mut tx,
        id,
        result.as_ref().err().map(String::as_str),
        &actor.name,
        now,
    )
    .await
    .map_err(&pg_err)?;
    let title = match &result {
        Ok(rows) => format!(
            "Verified {} backup {id}: {} files, {} rows match the manifest",
            store.label(),
            rows.0,
            crate::format::group_digits(rows.1)
        ),
        Err(_) => format!("{} backup {id} failed verification", store.label()),
    };
    let outcome = if result.is_ok() {
        Outcome::Succeeded
    } else {
        Outcome::Failed
    };
    let details = BackupVerified {
        backup_id: id,
        store,
        verify: true,
        error: result.as_ref().err().cloned(),
    };
    let entry = NewEntry::new(details, &title, actor, outcome)
        .with_times(started, Some(now))
        .with_body(result.as_ref().err().cloned().unwrap_or_default());
    let history_id = append(&mut tx, &entry).await.map_err(&pg_err)?;
    if let Err(error) = &result {
        let signal = Signal::new(
            store.as_str(),
            Severity::Critical,
            format!("{title}: {error}"),
        )
        .with_details(json!({"backupId": id}));
        raise_event(&mut tx, &super::alerts::BACKUP_VERIFY_FAILED, &signal, now)
            .await
            .map_err(&pg_err)?;
    }
    tx.commit().await.map_err(&pg_err)?;
    Ok(Verification {
        backup_id: id,
        store,
        error: result.err(),
        history_id,
    })
}

/// Reads a backup's manifest from the target, trusted only once its signature matches
/// and what it lists is what Salvage expects (see [`Manifest::checked`]).
pub async fn read_manifest(state: &AppState, stored: &Stored) -> Result<Manifest, BackupError> {
    read_manifest_in(
        state,
        &stored.location,
        stored.backup.store,
        stored.backup.id,
    )
    .await
}

/// Reads the manifest in the folder `location` of the target, which must describe
/// backup `id` of `store` (see [`read_manifest`]).
pub async fn read_manifest_in(
    state: &AppState,
    location: &str,
    store: StoreKind,
    id: i64,
) -> Result<Manifest, BackupError> {
    let storage = &state.backups().storage;
    let key = |file: &str| format!("{location}/{file}");
    let bytes = storage
        .read(&key(manifest::FILE_NAME))
        .await
        .map_err(|e| BackupError::from(e).about(manifest::FILE_NAME))?;
    let signed = match storage.read(&key(signature::FILE_NAME)).await {
        Ok(signed) => Some(signed),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => return Err(BackupError::from(error).about(signature::FILE_NAME)),
    };
    signature::verify(&state.backups().signing_keys, &bytes, signed.as_deref())?;
    let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
        BackupError::Integrity(format!("{}: unreadable ({e})", manifest::FILE_NAME))
    })?;
    let clickhouse = &state.clickhouse;
    let application = clickhouse.application_tables();
    let any_table = |_: &str| true;
    let salvage_table = |name: &str| clickhouse.table_def(name).is_some();
    let not_application = |name: &str| !application.contains(&name);
    let expected = match manifest.store {
        StoreKind::Postgres => manifest::Expected {
            known: &any_table,
            own: &pg::is_own,
        },
        StoreKind::Clickhouse => manifest::Expected {
            known: &salvage_table,
            own: &not_application,
        },
    };
    let manifest = manifest
        .checked(&expected)
        .map_err(|why| BackupError::Integrity(format!("{}: {why}", manifest::FILE_NAME)))?;
    if manifest.backup_id != id || manifest.store != store {
        return Err(BackupError::Integrity(format!(
            "{}: it describes another backup ({} {})",
            manifest::FILE_NAME,
            manifest.store.as_str(),
            manifest.backup_id
        )));
    }
    Ok(manifest)
}

/// A private local copy of one file of a backup (decrypted when the backup is
/// encrypted), checked against the manifest's size and SHA-256 as it is made: what a
/// tool then reads is exactly what was checked.
pub async fn checked_copy(
    state: &AppState,
    stored: &Stored,
    manifest: &Manifest,
    file: &manifest::FileEntry,
) -> Result<LocalCopy, BackupError> {
    checked_copy_at(state, &stored.location, manifest, file).await
}

/// [`checked_copy`] of a backup known by its folder alone (a recovery reads the
/// repository before any catalogue exists).
pub async fn checked_copy_at(
    state: &AppState,
    location: &str,
    manifest: &Manifest,
    file: &manifest::FileEntry,
) -> Result<LocalCopy, BackupError> {
    let decryption = decryption(state, manifest)?;
    let (copy, size, sha256) = state
        .backups()
        .storage
        .private_copy(&format!("{location}/{}", file.path), decryption.as_ref())
        .await
        .map_err(|e| BackupError::from(e).about(&file.path))?;
    if size != file.size {
        return Err(BackupError::Integrity(format!(
            "{}: {size} bytes, the manifest says {}",
            file.path, file.size
        )));
    }
    if sha256 != file.sha256 {
        return Err(BackupError::Integrity(format!(
            "{}: its SHA-256 differs from the manifest's",
            file.path
        )));
    }
    if let Some((stored, replacement)) = state.faults.swap_after_check() {
        std::fs::copy(replacement, stored)?;
    }
    Ok(copy)
}

/// The key to read `manifest`'s files with: none when they are plain, a refusal when
/// they are encrypted and no key is set.
pub fn decryption(
    state: &AppState,
    manifest: &Manifest,
) -> Result<Option<Encryption>, BackupError> {
    super::encryption::for_reading(manifest.encrypted, state.backups().encryption.as_ref())
}

/// (files, rows) when every check passes; else the first failure, naming the file.
async fn check(state: &AppState, stored: &Stored) -> Result<(usize, u64), BackupError> {
    let manifest = read_manifest(state, stored).await?;
    let catalogued: Vec<(String, String)> = sqlx::query!(
        "select path, sha256 from backup_files where backup_id = $1 order by path",
        stored.backup.id
    )
    .fetch_all(&state.pg)
    .await
    .map_err(BackupError::postgres)?
    .into_iter()
    .map(|row| (row.path, row.sha256))
    .collect();
    let mut listed: Vec<(String, String)> = manifest
        .files
        .iter()
        .map(|f| (f.path.clone(), f.sha256.clone()))
        .collect();
    listed.sort();
    if listed != catalogued {
        return Err(BackupError::Integrity(
            "the manifest's files differ from the catalogue's".to_owned(),
        ));
    }
    let mut rows = 0u64;
    for file in &manifest.files {
        let decryption = decryption(state, &manifest)?;
        let key = stored.key(&file.path);
        let storage = state.backups().storage.clone();
        let entry = file.clone();
        match stored.backup.store {
            StoreKind::Clickhouse => {
                rows += tokio::task::spawn_blocking(move || {
                    ch::read_file(&storage, &key, &entry, None, decryption.as_ref())
                })
                .await
                .map_err(|e| BackupError::Storage(e.to_string()))??;
            }
            StoreKind::Postgres => {
                let name = entry.path.clone();
                let copy = checked_copy(state, stored, &manifest, &entry).await?;
                let counts = pg::count_dump_rows(state.backups(), copy.path())
                    .await
                    .map_err(|e| e.about(&name))?;
                for table in &manifest.tables {
                    let found = counts.get(&table.name).copied().unwrap_or(0);
                    if found != table.rows {
                        return Err(BackupError::Integrity(format!(
                            "{name}: {} holds {found} rows, the manifest says {}",
                            table.name, table.rows
                        )));
                    }
                    rows += found as u64;
                }
            }
        }
    }
    Ok((manifest.files.len(), rows))
}
