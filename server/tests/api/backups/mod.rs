//! Backups and restores against the real stores and real files: round trips in place
//! and into side databases, corrupted and truncated files, a backup killed mid-way,
//! ingest during a ClickHouse restore, rollback and retention.

mod bucket;
mod faults;
pub(crate) mod pitr;
mod pitr_faults;
mod recover;
mod round_trip;
mod schedule;
mod sync;
mod tampering;

use app::backups::ssr::restore::{RestoreReport, RestoreRequest};
use app::backups::StoreKind;
use serde_json::Value;

use crate::helpers::{run_job, spawn_app, TestApp};

/// ClickHouse rows the tests start with: requests over two months (two partitions),
/// events in one.
pub const REQUESTS: u64 = 600;
pub const EVENTS: u64 = 240;

/// A test app whose stores hold application data: the demo's organisations, projects
/// and keys in PostgreSQL; `requests` and `events` in ClickHouse.
pub async fn app_with_data() -> TestApp {
    with_data(spawn_app().await).await
}

/// `app` with the data of [`app_with_data`] added.
pub async fn with_data(app: TestApp) -> TestApp {
    salvage::cli::demo_backups::application_data(&app.state, 12)
        .await
        .expect("create the application tables");
    let client = app.clickhouse.client();
    client
        .query(&format!(
            "INSERT INTO requests (id, ts, ts_ms, organization_id, project, provider, model, status,
                 latency_ms, prompt_tokens, completion_tokens, cost_usd, error)
             SELECT generateUUIDv4(), toDateTime('2026-10-20 00:00:00', 'UTC') + number * 7200,
                 number % 1000, concat('org_', toString(number % 5)), 'chat', 'openai', 'gpt-4o',
                 200, number % 900, 10, 20, number / 1000.0,
                 if(number % 10 = 0, 'timeout', NULL)
             FROM numbers({REQUESTS})"
        ))
        .execute()
        .await
        .expect("insert requests");
    client
        .query(&format!(
            "INSERT INTO events (id, ts, ts_ms, trace_id, span_id, parent_span_id, event_type, name,
                 duration_ms, attributes, organization_id)
             SELECT generateUUIDv4(), toDateTime('2026-11-20 00:00:00', 'UTC') + number * 60, 0,
                 concat('t', toString(number % 40)), concat('s', toString(number)),
                 if(number % 3 = 0, NULL, 'p'), 'span', 'step', number % 50, '{{}}', 'org_1'
             FROM numbers({EVENTS})"
        ))
        .execute()
        .await
        .expect("insert events");
    app
}

/// Runs the `backup` job through `/cron/backup`; returns (PostgreSQL id, ClickHouse id).
pub async fn back_up(app: &TestApp) -> (i64, i64) {
    let answer = run_job(app, "backup").await;
    assert_eq!(answer["outcome"], "succeeded", "{answer}");
    let id = |store: &str| {
        answer["backups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["store"] == store)
            .and_then(|b| b["backupId"].as_i64())
            .unwrap_or_else(|| panic!("a {store} backup in {answer}"))
    };
    (id("postgres"), id("clickhouse"))
}

/// Flips a byte in the middle of one file of backup `id` (its `events` table, so a
/// ClickHouse backup); returns the file's path in the backup.
pub async fn damage_events_file(app: &TestApp, id: i64) -> String {
    use std::io::{Read, Seek, SeekFrom, Write};
    let (location, path): (String, String) = sqlx::query_as(
        "select b.location, f.path from backups b join backup_files f on f.backup_id = b.id
          where b.id = $1 and f.table_name = 'events' order by f.path limit 1",
    )
    .bind(id)
    .fetch_one(&app.pg)
    .await
    .unwrap();
    let app::backups::ssr::Storage::Directory(dir) = &app.state.backups().storage else {
        panic!("a directory target")
    };
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.join(format!("{location}/{path}")))
        .unwrap();
    let middle = file.metadata().unwrap().len() / 2;
    let mut byte = [0u8; 1];
    file.seek(SeekFrom::Start(middle)).unwrap();
    file.read_exact(&mut byte).unwrap();
    file.seek(SeekFrom::Start(middle)).unwrap();
    file.write_all(&[byte[0] ^ 0x40]).unwrap();
    path
}

/// Restores as the CLI does: a run of the restore job, waited for.
pub async fn restore(
    app: &TestApp,
    request: RestoreRequest,
) -> Result<RestoreReport, app::error::AppError> {
    app::backups::ssr::restore::restore(&app.state, &request, cli(), None).await
}

/// A run started from the terminal.
pub fn cli() -> app::jobs::ssr::Firing {
    app::jobs::ssr::Firing::by_hand(
        app::jobs::Trigger::Cli,
        app::auth::ssr::Actor::cli(),
        Some(crate::helpers::reason("test")),
        app::jobs::ssr::Caller::default(),
    )
}

/// An in-place restore of `backup` (every application table), confirmed.
pub fn in_place(app: &TestApp, backup: i64, store: StoreKind) -> RestoreRequest {
    let live = match store {
        StoreKind::Postgres => app.database_url.rsplit('/').next().unwrap().to_owned(),
        StoreKind::Clickhouse => app.clickhouse.database().to_owned(),
    };
    RestoreRequest {
        backup_id: backup,
        in_place: true,
        confirm: Some(live),
        reason: Some(crate::helpers::reason("test")),
        ..Default::default()
    }
}

/// Restores `backup` into a new side database and checks the restore verified; returns
/// the database's name (drop it with [`drop_side`]).
pub async fn restored_side(app: &TestApp, backup: i64) -> String {
    let target = side_name();
    let report = restore(app, side(backup, &target)).await.unwrap();
    assert_eq!(
        report.status,
        app::backups::RestoreStatus::Verified,
        "{report:?}"
    );
    target
}

/// A side restore of `backup` into a database named for this test.
pub fn side(backup: i64, target: &str) -> RestoreRequest {
    RestoreRequest {
        backup_id: backup,
        target: Some(target.to_owned()),
        reason: Some(crate::helpers::reason("test")),
        ..Default::default()
    }
}

/// A unique side database name (dropped by [`drop_side`]).
pub fn side_name() -> String {
    format!("salvage_test_side_{}", uuid::Uuid::new_v4().simple())
}

/// Drops a side database in both stores (whichever exists).
pub async fn drop_side(app: &TestApp, name: &str) {
    let _ = sqlx::query(&format!("drop database if exists \"{name}\" with (force)"))
        .execute(&app.pg)
        .await;
    let _ = app
        .clickhouse
        .client()
        .query(&format!("DROP DATABASE IF EXISTS `{name}`"))
        .execute()
        .await;
}

/// Whether a database named `name` exists in either store.
pub async fn side_exists(app: &TestApp, name: &str) -> bool {
    let in_postgres: bool =
        sqlx::query_scalar("select exists (select 1 from pg_database where datname = $1)")
            .bind(name)
            .fetch_one(&app.pg)
            .await
            .unwrap();
    let in_clickhouse: u64 = app
        .clickhouse
        .client()
        .query("SELECT count() FROM system.databases WHERE name = ?")
        .bind(name)
        .fetch_one()
        .await
        .unwrap();
    in_postgres || in_clickhouse > 0
}

/// Every row of an application table in PostgreSQL, as JSON, by id.
pub async fn pg_rows(pool: &sqlx::PgPool, table: &str) -> Vec<Value> {
    sqlx::query_scalar(&format!("select to_jsonb(t) from {table} t order by id"))
        .fetch_all(pool)
        .await
        .unwrap_or_default()
}

/// Every row of a ClickHouse table in `database`, as JSON lines sorted by id.
pub async fn ch_rows(app: &TestApp, database: &str, table: &str) -> Vec<String> {
    let bytes = app
        .clickhouse
        .client()
        .query(&format!(
            "SELECT * FROM `{database}`.`{table}` ORDER BY toString(id), ts"
        ))
        .fetch_bytes("JSONEachRow")
        .unwrap()
        .collect()
        .await
        .unwrap();
    String::from_utf8(bytes.to_vec())
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// `count()` of a ClickHouse table.
pub async fn ch_count(app: &TestApp, database: &str, table: &str) -> u64 {
    app.clickhouse
        .client()
        .query(&format!("SELECT count() FROM `{database}`.`{table}`"))
        .fetch_one()
        .await
        .unwrap()
}
