//! `salvage demo`: one account per role and about four months of realistic history, so
//! the console is worth looking at after `make run`. Idempotent: accounts that exist are
//! left alone (their passwords were printed when they were created), and the history is
//! only seeded when it holds no demo entries yet.

use anyhow::Context;
use secrecy::SecretString;
use serde_json::json;
use time::{Duration, OffsetDateTime};

use app::auth::ssr::{self, Actor};
use app::auth::Role;
use app::history::ssr::{append, NewEntry};
use app::history::Outcome;

use crate::config::Settings;
use crate::startup;

/// The demo accounts, one per role.
pub const DEMO_USERS: [(&str, Role); 3] = [
    ("operator@salvage.demo", Role::Operator),
    ("manager@salvage.demo", Role::Manager),
    ("admin@salvage.demo", Role::Admin),
];

/// Creates what is missing of the demo.
pub async fn run(settings: &Settings) -> anyhow::Result<()> {
    let state = startup::build_state(settings);
    app::server::postgres::migrate(&state.pg)
        .await
        .context("Failed to apply the PostgreSQL migrations")?;
    let cli = Actor::cli();
    let mut created = Vec::new();
    for (email, role) in DEMO_USERS {
        if ssr::user_id_by_email(&state.pg, email).await.is_ok() {
            continue;
        }
        let password = ssr::temporary_password();
        ssr::add_user(
            &state.pg,
            &cli,
            email,
            role,
            Some(SecretString::from(password.clone())),
            Some("demo account".into()),
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        created.push((email, role, password));
    }
    if created.is_empty() {
        println!(
            "Demo accounts exist already (their passwords were shown when they were created)."
        );
    } else {
        println!("\nDemo accounts (passwords shown only now):");
        for (email, role, password) in &created {
            println!("  {:<9} {email:<24} {password}", role.as_str());
        }
        println!();
    }
    let seeded: bool = sqlx::query_scalar!(
        r#"select exists (select 1 from runbook_history where details ? 'demo') as "exists!""#
    )
    .fetch_one(&state.pg)
    .await
    .context("Failed to look for demo history")?;
    if !seeded {
        let count = seed_history(&state.pg, OffsetDateTime::now_utc()).await?;
        println!("Demo history: {count} entries over the last 120 days.");
    }
    Ok(())
}

/// A small deterministic generator, so every demo looks the same.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below.max(1)
    }
}

fn person(email: &str, role: Role) -> Actor {
    Actor {
        user_id: None,
        name: email.to_owned(),
        role,
        must_change_password: false,
    }
}

/// Writes the demo history, oldest first (so ids follow time), in one transaction.
async fn seed_history(pg: &sqlx::PgPool, now: OffsetDateTime) -> anyhow::Result<usize> {
    let operator = person("operator@salvage.demo", Role::Operator);
    let manager = person("manager@salvage.demo", Role::Manager);
    let admin = person("admin@salvage.demo", Role::Admin);
    let scheduler = Actor::system("scheduler");
    let mut rng = Lcg(20_261_122);
    let start = (now - Duration::days(120)).replace_time(time::macros::time!(03:00));
    let mut entries: Vec<NewEntry> = Vec::new();
    let demo = |value: serde_json::Value| {
        let mut value = value;
        value["demo"] = json!(true);
        value
    };

    // Weekly restore drills, Monday 03:00, RTO 6-14 minutes; one failed on a checksum.
    let mut day = start;
    let mut week = 0;
    while day < now - Duration::hours(2) {
        if day.weekday() == time::Weekday::Monday {
            week += 1;
            let seconds = 360 + rng.next(480) as i64;
            let failed = week == 7;
            let rows = 41_000_000 + rng.next(9_000_000);
            entries.push(
                NewEntry::new(
                    "drill",
                    if failed {
                        "Restore drill failed: events checksum mismatch"
                    } else {
                        "Weekly restore drill"
                    },
                    &scheduler,
                    if failed {
                        Outcome::Failed
                    } else {
                        Outcome::Succeeded
                    },
                )
                .with_times(day, Some(day + Duration::seconds(seconds)))
                .with_reason(failed.then(|| {
                    "events: manifest checksum 9f2c… differs from restored 41c0…".to_owned()
                }))
                .with_details(demo(json!({
                    "backup": format!("backup-{}", day.date()),
                    "postgres": {"tables": 14, "rows": 1_284_000 + rng.next(90_000)},
                    "clickhouse": {"requests_rows": rows, "events_rows": rows * 3,
                                   "checksums": if failed { "mismatch" } else { "match" }},
                    "rto_target_seconds": 900,
                }))),
            );
        }
        day += Duration::days(1);
    }

    // Incidents, each with its timeline.
    struct Incident {
        days_ago: i64,
        title: &'static str,
        severity: &'static str,
        minutes: i64,
        body: &'static str,
        steps: &'static [(&'static str, i64, &'static str, &'static str)],
    }
    let incidents = [
        Incident {
            days_ago: 97,
            title: "ClickHouse unreachable: disk full on ch-2",
            severity: "sev1",
            minutes: 142,
            body: "Inserts to requests/events failing with 'Cannot reserve 1.00 MiB'. Ingest \
                   is falling back to PostgreSQL.",
            steps: &[
                (
                    "activation",
                    3,
                    "Fallback queue activated: ClickHouse inserts failing",
                    "operator",
                ),
                (
                    "note",
                    25,
                    "Freed 180 GiB by dropping detached parts; merges resuming",
                    "operator",
                ),
                (
                    "replay",
                    128,
                    "Replayed requests_fallback: 412,880 rows, 0 duplicates",
                    "operator",
                ),
                (
                    "note",
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
                    "note",
                    20,
                    "Resolver config rolled back on the edge hosts",
                    "operator",
                ),
                (
                    "redrive",
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
            body:
                "No cron_job_runs for replay-fallback since 02:10; the scheduler pod was evicted.",
            steps: &[
                (
                    "note",
                    40,
                    "Scheduler rescheduled; runs resumed at 07:20",
                    "operator",
                ),
                (
                    "replay",
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
                "note",
                50,
                "Old backups pruned; manual backup taken and verified",
                "admin",
            )],
        },
    ];
    for incident in &incidents {
        let at = (now - Duration::days(incident.days_ago)).replace_time(time::macros::time!(06:40));
        entries.push(
            NewEntry::new("incident", incident.title, &operator, Outcome::Info)
                .with_times(at, None)
                .with_severity(Some(incident.severity.to_owned()))
                .with_body(incident.body)
                .with_details(demo(json!({}))),
        );
        // Linked entries are filled in after the incident gets its id (below).
        for (kind, minutes, title, who) in incident.steps {
            let actor = match *who {
                "manager" => &manager,
                "admin" => &admin,
                _ => &operator,
            };
            let outcome = if *kind == "note" {
                Outcome::Info
            } else {
                Outcome::Succeeded
            };
            let step_at = at + Duration::minutes(*minutes);
            entries.push(
                NewEntry::new(kind, *title, actor, outcome)
                    .with_times(
                        step_at,
                        Some(step_at + Duration::seconds(if *kind == "note" { 0 } else { 95 })),
                    )
                    .with_reason((*kind != "note").then(|| format!("incident: {}", incident.title)))
                    .with_details(demo(json!({"incident_title": incident.title}))),
            );
        }
        let end = at + Duration::minutes(incident.minutes);
        entries.push(
            NewEntry::new(
                "incident_resolved",
                format!("Resolved: {}", incident.title),
                &operator,
                Outcome::Succeeded,
            )
            .with_times(end, Some(end))
            .with_details(demo(json!({"incident_title": incident.title}))),
        );
    }

    // Routine work: expiry runs, secret rotations, handover notes.
    for days_ago in [88, 44] {
        let at = (now - Duration::days(days_ago)).replace_time(time::macros::time!(04:00));
        entries.push(
            NewEntry::new(
                "expiry",
                "Expired 2,310 fallback rows older than 7 days",
                &scheduler,
                Outcome::Partial,
            )
            .with_times(at, Some(at + Duration::seconds(4)))
            .with_reason(Some(
                "TTL 7 days; ClickHouse was down past the TTL for these rows".into(),
            ))
            .with_details(demo(json!({"deleted": 2310, "table": "events_fallback"}))),
        );
    }
    for days_ago in [110, 20] {
        let at = (now - Duration::days(days_ago)).replace_time(time::macros::time!(10:15));
        entries.push(
            NewEntry::new(
                "secret_rotation",
                "Rotated the cron secret",
                &admin,
                Outcome::Succeeded,
            )
            .with_reason(Some("quarterly rotation".into()))
            .with_times(at, Some(at))
            .with_details(demo(json!({"grace_hours": 24}))),
        );
    }
    for days_ago in (3..120).step_by(14) {
        let at = (now - Duration::days(days_ago)).replace_time(time::macros::time!(17:30));
        entries.push(
            NewEntry::new("note", "On-call handover", &manager, Outcome::Info)
                .with_body(
                    "Queues empty, drills green, no open alerts. Next rotation: see the calendar.",
                )
                .with_times(at, Some(at))
                .with_details(demo(json!({}))),
        );
    }

    entries.sort_by_key(|entry| entry.started_at);
    let mut tx = pg.begin().await?;
    // Link incident steps to the incident's id as it is written.
    let mut incident_ids = std::collections::HashMap::new();
    for entry in &mut entries {
        if let Some(title) = entry.details.get("incident_title").and_then(|t| t.as_str()) {
            entry.incident_id = incident_ids.get(title).copied();
        }
        let id = append(&mut tx, entry).await?;
        if entry.kind == "incident" {
            incident_ids.insert(entry.title.clone(), id);
        }
    }
    tx.commit().await?;
    Ok(entries.len())
}
