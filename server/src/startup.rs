//! Building and running the application: pools, state, router, listener.

use std::future::{Future, IntoFuture};
use std::time::Duration;

use anyhow::Context;
use axum::http::{header, HeaderValue};
use axum::Router;
use leptos::config::LeptosOptions;
use leptos_axum::{generate_route_list, LeptosRoutes};
use tokio::net::TcpListener;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, SessionManagerLayer};
use tower_sessions_sqlx_store::PostgresStore;

use app::migrations::ssr::upgrade::{self, BackupPolicy, UpgradeError, UpgradeReport};
use app::server::parts::Parts;
use app::server::{postgres, AppState};

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
    ///
    /// A port of 0 in `SALVAGE_PUBLIC_URL` stands for the port actually bound (tests
    /// listen on port 0 and must still pass the same-origin check).
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(settings.addr)
            .await
            .with_context(|| format!("Failed to listen on {}", settings.addr))?;
        let mut settings = settings.clone();
        if settings.public_url.port() == Some(0) {
            let port = listener.local_addr()?.port();
            let _ = settings.public_url.set_port(Some(port));
        }
        let state = build_state(&settings);
        let router = router(state.clone(), &settings);
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

    /// Serves until `shutdown` resolves, then stops taking requests, cancels the
    /// running jobs (each stops after its current step and records its run as
    /// `cancelled`), and waits up to `grace` for in-flight requests and owned tasks.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
        grace: Duration,
    ) -> std::io::Result<()> {
        let state = self.state.clone();
        let token = state.shutdown.clone();
        let signal = async move {
            shutdown.await;
            tracing::info!(
                grace_secs = grace.as_secs(),
                "stopping: no new requests; running jobs stop after their current step"
            );
            token.cancel();
        };
        let serving = axum::serve(
            self.listener,
            self.router
                .into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(signal)
        .into_future();
        tokio::pin!(serving);
        let served = tokio::select! {
            served = &mut serving => Some(served),
            () = state.shutdown.cancelled() => None,
        };
        // From the signal on, requests and tasks share one deadline.
        let deadline = tokio::time::Instant::now() + grace;
        match served {
            Some(served) => served?,
            None => match tokio::time::timeout_at(deadline, &mut serving).await {
                Ok(served) => served?,
                Err(_) => tracing::warn!("requests still running at the shutdown deadline"),
            },
        }
        state.tasks.close();
        if tokio::time::timeout_at(deadline, state.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("background work still running at the shutdown deadline");
        }
        Ok(())
    }
}

/// The shared state for `settings`: pools and clients, nothing connected yet.
pub fn build_state(settings: &Settings) -> AppState {
    app::auth::ssr::configure_password_gate(settings.password_permits, settings.password_wait);
    let leptos_options = LeptosOptions::builder()
        .output_name("salvage")
        .site_root(settings.site_root.as_deref().unwrap_or("target/site"))
        .site_pkg_dir("pkg")
        .site_addr(settings.addr)
        .build();
    AppState {
        leptos_options,
        pg: postgres::lazy_pool(settings.pg_connect_options(), PG_ACQUIRE_TIMEOUT),
        schema_owner: settings.schema_owner(PG_ACQUIRE_TIMEOUT),
        clickhouse: settings.clickhouse_client(),
        probe_timeout: settings.probe_timeout,
        public_origin: settings.public_origin(),
        session_idle: settings.session_idle,
        session_max: settings.session_max,
        trusted_proxies: settings.trusted_proxies.clone(),
        health_token: settings.health_token.as_ref().map(token_digest),
        metrics_token: settings.metrics_token.as_ref().map(token_digest),
        metrics: Default::default(),
        clock: Default::default(),
        faults: Default::default(),
        version: VERSION,
        parts: parts(settings),
        postgres_watch: Default::default(),
        tasks: tokio_util::task::TaskTracker::new(),
        shutdown: tokio_util::sync::CancellationToken::new(),
    }
}

/// Each feature's part of the state: its settings, caches and the registry's lists.
fn parts(settings: &Settings) -> Parts {
    use app::registry;
    Parts::default()
        .with(settings.queues.clone())
        .with(app::ingest_keys::ssr::KeyCache::default())
        .with(app::ingest_keys::usage::Usage::default())
        .with(app::health::ssr::HealthCache::default())
        .with(settings.crons.clone())
        .with(app::jobs::ssr::JobLists {
            all: registry::JOBS,
            on_demand: registry::ON_DEMAND_JOBS,
        })
        .with(app::alerts::ssr::kind::AlertKinds(registry::ALERT_KINDS))
        .with(settings.alerts.clone())
        // The tools connect to the database the state does (tests and side runs change
        // the URLs after reading the settings).
        .with(app::backups::ssr::BackupSettings {
            database_url: settings.database_url.clone(),
            owner_url: settings.migrate_database_url.clone(),
            ..settings.backups.clone()
        })
        .with(app::backups::ssr::ReplayParked(
            &app::queues::ssr::replay::REPLAY_FALLBACK,
        ))
        .with(settings.drills.clone())
        .with(settings.webhooks.clone())
        .with(settings.migrations.clone())
        .with(app::jobs::ssr::background::BackgroundMigrations(
            registry::BACKGROUND_MIGRATIONS,
        ))
        .with(registry::INCIDENT_HOOKS)
}

/// The digest a bearer token setting is compared by (in constant time).
fn token_digest(token: &secrecy::SecretString) -> std::sync::Arc<Vec<u8>> {
    std::sync::Arc::new(app::server::tokens::digest(
        secrecy::ExposeSecret::expose_secret(token),
    ))
}

/// The largest request body the console accepts (server functions, forms).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// The name of the session cookie over plain http (local development).
pub const SESSION_COOKIE: &str = "salvage_session";
/// The name of the session cookie when the public URL is https: the `__Host-` prefix
/// makes browsers refuse it unless it is `Secure`, host-only and for `/`, so a sibling
/// subdomain cannot plant or overwrite it.
pub const SECURE_SESSION_COOKIE: &str = "__Host-salvage_session";

/// Sessions in PostgreSQL (the `sessions` table of the migrations), so any replica can
/// serve any request. `HttpOnly`, `SameSite=Strict`, `Secure` outside local http, and an
/// idle expiry that the guard pushes forward on each signed-in request.
fn session_layer(pg: sqlx::PgPool, settings: &Settings) -> SessionManagerLayer<PostgresStore> {
    let store = PostgresStore::new(pg)
        .with_schema_name("public")
        .and_then(|store| store.with_table_name("sessions"))
        .expect("constant identifiers are valid");
    let idle = time::Duration::try_from(settings.session_idle).unwrap_or(time::Duration::hours(8));
    SessionManagerLayer::new(store)
        .with_name(if settings.public_url.scheme() == "https" {
            SECURE_SESSION_COOKIE
        } else {
            SESSION_COOKIE
        })
        .with_http_only(true)
        .with_same_site(SameSite::Strict)
        .with_secure(settings.secure_cookies())
        .with_path("/")
        .with_expiry(Expiry::OnInactivity(idle))
}

/// Every route: health, history export, the console (SSR + server functions), static
/// files; all behind the session layer.
pub fn router(state: AppState, settings: &Settings) -> Router {
    let routes = generate_route_list(app::App);
    let options = state.leptos_options.clone();
    Router::new()
        .merge(crate::routes::health_routes())
        .merge(crate::routes::root_redirect())
        .merge(crate::routes::demo_receiver(settings.demo_receiver))
        .route(
            "/admin/history/export",
            axum::routing::get(app::history::export::export_handler),
        )
        .leptos_routes(&state, routes, move || app::shell(options.clone()))
        .fallback(crate::site::static_files(settings))
        .layer(axum::middleware::from_fn(no_store_for_the_console))
        // Inside the session layer: a plain form's post-redirect-get keeps its outcome there.
        .layer(axum::middleware::from_fn(app::server::plain_form::layer))
        .layer(session_layer(state.pg.clone(), settings))
        // Outside the session layer: loading and saving the session count too.
        .layer(axum::middleware::from_fn_with_state(
            (state.clone(), settings.deadlines.store),
            crate::deadline::store_deadline,
        ))
        // No console request comes near this; a bigger body is refused with 413 unread.
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            MAX_BODY_BYTES,
        ))
        .layer(flood_guard(settings))
        .layer(trace_layer())
        // After the console's layers: no session, no 256 KiB cap (they have their own).
        .merge(
            crate::routes::ingest_routes()
                .merge(crate::routes::cron_routes())
                .merge(crate::metrics::metrics_routes())
                .merge(crate::openapi::routes())
                .layer(flood_guard(settings))
                .layer(trace_layer()),
        )
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::metrics::count_requests,
        ))
        // Outermost: every response carries them, the ones the layers above make too (a
        // 503 when busy or a store is past its deadline, a 413, a 408).
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
        .layer(SetResponseHeaderLayer::if_not_present(
            header::HeaderName::from_static("permissions-policy"),
            HeaderValue::from_static(PERMISSIONS_POLICY),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::STRICT_TRANSPORT_SECURITY,
            settings
                .hsts()
                .then_some(HeaderValue::from_static("max-age=31536000")),
        ))
        .with_state(state)
}

/// Request logging with the method and the path only: a query string can hold a secret
/// (the first-admin link's `?token=`), so it is never logged, at any level.
/// Features no console page uses, switched off for it and anything it might embed.
pub const PERMISSIONS_POLICY: &str =
    "camera=(), microphone=(), geolocation=(), payment=(), usb=(), serial=(), \
     bluetooth=(), midi=(), display-capture=(), clipboard-write=(self)";

/// The policy of responses that are not console pages (JSON, downloads, errors): they
/// load nothing and may not be framed. Pages set their own, with a nonce.
pub const DEFAULT_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

/// `/admin/*` pages and `/api/*` server functions are never stored by a browser or a
/// proxy (they carry who is signed in and what they may see); the compiled site under
/// `/pkg` stays cacheable. Responses without a policy of their own get [`DEFAULT_CSP`].
async fn no_store_for_the_console(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let path = request.uri().path();
    let console = path == "/admin" || path.starts_with("/admin/") || path.starts_with("/api/");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    if console {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(DEFAULT_CSP),
        );
    }
    response
}

/// Bounds what a flood can cost: at most `SALVAGE_MAX_IN_FLIGHT` requests in hand at
/// once (the next gets 503 and `Retry-After` at once instead of queueing), a response
/// within `SALVAGE_REQUEST_TIMEOUT_SECS` (else 408), and a body that keeps arriving
/// (`SALVAGE_BODY_TIMEOUT_SECS` between chunks). Each call makes a new, separate limit:
/// the console's and the ingest routes' are counted apart, so a flood of one never
/// locks people out of the other.
fn flood_guard(
    settings: &Settings,
) -> impl tower::Layer<
    axum::routing::Route,
    Service = impl tower::Service<
        axum::http::Request<axum::body::Body>,
        Response = axum::response::Response,
        Error = std::convert::Infallible,
        Future = impl Send + 'static,
    > + Clone
                  + Send
                  + Sync
                  + 'static,
> + Clone
       + Send
       + Sync
       + 'static {
    use axum::error_handling::HandleErrorLayer;
    use axum::response::IntoResponse;
    tower::ServiceBuilder::new()
        .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
            (
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "1")],
                axum::Json(serde_json::json!({
                    "kind": "unavailable",
                    "message": "Salvage is handling as many requests as it takes at once; retry in a second.",
                })),
            )
                .into_response()
        }))
        .layer(tower::load_shed::LoadShedLayer::new())
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
            settings.max_in_flight,
        ))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            settings.deadlines.request,
        ))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            settings.deadlines.body,
        ))
}

type RequestTrace = TraceLayer<
    tower_http::classify::SharedClassifier<tower_http::classify::ServerErrorsAsFailures>,
    fn(&axum::http::Request<axum::body::Body>) -> tracing::Span,
>;

fn trace_layer() -> RequestTrace {
    TraceLayer::new_for_http().make_span_with(request_span as fn(&_) -> _)
}

fn request_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    tracing::debug_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
    )
}

/// The PostgreSQL migrations, as the schema's owner when one is configured, behind the
/// pre-upgrade backup the settings ask for (`SALVAGE_MIGRATE_BACKUP`).
pub async fn migrate_postgres(state: &AppState) -> Result<UpgradeReport, UpgradeError> {
    let report = upgrade::apply(
        state,
        &BackupPolicy::from_settings(state),
        &app::auth::ssr::Actor::system("upgrade"),
    )
    .await?;
    create_stanza(state).await;
    Ok(report)
}

/// Makes pgBackRest's stanza when archiving is set up (a no-op when it exists and
/// matches the cluster). A failure is logged, not fatal: the archive's alerts say what
/// is wrong while the console serves.
async fn create_stanza(state: &AppState) {
    let Some(pitr) = &state.backups().pitr else {
        return;
    };
    match app::backups::ssr::pitr::PgBackRest::new(pitr)
        .stanza_create()
        .await
    {
        Ok(()) => tracing::info!(stanza = %pitr.stanza, "pgBackRest stanza ready"),
        Err(error) => {
            tracing::warn!(stanza = %pitr.stanza, %error, "pgBackRest stanza not ready")
        }
    }
}

/// Says what an upgrade did, in the log.
pub fn log_upgrade(report: &UpgradeReport) {
    use upgrade::UpgradeBackup;
    if report.applied.is_empty() {
        return;
    }
    match &report.backup {
        UpgradeBackup::Taken { backup_id, .. } => tracing::info!(
            from = report.from_version,
            to = report.to_version,
            backup_id,
            "schema upgraded after pre-upgrade backup {backup_id}"
        ),
        UpgradeBackup::Skipped { reason } => tracing::warn!(
            from = report.from_version,
            to = report.to_version,
            "schema upgraded without a backup: {reason}"
        ),
        _ => tracing::info!(to = report.to_version, "schema created"),
    }
}

/// Applies the PostgreSQL migrations and the ClickHouse DDL once; fails on the first
/// store that refuses.
pub async fn migrate(state: &AppState) -> anyhow::Result<()> {
    migrate_postgres(state)
        .await
        .context("Failed to apply the PostgreSQL migrations")?;
    state
        .clickhouse
        .migrate()
        .await
        .context("Failed to apply the ClickHouse schema")?;
    Ok(())
}

/// What follows the PostgreSQL migrations: every job of the registry gets its
/// `cron_jobs` row, and `CRON_SECRET` becomes the first cron secret if there is none.
pub async fn after_postgres_migrated(
    state: &AppState,
    cron_secret: Option<&secrecy::SecretString>,
) -> anyhow::Result<()> {
    let now = state.clock.now();
    app::jobs::ssr::records::register_jobs(&state.pg, state.jobs(), now)
        .await
        .context("Failed to register the cron jobs")?;
    app::migrations::ssr::store::register(state)
        .await
        .context("Failed to register the background migrations")?;
    let resealed = app::dead_letters::ssr::endpoints::reseal(
        &state.pg,
        &state.webhooks().secret_keys,
        &app::auth::ssr::Actor::system("start-up"),
    )
    .await
    .map_err(|error| anyhow::anyhow!("{error}"))
    .context("Failed to seal the webhooks' signing secrets")?;
    if resealed > 0 {
        tracing::info!(
            resealed,
            "webhook signing secrets sealed under the current key"
        );
    }
    if let Some(secret) = cron_secret {
        if let Some(id) = app::crons::ssr::secrets::import_from_environment(&state.pg, secret, now)
            .await
            .context("Failed to store CRON_SECRET as the first cron secret")?
        {
            tracing::info!(secret_id = id, "CRON_SECRET is now cron secret #{id}");
        }
    }
    Ok(())
}

/// Runs `work` as a task the process owns: `salvage serve` waits for it on shutdown,
/// and it stops as soon as the shutdown token is cancelled.
fn spawn_owned(state: &AppState, work: impl Future<Output = ()> + Send + 'static) {
    let shutdown = state.shutdown.clone();
    state.tasks.spawn(async move {
        tokio::select! {
            () = work => {}
            () = shutdown.cancelled() => {}
        }
    });
}

/// Applies the schema at start-up, retrying in the background while a store is down, so
/// that Salvage comes up during an outage and finishes its schema when the store returns.
/// Internal (not a job): it runs once per start and ends when both stores took it.
pub fn spawn_schema_task(state: AppState, cron_secret: Option<secrecy::SecretString>) {
    spawn_owned(&state.clone(), async move {
        let mut delay = Duration::from_secs(1);
        let (mut pg_done, mut ch_done) = (false, false);
        loop {
            if !pg_done {
                let migrated = match migrate_postgres(&state).await {
                    Ok(report) => {
                        log_upgrade(&report);
                        after_postgres_migrated(&state, cron_secret.as_ref()).await
                    }
                    Err(error) => Err(error.into()),
                };
                match migrated {
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
    });
}

/// Prints the one-time link that creates the first admin, once PostgreSQL answers and
/// only while no account exists. The token is printed here and nowhere else (not logged).
/// Internal (not a job): it runs once per start.
pub fn spawn_setup_link_task(state: AppState, public_url: url::Url) {
    spawn_owned(&state.clone(), async move {
        let mut delay = Duration::from_secs(1);
        loop {
            match app::auth::ssr::issue_setup_token(&state.pg, state.clock.now()).await {
                Ok(Some(token)) => {
                    let link = public_url
                        .join(&format!("admin/setup?token={token}"))
                        .map(|url| url.to_string())
                        .unwrap_or_default();
                    println!(
                        "\nNo account exists yet. Create the first admin (link works once, for {} h):\n  {link}\n",
                        app::auth::ssr::SETUP_LINK_HOURS
                    );
                    return;
                }
                Ok(None) => return,
                Err(error) => {
                    tracing::debug!(%error, "setup link not issued yet; retrying");
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(30));
        }
    });
}

/// Deletes expired sessions every ten minutes. Internal (not a job): an expired session
/// is refused when it is read whether or not it was deleted, so a missed cleanup only
/// lets the table grow a little; nobody needs to be told.
pub fn spawn_session_cleanup(state: AppState) {
    spawn_owned(&state.clone(), async move {
        let mut tick = tokio::time::interval(Duration::from_secs(600));
        loop {
            tick.tick().await;
            if let Err(error) = sqlx::query!("delete from sessions where expiry_date < now()")
                .execute(&state.pg)
                .await
            {
                tracing::debug!(%error, "expired sessions not deleted this time");
            }
        }
    });
}

/// Adds this process's ingest key usage to PostgreSQL every few seconds, prunes it
/// hourly, and flushes once more on shutdown. Internal: a missed flush keeps its counts
/// for the next one.
pub fn spawn_key_usage(state: AppState) {
    let usage = state.key_usage().clone();
    let shutdown = state.shutdown.clone();
    state.tasks.spawn(async move {
        let mut tick = tokio::time::interval(app::ingest_keys::usage::FLUSH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pruned: Option<std::time::Instant> = None;
        loop {
            let stopping = tokio::select! {
                _ = tick.tick() => false,
                () = shutdown.cancelled() => true,
            };
            if let Err(error) = usage.flush(&state.pg).await {
                tracing::debug!(%error, "ingest key usage not flushed this time");
            }
            if stopping {
                break;
            }
            if pruned.is_none_or(|at| at.elapsed() > Duration::from_secs(3600)) {
                match app::ingest_keys::usage::prune(&state.pg, state.clock.now()).await {
                    Ok(_) => pruned = Some(std::time::Instant::now()),
                    Err(error) => tracing::debug!(%error, "ingest key usage not pruned"),
                }
            }
        }
    });
}

/// Copies the history's head to ClickHouse every couple of seconds when it moved (see
/// `app::history::anchor`). Internal: a missed anchor only widens the window a
/// truncation could go unnoticed in, and the next tick catches up.
pub fn spawn_history_anchoring(state: AppState) {
    spawn_owned(&state.clone(), async move {
        let mut tick = tokio::time::interval(app::history::anchor::ANCHOR_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = None;
        loop {
            tick.tick().await;
            match app::history::anchor::anchor_head(&state.pg, &state.clickhouse, last).await {
                Ok(anchored) => last = Some(anchored),
                Err(error) => {
                    last = None;
                    tracing::debug!(%error, "history head not anchored this time");
                }
            }
        }
    });
}

/// Probes PostgreSQL every 5 s, so the pages can say since when it is down and the
/// self-monitor can record the outage once it is over (see `app::alerts::ssr::outage`).
pub fn spawn_postgres_watch(state: AppState) {
    let watched = state.clone();
    spawn_owned(
        &state,
        app::server::watch::watch(watched, Duration::from_secs(5)),
    );
}

/// Samples the queue depths for the charts every five minutes (replay runs sample too).
/// Internal (not a job): a missed sample only thins a chart, and a stopped sampler
/// shows on the chart itself.
pub fn spawn_depth_sampler(state: AppState) {
    spawn_owned(&state.clone(), async move {
        let mut tick = tokio::time::interval(Duration::from_secs(300));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(error) =
                app::queues::ssr::stats::sample_depths(&state.pg, state.clock.now()).await
            {
                tracing::debug!(%error, "queue depth not sampled this time");
            }
        }
    });
}
