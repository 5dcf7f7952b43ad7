//! The composition root's list of jobs (server only): every job Salvage runs, in the
//! order the console lists them. It sits above the features, so it may name each
//! feature's job; the code below reaches the list through `AppState::jobs`, never by
//! importing this module. A new feature adds its job by adding one line here (see
//! docs/ARCHITECTURE.md, "Adding a job").

use crate::jobs::ssr::records::PRUNE_CRON_RUNS;
use crate::jobs::ssr::Job;
use crate::queues::ssr::expiry::EXPIRE_FALLBACK;
use crate::queues::ssr::replay::REPLAY_FALLBACK;

/// Every job, in the order the console lists them.
pub static JOBS: &[&Job] = &[&REPLAY_FALLBACK, &EXPIRE_FALLBACK, &PRUNE_CRON_RUNS];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crons::schedule::Schedule;

    #[test]
    fn the_pages_job_list_is_the_registry() {
        let names: Vec<&str> = JOBS.iter().map(|job| job.name).collect();
        assert_eq!(names, crate::crons::JOB_NAMES);
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
