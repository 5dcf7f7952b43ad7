//! The backups' alert kinds: `backup_stale` (a condition the self-monitor evaluates),
//! `backup_failed` and `backup_verify_failed` (events raised in the transaction that
//! records the failure). One alert per store.

use serde_json::json;
use sqlx::PgPool;
use time::OffsetDateTime;

use super::super::StoreKind;
use crate::alerts::ssr::{AlertKind, EvalFuture, Fix, Signal};
use crate::alerts::{FixAction, Severity};
use crate::error::AppError;
use crate::server::AppState;

fn back_up_now(_key: &str) -> FixAction {
    FixAction::run(super::BACKUP.name, "Back up now")
}

const FIX: Fix = Fix {
    href: "/admin/backups",
    label: "Open the backups",
    action: Some(back_up_now),
};

/// No complete backup of a store within its recovery point objective plus a 2 h grace
/// (so the daily backup that is running does not raise it); critical past twice the
/// objective. On a fresh install the age counts from installation.
pub static BACKUP_STALE: AlertKind = AlertKind {
    name: "backup_stale",
    description: "A store has no complete backup within its recovery point objective.",
    evaluate: Some(stale),
    fire_after: 1,
    auto_resolve: true,
    fix: FIX,
};

/// A backup failed (raised when it is recorded; a person resolves it).
pub static BACKUP_FAILED: AlertKind = AlertKind {
    name: "backup_failed",
    description: "A backup failed.",
    evaluate: None,
    fire_after: 1,
    auto_resolve: false,
    fix: FIX,
};

/// A backup's files do not match its manifest.
pub static BACKUP_VERIFY_FAILED: AlertKind = AlertKind {
    name: "backup_verify_failed",
    description: "A backup's files do not match its manifest.",
    evaluate: None,
    fire_after: 1,
    auto_resolve: false,
    fix: FIX,
};

/// The grace past the objective before `backup_stale` is raised.
pub const STALE_GRACE: time::Duration = time::Duration::hours(2);

/// When each store's newest complete backup finished (or, with none, when Salvage was
/// installed: its first migration).
pub async fn newest_points(
    pg: &PgPool,
) -> Result<Vec<(StoreKind, Option<OffsetDateTime>, OffsetDateTime)>, sqlx::Error> {
    // The migrations' own table is made by the migrator, not by a migration: a runtime
    // query (the checked macros see only what the migrations create).
    let installed: Option<OffsetDateTime> =
        sqlx::query_scalar("select min(installed_on) from _sqlx_migrations")
            .fetch_one(pg)
            .await?;
    let mut points = Vec::new();
    for store in StoreKind::ALL {
        let newest = sqlx::query_scalar!(
            "select max(finished_at) from backups
             where store = $1 and status in ('completed', 'verified', 'verify_failed')",
            store.as_str()
        )
        .fetch_one(pg)
        .await?;
        points.push((
            store,
            newest,
            installed.unwrap_or(OffsetDateTime::UNIX_EPOCH),
        ));
    }
    Ok(points)
}

/// The signal for one store: `age` since its newest backup (or installation) against
/// its objective `rpo`.
pub fn stale_signal(
    store: StoreKind,
    age: time::Duration,
    rpo: time::Duration,
    ever: bool,
) -> Option<Signal> {
    if age <= rpo + STALE_GRACE {
        return None;
    }
    let severity = if age > rpo * 2 {
        Severity::Critical
    } else {
        Severity::Warning
    };
    let hours = age.whole_minutes() as f64 / 60.0;
    let title = if ever {
        format!(
            "The newest {} backup is {hours:.1} h old (objective {} h)",
            store.label(),
            rpo.whole_hours()
        )
    } else {
        format!(
            "{} has never been backed up ({hours:.1} h since installation, objective {} h)",
            store.label(),
            rpo.whole_hours()
        )
    };
    Some(
        Signal::new(store.as_str(), severity, title)
            .measured(hours, rpo.whole_minutes() as f64 / 60.0, "h")
            .with_details(json!({"store": store.as_str(), "ever": ever})),
    )
}

fn stale(state: AppState, now: OffsetDateTime) -> EvalFuture {
    Box::pin(async move {
        let failed = |e| AppError::internal("Failed to evaluate the backups", e);
        let points = newest_points(&state.pg).await.map_err(failed)?;
        let mut signals = Vec::new();
        for (store, newest, installed) in points {
            // The objective an admin set on /admin/drills, or the configured default.
            let rpo = super::objectives::current(&state, store)
                .await
                .map_err(failed)?
                .rpo;
            let rpo = time::Duration::try_from(rpo).unwrap_or_default();
            signals.extend(stale_signal(
                store,
                now - newest.unwrap_or(installed),
                rpo,
                newest.is_some(),
            ));
        }
        Ok(signals)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;

    #[test]
    fn stale_only_past_the_objective_and_its_grace_critical_past_twice() {
        let rpo = Duration::hours(24);
        let at = |hours: i64| stale_signal(StoreKind::Postgres, Duration::hours(hours), rpo, true);
        assert!(
            at(25).is_none(),
            "a daily backup that is running does not raise it"
        );
        assert!(at(26).is_none());
        assert_eq!(at(27).unwrap().severity, Severity::Warning);
        assert_eq!(at(48).unwrap().severity, Severity::Warning);
        assert_eq!(at(49).unwrap().severity, Severity::Critical);
        let never = stale_signal(StoreKind::Clickhouse, Duration::hours(30), rpo, false).unwrap();
        assert!(
            never.title.contains("never been backed up"),
            "{}",
            never.title
        );
    }
}
