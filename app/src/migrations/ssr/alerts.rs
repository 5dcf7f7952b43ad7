//! `migration_stuck`: a background migration is `running` but the run working it has
//! ended or gone quiet past the runner's abandoned rule, so its worker has stopped. The
//! next tick of `run-background-migrations` takes it over; the alert resolves once a
//! live run works it again (or a person pauses or cancels it).

use serde_json::json;
use sqlx::Row;
use time::OffsetDateTime;

use crate::alerts::ssr::{AlertKind, EvalFuture, Fix, Signal};
use crate::alerts::Severity;
use crate::error::AppError;
use crate::server::AppState;

use super::store::{stale_before, ROWS, STUCK};

pub static MIGRATION_STUCK: AlertKind = AlertKind {
    name: "migration_stuck",
    description: "A background migration is running but its heartbeat has stopped.",
    evaluate: Some(stuck),
    fire_after: 1,
    auto_resolve: true,
    fix: Fix {
        href: "/admin/migrations",
        label: "Open the migrations",
        action: None,
    },
};

fn stuck(state: AppState, now: OffsetDateTime) -> EvalFuture {
    Box::pin(async move {
        let rows = sqlx::query(&format!(
            "select m.name, run.heartbeat_at, m.progress_current, m.progress_total, m.cursor
               from {ROWS} where {STUCK}"
        ))
        .bind(stale_before(now))
        .fetch_all(&state.pg)
        .await
        .map_err(AppError::wrap("Evaluate migration_stuck"))?;
        let threshold = crate::jobs::ssr::ABANDONED_AFTER.as_secs_f64() / 60.0;
        Ok(rows
            .iter()
            .map(|row| {
                let name: String = row.get("name");
                let beat: Option<OffsetDateTime> = row.get("heartbeat_at");
                let minutes = beat
                    .map(|b| ((now - b).as_seconds_f64() / 60.0).max(0.0))
                    .unwrap_or(f64::INFINITY);
                let severity = if minutes > threshold * 5.0 {
                    Severity::Critical
                } else {
                    Severity::Warning
                };
                let age = if minutes.is_finite() {
                    format!("{} min", minutes.round())
                } else {
                    "ever".to_owned()
                };
                Signal::new(
                    name.clone(),
                    severity,
                    format!("Background migration {name} has had no heartbeat for {age}"),
                )
                .measured(
                    if minutes.is_finite() {
                        minutes.round()
                    } else {
                        -1.0
                    },
                    threshold.round(),
                    "minutes",
                )
                .with_details(json!({
                    "migration": name,
                    "progressCurrent": row.get::<i64, _>("progress_current"),
                    "progressTotal": row.get::<Option<i64>, _>("progress_total"),
                    "cursor": row.get::<Option<i64>, _>("cursor"),
                }))
            })
            .collect::<Vec<Signal>>())
    })
}
