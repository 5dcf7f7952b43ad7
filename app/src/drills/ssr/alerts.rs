//! The drills' alert kinds: `drill_overdue` (a condition the self-monitor evaluates),
//! `drill_failed` and `rto_exceeded` (events raised in the transaction that records the
//! drill).

use serde_json::json;
use sqlx::PgPool;
use time::{Duration, OffsetDateTime};

use super::super::{DrillStore, StoreKind};
use crate::alerts::ssr::{AlertKind, EvalFuture, Fix, Signal};
use crate::alerts::{FixAction, Severity};
use crate::error::AppError;
use crate::format::format_duration;
use crate::server::AppState;

use super::super::DRILL_JOB;

fn run_a_drill(_key: &str) -> FixAction {
    FixAction::run(DRILL_JOB, "Run a drill now")
}

const FIX: Fix = Fix {
    href: "/admin/drills",
    label: "Open the drills",
    action: Some(run_a_drill),
};

/// No passing functional drill within the cadence (90 days, counted from installation
/// on a fresh install), or none within a week of a schema upgrade. Critical past twice
/// the cadence.
pub static DRILL_OVERDUE: AlertKind = AlertKind {
    name: "drill_overdue",
    description: "No passing restore drill within its cadence, or since a schema upgrade.",
    evaluate: Some(overdue),
    fire_after: 1,
    auto_resolve: true,
    fix: FIX,
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

/// The cadence of functional drills.
pub const FUNCTIONAL_EVERY: Duration = Duration::days(90);
/// The cadence of tabletop exercises.
pub const TABLETOP_EVERY: Duration = Duration::days(30);
/// How long after a schema upgrade a passing drill is due.
pub const AFTER_UPGRADE: Duration = Duration::days(7);
/// How far over its 90-day median a drill's recovery time may go.
pub const TREND_FACTOR: f64 = 1.25;

/// When Salvage was installed (its first migration), when its schema last changed after
/// that (a later migration), and when the newest passing functional drill began.
pub struct Points {
    pub installed: OffsetDateTime,
    pub upgraded: Option<OffsetDateTime>,
    pub last_passed: Option<OffsetDateTime>,
}

pub async fn points(pg: &PgPool) -> Result<Points, sqlx::Error> {
    // The migrator's own table: a runtime query (see `backups::ssr::alerts`).
    let (installed, latest): (Option<OffsetDateTime>, Option<OffsetDateTime>) =
        sqlx::query_as("select min(installed_on), max(installed_on) from _sqlx_migrations")
            .fetch_one(pg)
            .await?;
    let installed = installed.unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let last_passed = sqlx::query_scalar!(
        "select max(started_at) from drills where kind = 'functional' and status = 'passed'"
    )
    .fetch_one(pg)
    .await?;
    Ok(Points {
        installed,
        // Migrations applied with the first install are the install, not an upgrade.
        upgraded: latest.filter(|l| *l - installed > Duration::hours(1)),
        last_passed,
    })
}

impl Points {
    /// When the next functional drill is due: a cadence after the last passing one (or
    /// the installation), or sooner after a schema upgrade no drill has passed since.
    pub fn functional_due(&self) -> OffsetDateTime {
        let cadence = self.last_passed.unwrap_or(self.installed) + FUNCTIONAL_EVERY;
        match self.upgraded {
            Some(upgraded) if self.last_passed.is_none_or(|p| p < upgraded) => {
                cadence.min(upgraded + AFTER_UPGRADE)
            }
            _ => cadence,
        }
    }
}

/// The signals for `points` at `now`: one per reason a drill is due.
pub fn overdue_signals(points: &Points, now: OffsetDateTime) -> Vec<Signal> {
    let mut signals = Vec::new();
    let since = points.last_passed.unwrap_or(points.installed);
    let age = now - since;
    if age > FUNCTIONAL_EVERY {
        let days = age.whole_hours() as f64 / 24.0;
        let severity = if age > FUNCTIONAL_EVERY * 2 {
            Severity::Critical
        } else {
            Severity::Warning
        };
        let title = match points.last_passed {
            Some(_) => format!(
                "The last passing restore drill was {days:.0} days ago (cadence {} days)",
                FUNCTIONAL_EVERY.whole_days()
            ),
            None => format!(
                "No restore drill has passed in the {days:.0} days since installation (cadence {} days)",
                FUNCTIONAL_EVERY.whole_days()
            ),
        };
        signals.push(
            Signal::new("cadence", severity, title)
                .measured(days, FUNCTIONAL_EVERY.whole_days() as f64, "days")
                .with_details(json!({"ever": points.last_passed.is_some()})),
        );
    }
    if let Some(upgraded) = points.upgraded {
        let drilled_since = points.last_passed.is_some_and(|p| p >= upgraded);
        if !drilled_since && now - upgraded > AFTER_UPGRADE {
            let days = (now - upgraded).whole_hours() as f64 / 24.0;
            signals.push(
                Signal::new(
                    "after_upgrade",
                    Severity::Warning,
                    format!(
                        "No restore drill has passed since the schema upgrade {days:.0} days ago"
                    ),
                )
                .measured(days, AFTER_UPGRADE.whole_days() as f64, "days"),
            );
        }
    }
    signals
}

fn overdue(state: AppState, now: OffsetDateTime) -> EvalFuture {
    Box::pin(async move {
        let points = points(&state.pg)
            .await
            .map_err(|e| AppError::internal("Failed to evaluate the drills", e))?;
        Ok(overdue_signals(&points, now))
    })
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

    fn at(days: i64) -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + Duration::days(days)
    }

    #[test]
    fn overdue_past_the_cadence_from_installation_or_the_last_pass_critical_past_twice() {
        let fresh = Points {
            installed: at(0),
            upgraded: None,
            last_passed: None,
        };
        assert!(overdue_signals(&fresh, at(90)).is_empty());
        let due = overdue_signals(&fresh, at(91));
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].severity, Severity::Warning);
        assert!(
            due[0].title.contains("since installation"),
            "{}",
            due[0].title
        );
        assert_eq!(
            overdue_signals(&fresh, at(181))[0].severity,
            Severity::Critical
        );
        let drilled = Points {
            last_passed: Some(at(100)),
            ..fresh
        };
        assert!(overdue_signals(&drilled, at(181)).is_empty());
        assert_eq!(overdue_signals(&drilled, at(191)).len(), 1);
    }

    #[test]
    fn a_drill_is_due_a_week_after_an_upgrade_unless_one_passed_since() {
        let upgraded = Points {
            installed: at(0),
            upgraded: Some(at(10)),
            last_passed: Some(at(5)),
        };
        assert!(overdue_signals(&upgraded, at(17)).is_empty());
        let due = overdue_signals(&upgraded, at(18));
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].key, "after_upgrade");
        let drilled = Points {
            last_passed: Some(at(12)),
            ..upgraded
        };
        assert!(overdue_signals(&drilled, at(30)).is_empty());
    }

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
