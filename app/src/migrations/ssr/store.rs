//! The `background_migrations` rows: made from the registry, read for the page, the
//! health figures and the alert, and changed by a person (pause, resume, retry,
//! cancel), each change in one transaction with its history entry.

use sqlx::{PgPool, Row};
use time::OffsetDateTime;

use crate::auth::ssr::Actor;
use crate::error::AppError;
use crate::history::ssr::{append, NewEntry};
use crate::history::Outcome;
use crate::migrations::{BackgroundMigrationRow, MigrationAction, MigrationStatus};
use crate::server::{unix_ms, AppState};

crate::history::ssr::details! {
    /// A person paused, resumed, retried or cancelled a background migration.
    struct MigrationChanged for BackgroundMigration {
        migration: String,
        action: MigrationAction,
        from: MigrationStatus,
        to: MigrationStatus,
    }
}

/// Makes a `pending` row for every registered migration that has none. Idempotent:
/// start-up and every tick call it.
pub async fn register(state: &AppState) -> Result<(), AppError> {
    let names: Vec<&str> = state
        .background_migrations()
        .iter()
        .map(|m| m.name)
        .collect();
    sqlx::query!(
        "insert into background_migrations (name, created_at)
         select unnest($1::text[]), $2 on conflict (name) do nothing",
        &names as &[&str],
        state.clock.now()
    )
    .execute(&state.pg)
    .await
    .map_err(AppError::wrap("Register the background migrations"))?;
    Ok(())
}

/// The status of migration `name`, if it has a row.
pub async fn status_of(pg: &PgPool, name: &str) -> Result<Option<MigrationStatus>, AppError> {
    let status = sqlx::query_scalar!(
        "select status from background_migrations where name = $1",
        name
    )
    .fetch_optional(pg)
    .await
    .map_err(AppError::wrap("Read a background migration"))?;
    Ok(status.as_deref().and_then(MigrationStatus::parse))
}

/// The migrations (`m`) and the runs that work them (`run`).
pub(super) const ROWS: &str =
    "background_migrations m left join cron_job_runs run on run.id = m.run_id";

/// A migration is stuck when it is `running` but the run working it has ended or gone
/// quiet past the runner's abandoned rule (`$1`: the time before which a heartbeat is
/// stale): its worker died, and the next tick takes it over.
pub(super) const STUCK: &str = concat!(
    "m.status = 'running' and (run.id is null or ",
    crate::jobs::ssr::run_gone!("$1"),
    ")"
);

pub(super) use crate::jobs::ssr::stale_before;

/// Every migration with a row, registered ones first in the registry's order.
pub async fn list(state: &AppState) -> Result<Vec<BackgroundMigrationRow>, AppError> {
    let now = state.clock.now();
    let rows = sqlx::query(&format!(
        "select m.*, run.heartbeat_at, {STUCK} as stuck from {ROWS}
          order by m.created_at, m.name"
    ))
    .bind(stale_before(now))
    .fetch_all(&state.pg)
    .await
    .map_err(AppError::wrap("Read the background migrations"))?;
    let mut out: Vec<BackgroundMigrationRow> = rows
        .iter()
        .map(|row| {
            let name: String = row.get("name");
            let known = state
                .background_migrations()
                .iter()
                .find(|m| m.name == name);
            let status =
                MigrationStatus::parse(row.get("status")).unwrap_or(MigrationStatus::Pending);
            let heartbeat: Option<OffsetDateTime> = row.get("heartbeat_at");
            let heartbeat_age_s = heartbeat.map(|h| (now - h).whole_seconds().max(0));
            let current: i64 = row.get("progress_current");
            let total: Option<i64> = row.get("progress_total");
            let run_started: Option<OffsetDateTime> = row.get("run_started_at");
            let run_progress: Option<i64> = row.get("run_started_progress");
            let rate = match (run_started, run_progress, heartbeat) {
                (Some(start), Some(from), Some(beat)) if beat > start && current > from => {
                    Some((current - from) as f64 / (beat - start).as_seconds_f64())
                }
                _ => None,
            };
            let eta_s = match (status, rate, total) {
                (MigrationStatus::Running, Some(rate), Some(total)) if rate > 0.0 => {
                    Some(((total - current).max(0) as f64 / rate).ceil() as i64)
                }
                _ => None,
            };
            BackgroundMigrationRow {
                description: known.map(|m| m.description.to_owned()).unwrap_or_default(),
                known: known.is_some(),
                status,
                progress_current: current,
                progress_total: total,
                cursor: row.get("cursor"),
                attempts: row.get("attempts"),
                last_error: row.get("last_error"),
                created_at_ms: unix_ms(row.get("created_at")),
                started_at_ms: row
                    .get::<Option<OffsetDateTime>, _>("started_at")
                    .map(unix_ms),
                finished_at_ms: row
                    .get::<Option<OffsetDateTime>, _>("finished_at")
                    .map(unix_ms),
                last_heartbeat_ms: heartbeat.map(unix_ms),
                heartbeat_age_s,
                stuck: row.get("stuck"),
                rate,
                eta_s,
                paused_by: row.get("paused_by"),
                paused_reason: row.get("paused_reason"),
                changed_by: row.get("changed_by"),
                change_reason: row.get("change_reason"),
                name,
            }
        })
        .collect();
    let position = |name: &str| {
        state
            .background_migrations()
            .iter()
            .position(|m| m.name == name)
            .unwrap_or(usize::MAX)
    };
    out.sort_by_key(|m| position(&m.name));
    Ok(out)
}

/// Running migrations and, of them, the stuck ones (`/health/deep`), and the failed
/// ones (the overview, the incident checklist): one read of the few rows.
pub async fn running_stuck_failed(state: &AppState) -> Result<(i64, i64, i64), sqlx::Error> {
    sqlx::query_as(&format!(
        "select count(*) filter (where m.status = 'running'), count(*) filter (where {STUCK}),
                count(*) filter (where m.status = 'failed')
           from {ROWS}"
    ))
    .bind(stale_before(state.clock.now()))
    .fetch_one(&state.pg)
    .await
}

/// Pauses, resumes, retries or cancels migration `name` (operators and admins; the
/// door checks the role), with its history entry. `Conflict` when the action does not
/// apply to its status now.
pub async fn change(
    state: &AppState,
    actor: &Actor,
    name: &str,
    action: MigrationAction,
    reason: &crate::reason::Reason,
) -> Result<MigrationStatus, AppError> {
    let wrap = || AppError::wrap("Change a background migration");
    let now = state.clock.now();
    let mut tx = state.pg.begin().await.map_err(wrap())?;
    let status = sqlx::query_scalar!(
        "select status from background_migrations where name = $1 for update",
        name
    )
    .fetch_optional(&mut *tx)
    .await
    .map_err(wrap())?;
    let Some(status) = status.as_deref().and_then(MigrationStatus::parse) else {
        return Err(AppError::NotFound {
            what: format!("Background migration {name}"),
        });
    };
    if !action.applies_to(status) {
        return Err(AppError::Conflict {
            message: format!(
                "Background migration {name} is {}: it cannot be {}.",
                status.as_str(),
                match action {
                    MigrationAction::Pause => "paused",
                    MigrationAction::Resume => "resumed",
                    MigrationAction::Retry => "retried",
                    MigrationAction::Cancel => "cancelled",
                }
            ),
        });
    }
    let next = action.leads_to();
    let stops = matches!(action, MigrationAction::Pause | MigrationAction::Cancel);
    sqlx::query!(
        "update background_migrations
            set status = $2,
                paused_by = case when $3 then $4 else paused_by end,
                paused_reason = case when $3 then $5 else paused_reason end,
                paused_at = case when $3 then $6 else paused_at end,
                changed_by = $4, change_reason = $5,
                attempts = attempts + case when $2 = 'pending' and status in ('failed', 'cancelled') then 1 else 0 end,
                finished_at = case when $2 = 'cancelled' then $6 else finished_at end
          where name = $1",
        name,
        next.as_str(),
        stops,
        actor.name,
        reason.as_str(),
        now
    )
    .execute(&mut *tx)
    .await
    .map_err(wrap())?;
    let details = MigrationChanged {
        migration: name.to_owned(),
        action,
        from: status,
        to: next,
    };
    let entry = NewEntry::new(
        details,
        format!(
            "Background migration {name}: {} ({} → {})",
            action.label().to_lowercase(),
            status.as_str(),
            next.as_str()
        ),
        actor,
        Outcome::Succeeded,
    )
    .with_reason(Some(reason.clone()))
    .with_times(now, Some(now));
    append(&mut tx, &entry).await.map_err(wrap())?;
    tx.commit().await.map_err(wrap())?;
    Ok(next)
}

/// The last schema upgrades, newest first.
pub async fn upgrades(
    pg: &PgPool,
    limit: i64,
) -> Result<Vec<crate::migrations::Upgrade>, sqlx::Error> {
    if !super::schema::table_exists(pg, "schema_upgrades").await? {
        return Ok(Vec::new());
    }
    let rows = sqlx::query!(
        "select id, from_version, to_version, applied, backup_id, backup_skipped, actor,
                binary_version, started_at, finished_at
           from schema_upgrades order by id desc limit $1",
        limit
    )
    .fetch_all(pg)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| crate::migrations::Upgrade {
            id: row.id,
            from_version: row.from_version,
            to_version: row.to_version,
            applied: row.applied,
            backup_id: row.backup_id,
            backup_skipped: row.backup_skipped,
            actor: row.actor,
            binary_version: row.binary_version,
            started_at_ms: unix_ms(row.started_at),
            finished_at_ms: unix_ms(row.finished_at),
        })
        .collect())
}

/// Everything `/admin/migrations` shows.
pub async fn overview(state: &AppState) -> Result<crate::migrations::MigrationsOverview, AppError> {
    let wrap = || AppError::wrap("Read the migrations");
    Ok(crate::migrations::MigrationsOverview {
        migrations: list(state).await?,
        schema: super::schema::status(&state.pg).await.map_err(wrap())?,
        upgrades: upgrades(&state.pg, 20).await.map_err(wrap())?,
        stuck_after_s: crate::jobs::ssr::ABANDONED_AFTER.as_secs() as i64,
        now_ms: unix_ms(state.clock.now()),
    })
}
