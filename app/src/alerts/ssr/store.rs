//! The alerts in PostgreSQL: reading them, their timeline, raising (by the self-monitor
//! and by events such as expiry), matching silences and the notification seam. What
//! people change is in `changes`.

use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Row};
use time::OffsetDateTime;

use super::super::{Alert, AlertEvent, AlertStatus, Severity};
use super::kind::{find, AlertKind, Signal};
use crate::error::AppError;
use crate::server::unix_ms;

/// The actor of the self-monitor's changes.
pub const SELF_MONITOR_ACTOR: &str = "system:self-monitor";

/// The columns every alert query selects, `$1` being now (for `silenced`).
pub const ALERT_COLUMNS: &str = "a.id, a.kind, a.dedup_key, a.severity, a.status, a.title,
    a.figure, a.threshold, a.unit, a.first_seen_at, a.last_seen_at, a.occurrences, a.version,
    a.regressed_from, a.flapping, a.acknowledged_by, a.acknowledged_at, a.acknowledged_until,
    a.resolved_at, a.resolved_by, a.resolution_note,
    exists (select 1 from alert_silences s
             where s.kind = a.kind and s.ended_at is null and s.starts_at <= $1
               and s.ends_at > $1 and a.dedup_key like s.key_like) as silenced";

/// An alert row (selected with [`ALERT_COLUMNS`]) as the page shows it.
pub fn alert_from_row(row: &PgRow, kinds: &[&'static AlertKind]) -> Alert {
    let kind: String = row.get("kind");
    let key: String = row.get("dedup_key");
    let fix = find(kinds, &kind).map(|k| k.fix);
    let ms = |name: &str| row.get::<Option<OffsetDateTime>, _>(name).map(unix_ms);
    Alert {
        id: row.get("id"),
        severity: Severity::parse(row.get("severity")).unwrap_or(Severity::Critical),
        status: AlertStatus::parse(row.get("status")).unwrap_or(AlertStatus::Firing),
        title: row.get("title"),
        figure: row.get("figure"),
        threshold: row.get("threshold"),
        unit: row.get("unit"),
        first_seen_at: unix_ms(row.get("first_seen_at")),
        last_seen_at: unix_ms(row.get("last_seen_at")),
        occurrences: row.get("occurrences"),
        version: row.get("version"),
        regressed_from: row.get("regressed_from"),
        flapping: row.get("flapping"),
        silenced: row.get("silenced"),
        acknowledged_by: row.get("acknowledged_by"),
        acknowledged_at: ms("acknowledged_at"),
        acknowledged_until: ms("acknowledged_until"),
        resolved_at: ms("resolved_at"),
        resolved_by: row.get("resolved_by"),
        resolution_note: row.get("resolution_note"),
        fix_href: fix.map_or("/admin/alerts", |f| f.href).to_owned(),
        fix_label: fix.map_or("", |f| f.label).to_owned(),
        fix_action: fix.and_then(|f| f.action_for(&key)),
        kind,
        key,
    }
}

/// One alert by id.
pub async fn load(
    pg: &PgPool,
    kinds: &[&'static AlertKind],
    id: i64,
    now: OffsetDateTime,
) -> Result<Alert, AppError> {
    let row = sqlx::query(&format!(
        "select {ALERT_COLUMNS} from internal_alerts a where a.id = $2"
    ))
    .bind(now)
    .bind(id)
    .fetch_optional(pg)
    .await
    .map_err(AppError::wrap("Failed to read the alert"))?
    .ok_or_else(|| AppError::NotFound {
        what: format!("Alert #{id}"),
    })?;
    Ok(alert_from_row(&row, kinds))
}

/// The timeline of alert `id`, oldest first.
pub async fn timeline(pg: &PgPool, id: i64) -> Result<Vec<AlertEvent>, sqlx::Error> {
    let rows = sqlx::query!(
        "select at, event, actor, note, history_id from internal_alert_events
          where alert_id = $1 order by at, id",
        id
    )
    .fetch_all(pg)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| AlertEvent {
            at: unix_ms(r.at),
            event: r.event,
            actor: r.actor,
            note: r.note,
            history_id: r.history_id,
        })
        .collect())
}

/// Adds an event to an alert's timeline.
pub async fn add_event(
    conn: &mut PgConnection,
    alert_id: i64,
    event: &str,
    actor: &str,
    note: Option<&str>,
    details: Value,
    at: OffsetDateTime,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        "insert into internal_alert_events (alert_id, at, event, actor, note, details)
         values ($1, $2, $3, $4, $5, $6) returning id",
        alert_id,
        at,
        event,
        actor,
        note,
        details
    )
    .fetch_one(conn)
    .await
}

/// The notification seam: records that `event` happened to the alert, quiet when an
/// active silence matches it or it is flapping, except a resolution of an alert whose
/// raise was sent: whoever heard it fire hears it resolve. The dead-letter feature's
/// deliveries send them (`take_unsent`).
pub async fn notify(
    conn: &mut PgConnection,
    alert_id: i64,
    event: &str,
    at: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "insert into alert_notifications (alert_id, event, severity, created_at, quiet_reason)
         select a.id, $2, a.severity, $3,
                -- Whoever was told it fired is told it resolved, silenced or not.
                case when $2 = 'resolved' and exists (select 1 from alert_notifications p
                                                       where p.alert_id = a.id
                                                         and p.quiet_reason is null) then null
                     when a.flapping then 'flapping'
                     when exists (select 1 from alert_silences s
                                   where s.kind = a.kind and s.ended_at is null
                                     and s.starts_at <= $3 and s.ends_at > $3
                                     and a.dedup_key like s.key_like) then 'silenced'
                end
           from internal_alerts a where a.id = $1",
        alert_id,
        event,
        at
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Records which active silences mute which open alerts now: new matches get a
/// `silenced` event, and every matching silence its `last_matched_at`.
pub async fn match_silences(
    conn: &mut PgConnection,
    now: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "with m as (
            select s.id as sid, a.id as aid from alert_silences s
              join internal_alerts a on a.kind = s.kind and a.dedup_key like s.key_like
             where s.ended_at is null and s.starts_at <= $1 and s.ends_at > $1
               and a.status <> 'resolved'),
         new_matches as (
            insert into alert_silence_matches (silence_id, alert_id, matched_at)
            select sid, aid, $1 from m on conflict do nothing
            returning silence_id, alert_id),
         events as (
            insert into internal_alert_events (alert_id, at, event, actor, note)
            select alert_id, $1, 'silenced', 'silence #' || silence_id, null from new_matches)
         update alert_silences set last_matched_at = $1 where id in (select sid from m)",
        now
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Raises `signal` of `kind` for an event (expiry's `data_expired`), in the caller's
/// transaction: a new alert, or one more occurrence of the open one (its figure adds up).
/// Returns the alert's id.
pub async fn raise_event(
    conn: &mut PgConnection,
    kind: &AlertKind,
    signal: &Signal,
    now: OffsetDateTime,
) -> Result<i64, sqlx::Error> {
    let open = sqlx::query!(
        r#"select id, coalesce(figure, 0) as "figure!" from internal_alerts
          where kind = $1 and dedup_key = $2 and status <> 'resolved' for update"#,
        kind.name,
        signal.key
    )
    .fetch_optional(&mut *conn)
    .await?
    .map(|row| (row.id, row.figure));
    match open {
        Some((id, figure)) => {
            sqlx::query!(
                "update internal_alerts set occurrences = occurrences + 1, last_seen_at = $2,
                        figure = $3, title = $4, details = $5 where id = $1",
                id,
                now,
                figure + signal.figure.unwrap_or(0.0),
                signal.title,
                signal.details
            )
            .execute(&mut *conn)
            .await?;
            add_event(
                conn,
                id,
                "fired_again",
                SELF_MONITOR_ACTOR,
                Some(&signal.title),
                signal.details.clone(),
                now,
            )
            .await?;
            Ok(id)
        }
        None => {
            let id = insert(conn, kind, signal, now).await?;
            match_silences(conn, now).await?;
            notify(conn, id, "raised", now).await?;
            Ok(id)
        }
    }
}

/// Inserts a new open alert for `signal` (linked to the last resolved one of the same
/// kind and key, as a regression) with its `raised`/`regressed` event.
pub async fn insert(
    conn: &mut PgConnection,
    kind: &AlertKind,
    signal: &Signal,
    now: OffsetDateTime,
) -> Result<i64, sqlx::Error> {
    let previous = sqlx::query_scalar!(
        "select id from internal_alerts where kind = $1 and dedup_key = $2
          order by first_seen_at desc, id desc limit 1",
        kind.name,
        signal.key
    )
    .fetch_optional(&mut *conn)
    .await?;
    let id = sqlx::query_scalar!(
        "insert into internal_alerts (kind, dedup_key, severity, title, figure, threshold, unit,
                                      details, status, first_seen_at, last_seen_at, regressed_from)
         values ($1, $2, $3, $4, $5, $6, $7, $8, 'firing', $9, $9, $10) returning id",
        kind.name,
        signal.key,
        signal.severity.as_str(),
        signal.title,
        signal.figure,
        signal.threshold,
        signal.unit,
        signal.details,
        now,
        previous
    )
    .fetch_one(&mut *conn)
    .await?;
    let event = if previous.is_some() {
        "regressed"
    } else {
        "raised"
    };
    add_event(
        conn,
        id,
        event,
        SELF_MONITOR_ACTOR,
        Some(&signal.title),
        signal.details.clone(),
        now,
    )
    .await?;
    Ok(id)
}

/// A notification to send: the alert as it is now and what happened to it.
#[derive(Clone, Debug, PartialEq)]
pub struct Notification {
    pub id: i64,
    pub alert_id: i64,
    /// `raised`, `severity_rise`, `unacknowledged` or `resolved`.
    pub event: String,
    pub kind: String,
    pub severity: String,
    pub title: String,
    pub figure: Option<f64>,
    pub threshold: Option<f64>,
    pub unit: Option<String>,
    pub created_at: OffsetDateTime,
}

/// Takes up to `limit` notifications not yet sent and not quiet (silenced, flapping),
/// created since `since`, oldest first, and marks them sent at `at` in the caller's
/// transaction: the caller turns them into deliveries in the same transaction, so each
/// goes out once.
pub async fn take_unsent(
    conn: &mut PgConnection,
    since: OffsetDateTime,
    limit: i64,
    at: OffsetDateTime,
) -> Result<Vec<Notification>, sqlx::Error> {
    let rows = sqlx::query_as!(
        Notification,
        r#"with taken as (
            select id from alert_notifications
             where sent_at is null and quiet_reason is null and created_at >= $1
             order by created_at, id
             limit $2
               for update skip locked),
         marked as (
            update alert_notifications n set sent_at = $3 from taken
             where n.id = taken.id
         returning n.id, n.alert_id, n.event, n.severity, n.created_at)
         select m.id as "id!", m.alert_id as "alert_id!", m.event as "event!",
                m.severity as "severity!", m.created_at as "created_at!", a.kind, a.title,
                a.figure, a.threshold, a.unit
           from marked m join internal_alerts a on a.id = m.alert_id
          order by m.created_at, m.id"#,
        since,
        limit,
        at
    )
    .fetch_all(conn)
    .await?;
    Ok(rows)
}
