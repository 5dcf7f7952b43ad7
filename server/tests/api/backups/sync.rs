//! The catalogue is a cache of the repository: after the database that held it was
//! restored from an older dump, `backup-sync` adds the backups taken since, completes
//! those the dump caught running, marks as gone those whose files were deleted, and
//! never adds one whose manifest does not verify. Through `/cron/backup-sync` and the
//! CLI, on real files.

use app::backups::StoreKind;
use serde_json::Value;

use super::*;

pub(super) fn folder(app: &TestApp, store: StoreKind, id: i64) -> std::path::PathBuf {
    match &app.state.backups().storage {
        app::backups::ssr::Storage::Directory(dir) => dir.join(format!("{}/{id}", store.as_str())),
        other => panic!("a directory target, not {other:?}"),
    }
}

async fn status(app: &TestApp, id: i64) -> Option<(String, bool, i64)> {
    sqlx::query_as(
        "select status, deleted_at is not null,
                (select count(*) from backup_files f where f.backup_id = b.id)
           from backups b where id = $1",
    )
    .bind(id)
    .fetch_optional(&app.pg)
    .await
    .unwrap()
}

fn ids(report: &Value, field: &str) -> Vec<i64> {
    report[field]
        .as_array()
        .unwrap_or_else(|| panic!("{field} in {report}"))
        .iter()
        .map(|id| id.as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn the_catalogue_is_rebuilt_from_the_repository_and_an_unsigned_manifest_is_never_added() {
    // As deployed: the application's role owns nothing and has only what it was granted.
    let app = with_data(
        crate::helpers::spawn_app_with(crate::helpers::Options {
            two_roles: true,
            ..Default::default()
        })
        .await,
    )
    .await;
    assert_eq!(
        app::backups::ssr::sync::last_synced_ms(&app.state)
            .await
            .unwrap(),
        None
    );
    let (pg_old, ch_old) = back_up(&app).await;
    let (pg_new, ch_new) = back_up(&app).await;

    // The database as an older dump brings it back: the newest backups unknown, one
    // caught running; and one backup's files deleted from the repository since.
    sqlx::query("delete from backup_files where backup_id = any($1)")
        .bind(vec![pg_old, pg_new, ch_new])
        .execute(&app.pg)
        .await
        .unwrap();
    sqlx::query("delete from backups where id = any($1)")
        .bind(vec![pg_new, ch_new])
        .execute(&app.pg)
        .await
        .unwrap();
    // Caught running, then closed as interrupted by the next backup's start.
    sqlx::query(
        "update backups set status = 'failed', finished_at = null,
             error = 'interrupted: the process stopped before the manifest was written'
         where id = $1",
    )
    .bind(pg_old)
    .execute(&app.pg)
    .await
    .unwrap();
    std::fs::remove_dir_all(folder(&app, StoreKind::Clickhouse, ch_old)).unwrap();
    // And someone without the key edited the newest PostgreSQL manifest.
    let manifest = folder(&app, StoreKind::Postgres, pg_new).join("manifest.json");
    let signed = std::fs::read(&manifest).unwrap();
    let mut edited: Value = serde_json::from_slice(&signed).unwrap();
    edited["queued_for_clickhouse"] = serde_json::json!(0);
    edited["duration_ms"] = serde_json::json!(1);
    std::fs::write(&manifest, serde_json::to_vec(&edited).unwrap()).unwrap();

    // A refused manifest fails the run.
    let answer = crate::helpers::run_failing_job(&app, "backup-sync").await;
    let report = &answer;
    assert_eq!(ids(report, "added"), vec![ch_new], "{answer}");
    assert_eq!(ids(report, "completed"), vec![pg_old], "{answer}");
    assert_eq!(ids(report, "gone"), vec![ch_old], "{answer}");
    let refused = report["refused"].as_array().unwrap();
    assert_eq!(refused.len(), 1, "{answer}");
    assert!(
        refused[0].as_str().unwrap().starts_with(&format!(
            "postgres/{pg_new}: manifest.json: its signature does not match"
        )),
        "{refused:?}"
    );

    let test_app = &app;
    let files = |store, id| async move {
        let stored = app::backups::ssr::catalogue::load(&test_app.pg, id)
            .await
            .unwrap()
            .unwrap();
        let manifest = app::backups::ssr::verify::read_manifest(&test_app.state, &stored)
            .await
            .unwrap();
        assert_eq!(manifest.store, store);
        manifest.files.len() as i64
    };
    let (status_new, deleted, listed) = status(&app, ch_new).await.expect("added");
    assert_eq!((status_new.as_str(), deleted), ("completed", false));
    assert_eq!(listed, files(StoreKind::Clickhouse, ch_new).await);
    let (status_old, _, listed) = status(&app, pg_old).await.unwrap();
    assert_eq!(status_old, "completed");
    assert_eq!(listed, files(StoreKind::Postgres, pg_old).await);
    assert!(status(&app, ch_old).await.unwrap().1, "marked gone");
    assert_eq!(
        status(&app, pg_new).await,
        None,
        "the edited one is not added"
    );
    assert!(app::backups::ssr::sync::last_synced_ms(&app.state)
        .await
        .unwrap()
        .is_some());

    // A backup the sync added restores like any other.
    let target = restored_side(&app, ch_new).await;
    assert_eq!(ch_count(&app, &target, "requests").await, REQUESTS);
    drop_side(&app, &target).await;

    // The manifest as signed again: the terminal's sync adds it, and changes nothing else.
    std::fs::write(&manifest, &signed).unwrap();
    let output = salvage_on_repository(
        &app,
        &app.database_url,
        app.clickhouse.database(),
        &["backup", "sync"],
        true,
    );
    let printed = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        printed.contains("1 added, 0 completed, 0 gone"),
        "{printed}"
    );
    assert_eq!(status(&app, pg_new).await.unwrap().0, "completed");
    // New backups number after every one the repository holds.
    let next: i64 = sqlx::query_scalar("select nextval('backups_id_seq')")
        .fetch_one(&app.pg)
        .await
        .unwrap();
    assert!(next > pg_new.max(ch_new), "{next}");
}

/// `salvage <args>` on the given databases, with this app's repository (and
/// pgBackRest's, when the local stores archive through it).
pub(super) fn salvage_on_repository(
    app: &TestApp,
    database_url: &str,
    clickhouse_database: &str,
    args: &[&str],
    with_pgbackrest: bool,
) -> std::process::Output {
    let repository = folder(app, StoreKind::Postgres, 0);
    let repository = repository.parent().unwrap().parent().unwrap();
    let mut env = vec![
        ("DATABASE_URL", database_url.to_owned()),
        (
            "CLICKHOUSE_URL",
            crate::helpers::base_settings().clickhouse.url.to_string(),
        ),
        ("CLICKHOUSE_DATABASE", clickhouse_database.to_owned()),
        ("SALVAGE_BACKUP_DIR", repository.display().to_string()),
    ];
    for name in [
        "SALVAGE_PGBACKREST_CONFIG",
        "SALVAGE_PGBACKREST_STANZA",
        "SALVAGE_PGBACKREST_RUN_AS",
    ]
    .into_iter()
    .filter(|_| with_pgbackrest)
    {
        if let Ok(value) = std::env::var(name) {
            env.push((name, value));
        }
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    crate::cli::salvage_env(args, "", &env)
}

/// `salvage recover --list --json` with the given databases and this app's repository.
fn recover_list(
    app: &TestApp,
    database_url: &str,
    clickhouse_database: &str,
) -> (Option<i32>, Value) {
    let output = salvage_on_repository(
        app,
        database_url,
        clickhouse_database,
        &["recover", "--list", "--json"],
        true,
    );
    let printed = String::from_utf8_lossy(&output.stdout).into_owned();
    let listed = serde_json::from_str(&printed).unwrap_or_else(|_| {
        panic!(
            "JSON from recover --list: {printed}{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.code(), listed)
}

#[tokio::test]
async fn recover_list_reads_the_recovery_points_from_the_repository_alone_on_empty_stores() {
    let app = app_with_data().await;
    let (pg_first, ch_first) = back_up(&app).await;
    let (pg_second, ch_second) = back_up(&app).await;

    // A new, empty PostgreSQL database and a ClickHouse database that does not exist:
    // the machine after the loss, before anything is restored.
    let empty = format!("salvage_test_empty_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("create database {empty}"))
        .execute(&app.pg)
        .await
        .unwrap();
    let mut empty_url = url::Url::parse(&app.database_url).unwrap();
    empty_url.set_path(&empty);
    let (code, listed) = recover_list(&app, empty_url.as_str(), &format!("{empty}_ch"));
    assert_eq!(code, Some(0), "{listed}");
    let points = listed["points"].as_array().unwrap();
    let backups: Vec<i64> = points
        .iter()
        .filter_map(|p| p["backupId"].as_i64())
        .collect();
    let mut expected = vec![pg_first, ch_first, pg_second, ch_second];
    expected.sort_unstable();
    let mut found = backups.clone();
    found.sort_unstable();
    assert_eq!(found, expected, "every signed backup: {listed}");
    let at: Vec<i64> = points.iter().map(|p| p["atMs"].as_i64().unwrap()).collect();
    assert!(
        at.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {listed}"
    );
    let dump = points.iter().find(|p| p["backupId"] == pg_second).unwrap();
    assert_eq!(dump["kind"], "dump");
    assert!(
        dump["bringsBack"].as_str().unwrap().contains("tables"),
        "{dump}"
    );
    if std::env::var("SALVAGE_PGBACKREST_CONFIG").is_ok() {
        let window = points
            .iter()
            .find(|p| p["kind"] == "point-in-time")
            .unwrap_or_else(|| panic!("pgBackRest's window: {listed}"));
        assert!(window["oldestMs"].as_i64().unwrap() <= window["atMs"].as_i64().unwrap());
    }
    let tables: i64 = {
        let pool = sqlx::PgPool::connect(empty_url.as_str()).await.unwrap();
        let n = sqlx::query_scalar("select count(*) from pg_tables where schemaname = 'public'")
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        n
    };
    assert_eq!(tables, 0, "listing wrote nothing");

    // A manifest edited without the key is refused, named, and never offered.
    let manifest = folder(&app, StoreKind::Clickhouse, ch_second).join("manifest.json");
    let mut edited: Value = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    edited["duration_ms"] = serde_json::json!(1);
    std::fs::write(&manifest, serde_json::to_vec(&edited).unwrap()).unwrap();
    let (code, listed) = recover_list(&app, empty_url.as_str(), &format!("{empty}_ch"));
    assert_eq!(code, Some(1), "{listed}");
    let refused = listed["refused"].as_array().unwrap();
    assert_eq!(refused.len(), 1, "{listed}");
    assert!(
        refused[0]
            .as_str()
            .unwrap()
            .starts_with(&format!("clickhouse/{ch_second}: manifest.json")),
        "{listed}"
    );
    assert!(!listed["points"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["backupId"] == ch_second));
    sqlx::query(&format!("drop database {empty} with (force)"))
        .execute(&app.pg)
        .await
        .unwrap();
}
