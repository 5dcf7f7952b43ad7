//! `salvage recover`: what the repository can bring back (`--list`), and the recovery of
//! both stores onto empty servers (`--latest`, `--to TIME`). Its settings need name only
//! the stores it restores onto, the repository and its keys: the schema's version is not
//! checked (the recovery brings the schema back, then migrates it).

use super::args::RecoverArgs;
use super::common::{print_json, Refused};
use crate::config::Settings;
use app::backups::ssr::pitr::restore::parse_target;
use app::format::{format_ago, format_duration, format_utc, format_utc_secs, group_digits};
use app::recovery::ssr::{recover as run_recovery, RecoverError, RecoverRequest};
use app::recovery::RecoveryReport;

/// Runs `salvage recover`.
pub async fn recover(args: RecoverArgs, settings: Settings) -> anyhow::Result<()> {
    if args.list {
        return list(args, settings).await;
    }
    let request = request(&args)?;
    // Its sessions are told apart from a console's (see `restore::prepare_recovery`).
    let mut settings = settings;
    settings.application_name = "salvage-recover";
    let state = crate::startup::build_state(&settings);
    let cron_secret = settings.cron_secret.clone();
    let after_migrate = move |state: app::server::AppState| {
        let cron_secret = cron_secret.clone();
        Box::pin(async move {
            crate::startup::after_postgres_migrated(&state, cron_secret.as_ref())
                .await
                .map_err(|error| format!("{error:#}"))
        }) as futures::future::BoxFuture<'static, Result<(), String>>
    };
    let json = args.output.json;
    // With --json the report alone is on standard output; the progress goes to stderr.
    let say = move |line: String| {
        if json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    };
    let actor = app::auth::ssr::Actor::cli();
    match run_recovery(&state, &request, &actor, &after_migrate, &say).await {
        Ok(report) if json => print_json(&report),
        Ok(report) => {
            print_report(&report);
            Ok(())
        }
        Err(RecoverError::Refused(why)) => {
            Err(Refused(format!("recover: refused, nothing changed: {why}")).into())
        }
        Err(failed) => anyhow::bail!("recover: {failed}"),
    }
}

/// The request the flags make, or the refusal naming the flag that is wrong.
fn request(args: &RecoverArgs) -> anyhow::Result<RecoverRequest> {
    let refuse = |why: String| anyhow::Error::from(Refused(format!("recover: {why}")));
    // clap lets exactly one of --list, --to and --latest through.
    let target = match &args.to {
        Some(to) if to.trim().eq_ignore_ascii_case("latest") => {
            return Err(refuse(
                "--to takes a moment; use --latest for the newest point".into(),
            ))
        }
        Some(to) => parse_target(to).map_err(|e| refuse(format!("--to: {e}")))?,
        None => app::backups::ssr::pitr::side::Target::Latest,
    };
    let lost_at = args
        .lost_at
        .as_deref()
        .map(|text| {
            time::OffsetDateTime::parse(text.trim(), &time::format_description::well_known::Rfc3339)
                .map_err(|_| {
                    refuse(format!(
                        "--lost-at: `{text}` is not a moment like 2026-12-07T03:00:00Z"
                    ))
                })
        })
        .transpose()?;
    let reason = args
        .reason
        .as_deref()
        .ok_or_else(|| refuse("--reason is required: say why, it is recorded".into()))
        .and_then(|text| {
            app::reason::Reason::parse(text).map_err(|e| refuse(format!("--reason: {e}")))
        })?;
    Ok(RecoverRequest {
        target,
        lost_at,
        reason,
        confirm: args.confirm.clone(),
    })
}

fn print_report(report: &RecoveryReport) {
    println!();
    println!(
        "Recovered in {} (the RTO, from the first run's start).",
        format_duration(report.rto_ms)
    );
    println!(
        "PostgreSQL: {}{}; ClickHouse: backup {}{}.",
        report.postgres_source,
        report
            .reached_ms
            .map(|ms| format!(", reaching {}", format_utc_secs(ms)))
            .unwrap_or_default(),
        report
            .clickhouse_backup
            .map(|id| id.to_string())
            .unwrap_or_else(|| "-".into()),
        report
            .clickhouse_at_ms
            .map(|ms| format!(" taken {}", format_utc_secs(ms)))
            .unwrap_or_default()
    );
    match (report.rpo_secs, report.lost_at_ms) {
        (Some(rpo), Some(lost)) => println!(
            "RPO: {} (lost at {}).",
            format_duration(rpo * 1000),
            format_utc_secs(lost)
        ),
        _ => println!("RPO: give --lost-at to measure it."),
    }
    println!(
        "Rows replayed from the fallback queues: {}.",
        group_digits(report.replayed.max(0) as u64)
    );
    println!();
    println!(
        "{:<10}  {:<28}  {:>12}  {:>12}",
        "store", "table", "rows", "its source"
    );
    for table in &report.tables {
        println!(
            "{:<10}  {:<28}  {:>12}  {:>12}",
            table.store.as_str(),
            table.name,
            group_digits(table.rows.max(0) as u64),
            group_digits(table.expected.max(0) as u64)
        );
    }
    if !report.findings.is_empty() {
        println!();
        println!("To look at:");
        for finding in &report.findings {
            println!("  - {finding}");
        }
    }
    println!();
    println!("History entry #{}.", report.history_id);
}

/// `salvage recover --list`.
async fn list(args: RecoverArgs, settings: Settings) -> anyhow::Result<()> {
    let state = crate::startup::build_state(&settings);
    let listed = app::backups::ssr::points::recovery_points(&state)
        .await
        .map_err(|error| anyhow::anyhow!("Could not read the repository: {error}"))?;
    if args.output.json {
        print_json(&listed)?;
    } else {
        println!(
            "{:<10}  {:<13}  {:>6}  {:<20}  {:>10}  what it brings back",
            "store", "kind", "backup", "at (UTC)", "age"
        );
        for point in &listed.points {
            let now_ms = point.at_ms + point.age_secs * 1000;
            let since = point
                .oldest_ms
                .map(|oldest| format!("any moment since {}: ", format_utc(oldest)))
                .unwrap_or_default();
            println!(
                "{:<10}  {:<13}  {:>6}  {:<20}  {:>10}  {since}{}{}",
                point.store.as_str(),
                point.kind,
                point
                    .backup_id
                    .map(|id| id.to_string())
                    .unwrap_or_else(|| "-".into()),
                format_utc(point.at_ms),
                format_ago(point.at_ms, now_ms),
                point.brings_back,
                if point.encrypted == Some(true) {
                    " (encrypted)"
                } else {
                    ""
                }
            );
        }
        if listed.points.is_empty() {
            println!("No recovery point: the repository holds no backup that verifies.");
        }
        for refused in &listed.refused {
            println!("refused: {refused}");
        }
    }
    if !listed.refused.is_empty() {
        anyhow::bail!(
            "{} backup(s) refused: a manifest that does not verify is never offered",
            listed.refused.len()
        );
    }
    Ok(())
}
