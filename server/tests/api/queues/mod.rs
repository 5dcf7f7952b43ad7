//! The safe write path under faults: ingest, the fallback queues, replay, expiry, the
//! cron routes and the CLI, against the real stores (cut and restored through
//! `FaultyLink`s). Every test counts rows in both stores before and after.
//!
//! The row builders and counters every such test shares are here; the tests are split
//! by what they exercise:
//! - `replay`: replay through outages, crashes after the ClickHouse insert, two
//!   replayers, per-key depths and retried batches;
//! - `ingest`: both stores down, PostgreSQL down, bad input;
//! - `expiry`: expiry, the cron routes, /health/deep and the console's Replay button;
//! - `terminal`: `salvage replay` and `salvage expire`, killed, interrupted and stopped.

mod expiry;
mod ingest;
mod key_usage;
mod replay;
mod terminal;

use std::time::Duration;

use app::auth::ssr::Actor;
use app::jobs::ssr::RunOptions;
use app::jobs::{RunStatus, Trigger};
use app::queues::ssr::replay::{ReplayReport, REPLAY_FALLBACK};
use app::server::AppState;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_with, Options, TestApp, CRON_SECRET};

/// A fresh ingest key of `app`.
pub(crate) async fn ingest_key(app: &TestApp) -> String {
    app::ingest_keys::ssr::create(&app.pg, &Actor::cli(), "test caller", "org_1")
        .await
        .expect("create an ingest key")
        .1
}

/// Request rows `first..first+count`, with ids derived from their number.
pub(crate) fn request_rows(first: u32, count: u32) -> Value {
    let rows: Vec<Value> = (first..first + count)
        .map(|i| {
            json!({"id": uuid::Uuid::from_u128(0xfeed_0000_0000_0000_0000_0000_0000_0000 + u128::from(i)),
                "ts": format!("2026-11-{:02}T10:{:02}:{:02}.{:03}Z", 20 + i % 3, i % 60, (i / 60) % 60, i % 1000),
                "organization_id": "org_1", "project": "chat", "provider": "openai",
                "model": "gpt-4o-mini", "status": 200, "latency_ms": 812, "prompt_tokens": 412,
                "completion_tokens": 96, "cost_usd": 0.00031, "error": null})
        })
        .collect();
    Value::Array(rows)
}

async fn post(app: &TestApp, key: Option<&str>, path: &str, body: Vec<u8>) -> (u16, Value) {
    let mut request = app
        .http
        .post(format!("{}{path}", app.address))
        .header("content-type", "application/json")
        .body(body);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request
        .send()
        .await
        .expect("the ingest call reaches Salvage");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

pub(crate) async fn post_rows(app: &TestApp, key: &str, rows: &Value) -> (u16, Value) {
    post(
        app,
        Some(key),
        "/ingest/requests",
        serde_json::to_vec(rows).unwrap(),
    )
    .await
}

/// `(rows, distinct ids)` in this test's ClickHouse `requests`.
async fn clickhouse_counts(app: &TestApp) -> (u64, u64) {
    app.clickhouse
        .client()
        // uniqExact over UUIDs hangs on ClickHouse 18.16 when the ids are sequential
        // (its UInt128 hashing); over their text it is quick on every version.
        .query("SELECT count(), uniqExact(toString(id)) FROM requests")
        .fetch_one()
        .await
        .expect("count ClickHouse rows")
}

/// Rows in the requests queue, by `count(*)`, checked against the trigger counter.
async fn queued(app: &TestApp) -> i64 {
    let counted = app.count("requests_fallback").await;
    let counter: i64 =
        sqlx::query_scalar("select depth from fallback_depths where queue = 'requests'")
            .fetch_one(&app.pg)
            .await
            .unwrap();
    assert_eq!(counted, counter, "the depth counter drifted from count(*)");
    assert_key_depths_exact(app).await;
    counted
}

/// Every key's depth (folded base plus unfolded deltas, what ingest's quota check
/// reads) equals its rows counted in both queues.
pub(crate) async fn assert_key_depths_exact(app: &TestApp) {
    let drift: Vec<(i64, i64, i64)> = sqlx::query_as(
        "with counted as (
             select key_id, count(*) as n
               from (select key_id from requests_fallback
                     union all select key_id from events_fallback) q
              where key_id is not null group by key_id),
         kept as (
             select key_id, sum(n)::bigint as n
               from (select key_id, depth as n from fallback_key_depths
                     union all
                     select key_id, delta from fallback_depth_deltas where key_id is not null) k
              group by key_id)
         select key_id, coalesce(c.n, 0), coalesce(k.n, 0)
           from counted c full join kept k using (key_id)
          where coalesce(c.n, 0) <> coalesce(k.n, 0)",
    )
    .fetch_all(&app.pg)
    .await
    .unwrap();
    assert!(
        drift.is_empty(),
        "per-key depths (key, counted, kept) drifted: {drift:?}"
    );
}

/// The replay job, through the runner as every door runs it (trigger `cli`), with
/// `batch` rows per batch and the queue settings of `state` (tests set its parallelism
/// and injected faults there).
async fn replay_on(state: &AppState, batch: i64) -> ReplayReport {
    let firing = app::jobs::ssr::Firing::by_hand(
        Trigger::Cli,
        Actor::cli(),
        Some(crate::helpers::reason("test")),
        app::jobs::ssr::Caller::this_process("test"),
    );
    let options = RunOptions {
        batch: Some(batch),
        budget: Some(Duration::from_secs(120)),
        ..Default::default()
    };
    let finished = app::jobs::ssr::run(state, &REPLAY_FALLBACK, firing, options)
        .await
        .expect("the run is recorded")
        .expect("a run without a tick starts");
    finished
        .report::<ReplayReport>()
        .cloned()
        .unwrap_or_else(|| panic!("a replay report: {finished:?}"))
}

pub(crate) async fn run_replay(app: &TestApp, batch: i64) -> ReplayReport {
    replay_on(&app.state, batch).await
}

/// Rows the furthest replay run has done so far (its live progress).
async fn replay_progress(app: &TestApp) -> Option<i64> {
    sqlx::query_scalar(
        "select max(progress_done) from cron_job_runs where job_name = 'replay-fallback'",
    )
    .fetch_one(&app.pg)
    .await
    .unwrap()
}

/// `app`'s state with replay's batches in flight set to `parallel`.
fn state_with_parallel(app: &TestApp, parallel: usize) -> AppState {
    let mut state = app.state.clone();
    state
        .part_mut::<app::queues::ssr::QueueSettings>()
        .replay_parallel = parallel;
    state
}

fn with_clickhouse_link() -> Options {
    Options {
        clickhouse_link: true,
        ..Options::default()
    }
}

/// An app whose ClickHouse sits behind a link, with `batches` batches of `per_batch` rows
/// parked in the requests queue by an outage (each answered 202), the link restored.
async fn app_with_parked_rows(batches: u32, per_batch: u32) -> TestApp {
    let app = spawn_app_with(with_clickhouse_link()).await;
    let link = app.clickhouse_link.as_ref().unwrap();
    let key = ingest_key(&app).await;
    link.cut();
    for batch in 0..batches {
        let (status, body) =
            post_rows(&app, &key, &request_rows(batch * per_batch, per_batch)).await;
        assert_eq!(status, 202, "batch {batch} parked: {body}");
    }
    link.restore();
    app
}

/// An app with links in front of the stores `options` asks for, and an ingest key that
/// one accepted call (5 rows, to ClickHouse) has made known to the process.
async fn app_with_a_used_key(options: Options) -> (TestApp, String) {
    let app = spawn_app_with(options).await;
    let key = ingest_key(&app).await;
    assert_eq!(post_rows(&app, &key, &request_rows(0, 5)).await.0, 200);
    (app, key)
}

/// Inserts a queued row directly, with its `queued_at`.
async fn queue_row_at(app: &TestApp, i: u32, queued_at: time::OffsetDateTime) {
    let row = &request_rows(i, 1)[0];
    sqlx::query(
        "insert into requests_fallback (id, ts, row_json, queued_at) values ($1::uuid, now(), $2, $3)",
    )
    .bind(row["id"].as_str().unwrap())
    .bind(row.to_string())
    .bind(queued_at)
    .execute(&app.pg)
    .await
    .unwrap();
}
