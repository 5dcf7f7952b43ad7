//! The restore as a job of the runner: on demand (never scheduled), admins only, its
//! input a [`RestoreRequest`] checked before the run is recorded, its report the
//! [`RestoreReport`].

use std::time::Duration;

use serde_json::Value;

use super::{check, execute, prepare, RestoreReport, RestoreRequest};
use crate::auth::ssr::Actor;
use crate::backups::RestoreStatus;
use crate::jobs::ssr::{CheckFuture, Job, JobContext, JobFuture, Report, ON_DEMAND};
use crate::jobs::RunStatus;
use crate::server::AppState;

/// Restores a backup into a side database or in place, and verifies it.
pub static RESTORE: Job = Job {
    name: crate::backups::RESTORE_JOB,
    description: "Restores a backup into a side database or in place, and verifies every table against its manifest.",
    schedule: ON_DEMAND,
    grace: Duration::ZERO,
    run: run_restore_job,
    permission: crate::auth::Permission::Administer,
    check: Some(check_input),
};

fn check_input(state: AppState, _actor: Actor, input: Value) -> CheckFuture {
    Box::pin(async move {
        let request: RestoreRequest = crate::jobs::ssr::read_input(input)?;
        check(&state, &request).await
    })
}

fn run_restore_job(ctx: JobContext) -> JobFuture {
    Box::pin(async move {
        let mut request: RestoreRequest = ctx.input()?;
        // The run's reason is the restore's.
        request.reason = request.reason.or(ctx.reason.clone());
        let prepared = prepare(&ctx.state, &request, &ctx.actor, Some(ctx.run_id)).await?;
        let report = execute(&ctx.state, prepared, &ctx.actor, &ctx.tracker).await?;
        Ok(Box::new(report) as Box<dyn Report>)
    })
}

impl Report for RestoreReport {
    fn status(&self) -> RunStatus {
        match self.status {
            RestoreStatus::Verified | RestoreStatus::RolledBack => RunStatus::Succeeded,
            RestoreStatus::Cancelled => RunStatus::Cancelled,
            RestoreStatus::Running => RunStatus::Running,
            RestoreStatus::Failed | RestoreStatus::VerifyFailed => RunStatus::Failed,
        }
    }

    fn rows(&self) -> i64 {
        self.rows
    }

    fn error(&self) -> Option<String> {
        self.error.clone()
    }

    fn history_id(&self) -> Option<i64> {
        Some(self.history_id)
    }

    fn details(&self) -> Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// Runs a restore through the runner and waits for it (the CLI's door, benchmarks,
/// tests): `firing` says who and why. A request the check refuses is the 4xx naming the
/// field, with nothing written; a restore that fails or is cancelled is a report saying
/// so.
pub async fn restore(
    state: &AppState,
    request: &RestoreRequest,
    firing: crate::jobs::ssr::Firing,
    on_progress: Option<crate::jobs::ssr::OnProgress>,
) -> Result<RestoreReport, crate::error::AppError> {
    let options = crate::jobs::ssr::RunOptions {
        on_progress,
        input: serde_json::to_value(request).map_err(|e| {
            crate::error::AppError::internal("Read a restore request", e.to_string())
        })?,
        ..Default::default()
    };
    let finished = crate::jobs::ssr::run(state, &RESTORE, firing, options)
        .await?
        .ok_or_else(|| {
            crate::error::AppError::internal("Run a restore", "a manual run was refused")
        })?;
    match finished.report::<RestoreReport>() {
        Some(report) => Ok(report.clone()),
        None => Err(crate::error::AppError::internal(
            "Run a restore",
            finished.error.unwrap_or_else(|| "no report".to_owned()),
        )),
    }
}
