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
use sqlx::Row;
use time::OffsetDateTime;

use super::send::{self, Answer, Verdict};
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
};

fn run_job(ctx: JobContext) -> JobFuture {
    Box::pin(async move {
        let notifications = super::notify::enqueue_pending(&ctx.state).await?;
        let until_idle = ctx.trigger != Trigger::Scheduler;
        let budget = ctx.budget.unwrap_or(ctx.state.webhooks.run_budget);
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

/// A delivery a worker holds the lease of.
#[derive(Clone, Debug)]
pub struct Claimed {
    pub id: i64,
    pub webhook_id: i64,
    pub message_id: String,
    /// Attempts made before this one (since creation or the last redrive).
    pub attempts: i32,
    pub max_retries: i32,
    pub url: String,
    pub secret: String,
    pub body: Vec<u8>,
    pub lease_until: OffsetDateTime,
    pub probe: bool,
    pub redrive_id: Option<i64>,
}

/// Keeps delivering until `budget` has passed (or, with `until_idle`, until nothing is
/// due and nothing is in flight), or `tracker` is cancelled. Sends in flight when it
/// stops are finished and recorded first.
pub async fn work(
    state: &AppState,
    budget: Duration,
    until_idle: bool,
    tracker: Option<&crate::jobs::ssr::Tracker>,
) -> Result<DeliverReport, AppError> {
    let settings = &state.webhooks;
    let client = send::client(settings.allow_private);
    let started = Instant::now();
    let mut report = DeliverReport::default();
    // Each send and its record run as a task of their own, so they go on while this
    // loop waits for a connection to claim more (the pool is shared with them). Dropping
    // the set (the worker stopped) aborts them, as a process that dies would.
    let mut in_flight = tokio::task::JoinSet::new();
    loop {
        let stopping = started.elapsed() >= budget
            || tracker.is_some_and(|t| t.is_cancelled())
            || state.shutdown.is_cancelled();
        if stopping {
            report.cancelled = tracker.is_some_and(|t| t.is_cancelled());
        }
        let mut claimed_now = 0;
        if !stopping && in_flight.len() < settings.workers {
            let room = (settings.workers - in_flight.len()) as i64;
            for delivery in claim(state, room).await? {
                claimed_now += 1;
                let (state, client) = (state.clone(), client.clone());
                in_flight.spawn(async move {
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
                        state.webhooks.timeout,
                        state.webhooks.allow_private,
                    )
                    .await;
                    let outcome = record(&state, &delivery, &answer, at).await;
                    (delivery.probe, outcome)
                });
            }
        }
        if in_flight.is_empty() {
            if stopping || (until_idle && claimed_now == 0) {
                break;
            }
            tokio::time::sleep(settings.poll_every).await;
            continue;
        }
        // Wait for a send to finish, or for the next poll to claim what became due.
        if claimed_now == 0 || in_flight.len() >= settings.workers {
            tokio::select! {
                done = in_flight.join_next() => {
                    if let Some(done) = done {
                        finished(&mut report, done)?;
                    }
                }
                _ = tokio::time::sleep(settings.poll_every) => {}
            }
        }
        // Record whatever else has finished meanwhile without waiting.
        while let Some(done) = in_flight.try_join_next() {
            finished(&mut report, done)?;
        }
    }
    while let Some(done) = in_flight.join_next().await {
        finished(&mut report, done)?;
    }
    Ok(report)
}

type Done = (bool, Result<Option<Step>, AppError>);

fn finished(
    report: &mut DeliverReport,
    done: Result<Done, tokio::task::JoinError>,
) -> Result<(), AppError> {
    let (probe, outcome) =
        done.map_err(|error| AppError::internal("A webhook send stopped", error))?;
    tally(report, probe, outcome?);
    Ok(())
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

/// What became of a delivery after an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Delivered,
    Retry,
    Dead,
}

/// Claims up to `room` due deliveries over every endpoint that may take more, and
/// dead-letters those whose payload is gone. Fair: endpoints are visited in random
/// order, each up to its free slots.
pub async fn claim(state: &AppState, room: i64) -> Result<Vec<Claimed>, AppError> {
    let settings = &state.webhooks;
    let now = state.clock.now();
    let webhooks: Vec<i64> = sqlx::query_scalar(
        "select w.id from webhooks w
          where w.deleted_at is null and w.enabled
            and (w.paused_at is null or w.next_probe_at <= $1)
            and exists (select 1 from webhook_deliveries d
                         where d.webhook_id = w.id and d.status = 'pending'
                           and d.next_attempt_at <= $1
                           and (d.lease_until is null or d.lease_until <= $1))
          order by random()",
    )
    .bind(now)
    .fetch_all(&state.pg)
    .await
    .map_err(AppError::wrap("Find due webhook deliveries"))?;
    let mut claimed = Vec::new();
    for webhook_id in webhooks {
        let left = room - claimed.len() as i64;
        if left <= 0 {
            break;
        }
        claimed.extend(claim_for(state, settings, webhook_id, left, now).await?);
    }
    Ok(claimed)
}

async fn claim_for(
    state: &AppState,
    settings: &WebhookSettings,
    webhook_id: i64,
    room: i64,
    now: OffsetDateTime,
) -> Result<Vec<Claimed>, AppError> {
    let wrap = AppError::wrap("Claim webhook deliveries");
    let mut tx = state.pg.begin().await.map_err(wrap)?;
    // Held until commit: two workers never count one endpoint's slots at once.
    let Some(webhook) = sqlx::query(
        "select url, secret, max_retries, max_in_flight, paused_at is not null as paused,
                coalesce(next_probe_at <= $2, true) as probe_due
           from webhooks where id = $1 and deleted_at is null and enabled
            for update skip locked",
    )
    .bind(webhook_id)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await
    .map_err(AppError::wrap("Claim webhook deliveries"))?
    else {
        return Ok(Vec::new());
    };
    let paused: bool = webhook.get("paused");
    let in_flight: i64 = sqlx::query_scalar(
        "select count(*) from webhook_deliveries
          where webhook_id = $1 and status = 'pending' and lease_until > $2",
    )
    .bind(webhook_id)
    .bind(now)
    .fetch_one(&mut *tx)
    .await
    .map_err(AppError::wrap("Claim webhook deliveries"))?;
    let slots = if paused {
        i64::from(in_flight == 0 && webhook.get::<bool, _>("probe_due"))
    } else {
        i64::from(webhook.get::<i32, _>("max_in_flight")) - in_flight
    }
    .min(room);
    if slots <= 0 {
        return Ok(Vec::new());
    }
    let lease_until = now
        + time::Duration::try_from(settings.timeout + Duration::from_secs(30))
            .unwrap_or(time::Duration::minutes(1));
    let rows = sqlx::query(
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
    )
    .bind(webhook_id)
    .bind(now)
    .bind(slots)
    .bind(lease_until)
    .fetch_all(&mut *tx)
    .await
    .map_err(AppError::wrap("Claim webhook deliveries"))?;
    if paused && !rows.is_empty() {
        sqlx::query("update webhooks set next_probe_at = $2 where id = $1")
            .bind(webhook_id)
            .bind(now + time::Duration::try_from(settings.probe_every).unwrap_or_default())
            .execute(&mut *tx)
            .await
            .map_err(AppError::wrap("Claim webhook deliveries"))?;
    }
    let mut claimed = Vec::new();
    let mut missing = Vec::new();
    for row in rows {
        let id: i64 = row.get("id");
        match row.get::<Option<Value>, _>("payload") {
            None => missing.push(id),
            Some(payload) => claimed.push(Claimed {
                id,
                webhook_id,
                message_id: row.get("message_id"),
                attempts: row.get("attempts"),
                max_retries: webhook.get("max_retries"),
                url: webhook.get("url"),
                secret: webhook.get("secret"),
                body: serde_json::to_vec(&payload).unwrap_or_default(),
                lease_until,
                probe: paused,
                redrive_id: row.get("last_redrive_id"),
            }),
        }
    }
    if !missing.is_empty() {
        sqlx::query(
            "update webhook_deliveries
                set status = 'dead', dlq_at = $2, dlq_reason = 'payload_missing', lease_until = null,
                    last_error = 'the event''s payload was removed (retention) before it was sent'
              where id = any($1)",
        )
        .bind(&missing)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(AppError::wrap("Dead-letter deliveries without payload"))?;
    }
    tx.commit()
        .await
        .map_err(AppError::wrap("Claim webhook deliveries"))?;
    Ok(claimed)
}

/// The wait before retry number `attempt` (1 after the first failure): `backoff_base ×
/// backoff_factor^(attempt-1)`, jittered by `jitter` (0.8–1.2), at least `retry_after`,
/// never over `backoff_max`.
pub fn retry_delay(
    settings: &WebhookSettings,
    attempt: i32,
    retry_after: Option<Duration>,
    jitter: f64,
) -> Duration {
    let exponent = attempt.clamp(1, 30) - 1;
    let scheduled = settings.backoff_base.as_secs_f64()
        * f64::from(settings.backoff_factor).powi(exponent)
        * jitter.clamp(0.8, 1.2);
    let max = settings.backoff_max.as_secs_f64();
    let wait = scheduled.max(retry_after.map_or(0.0, |d| d.as_secs_f64()));
    Duration::from_secs_f64(wait.min(max))
}

/// Records an attempt: the attempt row, the delivery's new state and the endpoint's
/// circuit, in one transaction, if the lease is still this worker's. `None` when it
/// was not (the lease ran out and another worker took the delivery): the attempt is
/// still kept.
pub async fn record(
    state: &AppState,
    delivery: &Claimed,
    answer: &Answer,
    started: OffsetDateTime,
) -> Result<Option<Step>, AppError> {
    let settings = &state.webhooks;
    let now = state.clock.now();
    let wrap = || AppError::wrap("Record a webhook attempt");
    let attempt = delivery.attempts + 1;
    let mut tx = state.pg.begin().await.map_err(wrap())?;
    sqlx::query(
        "insert into webhook_attempts
            (delivery_id, attempt, started_at, duration_ms, status_code, error, response_snippet,
             probe, redrive_id)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(delivery.id)
    .bind(attempt)
    .bind(started)
    .bind(answer.duration.as_millis().min(i32::MAX as u128) as i32)
    .bind(answer.status.map(i32::from))
    .bind(&answer.error)
    .bind(&answer.snippet)
    .bind(delivery.probe)
    .bind(delivery.redrive_id)
    .execute(&mut *tx)
    .await
    .map_err(wrap())?;
    let verdict = answer.verdict();
    let (step, reason) = match verdict {
        Verdict::Delivered => (Step::Delivered, None),
        Verdict::Reject => (Step::Dead, Some("rejected")),
        Verdict::Retry if attempt > delivery.max_retries => (Step::Dead, Some("exhausted")),
        Verdict::Retry => (Step::Retry, None),
    };
    let jitter = 0.8 + 0.4 * rand::random::<f64>();
    let next = now
        + time::Duration::try_from(retry_delay(settings, attempt, answer.retry_after, jitter))
            .unwrap_or_default();
    let updated = sqlx::query(
        "update webhook_deliveries
            set attempts = $3, last_attempt_at = $4, last_status = $5, last_error = $6,
                lease_until = null,
                status = case $7 when 'delivered' then 'delivered' when 'dead' then 'dead' else 'pending' end,
                delivered_at = case when $7 = 'delivered' then $8 end,
                dlq_at = case when $7 = 'dead' then $8 end,
                dlq_reason = $9,
                next_attempt_at = case when $7 = 'retry' then $10 else next_attempt_at end
          where id = $1 and status = 'pending' and lease_until = $2",
    )
    .bind(delivery.id)
    .bind(delivery.lease_until)
    .bind(attempt)
    .bind(started)
    .bind(answer.status.map(i32::from))
    .bind(answer.summary())
    .bind(match step {
        Step::Delivered => "delivered",
        Step::Dead => "dead",
        Step::Retry => "retry",
    })
    .bind(now)
    .bind(reason)
    .bind(next)
    .execute(&mut *tx)
    .await
    .map_err(wrap())?
    .rows_affected();
    if verdict == Verdict::Delivered {
        sqlx::query(
            // A healthy endpoint's row is left alone (not even locked): only a change of
            // state writes it.
            "update webhooks set consecutive_failures = 0, failing_since = null, paused_at = null,
                                 next_probe_at = null
              where id = $1 and (consecutive_failures > 0 or paused_at is not null)",
        )
        .bind(delivery.webhook_id)
        .execute(&mut *tx)
        .await
        .map_err(wrap())?;
    } else {
        sqlx::query(
            "update webhooks
                set consecutive_failures = consecutive_failures + 1,
                    failing_since = least(coalesce(failing_since, $2), $2),
                    paused_at = case when paused_at is null and consecutive_failures + 1 >= $3
                                     then $2 else paused_at end,
                    next_probe_at = case when paused_at is null and consecutive_failures + 1 >= $3
                                         then $4 else next_probe_at end
              where id = $1",
        )
        .bind(delivery.webhook_id)
        .bind(now)
        .bind(settings.breaker_failures)
        .bind(now + time::Duration::try_from(settings.probe_every).unwrap_or_default())
        .execute(&mut *tx)
        .await
        .map_err(wrap())?;
    }
    tx.commit().await.map_err(wrap())?;
    Ok((updated == 1).then_some(step))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_retry_schedule_grows_by_the_factor_within_the_jitter_and_the_cap() {
        let settings = WebhookSettings::default();
        let secs = |attempt, jitter| retry_delay(&settings, attempt, None, jitter).as_secs();
        assert_eq!(secs(1, 1.0), 30);
        assert_eq!(secs(2, 1.0), 120);
        assert_eq!(secs(3, 1.0), 480);
        assert_eq!(secs(5, 1.0), 7680);
        assert_eq!(secs(1, 0.8), 24);
        assert_eq!(secs(1, 1.2), 36);
        // Jitter outside the bounds is clamped; the cap holds.
        assert_eq!(secs(1, 5.0), 36);
        assert_eq!(secs(30, 1.0), 12 * 3600);
        // Retry-After wins when longer, never past the cap.
        let after = |s| retry_delay(&settings, 1, Some(Duration::from_secs(s)), 1.0).as_secs();
        assert_eq!(after(300), 300);
        assert_eq!(after(5), 30);
        assert_eq!(after(10 * 86_400), 12 * 3600);
    }
}
