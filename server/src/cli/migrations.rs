//! `salvage migrate` (behind the pre-upgrade backup, or `--rollback-to`), `salvage
//! check` and `salvage migrations …`: the same functions as `/admin/migrations`, as
//! `cli:$USER`.

use std::io::{BufRead, Write};

use anyhow::Context;
use app::auth::ssr::Actor;
use app::format::{format_ago, format_bytes, format_duration, group_digits};
use app::migrations::ssr::check::{self, CheckReport};
use app::migrations::ssr::store;
use app::migrations::ssr::upgrade::{self, BackupPolicy, UpgradeBackup};
use app::migrations::MigrationAction;

use super::args::MigrationsCommand;
use super::common::{app_error, current_state, print_json};
use crate::config::Settings;
use crate::startup;

/// `salvage migrate [--no-backup <reason>]`: the pre-upgrade backup, the PostgreSQL
/// migrations, the ClickHouse tables, then the smoke checks.
pub async fn migrate(settings: Settings, no_backup: Option<String>) -> anyhow::Result<()> {
    let state = startup::build_state(&settings);
    let policy = match no_backup {
        Some(reason) => BackupPolicy::Skip(app::reason::Reason::own(format!(
            "--no-backup: {}",
            reason.as_str()
        ))),
        None => BackupPolicy::from_settings(&state),
    };
    let report = upgrade::apply(&state, &policy, &Actor::cli())
        .await
        .context("Failed to apply the PostgreSQL migrations")?;
    startup::log_upgrade(&report);
    match (&report.backup, report.applied.len()) {
        (UpgradeBackup::NotNeeded, _) => {
            println!("PostgreSQL: schema already at version {}.", report.to_version)
        }
        (UpgradeBackup::Fresh, n) => println!(
            "PostgreSQL: {n} migrations applied to an empty database (version {}).",
            report.to_version
        ),
        (UpgradeBackup::Taken { backup_id, bytes, duration_ms }, n) => println!(
            "PostgreSQL: pre-upgrade backup {backup_id} taken ({}, {}), then {n} migrations applied ({} → {}).\n  \
             To undo: stop every console, then `salvage migrate --rollback-to {backup_id}`.",
            format_bytes(*bytes),
            format_duration(*duration_ms),
            report.from_version.unwrap_or(0),
            report.to_version
        ),
        (UpgradeBackup::Skipped { reason }, n) => println!(
            "PostgreSQL: {n} migrations applied ({} → {}) WITHOUT a backup ({reason}).",
            report.from_version.unwrap_or(0),
            report.to_version
        ),
    }
    state
        .clickhouse
        .migrate()
        .await
        .context("Failed to apply the ClickHouse schema")?;
    startup::after_postgres_migrated(&state, settings.cron_secret.as_ref()).await?;
    println!(
        "ClickHouse: database `{}` ready.",
        state.clickhouse.database()
    );
    let checks = check::run(&state).await;
    print_checks(&checks);
    finish(&checks)
}

/// `salvage migrate --rollback-to <id>`.
pub async fn roll_back(
    settings: Settings,
    backup_id: i64,
    confirm: Option<String>,
    reason: Option<app::reason::Reason>,
) -> anyhow::Result<()> {
    let state = startup::build_state(&settings);
    let confirm = match confirm {
        Some(confirm) => confirm,
        None => {
            eprint!(
                "This replaces the whole PostgreSQL schema (history, accounts, queues, \
                 catalogue) with pre-upgrade backup {backup_id}; what is live now is kept \
                 aside.\nType the backup's id ({backup_id}) to go on: "
            );
            let _ = std::io::stderr().flush();
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            line
        }
    };
    eprintln!("Restoring backup {backup_id} in place…");
    let report = upgrade::roll_back_to(&state, backup_id, &confirm, &Actor::cli(), reason)
        .await
        .map_err(app_error)?;
    for table in &report.tables {
        println!(
            "  {:<32} {:>12} rows {}",
            table.name,
            group_digits(table.rows.max(0) as u64),
            if table.ok() {
                "ok"
            } else {
                "DIFFERS from the manifest"
            }
        );
    }
    println!(
        "Rolled back to pre-upgrade backup {backup_id} in {}: {} tables {}. The schema is at \
         version {}.\nWhat was live is kept in schema {} (drop it once you no longer need it). \
         Deploy the version that expects schema {}, then run `salvage check` with it.",
        format_duration(report.duration_ms),
        report.tables.len(),
        if report.verified {
            "verified"
        } else {
            "restored, but verification FAILED"
        },
        report.schema_version,
        report.aside,
        report.schema_version
    );
    if !report.verified {
        anyhow::bail!("the restored tables differ from the backup's manifest (see above)");
    }
    Ok(())
}

/// `salvage check`.
pub async fn check(settings: Settings) -> anyhow::Result<()> {
    let state = startup::build_state(&settings);
    let checks = check::run(&state).await;
    print_checks(&checks);
    finish(&checks)
}

fn print_checks(report: &CheckReport) {
    for check in &report.checks {
        println!(
            "{} {:<22} {}",
            if check.ok { "ok  " } else { "FAIL" },
            check.name,
            check.detail
        );
    }
}

fn finish(report: &CheckReport) -> anyhow::Result<()> {
    if report.ok() {
        Ok(())
    } else {
        anyhow::bail!("smoke checks failed: {}", report.failed().join(", "))
    }
}

/// `salvage migrations …`.
pub async fn migrations(command: MigrationsCommand, settings: Settings) -> anyhow::Result<()> {
    let state = current_state(&settings).await?;
    store::register(&state).await.map_err(app_error)?;
    let (action, name, reason) = match command {
        MigrationsCommand::List(output) => {
            let now = state.clock.now().unix_timestamp() * 1000;
            let rows = store::list(&state).await.map_err(app_error)?;
            if output.json {
                return print_json(&rows);
            }
            println!(
                "{:<32} {:<10} {:>24} {:>10} {:>9}  last error",
                "migration", "status", "progress", "heartbeat", "attempts"
            );
            for m in rows {
                let progress = match m.progress_total {
                    Some(total) => format!(
                        "{} / {}",
                        group_digits(m.progress_current.max(0) as u64),
                        group_digits(total.max(0) as u64)
                    ),
                    None => "not counted".to_owned(),
                };
                println!(
                    "{:<32} {:<10} {:>24} {:>10} {:>9}  {}",
                    m.name,
                    if m.stuck { "STUCK" } else { m.status.as_str() },
                    progress,
                    m.last_heartbeat_ms
                        .map(|at| format_ago(at, now))
                        .unwrap_or_else(|| "never".into()),
                    m.attempts,
                    m.last_error.unwrap_or_default()
                );
            }
            return Ok(());
        }
        MigrationsCommand::Pause { name, reason } => (MigrationAction::Pause, name, reason),
        MigrationsCommand::Resume { name, reason } => (MigrationAction::Resume, name, reason),
        MigrationsCommand::Retry { name, reason } => (MigrationAction::Retry, name, reason),
        MigrationsCommand::Cancel { name, reason } => (MigrationAction::Cancel, name, reason),
    };
    // `reason` passed the reason rule when the arguments were read.
    let status = store::change(&state, &Actor::cli(), &name, action, &reason)
        .await
        .map_err(app_error)?;
    println!("Background migration {name} is now {}.", status.as_str());
    Ok(())
}
