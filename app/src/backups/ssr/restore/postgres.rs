//! PostgreSQL restores: the dump checked and fetched, `pg_restore` into a side database
//! or in place (the live tables moved to `salvage_pre_<restore>` first), and the check.

use super::*;

/// A private local copy of the backup's dump, checked against the manifest as it was
/// made: `pg_restore` reads exactly the bytes that were hashed.
pub(super) async fn dump_copy(
    state: &AppState,
    backup: &Stored,
    manifest: &Manifest,
) -> Result<super::super::storage::LocalCopy, BackupError> {
    let file = manifest
        .files
        .first()
        .ok_or_else(|| BackupError::Integrity("the manifest lists no dump".into()))?;
    super::super::verify::checked_copy(state, backup, manifest, file).await
}

/// A `pg_restore` list file for `tables`, private to this process.
pub(super) async fn list_file(
    state: &AppState,
    prepared: &Prepared,
    dump: &std::path::Path,
) -> Result<super::super::storage::LocalCopy, BackupError> {
    let tables: Vec<&TableEntry> = prepared.tables.iter().collect();
    let toc = pg::toc_for(state.backups(), dump, &tables).await?;
    Ok(super::super::storage::private_text("list", &toc)?)
}

pub(super) async fn side(state: &AppState, prepared: &Prepared, watch: &Watch<'_>) -> Restored {
    watch.phase(Phase::Fetch);
    let copy = dump_copy(state, &prepared.backup, &prepared.manifest).await?;
    let dump = copy.path().to_path_buf();
    let url = pg::working_url(state.backups());
    let mut admin = pg::connect(url, None)
        .await
        .map_err(BackupError::postgres)?;
    sqlx::query(&format!("create database {}", pg::quote(&prepared.target)))
        .execute(&mut admin)
        .await
        .map_err(BackupError::postgres)?;
    let result = async {
        watch.phase(Phase::Restore);
        watch.step(0).await?;
        let all = prepared.tables.len() == prepared.manifest.tables.len();
        let list = if all {
            None
        } else {
            Some(list_file(state, prepared, &dump).await?)
        };
        let mut args = vec!["--no-privileges".to_owned()];
        if let Some(list) = &list {
            args.push(format!("--use-list={}", list.path().display()));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        pg::run_restore(state.backups(), &prepared.target, &dump, &args).await?;
        let total: i64 = prepared.manifest.total_bytes();
        watch.step(total).await?;
        watch.phase(Phase::Verify);
        check_postgres(url, Some(&prepared.target), &prepared.tables).await
    }
    .await;
    if result.is_err() {
        let _ = sqlx::query(&format!(
            "drop database if exists {} with (force)",
            pg::quote(&prepared.target)
        ))
        .execute(&mut admin)
        .await;
    }
    result.map(|checks| (checks, None))
}

/// Rows and schema checksums of `tables` in `database` against the manifest.
pub(super) async fn check_postgres(
    url: &secrecy::SecretString,
    database: Option<&str>,
    tables: &[TableEntry],
) -> Result<Vec<TableCheck>, BackupError> {
    let mut conn = pg::connect(url, database)
        .await
        .map_err(BackupError::postgres)?;
    let found = pg::tables(&mut conn).await.map_err(BackupError::postgres)?;
    Ok(tables
        .iter()
        .map(|expected| {
            let actual = found.iter().find(|t| t.name == expected.name);
            TableCheck {
                name: expected.name.clone(),
                expected_rows: expected.rows,
                rows: actual.map(|t| t.rows).unwrap_or(0),
                schema_matches: actual
                    .is_some_and(|t| t.schema_checksum == expected.schema_checksum),
            }
        })
        .collect())
}

pub(super) fn aside_schema(restore_id: i64) -> String {
    format!("salvage_pre_{restore_id}")
}

pub(super) async fn in_place(state: &AppState, prepared: &Prepared, watch: &Watch<'_>) -> Restored {
    watch.phase(Phase::Fetch);
    let copy = dump_copy(state, &prepared.backup, &prepared.manifest).await?;
    let dump = copy.path().to_path_buf();
    let list = list_file(state, prepared, &dump).await?;
    let url = pg::working_url(state.backups());
    let live = pg::database_name(&state.backups().database_url);
    let aside = aside_schema(prepared.restore_id);
    let names: Vec<String> = prepared.tables.iter().map(|t| t.name.clone()).collect();
    let pg_err = |e: sqlx::Error| BackupError::postgres(e);
    let mut conn = pg::connect(url, None).await.map_err(pg_err)?;
    watch.phase(Phase::Restore);
    watch.step(0).await?;
    // Keep the live tables aside, in one transaction.
    let mut tx = sqlx::Connection::begin(&mut conn).await.map_err(pg_err)?;
    sqlx::query(&format!("create schema {}", pg::quote(&aside)))
        .execute(&mut *tx)
        .await
        .map_err(pg_err)?;
    let present: Vec<String> = sqlx::query_scalar!(
        r#"select tablename::text as "name!" from pg_tables
            where schemaname = 'public' and tablename = any($1)"#,
        &names
    )
    .fetch_all(&mut *tx)
    .await
    .map_err(pg_err)?;
    for table in &present {
        sqlx::query(&format!(
            "alter table public.{} set schema {}",
            pg::quote(table),
            pg::quote(&aside)
        ))
        .execute(&mut *tx)
        .await
        .map_err(pg_err)?;
    }
    tx.commit().await.map_err(pg_err)?;
    let restored = pg::run_restore(
        state.backups(),
        &live,
        &dump,
        &[
            "--no-privileges",
            "--single-transaction",
            &format!("--use-list={}", list.path().display()),
        ],
    )
    .await;
    if let Err(error) = restored {
        // Nothing was restored (one transaction): put the live tables back.
        move_back(&mut conn, &aside, &present, false)
            .await
            .map_err(pg_err)?;
        return Err(error);
    }
    if let Some(owner) = &state.schema_owner {
        crate::server::postgres::grant_application_role(&owner.pool, &owner.app_role)
            .await
            .map_err(pg_err)?;
    }
    watch.step(prepared.manifest.total_bytes()).await.ok();
    watch.phase(Phase::Verify);
    let checks = check_postgres(url, None, &prepared.tables).await?;
    Ok((checks, Some(aside)))
}

/// Moves `tables` from schema `aside` back to `public` (dropping the restored ones first
/// when `drop_restored`), then drops `aside`.
pub(super) async fn move_back(
    conn: &mut sqlx::PgConnection,
    aside: &str,
    tables: &[String],
    drop_restored: bool,
) -> Result<(), sqlx::Error> {
    let mut tx = sqlx::Connection::begin(conn).await?;
    if drop_restored {
        for table in tables {
            sqlx::query(&format!(
                "drop table if exists public.{} cascade",
                pg::quote(table)
            ))
            .execute(&mut *tx)
            .await?;
        }
    }
    let kept = sqlx::query_scalar!(
        r#"select tablename::text as "name!" from pg_tables where schemaname = $1"#,
        aside
    )
    .fetch_all(&mut *tx)
    .await?;
    for table in &kept {
        sqlx::query(&format!(
            "alter table {}.{} set schema public",
            pg::quote(aside),
            pg::quote(table)
        ))
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query(&format!(
        "drop schema if exists {} cascade",
        pg::quote(aside)
    ))
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}
