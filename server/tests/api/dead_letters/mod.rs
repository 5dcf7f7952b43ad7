//! Webhook deliveries and dead letters, against real PostgreSQL and a real HTTP receiver
//! the tests start (`receiver`); time moves with the app's injected clock.

mod deliveries;
mod ingest;
pub mod receiver;
pub mod redrive;

use std::time::Duration;

use app::dead_letters::ssr::deliver::{work, DeliverReport};
use app::dead_letters::ssr::endpoints::{create, NewWebhook};
use serde_json::json;

use crate::helpers::TestApp;

/// A webhook to `url` for `order.paid` with `max_retries`: its id and secret.
pub async fn webhook(app: &TestApp, url: &str, max_retries: i32) -> (i64, String) {
    webhook_for(app, url, max_retries, &["order.paid"]).await
}

pub async fn webhook_for(
    app: &TestApp,
    url: &str,
    max_retries: i32,
    events: &[&str],
) -> (i64, String) {
    let created = create(
        &app.pg,
        &app.state.webhooks().secret_keys,
        &app::auth::ssr::Actor::cli(),
        &NewWebhook {
            url: url.to_owned(),
            description: String::new(),
            event_types: events.iter().map(|e| e.to_string()).collect(),
            max_retries,
            max_in_flight: 4,
        },
    )
    .await
    .unwrap();
    (created.id, created.secret.reveal().to_owned())
}

/// Enqueues `n` `order.paid` events as the ingest route does; returns their ids.
pub async fn events(app: &TestApp, n: usize) -> Vec<i64> {
    let now = app.state.clock.now();
    let mut ids = Vec::new();
    for i in 0..n {
        let mut tx = app.pg.begin().await.unwrap();
        let enqueued = app::dead_letters::ssr::ingest::enqueue(
            &mut tx,
            "order.paid",
            &json!({"order": i, "amount": 1200}),
            &uuid::Uuid::new_v4().to_string(),
            None,
            now,
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        ids.push(enqueued.event_id);
    }
    ids
}

/// A new webhook with `n` dead letters (events enqueued as ingest does, then
/// dead-lettered as `exhausted`): its id and `n`.
pub async fn dead_lettered(app: &TestApp, n: usize) -> (i64, usize) {
    let (webhook, _) = webhook(app, "https://hooks.example.com/in", 3).await;
    events(app, n).await;
    sqlx::query(
        "update webhook_deliveries set status = 'dead', dlq_at = now(), dlq_reason = 'exhausted'
          where webhook_id = $1 and status = 'pending'",
    )
    .bind(webhook)
    .execute(&app.pg)
    .await
    .unwrap();
    (webhook, n)
}

/// Delivers until nothing is due.
pub async fn deliver(app: &TestApp) -> DeliverReport {
    work(&app.state, Duration::from_secs(60), true, None)
        .await
        .expect("the worker records its attempts")
}

/// Deliveries of `webhook` by status.
pub async fn statuses(app: &TestApp, webhook: i64) -> Vec<(String, i64)> {
    sqlx::query_as(
        "select status, count(*) from webhook_deliveries where webhook_id = $1
          group by status order by status",
    )
    .bind(webhook)
    .fetch_all(&app.pg)
    .await
    .unwrap()
}

/// Dead letters of `webhook` by reason.
pub async fn reasons(app: &TestApp, webhook: i64) -> Vec<(String, i64)> {
    sqlx::query_as(
        "select dlq_reason, count(*) from webhook_deliveries
          where webhook_id = $1 and dlq_at is not null group by dlq_reason order by dlq_reason",
    )
    .bind(webhook)
    .fetch_all(&app.pg)
    .await
    .unwrap()
}

/// Moves the clock to the earliest pending retry of `webhook`.
pub async fn to_next_attempt(app: &TestApp, webhook: i64) -> time::OffsetDateTime {
    let next: time::OffsetDateTime = sqlx::query_scalar(
        "select min(next_attempt_at) from webhook_deliveries where webhook_id = $1 and status = 'pending'",
    )
    .bind(webhook)
    .fetch_one(&app.pg)
    .await
    .unwrap();
    app.state.clock.set(next + time::Duration::milliseconds(5));
    next
}
