//! Store health: is PostgreSQL answering, is ClickHouse answering, and how fast.
//!
//! The same probes serve `/health/ready`, `/health/deep` and the console's overview, so
//! the three can never disagree about what "healthy" means.

use serde::{Deserialize, Serialize};

#[cfg(feature = "ssr")]
pub mod ssr;

/// The outcome of probing one store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreCheck {
    /// The store answered a trivial query within the probe timeout.
    pub ok: bool,
    /// Round-trip time of the probe in milliseconds; `None` when the store did not
    /// answer, because a latency that was never measured is not zero.
    pub latency_ms: Option<f64>,
    /// Why the probe failed, in a sentence; `None` when it succeeded.
    pub error: Option<String>,
}

/// Both stores, probed at the same moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoresHealth {
    /// PostgreSQL: accounts, queues, history.
    pub postgres: StoreCheck,
    /// ClickHouse: `requests` and `events`.
    pub clickhouse: StoreCheck,
    /// When the probes ran, RFC 3339 in UTC.
    pub checked_at: String,
    /// The Salvage version that answered.
    pub version: String,
}

impl StoresHealth {
    /// True when every store answered.
    pub fn all_ok(&self) -> bool {
        self.postgres.ok && self.clickhouse.ok
    }

    /// The names of the stores that did not answer, for messages like "ClickHouse down".
    pub fn failing(&self) -> Vec<&'static str> {
        let mut failing = Vec::new();
        if !self.postgres.ok {
            failing.push("postgres");
        }
        if !self.clickhouse.ok {
            failing.push("clickhouse");
        }
        failing
    }
}
