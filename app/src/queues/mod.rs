//! The safe write path: ingest, the PostgreSQL fallback queues, exactly-once replay,
//! expiry, and `/admin/queues`.
//!
//! - DTOs here: [`Queue`], [`QueueStats`], [`ReplayRun`], [`QueuesOverview`].
//! - `api` — the server functions of the queues page and of ingest-key settings.
//! - `page` — `/admin/queues` and `/admin/settings/ingest-keys`.
//! - `ssr` (server only) — row validation (`rows`), the ingest handlers (`ingest`),
//!   replay (`replay`), expiry (`expiry`) and the figures the page
//!   and `/health/deep` read (`stats`).
//!
//! Replay and expiry are one function each; the button, the cron route and the CLI call
//! them with a different trigger.

pub mod api;
pub mod key_usage;
pub mod page;
#[cfg(feature = "ssr")]
pub mod ssr;

use serde::{Deserialize, Serialize};

use crate::jobs::{RunStatus, Trigger};

/// The replay job's name (its button posts it to the runner's start).
pub const REPLAY_JOB: &str = "replay-fallback";

crate::stored::stored_enum! {
    /// One of the two fallback queues, named after the ClickHouse table it feeds.
    pub enum Queue {
        Requests = "requests",
        Events = "events",
    }
}

impl Queue {
    /// The PostgreSQL table holding this queue.
    pub fn table(self) -> &'static str {
        match self {
            Queue::Requests => "requests_fallback",
            Queue::Events => "events_fallback",
        }
    }
}

/// The state of one queue, as `/admin/queues` shows it. Times are Unix ms (UTC).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QueueStats {
    pub queue: Queue,
    /// Exact number of queued rows (a counter kept by triggers, not a `count(*)`).
    pub depth: i64,
    /// When the oldest queued row arrived.
    pub oldest_queued_at: Option<i64>,
    /// Rows that expiry deletes within the next 24 h, counted up to [`EXPIRING_CAP`].
    pub expiring_24h: i64,
    /// The last error that sent rows here or kept them here, and when.
    pub last_error: Option<String>,
    pub last_error_at: Option<i64>,
}

/// `expiring_24h` stops counting here (the page then says "more than"), so the page
/// never scans a million rows.
pub const EXPIRING_CAP: i64 = 100_000;

/// One replay run (a run of the `replay-fallback` job), whichever door started it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReplayRun {
    /// The run's id: what the Replay button returned and what Cancel takes.
    pub id: i64,
    pub trigger: Trigger,
    pub actor: String,
    pub reason: Option<String>,
    /// `abandoned` for a run whose process stopped sending heartbeats.
    pub status: RunStatus,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub rows_at_start: i64,
    pub rows_done: i64,
    /// Known once the run has ended.
    pub rows_already_present: Option<i64>,
    pub rows_left: Option<i64>,
    pub error: Option<String>,
    pub cancel_requested: bool,
}

impl ReplayRun {
    /// Rows per second so far (or over the whole run once finished).
    pub fn rate(&self, now_ms: i64) -> f64 {
        let end = self.finished_at.unwrap_or(now_ms);
        let secs = ((end - self.started_at) as f64 / 1000.0).max(0.001);
        self.rows_done as f64 / secs
    }
}

/// A depth sample for the charts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DepthSample {
    pub at: i64,
    pub requests: i64,
    pub events: i64,
}

/// Everything `/admin/queues` shows, in one call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QueuesOverview {
    pub now: i64,
    pub ttl_hours: i64,
    pub queues: Vec<QueueStats>,
    pub samples: Vec<DepthSample>,
    pub runs: Vec<ReplayRun>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_uses_the_finish_time_once_finished() {
        let run = ReplayRun {
            id: 1,
            trigger: Trigger::Manual,
            actor: "a".into(),
            reason: None,
            status: RunStatus::Succeeded,
            started_at: 0,
            finished_at: Some(2000),
            rows_at_start: 10,
            rows_done: 10,
            rows_already_present: Some(0),
            rows_left: Some(0),
            error: None,
            cancel_requested: false,
        };
        assert_eq!(run.rate(1_000_000), 5.0);
    }
}
