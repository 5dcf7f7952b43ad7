//! `GET /metrics`: Prometheus' text format. The store figures are read from PostgreSQL
//! on scrape (at most once every 2 s, shared by concurrent scrapers, like the health
//! answers), each read bounded (counters, index probes, a few rows per webhook, job
//! or migration) and under the probe timeout, so they are the same on every replica and
//! cheap with a million queued rows; then this process's counters
//! (`app::server::metrics`). A read that fails or times out leaves its families without
//! samples and sets `salvage_metrics_source_up{source}` to 0, so a gap is never a zero.
//!
//! README's "Metrics" section lists every family; a test keeps the two in step.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use app::server::metrics::{Exposition, Family, Kind, HTTP_DURATION, HTTP_REQUESTS};
use app::server::AppState;

const fn gauge(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Family {
    Family {
        name,
        help,
        kind: Kind::Gauge,
        labels,
    }
}

static STORE_UP: Family = gauge(
    "salvage_store_up",
    "Probe: 1 when the store answered a trivial query within the probe timeout (SALVAGE_PROBE_TIMEOUT_MS), 0 when it did not.",
    &["store"],
);
static SOURCE_UP: Family = gauge(
    "salvage_metrics_source_up",
    "Probe: 1 when this scrape read the source's figures from PostgreSQL, 0 when the read failed or timed out (its families then have no samples).",
    &["source"],
);
static SCHEMA_OK: Family = gauge(
    "salvage_schema_ok",
    "Store: 1 when the PostgreSQL schema applied is the one this binary expects, 0 when it differs (see /admin/migrations).",
    &[],
);
static QUEUE_ROWS: Family = gauge(
    "salvage_fallback_queue_rows",
    "Store: rows waiting in a fallback queue (exact).",
    &["queue"],
);
static QUEUE_AGE: Family = gauge(
    "salvage_fallback_queue_oldest_age_seconds",
    "Store: age of the oldest row waiting in a fallback queue; 0 when it is empty.",
    &["queue"],
);
static CRON_RUNS_24H: Family = gauge(
    "salvage_cron_runs_24h",
    "Store: runs of a job started in the last 24 hours, by any replica or door.",
    &["job"],
);
static CRON_MISSED_24H: Family = gauge(
    "salvage_cron_missed_runs_24h",
    "Store: scheduled ticks of a job in the last 24 hours, past their grace period, that had no run.",
    &["job"],
);
static CRON_FIRE_RATIO: Family = gauge(
    "salvage_cron_fire_ratio",
    "Store: share of a job's scheduled ticks in the last 24 hours that had a run (0 to 1); absent while none was expected yet.",
    &["job"],
);
static CRON_LAST_SUCCESS: Family = gauge(
    "salvage_cron_last_success_timestamp_seconds",
    "Store: when a job last succeeded (Unix time); absent when it never has.",
    &["job"],
);
static ALERTS_OPEN: Family = gauge(
    "salvage_alerts_open",
    "Store: open alerts (firing or acknowledged), by kind and severity.",
    &["kind", "severity"],
);
static WEBHOOK_BACKLOG: Family = gauge(
    "salvage_webhook_backlog_deliveries",
    "Store: deliveries due now and not yet delivered, by webhook id.",
    &["webhook"],
);
static WEBHOOK_DEAD: Family = gauge(
    "salvage_webhook_dead_letters",
    "Store: dead-lettered deliveries kept, by webhook id.",
    &["webhook"],
);
static WEBHOOK_PAUSED: Family = gauge(
    "salvage_webhook_paused",
    "Store: 1 while a webhook's circuit is open (sending paused, probing), by webhook id.",
    &["webhook"],
);
static BACKUP_AGE: Family = gauge(
    "salvage_backup_age_seconds",
    "Store: time since the newest complete backup of a store finished (the recovery point); absent when there is none.",
    &["store"],
);
static BACKUP_VERIFY_OK: Family = gauge(
    "salvage_backup_last_verify_ok",
    "Store: 1 when the newest verified backup of a store passed its verification, 0 when it failed; absent before the first.",
    &["store"],
);
static DRILL_RECOVERY: Family = gauge(
    "salvage_drill_last_recovery_seconds",
    "Store: the measured recovery time (fetch, restore, verify) of each store in the last finished restore drill.",
    &["store"],
);
static DRILL_TARGET: Family = gauge(
    "salvage_drill_rto_target_seconds",
    "Store: the recovery time objective the last finished drill measured each store against.",
    &["store"],
);
static DRILL_PASSED: Family = gauge(
    "salvage_drill_last_passed",
    "Store: 1 when the last finished restore drill passed, 0 when it failed or was cancelled.",
    &[],
);
static DRILL_FINISHED: Family = gauge(
    "salvage_drill_last_timestamp_seconds",
    "Store: when the last finished restore drill ended (Unix time).",
    &[],
);
static MIGRATION_DONE: Family = gauge(
    "salvage_background_migration_progress_rows",
    "Store: rows a background migration has done.",
    &["name"],
);
static MIGRATION_TARGET: Family = gauge(
    "salvage_background_migration_target_rows",
    "Store: rows a background migration counted to do; absent until counted.",
    &["name"],
);
static MIGRATION_STATUS: Family = gauge(
    "salvage_background_migration_status",
    "Store: 1 for a background migration's current status (pending, running, paused, succeeded, failed, cancelled), 0 for the others.",
    &["name", "status"],
);
static MIGRATION_STUCK: Family = gauge(
    "salvage_background_migration_stuck",
    "Store: 1 while a running background migration's run has ended or gone quiet (stuck).",
    &["name"],
);

/// The store families, in the order `/metrics` writes them (README lists them in this
/// order, then the process families).
pub static STORE_FAMILIES: [&Family; 23] = [
    &STORE_UP,
    &SOURCE_UP,
    &SCHEMA_OK,
    &QUEUE_ROWS,
    &QUEUE_AGE,
    &CRON_RUNS_24H,
    &CRON_MISSED_24H,
    &CRON_FIRE_RATIO,
    &CRON_LAST_SUCCESS,
    &ALERTS_OPEN,
    &WEBHOOK_BACKLOG,
    &WEBHOOK_DEAD,
    &WEBHOOK_PAUSED,
    &BACKUP_AGE,
    &BACKUP_VERIFY_OK,
    &DRILL_RECOVERY,
    &DRILL_TARGET,
    &DRILL_PASSED,
    &DRILL_FINISHED,
    &MIGRATION_DONE,
    &MIGRATION_TARGET,
    &MIGRATION_STATUS,
    &MIGRATION_STUCK,
];

/// `GET /metrics`, behind `SALVAGE_METRICS_TOKEN` when it is set.
pub fn metrics_routes() -> Router<AppState> {
    Router::new().route("/metrics", get(scrape))
}

/// One sample: label values in the family's order, and the value.
type Samples = Vec<(Vec<String>, f64)>;

/// What one source read: each of its families with its samples.
type Read = Vec<(&'static Family, Samples)>;

async fn scrape(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(expected) = &state.metrics_token {
        if !app::server::tokens::bearer_matches(&headers, expected) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "Send `Authorization: Bearer <SALVAGE_METRICS_TOKEN>`.\n",
            )
                .into_response();
        }
    }
    use app::health::ssr::HEALTH_MAX_AGE;
    let stores = state
        .health_cache()
        .metrics
        .get_or_compute(HEALTH_MAX_AGE, || async {
            std::sync::Arc::new(store_figures(&state).await)
        })
        .await;
    let mut out = Exposition::default();
    state.metrics.write(&mut out);
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        format!("{stores}{}", out.finish()),
    )
        .into_response()
}

/// The store and probe families' text: every source read at once, each under the probe
/// timeout.
async fn store_figures(state: &AppState) -> String {
    let now = state.clock.now();
    let (stores, schema, queues, crons, alerts, webhooks, backups, drills, migrations) = tokio::join!(
        app::health::ssr::check_stores(state),
        bounded(state, schema(state)),
        bounded(state, queues(state, now)),
        bounded(state, crons(state, now)),
        bounded(state, alerts(state)),
        bounded(state, webhooks(state, now)),
        bounded(state, backups(state, now)),
        bounded(state, drills(state)),
        bounded(state, migrations(state)),
    );
    let mut out = Exposition::default();
    out.family(&STORE_UP);
    out.sample(
        &STORE_UP,
        &["postgres"],
        f64::from(u8::from(stores.postgres.ok)),
    );
    out.sample(
        &STORE_UP,
        &["clickhouse"],
        f64::from(u8::from(stores.clickhouse.ok)),
    );
    let sources = [
        ("schema", schema),
        ("queues", queues),
        ("crons", crons),
        ("alerts", alerts),
        ("webhooks", webhooks),
        ("backups", backups),
        ("drills", drills),
        ("migrations", migrations),
    ];
    out.family(&SOURCE_UP);
    for (source, read) in &sources {
        out.sample(&SOURCE_UP, &[*source], f64::from(u8::from(read.is_some())));
    }
    for (_, read) in sources {
        for (family, samples) in read.unwrap_or_default() {
            out.family(family);
            for (labels, value) in samples {
                let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
                out.sample(family, &labels, value);
            }
        }
    }
    out.finish()
}

/// A source's read under the probe timeout; `None` (logged) when it failed.
async fn bounded<F>(state: &AppState, read: F) -> Option<Read>
where
    F: std::future::Future<Output = Result<Read, String>>,
{
    match tokio::time::timeout(state.probe_timeout, read).await {
        Ok(Ok(read)) => Some(read),
        Ok(Err(error)) => {
            tracing::warn!(%error, "a /metrics source could not be read");
            None
        }
        Err(_) => {
            tracing::warn!("a /metrics source did not answer within the probe timeout");
            None
        }
    }
}

fn one(value: f64) -> Samples {
    vec![(Vec::new(), value)]
}

fn by(label: impl ToString, value: f64) -> (Vec<String>, f64) {
    (vec![label.to_string()], value)
}

fn secs(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

async fn schema(state: &AppState) -> Result<Read, String> {
    let status = app::migrations::ssr::schema::status(&state.pg)
        .await
        .map_err(|e| e.to_string())?;
    Ok(vec![(&SCHEMA_OK, one(f64::from(u8::from(status.ok))))])
}

async fn queues(state: &AppState, now: time::OffsetDateTime) -> Result<Read, String> {
    use app::queues::ssr::stats::{oldest_queued_at, queue_depths};
    let depths = queue_depths(&state.pg).await.map_err(|e| e.to_string())?;
    let (mut rows, mut ages) = (Samples::new(), Samples::new());
    for (queue, depth) in depths {
        let oldest = oldest_queued_at(&state.pg, queue)
            .await
            .map_err(|e| e.to_string())?;
        let age = oldest.map_or(0.0, |at| (now - at).as_seconds_f64().max(0.0));
        rows.push(by(queue.as_str(), depth as f64));
        ages.push(by(queue.as_str(), age));
    }
    Ok(vec![(&QUEUE_ROWS, rows), (&QUEUE_AGE, ages)])
}

async fn crons(state: &AppState, now: time::OffsetDateTime) -> Result<Read, String> {
    let jobs = app::crons::ssr::status::job_statuses(state, now)
        .await
        .map_err(|e| e.to_string())?;
    let (mut runs, mut missed, mut ratio, mut success) = (
        Samples::new(),
        Samples::new(),
        Samples::new(),
        Samples::new(),
    );
    for job in &jobs {
        runs.push(by(&job.name, job.runs as f64));
        missed.push(by(&job.name, job.missed as f64));
        if let Some(rate) = job.fire_rate {
            ratio.push(by(&job.name, rate / 100.0));
        }
        if let Some(at) = job.last_success_at {
            success.push(by(&job.name, secs(at)));
        }
    }
    Ok(vec![
        (&CRON_RUNS_24H, runs),
        (&CRON_MISSED_24H, missed),
        (&CRON_FIRE_RATIO, ratio),
        (&CRON_LAST_SUCCESS, success),
    ])
}

async fn alerts(state: &AppState) -> Result<Read, String> {
    let open = app::alerts::ssr::query::open_by_kind(&state.pg)
        .await
        .map_err(|e| e.to_string())?;
    let samples = open
        .into_iter()
        .map(|(kind, severity, count)| (vec![kind, severity], count as f64))
        .collect();
    Ok(vec![(&ALERTS_OPEN, samples)])
}

async fn webhooks(state: &AppState, now: time::OffsetDateTime) -> Result<Read, String> {
    let figures = app::dead_letters::ssr::dlq::figures(&state.pg, now)
        .await
        .map_err(|e| e.to_string())?;
    let (mut backlog, mut dead, mut paused) = (Samples::new(), Samples::new(), Samples::new());
    for webhook in figures {
        backlog.push(by(webhook.webhook_id, webhook.backlog as f64));
        dead.push(by(webhook.webhook_id, webhook.dead_letters as f64));
        paused.push(by(webhook.webhook_id, f64::from(u8::from(webhook.paused))));
    }
    Ok(vec![
        (&WEBHOOK_BACKLOG, backlog),
        (&WEBHOOK_DEAD, dead),
        (&WEBHOOK_PAUSED, paused),
    ])
}

async fn backups(state: &AppState, now: time::OffsetDateTime) -> Result<Read, String> {
    use app::backups::ssr::catalogue::{latest_checked, latest_complete};
    use app::backups::{BackupStatus, StoreKind};
    let (mut age, mut verified) = (Samples::new(), Samples::new());
    for store in [StoreKind::Postgres, StoreKind::Clickhouse] {
        let complete = latest_complete(&state.pg, store)
            .await
            .map_err(|e| e.to_string())?;
        if let Some(finished) = complete.and_then(|b| b.backup.finished_ms) {
            let ms = app::server::unix_ms(now) - finished;
            age.push(by(store.as_str(), secs(ms.max(0))));
        }
        let checked = latest_checked(&state.pg, store)
            .await
            .map_err(|e| e.to_string())?;
        if let Some(checked) = checked {
            let ok = checked.backup.status == BackupStatus::Verified;
            verified.push(by(store.as_str(), f64::from(u8::from(ok))));
        }
    }
    Ok(vec![(&BACKUP_AGE, age), (&BACKUP_VERIFY_OK, verified)])
}

async fn drills(state: &AppState) -> Result<Read, String> {
    use app::drills::{DrillKind, DrillStatus};
    let recent = app::drills::ssr::records::list(&state.pg, 20)
        .await
        .map_err(|e| e.to_string())?;
    let last = recent.into_iter().find(|drill| {
        drill.kind == DrillKind::Functional
            && drill.status != DrillStatus::Running
            && drill.finished_ms.is_some()
    });
    let Some(last) = last else {
        let families = [
            &DRILL_RECOVERY,
            &DRILL_TARGET,
            &DRILL_PASSED,
            &DRILL_FINISHED,
        ];
        return Ok(families.into_iter().map(|f| (f, Samples::new())).collect());
    };
    let recovery = last
        .stores
        .iter()
        .map(|s| by(s.store.as_str(), secs(s.recovery_ms)))
        .collect();
    let target = last
        .stores
        .iter()
        .map(|s| by(s.store.as_str(), secs(s.rto_target_ms)))
        .collect();
    let passed = f64::from(u8::from(last.status == DrillStatus::Passed));
    Ok(vec![
        (&DRILL_RECOVERY, recovery),
        (&DRILL_TARGET, target),
        (&DRILL_PASSED, one(passed)),
        (
            &DRILL_FINISHED,
            one(secs(last.finished_ms.unwrap_or_default())),
        ),
    ])
}

async fn migrations(state: &AppState) -> Result<Read, String> {
    use app::migrations::MigrationStatus;
    let rows = app::migrations::ssr::store::list(state)
        .await
        .map_err(|e| e.to_string())?;
    let (mut done, mut target, mut status, mut stuck) = (
        Samples::new(),
        Samples::new(),
        Samples::new(),
        Samples::new(),
    );
    for row in &rows {
        done.push(by(&row.name, row.progress_current as f64));
        if let Some(total) = row.progress_total {
            target.push(by(&row.name, total as f64));
        }
        for each in MigrationStatus::ALL {
            let value = f64::from(u8::from(row.status == each));
            status.push((vec![row.name.clone(), each.as_str().to_owned()], value));
        }
        stuck.push(by(&row.name, f64::from(u8::from(row.stuck))));
    }
    Ok(vec![
        (&MIGRATION_DONE, done),
        (&MIGRATION_TARGET, target),
        (&MIGRATION_STATUS, status),
        (&MIGRATION_STUCK, stuck),
    ])
}

/// Counts every request by its route pattern and status, and times it (the process's
/// `salvage_http_requests_total` and `salvage_http_request_duration_seconds`). Only the
/// pattern, never the path, so the label set stays bounded whatever callers send.
pub async fn count_requests(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status();
    state
        .metrics
        .add(&HTTP_REQUESTS, &[&route, status.as_str()], 1);
    state
        .metrics
        .observe(&HTTP_DURATION, &[&route], started.elapsed().as_secs_f64());
    response
}
