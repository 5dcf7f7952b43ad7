//! Alert notifications, sent as webhook deliveries: every notification the alerts record
//! (raised, severity rise, un-acknowledged, resolved; never a silenced or flapping one)
//! becomes an event of type `salvage.alert` for each webhook subscribed to it, in a
//! Slack-compatible payload (`text` and an attachment, plus an `alert` object for
//! programs). They are deliveries like any other: retried, dead-lettered, on /admin/dlq.

use serde_json::{json, Value};
use time::Duration;

use super::super::ALERT_EVENT_TYPE;
use crate::alerts::ssr::store::{take_unsent, Notification};
use crate::error::AppError;
use crate::server::AppState;

/// Notifications older than this are not sent (a webhook added today does not receive
/// last month's alerts).
pub const NOT_OLDER_THAN: Duration = Duration::hours(1);

/// Turns the notifications not yet sent into deliveries; returns how many. Nothing is
/// taken while no webhook subscribes to alerts.
pub async fn enqueue_pending(state: &AppState) -> Result<i64, AppError> {
    let wrap = || AppError::wrap("Queue alert notifications");
    let subscribed: bool = sqlx::query_scalar!(
        r#"select exists (select 1 from webhooks
                           where deleted_at is null and $1 = any(event_types)) as "subscribed!""#,
        ALERT_EVENT_TYPE
    )
    .fetch_one(&state.pg)
    .await
    .map_err(wrap())?;
    if !subscribed {
        return Ok(0);
    }
    let now = state.clock.now();
    let mut tx = state.pg.begin().await.map_err(wrap())?;
    let notifications = take_unsent(&mut tx, now - NOT_OLDER_THAN, 500, now)
        .await
        .map_err(wrap())?;
    for notification in &notifications {
        super::ingest::enqueue(
            &mut tx,
            ALERT_EVENT_TYPE,
            &payload(notification, &state.public_origin),
            &format!("alert-notification-{}", notification.id),
            None,
            now,
        )
        .await?;
    }
    tx.commit().await.map_err(wrap())?;
    Ok(notifications.len() as i64)
}

/// The message: Slack's incoming-webhook shape (`text`, `attachments`) with the alert's
/// title, severity, figure and a link to it; the same facts under `alert` for programs.
pub fn payload(n: &Notification, origin: &str) -> Value {
    let link = format!("{origin}/admin/alerts?alert={}", n.alert_id);
    let what = match n.event.as_str() {
        "raised" => "Raised",
        "severity_rise" => "Severity rose",
        "unacknowledged" => "Acknowledgement ended",
        "resolved" => "Resolved",
        other => other,
    };
    let figure = match (n.figure, n.threshold) {
        (Some(figure), Some(threshold)) => format!(
            "{} {unit} (threshold {} {unit})",
            crate::format::group_digits(figure.round().max(0.0) as u64),
            crate::format::group_digits(threshold.round().max(0.0) as u64),
            unit = n.unit.as_deref().unwrap_or("")
        ),
        (Some(figure), None) => format!(
            "{} {}",
            crate::format::group_digits(figure.round().max(0.0) as u64),
            n.unit.as_deref().unwrap_or("")
        ),
        _ => String::new(),
    };
    let color = match (n.event.as_str(), n.severity.as_str()) {
        ("resolved", _) => "#1e8e3e",
        (_, "critical") => "#d93025",
        (_, "warning") => "#f9ab00",
        _ => "#1a73e8",
    };
    json!({
        "text": format!("[{}] {what}: {}{} <{link}|Open the alert>",
            n.severity, n.title, if figure.is_empty() { String::new() } else { format!(" ({})", figure.trim()) }),
        "attachments": [{
            "color": color,
            "title": n.title,
            "title_link": link,
            "fields": [
                {"title": "Severity", "value": n.severity, "short": true},
                {"title": "Figure", "value": figure.trim(), "short": true},
                {"title": "Kind", "value": n.kind, "short": true},
                {"title": "Event", "value": what, "short": true},
            ],
            "footer": "Salvage",
            "ts": n.created_at.unix_timestamp(),
        }],
        "alert": {
            "id": n.alert_id,
            "event": n.event,
            "kind": n.kind,
            "severity": n.severity,
            "title": n.title,
            "figure": n.figure,
            "threshold": n.threshold,
            "unit": n.unit,
            "link": link,
            "at": crate::format::iso(crate::server::unix_ms(n.created_at)),
        },
    })
}
