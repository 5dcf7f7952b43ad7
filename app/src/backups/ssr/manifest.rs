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
    /// The files are encrypted with age (see `encryption`); sizes and SHA-256 are those
    /// of the stored bytes.
    #[serde(default)]
    pub encrypted: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TableEntry {
    pub name: String,
    pub rows: i64,
    /// [`schema_checksum`] of its structure.
    pub schema_checksum: String,
    /// One of Salvage's own tables (never restored in place).
    pub own: bool,
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

/// What Salvage itself says a backup of a store may hold; never read from a manifest.
pub struct Expected<'a> {
    /// PostgreSQL: any table of the `public` schema (a plain name); ClickHouse: only the
    /// tables Salvage defines, under the layout's names.
    pub known: &'a dyn Fn(&str) -> bool,
    /// Whether a table is one of Salvage's own (an in-place restore never rolls it back).
    pub own: &'a dyn Fn(&str) -> bool,
}

impl Manifest {
    /// Checks what a signed manifest says against what Salvage expects, before anything
    /// acts on it: every table known and named plainly, once; every file inside the
    /// backup's folder and of a listed table. The own-table flags are recomputed, not
    /// believed. A refusal names the table or the file.
    pub fn checked(mut self, expected: &Expected<'_>) -> Result<Self, String> {
        let mut seen = std::collections::HashSet::new();
        for table in &mut self.tables {
            if !plain_name(&table.name) || !(expected.known)(&table.name) {
                return Err(format!(
                    "{}: not a table Salvage backs up in {}",
                    printable(&table.name),
                    self.store.as_str()
                ));
            }
            if !seen.insert(table.name.clone()) {
                return Err(format!("{}: listed twice", table.name));
            }
            table.own = (expected.own)(&table.name);
        }
        for file in &self.files {
            if !inside_folder(&file.path) {
                return Err(format!(
                    "{}: a path outside the backup's folder",
                    printable(&file.path)
                ));
            }
            if let Some(table) = &file.table {
                if !seen.contains(table) {
                    return Err(format!(
                        "{}: of a table the manifest does not list",
                        file.path
                    ));
                }
            }
        }
        Ok(self)
    }
}

/// Letters, digits and `_`, not starting with a digit, 63 at most: a name no quoting can
/// turn into something else.
fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

/// A relative path of plain parts (`requests/202612.native.lz4`): no `..`, no `.`, no
/// empty part, no leading `/`, no backslash.
fn inside_folder(path: &str) -> bool {
    !path.is_empty()
        && path.len() <= 255
        && path.split('/').all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'='))
        })
}

/// At most 60 characters of `text`, control characters shown escaped.
fn printable(text: &str) -> String {
    text.chars()
        .take(60)
        .flat_map(char::escape_default)
        .collect()
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

    fn sample() -> Manifest {
        let table = |name: &str, own: bool| TableEntry {
            name: name.into(),
            rows: 1,
            schema_checksum: String::new(),
            own,
            objects: Vec::new(),
        };
        let file = |path: &str, table: &str| FileEntry {
            path: path.into(),
            table: Some(table.into()),
            partition: None,
            size: 1,
            sha256: String::new(),
            rows: Some(1),
        };
        Manifest {
            format: FORMAT,
            backup_id: 1,
            store: StoreKind::Clickhouse,
            database: "salvage".into(),
            server_version: String::new(),
            tool_version: None,
            started_at: OffsetDateTime::UNIX_EPOCH,
            finished_at: OffsetDateTime::UNIX_EPOCH,
            duration_ms: 0,
            tables: vec![table("requests", false), table("history_anchors", true)],
            files: vec![
                file("requests/202612.native.lz4", "requests"),
                file("history_anchors/all.native.lz4", "history_anchors"),
            ],
            queued_for_clickhouse: 0,
            encrypted: false,
        }
    }

    fn check(manifest: Manifest) -> Result<Manifest, String> {
        let known = |name: &str| ["requests", "events", "history_anchors"].contains(&name);
        let own = |name: &str| name == "history_anchors";
        manifest.checked(&Expected {
            known: &known,
            own: &own,
        })
    }

    #[test]
    fn a_manifest_naming_an_unknown_table_or_a_path_outside_its_folder_is_refused() {
        check(sample()).unwrap();
        let mut flipped = sample();
        flipped.tables[1].own = false;
        flipped.tables[0].own = true;
        let own: Vec<bool> = check(flipped)
            .unwrap()
            .tables
            .iter()
            .map(|t| t.own)
            .collect();
        assert_eq!(own, [false, true], "the flags are recomputed, not believed");

        let refused = |edit: &dyn Fn(&mut Manifest)| {
            let mut manifest = sample();
            edit(&mut manifest);
            check(manifest).unwrap_err()
        };
        for path in [
            "../postgres/1/postgres.dump",
            "requests/../../x",
            "/etc/passwd",
            "requests//a",
            "requests\\a",
            "",
        ] {
            let why = refused(&|m| m.files[0].path = path.into());
            assert!(why.contains("outside the backup's folder"), "{path}: {why}");
        }
        let why = refused(&|m| m.tables[0].name = "requests_export".into());
        assert!(why.starts_with("requests_export: not a table"), "{why}");
        let why = refused(&|m| m.tables[0].name = "requests`; DROP".into());
        assert!(why.contains("not a table"), "{why}");
        let why = refused(&|m| m.tables[0].name = "history_anchors".into());
        assert!(why.contains("listed twice"), "{why}");
        let why = refused(&|m| m.files[0].table = Some("events".into()));
        assert!(
            why.contains("of a table the manifest does not list"),
            "{why}"
        );
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
