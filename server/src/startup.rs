//! Building and running the application: pools, state, router, listener.

use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use axum::http::{header, HeaderValue};
use axum::Router;
use leptos::config::LeptosOptions;
use leptos_axum::{generate_route_list, LeptosRoutes};
use tokio::net::TcpListener;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use app::server::{clickhouse::ClickHouse, postgres, AppState};

use crate::config::Settings;

/// The version every report carries.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// How long a request waits for a PostgreSQL connection before failing.
const PG_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// A bound, not yet serving, Salvage.
pub struct Application {
    listener: TcpListener,
    router: Router,
    state: AppState,
}

impl Application {
    /// Creates the pools (lazily: a store that is down does not stop start-up), binds
    /// the listener (port 0 picks a free port) and assembles the router.
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        let state = build_state(settings);
        let listener = TcpListener::bind(settings.addr)
            .await
            .with_context(|| format!("Failed to listen on {}", settings.addr))?;
        let router = router(state.clone());
        Ok(Self {
            listener,
            router,
            state,
        })
    }

    /// The port the listener is bound to.
    pub fn port(&self) -> u16 {
        self.listener
            .local_addr()
            .map(|addr| addr.port())
            .unwrap_or_default()
    }

    /// The shared state (pools, clients), for tests and background tasks.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then lets in-flight requests finish.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
    }
}

/// The shared state for `settings`: pools and clients, nothing connected yet.
pub fn build_state(settings: &Settings) -> AppState {
    let leptos_options = LeptosOptions::builder()
        .output_name("salvage")
        .site_root(settings.site_root.as_str())
        .site_pkg_dir("pkg")
        .site_addr(settings.addr)
        .build();
    AppState {
        leptos_options,
        pg: postgres::lazy_pool(settings.pg_connect_options(), PG_ACQUIRE_TIMEOUT),
        clickhouse: settings.clickhouse_client(),
        probe_timeout: settings.probe_timeout,
        version: VERSION,
    }
}

/// Every route: health, the console (SSR + server functions), static files.
pub fn router(state: AppState) -> Router {
    let routes = generate_route_list(app::App);
    let options = state.leptos_options.clone();
    Router::new()
        .merge(crate::routes::health_routes())
        .merge(crate::routes::root_redirect())
        .leptos_routes(&state, routes, move || app::shell(options.clone()))
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(
            app::shell,
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Applies the PostgreSQL migrations and the ClickHouse DDL once; fails on the first
/// store that refuses.
pub async fn migrate(pg: &sqlx::PgPool, clickhouse: &ClickHouse) -> anyhow::Result<()> {
    postgres::migrate(pg)
        .await
        .context("Failed to apply the PostgreSQL migrations")?;
    clickhouse
        .migrate()
        .await
        .context("Failed to apply the ClickHouse schema")?;
    Ok(())
}

/// Applies the schema at start-up, retrying in the background while a store is down, so
/// that Salvage comes up during an outage and finishes its schema when the store returns.
pub fn spawn_schema_task(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut delay = Duration::from_secs(1);
        let (mut pg_done, mut ch_done) = (false, false);
        loop {
            if !pg_done {
                match postgres::migrate(&state.pg).await {
                    Ok(()) => {
                        pg_done = true;
                        tracing::info!("PostgreSQL schema is current");
                    }
                    Err(error) => {
                        tracing::warn!(%error, "PostgreSQL migrations not applied yet; retrying")
                    }
                }
            }
            if !ch_done {
                match state.clickhouse.migrate().await {
                    Ok(()) => {
                        ch_done = true;
                        tracing::info!(
                            database = state.clickhouse.database(),
                            "ClickHouse schema is current"
                        );
                    }
                    Err(error) => {
                        tracing::warn!(%error, "ClickHouse schema not applied yet; retrying")
                    }
                }
            }
            if pg_done && ch_done {
                return;
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(30));
        }
    })
}
