//! `salvage recover` from the repository alone onto a new, empty database and a
//! ClickHouse database that does not exist yet, through a logical dump (the path taken
//! without pgBackRest); and every refusal, each with exit 2 and nothing written. The
//! loss of whole servers, through pgBackRest and with a resumed run, is
//! `scripts/test-recover.sh`.

use app::backups::StoreKind;
use serde_json::Value;

use super::sync::{folder, salvage_on_repository};
use super::*;

/// A new empty PostgreSQL database (its URL) and a ClickHouse database name nothing
/// created yet: the machine after the loss.
async fn empty_stores(app: &TestApp) -> (String, String, String) {
    let name = format!("salvage_test_lost_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("create database {name}"))
        .execute(&app.pg)
        .await
        .unwrap();
    let mut url = url::Url::parse(&app.database_url).unwrap();
    url.set_path(&name);
    (name.clone(), url.to_string(), format!("{name}_ch"))
}

async fn drop_stores(app: &TestApp, name: &str, clickhouse: &str) {
    let _ = app
        .clickhouse
        .client()
        .query(&format!("DROP DATABASE IF EXISTS `{clickhouse}`"))
        .execute()
        .await;
    sqlx::query(&format!("drop database {name} with (force)"))
        .execute(&app.pg)
        .await
        .unwrap();
}

/// `salvage recover <args>` on the given stores, without pgBackRest: (exit code,
/// stdout, stderr).
fn recover(
    app: &TestApp,
    url: &str,
    clickhouse: &str,
    args: &[&str],
) -> (Option<i32>, String, String) {
    let mut all = vec!["recover"];
    all.extend_from_slice(args);
    let output = salvage_on_repository(app, url, clickhouse, &all, false);
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

async fn count(url: &str, sql: &str) -> i64 {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let n = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
    pool.close().await;
    n
}

async fn tables_in(url: &str) -> i64 {
    count(
        url,
        "select count(*) from pg_tables where schemaname not in ('pg_catalog', 'information_schema')",
    )
    .await
}

#[tokio::test]
async fn a_recovery_from_a_dump_brings_every_table_back_onto_an_empty_database() {
    let app = app_with_data().await;
    let (pg_backup, ch_backup) = back_up(&app).await;
    let users = app.count("users").await;
    let organizations = app.count("organizations").await;
    let (name, url, clickhouse) = empty_stores(&app).await;

    let (code, out, err) = recover(
        &app,
        &url,
        &clickhouse,
        &[
            "--latest",
            "--reason",
            "test: the database server was lost",
            "--json",
        ],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|_| panic!("{out}{err}"));
    assert_eq!(
        report["postgresSource"],
        format!("dump {pg_backup}"),
        "{report}"
    );
    assert_eq!(report["clickhouseBackup"], ch_backup, "{report}");
    let steps: Vec<&str> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "postgres",
            "migrations",
            "sync",
            "clickhouse",
            "replay",
            "history",
            "checks"
        ]
    );
    let tables = report["tables"].as_array().unwrap();
    for table in tables {
        assert_eq!(table["rows"], table["expected"], "{table}");
    }
    let ch_rows: i64 = tables
        .iter()
        .filter(|t| t["store"] == "clickhouse" && t["name"] == "requests")
        .map(|t| t["rows"].as_i64().unwrap())
        .sum();
    assert_eq!(ch_rows, REQUESTS as i64, "{report}");
    assert!(err.contains("1/7 PostgreSQL to the point"), "{err}");

    // Independently of the report: the rows are in the new stores.
    assert_eq!(count(&url, "select count(*) from users").await, users);
    assert_eq!(
        count(&url, "select count(*) from organizations").await,
        organizations
    );
    assert_eq!(count(&url, "select count(*) from sessions").await, 0);
    let in_clickhouse: u64 = app
        .clickhouse
        .client()
        .query(&format!("SELECT count() FROM `{clickhouse}`.requests"))
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(in_clickhouse, REQUESTS);
    // The progress is gone; the history records the recovery, its chain intact.
    assert_eq!(
        count(
            &url,
            "select count(*) from pg_namespace where nspname = 'salvage_recovery'"
        )
        .await,
        0
    );
    let entry = report["historyId"].as_i64().unwrap();
    assert_eq!(
        count(
            &url,
            &format!(
                "select count(*) from runbook_history where id = {entry} and kind = 'recovery'"
            )
        )
        .await,
        1
    );
    let (code, out, err) = {
        let output = salvage_on_repository(&app, &url, &clickhouse, &["history", "verify"], false);
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    assert_eq!(code, Some(0), "{out}{err}");

    // Run again: the database holds tables now, so it is refused without --confirm.
    let (code, _, err) = recover(&app, &url, &clickhouse, &["--latest", "--reason", "again"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains(&format!("the database {name} holds")), "{err}");
    drop_stores(&app, &name, &clickhouse).await;
}

#[tokio::test]
async fn every_refusal_exits_2_and_writes_nothing() {
    let app = app_with_data().await;
    let (_, ch_backup) = back_up(&app).await;
    let (name, url, clickhouse) = empty_stores(&app).await;
    let refused = |args: &[&str], says: &str| {
        let (code, out, err) = recover(&app, &url, &clickhouse, args);
        assert_eq!(code, Some(2), "{args:?}: {out}{err}");
        assert!(err.contains(says), "{args:?} should say `{says}`: {err}");
    };

    refused(&["--latest"], "--reason is required");
    refused(&["--to", "yesterday", "--reason", "x"], "--to");
    refused(
        &["--to", "2026-01-01T00:00:00Z", "--latest", "--reason", "x"],
        "cannot be used with",
    );
    refused(
        &[
            "--to",
            "2001-01-01T00:00:00Z",
            "--reason",
            "test: before any backup",
        ],
        "no recovery point of PostgreSQL at or before 2001-01-01",
    );
    refused(
        &[
            "--to",
            "2999-01-01T00:00:00Z",
            "--reason",
            "test: the future",
        ],
        "is in the future",
    );
    // A manifest edited without the key: refused, named, before anything is restored.
    let manifest = folder(&app, StoreKind::Clickhouse, ch_backup).join("manifest.json");
    let original = std::fs::read(&manifest).unwrap();
    let mut edited: Value = serde_json::from_slice(&original).unwrap();
    edited["tables"][0]["rows"] = serde_json::json!(1);
    std::fs::write(&manifest, serde_json::to_vec(&edited).unwrap()).unwrap();
    refused(
        &["--latest", "--reason", "test: a tampered repository"],
        &format!("clickhouse/{ch_backup}: manifest.json"),
    );
    std::fs::write(&manifest, original).unwrap();
    assert_eq!(tables_in(&url).await, 0, "a refusal wrote nothing");
    assert_eq!(
        count(
            &url,
            "select count(*) from pg_namespace where nspname = 'salvage_recovery'"
        )
        .await,
        0
    );

    // The live database holds tables: refused unless named.
    let live_name = app.state.backups().database_url.clone();
    let live = app::backups::ssr::postgres::database_name(&live_name);
    let before = tables_in(&app.database_url).await;
    let (code, _, err) = recover(
        &app,
        &app.database_url,
        &clickhouse,
        &["--latest", "--reason", "x"],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains(&format!("--confirm {live}")), "{err}");
    assert_eq!(tables_in(&app.database_url).await, before);
    drop_stores(&app, &name, &clickhouse).await;
}
