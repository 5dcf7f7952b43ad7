//! The demo's incidents: four months of outages an operator would recognise, each with
//! its timeline and the post-recovery checklist recorded with its resolution (as a
//! resolution records it today: every item as it stood then, not re-evaluated now).

use time::OffsetDateTime;

use app::history::EntryKind;
use app::incidents::{CheckItem, MANUAL_ITEMS};

/// One demo incident: when, what, how long, and its steps as
/// `(kind, minutes after the declaration, title, who)`.
pub(super) struct Incident {
    pub days_ago: i64,
    pub title: &'static str,
    pub severity: &'static str,
    pub minutes: i64,
    pub body: &'static str,
    pub steps: &'static [(EntryKind, i64, &'static str, &'static str)],
}

pub(super) const INCIDENTS: [Incident; 4] = [
    Incident {
        days_ago: 97,
        title: "ClickHouse unreachable: disk full on ch-2",
        severity: "sev1",
        minutes: 142,
        body: "Inserts to requests/events failing with 'Cannot reserve 1.00 MiB'. Ingest \
               is falling back to PostgreSQL.",
        steps: &[
            (
                EntryKind::Activation,
                3,
                "Fallback queue activated: ClickHouse inserts failing",
                "operator",
            ),
            (
                EntryKind::Note,
                25,
                "Freed 180 GiB by dropping detached parts; merges resuming",
                "operator",
            ),
            (
                EntryKind::Replay,
                128,
                "Replayed requests_fallback: 412,880 rows, 0 duplicates",
                "operator",
            ),
            (
                EntryKind::Note,
                140,
                "Queue empty; row counts match ingest totals",
                "manager",
            ),
        ],
    },
    Incident {
        days_ago: 61,
        title: "Webhook deliveries to billing failing (DNS)",
        severity: "sev2",
        minutes: 95,
        body: "billing-hooks.internal stopped resolving after a resolver change.",
        steps: &[
            (
                EntryKind::Note,
                20,
                "Resolver config rolled back on the edge hosts",
                "operator",
            ),
            (
                EntryKind::Redrive,
                80,
                "Redrove 1,906 dead letters (exhausted) to billing",
                "operator",
            ),
        ],
    },
    Incident {
        days_ago: 33,
        title: "replay-fallback cron stopped firing",
        severity: "sev3",
        minutes: 310,
        body: "No cron_job_runs for replay-fallback since 02:10; the scheduler pod was evicted.",
        steps: &[
            (
                EntryKind::Note,
                40,
                "Scheduler rescheduled; runs resumed at 07:20",
                "operator",
            ),
            (
                EntryKind::Replay,
                300,
                "Replayed 18,204 queued rows after the gap",
                "operator",
            ),
        ],
    },
    Incident {
        days_ago: 9,
        title: "Nightly backup older than 26 h",
        severity: "sev3",
        minutes: 70,
        body: "backup_stale alert: pg_dump job failed on a full backup volume.",
        steps: &[(
            EntryKind::Note,
            50,
            "Old backups pruned; manual backup taken and verified",
            "admin",
        )],
    },
];

/// The checklist as it passed at `end`, after an incident of `minutes`: the live checks
/// with what they measured then, the manual items ticked by `by` in the last minutes.
pub(super) fn checklist(end: OffsetDateTime, minutes: i64, by: &str) -> Vec<CheckItem> {
    let live = [
        (
            "stores_ready",
            "Both stores are ready",
            "PostgreSQL answered in 2 ms; ClickHouse answered in 4 ms".to_owned(),
        ),
        (
            "queues_draining",
            "The fallback queues are empty or draining",
            "both fallback queues are empty".to_owned(),
        ),
        (
            "no_critical_alert",
            "No critical alert is open",
            "0 critical alerts open".to_owned(),
        ),
        (
            "backup_verified",
            "A backup of each store verified since the incident began",
            "both stores have a backup verified since the incident began".to_owned(),
        ),
        (
            "chain_verifies",
            "The history chain verifies",
            "every entry links up".to_owned(),
        ),
        (
            "crons_on_time",
            "No cron job is late, dropping runs or failing",
            "every job runs on its schedule".to_owned(),
        ),
        (
            "endpoints_running",
            "No webhook endpoint is paused",
            "every endpoint's circuit is closed".to_owned(),
        ),
        (
            "outage_dead_letters",
            "The dead letters made since the incident began are redriven or purged",
            "none of the deliveries dead-lettered since the incident began waits".to_owned(),
        ),
        (
            "schema_current",
            "The schema is the one this version expects",
            "every migration is applied".to_owned(),
        ),
        (
            "migrations_healthy",
            "No background migration is stuck or failed",
            "0 stuck, 0 failed".to_owned(),
        ),
        (
            "freeze_lifted",
            "The write freeze is lifted",
            "no freeze is on".to_owned(),
        ),
        (
            "rca_owner",
            "Someone owns the root-cause analysis",
            "owned by manager@salvage.demo".to_owned(),
        ),
    ];
    let ticked = end - time::Duration::minutes((minutes / 10).clamp(2, 15));
    let mut items: Vec<CheckItem> = live
        .into_iter()
        .map(|(key, label, detail)| CheckItem {
            key: key.to_owned(),
            label: label.to_owned(),
            live: true,
            ok: true,
            detail,
            checked_by: None,
            checked_ms: None,
        })
        .collect();
    items.extend(MANUAL_ITEMS.iter().map(|(key, label)| CheckItem {
        key: (*key).to_owned(),
        label: (*label).to_owned(),
        live: false,
        ok: true,
        detail: format!("ticked by {by}"),
        checked_by: Some(by.to_owned()),
        checked_ms: Some(app::server::unix_ms(ticked)),
    }));
    items
}
