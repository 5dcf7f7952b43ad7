//! The composition root's list of jobs (server only): every job Salvage runs, in the
//! order the console lists them. It sits above the features, so it may name each
//! feature's job; the code below reaches the list through `AppState::jobs`, never by
//! importing this module. A new feature adds its job by adding one line here (see
//! docs/ARCHITECTURE.md, "Adding a job").

use crate::alerts::ssr::outage::POSTGRES_DOWN;
use crate::alerts::ssr::{AlertKind, SELF_MONITOR};
use crate::backups::ssr::alerts::{BACKUP_FAILED, BACKUP_STALE, BACKUP_VERIFY_FAILED};
use crate::backups::ssr::pitr::job::PITR_BACKUP;
use crate::backups::ssr::BACKUP;
use crate::crons::ssr::alerts::CRON_DROPOUT;
use crate::dead_letters::ssr::alerts::{
    DLQ_COUNT_HIGH, DLQ_GROWING, DLQ_RETENTION_NEAR, WEBHOOK_BACKLOG, WEBHOOK_PAUSED,
};
use crate::dead_letters::ssr::{DELIVER_WEBHOOKS, EXPIRE_DEAD_LETTERS};
use crate::drills::ssr::alerts::{DRILL_FAILED, DRILL_OVERDUE, RTO_EXCEEDED, TABLETOP_OVERDUE};
use crate::drills::ssr::{DRILL_JANITOR, RESTORE_DRILL};
use crate::health::ssr::CLICKHOUSE_DOWN;
use crate::jobs::ssr::background::BackgroundMigration;
use crate::jobs::ssr::records::PRUNE_CRON_RUNS;
use crate::jobs::ssr::Job;
use crate::migrations::ssr::alerts::MIGRATION_STUCK;
use crate::migrations::ssr::RUN_BACKGROUND_MIGRATIONS;
use crate::queues::ssr::alerts::{
    DATA_EXPIRED, FALLBACK_QUEUE_HIGH, FALLBACK_QUEUE_OLD, INGEST_QUOTA, REPLAY_FAILING,
};
use crate::queues::ssr::expiry::EXPIRE_FALLBACK;
use crate::queues::ssr::replay::REPLAY_FALLBACK;

/// Every job, in the order the console lists them.
pub static JOBS: &[&Job] = &[
    &REPLAY_FALLBACK,
    &EXPIRE_FALLBACK,
    &SELF_MONITOR,
    &PRUNE_CRON_RUNS,
    &BACKUP,
    &crate::backups::ssr::sync::BACKUP_SYNC,
    &PITR_BACKUP,
    &crate::backups::ssr::pitr::sides::PITR_SIDE_JANITOR,
    &RESTORE_DRILL,
    &DRILL_JANITOR,
    &DELIVER_WEBHOOKS,
    &EXPIRE_DEAD_LETTERS,
    &RUN_BACKGROUND_MIGRATIONS,
];

/// The jobs that run only when asked, each with its typed input (a restore's request).
pub static ON_DEMAND_JOBS: &[&Job] = &[
    &crate::backups::ssr::restore::RESTORE,
    &crate::backups::ssr::pitr::restore::PITR_RESTORE,
    &crate::backups::ssr::verify::VERIFY_BACKUP,
    &crate::dead_letters::ssr::redrive::REDRIVE,
];

/// Every background migration, in the order they run (`AppState::background_migrations`).
pub static BACKGROUND_MIGRATIONS: &[&BackgroundMigration] =
    &[&crate::dead_letters::ssr::backfill::PAYLOAD_BYTES];

/// Incident mode, as the history (below it) reaches it.
pub static INCIDENT_HOOKS: crate::history::ssr::IncidentHooks =
    crate::history::ssr::IncidentHooks {
        declared: crate::incidents::ssr::on_declared,
        may_resolve: crate::incidents::ssr::may_resolve_hook,
    };

/// Every alert kind, in the order the alerts page offers them. The self-monitor
/// evaluates those with an evaluator (`state.alert_kinds()`).
pub static ALERT_KINDS: &[&AlertKind] = &[
    &FALLBACK_QUEUE_HIGH,
    &FALLBACK_QUEUE_OLD,
    &CLICKHOUSE_DOWN,
    &REPLAY_FAILING,
    &CRON_DROPOUT,
    &DATA_EXPIRED,
    &INGEST_QUOTA,
    &POSTGRES_DOWN,
    &BACKUP_STALE,
    &BACKUP_FAILED,
    &BACKUP_VERIFY_FAILED,
    &DRILL_OVERDUE,
    &TABLETOP_OVERDUE,
    &DRILL_FAILED,
    &RTO_EXCEEDED,
    &crate::backups::ssr::pitr::alerts::WAL_ARCHIVE_LAG,
    &crate::backups::ssr::pitr::alerts::PITR_BACKUP_FAILED,
    &crate::backups::ssr::pitr::alerts::PITR_WINDOW_SHORT,
    &WEBHOOK_BACKLOG,
    &DLQ_GROWING,
    &DLQ_COUNT_HIGH,
    &WEBHOOK_PAUSED,
    &DLQ_RETENTION_NEAR,
    &MIGRATION_STUCK,
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::schedule::Schedule;

    #[test]
    fn the_pages_job_list_is_the_registry() {
        let names: Vec<&str> = JOBS.iter().map(|job| job.name).collect();
        assert_eq!(names, crate::crons::JOB_NAMES);
    }

    #[test]
    fn the_pages_migration_list_is_the_registry() {
        let names: Vec<&str> = BACKGROUND_MIGRATIONS.iter().map(|m| m.name).collect();
        assert_eq!(names, crate::migrations::NAMES);
        for name in names {
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{name} does not pass the table's check"
            );
        }
    }

    #[test]
    fn the_pages_kind_list_is_the_registry() {
        let names: Vec<&str> = ALERT_KINDS.iter().map(|kind| kind.name).collect();
        assert_eq!(names, crate::alerts::KIND_NAMES);
    }

    #[test]
    fn every_alert_kind_has_a_unique_stored_name_and_raises_after_at_least_one_evaluation() {
        let mut seen = std::collections::HashSet::new();
        for kind in ALERT_KINDS {
            assert!(seen.insert(kind.name), "{} twice", kind.name);
            assert!(
                kind.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_'),
                "{} does not pass the table's check",
                kind.name
            );
            assert!(kind.fire_after >= 1, "{}", kind.name);
            assert!(kind.fix.href.starts_with("/admin"), "{}", kind.name);
        }
    }

    #[test]
    fn on_demand_jobs_are_never_scheduled_and_share_no_name_with_a_scheduled_one() {
        for job in ON_DEMAND_JOBS {
            assert_eq!(job.schedule, crate::jobs::ssr::ON_DEMAND, "{}", job.name);
            assert!(
                JOBS.iter().all(|j| j.name != job.name),
                "{} twice",
                job.name
            );
            assert!(
                job.check.is_some(),
                "{} takes input: it checks it",
                job.name
            );
        }
        assert!(JOBS
            .iter()
            .all(|j| j.schedule != crate::jobs::ssr::ON_DEMAND));
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
