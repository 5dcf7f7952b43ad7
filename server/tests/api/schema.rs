//! The schema: ClickHouse tables created idempotently, as `salvage migrate` does.

use clickhouse::Row;
use serde::Deserialize;

use crate::helpers::spawn_app;

#[derive(Debug, Row, Deserialize)]
struct Column {
    table: String,
    name: String,
    r#type: String,
}

#[tokio::test]
async fn the_clickhouse_schema_can_be_applied_twice() {
    let app = spawn_app().await; // already migrated once

    app.clickhouse
        .migrate()
        .await
        .expect("a second run is harmless");
    salvage::startup::migrate(&app.state)
        .await
        .expect("and a third, through the same path as `salvage migrate`");

    let columns: Vec<Column> = app
        .clickhouse
        .client()
        .query(
            "SELECT table, name, type FROM system.columns WHERE database = ? ORDER BY table, name",
        )
        .bind(app.clickhouse.database())
        .fetch_all()
        .await
        .unwrap();
    let has = |table: &str, name: &str, ty: &str| {
        columns
            .iter()
            .any(|c| c.table == table && c.name == name && c.r#type == ty)
    };
    assert!(has("requests", "id", "UUID"), "{columns:?}");
    assert!(has("requests", "ts", "DateTime('UTC')"), "{columns:?}");
    assert!(has("requests", "error", "Nullable(String)"), "{columns:?}");
    assert!(has("events", "id", "UUID"), "{columns:?}");
    assert!(has("events", "attributes", "String"), "{columns:?}");
}

#[tokio::test]
async fn a_reinserted_id_collapses_to_one_row() {
    let app = spawn_app().await;
    let insert = "INSERT INTO requests (id, ts, ts_ms, organization_id, project, provider, model, \
        status, latency_ms, prompt_tokens, completion_tokens, cost_usd, error) VALUES \
        ('0b6c8b4e-8d1f-4e39-9a4c-1f2d3e4f5a6b', '2026-11-22 10:00:00', 123, 'org_1', 'chat', \
        'openai', 'gpt-4o-mini', 200, 812, 412, 96, 0.00031, NULL)";

    for _ in 0..2 {
        app.clickhouse
            .client()
            .query(insert)
            .execute()
            .await
            .unwrap();
    }

    let rows: u64 = app
        .clickhouse
        .client()
        .query("SELECT count() FROM requests FINAL")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(rows, 1);
}

/// Backups tell Salvage's own tables (never rolled back in place) from the application's
/// by a list; a table a migration adds must be on it.
#[tokio::test]
async fn the_list_of_salvages_own_tables_is_what_the_migrations_create() {
    let app = spawn_app().await;
    let mut tables: Vec<String> = sqlx::query_scalar(
        "select tablename::text from pg_tables where schemaname = 'public' order by 1",
    )
    .fetch_all(&app.pg)
    .await
    .unwrap();
    tables.sort();
    let mut own: Vec<String> = app::backups::ssr::postgres::OWN_TABLES
        .iter()
        .map(|t| t.to_string())
        .collect();
    own.sort();
    assert_eq!(tables, own);
    // The application role is granted its reads on Salvage's views by name too.
    let views: Vec<String> = sqlx::query_scalar(
        "select viewname::text from pg_views where schemaname = 'public' order by 1",
    )
    .fetch_all(&app.pg)
    .await
    .unwrap();
    assert_eq!(views, app::server::postgres::OWN_VIEWS);
}

/// Salvage with its ClickHouse tables renamed by `CLICKHOUSE_REQUESTS_TABLE` and
/// `CLICKHOUSE_EVENTS_TABLE`.
fn renamed_tables(settings: &mut salvage::config::Settings) {
    settings.clickhouse.layout.requests = "llm_requests".into();
    settings.clickhouse.layout.events = "llm_events".into();
}

#[tokio::test]
async fn renamed_tables_are_created_written_replayed_and_backed_up_under_their_names() {
    let app = crate::helpers::spawn_app_tweaked(renamed_tables).await;
    let tables: Vec<String> = app
        .clickhouse
        .client()
        .query("SELECT name FROM system.tables WHERE database = ? ORDER BY name")
        .bind(app.clickhouse.database())
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(tables, ["history_anchors", "llm_events", "llm_requests"]);

    let key = crate::queues::ingest_key(&app).await;
    let (status, answer) =
        crate::queues::post_rows(&app, &key, &crate::queues::request_rows(0, 30)).await;
    assert_eq!(
        (status, answer["stored"].as_str()),
        (200, Some("clickhouse")),
        "{answer}"
    );
    let count = |table: &'static str| {
        let client = app.clickhouse.client().clone();
        async move {
            client
                .query(&format!("SELECT count() FROM {table}"))
                .fetch_one::<u64>()
                .await
                .unwrap()
        }
    };
    assert_eq!(count("llm_requests").await, 30);

    // `salvage check`'s round trip: ingest with ClickHouse cut, replay into a scratch
    // database laid out the same way.
    let report = app::migrations::ssr::check::run(&app.state).await;
    assert!(report.ok(), "{:?}", report.failed());

    // The backup knows them as the application's tables: an in-place restore (which
    // touches only those) restores exactly them, under their names.
    let (_, ch_backup) = crate::backups::back_up(&app).await;
    let report = crate::backups::restore(
        &app,
        crate::backups::in_place(&app, ch_backup, app::backups::StoreKind::Clickhouse),
    )
    .await
    .unwrap();
    assert_eq!(
        report.status,
        app::backups::RestoreStatus::Verified,
        "{report:?}"
    );
    let mut restored: Vec<&str> = report.tables.iter().map(|t| t.name.as_str()).collect();
    restored.sort();
    assert_eq!(restored, ["llm_events", "llm_requests"]);
    assert_eq!(count("llm_requests").await, 30);
}
