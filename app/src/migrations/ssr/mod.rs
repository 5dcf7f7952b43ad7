//! Background migrations and safe upgrades on the server.
//!
//! - `runner`: the `run-background-migrations` job: one worker per migration across
//!   every replica (an advisory lock), chunks committed with their cursor, the run's
//!   heartbeat.
//! - `store`: the rows (made from the registry on start-up), the page's figures, and the
//!   controls (pause, resume, retry, cancel) with their history entries.
//! - `alerts`: `migration_stuck`.
//! - `schema`: the schema migrations applied against what this binary expects.
//! - `upgrade`: applying pending schema migrations behind a pre-upgrade backup, and
//!   `salvage migrate --rollback-to`.
//! - `check`: the smoke checks of `salvage check`.

pub mod alerts;
pub mod check;
pub mod runner;
pub mod schema;
pub mod store;
pub mod upgrade;

use std::time::Duration;

pub use runner::RUN_BACKGROUND_MIGRATIONS;

/// How background migrations run. `SALVAGE_MIGRATION_*`.
#[derive(Clone, Debug)]
pub struct MigrationSettings {
    /// Rows per chunk (`SALVAGE_MIGRATION_CHUNK_ROWS`, 1,000): one transaction each.
    pub chunk_rows: i64,
    /// A pause between chunks, to spare a busy database
    /// (`SALVAGE_MIGRATION_CHUNK_PAUSE_MS`, 0).
    pub chunk_pause: Duration,
    /// How long one scheduled run works before the next tick takes over.
    pub run_budget: Duration,
    /// Take a PostgreSQL backup before applying schema migrations
    /// (`SALVAGE_MIGRATE_BACKUP`, on).
    pub backup_before_upgrade: bool,
}

impl Default for MigrationSettings {
    fn default() -> Self {
        Self {
            chunk_rows: 1_000,
            chunk_pause: Duration::ZERO,
            run_budget: Duration::from_secs(50),
            backup_before_upgrade: true,
        }
    }
}

pub use crate::server::postgres::lock_class;

impl crate::server::AppState {
    /// How background migrations run (the state's part for the migrations).
    pub fn migrations(&self) -> &MigrationSettings {
        self.part()
    }
}
