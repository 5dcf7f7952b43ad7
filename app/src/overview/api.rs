//! The overview's server function.

use leptos::prelude::*;

use super::Posture;
use crate::error::AppError;

/// The recovery posture: both stores' probes, what recovering each would take and
/// lose now, and the rest of the system's figures. Anyone signed in may read it.
#[server(endpoint = "overview/posture")]
pub async fn load_posture() -> Result<Posture, AppError> {
    crate::auth::ssr::serve(crate::auth::Permission::Read, |state, _| async move {
        super::ssr::posture(&state).await
    })
    .await
}
