//! The workers: claim due deliveries, send them, record each attempt, retry or
//! dead-letter, and keep each endpoint's circuit.
//!
//! A claim is a lease (`lease_until`) taken in a short transaction that holds the
//! endpoint's row (`FOR UPDATE`), so its in-flight limit holds across every worker and
//! replica; deliveries are picked with `FOR UPDATE SKIP LOCKED`. The outcome of an attempt
//! (the attempt row, the delivery's new state, the circuit) commits in one transaction,
//! and only while the lease is still the worker's. A worker that dies mid-send leaves
//! the lease to run out: the delivery is claimed again and sent with the same
//! `webhook-id`, so nothing is lost and a receiver can drop the duplicate.
//!
//! Endpoints never wait for each other: the worker keeps up to `workers` sends in flight,
//! claims more as any finishes, and an endpoint gets at most its `max_in_flight` of them.
//! After `breaker_failures` failures in a row its circuit opens (`paused_at`): its
//! deliveries wait (they are not dead-lettered while it is paused) and one is sent as a
//! probe every `probe_every`; the first probe that succeeds closes the circuit.

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;

use super::record::{record_in, Claimed, Sent, Step};
use super::send;
use super::WebhookSettings;
use crate::error::AppError;
use crate::jobs::ssr::{Job, JobContext, JobFuture, Report};
use crate::jobs::{RunStatus, Trigger};
use crate::server::AppState;

/// Delivers due webhook deliveries. Scheduled every minute, each run keeps delivering
/// for `run_budget` (so the in-process scheduler delivers continuously); a run from
/// `/cron/deliver-webhooks`, a person or the CLI stops once nothing is due.
pub static DELIVER_WEBHOOKS: Job = Job {
    name: "deliver-webhooks",
    description: "Sends due webhook deliveries and alert notifications, retries failures and dead-letters what cannot be delivered.",
    schedule: "* * * * *",
    grace: Duration::from_secs(60),
    run: run_job,
    permission: crate::auth::Permission::Operate,
    check: None,
};

fn run_job(ctx: JobContext) -> JobFuture {
    Box::pin(async move {
        let notifications = super::notify::enqueue_pending(&ctx.state).await?;
        let until_idle = ctx.trigger != Trigger::Scheduler;
        let budget = ctx.budget.unwrap_or(ctx.state.webhooks().run_budget);
        let mut report = work(&ctx.state, budget, until_idle, Some(&ctx.tracker)).await?;
        report.notifications = notifications;
        Ok(Box::new(report) as Box<dyn Report>)
    })
}

/// What a worker's run did.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliverReport {
    pub attempted: i64,
    pub delivered: i64,
    pub retried: i64,
    pub dead_lettered: i64,
    pub probes: i64,
    /// Alert notifications turned into deliveries.
    pub notifications: i64,
    pub cancelled: bool,
}

impl Report for DeliverReport {
    fn status(&self) -> RunStatus {
        if self.cancelled {
            RunStatus::Cancelled
        } else {
            RunStatus::Succeeded
        }
    }
    fn rows(&self) -> i64 {
        self.attempted
    }
    fn details(&self) -> Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// Keeps delivering until `budget` has passed (or, with `until_idle`, until nothing is
/// due and nothing is in flight), or `tracker` is cancelled. Sends in flight when it
/// stops are finished and recorded first.
///
/// Each send runs as a task of its own; the loop claims in chunks (when half of
/// the slots are free) and records finished sends in batches, one transaction per batch,
/// so the database work per delivery stays small at any rate.
pub async fn work(
    state: &AppState,
    budget: Duration,
    until_idle: bool,
    tracker: Option<&crate::jobs::ssr::Tracker>,
) -> Result<DeliverReport, AppError> {
    let settings = state.webhooks();
    let client = send::client(settings.allow_private);
    let started = Instant::now();
    let mut report = DeliverReport::default();
    // Dropping the set (the worker stopped) aborts the sends, as a process that dies
    // would: their leases run out and the deliveries are sent again.
    let mut in_flight = tokio::task::JoinSet::new();
    let mut done: Vec<Sent> = Vec::new();
    let chunk = (settings.workers / 2).max(1);
    loop {
        let stopping = started.elapsed() >= budget
            || tracker.is_some_and(|t| t.is_cancelled())
            || state.shutdown.is_cancelled();
        if stopping {
            report.cancelled = tracker.is_some_and(|t| t.is_cancelled());
        }
        let mut claimed_now = 0;
        let room = settings
            .workers
            .saturating_sub(in_flight.len() + done.len());
        if !stopping && (room >= chunk || in_flight.is_empty()) && room > 0 {
            for delivery in claim(state, room as i64).await? {
                claimed_now += 1;
                spawn_send(&mut in_flight, state, &client, delivery);
            }
        }
        if in_flight.is_empty() {
            if stopping || (until_idle && claimed_now == 0) {
                break;
            }
            tokio::time::sleep(settings.poll_every).await;
            continue;
        }
        // Collect finished sends until half of those out are back (or the poll interval
        // passes), then record them in one transaction: a few statements per batch, not
        // per delivery.
        let target = in_flight.len().div_ceil(2).max(1);
        while done.len() < target {
            tokio::select! {
                joined = in_flight.join_next() => match joined {
                    Some(joined) => done.push(
                        joined.map_err(|e| AppError::internal("A webhook send stopped", e))?,
                    ),
                    None => break,
                },
                _ = tokio::time::sleep(settings.poll_every) => break,
            }
        }
        while let Some(joined) = in_flight.try_join_next() {
            done.push(joined.map_err(|e| AppError::internal("A webhook send stopped", e))?);
        }
        if !done.is_empty() {
            // One transaction records the batch and claims the next one: the slots the
            // batch frees are taken again without another round of statements.
            let batch = std::mem::take(&mut done);
            let wrap = || AppError::wrap("Record webhook attempts");
            let mut tx = state.pg.begin().await.map_err(wrap())?;
            let steps = record_in(&mut tx, state, &batch).await?;
            let room = settings.workers.saturating_sub(in_flight.len());
            let next = if !stopping && room >= chunk {
                claim_in(&mut tx, state, room as i64).await?
            } else {
                Vec::new()
            };
            tx.commit().await.map_err(wrap())?;
            for (probe, step) in steps {
                tally(&mut report, probe, step);
            }
            for delivery in next {
                spawn_send(&mut in_flight, state, &client, delivery);
            }
        }
    }
    Ok(report)
}

/// Sends `delivery` in a task of `set`.
fn spawn_send(
    set: &mut tokio::task::JoinSet<Sent>,
    state: &AppState,
    client: &reqwest::Client,
    delivery: Claimed,
) {
    let (state, client) = (state.clone(), client.clone());
    set.spawn(async move {
        let at = state.clock.now();
        let answer = send::send(
            &client,
            &send::Message {
                url: &delivery.url,
                secret: &delivery.secret,
                id: &delivery.message_id,
                timestamp: at.unix_timestamp(),
                body: &delivery.body,
            },
            state.webhooks().timeout,
            state.webhooks().allow_private,
        )
        .await;
        Sent {
            delivery,
            answer,
            at,
        }
    });
}

fn tally(report: &mut DeliverReport, probe: bool, outcome: Option<Step>) {
    let Some(step) = outcome else { return };
    report.attempted += 1;
    report.probes += i64::from(probe);
    match step {
        Step::Delivered => report.delivered += 1,
        Step::Retry => report.retried += 1,
        Step::Dead => report.dead_lettered += 1,
    }
}

/// Claims up to `room` due deliveries over every endpoint that may take more, and
/// dead-letters those whose payload is gone. Fair: endpoints are visited in random
/// order, each up to its free slots.
pub async fn claim(state: &AppState, room: i64) -> Result<Vec<Claimed>, AppError> {
    let wrap = || AppError::wrap("Claim webhook deliveries");
    let mut tx = state.pg.begin().await.map_err(wrap())?;
    let claimed = claim_in(&mut tx, state, room).await?;
    tx.commit().await.map_err(wrap())?;
    Ok(claimed)
}

/// [`claim`] in the caller's transaction (the claims commit with it).
pub async fn claim_in(
    conn: &mut sqlx::PgConnection,
    state: &AppState,
    room: i64,
) -> Result<Vec<Claimed>, AppError> {
    let settings = state.webhooks();
    let now = state.clock.now();
    let webhooks = sqlx::query_scalar!(
        "select w.id from webhooks w
          where w.deleted_at is null and w.enabled
            and (w.paused_at is null or w.next_probe_at <= $1)
            and exists (select 1 from webhook_deliveries d
                         where d.webhook_id = w.id and d.status = 'pending'
                           and d.next_attempt_at <= $1
                           and (d.lease_until is null or d.lease_until <= $1))
          order by random()",
        now
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(AppError::wrap("Find due webhook deliveries"))?;
    let mut claimed = Vec::new();
    for webhook_id in webhooks {
        let left = room - claimed.len() as i64;
        if left <= 0 {
            break;
        }
        claimed.extend(claim_for(&mut *conn, settings, webhook_id, left, now).await?);
    }
    Ok(claimed)
}

async fn claim_for(
    tx: &mut sqlx::PgConnection,
    settings: &WebhookSettings,
    webhook_id: i64,
    room: i64,
    now: OffsetDateTime,
) -> Result<Vec<Claimed>, AppError> {
    // Held until commit: two workers never count one endpoint's slots at once.
    let Some(webhook) = sqlx::query!(
        r#"select url, secret, max_retries, max_in_flight, paused_at is not null as "paused!",
                  coalesce(next_probe_at <= $2, true) as "probe_due!"
             from webhooks where id = $1 and deleted_at is null and enabled
              for update skip locked"#,
        webhook_id,
        now
    )
    .fetch_optional(&mut *tx)
    .await
    .map_err(AppError::wrap("Claim webhook deliveries"))?
    else {
        return Ok(Vec::new());
    };
    // A secret that does not open is never replaced by no signature: its deliveries
    // wait (and the backlog alert says so) until the key is back in the settings.
    let secret = match settings.secret_keys.open(&webhook.secret) {
        Ok(secret) => secret,
        Err(error) => {
            tracing::error!(webhook_id, %error, "cannot sign for a webhook; its deliveries wait");
            return Ok(Vec::new());
        }
    };
    let paused = webhook.paused;
    let in_flight = sqlx::query_scalar!(
        r#"select count(*) as "count!" from webhook_deliveries
          where webhook_id = $1 and status = 'pending' and lease_until > $2"#,
        webhook_id,
        now
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(AppError::wrap("Claim webhook deliveries"))?;
    let slots = if paused {
        i64::from(in_flight == 0 && webhook.probe_due)
    } else {
        i64::from(webhook.max_in_flight) - in_flight
    }
    .min(room);
    if slots <= 0 {
        return Ok(Vec::new());
    }
    let lease_until = now
        + time::Duration::try_from(settings.timeout + Duration::from_secs(30))
            .unwrap_or(time::Duration::minutes(1));
    let rows = sqlx::query!(
        "with due as (
            select id from webhook_deliveries
             where webhook_id = $1 and status = 'pending' and next_attempt_at <= $2
               and (lease_until is null or lease_until <= $2)
             order by next_attempt_at, id
             limit $3
               for update skip locked)
         update webhook_deliveries d set lease_until = $4
           from due, webhook_events e
          where d.id = due.id and e.id = d.event_id
         returning d.id, d.message_id, d.attempts, d.last_redrive_id, e.payload",
        webhook_id,
        now,
        slots,
        lease_until
    )
    .fetch_all(&mut *tx)
    .await
    .map_err(AppError::wrap("Claim webhook deliveries"))?;
    if paused && !rows.is_empty() {
        sqlx::query!(
            "update webhooks set next_probe_at = $2 where id = $1",
            webhook_id,
            now + time::Duration::try_from(settings.probe_every).unwrap_or_default()
        )
        .execute(&mut *tx)
        .await
        .map_err(AppError::wrap("Claim webhook deliveries"))?;
    }
    let mut claimed = Vec::new();
    let mut missing = Vec::new();
    for row in rows {
        let id = row.id;
        match row.payload {
            None => missing.push(id),
            Some(payload) => claimed.push(Claimed {
                id,
                webhook_id,
                message_id: row.message_id,
                attempts: row.attempts,
                max_retries: webhook.max_retries,
                url: webhook.url.clone(),
                secret: secret.clone(),
                body: serde_json::to_vec(&payload).unwrap_or_default(),
                lease_until,
                probe: paused,
                redrive_id: row.last_redrive_id,
            }),
        }
    }
    if !missing.is_empty() {
        sqlx::query!(
            "update webhook_deliveries
                set status = 'dead', dlq_at = $2, dlq_reason = 'payload_missing', lease_until = null,
                    last_error = 'the event''s payload was removed (retention) before it was sent'
              where id = any($1)",
            &missing,
            now
        )
        .execute(&mut *tx)
        .await
        .map_err(AppError::wrap("Dead-letter deliveries without payload"))?;
    }
    Ok(claimed)
}
