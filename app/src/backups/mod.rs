//! Backups and restores of both stores: `/admin/backups`, the `backup` job, and the one
//! function drills reuse ("restore backup X into target Y and verify it").
//!
//! - DTOs here: [`BackupStatus`], [`Backup`], [`Restore`], [`BackupsOverview`],
//!   [`RestorePlan`] ([`StoreKind`] and [`Freeze`] live with the freeze, a layer below).
//! - `api` — the page's server functions; `page` — `/admin/backups`.
//! - `ssr` (server only) — the target (`storage`), the manifest and its signature
//!   (`signature`), the files' encryption at rest (`encryption`), the `Native` reader,
//!   each store's dump and load (`postgres`, `clickhouse`), the catalogue and its sync
//!   with the repository (`sync`), the job (`create`), verification, restores and the
//!   alert kinds.

pub mod api;
pub mod page;
pub mod pitr;
#[cfg(feature = "ssr")]
pub mod ssr;

use serde::{Deserialize, Serialize};

/// The backup job's name (its button posts it to the runner's start).
pub const BACKUP_JOB: &str = "backup";

/// The on-demand verification's job name (its input: the backup's id).
pub const VERIFY_JOB: &str = "verify-backup";

/// The restore job's name (on demand: its input is the restore's request).
pub const RESTORE_JOB: &str = "restore";

/// pgBackRest's base backup job (`/cron/pitr-backup`).
pub const PITR_BACKUP_JOB: &str = "pitr-backup";

/// The point-in-time restore into a side cluster (on demand: its input is the request).
pub const PITR_RESTORE_JOB: &str = "pitr-restore";

/// The janitor of side clusters left running (`/cron/pitr-side-janitor`).
pub const PITR_SIDE_JANITOR_JOB: &str = "pitr-side-janitor";

/// The catalogue rebuilt from the repository's manifests (`/cron/backup-sync`).
pub const BACKUP_SYNC_JOB: &str = "backup-sync";

pub use crate::freeze::{Freeze, StoreKind};

crate::stored::stored_enum! {
    /// Where a backup is in its life.
    pub enum BackupStatus {
        Running = "running",
        Completed = "completed",
        Failed = "failed",
        Verified = "verified",
        VerifyFailed = "verify_failed",
    }
}

impl BackupStatus {
    /// Its words on the page.
    pub fn label(self) -> &'static str {
        match self {
            BackupStatus::Running => "running",
            BackupStatus::Completed => "completed",
            BackupStatus::Failed => "failed",
            BackupStatus::Verified => "verified",
            BackupStatus::VerifyFailed => "verify failed",
        }
    }

    /// Whether its files are complete (it may be restored).
    pub fn is_complete(self) -> bool {
        matches!(
            self,
            BackupStatus::Completed | BackupStatus::Verified | BackupStatus::VerifyFailed
        )
    }
}

crate::stored::stored_enum! {
    /// Where a restore is in its life.
    pub enum RestoreStatus {
        Running = "running",
        Verified = "verified",
        VerifyFailed = "verify_failed",
        Failed = "failed",
        Cancelled = "cancelled",
        RolledBack = "rolled_back",
    }
}

impl RestoreStatus {
    pub fn label(self) -> &'static str {
        match self {
            RestoreStatus::VerifyFailed => "verify failed",
            RestoreStatus::RolledBack => "rolled back",
            other => other.as_str(),
        }
    }
}

crate::stored::stored_enum! {
    /// Where a restore writes.
    pub enum RestoreMode {
        /// A new database beside the live one (`salvage_restore_<id>` or a given name).
        Side = "side",
        /// The live database, application tables only, the live tables kept aside.
        InPlace = "in_place",
    }
}

/// One backup of one store, as the catalogue lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Backup {
    pub id: i64,
    pub store: StoreKind,
    pub status: BackupStatus,
    pub trigger: String,
    pub actor: String,
    pub reason: Option<String>,
    pub started_ms: i64,
    pub finished_ms: Option<i64>,
    pub duration_ms: Option<i64>,
    pub size_bytes: i64,
    pub rows: i64,
    pub tables: i32,
    /// Rows queued for ClickHouse when it was taken (not in a ClickHouse backup yet).
    pub queued_rows: Option<i64>,
    pub error: Option<String>,
    pub verified_ms: Option<i64>,
    pub verified_by: Option<String>,
    pub verify_error: Option<String>,
    /// Its files were deleted by retention (the row stays for the record).
    pub deleted: bool,
}

/// One restore.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Restore {
    pub id: i64,
    pub backup_id: i64,
    pub store: StoreKind,
    pub mode: RestoreMode,
    pub target: String,
    pub tables: Vec<String>,
    pub status: RestoreStatus,
    pub actor: String,
    pub reason: Option<String>,
    pub started_ms: i64,
    pub finished_ms: Option<i64>,
    pub duration_ms: Option<i64>,
    pub rows: i64,
    pub error: Option<String>,
    /// An in-place restore whose live tables are still kept aside: it can be rolled back.
    pub can_roll_back: bool,
    /// Bytes of backup files read so far, of `total_bytes` (its run's progress).
    pub progress_bytes: i64,
    pub total_bytes: i64,
    /// The run it is part of (the restore job's, or a drill's): what Cancel takes.
    pub run_id: Option<i64>,
}

/// One store's recovery point at a glance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoreSummary {
    pub store: StoreKind,
    /// When the newest complete backup finished.
    pub latest_ms: Option<i64>,
    /// The recovery point objective, hours.
    pub rpo_hours: i64,
    /// Its backup schedule, in words ("hourly at :00"), when the next time comes, and
    /// how many complete backups are kept.
    pub schedule: String,
    pub next_ms: Option<i64>,
    pub keep: i64,
    /// The schedule's longest gap is over the objective: between two backups, the
    /// newest is older than the RPO allows.
    pub gap_over_rpo: bool,
    /// Completed backups of the last 30 days, oldest first: (started, bytes, duration ms).
    pub sizes: Vec<(i64, i64, i64)>,
}

/// Everything `/admin/backups` shows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackupsOverview {
    pub now_ms: i64,
    pub stores: Vec<StoreSummary>,
    /// Newest first.
    pub backups: Vec<Backup>,
    pub restores: Vec<Restore>,
    /// The backup target, described ("/var/backups/salvage").
    pub target: String,
    /// The run of the `backup` job in progress, if any.
    pub running_run: Option<i64>,
    /// When the catalogue was last synced with the repository (`backup-sync`).
    pub last_synced_ms: Option<i64>,
}

/// One table of a backup, as the restore form offers it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanTable {
    pub name: String,
    pub rows: i64,
    /// One of Salvage's own tables: never restored in place.
    pub own: bool,
}

/// What restoring a backup would do, for the confirmation form.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RestorePlan {
    pub backup: Backup,
    pub tables: Vec<PlanTable>,
    /// The live database (what an in-place restore's confirmation must be typed as).
    pub live_database: String,
    /// The side database a restore creates unless told another name.
    pub side_database: String,
}
