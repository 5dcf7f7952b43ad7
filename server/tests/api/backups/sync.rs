//! The catalogue is a cache of the repository: after the database that held it was
//! restored from an older dump, `backup-sync` adds the backups taken since, completes
//! those the dump caught running, marks as gone those whose files were deleted, and
//! never adds one whose manifest does not verify. Through `/cron/backup-sync` and the
//! CLI, on real files.

use app::backups::StoreKind;
use serde_json::Value;

use super::*;

fn folder(app: &TestApp, store: StoreKind, id: i64) -> std::path::PathBuf {
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
    let app = app_with_data().await;
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
    sqlx::query("update backups set status = 'running', finished_at = null where id = $1")
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
    let dir = folder(&app, StoreKind::Postgres, 0);
    let dir = dir
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .display()
        .to_string();
    let clickhouse_url = crate::helpers::base_settings().clickhouse.url.to_string();
    let output = crate::cli::salvage_env(
        &["backup", "sync"],
        "",
        &[
            ("DATABASE_URL", app.database_url.as_str()),
            ("CLICKHOUSE_URL", clickhouse_url.as_str()),
            ("CLICKHOUSE_DATABASE", app.clickhouse.database()),
            ("SALVAGE_BACKUP_DIR", dir.as_str()),
        ],
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
