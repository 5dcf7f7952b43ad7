//! `/admin`: the recovery posture. For each store, whether it could be recovered within
//! its objectives if it were lost now (and if not, why not), what a loss now would cost,
//! and the figures behind both; then the rest of the system an on-call person checks
//! first (alerts, dead letters, crons, migrations, freezes, incidents), each linking to
//! its page.
//!
//! The overview sits above the features and the drills (layer 6): it reads their public
//! figures and decides nothing they do not already measure.
//!
//! - DTOs here: [`Posture`], [`StorePosture`], [`Shortfall`], [`SystemFigures`].
//! - `api` — its server function; `page` — the page, served as plain HTML with the live
//!   refresh; `ssr` (server only) — the figures and the verdict.

pub mod api;
pub mod page;
#[cfg(feature = "ssr")]
pub mod ssr;

use serde::{Deserialize, Serialize};

use crate::format::format_duration;
use crate::health::StoresSnapshot;
use crate::stores::StoreKind;

pub use page::OverviewPage;

/// Everything `/admin` shows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Posture {
    pub now_ms: i64,
    /// The stores' probes, as `/health/*` answers them.
    pub stores: StoresSnapshot,
    /// One per store, PostgreSQL first.
    pub recovery: Vec<StorePosture>,
    pub system: SystemFigures,
}

/// Whether one store could be recovered within its objectives now, and the figures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StorePosture {
    pub store: StoreKind,
    pub rpo_target_secs: i64,
    pub rto_target_secs: i64,
    /// The newest verified backup: its id and when it finished.
    pub newest_verified: Option<(i64, i64)>,
    /// The newest backup failed (its id): backups are failing.
    pub newest_failed: Option<i64>,
    /// PostgreSQL's point-in-time window, when pgBackRest is set up.
    pub window: Option<ArchiveWindow>,
    /// The newest drill that restored this store.
    pub last_drill: Option<DrillFigure>,
    /// When the next functional drill is due.
    pub drill_due_ms: Option<i64>,
    /// Rows queued in PostgreSQL for ClickHouse (ClickHouse's row only), and the oldest.
    pub queued_rows: i64,
    pub oldest_queued_ms: Option<i64>,
    /// What a loss now would cost: the newest recoverable point's age (`None`: there is
    /// no recoverable point).
    pub exposure_ms: Option<i64>,
    /// The recoverable point is the WAL archive's, not a backup's.
    pub exposure_from_archive: bool,
    /// PostgreSQL: rows in the fallback queue that arrived after the newest recoverable
    /// point (they are in no backup and not yet in ClickHouse: lost with the server).
    pub rows_only_in_queue: Option<i64>,
    /// Empty: recoverable within the objectives.
    pub shortfalls: Vec<Shortfall>,
}

/// PostgreSQL's point-in-time window, read from pgBackRest's repository.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchiveWindow {
    pub oldest_ms: Option<i64>,
    pub newest_ms: Option<i64>,
    /// Seconds since the last segment was archived.
    pub lag_secs: Option<i64>,
    /// The archive command's last attempt failed.
    pub failing: bool,
    /// Why the window could not be read (pgBackRest's error), when it could not.
    pub error: Option<String>,
}

/// A drill's figures for one store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DrillFigure {
    pub drill_id: i64,
    pub started_ms: i64,
    /// This store restored, verified and answered its queries.
    pub passed: bool,
    /// Its measured recovery time.
    pub recovery_ms: i64,
}

/// A reason a store could not be recovered within its objectives now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
pub enum Shortfall {
    /// Neither a verified backup nor a point-in-time window to restore from.
    NoRecoverablePoint,
    /// The newest recoverable point is older than the RPO allows.
    BeyondRpo { exposure_ms: i64 },
    /// The newest backup failed.
    BackupsFailing { backup_id: i64 },
    /// WAL is waiting and not archived for over three archive timeouts (`failing`: the
    /// archive command fails).
    ArchiveLagging { lag_ms: i64, failing: bool },
    /// No drill has ever restored this store.
    NeverDrilled,
    /// The newest drill of this store failed.
    DrillFailed { drill_id: i64 },
    /// The newest passing drill took longer than the RTO.
    DrillOverRto { drill_id: i64, recovery_ms: i64 },
    /// The functional drill was due and has not been run.
    DrillOverdue { due_ms: i64 },
}

impl Shortfall {
    /// The reason in a sentence, against the store's objectives.
    pub fn sentence(&self, posture: &StorePosture, now_ms: i64) -> String {
        let rpo = format_duration(posture.rpo_target_secs * 1000);
        let rto = format_duration(posture.rto_target_secs * 1000);
        match self {
            Shortfall::NoRecoverablePoint => {
                "No verified backup and no point-in-time window: nothing to restore from.".into()
            }
            Shortfall::BeyondRpo { exposure_ms } => format!(
                "The newest recoverable point is {} old; the RPO is {rpo}.",
                format_duration(*exposure_ms)
            ),
            Shortfall::BackupsFailing { backup_id } => {
                format!("Backups are failing: backup {backup_id}, the newest, failed.")
            }
            Shortfall::ArchiveLagging { lag_ms, failing } => {
                if *failing {
                    format!(
                        "WAL archiving is failing: nothing archived for {}.",
                        format_duration(*lag_ms)
                    )
                } else {
                    format!(
                        "The point-in-time archive lags: WAL written and not archived for {}.",
                        format_duration(*lag_ms)
                    )
                }
            }
            Shortfall::NeverDrilled => {
                "No drill has restored it yet: its recovery time is unproven.".into()
            }
            Shortfall::DrillFailed { drill_id } => {
                format!("The last drill (drill {drill_id}) failed to restore it.")
            }
            Shortfall::DrillOverRto {
                drill_id,
                recovery_ms,
            } => format!(
                "Drill {drill_id} took {} to recover it; the RTO is {rto}.",
                format_duration(*recovery_ms)
            ),
            Shortfall::DrillOverdue { due_ms } => format!(
                "The functional drill is overdue by {}.",
                format_duration((now_ms - due_ms).max(0))
            ),
        }
    }
}

/// The rest of the system, each figure with the page it links to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SystemFigures {
    /// Open alerts nobody has taken, by severity; then those acknowledged or silenced.
    pub critical: i64,
    pub warning: i64,
    pub info: i64,
    pub taken: i64,
    pub dead_letters: i64,
    pub paused_endpoints: i64,
    /// The cron jobs flagged (missed, late, failing), by name.
    pub flagged_crons: Vec<String>,
    pub migrations_stuck: i64,
    pub migrations_failed: i64,
    pub freezes: Vec<crate::freeze::Freeze>,
    /// Incidents not resolved: id, title, began (newest first).
    pub open_incidents: Vec<(i64, String, i64)>,
}
