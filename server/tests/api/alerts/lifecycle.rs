//! What the self-monitor does over time: one alert per condition, auto-resolve after the
//! recovering window, regressions, flapping, acknowledgements that run out, outages of
//! PostgreSQL recorded afterwards, two replicas at once.

use time::Duration;

use super::{alerts_of, empty_queue, evaluate, events, open_alert, queue_rows, with_an_alert};
use crate::helpers::spawn_app;

#[tokio::test]
async fn a_second_evaluation_counts_an_occurrence_and_keeps_the_version() {
    let (app, id, version) = with_an_alert().await;
    for _ in 0..2 {
        app.state.clock.advance(Duration::minutes(1));
        evaluate(&app).await;
    }
    let all = alerts_of(&app, "fallback_queue_high").await;
    assert_eq!(all.len(), 1, "one alert per kind and key: {all:?}");
    assert_eq!(all[0].4, 3, "three evaluations, three occurrences");
    assert_eq!(
        open_alert(&app, "fallback_queue_high", "requests").await,
        Some((id, version)),
        "counting is not a change a person races"
    );
    let notices: i64 =
        sqlx::query_scalar("select count(*) from alert_notifications where alert_id = $1")
            .bind(id)
            .fetch_one(&app.pg)
            .await
            .unwrap();
    assert_eq!(
        notices, 1,
        "one notification for the raise, none per occurrence"
    );
}

#[tokio::test]
async fn an_alert_resolves_after_two_clear_evaluations_and_fires_again_as_a_regression() {
    let app = spawn_app().await;
    queue_rows(&app, "events", 1_500, app.state.clock.now(), None).await;
    evaluate(&app).await;
    let (first, _) = open_alert(&app, "fallback_queue_high", "events")
        .await
        .unwrap();
    empty_queue(&app, "events").await;
    evaluate(&app).await;
    assert!(
        open_alert(&app, "fallback_queue_high", "events")
            .await
            .is_some(),
        "one clear evaluation"
    );
    evaluate(&app).await;
    assert!(
        open_alert(&app, "fallback_queue_high", "events")
            .await
            .is_none(),
        "resolved after two"
    );
    let (by, status): (String, String) =
        sqlx::query_as("select resolved_by, status from internal_alerts where id = $1")
            .bind(first)
            .fetch_one(&app.pg)
            .await
            .unwrap();
    assert_eq!(
        (by.as_str(), status.as_str()),
        ("system:self-monitor", "resolved")
    );
    assert_eq!(events(&app, first).await, vec!["raised", "auto_resolved"]);

    queue_rows(&app, "events", 1_500, app.state.clock.now(), None).await;
    evaluate(&app).await;
    let (second, _) = open_alert(&app, "fallback_queue_high", "events")
        .await
        .unwrap();
    assert_ne!(second, first, "a new alert");
    let previous: Option<i64> =
        sqlx::query_scalar("select regressed_from from internal_alerts where id = $1")
            .bind(second)
            .fetch_one(&app.pg)
            .await
            .unwrap();
    assert_eq!(previous, Some(first));
    assert_eq!(events(&app, second).await, vec!["regressed"]);
}

#[tokio::test]
async fn a_condition_that_keeps_toggling_is_marked_flapping_stays_open_and_settles_after_the_window(
) {
    let app = spawn_app().await;
    let clock = &app.state.clock;
    let step = || clock.advance(Duration::minutes(1));
    // fire, clear, clear (resolved), fire (regressed), clear, clear (resolved), fire:
    // the fifth state change within 30 minutes.
    for round in 0..3 {
        queue_rows(&app, "requests", 1_500, clock.now(), None).await;
        evaluate(&app).await;
        step();
        if round < 2 {
            empty_queue(&app, "requests").await;
            evaluate(&app).await;
            step();
            evaluate(&app).await;
            step();
        }
    }
    let (id, _) = open_alert(&app, "fallback_queue_high", "requests")
        .await
        .unwrap();
    let flapping: bool = sqlx::query_scalar("select flapping from internal_alerts where id = $1")
        .bind(id)
        .fetch_one(&app.pg)
        .await
        .unwrap();
    assert!(flapping, "{:?}", events(&app, id).await);
    let loud: i64 = sqlx::query_scalar(
        "select count(*) from alert_notifications where alert_id = $1 and quiet_reason is null",
    )
    .bind(id)
    .fetch_one(&app.pg)
    .await
    .unwrap();
    assert_eq!(loud, 0, "a flapping alert stays quiet");

    empty_queue(&app, "requests").await;
    for _ in 0..3 {
        evaluate(&app).await;
        step();
    }
    assert!(
        open_alert(&app, "fallback_queue_high", "requests")
            .await
            .is_some(),
        "flapping: it stays open"
    );

    clock.advance(Duration::minutes(31));
    evaluate(&app).await;
    evaluate(&app).await;
    assert!(
        open_alert(&app, "fallback_queue_high", "requests")
            .await
            .is_none(),
        "stable for the window, then resolved"
    );
    let timeline = events(&app, id).await;
    assert!(
        timeline.contains(&"flapping".to_owned()) && timeline.contains(&"stable".to_owned()),
        "{timeline:?}"
    );
}

#[tokio::test]
async fn an_acknowledgement_runs_out_and_a_higher_severity_ends_it() {
    let (app, id, version) = with_an_alert().await;
    let operator = app.signed_in(app::auth::Role::Operator).await;
    let (status, body) = operator
        .call("alerts/acknowledge", serde_json::json!({"selection": format!("{id}@{version}"), "note": "draining", "until": "1h"}))
        .await;
    assert_eq!(status, 200, "{body}");
    app.state.clock.advance(Duration::minutes(30));
    evaluate(&app).await;
    assert_eq!(
        alerts_of(&app, "fallback_queue_high").await[0].3,
        "acknowledged"
    );
    app.state.clock.advance(Duration::minutes(31));
    evaluate(&app).await;
    assert_eq!(
        alerts_of(&app, "fallback_queue_high").await[0].3,
        "firing",
        "past its until"
    );
    assert!(events(&app, id)
        .await
        .contains(&"unacknowledged".to_owned()));
    let renotified: i64 = sqlx::query_scalar(
        "select count(*) from alert_notifications where alert_id = $1 and event = 'unacknowledged'",
    )
    .bind(id)
    .fetch_one(&app.pg)
    .await
    .unwrap();
    assert_eq!(renotified, 1);

    let (_, version) = open_alert(&app, "fallback_queue_high", "requests")
        .await
        .unwrap();
    operator
        .call("alerts/acknowledge", serde_json::json!({"selection": format!("{id}@{version}"), "note": "still draining", "until": ""}))
        .await;
    queue_rows(&app, "requests", 100_000, app.state.clock.now(), None).await;
    evaluate(&app).await;
    let graded = alerts_of(&app, "fallback_queue_high").await;
    assert_eq!(
        (graded[0].2.as_str(), graded[0].3.as_str()),
        ("critical", "firing"),
        "a rise un-acknowledges"
    );
}

#[tokio::test]
async fn an_outage_of_postgresql_is_recorded_when_it_answers_again() {
    let app = spawn_app().await;
    let start = app.state.clock.now() - Duration::minutes(3);
    app.state.postgres_watch.failed(start);
    app.state
        .postgres_watch
        .answered(start + Duration::seconds(95));
    evaluate(&app).await;
    let recorded: Vec<(String, f64, String)> = sqlx::query_as(
        "select status, figure, resolved_by from internal_alerts where kind = 'postgres_down'",
    )
    .fetch_all(&app.pg)
    .await
    .unwrap();
    assert_eq!(
        recorded,
        vec![(
            "resolved".to_owned(),
            95.0,
            "system:self-monitor".to_owned()
        )]
    );
    evaluate(&app).await;
    assert_eq!(
        alerts_of(&app, "postgres_down").await.len(),
        1,
        "recorded once"
    );
}

#[tokio::test]
async fn two_replicas_evaluating_at_once_raise_each_alert_once() {
    let app = spawn_app().await;
    queue_rows(&app, "requests", 1_500, app.state.clock.now(), None).await;
    queue_rows(&app, "events", 200_000, app.state.clock.now(), None).await;
    // A second replica: its own state (pools, watch) on the same databases.
    let other = salvage::startup::build_state(&{
        let mut settings = crate::helpers::base_settings();
        settings.database_url = secrecy::SecretString::from(app.database_url.clone());
        settings.migrate_database_url = None;
        settings
    });
    let now = app.state.clock.now();
    let mut skipped = 0;
    for _ in 0..5 {
        let (a, b) = tokio::join!(
            app::alerts::ssr::evaluate(&app.state, now),
            app::alerts::ssr::evaluate(&other, now)
        );
        skipped += i32::from(a.unwrap().skipped) + i32::from(b.unwrap().skipped);
    }
    let high = alerts_of(&app, "fallback_queue_high").await;
    assert_eq!(high.len(), 2, "one per queue: {high:?}");
    let occurrences: i64 = high.iter().map(|a| a.4).sum();
    assert_eq!(
        occurrences + 2 * i64::from(skipped),
        20,
        "every evaluation counted once or skipped whole"
    );
}

#[tokio::test]
async fn an_alert_silenced_after_it_was_announced_still_announces_its_resolution() {
    let (app, id, _) = with_an_alert().await;
    let operator = app.signed_in(app::auth::Role::Operator).await;
    let (status, _) = operator
        .call("alerts/silence", serde_json::json!({"kind": "fallback_queue_high", "key": "", "ends_at": "4h", "reason": "noisy during the upgrade"}))
        .await;
    assert_eq!(status, 200);
    empty_queue(&app, "requests").await;
    evaluate(&app).await;
    evaluate(&app).await;
    let notices: Vec<(String, Option<String>)> = sqlx::query_as(
        "select event, quiet_reason from alert_notifications where alert_id = $1 order by id",
    )
    .bind(id)
    .fetch_all(&app.pg)
    .await
    .unwrap();
    assert_eq!(
        notices,
        vec![("raised".to_owned(), None), ("resolved".to_owned(), None)],
        "the raise was sent, so the resolution is too, silence or not"
    );
}
