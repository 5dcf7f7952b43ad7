//! The console's pages and server functions, rendered by the real server.

use app::auth::Role;

use crate::helpers::{spawn_app, spawn_app_without_clickhouse};

#[tokio::test]
async fn the_root_redirects_to_the_console() {
    let app = spawn_app().await;

    let response = app.get("/").await;

    assert!(response.status().is_redirection(), "{}", response.status());
    assert_eq!(response.headers()["location"], "/admin");
}

#[tokio::test]
async fn the_overview_renders_both_stores_healthy() {
    let app = spawn_app().await;

    let (status, html) = app.signed_in(Role::Operator).await.get_html("/admin").await;

    assert_eq!(status, 200);
    assert!(html.contains("All stores healthy."), "{html}");
    assert!(html.contains("PostgreSQL"));
    assert!(html.contains("ClickHouse"));
    assert!(!html.contains(">Down<"), "{html}");
}

#[tokio::test]
async fn the_overview_says_clickhouse_down_when_it_is() {
    let app = spawn_app_without_clickhouse().await;

    let (_, html) = app.signed_in(Role::Operator).await.get_html("/admin").await;

    assert!(html.contains("ClickHouse down."), "{html}");
}

#[tokio::test]
async fn the_posture_server_function_returns_both_probes() {
    let app = spawn_app().await;

    let (status, body) = app.signed_in(Role::Operator).await.posture().await;

    assert_eq!(status, 200);
    assert_eq!(body["stores"]["health"]["postgres"]["ok"], true, "{body}");
    assert_eq!(body["stores"]["health"]["clickhouse"]["ok"], true, "{body}");
    assert_eq!(
        body["stores"]["health"]["version"],
        env!("CARGO_PKG_VERSION")
    );
    assert!(body["stores"]["postgres"]["version"]
        .as_str()
        .is_some_and(|v| v.starts_with(char::is_numeric)));
    assert!(body["stores"]["postgres"]["sizeBytes"]
        .as_i64()
        .is_some_and(|size| size > 0));
    assert!(
        body["stores"]["clickhouse"]["version"].as_str().is_some(),
        "{body}"
    );
}

#[tokio::test]
async fn the_snapshot_counts_the_rows_clickhouse_holds() {
    let app = spawn_app().await;
    app.clickhouse
        .client()
        .query(
            "INSERT INTO events (id, ts, ts_ms, trace_id, span_id, parent_span_id, event_type, \
             name, duration_ms, attributes) VALUES \
             ('5f0e4c1a-0000-4000-8000-000000000001', '2026-11-22 10:00:00', 0, 't-1', 's-1', NULL, 'span', 'x', 5, '{}'), \
             ('5f0e4c1a-0000-4000-8000-000000000002', '2026-11-22 10:00:01', 0, 't-1', 's-2', 's-1', 'span', 'y', 6, '{}')",
        )
        .execute()
        .await
        .unwrap();

    let (_, body) = app.signed_in(Role::Operator).await.posture().await;

    assert_eq!(body["stores"]["clickhouse"]["eventsRows"], 2, "{body}");
    assert_eq!(body["stores"]["clickhouse"]["requestsRows"], 0, "{body}");
}

#[tokio::test]
async fn the_snapshot_says_unknown_rather_than_zero_when_clickhouse_is_down() {
    let app = spawn_app_without_clickhouse().await;

    let (_, body) = app.signed_in(Role::Operator).await.posture().await;

    assert!(
        body["stores"]["clickhouse"]["eventsRows"].is_null(),
        "{body}"
    );
    assert!(
        body["stores"]["clickhouse"]["requestsRows"].is_null(),
        "{body}"
    );
    assert!(body["stores"]["clickhouse"]["version"].is_null(), "{body}");
    assert!(
        body["stores"]["postgres"]["sizeBytes"].as_i64().is_some(),
        "{body}"
    );
}

#[tokio::test]
async fn an_unknown_page_is_a_404_with_a_way_back() {
    let app = spawn_app().await;

    let (status, html) = app.get_html("/admin/no-such-page").await;

    assert_eq!(status, 404);
    assert!(html.contains("Go to the overview"), "{html}");
}

#[tokio::test]
async fn responses_carry_defensive_headers() {
    let app = spawn_app().await;

    // A page, and a refusal made by a layer outside the console's own (the body cap):
    // every response carries them, whoever made it.
    let page = app.get("/admin").await;
    let refused = app
        .client()
        .call_server_fn(
            "history/note",
            serde_json::json!({"body": "x".repeat(300 * 1024)}),
        )
        .await;
    assert_eq!(refused.status(), 413);

    for response in [&page, &refused] {
        let headers = response.headers();
        let status = response.status();
        let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(
            header("x-content-type-options").as_deref(),
            Some("nosniff"),
            "{status}"
        );
        assert_eq!(
            header("x-frame-options").as_deref(),
            Some("DENY"),
            "{status}"
        );
        assert_eq!(
            header("referrer-policy").as_deref(),
            Some("same-origin"),
            "{status}"
        );
        assert!(header("permissions-policy").is_some(), "{status}");
    }
}
