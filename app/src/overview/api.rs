//! Server functions of the overview page.

use leptos::prelude::*;

use crate::error::AppError;
use crate::health::StoresHealth;

/// Probes PostgreSQL and ClickHouse and reports both, as `/health/deep` does.
#[server(endpoint = "overview/stores")]
pub async fn probe_stores() -> Result<StoresHealth, AppError> {
    let state = crate::server::respond(crate::server::app_state())?;
    Ok(crate::health::ssr::check_stores(&state).await)
}
