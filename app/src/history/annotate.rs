//! What people add to the history by hand (notes, incidents, resolutions): the rate each
//! person may add them at, and the times an incident may have.

use sqlx::PgPool;
use time::OffsetDateTime;

use super::ssr::{append, NewEntry};
use super::EntryKind;
use crate::auth::ssr::Actor;
use crate::error::AppError;

/// Notes, incidents and resolutions one person may add per
/// [`ANNOTATION_WINDOW_SECS`].
pub const ANNOTATIONS_PER_WINDOW: i64 = 30;
/// See [`ANNOTATIONS_PER_WINDOW`].
pub const ANNOTATION_WINDOW_SECS: i64 = 600;

/// How far back an incident may start: records of older ones belong elsewhere, and a
/// start in 1970 is a typo.
pub const INCIDENT_MAX_AGE_DAYS: i64 = 366;

/// An incident's start and resolution make sense: neither in the future (five minutes
/// of clock skew allowed), the start within [`INCIDENT_MAX_AGE_DAYS`], the resolution
/// not before the start. Errors name the field.
pub fn check_incident_times(
    started: OffsetDateTime,
    resolved: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> Result<(), AppError> {
    let skew = time::Duration::minutes(5);
    if started > now + skew {
        return Err(AppError::invalid("started_at", "cannot be in the future"));
    }
    if started < now - time::Duration::days(INCIDENT_MAX_AGE_DAYS) {
        return Err(AppError::invalid(
            "started_at",
            "must be within the last year",
        ));
    }
    if let Some(resolved) = resolved {
        if resolved > now + skew {
            return Err(AppError::invalid("resolved_at", "cannot be in the future"));
        }
        if resolved < started {
            return Err(AppError::invalid(
                "resolved_at",
                "must not be before the start",
            ));
        }
    }
    Ok(())
}

/// Appends a person's note, incident or resolution, refusing with 429 once they added
/// [`ANNOTATIONS_PER_WINDOW`] in the window. The count and the append share one
/// transaction under a per-person lock, so concurrent calls cannot overshoot.
pub async fn record_rated(pg: &PgPool, actor: &Actor, entry: &NewEntry) -> Result<i64, AppError> {
    let wrap = AppError::wrap("Failed to add to the history");
    let mut tx = pg.begin().await.map_err(&wrap)?;
    if let Some(user_id) = actor.user_id {
        sqlx::query("select pg_advisory_xact_lock($1, $2::int)")
            .bind(crate::server::postgres::lock_class::HISTORY_NOTE_RATE)
            .bind(user_id as i32)
            .execute(&mut *tx)
            .await
            .map_err(&wrap)?;
        let recent = sqlx::query!(
            r#"select count(*) as "count!",
                      extract(epoch from min(created_at) + make_interval(secs => $2) - now())
                          ::float8 as wait
               from runbook_history
               where actor_user_id = $1
                 and kind = any($3)
                 and created_at > now() - make_interval(secs => $2)"#,
            user_id,
            ANNOTATION_WINDOW_SECS as f64,
            &[
                EntryKind::Note.as_str(),
                EntryKind::Incident.as_str(),
                EntryKind::IncidentResolved.as_str(),
            ] as &[&str]
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(&wrap)?;
        if recent.count >= ANNOTATIONS_PER_WINDOW {
            tracing::warn!(actor = %actor.name, "refused: too many notes");
            let retry_after_secs = recent.wait.unwrap_or(1.0).ceil().max(1.0) as u64;
            return Err(AppError::RateLimited {
                message: format!(
                    "You added {ANNOTATIONS_PER_WINDOW} notes and incidents in the last {} \
                     minutes; add more in {} s.",
                    ANNOTATION_WINDOW_SECS / 60,
                    retry_after_secs
                ),
                retry_after_secs,
            });
        }
    }
    let id = append(&mut tx, entry).await.map_err(&wrap)?;
    tx.commit().await.map_err(&wrap)?;
    Ok(id)
}
