//! `salvage ingest-key …`.

use super::args::IngestKeyCommand;
use super::common::{app_error, current_state, print_json};
use crate::config::Settings;

pub async fn ingest_key(command: IngestKeyCommand, settings: Settings) -> anyhow::Result<()> {
    use app::ingest_keys::ssr as keys;
    let state = current_state(&settings).await?;
    let actor = app::auth::ssr::Actor::cli();
    match command {
        IngestKeyCommand::Create { name, organization } => {
            let (id, secret) = keys::create(&state.pg, &actor, &name, &organization)
                .await
                .map_err(app_error)?;
            eprintln!("Created ingest key #{id}. Copy it now; it is not shown again:");
            println!("{secret}");
        }
        IngestKeyCommand::Revoke { id, reason } => {
            keys::revoke(&state.pg, state.ingest_keys(), &actor, id, Some(reason))
                .await
                .map_err(app_error)?;
            println!("Ingest key #{id} is revoked; every replica refuses it within 3 s.");
        }
        IngestKeyCommand::List(output) => {
            let keys = keys::list(&state.pg, state.clock.now())
                .await
                .map_err(app_error)?;
            if output.json {
                return print_json(&keys);
            }
            println!(
                "{:<5} {:<30} {:<14} {:<20} {:<22} {:<22} STATUS",
                "ID", "NAME", "STARTS WITH", "ORGANISATION", "CREATED (UTC)", "LAST USED (UTC)"
            );
            for key in keys {
                println!(
                    "{:<5} {:<30} {:<14} {:<20} {:<22} {:<22} {}",
                    key.id,
                    key.name,
                    key.prefix,
                    key.organization_id,
                    app::format::format_utc(key.created_at),
                    key.last_used_at
                        .map(app::format::format_utc)
                        .unwrap_or_else(|| "never".into()),
                    if key.revoked_at.is_some() {
                        "revoked"
                    } else {
                        "active"
                    }
                );
            }
        }
        IngestKeyCommand::Show { id, output } => {
            // Counts still in this process's memory are none: the CLI serves nothing.
            let usage = app::ingest_keys::usage::usage(&state.pg, id, state.clock.now())
                .await?
                .ok_or_else(|| anyhow::anyhow!("Ingest key #{id} was not found."))?;
            if output.json {
                return print_json(&usage);
            }
            print_usage(&usage);
        }
    }
    Ok(())
}

fn print_usage(usage: &app::ingest_keys::KeyUsage) {
    use app::format::{format_utc, group_digits};
    let when = |ms: Option<i64>| ms.map(format_utc).unwrap_or_else(|| "never".into());
    println!(
        "Ingest key #{} \u{201c}{}\u{201d}",
        usage.key_id, usage.name
    );
    println!("First used: {}", when(usage.first_used_ms));
    println!("Last used:  {}", when(usage.last_used_ms));
    println!(
        "Last 7 days: {} requests, {} rows, from {} addresses",
        group_digits(usage.requests as u64),
        group_digits(usage.rows as u64),
        usage.sources.len()
    );
    if !usage.hours.is_empty() {
        println!();
        println!("{:<22} {:>10} {:>12}", "HOUR (UTC)", "REQUESTS", "ROWS");
        for (hour, requests, rows) in &usage.hours {
            println!(
                "{:<22} {:>10} {:>12}",
                format_utc(*hour),
                group_digits(*requests as u64),
                group_digits(*rows as u64)
            );
        }
    }
    if !usage.sources.is_empty() {
        println!();
        println!(
            "{:<40} {:>10} {:>12} {:<22} LAST SEEN (UTC)",
            "ADDRESS", "REQUESTS", "ROWS", "FIRST SEEN (UTC)"
        );
        for source in &usage.sources {
            println!(
                "{:<40} {:>10} {:>12} {:<22} {}",
                source.address,
                group_digits(source.requests as u64),
                group_digits(source.rows as u64),
                format_utc(source.first_seen_ms),
                format_utc(source.last_seen_ms)
            );
        }
    }
}
