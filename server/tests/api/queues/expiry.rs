//! Expiry, the cron routes, /health/deep and the console's Replay button.

use super::*;

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
    let first = details["firstQueuedAt"].as_i64().unwrap();
    let last = details["lastQueuedAt"].as_i64().unwrap();
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

    let (status, missing) = operator
        .call(
            "jobs/start",
            json!({"job": "replay-fallback", "reason": " "}),
        )
        .await;
    assert_eq!((status, missing["field"].as_str()), (422, Some("reason")));
    let (status, run_id) = operator
        .call(
            "jobs/start",
            json!({"job": "replay-fallback", "reason": "ClickHouse is back"}),
        )
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
