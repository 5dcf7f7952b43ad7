//! Backups under faults: damaged files, a backup killed mid-way, a target that cannot be
//! written, ingest while ClickHouse is restored in place, retention's choices.

use std::io::{Seek, SeekFrom, Write};
use std::time::Duration;

use app::backups::{BackupStatus, RestoreStatus, StoreKind};

use super::*;
use crate::alerts::{alerts_of, evaluate};
use crate::helpers::{eventually, spawn_app_tweaked};

/// The local path of a backup file.
async fn file_path(app: &TestApp, backup: i64, table: Option<&str>) -> std::path::PathBuf {
    let (location, path): (String, String) = sqlx::query_as(
        "select b.location, f.path from backups b join backup_files f on f.backup_id = b.id
         where b.id = $1 and f.table_name is not distinct from $2 order by f.path limit 1",
    )
    .bind(backup)
    .bind(table)
    .fetch_one(&app.pg)
    .await
    .unwrap();
    local(app, &format!("{location}/{path}"))
}

/// Where `key` is in the test's backup directory.
fn local(app: &TestApp, key: &str) -> std::path::PathBuf {
    match &app.state.backups().storage {
        app::backups::ssr::Storage::Directory(dir) => dir.join(key),
        other => panic!("a directory target, not {other:?}"),
    }
}

async fn status_of(app: &TestApp, backup: i64) -> (String, Option<String>) {
    sqlx::query_as("select status, verify_error from backups where id = $1")
        .bind(backup)
        .fetch_one(&app.pg)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_flipped_byte_and_a_truncated_file_are_caught_by_verify_and_by_restore_naming_the_file() {
    let app = app_with_data().await;
    let (pg_backup, ch_backup) = back_up(&app).await;
    assert_eq!(
        status_of(&app, ch_backup).await.0,
        "verified",
        "the job verifies each backup"
    );

    // One byte flipped in the middle of a ClickHouse file; the dump cut short.
    let ch_file = file_path(&app, ch_backup, Some("requests")).await;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&ch_file)
        .unwrap();
    let len = file.metadata().unwrap().len();
    let mut byte = [0u8; 1];
    file.seek(SeekFrom::Start(len / 2)).unwrap();
    std::io::Read::read_exact(&mut file, &mut byte).unwrap();
    file.seek(SeekFrom::Start(len / 2)).unwrap();
    file.write_all(&[byte[0] ^ 0x40]).unwrap();
    drop(file);
    let pg_file = file_path(&app, pg_backup, None).await;
    let dump_len = std::fs::metadata(&pg_file).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&pg_file)
        .unwrap()
        .set_len(dump_len - 100)
        .unwrap();

    use app::backups::ssr::verify::{Verification, VerifyRequest, VERIFY_BACKUP};
    for (backup, name) in [(ch_backup, "requests/"), (pg_backup, "postgres.dump")] {
        // As the Verify button and `salvage backup verify` do: a run of the job.
        let options = app::jobs::ssr::RunOptions {
            input: serde_json::to_value(VerifyRequest { backup_id: backup }).unwrap(),
            ..Default::default()
        };
        let finished = app::jobs::ssr::run(&app.state, &VERIFY_BACKUP, super::cli(), options)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(finished.status, app::jobs::RunStatus::Failed);
        let verification = finished.report::<Verification>().expect("a report");
        let error = verification.error.clone().expect("the damage is caught");
        assert!(error.contains(name), "names the file: {error}");
        let (status, recorded) = status_of(&app, backup).await;
        assert_eq!(status, "verify_failed");
        assert_eq!(recorded.as_deref(), Some(error.as_str()));
    }
    let raised = alerts_of(&app, "backup_verify_failed").await;
    assert_eq!(raised.len(), 2, "one alert per store: {raised:?}");

    for backup in [ch_backup, pg_backup] {
        let target = side_name();
        let report = restore(&app, side(backup, &target)).await.unwrap();
        assert_eq!(report.status, RestoreStatus::Failed, "{report:?}");
        let error = report.error.unwrap();
        assert!(
            error.contains(".native.lz4") || error.contains("postgres.dump"),
            "{error}"
        );
        assert!(
            !side_exists(&app, &target).await,
            "a failed restore drops what it made"
        );
    }
    // In place, the damaged ClickHouse file never replaces the live table.
    let db = app.clickhouse.database().to_owned();
    let live = ch_count(&app, &db, "requests").await;
    let report = restore(&app, in_place(&app, ch_backup, StoreKind::Clickhouse))
        .await
        .unwrap();
    assert_eq!(report.status, RestoreStatus::Failed);
    assert_eq!(ch_count(&app, &db, "requests").await, live);
}

#[tokio::test]
async fn a_backup_killed_mid_way_never_lists_as_complete_and_the_next_one_succeeds() {
    let app = app_with_data().await;
    let mut dying = app.state.clone();
    dying.faults.backup_hang_after_files = Some(1);
    let firing = app::jobs::ssr::Firing::by_hand(
        app::jobs::Trigger::Cli,
        app::auth::ssr::Actor::cli(),
        None,
        Default::default(),
    );
    let run = app::jobs::ssr::run(
        &dying,
        &app::backups::ssr::BACKUP,
        firing,
        Default::default(),
    );
    // The process dies while the ClickHouse backup has one file written.
    assert!(tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .is_err());
    let interrupted: i64 = sqlx::query_scalar("select id from backups where store = 'clickhouse'")
        .fetch_one(&app.pg)
        .await
        .unwrap();
    assert_eq!(status_of(&app, interrupted).await.0, "running");
    let location = format!("clickhouse/{interrupted}");
    assert!(!app
        .state
        .backups()
        .storage
        .exists(&format!("{location}/manifest.json"))
        .await
        .unwrap());
    let latest = app::backups::ssr::catalogue::latest_complete(&app.pg, StoreKind::Clickhouse)
        .await
        .unwrap();
    assert!(latest.is_none(), "nothing lists as complete");
    let plan = app::backups::ssr::restore::plan(&app.state, interrupted).await;
    assert!(plan.is_err(), "and it cannot be restored");

    let (_, next) = back_up(&app).await;
    assert_eq!(status_of(&app, next).await.0, "verified");
    let (status, _) = status_of(&app, interrupted).await;
    assert_eq!(
        status, "failed",
        "the next backup closes the interrupted one"
    );
    assert!(
        !local(&app, &location).exists(),
        "and deletes its partial files"
    );
}

#[tokio::test]
async fn a_target_that_cannot_be_written_fails_the_backup_with_an_alert_and_a_history_entry() {
    let app = spawn_app_tweaked(|settings| {
        settings.backups.storage =
            app::backups::ssr::Storage::Directory("/proc/salvage-cannot-write-here".into());
    })
    .await;
    crate::helpers::run_failing_job(&app, "backup").await;
    let failed: Vec<(String, String)> =
        sqlx::query_as("select store, error from backups order by id")
            .fetch_all(&app.pg)
            .await
            .unwrap();
    assert_eq!(failed.len(), 2);
    assert!(
        failed.iter().all(|(_, e)| e.contains("cannot be written")),
        "{failed:?}"
    );
    let raised = alerts_of(&app, "backup_failed").await;
    assert_eq!(
        raised.iter().map(|a| a.1.as_str()).collect::<Vec<_>>(),
        ["postgres", "clickhouse"]
    );
    let entries: i64 = sqlx::query_scalar(
        "select count(*) from runbook_history where kind = 'backup' and outcome = 'failed'",
    )
    .fetch_one(&app.pg)
    .await
    .unwrap();
    assert_eq!(entries, 2);
}

#[tokio::test]
async fn rows_ingested_during_an_in_place_clickhouse_restore_land_exactly_once() {
    let app = app_with_data().await;
    let (_, ch_backup) = back_up(&app).await;
    let key = crate::queues::ingest_key(&app).await;
    let restoring = {
        let app_state = app.state.clone();
        let request = in_place(&app, ch_backup, StoreKind::Clickhouse);
        tokio::spawn(async move {
            app::backups::ssr::restore::restore(&app_state, &request, super::cli(), None).await
        })
    };
    // From the moment the store is frozen until after the restore, batches keep coming.
    assert!(
        eventually(Duration::from_secs(10), || async {
            app::freeze::ssr::is_frozen(&app.pg, StoreKind::Clickhouse)
                .await
                .unwrap()
        })
        .await
    );
    let (mut sent, mut parked, mut batch) = (0u32, 0u32, 0u32);
    let mut finished = None;
    let mut after = 0;
    while after < 3 {
        let rows = crate::queues::request_rows(batch * 10, 10);
        let (status, answer) = crate::queues::post_rows(&app, &key, &rows).await;
        assert!(status == 200 || status == 202, "{status}: {answer}");
        if answer["stored"] == "fallback" {
            parked += 10;
        }
        sent += 10;
        batch += 1;
        if finished.is_none() && restoring.is_finished() {
            finished = Some(restoring.is_finished());
        }
        if finished.is_some() {
            after += 1;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let report = restoring.await.unwrap().unwrap();
    assert_eq!(report.status, RestoreStatus::Verified, "{report:?}");
    assert!(parked > 0, "rows sent during the freeze were parked");
    crate::helpers::run_job(&app, "replay-fallback").await;
    assert!(
        eventually(Duration::from_secs(20), || async {
            app.count("requests_fallback").await == 0
        })
        .await,
        "the parked rows are replayed"
    );
    let (rows, distinct): (u64, u64) = app
        .clickhouse
        .client()
        .query("SELECT count(), uniqExact(toString(id)) FROM requests WHERE model = 'gpt-4o-mini'")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(
        (rows, distinct),
        (u64::from(sent), u64::from(sent)),
        "every row once, none twice"
    );
    let db = app.clickhouse.database().to_owned();
    assert_eq!(
        ch_count(&app, &db, "requests").await,
        REQUESTS + u64::from(sent)
    );
}

#[tokio::test]
async fn retention_keeps_each_stores_newest_n_and_never_the_newest_verified() {
    // PostgreSQL keeps 3, ClickHouse 5: each store's own retention.
    let app = spawn_app_tweaked(|settings| {
        settings.backups.policy_postgres.keep = 3;
        settings.backups.policy_clickhouse.keep = 5;
    })
    .await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(back_up(&app).await.0);
    }
    // The fourth run's retention deleted the oldest PostgreSQL backup.
    let deleted: Vec<i64> = sqlx::query_scalar(
        "select id from backups where store = 'postgres' and deleted_at is not null order by id",
    )
    .fetch_all(&app.pg)
    .await
    .unwrap();
    assert_eq!(deleted, [ids[0]]);
    assert_eq!(
        app.count("backups where store = 'clickhouse' and deleted_at is not null")
            .await,
        0,
        "ClickHouse keeps 5"
    );
    // Only the oldest kept one is verified now: keeping 1 must still keep it.
    sqlx::query("update backups set status = 'verify_failed' where id = any($1)")
        .bind([ids[2], ids[3]])
        .execute(&app.pg)
        .await
        .unwrap();
    let mut strict = app.state.clone();
    strict
        .part_mut::<app::backups::ssr::BackupSettings>()
        .policy_postgres
        .keep = 1;
    let gone = app::backups::ssr::create::retain(
        &strict,
        StoreKind::Postgres,
        &app::auth::ssr::Actor::cli(),
    )
    .await
    .unwrap();
    assert_eq!(
        gone,
        [ids[2]],
        "the newest ({}) and the newest verified ({}) stay",
        ids[3],
        ids[1]
    );
    for (id, kept) in [
        (ids[0], false),
        (ids[1], true),
        (ids[2], false),
        (ids[3], true),
    ] {
        let folder = local(&app, &format!("postgres/{id}"));
        assert_eq!(folder.exists(), kept, "backup {id}");
    }
    let entries: i64 = sqlx::query_scalar(
        "select count(*) from runbook_history where kind = 'backup' and details ? 'retention'",
    )
    .fetch_one(&app.pg)
    .await
    .unwrap();
    let all_deleted: i64 =
        sqlx::query_scalar("select count(*) from backups where deleted_at is not null")
            .fetch_one(&app.pg)
            .await
            .unwrap();
    assert_eq!(entries, all_deleted, "every deletion is a history entry");
    assert_eq!(
        status_of(&app, ids[3]).await.0,
        BackupStatus::VerifyFailed.as_str()
    );
}

#[tokio::test]
async fn backup_stale_counts_from_installation_and_ends_with_a_backup() {
    let app = spawn_app().await;
    evaluate(&app).await;
    assert!(
        alerts_of(&app, "backup_stale").await.is_empty(),
        "a fresh install is not stale"
    );
    sqlx::query("update _sqlx_migrations set installed_on = installed_on - interval '27 hours'")
        .execute(&app.pg)
        .await
        .unwrap();
    evaluate(&app).await;
    let raised = alerts_of(&app, "backup_stale").await;
    assert_eq!(raised.len(), 2, "{raised:?}");
    assert!(raised.iter().all(|a| a.2 == "warning"));
    back_up(&app).await;
    for _ in 0..app.state.alerts().recover_evaluations {
        evaluate(&app).await;
    }
    let open: Vec<_> = alerts_of(&app, "backup_stale")
        .await
        .into_iter()
        .filter(|a| a.3 != "resolved")
        .collect();
    assert!(open.is_empty(), "a backup ends it: {open:?}");
}
