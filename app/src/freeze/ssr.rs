//! The write freeze, server side.
//! While a store is frozen, replay, expiry and backup retention wait, and ingest parks
//! ClickHouse rows in the fallback queue instead of writing them.
//!
//! Writers to ClickHouse that run in a PostgreSQL transaction (replay's batches) take
//! the freeze lock shared and then look for a freeze in that transaction; opening a
//! freeze commits its row and then takes the lock exclusively once, which waits for every
//! batch that started before the row was visible. Ingest writes outside a transaction,
//! within its ClickHouse timeout, so a restore also waits that long before it swaps
//! tables (see `restore`).

use sqlx::{PgConnection, PgPool, Row};

use super::{Freeze, StoreKind};
use crate::error::AppError;
use crate::server::unix_ms;

/// The advisory lock class writers hold shared per batch and a freeze takes exclusively
/// once, to wait for every batch that started before it (key: 0).
pub const FREEZE_LOCK_CLASS: i32 = 7322;

/// Opens a freeze of `store` for a restore and waits for the writers that started before
/// it. Refused when the store is already frozen.
pub async fn open(
    pg: &PgPool,
    store: StoreKind,
    reason: &str,
    restore_id: i64,
    by: &str,
) -> Result<i64, AppError> {
    let id: i64 = sqlx::query_scalar(
        "insert into write_freezes (store, scope, reason, restore_id, started_by)
         values ($1, 'restore', $2, $3, $4) returning id",
    )
    .bind(store.as_str())
    .bind(reason)
    .bind(restore_id)
    .bind(by)
    .fetch_one(pg)
    .await
    .map_err(|error| {
        let cause = crate::error::Cause::from(error);
        if cause.violated_constraint() == Some("write_freezes_one_open") {
            AppError::Conflict {
                message: format!("{} is already frozen by another restore.", store.label()),
            }
        } else {
            AppError::internal("Open a write freeze", cause)
        }
    })?;
    let mut conn = pg
        .acquire()
        .await
        .map_err(AppError::wrap("Wait for writers"))?;
    sqlx::query("select pg_advisory_lock($1, 0)")
        .bind(FREEZE_LOCK_CLASS)
        .execute(&mut *conn)
        .await
        .map_err(AppError::wrap("Wait for writers"))?;
    sqlx::query("select pg_advisory_unlock($1, 0)")
        .bind(FREEZE_LOCK_CLASS)
        .execute(&mut *conn)
        .await
        .map_err(AppError::wrap("Wait for writers"))?;
    Ok(id)
}

/// Ends freeze `id`.
pub async fn close(pg: &PgPool, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("update write_freezes set ended_at = now() where id = $1 and ended_at is null")
        .bind(id)
        .execute(pg)
        .await
        .map(drop)
}

/// In a writer's transaction: takes the freeze lock shared (held to the end of the
/// transaction) and says whether any store is frozen now.
pub async fn hold_unless_frozen(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    sqlx::query("select pg_advisory_xact_lock_shared($1, 0)")
        .bind(FREEZE_LOCK_CLASS)
        .execute(&mut *conn)
        .await?;
    frozen(conn).await
}

/// Whether any store is frozen now.
pub async fn frozen(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("select exists (select 1 from write_freezes where ended_at is null)")
        .fetch_one(conn)
        .await
}

/// Whether `store` is frozen now.
pub async fn is_frozen(pg: &PgPool, store: StoreKind) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "select exists (select 1 from write_freezes where ended_at is null and store = $1)",
    )
    .bind(store.as_str())
    .fetch_one(pg)
    .await
}

/// The open freezes, for the banner.
pub async fn open_freezes(pg: &PgPool) -> Result<Vec<Freeze>, sqlx::Error> {
    let rows = sqlx::query(
        "select store, reason, started_by, started_at, restore_id from write_freezes
         where ended_at is null order by started_at",
    )
    .fetch_all(pg)
    .await?;
    Ok(rows
        .iter()
        .map(|row| Freeze {
            store: StoreKind::parse(row.get("store")).unwrap_or(StoreKind::Postgres),
            reason: row.get("reason"),
            started_by: row.get("started_by"),
            started_ms: unix_ms(row.get("started_at")),
            restore_id: row.get("restore_id"),
        })
        .collect())
}
