//! Redrives: dead letters matching a filter sent again, exactly once each.
//!
//! [`prepare`] records the redrive with what matches now (`total`, and the bounds
//! `max_id` and `cutoff`: a letter dead-lettered after the start is never taken, so a
//! redrive never takes more than its dry run counted). It then runs as a run of the
//! on-demand [`REDRIVE`] job ([`start`] in the background, [`run`] waiting), whose run
//! holds the heartbeat, the progress and the cancel like every long action's. The job
//! walks the matching letters by id in keyset batches; each batch is put back to
//! `pending` (a fresh retry budget, the same `webhook-id`) in one transaction with the
//! redrive's cursor and count, and only letters still dead are taken, so two redrives of
//! one filter never send a letter twice. Per endpoint it requeues at most `redrive_rate`
//! a second, and waits while the endpoint's circuit is open. Cancel is read between
//! batches. A redrive whose run died (the runner's abandoned rule) is shown as
//! `abandoned`; running the same filter again takes what it left.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::{PgPool, Postgres, QueryBuilder, Row};
use time::OffsetDateTime;

use super::super::{Redrive, RedriveStatus};
use super::filter::DlqFilter;
use crate::auth::ssr::Actor;
use crate::error::AppError;
use crate::history::ssr::{append, NewEntry};
use crate::history::Outcome;
use crate::jobs::ssr::{
    stale_before, Caller, CheckFuture, Firing, Job, JobContext, JobFuture, OnProgress, Report,
    RunOptions, Tracker, ON_DEMAND,
};
use crate::jobs::{RunStatus, Trigger};
use crate::server::AppState;

/// The redrive job's input: the redrive [`prepare`] recorded.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RedriveInput {
    pub redrive_id: i64,
}

/// Sends the dead letters of a recorded redrive again (the DLQ page's Redrive and
/// "Re-enable and recover", `salvage dlq redrive`).
pub static REDRIVE: Job = Job {
    name: super::super::REDRIVE_JOB,
    description: "Sends the dead letters matching a filter again, exactly once each.",
    schedule: ON_DEMAND,
    grace: Duration::ZERO,
    run: run_redrive_job,
    permission: crate::auth::Permission::Operate,
    check: Some(check_input),
};

fn check_input(state: AppState, _actor: Actor, input: serde_json::Value) -> CheckFuture {
    Box::pin(async move {
        let input: RedriveInput = crate::jobs::ssr::read_input(input)?;
        let waiting = sqlx::query_scalar!(
            r#"select exists (select 1 from webhook_redrives
                               where id = $1 and status = 'running' and run_id is null) as "waiting!""#,
            input.redrive_id
        )
        .fetch_one(&state.pg)
        .await
        .map_err(AppError::wrap("Read a redrive"))?;
        if waiting {
            Ok(())
        } else {
            Err(AppError::Conflict {
                message: format!("Redrive {} is not waiting to run.", input.redrive_id),
            })
        }
    })
}

fn run_redrive_job(ctx: JobContext) -> JobFuture {
    Box::pin(async move {
        let input: RedriveInput = ctx.input()?;
        sqlx::query!(
            "update webhook_redrives set run_id = $2 where id = $1",
            input.redrive_id,
            ctx.run_id
        )
        .execute(&ctx.state.pg)
        .await
        .map_err(AppError::wrap("Start a redrive"))?;
        let redrive = execute(&ctx.state, input.redrive_id, &ctx.tracker).await?;
        Ok(Box::new(redrive) as Box<dyn Report>)
    })
}

impl Report for Redrive {
    fn status(&self) -> RunStatus {
        self.status.run_status()
    }

    fn rows(&self) -> i64 {
        self.done
    }

    fn error(&self) -> Option<String> {
        self.error.clone()
    }

    fn history_id(&self) -> Option<i64> {
        self.history_id
    }

    fn details(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// Records a redrive of `filter` and starts it in the background as a run of
/// [`REDRIVE`]; returns the redrive's id. Refused when nothing matches.
pub async fn start(
    state: &AppState,
    actor: &Actor,
    filter: &DlqFilter,
    reason: &crate::reason::Reason,
    caller: Caller,
) -> Result<i64, AppError> {
    let id = prepare(state, actor, filter, Some(reason)).await?;
    let firing = Firing::by_hand(Trigger::Manual, actor.clone(), Some(reason.clone()), caller);
    let input = serde_json::to_value(RedriveInput { redrive_id: id }).unwrap_or_default();
    crate::jobs::ssr::run_in_background(state, &REDRIVE, firing, input).await?;
    Ok(id)
}

/// Records a redrive of `filter` and runs it, waiting for it (the terminal, benchmarks,
/// tests): `firing` says who and why, `on_progress` gets each batch's count.
pub async fn run(
    state: &AppState,
    filter: &DlqFilter,
    firing: Firing,
    on_progress: Option<OnProgress>,
) -> Result<Redrive, AppError> {
    let id = prepare(state, &firing.actor, filter, firing.reason.as_ref()).await?;
    let options = RunOptions {
        on_progress,
        input: serde_json::to_value(RedriveInput { redrive_id: id }).unwrap_or_default(),
        ..Default::default()
    };
    let finished = crate::jobs::ssr::run(state, &REDRIVE, firing, options)
        .await?
        .ok_or_else(|| AppError::internal("Run a redrive", "a manual run was refused"))?;
    match finished.report::<Redrive>() {
        Some(redrive) => Ok(redrive.clone()),
        None => load(state, id).await,
    }
}

/// Records a redrive of `filter` without running it (the [`REDRIVE`] job runs it).
pub async fn prepare(
    state: &AppState,
    actor: &Actor,
    filter: &DlqFilter,
    reason: Option<&crate::reason::Reason>,
) -> Result<i64, AppError> {
    let wrap = || AppError::wrap("Start a redrive");
    let now = state.clock.now();
    abandon_stale(&state.pg, now).await.map_err(wrap())?;
    let mut query = QueryBuilder::<Postgres>::new("select count(*), coalesce(max(d.id), 0)");
    query.push(
        " from webhook_deliveries d join webhook_events e on e.id = d.event_id where d.dlq_at <= ",
    );
    query.push_bind(now).push(" and");
    filter.push_conditions(&mut query);
    let (total, max_id): (i64, i64) = query
        .build_query_as()
        .fetch_one(&state.pg)
        .await
        .map_err(wrap())?;
    if total == 0 {
        return Err(AppError::Conflict {
            message: format!(
                "No dead letters match ({}): nothing to redrive.",
                filter.label()
            ),
        });
    }
    sqlx::query_scalar!(
        "insert into webhook_redrives (filter, total, max_id, cutoff, actor, reason, started_at)
         values ($1, $2, $3, $4, $5, $6, $4) returning id",
        json!({"query": filter.to_query(), "label": filter.label()}),
        total,
        max_id,
        now,
        actor.name,
        reason
            .map(crate::reason::Reason::as_str)
            .unwrap_or_default()
    )
    .fetch_one(&state.pg)
    .await
    .map_err(wrap())
}

/// Runs redrive `id` to its end: finished, cancelled or failed, with its history entry.
/// `tracker` (its run's) gets the progress and says when to stop.
async fn execute(state: &AppState, id: i64, tracker: &Tracker) -> Result<Redrive, AppError> {
    let result = walk(state, id, tracker).await;
    let (status, error) = match &result {
        Ok(true) => (RedriveStatus::Cancelled, None),
        Ok(false) => (RedriveStatus::Finished, None),
        Err(error) => (RedriveStatus::Failed, Some(error.to_string())),
    };
    finish(state, id, status, error.as_deref()).await?;
    result?;
    load(state, id).await
}

async fn walk(state: &AppState, id: i64, tracker: &Tracker) -> Result<bool, AppError> {
    let wrap = || AppError::wrap("Redrive dead letters");
    let settings = state.webhooks();
    let row = sqlx::query!(
        "select filter, max_id, cutoff, cursor_id, total, done from webhook_redrives where id = $1",
        id
    )
    .fetch_one(&state.pg)
    .await
    .map_err(wrap())?;
    let filter = DlqFilter::parse(row.filter["query"].as_str().unwrap_or(""))?;
    let (max_id, cutoff, total) = (row.max_id, row.cutoff, row.total);
    let (mut cursor, mut done) = (row.cursor_id, row.done);
    loop {
        tracker.report(done, total).await?;
        if tracker.is_cancelled() {
            return Ok(true);
        }
        // The next batch's ids and endpoints, by keyset.
        let mut query = QueryBuilder::<Postgres>::new(
            "select d.id, d.webhook_id, w.paused_at is not null as paused
               from webhook_deliveries d join webhook_events e on e.id = d.event_id
               join webhooks w on w.id = d.webhook_id
              where d.id > ",
        );
        query
            .push_bind(cursor)
            .push(" and d.id <= ")
            .push_bind(max_id)
            .push(" and d.dlq_at <= ")
            .push_bind(cutoff)
            .push(" and");
        filter.push_conditions(&mut query);
        query
            .push(" order by d.id limit ")
            .push_bind(settings.redrive_batch);
        let batch = query.build().fetch_all(&state.pg).await.map_err(wrap())?;
        if batch.is_empty() {
            return Ok(false);
        }
        // An endpoint whose circuit is open is not sent more: the redrive stops at its
        // first letter and waits for the circuit to close. So that it can close (a probe
        // needs a delivery to send), that one letter is requeued when the endpoint has
        // nothing pending.
        let first_paused = batch.iter().position(|r| r.get::<bool, _>("paused"));
        let take = match first_paused {
            None => batch.len(),
            Some(0) => {
                let webhook: i64 = batch[0].get("webhook_id");
                let pending = sqlx::query_scalar!(
                    r#"select exists (select 1 from webhook_deliveries
                                       where webhook_id = $1 and status = 'pending') as "pending!""#,
                    webhook
                )
                .fetch_one(&state.pg)
                .await
                .map_err(wrap())?;
                usize::from(!pending)
            }
            Some(k) => k,
        };
        if take == 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        let ids: Vec<i64> = batch[..take].iter().map(|r| r.get("id")).collect();
        let last = ids[ids.len() - 1];
        let now = state.clock.now();
        let mut tx = state.pg.begin().await.map_err(wrap())?;
        let requeued = sqlx::query_scalar!(
            "update webhook_deliveries
                set status = 'pending', dlq_at = null, dlq_reason = null, attempts = 0,
                    next_attempt_at = $2, lease_until = null, redrives = redrives + 1,
                    last_redrive_id = $3
              where id = any($1) and status = 'dead'
             returning webhook_id",
            &ids,
            now,
            id
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(wrap())?;
        sqlx::query!(
            "update webhook_redrives set done = done + $2, cursor_id = $3 where id = $1",
            id,
            requeued.len() as i64,
            last
        )
        .execute(&mut *tx)
        .await
        .map_err(wrap())?;
        tx.commit().await.map_err(wrap())?;
        cursor = last;
        done += requeued.len() as i64;
        // Pace each endpoint to the rate: the batch's busiest endpoint sets the pause.
        let mut per_endpoint: HashMap<i64, u32> = HashMap::new();
        for webhook in requeued {
            *per_endpoint.entry(webhook).or_default() += 1;
        }
        let busiest = per_endpoint.values().copied().max().unwrap_or(0);
        if first_paused == Some(0) {
            tokio::time::sleep(Duration::from_secs(1)).await;
        } else if busiest > 0 {
            let pause = Duration::from_secs_f64(
                f64::from(busiest) / f64::from(settings.redrive_rate.max(1)),
            );
            tokio::time::sleep(pause).await;
        }
    }
}

crate::history::ssr::details! {
    /// A redrive as it ended: what it was asked to send and how much it sent.
    struct RedriveEnded for Redrive {
        redrive_id: i64,
        /// The filter as a query string, and in words.
        filter: serde_json::Value,
        label: serde_json::Value,
        total: i64,
        requeued: i64,
        error: Option<String>,
    }

    /// A disabled webhook switched back on, its dead letters redriven.
    struct WebhookRecovered for Webhook {
        webhook_id: i64,
        recovered: bool,
    }
}

/// Closes the redrive with its history entry (filter and counts) in one transaction.
async fn finish(
    state: &AppState,
    id: i64,
    status: RedriveStatus,
    error: Option<&str>,
) -> Result<(), AppError> {
    let wrap = || AppError::wrap("Record a redrive");
    let now = state.clock.now();
    let mut tx = state.pg.begin().await.map_err(wrap())?;
    let row = sqlx::query!(
        "update webhook_redrives set status = $2, finished_at = $3, error = $4
          where id = $1 and status = 'running'
         returning filter, total, done, actor, reason, started_at",
        id,
        status.as_str(),
        now,
        error
    )
    .fetch_optional(&mut *tx)
    .await
    .map_err(wrap())?;
    let Some(row) = row else {
        return Ok(());
    };
    let filter = row.filter;
    let (total, done) = (row.total, row.done);
    let actor = Actor {
        name: row.actor,
        ..Actor::system("redrive")
    };
    let outcome = match status {
        RedriveStatus::Finished => Outcome::Succeeded,
        RedriveStatus::Cancelled => Outcome::Partial,
        _ => Outcome::Failed,
    };
    let details = RedriveEnded {
        redrive_id: id,
        filter: filter["query"].clone(),
        label: filter["label"].clone(),
        total,
        requeued: done,
        error: error.map(str::to_owned),
    };
    let entry = NewEntry::new(
        details,
        format!(
            "Redrive {id} {}: {done} of {total} dead letters sent again ({})",
            status.as_str(),
            filter["label"].as_str().unwrap_or_default()
        ),
        &actor,
        outcome,
    )
    .with_times(row.started_at, Some(now))
    .with_reason(crate::reason::Reason::from_stored(Some(row.reason)));
    let history_id = append(&mut tx, &entry).await.map_err(wrap())?;
    sqlx::query!(
        "update webhook_redrives set history_id = $2 where id = $1",
        id,
        history_id
    )
    .execute(&mut *tx)
    .await
    .map_err(wrap())?;
    tx.commit().await.map_err(wrap())?;
    Ok(())
}

/// Redrive `id` as the page shows it.
pub async fn load(state: &AppState, id: i64) -> Result<Redrive, AppError> {
    let row = sqlx::query(&format!(
        "select {} from {} where r.id = $1",
        super::dlq::REDRIVE_COLUMNS,
        super::dlq::REDRIVES
    ))
    .bind(id)
    .bind(stale_before(state.clock.now()))
    .fetch_optional(&state.pg)
    .await
    .map_err(AppError::wrap("Read a redrive"))?
    .ok_or_else(|| AppError::NotFound {
        what: format!("Redrive {id}"),
    })?;
    Ok(super::dlq::redrive(&row))
}

/// Marks running redrives whose run died (the runner's abandoned rule: its heartbeat
/// stale) or ended without closing them as abandoned; what they requeued stays requeued.
pub async fn abandon_stale(pg: &PgPool, now: OffsetDateTime) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(concat!(
        "update webhook_redrives r set status = 'abandoned', finished_at = $1,
                error = 'its process stopped; run the same filter again to take what is left'
           from cron_job_runs run
          where run.id = r.run_id and r.status = 'running' and ",
        crate::jobs::ssr::run_gone!("$2")
    ))
    .bind(now)
    .bind(stale_before(now))
    .execute(pg)
    .await?
    .rows_affected())
}

/// "Re-enable and recover": closes a paused endpoint's circuit (enables a disabled
/// one) and redrives everything dead-lettered for it since it started failing, in one
/// action. Returns the redrive's id, or `None` when nothing was dead-lettered.
///
/// A paused circuit is the workers' doing, and an operator may close it. A disabled
/// webhook is an admin's decision (its receiver may be gone, its domain lapsed): only an
/// admin turns it back on, and so sends it everything it missed.
pub async fn recover(
    state: &AppState,
    actor: &Actor,
    webhook_id: i64,
    reason: &crate::reason::Reason,
    caller: Caller,
) -> Result<Option<i64>, AppError> {
    let wrap = || AppError::wrap("Recover a webhook");
    let mut tx = state.pg.begin().await.map_err(wrap())?;
    let row = sqlx::query!(
        "select failing_since, paused_at, enabled, url from webhooks
          where id = $1 and deleted_at is null for update",
        webhook_id
    )
    .fetch_optional(&mut *tx)
    .await
    .map_err(wrap())?
    .ok_or_else(|| AppError::NotFound {
        what: format!("Webhook {webhook_id}"),
    })?;
    let since = row.failing_since.or(row.paused_at);
    let enabled = row.enabled;
    if !enabled {
        actor
            .authorize(crate::auth::Permission::Administer)
            .map_err(|_| AppError::Forbidden {
                message: format!(
                    "Webhook {webhook_id} was turned off by an admin: only an admin can turn it \
                 back on. Operators may close a paused circuit."
                ),
            })?;
    }
    if since.is_none() && enabled {
        return Err(AppError::Conflict {
            message: format!("Webhook {webhook_id} is neither paused nor disabled."),
        });
    }
    sqlx::query!(
        "update webhooks set enabled = true, consecutive_failures = 0, failing_since = null,
                paused_at = null, next_probe_at = null where id = $1",
        webhook_id
    )
    .execute(&mut *tx)
    .await
    .map_err(wrap())?;
    let entry = NewEntry::new(
        WebhookRecovered {
            webhook_id,
            recovered: true,
        },
        format!(
            "Webhook {webhook_id} re-enabled ({}); dead letters since {} redriven",
            super::endpoints::masked_url(&row.url),
            since.map_or("it was disabled".to_owned(), |s| crate::format::iso(
                crate::server::unix_ms(s)
            ))
        ),
        actor,
        Outcome::Info,
    )
    .with_reason(Some(reason.clone()));
    append(&mut tx, &entry).await.map_err(wrap())?;
    tx.commit().await.map_err(wrap())?;
    let filter = DlqFilter {
        webhook_id: Some(webhook_id),
        since,
        ..Default::default()
    };
    match start(state, actor, &filter, reason, caller).await {
        Ok(id) => Ok(Some(id)),
        Err(AppError::Conflict { .. }) => Ok(None),
        Err(error) => Err(error),
    }
}
