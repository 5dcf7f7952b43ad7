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
    let settings = &state.webhooks;
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
            state.webhooks.timeout,
            state.webhooks.allow_private,
        )
        .await;
        Sent {
            delivery,
            answer,
            at,
        }
    });
}

/// A finished send, to record.
pub struct Sent {
    pub delivery: Claimed,
    pub answer: Answer,
    /// When it was sent.
    pub at: OffsetDateTime,
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

/// Records finished sends in one transaction: each attempt row, each delivery's new
/// state (only while its lease is still this worker's), and each endpoint's circuit.
/// Returns, per send in order, whether it was a probe and what became of the delivery
/// (`None`: the lease had run out and another worker took it; the attempt is kept).
pub async fn record(
    state: &AppState,
    sent: &[Sent],
) -> Result<Vec<(bool, Option<Step>)>, AppError> {
    let wrap = || AppError::wrap("Record webhook attempts");
    let mut tx = state.pg.begin().await.map_err(wrap())?;
    let steps = record_in(&mut tx, state, sent).await?;
    tx.commit().await.map_err(wrap())?;
    Ok(steps)
}

/// [`record`] in the caller's transaction.
pub async fn record_in(
    tx: &mut sqlx::PgConnection,
    state: &AppState,
    sent: &[Sent],
) -> Result<Vec<(bool, Option<Step>)>, AppError> {
    let settings = &state.webhooks;
    let now = state.clock.now();
    let wrap = || AppError::wrap("Record webhook attempts");
    let mut steps = Vec::with_capacity(sent.len());
    let mut columns = Columns::default();
    for s in sent {
        let attempt = s.delivery.attempts + 1;
        let (step, reason) = match s.answer.verdict() {
            Verdict::Delivered => (Step::Delivered, None),
            Verdict::Reject => (Step::Dead, Some("rejected")),
            Verdict::Retry if attempt > s.delivery.max_retries => (Step::Dead, Some("exhausted")),
            Verdict::Retry => (Step::Retry, None),
        };
        let jitter = 0.8 + 0.4 * rand::random::<f64>();
        let next = (step == Step::Retry).then(|| {
            now + time::Duration::try_from(retry_delay(
                settings,
                attempt,
                s.answer.retry_after,
                jitter,
            ))
            .unwrap_or_default()
        });
        steps.push(step);
        columns.id.push(s.delivery.id);
        columns.lease.push(s.delivery.lease_until);
        columns.attempt.push(attempt);
        columns.started.push(s.at);
        columns
            .duration
            .push(s.answer.duration.as_millis().min(i32::MAX as u128) as i32);
        columns.code.push(s.answer.status.map(i32::from));
        columns.error.push(s.answer.error.clone());
        columns.snippet.push(s.answer.snippet.clone());
        columns.summary.push(s.answer.summary());
        columns.probe.push(s.delivery.probe);
        columns.redrive.push(s.delivery.redrive_id);
        columns.status.push(match step {
            Step::Delivered => "delivered",
            Step::Dead => "dead",
            Step::Retry => "pending",
        });
        columns.reason.push(reason);
        columns.next.push(next);
    }
    sqlx::query(
        "insert into webhook_attempts
            (delivery_id, attempt, started_at, duration_ms, status_code, error, response_snippet,
             probe, redrive_id)
         select * from unnest($1::bigint[], $2::int[], $3::timestamptz[], $4::int[], $5::int[],
                              $6::text[], $7::text[], $8::bool[], $9::bigint[])",
    )
    .bind(&columns.id)
    .bind(&columns.attempt)
    .bind(&columns.started)
    .bind(&columns.duration)
    .bind(&columns.code)
    .bind(&columns.error)
    .bind(&columns.snippet)
    .bind(&columns.probe)
    .bind(&columns.redrive)
    .execute(&mut *tx)
    .await
    .map_err(wrap())?;
    let updated: std::collections::HashSet<i64> = sqlx::query_scalar::<_, i64>(
        "update webhook_deliveries d
            set attempts = u.attempt, last_attempt_at = u.started, last_status = u.code,
                last_error = u.summary, lease_until = null, status = u.status,
                delivered_at = case when u.status = 'delivered' then $10 end,
                dlq_at = case when u.status = 'dead' then $10 end,
                dlq_reason = u.reason,
                next_attempt_at = coalesce(u.next_at, d.next_attempt_at)
           from unnest($1::bigint[], $2::timestamptz[], $3::int[], $4::timestamptz[], $5::int[],
                       $6::text[], $7::text[], $8::text[], $9::timestamptz[])
                as u(id, lease, attempt, started, code, summary, status, reason, next_at)
          where d.id = u.id and d.status = 'pending' and d.lease_until = u.lease
         returning d.id",
    )
    .bind(&columns.id)
    .bind(&columns.lease)
    .bind(&columns.attempt)
    .bind(&columns.started)
    .bind(&columns.code)
    .bind(&columns.summary)
    .bind(&columns.status)
    .bind(&columns.reason)
    .bind(&columns.next)
    .bind(now)
    .fetch_all(&mut *tx)
    .await
    .map_err(wrap())?
    .into_iter()
    .collect();
    // The circuits, per endpoint, in the order the sends finished: a success resets the
    // count; the failures after the last success add to it.
    let mut endpoints: Vec<(i64, bool, i32)> = Vec::new();
    for s in sent {
        let ok = s.answer.verdict() == Verdict::Delivered;
        let at = match endpoints.iter().position(|e| e.0 == s.delivery.webhook_id) {
            Some(at) => at,
            None => {
                endpoints.push((s.delivery.webhook_id, false, 0));
                endpoints.len() - 1
            }
        };
        let entry = &mut endpoints[at];
        if ok {
            *entry = (entry.0, true, 0);
        } else {
            entry.2 += 1;
        }
    }
    let probe_at = now + time::Duration::try_from(settings.probe_every).unwrap_or_default();
    for (webhook, reset, failures) in endpoints {
        // A healthy endpoint's row is left alone (not even locked): only a change of
        // state writes it.
        sqlx::query(
            "update webhooks
                set consecutive_failures = case when $2 then $3 else consecutive_failures + $3 end,
                    failing_since = case when $3 = 0 then null
                                         when $2 then $4
                                         else least(coalesce(failing_since, $4), $4) end,
                    paused_at = case when $3 = 0 then null
                                     when paused_at is null
                                          and (case when $2 then $3 else consecutive_failures + $3 end) >= $5
                                     then $4 else paused_at end,
                    next_probe_at = case when $3 = 0 then null
                                         when paused_at is null
                                              and (case when $2 then $3 else consecutive_failures + $3 end) >= $5
                                         then $6 else next_probe_at end
              where id = $1 and ($3 > 0 or consecutive_failures > 0 or paused_at is not null)",
        )
        .bind(webhook)
        .bind(reset)
        .bind(failures)
        .bind(now)
        .bind(settings.breaker_failures)
        .bind(probe_at)
        .execute(&mut *tx)
        .await
        .map_err(wrap())?;
    }
    Ok(sent
        .iter()
        .zip(steps)
        .map(|(s, step)| {
            (
                s.delivery.probe,
                updated.contains(&s.delivery.id).then_some(step),
            )
        })
        .collect())
}

/// The batch's columns, for `unnest`.
#[derive(Default)]
struct Columns {
    id: Vec<i64>,
    lease: Vec<OffsetDateTime>,
    attempt: Vec<i32>,
    started: Vec<OffsetDateTime>,
    duration: Vec<i32>,
    code: Vec<Option<i32>>,
    error: Vec<Option<String>>,
    snippet: Vec<Option<String>>,
    summary: Vec<Option<String>>,
    probe: Vec<bool>,
    redrive: Vec<Option<i64>>,
    status: Vec<&'static str>,
    reason: Vec<Option<&'static str>>,
    next: Vec<Option<OffsetDateTime>>,
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
