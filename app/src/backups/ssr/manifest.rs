//! The manifest: what a backup holds, written last as its commit point. It is the
//! reference verification and restores check against: every file's size and SHA-256,
//! every table's row count and schema checksum.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::super::StoreKind;
use super::native::hex;

/// The manifest's own format version.
pub const FORMAT: u32 = 1;

/// The manifest's key inside a backup's folder.
pub const FILE_NAME: &str = "manifest.json";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub backup_id: i64,
    pub store: StoreKind,
    /// The database backed up.
    pub database: String,
    pub server_version: String,
    /// The dump tool's version (`pg_dump (PostgreSQL) 15.18`), when one was used.
    pub tool_version: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub finished_at: OffsetDateTime,
    pub duration_ms: i64,
    pub tables: Vec<TableEntry>,
    pub files: Vec<FileEntry>,
    /// Rows queued in PostgreSQL for ClickHouse at the time of the backup: a ClickHouse
    /// backup does not hold them yet; a PostgreSQL backup holds them in its queues.
    pub queued_for_clickhouse: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TableEntry {
    pub name: String,
    pub rows: i64,
    /// [`schema_checksum`] of its structure.
    pub schema_checksum: String,
    /// One of Salvage's own tables (never restored in place).
    pub own: bool,
    /// ClickHouse: the table's `CREATE` statement, to recreate it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create: Option<String>,
    /// PostgreSQL: the objects that belong to it in the dump (indexes, constraints,
    /// sequences), so an in-place restore can pick exactly them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Relative to the backup's folder.
    pub path: String,
    pub table: Option<String>,
    pub partition: Option<String>,
    pub size: u64,
    pub sha256: String,
    /// Rows it holds, when the file is one table's data.
    pub rows: Option<u64>,
}

impl Manifest {
    pub fn table(&self, name: &str) -> Option<&TableEntry> {
        self.tables.iter().find(|t| t.name == name)
    }

    pub fn total_rows(&self) -> i64 {
        self.tables.iter().map(|t| t.rows).sum()
    }

    pub fn total_bytes(&self) -> i64 {
        self.files.iter().map(|f| f.size as i64).sum()
    }
}

/// A table's schema checksum: SHA-256 over its columns (name and type, in order), its
/// engine and its sort key, each as the store names them. Never the raw DDL, so the
/// checksum is the same on another server version or under another database name.
pub fn schema_checksum(columns: &[(String, String)], engine: &str, sort_key: &str) -> String {
    let mut hasher = Sha256::new();
    for (name, kind) in columns {
        hasher.update(name.as_bytes());
        hasher.update([0x1f]);
        hasher.update(kind.as_bytes());
        hasher.update([0x1e]);
    }
    hasher.update([0x1d]);
    hasher.update(engine.as_bytes());
    hasher.update([0x1d]);
    hasher.update(sort_key.as_bytes());
    hex(&hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect()
    }

    #[test]
    fn the_checksum_changes_with_a_column_type_order_engine_or_key_and_nothing_else() {
        let base = schema_checksum(&cols(&[("id", "UUID"), ("n", "UInt32")]), "MergeTree", "id");
        assert_eq!(
            base,
            schema_checksum(&cols(&[("id", "UUID"), ("n", "UInt32")]), "MergeTree", "id")
        );
        for other in [
            schema_checksum(&cols(&[("id", "UUID"), ("n", "UInt64")]), "MergeTree", "id"),
            schema_checksum(&cols(&[("n", "UInt32"), ("id", "UUID")]), "MergeTree", "id"),
            schema_checksum(
                &cols(&[("id", "UUID"), ("n", "UInt32")]),
                "ReplacingMergeTree",
                "id",
            ),
            schema_checksum(&cols(&[("id", "UUID"), ("n", "UInt32")]), "MergeTree", "n"),
            // Separators keep ("ab", "c") apart from ("a", "bc").
            schema_checksum(&cols(&[("idn", "UInt32")]), "MergeTree", "id"),
        ] {
            assert_ne!(base, other);
        }
    }
}
