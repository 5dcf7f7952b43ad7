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

/// What the console shows about PostgreSQL beyond "it answers". Each field is `None`
/// when its lookup failed or the store is down: unknown, never zero.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PostgresDetails {
    /// `server_version`, e.g. `15.18 (Debian 15.18-0+deb12u1)`.
    pub version: Option<String>,
    /// The database Salvage uses.
    pub database: Option<String>,
    /// `pg_database_size` of that database, in bytes.
    pub size_bytes: Option<i64>,
    /// Connections this Salvage process holds open, and how many of them are idle.
    pub pool_open: u32,
    pub pool_idle: u32,
    pub pool_max: u32,
}

/// What the console shows about ClickHouse beyond "it answers".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClickHouseDetails {
    /// `version()`, e.g. `18.16.1`.
    pub version: Option<String>,
    /// The database holding `requests` and `events`.
    pub database: String,
    /// Rows stored in `requests` (active parts; a re-inserted id counts until merged).
    pub requests_rows: Option<u64>,
    /// Rows stored in `events`, counted the same way.
    pub events_rows: Option<u64>,
}

/// The overview's full picture: the probes plus each store's details.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoresSnapshot {
    pub health: StoresHealth,
    pub postgres: PostgresDetails,
    pub clickhouse: ClickHouseDetails,
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
