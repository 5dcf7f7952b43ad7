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
    crate::auth::ssr::serve(crate::auth::Permission::Read, |state, _| async move {
        super::ssr::overview::overview(&state).await
    })
    .await
}

/// Logs a tabletop exercise.
#[server(endpoint = "drills/tabletop")]
pub async fn log_tabletop(
    scenario: String,
    participants: String,
    findings: String,
    follow_ups: String,
) -> Result<i64, AppError> {
    crate::auth::ssr::serve(
        crate::auth::Permission::Annotate,
        |state, actor| async move {
            let tabletop = super::Tabletop {
                scenario,
                participants,
                findings,
                follow_ups,
            };
            super::ssr::overview::log_tabletop(&state, &actor, &tabletop).await
        },
    )
    .await
}

/// Sets a store's recovery objectives and drill cadences (admins, with a reason). A
/// cadence left out keeps its value.
#[server(endpoint = "drills/objectives")]
pub async fn set_objectives(
    store: StoreKind,
    rpo_hours: i64,
    rto_minutes: i64,
    reason: String,
    /// Days between functional drills (1 to 3650).
    #[server(default)]
    functional_days: Option<i64>,
    /// Days between tabletop exercises (1 to 3650).
    #[server(default)]
    tabletop_days: Option<i64>,
) -> Result<(), AppError> {
    crate::auth::ssr::serve(
        crate::auth::Permission::Administer,
        |state, actor| async move {
            let reason = required_reason(&reason)?;
            let ask = super::ssr::overview::ObjectivesAsk {
                rpo_hours,
                rto_minutes,
                functional_days,
                tabletop_days,
            };
            super::ssr::overview::set_objectives(&state, &actor, store, &ask, &reason).await
        },
    )
    .await
}
