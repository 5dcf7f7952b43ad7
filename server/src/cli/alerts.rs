//! `salvage alerts …`: the alert page's functions from a terminal (local administrator
//! access: recorded as `cli:$USER`, no role needed).

use super::args::AlertsCommand;
use super::common::{app_error, current_state, print_json};
use crate::config::Settings;

pub async fn alerts(command: AlertsCommand, settings: Settings) -> anyhow::Result<()> {
    use app::alerts::ssr::{changes, input, query, silences, store};
    use app::alerts::Seen;
    let state = current_state(&settings).await?;
    let actor = app::auth::ssr::Actor::cli();
    let now = state.clock.now();
    // The CLI acts on each alert as it is now (the version read just before the change).
    let current = |ids: Vec<i64>| {
        let state = state.clone();
        async move {
            let mut seen = Vec::with_capacity(ids.len());
            for id in ids {
                let alert = store::load(&state.pg, state.alert_kinds(), id, now)
                    .await
                    .map_err(app_error)?;
                seen.push(Seen {
                    id,
                    version: alert.version,
                });
            }
            anyhow::Ok(seen)
        }
    };
    match command {
        AlertsCommand::List {
            resolved,
            kind,
            output,
        } => {
            let filters =
                query::Filters::parse(kind.as_deref().unwrap_or(""), "", "").map_err(app_error)?;
            let alerts = if resolved {
                query::resolved_view(&state, &filters, now).await?.alerts
            } else {
                query::open_view(&state, &filters, now).await?.alerts
            };
            if output.json {
                print_json(&alerts)?;
            } else {
                println!(
                    "{:<6} {:<9} {:<13} {:<20} {:<18} {:>7}  TITLE",
                    "ID", "SEVERITY", "STATUS", "KIND", "FIRST SEEN (UTC)", "SEEN"
                );
                for alert in &alerts {
                    let mut marks = Vec::new();
                    if alert.silenced {
                        marks.push("muted");
                    }
                    if alert.flapping {
                        marks.push("flapping");
                    }
                    println!(
                        "{:<6} {:<9} {:<13} {:<20} {:<18} {:>7}  {}{}",
                        alert.id,
                        alert.severity.as_str(),
                        alert.status.as_str(),
                        alert.kind,
                        app::format::format_utc(alert.first_seen_at).trim_end_matches(" UTC"),
                        alert.occurrences,
                        alert.title,
                        if marks.is_empty() {
                            String::new()
                        } else {
                            format!(" [{}]", marks.join(", "))
                        }
                    );
                }
                if alerts.is_empty() {
                    eprintln!("No {} alerts.", if resolved { "resolved" } else { "open" });
                }
            }
            let critical_open = !resolved
                && alerts
                    .iter()
                    .any(|a| a.severity == app::alerts::Severity::Critical && !a.silenced);
            if critical_open {
                std::process::exit(1);
            }
        }
        AlertsCommand::Ack { id, note, until } => {
            let note = input::required_note(&note).map_err(app_error)?;
            let until = input::until(until.as_deref().unwrap_or(""), now).map_err(app_error)?;
            let seen = current(id).await?;
            let changed = changes::change(
                &state.pg,
                state.alert_kinds(),
                &actor,
                &seen,
                changes::Op::Acknowledge { until },
                Some(note),
                now,
            )
            .await
            .map_err(app_error)?;
            for c in changed {
                println!(
                    "Acknowledged alert #{} (history #{}).",
                    c.alert_id, c.history_id
                );
            }
        }
        AlertsCommand::Resolve { id, note } => {
            let note = input::required_note(&note).map_err(app_error)?;
            let seen = current(id).await?;
            let changed = changes::change(
                &state.pg,
                state.alert_kinds(),
                &actor,
                &seen,
                changes::Op::Resolve,
                Some(note),
                now,
            )
            .await
            .map_err(app_error)?;
            for c in changed {
                println!(
                    "Resolved alert #{} (history #{}).",
                    c.alert_id, c.history_id
                );
            }
        }
        AlertsCommand::Silence {
            kind,
            key,
            until,
            reason,
        } => {
            // `reason` passed the reason rule when the arguments were read.
            let ends_at = input::ends_at(&until, now).map_err(app_error)?;
            let silence = silences::NewSilence {
                kind,
                key_pattern: key,
                ends_at,
                reason,
            };
            let id = silences::create(&state.pg, state.alert_kinds(), &actor, silence, now)
                .await
                .map_err(app_error)?;
            println!("Created silence #{id}.");
        }
        AlertsCommand::Unsilence { id, reason } => {
            silences::end(&state.pg, &actor, id, &reason, now)
                .await
                .map_err(app_error)?;
            println!("Ended silence #{id}.");
        }
    }
    Ok(())
}
