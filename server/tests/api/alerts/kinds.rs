//! Each kind is raised at its threshold and not below.

use app::auth::Role;
use serde_json::json;
use time::Duration;

use super::{alerts_of, empty_queue, evaluate, open_alert, queue_rows};
use crate::helpers::{spawn_app, spawn_app_tweaked, spawn_app_with, Options};

#[tokio::test]
async fn fallback_queue_high_is_raised_over_1000_rows_and_critical_over_100000() {
    let app = spawn_app().await;
    let now = app.state.clock.now();
    queue_rows(&app, "requests", 1_000, now, None).await;
    evaluate(&app).await;
    assert!(
        alerts_of(&app, "fallback_queue_high").await.is_empty(),
        "1,000 rows is not over 1,000"
    );

    queue_rows(&app, "requests", 1, now, None).await;
    evaluate(&app).await;
    let raised = alerts_of(&app, "fallback_queue_high").await;
    assert_eq!(raised.len(), 1);
    assert_eq!(
        (raised[0].1.as_str(), raised[0].2.as_str()),
        ("requests", "warning")
    );
    let (figure, threshold): (f64, f64) =
        sqlx::query_as("select figure, threshold from internal_alerts where id = $1")
            .bind(raised[0].0)
            .fetch_one(&app.pg)
            .await
            .unwrap();
    assert_eq!((figure, threshold), (1_001.0, 1_000.0));

    queue_rows(&app, "requests", 98_999, now, None).await;
    evaluate(&app).await;
    assert_eq!(
        alerts_of(&app, "fallback_queue_high").await[0].2,
        "warning",
        "100,000 rows is not over 100,000"
    );
    queue_rows(&app, "requests", 1, now, None).await;
    evaluate(&app).await;
    let graded = alerts_of(&app, "fallback_queue_high").await;
    assert_eq!(graded.len(), 1, "the same alert, re-graded: {graded:?}");
    assert_eq!(graded[0].2, "critical");
    assert!(super::events(&app, graded[0].0)
        .await
        .contains(&"severity_changed".to_owned()));
    assert!(open_alert(&app, "fallback_queue_high", "events")
        .await
        .is_none());
}

#[tokio::test]
async fn fallback_queue_old_is_raised_past_half_the_ttl_and_critical_past_85_percent() {
    let app = spawn_app().await;
    let now = app.state.clock.now();
    let ttl = Duration::try_from(app.state.queues().ttl).unwrap();
    queue_rows(
        &app,
        "events",
        1,
        now - ttl / 2 + Duration::minutes(1),
        None,
    )
    .await;
    evaluate(&app).await;
    assert!(
        alerts_of(&app, "fallback_queue_old").await.is_empty(),
        "under half of the TTL"
    );

    app.state.clock.advance(Duration::minutes(2));
    evaluate(&app).await;
    let raised = alerts_of(&app, "fallback_queue_old").await;
    assert_eq!(raised.len(), 1);
    assert_eq!(
        (raised[0].1.as_str(), raised[0].2.as_str()),
        ("events", "warning")
    );

    app.state.clock.advance(ttl * 35 / 100);
    evaluate(&app).await;
    assert_eq!(alerts_of(&app, "fallback_queue_old").await[0].2, "critical");
}

#[tokio::test]
async fn clickhouse_down_needs_two_evaluations_and_clears_after_two_more() {
    let app = spawn_app_with(Options {
        clickhouse_link: true,
        ..Options::default()
    })
    .await;
    let link = app.clickhouse_link.as_ref().unwrap();
    evaluate(&app).await;
    link.cut();
    evaluate(&app).await;
    assert!(
        alerts_of(&app, "clickhouse_down").await.is_empty(),
        "one failed ping raises nothing"
    );
    evaluate(&app).await;
    let raised = alerts_of(&app, "clickhouse_down").await;
    assert_eq!(raised.len(), 1);
    assert_eq!(
        (raised[0].2.as_str(), raised[0].3.as_str()),
        ("critical", "firing")
    );

    link.restore();
    evaluate(&app).await;
    assert_eq!(
        alerts_of(&app, "clickhouse_down").await[0].3,
        "firing",
        "one clear evaluation is not enough"
    );
    evaluate(&app).await;
    assert_eq!(alerts_of(&app, "clickhouse_down").await[0].3, "resolved");
}

#[tokio::test]
async fn replay_failing_is_raised_by_two_failed_runs_in_a_row_or_rows_that_failed_three_attempts() {
    let app = spawn_app().await;
    let run = |outcome: &'static str, minutes_ago: i64| {
        let pg = app.pg.clone();
        async move {
            sqlx::query(
                "insert into cron_job_runs (job_name, ran_at, heartbeat_at, finished_at, trigger, actor, outcome, error)
                 values ('replay-fallback', now() - $2 * interval '1 minute', now(), now(), 'scheduler', 'system:scheduler', $1, 'refused')",
            )
            .bind(outcome)
            .bind(minutes_ago)
            .execute(&pg)
            .await
            .unwrap();
        }
    };
    run("failed", 10).await;
    run("succeeded", 5).await;
    run("failed", 1).await;
    evaluate(&app).await;
    assert!(
        alerts_of(&app, "replay_failing").await.is_empty(),
        "one failure after a success"
    );

    queue_rows(&app, "requests", 3, app.state.clock.now(), None).await;
    sqlx::query("update requests_fallback set attempts = 2")
        .execute(&app.pg)
        .await
        .unwrap();
    evaluate(&app).await;
    assert!(
        alerts_of(&app, "replay_failing").await.is_empty(),
        "two attempts are not three"
    );
    sqlx::query("update requests_fallback set attempts = 3")
        .execute(&app.pg)
        .await
        .unwrap();
    evaluate(&app).await;
    assert_eq!(alerts_of(&app, "replay_failing").await[0].2, "warning");

    run("abandoned", 0).await;
    evaluate(&app).await;
    let graded = alerts_of(&app, "replay_failing").await;
    assert_eq!(
        (graded.len(), graded[0].2.as_str()),
        (1, "critical"),
        "two failed runs in a row"
    );
}

#[tokio::test]
async fn cron_dropout_names_the_failing_job() {
    let app = spawn_app().await;
    sqlx::query(
        "insert into cron_job_runs (job_name, ran_at, heartbeat_at, finished_at, trigger, actor, outcome, error)
         values ('expire-fallback', now(), now(), now(), 'scheduler', 'system:scheduler', 'failed', 'statement timeout')",
    )
    .execute(&app.pg)
    .await
    .unwrap();
    evaluate(&app).await;
    let raised = alerts_of(&app, "cron_dropout").await;
    assert_eq!(raised.len(), 1, "{raised:?}");
    assert_eq!(raised[0].1, "expire-fallback");
    let title: String = sqlx::query_scalar("select title from internal_alerts where id = $1")
        .bind(raised[0].0)
        .fetch_one(&app.pg)
        .await
        .unwrap();
    assert!(
        title.contains("expire-fallback") && title.contains("failing"),
        "{title}"
    );
}

#[tokio::test]
async fn expiry_raises_data_expired_in_its_own_transaction_and_only_a_person_resolves_it() {
    let app = spawn_app().await;
    let ttl = Duration::try_from(app.state.queues().ttl).unwrap();
    let now = app.state.clock.now();
    queue_rows(&app, "requests", 5, now - ttl - Duration::hours(1), None).await;
    queue_rows(&app, "requests", 2, now, None).await;
    crate::helpers::run_job(&app, "expire-fallback").await;

    let raised = alerts_of(&app, "data_expired").await;
    assert_eq!(raised.len(), 1);
    assert_eq!(
        (raised[0].1.as_str(), raised[0].2.as_str()),
        ("requests", "critical")
    );
    let figure: f64 = sqlx::query_scalar("select figure from internal_alerts where id = $1")
        .bind(raised[0].0)
        .fetch_one(&app.pg)
        .await
        .unwrap();
    assert_eq!(figure, 5.0, "the rows it deleted");
    assert_eq!(app.count("requests_fallback").await, 2);

    for _ in 0..3 {
        evaluate(&app).await;
    }
    assert_eq!(
        alerts_of(&app, "data_expired").await[0].3,
        "firing",
        "the self-monitor never resolves a loss"
    );

    let operator = app.signed_in(Role::Operator).await;
    let (_, version) = open_alert(&app, "data_expired", "requests").await.unwrap();
    let selection = format!("{}@{version}", raised[0].0);
    let (status, body) = operator
        .call(
            "alerts/resolve",
            json!({"selection": selection, "note": ""}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["field"], "note");
    let (status, body) = operator
        .call(
            "alerts/resolve",
            json!({"selection": selection, "note": "test data only"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(alerts_of(&app, "data_expired").await[0].3, "resolved");
}

#[tokio::test]
async fn ingest_quota_names_the_key_at_its_quota_and_the_cap_for_the_queues() {
    let app = spawn_app_tweaked(|settings| {
        settings.queues.per_key_quota = 10;
        settings.queues.total_cap = 30;
    })
    .await;
    let (key, _) =
        app::ingest_keys::ssr::create(&app.pg, &app::auth::ssr::Actor::cli(), "importer", "*")
            .await
            .unwrap();
    let now = app.state.clock.now();
    queue_rows(&app, "requests", 9, now, Some(key)).await;
    evaluate(&app).await;
    assert!(
        alerts_of(&app, "ingest_quota").await.is_empty(),
        "under the quota"
    );
    queue_rows(&app, "events", 1, now, Some(key)).await;
    evaluate(&app).await;
    let raised = alerts_of(&app, "ingest_quota").await;
    assert_eq!(raised.len(), 1);
    assert_eq!(raised[0].1, format!("key-{key}"));
    let title: String = sqlx::query_scalar("select title from internal_alerts where id = $1")
        .bind(raised[0].0)
        .fetch_one(&app.pg)
        .await
        .unwrap();
    assert!(title.contains("importer"), "{title}");

    queue_rows(&app, "requests", 20, now, None).await;
    evaluate(&app).await;
    assert!(
        open_alert(&app, "ingest_quota", "all").await.is_some(),
        "30 rows: the cap"
    );
    empty_queue(&app, "requests").await;
    empty_queue(&app, "events").await;
    evaluate(&app).await;
    evaluate(&app).await;
    assert!(alerts_of(&app, "ingest_quota")
        .await
        .iter()
        .all(|a| a.3 == "resolved"));
}
