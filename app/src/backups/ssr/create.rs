//! The `backup` job: back up each store, verify each new backup, then apply retention.
//! One function behind the Backup now button, `/cron/backup`, each store's schedule and
//! `salvage backup create`.
//!
//! A backup is recorded `running` before its first byte, its files are written under the
//! target, and its manifest is written last: a backup whose process dies has no
//! manifest and stays `running` until the next backup of the store (which holds the
//! store's backup lock, so nothing else can be writing it) marks it failed and deletes
//! its files.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;

use super::super::{BackupStatus, StoreKind};
use super::catalogue::{self, Started, Stored};
use super::manifest::{self, FileEntry, Manifest, FORMAT};
use super::signature;
use super::BackupError;
use super::{clickhouse as ch, lock_class, postgres as pg, verify};
use crate::alerts::ssr::{store::raise_event, Signal};
use crate::alerts::Severity;
use crate::auth::ssr::Actor;
use crate::error::AppError;
use crate::format::{format_bytes, format_duration, group_digits};
use crate::freeze::ssr as freeze;
use crate::history::ssr::{append, NewEntry};
use crate::history::Outcome;
use crate::jobs::ssr::{Job, JobContext, JobFuture, Report, Tracker};
use crate::jobs::RunStatus;
use crate::server::AppState;

crate::history::ssr::details! {
    /// A backup taken: what it holds and where it went.
    struct BackupTaken for Backup {
        backup_id: i64,
        store: StoreKind,
        rows: i64,
        bytes: i64,
        tables: Vec<TableRows>,
        /// Rows that were still queued for ClickHouse (a PostgreSQL backup holds them).
        queued_for_clickhouse: i64,
        duration_ms: i64,
        target: String,
    }

    /// A backup that failed; its files were deleted.
    struct BackupFailed for Backup {
        backup_id: i64,
        store: StoreKind,
        error: String,
    }

    /// A backup deleted by retention (the newest `keep` of each store stay).
    struct BackupDeleted for Backup {
        backup_id: i64,
        store: StoreKind,
        bytes: i64,
        keep: i64,
        retention: bool,
    }
}

/// One table of a backup and its rows.
#[derive(Clone, Debug, Serialize)]
struct TableRows {
    name: String,
    rows: i64,
}

pub static BACKUP: Job = Job {
    name: super::super::BACKUP_JOB,
    description: "Backs up PostgreSQL and ClickHouse, verifies each backup and applies retention.",
    // The tick: each store is backed up at its own times (`schedule`).
    schedule: "0 * * * *",
    grace: Duration::from_secs(3600),
    run: run_backup_job,
    permission: crate::auth::Permission::Operate,
    check: None,
};

fn run_backup_job(ctx: JobContext) -> JobFuture {
    Box::pin(async move { Ok(Box::new(backup(&ctx).await?) as Box<dyn Report>) })
}

/// One store's backup in a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Taken {
    pub store: StoreKind,
    pub backup_id: Option<i64>,
    pub status: BackupStatus,
    pub rows: i64,
    pub bytes: i64,
    pub duration_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The history entry recording it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_id: Option<i64>,
}

/// What a run of the `backup` job did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupReport {
    pub status: RunStatus,
    pub backups: Vec<Taken>,
    /// Backups whose files retention deleted.
    pub deleted: Vec<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Report for BackupReport {
    fn status(&self) -> RunStatus {
        self.status
    }
    fn rows(&self) -> i64 {
        self.backups.iter().map(|b| b.rows).sum()
    }
    fn error(&self) -> Option<String> {
        self.error.clone()
    }
    fn history_id(&self) -> Option<i64> {
        self.backups.iter().find_map(|b| b.history_id)
    }
    fn details(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

async fn backup(ctx: &JobContext) -> Result<BackupReport, AppError> {
    let mut taken = Vec::new();
    let mut deleted = Vec::new();
    // A scheduler's tick backs up the stores whose own times came; anyone else, both.
    let stores = match (ctx.trigger, ctx.tick) {
        (crate::jobs::Trigger::Scheduler, Some(tick)) => {
            super::schedule::due_stores(&ctx.state, tick)
                .await
                .map_err(AppError::wrap("Read the backup schedules"))?
        }
        _ => StoreKind::ALL.to_vec(),
    };
    let total = stores.len() as i64;
    for (index, store) in stores.iter().copied().enumerate() {
        if ctx.tracker.is_cancelled() {
            break;
        }
        ctx.tracker.report(index as i64, total).await?;
        let started = Started {
            store,
            trigger: ctx.trigger.as_str(),
            actor: &ctx.actor,
            reason: ctx.reason.as_ref(),
            run_id: Some(ctx.run_id),
            at: ctx.state.clock.now(),
        };
        let one = take(&ctx.state, &started, &ctx.tracker).await?;
        if let (Some(id), true) = (one.backup_id, one.status == BackupStatus::Completed) {
            let status = verify::verify(&ctx.state, id, &ctx.actor).await?.status();
            deleted.extend(retain(&ctx.state, store, &ctx.actor).await?);
            taken.push(Taken { status, ..one });
        } else {
            taken.push(one);
        }
    }
    ctx.tracker.report(total, total).await?;
    let failed: Vec<String> = taken
        .iter()
        .filter_map(|t| {
            t.error
                .as_ref()
                .map(|e| match e.starts_with(t.store.label()) {
                    true => e.clone(),
                    false => format!("{}: {e}", t.store.label()),
                })
        })
        .collect();
    let status = if ctx.tracker.is_cancelled() {
        RunStatus::Cancelled
    } else if !taken.is_empty() && failed.len() == taken.len() {
        RunStatus::Failed
    } else if !failed.is_empty() || taken.iter().any(|t| t.status == BackupStatus::VerifyFailed) {
        RunStatus::Partial
    } else {
        RunStatus::Succeeded
    };
    Ok(BackupReport {
        status,
        error: (!failed.is_empty()).then(|| failed.join("; ")),
        backups: taken,
        deleted,
    })
}

/// Takes one backup of `started.store` and records it (complete with its manifest, or
/// failed with its error and a `backup_failed` alert). `Err` only when the catalogue
/// itself cannot be written.
pub async fn take(
    state: &AppState,
    started: &Started<'_>,
    tracker: &Tracker,
) -> Result<Taken, AppError> {
    let store = started.store;
    let key = match store {
        StoreKind::Postgres => 1,
        StoreKind::Clickhouse => 2,
    };
    let Some(_lock) = crate::server::postgres::try_exclusive(&state.pg, lock_class::BACKUP, key)
        .await
        .map_err(AppError::wrap("Take the backup lock"))?
    else {
        return Ok(Taken {
            store,
            backup_id: None,
            status: BackupStatus::Failed,
            rows: 0,
            bytes: 0,
            duration_ms: 0,
            error: Some(format!("another backup of {} is running", store.label())),
            history_id: None,
        });
    };
    let row = catalogue::start(&state.pg, started)
        .await
        .map_err(AppError::wrap("Record a backup"))?;
    let storage = &state.backups().storage;
    for dead in catalogue::fail_interrupted(&state.pg, store, row.backup.id, started.at)
        .await
        .map_err(AppError::wrap("Close interrupted backups"))?
    {
        let _ = storage.delete_prefix(&dead.location).await;
    }
    let clock = Instant::now();
    let keys = &state.backups().signing_keys;
    // The key is checked before anything is dumped: an unsigned backup is never restored.
    let ready = match signature::require_key(keys) {
        Ok(()) => storage.check_writable().await.map_err(|error| {
            BackupError::Storage(format!(
                "the backup target {} cannot be written: {error}",
                storage.describe()
            ))
        }),
        Err(error) => Err(error),
    };
    let result = match ready {
        Err(error) => Err(error),
        Ok(()) => match store {
            StoreKind::Postgres => dump_postgres(state, &row, started.at, tracker).await,
            StoreKind::Clickhouse => dump_clickhouse(state, &row, started.at, tracker).await,
        },
    };
    let result = match result {
        Ok(manifest) => commit(storage, &row, keys, &manifest)
            .await
            .map(|()| manifest),
        Err(error) => Err(error),
    };
    let duration_ms = clock.elapsed().as_millis() as i64;
    let now = state.clock.now();
    let mut tx = state
        .pg
        .begin()
        .await
        .map_err(AppError::wrap("Record a backup"))?;
    let taken = match result {
        Ok(manifest) => {
            catalogue::complete(&mut tx, row.backup.id, &manifest)
                .await
                .map_err(AppError::wrap("Record a backup"))?;
            let title = format!(
                "{} backup {}: {} rows, {} in {}",
                store.label(),
                row.backup.id,
                group_digits(manifest.total_rows().max(0) as u64),
                format_bytes(manifest.total_bytes()),
                format_duration(manifest.duration_ms)
            );
            let details = BackupTaken {
                backup_id: row.backup.id,
                store,
                rows: manifest.total_rows(),
                bytes: manifest.total_bytes(),
                tables: manifest
                    .tables
                    .iter()
                    .map(|t| TableRows {
                        name: t.name.clone(),
                        rows: t.rows,
                    })
                    .collect(),
                queued_for_clickhouse: manifest.queued_for_clickhouse,
                duration_ms: manifest.duration_ms,
                target: storage.describe(),
            };
            let entry = NewEntry::new(details, title, started.actor, Outcome::Succeeded)
                .with_reason(started.reason.cloned())
                .with_times(started.at, Some(now));
            let history_id = append(&mut tx, &entry)
                .await
                .map_err(AppError::wrap("Record a backup"))?;
            Taken {
                store,
                backup_id: Some(row.backup.id),
                status: BackupStatus::Completed,
                rows: manifest.total_rows(),
                bytes: manifest.total_bytes(),
                duration_ms: manifest.duration_ms,
                error: None,
                history_id: Some(history_id),
            }
        }
        Err(error) => {
            let error = error.to_string();
            let _ = storage.delete_prefix(&row.location).await;
            catalogue::fail(&mut tx, row.backup.id, &error, now, duration_ms)
                .await
                .map_err(AppError::wrap("Record a backup"))?;
            let title = format!("{} backup {} failed", store.label(), row.backup.id);
            let details = BackupFailed {
                backup_id: row.backup.id,
                store,
                error: error.clone(),
            };
            let entry = NewEntry::new(details, &title, started.actor, Outcome::Failed)
                .with_reason(started.reason.cloned())
                .with_times(started.at, Some(now))
                .with_body(error.clone());
            let history_id = append(&mut tx, &entry)
                .await
                .map_err(AppError::wrap("Record a backup"))?;
            let signal = Signal::new(
                store.as_str(),
                Severity::Critical,
                format!("{title}: {error}"),
            )
            .with_details(json!({"backupId": row.backup.id}));
            raise_event(&mut tx, &super::alerts::BACKUP_FAILED, &signal, now)
                .await
                .map_err(AppError::wrap("Record a backup"))?;
            Taken {
                store,
                backup_id: Some(row.backup.id),
                status: BackupStatus::Failed,
                rows: 0,
                bytes: 0,
                duration_ms,
                error: Some(error),
                history_id: Some(history_id),
            }
        }
    };
    tx.commit()
        .await
        .map_err(AppError::wrap("Record a backup"))?;
    Ok(taken)
}

/// Rows queued in PostgreSQL for ClickHouse now (the queues' exact depths).
async fn queued_rows(state: &AppState) -> Result<i64, BackupError> {
    sqlx::query_scalar::<_, Option<i64>>(
        "select (select count(*) from requests_fallback) + (select count(*) from events_fallback)",
    )
    .fetch_one(&state.pg)
    .await
    .map(|n| n.unwrap_or(0))
    .map_err(BackupError::postgres)
}

/// Writes the manifest's signature, then the manifest: its presence commits the backup,
/// and a backup whose process died between the two has no manifest.
async fn commit(
    storage: &super::Storage,
    row: &Stored,
    keys: &crate::server::sealed::KeyRing,
    manifest: &Manifest,
) -> Result<(), BackupError> {
    let bytes =
        serde_json::to_vec_pretty(manifest).map_err(|e| BackupError::Integrity(e.to_string()))?;
    let signed = signature::sign(keys, &bytes)?;
    storage
        .put(&row.key(signature::FILE_NAME), signed)
        .await
        .map_err(|e| BackupError::Storage(format!("{}: {e}", signature::FILE_NAME)))?;
    storage
        .put(&row.key(manifest::FILE_NAME), bytes)
        .await
        .map_err(|e| BackupError::Storage(format!("{}: {e}", manifest::FILE_NAME)))
}

/// What a dump found, before it becomes the manifest.
struct Contents {
    database: String,
    server_version: String,
    tool_version: Option<String>,
    tables: Vec<manifest::TableEntry>,
    files: Vec<FileEntry>,
    queued: i64,
    /// Whether the files were encrypted on their way to the target.
    encrypted: bool,
}

fn manifest_of(
    row: &Stored,
    started_at: OffsetDateTime,
    clock: Instant,
    contents: Contents,
) -> Manifest {
    let duration_ms = clock.elapsed().as_millis() as i64;
    Manifest {
        format: FORMAT,
        backup_id: row.backup.id,
        store: row.backup.store,
        database: contents.database,
        server_version: contents.server_version,
        tool_version: contents.tool_version,
        started_at,
        finished_at: started_at + time::Duration::milliseconds(duration_ms),
        duration_ms,
        tables: contents.tables,
        files: contents.files,
        queued_for_clickhouse: contents.queued,
        encrypted: contents.encrypted,
    }
}

/// `pg_dump -Fc` of the database in a snapshot exported by a transaction that counts
/// every table's rows in the same snapshot.
async fn dump_postgres(
    state: &AppState,
    row: &Stored,
    started_at: OffsetDateTime,
    tracker: &Tracker,
) -> Result<Manifest, BackupError> {
    let clock = Instant::now();
    let settings = state.backups();
    let url = pg::working_url(settings);
    let (tool_line, tool_major) = pg::tool_version(settings, "pg_dump")
        .await
        .map_err(BackupError::tool)?;
    let down = BackupError::postgres;
    let mut conn = pg::connect(url, None).await.map_err(down)?;
    let server_num =
        sqlx::query_scalar!(r#"select current_setting('server_version_num')::int as "num!""#)
            .fetch_one(&mut conn)
            .await
            .map_err(down)?;
    pg::check_tool_major(&tool_line, tool_major, (server_num / 10000) as u32)?;
    let server_version = sqlx::query_scalar!(r#"select version() as "version!""#)
        .fetch_one(&mut conn)
        .await
        .map_err(down)?;
    sqlx::query("start transaction isolation level repeatable read, read only")
        .execute(&mut conn)
        .await
        .map_err(down)?;
    let snapshot: String = sqlx::query_scalar("select pg_export_snapshot()")
        .fetch_one(&mut conn)
        .await
        .map_err(down)?;
    let mut tables = pg::tables(&mut conn).await.map_err(down)?;
    for table in &mut tables {
        if pg::DATA_LEFT_OUT.contains(&table.name.as_str()) {
            table.rows = 0;
        }
    }
    let queued: i64 = tables
        .iter()
        .filter(|t| t.name == "requests_fallback" || t.name == "events_fallback")
        .map(|t| t.rows)
        .sum();
    let mut child = pg::spawn_dump(settings, url, &snapshot).map_err(BackupError::tool)?;
    let stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let relative = "postgres.dump".to_owned();
    let written = write_stream(state, row.key(&relative), stdout, tracker).await;
    let mut errors = String::new();
    let _ = tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut errors).await;
    let status = child.wait().await.map_err(BackupError::tool)?;
    // The snapshot may end only once pg_dump has its own copy of it.
    let _ = sqlx::query("commit").execute(&mut conn).await;
    let (size, sha256) = written?;
    if !status.success() {
        return Err(BackupError::Tool(pg::first_line(&errors, "pg_dump failed")));
    }
    let file = FileEntry {
        path: relative,
        table: None,
        partition: None,
        size,
        sha256,
        rows: None,
    };
    let contents = Contents {
        database: pg::database_name(url),
        server_version,
        tool_version: Some(tool_line),
        tables,
        files: vec![file],
        queued,
        encrypted: settings.encryption.is_some(),
    };
    Ok(manifest_of(row, started_at, clock, contents))
}

/// Copies an async byte stream into a new file of the target (encrypted when backups
/// are); cancelled with the run.
async fn write_stream(
    state: &AppState,
    key: String,
    mut source: impl tokio::io::AsyncRead + Unpin,
    tracker: &Tracker,
) -> Result<(u64, String), BackupError> {
    let (sender, receiver) = tokio::sync::mpsc::channel::<bytes::Bytes>(4);
    let storage = state.backups().storage.clone();
    let encryption = state.backups().encryption.clone();
    let writer = tokio::task::spawn_blocking(move || -> std::io::Result<(u64, String)> {
        let mut file = storage.create(&key, encryption.as_ref())?;
        let mut reader = super::native::ChannelReader::new(receiver);
        std::io::copy(&mut reader, &mut file)?;
        file.commit()
    });
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        if tracker.is_cancelled() {
            drop(sender);
            let _ = writer.await;
            return Err(BackupError::Cancelled);
        }
        let read = tokio::io::AsyncReadExt::read(&mut source, &mut buffer)
            .await
            .map_err(BackupError::tool)?;
        if read == 0 {
            break;
        }
        if sender
            .send(bytes::Bytes::copy_from_slice(&buffer[..read]))
            .await
            .is_err()
        {
            break;
        }
    }
    drop(sender);
    Ok(writer
        .await
        .map_err(|e| BackupError::Storage(e.to_string()))??)
}

/// Salvage's tables in its ClickHouse database, one file per partition.
async fn dump_clickhouse(
    state: &AppState,
    row: &Stored,
    started_at: OffsetDateTime,
    tracker: &Tracker,
) -> Result<Manifest, BackupError> {
    let clock = Instant::now();
    let down = BackupError::clickhouse;
    let client = state.clickhouse.client();
    let database = state.clickhouse.database().to_owned();
    let queued = queued_rows(state).await?;
    let server_version: String = client
        .query("SELECT version()")
        .fetch_one()
        .await
        .map_err(down)?;
    // Salvage's tables only: a restore recreates a table from Salvage's own definition,
    // so anything else in the database (a table set aside by an in-place restore) stays
    // out of the backup.
    let described: Vec<ch::Described> = ch::describe(client, &database)
        .await
        .map_err(down)?
        .into_iter()
        .filter(|table| state.clickhouse.table_def(&table.name).is_some())
        .collect();
    let mut tables = Vec::new();
    let mut files = Vec::new();
    for table in &described {
        let checksum = ch::checksum(client, &database, table).await.map_err(down)?;
        let mut rows = 0u64;
        for partition in ch::partitions(client, &database, table)
            .await
            .map_err(down)?
        {
            if tracker.is_cancelled() {
                return Err(BackupError::Cancelled);
            }
            let relative = ch::file_name(&table.name, partition.as_deref());
            let to = ch::ExportTo {
                storage: &state.backups().storage,
                key: row.key(&relative),
                relative,
                encryption: state.backups().encryption.as_ref(),
            };
            let file = ch::export(client, &database, table, partition.as_deref(), to).await?;
            rows += file.rows.unwrap_or(0);
            files.push(file);
            if state.faults.backup_hang_after_files() == Some(files.len()) {
                std::future::pending::<()>().await;
            }
        }
        tables.push(ch::entry(
            table,
            rows,
            checksum,
            &state.clickhouse.application_tables(),
        ));
    }
    let contents = Contents {
        database,
        server_version,
        tool_version: None,
        tables,
        files,
        queued,
        encrypted: state.backups().encryption.is_some(),
    };
    Ok(manifest_of(row, started_at, clock, contents))
}

/// Retention for `store`: deletes the files of complete backups beyond the newest
/// `keep`, never the newest nor the newest verified one, each deletion a history entry.
/// Waits (does nothing) while a store is frozen.
pub async fn retain(
    state: &AppState,
    store: StoreKind,
    actor: &Actor,
) -> Result<Vec<i64>, AppError> {
    let pg_err = AppError::wrap("Apply backup retention");
    let mut conn = state.pg.acquire().await.map_err(&pg_err)?;
    if freeze::frozen(&mut conn).await.map_err(&pg_err)? {
        return Ok(Vec::new());
    }
    drop(conn);
    let kept = catalogue::kept(&state.pg, store).await.map_err(&pg_err)?;
    let order: Vec<(i64, bool)> = kept
        .iter()
        .map(|b| (b.backup.id, b.backup.status == BackupStatus::Verified))
        .collect();
    let mut deleted = Vec::new();
    for id in catalogue::to_delete(&order, state.backups().policy(store).keep as usize) {
        let Some(backup) = kept.iter().find(|b| b.backup.id == id) else {
            continue;
        };
        let mut tx = state.pg.begin().await.map_err(&pg_err)?;
        if !catalogue::mark_deleted(&mut tx, id, state.clock.now())
            .await
            .map_err(&pg_err)?
        {
            continue;
        }
        let details = BackupDeleted {
            backup_id: id,
            store,
            bytes: backup.backup.size_bytes,
            keep: state.backups().policy(store).keep,
            retention: true,
        };
        let title = format!("Retention deleted {} backup {id}", store.label());
        let entry = NewEntry::new(details, title, actor, Outcome::Succeeded);
        append(&mut tx, &entry).await.map_err(&pg_err)?;
        state
            .backups()
            .storage
            .delete_prefix(&backup.location)
            .await
            .map_err(|e| AppError::internal("Delete a backup's files", e.to_string()))?;
        tx.commit().await.map_err(&pg_err)?;
        deleted.push(id);
    }
    Ok(deleted)
}
