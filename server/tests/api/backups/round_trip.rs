//! Backup → wipe → restore, both stores; side restores; rollback.

use app::backups::{RestoreStatus, StoreKind};

use super::*;

const APP_TABLES: [&str; 3] = ["organizations", "projects", "api_keys"];

#[tokio::test]
async fn postgres_round_trip_in_place_restores_application_data_and_leaves_salvages_own_tables_alone(
) {
    let app = app_with_data().await;
    let mut before = Vec::new();
    for table in APP_TABLES {
        before.push(pg_rows(&app.pg, table).await);
    }
    assert!(before[2].len() > 50, "the demo made keys to protect");
    let (pg_backup, _) = back_up(&app).await;

    // After the backup: the application tables are dropped, and Salvage keeps working
    // (a history entry and a queued row written after the backup).
    sqlx::raw_sql("drop table api_keys; drop table projects; drop table organizations")
        .execute(&app.pg)
        .await
        .unwrap();
    app.add_user("after-backup@test.salvage", app::auth::Role::Operator)
        .await;
    sqlx::query(
        "insert into requests_fallback (id, organization_id, ts, row_json)
         values (gen_random_uuid(), 'org_1', now(), '{}')",
    )
    .execute(&app.pg)
    .await
    .unwrap();
    let own_before: Vec<(String, i64)> = own_counts(&app).await;

    let report = restore(&app, in_place(&app, pg_backup, StoreKind::Postgres))
        .await
        .expect("the restore runs");
    assert_eq!(report.status, RestoreStatus::Verified, "{report:?}");
    assert_eq!(
        report
            .tables
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>(),
        ["api_keys", "organizations", "projects"],
        "an in-place restore touches the application tables only"
    );
    for (table, rows) in APP_TABLES.iter().zip(&before) {
        assert_eq!(
            &pg_rows(&app.pg, table).await,
            rows,
            "{table}: every field of every row"
        );
    }
    // Salvage's own tables are as they were just before the restore (plus the restore's
    // own records: its run, its entry, its freeze), including what was written after the
    // backup.
    let own_after = own_counts(&app).await;
    for ((table, before), (_, after)) in own_before.iter().zip(&own_after) {
        let expected = before
            + match table.as_str() {
                "runbook_history" => 1, // the restore's entry
                "write_freezes" => 1,   // its freeze, closed
                "cron_job_runs" => 1,   // its run of the restore job
                _ => 0,
            };
        assert_eq!(*after, expected, "{table}");
    }
    let users: i64 =
        sqlx::query_scalar("select count(*) from users where email = 'after-backup@test.salvage'")
            .fetch_one(&app.pg)
            .await
            .unwrap();
    assert_eq!(users, 1, "a row written after the backup survives");
    // The sequences carry on past the restored ids.
    sqlx::query("insert into organizations (slug, name) values ('after-restore', 'New')")
        .execute(&app.pg)
        .await
        .expect("the restored sequence is ahead of the restored rows");
    let open: i64 = sqlx::query_scalar("select count(*) from write_freezes where ended_at is null")
        .fetch_one(&app.pg)
        .await
        .unwrap();
    assert_eq!(open, 0, "the freeze ended with the restore");
}

/// Rows of every Salvage table but the restore's own bookkeeping, by name.
async fn own_counts(app: &TestApp) -> Vec<(String, i64)> {
    let mut counts = Vec::new();
    for table in app::backups::ssr::postgres::OWN_TABLES {
        if matches!(*table, "restores" | "_sqlx_migrations") {
            continue;
        }
        counts.push((table.to_string(), app.count(table).await));
    }
    counts
}

#[tokio::test]
async fn clickhouse_round_trip_in_place_restores_every_row_field_by_field() {
    let app = app_with_data().await;
    let db = app.clickhouse.database().to_owned();
    let requests = ch_rows(&app, &db, "requests").await;
    let events = ch_rows(&app, &db, "events").await;
    assert_eq!(requests.len() as u64, REQUESTS);
    let (_, ch_backup) = back_up(&app).await;
    let files: i64 = sqlx::query_scalar(
        "select count(*) from backup_files where backup_id = $1 and table_name = 'requests'",
    )
    .bind(ch_backup)
    .fetch_one(&app.pg)
    .await
    .unwrap();
    assert_eq!(files, 3, "one file per partition (October to December)");

    for table in ["requests", "events"] {
        app.clickhouse
            .client()
            .query(&format!("DROP TABLE `{db}`.`{table}`"))
            .execute()
            .await
            .unwrap();
    }
    let anchors_before = ch_count(&app, &db, "history_anchors").await;
    let report = restore(&app, in_place(&app, ch_backup, StoreKind::Clickhouse))
        .await
        .unwrap();
    assert_eq!(report.status, RestoreStatus::Verified, "{report:?}");
    assert_eq!(ch_rows(&app, &db, "requests").await, requests);
    assert_eq!(ch_rows(&app, &db, "events").await, events);
    assert_eq!(
        ch_count(&app, &db, "history_anchors").await,
        anchors_before,
        "Salvage's own ClickHouse table is not restored in place"
    );
}

#[tokio::test]
async fn a_side_restore_of_either_store_leaves_the_live_data_untouched() {
    let app = app_with_data().await;
    let (pg_backup, ch_backup) = back_up(&app).await;
    let db = app.clickhouse.database().to_owned();
    let live_pg = pg_rows(&app.pg, "api_keys").await;
    let live_ch = ch_rows(&app, &db, "requests").await;
    let history: i64 = app.count("runbook_history").await;

    let (pg_side, ch_side) = (side_name(), side_name());
    let pg_report = restore(&app, side(pg_backup, &pg_side)).await.unwrap();
    let ch_report = restore(&app, side(ch_backup, &ch_side)).await.unwrap();
    assert_eq!(pg_report.status, RestoreStatus::Verified, "{pg_report:?}");
    assert_eq!(ch_report.status, RestoreStatus::Verified, "{ch_report:?}");
    assert!(
        pg_report.tables.iter().any(|t| t.name == "runbook_history"),
        "a side restore holds Salvage's own tables too, for inspection"
    );

    // The side databases hold the backup; the live ones are as they were.
    let mut side_url = url::Url::parse(&app.database_url).unwrap();
    side_url.set_path(&pg_side);
    let side_pool = sqlx::PgPool::connect(side_url.as_str()).await.unwrap();
    assert_eq!(pg_rows(&side_pool, "api_keys").await, live_pg);
    side_pool.close().await;
    assert_eq!(ch_rows(&app, &ch_side, "requests").await, live_ch);
    assert_eq!(pg_rows(&app.pg, "api_keys").await, live_pg);
    assert_eq!(ch_rows(&app, &db, "requests").await, live_ch);
    assert_eq!(
        app.count("runbook_history").await,
        history + 2,
        "one entry per restore"
    );

    // The live database's name and an existing one are refused, naming the field.
    let live_name = app.database_url.rsplit('/').next().unwrap().to_owned();
    for target in [live_name.as_str(), pg_side.as_str(), "Bad-Name"] {
        let error = restore(&app, side(pg_backup, target)).await.unwrap_err();
        assert!(
            matches!(&error, app::error::AppError::Invalid { field, .. } if field == "target"),
            "{target}: {error:?}"
        );
    }
    drop_side(&app, &pg_side).await;
    drop_side(&app, &ch_side).await;
}

#[tokio::test]
async fn an_in_place_restore_needs_the_typed_name_and_never_takes_salvages_own_tables() {
    let app = app_with_data().await;
    let (pg_backup, _) = back_up(&app).await;
    let restores = app.count("restores").await;
    let mut unconfirmed = in_place(&app, pg_backup, StoreKind::Postgres);
    unconfirmed.confirm = Some("salvage".into());
    let error = restore(&app, unconfirmed).await.unwrap_err();
    assert!(
        matches!(&error, app::error::AppError::Invalid { field, .. } if field == "confirm"),
        "{error:?}"
    );
    let mut own = in_place(&app, pg_backup, StoreKind::Postgres);
    own.tables = vec!["runbook_history".into()];
    let error = restore(&app, own).await.unwrap_err();
    assert!(
        error.to_string().contains("one of Salvage's own tables"),
        "{error}"
    );
    assert_eq!(
        app.count("restores").await,
        restores,
        "a refused restore records nothing"
    );
}

#[tokio::test]
async fn rollback_returns_the_pre_restore_data() {
    let app = app_with_data().await;
    let (pg_backup, ch_backup) = back_up(&app).await;
    let db = app.clickhouse.database().to_owned();
    // Changes after the backup: the restore undoes them, the rollback brings them back.
    sqlx::query("update organizations set name = 'Renamed after the backup' where id = 1")
        .execute(&app.pg)
        .await
        .unwrap();
    app.clickhouse
        .client()
        .query("INSERT INTO requests (id, ts, organization_id) SELECT generateUUIDv4(), toDateTime('2026-11-27 10:00:00', 'UTC'), 'org_9'")
        .execute()
        .await
        .unwrap();
    let changed_pg = pg_rows(&app.pg, "organizations").await;
    let changed_ch = ch_rows(&app, &db, "requests").await;

    let pg_restore = restore(&app, in_place(&app, pg_backup, StoreKind::Postgres))
        .await
        .unwrap();
    let ch_restore = restore(&app, in_place(&app, ch_backup, StoreKind::Clickhouse))
        .await
        .unwrap();
    assert_ne!(pg_rows(&app.pg, "organizations").await, changed_pg);
    assert_eq!(ch_rows(&app, &db, "requests").await.len() as u64, REQUESTS);

    let actor = app::auth::ssr::Actor::cli();
    for id in [pg_restore.restore_id, ch_restore.restore_id] {
        let done = app::backups::ssr::restore::roll_back(
            &app.state,
            id,
            &actor,
            Some(crate::helpers::reason("test")),
        )
        .await
        .unwrap();
        assert_eq!(done.status, RestoreStatus::RolledBack);
        assert!(!done.can_roll_back, "a rollback is done once");
    }
    assert_eq!(pg_rows(&app.pg, "organizations").await, changed_pg);
    assert_eq!(ch_rows(&app, &db, "requests").await, changed_ch);
    let again =
        app::backups::ssr::restore::roll_back(&app.state, pg_restore.restore_id, &actor, None)
            .await;
    assert!(
        matches!(again, Err(app::error::AppError::Conflict { .. })),
        "{again:?}"
    );
}

#[tokio::test]
async fn a_cancelled_restore_stops_and_drops_what_it_made() {
    let app = app_with_data().await;
    let (pg_backup, ch_backup) = back_up(&app).await;
    // Every run's stop signal is a child of the process's: a process already stopping
    // (SIGTERM, Ctrl-C) cancels the restore at its first step, as Cancel does.
    let mut stopping = app.state.clone();
    stopping.shutdown = tokio_util::sync::CancellationToken::new();
    stopping.shutdown.cancel();
    for backup in [pg_backup, ch_backup] {
        let target = side_name();
        let report = app::backups::ssr::restore::restore(
            &stopping,
            &side(backup, &target),
            super::cli(),
            None,
        )
        .await
        .unwrap();
        assert_eq!(report.status, RestoreStatus::Cancelled, "{report:?}");
        assert!(
            !side_exists(&app, &target).await,
            "the side database is dropped"
        );
        // The restore is a run of the restore job, and its run says cancelled too.
        let (job, outcome): (String, String) = sqlx::query_as(
            "select run.job_name, run.outcome from restores r
               join cron_job_runs run on run.id = r.run_id where r.id = $1",
        )
        .bind(report.restore_id)
        .fetch_one(&app.pg)
        .await
        .unwrap();
        assert_eq!((job.as_str(), outcome.as_str()), ("restore", "cancelled"));
    }
}

#[tokio::test]
async fn only_an_admin_cancels_a_restore_run_and_the_cancel_is_in_the_history() {
    let app = crate::helpers::spawn_app().await;
    let run: i64 = sqlx::query_scalar(
        "insert into cron_job_runs (job_name, ran_at, heartbeat_at, trigger, actor)
         values ('restore', now(), now(), 'manual', 'someone') returning id",
    )
    .fetch_one(&app.pg)
    .await
    .unwrap();
    let operator = app.signed_in(app::auth::Role::Operator).await;
    let admin = app.signed_in(app::auth::Role::Admin).await;
    let entries = app.count("runbook_history").await;
    let asked = || async {
        sqlx::query_scalar::<_, bool>("select cancel_requested from cron_job_runs where id = $1")
            .bind(run)
            .fetch_one(&app.pg)
            .await
            .unwrap()
    };

    let (refused, body) = operator
        .call("jobs/cancel", serde_json::json!({"run_id": run}))
        .await;
    assert_eq!(refused, 403, "{body}");
    assert!(!asked().await, "a refused cancel changes nothing");
    assert_eq!(app.count("runbook_history").await, entries);

    let (status, body) = admin
        .call("jobs/cancel", serde_json::json!({"run_id": run}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(asked().await);
    assert_eq!(app.count("runbook_history").await, entries + 1);
}

#[tokio::test]
async fn a_restore_whose_process_died_shows_failed_with_the_reason() {
    let app = crate::helpers::spawn_app().await;
    let backup: i64 = sqlx::query_scalar(
        "insert into backups (store, status, location, trigger, actor, started_at)
         values ('postgres', 'verified', 'x', 'cli', 'someone', now()) returning id",
    )
    .fetch_one(&app.pg)
    .await
    .unwrap();
    // Its run's last heartbeat is ten minutes old: the runner's abandoned rule.
    let run: i64 = sqlx::query_scalar(
        "insert into cron_job_runs (job_name, ran_at, heartbeat_at, trigger, actor)
         values ('restore', now() - interval '10 minutes', now() - interval '10 minutes',
                 'manual', 'someone') returning id",
    )
    .fetch_one(&app.pg)
    .await
    .unwrap();
    let id: i64 = sqlx::query_scalar(
        "insert into restores (backup_id, store, mode, target, tables, actor, started_at, run_id)
         values ($1, 'postgres', 'side', 'x', '{}', 'someone', now(), $2) returning id",
    )
    .bind(backup)
    .bind(run)
    .fetch_one(&app.pg)
    .await
    .unwrap();

    let restore = app::backups::ssr::restore::load(&app.state, id)
        .await
        .unwrap()
        .unwrap();

    assert_eq!(restore.status, RestoreStatus::Failed);
    assert!(
        restore
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("abandoned"),
        "{restore:?}"
    );
    assert_eq!(restore.run_id, Some(run));
}
