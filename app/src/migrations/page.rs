//! `/admin/migrations`: the background migrations (progress, rate, ETA, heartbeat,
//! controls), the schema migrations applied against what this binary expects, and the
//! upgrades with their pre-upgrade backups.

use std::time::Duration;

use leptos::prelude::*;
use leptos_meta::Title;

use super::api::{load_migrations, ChangeMigration};
use super::{BackgroundMigrationRow, MigrationAction, MigrationsOverview, SchemaStatus, Upgrade};
use crate::auth::viewer::IfAllowed;
use crate::auth::Permission;
use crate::components::ReasonField;
use crate::components::{action_error, Badge, Banner, ErrorBanner, PageHeader, Tone};
use crate::format::{format_ago, format_duration, format_utc, group_digits};

/// How often the page asks for fresh figures.
pub const REFRESH_EVERY: Duration = Duration::from_secs(5);

/// `/admin/migrations`.
#[component]
pub fn MigrationsPage() -> AnyView {
    let tick = crate::components::refresh_ticker(REFRESH_EVERY);
    let change = ServerAction::<ChangeMigration>::new();
    let overview = Resource::new(
        move || (tick.get(), change.version().get()),
        |_| load_migrations(),
    );
    view! {
        <Title text="Migrations" />
        <PageHeader
            title="Migrations"
            subtitle="Long data changes run in chunks in the background, one worker per migration across replicas, each chunk committed with its cursor. A migration whose heartbeat stops is taken over by the next tick. Below them, the schema this database is at, and every upgrade with the backup taken before it. Refreshes every 5 s."
        />
        <Transition fallback=|| view! { <p class="muted" role="status">"Reading the migrations…"</p> }>
            {move || Suspend::new(async move {
                match overview.await {
                    Ok(overview) => view! { <MigrationsNow overview /> }.into_any(),
                    Err(error) => view! { <ErrorBanner error /> }.into_any(),
                }
            })}
        </Transition>
        // Outside the refreshing part, so a reason being typed survives each refresh.
        <IfAllowed permission=Permission::Operate>
            <ControlPanel change />
        </IfAllowed>
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                overview.await.ok().map(|overview| view! { <SchemaAndUpgrades overview /> })
            })}
        </Transition>
    }
    .into_any()
}

#[component]
fn MigrationsNow(overview: MigrationsOverview) -> AnyView {
    let now = overview.now_ms;
    let stuck: Vec<String> = overview
        .migrations
        .iter()
        .filter(|m| m.stuck)
        .map(|m| m.name.clone())
        .collect();
    let failed = overview
        .migrations
        .iter()
        .filter(|m| m.status == super::MigrationStatus::Failed)
        .count();
    let banner = if !stuck.is_empty() {
        Some(view! {
            <Banner tone=Tone::Error test_id="stuck-banner">{format!(
                "Stuck (no heartbeat for over {}): {}. Its worker stopped; the next tick takes it over from the saved cursor.",
                format_duration(overview.stuck_after_s * 1000),
                stuck.join(", ")
            )}</Banner>
        }.into_any())
    } else if failed > 0 {
        Some(view! {
            <Banner tone=Tone::Warn>{format!("{failed} background migration(s) failed: read the error, fix the cause, then Retry.")}</Banner>
        }.into_any())
    } else {
        None
    };
    let rows = overview.migrations.clone();
    view! {
        {schema_banner(&overview.schema)}
        {banner}
        <section class="panel">
            <h2>"Background migrations"</h2>
            {if rows.is_empty() {
                view! { <p class="muted">"This version has no background migrations."</p> }.into_any()
            } else {
                view! {
                    <table class="data" data-testid="background-migrations">
                        <thead><tr>
                            <th>"Migration"</th><th>"Status"</th><th>"Progress"</th>
                            <th class="num">"Rate"</th><th class="num">"ETA"</th>
                            <th>"Heartbeat"</th><th class="num">"Attempts"</th><th>"Last error"</th>
                        </tr></thead>
                        <tbody>
                            {rows.into_iter().map(|m| migration_row(m, now)).collect_view()}
                        </tbody>
                    </table>
                }.into_any()
            }}
        </section>
    }
    .into_any()
}

fn schema_banner(schema: &SchemaStatus) -> AnyView {
    match &schema.problem {
        None => view! {
            <Banner tone=Tone::Ok test_id="schema-banner">{format!(
                "Schema at version {}, as this binary expects.", schema.applied
            )}</Banner>
        }
        .into_any(),
        Some(problem) => {
            let problem = problem.clone();
            view! { <Banner tone=Tone::Error test_id="schema-banner">{problem}</Banner> }.into_any()
        }
    }
}

fn migration_row(m: BackgroundMigrationRow, now: i64) -> AnyView {
    let percent = match m.progress_total {
        Some(total) if total > 0 => (m.progress_current as f64 / total as f64 * 100.0).min(100.0),
        Some(_) if m.status == super::MigrationStatus::Succeeded => 100.0,
        _ => 0.0,
    };
    let figures = match m.progress_total {
        Some(total) => format!(
            "{} of {} rows ({percent:.0} %)",
            group_digits(m.progress_current.max(0) as u64),
            group_digits(total.max(0) as u64)
        ),
        None => "not counted yet".to_owned(),
    };
    let label = format!("{}: {figures}", m.name);
    let rate = m
        .rate
        .map(|r| format!("{} rows/s", group_digits(r.round() as u64)))
        .unwrap_or_else(|| "—".to_owned());
    let eta = m
        .eta_s
        .map(|s| format_duration(s * 1000))
        .unwrap_or_else(|| "—".to_owned());
    let heartbeat = match (m.last_heartbeat_ms, m.heartbeat_age_s) {
        (Some(at), Some(_)) => format_ago(at, now),
        _ => "never".to_owned(),
    };
    let heartbeat_title = m.last_heartbeat_ms.map(format_utc).unwrap_or_default();
    let tone = match m.status {
        super::MigrationStatus::Succeeded => Tone::Ok,
        super::MigrationStatus::Running => Tone::Info,
        super::MigrationStatus::Failed => Tone::Error,
        super::MigrationStatus::Cancelled => Tone::Warn,
        _ => Tone::Neutral,
    };
    let who = match m.status {
        super::MigrationStatus::Paused | super::MigrationStatus::Cancelled => m
            .paused_by
            .clone()
            .map(|by| format!("by {by}: {}", m.paused_reason.clone().unwrap_or_default())),
        _ => None,
    };
    view! {
        <tr data-migration=m.name.clone()>
            <td>
                <strong class="mono">{m.name.clone()}</strong>
                {(!m.known).then(|| view! { <span class="badge badge-warn">"unknown to this binary"</span> })}
                <div class="muted small">{m.description.clone()}</div>
            </td>
            <td>
                <Badge tone label=m.status.as_str() />
                {m.stuck.then(|| view! { <span class="badge badge-error">"stuck"</span> })}
                {who.map(|w| view! { <div class="muted small">{w}</div> })}
            </td>
            <td class="progress-cell">
                <progress max="100" value=format!("{percent:.1}") aria-label=label></progress>
                <div class="small num">{figures}</div>
            </td>
            <td class="num">{rate}</td>
            <td class="num">{eta}</td>
            <td title=heartbeat_title>{heartbeat}</td>
            <td class="num">{m.attempts}</td>
            <td class="small">{m.last_error.clone().unwrap_or_else(|| "—".to_owned())}</td>
        </tr>
    }
    .into_any()
}

#[component]
fn ControlPanel(change: ServerAction<ChangeMigration>) -> AnyView {
    view! {
        <section class="panel form-panel wide">
            <h2>"Pause, resume, retry or cancel"</h2>
            <p class="muted small">"Pause stops a migration after its current chunk; Resume and Retry put it back in line from its saved cursor; Cancel stops it for good (chunks done stay done). Each is recorded in the history with your reason."</p>
            <ActionForm action=change attr:class="form-row" attr:aria-label="Change a background migration">
                <label class="field">
                    <span>"Migration"</span>
                    <select name="name" data-testid="migration-name">
                        {super::NAMES.iter().map(|n| view! { <option value=*n>{*n}</option> }).collect_view()}
                    </select>
                </label>
                <label class="field">
                    <span>"Action"</span>
                    <select name="action" data-testid="migration-action">
                        {MigrationAction::ALL.iter().map(|a| view! { <option value=a.as_str()>{a.label()}</option> }).collect_view()}
                    </select>
                </label>
                <ReasonField placeholder="the backfill slows the 09:00 peak" />
                <button type="submit" class="btn btn-primary" data-testid="change-migration">"Apply"</button>
            </ActionForm>
            {action_error(change.value())}
            {move || change.value().get().and_then(|r| r.ok()).map(|status| view! {
                <p class="muted small" role="status">{format!("Done: the migration is now {}.", status.as_str())}</p>
            })}
        </section>
    }
    .into_any()
}

#[component]
fn SchemaAndUpgrades(overview: MigrationsOverview) -> AnyView {
    let schema = overview.schema.clone();
    let upgrades = overview.upgrades.clone();
    view! {
        <section class="panel">
            <h2>"Schema migrations"</h2>
            <p class="muted small">{format!(
                "Applied: version {}. This binary expects: version {}.",
                schema.applied, schema.expected
            )}</p>
            <table class="data" data-testid="schema-migrations">
                <thead><tr><th class="num">"Version"</th><th>"Name"</th><th>"Applied"</th><th>"State"</th></tr></thead>
                <tbody>
                    {schema.migrations.into_iter().rev().map(|m| {
                        let (tone, word) = match (m.applied_at_ms.is_some(), m.expected, m.checksum_differs) {
                            (true, true, false) => (Tone::Ok, "applied"),
                            (true, true, true) => (Tone::Error, "changed since applied"),
                            (true, false, _) => (Tone::Warn, "unknown to this binary"),
                            (false, _, _) => (Tone::Error, "not applied"),
                        };
                        view! {
                            <tr>
                                <td class="num mono">{m.version}</td>
                                <td>{m.description.clone()}</td>
                                <td>{m.applied_at_ms.map(format_utc).unwrap_or_else(|| "—".to_owned())}</td>
                                <td><Badge tone label=word /></td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
        </section>
        <section class="panel">
            <h2>"Upgrades"</h2>
            <p class="muted small">"Every run of the schema migrations that applied something, with the PostgreSQL backup taken first. To undo an upgrade: stop every console, then `salvage migrate --rollback-to <backup id>` (README, Upgrading)."</p>
            {if upgrades.is_empty() {
                view! { <p class="muted">"No upgrade recorded yet."</p> }.into_any()
            } else {
                view! {
                    <table class="data" data-testid="upgrades">
                        <thead><tr><th>"When"</th><th class="num">"From"</th><th class="num">"To"</th><th class="num">"Migrations"</th><th>"Pre-upgrade backup"</th><th>"By"</th><th>"Binary"</th></tr></thead>
                        <tbody>{upgrades.into_iter().map(upgrade_row).collect_view()}</tbody>
                    </table>
                }.into_any()
            }}
        </section>
    }
    .into_any()
}

fn upgrade_row(u: Upgrade) -> AnyView {
    let backup = match (u.backup_id, u.backup_skipped.clone()) {
        (Some(id), _) => {
            view! { <a href="/admin/backups">{format!("PostgreSQL backup {id}")}</a> }.into_any()
        }
        (None, Some(why)) => {
            view! { <span class="muted">{format!("none: {why}")}</span> }.into_any()
        }
        (None, None) => view! { <span class="muted">"—"</span> }.into_any(),
    };
    view! {
        <tr>
            <td>{format_utc(u.started_at_ms)}</td>
            <td class="num mono">{u.from_version.map(|v| v.to_string()).unwrap_or_else(|| "—".to_owned())}</td>
            <td class="num mono">{u.to_version}</td>
            <td class="num">{u.applied.len()}</td>
            <td>{backup}</td>
            <td>{u.actor.clone()}</td>
            <td class="mono">{u.binary_version.clone()}</td>
        </tr>
    }
    .into_any()
}
