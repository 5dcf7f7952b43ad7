//! `cron_job_runs`: one row per run of a job, whoever fired it; the runbook's SQL reads
//! it as it is (`job_name`, `ran_at`, `outcome`).
//!
//! The one rule for a dead run: a row still `running` whose heartbeat is older than
//! [`ABANDONED_AFTER`] belongs to a process that stopped. [`status_of`] applies it when
//! runs are read, and [`start`] closes such rows of its job as `abandoned`.

use std::time::Duration;

use sqlx::PgPool;
use time::OffsetDateTime;

use super::{Finished, Job, Report};
use crate::auth::ssr::Actor;
use crate::error::AppError;
use crate::history::ssr::{append, details, NewEntry};
use crate::jobs::{CronRun, RunStatus, Trigger};
use crate::reason::Reason;
use crate::server::{unix_ms, AppState};

details! {
    /// A run a person started, as it ended: the runner writes it when the job wrote no
    /// entry of its own.
    struct RanByHand for Cron {
        job: &'static str,
        run_id: i64,
        trigger: Trigger,
        rows: i64,
        error: Option<String>,
        /// The job's report, as stored with the run.
        details: serde_json::Value,
    }
}

/// How often a working run's heartbeat is written.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(15);

/// A `running` run whose heartbeat is older than this is abandoned: four beats missed.
pub const ABANDONED_AFTER: Duration = Duration::from_secs(60);

/// The time before which a running run's heartbeat is stale, at `now`.
pub fn stale_before(now: OffsetDateTime) -> OffsetDateTime {
    now - ABANDONED_AFTER
}

/// The abandoned rule in SQL, for a feature whose rows point at their run (joined as
/// `run`): the run has ended, or its heartbeat is older than the parameter `$stale`
/// (bind [`stale_before`]). A literal, so a feature's query constants can `concat!` it.
macro_rules! run_gone {
    ($stale:literal) => {
        concat!(
            "(run.outcome <> 'running' or run.heartbeat_at < ",
            $stale,
            ")"
        )
    };
}
pub(crate) use run_gone;

/// Where a call came from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Caller {
    /// The client address of an HTTP call.
    pub addr: Option<String>,
    /// The User-Agent of an HTTP call; the host and process of the scheduler or CLI.
    pub agent: Option<String>,
    /// The cron secret an external call presented.
    pub secret_id: Option<i64>,
}

impl Caller {
    /// This process, as the scheduler or the CLI names itself.
    pub fn this_process(what: &str) -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .or_else(|_| std::env::var("HOSTNAME"))
            .unwrap_or_else(|_| "unknown-host".into());
        Self {
            addr: None,
            agent: Some(format!("{what} on {host} (pid {})", std::process::id())),
            secret_id: None,
        }
    }

    /// The client address (through trusted proxies) and User-Agent of an HTTP request.
    pub fn from_request(
        proxies: &crate::server::client::TrustedProxies,
        parts: &axum::http::request::Parts,
    ) -> Self {
        let agent = parts
            .headers
            .get(axum::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(200).collect());
        Self {
            addr: crate::server::client::client_ip(proxies, parts).map(|ip| ip.to_string()),
            agent,
            secret_id: None,
        }
    }
}

/// Who and why a run starts.
#[derive(Clone, Debug)]
pub struct Firing {
    pub trigger: Trigger,
    pub actor: Actor,
    pub reason: Option<Reason>,
    pub caller: Caller,
    /// The schedule tick, for scheduler runs.
    pub tick: Option<OffsetDateTime>,
}

impl Firing {
    /// A run a person starts (`manual` from the console, `cli` from a terminal).
    pub fn by_hand(trigger: Trigger, actor: Actor, reason: Option<Reason>, caller: Caller) -> Self {
        Self {
            trigger,
            actor,
            reason,
            caller,
            tick: None,
        }
    }
}

/// The status of a stored run at `now`: its outcome, or `abandoned` for a `running` row
/// whose heartbeat is stale.
pub fn status_of(outcome: &str, heartbeat_at: OffsetDateTime, now: OffsetDateTime) -> RunStatus {
    match RunStatus::parse(outcome) {
        Some(RunStatus::Running) if now - heartbeat_at > ABANDONED_AFTER => RunStatus::Abandoned,
        Some(status) => status,
        // The table's check constraint admits only the names of RunStatus.
        None => RunStatus::Failed,
    }
}

/// Inserts the run's row as `running` and returns its id; `None` when `firing.tick` was
/// already claimed by another scheduler. Runs of this job whose process died (a stale
/// heartbeat) are closed as `abandoned` first.
pub async fn start(state: &AppState, job: &Job, firing: &Firing) -> Result<Option<i64>, AppError> {
    let now = state.clock.now();
    let internal = AppError::wrap("Failed to record a run");
    sqlx::query!(
        "update cron_job_runs set outcome = 'abandoned', finished_at = heartbeat_at,
                error = 'abandoned: the process running it stopped before it finished'
          where job_name = $1 and outcome = 'running' and heartbeat_at < $2",
        job.name,
        stale_before(now),
    )
    .execute(&state.pg)
    .await
    .map_err(&internal)?;
    sqlx::query_scalar!(
        "insert into cron_job_runs
            (job_name, ran_at, heartbeat_at, trigger, actor, reason, caller_addr, caller_agent,
             secret_id, tick_at)
         values ($1, $2, $2, $3, $4, $5, $6, $7, $8, $9)
         on conflict (job_name, tick_at) where tick_at is not null do nothing
         returning id",
        job.name,
        now,
        firing.trigger.as_str(),
        firing.actor.name,
        firing.reason.as_ref().map(Reason::as_str),
        firing.caller.addr,
        firing.caller.agent,
        firing.caller.secret_id,
        firing.tick,
    )
    .fetch_optional(&state.pg)
    .await
    .map_err(&internal)
}

/// Closes run `run_id` with what the job returned, in one transaction with the history
/// entry a person's run gets when the job wrote none.
pub(super) async fn finish(
    state: &AppState,
    job: &Job,
    run_id: i64,
    firing: &Firing,
    result: Result<Box<dyn Report>, AppError>,
    elapsed: Duration,
) -> Result<Finished, AppError> {
    let internal = AppError::wrap("Failed to record how a run ended");
    let duration_ms = elapsed.as_millis() as i64;
    let finished_at = state.clock.now();
    let mut finished = Finished::new(run_id, duration_ms, None, result);
    let mut tx = state.pg.begin().await.map_err(&internal)?;
    sqlx::query!(
        "update cron_job_runs set outcome = $2, finished_at = $3, heartbeat_at = $3,
                duration_ms = $4, rows_processed = $5, error = $6, details = $7
          where id = $1",
        run_id,
        finished.status.as_str(),
        finished_at,
        duration_ms,
        finished.rows,
        finished.error,
        finished.details,
    )
    .execute(&mut *tx)
    .await
    .map_err(&internal)?;
    if firing.trigger.by_a_person() && finished.history_id.is_none() {
        let title = match finished.status {
            RunStatus::Failed => format!("Ran {} by hand: failed", job.name),
            status => format!("Ran {} by hand: {status}, {} rows", job.name, finished.rows),
        };
        let details = RanByHand {
            job: job.name,
            run_id,
            trigger: firing.trigger,
            rows: finished.rows,
            error: finished.error.clone(),
            details: finished.details.clone(),
        };
        let entry = NewEntry::new(
            details,
            title,
            &firing.actor,
            finished.status.history_outcome(),
        )
        .with_times(
            finished_at - time::Duration::milliseconds(duration_ms),
            Some(finished_at),
        )
        .with_reason(firing.reason.clone());
        finished.history_id = Some(append(&mut tx, &entry).await.map_err(&internal)?);
    }
    tx.commit().await.map_err(&internal)?;
    match &finished.error {
        Some(error) => tracing::warn!(
            job = job.name,
            run_id,
            trigger = firing.trigger.as_str(),
            status = finished.status.as_str(),
            %error,
            "run failed"
        ),
        None => tracing::info!(
            job = job.name,
            run_id,
            trigger = firing.trigger.as_str(),
            status = finished.status.as_str(),
            rows = finished.rows,
            duration_ms,
            "run finished"
        ),
    }
    Ok(finished)
}

/// The job that keeps this table small: finished runs older than the retention period
/// (`SALVAGE_CRON_RETENTION_DAYS`) are deleted.
pub static PRUNE_CRON_RUNS: Job = Job {
    name: "prune-cron-runs",
    description: "Deletes cron run records older than the retention period.",
    schedule: "41 3 * * *",
    grace: Duration::from_secs(2 * 3600),
    run: run_prune_job,
    permission: crate::auth::Permission::Operate,
    check: None,
};

fn run_prune_job(ctx: super::JobContext) -> super::JobFuture {
    Box::pin(async move {
        let retention = ctx.state.crons().retention;
        let before = ctx.now - retention;
        let rows = prune(&ctx.state.pg, before).await?;
        Ok(Box::new(PruneReport {
            rows,
            retention_days: retention.as_secs() / 86_400,
            before: unix_ms(before),
        }) as Box<dyn Report>)
    })
}

/// What a pruning run did.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PruneReport {
    pub rows: i64,
    pub retention_days: u64,
    /// Runs started before this (Unix ms) were deleted.
    pub before: i64,
}

impl Report for PruneReport {
    fn status(&self) -> RunStatus {
        RunStatus::Succeeded
    }
    fn rows(&self) -> i64 {
        self.rows
    }
    fn details(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// Deletes finished runs that started before `before`; returns how many.
pub async fn prune(pg: &PgPool, before: OffsetDateTime) -> Result<i64, AppError> {
    let result = sqlx::query!(
        "delete from cron_job_runs where ran_at < $1 and outcome <> 'running'",
        before
    )
    .execute(pg)
    .await
    .map_err(AppError::wrap("Failed to prune runs"))?;
    Ok(result.rows_affected() as i64)
}

/// The runs working at `now` (running, heartbeat fresh: not abandoned), of one job or of
/// every job, as (job, run id), oldest first.
pub async fn working(
    pg: &PgPool,
    job: Option<&str>,
    now: OffsetDateTime,
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    Ok(sqlx::query!(
        "select job_name, id from cron_job_runs
          where outcome = 'running' and heartbeat_at >= $2
            and ($1::text is null or job_name = $1)
          order by id",
        job,
        stale_before(now)
    )
    .fetch_all(pg)
    .await?
    .into_iter()
    .map(|row| (row.job_name, row.id))
    .collect())
}

/// The newest `limit` runs, of every job or of one, as of `now`.
pub async fn recent(
    pg: &PgPool,
    job: Option<&str>,
    limit: i64,
    now: OffsetDateTime,
) -> Result<Vec<CronRun>, sqlx::Error> {
    let rows = sqlx::query!(
        "select id, job_name, trigger, ran_at, finished_at, duration_ms, outcome, rows_processed,
                error, actor, reason, caller_addr, caller_agent, heartbeat_at
           from cron_job_runs
          where $1::text is null or job_name = $1
          order by ran_at desc, id desc
          limit $2",
        job,
        limit
    )
    .fetch_all(pg)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| CronRun {
            id: r.id,
            job_name: r.job_name,
            trigger: Trigger::parse(&r.trigger).unwrap_or(Trigger::External),
            ran_at: unix_ms(r.ran_at),
            finished_at: r.finished_at.map(unix_ms),
            duration_ms: r.duration_ms,
            outcome: status_of(&r.outcome, r.heartbeat_at, now),
            rows_processed: r.rows_processed,
            error: r.error,
            actor: r.actor,
            reason: r.reason,
            caller_addr: r.caller_addr,
            caller_agent: r.caller_agent,
        })
        .collect())
}

/// Makes sure every job of `jobs` has its `cron_jobs` row (dropout detection counts
/// expected runs from `first_seen_at`).
pub async fn register_jobs(
    pg: &PgPool,
    jobs: &[&'static Job],
    now: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    let names: Vec<String> = jobs.iter().map(|j| j.name.to_owned()).collect();
    sqlx::query!(
        "insert into cron_jobs (job_name, first_seen_at)
         select name, $2 from unnest($1::text[]) as name
         on conflict (job_name) do nothing",
        &names,
        now
    )
    .execute(pg)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_run_is_abandoned_once_its_heartbeat_is_older_than_the_limit() {
        let now = OffsetDateTime::now_utc();
        let fresh = now - (ABANDONED_AFTER - Duration::from_secs(1));
        let stale = now - (ABANDONED_AFTER + Duration::from_secs(1));
        assert_eq!(status_of("running", fresh, now), RunStatus::Running);
        assert_eq!(status_of("running", stale, now), RunStatus::Abandoned);
        // A finished run keeps its outcome however old its last beat.
        assert_eq!(status_of("succeeded", stale, now), RunStatus::Succeeded);
        assert!(HEARTBEAT_EVERY * 3 < ABANDONED_AFTER);
    }
}
