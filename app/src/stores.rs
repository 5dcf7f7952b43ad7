//! The stores Salvage guards, as every layer names them: in a freeze, a backup, a drill,
//! and the error that says which one did not answer. Infrastructure: it knows no feature.

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
