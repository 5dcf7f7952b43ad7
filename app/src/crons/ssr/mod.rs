//! The server side of the cron plane. See the module docs of [`crate::crons`].

pub mod alerts;
pub mod secrets;
pub mod status;

use std::collections::HashMap;
use std::time::Duration;

use crate::jobs::schedule::Schedule;
use crate::jobs::ssr::Job;

/// How the cron plane behaves; from the settings (`SALVAGE_SCHEDULER`,
/// `SALVAGE_CRON_RETENTION_DAYS`, `SALVAGE_CRON_MIN_FIRE_RATE`, `SALVAGE_CRON_<JOB>`).
#[derive(Clone, Debug)]
pub struct CronSettings {
    /// Whether `salvage serve` runs the jobs on their schedules itself. Default on.
    pub scheduler: bool,
    /// Runs older than this are deleted by `prune-cron-runs`. Default 90 days.
    pub retention: Duration,
    /// A job firing less than this share of its expected runs (in %) is flagged.
    pub min_fire_rate: f64,
    /// Schedules that replace a job's default, by job name.
    pub overrides: HashMap<String, Schedule>,
}

impl Default for CronSettings {
    fn default() -> Self {
        Self {
            scheduler: true,
            retention: Duration::from_secs(90 * 24 * 3600),
            min_fire_rate: 80.0,
            overrides: HashMap::new(),
        }
    }
}

impl CronSettings {
    /// The schedule `job` runs on here.
    pub fn schedule_of(&self, job: &Job) -> Schedule {
        self.overrides
            .get(job.name)
            .cloned()
            .unwrap_or_else(|| job.default_schedule())
    }
}

impl crate::server::AppState {
    /// The cron plane's settings (the state's part for the crons).
    pub fn crons(&self) -> &CronSettings {
        self.part()
    }
}
