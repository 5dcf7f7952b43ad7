//! The stores Salvage guards, as every layer names them: in a freeze, a backup, a drill,
//! and the error that says which one did not answer. Infrastructure: it knows no feature.

crate::stored::stored_enum! {
    /// A store Salvage guards (and backs up).
    pub enum StoreKind {
        Postgres = "postgres",
        Clickhouse = "clickhouse",
    }
}

impl StoreKind {
    /// The product's name, for people.
    pub fn label(self) -> &'static str {
        match self {
            StoreKind::Postgres => "PostgreSQL",
            StoreKind::Clickhouse => "ClickHouse",
        }
    }
}

/// What a store said when a call to it failed (it did not answer, or refused), kept with
/// which store it was. Reads `PostgreSQL: …` or `ClickHouse: …`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", store.label())]
pub struct StoreError {
    pub store: StoreKind,
    pub message: String,
}

impl StoreError {
    /// A failed call to PostgreSQL.
    pub fn postgres(error: impl std::fmt::Display) -> Self {
        Self {
            store: StoreKind::Postgres,
            message: error.to_string(),
        }
    }

    /// A failed call to ClickHouse.
    pub fn clickhouse(error: impl std::fmt::Display) -> Self {
        Self {
            store: StoreKind::Clickhouse,
            message: error.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_error_names_its_store_first() {
        assert_eq!(
            StoreError::postgres("connection refused").to_string(),
            "PostgreSQL: connection refused"
        );
        assert_eq!(
            StoreError::clickhouse("timed out").store,
            StoreKind::Clickhouse
        );
    }
}
