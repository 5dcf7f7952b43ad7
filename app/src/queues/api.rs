//! Server functions of `/admin/queues` and `/admin/settings/ingest-keys`.

use leptos::prelude::*;

use super::QueuesOverview;
use crate::error::AppError;
use crate::ingest_keys::{CreatedKey, IngestKey};

#[cfg(feature = "ssr")]
use crate::server::required_reason;

/// Both queues, their depth history and the recent replay runs.
#[server(endpoint = "queues/overview")]
pub async fn load_queues() -> Result<QueuesOverview, AppError> {
    use super::ssr::{replay, stats};
    crate::auth::ssr::serve(crate::auth::Permission::Read, |state, _| async move {
        let internal = |e: sqlx::Error| AppError::internal("Failed to read the queues", e);
        let now = state.clock.now();
        Ok(QueuesOverview {
            now: crate::server::unix_ms(now),
            ttl_hours: (state.queues().ttl.as_secs() / 3600) as i64,
            queues: stats::queue_stats(&state.pg, state.queues().ttl, now)
                .await
                .map_err(internal)?,
            samples: stats::depth_samples(&state.pg, now)
                .await
                .map_err(internal)?,
            runs: replay::recent_runs(&state.pg, 20, now)
                .await
                .map_err(internal)?,
        })
    })
    .await
}

/// Every ingest key (never a secret).
#[server(endpoint = "settings/ingest-keys")]
pub async fn list_ingest_keys() -> Result<Vec<IngestKey>, AppError> {
    crate::auth::ssr::serve(crate::auth::Permission::Administer, |state, _| async move {
        crate::ingest_keys::ssr::list(&state.pg, state.clock.now()).await
    })
    .await
}

/// What key `key_id` did in the last 7 days: hourly requests and rows, first and last
/// use, its source addresses (admins).
#[server(endpoint = "settings/ingest-keys/usage")]
pub async fn ingest_key_usage(key_id: i64) -> Result<crate::ingest_keys::KeyUsage, AppError> {
    crate::auth::ssr::serve(crate::auth::Permission::Administer, |state, _| async move {
        crate::ingest_keys::usage::usage(&state.pg, key_id, state.clock.now())
            .await
            .map_err(AppError::wrap("Read the key's usage"))?
            .ok_or(AppError::NotFound {
                what: format!("Ingest key #{key_id}"),
            })
    })
    .await
}

/// Creates an ingest key for `organization` (`*`: every organisation); the secret is in
/// this response only.
#[server(endpoint = "settings/ingest-keys/create")]
pub async fn create_ingest_key(name: String, organization: String) -> Result<CreatedKey, AppError> {
    crate::auth::ssr::serve(
        crate::auth::Permission::Administer,
        |state, actor| async move {
            crate::ingest_keys::ssr::create(&state.pg, &actor, &name, &organization)
                .await
                .map(|(id, secret)| CreatedKey {
                    id,
                    secret: crate::format::ShownOnce::new(secret),
                })
        },
    )
    .await
}

/// Revokes an ingest key.
#[server(endpoint = "settings/ingest-keys/revoke")]
pub async fn revoke_ingest_key(key_id: i64, reason: String) -> Result<(), AppError> {
    crate::auth::ssr::serve(
        crate::auth::Permission::Administer,
        |state, actor| async move {
            let reason = required_reason(&reason)?;
            crate::ingest_keys::ssr::revoke(
                &state.pg,
                state.ingest_keys(),
                &actor,
                key_id,
                Some(reason),
            )
            .await
        },
    )
    .await
}
