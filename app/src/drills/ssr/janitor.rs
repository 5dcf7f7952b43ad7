//! The `drill-janitor` job: what a drill that died left behind is removed.
//!
//! A drill tears its databases down itself, also when a step fails or it is cancelled.
//! Only a drill whose process died cannot: its `drills` row stays `running` and its
//! databases stay. The janitor closes such a drill (its run's heartbeat is older than
//! [`ABANDONED_AFTER`](crate::jobs::ssr::ABANDONED_AFTER)) as failed, with a history entry, and drops every recorded
//! throwaway database whose drill is no longer running and that is older than
//! `DrillSettings::janitor_after` (an hour). It only ever drops a database recorded in
//! `drill_databases`, so it cannot touch anything else on the server.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::super::{DrillKind, DrillStatus, StoreKind};
use super::records;
use crate::error::AppError;
use crate::history::ssr::{append, NewEntry};
use crate::history::Outcome;
use crate::jobs::ssr::{Job, JobContext, JobFuture, Report};
use crate::jobs::RunStatus;
use crate::server::AppState;
use crate::stores::StoreError;

pub static DRILL_JANITOR: Job = Job {
    name: "drill-janitor",
    description: "Closes drills whose process died and drops the throwaway databases they left.",
    schedule: "*/10 * * * *",
    grace: Duration::from_secs(300),
    run: run_janitor_job,
    permission: crate::auth::Permission::Operate,
    check: None,
};

fn run_janitor_job(ctx: JobContext) -> JobFuture {
    Box::pin(async move { Ok(Box::new(sweep(&ctx.state, &ctx.actor).await?) as Box<dyn Report>) })
}

/// What a janitor run did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JanitorReport {
    /// Drills closed as failed because their process died.
    pub abandoned: Vec<i64>,
    /// Databases dropped, as `<store>:<name>`.
    pub dropped: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Report for JanitorReport {
    fn status(&self) -> RunStatus {
        if self.error.is_some() {
            RunStatus::Partial
        } else {
            RunStatus::Succeeded
        }
    }
    fn rows(&self) -> i64 {
        self.dropped.len() as i64
    }
    fn error(&self) -> Option<String> {
        self.error.clone()
    }
    fn details(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// Drops database `name` of `store` if it exists.
pub async fn drop_database(
    state: &AppState,
    store: StoreKind,
    name: &str,
) -> Result<(), StoreError> {
    use crate::backups::ssr::postgres as pg;
    match store {
        StoreKind::Postgres => {
            let mut admin = pg::connect(pg::working_url(state.backups()), None)
                .await
                .map_err(StoreError::postgres)?;
            sqlx::query(&format!(
                "drop database if exists {} with (force)",
                pg::quote(name)
            ))
            .execute(&mut admin)
            .await
            .map(drop)
            .map_err(StoreError::postgres)
        }
        StoreKind::Clickhouse => state
            .clickhouse
            .client()
            .query(&format!("DROP DATABASE IF EXISTS `{name}`"))
            .execute()
            .await
            .map_err(StoreError::clickhouse),
    }
}

/// One sweep: close the drills whose process died, then drop what is old enough.
pub async fn sweep(
    state: &AppState,
    actor: &crate::auth::ssr::Actor,
) -> Result<JanitorReport, AppError> {
    let now = state.clock.now();
    let pg_err = AppError::wrap("Sweep the drill databases");
    let stale = crate::jobs::ssr::stale_before(now);
    // A drill is running while its run is: the runner's abandoned rule, shared with
    // every other feature whose rows point at their run.
    let dead: Vec<(i64, time::OffsetDateTime)> = sqlx::query_as(concat!(
        "select d.id, d.started_at from drills d
           left join cron_job_runs run on run.id = d.run_id
          where d.status = 'running' and (run.id is null or ",
        crate::jobs::ssr::run_gone!("$1"),
        ") order by d.id"
    ))
    .bind(stale)
    .fetch_all(&state.pg)
    .await
    .map_err(&pg_err)?;
    let mut abandoned = Vec::new();
    for (id, started) in dead {
        let error = "abandoned: the process running it stopped before it finished";
        let mut tx = state.pg.begin().await.map_err(&pg_err)?;
        let closed = sqlx::query!(
            "update drills set status = 'failed', finished_at = $2, error = $3
              where id = $1 and status = 'running'",
            id,
            now,
            error
        )
        .execute(&mut *tx)
        .await
        .map_err(&pg_err)?;
        if closed.rows_affected() == 0 {
            continue;
        }
        // Its restores stopped with it.
        sqlx::query!(
            "update restores set status = 'failed', finished_at = $2, error = $3
              where status = 'running'
                and (store, target) in (select store, name from drill_databases where drill_id = $1)",
            id,
            now,
            error
        )
        .execute(&mut *tx)
        .await
        .map_err(&pg_err)?;
        let details = records::DrillAbandoned {
            drill_id: id,
            kind: DrillKind::Functional,
            status: DrillStatus::Failed,
            error: error.to_owned(),
        };
        let title = format!("Restore drill {id} abandoned: its process stopped");
        let entry = NewEntry::new(details, title, actor, Outcome::Failed)
            .with_times(started, Some(now))
            .with_body(error);
        let history_id = append(&mut tx, &entry).await.map_err(&pg_err)?;
        records::set_history(&mut tx, id, history_id)
            .await
            .map_err(&pg_err)?;
        tx.commit().await.map_err(&pg_err)?;
        abandoned.push(id);
    }
    let old_enough = now - state.drills().janitor_after;
    let leftovers: Vec<(String, String)> = sqlx::query!(
        "select b.store, b.name from drill_databases b join drills d on d.id = b.drill_id
          where b.dropped_at is null and b.created_at < $1 and d.status <> 'running'
          order by b.id",
        old_enough
    )
    .fetch_all(&state.pg)
    .await
    .map_err(&pg_err)?
    .into_iter()
    .map(|row| (row.store, row.name))
    .collect();
    let mut dropped = Vec::new();
    let mut errors = Vec::new();
    for (store, name) in leftovers {
        let Some(store) = StoreKind::parse(&store) else {
            continue;
        };
        match drop_database(state, store, &name).await {
            Ok(()) => {
                records::note_dropped(&state.pg, store, &name, now)
                    .await
                    .map_err(&pg_err)?;
                tracing::info!(store = store.as_str(), database = %name, "drill database dropped by the janitor");
                dropped.push(format!("{}:{name}", store.as_str()));
            }
            Err(error) => errors.push(format!("{name}: {error}")),
        }
    }
    Ok(JanitorReport {
        abandoned,
        dropped,
        error: (!errors.is_empty()).then(|| errors.join("; ")),
    })
}
