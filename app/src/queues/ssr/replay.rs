//! Replay: drain both fallback queues into ClickHouse, exactly once.
//!
//! One batch is one PostgreSQL transaction:
//!
//! 1. `DELETE … WHERE seq IN (SELECT … ORDER BY seq LIMIT n FOR UPDATE SKIP LOCKED)
//!    RETURNING …` claims the oldest unclaimed rows (other replayers skip them) and
//!    deletes them, uncommitted;
//! 2. ClickHouse is asked which of their ids it already holds (bounded by the batch's
//!    dates, so the sort key answers);
//! 3. the missing rows are inserted in one INSERT;
//! 4. the transaction commits.
//!
//! A failure or a kill anywhere before 4 rolls the delete back, so the rows are still
//! queued; a row that reached ClickHouse in 3 is found by 2 next time and not sent again.
//! Nothing is lost (rows leave PostgreSQL only after ClickHouse has them) and nothing is
//! doubled (ClickHouse is asked before every insert, and the unique `id` of the queue
//! keeps a row from being claimed by two replayers). A batch that fails gets
//! `attempts + 1` and the error, and the run stops: the store is not ready.
//!
//! The cost of a batch is one claim-and-delete statement, one ClickHouse lookup and one
//! ClickHouse insert, so replay runs close to the speed of a bare `DELETE … RETURNING`
//! (see `salvage bench replay`).

use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::{PgPool, Row};
use time::OffsetDateTime;
use uuid::Uuid;

use super::super::{Queue, ReplayRun};
use super::stats::{queue_depths, sample_depths};
use crate::auth::ssr::Actor;
use crate::error::AppError;
use crate::history::ssr::{append, NewEntry};
use crate::history::Outcome;
use crate::server::{unix_ms, AppState};

pub use crate::crons::Trigger;

/// Failures injected by tests at the one point that matters most.
#[derive(Clone, Copy, Debug, Default)]
pub struct Faults {
    /// Fail after the ClickHouse insert of each batch and before the PostgreSQL commit,
    /// as a process killed there would (the run stops at the first).
    pub crash_after_insert: bool,
}

/// Batches a run keeps in flight: two overlap one batch's PostgreSQL work with the
/// other's ClickHouse round trips (measured with `salvage bench replay`).
pub const DEFAULT_PARALLEL: usize = 2;

/// How a run behaves.
#[derive(Clone, Debug)]
pub struct ReplayOptions {
    /// Rows claimed per batch.
    pub batch: i64,
    /// Batches in flight at once (each its own transaction and claim).
    pub parallel: usize,
    /// Stop (as `partial`) once this much time has passed.
    pub budget: Duration,
    pub faults: Faults,
}

impl ReplayOptions {
    /// The configured batch size and budget.
    pub fn from_state(state: &AppState) -> Self {
        Self {
            batch: state.queues.replay_batch,
            parallel: DEFAULT_PARALLEL,
            budget: state.queues.replay_budget,
            faults: Faults::default(),
        }
    }
}

/// Where a run is, for progress bars.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Progress {
    pub run_id: i64,
    pub rows_at_start: i64,
    pub rows_done: i64,
    pub elapsed: Duration,
}

impl Progress {
    pub fn rate(&self) -> f64 {
        self.rows_done as f64 / self.elapsed.as_secs_f64().max(0.001)
    }
}

/// What a finished run did.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplayReport {
    pub run_id: i64,
    /// `succeeded`, `partial` (budget reached), `failed` or `cancelled`.
    pub status: &'static str,
    pub rows_at_start: i64,
    /// Rows taken off the queues.
    pub rows_done: i64,
    /// Of those, rows inserted into ClickHouse now.
    pub rows_inserted: i64,
    /// Of those, rows ClickHouse already had (a previous run died after its insert).
    pub rows_already_present: i64,
    /// Rows still queued at the end.
    pub rows_left: i64,
    pub error: Option<String>,
    pub elapsed: Duration,
    /// The history entry of the run (scheduled runs that found nothing write none).
    pub history_id: Option<i64>,
}

/// A run whose heartbeat is older than this is shown (and closed) as abandoned.
pub const ABANDONED_AFTER_SECS: i64 = 120;

/// Records the start of a run and returns its id. Runs another process left behind
/// without a heartbeat are closed as `failed` first.
pub async fn begin(
    pg: &PgPool,
    trigger: Trigger,
    actor: &Actor,
    reason: Option<String>,
) -> Result<i64, AppError> {
    let internal = |e: sqlx::Error| AppError::internal("Failed to start a replay run", e);
    sqlx::query!(
        "update replay_runs set status = 'failed', finished_at = heartbeat_at,
                error = 'abandoned: the process running it stopped sending heartbeats'
          where status = 'running' and heartbeat_at < now() - make_interval(secs => $1)",
        ABANDONED_AFTER_SECS as f64
    )
    .execute(pg)
    .await
    .map_err(internal)?;
    let depth: i64 = queue_depths(pg)
        .await
        .map_err(internal)?
        .iter()
        .map(|(_, d)| d)
        .sum();
    sqlx::query_scalar!(
        "insert into replay_runs (trigger, actor, reason, rows_at_start)
         values ($1, $2, $3, $4) returning id",
        trigger.as_str(),
        actor.name,
        reason,
        depth
    )
    .fetch_one(pg)
    .await
    .map_err(internal)
}

/// Asks a running run to stop after its current batch. `false` when it is not running.
pub async fn request_cancel(pg: &PgPool, run_id: i64) -> Result<bool, AppError> {
    let result = sqlx::query!(
        "update replay_runs set cancel_requested = true where id = $1 and status = 'running'",
        run_id
    )
    .execute(pg)
    .await
    .map_err(|e| AppError::internal("Failed to cancel a replay run", e))?;
    Ok(result.rows_affected() == 1)
}

/// Replays both queues: [`begin`], then [`drive`]. What every door calls.
pub async fn replay(
    state: &AppState,
    trigger: Trigger,
    actor: &Actor,
    reason: Option<String>,
    options: &ReplayOptions,
    on_progress: impl FnMut(Progress),
) -> Result<ReplayReport, AppError> {
    let run_id = begin(&state.pg, trigger, actor, reason.clone()).await?;
    drive(state, run_id, trigger, actor, reason, options, on_progress).await
}

/// Drains the queues for run `run_id` until they are empty, the budget is spent, a
/// batch fails or someone cancels; then closes the run, samples the depths and (unless
/// a scheduled run found nothing to do) writes the history entry.
pub async fn drive(
    state: &AppState,
    run_id: i64,
    trigger: Trigger,
    actor: &Actor,
    reason: Option<String>,
    options: &ReplayOptions,
    mut on_progress: impl FnMut(Progress),
) -> Result<ReplayReport, AppError> {
    let internal = |e: sqlx::Error| AppError::internal("Replay bookkeeping failed", e);
    let started_at = OffsetDateTime::now_utc();
    let started = Instant::now();
    let rows_at_start = sqlx::query_scalar!(
        "select rows_at_start from replay_runs where id = $1",
        run_id
    )
    .fetch_one(&state.pg)
    .await
    .map_err(internal)?;
    let (mut done, mut inserted, mut present) = (0i64, 0i64, 0i64);
    let mut status = "succeeded";
    let mut error = None;
    let faults = options.faults;
    'queues: for queue in Queue::ALL {
        loop {
            if started.elapsed() >= options.budget {
                status = "partial";
                break 'queues;
            }
            // Several batches at once: each claims its own rows (SKIP LOCKED), so while
            // one waits for ClickHouse another is in PostgreSQL.
            let batches = futures::future::join_all(
                (0..options.parallel.max(1))
                    .map(|_| replay_batch(state, queue, options.batch, faults)),
            )
            .await;
            let mut claimed = 0;
            let mut failure = None;
            for batch in batches {
                match batch {
                    Ok(batch) => {
                        claimed += batch.claimed;
                        done += batch.claimed;
                        inserted += batch.inserted;
                        present += batch.claimed - batch.inserted;
                    }
                    Err(message) => failure = failure.or(Some(message)),
                }
            }
            match failure {
                None if claimed == 0 => break,
                None => {
                    let cancel = sqlx::query_scalar!(
                        "update replay_runs set rows_done = $2, rows_inserted = $3,
                                rows_already_present = $4, heartbeat_at = now()
                          where id = $1 returning cancel_requested",
                        run_id,
                        done,
                        inserted,
                        present
                    )
                    .fetch_one(&state.pg)
                    .await
                    .map_err(internal)?;
                    on_progress(Progress {
                        run_id,
                        rows_at_start,
                        rows_done: done,
                        elapsed: started.elapsed(),
                    });
                    if cancel {
                        status = "cancelled";
                        break 'queues;
                    }
                }
                Some(message) => {
                    status = "failed";
                    error = Some(format!("{}: {message}", queue.as_str()));
                    break 'queues;
                }
            }
        }
    }

    let left: i64 = queue_depths(&state.pg)
        .await
        .map_err(internal)?
        .iter()
        .map(|(_, d)| d)
        .sum();
    let elapsed = started.elapsed();
    let mut tx = state.pg.begin().await.map_err(internal)?;
    sqlx::query!(
        "update replay_runs set status = $2, finished_at = now(), heartbeat_at = now(),
                rows_done = $3, rows_inserted = $4, rows_already_present = $5,
                rows_left = $6, error = $7
          where id = $1",
        run_id,
        status,
        done,
        inserted,
        present,
        left,
        error
    )
    .execute(&mut *tx)
    .await
    .map_err(internal)?;
    let scheduled = matches!(trigger, Trigger::Scheduler | Trigger::External);
    let mut history_id = None;
    if !(scheduled && done == 0 && error.is_none()) && trigger != Trigger::Bench {
        let outcome = match status {
            "succeeded" => Outcome::Succeeded,
            "failed" => Outcome::Failed,
            _ => Outcome::Partial,
        };
        let title = match status {
            "succeeded" => format!("Replayed {done} queued rows into ClickHouse"),
            "partial" => {
                format!("Replay stopped at its time budget: {done} rows replayed, {left} left")
            }
            "cancelled" => format!("Replay cancelled: {done} rows replayed, {left} left"),
            _ => format!("Replay failed after {done} rows; {left} left"),
        };
        let entry = NewEntry::new("replay", title, actor, outcome)
            .with_times(started_at, Some(OffsetDateTime::now_utc()))
            .with_reason(reason)
            .with_details(json!({
                "run_id": run_id, "trigger": trigger.as_str(), "rows_at_start": rows_at_start,
                "rows_done": done, "rows_inserted": inserted, "rows_already_present": present,
                "rows_left": left, "batch": options.batch, "error": error,
                "duration_ms": elapsed.as_millis() as i64,
            }));
        history_id = Some(append(&mut tx, &entry).await.map_err(internal)?);
    }
    tx.commit().await.map_err(internal)?;
    if let Err(e) = sample_depths(&state.pg).await {
        tracing::debug!(error = %e, "depth sample not recorded");
    }
    tracing::info!(
        run_id,
        status,
        rows = done,
        inserted,
        already_present = present,
        left,
        "replay run finished"
    );
    Ok(ReplayReport {
        run_id,
        status,
        rows_at_start,
        rows_done: done,
        rows_inserted: inserted,
        rows_already_present: present,
        rows_left: left,
        error,
        elapsed,
        history_id,
    })
}

/// What one batch did.
#[derive(Clone, Copy, Debug, Default)]
pub struct BatchResult {
    /// Rows claimed and deleted from the queue (0: the queue is empty for us).
    pub claimed: i64,
    /// Of those, rows inserted into ClickHouse.
    pub inserted: i64,
}

/// One batch of `queue`, as described in the module docs. On failure the claimed rows
/// stay queued with `attempts + 1` and the error, which is returned.
pub async fn replay_batch(
    state: &AppState,
    queue: Queue,
    batch: i64,
    faults: Faults,
) -> Result<BatchResult, String> {
    let mut tx = state
        .pg
        .begin()
        .await
        .map_err(|e| format!("PostgreSQL: {e}"))?;
    let rows = sqlx::query(&format!(
        "delete from {table} where seq in (
             select seq from {table} order by seq limit $1 for update skip locked)
         returning seq, id, ts, row_json",
        table = queue.table()
    ))
    .bind(batch)
    .fetch_all(&mut *tx)
    .await
    .map_err(|e| format!("PostgreSQL: {e}"))?;
    if rows.is_empty() {
        return Ok(BatchResult::default());
    }
    let mut seqs = Vec::with_capacity(rows.len());
    let mut ids = Vec::with_capacity(rows.len());
    let (mut first, mut last) = (None::<OffsetDateTime>, None::<OffsetDateTime>);
    for row in &rows {
        seqs.push(row.get::<i64, _>("seq"));
        ids.push(row.get::<Uuid, _>("id"));
        let ts: OffsetDateTime = row.get("ts");
        first = Some(first.map_or(ts, |f| f.min(ts)));
        last = Some(last.map_or(ts, |l| l.max(ts)));
    }
    let (first, last) = (
        first.expect("rows is not empty"),
        last.expect("rows is not empty"),
    );
    let outcome = async {
        let present = state
            .clickhouse
            .existing_ids(queue.as_str(), &ids, first.date(), last.date())
            .await
            .map_err(|e| format!("ClickHouse: {e}"))?;
        let missing: Vec<&str> = rows
            .iter()
            .zip(&ids)
            .filter(|(_, id)| !present.contains(id))
            .map(|(row, _)| row.get::<&str, _>("row_json"))
            .collect();
        let inserted = missing.len() as i64;
        let timeout = state.queues.ingest_timeout.max(Duration::from_secs(30));
        tokio::time::timeout(
            timeout,
            state
                .clickhouse
                .insert_lines(queue.as_str(), missing, timeout),
        )
        .await
        .map_err(|_| format!("ClickHouse: no answer within {} s", timeout.as_secs()))?
        .map_err(|e| format!("ClickHouse: {e}"))?;
        if faults.crash_after_insert {
            return Err(
                "injected fault: stopped after the ClickHouse insert, before the commit".to_owned(),
            );
        }
        Ok(inserted)
    }
    .await;
    match outcome {
        Ok(inserted) => {
            tx.commit()
                .await
                .map_err(|e| format!("PostgreSQL commit: {e}"))?;
            Ok(BatchResult {
                claimed: rows.len() as i64,
                inserted,
            })
        }
        Err(message) => {
            drop(tx); // rolls the delete back: the rows are queued again
            record_failure(&state.pg, queue, &seqs, &message).await;
            Err(message)
        }
    }
}

/// `attempts + 1` and the error on the rows of a failed batch, and on the queue.
async fn record_failure(pg: &PgPool, queue: Queue, seqs: &[i64], message: &str) {
    let result = async {
        let mut tx = pg.begin().await?;
        sqlx::query(&format!(
            "update {} set attempts = attempts + 1, last_error = $2, last_attempt_at = now()
              where seq = any($1)",
            queue.table()
        ))
        .bind(seqs)
        .bind(message)
        .execute(&mut *tx)
        .await?;
        sqlx::query!(
            "update fallback_queues set last_error = $2, last_error_at = now() where queue = $1",
            queue.as_str(),
            message
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }
    .await;
    if let Err(error) = result {
        tracing::warn!(%error, "could not record a failed replay attempt");
    }
}

/// Recent runs, newest first, with abandoned ones marked as such. Scheduled runs that
/// found nothing to do are left out (they are in `cron_job_runs`, on `/admin/crons`).
pub async fn recent_runs(pg: &PgPool, limit: i64) -> Result<Vec<ReplayRun>, sqlx::Error> {
    let rows = sqlx::query!(
        "select id, trigger, actor, reason,
                case when status = 'running' and heartbeat_at < now() - make_interval(secs => $2)
                     then 'abandoned' else status end as \"status!\",
                started_at, finished_at, rows_at_start, rows_done, rows_inserted,
                rows_already_present, rows_left, error, cancel_requested
           from replay_runs
          where not (trigger in ('scheduler', 'external') and status = 'succeeded' and rows_done = 0)
          order by id desc limit $1",
        limit,
        ABANDONED_AFTER_SECS as f64
    )
    .fetch_all(pg)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| ReplayRun {
            id: r.id,
            trigger: r.trigger,
            actor: r.actor,
            reason: r.reason,
            status: r.status,
            started_at: unix_ms(r.started_at),
            finished_at: r.finished_at.map(unix_ms),
            rows_at_start: r.rows_at_start,
            rows_done: r.rows_done,
            rows_inserted: r.rows_inserted,
            rows_already_present: r.rows_already_present,
            rows_left: r.rows_left,
            error: r.error,
            cancel_requested: r.cancel_requested,
        })
        .collect())
}
