//! The catalogue (`backups`, `backup_files`): one row per backup, written when it starts
//! (`running`), completed with its manifest's figures, failed with its error, and
//! marked with each verification.

use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Row};
use time::OffsetDateTime;

use super::super::{Backup, BackupStatus, StoreKind};
use super::manifest::Manifest;
use crate::auth::ssr::Actor;
use crate::server::unix_ms;

const COLUMNS: &str = "id, store, status, trigger, actor, reason, started_at, finished_at,
    duration_ms, size_bytes, row_count, table_count, queued_rows, error, verified_at,
    verified_by, verify_error, deleted_at is not null as deleted, location";

/// A catalogue row, with where its files are.
#[derive(Clone, Debug)]
pub struct Stored {
    pub backup: Backup,
    /// The backup's folder under the target (`<store>/<id>`).
    pub location: String,
}

impl Stored {
    /// The key of `file` (relative to the backup's folder) under the target.
    pub fn key(&self, file: &str) -> String {
        format!("{}/{file}", self.location)
    }
}

fn stored(row: &PgRow) -> Stored {
    let ms = |name: &str| row.get::<Option<OffsetDateTime>, _>(name).map(unix_ms);
    Stored {
        backup: Backup {
            id: row.get("id"),
            store: StoreKind::parse(row.get("store")).unwrap_or(StoreKind::Postgres),
            status: BackupStatus::parse(row.get("status")).unwrap_or(BackupStatus::Failed),
            trigger: row.get("trigger"),
            actor: row.get("actor"),
            reason: row.get("reason"),
            started_ms: unix_ms(row.get("started_at")),
            finished_ms: ms("finished_at"),
            duration_ms: row.get("duration_ms"),
            size_bytes: row.get("size_bytes"),
            rows: row.get("row_count"),
            tables: row.get("table_count"),
            queued_rows: row.get("queued_rows"),
            error: row.get("error"),
            verified_ms: ms("verified_at"),
            verified_by: row.get("verified_by"),
            verify_error: row.get("verify_error"),
            deleted: row.get("deleted"),
        },
        location: row.get("location"),
    }
}

/// Who started a backup, and how.
pub struct Started<'a> {
    pub store: StoreKind,
    pub trigger: &'a str,
    pub actor: &'a Actor,
    pub reason: Option<&'a crate::reason::Reason>,
    pub run_id: Option<i64>,
    pub at: OffsetDateTime,
}

/// Records a backup as `running` and returns it.
pub async fn start(pg: &PgPool, started: &Started<'_>) -> Result<Stored, sqlx::Error> {
    let row = sqlx::query(&format!(
        "with next as (select nextval('backups_id_seq') as id)
         insert into backups (id, location, store, trigger, actor, actor_user_id, reason, run_id, started_at)
         select id, $1 || '/' || id, $1, $2, $3, $4, $5, $6, $7 from next
         returning {COLUMNS}"
    ))
    .bind(started.store.as_str())
    .bind(started.trigger)
    .bind(&started.actor.name)
    .bind(started.actor.user_id)
    .bind(started.reason.map(crate::reason::Reason::as_str))
    .bind(started.run_id)
    .bind(started.at)
    .fetch_one(pg)
    .await?;
    Ok(stored(&row))
}

/// Marks backup `id` complete with its manifest's figures and files, in `conn`'s
/// transaction.
pub async fn complete(
    conn: &mut PgConnection,
    id: i64,
    manifest: &Manifest,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update backups set status = 'completed', finished_at = $2, duration_ms = $3,
             size_bytes = $4, row_count = $5, table_count = $6, server_version = $7,
             queued_rows = $8
         where id = $1",
        id,
        manifest.finished_at,
        manifest.duration_ms,
        manifest.total_bytes(),
        manifest.total_rows(),
        manifest.tables.len() as i32,
        manifest.server_version,
        manifest.queued_for_clickhouse
    )
    .execute(&mut *conn)
    .await?;
    for file in &manifest.files {
        sqlx::query!(
            "insert into backup_files (backup_id, path, table_name, partition, size_bytes, sha256, row_count)
             values ($1, $2, $3, $4, $5, $6, $7)",
            id,
            file.path,
            file.table,
            file.partition,
            file.size as i64,
            file.sha256,
            file.rows.map(|r| r as i64)
        )
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Marks backup `id` failed with `error`.
pub async fn fail(
    conn: &mut PgConnection,
    id: i64,
    error: &str,
    at: OffsetDateTime,
    duration_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update backups set status = 'failed', error = $2, finished_at = $3, duration_ms = $4
         where id = $1 and status = 'running'",
        id,
        error,
        at,
        duration_ms
    )
    .execute(conn)
    .await
    .map(drop)
}

/// Backups of `store` still `running` other than `except`: under the backup lock, their
/// process died before writing a manifest. Returns them, marked failed.
pub async fn fail_interrupted(
    pg: &PgPool,
    store: StoreKind,
    except: i64,
    at: OffsetDateTime,
) -> Result<Vec<Stored>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "update backups set status = 'failed', finished_at = $3,
             error = 'interrupted: the process stopped before the manifest was written'
         where store = $1 and status = 'running' and id <> $2
         returning {COLUMNS}"
    ))
    .bind(store.as_str())
    .bind(except)
    .bind(at)
    .fetch_all(pg)
    .await?;
    Ok(rows.iter().map(stored).collect())
}

/// Records a verification of backup `id`.
pub async fn record_verification(
    conn: &mut PgConnection,
    id: i64,
    error: Option<&str>,
    by: &str,
    at: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update backups set status = case when $2::text is null then 'verified' else 'verify_failed' end,
             verify_error = $2, verified_by = $3, verified_at = $4
         where id = $1 and status in ('completed', 'verified', 'verify_failed')",
        id,
        error,
        by,
        at
    )
    .execute(conn)
    .await
    .map(drop)
}

/// Backup `id`.
pub async fn load(pg: &PgPool, id: i64) -> Result<Option<Stored>, sqlx::Error> {
    let row = sqlx::query(&format!("select {COLUMNS} from backups where id = $1"))
        .bind(id)
        .fetch_optional(pg)
        .await?;
    Ok(row.as_ref().map(stored))
}

/// Why a backup cannot be restored or verified: it is not complete, or retention
/// deleted its files. Reads as a sentence that starts with the backup, for a 409 or a
/// field error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("backup {id} is {}{}", status.label(), if *deleted { " and its files were deleted by retention" } else { "" })]
pub struct NotRestorable {
    pub id: i64,
    pub status: super::super::BackupStatus,
    pub deleted: bool,
}

/// Backup `id` when its files are complete and kept; otherwise (the inner `Err`) why
/// not.
pub async fn load_complete(
    pg: &PgPool,
    id: i64,
) -> Result<Result<Stored, NotRestorable>, crate::error::AppError> {
    let stored = load(pg, id)
        .await
        .map_err(crate::error::AppError::wrap("Load a backup"))?
        .ok_or_else(|| crate::error::AppError::NotFound {
            what: format!("Backup {id}"),
        })?;
    if stored.backup.status.is_complete() && !stored.backup.deleted {
        return Ok(Ok(stored));
    }
    Ok(Err(NotRestorable {
        id,
        status: stored.backup.status,
        deleted: stored.backup.deleted,
    }))
}

/// The newest `limit` backups, newest first.
pub async fn list(pg: &PgPool, limit: i64) -> Result<Vec<Backup>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "select {COLUMNS} from backups order by started_at desc, id desc limit $1"
    ))
    .bind(limit)
    .fetch_all(pg)
    .await?;
    Ok(rows.iter().map(|r| stored(r).backup).collect())
}

/// The newest complete (restorable) backup of `store` whose files are kept.
pub async fn latest_complete(pg: &PgPool, store: StoreKind) -> Result<Option<Stored>, sqlx::Error> {
    latest_in(pg, store, "('completed', 'verified', 'verify_failed')").await
}

/// The newest backup of `store` that passed its verification and whose files are kept
/// (what a drill restores).
pub async fn latest_verified(pg: &PgPool, store: StoreKind) -> Result<Option<Stored>, sqlx::Error> {
    latest_in(pg, store, "('verified')").await
}

/// The newest backup of `store` whose verification ended, passed or failed (its result
/// is the store's last verify result).
pub async fn latest_checked(pg: &PgPool, store: StoreKind) -> Result<Option<Stored>, sqlx::Error> {
    latest_in(pg, store, "('verified', 'verify_failed')").await
}

/// The newest backup of `store` that has ended, when it failed (its id): backups of the
/// store are failing until one succeeds.
pub async fn newest_failed(pg: &PgPool, store: StoreKind) -> Result<Option<i64>, sqlx::Error> {
    let newest: Option<(i64, String)> = sqlx::query_as(
        "select id, status from backups where store = $1 and status <> 'running'
          order by started_at desc, id desc limit 1",
    )
    .bind(store.as_str())
    .fetch_optional(pg)
    .await?;
    Ok(newest.and_then(|(id, status)| (status == BackupStatus::Failed.as_str()).then_some(id)))
}

async fn latest_in(
    pg: &PgPool,
    store: StoreKind,
    statuses: &'static str,
) -> Result<Option<Stored>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "select {COLUMNS} from backups
         where store = $1 and status in {statuses} and deleted_at is null
         order by finished_at desc, id desc limit 1"
    ))
    .bind(store.as_str())
    .fetch_optional(pg)
    .await?;
    Ok(row.as_ref().map(stored))
}

/// Which complete backups of `store` retention deletes: all but the newest `keep`, and
/// never the newest one nor the newest verified one. Pure, so the rule is tested alone.
/// `backups` is newest first: (id, verified).
pub fn to_delete(backups: &[(i64, bool)], keep: usize) -> Vec<i64> {
    let newest = backups.first().map(|b| b.0);
    let newest_verified = backups.iter().find(|b| b.1).map(|b| b.0);
    backups
        .iter()
        .skip(keep.max(1))
        .map(|b| b.0)
        .filter(|id| Some(*id) != newest && Some(*id) != newest_verified)
        .collect()
}

/// The kept complete backups of `store`, newest first, with whether each is verified.
pub async fn kept(pg: &PgPool, store: StoreKind) -> Result<Vec<Stored>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "select {COLUMNS} from backups
         where store = $1 and status in ('completed', 'verified', 'verify_failed') and deleted_at is null
         order by finished_at desc, id desc"
    ))
    .bind(store.as_str())
    .fetch_all(pg)
    .await?;
    Ok(rows.iter().map(stored).collect())
}

/// Marks backup `id`'s files deleted by retention.
pub async fn mark_deleted(
    conn: &mut PgConnection,
    id: i64,
    at: OffsetDateTime,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!(
        "update backups set deleted_at = $2 where id = $1 and deleted_at is null",
        id,
        at
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

#[cfg(test)]
mod tests {
    use super::to_delete;

    #[test]
    fn retention_keeps_the_newest_n() {
        let backups: Vec<(i64, bool)> = (1..=5).rev().map(|id| (id, false)).collect();
        assert_eq!(to_delete(&backups, 3), vec![2, 1]);
        assert_eq!(to_delete(&backups, 5), Vec::<i64>::new());
    }

    #[test]
    fn retention_never_deletes_the_newest_verified_even_when_old() {
        // 6 newest first; only the oldest is verified.
        let backups = vec![
            (6, false),
            (5, false),
            (4, false),
            (3, false),
            (2, false),
            (1, true),
        ];
        assert_eq!(to_delete(&backups, 2), vec![4, 3, 2]);
    }

    #[test]
    fn retention_with_keep_zero_still_keeps_the_newest() {
        let backups = vec![(3, false), (2, false), (1, false)];
        assert_eq!(to_delete(&backups, 0), vec![2, 1]);
    }
}
