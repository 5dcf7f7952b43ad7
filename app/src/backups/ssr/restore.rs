//! Restores: "restore backup X into target Y and verify it", one function for the
//! console, the CLI and (later) drills.
//!
//! - **Side** (the default): a new database (`salvage_restore_<backup id>` or a given
//!   name, refused when it exists or is the live one) gets the chosen tables; the live
//!   data is not touched. A failure or a cancel drops the new database.
//! - **In place** (admins): application tables only. The store is frozen; the live tables
//!   are kept aside (PostgreSQL: moved to schema `salvage_pre_<restore id>`; ClickHouse:
//!   renamed `<table>__pre_<restore id>`) until a rollback puts them back. ClickHouse
//!   tables are loaded into staging tables first and swapped in only once each matches
//!   the manifest, so a bad file never replaces live data.
//!
//! Every restore ends with a verification of the restored tables (rows and schema
//! checksums against the manifest), recorded on the restore and in the history.

use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::Row;
use tokio_util::sync::CancellationToken;

use super::super::{PlanTable, Restore, RestoreMode, RestorePlan, RestoreStatus, StoreKind};
use super::catalogue::{self, Stored};
use super::manifest::{Manifest, TableEntry};
use super::verify::read_manifest;
use super::{clickhouse as ch, postgres as pg};
use crate::auth::ssr::actor::Actor;
use crate::error::AppError;
use crate::freeze::ssr as freeze;
use crate::history::ssr::{append, NewEntry};
use crate::history::Outcome;
use crate::server::{unix_ms, AppState};

/// What to restore, and where.
#[derive(Clone, Debug, Default)]
pub struct RestoreRequest {
    pub backup_id: i64,
    pub in_place: bool,
    /// The side database's name; `None`: `salvage_restore_<backup id>`.
    pub target: Option<String>,
    /// Tables to restore; empty: all (side) or every application table (in place).
    pub tables: Vec<String>,
    /// In place: the live database's name, typed to confirm.
    pub confirm: Option<String>,
    pub reason: Option<String>,
    /// `manual`, `cli`, `drill`.
    pub trigger: String,
}

/// One restored table checked against the manifest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TableCheck {
    pub name: String,
    pub expected_rows: i64,
    pub rows: i64,
    pub schema_matches: bool,
}

impl TableCheck {
    pub fn ok(&self) -> bool {
        self.rows == self.expected_rows && self.schema_matches
    }
}

/// What a restore did: the typed outcome every door reads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreReport {
    pub restore_id: i64,
    pub backup_id: i64,
    pub store: StoreKind,
    pub mode: RestoreMode,
    pub target: String,
    pub status: RestoreStatus,
    pub tables: Vec<TableCheck>,
    pub rows: i64,
    pub bytes: i64,
    pub duration_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub history_id: i64,
}

/// A validated restore, recorded as `running`: what [`execute`] works from.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub restore_id: i64,
    pub backup: Stored,
    pub manifest: Manifest,
    pub mode: RestoreMode,
    pub target: String,
    pub tables: Vec<TableEntry>,
    pub reason: Option<String>,
}

/// A database name Salvage creates: lower-case letters, digits and `_`, 63 at most.
pub fn valid_database_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

fn live_database(state: &AppState, store: StoreKind) -> String {
    match store {
        StoreKind::Postgres => pg::database_name(&state.backups.database_url),
        StoreKind::Clickhouse => state.clickhouse.database().to_owned(),
    }
}

async fn load_complete(state: &AppState, id: i64) -> Result<Stored, AppError> {
    let stored = catalogue::load(&state.pg, id)
        .await
        .map_err(AppError::wrap("Load a backup"))?
        .ok_or_else(|| AppError::NotFound {
            what: format!("Backup {id}"),
        })?;
    if !stored.backup.status.is_complete() || stored.backup.deleted {
        return Err(AppError::invalid(
            "backup",
            format!(
                "backup {id} is {}{}; choose a complete one",
                stored.backup.status.label(),
                if stored.backup.deleted {
                    " and its files were deleted by retention"
                } else {
                    ""
                }
            ),
        ));
    }
    Ok(stored)
}

/// What restoring backup `id` would do, for the confirmation form.
pub async fn plan(state: &AppState, id: i64) -> Result<RestorePlan, AppError> {
    let stored = load_complete(state, id).await?;
    let manifest = read_manifest(state, &stored)
        .await
        .map_err(|e| AppError::invalid("backup", e))?;
    Ok(RestorePlan {
        live_database: live_database(state, stored.backup.store),
        side_database: format!("salvage_restore_{id}"),
        tables: manifest
            .tables
            .iter()
            .map(|t| PlanTable {
                name: t.name.clone(),
                rows: t.rows,
                own: t.own,
            })
            .collect(),
        backup: stored.backup,
    })
}

async fn database_exists(state: &AppState, store: StoreKind, name: &str) -> Result<bool, AppError> {
    match store {
        StoreKind::Postgres => {
            sqlx::query_scalar("select exists (select 1 from pg_database where datname = $1)")
                .bind(name)
                .fetch_one(&state.pg)
                .await
                .map_err(AppError::wrap("Look up a database"))
        }
        StoreKind::Clickhouse => state
            .clickhouse
            .client()
            .query("SELECT count() FROM system.databases WHERE name = ?")
            .bind(name)
            .fetch_one::<u64>()
            .await
            .map(|n| n > 0)
            .map_err(AppError::wrap("Look up a database")),
    }
}

/// Checks `request` and records the restore as `running`. Every refusal here is a 4xx
/// naming the field, and nothing has been written.
pub async fn prepare(
    state: &AppState,
    request: &RestoreRequest,
    actor: &Actor,
) -> Result<Prepared, AppError> {
    let stored = load_complete(state, request.backup_id).await?;
    let store = stored.backup.store;
    let manifest = read_manifest(state, &stored)
        .await
        .map_err(|e| AppError::invalid("backup", e))?;
    let live = live_database(state, store);
    for name in &request.tables {
        if manifest.table(name).is_none() {
            return Err(AppError::invalid(
                "tables",
                format!("backup {} holds no table `{name}`", stored.backup.id),
            ));
        }
    }
    let chosen =
        |entry: &&TableEntry| request.tables.is_empty() || request.tables.contains(&entry.name);
    let (mode, target, tables) = if request.in_place {
        if request.confirm.as_deref().map(str::trim) != Some(live.as_str()) {
            return Err(AppError::invalid(
                "confirm",
                format!("type the live database's name, {live}, to restore into it"),
            ));
        }
        if let Some(own) = manifest
            .tables
            .iter()
            .filter(chosen)
            .find(|t| t.own && !request.tables.is_empty())
        {
            return Err(AppError::invalid(
                "tables",
                format!(
                    "{} is one of Salvage's own tables: an in-place restore never rolls it back; restore it into a side database to look at it",
                    own.name
                ),
            ));
        }
        let tables: Vec<TableEntry> = manifest
            .tables
            .iter()
            .filter(chosen)
            .filter(|t| !t.own)
            .cloned()
            .collect();
        (RestoreMode::InPlace, live.clone(), tables)
    } else {
        let target = request
            .target
            .clone()
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| format!("salvage_restore_{}", stored.backup.id));
        if !valid_database_name(&target) {
            return Err(AppError::invalid(
                "target",
                "use lower-case letters, digits and _ (63 at most, not starting with a digit)",
            ));
        }
        if target == live {
            return Err(AppError::invalid(
                "target",
                format!("{target} is the live database; restore in place to replace it"),
            ));
        }
        if database_exists(state, store, &target).await? {
            return Err(AppError::invalid(
                "target",
                format!("a database named {target} already exists; drop it or give another name"),
            ));
        }
        let tables: Vec<TableEntry> = manifest.tables.iter().filter(chosen).cloned().collect();
        (RestoreMode::Side, target, tables)
    };
    if tables.is_empty() {
        return Err(AppError::invalid("tables", "there is no table to restore"));
    }
    let names: Vec<String> = tables.iter().map(|t| t.name.clone()).collect();
    let total: i64 = manifest
        .files
        .iter()
        .filter(|f| f.table.as_ref().is_none_or(|t| names.contains(t)))
        .map(|f| f.size as i64)
        .sum();
    let restore_id: i64 = sqlx::query_scalar(
        "insert into restores (backup_id, store, mode, target, tables, actor, actor_user_id, reason,
                               started_at, total_bytes)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) returning id",
    )
    .bind(stored.backup.id)
    .bind(store.as_str())
    .bind(mode.as_str())
    .bind(&target)
    .bind(&names)
    .bind(&actor.name)
    .bind(actor.user_id)
    .bind(&request.reason)
    .bind(state.clock.now())
    .bind(total)
    .fetch_one(&state.pg)
    .await
    .map_err(AppError::wrap("Record a restore"))?;
    Ok(Prepared {
        restore_id,
        backup: stored,
        manifest,
        mode,
        target,
        tables,
        reason: request.reason.clone(),
    })
}

/// Prepares and runs a restore, waiting for it (the CLI, drills, tests).
pub async fn restore(
    state: &AppState,
    request: &RestoreRequest,
    actor: &Actor,
) -> Result<RestoreReport, AppError> {
    let prepared = prepare(state, request, actor).await?;
    execute(state, prepared, actor, state.shutdown.child_token()).await
}

/// Progress and cancellation of a running restore, through its `restores` row (so a
/// Cancel pressed on any replica reaches it).
struct Watch<'a> {
    state: &'a AppState,
    id: i64,
    cancel: CancellationToken,
}

impl Watch<'_> {
    async fn step(&self, bytes_done: i64) -> Result<(), String> {
        let asked: bool = sqlx::query_scalar(
            "update restores set progress_bytes = $2 where id = $1 returning cancel_requested",
        )
        .bind(self.id)
        .bind(bytes_done)
        .fetch_one(&self.state.pg)
        .await
        .map_err(|e| format!("PostgreSQL: {e}"))?;
        if asked || self.cancel.is_cancelled() {
            return Err(CANCELLED.to_owned());
        }
        Ok(())
    }
}

const CANCELLED: &str = "cancelled";

/// Runs a prepared restore to its end and records it. `Err` only when the record
/// itself cannot be written; a restore that fails is a report with its error.
pub async fn execute(
    state: &AppState,
    prepared: Prepared,
    actor: &Actor,
    cancel: CancellationToken,
) -> Result<RestoreReport, AppError> {
    let started = state.clock.now();
    let clock = Instant::now();
    let watch = Watch {
        state,
        id: prepared.restore_id,
        cancel,
    };
    let store = prepared.backup.backup.store;
    let result = match (store, prepared.mode) {
        (StoreKind::Postgres, RestoreMode::Side) => postgres_side(state, &prepared, &watch).await,
        (StoreKind::Clickhouse, RestoreMode::Side) => {
            clickhouse_side(state, &prepared, &watch).await
        }
        (_, RestoreMode::InPlace) => in_place(state, &prepared, actor, &watch).await,
    };
    let duration_ms = clock.elapsed().as_millis() as i64;
    let (status, checks, error, aside) = match result {
        Ok((checks, aside)) if checks.iter().all(TableCheck::ok) => {
            (RestoreStatus::Verified, checks, None, aside)
        }
        Ok((checks, aside)) => {
            let wrong: Vec<String> = checks
                .iter()
                .filter(|c| !c.ok())
                .map(|c| {
                    format!(
                        "{}: {} rows (manifest {}){}",
                        c.name,
                        c.rows,
                        c.expected_rows,
                        if c.schema_matches {
                            ""
                        } else {
                            ", schema differs"
                        }
                    )
                })
                .collect();
            (
                RestoreStatus::VerifyFailed,
                checks,
                Some(wrong.join("; ")),
                aside,
            )
        }
        Err(error) if error == CANCELLED => (
            RestoreStatus::Cancelled,
            Vec::new(),
            Some("cancelled".to_owned()),
            None,
        ),
        Err(error) => (RestoreStatus::Failed, Vec::new(), Some(error), None),
    };
    let rows: i64 = checks.iter().map(|c| c.rows).sum();
    let bytes: i64 = sqlx::query_scalar("select total_bytes from restores where id = $1")
        .bind(prepared.restore_id)
        .fetch_one(&state.pg)
        .await
        .unwrap_or(0);
    let now = state.clock.now();
    let pg_err = AppError::wrap("Record a restore");
    let mut tx = state.pg.begin().await.map_err(&pg_err)?;
    sqlx::query(
        "update restores set status = $2, finished_at = $3, duration_ms = $4, row_count = $5,
             size_bytes = $6, verification = $7, error = $8, aside = $9
         where id = $1",
    )
    .bind(prepared.restore_id)
    .bind(status.as_str())
    .bind(now)
    .bind(duration_ms)
    .bind(rows)
    .bind(bytes)
    .bind(serde_json::to_value(&checks).unwrap_or_default())
    .bind(&error)
    .bind(&aside)
    .execute(&mut *tx)
    .await
    .map_err(&pg_err)?;
    let where_to = match prepared.mode {
        RestoreMode::Side => format!("into {}", prepared.target),
        RestoreMode::InPlace => format!("in place into {}", prepared.target),
    };
    let title = format!(
        "Restore {} of {} backup {} {where_to}: {}",
        prepared.restore_id,
        store.label(),
        prepared.backup.backup.id,
        status.label()
    );
    let outcome = match status {
        RestoreStatus::Verified => Outcome::Succeeded,
        RestoreStatus::Cancelled => Outcome::Partial,
        _ => Outcome::Failed,
    };
    let entry = NewEntry::new("restore", title, actor, outcome)
        .with_reason(prepared.reason.clone())
        .with_times(started, Some(now))
        .with_body(error.clone().unwrap_or_default())
        .with_details(json!({
            "restoreId": prepared.restore_id, "backupId": prepared.backup.backup.id,
            "store": store.as_str(), "mode": prepared.mode.as_str(), "target": prepared.target,
            "tables": checks, "rows": rows, "bytes": bytes, "durationMs": duration_ms,
            "aside": aside,
        }));
    let history_id = append(&mut tx, &entry).await.map_err(&pg_err)?;
    tx.commit().await.map_err(&pg_err)?;
    Ok(RestoreReport {
        restore_id: prepared.restore_id,
        backup_id: prepared.backup.backup.id,
        store,
        mode: prepared.mode,
        target: prepared.target,
        status,
        tables: checks,
        rows,
        bytes,
        duration_ms,
        error,
        history_id,
    })
}

type Restored = Result<(Vec<TableCheck>, Option<String>), String>;

/// A local copy of the backup's dump (the file itself for a directory target).
async fn dump_copy(
    state: &AppState,
    prepared: &Prepared,
) -> Result<super::storage::LocalCopy, String> {
    let file = prepared
        .manifest
        .files
        .first()
        .ok_or_else(|| "the manifest lists no dump".to_owned())?;
    state
        .backups
        .storage
        .local_copy(&prepared.backup.key(&file.path))
        .await
        .map_err(|e| format!("{}: {e}", file.path))
}

/// Checks the dump's size and SHA-256 before `pg_restore` reads it.
async fn check_dump(state: &AppState, prepared: &Prepared) -> Result<(), String> {
    let file = prepared
        .manifest
        .files
        .first()
        .cloned()
        .ok_or("the manifest lists no dump")?;
    let key = prepared.backup.key(&file.path);
    let storage = state.backups.storage.clone();
    let (size, sha256) = tokio::task::spawn_blocking(move || {
        super::native::HashingReader::new(storage.open(&key)?).finish()
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("{}: {e}", file.path))?;
    if size != file.size {
        return Err(format!(
            "{}: {size} bytes, the manifest says {}",
            file.path, file.size
        ));
    }
    if sha256 != file.sha256 {
        return Err(format!(
            "{}: its SHA-256 differs from the manifest's",
            file.path
        ));
    }
    Ok(())
}

/// A `pg_restore` list file for `tables`, written beside the target's temporary files.
async fn list_file(
    state: &AppState,
    prepared: &Prepared,
    dump: &std::path::Path,
) -> Result<tempfile_path::TempPath, String> {
    let tables: Vec<&TableEntry> = prepared.tables.iter().collect();
    let toc = pg::toc_for(&state.backups, dump, &tables).await?;
    tempfile_path::TempPath::write(&toc).map_err(|e| e.to_string())
}

/// A temporary file deleted on drop.
mod tempfile_path {
    pub struct TempPath(std::path::PathBuf);
    impl TempPath {
        pub fn write(contents: &str) -> std::io::Result<Self> {
            let path =
                std::env::temp_dir().join(format!("salvage-restore-{}.list", uuid::Uuid::new_v4()));
            std::fs::write(&path, contents)?;
            Ok(Self(path))
        }
        pub fn as_str(&self) -> String {
            self.0.display().to_string()
        }
    }
    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

async fn postgres_side(state: &AppState, prepared: &Prepared, watch: &Watch<'_>) -> Restored {
    check_dump(state, prepared).await?;
    let copy = dump_copy(state, prepared).await?;
    let dump = copy.path().to_path_buf();
    let url = pg::working_url(&state.backups);
    let mut admin = pg::connect(url, None)
        .await
        .map_err(|e| format!("PostgreSQL: {e}"))?;
    sqlx::query(&format!("create database {}", pg::quote(&prepared.target)))
        .execute(&mut admin)
        .await
        .map_err(|e| format!("PostgreSQL: {e}"))?;
    let result = async {
        watch.step(0).await?;
        let all = prepared.tables.len() == prepared.manifest.tables.len();
        let list = if all {
            None
        } else {
            Some(list_file(state, prepared, &dump).await?)
        };
        let mut args = vec!["--no-privileges".to_owned()];
        if let Some(list) = &list {
            args.push(format!("--use-list={}", list.as_str()));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        pg::run_restore(&state.backups, &prepared.target, &dump, &args).await?;
        let total: i64 = prepared.manifest.total_bytes();
        watch.step(total).await?;
        check_postgres(url, Some(&prepared.target), &prepared.tables).await
    }
    .await;
    if result.is_err() {
        let _ = sqlx::query(&format!(
            "drop database if exists {} with (force)",
            pg::quote(&prepared.target)
        ))
        .execute(&mut admin)
        .await;
    }
    result.map(|checks| (checks, None))
}

/// Rows and schema checksums of `tables` in `database` against the manifest.
async fn check_postgres(
    url: &secrecy::SecretString,
    database: Option<&str>,
    tables: &[TableEntry],
) -> Result<Vec<TableCheck>, String> {
    let mut conn = pg::connect(url, database)
        .await
        .map_err(|e| format!("PostgreSQL: {e}"))?;
    let found = pg::tables(&mut conn)
        .await
        .map_err(|e| format!("PostgreSQL: {e}"))?;
    Ok(tables
        .iter()
        .map(|expected| {
            let actual = found.iter().find(|t| t.name == expected.name);
            TableCheck {
                name: expected.name.clone(),
                expected_rows: expected.rows,
                rows: actual.map(|t| t.rows).unwrap_or(0),
                schema_matches: actual
                    .is_some_and(|t| t.schema_checksum == expected.schema_checksum),
            }
        })
        .collect())
}

/// Where a ClickHouse table is loaded.
struct Destination<'a> {
    client: &'a clickhouse::Client,
    database: &'a str,
    table: &'a str,
}

/// Loads every file of `table` into `to` (created from the manifest's statement);
/// `done` counts the bytes read.
async fn load_table(
    state: &AppState,
    prepared: &Prepared,
    table: &TableEntry,
    to: Destination<'_>,
    watch: &Watch<'_>,
    done: &mut i64,
) -> Result<(), String> {
    let Destination {
        client,
        database,
        table: target_table,
    } = to;
    let create = table
        .create
        .as_deref()
        .ok_or("the manifest has no CREATE statement")?;
    client
        .query(&ch::retarget(create, database, target_table)?)
        .execute()
        .await
        .map_err(|e| format!("ClickHouse: {e}"))?;
    for file in prepared
        .manifest
        .files
        .iter()
        .filter(|f| f.table.as_deref() == Some(&table.name))
    {
        watch.step(*done).await?;
        ch::import(
            client,
            database,
            target_table,
            &state.backups.storage,
            prepared.backup.key(&file.path),
            file.clone(),
        )
        .await?;
        *done += file.size as i64;
    }
    Ok(())
}

async fn check_clickhouse(
    client: &clickhouse::Client,
    database: &str,
    tables: &[(TableEntry, String)],
) -> Result<Vec<TableCheck>, String> {
    let described = ch::describe(client, database)
        .await
        .map_err(|e| format!("ClickHouse: {e}"))?;
    let mut checks = Vec::new();
    for (expected, name) in tables {
        let Some(actual) = described.iter().find(|t| &t.name == name) else {
            checks.push(TableCheck {
                name: expected.name.clone(),
                expected_rows: expected.rows,
                rows: 0,
                schema_matches: false,
            });
            continue;
        };
        let rows = ch::count(client, database, name)
            .await
            .map_err(|e| format!("ClickHouse: {e}"))?;
        let checksum = ch::checksum(client, database, actual)
            .await
            .map_err(|e| format!("ClickHouse: {e}"))?;
        checks.push(TableCheck {
            name: expected.name.clone(),
            expected_rows: expected.rows,
            rows: rows as i64,
            schema_matches: checksum == expected.schema_checksum,
        });
    }
    Ok(checks)
}

async fn clickhouse_side(state: &AppState, prepared: &Prepared, watch: &Watch<'_>) -> Restored {
    let client = state.clickhouse.client();
    let database = prepared.target.as_str();
    client
        .query(&format!("CREATE DATABASE `{database}`"))
        .execute()
        .await
        .map_err(|e| format!("ClickHouse: {e}"))?;
    let result = async {
        let mut done = 0;
        for table in &prepared.tables {
            let to = Destination {
                client,
                database,
                table: &table.name,
            };
            load_table(state, prepared, table, to, watch, &mut done).await?;
        }
        let pairs: Vec<(TableEntry, String)> = prepared
            .tables
            .iter()
            .map(|t| (t.clone(), t.name.clone()))
            .collect();
        check_clickhouse(client, database, &pairs).await
    }
    .await;
    if result.is_err() {
        let _ = client
            .query(&format!("DROP DATABASE IF EXISTS `{database}`"))
            .execute()
            .await;
    }
    result.map(|checks| (checks, None))
}

/// In place: under a freeze of the store, with the live tables kept aside.
async fn in_place(
    state: &AppState,
    prepared: &Prepared,
    actor: &Actor,
    watch: &Watch<'_>,
) -> Restored {
    let store = prepared.backup.backup.store;
    let Some(lock) =
        crate::server::postgres::try_exclusive(&state.pg, super::lock_class::RESTORE, 0)
            .await
            .map_err(|e| format!("PostgreSQL: {e}"))?
    else {
        return Err("another restore or rollback is running".to_owned());
    };
    let reason = format!(
        "Restore {} of {} backup {} in place",
        prepared.restore_id,
        store.label(),
        prepared.backup.backup.id
    );
    let freeze_id = freeze::open(&state.pg, store, &reason, prepared.restore_id, &actor.name)
        .await
        .map_err(|e| e.to_string())?;
    let result = match store {
        StoreKind::Postgres => postgres_in_place(state, prepared, watch).await,
        StoreKind::Clickhouse => clickhouse_in_place(state, prepared, watch).await,
    };
    let closed = freeze::close(&state.pg, freeze_id).await;
    if store == StoreKind::Clickhouse && result.is_ok() {
        // Rows parked during the freeze go to the restored tables now.
        if let Some(job) = crate::jobs::ssr::find(state.jobs, "replay-fallback") {
            let firing = crate::jobs::ssr::Firing::by_hand(
                crate::jobs::Trigger::Manual,
                actor.clone(),
                Some(format!(
                    "Replay the rows parked during restore {}",
                    prepared.restore_id
                )),
                crate::jobs::ssr::Caller::default(),
            );
            let _ = crate::jobs::ssr::run_in_background(state, job, firing).await;
        }
    }
    lock.release().await;
    closed.map_err(|e| format!("PostgreSQL: {e}"))?;
    result
}

fn aside_schema(restore_id: i64) -> String {
    format!("salvage_pre_{restore_id}")
}

async fn postgres_in_place(state: &AppState, prepared: &Prepared, watch: &Watch<'_>) -> Restored {
    check_dump(state, prepared).await?;
    let copy = dump_copy(state, prepared).await?;
    let dump = copy.path().to_path_buf();
    let list = list_file(state, prepared, &dump).await?;
    let url = pg::working_url(&state.backups);
    let live = pg::database_name(&state.backups.database_url);
    let aside = aside_schema(prepared.restore_id);
    let names: Vec<String> = prepared.tables.iter().map(|t| t.name.clone()).collect();
    let pg_err = |e: sqlx::Error| format!("PostgreSQL: {e}");
    let mut conn = pg::connect(url, None).await.map_err(pg_err)?;
    watch.step(0).await?;
    // Keep the live tables aside, in one transaction.
    let mut tx = sqlx::Connection::begin(&mut conn).await.map_err(pg_err)?;
    sqlx::query(&format!("create schema {}", pg::quote(&aside)))
        .execute(&mut *tx)
        .await
        .map_err(pg_err)?;
    let present: Vec<String> = sqlx::query_scalar(
        "select tablename::text from pg_tables where schemaname = 'public' and tablename = any($1)",
    )
    .bind(&names)
    .fetch_all(&mut *tx)
    .await
    .map_err(pg_err)?;
    for table in &present {
        sqlx::query(&format!(
            "alter table public.{} set schema {}",
            pg::quote(table),
            pg::quote(&aside)
        ))
        .execute(&mut *tx)
        .await
        .map_err(pg_err)?;
    }
    tx.commit().await.map_err(pg_err)?;
    let restored = pg::run_restore(
        &state.backups,
        &live,
        &dump,
        &[
            "--no-privileges",
            "--single-transaction",
            &format!("--use-list={}", list.as_str()),
        ],
    )
    .await;
    if let Err(error) = restored {
        // Nothing was restored (one transaction): put the live tables back.
        move_back(&mut conn, &aside, &present, false)
            .await
            .map_err(pg_err)?;
        return Err(error);
    }
    if let Some(owner) = &state.schema_owner {
        crate::server::postgres::grant_application_role(&owner.pool, &owner.app_role)
            .await
            .map_err(pg_err)?;
    }
    watch.step(prepared.manifest.total_bytes()).await.ok();
    let checks = check_postgres(url, None, &prepared.tables).await?;
    Ok((checks, Some(aside)))
}

/// Moves `tables` from schema `aside` back to `public` (dropping the restored ones first
/// when `drop_restored`), then drops `aside`.
async fn move_back(
    conn: &mut sqlx::PgConnection,
    aside: &str,
    tables: &[String],
    drop_restored: bool,
) -> Result<(), sqlx::Error> {
    let mut tx = sqlx::Connection::begin(conn).await?;
    if drop_restored {
        for table in tables {
            sqlx::query(&format!(
                "drop table if exists public.{} cascade",
                pg::quote(table)
            ))
            .execute(&mut *tx)
            .await?;
        }
    }
    let kept: Vec<String> =
        sqlx::query_scalar("select tablename::text from pg_tables where schemaname = $1")
            .bind(aside)
            .fetch_all(&mut *tx)
            .await?;
    for table in &kept {
        sqlx::query(&format!(
            "alter table {}.{} set schema public",
            pg::quote(aside),
            pg::quote(table)
        ))
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query(&format!(
        "drop schema if exists {} cascade",
        pg::quote(aside)
    ))
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

fn staging(table: &str, restore_id: i64) -> String {
    format!("{table}__restore_{restore_id}")
}

fn aside_table(table: &str, restore_id: i64) -> String {
    format!("{table}__pre_{restore_id}")
}

async fn clickhouse_in_place(state: &AppState, prepared: &Prepared, watch: &Watch<'_>) -> Restored {
    // Ingest writes to ClickHouse within its timeout of reading "not frozen": wait that
    // long, so no row lands in a table about to be set aside.
    tokio::time::sleep(state.queues.ingest_timeout + std::time::Duration::from_millis(500)).await;
    let client = state.clickhouse.client();
    let database = state.clickhouse.database().to_owned();
    let id = prepared.restore_id;
    let mut done = 0;
    let mut pairs = Vec::new();
    let loaded = async {
        for table in &prepared.tables {
            let name = staging(&table.name, id);
            let to = Destination {
                client,
                database: &database,
                table: &name,
            };
            load_table(state, prepared, table, to, watch, &mut done).await?;
            pairs.push((table.clone(), name));
        }
        check_clickhouse(client, &database, &pairs).await
    }
    .await;
    let drop_staging = || async {
        for table in &prepared.tables {
            let _ = client
                .query(&format!(
                    "DROP TABLE IF EXISTS `{database}`.`{}`",
                    staging(&table.name, id)
                ))
                .execute()
                .await;
        }
    };
    let checks = match loaded {
        Ok(checks) if checks.iter().all(TableCheck::ok) => checks,
        Ok(checks) => {
            drop_staging().await;
            return Ok((checks, None));
        }
        Err(error) => {
            drop_staging().await;
            return Err(error);
        }
    };
    // Swap: the live table aside, the staging table in its place, in one RENAME.
    let described = ch::describe(client, &database)
        .await
        .map_err(|e| format!("ClickHouse: {e}"))?;
    let mut renames = Vec::new();
    for table in &prepared.tables {
        if described.iter().any(|d| d.name == table.name) {
            renames.push(format!(
                "`{database}`.`{0}` TO `{database}`.`{1}`",
                table.name,
                aside_table(&table.name, id)
            ));
        }
        renames.push(format!(
            "`{database}`.`{0}` TO `{database}`.`{1}`",
            staging(&table.name, id),
            table.name
        ));
    }
    client
        .query(&format!("RENAME TABLE {}", renames.join(", ")))
        .execute()
        .await
        .map_err(|e| format!("ClickHouse: {e}"))?;
    Ok((checks, Some(format!("__pre_{id}"))))
}

/// Rolls back in-place restore `id`: the live tables kept aside go back in place (the
/// restored ones are kept aside in turn, as `<table>__rolled_back_<id>` in ClickHouse or
/// dropped in PostgreSQL). Admins only; a history entry.
pub async fn roll_back(
    state: &AppState,
    id: i64,
    actor: &Actor,
    reason: Option<String>,
) -> Result<Restore, AppError> {
    let pg_err = AppError::wrap("Roll back a restore");
    let restore = load(state, id).await?.ok_or_else(|| AppError::NotFound {
        what: format!("Restore {id}"),
    })?;
    if !restore.can_roll_back {
        return Err(AppError::Conflict {
            message: format!(
                "Restore {id} cannot be rolled back: it is {} and kept no live tables aside.",
                restore.status.label()
            ),
        });
    }
    let Some(lock) =
        crate::server::postgres::try_exclusive(&state.pg, super::lock_class::RESTORE, 0)
            .await
            .map_err(&pg_err)?
    else {
        return Err(AppError::Conflict {
            message: "Another restore or rollback is running; try again when it ends.".to_owned(),
        });
    };
    let started = state.clock.now();
    let freeze_id = freeze::open(
        &state.pg,
        restore.store,
        &format!("Roll back restore {id}"),
        id,
        &actor.name,
    )
    .await?;
    let result: Result<(), String> = match restore.store {
        StoreKind::Postgres => {
            let url = pg::working_url(&state.backups);
            match pg::connect(url, None).await {
                Ok(mut conn) => move_back(&mut conn, &aside_schema(id), &restore.tables, true)
                    .await
                    .map_err(|e| format!("PostgreSQL: {e}")),
                Err(e) => Err(format!("PostgreSQL: {e}")),
            }
        }
        StoreKind::Clickhouse => {
            tokio::time::sleep(state.queues.ingest_timeout + std::time::Duration::from_millis(500))
                .await;
            let database = state.clickhouse.database().to_owned();
            let renames: Vec<String> = restore
                .tables
                .iter()
                .flat_map(|t| {
                    [
                        format!("`{database}`.`{t}` TO `{database}`.`{t}__rolled_back_{id}`"),
                        format!(
                            "`{database}`.`{}` TO `{database}`.`{t}`",
                            aside_table(t, id)
                        ),
                    ]
                })
                .collect();
            state
                .clickhouse
                .client()
                .query(&format!("RENAME TABLE {}", renames.join(", ")))
                .execute()
                .await
                .map_err(|e| format!("ClickHouse: {e}"))
        }
    };
    lock.release().await;
    freeze::close(&state.pg, freeze_id).await.map_err(&pg_err)?;
    if let Err(error) = result {
        return Err(AppError::internal("Roll back a restore", error));
    }
    let mut tx = state.pg.begin().await.map_err(&pg_err)?;
    sqlx::query("update restores set status = 'rolled_back', aside = null where id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(&pg_err)?;
    let entry = NewEntry::new(
        "restore",
        format!("Rolled back restore {id}: {} is back to its pre-restore tables", restore.target),
        actor,
        Outcome::Succeeded,
    )
    .with_reason(reason)
    .with_times(started, Some(state.clock.now()))
    .with_details(json!({"restoreId": id, "store": restore.store.as_str(), "tables": restore.tables, "rollback": true}));
    append(&mut tx, &entry).await.map_err(&pg_err)?;
    tx.commit().await.map_err(&pg_err)?;
    load(state, id).await?.ok_or_else(|| AppError::NotFound {
        what: format!("Restore {id}"),
    })
}

/// Asks running restore `id` to stop (it does after its current file, and drops what it
/// made). `false` when it is not running.
pub async fn request_cancel(state: &AppState, id: i64) -> Result<bool, AppError> {
    let done = sqlx::query(
        "update restores set cancel_requested = true where id = $1 and status = 'running'",
    )
    .bind(id)
    .execute(&state.pg)
    .await
    .map_err(AppError::wrap("Cancel a restore"))?;
    Ok(done.rows_affected() == 1)
}

const RESTORE_COLUMNS: &str = "id, backup_id, store, mode, target, tables, status, actor, reason,
    started_at, finished_at, duration_ms, row_count, error, aside, progress_bytes, total_bytes";

fn restore_of(row: &sqlx::postgres::PgRow) -> Restore {
    let status = RestoreStatus::parse(row.get("status")).unwrap_or(RestoreStatus::Failed);
    let aside: Option<String> = row.get("aside");
    Restore {
        id: row.get("id"),
        backup_id: row.get("backup_id"),
        store: StoreKind::parse(row.get("store")).unwrap_or(StoreKind::Postgres),
        mode: RestoreMode::parse(row.get("mode")).unwrap_or(RestoreMode::Side),
        target: row.get("target"),
        tables: row.get("tables"),
        status,
        actor: row.get("actor"),
        reason: row.get("reason"),
        started_ms: unix_ms(row.get("started_at")),
        finished_ms: row
            .get::<Option<time::OffsetDateTime>, _>("finished_at")
            .map(unix_ms),
        duration_ms: row.get("duration_ms"),
        rows: row.get("row_count"),
        error: row.get("error"),
        can_roll_back: aside.is_some()
            && matches!(
                status,
                RestoreStatus::Verified | RestoreStatus::VerifyFailed
            ),
        progress_bytes: row.get("progress_bytes"),
        total_bytes: row.get("total_bytes"),
    }
}

/// Restore `id`.
pub async fn load(state: &AppState, id: i64) -> Result<Option<Restore>, AppError> {
    let row = sqlx::query(&format!(
        "select {RESTORE_COLUMNS} from restores where id = $1"
    ))
    .bind(id)
    .fetch_optional(&state.pg)
    .await
    .map_err(AppError::wrap("Load a restore"))?;
    Ok(row.as_ref().map(restore_of))
}

/// The newest `limit` restores.
pub async fn list(state: &AppState, limit: i64) -> Result<Vec<Restore>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "select {RESTORE_COLUMNS} from restores order by started_at desc, id desc limit $1"
    ))
    .bind(limit)
    .fetch_all(&state.pg)
    .await?;
    Ok(rows.iter().map(restore_of).collect())
}

#[cfg(test)]
mod tests {
    use super::valid_database_name;

    #[test]
    fn side_database_names_are_plain() {
        assert!(valid_database_name("salvage_restore_12"));
        for bad in [
            "",
            "Salvage",
            "a-b",
            "a b",
            "1abc",
            "x;drop",
            &"a".repeat(64),
        ] {
            assert!(!valid_database_name(bad), "{bad}");
        }
    }
}
