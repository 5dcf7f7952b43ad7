//! The probes behind [`StoresHealth`](super::StoresHealth).

use std::future::Future;
use std::time::{Duration, Instant};

use time::format_description::well_known::Rfc3339;

use super::{ClickHouseDetails, PostgresDetails, StoreCheck, StoresHealth, StoresSnapshot};
use crate::server::AppState;

/// Runs `probe` with a deadline and turns its outcome into a [`StoreCheck`].
pub async fn timed_probe<E, F>(timeout: Duration, probe: F) -> StoreCheck
where
    E: std::fmt::Display,
    F: Future<Output = Result<(), E>>,
{
    let started = Instant::now();
    match tokio::time::timeout(timeout, probe).await {
        Ok(Ok(())) => StoreCheck {
            ok: true,
            latency_ms: Some(round_ms(started.elapsed())),
            error: None,
        },
        Ok(Err(error)) => StoreCheck {
            ok: false,
            latency_ms: None,
            error: Some(first_line(&error.to_string())),
        },
        Err(_) => StoreCheck {
            ok: false,
            latency_ms: None,
            error: Some(format!("no answer within {} ms", timeout.as_millis())),
        },
    }
}

/// Asks PostgreSQL `select 1`.
pub async fn check_postgres(state: &AppState) -> StoreCheck {
    timed_probe(state.probe_timeout, async {
        sqlx::query!("select 1 as one")
            .fetch_one(&state.pg)
            .await
            .map(drop)
    })
    .await
}

/// Asks ClickHouse `SELECT 1`.
pub async fn check_clickhouse(state: &AppState) -> StoreCheck {
    timed_probe(state.probe_timeout, state.clickhouse.ping()).await
}

/// Probes both stores concurrently, so the slower one bounds the wait, not the sum.
pub async fn check_stores(state: &AppState) -> StoresHealth {
    let (postgres, clickhouse) = tokio::join!(check_postgres(state), check_clickhouse(state));
    StoresHealth {
        postgres,
        clickhouse,
        checked_at: state.clock.now().format(&Rfc3339).unwrap_or_default(),
        version: state.version.to_owned(),
    }
}

/// The probes and, for each store that answered, its details, all concurrently.
pub async fn snapshot(state: &AppState) -> StoresSnapshot {
    let health = check_stores(state).await;
    let (postgres, clickhouse) = tokio::join!(
        postgres_details(state, health.postgres.ok),
        clickhouse_details(state, health.clickhouse.ok),
    );
    StoresSnapshot {
        health,
        postgres,
        clickhouse,
    }
}

async fn postgres_details(state: &AppState, reachable: bool) -> PostgresDetails {
    let pool = &state.pg;
    let mut details = PostgresDetails {
        pool_open: pool.size(),
        pool_idle: u32::try_from(pool.num_idle()).unwrap_or(u32::MAX),
        pool_max: pool.options().get_max_connections(),
        ..PostgresDetails::default()
    };
    if !reachable {
        return details;
    }
    let lookup = sqlx::query!(
        r#"select current_setting('server_version') as "version!",
                  current_database() as "database!",
                  pg_database_size(current_database()) as "size!""#
    )
    .fetch_one(pool);
    if let Ok(Ok(row)) = tokio::time::timeout(state.probe_timeout, lookup).await {
        details.version = Some(row.version);
        details.database = Some(row.database);
        details.size_bytes = Some(row.size);
    }
    details
}

#[derive(clickhouse::Row, serde::Deserialize)]
struct TableRows {
    table: String,
    rows: u64,
}

async fn clickhouse_details(state: &AppState, reachable: bool) -> ClickHouseDetails {
    let clickhouse = &state.clickhouse;
    let mut details = ClickHouseDetails {
        database: clickhouse.database().to_owned(),
        ..ClickHouseDetails::default()
    };
    if !reachable {
        return details;
    }
    let version = clickhouse
        .client()
        .query("SELECT version()")
        .fetch_one::<String>();
    // system.parts keeps per-part row counts: summing them reads metadata, not the table.
    // On a cluster the parts are the replicated tables' on this server (its shard).
    let (requests, events) = (
        clickhouse.storage_table("requests"),
        clickhouse.storage_table("events"),
    );
    let rows = clickhouse
        .client()
        .query(
            "SELECT table, toUInt64(sum(rows)) AS rows FROM system.parts \
             WHERE database = ? AND active AND table IN (?, ?) GROUP BY table",
        )
        .bind(clickhouse.database())
        .bind(&requests)
        .bind(&events)
        .fetch_all::<TableRows>();
    let tables = clickhouse
        .client()
        .query("SELECT name FROM system.tables WHERE database = ?")
        .bind(clickhouse.database())
        .fetch_all::<String>();
    let deadline = state.probe_timeout;
    let (version, rows, tables) = tokio::join!(
        tokio::time::timeout(deadline, version),
        tokio::time::timeout(deadline, rows),
        tokio::time::timeout(deadline, tables),
    );
    details.version = version.ok().and_then(Result::ok);
    if let (Ok(Ok(rows)), Ok(Ok(tables))) = (rows, tables) {
        // An existing table with no parts yet has no row in system.parts: a known zero.
        // A table that does not exist (schema not applied yet) stays unknown.
        let count = |name: &str| {
            tables
                .iter()
                .any(|t| t == name)
                .then(|| rows.iter().find(|r| r.table == name).map_or(0, |r| r.rows))
        };
        details.requests_rows = count(&requests);
        details.events_rows = count(&events);
    }
    details
}

fn round_ms(elapsed: Duration) -> f64 {
    (elapsed.as_secs_f64() * 10_000.0).round() / 10.0
}

/// Error texts from drivers can span lines; a health report wants one short sentence.
fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    line.chars().take(240).collect()
}

impl crate::server::AppState {
    /// The last health answers, shared by concurrent callers.
    pub fn health_cache(&self) -> &HealthCache {
        self.part()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_probe_that_answers_reports_its_latency() {
        let check = timed_probe(Duration::from_secs(1), async { Ok::<(), String>(()) }).await;
        assert!(check.ok);
        assert!(check.latency_ms.is_some());
        assert_eq!(check.error, None);
    }

    #[tokio::test]
    async fn a_probe_that_fails_has_no_latency_and_says_why() {
        let check = timed_probe(Duration::from_secs(1), async {
            Err::<(), _>("connection refused\nsecond line")
        })
        .await;
        assert!(!check.ok);
        assert_eq!(check.latency_ms, None);
        assert_eq!(check.error.as_deref(), Some("connection refused"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_that_hangs_is_cut_off_at_the_timeout() {
        let check = timed_probe(Duration::from_millis(500), async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok::<(), String>(())
        })
        .await;
        assert!(!check.ok);
        assert_eq!(check.error.as_deref(), Some("no answer within 500 ms"));
    }
}

/// A value computed at most once per `max_age`, by one caller at a time: the others
/// wait for that caller and share its result. Keeps a flood of anonymous health checks
/// from becoming a flood of store queries.
#[derive(Clone, Default)]
pub struct Cached<T: Clone> {
    slot: std::sync::Arc<tokio::sync::Mutex<Option<(tokio::time::Instant, T)>>>,
}

impl<T: Clone> Cached<T> {
    /// The cached value if younger than `max_age`, else `compute`'s (then cached).
    pub async fn get_or_compute<F, Fut>(&self, max_age: std::time::Duration, compute: F) -> T
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = T>,
    {
        let mut slot = self.slot.lock().await;
        if let Some((at, value)) = slot.as_ref() {
            if at.elapsed() < max_age {
                return value.clone();
            }
        }
        let value = compute().await;
        *slot = Some((tokio::time::Instant::now(), value.clone()));
        value
    }
}

/// The health answers' caches (`/health/ready`, `/health/deep`, `/metrics`' store part).
#[derive(Clone, Default)]
pub struct HealthCache {
    pub ready: Cached<std::sync::Arc<serde_json::Value>>,
    pub deep: Cached<std::sync::Arc<serde_json::Value>>,
    /// `/metrics`' store figures (its text), read at most once per [`HEALTH_MAX_AGE`]
    /// like the health answers, so a flood of scrapes costs PostgreSQL nothing more.
    pub metrics: Cached<std::sync::Arc<String>>,
}

/// How old a cached health answer may be.
pub const HEALTH_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(2);

/// A health answer for an anonymous caller: the same figures, without what helps an
/// attacker more than a monitor (driver error messages, the version).
pub fn redact_for_anonymous(value: &serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => serde_json::Value::Object(
            map.iter()
                .filter(|(key, _)| !matches!(key.as_str(), "error" | "version"))
                .map(|(key, value)| (key.clone(), redact_for_anonymous(value)))
                .collect(),
        ),
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.iter().map(redact_for_anonymous).collect())
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod cache_tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_one_computation_until_it_ages() {
        let cache = Cached::<usize>::default();
        let computed = std::sync::Arc::new(AtomicUsize::new(0));
        let call = || {
            let computed = computed.clone();
            let cache = cache.clone();
            async move {
                cache
                    .get_or_compute(Duration::from_secs(2), || async move {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        computed.fetch_add(1, Ordering::SeqCst) + 1
                    })
                    .await
            }
        };
        let answers = futures::future::join_all((0..50).map(|_| call())).await;
        assert!(answers.iter().all(|&n| n == 1), "{answers:?}");
        assert_eq!(computed.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(call().await, 2, "recomputed once stale");
    }

    #[test]
    fn anonymous_answers_lose_errors_and_versions_only() {
        let full = serde_json::json!({
            "status": "degraded", "version": "0.1.0",
            "postgres": {"ok": false, "latencyMs": null, "error": "password authentication failed for user x"},
            "fallback": {"queue": 3, "error": "boom"},
        });
        let redacted = redact_for_anonymous(&full);
        assert_eq!(
            redacted,
            serde_json::json!({
                "status": "degraded",
                "postgres": {"ok": false, "latencyMs": null},
                "fallback": {"queue": 3},
            })
        );
    }
}

/// `clickhouse_down`: ClickHouse did not answer the probe on two consecutive
/// evaluations (one slow ping raises nothing).
pub static CLICKHOUSE_DOWN: crate::alerts::ssr::AlertKind = crate::alerts::ssr::AlertKind {
    name: "clickhouse_down",
    description:
        "ClickHouse did not answer on two consecutive evaluations; ingest parks rows in PostgreSQL.",
    evaluate: Some(clickhouse_down),
    fire_after: 2,
    auto_resolve: true,
    fix: crate::alerts::ssr::Fix {
        href: "/admin",
        label: "Open the overview",
        action: None,
    },
};

fn clickhouse_down(state: AppState, _now: time::OffsetDateTime) -> crate::alerts::ssr::EvalFuture {
    Box::pin(async move {
        let check = check_clickhouse(&state).await;
        Ok(if check.ok {
            Vec::new()
        } else {
            vec![crate::alerts::ssr::Signal::new(
                "clickhouse",
                crate::alerts::Severity::Critical,
                "ClickHouse is not answering; ingest parks rows in the fallback queues",
            )
            .with_details(serde_json::json!({"error": check.error}))]
        })
    })
}
