//! `salvage webhook …` and `salvage dlq …`: the webhooks and the dead letters from a
//! terminal, through the same functions as /admin/settings/webhooks and /admin/dlq
//! (recorded as `cli:$USER`).

use app::auth::ssr::Actor;
use app::dead_letters::ssr::{dlq, endpoints, filter::DlqFilter, redrive};
use app::format::{format_utc, group_digits};

use super::args::{DlqCommand, WebhookCommand};
use super::common::{app_error, cli_firing, current_state, print_json, stop_on_ctrl_c};
use crate::config::Settings;

/// Runs `salvage webhook <command>`.
pub async fn webhook(command: WebhookCommand, settings: Settings) -> anyhow::Result<()> {
    let state = current_state(&settings).await?;
    let actor = Actor::cli();
    match command {
        WebhookCommand::Add {
            url,
            events,
            description,
            max_retries,
        } => {
            let new = endpoints::NewWebhook::parse(
                state.webhooks(),
                &url,
                &description,
                &events,
                &max_retries,
            )
            .map_err(app_error)?;
            let created = endpoints::create(&state.pg, &state.webhooks().secret_keys, &actor, &new)
                .await
                .map_err(app_error)?;
            eprintln!(
                "Webhook {} added. Its signing secret (shown only now) follows on standard output.",
                created.id
            );
            println!("{}", created.secret.reveal());
        }
        WebhookCommand::List(output) => {
            let rows = endpoints::list(&state.pg, state.clock.now()).await?;
            if output.json {
                return print_json(&rows);
            }
            if rows.is_empty() {
                println!("No webhooks.");
            }
            println!(
                "{:>4}  {:<9}  {:>7}  {:>6}  {:>9}  url (events)",
                "id", "state", "retries", "due", "dead"
            );
            for row in rows {
                println!(
                    "{:>4}  {:<9}  {:>7}  {:>6}  {:>9}  {} ({})",
                    row.id,
                    row.state.label(),
                    row.max_retries,
                    group_digits(row.backlog.max(0) as u64),
                    group_digits(row.dead.max(0) as u64),
                    row.url,
                    row.event_types.join(", ")
                );
            }
        }
        WebhookCommand::Disable { id, reason } => {
            endpoints::set_enabled(&state.pg, &actor, id, false, &reason)
                .await
                .map_err(app_error)?;
            println!("Webhook {id} disabled; its deliveries wait.");
        }
        WebhookCommand::Enable { id, reason } => {
            endpoints::set_enabled(&state.pg, &actor, id, true, &reason)
                .await
                .map_err(app_error)?;
            println!("Webhook {id} enabled.");
        }
        WebhookCommand::Delete { id, reason } => {
            let dead = endpoints::delete(&state.pg, &actor, id, &reason, state.clock.now())
                .await
                .map_err(app_error)?;
            println!(
                "Webhook {id} deleted; {dead} pending deliveries dead-lettered (webhook_deleted)."
            );
        }
        WebhookCommand::Reseal => {
            let keys = &state.webhooks().secret_keys;
            let Some(current) = keys.current() else {
                anyhow::bail!(
                    "SALVAGE_WEBHOOK_SECRET_KEYS is not set: there is no key to seal with"
                );
            };
            let resealed = endpoints::reseal(&state.pg, keys, &actor)
                .await
                .map_err(app_error)?;
            println!(
                "{resealed} signing secrets sealed under key `{current}`; every other was already."
            );
        }
    }
    Ok(())
}

/// Runs `salvage dlq <command>`.
pub async fn dlq(command: DlqCommand, settings: Settings) -> anyhow::Result<()> {
    let state = current_state(&settings).await?;
    let actor = Actor::cli();
    match command {
        DlqCommand::Summary { filter } => {
            let filter = DlqFilter::parse(&filter).map_err(app_error)?;
            let overview = dlq::overview(&state, &filter, None)
                .await
                .map_err(app_error)?;
            println!(
                "{} dead letters, {} matching {}; {} deliveries due",
                group_digits(overview.dead_total as u64),
                group_digits(overview.matching as u64),
                overview.filter_label,
                group_digits(overview.backlog as u64)
            );
            println!(
                "{:>7}  {:<16}  {:>9}  {:<20}  last answer",
                "webhook", "reason", "count", "newest"
            );
            for row in overview.breakdown {
                println!(
                    "{:>7}  {:<16}  {:>9}  {:<20}  {}",
                    row.webhook_id,
                    row.reason.as_str(),
                    group_digits(row.count as u64),
                    format_utc(row.newest_ms),
                    row.last_error.unwrap_or_default()
                );
            }
        }
        DlqCommand::Redrive {
            filter,
            dry_run,
            reason,
        } => {
            let filter = DlqFilter::parse(&filter).map_err(app_error)?;
            let dry = dlq::dry_run(&state.pg, &filter).await.map_err(app_error)?;
            println!(
                "{} dead letters match {}",
                group_digits(dry.count as u64),
                dry.filter_label
            );
            for letter in &dry.sample {
                println!(
                    "  delivery {:>8}  webhook {:>4}  {:<18}  {:<16}  {} attempts",
                    letter.id,
                    letter.webhook_id,
                    letter.event_type,
                    letter.reason.as_str(),
                    letter.attempts
                );
            }
            if dry_run {
                return Ok(());
            }
            let reason =
                reason.ok_or_else(|| anyhow::anyhow!("--reason: say why, for the history"))?;
            stop_on_ctrl_c(&state, "Stopping after the current batch…");
            let bar = super::progress::Bar::new();
            let on_progress = bar.on_progress(super::progress::Unit::Letters);
            let result =
                redrive::run(&state, &filter, cli_firing(Some(reason)), Some(on_progress)).await;
            bar.finish();
            let run = result.map_err(app_error)?;
            let id = run.id;
            println!(
                "Redrive {id} {}: {} of {} dead letters sent again; the delivery workers send them.",
                run.status.as_str(),
                group_digits(run.done as u64),
                group_digits(run.total as u64)
            );
        }
        DlqCommand::Purge {
            filter,
            confirm,
            reason,
        } => {
            let filter = DlqFilter::parse(&filter).map_err(app_error)?;
            let purged = dlq::purge(&state, &actor, &filter, &confirm, &reason)
                .await
                .map_err(app_error)?;
            println!(
                "Purged {} dead letters (history entry {}).",
                group_digits(purged.deleted as u64),
                purged.history_id
            );
        }
    }
    Ok(())
}
