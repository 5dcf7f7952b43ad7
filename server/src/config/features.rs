//! The settings of each store's backup policy (`SALVAGE_BACKUP_SCHEDULE_*`,
//! `SALVAGE_BACKUP_KEEP*`), of the webhook deliveries (`SALVAGE_WEBHOOK_*`, `SALVAGE_DLQ_*`,
//! `SALVAGE_REDRIVE_RATE`, their alert thresholds, the demo receiver) and of background
//! migrations and upgrades (`SALVAGE_MIGRATION_*`, `SALVAGE_MIGRATE_BACKUP`).

use std::time::Duration;

use super::{ConfigError, Env};

pub(super) fn webhooks(env: &Env) -> Result<app::dead_letters::ssr::WebhookSettings, ConfigError> {
    let mut webhooks = app::dead_letters::ssr::WebhookSettings {
        timeout: Duration::from_secs(env.bounded(
            "SALVAGE_WEBHOOK_TIMEOUT_SECS",
            1..=120,
            "seconds",
            10,
        )?),
        allow_private: env.switch("SALVAGE_WEBHOOK_ALLOW_PRIVATE", false)?,
        breaker_failures: env.bounded(
            "SALVAGE_WEBHOOK_BREAKER_FAILURES",
            1..=10_000,
            "failures",
            10,
        )? as i32,
        retention: Duration::from_secs(
            86_400 * env.bounded("SALVAGE_DLQ_RETENTION_DAYS", 4..=3650, "days", 30)?,
        ),
        redrive_rate: env.bounded("SALVAGE_REDRIVE_RATE", 1..=100_000, "per second", 200)? as u32,
        backlog_rows: env.bounded(
            "SALVAGE_ALERT_WEBHOOK_BACKLOG_ROWS",
            1..=100_000_000,
            "rows",
            100,
        )? as i64,
        dlq_growing_per_hour: env.bounded(
            "SALVAGE_ALERT_DLQ_PER_HOUR",
            1..=100_000_000,
            "per hour",
            50,
        )? as i64,
        dlq_count_high: env.bounded(
            "SALVAGE_ALERT_DLQ_COUNT",
            1..=100_000_000,
            "dead letters",
            1000,
        )? as i64,
        ..Default::default()
    };
    webhooks.secret_keys = key_ring(env, "SALVAGE_WEBHOOK_SECRET_KEYS")?;
    if let Some(list) = env.get("SALVAGE_WEBHOOK_EVENT_TYPES") {
        let types: Vec<String> = list
            .split(',')
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .collect();
        let valid = |t: &String| {
            t.len() <= 100
                && t.contains('.')
                && t.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '_')
        };
        if types.is_empty() || !types.iter().all(valid) {
            return Err(ConfigError::Malformed {
                name: "SALVAGE_WEBHOOK_EVENT_TYPES",
                reason: "expected names such as order.paid, separated by commas".into(),
            });
        }
        webhooks.event_types = types;
    }
    Ok(webhooks)
}

/// A ring of `id:base64` keys (see `app::server::sealed::KeyRing`); unset, empty.
pub(super) fn key_ring(
    env: &Env,
    name: &'static str,
) -> Result<app::server::sealed::KeyRing, ConfigError> {
    let Some(keys) = env.get(name) else {
        return Ok(Default::default());
    };
    app::server::sealed::KeyRing::parse(&keys).map_err(|reason| ConfigError::Malformed {
        name,
        reason: reason.to_string(),
    })
}

/// `SALVAGE_DEMO_RECEIVER`: seconds the demo's flaky receiver fails after start; unset,
/// no receiver.
/// A store's backup policy: `SALVAGE_BACKUP_SCHEDULE_<STORE>` (a cron expression, UTC)
/// and `SALVAGE_BACKUP_KEEP_<STORE>`, else `SALVAGE_BACKUP_KEEP` for both, else the
/// runbooks' (PostgreSQL hourly, 168; ClickHouse daily at 03:00, 30).
pub(super) fn backup_policy(
    env: &Env,
    store: app::backups::StoreKind,
) -> Result<app::backups::ssr::schedule::StorePolicy, ConfigError> {
    use app::backups::StoreKind;
    let mut policy = app::backups::ssr::schedule::StorePolicy::default_for(store);
    let (schedule, keep) = match store {
        StoreKind::Postgres => (
            "SALVAGE_BACKUP_SCHEDULE_POSTGRES",
            "SALVAGE_BACKUP_KEEP_POSTGRES",
        ),
        StoreKind::Clickhouse => (
            "SALVAGE_BACKUP_SCHEDULE_CLICKHOUSE",
            "SALVAGE_BACKUP_KEEP_CLICKHOUSE",
        ),
    };
    if let Some(expression) = env.get(schedule) {
        policy.schedule = app::jobs::schedule::Schedule::parse(&expression).map_err(|reason| {
            ConfigError::Malformed {
                name: schedule,
                reason: reason.to_string(),
            }
        })?;
    }
    let both = env.bounded(
        "SALVAGE_BACKUP_KEEP",
        1..=10_000,
        "backups",
        policy.keep as u64,
    )?;
    policy.keep = env.bounded(keep, 1..=10_000, "backups", both)? as i64;
    Ok(policy)
}

pub(super) fn demo_receiver(env: &Env) -> Result<Option<u64>, ConfigError> {
    match env.get("SALVAGE_DEMO_RECEIVER") {
        None => Ok(None),
        Some(_) => env
            .bounded("SALVAGE_DEMO_RECEIVER", 0..=86_400, "seconds", 180)
            .map(Some),
    }
}

pub(super) fn migrations(
    env: &Env,
) -> Result<app::migrations::ssr::MigrationSettings, ConfigError> {
    Ok(app::migrations::ssr::MigrationSettings {
        chunk_rows: env.bounded("SALVAGE_MIGRATION_CHUNK_ROWS", 1..=1_000_000, "rows", 1_000)?
            as i64,
        chunk_pause: Duration::from_millis(env.bounded(
            "SALVAGE_MIGRATION_CHUNK_PAUSE_MS",
            0..=60_000,
            "milliseconds",
            0,
        )?),
        backup_before_upgrade: env.switch("SALVAGE_MIGRATE_BACKUP", true)?,
        ..Default::default()
    })
}

/// Continuous archiving through pgBackRest (`SALVAGE_PGBACKREST_CONFIG`, `_STANZA`,
/// `_RUN_AS`, `SALVAGE_ARCHIVE_TIMEOUT_SECS`); `None` without a configuration file.
pub(super) fn pitr(
    env: &Env,
) -> Result<Option<app::backups::ssr::pitr::PitrSettings>, ConfigError> {
    let Some(config) = env.get("SALVAGE_PGBACKREST_CONFIG") else {
        return Ok(None);
    };
    let config = std::path::PathBuf::from(config.trim());
    if !config.is_absolute() {
        return Err(ConfigError::Malformed {
            name: "SALVAGE_PGBACKREST_CONFIG",
            reason: "give pgBackRest's configuration file as an absolute path".into(),
        });
    }
    let stanza = env
        .get("SALVAGE_PGBACKREST_STANZA")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| "salvage".to_owned());
    if stanza.is_empty()
        || !stanza
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(ConfigError::Malformed {
            name: "SALVAGE_PGBACKREST_STANZA",
            reason: "letters, digits, - and _ only".into(),
        });
    }
    let side_dir = match env.get("SALVAGE_PITR_SIDE_DIR") {
        Some(dir) => std::path::PathBuf::from(dir.trim()),
        None => config
            .parent()
            .unwrap_or(std::path::Path::new("/"))
            .join("side"),
    };
    if !side_dir.is_absolute() {
        return Err(ConfigError::Malformed {
            name: "SALVAGE_PITR_SIDE_DIR",
            reason: "give the side clusters' directory as an absolute path".into(),
        });
    }
    Ok(Some(app::backups::ssr::pitr::PitrSettings {
        side_dir,
        config,
        stanza,
        run_as: env
            .get("SALVAGE_PGBACKREST_RUN_AS")
            .map(|u| u.trim().to_owned())
            .filter(|u| !u.is_empty()),
        archive_timeout: Duration::from_secs(env.bounded(
            "SALVAGE_ARCHIVE_TIMEOUT_SECS",
            10..=3600,
            "seconds",
            60,
        )?),
        full_every: Duration::from_secs(
            86_400 * env.bounded("SALVAGE_PITR_FULL_EVERY_DAYS", 1..=365, "days", 7)?,
        ),
        diff_every: Duration::from_secs(
            3600 * env.bounded("SALVAGE_PITR_DIFF_EVERY_HOURS", 1..=8760, "hours", 24)?,
        ),
    }))
}
