//! The `restores` rows: read for the pages and the CLI, and a cancel asked through them.

use super::*;

/// Asks running restore `id` to stop (it does after its current file, and drops what it
/// made). `false` when it is not running.
pub async fn request_cancel(state: &AppState, id: i64) -> Result<bool, AppError> {
    let done = sqlx::query(
        "update restores set cancel_requested = true where id = $1 and status = 'running'",
    )
    .bind(id)
    .execute(&state.pg)
    .await
    .map_err(AppError::wrap("Cancel a restore"))?;
    Ok(done.rows_affected() == 1)
}

const RESTORE_COLUMNS: &str = "id, backup_id, store, mode, target, tables, status, actor, reason,
    started_at, finished_at, duration_ms, row_count, error, aside, progress_bytes, total_bytes";

fn restore_of(row: &sqlx::postgres::PgRow) -> Restore {
    let status = RestoreStatus::parse(row.get("status")).unwrap_or(RestoreStatus::Failed);
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
        error: row.get("error"),
        can_roll_back: aside.is_some()
            && matches!(
                status,
                RestoreStatus::Verified | RestoreStatus::VerifyFailed
            ),
        progress_bytes: row.get("progress_bytes"),
        total_bytes: row.get("total_bytes"),
    }
}

/// Restore `id`.
pub async fn load(state: &AppState, id: i64) -> Result<Option<Restore>, AppError> {
    let row = sqlx::query(&format!(
        "select {RESTORE_COLUMNS} from restores where id = $1"
    ))
    .bind(id)
    .fetch_optional(&state.pg)
    .await
    .map_err(AppError::wrap("Load a restore"))?;
    Ok(row.as_ref().map(restore_of))
}

/// The newest `limit` restores.
pub async fn list(state: &AppState, limit: i64) -> Result<Vec<Restore>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "select {RESTORE_COLUMNS} from restores order by started_at desc, id desc limit $1"
    ))
    .bind(limit)
    .fetch_all(&state.pg)
    .await?;
    Ok(rows.iter().map(restore_of).collect())
}
