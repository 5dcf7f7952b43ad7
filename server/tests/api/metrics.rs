//! `/metrics`: well-formed Prometheus text, every family README lists, store figures that
//! follow the stores and process counters that follow what this process did, and the
//! token gate.

use std::collections::HashMap;

use secrecy::SecretString;
use serde_json::Value;

use crate::alerts::open_alert;
use crate::helpers::{spawn_app, spawn_app_tweaked, spawn_app_with, Options, TestApp, CRON_SECRET};
use crate::queues::{ingest_key, post_rows, request_rows};

/// A scrape: every sample by its series as written (`name{label="value",…}`).
struct Scrape {
    samples: HashMap<String, f64>,
    types: HashMap<String, String>,
}

impl Scrape {
    /// The sample's value; 0 for a series not written yet (a counter before its first
    /// increment).
    fn get(&self, series: &str) -> f64 {
        self.samples.get(series).copied().unwrap_or(0.0)
    }

    fn has(&self, series: &str) -> bool {
        self.samples.contains_key(series)
    }
}

/// Parses the text format strictly enough to catch a malformed line: `# HELP` and
/// `# TYPE` once per family, before its samples; each sample a valid name, an optional
/// label block and a number.
fn parse(text: &str) -> Scrape {
    let mut samples = HashMap::new();
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helps = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(helps.insert(name.to_owned()), "HELP twice for {name}");
            assert!(rest.len() > name.len() + 10, "no help text for {name}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            assert!(helps.contains(name), "TYPE before HELP for {name}");
            assert!(
                types.insert(name.to_owned(), kind.to_owned()).is_none(),
                "TYPE twice for {name}"
            );
            continue;
        }
        assert!(!line.starts_with('#'), "unexpected comment: {line}");
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            other => other
                .parse()
                .unwrap_or_else(|_| panic!("not a number: {line}")),
        };
        let name = series.split('{').next().unwrap();
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                && !name.starts_with(|c: char| c.is_ascii_digit()),
            "bad metric name: {line}"
        );
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
            }
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix)
                    .filter(|base| types.get(*base).is_some_and(|k| k == "histogram"))
            })
            .unwrap_or(name);
        assert!(types.contains_key(family), "sample before its TYPE: {line}");
        assert!(
            samples.insert(series.to_owned(), value).is_none(),
            "series twice: {series}"
        );
    }
    Scrape { samples, types }
}

/// A scrape after the store figures' cache has expired (they are read at most once per
/// `HEALTH_MAX_AGE`), so each scrape shows the stores as they are now.
async fn scrape(app: &TestApp) -> Scrape {
    tokio::time::sleep(app::health::ssr::HEALTH_MAX_AGE + std::time::Duration::from_millis(100))
        .await;
    let response = app
        .http
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    parse(&response.text().await.unwrap())
}

async fn run_cron(app: &TestApp, job: &str) -> Value {
    app.http
        .post(format!("{}/cron/{job}", app.address))
        .bearer_auth(CRON_SECRET)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

const CLICKHOUSE: &str = r#"salvage_ingest_rows_total{queue="requests",outcome="clickhouse"}"#;
const FALLBACK: &str = r#"salvage_ingest_rows_total{queue="requests",outcome="fallback"}"#;
const QUEUED: &str = r#"salvage_fallback_queue_rows{queue="requests"}"#;
const REPLAYED: &str = r#"salvage_replay_rows_total{queue="requests"}"#;
const BATCHES: &str = r#"salvage_replay_batches_total{queue="requests"}"#;
const REPLAY_FAILED: &str = r#"salvage_cron_runs_total{job="replay-fallback",outcome="failed"}"#;
const REPLAY_OK: &str = r#"salvage_cron_runs_total{job="replay-fallback",outcome="succeeded"}"#;
const REPLAY_24H: &str = r#"salvage_cron_runs_24h{job="replay-fallback"}"#;
const INGEST_TIMED: &str = r#"salvage_ingest_request_duration_seconds_count{queue="requests"}"#;

/// Ingest with ClickHouse up, then cut; a replay that fails while it is cut, then one
/// that drains the queue: each step moves exactly the series it should.
#[tokio::test]
async fn the_figures_follow_ingest_a_failing_run_and_a_replay() {
    let app = spawn_app_with(Options {
        clickhouse_link: true,
        ..Options::default()
    })
    .await;
    let link = app.clickhouse_link.as_ref().unwrap();
    let key = ingest_key(&app).await;
    let before = scrape(&app).await;
    assert_eq!(before.get(r#"salvage_store_up{store="postgres"}"#), 1.0);
    assert_eq!(before.get(r#"salvage_store_up{store="clickhouse"}"#), 1.0);
    assert_eq!(before.get("salvage_schema_ok"), 1.0);
    assert_eq!(before.get(QUEUED), 0.0);
    for source in [
        "schema",
        "queues",
        "crons",
        "alerts",
        "webhooks",
        "backups",
        "drills",
        "migrations",
    ] {
        let series = format!(r#"salvage_metrics_source_up{{source="{source}"}}"#);
        assert_eq!(before.get(&series), 1.0, "{series}");
    }

    let (status, _) = post_rows(&app, &key, &request_rows(0, 20)).await;
    assert_eq!(status, 200);
    let stored = scrape(&app).await;
    assert_eq!(stored.get(CLICKHOUSE) - before.get(CLICKHOUSE), 20.0);
    assert_eq!(stored.get(INGEST_TIMED) - before.get(INGEST_TIMED), 1.0);
    let accepted = r#"salvage_http_requests_total{route="/ingest/requests",status="200"}"#;
    assert_eq!(stored.get(accepted) - before.get(accepted), 1.0);

    link.cut();
    let (status, _) = post_rows(&app, &key, &request_rows(100, 30)).await;
    assert_eq!(status, 202);
    let parked = scrape(&app).await;
    assert_eq!(parked.get(FALLBACK) - stored.get(FALLBACK), 30.0);
    assert_eq!(parked.get(CLICKHOUSE), stored.get(CLICKHOUSE));
    assert_eq!(parked.get(QUEUED), 30.0);
    assert!(parked.has(r#"salvage_fallback_queue_oldest_age_seconds{queue="requests"}"#));
    assert_eq!(parked.get(r#"salvage_store_up{store="clickhouse"}"#), 0.0);

    // A replay while ClickHouse is cut fails and moves nothing.
    let failed = run_cron(&app, "replay-fallback").await;
    assert_eq!(failed["outcome"], "failed", "{failed}");
    let after_failure = scrape(&app).await;
    assert_eq!(
        after_failure.get(REPLAY_FAILED) - parked.get(REPLAY_FAILED),
        1.0
    );
    assert_eq!(after_failure.get(REPLAYED), parked.get(REPLAYED));
    assert_eq!(after_failure.get(QUEUED), 30.0);

    link.restore();
    let drained = run_cron(&app, "replay-fallback").await;
    assert_eq!(drained["outcome"], "succeeded", "{drained}");
    let after = scrape(&app).await;
    assert_eq!(after.get(REPLAYED) - parked.get(REPLAYED), 30.0);
    assert_eq!(after.get(BATCHES) - parked.get(BATCHES), 1.0);
    assert_eq!(after.get(REPLAY_OK) - parked.get(REPLAY_OK), 1.0);
    assert_eq!(after.get(QUEUED), 0.0);
    assert_eq!(
        after.get(r#"salvage_fallback_queue_oldest_age_seconds{queue="requests"}"#),
        0.0
    );
    // Both runs are in PostgreSQL's 24-hour figure, which every replica reads alike.
    assert_eq!(after.get(REPLAY_24H) - before.get(REPLAY_24H), 2.0);
}

/// Open alerts by kind and severity, background migrations, an unknown path counted
/// under `unmatched` (never its own path), and the families' kinds and names.
#[tokio::test]
async fn alerts_migrations_routes_and_names_follow_the_conventions() {
    let app = spawn_app().await;
    let before = scrape(&app).await;
    let data_expired = r#"salvage_alerts_open{kind="data_expired",severity="critical"}"#;
    assert!(!before.has(data_expired));
    crate::alerts::raise_data_expired(&app, "metrics").await;
    assert!(open_alert(&app, "data_expired", "metrics").await.is_some());
    let _ = app
        .http
        .get(format!(
            "{}/no/such/page-{}",
            app.address,
            uuid::Uuid::new_v4()
        ))
        .send()
        .await
        .unwrap();

    let after = scrape(&app).await;
    assert_eq!(after.get(data_expired), 1.0);
    let unmatched = r#"salvage_http_requests_total{route="unmatched",status="404"}"#;
    assert_eq!(after.get(unmatched) - before.get(unmatched), 1.0);
    assert!(
        !after
            .samples
            .keys()
            .any(|series| series.contains("/no/such/")),
        "a path became a label"
    );
    // The shipped background migration is registered: its status is one-hot.
    let statuses: f64 = app::migrations::MigrationStatus::ALL
        .iter()
        .map(|status| {
            after.get(&format!(
                r#"salvage_background_migration_status{{name="{}",status="{}"}}"#,
                app::registry::BACKGROUND_MIGRATIONS[0].name,
                status.as_str()
            ))
        })
        .sum();
    assert_eq!(statuses, 1.0);

    for (name, kind) in &after.types {
        assert!(name.starts_with("salvage_"), "{name}");
        assert_eq!(
            name.ends_with("_total"),
            kind == "counter",
            "{name} is a {kind}"
        );
    }
    for family in salvage::metrics::STORE_FAMILIES
        .iter()
        .chain(app::server::metrics::PROCESS_FAMILIES.iter())
    {
        assert!(
            after.types.contains_key(family.name),
            "{} not written",
            family.name
        );
    }
}

/// README's "Metrics" section names every family `/metrics` writes.
#[test]
fn readme_lists_every_metric() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let section = readme
        .split("\n## Metrics")
        .nth(1)
        .expect("a Metrics section")
        .split("\n## ")
        .next()
        .unwrap();
    for family in salvage::metrics::STORE_FAMILIES
        .iter()
        .chain(app::server::metrics::PROCESS_FAMILIES.iter())
    {
        assert!(
            section.contains(&format!("`{}`", family.name)),
            "README's Metrics section does not list {}",
            family.name
        );
    }
}

/// With `SALVAGE_METRICS_TOKEN` set, only a scraper presenting it gets the figures.
#[tokio::test]
async fn the_token_is_required_when_set() {
    let app = spawn_app_tweaked(|settings| {
        settings.metrics_token = Some(SecretString::from("metrics-token-0123456789abcdef"));
    })
    .await;
    let url = format!("{}/metrics", app.address);
    let anonymous = app.http.get(&url).send().await.unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
    assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");
    let wrong = app
        .http
        .get(&url)
        .bearer_auth("metrics-token-0123456789abcdeX")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    let text = wrong.text().await.unwrap();
    assert!(!text.contains("salvage_"), "{text}");
    let right = app
        .http
        .get(&url)
        .bearer_auth("metrics-token-0123456789abcdef")
        .send()
        .await
        .unwrap();
    assert_eq!(right.status().as_u16(), 200);
    assert!(right
        .text()
        .await
        .unwrap()
        .contains("# TYPE salvage_store_up gauge"));
}
