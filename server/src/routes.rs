//! The plain HTTP routes beside the console: `/health/*`, `/ingest/*` and `/cron/*`.
//!
//! Health uses the same probes as the overview page. Responses are never cached.

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use app::format::iso;
use std::sync::Arc;

use app::health::ssr::{check_stores, redact_for_anonymous, HEALTH_MAX_AGE};
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
/// otherwise; the body says which check failed and each latency. Computed at most once
/// per [`HEALTH_MAX_AGE`] by one caller; anonymous callers get no error messages.
async fn ready(
    State(state): State<AppState>,
    session: tower_sessions::Session,
    headers: axum::http::HeaderMap,
) -> Response {
    let body = state
        .health_cache()
        .ready
        .get_or_compute(HEALTH_MAX_AGE, || async {
            let health = check_stores(&state).await;
            Arc::new(json!({
                "status": if health.all_ok() { "ok" } else { "unavailable" },
                "failing": health.failing(),
                "checks": {
                    "postgres": health.postgres,
                    "clickhouse": health.clickhouse,
                },
                "checkedAt": health.checked_at,
            }))
        })
        .await;
    let status = if body["status"] == "ok" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    no_store(status, for_caller(&state, &session, &headers, &body).await)
}

/// The detailed state, for people and dashboards. Always 200 while Salvage itself runs
/// (use `/health/ready` for up/down decisions); `status` is `ok` or `degraded`. A value
/// whose lookup failed is `null`, never a made-up zero. Computed at most once per
/// [`HEALTH_MAX_AGE`] by one caller at a time (about ten queries), whoever asks.
async fn deep(
    State(state): State<AppState>,
    session: tower_sessions::Session,
    headers: axum::http::HeaderMap,
) -> Response {
    let body = state
        .health_cache()
        .deep
        .get_or_compute(HEALTH_MAX_AGE, || async {
            let (health, fallback, crons, alerts, webhooks, (schema, migrations)) = tokio::join!(
                check_stores(&state),
                fallback_health(&state),
                crons_health(&state),
                alerts_health(&state),
                webhooks_health(&state),
                migrations_health(&state)
            );
            let schema_ok = schema["ok"].as_bool().unwrap_or(true);
            Arc::new(json!({
                "status": if health.all_ok() && schema_ok { "ok" } else { "degraded" },
                "schema": schema,
                "backgroundMigrations": migrations,
                "fallback": fallback,
                "crons": crons,
                "alerts": alerts,
                "webhooks": webhooks,
                "version": health.version,
                "checkedAt": health.checked_at,
                "postgres": health.postgres,
                "clickhouse": health.clickhouse,
            }))
        })
        .await;
    no_store(
        StatusCode::OK,
        for_caller(&state, &session, &headers, &body).await,
    )
}

/// The full answer for a signed-in person or a holder of `SALVAGE_HEALTH_TOKEN`; for
/// anyone else the same figures without driver messages and the version.
async fn for_caller(
    state: &AppState,
    session: &tower_sessions::Session,
    headers: &axum::http::HeaderMap,
    body: &serde_json::Value,
) -> serde_json::Value {
    let token_holder = state
        .health_token
        .as_ref()
        .is_some_and(|expected| app::server::tokens::bearer_matches(headers, expected));
    if token_holder || app::auth::ssr::authenticate(state, session).await.is_ok() {
        body.clone()
    } else {
        redact_for_anonymous(body)
    }
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
        .merge(webhook_event_routes())
        .merge(schema_event_routes())
}

/// `POST /ingest/schema-events`, with its own small body limit.
fn schema_event_routes() -> Router<AppState> {
    use app::drills::ssr::schema_events::{handler, MAX_BODY_BYTES};
    Router::new()
        .route("/ingest/schema-events", post(handler))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            MAX_BODY_BYTES,
        ))
}

/// `POST /ingest/webhook-events`, with its own body limit (a 256 KiB payload and its
/// envelope).
fn webhook_event_routes() -> Router<AppState> {
    use app::dead_letters::ssr::ingest::{handler, MAX_BODY_BYTES};
    Router::new()
        .route("/ingest/webhook-events", post(handler))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            MAX_BODY_BYTES,
        ))
}

/// The cron routes: `GET` or `POST /cron/<job>` with `Authorization: Bearer <cron secret>`,
/// one per job of the registry. Each records its run and calls the same function as
/// the scheduler, the console's Run now and `salvage cron run`.
pub fn cron_routes() -> Router<AppState> {
    Router::new().route("/cron/{job}", get(cron_job).post(cron_job))
}

fn unauthorized(message: String) -> Response {
    no_store(
        StatusCode::UNAUTHORIZED,
        json!({"kind": "unauthorized", "error": message}),
    )
}

/// Authenticates the call (constant-time, against every working secret; the token is
/// never logged), runs the job and answers with its outcome: 200, or 503 when the run
/// failed so that a monitor calling it alerts.
async fn cron_job(
    State(state): State<AppState>,
    Path(name): Path<String>,
    parts: axum::http::request::Parts,
) -> Response {
    use app::crons::ssr::secrets;
    use app::jobs::ssr as jobs;
    let mut caller = jobs::Caller::from_request(&state.trusted_proxies, &parts);
    let malformed = parts.headers.contains_key(header::AUTHORIZATION)
        && app::server::tokens::bearer(&parts.headers).is_none();
    let token = app::server::tokens::bearer(&parts.headers);
    match secrets::verify(&state.pg, token, state.clock.now(), &caller).await {
        Err(error) => {
            return app::error::AppError::internal("A cron call could not be checked", error)
                .into_response();
        }
        Ok(Err(refusal)) => {
            tracing::warn!(
                job = %name,
                refusal = ?refusal,
                malformed,
                addr = caller.addr.as_deref().unwrap_or("-"),
                agent = caller.agent.as_deref().unwrap_or("-"),
                "cron call refused"
            );
            let message = if malformed {
                "The Authorization header must read `Bearer <cron secret>`.".to_owned()
            } else {
                refusal.message()
            };
            return unauthorized(message);
        }
        Ok(Ok(secret_id)) => caller.secret_id = Some(secret_id),
    }
    let Some(job) = jobs::find(state.jobs(), &name) else {
        return no_store(
            StatusCode::NOT_FOUND,
            json!({"kind": "not_found", "error": format!("No cron job is named `{name}`."),
                   "jobs": state.jobs().iter().map(|j| j.name).collect::<Vec<_>>()}),
        );
    };
    let firing = jobs::Firing {
        trigger: app::jobs::Trigger::External,
        actor: app::auth::ssr::Actor::system(job.name),
        reason: None,
        caller,
        tick: None,
    };
    match jobs::run(&state, job, firing, Default::default()).await {
        Ok(Some(finished)) => {
            let status = if finished.status.is_failure() {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::OK
            };
            let mut body = json!({
                "job": job.name,
                "cronRunId": finished.run_id,
                "outcome": finished.status,
                "rowsProcessed": finished.rows,
                "error": finished.error,
                "durationMs": finished.duration_ms,
            });
            if let (Some(body), Some(details)) =
                (body.as_object_mut(), finished.details.as_object())
            {
                for (key, value) in details {
                    body.entry(key.clone()).or_insert_with(|| value.clone());
                }
            }
            no_store(status, body)
        }
        Ok(None) => app::error::AppError::internal("cron route", "an unticked run was not started")
            .into_response(),
        Err(error) => error.into_response(),
    }
}

/// `crons` of `/health/deep`: per job its last run and success, fire rate, longest
/// duration in 24 h and flags; `error` instead when PostgreSQL did not answer.
async fn crons_health(state: &AppState) -> serde_json::Value {
    let lookup = app::crons::ssr::status::job_statuses(state, state.clock.now());
    match tokio::time::timeout(state.probe_timeout, lookup).await {
        Ok(Ok(jobs)) => {
            let flagged = jobs.iter().filter(|j| j.flagged()).count();
            let jobs: serde_json::Map<String, serde_json::Value> = jobs
                .into_iter()
                .map(|j| {
                    let value = json!({
                        "lastRun": j.last_run.as_ref().map(|r| iso(r.ran_at)),
                        "lastOutcome": j.last_run.as_ref().map(|r| r.outcome),
                        "lastSuccess": j.last_success_at.map(iso),
                        "fireRate": j.fire_rate.map(|r| (r * 10.0).round() / 10.0),
                        "runs24h": j.runs,
                        "expected24h": j.expected,
                        "missed24h": j.missed,
                        "maxDurationMs24h": j.longest_ms,
                        "flags": j.flags.iter().map(|f| f.label()).collect::<Vec<_>>(),
                    });
                    (j.name, value)
                })
                .collect();
            json!({"flagged": flagged, "jobs": jobs})
        }
        Ok(Err(error)) => json!({"flagged": null, "jobs": null, "error": error.to_string()}),
        Err(_) => {
            json!({"flagged": null, "jobs": null, "error": "PostgreSQL did not answer in time"})
        }
    }
}

/// `alerts` of `/health/deep`: `{open, critical, byKind}` of the open alerts; `null`s
/// and `error` when PostgreSQL did not answer.
async fn alerts_health(state: &AppState) -> serde_json::Value {
    let lookup = app::alerts::ssr::query::health(&state.pg);
    match tokio::time::timeout(state.probe_timeout, lookup).await {
        Ok(Ok(value)) => value,
        Ok(Err(error)) => {
            json!({"open": null, "critical": null, "byKind": null, "error": error.to_string()})
        }
        Err(_) => json!({"open": null, "critical": null, "byKind": null,
            "error": "PostgreSQL did not answer in time"}),
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

/// `webhooks` of `/health/deep`: `{backlog_count, dlq_count, paused}`; `null`s and
/// `error` when PostgreSQL did not answer.
async fn webhooks_health(state: &AppState) -> serde_json::Value {
    let lookup = app::dead_letters::ssr::dlq::health(&state.pg, state.clock.now());
    match tokio::time::timeout(state.probe_timeout, lookup).await {
        Ok(Ok(value)) => value,
        Ok(Err(error)) => json!({"backlog_count": null, "dlq_count": null, "paused": null,
            "error": error.to_string()}),
        Err(_) => json!({"backlog_count": null, "dlq_count": null, "paused": null,
            "error": "PostgreSQL did not answer in time"}),
    }
}

/// `schema` (`{applied, expected, ok}`, and `problem` when not ok) and
/// `backgroundMigrations` (`{running, stuck}`) of `/health/deep`; `null`s and `error`
/// when PostgreSQL did not answer.
async fn migrations_health(state: &AppState) -> (serde_json::Value, serde_json::Value) {
    let lookup = async {
        let schema = app::migrations::ssr::schema::status(&state.pg).await?;
        let (running, stuck, _) = app::migrations::ssr::store::running_stuck_failed(state).await?;
        Ok::<_, sqlx::Error>((schema, running, stuck))
    };
    let failed = |error: String| {
        (
            json!({"applied": null, "expected": app::migrations::ssr::schema::expected_version(),
                   "ok": null, "error": error}),
            json!({"running": null, "stuck": null, "error": error}),
        )
    };
    match tokio::time::timeout(state.probe_timeout, lookup).await {
        Ok(Ok((schema, running, stuck))) => (
            json!({"applied": schema.applied, "expected": schema.expected, "ok": schema.ok,
                   "problem": schema.problem}),
            json!({"running": running, "stuck": stuck}),
        ),
        Ok(Err(error)) => failed(error.to_string()),
        Err(_) => failed("PostgreSQL did not answer in time".to_owned()),
    }
}

/// The demo's webhook receiver (`SALVAGE_DEMO_RECEIVER`): `POST
/// /demo/webhook-receiver/flaky` answers 503 for the first `fail_secs` after start, then
/// 200; `/down` always 503; any other name 200. Not mounted unless asked for.
pub fn demo_receiver(fail_secs: Option<u64>) -> Router<AppState> {
    let Some(fail_secs) = fail_secs else {
        return Router::new();
    };
    let started = std::time::Instant::now();
    Router::new().route(
        "/demo/webhook-receiver/{name}",
        post(move |Path(name): Path<String>| async move {
            let failing = match name.as_str() {
                "down" => true,
                "flaky" => started.elapsed().as_secs() < fail_secs,
                _ => false,
            };
            if failing {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "demo receiver: failing for now",
                )
            } else {
                (StatusCode::OK, "demo receiver: received")
            }
        }),
    )
}
