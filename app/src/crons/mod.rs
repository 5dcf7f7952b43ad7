//! The cron plane: how every job has been firing (dropout detection), the crons page,
//! and the rotating cron secret. Jobs themselves, their runs and the scheduler's claim
//! on a tick belong to the job runner (`crate::jobs`), which this feature reads.
//!
//! - DTOs here: [`JobStatus`], [`CronsOverview`], [`CronSecretInfo`], [`RotatedSecret`];
//!   [`CronRun`] is the runner's.
//! - `api` — the server functions of `/admin/crons` and `/admin/settings/cron-secret`.
//! - `page` — `/admin/crons`; `secret_page` — `/admin/settings/cron-secret`.
//! - `ssr` (server only) — the settings (`CronSettings`), the dropout assessment
//!   (`status`) and the secrets (`secrets`).

pub mod api;
pub mod page;
pub mod secret_page;
#[cfg(feature = "ssr")]
pub mod ssr;

use serde::{Deserialize, Serialize};

pub use crate::jobs::CronRun;

/// Why a job is flagged.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Flag {
    /// The tick due at `due_at` (Unix ms) has no run, and its grace period is over.
    Late { due_at: i64 },
    /// Fewer runs than the threshold (in %) of what the schedule expects.
    LowFireRate { threshold: f64 },
    /// The last finished run failed.
    Failing,
}

impl Flag {
    /// A short label for badges.
    pub fn label(&self) -> &'static str {
        match self {
            Flag::Late { .. } => "late",
            Flag::LowFireRate { .. } => "dropping runs",
            Flag::Failing => "failing",
        }
    }
}

/// One hour of the 24-hour strip: ticks due in it and how many had a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HourSlot {
    /// The hour's start, Unix ms.
    pub at: i64,
    /// Ticks due in this hour (past their grace period).
    pub expected: i64,
    /// Of those, ticks that had a run.
    pub covered: i64,
    /// Runs started in this hour, any trigger.
    pub runs: i64,
}

/// A finished run's duration, for the chart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DurationPoint {
    pub at: i64,
    pub ms: i64,
    pub failed: bool,
}

/// A job and how it has been firing over the last 24 hours. Times are Unix ms (UTC).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobStatus {
    pub name: String,
    pub description: String,
    /// The cron expression in force (default or `SALVAGE_CRON_<JOB>`).
    pub schedule: String,
    /// The schedule in words ("every 5 min").
    pub schedule_text: String,
    pub grace_secs: i64,
    /// Runs started in the last 24 h, whoever fired them.
    pub runs: i64,
    /// Scheduled ticks in the window that are past their grace period.
    pub expected: i64,
    /// Of those, ticks that had a run (between that tick and the next).
    pub covered: i64,
    /// `expected - covered`.
    pub missed: i64,
    /// `covered / expected` in %; `None` while nothing was expected yet.
    pub fire_rate: Option<f64>,
    /// When the window starts: 24 h ago, or when this installation first knew the job.
    pub window_start: i64,
    pub last_run: Option<CronRun>,
    pub last_success_at: Option<i64>,
    /// Median duration of the finished runs of the last 24 h.
    pub typical_ms: Option<i64>,
    /// Longest duration of the last 24 h.
    pub longest_ms: Option<i64>,
    pub next_tick_at: Option<i64>,
    pub flags: Vec<Flag>,
    /// 24 hourly slots, oldest first.
    pub hours: Vec<HourSlot>,
    pub durations: Vec<DurationPoint>,
}

impl JobStatus {
    pub fn flagged(&self) -> bool {
        !self.flags.is_empty()
    }
}

impl CronsOverview {
    /// Drops every run's caller address and User-Agent: only admins see who calls
    /// Salvage's cron routes from where.
    pub fn hide_callers(&mut self) {
        let runs = self.jobs.iter_mut().filter_map(|job| job.last_run.as_mut());
        for run in runs.chain(self.recent.iter_mut()) {
            run.caller_addr = None;
            run.caller_agent = None;
        }
    }
}

impl CronSecrets {
    /// Drops each secret's callers (addresses and User-Agents): admins only.
    pub fn hide_callers(&mut self) {
        for secret in &mut self.secrets {
            secret.last_used_addr = None;
            secret.last_used_agent = None;
            secret.callers.clear();
        }
    }
}

/// Everything `/admin/crons` shows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CronsOverview {
    pub now: i64,
    /// Whether this instance runs the in-process scheduler.
    pub scheduler_enabled: bool,
    /// The fire rate under which a job is flagged, in %.
    pub min_fire_rate: f64,
    pub retention_days: i64,
    pub jobs: Vec<JobStatus>,
    pub recent: Vec<CronRun>,
}

/// A caller seen presenting a secret (from its runs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretCaller {
    pub agent: Option<String>,
    pub addr: Option<String>,
    pub calls: i64,
    pub last_at: i64,
}

/// A cron secret as the settings page lists it: never its value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CronSecretInfo {
    pub id: i64,
    /// `environment` (imported from `CRON_SECRET`), `console` or `cli`.
    pub source: String,
    pub created_at: i64,
    pub created_by: String,
    /// When a rotation replaced it; `None` for the current secret.
    pub retired_at: Option<i64>,
    /// When it stops working; `None` for the current secret.
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub last_used_addr: Option<String>,
    pub last_used_agent: Option<String>,
    /// Callers that presented it in the last 7 days, most recent first.
    pub callers: Vec<SecretCaller>,
}

/// The settings page's data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CronSecrets {
    pub now: i64,
    /// The current secret first, then the retired ones (newest first, at most 5).
    pub secrets: Vec<CronSecretInfo>,
}

/// A new secret, in this response only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotatedSecret {
    pub id: i64,
    pub secret: crate::format::ShownOnce,
    /// The previous secret's id and when it stops working, if there was one.
    pub previous: Option<(i64, i64)>,
}

/// The names of the registered jobs, in registry order, for the pages' job picker (the
/// registry itself, with each job's function, is server-only; a unit test keeps the two
/// equal).
pub const JOB_NAMES: &[&str] = &[
    "replay-fallback",
    "expire-fallback",
    "self-monitor",
    "prune-cron-runs",
    "backup",
    "backup-sync",
    "pitr-backup",
    "pitr-side-janitor",
    "restore-drill",
    "drill-janitor",
    "deliver-webhooks",
    "expire-dead-letters",
    "run-background-migrations",
];

/// Grace windows an admin can pick, in hours.
pub const MAX_GRACE_HOURS: i64 = 168;
/// The grace window offered by default.
pub const DEFAULT_GRACE_HOURS: i64 = 24;
