//! `salvage replay` and `salvage expire`: the replay and expiry jobs, run through the
//! job runner like every other door.

use anyhow::Context;

use super::common::{app_error, cli_firing, current_state, stop_on_ctrl_c};
use crate::config::Settings;

/// `salvage replay`: the replay job, run through the runner like every other door
/// (trigger `cli`), with a progress bar on stderr and Ctrl-C.
pub async fn replay(
    settings: Settings,
    reason: Option<app::reason::Reason>,
    batch: Option<i64>,
    budget_secs: Option<u64>,
) -> anyhow::Result<()> {
    use app::jobs::ssr::RunOptions;
    use app::queues::ssr::replay::{ReplayReport, REPLAY_FALLBACK};
    let state = current_state(&settings).await?;
    let bar = super::progress::Bar::new();
    let options = RunOptions {
        batch,
        // Without --budget-secs a terminal replay runs until the queues are empty.
        budget: Some(budget_secs.map_or(std::time::Duration::MAX, std::time::Duration::from_secs)),
        on_progress: Some(bar.on_progress(super::progress::Unit::Rows)),
        ..Default::default()
    };
    stop_on_ctrl_c(&state, "Stopping after the current batch…");
    let finished = app::jobs::ssr::run(&state, &REPLAY_FALLBACK, cli_firing(reason), options)
        .await
        .map_err(app_error)?
        .context("a run without a tick always starts")?;
    bar.finish();
    let Some(report) = finished.report::<ReplayReport>() else {
        anyhow::bail!("replay failed: {}", finished.error.unwrap_or_default());
    };
    let secs = finished.duration_ms as f64 / 1000.0;
    println!(
        "Replay #{} {}: {} rows replayed ({} inserted, {} already in ClickHouse), {} left, in {:.1} s ({:.0} rows/s).",
        finished.run_id,
        report.status,
        report.rows_done,
        report.rows_inserted,
        report.rows_already_present,
        report.rows_left,
        secs,
        report.rows_done as f64 / secs.max(0.001)
    );
    match &report.error {
        Some(error) => anyhow::bail!("replay failed: {error}"),
        None => Ok(()),
    }
}

/// `salvage expire`: the expiry job, run through the runner (trigger `cli`).
pub async fn expire(settings: Settings) -> anyhow::Result<()> {
    use app::queues::ssr::expiry::{ExpiryReport, EXPIRE_FALLBACK};
    let state = current_state(&settings).await?;
    let finished = app::jobs::ssr::run(
        &state,
        &EXPIRE_FALLBACK,
        cli_firing(None),
        Default::default(),
    )
    .await
    .map_err(app_error)?
    .context("a run without a tick always starts")?;
    let Some(report) = finished.report::<ExpiryReport>() else {
        anyhow::bail!("expiry failed: {}", finished.error.unwrap_or_default());
    };
    for e in &report.expired {
        match e.history_id {
            Some(id) => println!(
                "{}: expired {} rows older than {} h (history entry #{id}).",
                e.queue.as_str(),
                e.rows,
                report.ttl_hours
            ),
            None => println!("{}: nothing older than the TTL.", e.queue.as_str()),
        }
    }
    Ok(())
}
