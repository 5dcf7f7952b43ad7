//! In place: the store frozen, the live tables kept aside, and the rollback that puts
//! them back.

use super::*;

/// In place: under a freeze of the store, with the live tables kept aside.
pub(super) async fn run(
    state: &AppState,
    prepared: &Prepared,
    actor: &Actor,
    watch: &Watch<'_>,
) -> Restored {
    let store = prepared.backup.backup.store;
    let Some(lock) =
        crate::server::postgres::try_exclusive(&state.pg, super::super::lock_class::RESTORE, 0)
            .await
            .map_err(BackupError::postgres)?
    else {
        return Err(BackupError::Refused(
            "another restore or rollback is running".to_owned(),
        ));
    };
    let reason = format!(
        "Restore {} of {} backup {} in place",
        prepared.restore_id,
        store.label(),
        prepared.backup.backup.id
    );
    let freeze_id = freeze::open(&state.pg, store, &reason, prepared.restore_id, &actor.name)
        .await
        .map_err(BackupError::postgres)?;
    let result = match store {
        StoreKind::Postgres => super::postgres::in_place(state, prepared, watch).await,
        StoreKind::Clickhouse => super::clickhouse::in_place(state, prepared, watch).await,
    };
    let closed = freeze::close(&state.pg, freeze_id).await;
    if store == StoreKind::Clickhouse && result.is_ok() {
        // Rows parked during the freeze go to the restored tables now.
        let firing = crate::jobs::ssr::Firing::by_hand(
            crate::jobs::Trigger::Manual,
            actor.clone(),
            Some(crate::reason::Reason::own(format!(
                "Replay the rows parked during restore {}",
                prepared.restore_id
            ))),
            crate::jobs::ssr::Caller::default(),
        );
        let job = state.replay_parked();
        let _ =
            crate::jobs::ssr::run_in_background(state, job, firing, serde_json::Value::Null).await;
    }
    lock.release().await;
    closed.map_err(BackupError::postgres)?;
    result
}

/// Rolls back in-place restore `id`: the live tables kept aside go back in place (the
/// restored ones are kept aside in turn, as `<table>__rolled_back_<id>` in ClickHouse or
/// dropped in PostgreSQL). Admins only; a history entry.
pub async fn roll_back(
    state: &AppState,
    id: i64,
    actor: &Actor,
    reason: Option<crate::reason::Reason>,
) -> Result<Restore, AppError> {
    let pg_err = AppError::wrap("Roll back a restore");
    let restore = load(state, id).await?.ok_or_else(|| AppError::NotFound {
        what: format!("Restore {id}"),
    })?;
    if !restore.can_roll_back {
        return Err(AppError::Conflict {
            message: format!(
                "Restore {id} cannot be rolled back: it is {} and kept no live tables aside.",
                restore.status.label()
            ),
        });
    }
    let Some(lock) =
        crate::server::postgres::try_exclusive(&state.pg, super::super::lock_class::RESTORE, 0)
            .await
            .map_err(&pg_err)?
    else {
        return Err(AppError::Conflict {
            message: "Another restore or rollback is running; try again when it ends.".to_owned(),
        });
    };
    let started = state.clock.now();
    let freeze_id = freeze::open(
        &state.pg,
        restore.store,
        &format!("Roll back restore {id}"),
        id,
        &actor.name,
    )
    .await?;
    let result: Result<(), BackupError> = match restore.store {
        StoreKind::Postgres => {
            let url = pg::working_url(state.backups());
            match pg::connect(url, None).await {
                Ok(mut conn) => super::postgres::move_back(
                    &mut conn,
                    &super::postgres::aside_schema(id),
                    &restore.tables,
                    true,
                )
                .await
                .map_err(BackupError::postgres),
                Err(e) => Err(BackupError::postgres(e)),
            }
        }
        StoreKind::Clickhouse => {
            tokio::time::sleep(
                state.queues().ingest_timeout + std::time::Duration::from_millis(500),
            )
            .await;
            let database = state.clickhouse.database().to_owned();
            let client = state.clickhouse.client();
            if state.clickhouse.cluster().is_some() {
                super::clickhouse::roll_back_on_cluster(client, &database, &restore.tables, id)
                    .await
            } else {
                let renames: Vec<String> = restore
                    .tables
                    .iter()
                    .flat_map(|t| {
                        [
                            format!("`{database}`.`{t}` TO `{database}`.`{t}__rolled_back_{id}`"),
                            format!(
                                "`{database}`.`{}` TO `{database}`.`{t}`",
                                super::clickhouse::aside_table(t, id)
                            ),
                        ]
                    })
                    .collect();
                client
                    .query(&format!("RENAME TABLE {}", renames.join(", ")))
                    .execute()
                    .await
                    .map_err(BackupError::clickhouse)
            }
        }
    };
    lock.release().await;
    freeze::close(&state.pg, freeze_id).await.map_err(&pg_err)?;
    if let Err(error) = result {
        return Err(AppError::internal("Roll back a restore", error.to_string()));
    }
    let mut tx = state.pg.begin().await.map_err(&pg_err)?;
    sqlx::query!(
        "update restores set status = 'rolled_back', aside = null where id = $1",
        id
    )
    .execute(&mut *tx)
    .await
    .map_err(&pg_err)?;
    let details = RestoreRolledBack {
        restore_id: id,
        store: restore.store,
        tables: restore.tables.clone(),
        rollback: true,
    };
    let entry = NewEntry::new(
        details,
        format!(
            "Rolled back restore {id}: {} is back to its pre-restore tables",
            restore.target
        ),
        actor,
        Outcome::Succeeded,
    )
    .with_reason(reason)
    .with_times(started, Some(state.clock.now()));
    append(&mut tx, &entry).await.map_err(&pg_err)?;
    tx.commit().await.map_err(&pg_err)?;
    load(state, id).await?.ok_or_else(|| AppError::NotFound {
        what: format!("Restore {id}"),
    })
}

/// In-place restores of `store` started by `by` since `since` that are still `running`
/// though no process runs them any more (it was killed): each is marked failed, its
/// freeze ended and, in ClickHouse, its staging tables dropped. Before a recovery
/// restores again after a run was stopped; says which restores it ended.
pub async fn abandon_interrupted(
    state: &AppState,
    store: StoreKind,
    by: &str,
    since: time::OffsetDateTime,
) -> Result<Vec<i64>, BackupError> {
    let ids: Vec<i64> = sqlx::query_scalar(
        "update restores set status = $1, finished_at = now(),
                error = 'interrupted: the process running it stopped'
          where status = $2 and mode = $3 and store = $4 and actor = $5 and started_at >= $6
          returning id",
    )
    .bind(RestoreStatus::Failed.as_str())
    .bind(RestoreStatus::Running.as_str())
    .bind(RestoreMode::InPlace.as_str())
    .bind(store.as_str())
    .bind(by)
    .bind(since)
    .fetch_all(&state.pg)
    .await
    .map_err(BackupError::postgres)?;
    for id in &ids {
        sqlx::query(
            "update write_freezes set ended_at = now() where restore_id = $1 and ended_at is null",
        )
        .bind(id)
        .execute(&state.pg)
        .await
        .map_err(BackupError::postgres)?;
        if store == StoreKind::Clickhouse {
            let client = state.clickhouse.client();
            let database = state.clickhouse.database();
            let suffix = super::clickhouse::staging("", *id);
            let staged: Vec<String> = client
                .query(
                    "SELECT name FROM system.tables WHERE database = ? \
                     AND substring(name, length(name) - ? + 1) = ?",
                )
                .bind(database)
                .bind(suffix.len() as u64)
                .bind(&suffix)
                .fetch_all()
                .await
                .map_err(BackupError::clickhouse)?;
            for table in staged {
                client
                    .query(&format!("DROP TABLE IF EXISTS `{database}`.`{table}`"))
                    .execute()
                    .await
                    .map_err(BackupError::clickhouse)?;
            }
        }
    }
    Ok(ids)
}
