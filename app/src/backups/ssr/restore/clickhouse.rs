//! ClickHouse restores: each table's files loaded into a side database, or into staging
//! tables swapped in place once each matches the manifest, and the check.

use super::*;

/// Where a ClickHouse table is loaded.
pub(super) struct Destination<'a> {
    client: &'a ::clickhouse::Client,
    database: &'a str,
    table: &'a str,
}

/// Loads every file of `table` into `to`; `done` counts the bytes read. The new table is
/// created from Salvage's own definition of the table, never from text in the backup.
pub(super) async fn load_table(
    state: &AppState,
    prepared: &Prepared,
    table: &TableEntry,
    to: Destination<'_>,
    watch: &Watch<'_>,
    done: &mut i64,
) -> Result<(), BackupError> {
    let Destination {
        client,
        database,
        table: target_table,
    } = to;
    let def = state.clickhouse.table_def(&table.name).ok_or_else(|| {
        BackupError::Integrity(format!(
            "{}: not one of Salvage's ClickHouse tables",
            table.name
        ))
    })?;
    client
        .query(&def.create_new(database, target_table))
        .execute()
        .await
        .map_err(BackupError::clickhouse)?;
    let decryption = super::super::verify::decryption(state, &prepared.manifest)?;
    for file in prepared
        .manifest
        .files
        .iter()
        .filter(|f| f.table.as_deref() == Some(&table.name))
    {
        watch.step(*done).await?;
        ch::import(
            client,
            database,
            target_table,
            &state.backups().storage,
            prepared.backup.key(&file.path),
            file.clone(),
            decryption.clone(),
        )
        .await?;
        *done += file.size as i64;
    }
    Ok(())
}

pub(super) async fn check_clickhouse(
    client: &::clickhouse::Client,
    database: &str,
    tables: &[(TableEntry, String)],
) -> Result<Vec<TableCheck>, BackupError> {
    let described = ch::describe(client, database)
        .await
        .map_err(BackupError::clickhouse)?;
    let mut checks = Vec::new();
    for (expected, name) in tables {
        let Some(actual) = described.iter().find(|t| &t.name == name) else {
            checks.push(TableCheck {
                name: expected.name.clone(),
                expected_rows: expected.rows,
                rows: 0,
                schema_matches: false,
            });
            continue;
        };
        let rows = ch::count(client, database, name)
            .await
            .map_err(BackupError::clickhouse)?;
        let checksum = ch::checksum(client, database, actual)
            .await
            .map_err(BackupError::clickhouse)?;
        checks.push(TableCheck {
            name: expected.name.clone(),
            expected_rows: expected.rows,
            rows: rows as i64,
            schema_matches: checksum == expected.schema_checksum,
        });
    }
    Ok(checks)
}

pub(super) async fn side(state: &AppState, prepared: &Prepared, watch: &Watch<'_>) -> Restored {
    let client = state.clickhouse.client();
    let database = prepared.target.as_str();
    watch.phase(Phase::Restore);
    client
        .query(&format!("CREATE DATABASE `{database}`"))
        .execute()
        .await
        .map_err(BackupError::clickhouse)?;
    let result = async {
        let mut done = 0;
        for table in &prepared.tables {
            let to = Destination {
                client,
                database,
                table: &table.name,
            };
            load_table(state, prepared, table, to, watch, &mut done).await?;
        }
        let pairs: Vec<(TableEntry, String)> = prepared
            .tables
            .iter()
            .map(|t| (t.clone(), t.name.clone()))
            .collect();
        watch.phase(Phase::Verify);
        check_clickhouse(client, database, &pairs).await
    }
    .await;
    if result.is_err() {
        let _ = client
            .query(&format!("DROP DATABASE IF EXISTS `{database}`"))
            .execute()
            .await;
    }
    result.map(|checks| (checks, None))
}

pub(super) fn staging(table: &str, restore_id: i64) -> String {
    format!("{table}__restore_{restore_id}")
}

pub(super) fn aside_table(table: &str, restore_id: i64) -> String {
    format!("{table}__pre_{restore_id}")
}

/// Whether a console (`salvage serve`, or a command working as one) holds a session on
/// the database now: its sessions are named `salvage`; a recovery's are not.
async fn consoles_connected(state: &AppState) -> Result<bool, BackupError> {
    sqlx::query_scalar(
        "select exists (select 1 from pg_stat_activity
                         where datname = current_database() and application_name = 'salvage')",
    )
    .fetch_one(&state.pg)
    .await
    .map_err(BackupError::postgres)
}

pub(super) async fn in_place(state: &AppState, prepared: &Prepared, watch: &Watch<'_>) -> Restored {
    if let Some(cluster) = state.clickhouse.cluster() {
        one_shard(state.clickhouse.client(), cluster).await?;
    }
    // Ingest writes to ClickHouse within its timeout of reading "not frozen": wait that
    // long, so no row lands in a table about to be set aside. A recovery skips it when
    // no console is connected to the database: an ingest that read the freeze's state
    // did so on a session of its pool, which stays open for minutes after.
    if !prepared.recovery || consoles_connected(state).await? {
        tokio::time::sleep(state.queues().ingest_timeout + std::time::Duration::from_millis(500))
            .await;
    }
    let client = state.clickhouse.client();
    let database = state.clickhouse.database().to_owned();
    let id = prepared.restore_id;
    let mut done = 0;
    let mut pairs = Vec::new();
    watch.phase(Phase::Restore);
    let loaded = async {
        for table in &prepared.tables {
            let name = staging(&table.name, id);
            let to = Destination {
                client,
                database: &database,
                table: &name,
            };
            load_table(state, prepared, table, to, watch, &mut done).await?;
            pairs.push((table.clone(), name));
        }
        watch.phase(Phase::Verify);
        check_clickhouse(client, &database, &pairs).await
    }
    .await;
    let drop_staging = || async {
        for table in &prepared.tables {
            let _ = client
                .query(&format!(
                    "DROP TABLE IF EXISTS `{database}`.`{}`",
                    staging(&table.name, id)
                ))
                .execute()
                .await;
        }
    };
    let checks = match loaded {
        Ok(checks) if checks.iter().all(TableCheck::ok) => checks,
        Ok(checks) => {
            drop_staging().await;
            return Ok((checks, None));
        }
        Err(error) => {
            drop_staging().await;
            return Err(error);
        }
    };
    if state.clickhouse.cluster().is_some() {
        let swapped = swap_partitions_in(client, &database, prepared).await;
        drop_staging().await;
        swapped?;
        return Ok((checks, Some(format!("__pre_{id}"))));
    }
    // Swap: the live table aside, the staging table in its place, in one RENAME.
    let described = ch::describe(client, &database)
        .await
        .map_err(BackupError::clickhouse)?;
    let mut renames = Vec::new();
    for table in &prepared.tables {
        if described.iter().any(|d| d.name == table.name) {
            renames.push(format!(
                "`{database}`.`{0}` TO `{database}`.`{1}`",
                table.name,
                aside_table(&table.name, id)
            ));
        }
        renames.push(format!(
            "`{database}`.`{0}` TO `{database}`.`{1}`",
            staging(&table.name, id),
            table.name
        ));
    }
    client
        .query(&format!("RENAME TABLE {}", renames.join(", ")))
        .execute()
        .await
        .map_err(BackupError::clickhouse)?;
    Ok((checks, Some(format!("__pre_{id}"))))
}

// ---------- on a cluster ----------
//
// A replicated table cannot be renamed away: its ZooKeeper path stays, and the other
// replicas keep the old table. So the live replicated tables stay where they are and
// their partitions are replaced: `REPLACE PARTITION … FROM` a plain table on this
// replica is replicated to the others like an insert (and reaches a replica that is down
// when it returns). The set-aside copy is a plain table on this replica.

/// In-place restores on a cluster replace partitions on this server's shard only: with
/// more than one shard, they are refused before anything changes.
async fn one_shard(client: &::clickhouse::Client, cluster: &str) -> Result<(), BackupError> {
    let shards: u64 = client
        .query("SELECT count(DISTINCT shard_num) FROM system.clusters WHERE cluster = ?")
        .bind(cluster)
        .fetch_one()
        .await
        .map_err(BackupError::clickhouse)?;
    if shards > 1 {
        return Err(BackupError::Refused(format!(
            "cluster {cluster} has {shards} shards: an in-place restore replaces one shard's \
             partitions, so restore into a new database and copy the rows instead"
        )));
    }
    Ok(())
}

fn local(table: &str) -> String {
    format!("{table}{}", crate::server::clickhouse::LOCAL_SUFFIX)
}

async fn partition_ids(
    client: &::clickhouse::Client,
    database: &str,
    table: &str,
) -> Result<Vec<String>, BackupError> {
    client
        .query(
            "SELECT DISTINCT partition_id FROM system.parts \
             WHERE database = ? AND table = ? AND active ORDER BY partition_id",
        )
        .bind(database)
        .bind(table)
        .fetch_all()
        .await
        .map_err(BackupError::clickhouse)
}

async fn run(client: &::clickhouse::Client, sql: String) -> Result<(), BackupError> {
    client
        .query(&sql)
        .execute()
        .await
        .map_err(BackupError::clickhouse)
}

/// A plain copy of `from` (every partition, by hard links) as the new table `to`.
async fn copy_table(
    client: &::clickhouse::Client,
    database: &str,
    from: &str,
    to: &str,
) -> Result<(), BackupError> {
    let create: String = client
        .query("SELECT create_table_query FROM system.tables WHERE database = ? AND name = ?")
        .bind(database)
        .bind(from)
        .fetch_one()
        .await
        .map_err(BackupError::clickhouse)?;
    run(
        client,
        ch::retarget(&ch::unreplicated(&create), database, to)?,
    )
    .await?;
    for id in partition_ids(client, database, from).await? {
        run(
            client,
            format!(
                "ALTER TABLE `{database}`.`{to}` REPLACE PARTITION ID '{id}' FROM `{database}`.`{from}`"
            ),
        )
        .await?;
    }
    Ok(())
}

/// Makes `into` hold exactly `from`'s partitions: each of `from`'s replaces its own, and
/// the partitions `from` lacks are dropped.
async fn replace_partitions(
    client: &::clickhouse::Client,
    database: &str,
    into: &str,
    from: &str,
) -> Result<(), BackupError> {
    let wanted = partition_ids(client, database, from).await?;
    for id in &wanted {
        run(
            client,
            format!(
                "ALTER TABLE `{database}`.`{into}` REPLACE PARTITION ID '{id}' FROM `{database}`.`{from}`"
            ),
        )
        .await?;
    }
    for id in partition_ids(client, database, into).await? {
        if !wanted.contains(&id) {
            run(
                client,
                format!("ALTER TABLE `{database}`.`{into}` DROP PARTITION ID '{id}'"),
            )
            .await?;
        }
    }
    Ok(())
}

/// The live replicated tables set aside (a plain copy, `<table>__pre_<id>`), then given
/// the staging tables' partitions.
async fn swap_partitions_in(
    client: &::clickhouse::Client,
    database: &str,
    prepared: &Prepared,
) -> Result<(), BackupError> {
    let id = prepared.restore_id;
    for table in &prepared.tables {
        let live = local(&table.name);
        copy_table(client, database, &live, &aside_table(&table.name, id)).await?;
        replace_partitions(client, database, &live, &staging(&table.name, id)).await?;
    }
    Ok(())
}

/// Rolls back in-place restore `id` on a cluster: the restored partitions set aside in
/// turn (`<table>__rolled_back_<id>`), the pre-restore copy's put back and dropped.
pub(super) async fn roll_back_on_cluster(
    client: &::clickhouse::Client,
    database: &str,
    tables: &[String],
    id: i64,
) -> Result<(), BackupError> {
    for table in tables {
        let live = local(table);
        let aside = aside_table(table, id);
        copy_table(
            client,
            database,
            &live,
            &format!("{table}__rolled_back_{id}"),
        )
        .await?;
        replace_partitions(client, database, &live, &aside).await?;
        run(client, format!("DROP TABLE `{database}`.`{aside}`")).await?;
    }
    Ok(())
}
