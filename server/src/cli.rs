//! The `salvage` command line: one subcommand per door into Salvage's actions.

use clap::{Parser, Subcommand};

use crate::config::Settings;
use crate::startup::{self, Application};

/// Salvage: a self-hosted disaster-recovery console for a service that keeps its
/// observability data in ClickHouse and its accounts and queues in PostgreSQL.
///
/// Settings come from the environment and from `.env` in the working directory
/// (DATABASE_URL, CLICKHOUSE_URL, CLICKHOUSE_DATABASE, CLICKHOUSE_USER,
/// CLICKHOUSE_PASSWORD, SALVAGE_ADDR, SALVAGE_PUBLIC_URL); see README.md.
#[derive(Debug, Parser)]
#[command(name = "salvage", version, arg_required_else_help = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the console at /admin, the health endpoints at /health/ready and
    /// /health/deep, and the server functions the console calls.
    ///
    /// Starts even while PostgreSQL or ClickHouse is down (that is when you need the
    /// console most): the schema is applied in the background as soon as each store
    /// answers, and /health/ready reports 503 until both do. Stops gracefully on Ctrl-C
    /// or SIGTERM.
    Serve,
    /// Apply the PostgreSQL migrations and the ClickHouse tables, then exit.
    ///
    /// Idempotent: run it as often as you like, from several machines at once. Exits
    /// non-zero, naming the store, when a store refuses.
    Migrate,
}

/// Runs `command` with `settings`.
pub async fn run(command: Command, settings: Settings) -> anyhow::Result<()> {
    match command {
        Command::Serve => serve(settings).await,
        Command::Migrate => {
            let state = startup::build_state(&settings);
            startup::migrate(&state.pg, &state.clickhouse).await?;
            println!(
                "Schema is current: PostgreSQL migrations applied, ClickHouse database `{}` ready.",
                state.clickhouse.database()
            );
            Ok(())
        }
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let application = Application::build(&settings).await?;
    startup::spawn_schema_task(application.state().clone());
    tracing::info!(
        address = %settings.addr,
        console = %settings.public_url.join("admin").map(|u| u.to_string()).unwrap_or_default(),
        "Salvage is serving"
    );
    application.run_until_stopped(shutdown_signal()).await?;
    tracing::info!("Salvage stopped");
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
