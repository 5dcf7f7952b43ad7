//! `salvage bench replay --rows N`: what replay costs, against what it cannot beat.
//!
//! In throwaway databases (dropped at the end) it measures, on the same N generated rows
//! and the same batch size:
//!
//! - ingest with ClickHouse down (rows parked in the fallback queue), beside a plain
//!   PostgreSQL insert of the rows into an unindexed table;
//! - a plain PostgreSQL read of the queue in the claim's order, nothing deleted (the
//!   floor of any queue design, partitions dropped whole included);
//! - a plain PostgreSQL claim-and-delete of the queue (replay's own claim statement,
//!   `DELETE … RETURNING`, rows sent nowhere);
//! - replay of the refilled queue into ClickHouse;
//! - a plain ClickHouse insert of the rows;
//! - ingest with ClickHouse up, beside that plain ClickHouse insert;
//!
//! then prints rows/s for each, the ratio of replay to the slower of the two bounds (and
//! which one it is), and the process's peak memory (`VmHWM`).

use std::time::{Duration, Instant};

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use sqlx::{Connection, Executor, PgConnection};

use app::queues::ssr::ingest::{enqueue, store, Stored};
use app::queues::ssr::replay::{claim_sql, drain, total_depth, ReplayOptions};
use app::queues::ssr::rows::{parse_batch, Line, MAX_ROWS};
use app::queues::Queue;
use app::server::AppState;

use crate::config::Settings;
use crate::startup;

/// The key the bench's rows count against (as one caller's would: the fallback path
/// counts that key's queued rows for its quota on every batch).
const BENCH_KEY: i64 = 0;

/// `count` rows starting at row `first`, identical on every call with the same numbers
/// (parsed as ingest parses them, one request's worth at a time).
fn rows(first: u64, count: u64) -> Vec<Line> {
    let mut lines = Vec::with_capacity(count as usize);
    let mut at = first;
    while at < first + count {
        let n = (first + count - at).min(MAX_ROWS as u64);
        lines.extend(request_rows(at, n));
        at += n;
    }
    lines
}

/// At most [`MAX_ROWS`] rows, as one ingest request would carry them.
fn request_rows(first: u64, count: u64) -> Vec<Line> {
    let base = time::OffsetDateTime::now_utc().replace_time(time::Time::MIDNIGHT)
        - time::Duration::days(1);
    let body: Vec<serde_json::Value> = (first..first + count)
        .map(|i| {
            let ts = base + time::Duration::milliseconds((i * 37 % 86_400_000) as i64);
            json!({
                "id": uuid::Uuid::from_u128(0x5a1_0000_0000_0000_0000_0000_0000_0000 + u128::from(i)),
                "ts": ts.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
                "organization_id": format!("org_{}", i % 7), "project": "bench",
                "provider": "openai", "model": "gpt-4o-mini", "status": 200,
                "latency_ms": 100 + i % 900, "prompt_tokens": i % 4000,
                "completion_tokens": i % 700, "cost_usd": 0.0001, "error": null,
            })
        })
        .collect();
    parse_batch(
        Queue::Requests,
        &serde_json::to_vec(&body).expect("JSON of generated rows"),
        &app::ingest_keys::ssr::Scope::All,
    )
    .expect("generated rows are valid")
}

/// Runs `step` over the rows in chunks of `batch`, timing only `step` (not the row
/// generation). Returns rows per second.
async fn timed_chunks<F, Fut>(total: u64, batch: u64, mut step: F) -> anyhow::Result<f64>
where
    F: FnMut(Vec<Line>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut spent = Duration::ZERO;
    let mut first = 0;
    while first < total {
        let count = batch.min(total - first);
        let chunk = rows(first, count);
        let started = Instant::now();
        step(chunk).await?;
        spent += started.elapsed();
        first += count;
    }
    Ok(total as f64 / spent.as_secs_f64().max(1e-9))
}

/// Peak resident memory of this process, from `/proc/self/status`.
pub(crate) fn peak_memory() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l.trim_start_matches("VmHWM:").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// A memory figure of process `pid` (`self` for this one) from `/proc/<pid>/status`, in
/// MiB: `VmRSS` (resident now) or `VmHWM` (its peak). 0 when it cannot be read.
pub(crate) fn memory_mib(pid: &str, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.split(':').next() == Some(field))
                .and_then(|line| line.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// Scratch databases for one bench run.
pub(crate) struct Scratch {
    admin_url: SecretString,
    pg_database: String,
    settings: Settings,
    clickhouse_databases: Vec<String>,
}

impl Scratch {
    /// Creates the PostgreSQL database `pg_database` (as the schema's owner when there
    /// is one; the bench then runs as that role on it) and returns the settings pointing
    /// at it; `drop_all` drops it and `clickhouse_databases`.
    pub(crate) async fn create(
        settings: &Settings,
        pg_database: &str,
        clickhouse_databases: Vec<String>,
    ) -> anyhow::Result<(Settings, Scratch)> {
        let mut settings = settings.clone();
        let admin_url = settings
            .migrate_database_url
            .take()
            .unwrap_or_else(|| settings.database_url.clone());
        let mut admin = PgConnection::connect(admin_url.expose_secret())
            .await
            .context("PostgreSQL must be running (scripts/stores.sh start)")?;
        admin
            .execute(format!(r#"create database "{pg_database}""#).as_str())
            .await?;
        let mut url = url::Url::parse(admin_url.expose_secret())?;
        url.set_path(pg_database);
        settings.database_url = SecretString::from(url.to_string());
        let scratch = Scratch {
            admin_url,
            pg_database: pg_database.to_owned(),
            settings: settings.clone(),
            clickhouse_databases,
        };
        Ok((settings, scratch))
    }

    pub(crate) async fn drop_all(&self) {
        if let Ok(mut admin) = PgConnection::connect(self.admin_url.expose_secret()).await {
            let _ = admin
                .execute(
                    format!(
                        r#"drop database if exists "{}" with (force)"#,
                        self.pg_database
                    )
                    .as_str(),
                )
                .await;
        }
        for database in &self.clickhouse_databases {
            let _ = self
                .settings
                .clickhouse_client_for(database)
                .drop_database()
                .await;
        }
    }
}

/// `  12,345 rows/s`, right-aligned, grouped as the console groups counts.
fn rate(n: f64) -> String {
    let grouped = app::format::group_digits(n.round().max(0.0) as u64);
    format!("{grouped:>10} rows/s")
}

/// `salvage bench replay`.
pub async fn replay(
    settings: &Settings,
    total: u64,
    batch: i64,
    parallel: usize,
) -> anyhow::Result<()> {
    anyhow::ensure!(total > 0, "--rows: at least 1");
    anyhow::ensure!((1..=16).contains(&parallel), "--parallel: between 1 and 16");
    app::queues::ssr::replay::batch_size(batch).map_err(|e| anyhow::anyhow!("--batch: {e}"))?;
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..10];
    let main_db = format!("salvage_bench_{suffix}");
    let plain_db = format!("salvage_bench_{suffix}_plain");
    let ingest_db = format!("salvage_bench_{suffix}_ingest");
    let (settings, scratch) = Scratch::create(
        settings,
        &main_db,
        vec![main_db.clone(), plain_db.clone(), ingest_db.clone()],
    )
    .await?;
    let dbs = [main_db.as_str(), plain_db.as_str(), ingest_db.as_str()];
    let result = measure(&settings, dbs, total, batch, parallel).await;
    scratch.drop_all().await;
    result
}

fn state_for(settings: &Settings, database: &str) -> AppState {
    let mut settings = settings.clone();
    settings.clickhouse.database = database.to_owned();
    startup::build_state(&settings)
}

async fn measure(
    settings: &Settings,
    [main_db, plain_db, ingest_db]: [&str; 3],
    total: u64,
    batch: i64,
    parallel: usize,
) -> anyhow::Result<()> {
    let state = state_for(settings, main_db);
    startup::migrate(&state).await?;
    let plain = state_for(settings, plain_db);
    plain.clickhouse.migrate().await?;
    let ingest_up = state_for(settings, ingest_db);
    ingest_up.clickhouse.migrate().await?;
    let mut down_settings = settings.clone();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    down_settings.clickhouse.url = format!("http://127.0.0.1:{closed}").parse()?;
    let ingest_down = state_for(&down_settings, main_db);
    let pg = state.pg.clone();
    // Replay claims and inserts `batch` rows at a time; ingest takes at most one
    // request's worth, so the ingest figures (and the refill) use that.
    let step = batch as u64;
    let ingest_step = step.min(MAX_ROWS as u64);
    println!(
        "bench replay: {total} rows, replay batch {batch} ({parallel} in flight), ingest batch {ingest_step}, in throwaway databases\n"
    );

    // Plain PostgreSQL insert: the same rows into a table without index or trigger.
    sqlx::query("create table bench_plain (id uuid, ts timestamptz, row_json text)")
        .execute(&pg)
        .await?;
    let pg_insert = timed_chunks(total, ingest_step, |chunk| {
        let pg = pg.clone();
        async move {
            let ids: Vec<uuid::Uuid> = chunk.iter().map(|l| l.id).collect();
            let ts: Vec<time::OffsetDateTime> = chunk.iter().map(|l| l.ts).collect();
            let json: Vec<&str> = chunk.iter().map(|l| l.json.as_str()).collect();
            sqlx::query("insert into bench_plain select * from unnest($1::uuid[], $2::timestamptz[], $3::text[])")
                .bind(&ids).bind(&ts).bind(&json).execute(&pg).await?;
            Ok(())
        }
    })
    .await?;

    // Plain COPY of the same rows into the same kind of table, for reference (the
    // baseline stays the INSERT above).
    sqlx::query("create table bench_copy (id uuid, ts timestamptz, row_json text)")
        .execute(&pg)
        .await?;
    let pg_copy = timed_chunks(total, ingest_step, |chunk| {
        let pg = pg.clone();
        async move {
            let mut csv = Vec::with_capacity(chunk.len() * 400);
            for line in &chunk {
                let ts = line
                    .ts
                    .format(&time::format_description::well_known::Rfc3339)?;
                csv.extend_from_slice(format!("{},{ts},\"", line.id).as_bytes());
                csv.extend_from_slice(line.json.replace('"', "\"\"").as_bytes());
                csv.extend_from_slice(b"\"\n");
            }
            let mut conn = pg.acquire().await?;
            let mut copy = conn
                .copy_in_raw("copy bench_copy from stdin (format csv)")
                .await?;
            copy.send(csv).await?;
            copy.finish().await?;
            Ok(())
        }
    })
    .await?;

    // Ingest with ClickHouse down: every batch is parked in the queue.
    let ingest_fallback = timed_chunks(total, ingest_step, |chunk| {
        let state = ingest_down.clone();
        async move {
            match store(&state, Queue::Requests, &chunk, Some(BENCH_KEY)).await {
                Ok(Stored::Fallback { .. }) => Ok(()),
                other => anyhow::bail!("expected the fallback queue, got {other:?}"),
            }
        }
    })
    .await?;

    // What /admin/queues and /health/deep read, with N rows queued (best of 5).
    let mut page = Duration::MAX;
    for _ in 0..5 {
        let started = Instant::now();
        let now = time::OffsetDateTime::now_utc();
        app::queues::ssr::stats::queue_stats(&pg, state.queues().ttl, now).await?;
        app::queues::ssr::stats::depth_samples(&pg, now).await?;
        app::queues::ssr::replay::recent_runs(&pg, 20, now).await?;
        page = page.min(started.elapsed());
    }

    // Both drains below start from a freshly vacuumed queue, so neither pays for the
    // other's dead rows (in production autovacuum does this).
    sqlx::query("vacuum analyze requests_fallback")
        .execute(&pg)
        .await?;

    // Plain PostgreSQL read of the queue in the claim's order, nothing claimed or
    // deleted: the floor of any queue design, one that drops drained partitions whole
    // included. One streamed query, batch by batch as the rows arrive.
    let started = Instant::now();
    let mut read = 0u64;
    {
        use futures::TryStreamExt;
        let mut stream =
            sqlx::query!("select id, ts, row_json from requests_fallback order by queued_at")
                .fetch(&pg);
        while stream.try_next().await?.is_some() {
            read += 1;
        }
    }
    anyhow::ensure!(read == total, "the read saw {read} of {total} rows");
    let pg_read = total as f64 / started.elapsed().as_secs_f64();

    // Plain PostgreSQL claim-and-delete of the queue, rows sent nowhere.
    let started = Instant::now();
    let mut deleted = 0u64;
    loop {
        let mut tx = pg.begin().await?;
        // Replay's own claim statement, with nothing done with the rows.
        let n = sqlx::query(&claim_sql(Queue::Requests.table()))
            .bind(batch)
            .fetch_all(&mut *tx)
            .await?
            .len() as u64;
        tx.commit().await?;
        if n == 0 {
            break;
        }
        deleted += n;
    }
    anyhow::ensure!(
        deleted == total,
        "claim-and-delete saw {deleted} of {total} rows"
    );
    let pg_claim = total as f64 / started.elapsed().as_secs_f64();

    // Refill (the same rows), then replay them.
    timed_chunks(total, ingest_step, |chunk| {
        let pg = pg.clone();
        async move {
            let limits = app::queues::ssr::ingest::Limits {
                key_id: Some(BENCH_KEY),
                per_key_quota: i64::MAX / 2,
                total_cap: i64::MAX / 2,
            };
            enqueue(&pg, Queue::Requests, &chunk, "bench", &limits).await?;
            Ok(())
        }
    })
    .await?;
    sqlx::query("vacuum analyze requests_fallback")
        .execute(&pg)
        .await?;
    let options = ReplayOptions {
        batch,
        parallel,
        budget: Duration::from_secs(24 * 3600),
        faults: Default::default(),
    };
    // The replay engine alone (what every replay run drives), without a run record.
    let report = drain(&state, &options, total as i64, None)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let left = total_depth(&pg).await?;
    anyhow::ensure!(
        report.rows_done == total as i64 && left == 0,
        "replay moved {} of {total} rows ({:?})",
        report.rows_done,
        report.error
    );
    let replay_rate = total as f64 / report.elapsed.as_secs_f64();
    let (count, distinct): (u64, u64) = state
        .clickhouse
        .client()
        // uniqExact over UUIDs hangs on ClickHouse 18.16 when the ids are sequential
        // (its UInt128 hashing); over their text it is quick on every version.
        .query("SELECT count(), uniqExact(toString(id)) FROM requests")
        .fetch_one()
        .await?;
    anyhow::ensure!(
        count == total && distinct == total,
        "ClickHouse holds {count} rows / {distinct} ids after replay, expected {total}"
    );

    // Plain ClickHouse insert of the same rows.
    let ch_insert = timed_chunks(total, step, |chunk| {
        let plain = plain.clone();
        async move {
            plain
                .clickhouse
                .insert_lines(
                    "requests",
                    chunk.iter().map(|l| l.json.as_str()),
                    Duration::from_secs(60),
                )
                .await?;
            Ok(())
        }
    })
    .await?;

    // Ingest with ClickHouse up.
    let ingest_clickhouse = timed_chunks(total, ingest_step, |chunk| {
        let state = ingest_up.clone();
        async move {
            match store(&state, Queue::Requests, &chunk, Some(BENCH_KEY)).await {
                Ok(Stored::ClickHouse) => Ok(()),
                other => anyhow::bail!("expected ClickHouse, got {other:?}"),
            }
        }
    })
    .await?;

    let (bound, bound_name) = if pg_claim <= ch_insert {
        (pg_claim, "PostgreSQL claim-and-delete")
    } else {
        (ch_insert, "ClickHouse insert")
    };
    println!("replay                              {}", rate(replay_rate));
    println!("plain ClickHouse insert             {}", rate(ch_insert));
    println!("plain PostgreSQL claim-and-delete   {}", rate(pg_claim));
    println!(
        "plain PostgreSQL read, no delete    {}   (what a queue dropping drained partitions would pay)",
        rate(pg_read)
    );
    println!(
        "ratio replay / slower bound         {:>10.2}   (bounded by the {bound_name}; goal >= 0.70)",
        replay_rate / bound
    );
    println!(
        "replay, absolute                    {}   (goal >= 100,000 rows/s for 1,000,000 rows; the ceiling with no delete at all: {})",
        rate(replay_rate),
        rate(pg_read.min(ch_insert)).trim()
    );
    println!();
    println!(
        "ingest, ClickHouse up               {}   (plain ClickHouse insert {})",
        rate(ingest_clickhouse),
        rate(ch_insert).trim()
    );
    println!(
        "ingest, ClickHouse down (fallback)  {}   (plain PostgreSQL insert {}, plain COPY {})",
        rate(ingest_fallback),
        rate(pg_insert).trim(),
        rate(pg_copy).trim()
    );
    println!(
        "ratio fallback ingest / plain INSERT {:>9.2}   (goal >= 0.50)",
        ingest_fallback / pg_insert
    );
    println!();
    println!(
        "queues page figures with {total} rows queued: {:.1} ms (depth, oldest row, expiring in 24 h, samples, runs)",
        page.as_secs_f64() * 1000.0
    );
    println!(
        "ClickHouse after replay: {count} rows, {distinct} distinct ids (exactly {total} expected)"
    );
    println!("peak memory (VmHWM): {}", peak_memory());
    Ok(())
}
