//! `salvage history verify`.

use crate::config::Settings;

/// Walks the hash chain (recorded in the history, as the console's button is); fails
/// naming the first entry that does not match.
pub async fn verify(settings: Settings) -> anyhow::Result<()> {
    let state = super::common::current_state(&settings).await?;
    let report = app::history::chain::verify_and_record(&state, &app::auth::ssr::Actor::cli())
        .await
        .map_err(super::common::app_error)?;
    if let Some(broken) = report.first_broken {
        anyhow::bail!(
            "history chain broken at entry #{}: {}",
            broken.id,
            broken.problem
        )
    }
    if let Some(problem) = report.anchors.problem {
        anyhow::bail!("history chain disagrees with its anchors in ClickHouse: {problem}")
    }
    println!(
        "History chain intact: {} entries. Newest hash: {}",
        report.entries,
        report.head_hash.unwrap_or_else(|| "(empty)".into())
    );
    if report.anchors.unavailable {
        println!("Anchors not compared: ClickHouse did not answer.");
    } else {
        println!(
            "Agrees with {} anchors in ClickHouse (newest: entry #{}).",
            report.anchors.checked,
            report.anchors.newest_seq.unwrap_or(0)
        );
    }
    Ok(())
}
