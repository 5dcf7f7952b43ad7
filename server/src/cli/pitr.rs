//! `salvage backup window|side` and `salvage backup restore --store postgres --to …`:
//! point-in-time recovery through pgBackRest, from a terminal. The same functions as
//! /admin/backups; recorded as cli:$USER.

use super::args::{Output, SideCommand};
use super::common::{app_error, cli_firing, print_json, stop_on_ctrl_c};
use app::format::{format_duration, format_utc, group_digits};

pub(super) async fn window(state: &app::server::AppState, output: Output) -> anyhow::Result<()> {
    let windows = app::backups::ssr::pitr::windows(state, state.clock.now())
        .await
        .map_err(|error| anyhow::anyhow!("Could not read the recovery window: {error}"))?;
    if output.json {
        return print_json(&windows);
    }
    println!(
        "{:<10}  {:<10}  {:<20}  {:<20}  {:>10}",
        "store", "from", "oldest (UTC)", "newest (UTC)", "behind"
    );
    for w in windows {
        let time = |ms: Option<i64>| ms.map(format_utc).unwrap_or_else(|| "none".into());
        println!(
            "{:<10}  {:<10}  {:<20}  {:<20}  {:>10}",
            w.store.as_str(),
            w.source,
            time(w.oldest_ms),
            time(w.newest_ms),
            w.lag_secs
                .map(|s| format_duration(s * 1000))
                .unwrap_or_else(|| "-".into())
        );
    }
    Ok(())
}

/// Restores PostgreSQL to `to` into a side cluster and prints what the verification read.
pub(super) async fn restore(
    state: &app::server::AppState,
    to: String,
    port: Option<u16>,
    reason: Option<app::reason::Reason>,
) -> anyhow::Result<()> {
    use app::backups::ssr::pitr::restore::{restore, PitrRestoreRequest};
    eprintln!("Restoring PostgreSQL to {to} into a side cluster. Ctrl-C cancels and deletes it.");
    stop_on_ctrl_c(
        state,
        "Cancelling: the side cluster is stopped and deleted…",
    );
    let request = PitrRestoreRequest {
        to,
        port,
        reason: reason.clone(),
    };
    let report = restore(state, &request, cli_firing(reason), None)
        .await
        .map_err(app_error)?;
    for table in &report.tables {
        println!(
            "  {:<40} {:>14} rows",
            table.name,
            group_digits(table.rows.max(0) as u64)
        );
    }
    let reached = report
        .reached_ms
        .map(format_utc)
        .unwrap_or_else(|| "no transaction replayed".into());
    println!(
        "History chain: {} entries, {}. Schema: migration {}{}.",
        report.chain_entries,
        match report.chain_broken_at {
            Some(id) => format!("BROKEN at #{id}"),
            None => "intact".into(),
        },
        report.schema_version,
        report
            .schema_problem
            .as_deref()
            .map(|p| format!(" ({p})"))
            .unwrap_or_default()
    );
    if let Some(error) = report.error {
        anyhow::bail!("point-in-time restore {}: {error}", report.status.as_str());
    }
    println!(
        "PostgreSQL restored to {reached} on port {} ({} rows in {} tables) in {} \
         (restore {}, verify {}; history entry #{}).",
        report.port,
        group_digits(report.rows.max(0) as u64),
        report.tables.len(),
        format_duration(report.duration_ms),
        format_duration(report.restore_ms),
        format_duration(report.verify_ms),
        report.history_id
    );
    println!(
        "It keeps running for inspection: `salvage backup side stop {}` when done \
         (the janitor stops it after a day).",
        report.port
    );
    Ok(())
}

/// `salvage backup side list|stop`.
pub(super) async fn side(
    state: &app::server::AppState,
    command: SideCommand,
) -> anyhow::Result<()> {
    use app::backups::ssr::pitr::sides;
    match command {
        SideCommand::List(output) => {
            let sides = state
                .backups()
                .pitr
                .as_ref()
                .map(sides::list)
                .unwrap_or_default();
            if output.json {
                return print_json(&sides);
            }
            if sides.is_empty() {
                println!("No side cluster is running.");
                return Ok(());
            }
            println!(
                "{:>5}  {:<8}  {:<20}  {:<20}  {:<20}  by",
                "port", "state", "started (UTC)", "restored to", "reached"
            );
            for side in sides {
                let record = side.record.as_ref();
                let to = record
                    .map(|r| match r.to.parse::<i64>() {
                        Ok(ms) => format_utc(ms),
                        Err(_) => r.to.clone(),
                    })
                    .unwrap_or_else(|| "unfinished".into());
                println!(
                    "{:>5}  {:<8}  {:<20}  {:<20}  {:<20}  {}",
                    side.port,
                    if side.running { "running" } else { "stopped" },
                    format_utc(side.started_ms),
                    to,
                    record
                        .and_then(|r| r.reached_ms)
                        .map(format_utc)
                        .unwrap_or_else(|| "-".into()),
                    record.map(|r| r.by.as_str()).unwrap_or("-")
                );
            }
            Ok(())
        }
        SideCommand::Stop { port, reason } => {
            let actor = app::auth::ssr::Actor::cli();
            sides::stop(state, port, &actor, reason)
                .await
                .map_err(app_error)?;
            println!("Side cluster on port {port} stopped and its directory deleted.");
            Ok(())
        }
    }
}
