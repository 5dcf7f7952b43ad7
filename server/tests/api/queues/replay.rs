//! Replay under faults: outages, a crash after the ClickHouse insert, two replayers at
//! once, exact per-key depths and retried batches.

use super::*;

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
    crashing.faults.replay_crash_after_insert = true;
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
async fn replay_claims_the_longest_queued_rows_first() {
    // 100 rows parked, then 50 more parked after them and dated an hour back (rows a
    // restore or a slow writer left behind the newer ones).
    let app = app_with_parked_rows(1, 100).await;
    let link = app.clickhouse_link.as_ref().unwrap();
    let key = ingest_key(&app).await;
    link.cut();
    assert_eq!(post_rows(&app, &key, &request_rows(1000, 50)).await.0, 202);
    link.restore();
    let later: Vec<uuid::Uuid> = request_rows(1000, 50)
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["id"].as_str().unwrap().parse().unwrap())
        .collect();
    sqlx::query(
        "update requests_fallback set queued_at = queued_at - interval '1 hour'
          where id = any($1)",
    )
    .bind(&later)
    .execute(&app.pg)
    .await
    .unwrap();

    // One batch of 50 reaches ClickHouse, then the run stops before its commit.
    let mut crashing = state_with_parallel(&app, 1);
    crashing.faults.replay_crash_after_insert = true;
    let report = replay_on(&crashing, 50).await;

    assert_eq!(report.status, RunStatus::Failed, "{report:?}");
    assert!(
        report
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("injected fault"),
        "{report:?}"
    );
    let mut sent: Vec<String> = app
        .clickhouse
        .client()
        .query("SELECT toString(id) FROM requests")
        .fetch_all()
        .await
        .unwrap();
    sent.sort();
    let mut oldest: Vec<String> = (1000..1050)
        .map(|i| request_rows(i, 1)[0]["id"].as_str().unwrap().to_owned())
        .collect();
    oldest.sort();
    assert_eq!(sent, oldest, "the first batch is the hour-old rows");
    let retried: i64 =
        sqlx::query_scalar("select count(*) from requests_fallback where attempts = 1")
            .fetch_one(&app.pg)
            .await
            .unwrap();
    assert_eq!(retried, 50, "the failed batch's rows are marked");
    assert_eq!(queued(&app).await, 150, "nothing left the queue");
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

#[tokio::test]
async fn the_clickhouse_lookup_names_exactly_the_rows_clickhouse_holds() {
    let app = spawn_app().await;
    let key = ingest_key(&app).await;
    // Rows 0..30 reach ClickHouse (dated 2026-11-20 to 22); rows 30..40 never do.
    assert_eq!(post_rows(&app, &key, &request_rows(0, 30)).await.0, 200);
    let id = |row: &Value| uuid::Uuid::parse_str(row["id"].as_str().unwrap()).unwrap();
    let held: Vec<uuid::Uuid> = request_rows(0, 30)
        .as_array()
        .unwrap()
        .iter()
        .map(id)
        .collect();
    let absent: Vec<uuid::Uuid> = request_rows(30, 10)
        .as_array()
        .unwrap()
        .iter()
        .map(id)
        .collect();
    let asked: Vec<uuid::Uuid> = held.iter().chain(&absent).copied().collect();
    let day = |d| time::Date::from_calendar_date(2026, time::Month::November, d).unwrap();

    let found = app
        .clickhouse
        .existing_rows(
            "requests",
            &asked,
            day(20),
            day(22),
            Duration::from_secs(30),
        )
        .await
        .expect("the lookup answers");

    let expected: std::collections::HashSet<(String, uuid::Uuid)> =
        held.iter().map(|id| ("org_1".to_owned(), *id)).collect();
    assert_eq!(found, expected);
    // The dates bound the lookup: the same ids on other days are not these rows.
    let elsewhere = app
        .clickhouse
        .existing_rows(
            "requests",
            &asked,
            day(23),
            day(25),
            Duration::from_secs(30),
        )
        .await
        .expect("the lookup answers");
    assert!(elsewhere.is_empty(), "{elsewhere:?}");
    // A table that is not there is an error, never an empty answer.
    let missing = app
        .clickhouse
        .existing_rows(
            "no_such_table",
            &asked,
            day(20),
            day(22),
            Duration::from_secs(30),
        )
        .await;
    assert!(missing.is_err(), "{missing:?}");
}
