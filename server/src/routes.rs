//! The plain HTTP routes beside the console: `/health/*`, `/ingest/*` and `/cron/*`.
//!
//! Health uses the same probes as the overview page. Responses are never cached.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
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
    let (health, fallback) = tokio::join!(check_stores(&state), fallback_health(&state));
    let body = json!({
        "status": if health.all_ok() { "ok" } else { "degraded" },
        "fallback": fallback,
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

/// `POST /ingest/requests` and `/ingest/events`, with their own body limit (8 MiB)
/// instead of the console's 256 KiB. No session layer: callers authenticate with an
/// ingest key.
pub fn ingest_routes() -> Router<AppState> {
    use app::queues::ssr::{ingest, rows::MAX_BODY_BYTES};
    Router::new()
        .route("/ingest/requests", post(ingest::requests_handler))
        .route("/ingest/events", post(ingest::events_handler))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            MAX_BODY_BYTES,
        ))
}

/// The cron routes: `GET` or `POST /cron/<job>` with `Authorization: Bearer <CRON_SECRET>`.
/// Each calls the same function as the console's button and the CLI.
pub fn cron_routes() -> Router<AppState> {
    Router::new()
        .route("/cron/replay-fallback", get(cron_replay).post(cron_replay))
        .route("/cron/expire-fallback", get(cron_expire).post(cron_expire))
}

/// The 401 to answer unless `headers` carry the cron secret; `None` lets the call in.
/// Compared in constant time (digests of equal length), and never logged.
fn cron_refusal(state: &AppState, headers: &HeaderMap) -> Option<Response> {
    use secrecy::ExposeSecret;
    use subtle::ConstantTimeEq;
    let refuse = |why: &str| {
        tracing::warn!(why, "cron call refused");
        (
            StatusCode::UNAUTHORIZED,
            [(header::CACHE_CONTROL, "no-store")],
            Json(json!({"kind": "unauthorized", "error": "Send `Authorization: Bearer <cron secret>` with the current cron secret."})),
        )
            .into_response()
    };
    let Some(secret) = &state.cron_secret else {
        return Some(refuse("CRON_SECRET is not set"));
    };
    let Some(given) = app::queues::ssr::ingest::bearer(headers) else {
        return Some(refuse("no bearer token"));
    };
    let expected = app::auth::ssr::token_digest(secret.expose_secret());
    let given = app::auth::ssr::token_digest(given);
    if bool::from(expected.ct_eq(&given)) {
        None
    } else {
        Some(refuse("wrong secret"))
    }
}

async fn cron_replay(State(state): State<AppState>, headers: HeaderMap) -> Response {
    use app::queues::ssr::replay::{replay, ReplayOptions, Trigger};
    if let Some(refused) = cron_refusal(&state, &headers) {
        return refused;
    }
    let actor = app::auth::ssr::Actor::system("replay-fallback");
    let options = ReplayOptions::from_state(&state);
    match replay(&state, Trigger::External, &actor, None, &options, |_| {}).await {
        Ok(report) => {
            let status = if report.status == "failed" {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::OK
            };
            no_store(
                status,
                json!({
                    "job": "replay-fallback",
                    "runId": report.run_id,
                    "status": report.status,
                    "rowsAtStart": report.rows_at_start,
                    "rowsDone": report.rows_done,
                    "rowsInserted": report.rows_inserted,
                    "rowsAlreadyPresent": report.rows_already_present,
                    "rowsLeft": report.rows_left,
                    "error": report.error,
                    "durationMs": report.elapsed.as_millis() as u64,
                }),
            )
        }
        Err(error) => error.into_response(),
    }
}

async fn cron_expire(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(refused) = cron_refusal(&state, &headers) {
        return refused;
    }
    let actor = app::auth::ssr::Actor::system("expire-fallback");
    let now = time::OffsetDateTime::now_utc();
    match app::queues::ssr::expiry::expire(&state.pg, &actor, "external", state.queues.ttl, now)
        .await
    {
        Ok(expired) => no_store(
            StatusCode::OK,
            json!({
                "job": "expire-fallback",
                "expired": expired.iter().map(|e| json!({
                    "queue": e.queue.as_str(),
                    "rows": e.rows,
                    "historyId": e.history_id,
                })).collect::<Vec<_>>(),
            }),
        ),
        Err(error) => error.into_response(),
    }
}

/// `fallback` of `/health/deep`: each queue's depth and the age of its oldest row in
/// seconds; `null` where PostgreSQL did not answer. Two counter reads and two index
/// probes, whatever the depth.
async fn fallback_health(state: &AppState) -> serde_json::Value {
    use app::queues::ssr::stats::{oldest_queued_at, queue_depths};
    use app::queues::Queue;
    let lookup = async {
        let depths = queue_depths(&state.pg).await?;
        let now = time::OffsetDateTime::now_utc();
        let mut out = serde_json::Map::new();
        for (queue, depth) in depths {
            let age = oldest_queued_at(&state.pg, queue)
                .await?
                .map(|at| (now - at).whole_seconds().max(0));
            let (depth_key, age_key) = match queue {
                Queue::Requests => ("queue", "queueOldestAgeSeconds"),
                Queue::Events => ("eventsQueue", "eventsQueueOldestAgeSeconds"),
            };
            out.insert(depth_key.into(), depth.into());
            out.insert(age_key.into(), json!(age));
        }
        Ok::<_, sqlx::Error>(serde_json::Value::Object(out))
    };
    match tokio::time::timeout(state.probe_timeout, lookup).await {
        Ok(Ok(value)) => value,
        Ok(Err(error)) => json!({"queue": null, "eventsQueue": null, "queueOldestAgeSeconds": null,
            "eventsQueueOldestAgeSeconds": null, "error": error.to_string()}),
        Err(_) => json!({"queue": null, "eventsQueue": null, "queueOldestAgeSeconds": null,
            "eventsQueueOldestAgeSeconds": null, "error": "PostgreSQL did not answer in time"}),
    }
}
