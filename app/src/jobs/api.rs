//! The two server functions behind every button that starts or stops a job: the
//! replay, a backup, a drill, a cron's "Run now", an alert's fix. Each page posts the
//! job's name; the runner finds it in the registry (`state.jobs()`), so no feature needs a
//! start or a cancel function of its own.

use leptos::prelude::*;

use crate::error::AppError;

/// Runs job `job` now, in the background, recorded as `manual` with the actor, the
/// reason and the caller; returns the run's id (what Cancel and the pages take).
#[server(endpoint = "jobs/start")]
pub async fn start_job(job: String, reason: String) -> Result<i64, AppError> {
    crate::auth::ssr::serve(
        crate::auth::Permission::Operate,
        |state, actor| async move {
            let reason = crate::server::required_reason(&reason)?;
            let caller = request_caller(&state)?;
            super::ssr::start_by_hand(&state, &job, actor, reason, caller, serde_json::Value::Null)
                .await
        },
    )
    .await
}

/// Where the current request came from (client address through trusted proxies, its
/// User-Agent), for the run a door starts: the doors read the request, the runner never.
#[cfg(feature = "ssr")]
pub fn request_caller(state: &crate::server::AppState) -> Result<super::ssr::Caller, AppError> {
    let parts = crate::server::request_parts()?;
    Ok(super::ssr::Caller::from_request(
        &state.trusted_proxies,
        &parts,
    ))
}

/// Asks run `run_id` to stop after its current step, whichever replica runs it, and
/// records who asked in the history.
#[server(endpoint = "jobs/cancel")]
pub async fn cancel_run(run_id: i64) -> Result<(), AppError> {
    crate::auth::ssr::serve(
        crate::auth::Permission::Operate,
        |state, actor| async move { super::ssr::cancel(&state, run_id, &actor).await },
    )
    .await
}
