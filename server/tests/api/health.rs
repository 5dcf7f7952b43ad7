//! `/health/ready` and `/health/deep`.

use std::time::Duration;

use crate::helpers::{
    closed_port, eventually, local_clickhouse_addr, spawn_app, spawn_app_with,
    spawn_app_without_clickhouse, FaultyLink, Options,
};

#[tokio::test]
async fn ready_is_200_when_postgres_and_clickhouse_both_answer() {
    let app = spawn_app().await;

    let (status, body) = app.get_json("/health/ready").await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok");
    assert_eq!(body["failing"], serde_json::json!([]));
    for store in ["postgres", "clickhouse"] {
        assert_eq!(body["checks"][store]["ok"], true, "{store}: {body}");
        assert!(
            body["checks"][store]["latencyMs"].as_f64().is_some(),
            "{store}: {body}"
        );
        assert!(body["checks"][store]["error"].is_null(), "{store}: {body}");
    }
}

#[tokio::test]
async fn ready_is_503_naming_clickhouse_when_clickhouse_is_unreachable() {
    let app = spawn_app_without_clickhouse().await;

    let (status, body) = app.get_json("/health/ready").await;

    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["failing"], serde_json::json!(["clickhouse"]));
    assert_eq!(body["checks"]["postgres"]["ok"], true, "{body}");
    assert!(body["checks"]["postgres"]["latencyMs"].as_f64().is_some());
    assert_eq!(body["checks"]["clickhouse"]["ok"], false);
    assert!(
        body["checks"]["clickhouse"]["latencyMs"].is_null(),
        "no made-up latency: {body}"
    );
    assert!(
        body["checks"]["clickhouse"].get("error").is_none(),
        "no driver message for an anonymous caller: {body}"
    );
    let operator = app.signed_in(app::auth::Role::Operator).await;
    let (_, body) = operator.get_json("/health/ready").await;
    assert!(body["checks"]["clickhouse"]["error"]
        .as_str()
        .is_some_and(|e| !e.is_empty()));
}

#[tokio::test]
async fn ready_is_503_naming_postgres_when_postgres_is_unreachable() {
    let port = closed_port().await;
    let app = spawn_app_with(Options {
        database_url: Some(format!("postgres://postgres@127.0.0.1:{port}/salvage")),
        ..Options::default()
    })
    .await;

    let (status, body) = app.get_json("/health/ready").await;

    assert_eq!(status, 503, "{body}");
    assert_eq!(body["failing"], serde_json::json!(["postgres"]));
    assert_eq!(body["checks"]["postgres"]["ok"], false);
    assert!(body["checks"]["postgres"]["latencyMs"].is_null());
    assert_eq!(body["checks"]["clickhouse"]["ok"], true, "{body}");
}

#[tokio::test]
async fn deep_reports_status_version_and_each_store() {
    let app = spawn_app().await;

    let (status, body) = app.get_json("/health/deep").await;

    assert_eq!(status, 200);
    assert_eq!(body["status"], "ok");
    assert!(body.get("version").is_none(), "anonymous: {body}");
    let (_, body) = app
        .signed_in(app::auth::Role::Manager)
        .await
        .get_json("/health/deep")
        .await;
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    for store in ["postgres", "clickhouse"] {
        assert_eq!(body[store]["ok"], true, "{store}: {body}");
        assert!(
            body[store]["latencyMs"].as_f64().is_some(),
            "{store}: {body}"
        );
    }
}

#[tokio::test]
async fn deep_says_degraded_and_nulls_the_latency_of_an_unreachable_clickhouse() {
    let app = spawn_app_without_clickhouse().await;

    let (status, body) = app.get_json("/health/deep").await;

    assert_eq!(status, 200);
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["postgres"]["ok"], true);
    assert_eq!(body["clickhouse"]["ok"], false);
    assert!(body["clickhouse"]["latencyMs"].is_null(), "{body}");
}

#[tokio::test]
async fn health_follows_clickhouse_down_and_back_up_without_a_restart() {
    let link = FaultyLink::to(local_clickhouse_addr()).await;
    let app = spawn_app_with(Options {
        clickhouse_url: Some(format!("http://{}", link.addr)),
        ..Options::default()
    })
    .await;
    let status = || async { app.get("/health/ready").await.status().as_u16() };
    assert_eq!(status().await, 200);

    link.cut();
    assert!(
        eventually(Duration::from_secs(10), || async { status().await == 503 }).await,
        "ready should turn 503 once ClickHouse is gone"
    );
    let (_, body) = app.get_json("/health/ready").await;
    assert_eq!(body["failing"], serde_json::json!(["clickhouse"]));

    link.restore();
    assert!(
        eventually(Duration::from_secs(10), || async { status().await == 200 }).await,
        "ready should return to 200 once ClickHouse is back"
    );
}

#[tokio::test]
async fn health_responses_are_never_cached() {
    let app = spawn_app().await;

    for path in ["/health/ready", "/health/deep"] {
        let response = app.get(path).await;
        assert_eq!(
            response
                .headers()
                .get("cache-control")
                .and_then(|v| v.to_str().ok()),
            Some("no-store"),
            "{path}"
        );
    }
}
