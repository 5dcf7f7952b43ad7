//! The freeze, server side.
//! While a store is frozen for a restore, replay, expiry and backup retention wait, and
//! ingest parks ClickHouse rows in the fallback queue instead of writing them. While an
//! incident is frozen, expiry and retention wait (and in-place restores ask for an
//! admin's confirmation); ingest and replay go on.
//!
//! Writers to ClickHouse that run in a PostgreSQL transaction (replay's batches) take
//! the freeze lock shared and then look for a freeze in that transaction; opening a
//! freeze commits its row and then takes the lock exclusively once, which waits for every
//! batch that started before the row was visible. Ingest writes outside a transaction,
//! within its ClickHouse timeout, so a restore also waits that long before it swaps
//! tables (see `restore`).

use sqlx::{PgConnection, PgPool};

use super::{Freeze, StoreKind};
use crate::error::AppError;
use crate::server::unix_ms;

/// The advisory lock class writers hold shared per batch and a freeze takes exclusively
/// once, to wait for every batch that started before it (key: 0).
pub const FREEZE_LOCK_CLASS: i32 = crate::server::postgres::lock_class::FREEZE;

/// Opens a freeze of `store` for a restore and waits for the writers that started before
/// it. Refused when the store is already frozen.
pub async fn open(
    pg: &PgPool,
    store: StoreKind,
    reason: &str,
    restore_id: i64,
    by: &str,
) -> Result<i64, AppError> {
    let id = sqlx::query_scalar!(
        "insert into write_freezes (store, scope, reason, restore_id, started_by)
         values ($1, 'restore', $2, $3, $4) returning id",
        store.as_str(),
        reason,
        restore_id,
        by
    )
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
    sqlx::query!(
        "update write_freezes set ended_at = now() where id = $1 and ended_at is null",
        id
    )
    .execute(pg)
    .await
    .map(drop)
}

/// In a writer's transaction: takes the freeze lock shared (held to the end of the
/// transaction) and says whether a store is frozen for a restore now.
pub async fn hold_unless_frozen(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    sqlx::query("select pg_advisory_xact_lock_shared($1, 0)")
        .bind(FREEZE_LOCK_CLASS)
        .execute(&mut *conn)
        .await?;
    sqlx::query_scalar!(
        r#"select exists (select 1 from write_freezes where ended_at is null and scope = 'restore')
             as "frozen!""#
    )
    .fetch_one(conn)
    .await
}

/// Whether anything is frozen now, a restore or an incident: what deletes data (expiry,
/// retention) asks.
pub async fn frozen(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"select exists (select 1 from write_freezes where ended_at is null) as "frozen!""#
    )
    .fetch_one(conn)
    .await
}

/// Freezes incident `incident_id`: risky mutations wait until [`lift_incident`]. Refused
/// when an incident freeze is already open.
pub async fn open_incident(
    conn: &mut PgConnection,
    incident_id: i64,
    reason: &str,
    by: &str,
) -> Result<i64, AppError> {
    sqlx::query_scalar!(
        "insert into write_freezes (scope, reason, incident_id, started_by)
         values ('incident', $1, $2, $3) returning id",
        reason,
        incident_id,
        by
    )
    .fetch_one(conn)
    .await
    .map_err(|error| {
        let cause = crate::error::Cause::from(error);
        if cause.violated_constraint() == Some("write_freezes_one_incident") {
            AppError::Conflict {
                message: "An incident freeze is already on; lift it first.".into(),
            }
        } else {
            AppError::internal("Freeze for an incident", cause)
        }
    })
}

/// Lifts the open incident freeze; the incident it belonged to, or none when there was
/// none.
pub async fn lift_incident(conn: &mut PgConnection) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar!(
        "update write_freezes set ended_at = now()
          where scope = 'incident' and ended_at is null returning incident_id"
    )
    .fetch_optional(conn)
    .await
    .map(Option::flatten)
}

/// The incident whose freeze is on, if one is.
pub async fn incident_frozen(pg: &PgPool) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar!(
        "select incident_id from write_freezes where scope = 'incident' and ended_at is null"
    )
    .fetch_optional(pg)
    .await
    .map(Option::flatten)
}

/// Whether `store` is frozen now.
pub async fn is_frozen(pg: &PgPool, store: StoreKind) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"select exists (select 1 from write_freezes where ended_at is null and store = $1)
             as "frozen!""#,
        store.as_str()
    )
    .fetch_one(pg)
    .await
}

/// The open freezes, for the banner.
pub async fn open_freezes(pg: &PgPool) -> Result<Vec<Freeze>, sqlx::Error> {
    let rows = sqlx::query!(
        "select store, reason, started_by, started_at, restore_id, incident_id from write_freezes
         where ended_at is null order by started_at"
    )
    .fetch_all(pg)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| Freeze {
            store: row.store.as_deref().and_then(StoreKind::parse),
            reason: row.reason,
            started_by: row.started_by,
            started_ms: unix_ms(row.started_at),
            restore_id: row.restore_id,
            incident_id: row.incident_id,
        })
        .collect())
}
