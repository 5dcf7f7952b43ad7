//! The runner (server only): what a job is, what a run gets, and the one way a job runs.
//!
//! [`run`] inserts the run's row (`running`), calls the job with a [`JobContext`],
//! beats the row's heartbeat every [`HEARTBEAT_EVERY`] while the job works, and closes
//! the row with the job's [`Report`]. A run by a person that wrote no history entry of
//! its own gets one, so the reason they gave is kept. A scheduler run carries its tick,
//! and the unique `(job_name, tick_at)` index makes the insert the claim: of several
//! replicas, the one whose insert lands runs the tick.
//!
//! Stopping a run: every run has a cancellation token, a child of the process's
//! shutdown token ([`AppState::shutdown`]). It is cancelled by SIGTERM or Ctrl-C (the
//! whole process stops), or by a Cancel pressed on any replica (the row's
//! `cancel_requested`, read with each heartbeat and progress report). A job checks
//! [`Tracker::is_cancelled`] between its steps and returns a `cancelled` report.

pub mod background;
mod progress;
pub mod records;

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use serde_json::Value;
use time::OffsetDateTime;

pub use progress::{OnProgress, Progress, Tracker};
pub(crate) use records::run_gone;
pub use records::{stale_before, Caller, Firing, ABANDONED_AFTER, HEARTBEAT_EVERY};

use super::{RunStatus, Trigger};
use crate::auth::ssr::Actor;
use crate::error::AppError;
use crate::jobs::schedule::Schedule;
use crate::server::AppState;

/// What a job's function returns: its typed report, or an error (the run then failed).
pub type JobFuture = Pin<Box<dyn Future<Output = Result<Box<dyn Report>, AppError>> + Send>>;

/// What a job's input check returns: `Ok` to record the run, or the refusal (a 4xx
/// naming the field) with nothing written.
pub type CheckFuture = Pin<Box<dyn Future<Output = Result<(), AppError>> + Send>>;

/// The schedule of a job that runs only when asked, with its input (a restore): the
/// scheduler, `/cron/<job>` and the crons page never see it (it is not in `state.jobs()`
/// but in `state.on_demand_jobs()`).
pub const ON_DEMAND: &str = "";

/// A job: one function and what the scheduler and the dropout figures need to know.
pub struct Job {
    /// Also its route, `/cron/<name>`, and its `SALVAGE_CRON_<NAME>` variable.
    pub name: &'static str,
    pub description: &'static str,
    /// The default cron expression (UTC); `SALVAGE_CRON_<NAME>` replaces it.
    pub schedule: &'static str,
    /// How long after a tick a missing run is still only "pending", not late.
    pub grace: Duration,
    pub run: fn(JobContext) -> JobFuture,
    /// Who may start it by hand and cancel its runs (the console's doors check it).
    pub permission: crate::auth::Permission,
    /// For a job that takes input ([`JobContext::input`]): checks the input before the
    /// run is recorded, so a door's mistake is a 4xx and writes nothing.
    pub check: Option<fn(AppState, Actor, Value) -> CheckFuture>,
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

/// The job named `name` in `jobs`.
pub fn find(jobs: &[&'static Job], name: &str) -> Option<&'static Job> {
    jobs.iter().copied().find(|job| job.name == name)
}

/// The job named `name`, scheduled or on demand: what a person may start by hand.
pub fn find_any(state: &AppState, name: &str) -> Option<&'static Job> {
    find(state.jobs(), name).or_else(|| find(state.on_demand_jobs(), name))
}

/// The names of `jobs`, for a message saying which exist.
pub fn names(jobs: &[&'static Job]) -> String {
    jobs.iter().map(|j| j.name).collect::<Vec<_>>().join(", ")
}

/// What a door may add to a run besides who and why. `None` keeps the configured value.
#[derive(Clone, Default)]
pub struct RunOptions {
    /// Rows per batch, for a job that works in batches (replay).
    pub batch: Option<i64>,
    /// How long the run may work before it stops as `partial`, for a job that has a
    /// budget (replay). `salvage replay` without `--budget-secs` has none.
    pub budget: Option<Duration>,
    /// Called with each progress report (the terminal's progress bar).
    pub on_progress: Option<OnProgress>,
    /// The ids a job is asked to work on instead of its default choice (the backups a
    /// drill restores); empty for the default.
    pub targets: Vec<i64>,
    /// The input of a job that takes one (a restore's request), as JSON; `Null` for the
    /// others. The job reads it typed with [`JobContext::input`].
    pub input: Value,
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("batch", &self.batch)
            .field("budget", &self.budget)
            .field("on_progress", &self.on_progress.is_some())
            .field("targets", &self.targets)
            .field("input", &self.input)
            .finish()
    }
}

/// What a run gets to work with.
pub struct JobContext {
    pub state: AppState,
    /// The run's id (its `cron_job_runs` row).
    pub run_id: i64,
    pub trigger: Trigger,
    pub actor: Actor,
    /// Why, when a person started it.
    pub reason: Option<crate::reason::Reason>,
    pub batch: Option<i64>,
    pub budget: Option<Duration>,
    /// See [`RunOptions::targets`].
    pub targets: Vec<i64>,
    /// See [`RunOptions::input`].
    pub input: Value,
    /// The time of the run (the state's clock at its start).
    pub now: OffsetDateTime,
    /// The schedule tick, for a scheduler's run.
    pub tick: Option<OffsetDateTime>,
    /// Progress reports, and whether to stop.
    pub tracker: Tracker,
}

impl JobContext {
    /// The run's input, typed (a 422 naming `input` when it does not read as `T`).
    pub fn input<T: serde::de::DeserializeOwned>(&self) -> Result<T, AppError> {
        read_input(self.input.clone())
    }
}

/// A job's input read as `T`: what its check and its run both read it with (a 422 naming
/// `input` when it does not read).
pub fn read_input<T: serde::de::DeserializeOwned>(input: Value) -> Result<T, AppError> {
    serde_json::from_value(input)
        .map_err(|e| AppError::invalid("input", format!("the job's input does not read: {e}")))
}

/// A job's typed report of what its run did. It becomes JSON only where it is stored
/// (`cron_job_runs.details`) or sent (`/cron/<job>`); a door reads it back typed with
/// [`Finished::report`].
pub trait Report: Any + Send + Sync + std::fmt::Debug {
    /// How the run ended.
    fn status(&self) -> RunStatus;
    /// Rows the run moved or deleted.
    fn rows(&self) -> i64;
    /// Why it failed, when it did.
    fn error(&self) -> Option<String> {
        None
    }
    /// The history entry the job wrote, if it wrote one.
    fn history_id(&self) -> Option<i64> {
        None
    }
    /// The figures kept with the run and returned by the cron route.
    fn details(&self) -> Value;
}

/// A finished run, as every door gets it back.
#[derive(Debug)]
pub struct Finished {
    pub run_id: i64,
    pub status: RunStatus,
    pub rows: i64,
    pub error: Option<String>,
    pub duration_ms: i64,
    /// The report as stored.
    pub details: Value,
    /// The history entry of the run: the job's own, or the runner's for a person's run.
    pub history_id: Option<i64>,
    report: Option<Box<dyn Report>>,
}

impl Finished {
    /// The job's report, typed; `None` when the job failed before reporting or the
    /// report is of another job.
    pub fn report<R: Report>(&self) -> Option<&R> {
        let report: &dyn Any = self.report.as_deref()?;
        report.downcast_ref()
    }
}

/// Records and runs `job` now, and waits for it. `Ok(None)`: a scheduler tick another
/// replica claimed. A job that fails is `Ok` with a `failed` status; `Err` means the run
/// could not be recorded (PostgreSQL is down), so it did not run.
pub async fn run(
    state: &AppState,
    job: &'static Job,
    firing: Firing,
    options: RunOptions,
) -> Result<Option<Finished>, AppError> {
    check(state, job, &firing, &options.input).await?;
    match records::start(state, job, &firing).await? {
        Some(run_id) => execute(state, job, run_id, firing, options).await.map(Some),
        None => Ok(None),
    }
}

/// Records the run and returns its id at once; the job runs in a task the process owns
/// (the console's buttons: a replay can take minutes). On shutdown the process waits
/// for it to stop after its current step.
pub async fn run_in_background(
    state: &AppState,
    job: &'static Job,
    firing: Firing,
    input: Value,
) -> Result<i64, AppError> {
    check(state, job, &firing, &input).await?;
    let run_id = records::start(state, job, &firing)
        .await?
        .ok_or_else(|| AppError::internal("A manual run was refused", "a tick on a manual run"))?;
    let task_state = state.clone();
    state.tasks.spawn(async move {
        let options = RunOptions {
            input,
            ..RunOptions::default()
        };
        if let Err(error) = execute(&task_state, job, run_id, firing, options).await {
            tracing::error!(job = job.name, run_id, %error, "run not recorded");
        }
    });
    Ok(run_id)
}

/// A person's run of the job named `name` from the console, in the background: recorded
/// as `manual` with the actor, the reason (refused when blank) and the caller the door
/// read from its request. Returns the run's id.
pub async fn start_by_hand(
    state: &AppState,
    name: &str,
    actor: Actor,
    reason: crate::reason::Reason,
    caller: Caller,
    input: Value,
) -> Result<i64, AppError> {
    let job = find_any(state, name).ok_or_else(|| {
        AppError::invalid(
            "job",
            format!(
                "no job is named `{name}`; the jobs are {}",
                names(state.jobs())
            ),
        )
    })?;
    actor.authorize(job.permission)?;
    let firing = Firing::by_hand(Trigger::Manual, actor, Some(reason), caller);
    run_in_background(state, job, firing, input).await
}

/// Runs `job`'s input check, when it has one, before anything is recorded.
async fn check(
    state: &AppState,
    job: &'static Job,
    firing: &Firing,
    input: &Value,
) -> Result<(), AppError> {
    match job.check {
        Some(check) => check(state.clone(), firing.actor.clone(), input.clone()).await,
        None => Ok(()),
    }
}

crate::history::ssr::details! {
    /// A person asked a run to stop.
    struct CancelRequested for Cron {
        run_id: i64,
        job: String,
        cancel: bool,
    }
}

/// Asks run `run_id` to stop after its current step (any replica's run reads the flag
/// with its next heartbeat or progress report) and records who asked, in the same
/// transaction: a cancel is in the history exactly when it was asked. A run that is not
/// running is a conflict and changes nothing.
pub async fn cancel(state: &AppState, run_id: i64, actor: &Actor) -> Result<(), AppError> {
    use crate::history::ssr::{append, NewEntry};
    let failed = AppError::wrap("Cancel a run");
    let mut tx = state.pg.begin().await.map_err(&failed)?;
    let job = sqlx::query_scalar!(
        "update cron_job_runs set cancel_requested = true
          where id = $1 and outcome = 'running' returning job_name",
        run_id
    )
    .fetch_optional(&mut *tx)
    .await
    .map_err(&failed)?;
    let Some(job) = job else {
        return Err(AppError::Conflict {
            message: format!("Run #{run_id} is not running."),
        });
    };
    if let Some(found) = find_any(state, &job) {
        actor.authorize(found.permission)?;
    }
    let title = format!("Cancel requested for {job} run #{run_id}");
    let details = CancelRequested {
        run_id,
        job,
        cancel: true,
    };
    let entry = NewEntry::new(details, title, actor, crate::history::Outcome::Info);
    append(&mut tx, &entry).await.map_err(&failed)?;
    tx.commit().await.map_err(&failed)
}

/// Runs `job` for run `run_id` (from [`records::start`]) and records how it ended.
async fn execute(
    state: &AppState,
    job: &'static Job,
    run_id: i64,
    firing: Firing,
    options: RunOptions,
) -> Result<Finished, AppError> {
    let tracker = Tracker::new(state, run_id, options.on_progress.clone());
    let context = JobContext {
        state: state.clone(),
        run_id,
        trigger: firing.trigger,
        actor: firing.actor.clone(),
        reason: firing.reason.clone(),
        batch: options.batch,
        budget: options.budget,
        targets: options.targets.clone(),
        input: options.input.clone(),
        now: state.clock.now(),
        tick: firing.tick,
        tracker: tracker.clone(),
    };
    let started = Instant::now();
    let work = (job.run)(context);
    tokio::pin!(work);
    let mut heartbeat = tokio::time::interval(HEARTBEAT_EVERY);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    heartbeat.tick().await; // the first tick is immediate; the start wrote the first beat
    let result = loop {
        tokio::select! {
            result = &mut work => break result,
            _ = heartbeat.tick() => tracker.beat().await,
        }
    };
    let elapsed = started.elapsed();
    if let Err(error) = &result {
        error.report(&format!("run {run_id} of {}", job.name));
    }
    let finished = records::finish(state, job, run_id, &firing, result, elapsed).await?;
    let labels = [job.name, finished.status.as_str()];
    state
        .metrics
        .add(&crate::server::metrics::CRON_RUNS, &labels, 1);
    Ok(finished)
}

impl Finished {
    pub(crate) fn new(
        run_id: i64,
        duration_ms: i64,
        history_id: Option<i64>,
        result: Result<Box<dyn Report>, AppError>,
    ) -> Self {
        match result {
            Ok(report) => Self {
                run_id,
                status: report.status(),
                rows: report.rows(),
                error: report.error(),
                duration_ms,
                details: report.details(),
                history_id: report.history_id().or(history_id),
                report: Some(report),
            },
            Err(error) => Self {
                run_id,
                status: RunStatus::Failed,
                rows: 0,
                error: Some(error.to_string()),
                duration_ms,
                details: Value::Object(Default::default()),
                history_id,
                report: None,
            },
        }
    }
}

/// The composition root's lists of jobs, handed down as the state's part so that code
/// below the root never imports upward.
#[derive(Clone, Copy)]
pub struct JobLists {
    /// Every job (`registry::JOBS`).
    pub all: &'static [&'static Job],
    /// The jobs that run only when asked, with their input (`registry::ON_DEMAND_JOBS`:
    /// the restore): never scheduled, never on `/cron`.
    pub on_demand: &'static [&'static Job],
}

impl crate::server::AppState {
    /// Every job (see `JobLists`).
    pub fn jobs(&self) -> &'static [&'static Job] {
        self.part::<JobLists>().all
    }

    /// The jobs that run only when asked (see `JobLists`).
    pub fn on_demand_jobs(&self) -> &'static [&'static Job] {
        self.part::<JobLists>().on_demand
    }
}
