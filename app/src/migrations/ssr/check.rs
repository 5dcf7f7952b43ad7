//! The smoke checks of `salvage check` (and of `salvage migrate`, after it applied
//! migrations): both stores answer, the schema is the one this binary expects, the
//! history chain verifies, the queues can be read, no background migration failed or
//! stuck, and one round trip through the real write path (ingest with ClickHouse cut,
//! so the rows land in the fallback queue, then replay into ClickHouse) in scratch
//! databases made for it and dropped after, never the live tables.

use std::time::Duration;

use serde::Serialize;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::backups::ssr::postgres as pg;
use crate::queues::Queue;
use crate::server::clickhouse::ClickHouse;
use crate::server::AppState;
use crate::stores::StoreError;

/// One check and how it went.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

/// Every check, in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    pub checks: Vec<Check>,
}

impl CheckReport {
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }

    /// The names of the checks that failed.
    pub fn failed(&self) -> Vec<&'static str> {
        self.checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| c.name)
            .collect()
    }
}

/// Why a check failed; its text is the check's detail.
#[derive(Debug, thiserror::Error)]
pub enum CheckFailed {
    /// A store failed a call the check made.
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("does not answer: {0}")]
    NoAnswer(String),
    #[error("no answer within {0} s")]
    Timeout(u64),
    /// Not run: the store it needs does not answer.
    #[error("skipped: {0} does not answer")]
    Skipped(&'static str),
    /// The check ran and found something wrong.
    #[error("{0}")]
    Wrong(String),
}

/// What a check found: a detail when it passed.
type Outcome = Result<String, CheckFailed>;

fn check(name: &'static str, result: Outcome) -> Check {
    match result {
        Ok(detail) => Check {
            name,
            ok: true,
            detail,
        },
        Err(failed) => Check {
            name,
            ok: false,
            detail: failed.to_string(),
        },
    }
}

/// The rows of the round trip: three request rows of a scratch organisation.
const ROUND_TRIP_ROWS: usize = 3;

/// Runs every check. A store that does not answer fails its check and the checks that
/// need it, each saying so; nothing here writes to the live databases.
pub async fn run(state: &AppState) -> CheckReport {
    let limit = state.probe_timeout.max(Duration::from_secs(2));
    let postgres =
        match tokio::time::timeout(limit, sqlx::query("select 1").execute(&state.pg)).await {
            Ok(Ok(_)) => Ok("answers".to_owned()),
            Ok(Err(error)) => Err(CheckFailed::NoAnswer(error.to_string())),
            Err(_) => Err(CheckFailed::Timeout(limit.as_secs())),
        };
    let clickhouse = match tokio::time::timeout(limit, state.clickhouse.ping()).await {
        Ok(Ok(())) => Ok("answers".to_owned()),
        Ok(Err(error)) => Err(CheckFailed::NoAnswer(error.to_string())),
        Err(_) => Err(CheckFailed::Timeout(limit.as_secs())),
    };
    let (pg_up, ch_up) = (postgres.is_ok(), clickhouse.is_ok());
    let mut checks = vec![check("postgres", postgres), check("clickhouse", clickhouse)];
    let needs_pg = || Err(CheckFailed::Skipped("PostgreSQL"));
    let needs_both = || Err(CheckFailed::Skipped("a store"));
    checks.push(check(
        "schema",
        if pg_up {
            schema_check(state).await
        } else {
            needs_pg()
        },
    ));
    checks.push(check(
        "history",
        if pg_up {
            history_check(state).await
        } else {
            needs_pg()
        },
    ));
    checks.push(check(
        "queues",
        if pg_up {
            queues_check(state).await
        } else {
            needs_pg()
        },
    ));
    checks.push(check(
        "background migrations",
        if pg_up {
            background_check(state).await
        } else {
            needs_pg()
        },
    ));
    checks.push(check(
        "round trip",
        if pg_up && ch_up {
            round_trip(state).await
        } else {
            needs_both()
        },
    ));
    CheckReport { checks }
}

async fn schema_check(state: &AppState) -> Outcome {
    let status = super::schema::status(&state.pg)
        .await
        .map_err(StoreError::postgres)?;
    match status.problem {
        None => Ok(format!(
            "at version {}, as this binary expects",
            status.applied
        )),
        Some(problem) => Err(CheckFailed::Wrong(problem)),
    }
}

async fn history_check(state: &AppState) -> Outcome {
    let report = crate::history::chain::verify(
        &state.pg,
        &state.clickhouse,
        state.clock.now(),
        "salvage check",
    )
    .await
    .map_err(StoreError::postgres)?;
    match report.first_broken {
        None => Ok(format!(
            "{} entries, the chain verifies",
            crate::format::group_digits(report.entries.max(0) as u64)
        )),
        Some(broken) => Err(CheckFailed::Wrong(format!(
            "the chain breaks at entry {}: {}",
            broken.id, broken.problem
        ))),
    }
}

async fn queues_check(state: &AppState) -> Outcome {
    let depths = crate::queues::ssr::stats::queue_depths(&state.pg)
        .await
        .map_err(StoreError::postgres)?;
    Ok(depths
        .iter()
        .map(|(queue, depth)| {
            format!(
                "{} {}",
                queue.as_str(),
                crate::format::group_digits(*depth as u64)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
        + " rows queued")
}

async fn background_check(state: &AppState) -> Outcome {
    let rows = super::store::list(state)
        .await
        .map_err(|e| CheckFailed::Wrong(e.to_string()))?;
    let bad: Vec<String> = rows
        .iter()
        .filter(|m| m.stuck || m.status == crate::migrations::MigrationStatus::Failed)
        .map(|m| {
            if m.stuck {
                format!("{} is stuck", m.name)
            } else {
                format!(
                    "{} failed: {}",
                    m.name,
                    m.last_error.as_deref().unwrap_or("?")
                )
            }
        })
        .collect();
    if bad.is_empty() {
        let done = rows
            .iter()
            .filter(|m| m.status == crate::migrations::MigrationStatus::Succeeded)
            .count();
        Ok(format!(
            "{done} of {} done, none failed or stuck",
            rows.len()
        ))
    } else {
        Err(CheckFailed::Wrong(bad.join("; ")))
    }
}

/// Ingest with ClickHouse cut, then replay, in scratch databases.
async fn round_trip(state: &AppState) -> Outcome {
    let name = format!("salvage_check_{}", uuid::Uuid::new_v4().simple());
    let url = pg::working_url(state.backups());
    let mut admin = pg::connect(url, None).await.map_err(StoreError::postgres)?;
    sqlx::query(&format!("create database {}", pg::quote(&name)))
        .execute(&mut admin)
        .await
        .map_err(|e| StoreError::postgres(format!("create a scratch database: {e}")))?;
    let scratch_ch = state.clickhouse.with_database(&name);
    let result = round_trip_in(state, url, &name, &scratch_ch).await;
    let _ = scratch_ch.drop_database().await;
    let _ = sqlx::query(&format!(
        "drop database if exists {} with (force)",
        pg::quote(&name)
    ))
    .execute(&mut admin)
    .await;
    result
}

async fn round_trip_in(
    state: &AppState,
    url: &secrecy::SecretString,
    name: &str,
    scratch_ch: &ClickHouse,
) -> Outcome {
    let options: PgConnectOptions = secrecy::ExposeSecret::expose_secret(url)
        .parse()
        .map_err(StoreError::postgres)?;
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect_with(options.database(name).application_name("salvage-check"))
        .await
        .map_err(StoreError::postgres)?;
    let result = async {
        crate::server::postgres::MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| StoreError::postgres(format!("migrate the scratch database: {e}")))?;
        scratch_ch
            .migrate()
            .await
            .map_err(|e| StoreError::clickhouse(format!("migrate the scratch database: {e}")))?;
        // Ingest while ClickHouse is cut: a port nothing listens on.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| CheckFailed::Wrong(e.to_string()))?
            .port();
        let mut scratch = state.clone();
        scratch.pg = pool.clone();
        scratch.clickhouse = ClickHouse::new(
            &format!("http://127.0.0.1:{closed}"),
            "default",
            &secrecy::SecretString::from(String::new()),
            name,
        )
        .with_layout(state.clickhouse.layout().clone());
        let lines = crate::queues::ssr::rows::parse_batch(
            Queue::Requests,
            round_trip_body().as_bytes(),
            &crate::ingest_keys::ssr::Scope::All,
        )
        .map_err(|e| CheckFailed::Wrong(format!("ingest: {e}")))?;
        let stored = crate::queues::ssr::ingest::store(&scratch, Queue::Requests, &lines, None)
            .await
            .map_err(|e| CheckFailed::Wrong(format!("ingest: {e}")))?;
        let queued = crate::queues::ssr::replay::total_depth(&pool)
            .await
            .map_err(StoreError::postgres)?;
        if !matches!(stored, crate::queues::ssr::ingest::Stored::Fallback { .. })
            || queued != ROUND_TRIP_ROWS as i64
        {
            return Err(CheckFailed::Wrong(format!(
                "ingest with ClickHouse cut queued {queued} rows, expected {ROUND_TRIP_ROWS}"
            )));
        }
        // Replay into the scratch ClickHouse database.
        scratch.clickhouse = scratch_ch.clone();
        let options = crate::queues::ssr::replay::ReplayOptions::from_state(&scratch);
        let drained = crate::queues::ssr::replay::drain(&scratch, &options, queued, None)
            .await
            .map_err(|e| CheckFailed::Wrong(format!("replay: {e}")))?;
        let in_clickhouse: u64 = scratch_ch
            .client()
            .query(&format!(
                "SELECT count() FROM `{}`",
                scratch_ch.table("requests")
            ))
            .fetch_one()
            .await
            .map_err(StoreError::clickhouse)?;
        let left = crate::queues::ssr::replay::total_depth(&pool)
            .await
            .map_err(StoreError::postgres)?;
        if in_clickhouse != ROUND_TRIP_ROWS as u64 || left != 0 {
            return Err(CheckFailed::Wrong(format!(
                "replay moved {} rows: ClickHouse has {in_clickhouse} of {ROUND_TRIP_ROWS}, {left} left queued{}",
                drained.rows_inserted,
                drained.error.map(|e| format!(" ({e})")).unwrap_or_default()
            )));
        }
        Ok(format!(
            "{ROUND_TRIP_ROWS} rows ingested with ClickHouse cut, queued, replayed, each once, in scratch databases {name}"
        ))
    }
    .await;
    pool.close().await;
    result
}

fn round_trip_body() -> String {
    let rows: Vec<serde_json::Value> = (0..ROUND_TRIP_ROWS)
        .map(|i| {
            serde_json::json!({
                "id": uuid::Uuid::new_v4(), "ts": "2026-01-01T00:00:00Z",
                "organization_id": "salvage_check", "project": "check", "provider": "check",
                "model": "check", "status": 200, "latency_ms": i, "prompt_tokens": 1,
                "completion_tokens": 1, "cost_usd": 0.0, "error": null
            })
        })
        .collect();
    serde_json::Value::Array(rows).to_string()
}
