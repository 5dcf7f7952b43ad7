//! The drill: one function behind Run drill now, `/cron/restore-drill` (by default at
//! 03:00 UTC on the 1st of every third month) and `salvage drill run`.
//!
//! 1. Choose the latest verified backup of each store (or the ones asked for).
//! 2. Restore each into a throwaway database (`<live>_drill_<id>`, recorded in
//!    `drill_databases` before it is created) through the backups' one restore function,
//!    which times its steps: fetch, restore, verify (every table's rows and schema
//!    checksum against the manifest).
//! 3. Run the console's own queries on what was restored: the queues page's figures and
//!    the history's chain verification on the restored PostgreSQL; a sample of ids read
//!    back by id from each restored ClickHouse table.
//! 4. Tear every throwaway database down, always: after a failed step and after a
//!    cancel too. (A drill whose process dies is the janitor's.)
//! 5. Record the drill and its `drill` history entry in one transaction: the steps with
//!    their durations, each store's verification, the measured recovery time against the
//!    objective, pass or fail, and the backups used with their age.
//!
//! Live data is never written: a drill only creates, reads and drops its own databases.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;

use super::super::{DrillKind, DrillStatus, DrillStep, DrillStore, StoreKind, TableResult};
use super::steps::{ms, step, Steps};
use super::{database_name, janitor, live_database, records};
use crate::alerts::ssr::{store::raise_event, Signal};
use crate::alerts::Severity;
use crate::backups::ssr::catalogue::{self, NotRestorable, Stored};
use crate::backups::ssr::restore::{self, Phase, RestoreReport, RestoreRequest};
use crate::backups::RestoreStatus;
use crate::error::AppError;
use crate::format::format_duration;
use crate::history::ssr::{append, NewEntry};
use crate::history::Outcome;
use crate::jobs::ssr::{Job, JobContext, JobFuture, Report};
use crate::jobs::RunStatus;
use crate::server::{unix_ms, AppState};
use crate::stores::StoreError;

pub static RESTORE_DRILL: Job = Job {
    name: super::super::DRILL_JOB,
    description: "Restores the latest verified backups into throwaway databases, verifies them, runs the console's queries on them, tears them down and records the measured recovery time.",
    // "Every 90 days" has no 5-field form: the 1st of every third month.
    schedule: "0 3 1 */3 *",
    grace: Duration::from_secs(3600),
    run: run_drill_job,
    permission: crate::auth::Permission::Operate,
    check: None,
};

fn run_drill_job(ctx: JobContext) -> JobFuture {
    Box::pin(async move { Ok(Box::new(drill(&ctx).await?) as Box<dyn Report>) })
}

/// What a drill did: the typed outcome every door reads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DrillReport {
    pub drill_id: i64,
    pub status: DrillStatus,
    pub stores: Vec<DrillStore>,
    pub steps: Vec<DrillStep>,
    /// Fetch, restore and verify of every store: the measured recovery time.
    pub recovery_ms: i64,
    /// The whole drill, teardown included.
    pub duration_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub history_id: i64,
}

impl Report for DrillReport {
    fn status(&self) -> RunStatus {
        match self.status {
            DrillStatus::Passed => RunStatus::Succeeded,
            DrillStatus::Cancelled => RunStatus::Cancelled,
            DrillStatus::Failed | DrillStatus::Running => RunStatus::Failed,
        }
    }
    fn rows(&self) -> i64 {
        self.stores
            .iter()
            .flat_map(|s| &s.tables)
            .map(|t| t.rows)
            .sum()
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

/// Runs one drill for job run `ctx` and records it. `Err` only when the record itself
/// cannot be written; a drill that fails is a report with its error.
pub async fn drill(ctx: &JobContext) -> Result<DrillReport, AppError> {
    let state = &ctx.state;
    let started = state.clock.now();
    let clock = Instant::now();
    let drill_id = records::start(
        &state.pg,
        ctx.run_id,
        ctx.trigger.as_str(),
        &ctx.actor,
        ctx.reason.as_ref(),
        started,
    )
    .await
    .map_err(AppError::wrap("Record a drill"))?;
    let mut steps = Steps {
        ctx,
        drill_id,
        done: Vec::new(),
        // PostgreSQL: fetch, restore, verify, queries; ClickHouse: restore (its files
        // stream in, no separate fetch), verify, queries; a teardown each.
        total: 9,
    };
    let chosen = match choose(state, &ctx.targets).await {
        Ok(chosen) => chosen,
        Err(why) => {
            let choose = step(None, "choose", 0, false, Some(why.to_string()));
            steps.push(choose).await?;
            return finish(ctx, drill_id, started, clock, steps.done, Vec::new()).await;
        }
    };
    let mut stores = Vec::new();
    for (store, backup) in chosen {
        if ctx.tracker.is_cancelled() {
            break;
        }
        let one = one_store(ctx, &mut steps, store, backup, started).await?;
        stores.push(one);
    }
    if !ctx.tracker.is_cancelled() {
        super::pitr::prove(ctx, &mut steps, &mut stores).await?;
    }
    // Teardown, always.
    let databases = records::live_databases(&state.pg, drill_id)
        .await
        .map_err(AppError::wrap("Read a drill's databases"))?;
    for (store, name) in databases {
        let clock = Instant::now();
        let dropped = janitor::drop_database(state, store, &name).await;
        if dropped.is_ok() {
            records::note_dropped(&state.pg, store, &name, state.clock.now())
                .await
                .map_err(AppError::wrap("Record a dropped drill database"))?;
        }
        let ok = dropped.is_ok();
        let detail = match dropped {
            Ok(()) => format!("dropped {name}"),
            Err(error) => format!("{name} left for the janitor: {error}"),
        };
        let teardown = step(Some(store), "teardown", ms(clock), ok, Some(detail));
        steps.push(teardown).await?;
    }
    let done = steps.done;
    finish(ctx, drill_id, started, clock, done, stores).await
}

/// Why a drill has no backup to restore, for a store or for the whole drill.
#[derive(Debug, thiserror::Error)]
pub enum ChoiceError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("there is no verified backup of {} to drill with", .0.label())]
    NoneVerified(StoreKind),
    #[error("{0}: choose a complete backup")]
    NotRestorable(#[from] NotRestorable),
    /// The backup asked for could not be read (it does not exist, PostgreSQL is down).
    #[error("{0}")]
    Unreadable(AppError),
    #[error("two backups of {} were given; a drill restores one per store", .0.label())]
    Twice(StoreKind),
}

/// The backup of each store to restore: the ones asked for (each complete, at most one
/// per store) or the latest verified of each. A store without one fails the drill.
async fn choose(
    state: &AppState,
    asked: &[i64],
) -> Result<Vec<(StoreKind, Result<Stored, ChoiceError>)>, ChoiceError> {
    if asked.is_empty() {
        let mut chosen = Vec::new();
        for store in StoreKind::ALL {
            let latest = catalogue::latest_verified(&state.pg, store)
                .await
                .map_err(StoreError::postgres)?
                .ok_or(ChoiceError::NoneVerified(store));
            chosen.push((store, latest));
        }
        return Ok(chosen);
    }
    let mut chosen: Vec<(StoreKind, Result<Stored, ChoiceError>)> = Vec::new();
    for &id in asked {
        let stored = catalogue::load_complete(&state.pg, id)
            .await
            .map_err(ChoiceError::Unreadable)??;
        let store = stored.backup.store;
        if chosen.iter().any(|(s, _)| *s == store) {
            return Err(ChoiceError::Twice(store));
        }
        chosen.push((store, Ok(stored)));
    }
    chosen.sort_by_key(|(store, _)| StoreKind::ALL.iter().position(|s| s == store));
    Ok(chosen)
}

/// Restores, verifies and queries one store. Its database is torn down by the caller.
async fn one_store(
    ctx: &JobContext,
    steps: &mut Steps<'_>,
    store: StoreKind,
    backup: Result<Stored, ChoiceError>,
    drill_started: OffsetDateTime,
) -> Result<DrillStore, AppError> {
    let state = &ctx.state;
    let rto_target_ms = crate::backups::ssr::objectives::rto(state, store)
        .await
        .map_err(AppError::wrap("Read the recovery objectives"))?
        .as_millis() as i64;
    let mut result = DrillStore {
        store,
        backup_id: None,
        backup_age_ms: None,
        restore_id: None,
        database: None,
        recovery_ms: 0,
        rto_target_ms,
        tables: Vec::new(),
        queries: Vec::new(),
        ok: false,
        error: None,
    };
    let stored = match backup {
        Ok(stored) => stored,
        Err(why) => {
            steps
                .push(step(Some(store), "choose", 0, false, Some(why.to_string())))
                .await?;
            result.error = Some(why.to_string());
            return Ok(result);
        }
    };
    result.backup_id = Some(stored.backup.id);
    result.backup_age_ms = stored
        .backup
        .finished_ms
        .map(|finished| unix_ms(drill_started) - finished);
    let name = database_name(&live_database(state, store), steps.drill_id);
    result.database = Some(name.clone());
    records::note_database(&state.pg, steps.drill_id, store, &name, state.clock.now())
        .await
        .map_err(AppError::wrap("Record a drill database"))?;
    let request = RestoreRequest {
        backup_id: stored.backup.id,
        target: Some(name.clone()),
        reason: Some(crate::reason::Reason::own(format!(
            "Restore drill {}",
            steps.drill_id
        ))),
        ..Default::default()
    };
    // A step of the drill's run: the restore points at it, stops when it is cancelled,
    // and leaves the run's progress (the drill's steps) alone.
    let report = match restore::prepare(state, &request, &ctx.actor, Some(ctx.run_id)).await {
        Ok(prepared) => restore::execute(state, prepared, &ctx.actor, &ctx.tracker.step()).await?,
        Err(error) => {
            let why = error.to_string();
            steps
                .push(step(Some(store), "restore", 0, false, Some(why.clone())))
                .await?;
            result.error = Some(why);
            return Ok(result);
        }
    };
    result.restore_id = Some(report.restore_id);
    result.recovery_ms = report.phases.iter().map(|p| p.ms).sum();
    result.tables = report
        .tables
        .iter()
        .map(|t| TableResult {
            name: t.name.clone(),
            expected_rows: t.expected_rows,
            rows: t.rows,
            schema_matches: t.schema_matches,
        })
        .collect();
    let verified = report.status == RestoreStatus::Verified;
    for (index, phase) in report.phases.iter().enumerate() {
        // A failed restore failed in its last step.
        let ok = verified || index + 1 < report.phases.len();
        let detail = phase_detail(phase.phase, &report, ok);
        steps
            .push(step(
                Some(store),
                phase.phase.as_str(),
                phase.ms,
                ok,
                detail,
            ))
            .await?;
    }
    if !verified {
        result.error = Some(format!(
            "restore {} {}: {}",
            report.restore_id,
            report.status.label(),
            report.error.clone().unwrap_or_default()
        ));
        return Ok(result);
    }
    let clock = Instant::now();
    result.queries = match store {
        StoreKind::Postgres => super::queries::postgres(state, &name).await,
        StoreKind::Clickhouse => super::queries::clickhouse(state, &name, &result.tables).await,
    };
    let failed: Vec<String> = result
        .queries
        .iter()
        .filter(|q| !q.ok)
        .map(|q| format!("{}: {}", q.name, q.detail))
        .collect();
    let detail = if failed.is_empty() {
        result
            .queries
            .iter()
            .map(|q| q.detail.clone())
            .collect::<Vec<_>>()
            .join("; ")
    } else {
        failed.join("; ")
    };
    steps
        .push(step(
            Some(store),
            "queries",
            ms(clock),
            failed.is_empty(),
            Some(detail),
        ))
        .await?;
    if failed.is_empty() {
        result.ok = true;
    } else {
        result.error = Some(failed.join("; "));
    }
    Ok(result)
}

/// What a restore step found, for the step list.
fn phase_detail(phase: Phase, report: &RestoreReport, ok: bool) -> Option<String> {
    if !ok {
        return report.error.clone();
    }
    match phase {
        Phase::Fetch => Some(format!(
            "{} bytes checked against the manifest",
            report.bytes
        )),
        Phase::Restore => Some(format!("into {}", report.target)),
        Phase::Verify => Some(format!(
            "{} tables, {} rows, rows and schema match the manifest",
            report.tables.len(),
            report.rows
        )),
    }
}

/// Closes the drill: its row and its history entry in one transaction.
async fn finish(
    ctx: &JobContext,
    drill_id: i64,
    started: OffsetDateTime,
    clock: Instant,
    steps: Vec<DrillStep>,
    stores: Vec<DrillStore>,
) -> Result<DrillReport, AppError> {
    let state = &ctx.state;
    let now = state.clock.now();
    let duration_ms = ms(clock);
    let recovery_ms: i64 = stores.iter().map(|s| s.recovery_ms).sum();
    let cancelled = ctx.tracker.is_cancelled();
    let mut problems: Vec<String> = steps
        .iter()
        .filter(|s| !s.ok && s.name != "teardown")
        .map(|s| match s.store {
            Some(store) => format!(
                "{}: {}",
                store.label(),
                s.detail.clone().unwrap_or_default()
            ),
            None => s.detail.clone().unwrap_or_default(),
        })
        .collect();
    problems.extend(
        stores
            .iter()
            .filter(|s| {
                !s.ok
                    && s.error.is_some()
                    && !steps.iter().any(|st| st.store == Some(s.store) && !st.ok)
            })
            .map(|s| {
                format!(
                    "{}: {}",
                    s.store.label(),
                    s.error.clone().unwrap_or_default()
                )
            }),
    );
    let status = if cancelled {
        DrillStatus::Cancelled
    } else if problems.is_empty()
        && stores.len() == StoreKind::ALL.len()
        && stores.iter().all(|s| s.ok)
    {
        DrillStatus::Passed
    } else {
        DrillStatus::Failed
    };
    let error = match status {
        DrillStatus::Passed => None,
        DrillStatus::Cancelled => Some("cancelled".to_owned()),
        _ if problems.is_empty() => Some("not every store was restored".to_owned()),
        _ => Some(problems.join("; ")),
    };
    let pg_err = AppError::wrap("Record a drill");
    let mut tx = state.pg.begin().await.map_err(&pg_err)?;
    let per_store = stores
        .iter()
        .map(|s| format!("{} {}", s.store.label(), format_duration(s.recovery_ms)))
        .collect::<Vec<_>>()
        .join(", ");
    let title = match status {
        DrillStatus::Passed => format!("Restore drill {drill_id} passed: {per_store}"),
        DrillStatus::Cancelled => format!("Restore drill {drill_id} cancelled"),
        _ => format!("Restore drill {drill_id} failed"),
    };
    let outcome = match status {
        DrillStatus::Passed => Outcome::Succeeded,
        DrillStatus::Cancelled => Outcome::Partial,
        _ => Outcome::Failed,
    };
    let details = records::DrillEnded {
        drill_id,
        kind: DrillKind::Functional,
        status,
        recovery_ms,
        duration_ms,
        stores: stores.clone(),
        steps: steps.clone(),
        run_id: ctx.run_id,
    };
    let entry = NewEntry::new(details, title, &ctx.actor, outcome)
        .with_reason(ctx.reason.clone())
        .with_times(started, Some(now))
        .with_body(error.clone().unwrap_or_default());
    let history_id = append(&mut tx, &entry).await.map_err(&pg_err)?;
    if status == DrillStatus::Failed {
        let signal = Signal::new(
            "functional",
            Severity::Critical,
            format!(
                "Restore drill {drill_id} failed: {}",
                error.clone().unwrap_or_default()
            ),
        )
        .with_details(json!({"drillId": drill_id, "historyId": history_id}));
        raise_event(&mut tx, &super::alerts::DRILL_FAILED, &signal, now)
            .await
            .map_err(&pg_err)?;
    }
    for store in stores.iter().filter(|s| s.ok) {
        let median = super::alerts::median_recovery_ms(&mut *tx, store.store, started, drill_id)
            .await
            .map_err(&pg_err)?;
        if let Some(signal) =
            super::alerts::rto_signal(drill_id, store, median, ctx.state.drills().trend_floor)
        {
            raise_event(&mut tx, &super::alerts::RTO_EXCEEDED, &signal, now)
                .await
                .map_err(&pg_err)?;
        }
    }
    sqlx::query!(
        "update drills set status = $2, finished_at = $3, duration_ms = $4, steps = $5,
             stores = $6, error = $7, history_id = $8
         where id = $1",
        drill_id,
        status.as_str(),
        now,
        duration_ms,
        serde_json::to_value(&steps).unwrap_or_default(),
        serde_json::to_value(&stores).unwrap_or_default(),
        error.as_deref(),
        history_id
    )
    .execute(&mut *tx)
    .await
    .map_err(&pg_err)?;
    tx.commit().await.map_err(&pg_err)?;
    Ok(DrillReport {
        drill_id,
        status,
        stores,
        steps,
        recovery_ms,
        duration_ms,
        error,
        history_id,
    })
}
