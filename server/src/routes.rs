//! The plain HTTP routes beside the console: `/health/ready` and `/health/deep`.
//!
//! Both use the same probes as the overview page. Responses are never cached.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use app::health::ssr::check_stores;
use app::server::AppState;

/// The health routes, ready to merge into the main router.
pub fn health_routes() -> Router<AppState> {
    Router::new()
        .route("/health/ready", get(ready))
        .route("/health/deep", get(deep))
}

/// `/` leads to the console.
pub fn root_redirect() -> Router<AppState> {
    Router::new().route(
        "/",
        get(|| async { axum::response::Redirect::to("/admin") }),
    )
}

/// 200 when PostgreSQL and ClickHouse both answer within the probe timeout, 503
/// otherwise; the body says which check failed and each latency.
async fn ready(State(state): State<AppState>) -> Response {
    let health = check_stores(&state).await;
    let status = if health.all_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if health.all_ok() { "ok" } else { "unavailable" },
        "failing": health.failing(),
        "checks": {
            "postgres": health.postgres,
            "clickhouse": health.clickhouse,
        },
        "checkedAt": health.checked_at,
    });
    no_store(status, body)
}

/// The detailed state, for people and dashboards. Always 200 while Salvage itself runs
/// (use `/health/ready` for up/down decisions); `status` is `ok` or `degraded`. A value
/// whose lookup failed is `null`, never a made-up zero.
async fn deep(State(state): State<AppState>) -> Response {
    let health = check_stores(&state).await;
    let body = json!({
        "status": if health.all_ok() { "ok" } else { "degraded" },
        "version": health.version,
        "checkedAt": health.checked_at,
        "postgres": health.postgres,
        "clickhouse": health.clickhouse,
    });
    no_store(StatusCode::OK, body)
}

fn no_store(status: StatusCode, body: serde_json::Value) -> Response {
    (status, [(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}
