//! The dead letters' alert kinds, evaluated by the self-monitor every minute with
//! bounded queries (one per kind, over the partial indexes):
//! `webhook_backlog` (per endpoint: deliveries due but undelivered above a count, or the
//! oldest older than an age), `dlq_growing` (new dead letters in the last hour above a
//! rate), `dlq_count_high` (dead letters waiting, in all, above a count: the runbook's
//! `webhooks.dlq_count`), `webhook_paused` (an endpoint's circuit is open) and
//! `dlq_retention_near` (dead letters that retention deletes within three days).

use serde_json::json;
use time::OffsetDateTime;

use super::endpoints::label;
use crate::alerts::ssr::{AlertKind, EvalFuture, Fix, Signal};
use crate::alerts::Severity;
use crate::error::AppError;
use crate::server::AppState;

const FIX: Fix = Fix {
    href: "/admin/dlq",
    label: "Open the dead letters",
    action: None,
};

pub static WEBHOOK_BACKLOG: AlertKind = AlertKind {
    name: "webhook_backlog",
    description: "Webhook deliveries are due but not delivered: too many, or waiting too long.",
    evaluate: Some(backlog),
    fire_after: 2,
    auto_resolve: true,
    fix: FIX,
};

pub static DLQ_GROWING: AlertKind = AlertKind {
    name: "dlq_growing",
    description: "Deliveries are being dead-lettered faster than the threshold.",
    evaluate: Some(growing),
    fire_after: 1,
    auto_resolve: true,
    fix: FIX,
};

pub static DLQ_COUNT_HIGH: AlertKind = AlertKind {
    name: "dlq_count_high",
    description:
        "More dead letters wait for a redrive or a purge than the threshold, growing or not.",
    evaluate: Some(count_high),
    fire_after: 1,
    auto_resolve: true,
    fix: FIX,
};

pub static WEBHOOK_PAUSED: AlertKind = AlertKind {
    name: "webhook_paused",
    description: "A webhook endpoint failed so often its circuit opened: its deliveries wait.",
    evaluate: Some(paused),
    fire_after: 1,
    auto_resolve: true,
    fix: FIX,
};

pub static DLQ_RETENTION_NEAR: AlertKind = AlertKind {
    name: "dlq_retention_near",
    description: "Dead letters will be purged by retention within three days.",
    evaluate: Some(retention_near),
    fire_after: 1,
    auto_resolve: true,
    fix: FIX,
};

fn backlog(state: AppState, now: OffsetDateTime) -> EvalFuture {
    Box::pin(async move {
        let settings = state.webhooks();
        let rows = sqlx::query!(
            r#"select w.id, w.description, w.url, count(*) as "due!",
                      min(d.next_attempt_at) as "oldest!"
                 from webhook_deliveries d join webhooks w on w.id = d.webhook_id
                where d.status = 'pending' and d.next_attempt_at <= $1 and w.deleted_at is null
                group by w.id"#,
            now
        )
        .fetch_all(&state.pg)
        .await
        .map_err(AppError::wrap("Evaluate webhook_backlog"))?;
        let max_age = settings.backlog_age.as_secs_f64();
        let mut signals = Vec::new();
        for row in rows {
            let (id, due) = (row.id, row.due);
            let age = (now - row.oldest).as_seconds_f64().max(0.0);
            let name = label(&row.description, &row.url);
            let signal = if due > settings.backlog_rows {
                let severity = if due > settings.backlog_rows * 10 {
                    Severity::Critical
                } else {
                    Severity::Warning
                };
                Signal::new(
                    id.to_string(),
                    severity,
                    format!(
                        "{} deliveries to {name} are due and undelivered",
                        crate::format::group_digits(due as u64)
                    ),
                )
                .measured(due as f64, settings.backlog_rows as f64, "deliveries")
            } else if age > max_age {
                let severity = if age > max_age * 4.0 {
                    Severity::Critical
                } else {
                    Severity::Warning
                };
                Signal::new(
                    id.to_string(),
                    severity,
                    format!(
                        "The oldest due delivery to {name} has waited {} min",
                        (age / 60.0).round()
                    ),
                )
                .measured(
                    (age / 60.0).round(),
                    (max_age / 60.0).round(),
                    "minutes",
                )
            } else {
                continue;
            };
            signals.push(signal.with_details(
                json!({"webhookId": id, "due": due, "oldestAgeSeconds": age.round()}),
            ));
        }
        Ok(signals)
    })
}

fn growing(state: AppState, now: OffsetDateTime) -> EvalFuture {
    Box::pin(async move {
        let threshold = state.webhooks().dlq_growing_per_hour;
        let new = sqlx::query_scalar!(
            r#"select count(*) as "count!" from webhook_deliveries
                where dlq_at is not null and dlq_at > $1"#,
            now - time::Duration::hours(1)
        )
        .fetch_one(&state.pg)
        .await
        .map_err(AppError::wrap("Evaluate dlq_growing"))?;
        if new <= threshold {
            return Ok(Vec::new());
        }
        let severity = if new > threshold * 10 {
            Severity::Critical
        } else {
            Severity::Warning
        };
        Ok(vec![Signal::new(
            "all",
            severity,
            format!(
                "{} deliveries were dead-lettered in the last hour",
                crate::format::group_digits(new as u64)
            ),
        )
        .measured(new as f64, threshold as f64, "per hour")])
    })
}

fn count_high(state: AppState, _now: OffsetDateTime) -> EvalFuture {
    Box::pin(async move {
        // The partial index on dead letters: the count `/health/deep` gives too.
        let dead = sqlx::query_scalar!(
            r#"select count(*) as "count!" from webhook_deliveries where dlq_at is not null"#
        )
        .fetch_one(&state.pg)
        .await
        .map_err(AppError::wrap("Evaluate dlq_count_high"))?;
        Ok(count_signal(dead, state.webhooks().dlq_count_high)
            .into_iter()
            .collect())
    })
}

/// The `dlq_count_high` signal for `dead` dead letters against `threshold`: warning
/// above it, critical above ten times it.
pub fn count_signal(dead: i64, threshold: i64) -> Option<Signal> {
    if dead <= threshold {
        return None;
    }
    let severity = if dead > threshold * 10 {
        Severity::Critical
    } else {
        Severity::Warning
    };
    Some(
        Signal::new(
            "all",
            severity,
            format!(
                "{} dead letters wait for a redrive or a purge",
                crate::format::group_digits(dead as u64)
            ),
        )
        .measured(dead as f64, threshold as f64, "dead letters"),
    )
}

fn paused(state: AppState, now: OffsetDateTime) -> EvalFuture {
    Box::pin(async move {
        let rows = sqlx::query!(
            r#"select w.id, w.description, w.url, w.paused_at as "paused_at!",
                      (select count(*) from webhook_deliveries d
                        where d.webhook_id = w.id and d.status = 'pending') as "waiting!"
                 from webhooks w where w.deleted_at is null and w.paused_at is not null"#
        )
        .fetch_all(&state.pg)
        .await
        .map_err(AppError::wrap("Evaluate webhook_paused"))?;
        Ok(rows
            .into_iter()
            .map(|row| {
                let (id, waiting) = (row.id, row.waiting);
                let minutes = (now - row.paused_at).whole_minutes().max(0);
                let severity = if minutes >= 60 {
                    Severity::Critical
                } else {
                    Severity::Warning
                };
                Signal::new(
                    id.to_string(),
                    severity,
                    format!(
                        "Webhook {} is paused (circuit open {minutes} min); {} deliveries wait",
                        label(&row.description, &row.url),
                        crate::format::group_digits(waiting as u64)
                    ),
                )
                .counted(minutes as f64, "minutes")
                .with_details(json!({"webhookId": id, "waiting": waiting}))
            })
            .collect())
    })
}

fn retention_near(state: AppState, now: OffsetDateTime) -> EvalFuture {
    Box::pin(async move {
        let retention = time::Duration::try_from(state.webhooks().retention).unwrap_or_default();
        let soon =
            super::dlq::older_than(&state.pg, now - retention + super::dlq::RETENTION_WARNING)
                .await
                .map_err(AppError::wrap("Evaluate dlq_retention_near"))?;
        if soon == 0 {
            return Ok(Vec::new());
        }
        Ok(vec![Signal::new(
            "all",
            Severity::Warning,
            format!(
                "{} dead letters are purged by retention ({} days) within 3 days: redrive or export what you need",
                crate::format::group_digits(soon as u64),
                retention.whole_days()
            ),
        )
        .counted(soon as f64, "dead letters")])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dlq_count_high_above_the_threshold_and_critical_above_ten_times_it() {
        assert!(count_signal(1000, 1000).is_none());
        let over = count_signal(1001, 1000).expect("over the threshold");
        assert_eq!(over.severity, Severity::Warning);
        assert_eq!((over.figure, over.threshold), (Some(1001.0), Some(1000.0)));
        assert_eq!(
            over.title,
            "1,001 dead letters wait for a redrive or a purge"
        );
        assert_eq!(
            count_signal(10_000, 1000).unwrap().severity,
            Severity::Warning
        );
        assert_eq!(
            count_signal(10_001, 1000).unwrap().severity,
            Severity::Critical
        );
    }
}
