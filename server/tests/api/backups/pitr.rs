//! Point-in-time recovery through pgBackRest, against the local stores' cluster, which
//! archives its WAL from its first minute (scripts/stores.sh). Real PostgreSQL, real
//! pgBackRest, real files: a side cluster is restored from the repository and counted.

use std::time::Duration;

use app::backups::ssr::pitr::job::{PitrBackupInput, PitrBackupReport, PitrKind, PITR_BACKUP};
use app::backups::ssr::pitr::side::{self, Target};
use app::backups::ssr::pitr::PgBackRest;
use app::jobs::RunStatus;

use crate::helpers::{free_port, spawn_app};

const ROWS: i64 = 500;

#[tokio::test]
async fn a_restore_to_just_before_a_delete_brings_every_deleted_row_back() {
    let app = spawn_app().await;
    let settings = app.state.backups().clone();
    let pitr = settings
        .pitr
        .clone()
        .expect("the local stores archive through pgBackRest (scripts/stores.sh start)");

    // A base backup first, as the job takes it (an incremental when a full exists).
    let options = app::jobs::ssr::RunOptions {
        input: serde_json::to_value(PitrBackupInput {
            kind: Some(PitrKind::Incr),
        })
        .unwrap(),
        ..Default::default()
    };
    let finished = app::jobs::ssr::run(&app.state, &PITR_BACKUP, super::cli(), options)
        .await
        .unwrap()
        .expect("no other pitr-backup run is working");
    let report = finished.report::<PitrBackupReport>().unwrap();
    assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
    assert!(report.backup.is_some(), "{report:?}");

    // Rows committed at t1, the moment t, then a destructive delete at t2.
    sqlx::query("create table pitr_probe (id bigint primary key)")
        .execute(&app.pg)
        .await
        .unwrap();
    sqlx::query("insert into pitr_probe select generate_series(1, $1)")
        .bind(ROWS)
        .execute(&app.pg)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let point: time::OffsetDateTime = sqlx::query_scalar("select clock_timestamp()")
        .fetch_one(&app.pg)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let deleted = sqlx::query("delete from pitr_probe")
        .execute(&app.pg)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(deleted as i64, ROWS);
    // pgBackRest's check switches to a new WAL segment and waits until it is archived,
    // so the delete is in the archive too.
    PgBackRest::new(&pitr).run(&["check"]).await.unwrap();

    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.stores/pitr-side");
    let data_dir = root.join(format!("test-{}", uuid::Uuid::new_v4().simple()));
    let port = free_port().await;
    let url = url::Url::parse(&app.database_url).unwrap();
    let restored = side::start(
        &settings,
        &pitr,
        &data_dir,
        port,
        Target::Time(point),
        &url,
        Duration::from_secs(600),
    )
    .await;
    let counted = match &restored {
        Ok(_) => {
            let mut side_url = url.clone();
            side_url.set_port(Some(port)).unwrap();
            let side = sqlx::PgPool::connect(side_url.as_str()).await.unwrap();
            let n: i64 = sqlx::query_scalar("select count(*) from pitr_probe")
                .fetch_one(&side)
                .await
                .unwrap();
            side.close().await;
            Some(n)
        }
        Err(_) => None,
    };
    side::stop(&settings, &pitr, &data_dir).await.unwrap();
    let restored = restored.unwrap();
    assert_eq!(
        counted,
        Some(ROWS),
        "every row deleted after the point is back"
    );
    let reached = restored
        .reached
        .expect("the side cluster says what it replayed");
    assert!(reached <= point, "{reached} is not after the point {point}");
    assert!(!data_dir.exists(), "the side cluster's directory is gone");
}
