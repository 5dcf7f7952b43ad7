//! `salvage backup create|list|sync|verify|restore|rollback`: the backups' functions from a
//! terminal (acting as admin, recorded as `cli:$USER`), with progress on stderr.

use anyhow::Context;

use super::args::{BackupCommand, Output};
use super::common::{app_error, cli_firing, current_state, print_json, stop_on_ctrl_c};
use crate::config::Settings;
use app::format::{format_bytes, format_duration, format_utc, group_digits};

fn count(n: i64) -> String {
    group_digits(n.max(0) as u64)
}

/// Runs `command`.
pub async fn backup(command: BackupCommand, settings: Settings) -> anyhow::Result<()> {
    let state = current_state(&settings).await?;
    match command {
        BackupCommand::Create { reason } => create(&state, reason).await,
        BackupCommand::List(output) => list(&state, output).await,
        BackupCommand::Sync { reason } => sync(&state, reason).await,
        BackupCommand::Window(output) => super::pitr::window(&state, output).await,
        BackupCommand::Side { command } => super::pitr::side(&state, command).await,
        BackupCommand::Verify { id } => verify(&state, id).await,
        BackupCommand::Restore {
            to: Some(to),
            port,
            reason,
            ..
        } => super::pitr::restore(&state, to, port, reason).await,
        BackupCommand::Restore {
            id,
            target,
            tables,
            in_place,
            confirm,
            confirm_incident,
            reason,
            ..
        } => {
            let request = app::backups::ssr::restore::RestoreRequest {
                backup_id: id.context("a backup id, or --store postgres --to TIME|latest")?,
                in_place,
                target,
                tables,
                confirm,
                confirm_incident,
                reason,
            };
            restore(&state, request).await
        }
        BackupCommand::Rollback { restore, reason } => {
            let actor = app::auth::ssr::Actor::cli();
            let done = app::backups::ssr::restore::roll_back(&state, restore, &actor, reason)
                .await
                .map_err(app_error)?;
            println!(
                "Restore {} rolled back: {} holds its pre-restore tables again ({}).",
                done.id,
                done.target,
                done.tables.join(", ")
            );
            Ok(())
        }
    }
}

async fn create(
    state: &app::server::AppState,
    reason: Option<app::reason::Reason>,
) -> anyhow::Result<()> {
    use app::backups::ssr::create::BackupReport;
    stop_on_ctrl_c(state, "Stopping after the current file…");
    // The job reports each store as a step: PostgreSQL, then ClickHouse.
    let steps: app::jobs::ssr::OnProgress = std::sync::Arc::new(|p: app::jobs::ssr::Progress| {
        let store = ["PostgreSQL", "ClickHouse"].get(p.done as usize);
        if let Some(store) = store {
            eprintln!(
                "[{}/{}] backing up {store}, then verifying it…",
                p.done + 1,
                p.total
            );
        }
    });
    let options = app::jobs::ssr::RunOptions {
        on_progress: Some(steps),
        ..Default::default()
    };
    let finished = app::jobs::ssr::run(
        state,
        &app::backups::ssr::BACKUP,
        cli_firing(reason),
        options,
    )
    .await
    .map_err(app_error)?
    .context("a run without a tick always starts")?;
    let Some(report) = finished.report::<BackupReport>() else {
        anyhow::bail!("backup failed: {}", finished.error.unwrap_or_default());
    };
    for taken in &report.backups {
        match (&taken.error, taken.backup_id) {
            (Some(error), _) => println!("{}: failed: {error}", taken.store.label()),
            (None, Some(id)) => println!(
                "{}: backup {id} {}: {} rows, {} in {}.",
                taken.store.label(),
                taken.status.label(),
                count(taken.rows),
                format_bytes(taken.bytes),
                format_duration(taken.duration_ms)
            ),
            (None, None) => {}
        }
    }
    if !report.deleted.is_empty() {
        println!("Retention deleted backups {:?}.", report.deleted);
    }
    match &report.error {
        Some(error) => anyhow::bail!("backup run #{} {}: {error}", finished.run_id, report.status),
        None => Ok(()),
    }
}

async fn list(state: &app::server::AppState, output: Output) -> anyhow::Result<()> {
    let backups = app::backups::ssr::catalogue::list(&state.pg, 50)
        .await
        .context("Failed to read the catalogue")?;
    if output.json {
        return print_json(&backups);
    }
    println!(
        "{:>6}  {:<10}  {:<13}  {:<20}  {:>10}  {:>12}  {:>10}",
        "id", "store", "status", "started (UTC)", "size", "rows", "took"
    );
    for b in backups {
        println!(
            "{:>6}  {:<10}  {:<13}  {:<20}  {:>10}  {:>12}  {:>10}{}",
            b.id,
            b.store.as_str(),
            if b.deleted {
                "deleted"
            } else {
                b.status.label()
            },
            format_utc(b.started_ms),
            format_bytes(b.size_bytes),
            count(b.rows),
            b.duration_ms.map(format_duration).unwrap_or_default(),
            b.error
                .or(b.verify_error)
                .map(|e| format!("  {e}"))
                .unwrap_or_default()
        );
    }
    Ok(())
}

async fn sync(
    state: &app::server::AppState,
    reason: Option<app::reason::Reason>,
) -> anyhow::Result<()> {
    use app::backups::ssr::sync::{SyncReport, BACKUP_SYNC};
    let reason = reason.unwrap_or_else(|| app::reason::Reason::own("Sync the backup catalogue"));
    let finished = app::jobs::ssr::run(
        state,
        &BACKUP_SYNC,
        cli_firing(Some(reason)),
        Default::default(),
    )
    .await
    .map_err(app_error)?
    .ok_or_else(|| anyhow::anyhow!("a run without a tick always starts"))?;
    let Some(report) = finished.report::<SyncReport>() else {
        anyhow::bail!(
            "sync run #{} failed: {}",
            finished.run_id,
            finished.error.unwrap_or_default()
        );
    };
    let ids = |ids: &[i64]| {
        ids.iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "{} backups in the repository verified; catalogue: {} added, {} completed, {} gone.",
        report.found,
        report.added.len(),
        report.completed.len(),
        report.gone.len()
    );
    for (what, list) in [
        ("added", &report.added),
        ("completed", &report.completed),
        ("gone", &report.gone),
    ] {
        if !list.is_empty() {
            println!("  {what:<10} {}", ids(list));
        }
    }
    for refused in &report.refused {
        println!("  refused    {refused}");
    }
    if !report.refused.is_empty() {
        anyhow::bail!(
            "{} manifest(s) refused: a backup that does not verify is never added",
            report.refused.len()
        );
    }
    Ok(())
}

async fn verify(state: &app::server::AppState, id: i64) -> anyhow::Result<()> {
    use app::backups::ssr::verify::{Verification, VerifyRequest, VERIFY_BACKUP};
    let options = app::jobs::ssr::RunOptions {
        input: serde_json::to_value(VerifyRequest { backup_id: id })?,
        ..Default::default()
    };
    stop_on_ctrl_c(state, "Stopping…");
    let firing = cli_firing(Some(app::reason::Reason::own(format!(
        "Verify backup {id}"
    ))));
    let finished = app::jobs::ssr::run(state, &VERIFY_BACKUP, firing, options)
        .await
        .map_err(app_error)?
        .ok_or_else(|| anyhow::anyhow!("a run without a tick always starts"))?;
    match finished.report::<Verification>() {
        Some(Verification { error: None, .. }) => {
            println!("Backup {id} verified: every file matches its manifest.");
            Ok(())
        }
        Some(Verification {
            error: Some(error), ..
        }) => anyhow::bail!("backup {id} failed verification: {error}"),
        None => anyhow::bail!(
            "verification run #{} failed: {}",
            finished.run_id,
            finished.error.unwrap_or_default()
        ),
    }
}

async fn restore(
    state: &app::server::AppState,
    request: app::backups::ssr::restore::RestoreRequest,
) -> anyhow::Result<()> {
    let backup = request.backup_id;
    eprintln!("Restoring backup {backup}. Ctrl-C cancels and drops what it made.");
    stop_on_ctrl_c(state, "Cancelling after the current file…");
    let bar = super::progress::Bar::new();
    let on_progress = bar.on_progress(super::progress::Unit::Bytes);
    let firing = cli_firing(request.reason.clone());
    let report =
        app::backups::ssr::restore::restore(state, &request, firing, Some(on_progress)).await;
    bar.finish();
    let report = report.map_err(app_error)?;
    for table in &report.tables {
        println!(
            "  {:<28} {:>12} rows (manifest {:>12})  schema {}",
            table.name,
            count(table.rows),
            count(table.expected_rows),
            if table.schema_matches {
                "matches"
            } else {
                "DIFFERS"
            }
        );
    }
    println!(
        "Restore {} {}: {} rows into {} in {} (history entry #{}).",
        report.restore_id,
        report.status.label(),
        count(report.rows),
        report.target,
        format_duration(report.duration_ms),
        report.history_id
    );
    match report.error {
        Some(error) => anyhow::bail!("restore {}: {error}", report.restore_id),
        None => Ok(()),
    }
}
