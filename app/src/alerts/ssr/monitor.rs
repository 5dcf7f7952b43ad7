//! The self-monitor: the job that evaluates every kind, raises, re-counts, re-grades and
//! resolves alerts, ends expired acknowledgements, marks flapping, and records the
//! PostgreSQL outages this process saw.
//!
//! One evaluation at a time across replicas: the evaluation's changes run in one
//! transaction that first takes a transaction-level advisory lock; a second evaluation
//! that finds it taken reports `skipped` and changes nothing. The partial unique index
//! (one open alert per kind and key) holds even so.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::PgConnection;
use time::OffsetDateTime;

use super::kind::{AlertKind, Signal};
use super::store::{add_event, insert, match_silences, notify, SELF_MONITOR_ACTOR};
use crate::error::AppError;
use crate::jobs::ssr::{Job, JobContext, JobFuture, Report};
use crate::jobs::RunStatus;
use crate::server::AppState;

/// The advisory lock class of an evaluation (see `server::postgres::lock_class`).
pub const EVALUATION_LOCK: i32 = crate::server::postgres::lock_class::ALERT_EVALUATION;

/// The self-monitor job: `/cron/self-monitor`, the scheduler, `salvage cron run
/// self-monitor`.
pub static SELF_MONITOR: Job = Job {
    name: "self-monitor",
    description: "Evaluates every alert condition: raises, updates and resolves alerts.",
    schedule: "* * * * *",
    grace: Duration::from_secs(60),
    run: run_self_monitor,
    permission: crate::auth::Permission::Operate,
    check: None,
};

fn run_self_monitor(ctx: JobContext) -> JobFuture {
    Box::pin(async move { Ok(Box::new(evaluate(&ctx.state, ctx.now).await?) as Box<dyn Report>) })
}

/// What one evaluation did, per kind and in total.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EvaluationReport {
    /// Another evaluation held the lock: this one changed nothing.
    pub skipped: bool,
    pub raised: i64,
    pub updated: i64,
    pub resolved: i64,
    /// Kinds whose evaluator failed this time (their alerts were left as they were).
    pub failed_kinds: Vec<String>,
    pub errors: Vec<String>,
    /// Open alerts after the evaluation.
    pub open: i64,
    pub duration_ms: i64,
}

impl Report for EvaluationReport {
    fn status(&self) -> RunStatus {
        if self.failed_kinds.is_empty() {
            RunStatus::Succeeded
        } else {
            RunStatus::Partial
        }
    }
    fn rows(&self) -> i64 {
        self.raised + self.resolved
    }
    fn error(&self) -> Option<String> {
        (!self.errors.is_empty()).then(|| self.errors.join("; "))
    }
    fn details(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// Runs one evaluation of every kind at `now`.
pub async fn evaluate(state: &AppState, now: OffsetDateTime) -> Result<EvaluationReport, AppError> {
    let started = std::time::Instant::now();
    let mut report = EvaluationReport::default();
    // The evaluators read the stores outside the transaction (a ClickHouse ping may take
    // the probe timeout), concurrently.
    let kinds: Vec<&'static AlertKind> = state.alert_kinds().to_vec();
    let evaluations = futures::future::join_all(kinds.iter().filter_map(|kind| {
        kind.evaluate
            .map(|evaluate| async move { (*kind, evaluate(state.clone(), now).await) })
    }))
    .await;

    let internal = AppError::wrap("Failed to record the evaluation");
    let mut tx = state.pg.begin().await.map_err(&internal)?;
    let locked = sqlx::query_scalar!(
        r#"select pg_try_advisory_xact_lock($1, 0) as "locked!""#,
        EVALUATION_LOCK
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(&internal)?;
    if !locked {
        report.skipped = true;
        return Ok(report);
    }
    let settings = state.alerts();
    for (kind, result) in evaluations {
        match result {
            Ok(signals) => apply(&mut tx, kind, signals, settings, now, &mut report)
                .await
                .map_err(&internal)?,
            Err(error) => {
                tracing::warn!(kind = kind.name, %error, "alert kind not evaluated");
                report.failed_kinds.push(kind.name.to_owned());
                report.errors.push(format!("{}: {error}", kind.name));
            }
        }
    }
    end_expired_acknowledgements(&mut tx, now)
        .await
        .map_err(&internal)?;
    settle_flapping(&mut tx, settings, now)
        .await
        .map_err(&internal)?;
    match_silences(&mut tx, now).await.map_err(&internal)?;
    let outages = state.postgres_watch.take_ended();
    let recorded = async {
        let mut raised = 0;
        for (since, until) in &outages {
            if record_postgres_outage(&mut tx, *since, *until).await? {
                raised += 1;
            }
        }
        report.open = sqlx::query_scalar!(
            r#"select count(*) as "count!" from internal_alerts where status <> 'resolved'"#
        )
        .fetch_one(&mut *tx)
        .await?;
        Ok::<_, sqlx::Error>(raised)
    }
    .await;
    let committed = match recorded {
        Ok(raised) => tx.commit().await.map(|()| raised),
        Err(error) => Err(error),
    };
    match committed {
        Ok(raised) => report.raised += raised,
        Err(error) => {
            state.postgres_watch.put_back(outages);
            return Err(internal(error));
        }
    }
    report.duration_ms = started.elapsed().as_millis() as i64;
    Ok(report)
}

/// The open alert of one kind and key, as the evaluation needs it.
struct Open {
    id: i64,
    severity: crate::alerts::Severity,
    status: String,
    flapping: bool,
}

/// Applies one kind's signals: raise, count, re-grade; clear and resolve what is quiet.
async fn apply(
    conn: &mut PgConnection,
    kind: &AlertKind,
    signals: Vec<Signal>,
    settings: &super::AlertSettings,
    now: OffsetDateTime,
    report: &mut EvaluationReport,
) -> Result<(), sqlx::Error> {
    let mut open: HashMap<String, Open> = HashMap::new();
    for row in sqlx::query!(
        "select id, dedup_key, severity, status, flapping from internal_alerts
          where kind = $1 and status <> 'resolved' order by id for update",
        kind.name
    )
    .fetch_all(&mut *conn)
    .await?
    {
        open.insert(
            row.dedup_key,
            Open {
                id: row.id,
                severity: crate::alerts::Severity::parse(&row.severity)
                    .unwrap_or(crate::alerts::Severity::Critical),
                status: row.status,
                flapping: row.flapping,
            },
        );
    }
    let mut streaks: HashMap<String, (i32, i32)> = HashMap::new();
    for row in sqlx::query!(
        "select dedup_key, firing_streak, clear_streak from internal_alert_conditions
          where kind = $1 for update",
        kind.name
    )
    .fetch_all(&mut *conn)
    .await?
    {
        streaks.insert(row.dedup_key, (row.firing_streak, row.clear_streak));
    }

    let mut firing_keys = HashSet::new();
    for signal in signals {
        if !firing_keys.insert(signal.key.clone()) {
            continue; // an evaluator returned a key twice: the first one counts
        }
        let (firing, clear) = streaks.get(&signal.key).copied().unwrap_or((0, 0));
        let firing = firing + 1;
        save_streak(conn, kind.name, &signal.key, firing, 0, now).await?;
        match open.get(&signal.key) {
            Some(alert) => {
                sqlx::query!(
                    "update internal_alerts set occurrences = occurrences + 1, last_seen_at = $2,
                            title = $3, figure = $4, threshold = $5, unit = $6, details = $7
                      where id = $1",
                    alert.id,
                    now,
                    &signal.title,
                    signal.figure,
                    signal.threshold,
                    signal.unit,
                    &signal.details
                )
                .execute(&mut *conn)
                .await?;
                report.updated += 1;
                if signal.severity != alert.severity {
                    regrade(conn, alert, &signal, now).await?;
                }
                if clear > 0 {
                    // Clear at the last evaluation(s), firing again before the recovering
                    // window closed: the same alert, one more state change.
                    add_event(
                        conn,
                        alert.id,
                        "fired_again",
                        SELF_MONITOR_ACTOR,
                        Some(&signal.title),
                        signal.details.clone(),
                        now,
                    )
                    .await?;
                    check_flapping(
                        conn,
                        kind.name,
                        &signal.key,
                        alert.id,
                        alert.flapping,
                        settings,
                        now,
                    )
                    .await?;
                }
            }
            None if firing >= kind.fire_after as i32 => {
                let id = insert(conn, kind, &signal, now).await?;
                match_silences(conn, now).await?;
                let flapping =
                    check_flapping(conn, kind.name, &signal.key, id, false, settings, now).await?;
                if !flapping {
                    notify(conn, id, "raised", now).await?;
                }
                report.raised += 1;
            }
            None => {}
        }
    }

    // Every key with a streak or an open alert that did not fire this time is clear.
    let quiet: HashSet<String> = streaks
        .keys()
        .chain(open.keys())
        .filter(|key| !firing_keys.contains(*key))
        .cloned()
        .collect();
    for key in quiet {
        let clear = streaks.get(&key).map_or(0, |s| s.1) + 1;
        match open.get(&key) {
            Some(alert) => {
                save_streak(conn, kind.name, &key, 0, clear, now).await?;
                if kind.auto_resolve && !alert.flapping && clear >= settings.recover_evaluations {
                    resolve_by_monitor(conn, alert.id, clear, now).await?;
                    report.resolved += 1;
                }
            }
            None if clear >= settings.recover_evaluations => {
                // Nothing open and long clear: forget the key.
                sqlx::query!(
                    "delete from internal_alert_conditions where kind = $1 and dedup_key = $2",
                    kind.name,
                    &key
                )
                .execute(&mut *conn)
                .await?;
            }
            None => save_streak(conn, kind.name, &key, 0, clear, now).await?,
        }
    }
    Ok(())
}

async fn save_streak(
    conn: &mut PgConnection,
    kind: &str,
    key: &str,
    firing: i32,
    clear: i32,
    now: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "insert into internal_alert_conditions (kind, dedup_key, firing_streak, clear_streak, evaluated_at)
         values ($1, $2, $3, $4, $5)
         on conflict (kind, dedup_key) do update
            set firing_streak = excluded.firing_streak, clear_streak = excluded.clear_streak,
                evaluated_at = excluded.evaluated_at",
        kind,
        key,
        firing,
        clear,
        now
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// A new severity: recorded; a rise un-acknowledges and notifies.
async fn regrade(
    conn: &mut PgConnection,
    alert: &Open,
    signal: &Signal,
    now: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    let rise = signal.severity > alert.severity;
    sqlx::query!(
        "update internal_alerts set severity = $2, version = version + 1,
                status = case when $3 then 'firing' else status end,
                acknowledged_until = case when $3 then null else acknowledged_until end
          where id = $1",
        alert.id,
        signal.severity.as_str(),
        rise && alert.status == "acknowledged"
    )
    .execute(&mut *conn)
    .await?;
    let note = format!("{} → {}", alert.severity.as_str(), signal.severity.as_str());
    add_event(
        conn,
        alert.id,
        "severity_changed",
        SELF_MONITOR_ACTOR,
        Some(&note),
        json!({}),
        now,
    )
    .await?;
    if rise {
        if alert.status == "acknowledged" {
            add_event(
                conn,
                alert.id,
                "unacknowledged",
                SELF_MONITOR_ACTOR,
                Some("the severity rose"),
                json!({}),
                now,
            )
            .await?;
        }
        notify(conn, alert.id, "severity_rise", now).await?;
    }
    Ok(())
}

/// Resolves alert `id` as the self-monitor does once its condition was clear for `clear`
/// evaluations: status, version, the `auto_resolved` event, the notification.
pub async fn resolve_by_monitor(
    conn: &mut PgConnection,
    id: i64,
    clear: i32,
    now: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update internal_alerts set status = 'resolved', resolved_at = $2, resolved_by = $3,
                version = version + 1 where id = $1",
        id,
        now,
        SELF_MONITOR_ACTOR
    )
    .execute(&mut *conn)
    .await?;
    let note = format!("clear for {clear} consecutive evaluations");
    add_event(
        conn,
        id,
        "auto_resolved",
        SELF_MONITOR_ACTOR,
        Some(&note),
        json!({}),
        now,
    )
    .await?;
    notify(conn, id, "resolved", now).await
}

/// State changes (raises, re-fires, resolutions) of one kind and key within the flap
/// window. More than the setting marks the open alert flapping; returns whether it is.
async fn check_flapping(
    conn: &mut PgConnection,
    kind: &str,
    key: &str,
    alert_id: i64,
    already: bool,
    settings: &super::AlertSettings,
    now: OffsetDateTime,
) -> Result<bool, sqlx::Error> {
    if already {
        return Ok(true);
    }
    let window =
        time::Duration::try_from(settings.flap_window).unwrap_or(time::Duration::minutes(30));
    let changes: i64 = sqlx::query_scalar!(
        r#"select count(*) as "count!" from internal_alert_events e
           join internal_alerts a on a.id = e.alert_id
          where a.kind = $1 and a.dedup_key = $2 and e.at > $3
            and e.event in ('raised', 'regressed', 'fired_again', 'resolved', 'auto_resolved')"#,
        kind,
        key,
        now - window
    )
    .fetch_one(&mut *conn)
    .await?;
    if changes <= settings.flap_changes {
        return Ok(false);
    }
    let marked = sqlx::query!(
        "update internal_alerts set flapping = true, version = version + 1
          where id = $1 and status <> 'resolved' and not flapping",
        alert_id
    )
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if marked > 0 {
        let note = format!(
            "{changes} state changes within {} min",
            window.whole_minutes()
        );
        add_event(
            conn,
            alert_id,
            "flapping",
            SELF_MONITOR_ACTOR,
            Some(&note),
            json!({}),
            now,
        )
        .await?;
    }
    Ok(marked > 0)
}

/// A flapping alert with no state change for the whole window is stable again.
async fn settle_flapping(
    conn: &mut PgConnection,
    settings: &super::AlertSettings,
    now: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    let window =
        time::Duration::try_from(settings.flap_window).unwrap_or(time::Duration::minutes(30));
    let settled: Vec<i64> = sqlx::query_scalar!(
        "update internal_alerts a set flapping = false, version = version + 1
          where a.flapping and a.status <> 'resolved'
            and not exists (select 1 from internal_alert_events e
                              join internal_alerts b on b.id = e.alert_id
                             where b.kind = a.kind and b.dedup_key = a.dedup_key and e.at > $1
                               and e.event in ('raised', 'regressed', 'fired_again', 'resolved',
                                               'auto_resolved', 'flapping'))
          returning a.id",
        now - window
    )
    .fetch_all(&mut *conn)
    .await?;
    for id in settled {
        let note = format!("no state change for {} min", window.whole_minutes());
        add_event(
            conn,
            id,
            "stable",
            SELF_MONITOR_ACTOR,
            Some(&note),
            json!({}),
            now,
        )
        .await?;
    }
    Ok(())
}

/// Acknowledgements past their "until" end: the alert fires (and notifies) again.
async fn end_expired_acknowledgements(
    conn: &mut PgConnection,
    now: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    let ended: Vec<i64> = sqlx::query_scalar!(
        "update internal_alerts set status = 'firing', acknowledged_until = null, version = version + 1
          where status = 'acknowledged' and acknowledged_until <= $1 returning id",
        now
    )
    .fetch_all(&mut *conn)
    .await?;
    for id in ended {
        add_event(
            conn,
            id,
            "unacknowledged",
            SELF_MONITOR_ACTOR,
            Some("the acknowledgement's time ran out"),
            json!({}),
            now,
        )
        .await?;
        notify(conn, id, "unacknowledged", now).await?;
    }
    Ok(())
}

/// Records an outage of PostgreSQL this process saw (`since` to `until`) as a resolved
/// `postgres_down` alert, unless another replica recorded an overlapping one. Returns
/// whether it recorded one.
async fn record_postgres_outage(
    conn: &mut PgConnection,
    since: OffsetDateTime,
    until: OffsetDateTime,
) -> Result<bool, sqlx::Error> {
    let known: bool = sqlx::query_scalar!(
        r#"select exists (select 1 from internal_alerts where kind = 'postgres_down'
                            and first_seen_at <= $2 and resolved_at >= $1) as "known!""#,
        since,
        until
    )
    .fetch_one(&mut *conn)
    .await?;
    if known {
        return Ok(false);
    }
    let seconds = (until - since).whole_seconds().max(0) as f64;
    let title = format!(
        "PostgreSQL did not answer for {}",
        crate::format::format_duration((seconds * 1000.0) as i64)
    );
    let id: i64 = sqlx::query_scalar!(
        "insert into internal_alerts (kind, dedup_key, severity, title, figure, unit, status,
                                      first_seen_at, last_seen_at, resolved_at, resolved_by, details)
         values ('postgres_down', 'postgresql', 'critical', $1, $2, 'seconds', 'resolved', $3, $4, $4, $5, $6)
         returning id",
        &title,
        seconds,
        since,
        until,
        SELF_MONITOR_ACTOR,
        json!({"since": crate::server::unix_ms(since), "until": crate::server::unix_ms(until)})
    )
    .fetch_one(&mut *conn)
    .await?;
    add_event(
        conn,
        id,
        "raised",
        SELF_MONITOR_ACTOR,
        Some("recorded when PostgreSQL answered again"),
        json!({}),
        since,
    )
    .await?;
    add_event(
        conn,
        id,
        "auto_resolved",
        SELF_MONITOR_ACTOR,
        Some(&title),
        json!({}),
        until,
    )
    .await?;
    Ok(true)
}
