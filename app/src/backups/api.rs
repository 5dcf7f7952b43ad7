//! Server functions of `/admin/backups`. Backup now and Verify: operators and admins;
//! every restore, its cancel and Roll back: admins. Everyone signed in reads.

use leptos::prelude::*;

use super::{BackupsOverview, Restore, RestorePlan};
use crate::error::AppError;

#[cfg(feature = "ssr")]
use crate::server::required_reason;

/// The catalogue, the restores and each store's recovery point (the open freezes come
/// with the layout's alert counts, on every page).
#[server(endpoint = "backups/overview")]
pub async fn load_backups() -> Result<BackupsOverview, AppError> {
    crate::auth::ssr::serve(crate::auth::Permission::Read, |state, _| async move {
        use super::ssr::{catalogue, restore};
        use super::{StoreKind, StoreSummary};
        let internal = |e: sqlx::Error| AppError::internal("Failed to read the backups", e);
        let now = state.clock.now();
        let mut stores = Vec::new();
        for store in StoreKind::ALL {
            let latest = catalogue::latest_complete(&state.pg, store)
                .await
                .map_err(internal)?;
            let sizes = sqlx::query!(
                r#"select started_at, size_bytes, coalesce(duration_ms, 0) as "duration_ms!"
                     from backups
                    where store = $1 and status in ('completed', 'verified', 'verify_failed')
                      and started_at > $2::timestamptz - interval '30 days'
                    order by started_at"#,
                store.as_str(),
                now
            )
            .fetch_all(&state.pg)
            .await
            .map_err(internal)?;
            let rpo = super::ssr::objectives::current(&state, store)
                .await
                .map_err(internal)?
                .rpo;
            let policy = state.backups().policy(store);
            stores.push(StoreSummary {
                store,
                latest_ms: latest.and_then(|b| b.backup.finished_ms),
                rpo_hours: (rpo.as_secs() / 3600) as i64,
                schedule: policy.schedule.describe(),
                next_ms: policy.schedule.next_after(now).map(crate::server::unix_ms),
                keep: policy.keep,
                gap_over_rpo: policy.schedule.longest_gap().whole_seconds() > rpo.as_secs() as i64,
                sizes: sizes
                    .into_iter()
                    .map(|row| {
                        (
                            crate::server::unix_ms(row.started_at),
                            row.size_bytes,
                            row.duration_ms,
                        )
                    })
                    .collect(),
            });
        }
        let running_run =
            crate::jobs::ssr::records::working(&state.pg, Some(super::ssr::BACKUP.name), now)
                .await
                .map_err(internal)?
                .last()
                .map(|(_, id)| *id);
        Ok(BackupsOverview {
            now_ms: crate::server::unix_ms(now),
            stores,
            backups: catalogue::list(&state.pg, 100).await.map_err(internal)?,
            restores: restore::list(&state, 20).await.map_err(internal)?,
            target: state.backups().storage.describe(),
            running_run,
            last_synced_ms: super::ssr::sync::last_synced_ms(&state)
                .await
                .map_err(internal)?,
        })
    })
    .await
}

/// Verifies backup `id` (every file's checksum and rows against its manifest) in the
/// background, as a run of the `verify-backup` job; the page shows the result when it is
/// recorded.
#[server(endpoint = "backups/verify")]
pub async fn verify_backup(id: i64) -> Result<(), AppError> {
    crate::auth::ssr::serve(
        crate::auth::Permission::Operate,
        |state, actor| async move {
            // A run of the verify-backup job: its check refuses an incomplete backup here,
            // before anything is recorded, so the button hears why.
            let input =
                serde_json::to_value(super::ssr::verify::VerifyRequest { backup_id: id })
                    .map_err(|e| AppError::internal("Failed to read the request", e.to_string()))?;
            let caller = crate::jobs::api::request_caller(&state)?;
            let reason =
                crate::reason::Reason::own(format!("Verify backup {id} from the backups page"));
            let job = super::VERIFY_JOB;
            crate::jobs::ssr::start_by_hand(&state, job, actor, reason, caller, input).await?;
            Ok(())
        },
    )
    .await
}

/// What restoring backup `id` would do: its tables (Salvage's own marked), the live
/// database's name and the default side database.
#[server(endpoint = "backups/plan")]
pub async fn load_restore_plan(id: i64) -> Result<RestorePlan, AppError> {
    crate::auth::ssr::serve(crate::auth::Permission::Administer, |state, _| async move {
        super::ssr::restore::plan(&state, id).await
    })
    .await
}

/// Starts restoring backup `backup_id` (a run of the restore job, in the background) and
/// returns the run's id at once; Cancel is the runner's (`jobs/cancel`). `mode` is
/// `side` or `in_place`; `tables` is a comma-separated list (empty: all that the mode
/// allows); `confirm` must be the live database's name for `in_place`.
#[server(endpoint = "backups/restore")]
pub async fn start_restore(
    backup_id: i64,
    mode: String,
    target: String,
    tables: String,
    confirm: String,
    reason: String,
    /// A checkbox: present ("on") when the admin confirms the incident freeze.
    #[server(default)]
    confirm_incident: Option<String>,
) -> Result<i64, AppError> {
    crate::auth::ssr::serve(
        crate::auth::Permission::Administer,
        |state, actor| async move {
            let reason = required_reason(&reason)?;
            let in_place = match super::RestoreMode::parse(mode.trim()) {
                Some(mode) => mode == super::RestoreMode::InPlace,
                None => return Err(AppError::invalid("mode", "choose side or in_place")),
            };
            let request = super::ssr::restore::RestoreRequest {
                backup_id,
                in_place,
                target: Some(target),
                tables: tables
                    .split(',')
                    .map(|t| t.trim().to_owned())
                    .filter(|t| !t.is_empty())
                    .collect(),
                confirm: Some(confirm),
                confirm_incident: confirm_incident.is_some(),
                reason: Some(reason.clone()),
            };
            let input = serde_json::to_value(&request).map_err(|e| {
                AppError::internal("Failed to read the restore request", e.to_string())
            })?;
            let caller = crate::jobs::api::request_caller(&state)?;
            let job = super::RESTORE_JOB;
            crate::jobs::ssr::start_by_hand(&state, job, actor, reason, caller, input).await
        },
    )
    .await
}

/// Rolls back in-place restore `id`: the live tables it kept aside go back.
#[server(endpoint = "backups/rollback")]
pub async fn roll_back_restore(id: i64, reason: String) -> Result<Restore, AppError> {
    crate::auth::ssr::serve(
        crate::auth::Permission::Administer,
        |state, actor| async move {
            let reason = required_reason(&reason)?;
            super::ssr::restore::roll_back(&state, id, &actor, Some(reason)).await
        },
    )
    .await
}
