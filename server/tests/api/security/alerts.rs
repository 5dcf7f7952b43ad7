//! Attacks the alerts invite: flooding the history with notes, huge selections, silences
//! that never end, and markup smuggled into an alert's title through a key's name.

use app::auth::Role;
use serde_json::json;

use crate::alerts::{evaluate, queue_rows, with_an_alert};
use crate::helpers::{spawn_app, spawn_app_tweaked};

#[tokio::test]
async fn alert_notes_are_rate_limited_per_person_and_a_refused_one_writes_nothing() {
    let (app, id, _) = with_an_alert().await;
    let operator = app.signed_in(Role::Operator).await;
    for i in 0..app::alerts::ssr::changes::NOTES_PER_WINDOW {
        let (status, body) = operator
            .call(
                "alerts/note",
                json!({"alert_id": id, "note": format!("note {i}")}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let before = (
        app.count("runbook_history").await,
        app.count("internal_alert_events").await,
    );
    let response = operator
        .call_server_fn(
            "alerts/note",
            json!({"alert_id": id, "note": "one too many"}),
        )
        .await;
    assert_eq!(response.status().as_u16(), 429);
    assert!(response.headers().get("retry-after").is_some());
    assert_eq!(
        before,
        (
            app.count("runbook_history").await,
            app.count("internal_alert_events").await
        )
    );
    // Another person is not held back by the first one's notes.
    let admin = app.signed_in(Role::Admin).await;
    let (status, _) = admin
        .call("alerts/note", json!({"alert_id": id, "note": "mine"}))
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_selection_of_more_than_200_alerts_is_refused_before_anything_is_read() {
    let app = spawn_app().await;
    let operator = app.signed_in(Role::Operator).await;
    let selection: Vec<String> = (1..=201).map(|id| format!("{id}@1")).collect();
    let (status, body) = operator
        .call(
            "alerts/acknowledge",
            json!({"selection": selection.join(","), "note": "all", "until": ""}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["field"], "selection");
}

#[tokio::test]
async fn a_silence_cannot_last_forever_or_carry_an_oversized_pattern() {
    let app = spawn_app().await;
    let operator = app.signed_in(Role::Operator).await;
    for (args, field) in [
        (
            json!({"kind": "clickhouse_down", "key": "", "ends_at": "31d", "reason": "forever"}),
            "ends_at",
        ),
        (
            json!({"kind": "clickhouse_down", "key": "x".repeat(201), "ends_at": "1h", "reason": "long"}),
            "key",
        ),
    ] {
        let (status, body) = operator.call("alerts/silence", args).await;
        assert_eq!(
            (status, body["field"].as_str()),
            (422, Some(field)),
            "{body}"
        );
    }
    assert_eq!(app.count("alert_silences").await, 0);
}

#[tokio::test]
async fn markup_in_a_key_name_reaches_the_alerts_page_as_text() {
    let app = spawn_app_tweaked(|settings| settings.queues.per_key_quota = 1).await;
    let (key, _) = app::ingest_keys::ssr::create(
        &app.pg,
        &app::auth::ssr::Actor::cli(),
        "<img src=x onerror=alert(1)>",
        "*",
    )
    .await
    .unwrap();
    queue_rows(&app, "requests", 1, app.state.clock.now(), Some(key)).await;
    evaluate(&app).await;
    let (status, html) = app
        .signed_in(Role::Operator)
        .await
        .get_html("/admin/alerts")
        .await;
    assert_eq!(status, 200);
    assert!(
        html.contains("is at its quota of queued rows"),
        "the alert is listed"
    );
    assert!(!html.contains("<img src=x"), "the name is escaped");
    assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
}
