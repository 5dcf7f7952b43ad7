//! ClickHouse: the client and the schema of `requests` and `events`.
//!
//! Every statement here runs on Debian's ClickHouse 18.16 (the server the tests use) and on
//! current releases. That rules out `DateTime64`, `JSON`, `Bool`, `TTL`, `CODEC`, skip
//! indexes and `ADD COLUMN IF NOT EXISTS`: timestamps are `DateTime('UTC')` plus a
//! millisecond column, JSON is a `String`, and a later column addition must check
//! `system.columns` first.

use std::time::Duration;

use clickhouse::Client;
use secrecy::{ExposeSecret, SecretString};

mod lookup;

/// Where Salvage's tables live: their names and, on a cluster, the cluster's name.
/// Configuration (`CLICKHOUSE_CLUSTER`, `CLICKHOUSE_REQUESTS_TABLE`,
/// `CLICKHOUSE_EVENTS_TABLE`), not code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The cluster of `remote_servers` the tables are created `ON CLUSTER` of. With a
    /// cluster, each table is a Distributed table in front of `<name>_local`, a
    /// replicated table on every replica of every shard.
    pub cluster: Option<String>,
    /// The table of the requests queue's rows.
    pub requests: String,
    /// The table of the events queue's rows.
    pub events: String,
}

impl Default for Layout {
    fn default() -> Self {
        Self {
            cluster: None,
            requests: "requests".to_owned(),
            events: "events".to_owned(),
        }
    }
}

/// The suffix of the replicated table behind each Distributed table of a cluster.
pub const LOCAL_SUFFIX: &str = "_local";

/// A ClickHouse client bound to Salvage's database, plus one for server-level statements
/// (`CREATE DATABASE`) that must not name a database that may not exist yet.
#[derive(Clone)]
pub struct ClickHouse {
    client: Client,
    server: Client,
    database: String,
    layout: std::sync::Arc<Layout>,
    /// Plain HTTP to the same server, for the one query the `clickhouse` crate cannot
    /// send: one with an external table ([`ClickHouse::existing_rows`]).
    http: std::sync::Arc<lookup::Http>,
}

/// One of the tables Salvage keeps in ClickHouse. The DDL is built from its parts, as a
/// plain table on one server or as a replicated table behind a Distributed one.
pub struct TableDef {
    /// The name code knows it by (`requests`, `events`, `history_anchors`); the first
    /// two are renamed by the [`Layout`].
    pub logical: &'static str,
    columns: &'static str,
    /// The MergeTree family member and its arguments after the replication ones.
    engine: (&'static str, &'static str),
    /// `PARTITION BY … ORDER BY …`.
    keys: &'static str,
    /// Where a Distributed table sends a row: the same row always to the same shard, so
    /// a re-inserted row collapses with its first copy.
    shard_by: &'static str,
}

/// The tables Salvage keeps in ClickHouse, in creation order.
///
/// `requests` and `events` use `ReplacingMergeTree` sorted by
/// `(toDate(ts), organization_id, id)`: a row re-inserted with the same organisation, id
/// and timestamp collapses into one at merge time (and under `FINAL`), one organisation's
/// id never replaces another's, and "which of these rows already exist" is answered from
/// the sort key when the query is bounded by the batch's date range.
pub const TABLES: &[TableDef] = &[
    TableDef {
        logical: "requests",
        columns: "id UUID,
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
            inserted_at DateTime('UTC') DEFAULT now()",
        engine: ("ReplacingMergeTree", "inserted_at"),
        keys: "PARTITION BY toYYYYMM(ts) ORDER BY (toDate(ts), organization_id, id)",
        shard_by: "cityHash64(organization_id, toString(id))",
    },
    TableDef {
        logical: "events",
        columns: "id UUID,
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
            organization_id String DEFAULT ''",
        engine: ("ReplacingMergeTree", "inserted_at"),
        keys: "PARTITION BY toYYYYMM(ts) ORDER BY (toDate(ts), organization_id, id)",
        shard_by: "cityHash64(organization_id, toString(id))",
    },
    // The newest (sequence, hash) of the runbook history, appended every few seconds: a
    // copy of the chain's head outside PostgreSQL, so deleting the newest entries or
    // rewriting the chain there shows at the next verification.
    TableDef {
        logical: "history_anchors",
        columns: "seq UInt64,
            hash String,
            anchored_at DateTime('UTC') DEFAULT now()",
        engine: ("MergeTree", ""),
        keys: "ORDER BY seq",
        shard_by: "seq",
    },
];

impl TableDef {
    /// The statement creating this table as `database.name` on one server.
    pub fn create_single(&self, database: &str, name: &str) -> String {
        self.create_new(database, name)
            .replacen("CREATE TABLE", "CREATE TABLE IF NOT EXISTS", 1)
    }

    /// The statement creating this table as the new table `database.name` on one server,
    /// failing if it exists (a restore's staging table).
    pub fn create_new(&self, database: &str, name: &str) -> String {
        let (engine, args) = self.engine;
        format!(
            "CREATE TABLE `{database}`.`{name}` ({}) ENGINE = {engine}({args}) {}",
            self.columns, self.keys
        )
    }

    /// The replicated table `<name>_local` on every replica of `cluster`. Its ZooKeeper
    /// path names the shard, database and table, so each database has its own.
    fn create_replicated(&self, database: &str, name: &str, cluster: &str) -> String {
        let (engine, args) = self.engine;
        let local = format!("{name}{LOCAL_SUFFIX}");
        let args = if args.is_empty() {
            String::new()
        } else {
            format!(", {args}")
        };
        format!(
            "CREATE TABLE IF NOT EXISTS `{database}`.`{local}` ON CLUSTER `{cluster}` ({}) \
             ENGINE = Replicated{engine}('/clickhouse/tables/{{shard}}/{database}/{local}', '{{replica}}'{args}) {}",
            self.columns, self.keys
        )
    }

    /// The Distributed table `name` in front of `<name>_local` on every replica.
    fn create_distributed(&self, database: &str, name: &str, cluster: &str) -> String {
        let local = format!("{name}{LOCAL_SUFFIX}");
        format!(
            "CREATE TABLE IF NOT EXISTS `{database}`.`{name}` ON CLUSTER `{cluster}` \
             AS `{database}`.`{local}` ENGINE = Distributed({cluster}, {database}, {local}, {})",
            self.shard_by
        )
    }
}

/// Whether `name` can be used as a ClickHouse database, table or cluster name without
/// quoting surprises.
pub fn is_valid_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

/// Whether `name` can be used as a ClickHouse database name without quoting surprises.
pub fn is_valid_database_name(name: &str) -> bool {
    is_valid_identifier(name)
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
        let http = lookup::Http {
            client: reqwest::Client::new(),
            url: url.to_owned(),
            user: user.to_owned(),
            password: password.clone(),
        };
        Self {
            client: server.clone().with_database(database),
            server,
            database: database.to_owned(),
            layout: Default::default(),
            http: std::sync::Arc::new(http),
        }
    }

    /// The same client with the tables laid out as `layout` says. On a cluster, every
    /// INSERT through a Distributed table waits until the shard's replica has the rows
    /// (`insert_distributed_sync`; 18.16 has no `INSERT … SETTINGS`, so it travels as a
    /// query option), so a 2xx still means stored.
    pub fn with_layout(mut self, layout: Layout) -> Self {
        if layout.cluster.is_some() {
            self.server = self.server.with_setting("insert_distributed_sync", "1");
            self.client = self.client.with_setting("insert_distributed_sync", "1");
        }
        self.layout = std::sync::Arc::new(layout);
        self
    }

    /// The same server with another database (a scratch database of `salvage check`).
    pub fn with_database(&self, database: &str) -> Self {
        debug_assert!(is_valid_database_name(database));
        Self {
            client: self.server.clone().with_database(database),
            server: self.server.clone(),
            database: database.to_owned(),
            layout: self.layout.clone(),
            http: self.http.clone(),
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

    /// Where the tables live.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The cluster the tables live on, if any.
    pub fn cluster(&self) -> Option<&str> {
        self.layout.cluster.as_deref()
    }

    /// The table a logical name (`requests`, `events`, `history_anchors`) is configured
    /// as: the one to read and insert through (the Distributed table on a cluster).
    pub fn table<'a>(&'a self, logical: &'a str) -> &'a str {
        match logical {
            "requests" => &self.layout.requests,
            "events" => &self.layout.events,
            other => other,
        }
    }

    /// The definition of the table Salvage names `name` under this layout (`requests`,
    /// or what the layout renamed it to); `None` for any other name.
    pub fn table_def(&self, name: &str) -> Option<&'static TableDef> {
        TABLES.iter().find(|def| self.table(def.logical) == name)
    }

    /// The table that holds `logical`'s parts on this server: the replicated
    /// `<name>_local` on a cluster, the table itself otherwise.
    pub fn storage_table(&self, logical: &str) -> String {
        let table = self.table(logical);
        match self.cluster() {
            Some(_) => format!("{table}{LOCAL_SUFFIX}"),
            None => table.to_owned(),
        }
    }

    /// The application's tables (the queues' destinations), as configured.
    pub fn application_tables(&self) -> [&str; 2] {
        [&self.layout.requests, &self.layout.events]
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
        if let Some(cluster) = self.cluster() {
            return self.migrate_cluster(cluster).await;
        }
        self.server
            .query(&format!(
                "CREATE DATABASE IF NOT EXISTS `{}`",
                self.database
            ))
            .execute()
            .await?;
        for def in TABLES {
            self.server
                .query(&def.create_single(&self.database, self.table(def.logical)))
                .execute()
                .await?;
        }
        for table in self.application_tables() {
            self.finish_rebuild(table).await?;
            if !self.sorted_by_organization(table).await? {
                self.rebuild(table).await?;
            }
        }
        Ok(())
    }

    /// On a cluster: `ON CLUSTER` DDL, but only when a table is missing here, since
    /// distributed DDL waits for every replica and one may be down while this one starts.
    async fn migrate_cluster(&self, cluster: &str) -> clickhouse::error::Result<()> {
        let existing: Vec<String> = self
            .server
            .query("SELECT name FROM system.tables WHERE database = ?")
            .bind(&self.database)
            .fetch_all()
            .await?;
        let present = |name: &str| existing.iter().any(|e| e == name);
        if TABLES.iter().all(|def| {
            let name = self.table(def.logical);
            present(name) && present(&format!("{name}{LOCAL_SUFFIX}"))
        }) {
            return Ok(());
        }
        let db = &self.database;
        self.server
            .query(&format!(
                "CREATE DATABASE IF NOT EXISTS `{db}` ON CLUSTER `{cluster}`"
            ))
            .execute()
            .await?;
        for def in TABLES {
            let name = self.table(def.logical);
            for ddl in [
                def.create_replicated(db, name, cluster),
                def.create_distributed(db, name, cluster),
            ] {
                self.server.query(&ddl).execute().await?;
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
        let def = TABLES
            .iter()
            .find(|def| self.table(def.logical) == table)
            .expect("requests and events are in TABLES");
        let ddl = def.create_single(db, &format!("{table}__v2"));
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

    /// Inserts JSONEachRow `lines` into `table` (a logical name) in one INSERT, failing after `timeout`.
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
        let table = self.table(table);
        let mut insert = self
            .client
            .insert_formatted_with(format!("INSERT INTO `{table}` FORMAT JSONEachRow"))
            .with_timeouts(Some(timeout), Some(timeout));
        insert.send(body.into()).await?;
        insert.end().await
    }

    /// Drops Salvage's database. Used by test harnesses and throwaway drills only.
    /// On a cluster, on every replica, so the replicated tables' ZooKeeper entries go too.
    pub async fn drop_database(&self) -> clickhouse::error::Result<()> {
        let on_cluster = self
            .cluster()
            .map(|c| format!(" ON CLUSTER `{c}`"))
            .unwrap_or_default();
        self.server
            .query(&format!(
                "DROP DATABASE IF EXISTS `{}`{on_cluster}",
                self.database
            ))
            .execute()
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_a_cluster_each_table_is_replicated_behind_a_distributed_one() {
        let requests = &TABLES[0];
        let local = requests.create_replicated("salvage", "requests", "main");
        assert!(local.starts_with(
            "CREATE TABLE IF NOT EXISTS `salvage`.`requests_local` ON CLUSTER `main` ("
        ));
        assert!(local.contains(
            "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/salvage/requests_local', '{replica}', inserted_at) PARTITION BY toYYYYMM(ts)"
        ));
        let distributed = requests.create_distributed("salvage", "requests", "main");
        assert!(distributed.ends_with(
            "AS `salvage`.`requests_local` ENGINE = Distributed(main, salvage, requests_local, cityHash64(organization_id, toString(id)))"
        ));
        let anchors = TABLES[2].create_replicated("s", "history_anchors", "main");
        assert!(anchors.contains("ReplicatedMergeTree('/clickhouse/tables/{shard}/s/history_anchors_local', '{replica}') ORDER BY seq"));
        assert!(TABLES[2]
            .create_single("s", "history_anchors")
            .contains("ENGINE = MergeTree() ORDER BY seq"));
    }

    #[test]
    fn table_names_come_from_the_layout() {
        let password = SecretString::from(String::new());
        let single = ClickHouse::new("http://127.0.0.1:1", "default", &password, "salvage")
            .with_layout(Layout {
                requests: "llm_requests".into(),
                ..Layout::default()
            });
        assert_eq!(single.table("requests"), "llm_requests");
        assert_eq!(single.table("events"), "events");
        assert_eq!(single.storage_table("requests"), "llm_requests");
        let cluster = single.with_layout(Layout {
            cluster: Some("main".into()),
            ..Layout::default()
        });
        assert_eq!(cluster.storage_table("requests"), "requests_local");
        assert_eq!(
            cluster.storage_table("history_anchors"),
            "history_anchors_local"
        );
        assert_eq!(cluster.application_tables(), ["requests", "events"]);
    }

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
