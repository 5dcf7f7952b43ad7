//! Recovery from total loss: both stores brought back onto new, empty servers from the
//! repository and its keys alone (`salvage recover`), in dependency order, each step
//! timed, a run stopped at a failed step resumed from it.
//!
//! - DTOs here: [`Step`], [`StepReport`], [`TableCount`], [`RecoveryReport`] (what the
//!   CLI prints and the `recovery` history entry holds).
//! - `ssr` (server only) — the plan and its refusals (`plan`), the progress kept in the
//!   database being recovered (`progress`), PostgreSQL's step (`postgres`) and the
//!   sequence (`mod`).
//!
//! The one job engine cannot run this: its run records live in the database being
//! recovered. Once PostgreSQL is back, the steps that are jobs (the sync, the replay,
//! the fresh backup) run on the engine like every other run.

#[cfg(feature = "ssr")]
pub mod ssr;

use serde::{Deserialize, Serialize};

use crate::stores::StoreKind;

/// The steps of a recovery, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// PostgreSQL to the point: pgBackRest when its window holds it, else a logical dump.
    Postgres,
    /// The migrations this binary carries, and ClickHouse's tables.
    Migrations,
    /// The backup catalogue rebuilt from the repository.
    Sync,
    /// ClickHouse from the newest backup at or before the point.
    Clickhouse,
    /// The fallback queues replayed into ClickHouse.
    Replay,
    /// The history's hash chain walked and compared with its ClickHouse anchors.
    History,
    /// The post-recovery checks and a fresh backup of both stores.
    Checks,
}

impl Step {
    pub const ALL: [Step; 7] = [
        Step::Postgres,
        Step::Migrations,
        Step::Sync,
        Step::Clickhouse,
        Step::Replay,
        Step::History,
        Step::Checks,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Step::Postgres => "postgres",
            Step::Migrations => "migrations",
            Step::Sync => "sync",
            Step::Clickhouse => "clickhouse",
            Step::Replay => "replay",
            Step::History => "history",
            Step::Checks => "checks",
        }
    }

    pub fn parse(text: &str) -> Option<Step> {
        Step::ALL.into_iter().find(|step| step.as_str() == text)
    }

    /// Its place in the sequence, from 1.
    pub fn number(self) -> usize {
        Step::ALL.iter().position(|s| *s == self).unwrap_or(0) + 1
    }

    /// What it does, for a person.
    pub fn label(self) -> &'static str {
        match self {
            Step::Postgres => "PostgreSQL to the point",
            Step::Migrations => "migrations",
            Step::Sync => "backup catalogue synced",
            Step::Clickhouse => "ClickHouse from its backup",
            Step::Replay => "fallback queues replayed",
            Step::History => "history chain verified",
            Step::Checks => "checks and a fresh backup",
        }
    }
}

/// One step as it ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepReport {
    pub step: Step,
    pub ms: i64,
    /// Done by an earlier run of this recovery, not repeated.
    pub earlier: bool,
    pub summary: String,
}

/// One table brought back, against what its source says it held.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TableCount {
    pub store: StoreKind,
    pub name: String,
    pub expected: i64,
    pub rows: i64,
}

/// What a recovery did: the typed outcome the CLI prints and the history keeps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecoveryReport {
    /// `latest`, or the moment asked for (RFC 3339).
    pub asked: String,
    /// Where PostgreSQL came from: `point-in-time` or `dump <id>`.
    pub postgres_source: String,
    /// The last transaction PostgreSQL holds (point in time) or its dump's snapshot.
    pub reached_ms: Option<i64>,
    /// The ClickHouse backup restored, and when it was taken.
    pub clickhouse_backup: Option<i64>,
    pub clickhouse_at_ms: Option<i64>,
    /// When the loss happened, as the person recovering said (`--lost-at`).
    pub lost_at_ms: Option<i64>,
    /// The measured recovery point: the loss minus the point reached.
    pub rpo_secs: Option<i64>,
    /// The measured recovery time: from the first run's start to the end.
    pub rto_ms: i64,
    pub steps: Vec<StepReport>,
    pub tables: Vec<TableCount>,
    /// Rows replayed from the fallback queues into ClickHouse.
    pub replayed: i64,
    /// What a person must look at: a gap in the history's anchors, a failed check.
    pub findings: Vec<String>,
    /// The `recovery` history entry (0 inside the entry itself, written before its id).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub history_id: i64,
}

fn is_zero(id: &i64) -> bool {
    *id == 0
}
