//! The job runner every feature with a job uses. It sits below the features: the queues
//! feature's replay and expiry and the cron plane's own pruning are jobs run by it, and
//! the features that follow (self-monitor, webhook deliveries, backups, drills,
//! background migrations) add theirs the same way.
//!
//! A job is one function ([`ssr::Job`]). Every door (the in-process scheduler,
//! `/cron/<job>`, a button, `salvage <command>`) runs it through [`ssr::run`] or
//! [`ssr::run_in_background`], which record the run as one row of `cron_job_runs`:
//! trigger, actor, reason, caller, progress, heartbeat, outcome, the job's typed report.
//! That row's id is the run's only id: what a start returns and what cancel, the pages
//! and the CLI take.
//!
//! - `api` — the one start and the one cancel server function every button uses.
//! - DTOs here, shared with the pages: [`Trigger`], [`RunStatus`], [`CronRun`].
//! - `schedule` — cron expressions (parsing, next tick, plain-English reading): when
//!   the scheduler fires a job.
//! - `ssr` (server only): the runner ([`ssr::Job`], [`ssr::JobContext`],
//!   [`ssr::Report`], [`ssr::run`]), progress and cancellation (`ssr::progress`), and
//!   the run records (`ssr::records`).

pub mod api;
pub mod schedule;
mod view;

pub use view::{JobPanel, RunStatusBadge};
#[cfg(feature = "ssr")]
pub mod ssr;

use serde::{Deserialize, Serialize};

use crate::history::Outcome;

crate::stored::stored_enum! {
    /// Who or what started a run.
    pub enum Trigger {
        /// Salvage's own scheduler (`salvage serve`).
        Scheduler = "scheduler",
        /// An outside scheduler or monitor calling `/cron/<job>`.
        External = "external",
        /// A person in the console.
        Manual = "manual",
        /// `salvage …` in a terminal.
        Cli = "cli",
    }
}

impl Trigger {
    /// Whether a person started the run (button or terminal), as opposed to a scheduler.
    pub fn by_a_person(self) -> bool {
        matches!(self, Trigger::Manual | Trigger::Cli)
    }
}

crate::stored::stored_enum! {
    /// Where a run is, or how it ended. The one mapping of a run's state to its stored
    /// name, its history outcome and (in `components`) its badge.
    pub enum RunStatus {
        /// Working; its heartbeat is fresh.
        Running = "running",
        /// Did all it was asked.
        Succeeded = "succeeded",
        /// Did part of it and stopped on purpose (a replay's time budget, say); the rest is
        /// left for the next run.
        Partial = "partial",
        /// Stopped after its current step because someone asked (Cancel, Ctrl-C) or the
        /// process was shutting down.
        Cancelled = "cancelled",
        /// Stopped on an error.
        Failed = "failed",
        /// Its process died: the heartbeat went stale while it was `running`.
        Abandoned = "abandoned",
    }
}

impl RunStatus {
    /// Whether the run has ended.
    pub fn is_finished(self) -> bool {
        self != RunStatus::Running
    }

    /// Whether the run ended without doing its work: it failed or its process died.
    pub fn is_failure(self) -> bool {
        matches!(self, RunStatus::Failed | RunStatus::Abandoned)
    }

    /// How a run that ended like this is recorded in the runbook history.
    pub fn history_outcome(self) -> Outcome {
        match self {
            RunStatus::Succeeded => Outcome::Succeeded,
            RunStatus::Failed | RunStatus::Abandoned => Outcome::Failed,
            RunStatus::Running | RunStatus::Partial | RunStatus::Cancelled => Outcome::Partial,
        }
    }
}

/// One run, as the pages list it (a row of `cron_job_runs`). Times are Unix ms (UTC).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CronRun {
    pub id: i64,
    pub job_name: String,
    pub trigger: Trigger,
    pub ran_at: i64,
    pub finished_at: Option<i64>,
    pub duration_ms: Option<i64>,
    /// How it ended, `running`, or `abandoned` when its heartbeat went stale.
    pub outcome: RunStatus,
    pub rows_processed: Option<i64>,
    pub error: Option<String>,
    pub actor: String,
    pub reason: Option<String>,
    pub caller_addr: Option<String>,
    pub caller_agent: Option<String>,
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_and_trigger_reads_back_from_its_stored_name() {
        for status in RunStatus::ALL {
            assert_eq!(RunStatus::parse(status.as_str()), Some(status));
            // The serde name (what the pages receive) is the stored name too.
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                serde_json::Value::from(status.as_str())
            );
        }
        for trigger in Trigger::ALL {
            assert_eq!(Trigger::parse(trigger.as_str()), Some(trigger));
        }
        assert_eq!(RunStatus::parse("done"), None);
    }

    #[test]
    fn only_a_success_is_recorded_as_succeeded_and_a_dead_run_counts_as_failed() {
        assert_eq!(RunStatus::Succeeded.history_outcome(), Outcome::Succeeded);
        assert_eq!(RunStatus::Abandoned.history_outcome(), Outcome::Failed);
        assert_eq!(RunStatus::Cancelled.history_outcome(), Outcome::Partial);
        assert!(!RunStatus::Running.is_finished());
        assert!(RunStatus::Cancelled.is_finished());
    }
}
