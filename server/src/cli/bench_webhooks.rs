//! `salvage bench webhooks`: deliveries per second to a local receiver against a plain
//! HTTP client posting the same payloads at the same concurrency, then a redrive of N
//! dead letters (rows/s, peak memory before and after), in a throwaway PostgreSQL
//! database (dropped at the end).
//!
//! Both senders post to one receiver in this process that answers 200 at once, so the
//! figures compare Salvage's work per delivery (claim, sign, record the attempt, the
//! circuit) with the HTTP round trip alone.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;

use super::bench::{peak_memory, Scratch};
use crate::config::Settings;
use crate::startup;

/// In flight at once, for both senders.
const CONCURRENCY: usize = 32;

/// `salvage bench webhooks`.
pub async fn webhooks(
    settings: &Settings,
    deliveries: u64,
    dead_letters: u64,
    receiver_ms: Vec<u64>,
) -> anyhow::Result<()> {
    anyhow::ensure!(deliveries > 0, "--deliveries: at least one");
    for (i, ms) in receiver_ms.iter().enumerate() {
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..10];
        let database = format!("salvage_bench_{suffix}");
        let (settings, scratch) = Scratch::create(settings, &database, Vec::new()).await?;
        // The redrive is measured once, with the first run.
        let dead = if i == 0 { dead_letters as i64 } else { 0 };
        let result = measure(
            &settings,
            deliveries as i64,
            dead,
            Duration::from_millis(*ms),
        )
        .await;
        scratch.drop_all().await;
        result?;
    }
    Ok(())
}

/// A receiver that answers 200 to everything after `latency`, and counts.
async fn receiver(latency: Duration) -> anyhow::Result<(String, Arc<AtomicU64>)> {
    let hits = Arc::new(AtomicU64::new(0));
    let counter = hits.clone();
    let router = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |_body: axum::body::Bytes| {
            let counter = counter.clone();
            async move {
                tokio::time::sleep(latency).await;
                counter.fetch_add(1, Ordering::Relaxed);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok((url, hits))
}

async fn measure(
    settings: &Settings,
    deliveries: i64,
    dead_letters: i64,
    latency: Duration,
) -> anyhow::Result<()> {
    let mut state = startup::build_state(settings);
    state
        .part_mut::<app::dead_letters::ssr::WebhookSettings>()
        .allow_private = true;
    state
        .part_mut::<app::dead_letters::ssr::WebhookSettings>()
        .workers = CONCURRENCY;
    state
        .part_mut::<app::dead_letters::ssr::WebhookSettings>()
        .redrive_rate = 1_000_000;
    startup::migrate_postgres(&state).await?;
    let pg = &state.pg;
    let (url, hits) = receiver(latency).await?;
    println!(
        "\nbench webhooks: {deliveries} deliveries to a local receiver answering in {} ms, \
         {CONCURRENCY} in flight",
        latency.as_millis()
    );
    // Sealed as a webhook added by hand is (when the settings have a key), so each
    // delivery pays for opening it.
    let secret = {
        let secret = app::dead_letters::ssr::send::new_secret();
        state.webhooks().secret_keys.seal(&secret).unwrap_or(secret)
    };
    let webhook = sqlx::query_scalar!(
        "insert into webhooks (url, event_types, secret, max_in_flight, created_by)
         values ($1, '{order.paid}', $2, $3, 'bench') returning id",
        &url,
        secret,
        CONCURRENCY as i32
    )
    .fetch_one(pg)
    .await?;
    sqlx::query!(
        "insert into webhook_events (event_type, payload, idempotency_key, payload_digest, created_at)
         select 'order.paid',
                jsonb_build_object('order', i, 'amount', 1200 + i % 500, 'currency', 'EUR',
                                   'customer', 'cus_' || (i % 997), 'items', jsonb_build_array('sku_1', 'sku_2')),
                'bench-' || i, '\\x00', now()
           from generate_series(1, $1::bigint) i",
        deliveries
    )
    .execute(pg)
    .await?;
    sqlx::query!(
        "insert into webhook_deliveries (webhook_id, event_id, message_id, next_attempt_at, created_at)
         select $1, id, 'msg_bench_' || id, now() - interval '1 second', now() from webhook_events",
        webhook
    )
    .execute(pg)
    .await?;
    let bodies: Vec<Vec<u8>> = sqlx::query_scalar!(
        r#"select payload::text as "payload!" from webhook_events order by id"#
    )
    .fetch_all(pg)
    .await?
    .into_iter()
    .map(String::into_bytes)
    .collect();

    // Salvage: claim, sign, send, record.
    let started = Instant::now();
    let report =
        app::dead_letters::ssr::deliver::work(&state, Duration::from_secs(3600), true, None)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    let salvage = started.elapsed();
    anyhow::ensure!(
        report.delivered == deliveries,
        "delivered {} of {deliveries}",
        report.delivered
    );
    // A plain client: the same bodies, the same concurrency, nothing recorded.
    let client = reqwest::Client::new();
    let started = Instant::now();
    let plain_ok = futures::stream::iter(bodies)
        .map(|body| {
            let client = client.clone();
            let url = url.clone();
            async move {
                client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            }
        })
        .buffer_unordered(CONCURRENCY)
        .filter(|ok| std::future::ready(*ok))
        .count()
        .await as i64;
    let plain = started.elapsed();
    anyhow::ensure!(
        plain_ok == deliveries,
        "plain client: {plain_ok} of {deliveries}"
    );
    anyhow::ensure!(
        hits.load(Ordering::Relaxed) as i64 == 2 * deliveries,
        "the receiver counted both"
    );

    let rate = |n: i64, d: Duration| n as f64 / d.as_secs_f64();
    let (salvage_rate, plain_rate) = (rate(deliveries, salvage), rate(deliveries, plain));
    println!(
        "{:<44} {:>10.0} deliveries/s  ({:.2} s)",
        "Salvage (claim, sign, send, record)",
        salvage_rate,
        salvage.as_secs_f64()
    );
    println!(
        "{:<44} {:>10.0} posts/s       ({:.2} s)",
        "plain HTTP client, same payloads",
        plain_rate,
        plain.as_secs_f64()
    );
    println!(
        "{:<44} {:>10.2}×   (goal ≥ 0.70×)",
        "ratio",
        salvage_rate / plain_rate
    );

    if dead_letters > 0 {
        let dead_hook = sqlx::query_scalar!(
            "insert into webhooks (url, event_types, secret, created_by)
             values ($1, '{order.paid}', $2, 'bench') returning id",
            &url,
            app::dead_letters::ssr::send::new_secret()
        )
        .fetch_one(pg)
        .await?;
        let event = sqlx::query_scalar!(r#"select min(id) as "id!" from webhook_events"#)
            .fetch_one(pg)
            .await?;
        sqlx::query!(
            "insert into webhook_deliveries (webhook_id, event_id, message_id, status, attempts,
                                             next_attempt_at, dlq_at, dlq_reason, last_status,
                                             last_error, created_at)
             select $1, $2, 'msg_dead_' || i, 'dead', 6, now() - interval '1 hour',
                    now() - interval '1 minute', 'exhausted', 503, 'HTTP 503', now() - interval '1 hour'
               from generate_series(1, $3::bigint) i",
            dead_hook,
            event,
            dead_letters
        )
        .execute(pg)
        .await?;
        sqlx::query("analyze webhook_deliveries")
            .execute(pg)
            .await?;
        let before = peak_memory();
        let filter =
            app::dead_letters::ssr::filter::DlqFilter::parse(&format!("webhook={dead_hook}"))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        let started = Instant::now();
        let firing = super::common::cli_firing(Some(app::reason::Reason::own("bench")));
        let run = app::dead_letters::ssr::redrive::run(&state, &filter, firing, None)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let took = started.elapsed();
        anyhow::ensure!(
            run.done == dead_letters,
            "redrove {} of {dead_letters}",
            run.done
        );
        println!(
            "{:<44} {:>10.0} rows/s        ({:.2} s, batches of {})",
            format!("redrive of {dead_letters} dead letters"),
            rate(dead_letters, took),
            took.as_secs_f64(),
            state.webhooks().redrive_batch
        );
        println!(
            "peak memory (VmHWM): {before} before the redrive, {} after",
            peak_memory()
        );
    }
    Ok(())
}
