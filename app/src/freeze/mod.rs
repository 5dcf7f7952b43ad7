//! The write freeze: while a store is being restored in place, the work that writes to it
//! waits. One mechanism with a scope (a restore today; an incident scope later), below the
//! features: ingest and replay (queues) check it, restores (backups) hold it, every page's
//! banner shows it.
//!
//! - DTOs here: [`StoreKind`] (a store Salvage guards), [`Freeze`] (an open freeze).
//! - `ssr` (server only) — opening, closing and checking a freeze.

#[cfg(feature = "ssr")]
pub mod ssr;

use serde::{Deserialize, Serialize};

/// A store Salvage guards (and backs up).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    Postgres,
    Clickhouse,
}

impl StoreKind {
    pub const ALL: [StoreKind; 2] = [StoreKind::Postgres, StoreKind::Clickhouse];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreKind::Postgres => "postgres",
            StoreKind::Clickhouse => "clickhouse",
        }
    }

    pub fn parse(value: &str) -> Option<StoreKind> {
        StoreKind::ALL.into_iter().find(|s| s.as_str() == value)
    }

    /// The product's name, for people.
    pub fn label(self) -> &'static str {
        match self {
            StoreKind::Postgres => "PostgreSQL",
            StoreKind::Clickhouse => "ClickHouse",
        }
    }
}

/// An open write freeze: replay, expiry and retention wait; ingest parks ClickHouse rows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Freeze {
    pub store: StoreKind,
    pub reason: String,
    pub started_by: String,
    pub started_ms: i64,
    pub restore_id: Option<i64>,
}
