//! PostgreSQL: the pool and the schema migrations (the `migrations/` folder, embedded).

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use sqlx::PgPool;

/// The sqlx migrations of `migrations/`, compiled into the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// Builds the pool without connecting: the console must come up during a PostgreSQL
/// outage to say so. A request waits at most `acquire_timeout` for a connection.
pub fn lazy_pool(options: PgConnectOptions, acquire_timeout: Duration) -> PgPool {
    PgPoolOptions::new()
        .max_connections(20)
        .min_connections(0)
        .acquire_timeout(acquire_timeout)
        .idle_timeout(Duration::from_secs(300))
        .connect_lazy_with(options)
}

/// A session-level advisory lock on a connection taken out of the pool. Dropping it
/// closes that connection, and with it the lock, even when the request holding it is
/// cancelled halfway (a pooled connection would go back to the pool still locked).
pub struct Exclusive {
    _connection: sqlx::PgConnection,
}

impl Exclusive {
    /// Releases the lock at once. Dropping it closes the connection, and the server
    /// releases the lock only when it notices: a caller that takes the same lock right
    /// after (a rollback after its restore) must not find it still held.
    pub async fn release(mut self) {
        let _ = sqlx::query("select pg_advisory_unlock_all()")
            .execute(&mut self._connection)
            .await;
    }
}

/// Takes the advisory lock `(class, key)` if no session holds it: one of a kind of
/// work at a time across every replica. `None` when another holds it.
pub async fn try_exclusive(
    pg: &PgPool,
    class: i32,
    key: i32,
) -> Result<Option<Exclusive>, sqlx::Error> {
    let mut connection = pg.acquire().await?.detach();
    let locked: bool = sqlx::query_scalar("select pg_try_advisory_lock($1, $2)")
        .bind(class)
        .bind(key)
        .fetch_one(&mut connection)
        .await?;
    Ok(locked.then_some(Exclusive {
        _connection: connection,
    }))
}

/// Every advisory lock class Salvage takes (the first key of the two-key form), one per
/// kind of work, in one list so no two kinds share a class (a test checks). The cron
/// secrets' lock is the one-key form (`hashtext('salvage.cron_secrets')`), a separate
/// space in PostgreSQL.
pub mod lock_class {
    /// A sign-in attempt's reservation, per email (key: `hashtext(email)`).
    pub const SIGN_IN_EMAIL: i32 = 7301;
    /// A sign-in attempt's reservation, per network (key: `hashtext(network)`).
    pub const SIGN_IN_NETWORK: i32 = 7302;
    /// One history export per user at a time (key: the user id).
    pub const HISTORY_EXPORT: i32 = 7303;
    /// One chain verification at a time (key: 0).
    pub const CHAIN_VERIFY: i32 = 7305;
    /// A person's rated history notes (key: the user id).
    pub const HISTORY_NOTE_RATE: i32 = 7306;
    /// One alert evaluation at a time (key: 0).
    pub const ALERT_EVALUATION: i32 = 7310;
    /// A person's alert-note count (key: the user id).
    pub const ALERT_NOTE_RATE: i32 = 7311;
    /// One backup of a store at a time (key: 1 PostgreSQL, 2 ClickHouse).
    pub const BACKUP: i32 = 7320;
    /// One restore (or rollback) at a time (key: 0).
    pub const RESTORE: i32 = 7321;
    /// Writers hold it shared per batch; a freeze takes it exclusively once, to wait for
    /// every batch that started before it (key: 0).
    pub const FREEZE: i32 = 7322;
    /// One worker per background migration (key: a hash of its name).
    pub const BACKGROUND_MIGRATION: i32 = 7330;
    /// One schema upgrade at a time, backup included (key: 0).
    pub const UPGRADE: i32 = 7331;

    /// Every class, for the test that keeps them distinct.
    pub const ALL: [i32; 12] = [
        SIGN_IN_EMAIL,
        SIGN_IN_NETWORK,
        HISTORY_EXPORT,
        CHAIN_VERIFY,
        HISTORY_NOTE_RATE,
        ALERT_EVALUATION,
        ALERT_NOTE_RATE,
        BACKUP,
        RESTORE,
        FREEZE,
        BACKGROUND_MIGRATION,
        UPGRADE,
    ];

    #[cfg(test)]
    mod tests {
        #[test]
        fn no_two_kinds_of_work_share_a_lock_class() {
            let mut classes = super::ALL.to_vec();
            classes.sort_unstable();
            classes.dedup();
            assert_eq!(classes.len(), super::ALL.len());
        }
    }
}

/// Salvage's own tables in PostgreSQL (its migrations make them). Everything else in the
/// `public` schema is the guarded service's data. A test keeps this list equal to what
/// the migrations create.
pub const OWN_TABLES: &[&str] = &[
    "_sqlx_migrations",
    "users",
    "setup_tokens",
    "sign_in_failures",
    "sessions",
    "runbook_history",
    "ingest_keys",
    "ingest_key_usage",
    "ingest_key_sources",
    "requests_fallback",
    "events_fallback",
    "fallback_queues",
    "fallback_depth_deltas",
    "fallback_key_depths",
    "fallback_depth_samples",
    "cron_jobs",
    "cron_job_runs",
    "cron_secrets",
    "internal_alerts",
    "internal_alert_events",
    "internal_alert_conditions",
    "alert_silences",
    "alert_silence_matches",
    "alert_notifications",
    "backups",
    "backup_files",
    "restores",
    "write_freezes",
    "drills",
    "drill_databases",
    "recovery_objectives",
    "incident_checklist",
    "incident_owners",
    "webhooks",
    "webhook_events",
    "webhook_deliveries",
    "webhook_attempts",
    "webhook_redrives",
    "background_migrations",
    "schema_upgrades",
    "schema_events",
];

/// Salvage's own views (the migrations make them); the application role reads them.
pub const OWN_VIEWS: &[&str] = &["fallback_depths"];

/// Of [`OWN_TABLES`], those the application role may only add to and read (`INSERT`,
/// `SELECT`): the history, and the records of what was done (each attempt to deliver a
/// webhook, each file of a backup, each alert a silence matched). Rows leave them only
/// with their parent (`on delete cascade` runs as the table's owner) or never.
pub const APPEND_ONLY: &[&str] = &[
    "runbook_history",
    "webhook_attempts",
    "backup_files",
    "alert_silence_matches",
];

/// Applies every pending migration. Safe to run from several replicas at once: sqlx takes
/// an advisory lock, and applied migrations are skipped.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}

/// The role that owns the schema, when it is not the one Salvage works as
/// (`SALVAGE_MIGRATE_DATABASE_URL`): migrations, and later restores and other work that
/// needs ownership, connect as it; everything else uses the application's pool.
#[derive(Clone)]
pub struct SchemaOwner {
    /// A small pool on the owner's URL, created lazily.
    pub pool: PgPool,
    /// The role of `DATABASE_URL`, granted what the application needs after migrations.
    pub app_role: String,
}

impl SchemaOwner {
    /// A lazy pool of at most two connections on `options` (the owner's URL).
    pub fn new(options: PgConnectOptions, app_role: String, acquire_timeout: Duration) -> Self {
        Self {
            pool: PgPoolOptions::new()
                .max_connections(2)
                .min_connections(0)
                .acquire_timeout(acquire_timeout)
                .idle_timeout(Duration::from_secs(60))
                .connect_lazy_with(options),
            app_role,
        }
    }
}

/// Brings the schema up to date: as the owner (then granting the application role what
/// it needs, and no more) when there is one, else on the application's own pool.
pub async fn migrate_schema(
    pg: &PgPool,
    owner: Option<&SchemaOwner>,
) -> Result<(), sqlx::migrate::MigrateError> {
    match owner {
        None => migrate(pg).await,
        Some(owner) => {
            migrate(&owner.pool).await?;
            grant_application_role(&owner.pool, &owner.app_role).await?;
            Ok(())
        }
    }
}

/// What the application role may do, table by table, and nothing more: read and write
/// Salvage's own tables (and read its views); only add to and read the [`APPEND_ONLY`] ones (never change,
/// delete or truncate a history entry or an attempt); only read the migrations' record;
/// nothing at all on the guarded service's tables (restores, drills and backups reach
/// those as the owner); and never change the schema (it owns nothing). Starts from
/// nothing each time, in one transaction, so a grant made by hand does not linger.
/// Idempotent; runs after every migration and restore.
pub async fn grant_application_role(owner: &PgPool, role: &str) -> Result<(), sqlx::Error> {
    let mut tx = owner.begin().await?;
    sqlx::query(
        "select set_config('salvage.app_role', $1, true),
                set_config('salvage.own_tables', $2, true),
                set_config('salvage.append_only', $3, true),
                set_config('salvage.own_views', $4, true)",
    )
    .bind(role)
    .bind(OWN_TABLES.join(","))
    .bind(APPEND_ONLY.join(","))
    .bind(OWN_VIEWS.join(","))
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        r#"do $$
           declare
             role text := current_setting('salvage.app_role');
             own text[] := string_to_array(current_setting('salvage.own_tables'), ',');
             own_views text[] := string_to_array(current_setting('salvage.own_views'), ',');
             append_only text[] := string_to_array(current_setting('salvage.append_only'), ',');
             t text;
           begin
             execute format('grant usage on schema public to %I', role);
             execute format('revoke create on schema public from %I', role);
             execute format('revoke all on all tables in schema public from %I', role);
             for t in select tablename from pg_tables
                       where schemaname = 'public' and tablename = any(own) loop
               if t = '_sqlx_migrations' then
                 execute format('grant select on %I to %I', t, role);
               elsif t = any(append_only) then
                 execute format('grant select, insert on %I to %I', t, role);
               else
                 execute format('grant select, insert, update, delete on %I to %I', t, role);
               end if;
             end loop;
             for t in select viewname from pg_views
                       where schemaname = 'public' and viewname = any(own_views) loop
               execute format('grant select on %I to %I', t, role);
             end loop;
             execute format('grant usage, select on all sequences in schema public to %I', role);
             -- backup-sync moves the backups' numbering past every backup the repository
             -- holds (setval), after a restore brought back an older catalogue.
             if to_regclass('public.backups_id_seq') is not null then
               execute format('grant update on sequence backups_id_seq to %I', role);
             end if;
           end $$"#,
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}
