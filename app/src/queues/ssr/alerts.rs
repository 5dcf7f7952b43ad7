//! The alert kinds of the safe write path: queues too deep or too old, replay failing,
//! ingest keys at their quota, and data expiry deleted for good.

use serde_json::json;
use time::OffsetDateTime;

use super::super::Queue;
use crate::alerts::ssr::{AlertKind, EvalFuture, Fix, Signal};
use crate::alerts::{FixAction, Severity};
use crate::error::AppError;
use crate::format::group_digits;
use crate::server::AppState;

fn replay_action(_: &str) -> FixAction {
    FixAction::run(super::replay::REPLAY_FALLBACK.name, "Replay the queues")
}

const QUEUES_FIX: Fix = Fix {
    href: "/admin/queues",
    label: "Open the queues",
    action: Some(replay_action),
};

/// A queue deeper than the warning (critical) threshold, per queue.
pub static FALLBACK_QUEUE_HIGH: AlertKind = AlertKind {
    name: "fallback_queue_high",
    description: "A fallback queue holds more rows than its threshold.",
    evaluate: Some(queue_high),
    fire_after: 1,
    auto_resolve: true,
    fix: QUEUES_FIX,
};

/// The oldest queued row past a share of the TTL, per queue.
pub static FALLBACK_QUEUE_OLD: AlertKind = AlertKind {
    name: "fallback_queue_old",
    description: "The oldest queued row is past half of the TTL (85%: expiry is near).",
    evaluate: Some(queue_old),
    fire_after: 1,
    auto_resolve: true,
    fix: QUEUES_FIX,
};

/// Replay runs failing in a row, or rows failing replay attempt after attempt.
pub static REPLAY_FAILING: AlertKind = AlertKind {
    name: "replay_failing",
    description: "The last replay runs failed, or queued rows failed 3+ replay attempts.",
    evaluate: Some(replay_failing),
    fire_after: 1,
    auto_resolve: true,
    fix: QUEUES_FIX,
};

/// An ingest key at its queued-rows quota, or both queues at their total cap.
pub static INGEST_QUOTA: AlertKind = AlertKind {
    name: "ingest_quota",
    description: "An ingest key is at its quota of queued rows, or the queues at their cap: batches are refused.",
    evaluate: Some(ingest_quota),
    fire_after: 1,
    auto_resolve: true,
    fix: Fix {
        href: "/admin/settings/ingest-keys",
        label: "Open the ingest keys",
        action: Some(replay_action),
    },
};

/// Raised by expiry itself, in the transaction that deleted the rows. Never resolved
/// by the self-monitor: data is gone for good, a person resolves it with a note.
pub static DATA_EXPIRED: AlertKind = AlertKind {
    name: "data_expired",
    description: "Expiry deleted queued rows for good; a person resolves it with a note.",
    evaluate: None,
    fire_after: 1,
    auto_resolve: false,
    fix: Fix {
        href: "/admin/history?kind=expiry",
        label: "See what expired",
        action: None,
    },
};

fn db(error: sqlx::Error) -> AppError {
    AppError::internal("Failed to evaluate the queues", error)
}

/// The severity of `figure` against a warning and a critical threshold (both "over").
fn graded(figure: f64, warning: f64, critical: f64) -> Option<(Severity, f64)> {
    if figure > critical {
        Some((Severity::Critical, critical))
    } else if figure > warning {
        Some((Severity::Warning, warning))
    } else {
        None
    }
}

fn queue_high(state: AppState, _now: OffsetDateTime) -> EvalFuture {
    Box::pin(async move {
        let settings = state.alerts();
        let depths = super::stats::queue_depths(&state.pg).await.map_err(db)?;
        Ok(depths
            .into_iter()
            .filter_map(|(queue, depth)| {
                let (severity, threshold) = graded(
                    depth as f64,
                    settings.queue_warning_rows as f64,
                    settings.queue_critical_rows as f64,
                )?;
                Some(
                    Signal::new(
                        queue.as_str(),
                        severity,
                        format!(
                            "The {} queue holds {} rows",
                            queue.as_str(),
                            group_digits(depth as u64)
                        ),
                    )
                    .measured(depth as f64, threshold, "rows"),
                )
            })
            .collect())
    })
}

fn queue_old(state: AppState, now: OffsetDateTime) -> EvalFuture {
    Box::pin(async move {
        let settings = state.alerts();
        let ttl = state.queues().ttl.as_secs_f64();
        let mut signals = Vec::new();
        for queue in Queue::ALL {
            let Some(oldest) = super::stats::oldest_queued_at(&state.pg, queue)
                .await
                .map_err(db)?
            else {
                continue;
            };
            let age = (now - oldest).as_seconds_f64().max(0.0);
            let warning = ttl * settings.queue_age_warning_pct / 100.0;
            let critical = ttl * settings.queue_age_critical_pct / 100.0;
            if let Some((severity, threshold)) = graded(age, warning, critical) {
                let left = crate::format::format_duration(((ttl - age).max(0.0) * 1000.0) as i64);
                signals.push(
                    Signal::new(
                        queue.as_str(),
                        severity,
                        format!(
                            "The oldest row of the {} queue is {} old; expiry deletes it in {left}",
                            queue.as_str(),
                            crate::format::format_duration((age * 1000.0) as i64)
                        ),
                    )
                    .measured(age.round(), threshold.round(), "seconds")
                    .with_details(json!({"ttlSeconds": ttl, "oldestQueuedAt": crate::server::unix_ms(oldest)})),
                );
            }
        }
        Ok(signals)
    })
}

fn replay_failing(state: AppState, _now: OffsetDateTime) -> EvalFuture {
    Box::pin(async move {
        let settings = state.alerts();
        let job = super::replay::REPLAY_FALLBACK.name;
        let outcomes = sqlx::query_scalar!(
            "select outcome from cron_job_runs where job_name = $1 and outcome <> 'running'
              order by ran_at desc, id desc limit $2",
            job,
            settings.replay_failed_runs
        )
        .fetch_all(&state.pg)
        .await
        .map_err(db)?;
        let failed_runs = outcomes
            .iter()
            .take_while(|o| *o == "failed" || *o == "abandoned")
            .count() as i64;
        let mut attempts = 0_i64;
        for queue in Queue::ALL {
            let most: Option<i32> = sqlx::query_scalar(&format!(
                "select max(attempts) from {} where attempts > 0",
                queue.table()
            ))
            .fetch_one(&state.pg)
            .await
            .map_err(db)?;
            attempts = attempts.max(i64::from(most.unwrap_or(0)));
        }
        let runs_failing = failed_runs >= settings.replay_failed_runs;
        let rows_failing = attempts >= settings.replay_failed_attempts;
        if !runs_failing && !rows_failing {
            return Ok(Vec::new());
        }
        let signal = if runs_failing {
            Signal::new(
                job,
                Severity::Critical,
                format!("The last {failed_runs} replay runs failed"),
            )
            .measured(
                failed_runs as f64,
                settings.replay_failed_runs as f64,
                "runs",
            )
        } else {
            Signal::new(
                job,
                Severity::Warning,
                format!("Queued rows have failed {attempts} replay attempts"),
            )
            .measured(
                attempts as f64,
                settings.replay_failed_attempts as f64,
                "attempts",
            )
        };
        Ok(vec![signal.with_details(
            json!({"failedRuns": failed_runs, "maxAttempts": attempts}),
        )])
    })
}

fn ingest_quota(state: AppState, _now: OffsetDateTime) -> EvalFuture {
    Box::pin(async move {
        let quota = state.queues().per_key_quota;
        let cap = state.queues().total_cap;
        let mut signals = Vec::new();
        let depth: i64 = super::stats::queue_depths(&state.pg)
            .await
            .map_err(db)?
            .iter()
            .map(|(_, d)| d)
            .sum();
        if depth >= cap {
            signals.push(
                Signal::new(
                    "all",
                    Severity::Critical,
                    format!("The fallback queues are at their cap: {} rows; every batch that needs them is refused", group_digits(depth as u64)),
                )
                .measured(depth as f64, cap as f64, "rows"),
            );
        }
        // Each live key's exact depth across both queues (its folded base plus its
        // unfolded deltas), as ingest's own check reads it.
        let keys = sqlx::query!(
            r#"select k.id, k.name,
                      (coalesce(b.depth, 0) + coalesce(d.delta, 0))::bigint as "waiting!"
                 from ingest_keys k
                 left join fallback_key_depths b on b.key_id = k.id
                 left join (select key_id, sum(delta) as delta from fallback_depth_deltas
                             where key_id is not null group by key_id) d on d.key_id = k.id
                where k.revoked_at is null
                order by k.id"#
        )
        .fetch_all(&state.pg)
        .await
        .map_err(db)?;
        for (id, name, waiting) in keys.into_iter().map(|k| (k.id, k.name, k.waiting)) {
            if waiting >= quota {
                signals.push(
                    Signal::new(
                        format!("key-{id}"),
                        Severity::Warning,
                        format!("Ingest key “{name}” (#{id}) is at its quota of queued rows: its batches are refused"),
                    )
                    .measured(waiting as f64, quota as f64, "rows")
                    .with_details(json!({"keyId": id, "keyName": name})),
                );
            }
        }
        Ok(signals)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_figure_is_graded_only_strictly_over_its_thresholds() {
        assert_eq!(graded(1000.0, 1000.0, 100_000.0), None);
        assert_eq!(
            graded(1001.0, 1000.0, 100_000.0),
            Some((Severity::Warning, 1000.0))
        );
        assert_eq!(
            graded(100_000.0, 1000.0, 100_000.0),
            Some((Severity::Warning, 1000.0))
        );
        assert_eq!(
            graded(100_001.0, 1000.0, 100_000.0),
            Some((Severity::Critical, 100_000.0))
        );
    }
}
