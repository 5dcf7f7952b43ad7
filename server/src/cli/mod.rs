//! The `salvage` command line: one subcommand per door into Salvage's actions, one file
//! per command group.
//!
//! - `serve` — `salvage serve` (with its shutdown).
//! - `migrations` — `salvage migrate` (behind the pre-upgrade backup, or
//!   `--rollback-to`), `salvage check` and `salvage migrations …`.
//! - `user` — `salvage user …`; `history` — `salvage history verify`.
//! - `queues` — `salvage replay` and `salvage expire` (the replay and expiry jobs).
//! - `cron` — `salvage cron …` and `salvage cron-secret …`.
//! - `keys` — `salvage ingest-key …`; `alerts` — `salvage alerts …`.
//! - `backup` — `salvage backup create|list|sync|verify|restore|rollback`; `drill` —
//!   `salvage drill run|list`; `recover` — `salvage recover --list`.
//! - `demo` — `salvage demo …`; `bench` — `salvage bench …`.
//!
//! - `args` — the commands and flags (clap); `common` — what every command shares: its
//!   state once the schema is known to be current (only `migrate` and `serve` migrate), the firing of a run from the terminal (trigger `cli`,
//!   actor `cli:$USER`), Ctrl-C stopping a running job after its current step.

mod alerts;
mod args;
mod backup;
pub mod bench;
mod bench_alerts;
mod bench_backup;
mod bench_pitr;
mod bench_sign_in;
mod bench_webhooks;
mod common;
mod cron;
pub mod demo;
mod demo_alerts;
pub mod demo_backups;
mod demo_incidents;
mod demo_webhooks;
mod drill;
mod history;
mod keys;
mod migrations;
mod pitr;
mod progress;
mod queues;
mod recover;
mod serve;
mod user;
mod webhooks;

pub use args::*;
pub use common::{Refused, SchemaBehind};

use crate::config::Settings;

/// Writes `shell`'s completion script for every command and flag to standard output.
pub fn print_completions(shell: clap_complete::Shell) {
    use clap::CommandFactory;
    clap_complete::generate(
        shell,
        &mut Cli::command(),
        "salvage",
        &mut std::io::stdout(),
    );
}

/// Runs `command` with `settings`.
pub async fn run(command: Command, settings: Settings) -> anyhow::Result<()> {
    match command {
        Command::Serve => serve::serve(settings).await,
        Command::Completions { shell } => {
            print_completions(shell);
            Ok(())
        }
        Command::Openapi => {
            print!("{}", crate::openapi::document());
            Ok(())
        }
        Command::Migrate {
            no_backup,
            rollback_to,
            confirm,
            reason,
        } => match rollback_to {
            Some(id) => migrations::roll_back(settings, id, confirm, reason).await,
            None => migrations::migrate(settings, no_backup).await,
        },
        Command::Check => migrations::check(settings).await,
        Command::Migrations(command) => migrations::migrations(command, settings).await,
        Command::User(command) => user::user(command, settings).await,
        Command::History(HistoryCommand::Verify) => history::verify(settings).await,
        Command::Demo { command: None } => demo::run(&settings).await,
        Command::Demo {
            command: Some(DemoCommand::Traffic { rate }),
        } => demo::traffic(&settings, rate).await,
        Command::Demo {
            command: Some(DemoCommand::Outage { seconds }),
        } => demo::outage(seconds).await,
        Command::Replay {
            reason,
            batch,
            budget_secs,
        } => queues::replay(settings, reason, batch, budget_secs).await,
        Command::Expire => queues::expire(settings).await,
        Command::IngestKey(command) => keys::ingest_key(command, settings).await,
        Command::Cron(command) => cron::cron(command, settings).await,
        Command::CronSecret(command) => cron::cron_secret(command, settings).await,
        Command::Bench(BenchCommand::Replay {
            rows,
            batch,
            parallel,
        }) => bench::replay(&settings, rows, batch, parallel).await,
        Command::Bench(BenchCommand::Pitr { gb, rounds }) => {
            bench_pitr::pitr(&settings, gb, rounds).await
        }
        Command::Bench(BenchCommand::Backup { rows }) => {
            bench_backup::backup(&settings, rows).await
        }
        Command::Bench(BenchCommand::SignInFlood { seconds, loops }) => {
            bench_sign_in::flood(&settings, seconds, loops).await
        }
        Command::Bench(BenchCommand::Alerts { resolved, open }) => {
            bench_alerts::alerts(&settings, resolved, open).await
        }
        Command::Alerts(command) => alerts::alerts(command, settings).await,
        Command::Backup(command) => backup::backup(command, settings).await,
        Command::Recover(args) => recover::recover(args, settings).await,
        Command::Drill(command) => drill::drill(command, settings).await,
        Command::Webhook(command) => webhooks::webhook(command, settings).await,
        Command::Dlq(command) => webhooks::dlq(command, settings).await,
        Command::Bench(BenchCommand::Webhooks {
            deliveries,
            dead_letters,
            receiver_ms,
        }) => bench_webhooks::webhooks(&settings, deliveries, dead_letters, receiver_ms).await,
    }
}
