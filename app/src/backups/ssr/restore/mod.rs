//! Restores: "restore backup X into target Y and verify it", one job ([`RESTORE`], on
//! demand: its input is a [`RestoreRequest`]) run by the job runner for every door —
//! the console's form (`backups/restore`), `salvage backup restore`, tests — so a
//! restore has a run record, a heartbeat, progress in bytes, and Cancel (`jobs/cancel`)
//! like every other long action. A drill restores inside its own run with [`execute`].
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
use sqlx::Row;

use super::super::{PlanTable, Restore, RestoreMode, RestorePlan, RestoreStatus, StoreKind};
use super::catalogue::{self, Stored};
use super::manifest::{Manifest, TableEntry};
use super::verify::read_manifest;
use super::BackupError;
use super::{clickhouse as ch, postgres as pg};
use crate::auth::ssr::Actor;
use crate::error::AppError;
use crate::freeze::ssr as freeze;
use crate::history::ssr::{append, NewEntry};
use crate::history::Outcome;
use crate::jobs::ssr::Tracker;
use crate::server::{unix_ms, AppState};

crate::history::ssr::details! {
    /// A restore as it ended: what went where, each table checked, each phase timed.
    struct RestoreEnded for Restore {
        restore_id: i64,
        backup_id: i64,
        store: StoreKind,
        mode: RestoreMode,
        target: String,
        tables: Vec<TableCheck>,
        rows: i64,
        bytes: i64,
        duration_ms: i64,
        phases: Vec<PhaseTime>,
        /// Where an in-place restore kept the live tables, until rolled back or dropped.
        aside: Option<String>,
    }

    /// An in-place restore rolled back: the tables kept aside are live again.
    struct RestoreRolledBack for Restore {
        restore_id: i64,
        store: StoreKind,
        tables: Vec<String>,
        rollback: bool,
    }
}

/// What to restore, and where: the restore job's input.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreRequest {
    pub backup_id: i64,
    pub in_place: bool,
    /// The side database's name; `None`: `salvage_restore_<backup id>`.
    pub target: Option<String>,
    /// Tables to restore; empty: all (side) or every application table (in place).
    pub tables: Vec<String>,
    /// In place: the live database's name, typed to confirm.
    pub confirm: Option<String>,
    /// In place during an incident freeze: the admin confirms the incident.
    pub confirm_incident: bool,
    pub reason: Option<crate::reason::Reason>,
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
    /// How long each step took, in order (a drill reports them as its steps).
    pub phases: Vec<PhaseTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub history_id: i64,
}

/// A step of a restore. ClickHouse files are read from the target as they load, so a
/// ClickHouse restore has no separate fetch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The files checked against the manifest and copied where the tool reads them.
    Fetch,
    /// The data loaded into the target.
    Restore,
    /// Every restored table's rows and schema checked against the manifest.
    Verify,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Fetch => "fetch",
            Phase::Restore => "restore",
            Phase::Verify => "verify",
        }
    }
}

/// How long one step took.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PhaseTime {
    pub phase: Phase,
    pub ms: i64,
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
    pub reason: Option<crate::reason::Reason>,
    /// Bytes of the backup's files the chosen tables need (the progress's total).
    pub total_bytes: i64,
    /// A recovery's restore ([`prepare_recovery`]).
    pub recovery: bool,
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
        StoreKind::Postgres => pg::database_name(&state.backups().database_url),
        StoreKind::Clickhouse => state.clickhouse.database().to_owned(),
    }
}

async fn load_complete(state: &AppState, id: i64) -> Result<Stored, AppError> {
    catalogue::load_complete(&state.pg, id)
        .await?
        .map_err(|why| AppError::invalid("backup", format!("{why}; choose a complete one")))
}

/// What restoring backup `id` would do, for the confirmation form.
pub async fn plan(state: &AppState, id: i64) -> Result<RestorePlan, AppError> {
    let stored = load_complete(state, id).await?;
    let manifest = read_manifest(state, &stored)
        .await
        .map_err(|e| AppError::invalid("backup", e.to_string()))?;
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
        StoreKind::Postgres => sqlx::query_scalar!(
            r#"select exists (select 1 from pg_database where datname = $1) as "exists!""#,
            name
        )
        .fetch_one(&state.pg)
        .await
        .map_err(AppError::wrap("Look up a database")),
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

/// A request checked against the catalogue, the manifest and the target, not recorded.
struct Checked {
    stored: Stored,
    manifest: Manifest,
    mode: RestoreMode,
    target: String,
    tables: Vec<TableEntry>,
}

/// Checks `request` without writing anything (the restore job's input check): every
/// refusal is a 4xx naming the field.
pub async fn check(state: &AppState, request: &RestoreRequest) -> Result<(), AppError> {
    check_request(state, request, false).await.map(drop)
}

/// A recovery's ClickHouse step: backup `backup_id` in place with every table, Salvage's
/// own included (the store was lost: there is no newer history anchor to keep), under
/// any freeze the restored database carries. Recorded as `running` like [`prepare`].
/// It waits for ingest to settle only when a console is connected (its sessions are
/// named `salvage`; a recovery names its own otherwise).
pub async fn prepare_recovery(
    state: &AppState,
    backup_id: i64,
    actor: &Actor,
    reason: crate::reason::Reason,
) -> Result<Prepared, AppError> {
    let request = RestoreRequest {
        backup_id,
        in_place: true,
        confirm: Some(live_database(state, StoreKind::Clickhouse)),
        confirm_incident: true,
        reason: Some(reason),
        ..RestoreRequest::default()
    };
    let checked = check_request(state, &request, true).await?;
    let mut prepared = prepare_checked(state, &request, actor, None, checked).await?;
    prepared.recovery = true;
    Ok(prepared)
}

async fn check_request(
    state: &AppState,
    request: &RestoreRequest,
    with_own: bool,
) -> Result<Checked, AppError> {
    let stored = load_complete(state, request.backup_id).await?;
    let store = stored.backup.store;
    let manifest = read_manifest(state, &stored)
        .await
        .map_err(|e| AppError::invalid("backup", e.to_string()))?;
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
        if let Some(incident) = freeze::incident_frozen(&state.pg)
            .await
            .map_err(AppError::wrap("Look for an incident freeze"))?
        {
            if !request.confirm_incident {
                return Err(AppError::invalid(
                    "confirm_incident",
                    format!("incident #{incident} froze risky changes: confirm the incident to restore in place during it"),
                ));
            }
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
            .filter(|t| with_own || !t.own)
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
    Ok(Checked {
        stored,
        manifest,
        mode,
        target,
        tables,
    })
}

/// Checks `request` and records the restore as `running`, as part of run `run_id` (the
/// restore job's, or the drill's whose step it is). Every refusal is a 4xx naming the
/// field, and nothing has been written.
pub async fn prepare(
    state: &AppState,
    request: &RestoreRequest,
    actor: &Actor,
    run_id: Option<i64>,
) -> Result<Prepared, AppError> {
    let checked = check_request(state, request, false).await?;
    prepare_checked(state, request, actor, run_id, checked).await
}

async fn prepare_checked(
    state: &AppState,
    request: &RestoreRequest,
    actor: &Actor,
    run_id: Option<i64>,
    checked: Checked,
) -> Result<Prepared, AppError> {
    let Checked {
        stored,
        manifest,
        mode,
        target,
        tables,
    } = checked;
    let store = stored.backup.store;
    let names: Vec<String> = tables.iter().map(|t| t.name.clone()).collect();
    let total: i64 = manifest
        .files
        .iter()
        .filter(|f| f.table.as_ref().is_none_or(|t| names.contains(t)))
        .map(|f| f.size as i64)
        .sum();
    let restore_id: i64 = sqlx::query_scalar!(
        "insert into restores (backup_id, store, mode, target, tables, actor, actor_user_id, reason,
                               started_at, total_bytes, run_id)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) returning id",
        stored.backup.id,
        store.as_str(),
        mode.as_str(),
        &target,
        &names,
        &actor.name,
        actor.user_id,
        request.reason.as_ref().map(crate::reason::Reason::as_str),
        state.clock.now(),
        total,
        run_id
    )
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
        total_bytes: total,
        recovery: false,
    })
}

/// Progress and cancellation of a running restore, through its run's tracker: bytes
/// restored of the total, and the run's stop signal (a Cancel on any replica, Ctrl-C,
/// shutdown).
struct Watch<'a> {
    tracker: &'a Tracker,
    total: i64,
    /// When each step began.
    marks: std::sync::Mutex<Vec<(Phase, Instant)>>,
}

impl Watch<'_> {
    /// Notes that `phase` begins now (the previous one ends).
    fn phase(&self, phase: Phase) {
        if let Ok(mut marks) = self.marks.lock() {
            marks.push((phase, Instant::now()));
        }
    }

    /// Each step's duration, the last one ending at `end`.
    fn phases(&self, end: Instant) -> Vec<PhaseTime> {
        let marks = self.marks.lock().map(|m| m.clone()).unwrap_or_default();
        marks
            .iter()
            .enumerate()
            .map(|(i, (phase, began))| {
                let ended = marks.get(i + 1).map_or(end, |(_, next)| *next);
                PhaseTime {
                    phase: *phase,
                    ms: ended.saturating_duration_since(*began).as_millis() as i64,
                }
            })
            .collect()
    }

    async fn step(&self, bytes_done: i64) -> Result<(), BackupError> {
        self.tracker
            .report(bytes_done, self.total)
            .await
            .map_err(BackupError::postgres)?;
        if self.tracker.is_cancelled() {
            return Err(BackupError::Cancelled);
        }
        Ok(())
    }
}

/// Runs a prepared restore to its end and records it, reporting its bytes to
/// `tracker` and stopping when it is cancelled. `Err` only when the record itself cannot
/// be written; a restore that fails is a report with its error.
pub async fn execute(
    state: &AppState,
    prepared: Prepared,
    actor: &Actor,
    tracker: &Tracker,
) -> Result<RestoreReport, AppError> {
    let started = state.clock.now();
    let clock = Instant::now();
    let total = prepared.total_bytes;
    let watch = Watch {
        tracker,
        total,
        marks: std::sync::Mutex::new(Vec::new()),
    };
    let store = prepared.backup.backup.store;
    let result = match (store, prepared.mode) {
        (StoreKind::Postgres, RestoreMode::Side) => postgres::side(state, &prepared, &watch).await,
        (StoreKind::Clickhouse, RestoreMode::Side) => {
            clickhouse::side(state, &prepared, &watch).await
        }
        (_, RestoreMode::InPlace) => in_place::run(state, &prepared, actor, &watch).await,
    };
    let duration_ms = clock.elapsed().as_millis() as i64;
    let phases = watch.phases(Instant::now());
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
        Err(BackupError::Cancelled) => (
            RestoreStatus::Cancelled,
            Vec::new(),
            Some(BackupError::Cancelled.to_string()),
            None,
        ),
        Err(error) => (
            RestoreStatus::Failed,
            Vec::new(),
            Some(error.to_string()),
            None,
        ),
    };
    let rows: i64 = checks.iter().map(|c| c.rows).sum();
    let bytes = total;
    let now = state.clock.now();
    let pg_err = AppError::wrap("Record a restore");
    let mut tx = state.pg.begin().await.map_err(&pg_err)?;
    sqlx::query!(
        "update restores set status = $2, finished_at = $3, duration_ms = $4, row_count = $5,
             size_bytes = $6, verification = $7, error = $8, aside = $9
         where id = $1",
        prepared.restore_id,
        status.as_str(),
        now,
        duration_ms,
        rows,
        bytes,
        serde_json::to_value(&checks).unwrap_or_default(),
        error.as_deref(),
        aside.as_deref()
    )
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
    let details = RestoreEnded {
        restore_id: prepared.restore_id,
        backup_id: prepared.backup.backup.id,
        store,
        mode: prepared.mode,
        target: prepared.target.clone(),
        tables: checks.clone(),
        rows,
        bytes,
        duration_ms,
        phases: phases.clone(),
        aside: aside.clone(),
    };
    let entry = NewEntry::new(details, title, actor, outcome)
        .with_reason(prepared.reason.clone())
        .with_times(started, Some(now))
        .with_body(error.clone().unwrap_or_default());
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
        phases,
        error,
        history_id,
    })
}

type Restored = Result<(Vec<TableCheck>, Option<String>), BackupError>;

mod clickhouse;
mod in_place;
mod job;
mod postgres;
mod records;
mod whole;

pub use in_place::{abandon_interrupted, roll_back};
pub use job::{restore, RESTORE};
pub use records::{list, load};
pub use whole::{replace_schema, replace_schema_from, Replaced};

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
