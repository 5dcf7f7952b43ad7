//! The whole schema in place: every table of a PostgreSQL backup, Salvage's own
//! included, put back as it was. Only for undoing an upgrade (`salvage migrate
//! --rollback-to`), with every console stopped: the schema migrations, the history and
//! the catalogue go back to the moment of the backup.
//!
//! The live `public` schema is renamed aside (`salvage_rollback_<unix time>`, kept for a
//! person to look at and drop), a new empty `public` gets the backup's objects with one
//! `pg_restore --single-transaction`, and the restored tables are checked against the
//! manifest. If `pg_restore` fails nothing was restored: the new schema is dropped and
//! the live one renamed back.

use super::*;

/// What a whole-schema restore did.
#[derive(Clone, Debug, PartialEq)]
pub struct Replaced {
    /// Every restored table against the manifest.
    pub checks: Vec<TableCheck>,
    /// Where the schema that was live is kept.
    pub aside: String,
    pub duration_ms: i64,
}

/// Replaces the live database's `public` schema with backup `backup` (a PostgreSQL
/// backup whose manifest is `manifest`). `Err` names what failed; the live schema is
/// then as it was.
pub async fn replace_schema(
    state: &AppState,
    backup: &Stored,
    manifest: &Manifest,
) -> Result<Replaced, BackupError> {
    if backup.backup.store != StoreKind::Postgres {
        return Err(BackupError::Refused(format!(
            "backup {} is not a PostgreSQL backup",
            backup.backup.id
        )));
    }
    let clock = Instant::now();
    let copy = super::postgres::dump_copy(state, backup, manifest).await?;
    let mut replaced = replace_schema_from(state, copy.path(), &manifest.tables).await?;
    replaced.duration_ms = clock.elapsed().as_millis() as i64;
    Ok(replaced)
}

/// [`replace_schema`] from a custom-format dump already on this machine (checked by the
/// caller), its tables checked against `expected`: a recovery's first step, from a
/// logical backup or from a point-in-time restore dumped on its way over.
pub async fn replace_schema_from(
    state: &AppState,
    dump: &std::path::Path,
    expected: &[TableEntry],
) -> Result<Replaced, BackupError> {
    let clock = Instant::now();
    let url = pg::working_url(state.backups());
    let live = pg::database_name(&state.backups().database_url);
    let aside = format!("salvage_rollback_{}", state.clock.now().unix_timestamp());
    let pg_err = |e: sqlx::Error| BackupError::postgres(e);
    let mut conn = pg::connect(url, None).await.map_err(pg_err)?;
    let mut tx = sqlx::Connection::begin(&mut conn).await.map_err(pg_err)?;
    sqlx::query(&format!(
        "alter schema public rename to {}",
        pg::quote(&aside)
    ))
    .execute(&mut *tx)
    .await
    .map_err(|e| {
        BackupError::postgres(format!(
            "{e} (renaming the live schema needs the role that owns it: set \
             SALVAGE_MIGRATE_DATABASE_URL to the database owner's URL)"
        ))
    })?;
    sqlx::query("create schema public")
        .execute(&mut *tx)
        .await
        .map_err(pg_err)?;
    tx.commit().await.map_err(pg_err)?;
    let restored = pg::run_restore(
        state.backups(),
        &live,
        dump,
        &["--no-privileges", "--single-transaction", "--schema=public"],
    )
    .await;
    if let Err(error) = restored {
        let mut tx = sqlx::Connection::begin(&mut conn).await.map_err(pg_err)?;
        sqlx::query("drop schema public cascade")
            .execute(&mut *tx)
            .await
            .map_err(pg_err)?;
        sqlx::query(&format!(
            "alter schema {} rename to public",
            pg::quote(&aside)
        ))
        .execute(&mut *tx)
        .await
        .map_err(pg_err)?;
        tx.commit().await.map_err(pg_err)?;
        return Err(error);
    }
    if let Some(owner) = &state.schema_owner {
        crate::server::postgres::grant_application_role(&owner.pool, &owner.app_role)
            .await
            .map_err(pg_err)?;
    }
    let checks = super::postgres::check_postgres(url, None, expected).await?;
    Ok(Replaced {
        checks,
        aside,
        duration_ms: clock.elapsed().as_millis() as i64,
    })
}
