//! Alerts: each kind raised at its threshold and not below, the lifecycle (occurrences,
//! auto-resolve, regressions, flapping, acknowledgements that run out), the race-safe
//! changes people make, silences, and the self-monitor on two replicas at once.

mod actions;
mod kinds;
mod lifecycle;
pub(crate) mod plain_page;

use app::alerts::ssr::EvaluationReport;
use serde_json::Value;
use time::OffsetDateTime;

use crate::helpers::TestApp;

/// One evaluation by the self-monitor at the app's clock.
pub(crate) async fn evaluate(app: &TestApp) -> EvaluationReport {
    app::alerts::ssr::evaluate(&app.state, app.state.clock.now())
        .await
        .expect("the evaluation is recorded")
}

/// Queues `n` rows in `queue` (`requests` or `events`), queued at `at`, for key `key`.
pub(crate) async fn queue_rows(
    app: &TestApp,
    queue: &str,
    n: i64,
    at: OffsetDateTime,
    key: Option<i64>,
) {
    sqlx::query(&format!(
        "insert into {queue}_fallback (organization_id, id, ts, row_json, queued_at, key_id)
         select 'org_1', gen_random_uuid(), now(), '{{}}', $2, $3 from generate_series(1, $1)"
    ))
    .bind(n)
    .bind(at)
    .bind(key)
    .execute(&app.pg)
    .await
    .unwrap();
}

/// Empties `queue`.
pub(crate) async fn empty_queue(app: &TestApp, queue: &str) {
    sqlx::query(&format!("delete from {queue}_fallback"))
        .execute(&app.pg)
        .await
        .unwrap();
}

/// An app with one open `fallback_queue_high` alert on `requests` (1,500 rows queued,
/// one evaluation): (app, id, version).
pub(crate) async fn with_an_alert() -> (TestApp, i64, i32) {
    let app = crate::helpers::spawn_app().await;
    queue_rows(&app, "requests", 1_500, app.state.clock.now(), None).await;
    evaluate(&app).await;
    let (id, version) = open_alert(&app, "fallback_queue_high", "requests")
        .await
        .unwrap();
    (app, id, version)
}

/// Every alert of `kind`: (id, key, severity, status, occurrences).
pub(crate) async fn alerts_of(
    app: &TestApp,
    kind: &str,
) -> Vec<(i64, String, String, String, i64)> {
    sqlx::query_as(
        "select id, dedup_key, severity, status, occurrences from internal_alerts
          where kind = $1 order by id",
    )
    .bind(kind)
    .fetch_all(&app.pg)
    .await
    .unwrap()
}

/// The open alert of `kind` for `key`, with its version.
pub(crate) async fn open_alert(app: &TestApp, kind: &str, key: &str) -> Option<(i64, i32)> {
    sqlx::query_as(
        "select id, version from internal_alerts
          where kind = $1 and dedup_key = $2 and status <> 'resolved'",
    )
    .bind(kind)
    .bind(key)
    .fetch_optional(&app.pg)
    .await
    .unwrap()
}

/// Raises `signal` as a `data_expired` alert, as expiry does; returns its id.
pub(crate) async fn raise_data_expired_signal(
    pg: &sqlx::PgPool,
    signal: &app::alerts::ssr::Signal,
) -> i64 {
    let mut tx = pg.begin().await.unwrap();
    let id = app::alerts::ssr::store::raise_event(
        &mut tx,
        &app::queues::ssr::alerts::DATA_EXPIRED,
        signal,
        time::OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    id
}

/// Raises a critical `data_expired` alert for `key`, as expiry does.
pub(crate) async fn raise_data_expired(app: &TestApp, key: &str) {
    let signal =
        app::alerts::ssr::Signal::new(key, app::alerts::Severity::Critical, "Rows expired");
    raise_data_expired_signal(&app.pg, &signal).await;
}

/// The events of alert `id`, oldest first.
pub(crate) async fn events(app: &TestApp, id: i64) -> Vec<String> {
    sqlx::query_scalar(
        "select event from internal_alert_events where alert_id = $1 order by at, id",
    )
    .bind(id)
    .fetch_all(&app.pg)
    .await
    .unwrap()
}

/// The message of an error answer.
pub(crate) fn message(body: &Value) -> String {
    body["message"].as_str().unwrap_or_default().to_owned()
}
