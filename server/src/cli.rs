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
    /// Replay both fallback queues into ClickHouse now (the same run as the console's
    /// Replay button and /cron/replay-fallback), with a progress bar. Ctrl-C stops
    /// after the current batch; nothing is lost or doubled either way.
    Replay {
        /// Why, for the history.
        #[arg(long)]
        reason: Option<String>,
        /// Rows per batch (default: SALVAGE_REPLAY_BATCH, 5000).
        #[arg(long)]
        batch: Option<i64>,
        /// Stop after this many seconds and report what is left (default: no limit).
        #[arg(long)]
        budget_secs: Option<u64>,
    },
    /// Delete queued rows older than SALVAGE_FALLBACK_TTL_HOURS (default 7 days). This
    /// loses those rows for good; each queue that loses any gets a history entry.
    Expire,
    /// Run a cron job now, or see how every job has been firing.
    #[command(subcommand)]
    Cron(CronCommand),
    /// Rotate or list the cron secret (the bearer token of /cron/*).
    #[command(subcommand)]
    CronSecret(CronSecretCommand),
    /// Create, revoke or list the keys callers of /ingest/* authenticate with.
    #[command(subcommand)]
    IngestKey(IngestKeyCommand),
    /// Demo data: accounts and history (no subcommand), live traffic, an outage.
    Demo {
        #[command(subcommand)]
        command: Option<DemoCommand>,
    },
    /// Measure Salvage on this machine (throwaway databases; prints the figures).
    #[command(subcommand)]
    Bench(BenchCommand),
}

/// `salvage ingest-key …`.
#[derive(Debug, Subcommand)]
pub enum IngestKeyCommand {
    /// Create a key; the secret is printed once, on standard output.
    Create {
        /// Who will use it, e.g. "api-gateway production".
        #[arg(long)]
        name: String,
    },
    /// Revoke a key: every replica refuses it within 30 s.
    Revoke {
        #[arg(long)]
        id: i64,
        #[arg(long)]
        reason: String,
    },
    /// List the keys (never their secrets).
    List,
}

/// `salvage cron …`.
#[derive(Debug, Subcommand)]
pub enum CronCommand {
    /// Every job: schedule, runs in the last 24 h against the expected, fire rate, last
    /// run and success, durations, flags. Exits 1 when a job is flagged.
    List,
    /// Run one job now (recorded as trigger `cli`, with you as the actor).
    Run {
        /// The job's name, e.g. replay-fallback (see `salvage cron list`).
        job: String,
        /// Why, for the history.
        #[arg(long)]
        reason: Option<String>,
    },
}

/// `salvage cron-secret …`.
#[derive(Debug, Subcommand)]
pub enum CronSecretCommand {
    /// Make a new cron secret (printed once, on standard output). The current one keeps
    /// working for the grace window, so each scheduler can be switched in turn.
    Rotate {
        /// Hours the previous secret keeps working (0 to 168).
        #[arg(long, default_value_t = app::crons::DEFAULT_GRACE_HOURS)]
        grace_hours: i64,
        /// Why, for the history.
        #[arg(long)]
        reason: Option<String>,
    },
    /// End the grace window of a previous secret now: it stops working at once.
    EndGrace {
        #[arg(long)]
        id: i64,
        #[arg(long)]
        reason: String,
    },
    /// The current and previous secrets (never their values), with when and by which
    /// caller each was last used.
    List,
}

/// `salvage demo …`.
#[derive(Debug, Subcommand)]
pub enum DemoCommand {
    /// Post realistic LLM request logs and trace events to this Salvage's /ingest/*,
    /// a few batches a second, until stopped. Creates its own ingest key.
    Traffic {
        /// Batches per second.
        #[arg(long, default_value_t = 2)]
        rate: u32,
    },
    /// Stop the local ClickHouse (scripts/stores.sh) for N seconds, then start it again:
    /// watch /admin/queues fill, then drain when you press Replay.
    Outage {
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
}

/// `salvage bench …`.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Fill a fallback queue with N rows and drain it; print replay rows/s beside a plain
    /// ClickHouse insert and a plain PostgreSQL claim-and-delete of the same rows, peak
    /// memory, and ingest rows/s with ClickHouse up and down.
    Replay {
        #[arg(long, default_value_t = 100_000)]
        rows: u64,
        #[arg(long, default_value_t = 5000)]
        batch: i64,
    },
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
            startup::after_postgres_migrated(&state, settings.cron_secret.as_ref()).await?;
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
        Command::Demo { command: None } => crate::demo::run(&settings).await,
        Command::Demo {
            command: Some(DemoCommand::Traffic { rate }),
        } => crate::demo::traffic(&settings, rate).await,
        Command::Demo {
            command: Some(DemoCommand::Outage { seconds }),
        } => crate::demo::outage(seconds).await,
        Command::Replay {
            reason,
            batch,
            budget_secs,
        } => replay(settings, reason, batch, budget_secs).await,
        Command::Expire => expire(settings).await,
        Command::IngestKey(command) => ingest_key(command, settings).await,
        Command::Cron(command) => crate::cron_cli::cron(command, settings).await,
        Command::CronSecret(command) => crate::cron_cli::cron_secret(command, settings).await,
        Command::Bench(BenchCommand::Replay { rows, batch }) => {
            crate::bench::replay(&settings, rows, batch).await
        }
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

pub(crate) fn app_error(error: app::error::AppError) -> anyhow::Error {
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

/// The state, with the PostgreSQL schema applied (every CLI action needs it).
pub(crate) async fn migrated_state(settings: &Settings) -> anyhow::Result<app::server::AppState> {
    let state = startup::build_state(settings);
    app::server::postgres::migrate(&state.pg)
        .await
        .context("Failed to apply the PostgreSQL migrations")?;
    Ok(state)
}

async fn replay(
    settings: Settings,
    reason: Option<String>,
    batch: Option<i64>,
    budget_secs: Option<u64>,
) -> anyhow::Result<()> {
    use app::queues::ssr::replay::{begin, drive, request_cancel, ReplayOptions, Trigger};
    use std::io::Write;
    let state = migrated_state(&settings).await?;
    let mut options = ReplayOptions::from_state(&state);
    if let Some(batch) = batch {
        anyhow::ensure!(
            (1..=50_000).contains(&batch),
            "--batch: between 1 and 50000"
        );
        options.batch = batch;
    }
    options.budget = std::time::Duration::from_secs(budget_secs.unwrap_or(u64::MAX / 4));
    let actor = app::auth::ssr::Actor::cli();
    let job = app::crons::ssr::jobs::find("replay-fallback").expect("a registered job");
    let firing = crate::cron_cli::cli_firing(&actor, reason.clone());
    let cron_run = app::crons::ssr::runs::start(&state, job, &firing)
        .await
        .map_err(app_error)?
        .expect("a run without a tick always starts");
    let run_id = begin(&state.pg, Trigger::Cli, &actor, reason.clone())
        .await
        .map_err(app_error)?;
    // Ctrl-C asks the run to stop after its batch, like the console's Cancel.
    let pg = state.pg.clone();
    let cancel = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\nStopping after the current batch…");
            let _ = request_cancel(&pg, run_id).await;
        }
    });
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut report = None;
    let work = async {
        let done = drive(
            &state,
            run_id,
            Trigger::Cli,
            &actor,
            reason,
            &options,
            |p| {
                let total = p.rows_at_start.max(p.rows_done).max(1);
                let filled = (p.rows_done * 30 / total) as usize;
                let line = format!(
                    "[{}{}] {} / {} rows  {:.0} rows/s",
                    "#".repeat(filled),
                    "-".repeat(30 - filled.min(30)),
                    p.rows_done,
                    p.rows_at_start,
                    p.rate()
                );
                if interactive {
                    eprint!("\r{line}");
                } else {
                    eprintln!("{line}");
                }
                let _ = std::io::stderr().flush();
            },
        )
        .await?;
        let outcome = app::crons::ssr::jobs::replay_outcome(&done);
        report = Some(done);
        Ok(outcome)
    };
    let finished = app::crons::ssr::runs::finish_with(&state, job, cron_run, &firing, work)
        .await
        .map_err(app_error)?;
    cancel.abort();
    let Some(report) = report else {
        anyhow::bail!(
            "replay failed: {}",
            finished.outcome.error.unwrap_or_default()
        );
    };
    if interactive {
        eprintln!();
    }
    println!(
        "Replay #{} {}: {} rows replayed ({} inserted, {} already in ClickHouse), {} left, in {:.1} s ({:.0} rows/s).",
        report.run_id,
        report.status,
        report.rows_done,
        report.rows_inserted,
        report.rows_already_present,
        report.rows_left,
        report.elapsed.as_secs_f64(),
        report.rows_done as f64 / report.elapsed.as_secs_f64().max(0.001)
    );
    match report.error {
        Some(error) => anyhow::bail!("replay failed: {error}"),
        None => Ok(()),
    }
}

async fn expire(settings: Settings) -> anyhow::Result<()> {
    let state = migrated_state(&settings).await?;
    let job = app::crons::ssr::jobs::find("expire-fallback").expect("a registered job");
    let firing = crate::cron_cli::cli_firing(&app::auth::ssr::Actor::cli(), None);
    let finished = app::crons::ssr::runs::run(&state, job, firing)
        .await
        .map_err(app_error)?
        .expect("a run without a tick always starts");
    if let Some(error) = finished.outcome.error {
        anyhow::bail!("expiry failed: {error}");
    }
    let hours = state.queues.ttl.as_secs() / 3600;
    for e in finished.outcome.details["expired"]
        .as_array()
        .into_iter()
        .flatten()
    {
        match e["historyId"].as_i64() {
            Some(id) => println!(
                "{}: expired {} rows older than {hours} h (history entry #{id}).",
                e["queue"].as_str().unwrap_or_default(),
                e["rows"]
            ),
            None => println!(
                "{}: nothing older than the TTL.",
                e["queue"].as_str().unwrap_or_default()
            ),
        }
    }
    Ok(())
}

async fn ingest_key(command: IngestKeyCommand, settings: Settings) -> anyhow::Result<()> {
    use app::queues::ssr::keys;
    let state = migrated_state(&settings).await?;
    let actor = app::auth::ssr::Actor::cli();
    match command {
        IngestKeyCommand::Create { name } => {
            let (id, secret) = keys::create(&state.pg, &actor, &name)
                .await
                .map_err(app_error)?;
            eprintln!("Created ingest key #{id}. Copy it now; it is not shown again:");
            println!("{secret}");
        }
        IngestKeyCommand::Revoke { id, reason } => {
            keys::revoke(&state.pg, &actor, id, Some(reason))
                .await
                .map_err(app_error)?;
            println!("Ingest key #{id} is revoked; every replica refuses it within 30 s.");
        }
        IngestKeyCommand::List => {
            println!(
                "{:<5} {:<30} {:<14} {:<22} {:<22} STATUS",
                "ID", "NAME", "STARTS WITH", "CREATED (UTC)", "LAST USED (UTC)"
            );
            for key in keys::list(&state.pg).await.map_err(app_error)? {
                println!(
                    "{:<5} {:<30} {:<14} {:<22} {:<22} {}",
                    key.id,
                    key.name,
                    key.prefix,
                    app::history::format_utc(key.created_at),
                    key.last_used_at
                        .map(app::history::format_utc)
                        .unwrap_or_else(|| "never".into()),
                    if key.revoked_at.is_some() {
                        "revoked"
                    } else {
                        "active"
                    }
                );
            }
        }
    }
    Ok(())
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let application = Application::build(&settings).await?;
    startup::spawn_schema_task(application.state().clone(), settings.cron_secret.clone());
    if settings.crons.scheduler {
        crate::scheduler::spawn(application.state().clone());
    } else {
        tracing::info!("SALVAGE_SCHEDULER=off: jobs run only when /cron/<job> is called");
    }
    startup::spawn_setup_link_task(application.state().clone(), settings.public_url.clone());
    startup::spawn_session_cleanup(application.state().clone());
    app::queues::ssr::stats::spawn_sampler(
        application.state().pg.clone(),
        std::time::Duration::from_secs(300),
    );
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
