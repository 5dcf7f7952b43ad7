//! The server side of the safe write path. See the module docs of [`crate::queues`].

pub mod alerts;
pub mod expiry;
pub mod ingest;
pub mod replay;
pub mod rows;
pub mod stats;

use std::time::Duration;

/// How the queues behave; from the settings (`SALVAGE_FALLBACK_TTL_HOURS`,
/// `SALVAGE_REPLAY_BATCH`, `SALVAGE_REPLAY_BUDGET_SECS`, `SALVAGE_INGEST_TIMEOUT_MS`).
#[derive(Clone, Debug)]
pub struct QueueSettings {
    /// Queued rows older than this are deleted by expiry. Default 7 days.
    pub ttl: Duration,
    /// Rows claimed per replay batch. Default [`replay::DEFAULT_BATCH`] (20,000).
    pub replay_batch: i64,
    /// A replay run stops after this long and reports what is left. Default 4 min, so a
    /// run started every 5 minutes ends before the next.
    pub replay_budget: Duration,
    /// How long ingest waits for ClickHouse before parking the rows in PostgreSQL.
    pub ingest_timeout: Duration,
    /// Batches a replay keeps in flight at once.
    pub replay_parallel: usize,
    /// Rows one ingest key may have waiting in the fallback queues (both together); a
    /// batch that would pass it is refused with 429. Default 1,000,000.
    pub per_key_quota: i64,
    /// Rows both fallback queues may hold together; a batch that would pass it is
    /// refused with 507. Default 10,000,000.
    pub total_cap: i64,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(7 * 24 * 3600),
            replay_batch: replay::DEFAULT_BATCH,
            replay_budget: Duration::from_secs(240),
            ingest_timeout: Duration::from_secs(5),
            replay_parallel: replay::DEFAULT_PARALLEL,
            per_key_quota: 1_000_000,
            total_cap: 10_000_000,
        }
    }
}

impl crate::server::AppState {
    /// This process's queue settings (the state's part for the queues).
    pub fn queues(&self) -> &QueueSettings {
        self.part()
    }
}
