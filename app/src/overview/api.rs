//! Server functions of the overview page.

use leptos::prelude::*;

use crate::error::AppError;
use crate::health::StoresSnapshot;

/// Probes PostgreSQL and ClickHouse (as `/health/*` does) and adds each store's details.
#[server(endpoint = "overview/stores")]
pub async fn load_stores_snapshot() -> Result<StoresSnapshot, AppError> {
    crate::auth::ssr::serve(crate::auth::Permission::Read, |state, _| async move {
        Ok(crate::health::ssr::snapshot(&state).await)
    })
    .await
}
