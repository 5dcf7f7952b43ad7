//! What people change on alerts: acknowledge, resolve (one or many), notes.
//!
//! Race rules: a person's change carries the `version` they saw. The row is locked
//! (`for update`) and the change applies only if the version is still the same;
//! otherwise it answers 409 with what happened meanwhile ("resolved by the self-monitor
//! at 10:42 UTC while you were typing"). The self-monitor takes the same row locks, so a
//! person and the monitor never interleave on one alert. Re-evaluations that only count
//! an occurrence do not bump the version, so an operator typing a note is not refused
//! because a minute passed.

use serde_json::json;
use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;

use super::super::{actor_name, AlertStatus, Changed, Seen, Severity};
use super::kind::{find, AlertKind};
use super::store::{add_event, notify};
use crate::auth::ssr::Actor;
use crate::error::AppError;
use crate::format::format_utc;
use crate::history::ssr::{append, NewEntry};
use crate::history::Outcome;
use crate::server::unix_ms;

crate::history::ssr::details! {
    /// Alerts a person acknowledged, resolved or wrote a note on.
    struct AlertsChanged for Alert {
        alerts: Vec<AlertRef>,
        /// `acknowledged`, `resolved` or `note`.
        action: String,
    }
}

/// An alert an entry is about.
#[derive(Clone, Debug, serde::Serialize)]
struct AlertRef {
    id: i64,
    kind: String,
    key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    severity: Option<Severity>,
}

/// Most alerts one bulk change takes.
pub const MAX_BULK: usize = 200;

/// Alert notes one person may add per [`NOTE_WINDOW_SECS`].
pub const NOTES_PER_WINDOW: i64 = 30;
/// See [`NOTES_PER_WINDOW`].
pub const NOTE_WINDOW_SECS: i64 = 600;
/// The advisory lock class of a person's alert-note count.
const NOTE_RATE_LOCK: i32 = crate::server::postgres::lock_class::ALERT_NOTE_RATE;

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
    let row = sqlx::query!(
        "select id, kind, dedup_key, severity, status, version, title, resolved_by, resolved_at
           from internal_alerts where id = $1 for update",
        id
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|r| Locked {
        id: r.id,
        kind: r.kind,
        dedup_key: r.dedup_key,
        severity: Severity::parse(&r.severity).unwrap_or(Severity::Critical),
        status: AlertStatus::parse(&r.status).unwrap_or(AlertStatus::Firing),
        version: r.version,
        title: r.title,
        resolved_by: r.resolved_by,
        resolved_at: r.resolved_at,
    }))
}

/// The sentence of a stale change: what happened to the alert after `seen`.
async fn stale(conn: &mut PgConnection, locked: &Locked) -> Result<AppError, sqlx::Error> {
    let last: Option<(String, String, OffsetDateTime)> = sqlx::query!(
        "select event, actor, at from internal_alert_events
          where alert_id = $1 and event in ('acknowledged', 'unacknowledged', 'resolved',
                'auto_resolved', 'severity_changed', 'flapping', 'stable')
          order by id desc limit 1",
        locked.id
    )
    .fetch_optional(conn)
    .await?
    .map(|row| (row.event, row.actor, row.at));
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
    sqlx::query_scalar!(
        r#"select exists (select 1 from internal_alert_conditions
                           where kind = $1 and dedup_key = $2 and firing_streak > 0
                             and evaluated_at > $3) as "firing!""#,
        locked.kind,
        locked.dedup_key,
        now - time::Duration::minutes(10)
    )
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
                let version = sqlx::query_scalar!(
                    "update internal_alerts set status = 'acknowledged', acknowledged_by = $2,
                            acknowledged_at = $3, acknowledged_until = $4, version = version + 1
                      where id = $1 returning version",
                    row.id,
                    actor.name,
                    now,
                    until
                )
                .fetch_one(&mut *tx)
                .await
                .map_err(&internal)?;
                ("acknowledged", version)
            }
            Op::Resolve => {
                let version = sqlx::query_scalar!(
                    "update internal_alerts set status = 'resolved', resolved_by = $2,
                            resolved_at = $3, resolution_note = $4, version = version + 1
                      where id = $1 returning version",
                    row.id,
                    actor.name,
                    now,
                    note
                )
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
    let details = AlertsChanged {
        alerts: locked
            .iter()
            .map(|r| AlertRef {
                id: r.id,
                kind: r.kind.clone(),
                key: r.dedup_key.clone(),
                severity: Some(r.severity),
            })
            .collect(),
        action: verb.to_lowercase(),
    };
    let entry = NewEntry::new(
        details,
        title,
        actor,
        if matches!(op, Op::Resolve) {
            Outcome::Succeeded
        } else {
            Outcome::Info
        },
    )
    .with_times(now, Some(now))
    .with_body(note.clone().unwrap_or_default());
    let history_id = append(&mut tx, &entry).await.map_err(&internal)?;
    sqlx::query!(
        "update internal_alert_events set history_id = $1 where id = any($2)",
        history_id,
        &events
    )
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
        let recent = sqlx::query_scalar!(
            r#"select count(*) as "count!" from internal_alert_events
              where actor = $1 and event = 'note' and at > $2"#,
            actor.name,
            now - time::Duration::seconds(NOTE_WINDOW_SECS)
        )
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
    let details = AlertsChanged {
        alerts: vec![AlertRef {
            id,
            kind: row.kind.clone(),
            key: row.dedup_key.clone(),
            severity: None,
        }],
        action: "note".to_owned(),
    };
    let entry = NewEntry::new(
        details,
        format!("Note on alert #{id}: {}", row.title),
        actor,
        Outcome::Info,
    )
    .with_times(now, Some(now))
    .with_body(note);
    let history_id = append(&mut tx, &entry).await.map_err(&internal)?;
    sqlx::query!(
        "update internal_alert_events set history_id = $1 where id = $2",
        history_id,
        event
    )
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
