//! Server functions of `/admin/migrations`. Everyone signed in reads; pause, resume,
//! retry and cancel are for operators and admins, with a reason for the history.

use leptos::prelude::*;

use super::{MigrationStatus, MigrationsOverview};
use crate::error::AppError;

/// The background migrations, the schema's state and the last upgrades.
#[server(endpoint = "migrations/overview")]
pub async fn load_migrations() -> Result<MigrationsOverview, AppError> {
    crate::auth::ssr::serve(crate::auth::Permission::Read, |state, _| async move {
        super::ssr::store::overview(&state).await
    })
    .await
}

/// Pauses, resumes, retries or cancels a background migration.
#[server(endpoint = "migrations/change")]
pub async fn change_migration(
    name: String,
    action: String,
    reason: String,
) -> Result<MigrationStatus, AppError> {
    crate::auth::ssr::serve(
        crate::auth::Permission::Operate,
        |state, actor| async move {
            let action = super::MigrationAction::parse(action.trim()).ok_or_else(|| {
                AppError::invalid("action", "one of pause, resume, retry, cancel")
            })?;
            let reason = crate::server::required_reason(&reason)?;
            super::ssr::store::change(&state, &actor, name.trim(), action, &reason).await
        },
    )
    .await
}
