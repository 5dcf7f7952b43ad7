//! Benchmark: the runbook history at a million entries, and sign-in timing.
//!
//!     cargo run -p salvage --features app/ssr --example bench_history -- [entries]
//!
//! Needs the local stores (`scripts/stores.sh start`). Creates a scratch database
//! `salvage_bench_history`, appends `entries` (default 1,000,000) through the chaining
//! trigger, then prints the median and 95th percentile of the history page's queries
//! (each filter the page offers, and a page deep in the keyset), the time to verify the
//! whole chain, and how long a failed sign-in takes for an unknown email versus a wrong
//! password. Drops the scratch database at the end. Prints figures; asserts nothing.

use std::time::{Duration, Instant};

use anyhow::Context;
use app::history::chain::verify;
use app::history::ssr::{cursor_after, parse_cursor, search, Filter};
use app::history::Outcome;
use secrecy::SecretString;
use sqlx::{Connection, Executor, PgConnection, PgPool};

const DATABASE: &str = "salvage_bench_history";
const RUNS: usize = 21;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let entries: i64 = std::env::args()
        .nth(1)
        .map(|n| n.replace('_', "").parse())
        .transpose()
        .context("entries must be a number")?
        .unwrap_or(1_000_000);
    let env_file = concat!(env!("CARGO_MANIFEST_DIR"), "/../.env");
    let _ = dotenvy::from_path(env_file);
    // The schema's owner may create databases (the application role may not).
    let admin_url = std::env::var("SALVAGE_MIGRATE_DATABASE_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .or_else(|| std::env::var("DATABASE_URL").ok())
        .context("DATABASE_URL: run scripts/stores.sh start")?;
    let mut admin = PgConnection::connect(&admin_url).await?;
    admin
        .execute(format!("drop database if exists {DATABASE} with (force)").as_str())
        .await?;
    admin
        .execute(format!("create database {DATABASE}").as_str())
        .await?;
    let mut url = url::Url::parse(&admin_url)?;
    url.set_path(DATABASE);
    let pg = PgPool::connect(url.as_str()).await?;
    app::server::postgres::migrate(&pg).await?;
    // The verification compares the chain with its anchors: a fresh ClickHouse database.
    let mut settings = salvage::config::Settings::from_env().context("settings")?;
    settings.clickhouse.database = DATABASE.to_owned();
    let clickhouse = settings.clickhouse_client();
    clickhouse.drop_database().await?;
    clickhouse.migrate().await?;

    println!(
        "History benchmark: {entries} entries (PostgreSQL {})",
        server_version(&pg).await?
    );
    let started = Instant::now();
    seed(&pg, entries).await?;
    let seeded = started.elapsed();
    println!(
        "  append through the chain trigger: {:.1} s ({:.0} entries/s)",
        seeded.as_secs_f64(),
        entries as f64 / seeded.as_secs_f64()
    );
    sqlx::query("analyze runbook_history").execute(&pg).await?;

    let deep = deep_cursor(&pg, 10_000).await?;
    let cases: Vec<(&str, Filter)> = vec![
        ("newest page, no filter", Filter::default()),
        (
            "kind = drill",
            Filter {
                kind: Some("drill".into()),
                ..Filter::default()
            },
        ),
        (
            "actor = lead@example.com",
            Filter {
                actor: Some("lead@example.com".into()),
                ..Filter::default()
            },
        ),
        (
            "outcome = failed",
            Filter {
                outcome: Some(Outcome::Failed),
                ..Filter::default()
            },
        ),
        (
            "text \"webhook\"",
            Filter {
                text: app::history::ssr::text_query("webhook").unwrap(),
                ..Filter::default()
            },
        ),
        (
            "text, rare word",
            Filter {
                text: app::history::ssr::text_query("entry 424242").unwrap(),
                ..Filter::default()
            },
        ),
        ("one week in the middle", {
            let from = time::macros::datetime!(2024-03-01 00:00 UTC);
            Filter {
                from: Some(from),
                to: Some(from + time::Duration::days(7)),
                ..Filter::default()
            }
        }),
        (
            "kind + outcome + actor",
            Filter {
                kind: Some("drill".into()),
                outcome: Some(Outcome::Failed),
                actor: Some("system:scheduler".into()),
                ..Filter::default()
            },
        ),
        (
            "page after 10,000 entries",
            Filter {
                before: Some(deep),
                ..Filter::default()
            },
        ),
    ];
    println!("  history page (50 entries), {RUNS} runs each:        median      p95");
    for (name, filter) in cases {
        let mut times = Vec::with_capacity(RUNS);
        for _ in 0..RUNS {
            let t = Instant::now();
            let (page, _) = search(&pg, &filter, 50, time::OffsetDateTime::now_utc()).await?;
            times.push(t.elapsed());
            std::hint::black_box(page);
        }
        let (median, p95) = stats(&mut times);
        println!("    {name:<44} {:>7.2} ms {:>7.2} ms", ms(median), ms(p95));
    }

    let t = Instant::now();
    let report = verify(&pg, &clickhouse, time::OffsetDateTime::now_utc(), "bench").await?;
    println!(
        "  verify the whole chain: {:.2} s ({} entries, intact: {})",
        t.elapsed().as_secs_f64(),
        report.entries,
        report.first_broken.is_none()
    );

    let stored = app::auth::ssr::hash_password(SecretString::from("correct horse battery staple"))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let (mut unknown, mut wrong) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let t = Instant::now();
        app::auth::ssr::verify_password(SecretString::from("guess"), None)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        unknown.push(t.elapsed());
        let t = Instant::now();
        app::auth::ssr::verify_password(SecretString::from("guess"), Some(stored.clone()))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        wrong.push(t.elapsed());
    }
    let (unknown_median, _) = stats(&mut unknown);
    let (wrong_median, _) = stats(&mut wrong);
    println!(
        "  failed sign-in, password check: unknown email {:.1} ms, wrong password {:.1} ms (median of {RUNS})",
        ms(unknown_median),
        ms(wrong_median)
    );

    pg.close().await;
    clickhouse.drop_database().await?;
    admin
        .execute(format!("drop database if exists {DATABASE} with (force)").as_str())
        .await?;
    Ok(())
}

async fn server_version(pg: &PgPool) -> anyhow::Result<String> {
    Ok(sqlx::query_scalar("show server_version")
        .fetch_one(pg)
        .await?)
}

/// Appends `entries` rows in batches of 100,000, each through the chaining trigger.
async fn seed(pg: &PgPool, entries: i64) -> anyhow::Result<()> {
    let mut done = 0;
    while done < entries {
        let upto = (done + 100_000).min(entries);
        sqlx::query(
            "insert into runbook_history (kind, title, body, actor, started_at, finished_at, outcome)
             select (array['drill','note','replay','incident','activation','expiry'])[1 + g % 6],
                    'Entry ' || g || ' ' || (array['disk','queue','replay','cron','backup','webhook'])[1 + (g * 7) % 6],
                    'body ' || md5(g::text),
                    (array['ops@example.com','lead@example.com','system:scheduler','admin@example.com'])[1 + g % 4],
                    timestamptz '2024-01-01 00:00:00+00' + g * interval '30 seconds',
                    timestamptz '2024-01-01 00:00:00+00' + g * interval '30 seconds' + interval '9 minutes',
                    (array['succeeded','succeeded','succeeded','failed','info'])[1 + g % 5]
             from generate_series($1::bigint, $2::bigint) g",
        )
        .bind(done + 1)
        .bind(upto)
        .execute(pg)
        .await?;
        done = upto;
        eprint!("\r  appended {done}/{entries}");
    }
    eprintln!();
    Ok(())
}

/// The keyset cursor after the first `depth` entries, as paging there would reach it.
async fn deep_cursor(pg: &PgPool, depth: i64) -> anyhow::Result<(time::OffsetDateTime, i64)> {
    let mut filter = Filter::default();
    let pages = depth / 1000;
    for _ in 0..pages {
        let (entries, _) = search(pg, &filter, 1000, time::OffsetDateTime::now_utc()).await?;
        let last = entries.last().context("fewer entries than the depth")?;
        filter.before =
            Some(parse_cursor(&cursor_after(last)).map_err(|e| anyhow::anyhow!("{e}"))?);
    }
    filter.before.context("no cursor")
}

fn stats(times: &mut [Duration]) -> (Duration, Duration) {
    times.sort();
    let p95 = times[((times.len() as f64 * 0.95).ceil() as usize).min(times.len()) - 1];
    (times[times.len() / 2], p95)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
