//! The `salvage` command line: one subcommand per door into Salvage's actions.

use anyhow::Context;
use clap::{Parser, Subcommand};
use secrecy::SecretString;

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
    /// Manage console accounts (acts as admin, recorded in the history as cli:$USER).
    #[command(subcommand)]
    User(UserCommand),
    /// Read or check the runbook history.
    #[command(subcommand)]
    History(HistoryCommand),
    /// Create demo accounts (one per role; passwords printed once) and a few months of
    /// realistic history. Does nothing that is already there.
    Demo,
}

/// `salvage user …`.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add an account. The password is read from a prompt, or from the first line of
    /// standard input when that is not a terminal; never from the command line.
    Add {
        #[arg(long)]
        email: String,
        /// operator, manager or admin.
        #[arg(long)]
        role: String,
        /// Why, for the history.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Change an account's role.
    SetRole {
        #[arg(long)]
        email: String,
        #[arg(long)]
        role: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Disable an account; its sessions end at once.
    Disable {
        #[arg(long)]
        email: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Re-enable a disabled account.
    Enable {
        #[arg(long)]
        email: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// List every account.
    List,
}

/// `salvage history …`.
#[derive(Debug, Subcommand)]
pub enum HistoryCommand {
    /// Walk the hash chain; exit 1 naming the first entry that does not match.
    Verify,
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
        Command::User(command) => user(command, settings).await,
        Command::History(HistoryCommand::Verify) => {
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
        Command::Demo => crate::demo::run(&settings).await,
    }
}

/// Reads a new password: twice from a prompt on a terminal, else one line of stdin.
fn read_password() -> anyhow::Result<SecretString> {
    use std::io::{BufRead, IsTerminal};
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password (at least 12 characters): ")?;
        let second = rpassword::prompt_password("Password again: ")?;
        anyhow::ensure!(first == second, "the two passwords differ");
        Ok(SecretString::from(first))
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        Ok(SecretString::from(
            line.trim_end_matches(['\r', '\n']).to_owned(),
        ))
    }
}

fn app_error(error: app::error::AppError) -> anyhow::Error {
    anyhow::anyhow!("{error}")
}

async fn user(command: UserCommand, settings: Settings) -> anyhow::Result<()> {
    use app::auth::{ssr, Role};
    let state = startup::build_state(&settings);
    app::server::postgres::migrate(&state.pg)
        .await
        .context("Failed to apply the PostgreSQL migrations")?;
    let actor = ssr::Actor::cli();
    let role = |value: &str| {
        Role::parse(value).ok_or_else(|| anyhow::anyhow!("role: choose operator, manager or admin"))
    };
    match command {
        UserCommand::Add {
            email,
            role: r,
            reason,
        } => {
            let role = role(&r)?;
            let password = read_password()?;
            let (id, _) = ssr::add_user(&state.pg, &actor, &email, role, Some(password), reason)
                .await
                .map_err(app_error)?;
            println!(
                "Added user #{id} ({}) as {role}.",
                email.trim().to_lowercase()
            );
        }
        UserCommand::SetRole {
            email,
            role: r,
            reason,
        } => {
            let role = role(&r)?;
            let id = ssr::user_id_by_email(&state.pg, &email)
                .await
                .map_err(app_error)?;
            ssr::set_role(&state.pg, &actor, id, role, reason)
                .await
                .map_err(app_error)?;
            println!("{email} now has the {role} role.");
        }
        UserCommand::Disable { email, reason } => {
            let id = ssr::user_id_by_email(&state.pg, &email)
                .await
                .map_err(app_error)?;
            ssr::set_disabled(&state.pg, &actor, id, true, reason)
                .await
                .map_err(app_error)?;
            println!("{email} is disabled; their sessions have ended.");
        }
        UserCommand::Enable { email, reason } => {
            let id = ssr::user_id_by_email(&state.pg, &email)
                .await
                .map_err(app_error)?;
            ssr::set_disabled(&state.pg, &actor, id, false, reason)
                .await
                .map_err(app_error)?;
            println!("{email} is enabled.");
        }
        UserCommand::List => {
            let users = ssr::list_users(&state.pg).await.map_err(app_error)?;
            println!(
                "{:<6} {:<36} {:<9} {:<9} LAST SIGN-IN (UTC)",
                "ID", "EMAIL", "ROLE", "STATUS"
            );
            for user in users {
                let status = if user.disabled {
                    "disabled"
                } else if user.must_change_password {
                    "temporary"
                } else {
                    "active"
                };
                println!(
                    "{:<6} {:<36} {:<9} {:<9} {}",
                    user.id,
                    user.email,
                    user.role,
                    status,
                    user.last_login_at
                        .map(app::history::format_utc)
                        .unwrap_or_else(|| "never".into())
                );
            }
        }
    }
    Ok(())
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let application = Application::build(&settings).await?;
    startup::spawn_schema_task(application.state().clone());
    startup::spawn_setup_link_task(application.state().clone(), settings.public_url.clone());
    startup::spawn_session_cleanup(application.state().clone());
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
