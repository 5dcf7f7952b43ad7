//! The `restores` rows, read for the pages and the CLI, with their run's progress.

use super::*;

/// A restore's own columns, and its progress from its run (a restore inside a drill's
/// run reports none: the drill's steps are its progress).
const RESTORE_COLUMNS: &str = "r.id, r.backup_id, r.store, r.mode, r.target, r.tables, r.status,
    r.actor, r.reason, r.started_at, r.finished_at, r.duration_ms, r.row_count, r.error, r.aside,
    case when run.job_name = 'restore' then coalesce(run.progress_done, 0)
         else r.progress_bytes end as progress_bytes,
    r.total_bytes, r.run_id, run.outcome as run_outcome, run.heartbeat_at";

/// The restores and their runs.
const RESTORES: &str = "restores r left join cron_job_runs run on run.id = r.run_id";

/// A restore as its row says, except one whose run ended or died (the runner's one
/// abandoned rule) while the row still says running: it failed, and says why.
fn restore_of(row: &sqlx::postgres::PgRow, now: time::OffsetDateTime) -> Restore {
    let mut status = RestoreStatus::parse(row.get("status")).unwrap_or(RestoreStatus::Failed);
    let mut error: Option<String> = row.get("error");
    let run: (Option<String>, Option<time::OffsetDateTime>) =
        (row.get("run_outcome"), row.get("heartbeat_at"));
    if let (RestoreStatus::Running, (Some(outcome), Some(beat))) = (status, run) {
        let run_status = crate::jobs::ssr::records::status_of(&outcome, beat, now);
        if run_status != crate::jobs::RunStatus::Running {
            status = RestoreStatus::Failed;
            error = error.or(Some(format!(
                "its run is {run_status}: the process running it stopped before it finished"
            )));
        }
    }
    let aside: Option<String> = row.get("aside");
    Restore {
        id: row.get("id"),
        backup_id: row.get("backup_id"),
        store: StoreKind::parse(row.get("store")).unwrap_or(StoreKind::Postgres),
        mode: RestoreMode::parse(row.get("mode")).unwrap_or(RestoreMode::Side),
        target: row.get("target"),
        tables: row.get("tables"),
        status,
        actor: row.get("actor"),
        reason: row.get("reason"),
        started_ms: unix_ms(row.get("started_at")),
        finished_ms: row
            .get::<Option<time::OffsetDateTime>, _>("finished_at")
            .map(unix_ms),
        duration_ms: row.get("duration_ms"),
        rows: row.get("row_count"),
        error,
        can_roll_back: aside.is_some()
            && matches!(
                status,
                RestoreStatus::Verified | RestoreStatus::VerifyFailed
            ),
        progress_bytes: row.get("progress_bytes"),
        total_bytes: row.get("total_bytes"),
        run_id: row.get("run_id"),
    }
}

/// Restore `id`.
pub async fn load(state: &AppState, id: i64) -> Result<Option<Restore>, AppError> {
    let row = sqlx::query(&format!(
        "select {RESTORE_COLUMNS} from {RESTORES} where r.id = $1"
    ))
    .bind(id)
    .fetch_optional(&state.pg)
    .await
    .map_err(AppError::wrap("Load a restore"))?;
    Ok(row.as_ref().map(|row| restore_of(row, state.clock.now())))
}

/// The newest `limit` restores.
pub async fn list(state: &AppState, limit: i64) -> Result<Vec<Restore>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "select {RESTORE_COLUMNS} from {RESTORES} order by r.started_at desc, r.id desc limit $1"
    ))
    .bind(limit)
    .fetch_all(&state.pg)
    .await?;
    let now = state.clock.now();
    Ok(rows.iter().map(|row| restore_of(row, now)).collect())
}
