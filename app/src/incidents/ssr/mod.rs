//! Incident mode on the server: snapshots, the post-recovery checklist, the incident
//! freeze and the RCA owner. Every change is a history entry on the incident's timeline.

use time::OffsetDateTime;

pub mod checklist;

pub use checklist::checklist;

use super::{IncidentMode, MANUAL_ITEMS};
use crate::auth::ssr::Actor;
use crate::error::AppError;
use crate::freeze::ssr as freeze;
use crate::history::ssr::{append, NewEntry, Resolution, ResolveAsk};
use crate::history::EntryKind;
use crate::history::Outcome;
use crate::server::AppState;

crate::history::ssr::details! {
    /// Both stores, the queues, the open alerts and the flagged cron jobs at one moment
    /// of an incident.
    struct Snapshot for IncidentSnapshot {
        why: String,
        stores: SnapshotStores,
        queues: Vec<SnapshotQueue>,
        alerts: SnapshotAlerts,
        cron_flagged: Vec<String>,
    }

    /// What an ingest key did (its blast radius), recorded in an incident's timeline.
    struct KeySnapshot for IncidentSnapshot {
        key_usage: crate::ingest_keys::KeyUsage,
    }

    /// An item of the incident's checklist ticked or cleared.
    struct ChecklistTicked for Note {
        checklist: String,
        done: bool,
    }

    /// Who owns the incident's root-cause analysis.
    struct RcaOwner for Note {
        rca_owner: String,
    }

    /// The incident's write freeze switched on or off.
    struct IncidentFreeze for Freeze {
        freeze: bool,
    }
}

#[derive(Clone, Debug, serde::Serialize)]
struct SnapshotStores {
    postgres: crate::health::StoreCheck,
    clickhouse: crate::health::StoreCheck,
}

#[derive(Clone, Debug, serde::Serialize)]
struct SnapshotQueue {
    queue: crate::queues::Queue,
    depth: i64,
}

#[derive(Clone, Debug, serde::Serialize)]
struct SnapshotAlerts {
    critical: i64,
    warning: i64,
    info: i64,
    acknowledged: i64,
    silenced: i64,
}

/// Incident `id`: when it began and whether it is still open. 404 when `id` is not an
/// incident.
pub async fn incident(state: &AppState, id: i64) -> Result<(OffsetDateTime, bool), AppError> {
    let view = crate::history::ssr::load(&state.pg, id, state.clock.now())
        .await
        .map_err(AppError::wrap("Load the incident"))?
        .filter(|v| EntryKind::Incident.is(&v.entry.kind))
        .ok_or_else(|| AppError::NotFound {
            what: format!("Incident {id}"),
        })?;
    let started =
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(view.entry.started_at) * 1_000_000)
            .map_err(|e| AppError::internal("Read the incident's start", e.to_string()))?;
    Ok((started, view.resolved_at.is_none()))
}

/// When open incident `id` began; 409 when it is resolved, 404 when it is not one.
pub async fn open_incident(state: &AppState, id: i64) -> Result<OffsetDateTime, AppError> {
    let (started, open) = incident(state, id).await?;
    if !open {
        return Err(AppError::Conflict {
            message: format!("Incident #{id} is resolved."),
        });
    }
    Ok(started)
}

/// Captures the state of both stores, the queues, the open alerts and the cron flags
/// into the incident's timeline. Returns the entry's id.
pub async fn snapshot(
    state: &AppState,
    id: i64,
    actor: &Actor,
    why: &str,
) -> Result<i64, AppError> {
    let now = state.clock.now();
    let stores = crate::health::ssr::check_stores(state).await;
    let pg_err = AppError::wrap("Take a status snapshot");
    let queues = crate::queues::ssr::stats::queue_depths(&state.pg)
        .await
        .map_err(&pg_err)?;
    let alerts = crate::alerts::ssr::query::counts(&state.pg, now)
        .await
        .map_err(&pg_err)?;
    let flagged = crate::crons::ssr::status::flagged(state, now)
        .await
        .map_err(&pg_err)?;
    let word = |ok: bool| if ok { "up" } else { "DOWN" };
    let depth: i64 = queues.iter().map(|(_, d)| d).sum();
    let title = format!(
        "Status snapshot ({why}): PostgreSQL {}, ClickHouse {}, {depth} rows queued, {} critical and {} warning alerts open, {} cron jobs flagged",
        word(stores.postgres.ok),
        word(stores.clickhouse.ok),
        alerts.critical,
        alerts.warning,
        flagged.len()
    );
    let details = Snapshot {
        why: why.to_owned(),
        stores: SnapshotStores {
            postgres: stores.postgres,
            clickhouse: stores.clickhouse,
        },
        queues: queues
            .into_iter()
            .map(|(queue, depth)| SnapshotQueue { queue, depth })
            .collect(),
        alerts: SnapshotAlerts {
            critical: alerts.critical,
            warning: alerts.warning,
            info: alerts.info,
            acknowledged: alerts.acknowledged,
            silenced: alerts.silenced,
        },
        cron_flagged: flagged,
    };
    let entry = NewEntry::new(details, title, actor, Outcome::Info);
    in_timeline(state, id, entry, now).await
}

/// Appends `entry` to incident `id`'s timeline at `now`; returns its id.
async fn in_timeline(
    state: &AppState,
    id: i64,
    entry: NewEntry,
    now: OffsetDateTime,
) -> Result<i64, AppError> {
    let pg_err = AppError::wrap("Write the incident's timeline");
    let entry = entry.with_incident(Some(id)).with_times(now, Some(now));
    let mut tx = state.pg.begin().await.map_err(&pg_err)?;
    let entry_id = append(&mut tx, &entry).await.map_err(&pg_err)?;
    tx.commit().await.map_err(&pg_err)?;
    Ok(entry_id)
}

/// Records what ingest key `key_id` did in the last 7 days in open incident `id`'s
/// timeline: first and last use, requests and rows per hour, its source addresses.
pub async fn key_snapshot(
    state: &AppState,
    id: i64,
    key_id: i64,
    actor: &Actor,
) -> Result<i64, AppError> {
    let now = state.clock.now();
    let pg_err = AppError::wrap("Record the key's usage");
    // What this process counted and did not flush yet belongs in the record.
    state.key_usage().flush(&state.pg).await.map_err(&pg_err)?;
    let usage = crate::ingest_keys::usage::usage(&state.pg, key_id, now)
        .await
        .map_err(&pg_err)?
        .ok_or_else(|| AppError::invalid("key_id", format!("no ingest key #{key_id}")))?;
    let when = |ms: Option<i64>| ms.map_or_else(|| "never".to_owned(), crate::format::format_utc);
    let title = format!(
        "Ingest key #{key_id} \u{201c}{}\u{201d}: {} requests and {} rows in 7 days from {} addresses; first used {}, last used {}",
        usage.name,
        usage.requests,
        usage.rows,
        usage.sources.len(),
        when(usage.first_used_ms),
        when(usage.last_used_ms)
    );
    let details = KeySnapshot { key_usage: usage };
    in_timeline(
        state,
        id,
        NewEntry::new(details, title, actor, Outcome::Info),
        now,
    )
    .await
}

/// Incident `id`'s mode, for its panel.
pub async fn mode(state: &AppState, id: i64) -> Result<IncidentMode, AppError> {
    let (started, open) = incident(state, id).await?;
    let pg_err = AppError::wrap("Read the incident");
    let frozen = freeze::incident_frozen(&state.pg).await.map_err(&pg_err)?;
    let rca_owner = sqlx::query_scalar!(
        "select rca_owner from incident_owners where incident_id = $1",
        id
    )
    .fetch_optional(&state.pg)
    .await
    .map_err(&pg_err)?;
    let snapshots = sqlx::query_scalar!(
        r#"select count(*) as "count!" from runbook_history where incident_id = $1 and kind = $2"#,
        id,
        EntryKind::IncidentSnapshot.as_str()
    )
    .fetch_one(&state.pg)
    .await
    .map_err(&pg_err)?;
    // Open: measured now. Resolved: as it stood at the resolution, never re-evaluated.
    let (checks, checks_recorded) = if open {
        (checklist(state, id, started, None).await?, true)
    } else {
        match checklist::recorded(state, id).await? {
            Some(checks) => (checks, true),
            None => (Vec::new(), false),
        }
    };
    Ok(IncidentMode {
        incident_id: id,
        open,
        frozen: frozen == Some(id),
        other_freeze: frozen.filter(|f| *f != id),
        checks,
        checks_recorded,
        rca_owner,
        snapshots,
    })
}

/// Ticks manual item `item` of incident `id` (or clears it).
pub async fn tick(
    state: &AppState,
    id: i64,
    item: &str,
    done: bool,
    actor: &Actor,
) -> Result<(), AppError> {
    let Some((_, label)) = MANUAL_ITEMS.iter().find(|(key, _)| *key == item) else {
        return Err(AppError::invalid(
            "item",
            format!(
                "one of {}",
                MANUAL_ITEMS
                    .iter()
                    .map(|(k, _)| *k)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    };
    open_incident(state, id).await?;
    let now = state.clock.now();
    let pg_err = AppError::wrap("Tick a checklist item");
    let mut tx = state.pg.begin().await.map_err(&pg_err)?;
    let changed = if done {
        sqlx::query!(
            "insert into incident_checklist (incident_id, item, checked_by, checked_at)
             values ($1, $2, $3, $4) on conflict do nothing",
            id,
            item,
            actor.name,
            now
        )
        .execute(&mut *tx)
        .await
    } else {
        sqlx::query!(
            "delete from incident_checklist where incident_id = $1 and item = $2",
            id,
            item
        )
        .execute(&mut *tx)
        .await
    }
    .map_err(&pg_err)?
    .rows_affected();
    if changed == 0 {
        return Ok(());
    }
    let title = if done {
        format!("Checklist: {label}")
    } else {
        format!("Checklist item cleared: {label}")
    };
    let details = ChecklistTicked {
        checklist: item.to_owned(),
        done,
    };
    let entry = NewEntry::new(details, title, actor, Outcome::Info)
        .with_incident(Some(id))
        .with_times(now, Some(now));
    append(&mut tx, &entry).await.map_err(&pg_err)?;
    tx.commit().await.map_err(&pg_err)
}

/// Names the owner of incident `id`'s root-cause analysis.
pub async fn set_owner(
    state: &AppState,
    id: i64,
    owner: &str,
    actor: &Actor,
) -> Result<(), AppError> {
    let owner = owner.trim();
    if owner.is_empty() || owner.chars().count() > 200 {
        return Err(AppError::invalid(
            "rca_owner",
            "a name or email, 200 characters at most",
        ));
    }
    incident(state, id).await?;
    let now = state.clock.now();
    let pg_err = AppError::wrap("Set the RCA owner");
    let mut tx = state.pg.begin().await.map_err(&pg_err)?;
    sqlx::query!(
        "insert into incident_owners (incident_id, rca_owner, set_by, set_at) values ($1, $2, $3, $4)
         on conflict (incident_id) do update set rca_owner = excluded.rca_owner,
             set_by = excluded.set_by, set_at = excluded.set_at",
        id,
        owner,
        actor.name,
        now
    )
    .execute(&mut *tx)
    .await
    .map_err(&pg_err)?;
    let details = RcaOwner {
        rca_owner: owner.to_owned(),
    };
    let entry = NewEntry::new(details, format!("RCA owner: {owner}"), actor, Outcome::Info)
        .with_incident(Some(id))
        .with_times(now, Some(now));
    append(&mut tx, &entry).await.map_err(&pg_err)?;
    tx.commit().await.map_err(&pg_err)
}

/// Freezes incident `id` (risky mutations wait) or lifts its freeze, with a reason; a
/// history entry on its timeline either way.
pub async fn set_freeze(
    state: &AppState,
    id: i64,
    on: bool,
    reason: &crate::reason::Reason,
    actor: &Actor,
) -> Result<(), AppError> {
    if on {
        open_incident(state, id).await?;
    } else {
        incident(state, id).await?;
    }
    let now = state.clock.now();
    let pg_err = AppError::wrap("Change the incident freeze");
    let mut tx = state.pg.begin().await.map_err(&pg_err)?;
    let title = if on {
        freeze::open_incident(&mut tx, id, reason.as_str(), &actor.name).await?;
        "Freeze on: expiry, backup retention and in-place restores wait".to_owned()
    } else {
        match freeze::lift_incident(&mut tx).await.map_err(&pg_err)? {
            Some(frozen) if frozen == id => "Freeze lifted".to_owned(),
            Some(other) => {
                return Err(AppError::Conflict {
                    message: format!("The freeze on is incident #{other}'s; lift it there."),
                })
            }
            None => {
                return Err(AppError::Conflict {
                    message: "No incident freeze is on.".into(),
                })
            }
        }
    };
    let entry = NewEntry::new(IncidentFreeze { freeze: on }, title, actor, Outcome::Info)
        .with_incident(Some(id))
        .with_reason(Some(reason.clone()))
        .with_times(now, Some(now));
    append(&mut tx, &entry).await.map_err(&pg_err)?;
    tx.commit().await.map_err(&pg_err)
}

/// Whether incident `id` may be resolved: every check passes (queues still draining
/// with the resolver's reason), or an admin overrides with a reason. The checklist as
/// it stood is returned to be recorded with the resolution, with the override's note.
pub async fn may_resolve(
    state: &AppState,
    id: i64,
    ask: &ResolveAsk,
    actor: &Actor,
) -> Result<Resolution, AppError> {
    let started = open_incident(state, id).await?;
    let checks = checklist(state, id, started, ask.draining_reason.as_ref()).await?;
    let failing: Vec<String> = checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| c.label.clone())
        .collect();
    let checklist = serde_json::to_value(&checks)
        .map_err(|e| AppError::internal("Record the checklist", e.to_string()))?;
    if failing.is_empty() {
        return Ok(Resolution {
            note: None,
            checklist,
        });
    }
    match &ask.override_reason {
        Some(reason) if actor.role.can(crate::auth::Permission::Administer) => Ok(Resolution {
            note: Some(format!(
                "Resolved with the checklist incomplete ({}), by an admin: {}",
                failing.join("; "),
                reason.as_str()
            )),
            checklist,
        }),
        Some(_) => Err(AppError::Forbidden {
            message: "Only an admin may resolve an incident whose checklist is incomplete.".into(),
        }),
        None => Err(AppError::invalid(
            "checklist",
            format!(
                "not every post-recovery check passes: {}",
                failing.join("; ")
            ),
        )),
    }
}

/// [`crate::history::ssr::IncidentHooks::declared`]: the snapshot taken on declare.
pub fn on_declared(state: AppState, id: i64, actor: Actor) -> crate::history::ssr::HookFuture<()> {
    Box::pin(async move {
        if let Err(error) = snapshot(&state, id, &actor, "declared").await {
            tracing::warn!(incident = id, %error, "no status snapshot on declare");
        }
    })
}

/// [`crate::history::ssr::IncidentHooks::may_resolve`].
pub fn may_resolve_hook(
    state: AppState,
    id: i64,
    ask: ResolveAsk,
    actor: Actor,
) -> crate::history::ssr::HookFuture<Result<Resolution, AppError>> {
    Box::pin(async move { may_resolve(&state, id, &ask, &actor).await })
}
