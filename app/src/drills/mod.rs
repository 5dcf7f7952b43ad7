//! Restore drills: timed restores of the latest verified backups into throwaway
//! databases that prove the backups work and measure the recovery time (RTO), the
//! `restore-drill` job, and the janitor that drops what a drill left behind.
//!
//! Drills sit above the features they exercise: a drill restores through the backups'
//! one restore function and runs the queues' and the history's own queries on what it
//! restored (docs/ARCHITECTURE.md, "Restoring from another feature").
//!
//! - DTOs here: [`DrillKind`], [`DrillStatus`], [`DrillStep`], [`DrillStore`], [`Drill`].
//! - `api` — the page's server functions; `page` — `/admin/drills`.
//! - `ssr` (server only) — the drill (`run`), its records, the janitor, the alert kinds,
//!   the tabletop log and the page's figures.

pub mod api;
pub mod page;
#[cfg(feature = "ssr")]
pub mod ssr;

use serde::{Deserialize, Serialize};

/// The restore drill job's name (its button posts it to the runner's start).
pub const DRILL_JOB: &str = "restore-drill";

pub use crate::freeze::StoreKind;

crate::stored::stored_enum! {
    /// A functional drill (a real restore) or a tabletop exercise (people talking it through).
    pub enum DrillKind {
        Functional = "functional",
        Tabletop = "tabletop",
    }
}

crate::stored::stored_enum! {
    /// Where a drill is, or how it ended.
    pub enum DrillStatus {
        Running = "running",
        /// Every store restored, verified against its manifest and answered the queries.
        Passed = "passed",
        Failed = "failed",
        /// Stopped on request; what it made was still torn down.
        Cancelled = "cancelled",
    }
}

/// One timed step of a drill, in the order it ran.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DrillStep {
    /// The store it worked on (none for a step of the whole drill).
    pub store: Option<StoreKind>,
    /// `choose`, `fetch`, `restore`, `verify`, `queries`, `teardown`.
    pub name: String,
    pub ms: i64,
    pub ok: bool,
    /// What it found, or why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// One restored table against the backup's manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TableResult {
    pub name: String,
    pub expected_rows: i64,
    pub rows: i64,
    pub schema_matches: bool,
}

impl TableResult {
    pub fn ok(&self) -> bool {
        self.schema_matches && self.rows == self.expected_rows
    }
}

/// One of the console's own queries, run on the restored data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryResult {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

/// What a drill did with one store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DrillStore {
    pub store: StoreKind,
    pub backup_id: Option<i64>,
    /// How old the backup was when the drill began: the recovery point it proves.
    pub backup_age_ms: Option<i64>,
    pub restore_id: Option<i64>,
    /// The throwaway database.
    pub database: Option<String>,
    /// Fetch, restore and verify of this store: its measured recovery time.
    pub recovery_ms: i64,
    /// The recovery time objective it is measured against.
    pub rto_target_ms: i64,
    pub tables: Vec<TableResult>,
    pub queries: Vec<QueryResult>,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl DrillStore {
    /// Whether the measured recovery took longer than the objective.
    pub fn over_target(&self) -> bool {
        self.recovery_ms > self.rto_target_ms
    }
}

/// A drill as the pages and the CLI show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Drill {
    pub id: i64,
    pub kind: DrillKind,
    pub status: DrillStatus,
    pub run_id: Option<i64>,
    pub trigger: String,
    pub actor: String,
    pub reason: Option<String>,
    pub started_ms: i64,
    pub finished_ms: Option<i64>,
    /// The whole drill, teardown included.
    pub duration_ms: Option<i64>,
    pub steps: Vec<DrillStep>,
    pub stores: Vec<DrillStore>,
    pub error: Option<String>,
    pub history_id: Option<i64>,
    /// A tabletop exercise's record.
    pub tabletop: Option<Tabletop>,
    /// While it runs: steps done of the steps it expects.
    pub progress: Option<(i64, i64)>,
}

/// What a tabletop exercise talked through, who took part, and what came of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tabletop {
    pub scenario: String,
    pub participants: String,
    pub findings: String,
    pub follow_ups: String,
}

/// A store's recovery objectives beside what was measured.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Objective {
    pub store: StoreKind,
    pub rpo_target_secs: i64,
    pub rto_target_secs: i64,
    /// Days between functional drills, and between tabletop exercises.
    pub functional_days: i64,
    pub tabletop_days: i64,
    /// Set by an admin (else the defaults).
    pub set_by: Option<String>,
    /// The data a restore now would lose: the age of the newest verified backup, or,
    /// for PostgreSQL archiving its WAL, how far the archive is behind.
    pub rpo_measured_ms: Option<i64>,
    /// `rpo_measured_ms` is the WAL archive's lag, not a backup's age.
    #[serde(default)]
    pub rpo_from_archive: bool,
    /// Rows queued in PostgreSQL for ClickHouse: not in any ClickHouse backup yet.
    pub queued_rows: i64,
    /// The last passing drill's recovery time of this store.
    pub rto_measured_ms: Option<i64>,
    /// Its median over the passing drills of the last 90 days.
    pub rto_median_ms: Option<i64>,
}

impl Objective {
    pub fn rpo_exceeded(&self) -> bool {
        self.rpo_measured_ms
            .is_none_or(|ms| ms > self.rpo_target_secs * 1000)
    }
    pub fn rto_exceeded(&self) -> bool {
        self.rto_measured_ms
            .is_some_and(|ms| ms > self.rto_target_secs * 1000)
    }
}

/// When the next drill of a cadence is due.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Due {
    pub what: String,
    pub due_ms: i64,
    /// What it counts from ("the last passing drill", "installation", …).
    pub since: String,
}

/// Everything `/admin/drills` shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillsOverview {
    pub now_ms: i64,
    pub drills: Vec<Drill>,
    pub objectives: Vec<Objective>,
    pub due: Vec<Due>,
}

impl Drill {
    /// The measured recovery time: every store's fetch, restore and verify, one after
    /// the other as the drill ran them.
    pub fn recovery_ms(&self) -> i64 {
        self.stores.iter().map(|s| s.recovery_ms).sum()
    }
}
