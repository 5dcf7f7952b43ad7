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

/// Advisory lock classes (the first key of the two-key form), one per kind of work.
pub mod lock_class {
    /// One history export per user at a time (key: the user id).
    pub const HISTORY_EXPORT: i32 = 7303;
    /// One chain verification at a time (key: 0).
    pub const CHAIN_VERIFY: i32 = 7305;
}

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

/// What the application role may do: read and write Salvage's tables, but never change,
/// delete or truncate a history entry, touch the migrations' record, or change the
/// schema (it owns nothing). Idempotent; runs after every migration.
pub async fn grant_application_role(owner: &PgPool, role: &str) -> Result<(), sqlx::Error> {
    let mut tx = owner.begin().await?;
    sqlx::query("select set_config('salvage.app_role', $1, true)")
        .bind(role)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        r#"do $$
           declare role text := current_setting('salvage.app_role');
           begin
             execute format('grant usage on schema public to %I', role);
             execute format('revoke create on schema public from %I', role);
             execute format('grant select, insert, update, delete on all tables in schema public to %I', role);
             execute format('grant usage, select on all sequences in schema public to %I', role);
             execute format('revoke update, delete, truncate on runbook_history from %I', role);
             execute format('revoke insert, update, delete, truncate on _sqlx_migrations from %I', role);
           end $$"#,
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}
