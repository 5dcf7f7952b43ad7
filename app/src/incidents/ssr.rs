//! Incident mode on the server: snapshots, the post-recovery checklist, the incident
//! freeze and the RCA owner. Every change is a history entry on the incident's timeline.

use time::OffsetDateTime;

use super::{CheckItem, IncidentMode, MANUAL_ITEMS};
use crate::auth::ssr::Actor;
use crate::error::AppError;
use crate::freeze::ssr as freeze;
use crate::history::ssr::{append, NewEntry};
use crate::history::EntryKind;
use crate::history::Outcome;
use crate::server::{unix_ms, AppState};

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

/// How recent a successful replay must be for a non-empty queue to count as draining.
const DRAINING_WITHIN: time::Duration = time::Duration::minutes(15);

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

async fn open_incident(state: &AppState, id: i64) -> Result<OffsetDateTime, AppError> {
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
    let entry = NewEntry::new(details, title, actor, Outcome::Info)
        .with_incident(Some(id))
        .with_times(now, Some(now));
    let mut tx = state.pg.begin().await.map_err(&pg_err)?;
    let entry_id = append(&mut tx, &entry).await.map_err(&pg_err)?;
    tx.commit().await.map_err(&pg_err)?;
    Ok(entry_id)
}

fn live(key: &str, label: &str, ok: bool, detail: String) -> CheckItem {
    CheckItem {
        key: key.to_owned(),
        label: label.to_owned(),
        live: true,
        ok,
        detail,
        checked_by: None,
        checked_ms: None,
    }
}

/// The post-recovery checklist of incident `id` (begun at `started`) now.
pub async fn checklist(
    state: &AppState,
    id: i64,
    started: OffsetDateTime,
) -> Result<Vec<CheckItem>, AppError> {
    let now = state.clock.now();
    let pg_err = AppError::wrap("Read the post-recovery checklist");
    let mut items = Vec::new();

    let stores = crate::health::ssr::check_stores(state).await;
    let both = stores.postgres.ok && stores.clickhouse.ok;
    let describe =
        |name: &str, check: &crate::health::StoreCheck| match (&check.error, check.latency_ms) {
            (Some(error), _) => format!("{name}: {error}"),
            (None, Some(ms)) => format!("{name} answered in {ms:.0} ms"),
            (None, None) => format!("{name} answered"),
        };
    items.push(live(
        "stores_ready",
        "Both stores are ready",
        both,
        format!(
            "{}; {}",
            describe("PostgreSQL", &stores.postgres),
            describe("ClickHouse", &stores.clickhouse)
        ),
    ));

    let depth: i64 = crate::queues::ssr::stats::queue_depths(&state.pg)
        .await
        .map_err(&pg_err)?
        .iter()
        .map(|(_, d)| d)
        .sum();
    let replayed = sqlx::query_scalar!(
        r#"select coalesce(rows_processed, 0) as "rows!" from cron_job_runs
          where job_name = $2 and outcome in ('succeeded', 'partial')
            and ran_at > $1 order by ran_at desc limit 1"#,
        now - DRAINING_WITHIN,
        crate::queues::REPLAY_JOB
    )
    .fetch_optional(&state.pg)
    .await
    .map_err(&pg_err)?;
    let (ok, detail) = match (depth, replayed) {
        (0, _) => (true, "both fallback queues are empty".to_owned()),
        (d, Some(rows)) if rows > 0 => (
            true,
            format!("{d} rows queued; the last replay moved {rows} rows: draining"),
        ),
        (d, _) => (
            false,
            format!("{d} rows queued and no replay has moved rows in 15 minutes"),
        ),
    };
    items.push(live(
        "queues_draining",
        "The fallback queues are empty or draining",
        ok,
        detail,
    ));

    let alerts = crate::alerts::ssr::query::counts(&state.pg, now)
        .await
        .map_err(&pg_err)?;
    items.push(live(
        "no_critical_alert",
        "No critical alert is open",
        alerts.critical == 0,
        format!("{} critical alerts open", alerts.critical),
    ));

    let mut missing = Vec::new();
    for store in crate::freeze::StoreKind::ALL {
        let verified = sqlx::query_scalar!(
            r#"select exists (select 1 from backups where store = $1 and status = 'verified'
                                and verified_at >= $2) as "verified!""#,
            store.as_str(),
            started
        )
        .fetch_one(&state.pg)
        .await
        .map_err(&pg_err)?;
        if !verified {
            missing.push(store.label());
        }
    }
    items.push(live(
        "backup_verified",
        "A backup of each store verified since the incident began",
        missing.is_empty(),
        if missing.is_empty() {
            "both stores have a backup verified since the incident began".to_owned()
        } else {
            format!("none yet of {}", missing.join(" and "))
        },
    ));

    let chain = crate::history::chain::verify(&state.pg, &state.clickhouse, now, "incident")
        .await
        .map_err(&pg_err)?;
    items.push(live(
        "chain_verifies",
        "The history chain verifies",
        chain.first_broken.is_none(),
        match &chain.first_broken {
            None => format!("{} entries link up", chain.entries),
            Some(broken) => format!("entry #{}: {}", broken.id, broken.problem),
        },
    ));

    let ticks: Vec<(String, String, OffsetDateTime)> = sqlx::query!(
        "select item, checked_by, checked_at from incident_checklist where incident_id = $1",
        id
    )
    .fetch_all(&state.pg)
    .await
    .map_err(&pg_err)?
    .into_iter()
    .map(|row| (row.item, row.checked_by, row.checked_at))
    .collect();
    for (key, label) in MANUAL_ITEMS {
        let tick = ticks.iter().find(|(item, _, _)| item == key);
        items.push(CheckItem {
            key: (*key).to_owned(),
            label: (*label).to_owned(),
            live: false,
            ok: tick.is_some(),
            detail: match tick {
                Some((_, by, _)) => format!("ticked by {by}"),
                None => "not ticked".to_owned(),
            },
            checked_by: tick.map(|(_, by, _)| by.clone()),
            checked_ms: tick.map(|(_, _, at)| unix_ms(*at)),
        });
    }
    Ok(items)
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
    Ok(IncidentMode {
        incident_id: id,
        open,
        frozen: frozen == Some(id),
        other_freeze: frozen.filter(|f| *f != id),
        checks: checklist(state, id, started).await?,
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

/// Whether incident `id` may be resolved: every check passes, or an admin overrides
/// with a reason (returned, to be recorded with the resolution).
pub async fn may_resolve(
    state: &AppState,
    id: i64,
    override_reason: Option<&crate::reason::Reason>,
    actor: &Actor,
) -> Result<Option<String>, AppError> {
    let started = open_incident(state, id).await?;
    let failing: Vec<String> = checklist(state, id, started)
        .await?
        .into_iter()
        .filter(|c| !c.ok)
        .map(|c| c.label)
        .collect();
    if failing.is_empty() {
        return Ok(None);
    }
    match override_reason {
        Some(reason) if actor.role.can(crate::auth::Permission::Administer) => Ok(Some(format!(
            "Resolved with the checklist incomplete ({}), by an admin: {}",
            failing.join("; "),
            reason.as_str()
        ))),
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
    override_reason: Option<crate::reason::Reason>,
    actor: Actor,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Option<String>, AppError>> + Send>> {
    Box::pin(async move { may_resolve(&state, id, override_reason.as_ref(), &actor).await })
}
