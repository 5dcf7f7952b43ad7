//! The `drills` and `drill_databases` rows.

use sqlx::{PgPool, Row};
use time::OffsetDateTime;

use super::super::{Drill, DrillKind, DrillStatus, DrillStep, DrillStore, StoreKind};
use crate::server::unix_ms;

crate::history::ssr::details! {
    /// A tabletop exercise, as logged.
    pub struct TabletopLogged for Drill {
        pub drill_id: i64,
        #[serde(rename = "type")]
        pub kind: DrillKind,
        pub scenario: String,
        pub participants: String,
        pub findings: String,
        pub follow_ups: String,
    }

    /// A restore drill as it ended: each store's recovery, each step.
    pub struct DrillEnded for Drill {
        pub drill_id: i64,
        #[serde(rename = "type")]
        pub kind: DrillKind,
        pub status: DrillStatus,
        pub recovery_ms: i64,
        pub duration_ms: i64,
        pub stores: Vec<DrillStore>,
        pub steps: Vec<DrillStep>,
        pub run_id: i64,
    }

    /// A restore drill whose process stopped, closed by the janitor.
    pub struct DrillAbandoned for Drill {
        pub drill_id: i64,
        #[serde(rename = "type")]
        pub kind: DrillKind,
        pub status: DrillStatus,
        pub error: String,
    }

    /// A store's recovery objectives and drill cadences changed (before and after).
    pub struct ObjectivesSet for Objectives {
        pub store: StoreKind,
        pub before: Objectives,
        pub after: Objectives,
    }
}

/// Recovery objectives in seconds and the drill cadences in days, as the history
/// records them.
#[derive(Clone, Copy, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Objectives {
    pub rpo_seconds: u64,
    pub rto_seconds: u64,
    pub functional_days: i64,
    pub tabletop_days: i64,
}

impl From<crate::backups::ssr::objectives::Objectives> for Objectives {
    fn from(set: crate::backups::ssr::objectives::Objectives) -> Self {
        Self {
            rpo_seconds: set.rpo.as_secs(),
            rto_seconds: set.rto.as_secs(),
            functional_days: set.functional_days,
            tabletop_days: set.tabletop_days,
        }
    }
}

/// Records a functional drill as `running` for run `run_id`; returns its id.
pub async fn start(
    pg: &PgPool,
    run_id: i64,
    trigger: &str,
    actor: &crate::auth::ssr::Actor,
    reason: Option<&crate::reason::Reason>,
    at: OffsetDateTime,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        "insert into drills (kind, run_id, trigger, actor, actor_user_id, reason, started_at)
         values ('functional', $1, $2, $3, $4, $5, $6) returning id",
        run_id,
        trigger,
        actor.name,
        actor.user_id,
        reason.map(crate::reason::Reason::as_str),
        at
    )
    .fetch_one(pg)
    .await
}

/// Saves the steps so far (the page and the terminal follow them).
pub async fn save_steps(pg: &PgPool, id: i64, steps: &[DrillStep]) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update drills set steps = $2 where id = $1",
        id,
        serde_json::to_value(steps).unwrap_or_default()
    )
    .execute(pg)
    .await
    .map(drop)
}

/// Records throwaway database `name` of drill `id` before it is created.
pub async fn note_database(
    pg: &PgPool,
    id: i64,
    store: StoreKind,
    name: &str,
    at: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "insert into drill_databases (drill_id, store, name, created_at) values ($1, $2, $3, $4)
         on conflict (store, name) do update set drill_id = excluded.drill_id,
             created_at = excluded.created_at, dropped_at = null",
        id,
        store.as_str(),
        name,
        at
    )
    .execute(pg)
    .await
    .map(drop)
}

/// Notes that throwaway database `name` is gone.
pub async fn note_dropped(
    pg: &PgPool,
    store: StoreKind,
    name: &str,
    at: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update drill_databases set dropped_at = $3 where store = $1 and name = $2",
        store.as_str(),
        name,
        at
    )
    .execute(pg)
    .await
    .map(drop)
}

/// The throwaway databases of drill `id` not yet dropped.
pub async fn live_databases(pg: &PgPool, id: i64) -> Result<Vec<(StoreKind, String)>, sqlx::Error> {
    let rows = sqlx::query!(
        "select store, name from drill_databases
          where drill_id = $1 and dropped_at is null order by id",
        id
    )
    .fetch_all(pg)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| StoreKind::parse(&row.store).map(|s| (s, row.name)))
        .collect())
}

const COLUMNS: &str = "d.id, d.kind, d.status, d.run_id, d.trigger, d.actor, d.reason,
    d.started_at, d.finished_at, d.duration_ms, d.steps, d.stores, d.error, d.history_id,
    d.scenario, d.participants, d.findings, d.follow_ups, r.progress_done, r.progress_total";

const FROM: &str = "drills d left join cron_job_runs r on r.id = d.run_id and d.status = 'running'";

fn drill_of(row: &sqlx::postgres::PgRow) -> Drill {
    let json = |column: &str| row.get::<serde_json::Value, _>(column);
    Drill {
        id: row.get("id"),
        kind: DrillKind::parse(row.get("kind")).unwrap_or(DrillKind::Functional),
        status: DrillStatus::parse(row.get("status")).unwrap_or(DrillStatus::Failed),
        run_id: row.get("run_id"),
        trigger: row.get("trigger"),
        actor: row.get("actor"),
        reason: row.get("reason"),
        started_ms: unix_ms(row.get("started_at")),
        finished_ms: row
            .get::<Option<OffsetDateTime>, _>("finished_at")
            .map(unix_ms),
        duration_ms: row.get("duration_ms"),
        steps: serde_json::from_value::<Vec<DrillStep>>(json("steps")).unwrap_or_default(),
        stores: serde_json::from_value::<Vec<DrillStore>>(json("stores")).unwrap_or_default(),
        error: row.get("error"),
        history_id: row.get("history_id"),
        tabletop: row
            .get::<Option<String>, _>("scenario")
            .map(|scenario| super::super::Tabletop {
                scenario,
                participants: row
                    .get::<Option<String>, _>("participants")
                    .unwrap_or_default(),
                findings: row.get::<Option<String>, _>("findings").unwrap_or_default(),
                follow_ups: row
                    .get::<Option<String>, _>("follow_ups")
                    .unwrap_or_default(),
            }),
        progress: match (
            row.get::<Option<i64>, _>("progress_done"),
            row.get::<Option<i64>, _>("progress_total"),
        ) {
            (Some(done), Some(total)) => Some((done, total)),
            _ => None,
        },
    }
}

/// Drill `id`.
pub async fn load(pg: &PgPool, id: i64) -> Result<Option<Drill>, sqlx::Error> {
    one(pg, "d.id", id).await
}

/// The drill of job run `run_id`.
pub async fn of_run(pg: &PgPool, run_id: i64) -> Result<Option<Drill>, sqlx::Error> {
    one(pg, "d.run_id", run_id).await
}

async fn one(pg: &PgPool, column: &'static str, value: i64) -> Result<Option<Drill>, sqlx::Error> {
    let row = sqlx::query(&format!("select {COLUMNS} from {FROM} where {column} = $1"))
        .bind(value)
        .fetch_optional(pg)
        .await?;
    Ok(row.as_ref().map(drill_of))
}

/// Links drill `id` to its history entry, in the transaction that wrote the entry.
pub async fn set_history(
    conn: &mut sqlx::PgConnection,
    id: i64,
    history_id: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update drills set history_id = $2 where id = $1",
        id,
        history_id
    )
    .execute(conn)
    .await
    .map(drop)
}

/// The newest `limit` drills, newest first.
pub async fn list(pg: &PgPool, limit: i64) -> Result<Vec<Drill>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "select {COLUMNS} from {FROM} order by d.started_at desc, d.id desc limit $1"
    ))
    .bind(limit)
    .fetch_all(pg)
    .await?;
    Ok(rows.iter().map(drill_of).collect())
}
