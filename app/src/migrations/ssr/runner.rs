//! The `run-background-migrations` job.
//!
//! Each tick walks the registry in order. For a migration that is pending or running it
//! takes `pg_try_advisory_lock` on the migration (held by a connection of its own, so a
//! worker that dies releases it with its connection): another replica's worker holding
//! it means this one moves on. Holding the lock, the worker claims the row (`running`,
//! its `run_id` this run, one more attempt, the total counted on the first run) and runs
//! chunks until its time budget ends, each chunk's change committed in one transaction
//! with the new cursor and progress, so a chunk is done once or not at all.
//!
//! The heartbeat is the run's: the runner beats it while the job works and with every
//! progress report (one per chunk). A turn that ends on purpose (the time budget, a
//! cancelled run) puts the row back to `pending`. A worker that dies leaves it `running`
//! with a run that ended or went quiet (the runner's abandoned rule): the
//! `migration_stuck` alert names it, and the next tick (the lock went with the dead
//! worker's connection) takes it over from the saved cursor. A person's pause or cancel
//! is read under the row's lock before every chunk.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::lock_class;
use super::store::ROWS;
use crate::error::AppError;
use crate::history::ssr::{append, NewEntry};
use crate::history::Outcome;
use crate::jobs::ssr::background::BackgroundMigration;
use crate::jobs::ssr::{Job, JobContext, JobFuture, Report};
use crate::jobs::RunStatus;
use crate::migrations::MigrationStatus;

crate::history::ssr::details! {
    /// A background migration started, or taken over from a worker that stopped.
    struct MigrationStarted for BackgroundMigration {
        migration: &'static str,
        total: i64,
        /// Where a take-over resumed.
        cursor: Option<i64>,
        run_id: i64,
    }

    /// A background migration changed its last row.
    struct MigrationFinished for BackgroundMigration {
        migration: &'static str,
        rows: i64,
        run_id: i64,
    }

    /// A background migration failed; the entry's body says why.
    struct MigrationFailed for BackgroundMigration {
        migration: &'static str,
        run_id: i64,
    }
}

pub static RUN_BACKGROUND_MIGRATIONS: Job = Job {
    name: "run-background-migrations",
    description: "Runs pending background migrations in chunks, one worker per migration across replicas, and takes over stuck ones.",
    schedule: "* * * * *",
    grace: Duration::from_secs(60),
    run: run_job,
    permission: crate::auth::Permission::Operate,
    check: None,
};

fn run_job(ctx: JobContext) -> JobFuture {
    Box::pin(async move { Ok(Box::new(run(&ctx).await?) as Box<dyn Report>) })
}

/// How one migration's turn in a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Turn {
    /// Its last chunk is done.
    Finished,
    /// The run's time ran out (or the run was cancelled); the next tick goes on.
    Continues,
    /// A person paused or cancelled it meanwhile.
    Stopped,
    /// Another worker holds it.
    HeldElsewhere,
    /// A chunk failed; the migration is `failed` with the error.
    Failed,
}

/// One migration's part of a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Worked {
    pub name: String,
    pub turn: Turn,
    pub chunks: i64,
    pub rows: i64,
    pub cursor: Option<i64>,
    /// It was running with a stale heartbeat when this run took it over.
    pub took_over: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What a run of `run-background-migrations` did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MigrationsReport {
    pub status: RunStatus,
    pub worked: Vec<Worked>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Report for MigrationsReport {
    fn status(&self) -> RunStatus {
        self.status
    }
    fn rows(&self) -> i64 {
        self.worked.iter().map(|w| w.rows).sum()
    }
    fn error(&self) -> Option<String> {
        self.error.clone()
    }
    fn history_id(&self) -> Option<i64> {
        None
    }
    fn details(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// The advisory lock key of a migration: a stable hash of its name (FNV-1a).
pub fn lock_key(name: &str) -> i32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in name.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash as i32
}

async fn run(ctx: &JobContext) -> Result<MigrationsReport, AppError> {
    let state = &ctx.state;
    super::store::register(state).await?;
    let budget = ctx.budget.unwrap_or(state.migrations().run_budget);
    let deadline = Instant::now() + budget;
    let mut worked = Vec::new();
    for migration in state.background_migrations() {
        if ctx.tracker.is_cancelled() || Instant::now() >= deadline {
            break;
        }
        let status = super::store::status_of(&state.pg, migration.name).await?;
        if !matches!(
            status,
            Some(MigrationStatus::Pending) | Some(MigrationStatus::Running)
        ) {
            continue;
        }
        let lock = crate::server::postgres::try_exclusive(
            &state.pg,
            lock_class::BACKGROUND_MIGRATION,
            lock_key(migration.name),
        )
        .await
        .map_err(AppError::wrap("Take a background migration's lock"))?;
        let Some(lock) = lock else {
            worked.push(Worked {
                name: migration.name.to_owned(),
                turn: Turn::HeldElsewhere,
                chunks: 0,
                rows: 0,
                cursor: None,
                took_over: false,
                error: None,
            });
            continue;
        };
        let result = work(ctx, migration, deadline).await;
        lock.release().await;
        worked.push(result?);
    }
    let failed: Vec<String> = worked
        .iter()
        .filter_map(|w| w.error.as_ref().map(|e| format!("{}: {e}", w.name)))
        .collect();
    let status = if !failed.is_empty() {
        RunStatus::Failed
    } else if ctx.tracker.is_cancelled() {
        RunStatus::Cancelled
    } else if worked.iter().any(|w| w.turn == Turn::Continues) {
        RunStatus::Partial
    } else {
        RunStatus::Succeeded
    };
    Ok(MigrationsReport {
        status,
        error: (!failed.is_empty()).then(|| failed.join("; ")),
        worked,
    })
}

/// Claims `migration` (its lock held) and runs its chunks until the deadline.
async fn work(
    ctx: &JobContext,
    migration: &BackgroundMigration,
    deadline: Instant,
) -> Result<Worked, AppError> {
    let state = &ctx.state;
    let wrap = || AppError::wrap("Run a background migration");
    let mut worked = Worked {
        name: migration.name.to_owned(),
        turn: Turn::Stopped,
        chunks: 0,
        rows: 0,
        cursor: None,
        took_over: false,
        error: None,
    };

    // Claim it: read under the row's lock (a pause may have landed since), count the
    // total on the first run, and say who works on it now.
    let now = state.clock.now();
    let mut tx = state.pg.begin().await.map_err(wrap())?;
    let row = sqlx::query(&format!(
        "select m.status, m.progress_total, run.heartbeat_at, m.started_at, m.cursor
           from {ROWS} where m.name = $1 for update of m"
    ))
    .bind(migration.name)
    .fetch_one(&mut *tx)
    .await
    .map_err(wrap())?;
    let status: String = row.get("status");
    if !matches!(status.as_str(), "pending" | "running") {
        return Ok(worked);
    }
    let heartbeat: Option<time::OffsetDateTime> = row.get("heartbeat_at");
    worked.took_over = status == "running";
    let first_run = row
        .get::<Option<time::OffsetDateTime>, _>("started_at")
        .is_none();
    let total = match row.get::<Option<i64>, _>("progress_total") {
        Some(total) => total,
        None => (migration.count)(&mut tx).await.map_err(wrap())?,
    };
    worked.cursor = row.get("cursor");
    sqlx::query!(
        "update background_migrations
            set status = 'running', progress_total = $2,
                attempts = attempts + case when started_at is null or status = 'running' then 1 else 0 end,
                started_at = coalesce(started_at, $3), last_heartbeat_at = $3, run_id = $4,
                run_started_at = $3, run_started_progress = progress_current, finished_at = null
          where name = $1",
        migration.name,
        total,
        now,
        ctx.run_id
    )
    .execute(&mut *tx)
    .await
    .map_err(wrap())?;
    if worked.took_over || first_run {
        let (title, body) = if worked.took_over {
            let age = heartbeat
                .map(|h| crate::format::format_duration((now - h).whole_milliseconds() as i64))
                .unwrap_or_else(|| "never".to_owned());
            (
                format!("Background migration {} taken over", migration.name),
                format!(
                    "It was running but its heartbeat was {age} old: its worker stopped. \
                     Resumed from cursor {}.",
                    worked
                        .cursor
                        .map(|c| c.to_string())
                        .unwrap_or_else(|| "(start)".to_owned())
                ),
            )
        } else {
            (
                format!("Background migration {} started", migration.name),
                format!(
                    "{} rows to change. {}",
                    crate::format::group_digits(total.max(0) as u64),
                    migration.description
                ),
            )
        };
        let details = MigrationStarted {
            migration: migration.name,
            total,
            cursor: worked.cursor,
            run_id: ctx.run_id,
        };
        let entry = NewEntry::new(details, title, &ctx.actor, Outcome::Info)
            .with_body(body)
            .with_times(now, None);
        append(&mut tx, &entry).await.map_err(wrap())?;
    }
    tx.commit().await.map_err(wrap())?;

    let result = chunks(ctx, migration, deadline, total, &mut worked).await;
    match result {
        Ok(()) if worked.turn == Turn::Continues => {
            // Its turn ended on purpose: back in line, so the next tick claims it as
            // work left, not as a dead worker's.
            sqlx::query!(
                "update background_migrations set status = 'pending'
                  where name = $1 and status = 'running'",
                migration.name
            )
            .execute(&state.pg)
            .await
            .map_err(AppError::wrap("Run a background migration"))?;
            Ok(worked)
        }
        Ok(()) => Ok(worked),
        Err(ChunkError::Store(error)) => Err(error),
        Err(ChunkError::Step(error)) => {
            worked.turn = Turn::Failed;
            worked.error = Some(error.clone());
            fail(ctx, migration, &error).await?;
            Ok(worked)
        }
    }
}

enum ChunkError {
    /// Recording the chunk failed (a store that does not answer): the row stays
    /// `running`, its heartbeat goes stale, and a later tick takes it over.
    Store(AppError),
    /// The migration's own step failed: it is marked `failed` with the error.
    Step(String),
}

async fn chunks(
    ctx: &JobContext,
    migration: &BackgroundMigration,
    deadline: Instant,
    total: i64,
    worked: &mut Worked,
) -> Result<(), ChunkError> {
    let state = &ctx.state;
    let store = |e: sqlx::Error| ChunkError::Store(AppError::wrap("Run a background migration")(e));
    loop {
        if ctx.tracker.is_cancelled() || Instant::now() >= deadline {
            worked.turn = Turn::Continues;
            return Ok(());
        }
        let mut tx = state.pg.begin().await.map_err(store)?;
        let row = sqlx::query!(
            "select status, cursor, progress_current from background_migrations
              where name = $1 for update",
            migration.name
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(store)?;
        if row.status != "running" {
            worked.turn = Turn::Stopped;
            return Ok(());
        }
        let cursor: Option<i64> = row.cursor;
        let done_before: i64 = row.progress_current;
        let chunk = match (migration.step)(&mut tx, cursor, state.migrations().chunk_rows).await {
            Ok(chunk) => chunk,
            Err(error) => {
                let _ = tx.rollback().await;
                return Err(ChunkError::Step(error.to_string()));
            }
        };
        let now = state.clock.now();
        let progress = done_before + chunk.rows;
        sqlx::query!(
            "update background_migrations
                set cursor = $2, progress_current = $3,
                    status = case when $5 then 'succeeded' else status end,
                    finished_at = case when $5 then $4::timestamptz else null end,
                    progress_total = case when $5 then $3 else greatest(progress_total, $3) end
              where name = $1",
            migration.name,
            chunk.cursor,
            progress,
            now,
            chunk.done
        )
        .execute(&mut *tx)
        .await
        .map_err(store)?;
        if chunk.done {
            let details = MigrationFinished {
                migration: migration.name,
                rows: progress,
                run_id: ctx.run_id,
            };
            let entry = NewEntry::new(
                details,
                format!(
                    "Background migration {} finished: {} rows",
                    migration.name,
                    crate::format::group_digits(progress.max(0) as u64)
                ),
                &ctx.actor,
                Outcome::Succeeded,
            )
            .with_times(now, Some(now));
            append(&mut tx, &entry).await.map_err(store)?;
        }
        tx.commit().await.map_err(store)?;
        worked.chunks += 1;
        worked.rows += chunk.rows;
        worked.cursor = Some(chunk.cursor);
        let _ = ctx.tracker.report(progress, total.max(progress)).await;
        if chunk.done {
            worked.turn = Turn::Finished;
            return Ok(());
        }
        if !state.migrations().chunk_pause.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(state.migrations().chunk_pause) => {}
                _ = ctx.tracker.cancelled() => {}
            }
        }
    }
}

/// Marks `migration` failed with `error`, with its history entry.
async fn fail(
    ctx: &JobContext,
    migration: &BackgroundMigration,
    error: &str,
) -> Result<(), AppError> {
    let wrap = || AppError::wrap("Record a failed background migration");
    let now = ctx.state.clock.now();
    let mut tx = ctx.state.pg.begin().await.map_err(wrap())?;
    sqlx::query!(
        "update background_migrations set status = 'failed', last_error = $2, finished_at = $3
          where name = $1 and status = 'running'",
        migration.name,
        error,
        now
    )
    .execute(&mut *tx)
    .await
    .map_err(wrap())?;
    let details = MigrationFailed {
        migration: migration.name,
        run_id: ctx.run_id,
    };
    let entry = NewEntry::new(
        details,
        format!("Background migration {} failed", migration.name),
        &ctx.actor,
        Outcome::Failed,
    )
    .with_body(error.to_owned())
    .with_times(now, Some(now));
    append(&mut tx, &entry).await.map_err(wrap())?;
    tx.commit().await.map_err(wrap())
}

#[cfg(test)]
mod tests {
    use super::lock_key;

    #[test]
    fn lock_keys_are_stable_and_differ_between_names() {
        assert_eq!(
            lock_key("webhook_event_payload_bytes"),
            lock_key("webhook_event_payload_bytes")
        );
        assert_ne!(lock_key("a"), lock_key("b"));
    }
}
