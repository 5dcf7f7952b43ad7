//! One attempt's outcome: what a claimed delivery is, the retry schedule, and the
//! recording of a batch of finished sends (each attempt row, each delivery's new state
//! while its lease is still the worker's, each endpoint's circuit) in one transaction.

use std::time::Duration;

use time::OffsetDateTime;

use super::send::{Answer, Verdict};
use super::WebhookSettings;
use crate::error::AppError;
use crate::server::AppState;

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

/// A finished send, to record.
pub struct Sent {
    pub delivery: Claimed,
    pub answer: Answer,
    /// When it was sent.
    pub at: OffsetDateTime,
}

/// What became of a delivery after an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Delivered,
    Retry,
    Dead,
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

/// Records finished sends in the caller's transaction: each attempt row, each delivery's
/// new state (only while its lease is still this worker's), and each endpoint's circuit.
/// Returns, per send in order, whether it was a probe and what became of the delivery
/// (`None`: the lease had run out and another worker took it; the attempt is kept).
pub async fn record_in(
    tx: &mut sqlx::PgConnection,
    state: &AppState,
    sent: &[Sent],
) -> Result<Vec<(bool, Option<Step>)>, AppError> {
    let settings = state.webhooks();
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
        sqlx::query!(
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
            webhook,
            reset,
            failures,
            now,
            settings.breaker_failures,
            probe_at
        )
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
