//! `POST /ingest/webhook-events`, alert notifications as deliveries, the alert kinds and
//! `/health/deep`.

use serde_json::{json, Value};

use super::receiver::{Behaviour, Receiver};
use super::{deliver, events, webhook, webhook_for};
use crate::helpers::{spawn_app, TestApp};

/// A key for every organisation (`*`), the only kind that may enqueue events.
async fn key(app: &TestApp) -> String {
    key_for(app, "*").await
}

async fn key_for(app: &TestApp, organisation: &str) -> String {
    app::ingest_keys::ssr::create(
        &app.pg,
        &app::auth::ssr::Actor::cli(),
        "events",
        organisation,
    )
    .await
    .unwrap()
    .1
}

async fn post(app: &TestApp, key: Option<&str>, body: String) -> (u16, Value) {
    let mut request = app
        .http
        .post(format!("{}/ingest/webhook-events", app.address))
        .header("content-type", "application/json")
        .body(body);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn an_event_becomes_one_delivery_per_subscribed_webhook_and_bad_input_changes_nothing() {
    let app = spawn_app().await;
    let key = key(&app).await;
    let receiver = Receiver::start().await;
    webhook(&app, &receiver.url("a"), 5).await;
    webhook(&app, &receiver.url("b"), 5).await;
    webhook_for(&app, &receiver.url("c"), 5, &["customer.updated"]).await;

    let event = |key: &str, payload: Value| {
        json!({"event_type": "order.paid", "payload": payload, "idempotency_key": key}).to_string()
    };
    let (status, body) = post(&app, Some(&key), event("k1", json!({"order": 1}))).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["deliveries"], 2, "the two order.paid webhooks");
    assert_eq!(app.count("webhook_deliveries").await, 2);

    // The same key and payload: the first answer, nothing new.
    let (status, again) = post(&app, Some(&key), event("k1", json!({"order": 1}))).await;
    assert_eq!(
        (status, &again["eventId"], again["duplicate"].as_bool()),
        (200, &body["eventId"], Some(true))
    );
    // The same key with another payload: refused.
    let (status, conflict) = post(&app, Some(&key), event("k1", json!({"order": 2}))).await;
    assert_eq!(status, 409, "{conflict}");

    let refusals = [
        (None, event("k2", json!({})), 401),
        (
            Some(key.as_str()),
            r#"{"event_type":"order.lost","payload":{},"idempotency_key":"k3"}"#.to_owned(),
            422,
        ),
        (
            Some(key.as_str()),
            r#"{"event_type":"order.paid","payload":{}}"#.to_owned(),
            422,
        ),
        (Some(key.as_str()), "not json".to_owned(), 400),
        (
            Some(key.as_str()),
            event("k4", json!({"blob": "x".repeat(256 * 1024)})),
            413,
        ),
        (
            Some(key.as_str()),
            event("k5", json!({"blob": "x".repeat(400 * 1024)})),
            413,
        ),
    ];
    for (key, body, expected) in refusals {
        let (status, answer) = post(&app, key, body).await;
        assert_eq!(status, expected, "{answer}");
        if expected == 422 {
            assert!(answer["field"].is_string(), "names the field: {answer}");
        }
    }
    assert_eq!(
        app.count("webhook_events").await,
        1,
        "nothing else was stored"
    );
    assert_eq!(app.count("webhook_deliveries").await, 2);

    deliver(&app).await;
    assert_eq!(receiver.hits("a").len(), 1);
    assert_eq!(receiver.hits("b").len(), 1);
    assert!(receiver.hits("c").is_empty());
    let sent: Value = serde_json::from_slice(&receiver.hits("a")[0].body).unwrap();
    assert_eq!(sent, json!({"order": 1}));
}

#[tokio::test]
async fn alert_notifications_go_out_as_slack_compatible_deliveries_and_silenced_alerts_do_not() {
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    let (hook, _) = webhook_for(&app, &receiver.url("slack"), 5, &["salvage.alert"]).await;

    let raise = |key: &'static str| {
        let pg = app.pg.clone();
        async move {
            let signal = app::alerts::ssr::Signal::new(
                key,
                app::alerts::Severity::Critical,
                "Something broke",
            )
            .counted(48_210.0, "rows");
            crate::alerts::raise_data_expired_signal(&pg, &signal).await
        }
    };
    // A silence on one key: its alert is recorded but not sent.
    sqlx::query(
        "insert into alert_silences (kind, key_like, starts_at, ends_at, created_by, reason)
         values ('data_expired', 'quiet', now() - interval '1 minute', now() + interval '1 hour', 'test', 'test')",
    )
    .execute(&app.pg)
    .await
    .unwrap();
    let loud = raise("loud").await;
    raise("quiet").await;

    let answer = crate::helpers::run_job(&app, "deliver-webhooks").await;
    assert_eq!(answer["notifications"], 1, "{answer}");
    let hits = receiver.hits("slack");
    assert_eq!(hits.len(), 1);
    let body: Value = serde_json::from_slice(&hits[0].body).unwrap();
    let text = body["text"].as_str().unwrap();
    assert!(
        text.contains("[critical] Raised: Something broke (48,210 rows)"),
        "{text}"
    );
    assert!(
        text.contains(&format!("/admin/alerts?alert={loud}")),
        "{text}"
    );
    assert_eq!(body["alert"]["kind"], "data_expired");
    assert_eq!(body["attachments"][0]["title"], "Something broke");
    assert_eq!(
        super::statuses(&app, hook).await,
        vec![("delivered".into(), 1)]
    );

    // Sent once: the next run sends nothing new.
    let again = crate::helpers::run_job(&app, "deliver-webhooks").await;
    assert_eq!(again["notifications"], 0);
    assert_eq!(receiver.hits("slack").len(), 1);
}

#[tokio::test]
async fn backlog_paused_growth_and_retention_raise_their_alerts_and_deep_health_counts_them() {
    let app = spawn_app_tweaked_for_alerts().await;
    let receiver = Receiver::start().await;
    receiver.set("down", Behaviour::status(500));
    let (down, _) = webhook(&app, &receiver.url("down"), 0).await;
    events(&app, 4).await;

    // Four due, undelivered: over the threshold of 3 (fire after two evaluations).
    crate::alerts::evaluate(&app).await;
    crate::alerts::evaluate(&app).await;
    let backlog = crate::alerts::alerts_of(&app, "webhook_backlog").await;
    assert_eq!(backlog.len(), 1);
    assert_eq!(backlog[0].1, down.to_string());

    // Sent and failed (no retries): four dead letters, over 2 an hour; the circuit opens
    // after 3 failures.
    deliver(&app).await;
    crate::alerts::evaluate(&app).await;
    assert_eq!(crate::alerts::alerts_of(&app, "dlq_growing").await.len(), 1);
    assert_eq!(
        crate::alerts::alerts_of(&app, "webhook_paused").await.len(),
        1
    );
    assert!(crate::alerts::alerts_of(&app, "dlq_retention_near")
        .await
        .is_empty());

    let (_, health) = app.anonymous.get_json("/health/deep").await;
    assert_eq!(health["webhooks"]["dlq_count"], 4, "{health}");
    assert_eq!(health["webhooks"]["paused"], 1);
    assert_eq!(health["webhooks"]["backlog_count"], 0);

    // Near the 30 days of retention: warned three days before.
    app.state.clock.advance(time::Duration::days(28));
    crate::alerts::evaluate(&app).await;
    assert_eq!(
        crate::alerts::alerts_of(&app, "dlq_retention_near")
            .await
            .len(),
        1
    );
}

#[tokio::test]
async fn a_dead_letter_queue_over_its_count_stays_raised_after_it_stops_growing() {
    let app = crate::helpers::spawn_app_tweaked(|settings| {
        settings.webhooks.dlq_count_high = 3;
        settings.webhooks.dlq_growing_per_hour = 1_000;
    })
    .await;

    // Three dead letters: at the threshold, nothing.
    super::dead_lettered(&app, 3).await;
    crate::alerts::evaluate(&app).await;
    assert!(crate::alerts::alerts_of(&app, "dlq_count_high")
        .await
        .is_empty());

    // One more: over it.
    super::dead_lettered(&app, 1).await;
    crate::alerts::evaluate(&app).await;
    let open = crate::alerts::alerts_of(&app, "dlq_count_high").await;
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(
        (open[0].2.as_str(), open[0].3.as_str()),
        ("warning", "firing")
    );

    // A day later nothing new was dead-lettered (not growing), and the four still wait:
    // still raised, where the growth alert would have gone quiet.
    app.state.clock.advance(time::Duration::days(1));
    crate::alerts::evaluate(&app).await;
    let open = crate::alerts::alerts_of(&app, "dlq_count_high").await;
    assert_eq!(open[0].3, "firing", "{open:?}");
}

async fn spawn_app_tweaked_for_alerts() -> TestApp {
    crate::helpers::spawn_app_tweaked(|settings| {
        settings.webhooks.backlog_rows = 3;
        settings.webhooks.dlq_growing_per_hour = 2;
        settings.webhooks.breaker_failures = 3;
    })
    .await
}

#[tokio::test]
async fn a_key_for_one_organisation_cannot_enqueue_events_for_every_subscriber() {
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    webhook(&app, &receiver.url("a"), 5).await;
    let tenant = key_for(&app, "org_1").await;
    let service = key(&app).await;
    let event = json!({"event_type": "order.paid", "payload": {"order": 1},
                       "idempotency_key": "shared-k1"})
    .to_string();

    let (status, body) = post(&app, Some(&tenant), event.clone()).await;

    assert_eq!(status, 403, "{body}");
    assert!(body.to_string().contains("every organisation"), "{body}");
    assert_eq!(app.count("webhook_events").await, 0);
    assert_eq!(app.count("webhook_deliveries").await, 0);
    // The tenant's refused post took nothing from the service's namespace of keys.
    let (status, body) = post(&app, Some(&service), event).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["duplicate"], false);
}
