//! Safe upgrades. Applying pending schema migrations (`salvage migrate`, `salvage serve`
//! on start-up, any command that opens the database) first takes a PostgreSQL backup
//! through the backups feature and records it in `schema_upgrades` as the pre-upgrade
//! backup of the version it leads to; `--no-backup <reason>` or
//! `SALVAGE_MIGRATE_BACKUP=off` skips it, and the reason is recorded instead. A fresh,
//! empty database needs no backup. One upgrade runs at a time across replicas (an
//! advisory lock): a second replica waits, then finds nothing pending.
//!
//! [`roll_back_to`] undoes an upgrade: it restores a pre-upgrade backup's whole schema in
//! place (`backups::ssr::restore::replace_schema`) and records that it did.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::lock_class;
use super::schema;
use crate::auth::ssr::Actor;
use crate::backups::ssr::catalogue::{self, Started};
use crate::backups::StoreKind;
use crate::error::AppError;
use crate::history::ssr::{append, NewEntry};
use crate::history::Outcome;
use crate::server::AppState;

crate::history::ssr::details! {
    /// Schema migrations applied, and what was done about a backup first.
    struct Upgraded for Upgrade {
        upgrade_id: i64,
        from: Option<i64>,
        to: i64,
        applied: Vec<i64>,
        backup: UpgradeBackup,
        binary_version: &'static str,
    }

    /// The whole schema restored from a pre-upgrade backup.
    struct RolledBack for Upgrade {
        backup_id: i64,
        restore_id: i64,
        schema_version: i64,
        /// Where the schema that was live is kept.
        aside: String,
        tables: Vec<crate::backups::ssr::restore::TableCheck>,
        duration_ms: i64,
    }
}

/// The `backups.trigger` of a pre-upgrade backup.
pub const PRE_UPGRADE: &str = "pre-upgrade";

/// Whether to take the pre-upgrade backup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackupPolicy {
    Take,
    /// Skip it; the reason is recorded with the upgrade.
    Skip(crate::reason::Reason),
}

impl BackupPolicy {
    /// The policy the settings ask for (`SALVAGE_MIGRATE_BACKUP`).
    pub fn from_settings(state: &AppState) -> Self {
        if state.migrations().backup_before_upgrade {
            BackupPolicy::Take
        } else {
            BackupPolicy::Skip(crate::reason::Reason::own(
                "SALVAGE_MIGRATE_BACKUP=off".to_owned(),
            ))
        }
    }
}

/// What was done about the backup before an upgrade.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum UpgradeBackup {
    /// Nothing was pending, so nothing was upgraded.
    NotNeeded,
    /// The database was empty.
    Fresh,
    Taken {
        backup_id: i64,
        bytes: i64,
        duration_ms: i64,
    },
    Skipped {
        reason: String,
    },
}

/// What applying the schema migrations did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeReport {
    pub from_version: Option<i64>,
    pub to_version: i64,
    pub applied: Vec<i64>,
    pub backup: UpgradeBackup,
    /// The `schema_upgrades` row.
    pub upgrade_id: Option<i64>,
}

/// Why applying the schema migrations stopped.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error("{0}")]
    Store(#[from] AppError),
    #[error("the pre-upgrade backup failed, so no migration was applied: {0}. Fix the backup (see /admin/backups) or skip it with `salvage migrate --no-backup <reason>`")]
    Backup(String),
    #[error("{0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Applies every pending schema migration behind a pre-upgrade backup (see the module
/// documentation), as the schema's owner when one is configured.
pub async fn apply(
    state: &AppState,
    policy: &BackupPolicy,
    actor: &Actor,
) -> Result<UpgradeReport, UpgradeError> {
    let wrap = || AppError::wrap("Apply the schema migrations");
    let mut waited = false;
    let lock = loop {
        if let Some(lock) =
            crate::server::postgres::try_exclusive(&state.pg, lock_class::UPGRADE, 0)
                .await
                .map_err(wrap())?
        {
            break lock;
        }
        if !waited {
            tracing::info!("another process is upgrading the schema; waiting for it");
            waited = true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let result = apply_locked(state, policy, actor).await;
    lock.release().await;
    result
}

async fn apply_locked(
    state: &AppState,
    policy: &BackupPolicy,
    actor: &Actor,
) -> Result<UpgradeReport, UpgradeError> {
    let wrap = || AppError::wrap("Apply the schema migrations");
    // Read as the owner when there is one: the application role's grants are what this
    // run renews, so a database the owner migrated alone (no grants yet) is repaired by
    // the next migrate instead of refusing it.
    let reader = state
        .schema_owner
        .as_ref()
        .map_or(&state.pg, |owner| &owner.pool);
    let applied = schema::applied(reader).await.map_err(wrap())?;
    let pending = schema::pending(&applied);
    let from_version = applied
        .iter()
        .filter(|a| a.success)
        .map(|a| a.version)
        .max();
    let to_version = schema::expected_version();
    if pending.is_empty() {
        // Nothing to apply, but the application role's grants are renewed all the same
        // (idempotent): tables another path created as the owner become usable.
        crate::server::postgres::migrate_schema(&state.pg, state.schema_owner.as_ref()).await?;
        return Ok(UpgradeReport {
            from_version,
            to_version,
            applied: Vec::new(),
            backup: UpgradeBackup::NotNeeded,
            upgrade_id: None,
        });
    }
    let started = state.clock.now();
    let backup = if applied.is_empty() {
        UpgradeBackup::Fresh
    } else {
        match policy {
            BackupPolicy::Skip(reason) => UpgradeBackup::Skipped {
                reason: reason.as_str().to_owned(),
            },
            BackupPolicy::Take => take_backup(state, actor, from_version, to_version).await?,
        }
    };
    crate::server::postgres::migrate_schema(&state.pg, state.schema_owner.as_ref()).await?;
    let finished = state.clock.now();
    let (backup_id, skipped) = match &backup {
        UpgradeBackup::Taken { backup_id, .. } => (Some(*backup_id), None),
        UpgradeBackup::Skipped { reason } => {
            (None, Some(crate::reason::Reason::own(reason.clone())))
        }
        _ => (
            None,
            Some(crate::reason::Reason::own("fresh database".to_owned())),
        ),
    };
    let mut tx = state.pg.begin().await.map_err(wrap())?;
    let upgrade_id: i64 = sqlx::query_scalar!(
        "insert into schema_upgrades (from_version, to_version, applied, backup_id, backup_skipped,
                                      actor, binary_version, started_at, finished_at)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9) returning id",
        from_version,
        to_version,
        &pending,
        backup_id,
        skipped.as_ref().map(crate::reason::Reason::as_str),
        &actor.name,
        state.version,
        started,
        finished
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(wrap())?;
    // A fresh database's first migrations are recorded in `schema_upgrades` only: the
    // history starts empty, with the first thing a person or a job does.
    if backup == UpgradeBackup::Fresh {
        tx.commit().await.map_err(wrap())?;
        return Ok(UpgradeReport {
            from_version,
            to_version,
            applied: pending,
            backup,
            upgrade_id: Some(upgrade_id),
        });
    }
    let title = match (&backup, from_version) {
        (UpgradeBackup::Taken { backup_id, .. }, Some(from)) => format!(
            "Schema upgraded from {from} to {to_version} after pre-upgrade backup {backup_id}"
        ),
        (_, from) => format!(
            "Schema upgraded from {} to {to_version} without a backup",
            from.map(|f| f.to_string())
                .unwrap_or_else(|| "nothing".into())
        ),
    };
    let details = Upgraded {
        upgrade_id,
        from: from_version,
        to: to_version,
        applied: pending.clone(),
        backup: backup.clone(),
        binary_version: state.version,
    };
    let entry = NewEntry::new(details, title, actor, Outcome::Succeeded)
        .with_reason(skipped.clone())
        .with_times(started, Some(finished));
    append(&mut tx, &entry).await.map_err(wrap())?;
    tx.commit().await.map_err(wrap())?;
    Ok(UpgradeReport {
        from_version,
        to_version,
        applied: pending,
        backup,
        upgrade_id: Some(upgrade_id),
    })
}

async fn take_backup(
    state: &AppState,
    actor: &Actor,
    from: Option<i64>,
    to: i64,
) -> Result<UpgradeBackup, UpgradeError> {
    let has_catalogue = schema::table_exists(&state.pg, "backups")
        .await
        .map_err(AppError::wrap("Look for the backups catalogue"))?;
    if !has_catalogue {
        return Err(UpgradeError::Backup(format!(
            "this database (schema {}) predates Salvage's backups; take a pg_dump yourself",
            from.unwrap_or(0)
        )));
    }
    let reason = crate::reason::Reason::own(format!(
        "Before upgrading the schema from {} to {to}",
        from.map(|f| f.to_string())
            .unwrap_or_else(|| "nothing".into())
    ));
    let started = Started {
        store: StoreKind::Postgres,
        trigger: PRE_UPGRADE,
        actor,
        reason: Some(&reason),
        run_id: None,
        at: state.clock.now(),
    };
    let tracker = crate::jobs::ssr::Tracker::detached(state);
    let taken = crate::backups::ssr::create::take(state, &started, &tracker).await?;
    match (taken.backup_id, taken.error) {
        (Some(backup_id), None) => Ok(UpgradeBackup::Taken {
            backup_id,
            bytes: taken.bytes,
            duration_ms: taken.duration_ms,
        }),
        (_, error) => Err(UpgradeError::Backup(
            error.unwrap_or_else(|| "no backup was recorded".to_owned()),
        )),
    }
}

/// What a rollback did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RollbackReport {
    pub backup_id: i64,
    /// The schema version the database is at now.
    pub schema_version: i64,
    pub tables: Vec<crate::backups::ssr::restore::TableCheck>,
    pub verified: bool,
    /// Where the schema that was live is kept.
    pub aside: String,
    pub restore_id: i64,
    pub history_id: i64,
    pub duration_ms: i64,
}

/// Restores pre-upgrade backup `backup_id` in place, whole schema (admins: the CLI's
/// local admin). `confirm` must be the backup's id, typed. Refused, with nothing
/// changed, for a backup that is not a complete PostgreSQL pre-upgrade backup (the
/// refusal says what it is) or while a console still runs jobs on this database.
pub async fn roll_back_to(
    state: &AppState,
    backup_id: i64,
    confirm: &str,
    actor: &Actor,
    reason: Option<crate::reason::Reason>,
) -> Result<RollbackReport, AppError> {
    let wrap = || AppError::wrap("Roll back an upgrade");
    let stored = catalogue::load(&state.pg, backup_id)
        .await
        .map_err(wrap())?
        .ok_or_else(|| AppError::NotFound {
            what: format!("Backup {backup_id}"),
        })?;
    let b = &stored.backup;
    if b.store != StoreKind::Postgres || b.trigger != PRE_UPGRADE {
        return Err(AppError::invalid(
            "backup",
            format!(
                "backup {backup_id} is a {} backup taken by {} ({}), not a PostgreSQL pre-upgrade \
                 backup: --rollback-to takes only those (`salvage backup list` marks them \
                 pre-upgrade); restore other backups with `salvage backup restore`",
                b.store.label(),
                b.trigger,
                b.reason.as_deref().unwrap_or("no reason given")
            ),
        ));
    }
    let stored = catalogue::load_complete(&state.pg, backup_id)
        .await?
        .map_err(|why| AppError::invalid("backup", why.to_string()))?;
    if confirm.trim() != backup_id.to_string() {
        return Err(AppError::invalid(
            "confirm",
            format!("type the backup's id, {backup_id}, to replace the whole schema with it"),
        ));
    }
    let live = crate::jobs::ssr::records::working(&state.pg, None, state.clock.now())
        .await
        .map_err(wrap())?;
    if let Some((job, id)) = live.first() {
        return Err(AppError::Conflict {
            message: format!(
                "a console is still working on this database (run {id} of {job} has a fresh \
                 heartbeat): stop every `salvage serve` first, then roll back"
            ),
        });
    }
    let manifest = crate::backups::ssr::verify::read_manifest(state, &stored)
        .await
        .map_err(|e| AppError::invalid("backup", e.to_string()))?;
    let started = state.clock.now();
    let replaced = crate::backups::ssr::restore::replace_schema(state, &stored, &manifest)
        .await
        .map_err(|error| AppError::internal("Roll back an upgrade", error.to_string()))?;
    let verified = replaced.checks.iter().all(|c| c.ok());
    let schema_version = schema::status(&state.pg).await.map_err(wrap())?.applied;
    let now = state.clock.now();
    let names: Vec<String> = replaced.checks.iter().map(|c| c.name.clone()).collect();
    let rows: i64 = replaced.checks.iter().map(|c| c.rows).sum();
    let mut tx = state.pg.begin().await.map_err(wrap())?;
    let status = if verified {
        crate::backups::RestoreStatus::Verified
    } else {
        crate::backups::RestoreStatus::VerifyFailed
    };
    let restore_id = sqlx::query_scalar!(
        "insert into restores (backup_id, store, mode, target, tables, status, aside, actor,
                               actor_user_id, reason, started_at, finished_at, duration_ms,
                               row_count, verification)
         values ($1, 'postgres', 'in_place', $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
         returning id",
        backup_id,
        crate::backups::ssr::postgres::database_name(&state.backups().database_url),
        &names,
        status.as_str(),
        &replaced.aside,
        &actor.name,
        actor.user_id,
        reason.as_ref().map(crate::reason::Reason::as_str),
        started,
        now,
        replaced.duration_ms,
        rows,
        serde_json::to_value(&replaced.checks).unwrap_or_default()
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(wrap())?;
    let details = RolledBack {
        backup_id,
        restore_id,
        schema_version,
        aside: replaced.aside.clone(),
        tables: replaced.checks.clone(),
        duration_ms: replaced.duration_ms,
    };
    let entry =
        NewEntry::new(
            details,
            format!(
            "Upgrade rolled back to pre-upgrade backup {backup_id}: schema {schema_version}, {}",
            if verified { "verified" } else { "verification failed" }
        ),
            actor,
            if verified {
                Outcome::Succeeded
            } else {
                Outcome::Failed
            },
        )
        .with_reason(reason)
        .with_times(started, Some(now))
        .with_body(format!(
            "The whole schema was restored from backup {backup_id}. What was live before is kept \
         in schema {} until someone drops it.",
            replaced.aside
        ));
    let history_id = append(&mut tx, &entry).await.map_err(wrap())?;
    tx.commit().await.map_err(wrap())?;
    Ok(RollbackReport {
        backup_id,
        schema_version,
        tables: replaced.checks,
        verified,
        aside: replaced.aside,
        restore_id,
        history_id,
        duration_ms: replaced.duration_ms,
    })
}
