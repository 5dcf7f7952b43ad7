//! `cron_job_runs`: one row per run of a job, whoever fired it.
//!
//! [`run`] is the only way a job runs: it inserts the row (`running`), calls the job,
//! and closes the row with the outcome, the rows processed and the error. A scheduler
//! run carries its tick, and the unique `(job_name, tick_at)` index makes the insert
//! the claim: of several replicas, the one whose insert lands runs the tick and the
//! others skip it. A person's run (button or CLI) that leaves no history entry of its
//! own gets one here, so the reason they gave is kept.

use std::time::Instant;

use serde_json::json;
use sqlx::PgPool;
use time::OffsetDateTime;

use super::super::{CronRun, Trigger};
use super::jobs::{Job, JobContext, JobOutcome};
use crate::auth::ssr::Actor;
use crate::error::AppError;
use crate::history::ssr::{append, NewEntry};
use crate::history::Outcome;
use crate::server::{unix_ms, AppState};

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

    /// The address and User-Agent of an HTTP request.
    pub fn from_request(parts: &axum::http::request::Parts) -> Self {
        let agent = parts
            .headers
            .get(axum::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(200).collect());
        Self {
            addr: crate::server::client_addr(parts).map(|a| a.ip().to_string()),
            agent,
            secret_id: None,
        }
    }
}

/// Who and why, for [`start`] and [`run`].
#[derive(Clone, Debug)]
pub struct Firing {
    pub trigger: Trigger,
    pub actor: Actor,
    pub reason: Option<String>,
    pub caller: Caller,
    /// The schedule tick, for scheduler runs.
    pub tick: Option<OffsetDateTime>,
}

/// A finished run.
#[derive(Clone, Debug, PartialEq)]
pub struct Finished {
    pub run_id: i64,
    pub outcome: JobOutcome,
    pub duration_ms: i64,
}

fn internal(e: sqlx::Error) -> AppError {
    AppError::internal("Failed to record a cron run", e)
}

/// Inserts the run's row as `running` and returns its id; `None` when `firing.tick` was
/// already claimed by another scheduler. Runs of this job left `running` for longer
/// than its timeout (their process died) are closed as failed first.
pub async fn start(state: &AppState, job: &Job, firing: &Firing) -> Result<Option<i64>, AppError> {
    let now = state.clock.now();
    let stale_before = now - job.timeout;
    sqlx::query!(
        "update cron_job_runs set outcome = 'failed', finished_at = $3,
                error = 'abandoned: the process running it stopped before it finished'
          where job_name = $1 and outcome = 'running' and ran_at < $2",
        job.name,
        stale_before,
        now
    )
    .execute(&state.pg)
    .await
    .map_err(internal)?;
    sqlx::query_scalar!(
        "insert into cron_job_runs
            (job_name, ran_at, trigger, actor, reason, caller_addr, caller_agent, secret_id, tick_at)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         on conflict (job_name, tick_at) where tick_at is not null do nothing
         returning id",
        job.name,
        now,
        firing.trigger.as_str(),
        firing.actor.name,
        firing.reason,
        firing.caller.addr,
        firing.caller.agent,
        firing.caller.secret_id,
        firing.tick,
    )
    .fetch_optional(&state.pg)
    .await
    .map_err(internal)
}

/// Runs `job` for run `run_id` (from [`start`]) and records how it ended.
pub async fn execute(
    state: &AppState,
    job: &Job,
    run_id: i64,
    firing: Firing,
) -> Result<Finished, AppError> {
    let context = JobContext {
        state: state.clone(),
        trigger: firing.trigger,
        actor: firing.actor.clone(),
        reason: firing.reason.clone(),
        now: state.clock.now(),
    };
    let work = (job.run)(context);
    finish_with(state, job, run_id, &firing, work).await
}

/// Awaits `work` (the job's function, or a door's own call of it, like `salvage
/// replay` with its progress bar) and records its outcome on run `run_id`.
pub async fn finish_with(
    state: &AppState,
    job: &Job,
    run_id: i64,
    firing: &Firing,
    work: impl std::future::Future<Output = Result<JobOutcome, AppError>>,
) -> Result<Finished, AppError> {
    let started = Instant::now();
    let outcome = work.await.unwrap_or_else(|error| JobOutcome {
        outcome: "failed",
        rows: 0,
        error: Some(error.to_string()),
        details: json!({}),
        history_id: None,
    });
    let duration_ms = started.elapsed().as_millis() as i64;
    let finished_at = state.clock.now();

    let mut tx = state.pg.begin().await.map_err(internal)?;
    sqlx::query!(
        "update cron_job_runs set outcome = $2, finished_at = $3, duration_ms = $4,
                rows_processed = $5, error = $6, details = $7
          where id = $1",
        run_id,
        outcome.outcome,
        finished_at,
        duration_ms,
        outcome.rows,
        outcome.error,
        outcome.details,
    )
    .execute(&mut *tx)
    .await
    .map_err(internal)?;
    let by_a_person = matches!(firing.trigger, Trigger::Manual | Trigger::Cli);
    if by_a_person && outcome.history_id.is_none() {
        let title = match outcome.outcome {
            "failed" => format!("Ran {} by hand: failed", job.name),
            _ => format!("Ran {} by hand: {} rows", job.name, outcome.rows),
        };
        let entry = NewEntry::new(
            "cron",
            title,
            &firing.actor,
            match outcome.outcome {
                "succeeded" => Outcome::Succeeded,
                "failed" => Outcome::Failed,
                _ => Outcome::Partial,
            },
        )
        .with_times(
            finished_at - time::Duration::milliseconds(duration_ms),
            Some(finished_at),
        )
        .with_reason(firing.reason.clone())
        .with_details(json!({
            "job": job.name, "cron_run_id": run_id, "trigger": firing.trigger.as_str(),
            "rows": outcome.rows, "error": outcome.error, "details": outcome.details,
        }));
        append(&mut tx, &entry).await.map_err(internal)?;
    }
    tx.commit().await.map_err(internal)?;
    match &outcome.error {
        Some(error) => {
            tracing::warn!(job = job.name, run_id, trigger = firing.trigger.as_str(), %error, "cron run failed")
        }
        None => tracing::info!(
            job = job.name,
            run_id,
            trigger = firing.trigger.as_str(),
            rows = outcome.rows,
            duration_ms,
            "cron run finished"
        ),
    }
    Ok(Finished {
        run_id,
        outcome,
        duration_ms,
    })
}

/// Records and runs `job` now. `Ok(None)`: a scheduler tick another replica claimed.
/// A job that fails is `Ok` with a `failed` outcome; `Err` means the run could not be
/// recorded (PostgreSQL is down), so it did not run.
pub async fn run(
    state: &AppState,
    job: &Job,
    firing: Firing,
) -> Result<Option<Finished>, AppError> {
    match start(state, job, &firing).await? {
        Some(run_id) => execute(state, job, run_id, firing).await.map(Some),
        None => Ok(None),
    }
}

/// Records the run and returns its id at once; the job runs in the background (the
/// console's buttons: a replay can take minutes).
pub async fn run_in_background(
    state: &AppState,
    job: &'static Job,
    firing: Firing,
) -> Result<i64, AppError> {
    let run_id = start(state, job, &firing)
        .await?
        .ok_or_else(|| AppError::internal("A manual run was refused", "a tick on a manual run"))?;
    let state = state.clone();
    tokio::spawn(async move {
        if let Err(error) = execute(&state, job, run_id, firing).await {
            tracing::error!(job = job.name, run_id, %error, "cron run not recorded");
        }
    });
    Ok(run_id)
}

/// A person's run of job `name` from the console: recorded as `manual` with the
/// actor, the reason and the request's address and User-Agent; runs in the background.
pub async fn run_by_hand(
    state: &AppState,
    name: &str,
    actor: Actor,
    reason: String,
) -> Result<i64, AppError> {
    let job = super::jobs::find(name).ok_or_else(|| {
        AppError::invalid(
            "job",
            format!(
                "no job is named `{name}`; the jobs are {}",
                super::jobs::names().join(", ")
            ),
        )
    })?;
    let caller = crate::auth::ssr::request_context()
        .map(|(_, parts, _)| Caller::from_request(&parts))
        .unwrap_or_default();
    let firing = Firing {
        trigger: Trigger::Manual,
        actor,
        reason: Some(reason),
        caller,
        tick: None,
    };
    run_in_background(state, job, firing).await
}

/// Deletes finished runs that started before `before`; returns how many.
pub async fn prune(pg: &PgPool, before: OffsetDateTime) -> Result<i64, AppError> {
    let result = sqlx::query!(
        "delete from cron_job_runs where ran_at < $1 and outcome <> 'running'",
        before
    )
    .execute(pg)
    .await
    .map_err(|e| AppError::internal("Failed to prune cron runs", e))?;
    Ok(result.rows_affected() as i64)
}

/// The newest `limit` runs, of every job or of one.
pub async fn recent(
    pg: &PgPool,
    job: Option<&str>,
    limit: i64,
) -> Result<Vec<CronRun>, sqlx::Error> {
    let rows = sqlx::query!(
        "select id, job_name, trigger, ran_at, finished_at, duration_ms, outcome, rows_processed,
                error, actor, reason, caller_addr, caller_agent
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
            trigger: r.trigger,
            ran_at: unix_ms(r.ran_at),
            finished_at: r.finished_at.map(unix_ms),
            duration_ms: r.duration_ms,
            outcome: r.outcome,
            rows_processed: r.rows_processed,
            error: r.error,
            actor: r.actor,
            reason: r.reason,
            caller_addr: r.caller_addr,
            caller_agent: r.caller_agent,
        })
        .collect())
}

/// Makes sure every registered job has its `cron_jobs` row (dropout detection counts
/// expected runs from `first_seen_at`).
pub async fn register_jobs(pg: &PgPool, now: OffsetDateTime) -> Result<(), sqlx::Error> {
    let names: Vec<String> = super::jobs::JOBS
        .iter()
        .map(|j| j.name.to_owned())
        .collect();
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
