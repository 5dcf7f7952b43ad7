//! Server functions of `/admin/crons` and `/admin/settings/cron-secret`.

use leptos::prelude::*;

use super::{CronSecrets, CronsOverview, RotatedSecret};
use crate::error::AppError;

/// Every job's status over the last 24 h and the newest runs.
#[server(endpoint = "crons/overview")]
pub async fn load_crons() -> Result<CronsOverview, AppError> {
    crate::auth::ssr::serve(crate::auth::Permission::Read, |state, actor| async move {
        let internal = |e: sqlx::Error| AppError::internal("Failed to read the cron runs", e);
        let now = state.clock.now();
        let mut overview = CronsOverview {
            now: crate::server::unix_ms(now),
            scheduler_enabled: state.crons().scheduler,
            min_fire_rate: state.crons().min_fire_rate,
            retention_days: (state.crons().retention.as_secs() / 86_400) as i64,
            jobs: super::ssr::status::job_statuses(&state, now)
                .await
                .map_err(internal)?,
            recent: crate::jobs::ssr::records::recent(&state.pg, None, 25, now)
                .await
                .map_err(internal)?,
        };
        if !actor.role.can(crate::auth::Permission::Administer) {
            overview.hide_callers();
        }
        Ok(overview)
    })
    .await
}

/// The current and previous cron secrets (never their values), with their last use.
#[server(endpoint = "settings/cron-secret")]
pub async fn load_cron_secrets() -> Result<CronSecrets, AppError> {
    crate::auth::ssr::serve(crate::auth::Permission::Read, |state, actor| async move {
        super::ssr::secrets::list(&state.pg, state.clock.now())
            .await
            .map_err(|e| AppError::internal("Failed to list the cron secrets", e))
            .map(|mut secrets| {
                if !actor.role.can(crate::auth::Permission::Administer) {
                    secrets.hide_callers();
                }
                secrets
            })
    })
    .await
}

/// Makes a new cron secret; the previous one works for `grace_hours` more. The secret
/// is in this response only.
#[server(endpoint = "settings/cron-secret/rotate")]
pub async fn rotate_cron_secret(
    grace_hours: i64,
    reason: String,
) -> Result<RotatedSecret, AppError> {
    crate::auth::ssr::serve(
        crate::auth::Permission::Administer,
        |state, actor| async move {
            let reason = crate::server::required_reason(&reason)?;
            super::ssr::secrets::rotate(
                &state.pg,
                &actor,
                "console",
                grace_hours,
                Some(reason),
                state.clock.now(),
            )
            .await
        },
    )
    .await
}

/// Ends the grace window of previous secret `secret_id` now.
#[server(endpoint = "settings/cron-secret/end-grace")]
pub async fn end_cron_secret_grace(secret_id: i64, reason: String) -> Result<(), AppError> {
    crate::auth::ssr::serve(
        crate::auth::Permission::Administer,
        |state, actor| async move {
            let reason = crate::server::required_reason(&reason)?;
            super::ssr::secrets::end_grace(
                &state.pg,
                &actor,
                secret_id,
                Some(reason),
                state.clock.now(),
            )
            .await
        },
    )
    .await
}
