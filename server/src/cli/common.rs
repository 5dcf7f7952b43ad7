//! What every command shares.

use anyhow::Context;

use crate::config::Settings;
use crate::startup;

/// An application error as the terminal shows it.
pub(crate) fn app_error(error: app::error::AppError) -> anyhow::Error {
    anyhow::anyhow!("{error}")
}

/// Prints the rows of a list command as one JSON array (its `--json`).
pub(crate) fn print_json<T: serde::Serialize + ?Sized>(rows: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(rows)?);
    Ok(())
}

/// The state, with the PostgreSQL schema applied (every CLI action needs it).
pub(crate) async fn migrated_state(settings: &Settings) -> anyhow::Result<app::server::AppState> {
    let state = startup::build_state(settings);
    crate::startup::migrate_postgres(&state)
        .await
        .context("Failed to apply the PostgreSQL migrations")?;
    Ok(state)
}

/// Ctrl-C stops this command's running job after its current step (as the console's
/// Cancel does), by cancelling the process's shutdown token.
pub(crate) fn stop_on_ctrl_c(state: &app::server::AppState, message: &'static str) {
    let shutdown = state.shutdown.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\n{message}");
            shutdown.cancel();
        }
    });
}

/// A run started from this terminal.
pub(crate) fn cli_firing(reason: Option<String>) -> app::jobs::ssr::Firing {
    app::jobs::ssr::Firing::by_hand(
        app::jobs::Trigger::Cli,
        app::auth::ssr::Actor::cli(),
        reason,
        app::jobs::ssr::Caller::this_process("salvage cli"),
    )
}
