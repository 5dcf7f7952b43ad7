//! The ingest door: keys revoked everywhere within seconds, floods refused before they
//! cost anything, each organisation's rows its own, and a queue with a ceiling.

use std::time::{Duration, Instant};

use app::auth::ssr::Actor;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_with, Options, TestApp};

async fn new_key(app: &TestApp) -> (i64, String) {
    app::ingest_keys::ssr::create(&app.pg, &Actor::cli(), "security test", "org_a")
        .await
        .expect("create an ingest key")
}

fn one_event() -> Value {
    json!([{"id": uuid::Uuid::new_v4(), "ts": "2026-11-28T10:00:00Z", "trace_id": "t",
            "span_id": "s", "event_type": "trace", "name": "probe"}])
}

async fn send_event(app: &TestApp, key: &str) -> u16 {
    app.http
        .post(format!("{}/ingest/events", app.address))
        .bearer_auth(key)
        .json(&one_event())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_revoked_key_is_refused_within_five_seconds_on_another_instance() {
    let first = spawn_app().await;
    let second = spawn_app_with(Options {
        database_url: Some(first.database_url.clone()),
        ..Options::default()
    })
    .await;
    let (id, key) = new_key(&first).await;
    assert_eq!(send_event(&first, &key).await, 200);
    assert_eq!(
        send_event(&second, &key).await,
        200,
        "now cached on the second"
    );

    app::ingest_keys::ssr::revoke(
        &first.pg,
        first.state.ingest_keys(),
        &Actor::cli(),
        id,
        None,
    )
    .await
    .unwrap();
    let revoked = Instant::now();

    assert_eq!(
        send_event(&first, &key).await,
        401,
        "at once where it was revoked"
    );
    loop {
        let status = send_event(&second, &key).await;
        if status == 401 {
            break;
        }
        assert_eq!(status, 200);
        assert!(
            revoked.elapsed() < Duration::from_secs(5),
            "still accepted {:?} after the revocation",
            revoked.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Opens a connection and sends the head of an ingest upload announcing `length` bytes,
/// with `authorization` if given; returns the stream, body unsent.
async fn upload_head(
    app: &TestApp,
    authorization: Option<&str>,
    length: usize,
) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let address = app.address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let auth = authorization
        .map(|value| format!("Authorization: {value}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "POST /ingest/requests HTTP/1.1\r\nHost: {address}\r\n{auth}\
         Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

/// The status line of the response on `stream`, if one arrives within `within`.
async fn status_line(stream: &mut tokio::net::TcpStream, within: Duration) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut buffer = vec![0u8; 512];
    let read = tokio::time::timeout(within, stream.read(&mut buffer))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&buffer[..read]).to_string();
    text.lines().next().map(str::to_owned)
}

#[tokio::test]
async fn a_bad_key_with_a_body_that_never_arrives_is_refused_at_once() {
    let app = spawn_app().await;
    for authorization in [None, Some("Bearer sgk_0000000000000000000000000000000000")] {
        let mut stream = upload_head(&app, authorization, 4 * 1024 * 1024).await;
        let started = Instant::now();

        let line = status_line(&mut stream, Duration::from_secs(3)).await;

        assert_eq!(
            line.as_deref(),
            Some("HTTP/1.1 401 Unauthorized"),
            "{authorization:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
}

#[tokio::test]
async fn an_array_of_millions_of_values_is_refused_at_the_row_cap() {
    let app = spawn_app().await;
    let (_, key) = new_key(&app).await;
    // ~4 million zeros in under 8 MiB: refused after the 5,001st, never parsed whole.
    let mut body = String::with_capacity(8 * 1024 * 1024);
    body.push('[');
    for n in 0..4_000_000 {
        if n > 0 {
            body.push(',');
        }
        body.push('0');
    }
    body.push(']');
    let response = app
        .http
        .post(format!("{}/ingest/requests", app.address))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let answer: Value = response.json().await.unwrap();
    assert!(
        answer["message"].as_str().unwrap().contains("5000"),
        "{answer}"
    );
    assert_eq!(app.count("requests_fallback").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_and_keyed_callers_get_through_a_flood_of_slow_uploads_and_health_checks() {
    let app = spawn_app().await;
    let (_, key) = new_key(&app).await;
    let operator = app.signed_in(app::auth::Role::Operator).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let mut flood = tokio::task::JoinSet::new();
    // 500 anonymous uploads that trickle a byte at a time.
    for _ in 0..500 {
        let mut stream = upload_head(&app, None, 1024 * 1024).await;
        let stop = stop.clone();
        flood.spawn(async move {
            use tokio::io::AsyncWriteExt;
            while !stop.is_cancelled() {
                if stream.write_all(b" ").await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
    }
    // 200 callers asking /health/deep as fast as they can.
    for _ in 0..200 {
        let (client, stop) = (app.anonymous.clone(), stop.clone());
        flood.spawn(async move {
            while !stop.is_cancelled() {
                let _ = client
                    .http
                    .get(format!("{}/health/deep", client.address))
                    .send()
                    .await;
            }
        });
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    for round in 0..3 {
        let page = operator.get("/admin/queues").await;
        assert_eq!(page.status(), 200, "round {round}: the operator's page");
        assert_eq!(
            send_event(&app, &key).await,
            200,
            "round {round}: a keyed ingest"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stop.cancel();
    while flood.join_next().await.is_some() {}
}

async fn key_for(app: &TestApp, organization: &str) -> String {
    app::ingest_keys::ssr::create(&app.pg, &Actor::cli(), "tenant", organization)
        .await
        .expect("create an ingest key")
        .1
}

/// One request row of `organization` with `id`, at a fixed time.
fn request_row(organization: &str, id: uuid::Uuid) -> Value {
    json!({"id": id, "ts": "2026-11-27T10:00:00.000Z", "organization_id": organization,
           "project": "p", "provider": "openai", "model": "m", "status": 200,
           "latency_ms": 1, "prompt_tokens": 1, "completion_tokens": 1, "cost_usd": 0.0,
           "error": null})
}

async fn post_json(app: &TestApp, key: &str, path: &str, body: &Value) -> (u16, Value) {
    let response = app
        .http
        .post(format!("{}{path}", app.address))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn clickhouse_rows(app: &TestApp, table: &str) -> Vec<(String, String)> {
    #[derive(clickhouse::Row, serde::Deserialize)]
    struct Row {
        organization_id: String,
        id: String,
    }
    let rows: Vec<Row> = app
        .clickhouse
        .client()
        .query(&format!(
            "SELECT organization_id, toString(id) AS id FROM {table} FINAL ORDER BY organization_id"
        ))
        .fetch_all()
        .await
        .unwrap();
    rows.into_iter()
        .map(|r| (r.organization_id, r.id))
        .collect()
}

#[tokio::test]
async fn a_key_sends_only_its_organisations_rows_and_events_take_its_organisation() {
    let app = spawn_app().await;
    let key = key_for(&app, "org_a").await;
    let id = uuid::Uuid::new_v4();

    let body = json!([
        request_row("org_a", uuid::Uuid::new_v4()),
        request_row("org_b", id)
    ]);
    let (status, answer) = post_json(&app, &key, "/ingest/requests", &body).await;
    assert_eq!(status, 403, "{answer}");
    let message = answer["message"].as_str().unwrap();
    assert!(
        message.contains("rows[1].organization_id") && message.contains("org_a"),
        "{message}"
    );
    assert!(
        clickhouse_rows(&app, "requests").await.is_empty(),
        "nothing of the batch stored"
    );

    let event = |organization: Option<&str>| {
        let mut row = json!({"id": uuid::Uuid::new_v4(), "ts": "2026-11-27T10:00:00Z",
                             "trace_id": "t", "span_id": "s", "event_type": "span", "name": "n"});
        if let Some(organization) = organization {
            row["organization_id"] = json!(organization);
        }
        json!([row])
    };
    assert_eq!(
        post_json(&app, &key, "/ingest/events", &event(Some("org_b")))
            .await
            .0,
        403
    );
    assert_eq!(
        post_json(&app, &key, "/ingest/events", &event(None))
            .await
            .0,
        200
    );
    let events = clickhouse_rows(&app, "events").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].0, "org_a", "the key's organisation");
}

#[tokio::test]
async fn one_organisations_id_never_replaces_or_shadows_anothers() {
    let app = spawn_app_with(Options {
        clickhouse_link: true,
        ..Options::default()
    })
    .await;
    let (a, b) = (key_for(&app, "org_a").await, key_for(&app, "org_b").await);
    let shared = uuid::Uuid::new_v4();
    let (reused_a, reused_b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());

    // Straight to ClickHouse: both rows stay, even after a merge.
    assert_eq!(
        post_json(
            &app,
            &a,
            "/ingest/requests",
            &json!([request_row("org_a", shared)])
        )
        .await
        .0,
        200
    );
    assert_eq!(
        post_json(
            &app,
            &b,
            "/ingest/requests",
            &json!([request_row("org_b", shared)])
        )
        .await
        .0,
        200
    );
    app.clickhouse
        .client()
        .query("OPTIMIZE TABLE requests FINAL")
        .execute()
        .await
        .unwrap();
    assert_eq!(clickhouse_rows(&app, "requests").await.len(), 2);

    // Through the fallback queue: B's row is not skipped as a retry of A's.
    app.clickhouse_link.as_ref().unwrap().cut();
    for (key, organization, id) in [
        (&a, "org_a", reused_a),
        (&b, "org_b", reused_a),
        (&b, "org_b", reused_b),
    ] {
        let (status, answer) = post_json(
            &app,
            key,
            "/ingest/requests",
            &json!([request_row(organization, id)]),
        )
        .await;
        assert_eq!(status, 202, "{answer}");
        assert_eq!(answer["queued"], 1, "{answer}");
    }
    assert_eq!(app.count("requests_fallback").await, 3);
    app.clickhouse_link.as_ref().unwrap().restore();
    let report = crate::queues::run_replay(&app, 100).await;
    assert_eq!(
        (report.rows_done, report.rows_inserted),
        (3, 3),
        "{report:?}"
    );
    assert_eq!(clickhouse_rows(&app, "requests").await.len(), 5);
    assert_eq!(app.count("requests_fallback").await, 0);
}

fn small_limits(settings: &mut salvage::config::Settings) {
    settings.queues.per_key_quota = 10;
    settings.queues.total_cap = 25;
}

#[tokio::test]
async fn a_key_at_its_quota_gets_429_a_full_queue_507_and_nothing_is_dropped() {
    let app = spawn_app_with(Options {
        clickhouse_link: true,
        tweak: Some(small_limits),
        ..Options::default()
    })
    .await;
    app.clickhouse_link.as_ref().unwrap().cut();
    let rows = |n: usize| -> Value {
        Value::Array(
            (0..n)
                .map(|_| request_row("org_a", uuid::Uuid::new_v4()))
                .collect(),
        )
    };
    let (first, second, third) = (
        key_for(&app, "org_a").await,
        key_for(&app, "org_a").await,
        key_for(&app, "org_a").await,
    );

    assert_eq!(
        post_json(&app, &first, "/ingest/requests", &rows(8))
            .await
            .0,
        202
    );
    let response = app
        .http
        .post(format!("{}/ingest/requests", app.address))
        .bearer_auth(&first)
        .json(&rows(3))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
    let answer: Value = response.json().await.unwrap();
    let message = answer["message"].as_str().unwrap();
    assert!(
        message.contains("8 rows waiting") && message.contains("quota is 10"),
        "{message}"
    );
    assert_eq!(
        app.count("requests_fallback").await,
        8,
        "the refused batch left nothing"
    );

    assert_eq!(
        post_json(&app, &second, "/ingest/requests", &rows(10))
            .await
            .0,
        202
    );
    let (status, answer) = post_json(&app, &third, "/ingest/requests", &rows(8)).await;
    assert_eq!(status, 507, "{answer}");
    let message = answer["message"].as_str().unwrap();
    assert!(
        message.contains("18 rows") && message.contains("cap of 25"),
        "{message}"
    );
    assert_eq!(app.count("requests_fallback").await, 18);

    // Once ClickHouse is back, the same key's batch goes through: no quota applies there.
    app.clickhouse_link.as_ref().unwrap().restore();
    assert_eq!(
        post_json(&app, &first, "/ingest/requests", &rows(3))
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn tables_of_an_older_version_move_to_the_organisation_sort_key_with_every_row() {
    let mut settings = crate::helpers::base_settings();
    settings.clickhouse.database = format!("salvage_old_{}", uuid::Uuid::new_v4().simple());
    let clickhouse = settings.clickhouse_client();
    let run = |sql: String| {
        let clickhouse = clickhouse.clone();
        async move { clickhouse.client().query(&sql).execute().await.unwrap() }
    };
    let db = clickhouse.database().to_owned();
    // Through a client bound to a database that always exists.
    crate::helpers::base_settings()
        .clickhouse_client_for("default")
        .client()
        .query(&format!("CREATE DATABASE `{db}`"))
        .execute()
        .await
        .unwrap();
    // The definitions before this version.
    run(format!(
        "CREATE TABLE `{db}`.requests (id UUID, ts DateTime('UTC'), ts_ms UInt16,
         organization_id String, project String, provider String, model String,
         status UInt16, latency_ms UInt32, prompt_tokens UInt32, completion_tokens UInt32,
         cost_usd Float64, error Nullable(String), inserted_at DateTime('UTC') DEFAULT now())
         ENGINE = ReplacingMergeTree(inserted_at) PARTITION BY toYYYYMM(ts)
         ORDER BY (toDate(ts), id)"
    ))
    .await;
    run(format!(
        "CREATE TABLE `{db}`.events (id UUID, ts DateTime('UTC'), ts_ms UInt16,
         trace_id String, span_id String, parent_span_id Nullable(String),
         event_type Enum8('generation' = 1, 'trace' = 2, 'span' = 3), name String,
         duration_ms Nullable(UInt32), attributes String,
         inserted_at DateTime('UTC') DEFAULT now())
         ENGINE = ReplacingMergeTree(inserted_at) PARTITION BY toYYYYMM(ts)
         ORDER BY (toDate(ts), id)"
    ))
    .await;
    run(format!(
        "INSERT INTO `{db}`.requests (id, ts, ts_ms, organization_id, project, provider, model,
         status, latency_ms, prompt_tokens, completion_tokens, cost_usd, error)
         SELECT generateUUIDv4(), toDateTime('2026-11-20 10:00:00') + number, 0,
                concat('org_', toString(number % 3)), 'p', 'openai', 'm', 200, 1, 1, 1, 0, NULL
         FROM system.numbers LIMIT 1000"
    ))
    .await;
    run(format!(
        "INSERT INTO `{db}`.events (id, ts, ts_ms, trace_id, span_id, parent_span_id,
         event_type, name, duration_ms, attributes)
         SELECT generateUUIDv4(), toDateTime('2026-11-20 10:00:00') + number, 0, 't', 's',
                NULL, 'span', 'n', 1, '{{}}'
         FROM system.numbers LIMIT 500"
    ))
    .await;

    clickhouse.migrate().await.expect("the migration");
    clickhouse
        .migrate()
        .await
        .expect("and again: nothing left to do");

    for (table, rows) in [("requests", 1000_u64), ("events", 500)] {
        let key: String = clickhouse
            .client()
            .query("SELECT sorting_key FROM system.tables WHERE database = ? AND name = ?")
            .bind(&db)
            .bind(table)
            .fetch_one()
            .await
            .unwrap();
        assert!(key.contains("organization_id"), "{table}: {key}");
        let count: u64 = clickhouse
            .client()
            .query(&format!("SELECT count() FROM {table}"))
            .fetch_one()
            .await
            .unwrap();
        assert_eq!(count, rows, "{table}");
    }
    let leftovers: u64 = clickhouse
        .client()
        .query("SELECT count() FROM system.tables WHERE database = ? AND name LIKE '%\\_\\_v%'")
        .bind(&db)
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(leftovers, 0);
    clickhouse.drop_database().await.unwrap();
}
