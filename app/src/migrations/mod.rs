//! Background migrations and safe upgrades: `/admin/migrations`.
//!
//! - DTOs here, shared with the page: [`MigrationStatus`], [`BackgroundMigrationRow`],
//!   [`SchemaStatus`], [`Upgrade`], [`MigrationsOverview`], [`MigrationAction`].
//! - `api`: the page's server functions (read: everyone signed in; pause, resume,
//!   retry, cancel: operators and admins, with a reason).
//! - `page`: the page.
//! - `ssr` (server only): the `run-background-migrations` job, the controls, the
//!   `migration_stuck` alert, the schema's state, the pre-upgrade backup and the
//!   rollback to it, and the smoke checks of `salvage check`.

pub mod api;
pub mod page;
#[cfg(feature = "ssr")]
pub mod ssr;

use serde::{Deserialize, Serialize};

/// The background migrations this version registers, for the page's controls (the
/// registry is server-only; a unit test keeps the two equal).
pub const NAMES: &[&str] = &["webhook_event_payload_bytes"];

crate::stored::stored_enum! {
    /// Where a background migration is.
    pub enum MigrationStatus {
        /// Not started, or waiting for the next tick (resumed, retried).
        Pending = "pending",
        /// A worker holds it; its heartbeat says whether that worker is alive.
        Running = "running",
        /// A person paused it; Resume puts it back in line.
        Paused = "paused",
        /// Every chunk is done.
        Succeeded = "succeeded",
        /// A chunk failed; the error is kept and Retry resumes from the cursor.
        Failed = "failed",
        /// A person stopped it for good (chunks done stay done); Retry resumes it.
        Cancelled = "cancelled",
    }
}

impl MigrationStatus {
    /// The badge's class.
    pub fn badge(self) -> &'static str {
        match self {
            MigrationStatus::Pending | MigrationStatus::Paused => "badge",
            MigrationStatus::Running => "badge badge-info",
            MigrationStatus::Succeeded => "badge badge-ok",
            MigrationStatus::Failed => "badge badge-error",
            MigrationStatus::Cancelled => "badge badge-warn",
        }
    }
}

crate::stored::stored_enum! {
    /// What a person can do to a background migration.
    pub enum MigrationAction {
        /// Pending or running → paused (the worker stops after its chunk).
        Pause = "pause",
        /// Paused → pending.
        Resume = "resume",
        /// Failed or cancelled → pending, from the saved cursor.
        Retry = "retry",
        /// Pending, running, paused or failed → cancelled.
        Cancel = "cancel",
    }
}

impl MigrationAction {
    /// The button's word.
    pub fn label(self) -> &'static str {
        match self {
            MigrationAction::Pause => "Pause",
            MigrationAction::Resume => "Resume",
            MigrationAction::Retry => "Retry",
            MigrationAction::Cancel => "Cancel",
        }
    }

    /// The statuses it applies to.
    pub fn applies_to(self, status: MigrationStatus) -> bool {
        use MigrationStatus::*;
        match self {
            MigrationAction::Pause => matches!(status, Pending | Running),
            MigrationAction::Resume => status == Paused,
            MigrationAction::Retry => matches!(status, Failed | Cancelled),
            MigrationAction::Cancel => matches!(status, Pending | Running | Paused | Failed),
        }
    }

    /// The status it leads to.
    pub fn leads_to(self) -> MigrationStatus {
        match self {
            MigrationAction::Pause => MigrationStatus::Paused,
            MigrationAction::Resume | MigrationAction::Retry => MigrationStatus::Pending,
            MigrationAction::Cancel => MigrationStatus::Cancelled,
        }
    }
}

/// One background migration as the page shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackgroundMigrationRow {
    pub name: String,
    /// Empty when this binary does not know it (a newer version registered it).
    pub description: String,
    pub known: bool,
    pub status: MigrationStatus,
    pub progress_current: i64,
    pub progress_total: Option<i64>,
    pub cursor: Option<i64>,
    /// Its first start, each take-over of a dead worker's turn, each retry (a turn that
    /// ended on its time budget, or a resume after a pause, is not a new attempt).
    pub attempts: i32,
    pub last_error: Option<String>,
    pub created_at_ms: i64,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
    pub last_heartbeat_ms: Option<i64>,
    /// Seconds since the last heartbeat of the run working it.
    pub heartbeat_age_s: Option<i64>,
    /// Running, but its run has ended or gone quiet past the runner's abandoned rule:
    /// its worker died.
    pub stuck: bool,
    /// Rows per second in the current (or last) run.
    pub rate: Option<f64>,
    /// Seconds left at that rate.
    pub eta_s: Option<i64>,
    pub paused_by: Option<String>,
    pub paused_reason: Option<String>,
    pub changed_by: Option<String>,
    pub change_reason: Option<String>,
}

/// One schema migration: applied, expected by this binary, or both.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaMigration {
    pub version: i64,
    pub description: String,
    pub applied_at_ms: Option<i64>,
    /// This binary has it.
    pub expected: bool,
    /// Applied, but its file changed since (the checksums differ).
    pub checksum_differs: bool,
}

/// The schema migrations applied against what this binary expects. `/health/deep`
/// reports `{applied, expected, ok}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaStatus {
    /// The newest version applied (0: none).
    pub applied: i64,
    /// The newest version this binary has.
    pub expected: i64,
    pub ok: bool,
    /// What differs, in a sentence, when not ok.
    pub problem: Option<String>,
    pub migrations: Vec<SchemaMigration>,
}

/// One run of the schema migrations that applied something.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upgrade {
    pub id: i64,
    pub from_version: Option<i64>,
    pub to_version: i64,
    pub applied: Vec<i64>,
    /// The pre-upgrade backup of `to_version`.
    pub backup_id: Option<i64>,
    /// Why no backup was taken.
    pub backup_skipped: Option<String>,
    pub actor: String,
    pub binary_version: String,
    pub started_at_ms: i64,
    pub finished_at_ms: i64,
}

/// Everything `/admin/migrations` shows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MigrationsOverview {
    pub migrations: Vec<BackgroundMigrationRow>,
    pub schema: SchemaStatus,
    pub upgrades: Vec<Upgrade>,
    /// A running migration whose run's heartbeat is older than this is stuck (the
    /// runner's abandoned rule).
    pub stuck_after_s: i64,
    pub now_ms: i64,
}
