//! `salvage drill run|list`: the drill from a terminal (recorded as `cli:$USER`), each
//! step printed as it ends.

use anyhow::Context;

use super::args::{DrillCommand, Output};
use super::common::{app_error, cli_firing, current_state, print_json, stop_on_ctrl_c};
use crate::config::Settings;
use app::drills::{DrillStatus, DrillStep};
use app::format::{format_duration, format_utc};

/// Runs `command`.
pub async fn drill(command: DrillCommand, settings: Settings) -> anyhow::Result<()> {
    let state = current_state(&settings).await?;
    match command {
        DrillCommand::Run { backup, reason } => run(&state, backup, reason).await,
        DrillCommand::List(output) => list(&state, output).await,
    }
}

fn step_line(step: &DrillStep) -> String {
    format!(
        "  {:<10}  {:<9}  {:>9}  {}  {}",
        step.store.map_or("drill", |s| s.label()),
        step.name,
        format_duration(step.ms),
        if step.ok { "ok  " } else { "FAIL" },
        step.detail.clone().unwrap_or_default()
    )
}

async fn run(
    state: &app::server::AppState,
    backups: Vec<i64>,
    reason: Option<app::reason::Reason>,
) -> anyhow::Result<()> {
    use app::drills::ssr::run::DrillReport;
    stop_on_ctrl_c(
        state,
        "Stopping after the current step; the drill still tears down…",
    );
    // Each progress report follows a saved step: print the steps not printed yet.
    let printer_state = state.clone();
    let printed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let on_progress: app::jobs::ssr::OnProgress =
        std::sync::Arc::new(move |p: app::jobs::ssr::Progress| {
            let state = printer_state.clone();
            let printed = printed.clone();
            tokio::spawn(async move {
                if let Ok(Some(drill)) =
                    app::drills::ssr::records::of_run(&state.pg, p.run_id).await
                {
                    let from =
                        printed.fetch_max(drill.steps.len(), std::sync::atomic::Ordering::SeqCst);
                    for step in drill.steps.iter().skip(from) {
                        eprintln!("{}", step_line(step));
                    }
                }
            });
        });
    eprintln!("Drill: restoring into throwaway databases, then verifying and tearing down…");
    let options = app::jobs::ssr::RunOptions {
        on_progress: Some(on_progress),
        targets: backups,
        ..Default::default()
    };
    let finished = app::jobs::ssr::run(
        state,
        &app::drills::ssr::RESTORE_DRILL,
        cli_firing(reason),
        options,
    )
    .await
    .map_err(app_error)?
    .context("a run without a tick always starts")?;
    let Some(report) = finished.report::<DrillReport>() else {
        anyhow::bail!("drill failed: {}", finished.error.unwrap_or_default());
    };
    println!(
        "Restore drill {}: {}",
        report.drill_id,
        report.status.as_str()
    );
    for store in &report.stores {
        println!(
            "  {}: backup {} ({} old), recovery {} against a target of {}{}",
            store.store.label(),
            store
                .backup_id
                .map_or("none".to_owned(), |id| id.to_string()),
            store.backup_age_ms.map_or("-".to_owned(), format_duration),
            format_duration(store.recovery_ms),
            format_duration(store.rto_target_ms),
            if store.over_target() {
                " (over target)"
            } else {
                ""
            }
        );
    }
    println!(
        "  measured recovery time {}, drill {} in all; history entry #{}",
        format_duration(report.recovery_ms),
        format_duration(report.duration_ms),
        report.history_id
    );
    match (&report.status, &report.error) {
        (DrillStatus::Passed, _) => Ok(()),
        (status, error) => anyhow::bail!(
            "restore drill {} {}: {}",
            report.drill_id,
            status.as_str(),
            error.clone().unwrap_or_default()
        ),
    }
}

async fn list(state: &app::server::AppState, output: Output) -> anyhow::Result<()> {
    let drills = app::drills::ssr::records::list(&state.pg, 50)
        .await
        .context("Failed to read the drills")?;
    if output.json {
        return print_json(&drills);
    }
    println!(
        "{:>6}  {:<10}  {:<9}  {:<20}  {:>10}  {:>10}  by",
        "id", "type", "status", "started (UTC)", "recovery", "took"
    );
    for d in drills {
        println!(
            "{:>6}  {:<10}  {:<9}  {:<20}  {:>10}  {:>10}  {}",
            d.id,
            d.kind.as_str(),
            d.status.as_str(),
            format_utc(d.started_ms),
            format_duration(d.recovery_ms()),
            d.duration_ms.map_or("-".to_owned(), format_duration),
            d.actor
        );
    }
    Ok(())
}
