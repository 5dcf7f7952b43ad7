use std::process::ExitCode;

use clap::Parser;
use salvage::{cli, config::Settings, telemetry};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    // Needs no settings: works on a machine with no .env and no store.
    match cli.command {
        cli::Command::Completions { shell } => {
            cli::print_completions(shell);
            return ExitCode::SUCCESS;
        }
        cli::Command::Openapi => {
            print!("{}", salvage::openapi::document());
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    if let Err(error) = dotenvy::dotenv() {
        if !error.not_found() {
            eprintln!("salvage: .env could not be read: {error}");
            return ExitCode::from(2);
        }
    }
    telemetry::init();
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("salvage: {error}");
            return ExitCode::from(2);
        }
    };
    match cli::run(cli.command, settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("salvage: {error:#}");
            // A schema older than the binary is a setting to fix, like a bad configuration.
            if error.downcast_ref::<cli::SchemaBehind>().is_some()
                || error.downcast_ref::<cli::Refused>().is_some()
            {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
