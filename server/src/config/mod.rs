//! Settings, read once at start-up from the environment (and `.env`).
//!
//! - `mod.rs` (here): [`Settings`] and the settings every part shares, read in README's
//!   order.
//! - `env`: reading one variable (present, a bounded number, on/off) with the sentence
//!   that names it when it is wrong.
//! - `features`: the settings of the webhook deliveries and of background migrations
//!   and upgrades.
//!
//! A missing or malformed variable stops start-up with one line that names it. Secrets
//! (the PostgreSQL URL, which usually embeds a password, and the ClickHouse password) are
//! held in [`SecretString`]s: they never appear in `Debug` output or in logs, and an
//! error about them never repeats their value.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use app::crons::ssr::CronSettings;
use app::queues::ssr::QueueSettings;
use app::server::client::TrustedProxies;
use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::PgConnectOptions;
use url::Url;

pub mod deadlines;
mod env;
mod features;

use env::Env;

/// Everything Salvage needs to know to start.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `DATABASE_URL`: the PostgreSQL connection URL (a secret), as the role Salvage does
    /// its everyday work as.
    pub database_url: SecretString,
    /// `SALVAGE_MIGRATE_DATABASE_URL` (a secret, optional): the same database as the role
    /// that owns the schema. When set, migrations run as it and `DATABASE_URL`'s role is
    /// granted only what it needs (no UPDATE, DELETE or TRUNCATE on the history).
    pub migrate_database_url: Option<SecretString>,
    /// ClickHouse connection settings.
    pub clickhouse: ClickHouseSettings,
    /// `SALVAGE_ADDR`: where the HTTP server listens. Default `127.0.0.1:3000`.
    pub addr: SocketAddr,
    /// `SALVAGE_PUBLIC_URL`: the address people and schedulers reach Salvage at.
    /// Default: `http://` + `SALVAGE_ADDR`.
    pub public_url: Url,
    /// `LEPTOS_SITE_ROOT`: serve the compiled site from this folder instead of the copy
    /// embedded in the binary. Unset: the embedded site (or `target/site` when the binary
    /// was built without one).
    pub site_root: Option<String>,
    /// `SALVAGE_PROBE_TIMEOUT_MS`: how long a health probe waits. Default 2000 ms.
    pub probe_timeout: Duration,
    /// `SALVAGE_SESSION_IDLE_MINUTES`: a session without a request for this long
    /// expires. Default 480 (8 h).
    pub session_idle: Duration,
    /// `SALVAGE_SESSION_MAX_HOURS`: a session ends this long after sign-in however active
    /// it is. Default 24.
    pub session_max: Duration,
    /// `SALVAGE_TRUSTED_PROXIES`: comma-separated addresses or networks of the load
    /// balancers in front of Salvage; only their `X-Forwarded-For` is believed. Default
    /// none (the connection's peer is the client).
    pub trusted_proxies: TrustedProxies,
    /// `SALVAGE_ARGON2_PERMITS`: password checks that may run at once (each holds
    /// 19 MiB). Default one per core.
    pub password_permits: usize,
    /// `SALVAGE_ARGON2_WAIT_MS`: how long a sign-in waits for a free permit before 503.
    /// Default 1000.
    pub password_wait: Duration,
    /// The time limits of requests and of the store calls under them.
    pub deadlines: deadlines::Deadlines,
    /// How this process names its PostgreSQL sessions (`pg_stat_activity`): `salvage`,
    /// or `salvage-recover` for a recovery, which looks for consoles by that name.
    pub application_name: &'static str,
    /// `SALVAGE_MAX_IN_FLIGHT`: requests handled at once by the console and, separately,
    /// by the ingest and cron routes; beyond it, 503 with `Retry-After` at once. Default 512.
    pub max_in_flight: usize,
    /// `SALVAGE_HEALTH_TOKEN` (a secret, 16+ characters): presented as a bearer token,
    /// it shows the health answers' full details to a monitor that does not sign in.
    pub health_token: Option<SecretString>,
    /// `SALVAGE_METRICS_TOKEN` (a secret, 16+ characters): when set, `/metrics` answers
    /// only a scraper presenting it as a bearer token (401 otherwise).
    pub metrics_token: Option<SecretString>,
    /// `SALVAGE_SHUTDOWN_GRACE_SECS`: on SIGTERM or Ctrl-C, how long `salvage serve`
    /// waits for in-flight requests and running jobs to stop. Default 30.
    pub shutdown_grace: Duration,
    /// `SALVAGE_FALLBACK_TTL_HOURS` (default 168), `SALVAGE_REPLAY_BATCH` (20000),
    /// `SALVAGE_REPLAY_BUDGET_SECS` (240), `SALVAGE_INGEST_TIMEOUT_MS` (5000).
    pub queues: QueueSettings,
    /// `CRON_SECRET` (16+ characters): becomes the first cron secret when PostgreSQL holds
    /// none. Read on first start only; rotate in the console or with
    /// `salvage cron-secret rotate` after that.
    pub cron_secret: Option<SecretString>,
    /// The cron plane: `SALVAGE_SCHEDULER`, `SALVAGE_CRON_RETENTION_DAYS`,
    /// `SALVAGE_CRON_MIN_FIRE_RATE`, `SALVAGE_CRON_<JOB>`.
    pub crons: CronSettings,
    /// The alerts' thresholds: `SALVAGE_ALERT_QUEUE_WARNING_ROWS` (1,000),
    /// `SALVAGE_ALERT_QUEUE_CRITICAL_ROWS` (100,000), `SALVAGE_ALERT_QUEUE_AGE_WARNING_PCT`
    /// (50), `SALVAGE_ALERT_QUEUE_AGE_CRITICAL_PCT` (85), `SALVAGE_ALERT_RECOVER_EVALUATIONS`
    /// (2), `SALVAGE_ALERT_FLAP_CHANGES` (4), `SALVAGE_ALERT_FLAP_WINDOW_MINUTES` (30).
    pub alerts: app::alerts::ssr::AlertSettings,
    /// Backups: `SALVAGE_BACKUP_DIR` (default `.stores/backups`) or `SALVAGE_BACKUP_URL`
    /// (`s3://bucket/prefix`, with the `AWS_*` variables), each store's schedule and
    /// retention (`SALVAGE_BACKUP_SCHEDULE_<STORE>`, `SALVAGE_BACKUP_KEEP[_<STORE>]`),
    /// `SALVAGE_RPO_POSTGRES_HOURS` and `SALVAGE_RPO_CLICKHOUSE_HOURS` (24),
    /// `SALVAGE_PG_BIN_DIR` (where `pg_dump` and `pg_restore` are; default the `PATH`).
    pub backups: app::backups::ssr::BackupSettings,
    /// Drills: the defaults (RTO 1 h; the janitor drops what a dead drill left after 1 h).
    pub drills: app::drills::ssr::DrillSettings,
    /// Webhook deliveries: `SALVAGE_WEBHOOK_TIMEOUT_SECS` (10),
    /// `SALVAGE_WEBHOOK_ALLOW_PRIVATE` (off), `SALVAGE_WEBHOOK_EVENT_TYPES` (a comma list),
    /// `SALVAGE_WEBHOOK_BREAKER_FAILURES` (10), `SALVAGE_DLQ_RETENTION_DAYS` (30),
    /// `SALVAGE_REDRIVE_RATE` (200 per endpoint per second),
    /// `SALVAGE_ALERT_WEBHOOK_BACKLOG_ROWS` (100), `SALVAGE_ALERT_DLQ_PER_HOUR` (50).
    pub webhooks: app::dead_letters::ssr::WebhookSettings,
    /// `SALVAGE_DEMO_RECEIVER` (seconds, `make run` sets 180): serve a webhook receiver
    /// for the demo at `/demo/webhook-receiver/<name>`. `flaky` answers 503 for that many
    /// seconds after start, then 200; `down` always 503; anything else 200. Off by default.
    pub demo_receiver: Option<u64>,
    /// Background migrations and upgrades: `SALVAGE_MIGRATION_CHUNK_ROWS` (1,000),
    /// `SALVAGE_MIGRATION_CHUNK_PAUSE_MS` (0), `SALVAGE_MIGRATE_BACKUP` (on: a PostgreSQL backup before schema migrations).
    pub migrations: app::migrations::ssr::MigrationSettings,
}

/// `CLICKHOUSE_*`.
#[derive(Debug, Clone)]
pub struct ClickHouseSettings {
    /// `CLICKHOUSE_URL`: the HTTP interface, e.g. `http://127.0.0.1:8123`.
    pub url: Url,
    /// `CLICKHOUSE_DATABASE`: the database holding `requests` and `events`. Default
    /// `salvage`.
    pub database: String,
    /// `CLICKHOUSE_USER`. Default `default`.
    pub user: String,
    /// `CLICKHOUSE_PASSWORD` (a secret). Default empty.
    pub password: SecretString,
    /// `CLICKHOUSE_CLUSTER` (none: one server), `CLICKHOUSE_REQUESTS_TABLE` (`requests`)
    /// and `CLICKHOUSE_EVENTS_TABLE` (`events`).
    pub layout: app::server::clickhouse::Layout,
}

/// Why the settings could not be read. Its `Display` is the one line start-up prints.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("configuration: {0} is not set")]
    Missing(&'static str),
    #[error("configuration: {name} is malformed: {reason}")]
    Malformed { name: &'static str, reason: String },
}

impl Settings {
    /// Reads the process environment. Call `dotenvy::dotenv()` first to include `.env`;
    /// variables already in the environment win over the file.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup`, so tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env::new(&lookup);
        let get = |name: &'static str| env.get(name);
        let require = |name: &'static str| get(name).ok_or(ConfigError::Missing(name));

        let database_url = require("DATABASE_URL")?;
        parse_database_url("DATABASE_URL", &database_url)?;
        let migrate_database_url = match get("SALVAGE_MIGRATE_DATABASE_URL") {
            None => None,
            Some(owner) => {
                parse_database_url("SALVAGE_MIGRATE_DATABASE_URL", &owner)?;
                if database_of(&owner) != database_of(&database_url) {
                    return Err(ConfigError::Malformed {
                        name: "SALVAGE_MIGRATE_DATABASE_URL",
                        reason: "it must name the same host, port and database as DATABASE_URL \
                                 (only the role differs)"
                            .into(),
                    });
                }
                Some(SecretString::from(owner))
            }
        };

        let clickhouse_url = parse_http_url("CLICKHOUSE_URL", &require("CLICKHOUSE_URL")?)?;
        let database = get("CLICKHOUSE_DATABASE").unwrap_or_else(|| "salvage".to_owned());
        let identifier = |name: &'static str, value: String| {
            if app::server::clickhouse::is_valid_identifier(&value) {
                Ok(value)
            } else {
                Err(ConfigError::Malformed {
                    name,
                    reason: "use letters, digits and underscores, not starting with a digit".into(),
                })
            }
        };
        let database = identifier("CLICKHOUSE_DATABASE", database)?;
        let layout = app::server::clickhouse::Layout {
            cluster: get("CLICKHOUSE_CLUSTER")
                .map(|c| identifier("CLICKHOUSE_CLUSTER", c))
                .transpose()?,
            requests: identifier(
                "CLICKHOUSE_REQUESTS_TABLE",
                get("CLICKHOUSE_REQUESTS_TABLE").unwrap_or_else(|| "requests".to_owned()),
            )?,
            events: identifier(
                "CLICKHOUSE_EVENTS_TABLE",
                get("CLICKHOUSE_EVENTS_TABLE").unwrap_or_else(|| "events".to_owned()),
            )?,
        };
        let reserved = |t: &str| {
            t == "history_anchors"
                || t.ends_with(app::server::clickhouse::LOCAL_SUFFIX)
                || t.contains("__")
        };
        if layout.requests == layout.events
            || reserved(&layout.requests)
            || reserved(&layout.events)
        {
            return Err(ConfigError::Malformed {
                name: if reserved(&layout.events) && !reserved(&layout.requests) {
                    "CLICKHOUSE_EVENTS_TABLE"
                } else {
                    "CLICKHOUSE_REQUESTS_TABLE"
                },
                reason: "the requests and events tables need two different names, neither \
                         `history_anchors`, ending in `_local` nor holding `__` (Salvage's own \
                         tables and its restores' staging tables use those)"
                    .into(),
            });
        }

        let addr = match get("SALVAGE_ADDR") {
            Some(value) => value.parse().map_err(|_| ConfigError::Malformed {
                name: "SALVAGE_ADDR",
                reason: format!("{value:?} is not an address like 127.0.0.1:3000"),
            })?,
            None => SocketAddr::from(([127, 0, 0, 1], 3000)),
        };
        let public_url = match get("SALVAGE_PUBLIC_URL") {
            Some(value) => parse_http_url("SALVAGE_PUBLIC_URL", &value)?,
            None => {
                Url::parse(&format!("http://{addr}")).map_err(|error| ConfigError::Malformed {
                    name: "SALVAGE_ADDR",
                    reason: error.to_string(),
                })?
            }
        };
        let bounded = |name: &'static str,
                       range: std::ops::RangeInclusive<u64>,
                       unit: &str,
                       default: u64| env.bounded(name, range, unit, default);
        let probe_timeout = Duration::from_millis(bounded(
            "SALVAGE_PROBE_TIMEOUT_MS",
            50..=60_000,
            "milliseconds",
            2000,
        )?);
        let session_idle = Duration::from_secs(
            60 * bounded(
                "SALVAGE_SESSION_IDLE_MINUTES",
                1..=7 * 24 * 60,
                "minutes",
                8 * 60,
            )?,
        );
        let session_max = Duration::from_secs(
            3600 * bounded("SALVAGE_SESSION_MAX_HOURS", 1..=24 * 30, "hours", 24)?,
        );
        let trusted_proxies = TrustedProxies::parse(
            &get("SALVAGE_TRUSTED_PROXIES").unwrap_or_default(),
        )
        .map_err(|reason| ConfigError::Malformed {
            name: "SALVAGE_TRUSTED_PROXIES",
            reason: reason.to_string(),
        })?;
        let password_permits = bounded(
            "SALVAGE_ARGON2_PERMITS",
            1..=256,
            "checks",
            app::auth::ssr::default_password_permits() as u64,
        )? as usize;
        let password_wait = Duration::from_millis(bounded(
            "SALVAGE_ARGON2_WAIT_MS",
            10..=60_000,
            "milliseconds",
            1000,
        )?);
        let max_in_flight =
            bounded("SALVAGE_MAX_IN_FLIGHT", 8..=100_000, "requests", 512)? as usize;
        let health_token = bearer_token("SALVAGE_HEALTH_TOKEN", get("SALVAGE_HEALTH_TOKEN"))?;
        let metrics_token = bearer_token("SALVAGE_METRICS_TOKEN", get("SALVAGE_METRICS_TOKEN"))?;
        let queues = QueueSettings {
            ttl: Duration::from_secs(
                3600 * bounded("SALVAGE_FALLBACK_TTL_HOURS", 1..=24 * 365, "hours", 7 * 24)?,
            ),
            replay_batch: bounded(
                "SALVAGE_REPLAY_BATCH",
                app::queues::ssr::replay::BATCH_RANGE,
                "rows",
                app::queues::ssr::replay::DEFAULT_BATCH as u64,
            )? as i64,
            replay_budget: Duration::from_secs(bounded(
                "SALVAGE_REPLAY_BUDGET_SECS",
                5..=3600,
                "seconds",
                240,
            )?),
            ingest_timeout: Duration::from_millis(bounded(
                "SALVAGE_INGEST_TIMEOUT_MS",
                100..=60_000,
                "milliseconds",
                5000,
            )?),
            per_key_quota: bounded(
                "SALVAGE_QUEUE_QUOTA_PER_KEY",
                1..=1_000_000_000,
                "rows",
                1_000_000,
            )? as i64,
            total_cap: bounded("SALVAGE_QUEUE_CAP", 1..=10_000_000_000, "rows", 10_000_000)? as i64,
            ..QueueSettings::default()
        };
        let cron_secret = match get("CRON_SECRET") {
            Some(secret) if secret.trim().len() < app::crons::ssr::secrets::MIN_ENV_LEN => {
                return Err(ConfigError::Malformed {
                    name: "CRON_SECRET",
                    reason: "use at least 16 characters (e.g. `openssl rand -hex 32`)".into(),
                })
            }
            Some(secret) => Some(SecretString::from(secret.trim().to_owned())),
            None => None,
        };

        let scheduler = env.switch("SALVAGE_SCHEDULER", true)?;
        let mut overrides = std::collections::HashMap::new();
        for job in app::registry::JOBS {
            let name = format!("SALVAGE_CRON_{}", job.name.replace('-', "_").to_uppercase());
            if let Some(value) = lookup(&name).filter(|v| !v.trim().is_empty()) {
                let schedule = app::jobs::schedule::Schedule::parse(&value).map_err(|reason| {
                    ConfigError::Malformed {
                        name: Box::leak(name.into_boxed_str()),
                        reason: reason.to_string(),
                    }
                })?;
                overrides.insert(job.name.to_owned(), schedule);
            }
        }
        let crons = CronSettings {
            scheduler,
            retention: Duration::from_secs(
                86_400 * bounded("SALVAGE_CRON_RETENTION_DAYS", 1..=3650, "days", 90)?,
            ),
            min_fire_rate: bounded("SALVAGE_CRON_MIN_FIRE_RATE", 1..=100, "percent", 80)? as f64,
            overrides,
        };

        let alerts = app::alerts::ssr::AlertSettings {
            queue_warning_rows: bounded(
                "SALVAGE_ALERT_QUEUE_WARNING_ROWS",
                1..=1_000_000_000,
                "rows",
                1_000,
            )? as i64,
            queue_critical_rows: bounded(
                "SALVAGE_ALERT_QUEUE_CRITICAL_ROWS",
                1..=1_000_000_000,
                "rows",
                100_000,
            )? as i64,
            queue_age_warning_pct: bounded(
                "SALVAGE_ALERT_QUEUE_AGE_WARNING_PCT",
                1..=100,
                "percent",
                50,
            )? as f64,
            queue_age_critical_pct: bounded(
                "SALVAGE_ALERT_QUEUE_AGE_CRITICAL_PCT",
                1..=100,
                "percent",
                85,
            )? as f64,
            recover_evaluations: bounded(
                "SALVAGE_ALERT_RECOVER_EVALUATIONS",
                1..=100,
                "evaluations",
                2,
            )? as i32,
            flap_changes: bounded("SALVAGE_ALERT_FLAP_CHANGES", 2..=1000, "changes", 4)? as i64,
            flap_window: Duration::from_secs(
                60 * bounded("SALVAGE_ALERT_FLAP_WINDOW_MINUTES", 1..=1440, "minutes", 30)?,
            ),
            ..app::alerts::ssr::AlertSettings::default()
        };

        let mut backups = app::backups::ssr::BackupSettings::with_defaults(
            SecretString::from(database_url.clone()),
            migrate_database_url.clone(),
        );
        if let Some(dir) = get("SALVAGE_BACKUP_DIR") {
            backups.storage = app::backups::ssr::Storage::Directory(dir.trim().into());
        }
        if let Some(url) = get("SALVAGE_BACKUP_URL") {
            let bucket =
                app::backups::ssr::storage::Bucket::new(url.trim(), &[]).map_err(|reason| {
                    ConfigError::Malformed {
                        name: "SALVAGE_BACKUP_URL",
                        reason: reason.to_string(),
                    }
                })?;
            backups.storage = app::backups::ssr::Storage::Bucket(bucket);
        }
        backups.policy_postgres = features::backup_policy(&env, app::backups::StoreKind::Postgres)?;
        backups.policy_clickhouse =
            features::backup_policy(&env, app::backups::StoreKind::Clickhouse)?;
        backups.rpo_postgres = Duration::from_secs(
            3600 * bounded("SALVAGE_RPO_POSTGRES_HOURS", 1..=8760, "hours", 24)?,
        );
        backups.rpo_clickhouse = Duration::from_secs(
            3600 * bounded("SALVAGE_RPO_CLICKHOUSE_HOURS", 1..=8760, "hours", 24)?,
        );
        backups.pg_bin_dir = get("SALVAGE_PG_BIN_DIR").map(|dir| dir.trim().into());
        backups.signing_keys = features::key_ring(&env, "SALVAGE_BACKUP_SIGNING_KEYS")?;
        backups.encryption = get("SALVAGE_BACKUP_AGE_IDENTITY")
            .map(|secret| {
                app::backups::ssr::encryption::Encryption::parse(&secret).map_err(|reason| {
                    ConfigError::Malformed {
                        name: "SALVAGE_BACKUP_AGE_IDENTITY",
                        reason,
                    }
                })
            })
            .transpose()?;
        backups.pitr = features::pitr(&env)?;

        let webhooks = features::webhooks(&env)?;
        let demo_receiver = features::demo_receiver(&env)?;
        let migrations = features::migrations(&env)?;

        Ok(Self {
            migrations,
            demo_receiver,
            webhooks,
            alerts,
            backups,
            drills: app::drills::ssr::DrillSettings {
                pitr: env.switch("SALVAGE_DRILL_PITR", true)?,
                trend_floor: Duration::from_secs(env.bounded(
                    "SALVAGE_DRILL_TREND_FLOOR_SECS",
                    0..=86_400,
                    "seconds",
                    60,
                )?),
                ..Default::default()
            },
            database_url: SecretString::from(database_url),
            migrate_database_url,
            clickhouse: ClickHouseSettings {
                url: clickhouse_url,
                database,
                user: get("CLICKHOUSE_USER").unwrap_or_else(|| "default".to_owned()),
                password: SecretString::from(lookup("CLICKHOUSE_PASSWORD").unwrap_or_default()),
                layout,
            },
            addr,
            public_url,
            site_root: get("LEPTOS_SITE_ROOT"),
            probe_timeout,
            session_idle,
            session_max,
            trusted_proxies,
            password_permits,
            password_wait,
            health_token,
            metrics_token,
            deadlines: deadlines::deadlines(&env)?,
            application_name: "salvage",
            max_in_flight,
            shutdown_grace: Duration::from_secs(bounded(
                "SALVAGE_SHUTDOWN_GRACE_SECS",
                1..=600,
                "seconds",
                30,
            )?),
            queues,
            cron_secret,
            crons,
        })
    }

    /// The public origin (`scheme://host[:port]`) that server-function calls must come from.
    pub fn public_origin(&self) -> String {
        self.public_url.origin().ascii_serialization()
    }

    /// Session cookies are `Secure` unless the console is plain http on this machine
    /// (local development and tests): a browser would not send them back otherwise.
    pub fn secure_cookies(&self) -> bool {
        let local = matches!(
            self.public_url.host(),
            Some(url::Host::Domain("localhost"))
                | Some(url::Host::Ipv4(std::net::Ipv4Addr::LOCALHOST))
                | Some(url::Host::Ipv6(std::net::Ipv6Addr::LOCALHOST))
        );
        !(self.public_url.scheme() == "http" && local)
    }

    /// Whether browsers are told to use https only (`Strict-Transport-Security`): when
    /// the public URL is https.
    pub fn hsts(&self) -> bool {
        self.public_url.scheme() == "https"
    }

    /// The schema's owner (`SALVAGE_MIGRATE_DATABASE_URL`), if it is set.
    pub fn schema_owner(
        &self,
        acquire_timeout: Duration,
    ) -> Option<app::server::postgres::SchemaOwner> {
        let url = self.migrate_database_url.as_ref()?;
        let options = PgConnectOptions::from_str(url.expose_secret())
            .expect("SALVAGE_MIGRATE_DATABASE_URL was validated when the settings were read")
            .application_name("salvage-owner");
        let app_role = self.pg_connect_options().get_username().to_owned();
        Some(app::server::postgres::SchemaOwner::new(
            options,
            app_role,
            acquire_timeout,
        ))
    }

    /// The PostgreSQL connection options (the URL was validated when read), with the
    /// statement timeout of [`deadlines::Deadlines::statement`].
    pub fn pg_connect_options(&self) -> PgConnectOptions {
        PgConnectOptions::from_str(self.database_url.expose_secret())
            .expect("DATABASE_URL was validated when the settings were read")
            .application_name(self.application_name)
            .options([(
                "statement_timeout",
                format!("{}s", self.deadlines.statement.as_secs()),
            )])
    }

    /// A ClickHouse client for these settings but another database (tests, drills).
    pub fn clickhouse_client_for(&self, database: &str) -> app::server::clickhouse::ClickHouse {
        let mut settings = self.clone();
        settings.clickhouse.database = database.to_owned();
        settings.clickhouse_client()
    }

    /// The ClickHouse client for these settings.
    pub fn clickhouse_client(&self) -> app::server::clickhouse::ClickHouse {
        app::server::clickhouse::ClickHouse::new(
            self.clickhouse.url.as_str().trim_end_matches('/'),
            &self.clickhouse.user,
            &self.clickhouse.password,
            &self.clickhouse.database,
        )
        .with_layout(self.clickhouse.layout.clone())
    }
}

/// Checks the PostgreSQL URL without ever echoing it: it may hold a password.
/// The host, port and database a validated PostgreSQL URL points at.
fn database_of(value: &str) -> Option<(String, u16, String)> {
    let options = PgConnectOptions::from_str(value).ok()?;
    Some((
        options.get_host().to_owned(),
        options.get_port(),
        options.get_database().unwrap_or_default().to_owned(),
    ))
}

fn parse_database_url(name: &'static str, value: &str) -> Result<(), ConfigError> {
    let malformed = |reason: &str| ConfigError::Malformed {
        name,
        reason: reason.to_owned(),
    };
    let url = Url::parse(value)
        .map_err(|_| malformed("expected postgres://user:password@host:port/database"))?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err(malformed("the scheme must be postgres:// or postgresql://"));
    }
    PgConnectOptions::from_str(value)
        .map_err(|_| malformed("expected postgres://user:password@host:port/database"))?;
    Ok(())
}

fn parse_http_url(name: &'static str, value: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(value).map_err(|_| ConfigError::Malformed {
        name,
        reason: "expected a URL like http://127.0.0.1:8123".into(),
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(ConfigError::Malformed {
            name,
            reason: "expected an http:// or https:// URL with a host".into(),
        });
    }
    Ok(url)
}

/// A bearer token setting: absent, or at least 16 characters (trimmed).
fn bearer_token(
    name: &'static str,
    value: Option<String>,
) -> Result<Option<SecretString>, ConfigError> {
    match value {
        Some(token) if token.trim().len() < 16 => Err(ConfigError::Malformed {
            name,
            reason: "use at least 16 characters (e.g. `openssl rand -hex 32`)".into(),
        }),
        Some(token) => Ok(Some(SecretString::from(token.trim().to_owned()))),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests;
