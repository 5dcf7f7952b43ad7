//! `backup-sync`: the catalogue rebuilt from the repository. The repository describes
//! itself (each backup's folder holds its signed manifest), so the `backups` table is a
//! cache of it: after the database that held the catalogue was lost and restored from
//! an older dump, a sync adds the backups taken since, completes those the dump caught
//! mid-way, and marks as gone the ones whose files are no longer there. A manifest that
//! does not verify is never added; the report names it.
//!
//! One function behind the backups page's Sync button, `salvage backup sync` and
//! `/cron/backup-sync` (daily), run by the job engine.

use serde::{Deserialize, Serialize};

use super::super::StoreKind;
use super::catalogue;
use super::lock_class;
use crate::auth::ssr::Actor;
use crate::error::AppError;
use crate::history::ssr::{append, NewEntry};
use crate::history::Outcome;
use crate::jobs::ssr::{Job, JobContext, JobFuture, Report};
use crate::jobs::RunStatus;
use crate::server::AppState;

pub use crate::backups::BACKUP_SYNC_JOB;

crate::history::ssr::details! {
    /// The catalogue compared with the repository and brought in line with it.
    struct BackupsSynced for Backup {
        sync: bool,
        found: usize,
        added: Vec<i64>,
        completed: Vec<i64>,
        gone: Vec<i64>,
        refused: Vec<String>,
    }
}

/// What a sync found and changed. The `backup-sync` job's report.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncReport {
    /// Backups whose manifest verified in the repository.
    pub found: usize,
    /// Backups the catalogue did not hold, added.
    pub added: Vec<i64>,
    /// Backups the catalogue held as running or failed, completed from their manifest.
    pub completed: Vec<i64>,
    /// Backups the catalogue held as complete whose manifest is gone: marked deleted.
    pub gone: Vec<i64>,
    /// Folders whose manifest was refused, each with why (`clickhouse/7: manifest.json: …`).
    pub refused: Vec<String>,
    pub history_id: i64,
}

pub static BACKUP_SYNC: Job = Job {
    name: BACKUP_SYNC_JOB,
    description: "Rebuilds the backup catalogue from the repository's signed manifests.",
    schedule: "47 5 * * *",
    grace: std::time::Duration::from_secs(3600),
    run: run_sync,
    permission: crate::auth::Permission::Operate,
    check: None,
};

fn run_sync(ctx: JobContext) -> JobFuture {
    Box::pin(async move {
        let report = sync(&ctx.state, &ctx.actor).await?;
        Ok(Box::new(report) as Box<dyn Report>)
    })
}

impl Report for SyncReport {
    fn status(&self) -> RunStatus {
        if self.refused.is_empty() {
            RunStatus::Succeeded
        } else {
            RunStatus::Failed
        }
    }
    fn rows(&self) -> i64 {
        (self.added.len() + self.completed.len() + self.gone.len()) as i64
    }
    fn error(&self) -> Option<String> {
        (!self.refused.is_empty()).then(|| {
            format!(
                "{} refused: {}",
                count_of(self.refused.len(), "manifest"),
                self.refused.join("; ")
            )
        })
    }
    fn history_id(&self) -> Option<i64> {
        Some(self.history_id)
    }
    fn details(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

fn count_of(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// Compares the catalogue with the repository and brings it in line (see the module).
/// Holds both stores' backup locks, so no backup is half-way while it looks: a backup
/// running now is a 409 saying so.
pub async fn sync(state: &AppState, actor: &Actor) -> Result<SyncReport, AppError> {
    actor.authorize(crate::auth::Permission::Operate)?;
    let mut locks = Vec::new();
    for (store, key) in [(StoreKind::Postgres, 1), (StoreKind::Clickhouse, 2)] {
        let lock = crate::server::postgres::try_exclusive(&state.pg, lock_class::BACKUP, key)
            .await
            .map_err(AppError::wrap("Take the backup lock"))?;
        match lock {
            Some(lock) => locks.push(lock),
            None => {
                return Err(AppError::Conflict {
                    message: format!(
                        "A backup of {} is running; sync once it ends.",
                        store.label()
                    ),
                })
            }
        }
    }
    let started = state.clock.now();
    let storage = &state.backups().storage;
    let listing = super::points::read_repository(state)
        .await
        .map_err(|error| AppError::Unavailable {
            stores: Vec::new(),
            message: error.to_string(),
        })?;
    let manifests = listing.manifests;
    let present = listing.present;
    let mut report = SyncReport {
        found: manifests.len(),
        refused: listing.refused,
        ..SyncReport::default()
    };

    let internal = AppError::wrap("Sync the backup catalogue");
    let mut tx = state.pg.begin().await.map_err(&internal)?;
    for (location, manifest) in &manifests {
        let id = manifest.backup_id;
        let row: Option<(String, String, bool)> = sqlx::query_as(
            "select store, status, deleted_at is not null from backups where id = $1 for update",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(&internal)?;
        // The row made ready for the manifest's figures, and the list it joins.
        let joins = match row {
            None => {
                sqlx::query(
                    "insert into backups (id, store, status, location, trigger, actor, reason, started_at)
                     values ($1, $2, 'completed', $3, 'sync', $4, 'found in the repository', $5)",
                )
                .bind(id)
                .bind(manifest.store.as_str())
                .bind(location)
                .bind(&actor.name)
                .bind(manifest.started_at)
                .execute(&mut *tx)
                .await
                .map_err(&internal)?;
                &mut report.added
            }
            Some((store, _, _)) if store != manifest.store.as_str() => {
                report.refused.push(format!(
                    "{location}: backup {id} is a {store} backup in the catalogue"
                ));
                continue;
            }
            Some((_, status, false)) if status == "running" || status == "failed" => {
                // A backup is catalogued with its files only once it completed, so a
                // running or failed one lists none; the files stay append-only.
                let cleared = sqlx::query(
                    "update backups set status = 'completed', error = null where id = $1
                        and not exists (select 1 from backup_files where backup_id = $1)",
                )
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(&internal)?;
                if cleared.rows_affected() == 0 {
                    report.refused.push(format!(
                        "{location}: backup {id} is {status} in the catalogue yet lists files"
                    ));
                    continue;
                }
                &mut report.completed
            }
            Some(_) => continue,
        };
        catalogue::complete(&mut tx, id, manifest)
            .await
            .map_err(&internal)?;
        joins.push(id);
    }
    // Complete in the catalogue, gone from the repository.
    let held = present;
    report.gone = sqlx::query_scalar(
        "update backups set deleted_at = $2
          where status in ('completed', 'verified', 'verify_failed') and deleted_at is null
            and id <> all($1)
          returning id",
    )
    .bind(&held)
    .bind(state.clock.now())
    .fetch_all(&mut *tx)
    .await
    .map_err(&internal)?;
    report.gone.sort();
    // New backups number after every one the repository holds.
    sqlx::query("select setval('backups_id_seq', greatest((select max(id) from backups), 1))")
        .execute(&mut *tx)
        .await
        .map_err(&internal)?;

    let now = state.clock.now();
    let title = format!(
        "Backup catalogue synced with {}: {} found, {} added, {} completed, {} gone{}",
        storage.describe(),
        report.found,
        report.added.len(),
        report.completed.len(),
        report.gone.len(),
        if report.refused.is_empty() {
            String::new()
        } else {
            format!(", {} refused", report.refused.len())
        }
    );
    let outcome = if report.refused.is_empty() {
        Outcome::Succeeded
    } else {
        Outcome::Failed
    };
    let details = BackupsSynced {
        sync: true,
        found: report.found,
        added: report.added.clone(),
        completed: report.completed.clone(),
        gone: report.gone.clone(),
        refused: report.refused.clone(),
    };
    let entry = NewEntry::new(details, &title, actor, outcome)
        .with_times(started, Some(now))
        .with_body(report.refused.join("\n"));
    report.history_id = append(&mut tx, &entry).await.map_err(&internal)?;
    tx.commit().await.map_err(&internal)?;
    drop(locks);
    Ok(report)
}

/// When the catalogue was last synced with the repository (unix ms), if ever.
pub async fn last_synced_ms(state: &AppState) -> Result<Option<i64>, sqlx::Error> {
    let at: Option<time::OffsetDateTime> = sqlx::query_scalar(
        "select max(coalesce(finished_at, started_at)) from runbook_history
          where kind = 'backup' and details ? 'sync'",
    )
    .fetch_one(&state.pg)
    .await?;
    Ok(at.map(crate::server::unix_ms))
}
