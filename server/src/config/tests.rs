//! The settings' parsing: defaults, bounds, and the one line naming a bad variable.

use super::*;
use std::collections::HashMap;

fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| map.get(name).cloned()
}

const MINIMAL: &[(&str, &str)] = &[
    (
        "DATABASE_URL",
        "postgres://salvage:hunter2-secret@127.0.0.1:5432/salvage",
    ),
    ("CLICKHOUSE_URL", "http://127.0.0.1:8123"),
];

#[test]
fn the_minimal_environment_gives_documented_defaults() {
    let settings = Settings::from_lookup(lookup(MINIMAL)).unwrap();
    assert_eq!(settings.addr.to_string(), "127.0.0.1:3000");
    assert_eq!(settings.public_url.as_str(), "http://127.0.0.1:3000/");
    assert_eq!(settings.clickhouse.database, "salvage");
    assert_eq!(settings.clickhouse.user, "default");
    assert_eq!(settings.probe_timeout, Duration::from_secs(2));
    assert_eq!(settings.queues.ttl, Duration::from_secs(7 * 24 * 3600));
    assert_eq!(settings.queues.replay_batch, 20_000);
    assert!(settings.cron_secret.is_none());
    assert!(settings.crons.scheduler);
    assert_eq!(settings.crons.retention, Duration::from_secs(90 * 86_400));
    assert_eq!(settings.crons.min_fire_rate, 80.0);
    assert!(settings.crons.overrides.is_empty());
}

#[test]
fn each_store_has_its_backup_schedule_and_retention() {
    use app::backups::StoreKind::{Clickhouse, Postgres};
    let defaults = Settings::from_lookup(lookup(MINIMAL)).unwrap();
    let policy = |s: &Settings, store| {
        let p = s.backups.policy(store);
        (p.schedule.describe(), p.keep)
    };
    assert_eq!(policy(&defaults, Postgres), ("hourly at :00".into(), 168));
    assert_eq!(
        policy(&defaults, Clickhouse),
        ("daily at 03:00 UTC".into(), 30)
    );

    // SALVAGE_BACKUP_KEEP sets both; a store's own setting wins.
    let mut pairs = MINIMAL.to_vec();
    pairs.push(("SALVAGE_BACKUP_KEEP", "14"));
    pairs.push(("SALVAGE_BACKUP_KEEP_CLICKHOUSE", "60"));
    pairs.push(("SALVAGE_BACKUP_SCHEDULE_POSTGRES", "*/15 * * * *"));
    let set = Settings::from_lookup(lookup(&pairs)).unwrap();
    assert_eq!(policy(&set, Postgres), ("every 15 min".into(), 14));
    assert_eq!(policy(&set, Clickhouse), ("daily at 03:00 UTC".into(), 60));

    for (name, value, reason) in [
        (
            "SALVAGE_BACKUP_SCHEDULE_CLICKHOUSE",
            "0 25 * * *",
            "hour: 25 is outside 0-23",
        ),
        (
            "SALVAGE_BACKUP_KEEP_POSTGRES",
            "0",
            "expected backups between 1 and 10000",
        ),
    ] {
        let mut pairs = MINIMAL.to_vec();
        pairs.push((name, value));
        let error = Settings::from_lookup(lookup(&pairs))
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            format!("configuration: {name} is malformed: {reason}")
        );
    }
}

#[test]
fn a_job_schedule_can_be_replaced_and_a_bad_one_is_named() {
    let mut pairs = MINIMAL.to_vec();
    pairs.push(("SALVAGE_CRON_REPLAY_FALLBACK", "*/3 * * * *"));
    pairs.push(("SALVAGE_SCHEDULER", "off"));
    let settings = Settings::from_lookup(lookup(&pairs)).unwrap();
    assert!(!settings.crons.scheduler);
    let job = &app::queues::ssr::replay::REPLAY_FALLBACK;
    assert_eq!(settings.crons.schedule_of(job).describe(), "every 3 min");

    let mut pairs = MINIMAL.to_vec();
    pairs.push(("SALVAGE_CRON_EXPIRE_FALLBACK", "61 * * * *"));
    let error = Settings::from_lookup(lookup(&pairs))
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        "configuration: SALVAGE_CRON_EXPIRE_FALLBACK is malformed: minute: 61 is outside 0-59"
    );
}

#[test]
fn a_missing_variable_is_named() {
    let error = Settings::from_lookup(lookup(&MINIMAL[1..])).unwrap_err();
    assert_eq!(error.to_string(), "configuration: DATABASE_URL is not set");
    let error = Settings::from_lookup(lookup(&MINIMAL[..1])).unwrap_err();
    assert_eq!(error, ConfigError::Missing("CLICKHOUSE_URL"));
}

#[test]
fn a_malformed_variable_is_named_without_echoing_a_secret() {
    let error = Settings::from_lookup(lookup(&[
        ("DATABASE_URL", "mysql://root:hunter2-secret@db/x"),
        ("CLICKHOUSE_URL", "http://127.0.0.1:8123"),
    ]))
    .unwrap_err();
    let line = error.to_string();
    assert!(
        line.starts_with("configuration: DATABASE_URL is malformed"),
        "{line}"
    );
    assert!(!line.contains("hunter2"), "{line}");
    assert!(!line.contains('\n'));

    for (name, value) in [
        ("CLICKHOUSE_URL", "127.0.0.1:8123"),
        ("CLICKHOUSE_DATABASE", "salvage; drop"),
        ("SALVAGE_ADDR", "localhost"),
        ("SALVAGE_PUBLIC_URL", "ftp://example.com"),
        ("SALVAGE_PROBE_TIMEOUT_MS", "soon"),
        ("SALVAGE_FALLBACK_TTL_HOURS", "0"),
        ("SALVAGE_REPLAY_BATCH", "5"),
        ("CRON_SECRET", "short"),
        ("SALVAGE_SCHEDULER", "sometimes"),
        ("SALVAGE_CRON_RETENTION_DAYS", "0"),
        ("SALVAGE_CRON_MIN_FIRE_RATE", "150"),
    ] {
        let mut pairs = MINIMAL.to_vec();
        pairs.retain(|(key, _)| *key != name);
        pairs.push((name, value));
        let error = Settings::from_lookup(lookup(&pairs)).unwrap_err();
        assert!(
            matches!(error, ConfigError::Malformed { name: named, .. } if named == name),
            "{name}: {error}"
        );
    }
}

#[test]
fn cookies_are_secure_except_for_plain_http_on_this_machine() {
    let with_url = |url: &str| {
        Settings::from_lookup(lookup(&[
            ("DATABASE_URL", "postgres://u:p@127.0.0.1:5432/db"),
            ("CLICKHOUSE_URL", "http://127.0.0.1:8123"),
            ("SALVAGE_PUBLIC_URL", url),
        ]))
        .unwrap()
    };
    assert!(!with_url("http://127.0.0.1:3000").secure_cookies());
    assert!(!with_url("http://localhost:3000").secure_cookies());
    assert!(with_url("http://salvage.internal:3000").secure_cookies());
    assert!(with_url("https://localhost").secure_cookies());
    assert_eq!(
        with_url("https://ops.example.com/x/").public_origin(),
        "https://ops.example.com"
    );
}

#[test]
fn the_session_idle_time_is_bounded() {
    let read = |minutes: &str| {
        Settings::from_lookup(lookup(&[
            ("DATABASE_URL", "postgres://u:p@127.0.0.1:5432/db"),
            ("CLICKHOUSE_URL", "http://127.0.0.1:8123"),
            ("SALVAGE_SESSION_IDLE_MINUTES", minutes),
        ]))
    };
    assert_eq!(read("30").unwrap().session_idle, Duration::from_secs(1800));
    assert!(matches!(
        read("0").unwrap_err(),
        ConfigError::Malformed {
            name: "SALVAGE_SESSION_IDLE_MINUTES",
            ..
        }
    ));
}

#[test]
fn debug_output_never_shows_a_secret() {
    let mut pairs = MINIMAL.to_vec();
    pairs.push(("CLICKHOUSE_PASSWORD", "ch-password-42"));
    let settings = Settings::from_lookup(lookup(&pairs)).unwrap();
    let debug = format!("{settings:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(!debug.contains("ch-password-42"), "{debug}");
    assert!(debug.contains("REDACTED"), "{debug}");
}

#[test]
fn switches_read_on_and_off_and_name_anything_else() {
    let with = |pairs: &[(&str, &str)]| {
        let mut all = MINIMAL.to_vec();
        all.extend_from_slice(pairs);
        Settings::from_lookup(lookup(&all))
    };
    let defaults = with(&[]).unwrap();
    assert!(defaults.crons.scheduler && defaults.migrations.backup_before_upgrade);
    assert!(!defaults.webhooks.allow_private);

    let flipped = with(&[
        ("SALVAGE_SCHEDULER", "off"),
        ("SALVAGE_MIGRATE_BACKUP", "false"),
        ("SALVAGE_WEBHOOK_ALLOW_PRIVATE", "on"),
        ("SALVAGE_MIGRATION_CHUNK_ROWS", "500"),
        ("SALVAGE_MIGRATION_CHUNK_PAUSE_MS", "1000"),
    ])
    .unwrap();
    assert!(!flipped.crons.scheduler && !flipped.migrations.backup_before_upgrade);
    assert!(flipped.webhooks.allow_private);
    assert_eq!(flipped.migrations.chunk_rows, 500);
    assert_eq!(flipped.migrations.chunk_pause, Duration::from_secs(1));

    let error = with(&[("SALVAGE_MIGRATE_BACKUP", "maybe")]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "configuration: SALVAGE_MIGRATE_BACKUP is malformed: expected on or off"
    );
    assert!(with(&[("SALVAGE_MIGRATION_CHUNK_ROWS", "0")])
        .unwrap_err()
        .to_string()
        .contains("SALVAGE_MIGRATION_CHUNK_ROWS"));
}

#[test]
fn the_cluster_and_table_names_are_settings_checked_as_identifiers() {
    let read = |pairs: &[(&str, &str)]| {
        let mut all = MINIMAL.to_vec();
        all.extend_from_slice(pairs);
        Settings::from_lookup(lookup(&all))
    };
    let default = read(&[]).unwrap().clickhouse.layout;
    assert_eq!(default, app::server::clickhouse::Layout::default());
    let set = read(&[
        ("CLICKHOUSE_CLUSTER", "main_cluster"),
        ("CLICKHOUSE_REQUESTS_TABLE", "llm_requests"),
        ("CLICKHOUSE_EVENTS_TABLE", "llm_events"),
    ])
    .unwrap()
    .clickhouse
    .layout;
    assert_eq!(set.cluster.as_deref(), Some("main_cluster"));
    assert_eq!(
        (set.requests.as_str(), set.events.as_str()),
        ("llm_requests", "llm_events")
    );
    for (name, value) in [
        ("CLICKHOUSE_CLUSTER", "main cluster"),
        ("CLICKHOUSE_REQUESTS_TABLE", "requests`; DROP"),
        ("CLICKHOUSE_EVENTS_TABLE", "1events"),
        ("CLICKHOUSE_REQUESTS_TABLE", "events"),
        ("CLICKHOUSE_REQUESTS_TABLE", "requests_local"),
        ("CLICKHOUSE_EVENTS_TABLE", "history_anchors"),
        ("CLICKHOUSE_EVENTS_TABLE", "events__pre_3"),
    ] {
        let error = read(&[(name, value)]).unwrap_err();
        assert!(
            matches!(error, ConfigError::Malformed { name: named, .. } if named == name),
            "{name}={value}: {error}"
        );
    }
}
