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
            let keys = keys::list(&state.pg).await.map_err(app_error)?;
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
    }
    Ok(())
}
