//! The post-recovery checklist: what Salvage measures now (the stores, the queues, the
//! alerts, a verified backup, the chain, and the loose ends an outage leaves: cron
//! dropouts, paused endpoints, its dead letters, the schema, migrations, the freeze, the
//! RCA owner) and what a person ticks. Recorded with the resolution, so a resolved
//! incident shows it as it stood then.

use serde_json::Value;
use time::OffsetDateTime;

use super::super::{CheckItem, MANUAL_ITEMS};
use crate::error::AppError;
use crate::history::EntryKind;
use crate::reason::Reason;
use crate::server::{unix_ms, AppState};

/// How recent a successful replay must be for a non-empty queue to count as draining.
const DRAINING_WITHIN: time::Duration = time::Duration::minutes(15);

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

/// The post-recovery checklist of incident `id` (begun at `started`) now; queues still
/// draining pass only with `draining_reason`, typed by the person resolving.
pub async fn checklist(
    state: &AppState,
    id: i64,
    started: OffsetDateTime,
    draining_reason: Option<&Reason>,
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
    let (ok, detail) = match (depth, replayed, draining_reason) {
        (0, _, _) => (true, "both fallback queues are empty".to_owned()),
        (d, Some(rows), Some(reason)) if rows > 0 => (
            true,
            format!(
                "{d} rows queued; the last replay moved {rows} rows: draining, resolved with them because {}",
                reason.as_str()
            ),
        ),
        (d, Some(rows), None) if rows > 0 => (
            false,
            format!(
                "{d} rows queued; the last replay moved {rows} rows: draining, so resolving asks why that is fine"
            ),
        ),
        (d, _, _) => (
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

    items.extend(loose_ends(state, id, started, now).await?);

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

/// The loose ends an outage leaves, measured now for incident `id` (begun at `started`).
async fn loose_ends(
    state: &AppState,
    id: i64,
    started: OffsetDateTime,
    now: OffsetDateTime,
) -> Result<Vec<CheckItem>, AppError> {
    let pg_err = AppError::wrap("Read the post-recovery checklist");
    let mut items = Vec::new();

    let flagged = crate::crons::ssr::status::flagged(state, now)
        .await
        .map_err(&pg_err)?;
    items.push(live(
        "crons_on_time",
        "No cron job is late, dropping runs or failing",
        flagged.is_empty(),
        if flagged.is_empty() {
            "every job runs on its schedule".to_owned()
        } else {
            format!("flagged: {}", flagged.join(", "))
        },
    ));

    let webhooks = crate::dead_letters::ssr::dlq::health(&state.pg, now)
        .await
        .map_err(&pg_err)?;
    let paused = webhooks["paused"].as_i64().unwrap_or_default();
    items.push(live(
        "endpoints_running",
        "No webhook endpoint is paused",
        paused == 0,
        if paused == 0 {
            "every endpoint's circuit is closed".to_owned()
        } else {
            format!("{paused} endpoints paused: resume each once its receiver answers")
        },
    ));

    let dead = crate::dead_letters::ssr::dlq::dead_lettered_since(&state.pg, started)
        .await
        .map_err(&pg_err)?;
    items.push(live(
        "outage_dead_letters",
        "The dead letters made since the incident began are redriven or purged",
        dead == 0,
        if dead == 0 {
            "none of the deliveries dead-lettered since the incident began waits".to_owned()
        } else {
            format!("{dead} deliveries dead-lettered since the incident began wait on /admin/dlq")
        },
    ));

    let schema = crate::migrations::ssr::schema::status(&state.pg)
        .await
        .map_err(&pg_err)?;
    items.push(live(
        "schema_current",
        "The schema is the one this version expects",
        schema.ok,
        schema
            .problem
            .unwrap_or_else(|| format!("version {} applied", schema.applied)),
    ));

    let (_, stuck, failed) = crate::migrations::ssr::store::running_stuck_failed(state)
        .await
        .map_err(&pg_err)?;
    items.push(live(
        "migrations_healthy",
        "No background migration is stuck or failed",
        stuck == 0 && failed == 0,
        format!("{stuck} stuck, {failed} failed"),
    ));

    let freezes = crate::freeze::ssr::open_freezes(&state.pg)
        .await
        .map_err(&pg_err)?;
    items.push(live(
        "freeze_lifted",
        "The write freeze is lifted",
        freezes.is_empty(),
        match freezes.first() {
            None => "no freeze is on".to_owned(),
            Some(f) => match f.incident_id {
                Some(incident) => format!("incident #{incident}'s freeze is on"),
                None => format!("a restore's freeze is on: {}", f.reason),
            },
        },
    ));

    let owner = sqlx::query_scalar!(
        "select rca_owner from incident_owners where incident_id = $1",
        id
    )
    .fetch_optional(&state.pg)
    .await
    .map_err(&pg_err)?;
    items.push(live(
        "rca_owner",
        "Someone owns the root-cause analysis",
        owner.is_some(),
        match owner {
            Some(owner) => format!("owned by {owner}"),
            None => "no RCA owner named yet".to_owned(),
        },
    ));
    Ok(items)
}

/// The checklist recorded with incident `id`'s resolution; `None` when the resolution
/// predates the record (or the incident is open).
pub async fn recorded(state: &AppState, id: i64) -> Result<Option<Vec<CheckItem>>, AppError> {
    let recorded: Option<Value> = sqlx::query_scalar(
        "select details -> 'checklist' from runbook_history
          where incident_id = $1 and kind = $2 order by id desc limit 1",
    )
    .bind(id)
    .bind(EntryKind::IncidentResolved.as_str())
    .fetch_optional(&state.pg)
    .await
    .map_err(AppError::wrap("Read the recorded checklist"))?
    .flatten();
    Ok(recorded.and_then(|value| serde_json::from_value(value).ok()))
}
