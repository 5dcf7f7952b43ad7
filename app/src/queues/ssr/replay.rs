//! Replay: drain both fallback queues into ClickHouse, exactly once. [`REPLAY_FALLBACK`]
//! is the job every door runs; [`drain`] is its engine, which the benchmark measures alone.
//!
//! One batch is one PostgreSQL transaction:
//!
//! 1. `DELETE … WHERE ctid = ANY(ARRAY(SELECT ctid … ORDER BY queued_at LIMIT n FOR UPDATE
//!    SKIP LOCKED)) RETURNING …` ([`claim_sql`]) claims the oldest unclaimed rows (other
//!    replayers skip them) and deletes them, uncommitted;
//! 2. ClickHouse is asked which of their ids it already holds (bounded by the batch's
//!    dates, so the sort key answers);
//! 3. the missing rows are inserted in one INSERT;
//! 4. the transaction commits.
//!
//! A failure or a kill anywhere before 4 rolls the delete back, so the rows are still
//! queued; a row that reached ClickHouse in 3 is found by 2 next time and not sent again.
//! Nothing is lost (rows leave PostgreSQL only after ClickHouse has them) and nothing is
//! doubled (ClickHouse is asked before every insert, and the claim's row locks keep a
//! row from being claimed by two replayers). A batch that fails gets
//! `attempts + 1` and the error, and the run stops: the store is not ready.
//!
//! The cost of a batch is one claim-and-delete statement, one ClickHouse lookup (its ids
//! sent as an external table) and one ClickHouse insert. With two batches in flight, one
//! batch's PostgreSQL work overlaps the other's ClickHouse round trips, so replay runs at
//! about three quarters of a bare `DELETE … RETURNING` (see `salvage bench replay`).

use crate::stores::StoreError;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sqlx::{PgPool, Row};
use time::OffsetDateTime;
use uuid::Uuid;

use super::super::{Queue, ReplayRun};
use super::stats::{queue_depths, sample_depths};
use crate::error::AppError;
use crate::history::ssr::{append, NewEntry};
use crate::jobs::ssr::{records, Job, JobContext, JobFuture, Report, Tracker};
use crate::jobs::{RunStatus, Trigger};
use crate::server::{unix_ms, AppState};

crate::history::ssr::details! {
    /// A replay of the fallback queues into ClickHouse, as it ended.
    struct Replayed for Replay {
        run_id: i64,
        trigger: Trigger,
        rows_at_start: i64,
        rows_done: i64,
        rows_inserted: i64,
        /// Rows ClickHouse already held (a replay that ran before was cut off).
        rows_already_present: i64,
        rows_left: i64,
        batch: i64,
        error: Option<String>,
        duration_ms: i64,
    }
}

/// The replay job: the one function behind the Replay button, `/cron/replay-fallback`,
/// the scheduler, `salvage cron run replay-fallback` and `salvage replay`.
pub static REPLAY_FALLBACK: Job = Job {
    name: super::super::REPLAY_JOB,
    description: "Replays both fallback queues into ClickHouse (nothing lost, nothing doubled).",
    schedule: "*/5 * * * *",
    grace: Duration::from_secs(5 * 60),
    run: run_replay_job,
    permission: crate::auth::Permission::Operate,
    check: None,
};

fn run_replay_job(ctx: JobContext) -> JobFuture {
    Box::pin(async move {
        let report = replay(&ctx).await?;
        Ok(Box::new(report) as Box<dyn Report>)
    })
}

/// Failures injected by tests at the one point that matters most (from
/// `AppState::faults`, which only test builds can set).
#[derive(Clone, Copy, Debug, Default)]
pub struct Faults {
    /// Fail after the ClickHouse insert of each batch and before the PostgreSQL commit,
    /// as a process killed there would (the run stops at the first).
    pub crash_after_insert: bool,
}

/// Why a replay stopped early while a restore holds the write freeze.
pub const FROZEN: &str =
    "a restore has frozen the stores; the rows wait in the queue until it ends";

/// Batches a run keeps in flight: two overlap one batch's PostgreSQL work with the
/// other's ClickHouse round trips (measured with `salvage bench replay`).
pub const DEFAULT_PARALLEL: usize = 2;

/// Rows per batch unless `SALVAGE_REPLAY_BATCH` says otherwise. Larger batches mean fewer
/// ClickHouse parts to merge and fewer lookups, each of which reads about the same number
/// of granules whatever the batch size: on two cores 20,000 rows replayed 193k rows/s
/// against 153k with 5,000, for 26 MB more memory (`salvage bench replay --batch N`).
pub const DEFAULT_BATCH: i64 = 20_000;

/// The replay batch sizes `SALVAGE_REPLAY_BATCH` and `salvage bench replay --batch`
/// accept: below 100 rows a batch is mostly round trips; the two batches in flight are
/// held in memory, and with 50,000 rows each the bench already peaked at 136 MB.
pub const BATCH_RANGE: std::ops::RangeInclusive<u64> = 100..=50_000;

/// A replay batch size outside [`BATCH_RANGE`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a replay batch is {} to {} rows", BATCH_RANGE.start(), BATCH_RANGE.end())]
pub struct BatchOutOfRange;

/// `rows` as a replay batch size: the one check of every door that takes one (the
/// setting, `salvage replay --batch`, `salvage bench replay --batch`).
pub fn batch_size(rows: i64) -> Result<i64, BatchOutOfRange> {
    u64::try_from(rows)
        .is_ok_and(|rows| BATCH_RANGE.contains(&rows))
        .then_some(rows)
        .ok_or(BatchOutOfRange)
}

/// How the engine drains.
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
    /// The configured batch size, parallelism and budget.
    pub fn from_state(state: &AppState) -> Self {
        Self {
            batch: state.queues().replay_batch,
            parallel: state.queues().replay_parallel,
            budget: state.queues().replay_budget,
            faults: Faults {
                crash_after_insert: state.faults.replay_crash_after_insert(),
            },
        }
    }
}

/// What a replay run did: the job's report, kept as the run's `details`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplayReport {
    /// `succeeded`, `partial` (budget spent), `cancelled` or `failed`.
    pub status: RunStatus,
    pub rows_at_start: i64,
    /// Rows taken off the queues.
    pub rows_done: i64,
    /// Of those, rows inserted into ClickHouse now.
    pub rows_inserted: i64,
    /// Of those, rows ClickHouse already had (a previous run died after its insert).
    pub rows_already_present: i64,
    /// Rows still queued at the end.
    pub rows_left: i64,
    /// Rows per batch.
    #[serde(default)]
    pub batch: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The history entry of the run (scheduled runs that found nothing write none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_id: Option<i64>,
}

impl Report for ReplayReport {
    fn status(&self) -> RunStatus {
        self.status
    }
    fn rows(&self) -> i64 {
        self.rows_done
    }
    fn error(&self) -> Option<String> {
        self.error.clone()
    }
    fn history_id(&self) -> Option<i64> {
        self.history_id
    }
    fn details(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// What [`drain`] did.
#[derive(Clone, Debug, PartialEq)]
pub struct Drained {
    pub status: RunStatus,
    pub rows_done: i64,
    pub rows_inserted: i64,
    pub error: Option<String>,
    pub elapsed: Duration,
}

/// Rows queued in both queues.
pub async fn total_depth(pg: &PgPool) -> Result<i64, sqlx::Error> {
    Ok(queue_depths(pg).await?.iter().map(|(_, d)| d).sum())
}

/// The replay job: drains both queues, then records the run's entry in the history
/// (unless a scheduled run found nothing to do) and samples the depths.
async fn replay(ctx: &JobContext) -> Result<ReplayReport, AppError> {
    let internal = AppError::wrap("Replay bookkeeping failed");
    let state = &ctx.state;
    let mut options = ReplayOptions::from_state(state);
    if let Some(batch) = ctx.batch {
        options.batch = batch;
    }
    if let Some(budget) = ctx.budget {
        options.budget = budget;
    }
    let rows_at_start = total_depth(&state.pg).await.map_err(&internal)?;
    ctx.tracker.report(0, rows_at_start).await?;
    let drained = drain(state, &options, rows_at_start, Some(&ctx.tracker)).await?;
    let left = total_depth(&state.pg).await.map_err(&internal)?;
    let done = drained.rows_done;
    let mut report = ReplayReport {
        status: drained.status,
        rows_at_start,
        rows_done: done,
        rows_inserted: drained.rows_inserted,
        rows_already_present: done - drained.rows_inserted,
        rows_left: left,
        batch: options.batch,
        error: drained.error.clone(),
        history_id: None,
    };
    let scheduled = matches!(ctx.trigger, Trigger::Scheduler | Trigger::External);
    if !(scheduled && done == 0 && report.error.is_none()) {
        let title = match report.status {
            RunStatus::Succeeded => format!("Replayed {done} queued rows into ClickHouse"),
            RunStatus::Partial if report.error.as_deref() == Some(FROZEN) => {
                format!("Replay waited for a restore: {done} rows replayed, {left} left")
            }
            RunStatus::Partial => {
                format!("Replay stopped at its time budget: {done} rows replayed, {left} left")
            }
            RunStatus::Cancelled => format!("Replay cancelled: {done} rows replayed, {left} left"),
            _ => format!("Replay failed after {done} rows; {left} left"),
        };
        let details = Replayed {
            run_id: ctx.run_id,
            trigger: ctx.trigger,
            rows_at_start,
            rows_done: done,
            rows_inserted: report.rows_inserted,
            rows_already_present: report.rows_already_present,
            rows_left: left,
            batch: options.batch,
            error: report.error.clone(),
            duration_ms: drained.elapsed.as_millis() as i64,
        };
        let entry = NewEntry::new(details, title, &ctx.actor, report.status.history_outcome())
            .with_times(ctx.now, Some(state.clock.now()))
            .with_reason(ctx.reason.clone());
        let mut tx = state.pg.begin().await.map_err(&internal)?;
        report.history_id = Some(append(&mut tx, &entry).await.map_err(&internal)?);
        tx.commit().await.map_err(&internal)?;
    }
    if let Err(e) = sample_depths(&state.pg, state.clock.now()).await {
        tracing::debug!(error = %e, "depth sample not recorded");
    }
    Ok(report)
}

/// Drains the queues until they are empty, the budget is spent, a batch fails or the
/// run is asked to stop (checked before each batch starts, so a batch is never cut in
/// half). `options.parallel` batches are in flight at once, and a new one starts as soon
/// as one ends: each claims its own rows (SKIP LOCKED), so while one waits for
/// ClickHouse another is in PostgreSQL, without any batch waiting for a slower sibling.
/// Once a batch fails, finds the queue empty or meets the freeze, no new batch starts,
/// and those in flight finish (each commits or rolls back on its own).
/// With a tracker, each finished batch is reported as progress (`rows_at_start` is the
/// total). The engine alone: the job above records the run; `salvage bench` calls this
/// directly to measure it.
pub async fn drain(
    state: &AppState,
    options: &ReplayOptions,
    rows_at_start: i64,
    tracker: Option<&Tracker>,
) -> Result<Drained, AppError> {
    use futures::stream::{FuturesUnordered, StreamExt};
    let started = Instant::now();
    let (mut done, mut inserted) = (0i64, 0i64);
    // Why the run stopped early, if it did (a failure outranks the freeze, which
    // outranks the budget and a cancel).
    let mut failure: Option<String> = None;
    let mut frozen = false;
    let mut halted: Option<RunStatus> = None;
    let mut bookkeeping: Option<AppError> = None;
    for queue in Queue::ALL {
        let mut in_flight = FuturesUnordered::new();
        let mut empty = false;
        loop {
            while !empty
                && failure.is_none()
                && !frozen
                && halted.is_none()
                && bookkeeping.is_none()
                && in_flight.len() < options.parallel.max(1)
            {
                if tracker.is_some_and(Tracker::is_cancelled) {
                    halted = Some(RunStatus::Cancelled);
                } else if started.elapsed() >= options.budget {
                    halted = Some(RunStatus::Partial);
                } else {
                    in_flight.push(replay_batch(state, queue, options.batch, options.faults));
                }
            }
            let Some(batch) = in_flight.next().await else {
                break;
            };
            match batch {
                Ok(batch) => {
                    frozen |= batch.frozen;
                    empty |= batch.claimed == 0;
                    done += batch.claimed;
                    inserted += batch.inserted;
                    if batch.claimed > 0 {
                        if let Some(tracker) = tracker {
                            if let Err(e) = tracker.report(done, rows_at_start).await {
                                bookkeeping = bookkeeping.or(Some(e));
                            }
                        }
                    }
                }
                Err(error) => {
                    failure = failure.or(Some(format!("{}: {error}", queue.as_str())));
                }
            }
        }
        if failure.is_some() || frozen || halted.is_some() || bookkeeping.is_some() {
            break;
        }
    }
    if let Some(error) = bookkeeping {
        return Err(error);
    }
    let (status, error) = match (failure, frozen, halted) {
        (Some(message), _, _) => (RunStatus::Failed, Some(message)),
        (None, true, _) => (RunStatus::Partial, Some(FROZEN.to_owned())),
        (None, false, Some(status)) => (status, None),
        (None, false, None) => (RunStatus::Succeeded, None),
    };
    let elapsed = started.elapsed();
    tracing::info!(
        status = status.as_str(),
        rows = done,
        inserted,
        "replay drained"
    );
    Ok(Drained {
        status,
        rows_done: done,
        rows_inserted: inserted,
        error,
        elapsed,
    })
}

/// What one batch did.
#[derive(Clone, Copy, Debug, Default)]
pub struct BatchResult {
    /// Rows claimed and deleted from the queue (0: the queue is empty for us).
    pub claimed: i64,
    /// Of those, rows inserted into ClickHouse.
    pub inserted: i64,
    /// A restore has frozen the stores: nothing was claimed, and the run stops.
    pub frozen: bool,
}

/// Why a batch failed; its rows stay queued.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("ClickHouse: no answer within {0} s")]
    Timeout(u64),
    /// A test's fault, injected between the insert and the commit.
    #[error("injected fault: stopped after the ClickHouse insert, before the commit")]
    Injected,
}

/// One batch of `queue`, as described in the module docs. On failure the claimed rows
/// stay queued with `attempts + 1` and the error, which is returned.
pub async fn replay_batch(
    state: &AppState,
    queue: Queue,
    batch: i64,
    faults: Faults,
) -> Result<BatchResult, BatchError> {
    let mut tx = state.pg.begin().await.map_err(StoreError::postgres)?;
    // Held until this batch commits: a restore's freeze waits for it.
    if crate::freeze::ssr::hold_unless_frozen(&mut tx)
        .await
        .map_err(StoreError::postgres)?
    {
        return Ok(BatchResult {
            frozen: true,
            ..BatchResult::default()
        });
    }
    let rows = sqlx::query(&claim_sql(queue.table()))
        .bind(batch)
        .fetch_all(&mut *tx)
        .await
        .map_err(StoreError::postgres)?;
    if rows.is_empty() {
        return Ok(BatchResult::default());
    }
    let mut ids = Vec::with_capacity(rows.len());
    let mut organizations = Vec::with_capacity(rows.len());
    let (mut first, mut last) = (None::<OffsetDateTime>, None::<OffsetDateTime>);
    for row in &rows {
        ids.push(row.get::<Uuid, _>("id"));
        organizations.push(row.get::<String, _>("organization_id"));
        let ts: OffsetDateTime = row.get("ts");
        first = Some(first.map_or(ts, |f| f.min(ts)));
        last = Some(last.map_or(ts, |l| l.max(ts)));
    }
    let (first, last) = (
        first.expect("rows is not empty"),
        last.expect("rows is not empty"),
    );
    let timeout = state.queues().ingest_timeout.max(Duration::from_secs(30));
    let outcome = async {
        let present = state
            .clickhouse
            .existing_rows(queue.as_str(), &ids, first.date(), last.date(), timeout)
            .await
            .map_err(StoreError::clickhouse)?;
        let missing: Vec<&str> = rows
            .iter()
            .zip(organizations.iter().zip(&ids))
            .filter(|(_, (organization, id))| {
                present.is_empty() || !present.contains(&((*organization).clone(), **id))
            })
            .map(|(row, _)| row.get::<&str, _>("row_json"))
            .collect();
        let inserted = missing.len() as i64;
        tokio::time::timeout(
            timeout,
            state
                .clickhouse
                .insert_lines(queue.as_str(), missing, timeout),
        )
        .await
        .map_err(|_| BatchError::Timeout(timeout.as_secs()))?
        .map_err(StoreError::clickhouse)?;
        if faults.crash_after_insert {
            return Err(BatchError::Injected);
        }
        Ok(inserted)
    }
    .await;
    match outcome {
        Ok(inserted) => {
            tx.commit()
                .await
                .map_err(|e| StoreError::postgres(format!("commit: {e}")))?;
            use crate::server::metrics::{REPLAY_BATCHES, REPLAY_ROWS};
            let labels = [queue.as_str()];
            state.metrics.add(&REPLAY_ROWS, &labels, rows.len() as u64);
            state.metrics.add(&REPLAY_BATCHES, &labels, 1);
            Ok(BatchResult {
                claimed: rows.len() as i64,
                inserted,
                frozen: false,
            })
        }
        Err(error) => {
            drop(tx); // rolls the delete back: the rows are queued again
            record_failure(
                &state.pg,
                queue,
                (&ids, &organizations),
                &error.to_string(),
                state.clock.now(),
            )
            .await;
            Err(error)
        }
    }
}

/// The claim of one batch: deletes (uncommitted) the `$1` oldest rows of `table` that no
/// other replayer holds, and returns them. Oldest by `queued_at`, the index expiry also
/// reads, so a queued row pays for no index of replay's own; the rows are deleted by
/// their `ctid`, which the row lock taken with them keeps from changing.
pub fn claim_sql(table: &str) -> String {
    format!(
        "delete from {table} where ctid = any(array(
             select ctid from {table} order by queued_at limit $1 for update skip locked))
         returning organization_id, id, ts, row_json"
    )
}

/// `attempts + 1` and the error on the rows of a failed batch, and on the queue.
async fn record_failure(
    pg: &PgPool,
    queue: Queue,
    (ids, organizations): (&[Uuid], &[String]),
    message: &str,
    at: OffsetDateTime,
) {
    let result = async {
        let mut tx = pg.begin().await?;
        // By the rows' key: the rows are queued again, and another replayer may already
        // have claimed and deleted some of them, which then match nothing.
        sqlx::query(&format!(
            "update {} set attempts = attempts + 1, last_error = $3, last_attempt_at = $4
              where (id, organization_id) in (select * from unnest($1::uuid[], $2::text[]))",
            queue.table()
        ))
        .bind(ids)
        .bind(organizations)
        .bind(message)
        .bind(at)
        .execute(&mut *tx)
        .await?;
        sqlx::query!(
            "update fallback_queues set last_error = $2, last_error_at = $3 where queue = $1",
            queue.as_str(),
            message,
            at
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

/// Recent replay runs, newest first, as of `now`. Scheduled runs that found nothing to
/// do are left out (they are in `cron_job_runs`, on `/admin/crons`).
pub async fn recent_runs(
    pg: &PgPool,
    limit: i64,
    now: OffsetDateTime,
) -> Result<Vec<ReplayRun>, sqlx::Error> {
    let rows = sqlx::query!(
        "select id, trigger, actor, reason, outcome, ran_at, finished_at, heartbeat_at,
                progress_done, progress_total, error, cancel_requested, details
           from cron_job_runs
          where job_name = $2
            and not (trigger in ('scheduler', 'external') and outcome = 'succeeded'
                     and coalesce(rows_processed, 0) = 0)
          order by id desc limit $1",
        limit,
        REPLAY_FALLBACK.name,
    )
    .fetch_all(pg)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            // The final figures once the run has ended; the live progress until then.
            let report = serde_json::from_value::<ReplayReport>(r.details).ok();
            ReplayRun {
                id: r.id,
                trigger: Trigger::parse(&r.trigger).unwrap_or(Trigger::External),
                actor: r.actor,
                reason: r.reason,
                status: records::status_of(&r.outcome, r.heartbeat_at, now),
                started_at: unix_ms(r.ran_at),
                finished_at: r.finished_at.map(unix_ms),
                rows_at_start: report
                    .as_ref()
                    .map(|f| f.rows_at_start)
                    .or(r.progress_total)
                    .unwrap_or(0),
                rows_done: report
                    .as_ref()
                    .map(|f| f.rows_done)
                    .or(r.progress_done)
                    .unwrap_or(0),
                rows_already_present: report.as_ref().map(|f| f.rows_already_present),
                rows_left: report.as_ref().map(|f| f.rows_left),
                error: r.error,
                cancel_requested: r.cancel_requested,
            }
        })
        .collect())
}
