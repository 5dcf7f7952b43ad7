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
