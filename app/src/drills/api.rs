//! Server functions of `/admin/drills`. Everyone signed in reads; Run drill now and its
//! Cancel: operators and admins; Log tabletop: everyone who may add to the history;
//! the objectives: admins.

use leptos::prelude::*;

use super::{DrillsOverview, StoreKind};
use crate::error::AppError;

#[cfg(feature = "ssr")]
use crate::server::required_reason;

/// The drills, the objectives against what was measured, and what is due.
#[server(endpoint = "drills/overview")]
pub async fn load_drills() -> Result<DrillsOverview, AppError> {
    let (state, _) = crate::auth::ssr::guard(crate::auth::Permission::Read).await?;
    let result = super::ssr::overview::overview(&state).await;
    crate::server::respond(result)
}

/// Starts a drill (a run of the `restore-drill` job) and returns its run id at once;
/// the page follows it.
#[server(endpoint = "drills/run")]
pub async fn start_drill(reason: String) -> Result<i64, AppError> {
    let (state, actor) = crate::auth::ssr::guard(crate::auth::Permission::Operate).await?;
    let result =
        crate::jobs::ssr::start_by_hand(&state, super::ssr::RESTORE_DRILL.name, actor, &reason)
            .await;
    crate::server::respond(result)
}

/// Asks running drill `id` to stop after its current step; it still tears down.
#[server(endpoint = "drills/cancel")]
pub async fn cancel_drill(id: i64) -> Result<(), AppError> {
    let (state, actor) = crate::auth::ssr::guard(crate::auth::Permission::Operate).await?;
    let result = async {
        use crate::history::ssr::{record, NewEntry};
        let drill = super::ssr::records::load(&state.pg, id)
            .await
            .map_err(AppError::wrap("Load a drill"))?
            .ok_or_else(|| AppError::NotFound {
                what: format!("Drill {id}"),
            })?;
        let asked = match (drill.status, drill.run_id) {
            (super::DrillStatus::Running, Some(run_id)) => {
                crate::jobs::ssr::records::request_cancel(&state.pg, run_id).await?
            }
            _ => false,
        };
        if !asked {
            return Err(AppError::Conflict {
                message: format!("Drill {id} is not running."),
            });
        }
        let entry = NewEntry::new(
            "drill",
            format!("Cancel requested for restore drill {id}"),
            &actor,
            crate::history::Outcome::Info,
        )
        .with_details(serde_json::json!({"drillId": id, "cancel": true}));
        record(&state.pg, &entry, "Failed to record the cancel").await?;
        Ok(())
    }
    .await;
    crate::server::respond(result)
}

/// Logs a tabletop exercise.
#[server(endpoint = "drills/tabletop")]
pub async fn log_tabletop(
    scenario: String,
    participants: String,
    findings: String,
    follow_ups: String,
) -> Result<i64, AppError> {
    let (state, actor) = crate::auth::ssr::guard(crate::auth::Permission::Annotate).await?;
    let tabletop = super::Tabletop {
        scenario,
        participants,
        findings,
        follow_ups,
    };
    let result = super::ssr::overview::log_tabletop(&state, &actor, &tabletop).await;
    crate::server::respond(result)
}

/// Sets a store's recovery objectives (admins, with a reason).
#[server(endpoint = "drills/objectives")]
pub async fn set_objectives(
    store: StoreKind,
    rpo_hours: i64,
    rto_minutes: i64,
    reason: String,
) -> Result<(), AppError> {
    let (state, actor) = crate::auth::ssr::guard(crate::auth::Permission::Administer).await?;
    let result = async {
        let reason = required_reason(&reason)?;
        super::ssr::overview::set_objectives(&state, &actor, store, rpo_hours, rto_minutes, &reason)
            .await
    }
    .await;
    crate::server::respond(result)
}
