//! The safe write path under faults: ingest, the fallback queues, replay, expiry, the
//! cron routes and the CLI, against the real stores (cut and restored through
//! `FaultyLink`s). Every test counts rows in both stores before and after.
//!
//! One file over 500 lines on purpose: every fault test of the safe write path shares
//! the same row builders and counters, and reads best beside the others.

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
    app::queues::ssr::keys::create(&app.pg, &Actor::cli(), "test caller", "org_1")
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
        Some("test".into()),
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
    state.queues.replay_parallel = parallel;
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

#[tokio::test]
async fn rows_go_straight_to_clickhouse_while_it_is_up() {
    let app = spawn_app().await;
    let key = ingest_key(&app).await;

    let (status, body) = post_rows(&app, &key, &request_rows(0, 25)).await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(body["stored"], "clickhouse");
    assert_eq!(body["rows"], 25);
    assert_eq!(clickhouse_counts(&app).await, (25, 25));
    assert_eq!(queued(&app).await, 0);
}

#[tokio::test]
async fn fault_drill_clickhouse_stopped_and_started_twice_then_replay_holds_each_row_once() {
    let app = spawn_app_with(with_clickhouse_link()).await;
    let link = app.clickhouse_link.as_ref().unwrap();
    let key = ingest_key(&app).await;
    let batches = 10;
    let per_batch = 50;
    let mut parked = 0;
    for batch in 0..batches {
        match batch {
            3 | 8 => link.cut(),
            6 | 9 => link.restore(),
            _ => {}
        }
        let rows = request_rows(batch * per_batch, per_batch);
        let (status, body) = post_rows(&app, &key, &rows).await;
        let down = matches!(batch, 3..=5 | 8);
        assert_eq!(
            status,
            if down { 202 } else { 200 },
            "batch {batch}: {body}"
        );
        if down {
            assert_eq!(body["stored"], "fallback");
            parked += per_batch as i64;
            // The caller retries the same batch: harmless.
            let (status, body) = post_rows(&app, &key, &rows).await;
            assert_eq!((status, body["queued"].as_u64()), (202, Some(0)), "{body}");
        }
    }
    assert_eq!(queued(&app).await, parked);

    let report = run_replay(&app, 60).await;

    assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
    assert_eq!(report.rows_done, parked);
    let total = u64::from(batches * per_batch);
    assert_eq!(clickhouse_counts(&app).await, (total, total));
    assert_eq!(queued(&app).await, 0);
}

#[tokio::test]
async fn a_replay_while_clickhouse_is_down_keeps_every_row_and_records_the_attempt() {
    let app = spawn_app_with(with_clickhouse_link()).await;
    let link = app.clickhouse_link.as_ref().unwrap();
    let key = ingest_key(&app).await;
    link.cut();
    assert_eq!(post_rows(&app, &key, &request_rows(0, 120)).await.0, 202);

    // One batch at a time, so exactly one batch meets the outage.
    let report = replay_on(&state_with_parallel(&app, 1), 50).await;

    assert_eq!(report.status, RunStatus::Failed);
    assert!(
        report.error.as_deref().unwrap_or("").contains("ClickHouse"),
        "{report:?}"
    );
    assert_eq!(queued(&app).await, 120);
    let attempted: i64 = sqlx::query_scalar(
        "select count(*) from requests_fallback where attempts = 1 and last_error like '%ClickHouse%'",
    )
    .fetch_one(&app.pg)
    .await
    .unwrap();
    assert_eq!(
        attempted, 50,
        "the failed batch, and only it, counts an attempt"
    );
    let outcome: String = sqlx::query_scalar(
        "select outcome from runbook_history where kind = 'replay' order by id desc limit 1",
    )
    .fetch_one(&app.pg)
    .await
    .unwrap();
    assert_eq!(outcome, "failed");

    link.restore();
    let report = run_replay(&app, 50).await;
    assert_eq!(report.status, RunStatus::Succeeded);
    assert_eq!(clickhouse_counts(&app).await, (120, 120));
    assert_eq!(queued(&app).await, 0);
}

#[tokio::test]
async fn a_crash_after_the_clickhouse_insert_and_before_the_commit_doubles_nothing() {
    let app = app_with_parked_rows(3, 400).await;

    let mut crashing = state_with_parallel(&app, 1);
    crashing.queues.replay_faults.crash_after_insert = true;
    let report = replay_on(&crashing, 500).await;

    assert_eq!(report.status, RunStatus::Failed);
    assert_eq!(
        clickhouse_counts(&app).await,
        (500, 500),
        "the first batch reached ClickHouse"
    );
    assert_eq!(
        queued(&app).await,
        1200,
        "and is still queued: the delete rolled back"
    );

    let report = run_replay(&app, 500).await;

    assert_eq!(report.status, RunStatus::Succeeded);
    assert_eq!(report.rows_done, 1200);
    assert_eq!(report.rows_already_present, 500, "{report:?}");
    assert_eq!(report.rows_inserted, 700);
    assert_eq!(clickhouse_counts(&app).await, (1200, 1200));
    assert_eq!(queued(&app).await, 0);
}

#[tokio::test]
async fn two_replayers_at_once_send_each_row_once() {
    let app = app_with_parked_rows(6, 500).await;

    let (first, second) = tokio::join!(run_replay(&app, 100), run_replay(&app, 100));
    let overlapped: i64 = sqlx::query_scalar(
        "select count(*) from cron_job_runs a join cron_job_runs b on a.id < b.id
          where a.job_name = 'replay-fallback' and b.job_name = 'replay-fallback'
            and a.ran_at < b.finished_at and b.ran_at < a.finished_at",
    )
    .fetch_one(&app.pg)
    .await
    .unwrap();
    assert_eq!(overlapped, 1, "the two runs ran at the same time");
    assert!(
        first.rows_done > 0 && second.rows_done > 0,
        "both took batches"
    );

    assert_eq!(first.status, RunStatus::Succeeded, "{first:?}");
    assert_eq!(second.status, RunStatus::Succeeded, "{second:?}");
    assert_eq!(first.rows_done + second.rows_done, 3000);
    assert_eq!(first.rows_already_present + second.rows_already_present, 0);
    assert_eq!(clickhouse_counts(&app).await, (3000, 3000));
    assert_eq!(queued(&app).await, 0);
}

/// Folds the depth deltas; returns each key's folded depth, by key.
async fn fold_key_depths(app: &TestApp) -> Vec<i64> {
    sqlx::query("select fold_fallback_depths()")
        .execute(&app.pg)
        .await
        .unwrap();
    sqlx::query_scalar("select depth from fallback_key_depths order by key_id")
        .fetch_all(&app.pg)
        .await
        .unwrap()
}

#[tokio::test]
async fn each_keys_depth_stays_exact_through_folds_and_replay() {
    let app = app_with_parked_rows(4, 25).await;
    let link = app.clickhouse_link.as_ref().unwrap();
    let other = ingest_key(&app).await;
    link.cut();
    let (status, body) = post_rows(&app, &other, &request_rows(1000, 30)).await;
    assert_eq!(status, 202, "{body}");
    // The same batch again: queued once, counted once.
    let (status, body) = post_rows(&app, &other, &request_rows(1000, 30)).await;
    assert_eq!((status, body["queued"].as_i64()), (202, Some(0)), "{body}");
    link.restore();
    assert_eq!(queued(&app).await, 130);

    let folded = fold_key_depths(&app).await;
    assert_eq!(folded, [100, 30], "the deltas folded into each key's base");
    assert_key_depths_exact(&app).await;

    let report = replay_on(&app.state, 40).await;
    assert_eq!(report.rows_done, 130, "{report:?}");
    assert_eq!(queued(&app).await, 0);
    let folded = fold_key_depths(&app).await;
    assert_eq!(folded, [0, 0]);
}

#[tokio::test]
async fn a_batch_overlapping_queued_rows_queues_only_its_new_rows_once() {
    // The plain insert meets the unique key on the overlap, is rolled back whole and the
    // batch is queued again skipping the rows already there.
    let (app, key) = app_with_a_used_key(with_clickhouse_link()).await;
    let link = app.clickhouse_link.as_ref().unwrap();
    link.cut();
    let (status, body) = post_rows(&app, &key, &request_rows(100, 20)).await;
    assert_eq!((status, body["queued"].as_i64()), (202, Some(20)), "{body}");
    // Rows 110..140: the first ten are queued already.
    let (status, body) = post_rows(&app, &key, &request_rows(110, 30)).await;
    assert_eq!((status, body["queued"].as_i64()), (202, Some(20)), "{body}");
    assert_eq!(queued(&app).await, 40);
    let distinct: i64 = sqlx::query_scalar("select count(distinct id) from requests_fallback")
        .fetch_one(&app.pg)
        .await
        .unwrap();
    assert_eq!(distinct, 40, "no row queued twice");

    link.restore();
    let report = run_replay(&app, 25).await;
    assert_eq!(report.rows_done, 40, "{report:?}");
    assert_eq!(clickhouse_counts(&app).await.0, 45);
    assert_eq!(queued(&app).await, 0);
}

/// An app with links in front of the stores `options` asks for, and an ingest key that
/// one accepted call (5 rows, to ClickHouse) has made known to the process.
async fn app_with_a_used_key(options: Options) -> (TestApp, String) {
    let app = spawn_app_with(options).await;
    let key = ingest_key(&app).await;
    assert_eq!(post_rows(&app, &key, &request_rows(0, 5)).await.0, 200);
    (app, key)
}

#[tokio::test]
async fn with_both_stores_down_ingest_answers_503_and_stores_nothing() {
    // One accepted call first: the key is known to this process, as in production.
    let (app, key) = app_with_a_used_key(Options {
        clickhouse_link: true,
        postgres_link: true,
        ..Options::default()
    })
    .await;
    app.clickhouse_link.as_ref().unwrap().cut();
    app.postgres_link.as_ref().unwrap().cut();

    let response = app
        .http
        .post(format!("{}/ingest/requests", app.address))
        .bearer_auth(&key)
        .json(&request_rows(100, 40))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status().as_u16(), 503);
    assert!(response.headers().get("retry-after").is_some());
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("Nothing was stored"),
        "{body}"
    );
    app.clickhouse_link.as_ref().unwrap().restore();
    app.postgres_link.as_ref().unwrap().restore();
    assert_eq!(clickhouse_counts(&app).await, (5, 5));
    assert_eq!(queued(&app).await, 0);
}

#[tokio::test]
async fn while_postgres_is_down_a_known_key_still_writes_to_clickhouse() {
    let (app, key) = app_with_a_used_key(Options {
        postgres_link: true,
        ..Options::default()
    })
    .await;
    app.postgres_link.as_ref().unwrap().cut();

    let (status, body) = post_rows(&app, &key, &request_rows(5, 5)).await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(clickhouse_counts(&app).await, (10, 10));
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_stores_nothing() {
    let app = spawn_app().await;
    let key = ingest_key(&app).await;
    let (revoked_id, revoked) =
        app::queues::ssr::keys::create(&app.pg, &Actor::cli(), "old", "org_1")
            .await
            .unwrap();
    app::queues::ssr::keys::revoke(
        &app.pg,
        &app.state.ingest_keys,
        &Actor::cli(),
        revoked_id,
        None,
    )
    .await
    .unwrap();
    let good = serde_json::to_vec(&request_rows(0, 3)).unwrap();
    let mut wrong_ts = request_rows(0, 3);
    wrong_ts[1]["ts"] = json!("22/11/2026");
    let mut extra = request_rows(0, 3);
    extra[2]["tenant"] = json!("x");
    let mut wrong_type = request_rows(0, 2);
    wrong_type[0]["latency_ms"] = json!("fast");
    let too_many = request_rows(0, 5001);
    let mut huge = request_rows(0, 1);
    huge[0]["error"] = json!("x".repeat(9 * 1024 * 1024));

    // (what, key, body, expected status, field named in the error)
    type Case<'a> = (&'a str, Option<&'a str>, Vec<u8>, u16, Option<&'a str>);
    let cases: Vec<Case> = vec![
        ("no key", None, good.clone(), 401, None),
        (
            "wrong key",
            Some("sgk_0000000000000000000000000000"),
            good.clone(),
            401,
            None,
        ),
        (
            "revoked key",
            Some(revoked.as_str()),
            good.clone(),
            401,
            None,
        ),
        (
            "not JSON",
            Some(key.as_str()),
            b"[{\"id\":".to_vec(),
            400,
            None,
        ),
        (
            "not an array",
            Some(key.as_str()),
            b"{\"rows\": []}".to_vec(),
            400,
            None,
        ),
        (
            "empty batch",
            Some(key.as_str()),
            b"[]".to_vec(),
            422,
            Some("rows"),
        ),
        (
            "bad timestamp",
            Some(key.as_str()),
            serde_json::to_vec(&wrong_ts).unwrap(),
            422,
            Some("rows[1].ts"),
        ),
        (
            "unknown field",
            Some(key.as_str()),
            serde_json::to_vec(&extra).unwrap(),
            422,
            Some("rows[2].tenant"),
        ),
        (
            "wrong type",
            Some(key.as_str()),
            serde_json::to_vec(&wrong_type).unwrap(),
            422,
            Some("rows[0].latency_ms"),
        ),
        (
            "too many rows",
            Some(key.as_str()),
            serde_json::to_vec(&too_many).unwrap(),
            413,
            None,
        ),
        (
            "body too large",
            Some(key.as_str()),
            serde_json::to_vec(&huge).unwrap(),
            413,
            None,
        ),
    ];
    for (name, key, body, status, field) in cases {
        let (got, answer) = post(&app, key, "/ingest/requests", body).await;
        assert_eq!(got, status, "{name}: {answer}");
        if let Some(field) = field {
            assert_eq!(answer["field"], field, "{name}: {answer}");
        }
    }
    let (got, answer) = post(
        &app,
        Some(&key),
        "/ingest/events",
        serde_json::to_vec(&request_rows(0, 1)).unwrap(),
    )
    .await;
    assert_eq!(got, 422, "request rows are not events: {answer}");

    assert_eq!(clickhouse_counts(&app).await, (0, 0));
    assert_eq!(queued(&app).await, 0);
    assert_eq!(app.count("events_fallback").await, 0);
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

#[tokio::test]
async fn expiry_deletes_only_rows_older_than_the_ttl_and_records_how_many_and_when() {
    let app = spawn_app().await;
    let ttl = Duration::from_secs(7 * 24 * 3600);
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap();
    let cutoff = now - ttl;
    for i in 0..3 {
        queue_row_at(
            &app,
            i,
            cutoff - time::Duration::seconds(1 + i64::from(i) * 3600),
        )
        .await;
    }
    queue_row_at(&app, 10, cutoff + time::Duration::seconds(1)).await;

    let expired =
        app::queues::ssr::expiry::expire(&app.pg, &Actor::cli(), Trigger::Cli, None, ttl, now)
            .await
            .unwrap();

    assert_eq!(expired[0].rows, 3);
    assert_eq!(expired[1].rows, 0, "the events queue had nothing");
    assert_eq!(
        queued(&app).await,
        1,
        "the row one second younger than the TTL survives"
    );
    let entries: Vec<(String, Value)> =
        sqlx::query_as("select title, details from runbook_history where kind = 'expiry'")
            .fetch_all(&app.pg)
            .await
            .unwrap();
    assert_eq!(entries.len(), 1, "one entry, for the queue that lost rows");
    let (title, details) = &entries[0];
    assert!(
        title.contains("Expired 3 rows of the requests queue"),
        "{title}"
    );
    assert_eq!(details["rows"], 3);
    assert_eq!(details["queue"], "requests");
    let first = details["first_queued_at"].as_i64().unwrap();
    let last = details["last_queued_at"].as_i64().unwrap();
    assert_eq!(
        last,
        app::server::unix_ms(cutoff - time::Duration::seconds(1))
    );
    assert_eq!(
        first,
        app::server::unix_ms(cutoff - time::Duration::seconds(7201))
    );
}

#[tokio::test]
async fn cron_routes_need_the_secret_and_run_the_same_replay_and_expiry() {
    let app = app_with_parked_rows(1, 30).await;
    let url = format!("{}/cron/replay-fallback", app.address);

    for bearer in [None, Some("wrong-secret-0123456789"), Some("")] {
        let mut request = app.http.post(&url);
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), 401, "{bearer:?}");
    }
    assert_eq!(queued(&app).await, 30, "a refused call changes nothing");

    let response = app
        .http
        .get(&url)
        .bearer_auth(CRON_SECRET)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["rowsDone"], 30, "{body}");
    assert_eq!(body["status"], "succeeded");
    assert_eq!(clickhouse_counts(&app).await, (30, 30));

    let response = app
        .http
        .post(format!("{}/cron/expire-fallback", app.address))
        .bearer_auth(CRON_SECRET)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["expired"][0]["rows"], 0, "{body}");
}

#[tokio::test]
async fn health_deep_reports_each_queue_and_its_oldest_row() {
    let app = spawn_app_with(with_clickhouse_link()).await;
    let key = ingest_key(&app).await;
    let (_, before) = app.get_json("/health/deep").await;
    assert_eq!(before["fallback"]["queue"], 0, "{before}");
    assert!(before["fallback"]["queueOldestAgeSeconds"].is_null());
    app.clickhouse_link.as_ref().unwrap().cut();
    assert_eq!(post_rows(&app, &key, &request_rows(0, 12)).await.0, 202);
    // The answer is cached for up to two seconds: the next one is fresh.
    tokio::time::sleep(app::health::ssr::HEALTH_MAX_AGE).await;

    let (status, deep) = app.get_json("/health/deep").await;

    assert_eq!(status, 200);
    assert_eq!(deep["fallback"]["queue"], 12, "{deep}");
    assert_eq!(deep["fallback"]["eventsQueue"], 0);
    assert!(deep["fallback"]["queueOldestAgeSeconds"].as_i64().unwrap() >= 0);
    assert!(deep["fallback"]["eventsQueueOldestAgeSeconds"].is_null());
}

#[tokio::test]
async fn the_replay_button_runs_in_the_background_and_is_recorded_with_its_reason() {
    let app = app_with_parked_rows(1, 40).await;
    let operator = app.signed_in(app::auth::Role::Operator).await;

    let (status, missing) = operator.call("queues/replay", json!({"reason": " "})).await;
    assert_eq!((status, missing["field"].as_str()), (422, Some("reason")));
    let (status, run_id) = operator
        .call("queues/replay", json!({"reason": "ClickHouse is back"}))
        .await;
    assert_eq!(status, 200, "{run_id}");

    let finished = crate::helpers::eventually(Duration::from_secs(20), || async {
        let outcome: String = sqlx::query_scalar("select outcome from cron_job_runs where id = $1")
            .bind(run_id.as_i64().unwrap())
            .fetch_one(&app.pg)
            .await
            .unwrap();
        outcome != "running"
    })
    .await;
    assert!(finished, "the run finished");
    let (_, overview) = operator.call("queues/overview", json!({})).await;
    assert_eq!(overview["runs"][0]["status"], "succeeded");
    assert_eq!(overview["runs"][0]["trigger"], "manual");
    assert_eq!(overview["runs"][0]["rows_done"], 40);
    // The button is a manual run of the replay-fallback job, with who and why.
    let (job, trigger, outcome, rows, actor, reason): (String, String, String, i64, String, String) =
        sqlx::query_as(
            "select job_name, trigger, outcome, rows_processed, actor, reason from cron_job_runs where id = $1",
        )
        .bind(run_id.as_i64().unwrap())
        .fetch_one(&app.pg)
        .await
        .unwrap();
    assert_eq!(
        (
            job.as_str(),
            trigger.as_str(),
            outcome.as_str(),
            rows,
            reason.as_str()
        ),
        (
            "replay-fallback",
            "manual",
            "succeeded",
            40,
            "ClickHouse is back"
        )
    );
    assert!(actor.starts_with("operator-"), "{actor}");
    assert_eq!(overview["queues"][0]["depth"], 0);
    assert!(
        !overview["samples"].as_array().unwrap().is_empty(),
        "the run sampled the depths"
    );
    let (reason, actor): (Option<String>, String) = sqlx::query_as(
        "select reason, actor from runbook_history where kind = 'replay' order by id desc limit 1",
    )
    .fetch_one(&app.pg)
    .await
    .unwrap();
    assert_eq!(reason.as_deref(), Some("ClickHouse is back"));
    assert!(actor.starts_with("operator-"), "{actor}");
    assert_eq!(clickhouse_counts(&app).await, (40, 40));
}

#[tokio::test]
async fn salvage_replay_and_expire_work_from_the_terminal() {
    let app = app_with_parked_rows(1, 70).await;

    let output =
        crate::cli::salvage_on(&app, &["replay", "--reason", "drill", "--batch", "20"], "");

    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("succeeded: 70 rows replayed"), "{stdout}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("70 / 70 rows"));
    assert_eq!(clickhouse_counts(&app).await, (70, 70));
    assert_eq!(queued(&app).await, 0);

    let output = crate::cli::salvage_on(&app, &["expire"], "");
    assert!(output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("requests: nothing older than the TTL")
    );
}

/// Parks `n` valid rows in the requests queue directly (as an outage would leave them).
async fn park_rows(app: &TestApp, n: i64) {
    sqlx::query(
        "insert into requests_fallback (id, ts, row_json)
         select u, now(), json_build_object(
                  'id', u, 'ts', to_char(now() at time zone 'utc', 'YYYY-MM-DD HH24:MI:SS'),
                  'ts_ms', 0, 'organization_id', 'org_kill', 'project', 'kill',
                  'provider', 'openai', 'model', 'gpt-4o-mini', 'status', 200,
                  'latency_ms', 100, 'prompt_tokens', 10, 'completion_tokens', 5,
                  'cost_usd', 0.0001, 'error', null)::text
           from (select gen_random_uuid() as u from generate_series(1, $1)) rows",
    )
    .bind(n)
    .execute(&app.pg)
    .await
    .unwrap();
}

/// The `salvage` binary with only `app`'s stores in its environment, run from a
/// folder without a `.env`.
fn salvage_on(app: &TestApp) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_salvage"));
    command
        .current_dir(std::env::temp_dir())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", &app.database_url)
        .env(
            "CLICKHOUSE_URL",
            crate::helpers::base_settings().clickhouse.url.as_str(),
        )
        .env(
            "CLICKHOUSE_PASSWORD",
            secrecy::ExposeSecret::expose_secret(
                &crate::helpers::base_settings().clickhouse.password,
            ),
        )
        .env("CLICKHOUSE_DATABASE", app.clickhouse.database());
    command
}

/// Sends `SIG<name>` to `child`.
fn send_signal(child: &std::process::Child, name: &str) {
    let sent = std::process::Command::new("kill")
        .args([format!("-{name}"), child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{name}");
}

/// After a replay stopped part-way (cancelled, not killed): ClickHouse holds exactly the
/// `rows` the run counted, no id twice, fewer than `total`, and the queue the rest.
async fn assert_stopped_replay_kept_each_row_once(app: &TestApp, rows: i64, total: i64) {
    let (count, distinct) = clickhouse_counts(app).await;
    assert_eq!(count, distinct, "no id reached ClickHouse twice");
    assert_eq!(
        distinct as i64, rows,
        "the run's figure is what ClickHouse got"
    );
    assert!((distinct as i64) < total, "stopped before the end");
    assert_eq!(
        queued(app).await + distinct as i64,
        total,
        "every row is in ClickHouse or still queued"
    );
}

/// `salvage replay --batch 200` on `app`'s databases, its output captured, once it has
/// replayed at least 1,000 rows.
async fn replay_process_under_way(app: &TestApp) -> std::process::Child {
    let child = salvage_on(app)
        .args(["replay", "--batch", "200"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = crate::helpers::eventually(Duration::from_secs(30), || async {
        replay_progress(app).await.unwrap_or(0) >= 1000
    })
    .await;
    assert!(started, "the replay process made progress");
    child
}

#[tokio::test]
async fn a_replay_process_killed_mid_run_loses_and_doubles_nothing() {
    let app = spawn_app().await;
    park_rows(&app, 20_000).await;
    let mut child = replay_process_under_way(&app).await;

    child.kill().unwrap(); // SIGKILL: no chance to finish its batch or clean up
    child.wait().unwrap();

    let (count, distinct) = clickhouse_counts(&app).await;
    assert_eq!(count, distinct, "no id reached ClickHouse twice");
    assert!(
        distinct < 20_000,
        "killed before the end ({distinct} rows in)"
    );
    assert!(
        queued(&app).await + distinct as i64 >= 20_000,
        "every row is in ClickHouse or still queued"
    );

    let report = run_replay(&app, 1000).await;

    assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
    assert_eq!(clickhouse_counts(&app).await, (20_000, 20_000));
    assert_eq!(queued(&app).await, 0);
}

#[tokio::test]
async fn ctrl_c_stops_a_terminal_replay_after_its_batch_and_records_it_as_cancelled() {
    // Enough rows that the interrupt lands well before the end.
    const ROWS: i64 = 100_000;
    let app = spawn_app().await;
    park_rows(&app, ROWS).await;
    let child = replay_process_under_way(&app).await;

    send_signal(&child, "INT");
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();

    assert!(output.status.success(), "{:?}", output.status);
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(printed.contains(" cancelled: "), "{printed}");
    let (outcome, trigger, rows): (String, String, i64) = sqlx::query_as(
        "select outcome, trigger, rows_processed from cron_job_runs
          where job_name = 'replay-fallback'",
    )
    .fetch_one(&app.pg)
    .await
    .unwrap();
    assert_eq!((outcome.as_str(), trigger.as_str()), ("cancelled", "cli"));
    assert_stopped_replay_kept_each_row_once(&app, rows, ROWS).await;
}

#[tokio::test]
async fn sigterm_during_a_replay_stops_in_time_records_it_as_cancelled_and_loses_nothing() {
    const ROWS: i64 = 200_000;
    let app = spawn_app().await;
    park_rows(&app, ROWS).await;
    let port = crate::helpers::closed_port().await;
    let address = format!("http://127.0.0.1:{port}");
    let mut server = salvage_on(&app)
        .arg("serve")
        .env("SALVAGE_ADDR", format!("127.0.0.1:{port}"))
        .env("SALVAGE_SCHEDULER", "off")
        .env("SALVAGE_SHUTDOWN_GRACE_SECS", "30")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let up = crate::helpers::eventually(Duration::from_secs(30), || async {
        http.get(format!("{address}/health/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
    assert!(up, "salvage serve came up");

    // The replay, through the cron route: the request stays open while the job works.
    let call = tokio::spawn(
        http.post(format!("{address}/cron/replay-fallback"))
            .bearer_auth(CRON_SECRET)
            .send(),
    );
    let working = crate::helpers::eventually(Duration::from_secs(60), || async {
        let done = replay_progress(&app).await;
        done.unwrap_or(0) >= 20_000
    })
    .await;
    assert!(working, "the replay made progress");

    let signalled = std::time::Instant::now();
    send_signal(&server, "TERM");
    let exit = tokio::task::spawn_blocking(move || server.wait())
        .await
        .unwrap()
        .unwrap();

    // It stopped within its shutdown grace (plus a little for the process to exit), and
    // cleanly: the running job stopped after its batch and said so.
    assert!(
        signalled.elapsed() < Duration::from_secs(40),
        "salvage serve took {:?} to stop",
        signalled.elapsed()
    );
    assert!(exit.success(), "{exit:?}");
    let (outcome, rows): (String, i64) = sqlx::query_as(
        "select outcome, rows_processed from cron_job_runs where job_name = 'replay-fallback'",
    )
    .fetch_one(&app.pg)
    .await
    .unwrap();
    assert_eq!(
        outcome, "cancelled",
        "the run says cancelled, not abandoned"
    );
    let response = call.await.unwrap().expect("the caller got its answer");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["outcome"], "cancelled", "{body}");

    assert_stopped_replay_kept_each_row_once(&app, rows, ROWS).await;

    // The next replay finishes the queue.
    let report = run_replay(&app, 5000).await;
    assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
    assert_eq!(clickhouse_counts(&app).await, (ROWS as u64, ROWS as u64));
    assert_eq!(queued(&app).await, 0);
}
