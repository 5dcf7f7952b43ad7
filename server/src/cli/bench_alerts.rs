//! `salvage bench alerts`: the self-monitor's evaluation and `/admin/alerts`' queries
//! with many alerts, in a throwaway PostgreSQL database (dropped at the end).
//!
//! The database gets `--resolved` resolved alerts spread over the last 60 days (each
//! with its raised, acknowledged and resolved events) and `--open` open ones (expiry
//! losses, which no evaluation resolves, so every measured evaluation sees them all).

use std::time::{Duration, Instant};

use super::bench::Scratch;
use crate::config::Settings;
use crate::startup;

/// Median and slowest of `runs`.
fn spread(mut runs: Vec<Duration>) -> (Duration, Duration) {
    runs.sort();
    (runs[runs.len() / 2], runs[runs.len() - 1])
}

fn ms(d: Duration) -> String {
    format!("{:>8.1} ms", d.as_secs_f64() * 1000.0)
}

/// `salvage bench alerts`.
pub async fn alerts(settings: &Settings, resolved: u64, open: u64) -> anyhow::Result<()> {
    anyhow::ensure!(
        resolved + open > 0,
        "--resolved / --open: at least one alert"
    );
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..10];
    let database = format!("salvage_bench_{suffix}");
    let (settings, scratch) = Scratch::create(settings, &database, Vec::new()).await?;
    let result = measure(&settings, resolved, open).await;
    scratch.drop_all().await;
    result
}

async fn measure(settings: &Settings, resolved: u64, open: u64) -> anyhow::Result<()> {
    let state = startup::build_state(settings);
    startup::migrate_postgres(&state).await?;
    let pg = &state.pg;
    println!("bench alerts: {resolved} resolved and {open} open alerts, in a throwaway database\n");
    let filled = Instant::now();
    sqlx::query!(
        "insert into internal_alerts (kind, dedup_key, severity, title, figure, threshold, unit,
                                      status, first_seen_at, last_seen_at, occurrences,
                                      acknowledged_by, acknowledged_at, resolved_at, resolved_by,
                                      resolution_note)
         select (array['fallback_queue_high','fallback_queue_old','clickhouse_down','replay_failing',
                       'cron_dropout','ingest_quota'])[1 + i % 6],
                'bench-' || i,
                (array['critical','warning','info'])[1 + i % 3],
                'Bench alert ' || i, 1000 + i, 1000, 'rows', 'resolved',
                now() - (i % 60) * interval '1 day' - interval '2 hours',
                now() - (i % 60) * interval '1 day' - interval '1 hour', 1 + i % 40,
                case when i % 4 <> 0 then 'oncall@bench' end,
                case when i % 4 <> 0 then now() - (i % 60) * interval '1 day' - interval '110 minutes' end,
                now() - (i % 60) * interval '1 day' - interval '1 hour',
                case when i % 2 = 0 then 'system:self-monitor' else 'oncall@bench' end,
                case when i % 2 = 1 then 'fixed in the bench' end
           from generate_series(1, $1::bigint) as i",
        resolved as i64
    )
    .execute(pg)
    .await?;
    sqlx::query!(
        "insert into internal_alerts (kind, dedup_key, severity, title, figure, unit, status,
                                      first_seen_at, last_seen_at, occurrences)
         select 'data_expired', 'bench-open-' || i, (array['critical','warning','info'])[1 + i % 3],
                'Bench open alert ' || i, i, 'rows',
                case when i % 5 = 0 then 'acknowledged' else 'firing' end,
                now() - i * interval '1 minute', now(), 1 + i % 9
           from generate_series(1, $1::bigint) as i",
        open as i64
    )
    .execute(pg)
    .await?;
    sqlx::query!(
        "insert into internal_alert_events (alert_id, at, event, actor, note)
         select a.id, a.first_seen_at + e.offset_, e.event, 'system:self-monitor', null
           from internal_alerts a
          cross join (values ('raised', interval '0'), ('acknowledged', interval '10 minutes'),
                             ('resolved', interval '1 hour')) as e(event, offset_)"
    )
    .execute(pg)
    .await?;
    sqlx::query("analyze internal_alerts, internal_alert_events")
        .execute(pg)
        .await?;
    println!("  filled in {:.1} s", filled.elapsed().as_secs_f64());

    let mut evaluations = Vec::new();
    for _ in 0..7 {
        let started = Instant::now();
        let report = app::alerts::ssr::evaluate(&state, state.clock.now()).await?;
        evaluations.push(started.elapsed());
        anyhow::ensure!(
            !report.skipped,
            "nothing else evaluates in the scratch database"
        );
    }
    let filters = app::alerts::ssr::query::Filters::default();
    let mut open_page = Vec::new();
    let mut resolved_page = Vec::new();
    let mut counts = Vec::new();
    for _ in 0..7 {
        let now = state.clock.now();
        let started = Instant::now();
        let view = app::alerts::ssr::query::open_view(&state, &filters, now).await?;
        open_page.push(started.elapsed());
        anyhow::ensure!(
            view.alerts.len() as u64 == open.min(500),
            "every open alert listed"
        );
        let started = Instant::now();
        app::alerts::ssr::query::resolved_view(&state, &filters, now).await?;
        resolved_page.push(started.elapsed());
        let started = Instant::now();
        app::alerts::ssr::query::counts(pg, now).await?;
        counts.push(started.elapsed());
    }
    println!("\n  {:<46} {:>11} {:>11}", "", "median", "slowest");
    for (name, runs) in [
        ("self-monitor evaluation (every kind)", evaluations),
        (
            "/admin/alerts open view (list, counts, silences)",
            open_page,
        ),
        ("/admin/alerts resolved view (list, medians)", resolved_page),
        ("nav count (every page)", counts),
    ] {
        let (median, slowest) = spread(runs);
        println!("  {name:<46} {} {}", ms(median), ms(slowest));
    }
    println!("\n  goal: the open view's queries under 50 ms on a 2-core machine");
    Ok(())
}
