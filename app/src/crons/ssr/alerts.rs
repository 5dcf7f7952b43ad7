//! `cron_dropout`: a job the cron plane flags (late, dropping runs, failing), one alert
//! per job.

use serde_json::json;
use time::OffsetDateTime;

use super::super::Flag;
use crate::alerts::ssr::{AlertKind, EvalFuture, Fix, Signal};
use crate::alerts::{FixAction, Severity};
use crate::error::AppError;
use crate::server::AppState;

fn run_now(job: &str) -> FixAction {
    FixAction::run(job, format!("Run {job} now"))
}

/// A job flagged by the cron plane, keyed by the job's name.
pub static CRON_DROPOUT: AlertKind = AlertKind {
    name: "cron_dropout",
    description: "A job is late, dropping runs or failing.",
    evaluate: Some(dropout),
    fire_after: 1,
    auto_resolve: true,
    fix: Fix {
        href: "/admin/crons",
        label: "Open the crons",
        action: Some(run_now),
    },
};

fn dropout(state: AppState, now: OffsetDateTime) -> EvalFuture {
    Box::pin(async move {
        let statuses = super::status::job_statuses(&state, now)
            .await
            .map_err(|e| AppError::internal("Failed to evaluate the crons", e))?;
        Ok(statuses
            .into_iter()
            .filter(|job| job.flagged())
            .map(|job| {
                let words: Vec<String> = job
                    .flags
                    .iter()
                    .map(|flag| match flag {
                        Flag::Late { due_at } => format!(
                            "late (the {} tick has no run)",
                            crate::format::format_utc(*due_at)
                        ),
                        Flag::LowFireRate { threshold } => format!(
                            "dropping runs ({:.0} % of its ticks ran, under {threshold:.0} %)",
                            job.fire_rate.unwrap_or(0.0)
                        ),
                        Flag::Failing => "failing (its last run failed)".to_owned(),
                    })
                    .collect();
                let signal = Signal::new(
                    job.name.clone(),
                    Severity::Warning,
                    format!("Job {} is {}", job.name, words.join(", ")),
                )
                .with_details(json!({"flags": job.flags, "missed": job.missed}));
                match job.fire_rate {
                    Some(rate) => signal.measured(rate, state.crons().min_fire_rate, "%"),
                    None => signal,
                }
            })
            .collect())
    })
}
