//! The recovery posture on the server: each store's figures from the features that
//! measure them (backups, the point-in-time archive, drills, queues), the verdict from
//! those figures ([`verdict`], pure), and the rest of the system's figures.

use time::OffsetDateTime;

use super::{ArchiveWindow, DrillFigure, Posture, Shortfall, StorePosture, SystemFigures};
use crate::backups::ssr::catalogue;
use crate::backups::ssr::pitr::{self, alerts::Archiver};
use crate::drills::{DrillKind, DrillStatus};
use crate::error::AppError;
use crate::server::{unix_ms, AppState};
use crate::stores::StoreKind;

/// The drills read to find each store's newest one.
const DRILLS_READ: i64 = 50;

/// The open incidents listed.
const INCIDENTS_SHOWN: i64 = 5;

/// Everything `/admin` shows, at the clock's now.
pub async fn posture(state: &AppState) -> Result<Posture, AppError> {
    let now = state.clock.now();
    let stores = crate::health::ssr::snapshot(state).await;
    let pg_err = AppError::wrap("Read the recovery posture");
    let drills = crate::drills::ssr::records::list(&state.pg, DRILLS_READ)
        .await
        .map_err(&pg_err)?;
    let mut recovery = Vec::new();
    for store in StoreKind::ALL {
        // The cadence's points carry the store's objectives: read once.
        let points = crate::drills::ssr::cadence::points(state, store)
            .await
            .map_err(&pg_err)?;
        let (set, due) = (points.objectives, points.functional_due());
        let newest_verified = catalogue::latest_verified(&state.pg, store)
            .await
            .map_err(&pg_err)?
            .and_then(|s| s.backup.finished_ms.map(|at| (s.backup.id, at)));
        let newest_failed = catalogue::newest_failed(&state.pg, store)
            .await
            .map_err(&pg_err)?;
        let last_drill = drills.iter().find_map(|drill| {
            let counted = drill.kind == DrillKind::Functional
                && matches!(drill.status, DrillStatus::Passed | DrillStatus::Failed);
            let of_store = drill.stores.iter().find(|s| s.store == store)?;
            counted.then_some(DrillFigure {
                drill_id: drill.id,
                started_ms: drill.started_ms,
                passed: of_store.ok,
                recovery_ms: of_store.recovery_ms,
            })
        });
        let mut posture = StorePosture {
            store,
            rpo_target_secs: set.rpo.as_secs() as i64,
            rto_target_secs: set.rto.as_secs() as i64,
            newest_verified,
            newest_failed,
            window: None,
            last_drill,
            drill_due_ms: Some(unix_ms(due)),
            queued_rows: 0,
            oldest_queued_ms: None,
            exposure_ms: newest_verified.map(|(_, at)| (unix_ms(now) - at).max(0)),
            exposure_from_archive: false,
            rows_only_in_queue: None,
            shortfalls: Vec::new(),
        };
        let mut archive = None;
        match store {
            StoreKind::Postgres => {
                if let Some(settings) = &state.backups().pitr {
                    archive = read_archive(state, settings, now, &mut posture).await?;
                }
                let point = posture
                    .exposure_ms
                    .map(|ms| now - time::Duration::milliseconds(ms));
                if let Some(point) = point {
                    posture.rows_only_in_queue = Some(
                        crate::queues::ssr::stats::queued_since(&state.pg, point)
                            .await
                            .map_err(&pg_err)?,
                    );
                }
            }
            StoreKind::Clickhouse => {
                let depths = crate::queues::ssr::stats::queue_depths(&state.pg)
                    .await
                    .map_err(&pg_err)?;
                posture.queued_rows = depths.iter().map(|(_, d)| d).sum();
                let mut oldest: Option<OffsetDateTime> = None;
                for (queue, _) in depths {
                    let at = crate::queues::ssr::stats::oldest_queued_at(&state.pg, queue)
                        .await
                        .map_err(&pg_err)?;
                    oldest = match (oldest, at) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                }
                posture.oldest_queued_ms = oldest.map(unix_ms);
            }
        }
        posture.shortfalls = verdict(&posture, archive, unix_ms(now));
        recovery.push(posture);
    }
    Ok(Posture {
        now_ms: unix_ms(now),
        stores,
        recovery,
        system: system(state, now).await?,
    })
}

/// PostgreSQL's point-in-time window into `posture` (and, when the archive works, its
/// exposure as the recovery point); the archive's shortfall, if it lags or fails.
async fn read_archive(
    state: &AppState,
    settings: &pitr::PitrSettings,
    now: OffsetDateTime,
    posture: &mut StorePosture,
) -> Result<Option<Shortfall>, AppError> {
    let archiver = Archiver::read(&state.pg)
        .await
        .map_err(AppError::wrap("Read the WAL archiver"))?;
    let window = pitr::window(settings, &state.pg, now).await;
    let (oldest_ms, newest_ms, error) = match &window {
        Ok(w) => (w.oldest_ms, w.newest_ms, None),
        Err(e) => (None, None, Some(e.to_string())),
    };
    posture.window = Some(ArchiveWindow {
        oldest_ms,
        newest_ms,
        lag_secs: archiver
            .last_archived
            .map(|at| (now - at).whole_seconds().max(0)),
        failing: archiver.failing(),
        error,
    });
    if let Some(exposure) = pitr::alerts::archive_exposure_ms(oldest_ms, &archiver, now) {
        if posture.exposure_ms.is_none_or(|dump| exposure < dump) {
            posture.exposure_ms = Some(exposure);
            posture.exposure_from_archive = true;
        }
    }
    Ok(archive_shortfall(&archiver, now, settings.archive_timeout))
}

/// The point-in-time archive's shortfall at `now`: when `wal_archive_lag` would be
/// raised (WAL waiting, or the command failing, for over three archive timeouts).
pub fn archive_shortfall(
    archiver: &Archiver,
    now: OffsetDateTime,
    archive_timeout: std::time::Duration,
) -> Option<Shortfall> {
    pitr::alerts::lag_signal(archiver, now, archive_timeout).map(|_| Shortfall::ArchiveLagging {
        lag_ms: archiver.exposure(now).whole_milliseconds() as i64,
        failing: archiver.failing(),
    })
}

/// Why `posture`'s store could not be recovered within its objectives at `now_ms`
/// (empty: it could). `archive` is the point-in-time archive's own shortfall.
pub fn verdict(posture: &StorePosture, archive: Option<Shortfall>, now_ms: i64) -> Vec<Shortfall> {
    let mut out = Vec::new();
    match posture.exposure_ms {
        None => out.push(Shortfall::NoRecoverablePoint),
        Some(ms) if ms > posture.rpo_target_secs * 1000 => {
            out.push(Shortfall::BeyondRpo { exposure_ms: ms })
        }
        Some(_) => {}
    }
    out.extend(archive);
    if let Some(backup_id) = posture.newest_failed {
        out.push(Shortfall::BackupsFailing { backup_id });
    }
    match &posture.last_drill {
        None => out.push(Shortfall::NeverDrilled),
        Some(drill) if !drill.passed => out.push(Shortfall::DrillFailed {
            drill_id: drill.drill_id,
        }),
        Some(drill) if drill.recovery_ms > posture.rto_target_secs * 1000 => {
            out.push(Shortfall::DrillOverRto {
                drill_id: drill.drill_id,
                recovery_ms: drill.recovery_ms,
            })
        }
        Some(_) => {}
    }
    if let (Some(_), Some(due_ms)) = (&posture.last_drill, posture.drill_due_ms) {
        if due_ms < now_ms {
            out.push(Shortfall::DrillOverdue { due_ms });
        }
    }
    out
}

/// The rest of the system's figures at `now`.
async fn system(state: &AppState, now: OffsetDateTime) -> Result<SystemFigures, AppError> {
    let pg_err = AppError::wrap("Read the system's figures");
    let alerts = crate::alerts::ssr::query::counts(&state.pg, now)
        .await
        .map_err(&pg_err)?;
    let webhooks = crate::dead_letters::ssr::dlq::health(&state.pg, now)
        .await
        .map_err(&pg_err)?;
    let flagged_crons = crate::crons::ssr::status::flagged(state, now)
        .await
        .map_err(&pg_err)?;
    let (_, migrations_stuck, migrations_failed) =
        crate::migrations::ssr::store::running_stuck_failed(state)
            .await
            .map_err(&pg_err)?;
    let open_incidents = crate::history::ssr::open_incidents(&state.pg, INCIDENTS_SHOWN)
        .await
        .map_err(&pg_err)?;
    Ok(SystemFigures {
        critical: alerts.critical,
        warning: alerts.warning,
        info: alerts.info,
        taken: alerts.acknowledged + alerts.silenced,
        dead_letters: webhooks["dlq_count"].as_i64().unwrap_or_default(),
        paused_endpoints: webhooks["paused"].as_i64().unwrap_or_default(),
        flagged_crons,
        migrations_stuck,
        migrations_failed,
        freezes: alerts.freezes,
        open_incidents,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR_MS: i64 = 3_600_000;
    const NOW: i64 = 1_000 * HOUR_MS;

    /// A store recoverable within a 24 h RPO and a 1 h RTO.
    fn healthy() -> StorePosture {
        StorePosture {
            store: StoreKind::Clickhouse,
            rpo_target_secs: 24 * 3600,
            rto_target_secs: 3600,
            newest_verified: Some((7, NOW - 2 * HOUR_MS)),
            newest_failed: None,
            window: None,
            last_drill: Some(DrillFigure {
                drill_id: 3,
                started_ms: NOW - 48 * HOUR_MS,
                passed: true,
                recovery_ms: 90_000,
            }),
            drill_due_ms: Some(NOW + 24 * HOUR_MS),
            queued_rows: 0,
            oldest_queued_ms: None,
            exposure_ms: Some(2 * HOUR_MS),
            exposure_from_archive: false,
            rows_only_in_queue: None,
            shortfalls: Vec::new(),
        }
    }

    #[test]
    fn a_fresh_verified_backup_and_a_passing_drill_within_the_rto_leave_nothing_short() {
        assert_eq!(verdict(&healthy(), None, NOW), vec![]);
    }

    #[test]
    fn no_recoverable_point_is_the_first_reason() {
        let posture = StorePosture {
            newest_verified: None,
            exposure_ms: None,
            ..healthy()
        };
        assert_eq!(
            verdict(&posture, None, NOW),
            vec![Shortfall::NoRecoverablePoint]
        );
    }

    #[test]
    fn a_recovery_point_older_than_the_rpo_is_short_and_one_just_within_is_not() {
        let at = |ms| StorePosture {
            exposure_ms: Some(ms),
            ..healthy()
        };
        assert_eq!(verdict(&at(24 * HOUR_MS), None, NOW), vec![]);
        assert_eq!(
            verdict(&at(24 * HOUR_MS + 1), None, NOW),
            vec![Shortfall::BeyondRpo {
                exposure_ms: 24 * HOUR_MS + 1
            }]
        );
    }

    #[test]
    fn a_lagging_archive_and_failing_backups_are_named() {
        let posture = StorePosture {
            newest_failed: Some(9),
            ..healthy()
        };
        let lagging = Shortfall::ArchiveLagging {
            lag_ms: 200_000,
            failing: false,
        };
        assert_eq!(
            verdict(&posture, Some(lagging.clone()), NOW),
            vec![lagging, Shortfall::BackupsFailing { backup_id: 9 }]
        );
    }

    #[test]
    fn the_drill_counts_failed_over_the_rto_and_overdue_and_a_store_never_drilled() {
        let drill = |passed, recovery_ms| StorePosture {
            last_drill: Some(DrillFigure {
                drill_id: 4,
                started_ms: NOW - HOUR_MS,
                passed,
                recovery_ms,
            }),
            ..healthy()
        };
        assert_eq!(
            verdict(&drill(false, 1_000), None, NOW),
            vec![Shortfall::DrillFailed { drill_id: 4 }]
        );
        assert_eq!(verdict(&drill(true, 3_600_000), None, NOW), vec![]);
        assert_eq!(
            verdict(&drill(true, 3_600_001), None, NOW),
            vec![Shortfall::DrillOverRto {
                drill_id: 4,
                recovery_ms: 3_600_001
            }]
        );
        let overdue = StorePosture {
            drill_due_ms: Some(NOW - 1),
            ..healthy()
        };
        assert_eq!(
            verdict(&overdue, None, NOW),
            vec![Shortfall::DrillOverdue { due_ms: NOW - 1 }]
        );
        let never = StorePosture {
            last_drill: None,
            drill_due_ms: Some(NOW - 1),
            ..healthy()
        };
        assert_eq!(verdict(&never, None, NOW), vec![Shortfall::NeverDrilled]);
    }
}
