//! The job registry: every job Salvage runs on a schedule, in one list ([`JOBS`]).
//!
//! A job declares its name (also its route, `/cron/<name>`), what it does, its default
//! schedule, the grace period after a tick before a missing run counts as late, and the
//! time after which a run still marked `running` is taken for dead. Its `run` function
//! is the one function every door calls; [`super::runs::run`] records each run around
//! it. A later feature adds its job by adding one entry here.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde_json::{json, Value};
use time::OffsetDateTime;

use super::super::schedule::Schedule;
use super::super::Trigger;
use crate::auth::ssr::Actor;
use crate::error::AppError;
use crate::server::AppState;

/// What a job's function returns.
pub type JobFuture = Pin<Box<dyn Future<Output = Result<JobOutcome, AppError>> + Send>>;

/// A job.
pub struct Job {
    pub name: &'static str,
    pub description: &'static str,
    /// The default cron expression (UTC); `SALVAGE_CRON_<NAME>` replaces it.
    pub schedule: &'static str,
    /// How long after a tick a missing run is still only "pending", not late.
    pub grace: Duration,
    /// A run still `running` after this long is recorded as abandoned.
    pub timeout: Duration,
    pub run: fn(JobContext) -> JobFuture,
}

impl Job {
    /// The default schedule, parsed (the registry's expressions are tested to parse).
    pub fn default_schedule(&self) -> Schedule {
        Schedule::parse(self.schedule).expect("registry schedules are valid")
    }
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").field("name", &self.name).finish()
    }
}

/// What a run gets to work with.
pub struct JobContext {
    pub state: AppState,
    pub trigger: Trigger,
    pub actor: Actor,
    /// Why, when a person started it.
    pub reason: Option<String>,
    /// The time of the run (the state's clock at its start).
    pub now: OffsetDateTime,
}

/// What a run did.
#[derive(Clone, Debug, PartialEq)]
pub struct JobOutcome {
    /// `succeeded`, `partial` or `failed`.
    pub outcome: &'static str,
    /// Rows the run moved or deleted.
    pub rows: i64,
    pub error: Option<String>,
    /// Job-specific figures, returned by the cron route and kept with the run.
    pub details: Value,
    /// The history entry the job wrote, if it wrote one.
    pub history_id: Option<i64>,
}

/// Every job, in the order the console lists them.
pub static JOBS: &[Job] = &[
    Job {
        name: "replay-fallback",
        description:
            "Replays both fallback queues into ClickHouse (nothing lost, nothing doubled).",
        schedule: "*/5 * * * *",
        grace: Duration::from_secs(5 * 60),
        timeout: Duration::from_secs(30 * 60),
        run: replay_fallback,
    },
    Job {
        name: "expire-fallback",
        description:
            "Deletes queued rows older than the fallback TTL, recording each loss in the history.",
        schedule: "17 * * * *",
        grace: Duration::from_secs(30 * 60),
        timeout: Duration::from_secs(30 * 60),
        run: expire_fallback,
    },
    Job {
        name: "prune-cron-runs",
        description: "Deletes cron run records older than the retention period.",
        schedule: "41 3 * * *",
        grace: Duration::from_secs(2 * 3600),
        timeout: Duration::from_secs(30 * 60),
        run: prune_cron_runs,
    },
];

/// The job named `name`.
pub fn find(name: &str) -> Option<&'static Job> {
    JOBS.iter().find(|job| job.name == name)
}

/// The names of every job, for error messages.
pub fn names() -> Vec<&'static str> {
    JOBS.iter().map(|job| job.name).collect()
}

fn replay_fallback(ctx: JobContext) -> JobFuture {
    Box::pin(async move {
        use crate::queues::ssr::replay::{replay, ReplayOptions};
        let options = ReplayOptions::from_state(&ctx.state);
        let report = replay(
            &ctx.state,
            ctx.trigger,
            &ctx.actor,
            ctx.reason,
            &options,
            |_| {},
        )
        .await?;
        Ok(replay_outcome(&report))
    })
}

/// A replay run's report as a job outcome (`cancelled` and a spent budget are partial).
pub fn replay_outcome(report: &crate::queues::ssr::replay::ReplayReport) -> JobOutcome {
    JobOutcome {
        outcome: match report.status {
            "succeeded" => "succeeded",
            "failed" => "failed",
            _ => "partial",
        },
        rows: report.rows_done,
        error: report.error.clone(),
        details: json!({
            "runId": report.run_id,
            "status": report.status,
            "rowsAtStart": report.rows_at_start,
            "rowsDone": report.rows_done,
            "rowsInserted": report.rows_inserted,
            "rowsAlreadyPresent": report.rows_already_present,
            "rowsLeft": report.rows_left,
        }),
        history_id: report.history_id,
    }
}

fn expire_fallback(ctx: JobContext) -> JobFuture {
    Box::pin(async move {
        let expired = crate::queues::ssr::expiry::expire(
            &ctx.state.pg,
            &ctx.actor,
            ctx.trigger.as_str(),
            ctx.reason,
            ctx.state.queues.ttl,
            ctx.now,
        )
        .await?;
        Ok(JobOutcome {
            outcome: "succeeded",
            rows: expired.iter().map(|e| e.rows).sum(),
            error: None,
            details: json!({
                "ttlHours": ctx.state.queues.ttl.as_secs() / 3600,
                "expired": expired.iter().map(|e| json!({
                    "queue": e.queue.as_str(),
                    "rows": e.rows,
                    "historyId": e.history_id,
                })).collect::<Vec<_>>(),
            }),
            history_id: expired.iter().find_map(|e| e.history_id),
        })
    })
}

fn prune_cron_runs(ctx: JobContext) -> JobFuture {
    Box::pin(async move {
        let retention = ctx.state.crons.retention;
        let before = ctx.now - retention;
        let rows = super::runs::prune(&ctx.state.pg, before).await?;
        Ok(JobOutcome {
            outcome: "succeeded",
            rows,
            error: None,
            details: json!({
                "retentionDays": retention.as_secs() / 86_400,
                "before": crate::server::unix_ms(before),
            }),
            history_id: None,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pages_job_list_is_the_registry() {
        assert_eq!(names(), super::super::super::JOB_NAMES);
    }

    #[test]
    fn every_job_has_a_valid_schedule_a_route_safe_unique_name_and_a_grace_within_one_gap() {
        let mut seen = std::collections::HashSet::new();
        for job in JOBS {
            assert!(seen.insert(job.name), "{} twice", job.name);
            assert!(
                job.name.chars().all(|c| c.is_ascii_lowercase() || c == '-'),
                "{} is not a route-safe name",
                job.name
            );
            // A grace longer than the gap between ticks would hide a missed tick behind
            // the next one.
            let gap = Schedule::parse(job.schedule).unwrap().longest_gap();
            assert!(
                time::Duration::try_from(job.grace).unwrap() <= gap,
                "{}: grace {:?} is longer than its ticks are apart ({gap})",
                job.name,
                job.grace
            );
        }
    }
}
