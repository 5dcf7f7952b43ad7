//! What every command shares.

use crate::config::Settings;
use crate::startup;

/// An application error as the terminal shows it.
pub(crate) fn app_error(error: app::error::AppError) -> anyhow::Error {
    error.report("the command line");
    anyhow::anyhow!("{error}")
}

/// Prints the rows of a list command as one JSON array (its `--json`).
pub(crate) fn print_json<T: serde::Serialize + ?Sized>(rows: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(rows)?);
    Ok(())
}

/// A command other than `migrate` and `serve` found the schema older than this binary.
/// It changed nothing; the process exits 2 (a setting to fix, as a bad configuration is).
#[derive(Debug)]
pub struct SchemaBehind {
    /// Migrations this binary carries that the database has not applied.
    pub pending: usize,
}

impl std::fmt::Display for SchemaBehind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let noun = if self.pending == 1 {
            "migration"
        } else {
            "migrations"
        };
        write!(
            f,
            "the schema is {} {noun} behind this binary; run `salvage migrate`",
            self.pending
        )
    }
}

impl std::error::Error for SchemaBehind {}

/// A command refused before it changed anything, for a reason the person running it can
/// fix (a flag, a setting, the state of a store): the process exits 2.
#[derive(Debug)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// The state, once the schema is known to be this binary's. Only `salvage migrate`
/// (behind its pre-upgrade backup) and `salvage serve` apply migrations: a command run
/// with a new binary on an old schema refuses with [`SchemaBehind`] and writes nothing.
pub(crate) async fn current_state(settings: &Settings) -> anyhow::Result<app::server::AppState> {
    let state = startup::build_state(settings);
    schema_is_current(&state.pg).await?;
    Ok(state)
}

/// `Ok` when every migration this binary carries is applied to `pg`.
pub(crate) async fn schema_is_current(pg: &sqlx::PgPool) -> anyhow::Result<()> {
    use app::migrations::ssr::schema;
    let applied = schema::applied(pg).await.map_err(|e| {
        app_error(app::error::AppError::internal(
            "Read the schema's version",
            e,
        ))
    })?;
    match schema::pending(&applied).len() {
        0 => Ok(()),
        pending => Err(SchemaBehind { pending }.into()),
    }
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
pub(crate) fn cli_firing(reason: Option<app::reason::Reason>) -> app::jobs::ssr::Firing {
    app::jobs::ssr::Firing::by_hand(
        app::jobs::Trigger::Cli,
        app::auth::ssr::Actor::cli(),
        reason,
        app::jobs::ssr::Caller::this_process("salvage cli"),
    )
}
