//! The schema migrations applied (`_sqlx_migrations`) against those this binary
//! carries: after a restore or a rollback the two can differ, and the console says so
//! (the page's warning, `/health/deep`'s `schema`, `salvage check`).

use std::collections::BTreeMap;

use sqlx::{PgPool, Row};
use time::OffsetDateTime;

use crate::migrations::{SchemaMigration, SchemaStatus};
use crate::server::postgres::MIGRATOR;

/// One applied migration as `_sqlx_migrations` records it.
#[derive(Clone, Debug)]
pub struct Applied {
    pub version: i64,
    pub description: String,
    pub installed_on: OffsetDateTime,
    pub success: bool,
    pub checksum: Vec<u8>,
}

/// Whether the `public` schema has table `name` (an older schema may lack this
/// version's tables).
pub async fn table_exists(pg: &PgPool, name: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"select to_regclass('public.' || quote_ident($1)) is not null as "exists!""#,
        name
    )
    .fetch_one(pg)
    .await
}

/// The applied migrations; none when `_sqlx_migrations` does not exist (a fresh
/// database).
pub async fn applied(pg: &PgPool) -> Result<Vec<Applied>, sqlx::Error> {
    if !table_exists(pg, "_sqlx_migrations").await? {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(
        "select version, description, installed_on, success, checksum
           from _sqlx_migrations order by version",
    )
    .fetch_all(pg)
    .await?;
    Ok(rows
        .iter()
        .map(|row| Applied {
            version: row.get("version"),
            description: row.get("description"),
            installed_on: row.get("installed_on"),
            success: row.get("success"),
            checksum: row.get("checksum"),
        })
        .collect())
}

/// The versions this binary carries and has not applied, oldest first.
pub fn pending(applied: &[Applied]) -> Vec<i64> {
    MIGRATOR
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .map(|m| m.version)
        .filter(|v| !applied.iter().any(|a| a.version == *v && a.success))
        .collect()
}

/// The newest version this binary carries.
pub fn expected_version() -> i64 {
    MIGRATOR
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .map(|m| m.version)
        .max()
        .unwrap_or(0)
}

/// Applied against expected, with a sentence when they differ.
pub fn compare(applied: &[Applied]) -> SchemaStatus {
    let mut by_version: BTreeMap<i64, SchemaMigration> = BTreeMap::new();
    for m in MIGRATOR
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
    {
        by_version.insert(
            m.version,
            SchemaMigration {
                version: m.version,
                description: m.description.to_string(),
                applied_at_ms: None,
                expected: true,
                checksum_differs: false,
            },
        );
    }
    for a in applied.iter().filter(|a| a.success) {
        let expected = MIGRATOR.iter().find(|m| m.version == a.version);
        let entry = by_version.entry(a.version).or_insert(SchemaMigration {
            version: a.version,
            description: a.description.clone(),
            applied_at_ms: None,
            expected: false,
            checksum_differs: false,
        });
        entry.applied_at_ms = Some(crate::server::unix_ms(a.installed_on));
        entry.checksum_differs = expected.is_some_and(|m| *m.checksum != *a.checksum);
    }
    let migrations: Vec<SchemaMigration> = by_version.into_values().collect();
    let missing: Vec<i64> = migrations
        .iter()
        .filter(|m| m.expected && m.applied_at_ms.is_none())
        .map(|m| m.version)
        .collect();
    let unknown: Vec<i64> = migrations
        .iter()
        .filter(|m| !m.expected)
        .map(|m| m.version)
        .collect();
    let changed: Vec<i64> = migrations
        .iter()
        .filter(|m| m.checksum_differs)
        .map(|m| m.version)
        .collect();
    let failed: Vec<i64> = applied
        .iter()
        .filter(|a| !a.success)
        .map(|a| a.version)
        .collect();
    let list = |v: &[i64]| v.iter().map(i64::to_string).collect::<Vec<_>>().join(", ");
    let mut problems = Vec::new();
    if !missing.is_empty() {
        problems.push(format!(
            "not applied: {} (run `salvage migrate`)",
            list(&missing)
        ));
    }
    if !unknown.is_empty() {
        problems.push(format!(
            "applied but unknown to this binary: {} (a newer version migrated this database)",
            list(&unknown)
        ));
    }
    if !changed.is_empty() {
        problems.push(format!("changed since applied: {}", list(&changed)));
    }
    if !failed.is_empty() {
        problems.push(format!("failed half-way: {}", list(&failed)));
    }
    SchemaStatus {
        applied: applied
            .iter()
            .filter(|a| a.success)
            .map(|a| a.version)
            .max()
            .unwrap_or(0),
        expected: expected_version(),
        ok: problems.is_empty(),
        problem: (!problems.is_empty()).then(|| {
            format!(
                "The schema differs from this binary's: {}.",
                problems.join("; ")
            )
        }),
        migrations,
    }
}

/// The schema's state now.
pub async fn status(pg: &PgPool) -> Result<SchemaStatus, sqlx::Error> {
    Ok(compare(&applied(pg).await?))
}
