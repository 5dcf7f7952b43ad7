//! `salvage history verify`.

use anyhow::Context;

use crate::config::Settings;
use crate::startup;

/// Walks the hash chain; fails naming the first entry that does not match.
pub async fn verify(settings: Settings) -> anyhow::Result<()> {
    let state = startup::build_state(&settings);
    app::server::postgres::migrate(&state.pg)
        .await
        .context("Failed to apply the PostgreSQL migrations")?;
    let report = app::history::ssr::verify(&state.pg)
        .await
        .context("Failed to verify the history")?;
    match report.first_broken {
        None => {
            println!(
                "History chain intact: {} entries. Newest hash: {}",
                report.entries,
                report.head_hash.unwrap_or_else(|| "(empty)".into())
            );
            Ok(())
        }
        Some(broken) => {
            anyhow::bail!(
                "history chain broken at entry #{}: {}",
                broken.id,
                broken.problem
            )
        }
    }
}
