//! The alerts in PostgreSQL and every change to them.
//!
//! Race rules: a person's change carries the `version` they saw. The row is locked
//! (`for update`) and the change applies only if the version is still the same;
//! otherwise it answers 409 with what happened meanwhile ("resolved by the self-monitor
//! at 10:42 UTC while you were typing"). The self-monitor takes the same row locks, so a
//! person and the monitor never interleave on one alert. Re-evaluations that only count
//! an occurrence do not bump the version, so an operator typing a note is not refused
//! because a minute passed.

use serde_json::{json, Value};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Row};
use time::OffsetDateTime;

use super::super::{actor_name, Alert, AlertEvent, AlertStatus, Changed, Seen, Severity};
use super::kind::{find, AlertKind, Signal};
use crate::auth::ssr::Actor;
use crate::error::AppError;
use crate::format::format_utc;
use crate::history::ssr::{append, NewEntry};
use crate::history::Outcome;
use crate::server::unix_ms;

/// Most alerts one bulk change takes.
pub const MAX_BULK: usize = 200;

/// Alert notes one person may add per [`NOTE_WINDOW_SECS`].
pub const NOTES_PER_WINDOW: i64 = 30;
/// See [`NOTES_PER_WINDOW`].
pub const NOTE_WINDOW_SECS: i64 = 600;
/// The advisory lock class of a person's alert-note count.
const NOTE_RATE_LOCK: i32 = 7311;

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
    let rows = sqlx::query(
        "select at, event, actor, note, history_id from internal_alert_events
          where alert_id = $1 order by at, id",
    )
    .bind(id)
    .fetch_all(pg)
    .await?;
    Ok(rows
        .iter()
        .map(|r| AlertEvent {
            at: unix_ms(r.get("at")),
            event: r.get("event"),
            actor: r.get("actor"),
            note: r.get("note"),
            history_id: r.get("history_id"),
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
    sqlx::query_scalar(
        "insert into internal_alert_events (alert_id, at, event, actor, note, details)
         values ($1, $2, $3, $4, $5, $6) returning id",
    )
    .bind(alert_id)
    .bind(at)
    .bind(event)
    .bind(actor)
    .bind(note)
    .bind(details)
    .fetch_one(conn)
    .await
}

/// The notification seam: records that `event` happened to the alert, quiet when an
/// active silence matches it or it is flapping, except a resolution of an alert whose
/// raise was sent: whoever heard it fire hears it resolve. Nothing sends these yet.
pub async fn notify(
    conn: &mut PgConnection,
    alert_id: i64,
    event: &str,
    at: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    sqlx::query(
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
    )
    .bind(alert_id)
    .bind(event)
    .bind(at)
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
    sqlx::query(
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
    )
    .bind(now)
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
    let open: Option<(i64, f64)> = sqlx::query_as(
        "select id, coalesce(figure, 0) from internal_alerts
          where kind = $1 and dedup_key = $2 and status <> 'resolved' for update",
    )
    .bind(kind.name)
    .bind(&signal.key)
    .fetch_optional(&mut *conn)
    .await?;
    match open {
        Some((id, figure)) => {
            sqlx::query(
                "update internal_alerts set occurrences = occurrences + 1, last_seen_at = $2,
                        figure = $3, title = $4, details = $5 where id = $1",
            )
            .bind(id)
            .bind(now)
            .bind(figure + signal.figure.unwrap_or(0.0))
            .bind(&signal.title)
            .bind(&signal.details)
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
    let previous: Option<i64> = sqlx::query_scalar(
        "select id from internal_alerts where kind = $1 and dedup_key = $2
          order by first_seen_at desc, id desc limit 1",
    )
    .bind(kind.name)
    .bind(&signal.key)
    .fetch_optional(&mut *conn)
    .await?;
    let id: i64 = sqlx::query_scalar(
        "insert into internal_alerts (kind, dedup_key, severity, title, figure, threshold, unit,
                                      details, status, first_seen_at, last_seen_at, regressed_from)
         values ($1, $2, $3, $4, $5, $6, $7, $8, 'firing', $9, $9, $10) returning id",
    )
    .bind(kind.name)
    .bind(&signal.key)
    .bind(signal.severity.as_str())
    .bind(&signal.title)
    .bind(signal.figure)
    .bind(signal.threshold)
    .bind(signal.unit)
    .bind(&signal.details)
    .bind(now)
    .bind(previous)
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

/// What a person does to an alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Acknowledge { until: Option<OffsetDateTime> },
    Resolve,
}

/// The row of an alert locked for a change.
struct Locked {
    id: i64,
    kind: String,
    dedup_key: String,
    severity: Severity,
    status: AlertStatus,
    version: i32,
    title: String,
    resolved_by: Option<String>,
    resolved_at: Option<OffsetDateTime>,
}

async fn lock(conn: &mut PgConnection, id: i64) -> Result<Option<Locked>, sqlx::Error> {
    let row = sqlx::query(
        "select id, kind, dedup_key, severity, status, version, title, resolved_by, resolved_at
           from internal_alerts where id = $1 for update",
    )
    .bind(id)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|r| Locked {
        id: r.get("id"),
        kind: r.get("kind"),
        dedup_key: r.get("dedup_key"),
        severity: Severity::parse(r.get("severity")).unwrap_or(Severity::Critical),
        status: AlertStatus::parse(r.get("status")).unwrap_or(AlertStatus::Firing),
        version: r.get("version"),
        title: r.get("title"),
        resolved_by: r.get("resolved_by"),
        resolved_at: r.get("resolved_at"),
    }))
}

/// The sentence of a stale change: what happened to the alert after `seen`.
async fn stale(conn: &mut PgConnection, locked: &Locked) -> Result<AppError, sqlx::Error> {
    let last: Option<(String, String, OffsetDateTime)> = sqlx::query_as(
        "select event, actor, at from internal_alert_events
          where alert_id = $1 and event in ('acknowledged', 'unacknowledged', 'resolved',
                'auto_resolved', 'severity_changed', 'flapping', 'stable')
          order by id desc limit 1",
    )
    .bind(locked.id)
    .fetch_optional(conn)
    .await?;
    let what = match &last {
        Some((event, actor, at)) => {
            let done = match event.as_str() {
                "auto_resolved" | "resolved" => "resolved",
                "acknowledged" => "acknowledged",
                "unacknowledged" => "un-acknowledged",
                "severity_changed" => "raised to a new severity",
                "flapping" => "marked flapping",
                _ => "marked stable",
            };
            format!(
                "{done} by {} at {}",
                actor_name(actor),
                format_utc(unix_ms(*at))
            )
        }
        None => "changed".into(),
    };
    Ok(AppError::Conflict {
        message: format!(
            "Alert #{} was {what} while you were typing; nothing changed. Look at it again and retry.",
            locked.id
        ),
    })
}

/// Whether the alert's condition was still firing at the last evaluation (within
/// `fresh`): resolving it by hand would only open it again.
async fn still_firing(
    conn: &mut PgConnection,
    locked: &Locked,
    now: OffsetDateTime,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "select exists (select 1 from internal_alert_conditions
                         where kind = $1 and dedup_key = $2 and firing_streak > 0
                           and evaluated_at > $3)",
    )
    .bind(&locked.kind)
    .bind(&locked.dedup_key)
    .bind(now - time::Duration::minutes(10))
    .fetch_one(conn)
    .await
}

/// Why `op` cannot apply to the locked alert, if it cannot.
async fn refusal(
    conn: &mut PgConnection,
    kinds: &[&'static AlertKind],
    locked: &Locked,
    seen: Seen,
    op: Op,
    note: Option<&str>,
    now: OffsetDateTime,
) -> Result<Option<AppError>, sqlx::Error> {
    if locked.status == AlertStatus::Resolved {
        let by = locked
            .resolved_by
            .as_deref()
            .map(actor_name)
            .unwrap_or_default();
        let at = locked
            .resolved_at
            .map(|t| format_utc(unix_ms(t)))
            .unwrap_or_default();
        let what = match op {
            Op::Acknowledge { .. } => "acknowledging it",
            Op::Resolve => "resolving it again",
        };
        return Ok(Some(AppError::Conflict {
            message: format!(
                "Alert #{} was already resolved by {by} at {at}; {what} changes nothing.",
                locked.id
            ),
        }));
    }
    if locked.version != seen.version {
        return Ok(Some(stale(conn, locked).await?));
    }
    if op == Op::Resolve {
        if locked.severity == Severity::Critical && note.is_none() {
            return Ok(Some(AppError::invalid(
                "note",
                format!(
                    "alert #{} is critical: say what was done before resolving it",
                    locked.id
                ),
            )));
        }
        let evaluated = find(kinds, &locked.kind).is_some_and(|k| k.evaluate.is_some());
        if evaluated && still_firing(conn, locked, now).await? {
            return Ok(Some(AppError::Conflict {
                message: format!(
                    "Alert #{} is still firing at the last evaluation: resolving it would only \
                     open it again. Acknowledge or silence it; the self-monitor resolves it \
                     once it clears.",
                    locked.id
                ),
            }));
        }
    }
    Ok(None)
}

/// Acknowledges or resolves the alerts of `seen` (each at the version the person saw),
/// all or none, with one note and one history entry, in one transaction. A refusal names
/// every alert that could not change and why.
pub async fn change(
    pg: &PgPool,
    kinds: &[&'static AlertKind],
    actor: &Actor,
    seen: &[Seen],
    op: Op,
    note: Option<String>,
    now: OffsetDateTime,
) -> Result<Vec<Changed>, AppError> {
    if seen.is_empty() {
        return Err(AppError::invalid("alerts", "select at least one alert"));
    }
    if seen.len() > MAX_BULK {
        return Err(AppError::invalid(
            "alerts",
            format!("select at most {MAX_BULK} alerts at once"),
        ));
    }
    if let Op::Acknowledge { until: Some(until) } = op {
        if until <= now {
            return Err(AppError::invalid("until", "must be in the future"));
        }
    }
    let internal = AppError::wrap("Failed to change the alert");
    let mut tx = pg.begin().await.map_err(&internal)?;
    let mut ids: Vec<i64> = seen.iter().map(|s| s.id).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut locked = Vec::with_capacity(ids.len());
    let mut refused = Vec::new();
    // Locked in id order, so two bulk changes never deadlock.
    for id in ids {
        let version = seen.iter().find(|s| s.id == id).map_or(0, |s| s.version);
        match lock(&mut tx, id).await.map_err(&internal)? {
            None => refused.push(AppError::NotFound {
                what: format!("Alert #{id}"),
            }),
            Some(row) => {
                let seen = Seen { id, version };
                match refusal(&mut tx, kinds, &row, seen, op, note.as_deref(), now)
                    .await
                    .map_err(&internal)?
                {
                    Some(error) => refused.push(error),
                    None => locked.push(row),
                }
            }
        }
    }
    if let Some(first) = refused.first() {
        if refused.len() == 1 && seen.len() == 1 {
            return Err(first.clone());
        }
        let reasons: Vec<String> = refused.iter().map(|e| e.to_string()).collect();
        return Err(AppError::Conflict {
            message: format!("Nothing changed. {}", reasons.join(" ")),
        });
    }
    let mut changed = Vec::with_capacity(locked.len());
    let mut events = Vec::with_capacity(locked.len());
    for row in &locked {
        let (event, version) = match op {
            Op::Acknowledge { until } => {
                let version: i32 = sqlx::query_scalar(
                    "update internal_alerts set status = 'acknowledged', acknowledged_by = $2,
                            acknowledged_at = $3, acknowledged_until = $4, version = version + 1
                      where id = $1 returning version",
                )
                .bind(row.id)
                .bind(&actor.name)
                .bind(now)
                .bind(until)
                .fetch_one(&mut *tx)
                .await
                .map_err(&internal)?;
                ("acknowledged", version)
            }
            Op::Resolve => {
                let version: i32 = sqlx::query_scalar(
                    "update internal_alerts set status = 'resolved', resolved_by = $2,
                            resolved_at = $3, resolution_note = $4, version = version + 1
                      where id = $1 returning version",
                )
                .bind(row.id)
                .bind(&actor.name)
                .bind(now)
                .bind(&note)
                .fetch_one(&mut *tx)
                .await
                .map_err(&internal)?;
                notify(&mut tx, row.id, "resolved", now)
                    .await
                    .map_err(&internal)?;
                ("resolved", version)
            }
        };
        let until = match op {
            Op::Acknowledge { until } => until.map(unix_ms),
            Op::Resolve => None,
        };
        let event_id = add_event(
            &mut tx,
            row.id,
            event,
            &actor.name,
            note.as_deref(),
            json!({"until": until}),
            now,
        )
        .await
        .map_err(&internal)?;
        events.push(event_id);
        changed.push((row.id, version));
    }
    let verb = match op {
        Op::Acknowledge { .. } => "Acknowledged",
        Op::Resolve => "Resolved",
    };
    let title = match locked.as_slice() {
        [one] => format!("{verb} alert #{}: {}", one.id, one.title),
        many => format!("{verb} {} alerts", many.len()),
    };
    let entry = NewEntry::new(
        "alert",
        title,
        actor,
        if matches!(op, Op::Resolve) {
            Outcome::Succeeded
        } else {
            Outcome::Info
        },
    )
    .with_times(now, Some(now))
    .with_body(note.clone().unwrap_or_default())
    .with_details(json!({
        "alerts": locked.iter().map(|r| json!({"id": r.id, "kind": r.kind, "key": r.dedup_key,
            "severity": r.severity.as_str()})).collect::<Vec<_>>(),
        "action": verb.to_lowercase(),
    }));
    let history_id = append(&mut tx, &entry).await.map_err(&internal)?;
    sqlx::query("update internal_alert_events set history_id = $1 where id = any($2)")
        .bind(history_id)
        .bind(&events)
        .execute(&mut *tx)
        .await
        .map_err(&internal)?;
    tx.commit().await.map_err(&internal)?;
    Ok(changed
        .into_iter()
        .map(|(alert_id, version)| Changed {
            alert_id,
            version,
            history_id,
        })
        .collect())
}

/// Adds a note to an alert's timeline (open or resolved) and to the history.
pub async fn add_note(
    pg: &PgPool,
    actor: &Actor,
    id: i64,
    note: &str,
    now: OffsetDateTime,
) -> Result<Changed, AppError> {
    let internal = AppError::wrap("Failed to add the note");
    let mut tx = pg.begin().await.map_err(&internal)?;
    if let Some(user_id) = actor.user_id {
        // Notes are history entries: one person adds at most NOTES_PER_WINDOW of them per
        // window (counted under a per-person lock, so concurrent calls cannot overshoot).
        sqlx::query("select pg_advisory_xact_lock($1, $2::int)")
            .bind(NOTE_RATE_LOCK)
            .bind(user_id as i32)
            .execute(&mut *tx)
            .await
            .map_err(&internal)?;
        let recent: i64 = sqlx::query_scalar(
            "select count(*) from internal_alert_events
              where actor = $1 and event = 'note' and at > $2",
        )
        .bind(&actor.name)
        .bind(now - time::Duration::seconds(NOTE_WINDOW_SECS))
        .fetch_one(&mut *tx)
        .await
        .map_err(&internal)?;
        if recent >= NOTES_PER_WINDOW {
            tracing::warn!(actor = %actor.name, "refused: too many alert notes");
            return Err(AppError::RateLimited {
                message: format!(
                    "You added {NOTES_PER_WINDOW} alert notes in the last {} minutes; add more in a few minutes.",
                    NOTE_WINDOW_SECS / 60
                ),
                retry_after_secs: 60,
            });
        }
    }
    let row = lock(&mut tx, id)
        .await
        .map_err(&internal)?
        .ok_or_else(|| AppError::NotFound {
            what: format!("Alert #{id}"),
        })?;
    let event = add_event(&mut tx, id, "note", &actor.name, Some(note), json!({}), now)
        .await
        .map_err(&internal)?;
    let entry = NewEntry::new(
        "alert",
        format!("Note on alert #{id}: {}", row.title),
        actor,
        Outcome::Info,
    )
    .with_times(now, Some(now))
    .with_body(note)
    .with_details(
        json!({"alerts": [{"id": id, "kind": row.kind, "key": row.dedup_key}], "action": "note"}),
    );
    let history_id = append(&mut tx, &entry).await.map_err(&internal)?;
    sqlx::query("update internal_alert_events set history_id = $1 where id = $2")
        .bind(history_id)
        .bind(event)
        .execute(&mut *tx)
        .await
        .map_err(&internal)?;
    tx.commit().await.map_err(&internal)?;
    Ok(Changed {
        alert_id: id,
        version: row.version,
        history_id,
    })
}
