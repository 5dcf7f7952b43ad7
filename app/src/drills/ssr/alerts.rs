//! The drills' alert kinds: `drill_overdue` and `tabletop_overdue` (conditions the
//! self-monitor evaluates from each store's cadence, `cadence`),
//! `drill_failed` and `rto_exceeded` (events raised in the transaction that records the
//! drill).

use serde_json::json;
use time::OffsetDateTime;

use super::super::{DrillStore, StoreKind};
use crate::alerts::ssr::{AlertKind, EvalFuture, Fix, Signal};
use crate::alerts::{FixAction, Severity};
use crate::error::AppError;
use crate::format::format_duration;
use crate::server::AppState;

use super::super::DRILL_JOB;
use super::cadence;

fn run_a_drill(_key: &str) -> FixAction {
    FixAction::run(DRILL_JOB, "Run a drill now")
}

const FIX: Fix = Fix {
    href: "/admin/drills",
    label: "Open the drills",
    action: Some(run_a_drill),
};

/// No passing functional drill of a store within the cadence its objectives set (90
/// days by default, counted from installation on a fresh install), or none within a
/// week of a schema change (`cadence`). Critical past twice the cadence.
pub static DRILL_OVERDUE: AlertKind = AlertKind {
    name: "drill_overdue",
    description: "No passing restore drill within its cadence, or since a schema upgrade.",
    evaluate: Some(overdue),
    fire_after: 1,
    auto_resolve: true,
    fix: FIX,
};

/// No tabletop exercise within a store's tabletop cadence (30 days by default, from its
/// objectives; counted from installation on a fresh install).
pub static TABLETOP_OVERDUE: AlertKind = AlertKind {
    name: "tabletop_overdue",
    description: "No tabletop exercise within its cadence.",
    evaluate: Some(tabletop_overdue),
    fire_after: 1,
    auto_resolve: true,
    fix: Fix {
        href: "/admin/drills",
        label: "Log a tabletop exercise",
        action: None,
    },
};

/// A functional drill failed: a backup did not restore, verify or answer the console's
/// queries (raised when it is recorded; a person resolves it).
pub static DRILL_FAILED: AlertKind = AlertKind {
    name: "drill_failed",
    description: "A restore drill failed.",
    evaluate: None,
    fire_after: 1,
    auto_resolve: false,
    fix: FIX,
};

/// A drill's measured recovery time was over its objective, or over 1.25 times the
/// median of the passing drills of the last 90 days.
pub static RTO_EXCEEDED: AlertKind = AlertKind {
    name: "rto_exceeded",
    description: "A drill's measured recovery time exceeded its objective or its trend.",
    evaluate: None,
    fire_after: 1,
    auto_resolve: false,
    fix: FIX,
};

/// How far over its 90-day median a drill's recovery time may go.
pub const TREND_FACTOR: f64 = 1.25;

/// The signals `rule` gives each store's cadence points at `now`.
fn per_store<I: IntoIterator<Item = Signal> + 'static>(
    state: AppState,
    now: OffsetDateTime,
    rule: fn(&cadence::Points, OffsetDateTime) -> I,
) -> EvalFuture {
    Box::pin(async move {
        let mut signals = Vec::new();
        for store in StoreKind::ALL {
            let points = cadence::points(&state, store)
                .await
                .map_err(|e| AppError::internal("Failed to evaluate the drill cadences", e))?;
            signals.extend(rule(&points, now));
        }
        Ok(signals)
    })
}

fn overdue(state: AppState, now: OffsetDateTime) -> EvalFuture {
    per_store(state, now, cadence::overdue_signals)
}

fn tabletop_overdue(state: AppState, now: OffsetDateTime) -> EvalFuture {
    per_store(state, now, cadence::tabletop_signal)
}

/// The median measured recovery time of `store` in the passing functional drills of the
/// 90 days before `before` (excluding drill `except`).
pub async fn median_recovery_ms<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    store: StoreKind,
    before: OffsetDateTime,
    except: i64,
) -> Result<Option<i64>, sqlx::Error> {
    let median = sqlx::query_scalar!(
        "select percentile_cont(0.5) within group (order by (s ->> 'recoveryMs')::float8)
           from drills d, jsonb_array_elements(d.stores) s
          where d.kind = 'functional' and d.status = 'passed' and d.id <> $3
            and d.started_at between $2::timestamptz - interval '90 days' and $2::timestamptz
            and s ->> 'store' = $1",
        store.as_str(),
        before,
        except
    )
    .fetch_one(executor)
    .await?;
    Ok(median.map(|m| m.round() as i64))
}

/// The `rto_exceeded` signal for one store of a drill, if its recovery time is over its
/// objective, or over [`TREND_FACTOR`] times its median and by at least `floor`.
pub fn rto_signal(
    drill_id: i64,
    store: &DrillStore,
    median_ms: Option<i64>,
    floor: std::time::Duration,
) -> Option<Signal> {
    let over_target = store.over_target();
    let floor_ms = floor.as_millis() as i64;
    let over_trend = median_ms.is_some_and(|m| {
        m > 0
            && store.recovery_ms as f64 > m as f64 * TREND_FACTOR
            && store.recovery_ms - m >= floor_ms
    });
    if !over_target && !over_trend {
        return None;
    }
    let (title, threshold) = if over_target {
        (
            format!(
                "Drill {drill_id}: {} took {} to recover, over its objective of {}",
                store.store.label(),
                format_duration(store.recovery_ms),
                format_duration(store.rto_target_ms)
            ),
            store.rto_target_ms,
        )
    } else {
        let median = median_ms.unwrap_or_default();
        (
            format!(
                "Drill {drill_id}: {} took {} to recover, over 1.25 times its 90-day median of {} and {} more",
                store.store.label(),
                format_duration(store.recovery_ms),
                format_duration(median),
                format_duration(store.recovery_ms - median)
            ),
            ((median as f64 * TREND_FACTOR) as i64).max(median + floor_ms),
        )
    };
    let severity = if over_target {
        Severity::Critical
    } else {
        Severity::Warning
    };
    Some(
        Signal::new(store.store.as_str(), severity, title)
            .measured(
                store.recovery_ms as f64 / 1000.0,
                threshold as f64 / 1000.0,
                "s",
            )
            .with_details(json!({"drillId": drill_id, "medianMs": median_ms})),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rto_exceeded_over_the_objective_or_a_quarter_and_a_floor_over_the_median() {
        let store = |recovery_ms| DrillStore {
            store: StoreKind::Clickhouse,
            backup_id: Some(1),
            backup_age_ms: Some(0),
            restore_id: Some(1),
            database: None,
            recovery_ms,
            rto_target_ms: 600_000,
            tables: Vec::new(),
            queries: Vec::new(),
            ok: true,
            error: None,
        };
        let floor = std::time::Duration::from_secs(60);
        assert!(rto_signal(1, &store(600_000), None, floor).is_none());
        assert_eq!(
            rto_signal(1, &store(600_001), None, floor)
                .unwrap()
                .severity,
            Severity::Critical
        );
        // A quarter over a 4-minute median and over the minute's floor: a trend.
        assert!(rto_signal(1, &store(300_000), Some(240_000), floor).is_none());
        let trend = rto_signal(1, &store(300_001), Some(240_000), floor).unwrap();
        assert_eq!(trend.severity, Severity::Warning);
        assert!(trend.title.contains("median"), "{}", trend.title);
        assert_eq!(
            trend.threshold,
            Some(300.0),
            "the higher of the two bounds, in s"
        );
        // Twice a 307 ms median is 201 ms more: under the floor, not trouble (the demo's
        // "508 ms against 307 ms" warning).
        assert!(rto_signal(1, &store(508), Some(307), floor).is_none());
        // A quarter over a 2-minute median is 30 s: the floor decides, at a minute more.
        assert!(rto_signal(1, &store(179_999), Some(120_000), floor).is_none());
        let slow = rto_signal(1, &store(180_000), Some(120_000), floor).unwrap();
        assert_eq!(slow.threshold, Some(180.0));
    }
}
