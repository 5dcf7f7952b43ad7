//! Server functions of `/admin/queues` and `/admin/settings/ingest-keys`.

use leptos::prelude::*;

use super::{CreatedKey, IngestKey, QueuesOverview};
use crate::error::AppError;

#[cfg(feature = "ssr")]
use crate::server::required_reason;

/// Both queues, their depth history and the recent replay runs.
#[server(endpoint = "queues/overview")]
pub async fn load_queues() -> Result<QueuesOverview, AppError> {
    use super::ssr::{replay, stats};
    let (state, _) = crate::auth::ssr::guard(crate::auth::Permission::Read).await?;
    let result = async {
        let internal = |e: sqlx::Error| AppError::internal("Failed to read the queues", e);
        let now = state.clock.now();
        Ok(QueuesOverview {
            now: crate::server::unix_ms(now),
            ttl_hours: (state.queues.ttl.as_secs() / 3600) as i64,
            queues: stats::queue_stats(&state.pg, state.queues.ttl, now)
                .await
                .map_err(internal)?,
            samples: stats::depth_samples(&state.pg).await.map_err(internal)?,
            runs: replay::recent_runs(&state.pg, 20, now)
                .await
                .map_err(internal)?,
        })
    }
    .await;
    crate::server::respond(result)
}

/// Every ingest key (never a secret).
#[server(endpoint = "settings/ingest-keys")]
pub async fn list_ingest_keys() -> Result<Vec<IngestKey>, AppError> {
    let (state, _) = crate::auth::ssr::guard(crate::auth::Permission::Administer).await?;
    crate::server::respond(super::ssr::keys::list(&state.pg).await)
}

/// Creates an ingest key for `organization` (`*`: every organisation); the secret is in
/// this response only.
#[server(endpoint = "settings/ingest-keys/create")]
pub async fn create_ingest_key(name: String, organization: String) -> Result<CreatedKey, AppError> {
    let (state, actor) = crate::auth::ssr::guard(crate::auth::Permission::Administer).await?;
    let result = super::ssr::keys::create(&state.pg, &actor, &name, &organization)
        .await
        .map(|(id, secret)| CreatedKey {
            id,
            secret: crate::format::ShownOnce::new(secret),
        });
    crate::server::respond(result)
}

/// Revokes an ingest key.
#[server(endpoint = "settings/ingest-keys/revoke")]
pub async fn revoke_ingest_key(key_id: i64, reason: String) -> Result<(), AppError> {
    let (state, actor) = crate::auth::ssr::guard(crate::auth::Permission::Administer).await?;
    let result = async {
        let reason = required_reason(&reason)?;
        super::ssr::keys::revoke(&state.pg, &state.ingest_keys, &actor, key_id, Some(reason)).await
    }
    .await;
    crate::server::respond(result)
}
