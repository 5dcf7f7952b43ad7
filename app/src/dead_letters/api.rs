//! Server functions of `/admin/dlq` and `/admin/settings/webhooks`. Everyone signed in
//! reads; redrive (and its dry run, cancel, and "re-enable and recover"): operators and
//! admins; purge and managing webhooks: admins. A filter travels as the page's query
//! string (`webhook=3&reason=exhausted`), parsed on the server with an error naming the
//! wrong field.

use leptos::prelude::*;

use super::{CreatedWebhook, DeliveryDetail, DlqOverview, DryRun, Endpoint, Redrive};
use crate::error::AppError;

#[cfg(feature = "ssr")]
use crate::server::required_reason;

/// The breakdown, the list (after delivery `after`), the endpoints and the redrives.
#[server(endpoint = "dlq/overview")]
pub async fn load_dlq(filter: String, after: String) -> Result<DlqOverview, AppError> {
    crate::auth::ssr::serve(crate::auth::Permission::Read, |state, actor| async move {
        let filter = super::ssr::filter::DlqFilter::parse(&filter)?;
        let after = match after.trim() {
            "" => None,
            raw => Some(
                raw.parse()
                    .map_err(|_| AppError::invalid("after", "a delivery number"))?,
            ),
        };
        let mut overview = super::ssr::dlq::overview(&state, &filter, after).await?;
        overview.endpoints = super::ssr::endpoints::for_viewer(&actor, overview.endpoints);
        Ok(overview)
    })
    .await
}

/// What a redrive or purge of `filter` would take.
#[server(endpoint = "dlq/dry-run")]
pub async fn dlq_dry_run(filter: String) -> Result<DryRun, AppError> {
    crate::auth::ssr::serve(crate::auth::Permission::Operate, |state, _| async move {
        let filter = super::ssr::filter::DlqFilter::parse(&filter)?;
        super::ssr::dlq::dry_run(&state.pg, &filter).await
    })
    .await
}

/// Starts a redrive of `filter` (a run of the redrive job); returns the redrive's id at
/// once (the page follows it; Cancel is the runner's, `jobs/cancel`).
#[server(endpoint = "dlq/redrive")]
pub async fn start_redrive(filter: String, reason: String) -> Result<i64, AppError> {
    crate::auth::ssr::serve(
        crate::auth::Permission::Operate,
        |state, actor| async move {
            let filter = super::ssr::filter::DlqFilter::parse(&filter)?;
            let reason = required_reason(&reason)?;
            let caller = crate::jobs::api::request_caller(&state)?;
            super::ssr::redrive::start(&state, &actor, &filter, &reason, caller).await
        },
    )
    .await
}

/// A redrive's progress.
#[server(endpoint = "dlq/redrive-status")]
pub async fn redrive_status(id: i64) -> Result<Redrive, AppError> {
    crate::auth::ssr::serve(crate::auth::Permission::Read, |state, _| async move {
        super::ssr::redrive::load(&state, id).await
    })
    .await
}

/// Deletes the dead letters matching `filter` (admins); `confirm` is the count the dry
/// run showed. Returns how many were deleted.
#[server(endpoint = "dlq/purge")]
pub async fn purge(filter: String, confirm: String, reason: String) -> Result<i64, AppError> {
    crate::auth::ssr::serve(
        crate::auth::Permission::Administer,
        |state, actor| async move {
            let filter = super::ssr::filter::DlqFilter::parse(&filter)?;
            let reason = required_reason(&reason)?;
            super::ssr::dlq::purge(&state, &actor, &filter, &confirm, &reason)
                .await
                .map(|purged| purged.deleted)
        },
    )
    .await
}

/// One delivery and its attempts.
#[server(endpoint = "dlq/delivery")]
pub async fn load_delivery(id: i64) -> Result<DeliveryDetail, AppError> {
    crate::auth::ssr::serve(crate::auth::Permission::Read, |state, _| async move {
        super::ssr::dlq::delivery(&state.pg, id).await
    })
    .await
}

/// Re-enables a paused or disabled endpoint and redrives what it dead-lettered since it
/// started failing; returns the redrive's id when there was anything to redrive.
#[server(endpoint = "dlq/recover")]
pub async fn recover(webhook_id: i64, reason: String) -> Result<Option<i64>, AppError> {
    crate::auth::ssr::serve(
        crate::auth::Permission::Operate,
        |state, actor| async move {
            let reason = required_reason(&reason)?;
            let caller = crate::jobs::api::request_caller(&state)?;
            super::ssr::redrive::recover(&state, &actor, webhook_id, &reason, caller).await
        },
    )
    .await
}

/// The webhooks.
#[server(endpoint = "settings/webhooks")]
pub async fn list_webhooks() -> Result<Vec<Endpoint>, AppError> {
    crate::auth::ssr::serve(crate::auth::Permission::Read, |state, actor| async move {
        super::ssr::endpoints::list(&state.pg, state.clock.now())
            .await
            .map(|endpoints| super::ssr::endpoints::for_viewer(&actor, endpoints))
            .map_err(AppError::wrap("List the webhooks"))
    })
    .await
}

/// Creates a webhook; its signing secret is in the answer, this once.
#[server(endpoint = "settings/webhooks/create")]
pub async fn create_webhook(
    url: String,
    description: String,
    event_types: String,
    max_retries: String,
) -> Result<CreatedWebhook, AppError> {
    crate::auth::ssr::serve(
        crate::auth::Permission::Administer,
        |state, actor| async move {
            let new = super::ssr::endpoints::NewWebhook::parse(
                state.webhooks(),
                &url,
                &description,
                &event_types,
                &max_retries,
            )?;
            super::ssr::endpoints::create(&state.pg, &state.webhooks().secret_keys, &actor, &new)
                .await
        },
    )
    .await
}

/// Turns a webhook on or off.
#[server(endpoint = "settings/webhooks/enabled")]
pub async fn set_webhook_enabled(id: i64, enabled: bool, reason: String) -> Result<(), AppError> {
    crate::auth::ssr::serve(
        crate::auth::Permission::Administer,
        |state, actor| async move {
            let reason = required_reason(&reason)?;
            super::ssr::endpoints::set_enabled(&state.pg, &actor, id, enabled, &reason).await
        },
    )
    .await
}

/// Deletes a webhook; its pending deliveries are dead-lettered as `webhook_deleted`.
#[server(endpoint = "settings/webhooks/delete")]
pub async fn delete_webhook(id: i64, reason: String) -> Result<i64, AppError> {
    crate::auth::ssr::serve(
        crate::auth::Permission::Administer,
        |state, actor| async move {
            let reason = required_reason(&reason)?;
            super::ssr::endpoints::delete(&state.pg, &actor, id, &reason, state.clock.now()).await
        },
    )
    .await
}
