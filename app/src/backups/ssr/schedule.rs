//! Each store's backup schedule and retention, as the runbooks set them: PostgreSQL
//! dumped hourly and kept a week (168), ClickHouse daily at 03:00 UTC and kept 30 days
//! (30); the point-in-time archive is continuous besides (pgBackRest's own schedule).
//!
//! The `backup` job ticks (hourly by default, `SALVAGE_CRON_BACKUP`); at a scheduler's
//! tick it backs up each store whose own schedule (`SALVAGE_BACKUP_SCHEDULE_<STORE>`) has
//! had a time since that store's last backup began, so a store's time that falls between
//! two ticks runs at the next one, and a failed backup is not retried before its next
//! time. Run by a person, the CLI or `/cron/backup`, it backs up both stores.

use time::OffsetDateTime;

use super::super::StoreKind;
use crate::jobs::schedule::Schedule;
use crate::server::AppState;

/// A store's backup schedule and how many of its complete backups are kept.
#[derive(Clone, Debug)]
pub struct StorePolicy {
    pub schedule: Schedule,
    pub keep: i64,
}

impl StorePolicy {
    /// The runbooks' policy for `store`.
    pub fn default_for(store: StoreKind) -> Self {
        let (expression, keep) = match store {
            StoreKind::Postgres => ("0 * * * *", 168),
            StoreKind::Clickhouse => ("0 3 * * *", 30),
        };
        Self {
            schedule: Schedule::parse(expression).expect("a valid default schedule"),
            keep,
        }
    }

    /// Whether the store is due at `tick`: its schedule had a time at or before `tick`
    /// (within its longest gap) after its last backup began (`last_began`; never: due).
    pub fn due_at(&self, tick: OffsetDateTime, last_began: Option<OffsetDateTime>) -> bool {
        // Far enough back for a monthly schedule's last time.
        let within = self.schedule.longest_gap().max(time::Duration::days(32));
        match self.schedule.last_at_or_before(tick, within) {
            None => false,
            Some(time) => last_began.is_none_or(|began| began < time),
        }
    }
}

/// The stores the `backup` job backs up at a scheduler's `tick`.
pub async fn due_stores(
    state: &AppState,
    tick: OffsetDateTime,
) -> Result<Vec<StoreKind>, sqlx::Error> {
    let mut due = Vec::new();
    for store in StoreKind::ALL {
        let last_began = sqlx::query_scalar!(
            "select max(started_at) from backups where store = $1",
            store.as_str()
        )
        .fetch_one(&state.pg)
        .await?;
        if state.backups().policy(store).due_at(tick, last_began) {
            due.push(store);
        }
    }
    Ok(due)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn a_store_is_due_once_per_time_of_its_schedule() {
        let daily = StorePolicy::default_for(StoreKind::Clickhouse);
        let three = datetime!(2026-12-07 03:00 UTC);
        // Never backed up: due at its first time.
        assert!(daily.due_at(three, None));
        // Backed up at 03:00 (the backup began a moment after the tick): not due again
        // at 04:00, nor when that backup failed; due at the next day's 03:00.
        let began = three + time::Duration::seconds(1);
        assert!(!daily.due_at(three + time::Duration::hours(1), Some(began)));
        assert!(!daily.due_at(three + time::Duration::hours(23), Some(began)));
        assert!(daily.due_at(three + time::Duration::hours(24), Some(began)));
        // Backed up by hand at 02:59: the 03:00 time still runs.
        assert!(daily.due_at(three, Some(three - time::Duration::minutes(1))));
        // Missed at 03:00 (the process was down): the 04:00 tick runs it.
        assert!(daily.due_at(
            three + time::Duration::hours(1),
            Some(three - time::Duration::hours(24))
        ));
    }

    #[test]
    fn a_time_between_two_ticks_runs_at_the_next_tick() {
        let half_past = StorePolicy {
            schedule: Schedule::parse("30 3 * * *").unwrap(),
            keep: 7,
        };
        let yesterday = Some(datetime!(2026-12-06 03:30:05 UTC));
        assert!(!half_past.due_at(datetime!(2026-12-07 03:00 UTC), yesterday));
        assert!(half_past.due_at(datetime!(2026-12-07 04:00 UTC), yesterday));
        let hourly = StorePolicy::default_for(StoreKind::Postgres);
        assert!(hourly.due_at(
            datetime!(2026-12-07 04:00 UTC),
            Some(datetime!(2026-12-07 03:00:02 UTC))
        ));
    }
}
