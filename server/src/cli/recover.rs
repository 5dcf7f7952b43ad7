//! `salvage recover --list`: what the repository can bring back, for a machine whose
//! stores were lost. Its settings need name only the repository and its keys (and the
//! stores it will restore onto): nothing is read from a database, so the schema's
//! version is not checked.

use super::args::RecoverArgs;
use super::common::print_json;
use crate::config::Settings;
use app::format::{format_ago, format_utc};

/// Runs `salvage recover`.
pub async fn recover(args: RecoverArgs, settings: Settings) -> anyhow::Result<()> {
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
