//! Server functions of the incident panel. Everyone signed in reads it, takes a status
//! snapshot, ticks the checklist and names the RCA owner (all may add to the history);
//! the freeze: operators and admins, with a reason.

use leptos::prelude::*;

use super::IncidentMode;
use crate::error::AppError;

/// Incident `id`'s mode; `None` when the entry is not an incident.
#[server(endpoint = "incidents/mode")]
pub async fn load_incident_mode(id: i64) -> Result<Option<IncidentMode>, AppError> {
    crate::auth::ssr::serve(crate::auth::Permission::Read, |state, _| async move {
        match super::ssr::mode(&state, id).await {
            Ok(mode) => Ok(Some(mode)),
            Err(AppError::NotFound { .. }) => Ok(None),
            Err(error) => Err(error),
        }
    })
    .await
}

/// Captures the stores, queues, alerts and cron flags into the incident's timeline.
#[server(endpoint = "incidents/snapshot")]
pub async fn take_snapshot(id: i64) -> Result<i64, AppError> {
    crate::auth::ssr::serve(
        crate::auth::Permission::Annotate,
        |state, actor| async move {
            super::ssr::open_incident(&state, id).await?;
            super::ssr::snapshot(&state, id, &actor, "on demand").await
        },
    )
    .await
}

/// Records what ingest key `key_id` did (requests and rows per hour, its addresses) in
/// open incident `id`'s timeline.
#[server(endpoint = "incidents/key-snapshot")]
pub async fn take_key_snapshot(id: i64, key_id: i64) -> Result<i64, AppError> {
    crate::auth::ssr::serve(
        crate::auth::Permission::Annotate,
        |state, actor| async move {
            super::ssr::open_incident(&state, id).await?;
            super::ssr::key_snapshot(&state, id, key_id, &actor).await
        },
    )
    .await
}

/// Turns the incident freeze on (`on` = "true") or lifts it, with a reason.
#[server(endpoint = "incidents/freeze")]
pub async fn set_incident_freeze(id: i64, on: bool, reason: String) -> Result<(), AppError> {
    crate::auth::ssr::serve(
        crate::auth::Permission::Operate,
        |state, actor| async move {
            let reason = crate::server::required_reason(&reason)?;
            super::ssr::set_freeze(&state, id, on, &reason, &actor).await
        },
    )
    .await
}

/// Ticks (or clears) a manual item of the post-recovery checklist.
#[server(endpoint = "incidents/tick")]
pub async fn tick_item(id: i64, item: String, done: bool) -> Result<(), AppError> {
    crate::auth::ssr::serve(
        crate::auth::Permission::Annotate,
        |state, actor| async move { super::ssr::tick(&state, id, &item, done, &actor).await },
    )
    .await
}

/// Names who owns the incident's root-cause analysis.
#[server(endpoint = "incidents/owner")]
pub async fn set_rca_owner(id: i64, rca_owner: String) -> Result<(), AppError> {
    crate::auth::ssr::serve(
        crate::auth::Permission::Annotate,
        |state, actor| async move { super::ssr::set_owner(&state, id, &rca_owner, &actor).await },
    )
    .await
}
