//! When drills are due, per store: a passing functional drill within the cadence its
//! objectives set (90 days by default), a tabletop exercise within its own (30 days), and
//! a passing functional drill within a week of a schema change none has passed since:
//! Salvage's own upgrade (a migration applied after installation) or the guarded
//! service's, as it reports it (`POST /ingest/schema-events`). On a fresh install each
//! cadence counts from installation (the first migration).

use serde_json::json;
use time::{Duration, OffsetDateTime};

use super::super::StoreKind;
use crate::alerts::ssr::Signal;
use crate::alerts::Severity;
use crate::backups::ssr::objectives::{self, Objectives};
use crate::server::AppState;

/// How long after a schema change a passing drill is due.
pub const AFTER_CHANGE: Duration = Duration::days(7);

/// Migrations applied within this of the first are the installation, not an upgrade.
const INSTALL_SPAN: Duration = Duration::hours(1);

/// A schema change no passing drill of the store has followed yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub at: OffsetDateTime,
    /// "Salvage's schema upgrade", or "billing's schema version 42".
    pub what: String,
}

/// What a store's due dates count from.
#[derive(Clone, Debug)]
pub struct Points {
    pub store: StoreKind,
    pub installed: OffsetDateTime,
    pub objectives: Objectives,
    /// When the newest functional drill that restored this store passed began.
    pub last_passed: Option<OffsetDateTime>,
    /// When the newest tabletop exercise was held (one covers every store).
    pub last_tabletop: Option<OffsetDateTime>,
    /// The oldest schema change since the last passing drill (or installation).
    pub change: Option<Change>,
}

/// The points of `store` now.
pub async fn points(state: &AppState, store: StoreKind) -> Result<Points, sqlx::Error> {
    let pg = &state.pg;
    // The migrator's own table: a runtime query (see `backups::ssr::alerts`).
    let migrations: Vec<OffsetDateTime> =
        sqlx::query_scalar("select installed_on from _sqlx_migrations order by installed_on")
            .fetch_all(pg)
            .await?;
    let installed = migrations
        .first()
        .copied()
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let last_passed = sqlx::query_scalar!(
        "select max(d.started_at) from drills d, jsonb_array_elements(d.stores) s
          where d.kind = 'functional' and d.status in ('passed', 'failed')
            and s ->> 'store' = $1 and (s ->> 'ok')::boolean",
        store.as_str()
    )
    .fetch_one(pg)
    .await?;
    let last_tabletop =
        sqlx::query_scalar!("select max(started_at) from drills where kind = 'tabletop'")
            .fetch_one(pg)
            .await?;
    let since = last_passed.unwrap_or(installed);
    let upgrade = migrations
        .iter()
        .copied()
        .find(|at| *at - installed > INSTALL_SPAN && *at > since)
        .map(|at| Change {
            at,
            what: "Salvage's schema upgrade".to_owned(),
        });
    let reported = sqlx::query!(
        "select name, version, changed_at from schema_events
          where changed_at > $1 order by changed_at, id limit 1",
        since
    )
    .fetch_optional(pg)
    .await?
    .map(|row| Change {
        at: row.changed_at,
        what: format!("{}'s schema version {}", row.name, row.version),
    });
    let change = match (upgrade, reported) {
        (Some(a), Some(b)) => Some(if a.at <= b.at { a } else { b }),
        (a, b) => a.or(b),
    };
    Ok(Points {
        store,
        installed,
        objectives: objectives::current(state, store).await?,
        last_passed,
        last_tabletop,
        change,
    })
}

impl Points {
    /// When the next functional drill is due: a cadence after the last passing one (or
    /// the installation), or sooner after a schema change none has passed since.
    pub fn functional_due(&self) -> OffsetDateTime {
        let cadence =
            self.last_passed.unwrap_or(self.installed) + self.objectives.functional_every();
        match &self.change {
            Some(change) => cadence.min(change.at + AFTER_CHANGE),
            None => cadence,
        }
    }

    /// When the next tabletop exercise is due.
    pub fn tabletop_due(&self) -> OffsetDateTime {
        self.last_tabletop.unwrap_or(self.installed) + self.objectives.tabletop_every()
    }
}

fn days(age: Duration) -> f64 {
    age.whole_hours() as f64 / 24.0
}

/// The `drill_overdue` signals of one store at `now`: one per reason a drill is due,
/// keyed `<store>` (the cadence) and `<store>:change` (a schema change).
pub fn overdue_signals(points: &Points, now: OffsetDateTime) -> Vec<Signal> {
    let mut signals = Vec::new();
    let store = points.store;
    let every = points.objectives.functional_every();
    let age = now - points.last_passed.unwrap_or(points.installed);
    if age > every {
        let severity = if age > every * 2 {
            Severity::Critical
        } else {
            Severity::Warning
        };
        let title = match points.last_passed {
            Some(_) => format!(
                "{}: the last passing restore drill was {:.0} days ago (cadence {} days)",
                store.label(),
                days(age),
                every.whole_days()
            ),
            None => format!(
                "{}: no restore drill has passed in the {:.0} days since installation (cadence {} days)",
                store.label(),
                days(age),
                every.whole_days()
            ),
        };
        signals.push(
            Signal::new(store.as_str(), severity, title)
                .measured(days(age), every.whole_days() as f64, "days")
                .with_details(json!({"ever": points.last_passed.is_some()})),
        );
    }
    if let Some(change) = &points.change {
        let since = now - change.at;
        if since > AFTER_CHANGE {
            signals.push(
                Signal::new(
                    format!("{}:change", store.as_str()),
                    Severity::Warning,
                    format!(
                        "{}: no restore drill has passed since {} {:.0} days ago",
                        store.label(),
                        change.what,
                        days(since)
                    ),
                )
                .measured(days(since), AFTER_CHANGE.whole_days() as f64, "days"),
            );
        }
    }
    signals
}

/// The `tabletop_overdue` signal of one store at `now`, past its tabletop cadence.
pub fn tabletop_signal(points: &Points, now: OffsetDateTime) -> Option<Signal> {
    let every = points.objectives.tabletop_every();
    let age = now - points.last_tabletop.unwrap_or(points.installed);
    if age <= every {
        return None;
    }
    let title = match points.last_tabletop {
        Some(_) => format!(
            "{}: the last tabletop exercise was {:.0} days ago (cadence {} days)",
            points.store.label(),
            days(age),
            every.whole_days()
        ),
        None => format!(
            "{}: no tabletop exercise in the {:.0} days since installation (cadence {} days)",
            points.store.label(),
            days(age),
            every.whole_days()
        ),
    };
    Some(
        Signal::new(points.store.as_str(), Severity::Warning, title).measured(
            days(age),
            every.whole_days() as f64,
            "days",
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(days: i64) -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + Duration::days(days)
    }

    fn fresh(functional_days: i64, tabletop_days: i64) -> Points {
        Points {
            store: StoreKind::Postgres,
            installed: at(0),
            objectives: Objectives {
                rpo: std::time::Duration::from_secs(3600),
                rto: std::time::Duration::from_secs(3600),
                functional_days,
                tabletop_days,
            },
            last_passed: None,
            last_tabletop: None,
            change: None,
        }
    }

    #[test]
    fn overdue_past_the_stores_cadence_from_installation_or_the_last_pass() {
        let fresh = fresh(90, 30);
        assert!(overdue_signals(&fresh, at(90)).is_empty());
        let due = overdue_signals(&fresh, at(91));
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].key, "postgres");
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
            ..fresh.clone()
        };
        assert!(overdue_signals(&drilled, at(190)).is_empty());
        assert_eq!(overdue_signals(&drilled, at(191)).len(), 1);
        // A store whose objectives ask for a drill every 14 days.
        let tight = Points {
            last_passed: Some(at(100)),
            ..self::fresh(14, 30)
        };
        assert!(overdue_signals(&tight, at(114)).is_empty());
        assert_eq!(overdue_signals(&tight, at(115))[0].threshold, Some(14.0));
        assert_eq!(tight.functional_due(), at(114));
    }

    #[test]
    fn a_drill_is_due_a_week_after_a_schema_change_none_passed_since() {
        let changed = Points {
            last_passed: Some(at(5)),
            change: Some(Change {
                at: at(10),
                what: "billing's schema version 42".to_owned(),
            }),
            ..fresh(90, 30)
        };
        assert_eq!(changed.functional_due(), at(17));
        assert!(overdue_signals(&changed, at(17)).is_empty());
        let due = overdue_signals(&changed, at(18));
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].key, "postgres:change");
        assert!(
            due[0].title.contains("billing's schema version 42"),
            "{}",
            due[0].title
        );
    }

    #[test]
    fn tabletop_overdue_past_its_own_cadence() {
        let fresh = fresh(90, 30);
        assert!(tabletop_signal(&fresh, at(30)).is_none());
        let due = tabletop_signal(&fresh, at(31)).unwrap();
        assert_eq!(due.severity, Severity::Warning);
        assert!(due.title.contains("since installation"), "{}", due.title);
        let held = Points {
            last_tabletop: Some(at(40)),
            ..fresh
        };
        assert_eq!(held.tabletop_due(), at(70));
        assert!(tabletop_signal(&held, at(70)).is_none());
        assert!(tabletop_signal(&held, at(71))
            .unwrap()
            .title
            .contains("31 days ago"));
    }
}
