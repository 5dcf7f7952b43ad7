//! The demo's alert history: four weeks of alerts an on-call team would have seen, each
//! raised, mostly acknowledged, and resolved by the self-monitor or by a person with a
//! note, plus one silence for a planned ClickHouse upgrade. Seeded once, through the
//! same store functions the self-monitor and the page use.

use serde_json::json;
use time::{Duration, OffsetDateTime};

use app::alerts::ssr::changes::{self, Op};
use app::alerts::ssr::monitor::resolve_by_monitor;
use app::alerts::ssr::store;
use app::alerts::ssr::{AlertKind, Signal};
use app::alerts::{Seen, Severity};
use app::auth::ssr::Actor;
use app::auth::Role;

fn person(email: &str, role: Role) -> Actor {
    Actor {
        user_id: None,
        name: email.to_owned(),
        role,
        must_change_password: false,
    }
}

/// One demo alert: when (days and hours ago), what, and how it ended.
struct Story {
    days_ago: i64,
    hour: i64,
    kind: &'static str,
    key: &'static str,
    severity: Severity,
    title: &'static str,
    figure: (f64, f64, &'static str),
    /// Minutes to acknowledge (by the operator), if anyone did.
    ack_after: Option<i64>,
    /// Minutes to resolve, and the note of a person (`None`: the self-monitor).
    resolve_after: i64,
    note: Option<&'static str>,
}

const STORIES: &[Story] = &[
    Story { days_ago: 27, hour: 3, kind: "clickhouse_down", key: "clickhouse", severity: Severity::Critical, title: "ClickHouse is not answering; ingest parks rows in the fallback queues", figure: (0.0, 0.0, ""), ack_after: Some(4), resolve_after: 38, note: None },
    Story { days_ago: 27, hour: 3, kind: "fallback_queue_high", key: "requests", severity: Severity::Warning, title: "The requests queue holds 48,210 rows", figure: (48_210.0, 1_000.0, "rows"), ack_after: Some(5), resolve_after: 61, note: None },
    Story { days_ago: 24, hour: 14, kind: "cron_dropout", key: "replay-fallback", severity: Severity::Warning, title: "Job replay-fallback is dropping runs (62 % of its ticks ran, under 80 %)", figure: (62.0, 80.0, "%"), ack_after: Some(22), resolve_after: 190, note: Some("Platform scheduler lost its leader lease; restarted the scheduler pods. External heartbeat kept replay going meanwhile.") },
    Story { days_ago: 21, hour: 9, kind: "replay_failing", key: "replay-fallback", severity: Severity::Critical, title: "The last 2 replay runs failed", figure: (2.0, 2.0, "runs"), ack_after: Some(3), resolve_after: 26, note: Some("ClickHouse user lost INSERT on salvage.requests after a grants change; restored the grant, replay drained 12k rows.") },
    Story { days_ago: 18, hour: 22, kind: "fallback_queue_old", key: "events", severity: Severity::Warning, title: "The oldest row of the events queue is 3 d 12 h old; expiry deletes it in 3 d 12 h", figure: (302_400.0, 302_400.0, "seconds"), ack_after: Some(48), resolve_after: 300, note: Some("A poisoned batch kept failing; fixed the malformed trace ids upstream and replayed.") },
    Story { days_ago: 14, hour: 2, kind: "clickhouse_down", key: "clickhouse", severity: Severity::Critical, title: "ClickHouse is not answering; ingest parks rows in the fallback queues", figure: (0.0, 0.0, ""), ack_after: Some(6), resolve_after: 14, note: None },
    Story { days_ago: 11, hour: 16, kind: "ingest_quota", key: "key-2", severity: Severity::Warning, title: "Ingest key “batch-importer” (#2) is at its quota of queued rows: its batches are refused", figure: (1_000_000.0, 1_000_000.0, "rows"), ack_after: Some(12), resolve_after: 95, note: Some("The importer re-sent a month of history during the ClickHouse outage; paused it until replay caught up.") },
    Story { days_ago: 9, hour: 4, kind: "data_expired", key: "events", severity: Severity::Critical, title: "Expiry deleted 312 queued rows of the events queue for good", figure: (312.0, 0.0, "rows"), ack_after: Some(180), resolve_after: 420, note: Some("Rows were synthetic health-check events from the staging probe; no customer data lost. Post-mortem PM-114.") },
    Story { days_ago: 6, hour: 11, kind: "fallback_queue_high", key: "events", severity: Severity::Warning, title: "The events queue holds 3,904 rows", figure: (3_904.0, 1_000.0, "rows"), ack_after: None, resolve_after: 9, note: None },
    Story { days_ago: 3, hour: 13, kind: "cron_dropout", key: "expire-fallback", severity: Severity::Warning, title: "Job expire-fallback is failing (its last run failed)", figure: (0.0, 0.0, ""), ack_after: Some(15), resolve_after: 65, note: Some("Statement timeout on the expiry delete after the index rebuild; raised the timeout, reran by hand.") },
    Story { days_ago: 1, hour: 7, kind: "clickhouse_down", key: "clickhouse", severity: Severity::Critical, title: "ClickHouse is not answering; ingest parks rows in the fallback queues", figure: (0.0, 0.0, ""), ack_after: Some(2), resolve_after: 7, note: None },
];

/// Seeds the demo alerts once (when no alert exists yet); returns how many.
pub async fn seed(
    pg: &sqlx::PgPool,
    kinds: &[&'static AlertKind],
    now: OffsetDateTime,
) -> anyhow::Result<usize> {
    let any = sqlx::query_scalar!(r#"select exists (select 1 from internal_alerts) as "any!""#)
        .fetch_one(pg)
        .await?;
    if any {
        return Ok(0);
    }
    let operator = person("operator@salvage.demo", Role::Operator);
    let admin = person("admin@salvage.demo", Role::Admin);
    let day_start = now.replace_time(time::Time::MIDNIGHT);
    for story in STORIES {
        let kind = app::alerts::ssr::kind::find(kinds, story.kind)
            .ok_or_else(|| anyhow::anyhow!("no alert kind {}", story.kind))?;
        let raised = day_start - Duration::days(story.days_ago)
            + Duration::hours(story.hour)
            + Duration::minutes(7);
        let (figure, threshold, unit) = story.figure;
        let mut signal =
            Signal::new(story.key, story.severity, story.title).with_details(json!({"demo": true}));
        if !unit.is_empty() {
            signal = if threshold > 0.0 {
                signal.measured(figure, threshold, unit)
            } else {
                signal.counted(figure, unit)
            };
        }
        let mut tx = pg.begin().await?;
        let id = store::insert(&mut tx, kind, &signal, raised).await?;
        sqlx::query!(
            "update internal_alerts set occurrences = $2, last_seen_at = $3 where id = $1",
            id,
            story.resolve_after.max(1),
            raised + Duration::minutes(story.resolve_after - 1)
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        let mut version = 1;
        if let Some(minutes) = story.ack_after {
            let changed = changes::change(
                pg,
                kinds,
                &operator,
                &[Seen { id, version }],
                Op::Acknowledge { until: None },
                Some("Looking at it.".into()),
                raised + Duration::minutes(minutes),
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            version = changed[0].version;
        }
        let resolved_at = raised + Duration::minutes(story.resolve_after);
        match story.note {
            Some(note) => {
                let by = if story.severity == Severity::Critical {
                    &admin
                } else {
                    &operator
                };
                changes::change(
                    pg,
                    kinds,
                    by,
                    &[Seen { id, version }],
                    Op::Resolve,
                    Some(note.into()),
                    resolved_at,
                )
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            }
            None => {
                let mut tx = pg.begin().await?;
                resolve_by_monitor(&mut tx, id, 2, resolved_at).await?;
                tx.commit().await?;
            }
        }
    }
    // A silence that covered a planned ClickHouse upgrade a week ago.
    sqlx::query!(
        "insert into alert_silences (kind, key_pattern, key_like, starts_at, ends_at, created_by, reason, last_matched_at)
         values ('clickhouse_down', null, '%', $1, $2, 'admin@salvage.demo',
                 'Planned ClickHouse 24.8 upgrade, change CHG-2291', null)",
        day_start - Duration::days(7) + Duration::hours(20),
        day_start - Duration::days(7) + Duration::hours(22)
    )
    .execute(pg)
    .await?;
    Ok(STORIES.len())
}
