//! ClickHouse: the client and the schema of `requests` and `events`.
//!
//! Every statement here runs on Debian's ClickHouse 18.16 (the server the tests use) and on
//! current releases. That rules out `DateTime64`, `JSON`, `Bool`, `TTL`, `CODEC`, skip
//! indexes and `ADD COLUMN IF NOT EXISTS`: timestamps are `DateTime('UTC')` plus a
//! millisecond column, JSON is a `String`, and a later column addition must check
//! `system.columns` first.

use std::collections::HashSet;
use std::fmt::Write;
use std::time::Duration;

use clickhouse::Client;
use secrecy::{ExposeSecret, SecretString};
use time::Date;
use uuid::Uuid;

/// A ClickHouse client bound to Salvage's database, plus one for server-level statements
/// (`CREATE DATABASE`) that must not name a database that may not exist yet.
#[derive(Clone)]
pub struct ClickHouse {
    client: Client,
    server: Client,
    database: String,
}

/// The tables Salvage keeps in ClickHouse, in creation order.
///
/// `requests` and `events` use `ReplacingMergeTree` sorted by
/// `(toDate(ts), organization_id, id)`: a row re-inserted with the same organisation, id
/// and timestamp collapses into one at merge time (and under `FINAL`), one organisation's
/// id never replaces another's, and "which of these rows already exist" is answered from
/// the sort key when the query is bounded by the batch's date range.
pub const TABLES: &[(&str, &str)] = &[
    (
        "requests",
        "CREATE TABLE IF NOT EXISTS `{db}`.requests (
            id UUID,
            ts DateTime('UTC'),
            ts_ms UInt16,
            organization_id String,
            project String,
            provider String,
            model String,
            status UInt16,
            latency_ms UInt32,
            prompt_tokens UInt32,
            completion_tokens UInt32,
            cost_usd Float64,
            error Nullable(String),
            inserted_at DateTime('UTC') DEFAULT now()
        ) ENGINE = ReplacingMergeTree(inserted_at)
        PARTITION BY toYYYYMM(ts)
        ORDER BY (toDate(ts), organization_id, id)",
    ),
    (
        "events",
        "CREATE TABLE IF NOT EXISTS `{db}`.events (
            id UUID,
            ts DateTime('UTC'),
            ts_ms UInt16,
            trace_id String,
            span_id String,
            parent_span_id Nullable(String),
            event_type Enum8('generation' = 1, 'trace' = 2, 'span' = 3),
            name String,
            duration_ms Nullable(UInt32),
            attributes String,
            inserted_at DateTime('UTC') DEFAULT now(),
            organization_id String DEFAULT ''
        ) ENGINE = ReplacingMergeTree(inserted_at)
        PARTITION BY toYYYYMM(ts)
        ORDER BY (toDate(ts), organization_id, id)",
    ),
    (
        "history_anchors",
        // The newest (sequence, hash) of the runbook history, appended every few
        // seconds: a copy of the chain's head outside PostgreSQL, so deleting the newest
        // entries or rewriting the chain there shows at the next verification.
        "CREATE TABLE IF NOT EXISTS `{db}`.history_anchors (
            seq UInt64,
            hash String,
            anchored_at DateTime('UTC') DEFAULT now()
        ) ENGINE = MergeTree()
        ORDER BY seq",
    ),
];

#[derive(clickhouse::Row, serde::Deserialize)]
struct ExistingRow {
    organization_id: String,
    id: String,
}

/// Whether `name` can be used as a ClickHouse database name without quoting surprises.
pub fn is_valid_database_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

impl ClickHouse {
    /// A client for `url` (e.g. `http://127.0.0.1:8123`). `database` must satisfy
    /// [`is_valid_database_name`]; configuration checks that before this is called.
    pub fn new(url: &str, user: &str, password: &SecretString, database: &str) -> Self {
        debug_assert!(is_valid_database_name(database));
        let server = Client::default()
            .with_url(url)
            .with_user(user)
            .with_password(password.expose_secret())
            // ClickHouse 18.16 lacks the formats and settings validation relies on.
            .with_validation(false);
        Self {
            client: server.clone().with_database(database),
            server,
            database: database.to_owned(),
        }
    }

    /// The same server with another database (a scratch database of `salvage check`).
    pub fn with_database(&self, database: &str) -> Self {
        debug_assert!(is_valid_database_name(database));
        Self {
            client: self.server.clone().with_database(database),
            server: self.server.clone(),
            database: database.to_owned(),
        }
    }

    /// The client bound to Salvage's database.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The name of Salvage's database.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// Asks the server a trivial question; `Ok` means it answered.
    pub async fn ping(&self) -> clickhouse::error::Result<()> {
        self.server
            .query("SELECT 1")
            .fetch_one::<u8>()
            .await
            .map(drop)
    }

    /// Creates the database and every table that is missing. Idempotent, and safe to run
    /// from several replicas at once.
    pub async fn migrate(&self) -> clickhouse::error::Result<()> {
        self.server
            .query(&format!(
                "CREATE DATABASE IF NOT EXISTS `{}`",
                self.database
            ))
            .execute()
            .await?;
        for (_, ddl) in TABLES {
            self.server
                .query(&ddl.replace("{db}", &self.database))
                .execute()
                .await?;
        }
        for table in ["requests", "events"] {
            self.finish_rebuild(table).await?;
            if !self.sorted_by_organization(table).await? {
                self.rebuild(table).await?;
            }
        }
        Ok(())
    }

    async fn sorted_by_organization(&self, table: &str) -> clickhouse::error::Result<bool> {
        let key: String = self
            .server
            .query("SELECT sorting_key FROM system.tables WHERE database = ? AND name = ?")
            .bind(&self.database)
            .bind(table)
            .fetch_one()
            .await?;
        Ok(key.contains("organization_id"))
    }

    async fn columns_of(&self, table: &str) -> clickhouse::error::Result<Vec<String>> {
        self.server
            .query("SELECT name FROM system.columns WHERE database = ? AND table = ?")
            .bind(&self.database)
            .bind(table)
            .fetch_all()
            .await
    }

    /// Moves a table made by an older Salvage (sorted by `(toDate(ts), id)`) to the
    /// current definition, which ClickHouse cannot change in place: a copy under the new
    /// sort key takes its name, then the rows that arrived during the copy follow
    /// (a row copied twice collapses, as any re-insert does), then the old table goes.
    /// Nothing written meanwhile is lost: inserts go to whichever table holds the name.
    async fn rebuild(&self, table: &str) -> clickhouse::error::Result<()> {
        let db = &self.database;
        let ddl = TABLES
            .iter()
            .find(|(name, _)| *name == table)
            .map(|(_, ddl)| ddl.replace("{db}", db))
            .expect("requests and events are in TABLES")
            .replacen(
                &format!("`{db}`.{table} ("),
                &format!("`{db}`.{table}__v2 ("),
                1,
            );
        tracing::warn!(
            table,
            "rebuilding a ClickHouse table with the organisation in its sort key"
        );
        let run = |sql: String| async move { self.server.query(&sql).execute().await };
        run(format!("DROP TABLE IF EXISTS `{db}`.{table}__v2")).await?;
        let started: u32 = self
            .server
            .query("SELECT toUInt32(now())")
            .fetch_one()
            .await?;
        run(ddl).await?;
        let columns = self.columns_of(table).await?.join(", ");
        run(format!(
            "INSERT INTO `{db}`.{table}__v2 ({columns}) SELECT {columns} FROM `{db}`.{table}"
        ))
        .await?;
        run(format!(
            "RENAME TABLE `{db}`.{table} TO `{db}`.{table}__v1, `{db}`.{table}__v2 TO `{db}`.{table}"
        ))
        .await?;
        self.copy_tail(table, started.saturating_sub(60)).await
    }

    /// Rows that reached `<table>__v1` since `since` (unix seconds) and are not in
    /// `table` yet move there (the old table knew a row by its id alone), then
    /// `<table>__v1` is dropped.
    async fn copy_tail(&self, table: &str, since: u32) -> clickhouse::error::Result<()> {
        let db = &self.database;
        let columns = self.columns_of(&format!("{table}__v1")).await?.join(", ");
        self.server
            .query(&format!(
                "INSERT INTO `{db}`.{table} ({columns}) SELECT {columns} FROM `{db}`.{table}__v1 \
                 WHERE inserted_at >= toDateTime({since}) AND id NOT IN \
                 (SELECT id FROM `{db}`.{table} WHERE inserted_at >= toDateTime({since}))"
            ))
            .execute()
            .await?;
        self.server
            .query(&format!("DROP TABLE `{db}`.{table}__v1"))
            .execute()
            .await
    }

    /// A rebuild interrupted after its rename leaves `<table>__v1` behind: all of its
    /// rows go to the new table (duplicates collapse), then it is dropped.
    async fn finish_rebuild(&self, table: &str) -> clickhouse::error::Result<()> {
        if self.columns_of(&format!("{table}__v1")).await?.is_empty() {
            return Ok(());
        }
        self.copy_tail(table, 0).await
    }

    /// Inserts JSONEachRow `lines` into `table` in one INSERT, failing after `timeout`.
    /// The lines were built by the ingest validator, so the bytes are sent as they are.
    pub async fn insert_lines<'a>(
        &self,
        table: &str,
        lines: impl IntoIterator<Item = &'a str>,
        timeout: Duration,
    ) -> clickhouse::error::Result<()> {
        let mut body = Vec::with_capacity(64 * 1024);
        for line in lines {
            body.extend_from_slice(line.as_bytes());
            body.push(b'\n');
        }
        if body.is_empty() {
            return Ok(());
        }
        let mut insert = self
            .client
            .insert_formatted_with(format!("INSERT INTO `{table}` FORMAT JSONEachRow"))
            .with_timeouts(Some(timeout), Some(timeout));
        insert.send(body.into()).await?;
        insert.end().await
    }

    /// Which `(organization_id, id)` rows of `ids` `table` already holds. The query is
    /// bounded by the dates the rows' timestamps span, so ClickHouse answers it from the
    /// sort key instead of scanning the table.
    pub async fn existing_rows(
        &self,
        table: &str,
        ids: &[Uuid],
        first_day: Date,
        last_day: Date,
    ) -> clickhouse::error::Result<HashSet<(String, Uuid)>> {
        if ids.is_empty() {
            return Ok(HashSet::new());
        }
        // The ids travel as one string literal split on the server: a list of 5000
        // literals or toUUID() calls takes ClickHouse several times longer to parse. The
        // set from the subquery still drives the primary key index.
        let mut list = String::with_capacity(ids.len() * 37);
        for (i, id) in ids.iter().enumerate() {
            if i > 0 {
                list.push(',');
            }
            write!(list, "{id}").expect("writing to a String");
        }
        let sql = format!(
            "SELECT DISTINCT organization_id, toString(id) AS row_id FROM `{table}` \
             WHERE toDate(ts) >= toDate('{first_day}') AND toDate(ts) <= toDate('{last_day}') \
             AND id IN (SELECT toUUID(arrayJoin(splitByChar(',', '{list}'))))"
        );
        let found: Vec<ExistingRow> = self
            .client
            .query(&sql)
            // A batch of ids is a long query; the default limit is 256 KiB.
            .with_setting("max_query_size", (sql.len() + 1024).to_string())
            .fetch_all()
            .await?;
        Ok(found
            .into_iter()
            .filter_map(|row| Some((row.organization_id, Uuid::parse_str(&row.id).ok()?)))
            .collect())
    }

    /// Drops Salvage's database. Used by test harnesses and throwaway drills only.
    pub async fn drop_database(&self) -> clickhouse::error::Result<()> {
        self.server
            .query(&format!("DROP DATABASE IF EXISTS `{}`", self.database))
            .execute()
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::is_valid_database_name;

    #[test]
    fn database_names_are_plain_identifiers() {
        assert!(is_valid_database_name("salvage"));
        assert!(is_valid_database_name("salvage_test_01"));
        assert!(!is_valid_database_name(""));
        assert!(!is_valid_database_name("1salvage"));
        assert!(!is_valid_database_name("sal`vage"));
        assert!(!is_valid_database_name("salvage; DROP TABLE x"));
    }
}
