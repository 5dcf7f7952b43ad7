//! The state every request handler and server function shares.

use std::time::Duration;

use leptos::config::LeptosOptions;
use sqlx::PgPool;

use super::clickhouse::ClickHouse;

/// Everything a request needs to reach the stores. Cheap to clone: every field is a
/// handle to a shared pool or an `Arc`.
#[derive(Clone)]
pub struct AppState {
    /// Leptos' own settings (site root, output name), needed by the SSR renderer.
    pub leptos_options: LeptosOptions,
    /// The PostgreSQL pool. Created lazily, so Salvage starts while PostgreSQL is down.
    pub pg: PgPool,
    /// The role that owns the schema, when `SALVAGE_MIGRATE_DATABASE_URL` names one.
    pub schema_owner: Option<super::postgres::SchemaOwner>,
    /// The ClickHouse client, bound to the configured database.
    pub clickhouse: ClickHouse,
    /// How long a health probe waits for a store before calling it down.
    pub probe_timeout: Duration,
    /// The console's public origin (`scheme://host[:port]`, from `SALVAGE_PUBLIC_URL`).
    /// Server functions refuse calls whose `Origin` / `Referer` is anything else.
    pub public_origin: String,
    /// How long a session lives without a request before it expires.
    pub session_idle: Duration,
    /// How long a session lives at most, however active (`SALVAGE_SESSION_MAX_HOURS`).
    pub session_max: Duration,
    /// The proxies whose `X-Forwarded-For` names the client (`SALVAGE_TRUSTED_PROXIES`).
    pub trusted_proxies: super::client::TrustedProxies,
    /// `SALVAGE_HEALTH_TOKEN`'s digest: a caller presenting it as a bearer token sees the
    /// full health answers (driver errors, version) without signing in.
    pub health_token: Option<std::sync::Arc<Vec<u8>>>,
    /// `SALVAGE_METRICS_TOKEN`'s digest: when set, `/metrics` answers only a caller
    /// presenting it as a bearer token.
    pub metrics_token: Option<std::sync::Arc<Vec<u8>>>,
    /// This process's counters and histograms (`/metrics`' process figures).
    pub metrics: super::metrics::Metrics,
    /// The time cron secrets, runs and dropout detection act on.
    pub clock: super::Clock,
    /// Failures a test injects; none (and nothing can set one) outside test builds.
    pub faults: super::faults::Faults,
    /// The version string reported by `/health/deep` and shown in the console.
    pub version: &'static str,
    /// Each feature's part (its settings, caches and the root's lists), read through the
    /// accessor the feature declares: `state.queues()`, `state.jobs()` (see `parts`).
    pub parts: super::parts::Parts,
    /// This process's view of PostgreSQL's availability (the pages' outage sentence,
    /// the `postgres_down` record).
    pub postgres_watch: crate::server::watch::PostgresWatch,
    /// The process's background work (runs started from the console, the scheduler,
    /// housekeeping): `salvage serve` waits for it on shutdown.
    pub tasks: tokio_util::task::TaskTracker,
    /// Cancelled when the process is asked to stop (SIGTERM, Ctrl-C); every run's own
    /// token is a child of it, so running jobs stop after their current step.
    pub shutdown: tokio_util::sync::CancellationToken,
}

impl AppState {
    /// The part of type `T` (what a feature's accessor returns).
    pub fn part<T: std::any::Any + Send + Sync>(&self) -> &T {
        self.parts.get()
    }

    /// The part of type `T`, changed on this copy of the state only (tests, side runs).
    pub fn part_mut<T: std::any::Any + Send + Sync + Clone>(&mut self) -> &mut T {
        self.parts.get_mut()
    }
}

impl axum::extract::FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}
