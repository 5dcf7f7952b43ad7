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
