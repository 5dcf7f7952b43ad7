//! The in-process scheduler of `salvage serve`: runs every registered job on its
//! schedule, so an installation needs no outside scheduler (outside ones calling
//! `/cron/<job>` stay supported, as a second line).
//!
//! Each replica runs this loop. At a tick, every replica tries to insert the tick's run
//! row; the unique `(job_name, tick_at)` index lets exactly one succeed, and only that
//! one runs the job (see `app::jobs::ssr::records`). Ticks missed while no replica was
//! up are not caught up, except each job's latest tick when it passed less than
//! [`TOO_LATE`] before this scheduler started (a restart, or `make run` starting a
//! moment after a minute turned): that one is claimed and run at once, as if the
//! scheduler had woken a little late. Older ones stay missed: dropout detection shows
//! them, and the next tick does the work.

use std::time::Duration as StdDuration;

use time::{Duration, OffsetDateTime};

use app::auth::ssr::Actor;
use app::jobs::ssr::{self as jobs, Caller, Firing, Job};
use app::jobs::Trigger;
use app::server::AppState;

/// A tick found more than this late (the machine slept, the runtime stalled) is skipped
/// instead of run late; the job's grace decides whether it counts as missed.
const TOO_LATE: Duration = Duration::minutes(1);

/// Starts the scheduler as a task the process owns; it stops when the process is asked
/// to (the shutdown token), and the runs it started finish their current step first.
pub fn spawn(state: AppState) {
    let shutdown = state.shutdown.clone();
    state.tasks.clone().spawn(async move {
        tokio::select! {
            () = schedule(state) => {}
            () = shutdown.cancelled() => tracing::info!("scheduler stopped"),
        }
    });
}

async fn schedule(state: AppState) {
    {
        let caller = Caller::this_process("salvage scheduler");
        let schedules: Vec<(&'static Job, app::jobs::schedule::Schedule)> = state
            .jobs()
            .iter()
            .map(|job| (*job, state.crons().schedule_of(job)))
            .collect();
        tracing::info!(
            jobs = %schedules.iter().map(|(j, s)| format!("{} ({})", j.name, s.describe())).collect::<Vec<_>>().join(", "),
            "scheduler started"
        );
        let mut cursor = state.clock.now();
        // Each job's tick that passed just before the start (claimed like any tick: if
        // a replica or the previous process ran it, this does nothing).
        for (job, schedule) in &schedules {
            if let Some(missed) = schedule.ticks(cursor - TOO_LATE, cursor).last() {
                fire(&state, job, missed, caller.clone());
            }
        }
        loop {
            // The earliest next tick of any job, and every job due then.
            let Some(tick) = schedules
                .iter()
                .filter_map(|(_, s)| s.next_after(cursor))
                .min()
            else {
                tracing::warn!("no job has a next tick; scheduler stops");
                return;
            };
            let wait = tick - state.clock.now();
            if wait.is_positive() {
                tokio::time::sleep(StdDuration::try_from(wait).unwrap_or_default()).await;
            }
            cursor = tick;
            if state.clock.now() - tick > TOO_LATE {
                tracing::warn!(%tick, "scheduler woke too late for this tick; skipping it");
                continue;
            }
            for (job, schedule) in &schedules {
                if schedule.next_after(tick - Duration::SECOND) == Some(tick) {
                    fire(&state, job, tick, caller.clone());
                }
            }
        }
    }
}

/// Claims `tick` of `job` and runs it in its own task, so a long replay never delays
/// another job's tick.
fn fire(state: &AppState, job: &'static Job, tick: OffsetDateTime, caller: Caller) {
    let task_state = state.clone();
    state.tasks.spawn(async move {
        let state = task_state;
        let firing = Firing {
            trigger: Trigger::Scheduler,
            actor: Actor::system(job.name),
            reason: None,
            caller,
            tick: Some(tick),
        };
        match jobs::run(&state, job, firing, Default::default()).await {
            Ok(Some(_)) => {}
            Ok(None) => tracing::debug!(job = job.name, %tick, "tick run by another replica"),
            Err(error) => {
                tracing::warn!(job = job.name, %tick, %error, "scheduled run not started")
            }
        }
    });
}
