//! The WAL archive's alert kinds: `wal_archive_lag` (a condition the self-monitor
//! evaluates from PostgreSQL's `pg_stat_archiver`) and `pitr_backup_failed` (an event
//! the `pitr-backup` job raises in the transaction that records the failure).

use serde_json::json;
use time::{Duration, OffsetDateTime};

use crate::alerts::ssr::{AlertKind, EvalFuture, Fix, Signal};
use crate::alerts::{FixAction, Severity};
use crate::backups::PITR_BACKUP_JOB;
use crate::error::AppError;
use crate::server::AppState;

fn back_up_now(_key: &str) -> FixAction {
    FixAction::run(PITR_BACKUP_JOB, "Take a base backup now")
}

const FIX: Fix = Fix {
    href: "/admin/backups",
    label: "Open the backups",
    action: None,
};

/// WAL was written and none of it was archived for three archive timeouts (critical at
/// 15 minutes), or the archive command's last attempt failed.
pub static WAL_ARCHIVE_LAG: AlertKind = AlertKind {
    name: "wal_archive_lag",
    description: "PostgreSQL's WAL is not reaching the archive: point-in-time recovery \
                  falls behind.",
    evaluate: Some(lag),
    fire_after: 1,
    auto_resolve: true,
    fix: FIX,
};

/// A pgBackRest base backup failed, or its verification found the repository wrong.
pub static PITR_BACKUP_FAILED: AlertKind = AlertKind {
    name: "pitr_backup_failed",
    description: "A pgBackRest base backup of PostgreSQL failed.",
    evaluate: None,
    fire_after: 1,
    auto_resolve: false,
    fix: Fix {
        action: Some(back_up_now),
        ..FIX
    },
};

/// The point-in-time window falls short of the PostgreSQL recovery point objective: no
/// base backup to restore from, or the newest restorable moment is older than the
/// objective allows.
pub static PITR_WINDOW_SHORT: AlertKind = AlertKind {
    name: "pitr_window_short",
    description: "PostgreSQL's point-in-time window does not reach within its recovery \
                  point objective of now.",
    evaluate: Some(window_short),
    fire_after: 1,
    auto_resolve: true,
    fix: Fix {
        action: Some(back_up_now),
        ..FIX
    },
};

/// Past this, a lagging archive is critical.
pub const CRITICAL_LAG: Duration = Duration::minutes(15);

/// The archiver as PostgreSQL reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct Archiver {
    /// The last segment archived, and when.
    pub last_archived_wal: Option<String>,
    pub last_archived: Option<OffsetDateTime>,
    /// The last failed attempt, and its segment.
    pub last_failed: Option<OffsetDateTime>,
    pub last_failed_wal: Option<String>,
    /// The segment being written now.
    pub current_wal: String,
    /// When the server started (its archiving started then).
    pub started: OffsetDateTime,
}

type ArchiverRow = (
    Option<String>,
    Option<OffsetDateTime>,
    Option<String>,
    Option<OffsetDateTime>,
    String,
    OffsetDateTime,
);

impl Archiver {
    pub async fn read(pg: &sqlx::PgPool) -> Result<Self, sqlx::Error> {
        // A probe of the server's own statistics (a runtime query, like the others).
        let row: ArchiverRow = sqlx::query_as(
            "select last_archived_wal, last_archived_time, last_failed_wal, last_failed_time,
                    pg_walfile_name(pg_current_wal_lsn()), pg_postmaster_start_time()
               from pg_stat_archiver",
        )
        .fetch_one(pg)
        .await?;
        let (last_archived_wal, last_archived, last_failed_wal, last_failed, current_wal, started) =
            row;
        Ok(Self {
            last_archived_wal,
            last_archived,
            last_failed,
            last_failed_wal,
            current_wal,
            started,
        })
    }
}

impl Archiver {
    /// The archive command's last attempt failed.
    pub fn failing(&self) -> bool {
        match (self.last_failed, self.last_archived) {
            (Some(failed), Some(archived)) => failed > archived,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    /// WAL is written that is not archived yet.
    pub fn waiting(&self) -> bool {
        self.last_archived_wal
            .as_deref()
            .is_none_or(|archived| self.current_wal.as_str() > archived)
    }

    /// What a loss of the server at `now` would cost: the time since the last segment
    /// was archived when WAL is waiting for the archive; nothing on a quiet server whose
    /// every write is archived. The recovery point as measured.
    pub fn exposure(&self, now: OffsetDateTime) -> Duration {
        if self.failing() || self.waiting() {
            (now - self.last_archived.unwrap_or(self.started)).max(Duration::ZERO)
        } else {
            Duration::ZERO
        }
    }
}

/// PostgreSQL's recovery point from its WAL archive at `now`, in ms: the archiver's
/// exposure when the repository holds a base backup (`window_oldest_ms`) and the archive
/// command is not failing; `None` otherwise (a dump's age is the recovery point then).
pub fn archive_exposure_ms(
    window_oldest_ms: Option<i64>,
    archiver: &Archiver,
    now: OffsetDateTime,
) -> Option<i64> {
    window_oldest_ms?;
    (!archiver.failing()).then(|| archiver.exposure(now).whole_milliseconds() as i64)
}

/// The signal for the archive at `now`. WAL is waiting when the segment being written
/// is past the last one archived (`pg_walfile_name` names the segment holding the last
/// byte written, so a quiet server that just switched names the archived one). A
/// waiting archive is measured from its last success (or the server's start).
pub fn lag_signal(
    archiver: &Archiver,
    now: OffsetDateTime,
    archive_timeout: std::time::Duration,
) -> Option<Signal> {
    let failing = archiver.failing();
    if !failing && !archiver.waiting() {
        return None;
    }
    let lag = archiver.exposure(now);
    let threshold = Duration::try_from(archive_timeout * 3).unwrap_or(Duration::MAX);
    if lag <= threshold {
        return None;
    }
    let severity = if lag > CRITICAL_LAG {
        Severity::Critical
    } else {
        Severity::Warning
    };
    let minutes = lag.whole_seconds() as f64 / 60.0;
    let title = if failing {
        format!(
            "WAL archiving is failing: nothing archived for {minutes:.1} min (segment {} failed)",
            archiver.last_failed_wal.as_deref().unwrap_or("?")
        )
    } else {
        format!("No WAL archived for {minutes:.1} min while PostgreSQL writes")
    };
    Some(
        Signal::new("postgres", severity, title)
            .measured(minutes, threshold.whole_seconds() as f64 / 60.0, "min")
            .with_details(json!({
                "failing": failing,
                "lastArchivedWal": archiver.last_archived_wal,
                "currentWal": archiver.current_wal,
            })),
    )
}

/// The signal for a window (`oldest`, `newest` restorable moments, unix ms) at `now`
/// against the objective `rpo`.
pub fn window_signal(
    oldest_ms: Option<i64>,
    newest_ms: Option<i64>,
    now: OffsetDateTime,
    rpo: std::time::Duration,
) -> Option<Signal> {
    let rpo_ms = rpo.as_millis() as i64;
    let title = match (oldest_ms, newest_ms) {
        (None, _) | (_, None) => {
            "PostgreSQL has no point-in-time window: the repository holds no base backup".to_owned()
        }
        (Some(_), Some(newest)) => {
            let behind = crate::server::unix_ms(now) - newest;
            if behind <= rpo_ms {
                return None;
            }
            format!(
                "PostgreSQL can be restored only to {} behind now (objective {})",
                crate::format::format_duration(behind),
                crate::format::format_duration(rpo_ms)
            )
        }
    };
    Some(
        Signal::new("postgres", Severity::Critical, title).with_details(json!({
            "oldestMs": oldest_ms,
            "newestMs": newest_ms,
            "rpoMs": rpo_ms,
        })),
    )
}

fn window_short(state: AppState, now: OffsetDateTime) -> EvalFuture {
    Box::pin(async move {
        let Some(pitr) = state.backups().pitr.clone() else {
            return Ok(Vec::new());
        };
        let window = super::window(&pitr, &state.pg, now)
            .await
            .map_err(|e| AppError::internal("Read the point-in-time window", e.to_string()))?;
        let rpo =
            crate::backups::ssr::objectives::current(&state, crate::backups::StoreKind::Postgres)
                .await
                .map_err(|e| AppError::internal("Read the recovery objectives", e))?
                .rpo;
        Ok(window_signal(window.oldest_ms, window.newest_ms, now, rpo)
            .into_iter()
            .collect())
    })
}

fn lag(state: AppState, now: OffsetDateTime) -> EvalFuture {
    Box::pin(async move {
        let Some(pitr) = state.backups().pitr.clone() else {
            return Ok(Vec::new());
        };
        let archiver = Archiver::read(&state.pg)
            .await
            .map_err(|e| AppError::internal("Read PostgreSQL's archiver", e))?;
        Ok(lag_signal(&archiver, now, pitr.archive_timeout)
            .into_iter()
            .collect())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-12-07 12:00 UTC);
    const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

    fn archiver(archived_ago: i64, current: &str, failed_ago: Option<i64>) -> Archiver {
        Archiver {
            last_archived_wal: Some("000000010000000000000010".into()),
            last_archived: Some(NOW - Duration::seconds(archived_ago)),
            last_failed: failed_ago.map(|s| NOW - Duration::seconds(s)),
            last_failed_wal: failed_ago.map(|_| "000000010000000000000011".into()),
            current_wal: current.into(),
            started: NOW - Duration::days(1),
        }
    }

    #[test]
    fn a_quiet_server_never_lags_however_old_its_last_segment() {
        let quiet = archiver(86_400, "000000010000000000000010", None);
        assert_eq!(lag_signal(&quiet, NOW, TIMEOUT), None);
    }

    #[test]
    fn waiting_wal_raises_past_three_timeouts_and_is_critical_past_fifteen_minutes() {
        let at = |ago| {
            lag_signal(
                &archiver(ago, "000000010000000000000011", None),
                NOW,
                TIMEOUT,
            )
        };
        assert_eq!(at(180), None);
        assert_eq!(at(181).unwrap().severity, Severity::Warning);
        assert_eq!(at(900).unwrap().severity, Severity::Warning);
        assert_eq!(at(901).unwrap().severity, Severity::Critical);
        assert!(at(600).unwrap().title.contains("10.0 min"));
    }

    #[test]
    fn the_exposure_is_nothing_on_a_quiet_server_and_the_time_since_the_last_segment_otherwise() {
        let quiet = archiver(3600, "000000010000000000000010", None);
        assert_eq!(quiet.exposure(NOW), Duration::ZERO);
        let writing = archiver(42, "000000010000000000000011", None);
        assert_eq!(writing.exposure(NOW), Duration::seconds(42));
        let failing = archiver(700, "000000010000000000000010", Some(3));
        assert_eq!(failing.exposure(NOW), Duration::seconds(700));
    }

    #[test]
    fn the_window_is_short_without_a_base_backup_or_when_its_newest_moment_is_past_the_objective() {
        let rpo = std::time::Duration::from_secs(900);
        let ms = |ago: i64| Some(crate::server::unix_ms(NOW - Duration::seconds(ago)));
        assert!(window_signal(None, None, NOW, rpo).is_some());
        assert_eq!(window_signal(ms(86_400), ms(60), NOW, rpo), None);
        assert_eq!(window_signal(ms(86_400), ms(900), NOW, rpo), None);
        let short = window_signal(ms(86_400), ms(901), NOW, rpo).unwrap();
        assert!(short.title.contains("15 min"), "{}", short.title);
    }

    #[test]
    fn a_failing_archive_command_raises_and_names_its_segment() {
        let failing = archiver(400, "000000010000000000000011", Some(5));
        let signal = lag_signal(&failing, NOW, TIMEOUT).unwrap();
        assert!(signal.title.contains("failing"), "{}", signal.title);
        assert!(signal.title.contains("000000010000000000000011"));
        // A failure followed by a success is over.
        let recovered = archiver(5, "000000010000000000000011", Some(400));
        assert_eq!(lag_signal(&recovered, NOW, TIMEOUT), None);
    }
}
