//! `/admin/backups`: each store's recovery point against its objective, the catalogue,
//! Backup now and Verify (operators and admins), restores and Roll back (admins).

use std::time::Duration;

use leptos::prelude::*;
use leptos_meta::Title;

use super::api::{load_backups, load_restore_plan, RollBackRestore, StartRestore, VerifyBackup};
use super::{
    Backup, BackupStatus, BackupsOverview, Restore, RestoreMode, RestorePlan, RestoreStatus,
    StoreKind, StoreSummary,
};
use crate::auth::viewer::use_viewer;
use crate::auth::Permission;
use crate::components::ReasonField;
use crate::components::{
    action_error, action_result, time_bars, Badge, Banner, ChartFrame, ErrorBanner, PageHeader,
    Tone,
};
use crate::format::{
    format_ago, format_bytes, format_duration, format_maybe_duration, format_utc, group_digits,
};
use crate::jobs::JobPanel;

/// How often the page asks for fresh figures (a backup or restore in progress).
pub const REFRESH_EVERY: Duration = Duration::from_secs(3);

fn count(n: i64) -> String {
    group_digits(n.max(0) as u64)
}

fn backup_tone(status: BackupStatus) -> Tone {
    match status {
        BackupStatus::Verified => Tone::Ok,
        BackupStatus::Completed | BackupStatus::Running => Tone::Info,
        BackupStatus::Failed | BackupStatus::VerifyFailed => Tone::Error,
    }
}

fn restore_tone(status: RestoreStatus) -> Tone {
    match status {
        RestoreStatus::Verified => Tone::Ok,
        RestoreStatus::Running => Tone::Info,
        RestoreStatus::Cancelled | RestoreStatus::RolledBack => Tone::Warn,
        RestoreStatus::Failed | RestoreStatus::VerifyFailed => Tone::Error,
    }
}

/// `/admin/backups`.
#[component]
pub fn BackupsPage() -> AnyView {
    let tick = crate::components::refresh_ticker(REFRESH_EVERY);
    let backup = ServerAction::<crate::jobs::api::StartJob>::new();
    let sync = ServerAction::<crate::jobs::api::StartJob>::new();
    let verify = ServerAction::<VerifyBackup>::new();
    let restore = ServerAction::<StartRestore>::new();
    let cancel = ServerAction::<crate::jobs::api::CancelRun>::new();
    let roll_back = ServerAction::<RollBackRestore>::new();
    let overview = Resource::new(
        move || {
            (
                tick.get(),
                backup.version().get(),
                sync.version().get(),
                verify.version().get(),
                restore.version().get(),
                cancel.version().get(),
                roll_back.version().get(),
            )
        },
        |_| load_backups(),
    );
    // The backup chosen for a restore; its plan is read when one is chosen.
    let chosen = RwSignal::new(None::<i64>);
    let plan = Resource::new(
        move || chosen.get(),
        |id| async move {
            match id {
                Some(id) => load_restore_plan(id).await.map(Some),
                None => Ok(None),
            }
        },
    );
    let viewer = use_viewer();
    view! {
        <Title text="Backups" />
        <PageHeader
            title="Backups"
            subtitle="Backups of PostgreSQL and ClickHouse, each verified against its manifest, and restores into a side database or in place. Refreshes every 3 s."
        />
        // Outside the refreshing parts, so what is typed survives each refresh.
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                let operate = match viewer {
                    Some(viewer) => viewer.await.is_ok_and(|v| v.role.can(Permission::Operate)),
                    None => false,
                };
                operate.then(|| view! { <BackupPanel backup sync /> })
            })}
        </Transition>
        <Transition fallback=|| view! { <p class="muted" role="status">"Reading the catalogue…"</p> }>
            {move || Suspend::new(async move {
                let role = match viewer {
                    Some(viewer) => viewer.await.ok().map(|v| v.role),
                    None => None,
                };
                let operate = role.is_some_and(|r| r.can(Permission::Operate));
                let administer = role.is_some_and(|r| r.can(Permission::Administer));
                match overview.await {
                    Ok(overview) => view! {
                        <BackupsNow overview operate administer verify chosen cancel roll_back />
                    }.into_any(),
                    Err(error) => view! { <ErrorBanner error /> }.into_any(),
                }
            })}
        </Transition>
        {action_error(verify.value())}
        {action_error(cancel.value())}
        {action_error(roll_back.value())}
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                // Signed-in callers only: the sign-in redirect answers everyone else.
                let role = match viewer {
                    Some(viewer) => viewer.await.ok().map(|v| v.role),
                    None => None,
                };
                role.map(|role| {
                    let administer = role.can(Permission::Administer);
                    view! { <super::pitr::PitrPanel tick administer /> }
                })
            })}
        </Transition>
        // The restore form, below the catalogue it was opened from.
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                let administer = match viewer {
                    Some(viewer) => viewer.await.is_ok_and(|v| v.role.can(Permission::Administer)),
                    None => false,
                };
                let plan = plan.await;
                view! {
                    {administer.then(|| match plan {
                        Ok(Some(plan)) => view! { <RestorePanel plan restore chosen /> }.into_any(),
                        Ok(None) => ().into_any(),
                        Err(error) => view! { <ErrorBanner error /> }.into_any(),
                    })}
                }
                .into_any()
            })}
        </Transition>
    }
    .into_any()
}

/// Backup now and Sync, each with its reason.
#[component]
fn BackupPanel(
    backup: ServerAction<crate::jobs::api::StartJob>,
    sync: ServerAction<crate::jobs::api::StartJob>,
) -> AnyView {
    view! {
        <div class="chart-pair">
            <JobPanel
                action=backup
                job=super::BACKUP_JOB
                title="Back up both stores now"
                about="Backs up both stores now, whatever their schedules: PostgreSQL (pg_dump in one snapshot, with its row counts), then ClickHouse (every table, one file per partition), each verified after, then retention."
                placeholder="Before the schema change"
                button="Back up now"
                test_id="backup-now"
                run_of="Backup"
                follow="the catalogue shows it below."
            />
            <JobPanel
                action=sync
                job=super::BACKUP_SYNC_JOB
                title="Sync the catalogue with the repository"
                about="Reads every backup's signed manifest in the repository: adds the backups the catalogue lacks (after a database restored from an older dump), marks as gone those whose files are not there, and names any manifest that does not verify."
                placeholder="After restoring the database"
                button="Sync now"
                test_id="backup-sync"
                run_of="Sync"
                follow="the catalogue shows the result below."
            />
        </div>
    }
    .into_any()
}

/// The freezes, the stores, the restores and the catalogue.
#[component]
fn BackupsNow(
    overview: BackupsOverview,
    operate: bool,
    administer: bool,
    verify: ServerAction<VerifyBackup>,
    chosen: RwSignal<Option<i64>>,
    cancel: ServerAction<crate::jobs::api::CancelRun>,
    roll_back: ServerAction<RollBackRestore>,
) -> AnyView {
    let BackupsOverview {
        now_ms,
        stores,
        backups,
        restores,
        target,
        running_run,
        last_synced_ms,
    } = overview;
    let synced = match last_synced_ms {
        Some(at) => format!(
            "Last synced with the repository {}.",
            crate::format::format_ago(at, now_ms)
        ),
        None => "Never synced with the repository.".to_owned(),
    };
    view! {
        {running_run.map(|run| view! {
            <Banner tone=Tone::Info>{format!("Backup run #{run} is running.")}</Banner>
        })}
        <div class="chart-pair">
            {stores.into_iter().map(|s| view! { <StoreCard s now_ms /> }).collect_view()}
        </div>
        <section class="panel">
            <h2>"Restores"</h2>
            {if restores.is_empty() {
                view! { <p class="muted">"No restore yet. Restore a backup below to look at it in a side database before touching live data."</p> }.into_any()
            } else {
                view! {
                    <table class="data">
                        <thead><tr>
                            <th scope="col" class="num">"Restore"</th>
                            <th scope="col" class="num">"Backup"</th>
                            <th scope="col">"Store"</th>
                            <th scope="col">"Into"</th>
                            <th scope="col">"Status"</th>
                            <th scope="col" class="num">"Rows"</th>
                            <th scope="col" class="num">"Took"</th>
                            <th scope="col">"Started"</th>
                            <th scope="col">"By"</th>
                            <th scope="col"><span class="visually-hidden">"Actions"</span></th>
                        </tr></thead>
                        <tbody>
                            {restores.into_iter().map(|r| view! { <RestoreRow r now_ms administer cancel roll_back /> }).collect_view()}
                        </tbody>
                    </table>
                }.into_any()
            }}
        </section>
        <section class="panel">
            <h2>"Catalogue"</h2>
            <p class="muted small">{format!("Kept in {target}; each store keeps its newest complete backups (the number under its chart; never the newest verified one). {synced} Newest first.")}</p>
            {if backups.is_empty() {
                view! { <p class="muted">"No backup yet. Each store is backed up at its times (under its chart), or back up now."</p> }.into_any()
            } else {
                view! {
                    <table class="data backups">
                        <thead><tr>
                            <th scope="col" class="num">"Backup"</th>
                            <th scope="col">"Store"</th>
                            <th scope="col">"Status"</th>
                            <th scope="col">"Started"</th>
                            <th scope="col" class="num">"Took"</th>
                            <th scope="col" class="num">"Size"</th>
                            <th scope="col" class="num">"Rows"</th>
                            <th scope="col">"Verified"</th>
                            <th scope="col">"By"</th>
                            <th scope="col"><span class="visually-hidden">"Actions"</span></th>
                        </tr></thead>
                        <tbody>
                            {backups.into_iter().map(|b| view! { <BackupRow b now_ms operate administer verify chosen /> }).collect_view()}
                        </tbody>
                    </table>
                }.into_any()
            }}
        </section>
    }
    .into_any()
}

/// One store: the newest backup's age against the objective, sizes over 30 days.
#[component]
fn StoreCard(s: StoreSummary, now_ms: i64) -> AnyView {
    let rpo_ms = s.rpo_hours * 3_600_000;
    let (tone, word, line) = match s.latest_ms {
        None => (Tone::Error, "no backup", "Never backed up.".to_owned()),
        Some(at) if now_ms - at > rpo_ms => (
            Tone::Error,
            "stale",
            format!(
                "Newest backup {} — older than the {} h objective.",
                format_ago(at, now_ms),
                s.rpo_hours
            ),
        ),
        Some(at) => (
            Tone::Ok,
            "within objective",
            format!(
                "Newest backup {} (objective {} h).",
                format_ago(at, now_ms),
                s.rpo_hours
            ),
        ),
    };
    let biggest = s
        .sizes
        .iter()
        .map(|(_, size, _)| *size)
        .max()
        .unwrap_or(0)
        .max(1);
    // Each backup at its time on a 30-day axis ending now.
    let bars: Vec<(i64, i64)> = s.sizes.iter().map(|(at, size, _)| (*at, *size)).collect();
    let summary = format!(
        "{} backup sizes over 30 days: {} backups, the largest {}",
        s.store.label(),
        s.sizes.len(),
        format_bytes(biggest)
    );
    let longest = s.sizes.iter().map(|(_, _, ms)| *ms).max().unwrap_or(0);
    view! {
        <div data-testid=format!("store-{}", s.store.as_str())>
            <ChartFrame
                caption=view! {
                    <strong>{s.store.label()}</strong>
                    <Badge tone label=word />
                    <span class="muted">{line}</span>
                }.into_any()
                summary
                y_top=format_bytes(biggest)
                x_from="30 days ago"
            >
                {time_bars(&bars, now_ms, 30 * 86_400_000, 90.0, biggest)}
            </ChartFrame>
            <p class="muted small chart-note" data-testid=format!("schedule-{}", s.store.as_str())>
                {format!(
                    "Backed up {}{}; the newest {} kept. Sizes over 30 days; the longest took {}.",
                    s.schedule,
                    s.next_ms.map(|at| format!(" (next {})", format_utc(at))).unwrap_or_default(),
                    s.keep,
                    format_duration(longest)
                )}
            </p>
            {s.gap_over_rpo.then(|| view! {
                <Banner tone=Tone::Warn>{format!(
                    "{}'s schedule leaves gaps longer than its {} h objective: between two backups it is out of objective. Back it up more often ({}) or raise the RPO.",
                    s.store.label(),
                    s.rpo_hours,
                    match s.store { StoreKind::Postgres => "SALVAGE_BACKUP_SCHEDULE_POSTGRES", StoreKind::Clickhouse => "SALVAGE_BACKUP_SCHEDULE_CLICKHOUSE" }
                )}</Banner>
            })}
        </div>
    }
    .into_any()
}

#[component]
fn BackupRow(
    b: Backup,
    now_ms: i64,
    operate: bool,
    administer: bool,
    verify: ServerAction<VerifyBackup>,
    chosen: RwSignal<Option<i64>>,
) -> AnyView {
    let id = b.id;
    let restorable = b.status.is_complete() && !b.deleted;
    let status = if b.deleted {
        view! { <Badge tone=Tone::Neutral label="deleted" /> }.into_any()
    } else {
        view! { <Badge tone=backup_tone(b.status) label=b.status.label() /> }.into_any()
    };
    let problem = b.error.clone().or(b.verify_error.clone());
    let verified = match (b.verified_ms, &b.verified_by) {
        (Some(at), Some(by)) => format!(
            "{} by {}",
            format_ago(at, now_ms),
            crate::alerts::actor_name(by)
        ),
        _ => "—".to_owned(),
    };
    view! {
        <tr data-testid=format!("backup-{id}")>
            <td class="num">{id}</td>
            <td>{b.store.label()}</td>
            <td>{status}{problem.map(|p| view! { <div class="small error-text">{p}</div> })}</td>
            <td title=format_utc(b.started_ms)>{format_ago(b.started_ms, now_ms)}</td>
            <td class="num">{format_maybe_duration(b.duration_ms)}</td>
            <td class="num">{format_bytes(b.size_bytes)}</td>
            <td class="num">{count(b.rows)}{b.queued_rows.filter(|q| *q > 0 && b.store == super::StoreKind::Clickhouse).map(|q| view! {
                <div class="small muted">{format!("+{} queued, not in it", count(q))}</div>
            })}</td>
            <td>{verified}</td>
            <td>{format!("{} · {}", crate::alerts::actor_name(&b.actor), b.trigger)}</td>
            <td class="actions">
                {(operate && restorable).then(|| view! {
                    <button type="button" class="btn btn-small" on:click=move |_| { verify.dispatch(VerifyBackup { id }); }>"Verify"</button>
                })}
                {(administer && restorable).then(|| view! {
                    <button type="button" class="btn btn-small" on:click=move |_| chosen.set(Some(id))>"Restore…"</button>
                })}
            </td>
        </tr>
    }
    .into_any()
}

#[component]
fn RestoreRow(
    r: Restore,
    now_ms: i64,
    administer: bool,
    cancel: ServerAction<crate::jobs::api::CancelRun>,
    roll_back: ServerAction<RollBackRestore>,
) -> AnyView {
    let id = r.id;
    let into = match r.mode {
        RestoreMode::Side => format!("side database {}", r.target),
        RestoreMode::InPlace => format!("{} (in place)", r.target),
    };
    let tables = if r.tables.len() > 4 {
        format!("{} tables", r.tables.len())
    } else {
        r.tables.join(", ")
    };
    // Bytes read of the backup's files, the rate so far and the time left at it.
    let progress = (r.status == RestoreStatus::Running && r.total_bytes > 0).then(|| {
        let secs = ((now_ms - r.started_ms) as f64 / 1000.0).max(0.001);
        let rate = r.progress_bytes as f64 / secs;
        let eta = match rate > 0.0 {
            true => format_duration(
                (((r.total_bytes - r.progress_bytes) as f64 / rate) * 1000.0) as i64,
            ),
            false => "—".to_owned(),
        };
        format!(
            "{} of {} · {}/s · {} left",
            format_bytes(r.progress_bytes),
            format_bytes(r.total_bytes),
            format_bytes(rate as i64),
            eta
        )
    });
    view! {
        <tr data-testid=format!("restore-{id}")>
            <td class="num">{id}</td>
            <td class="num">{r.backup_id}</td>
            <td>{r.store.label()}</td>
            <td>{into}<div class="small muted" title=r.tables.join(", ")>{tables}</div></td>
            <td>
                <Badge tone=restore_tone(r.status) label=r.status.label() />
                {progress.map(|p| view! { <div class="small muted">{p}</div> })}
                {r.error.map(|e| view! { <div class="small error-text">{e}</div> })}
            </td>
            <td class="num">{count(r.rows)}</td>
            <td class="num">{format_maybe_duration(r.duration_ms)}</td>
            <td title=format_utc(r.started_ms)>{format_ago(r.started_ms, now_ms)}</td>
            <td>{crate::alerts::actor_name(&r.actor)}</td>
            <td class="actions">
                {(administer && r.status == RestoreStatus::Running).then_some(r.run_id).flatten().map(|run_id| view! {
                    <button type="button" class="btn btn-small" on:click=move |_| { cancel.dispatch(crate::jobs::api::CancelRun { run_id }); }>"Cancel"</button>
                })}
                {(administer && r.can_roll_back).then(|| view! {
                    <ActionForm action=roll_back attr:class="inline-form" attr:aria-label=format!("Roll back restore {id}")>
                        <input type="hidden" name="id" value=id />
                        <input type="text" name="reason" required maxlength="500" placeholder="Why roll back" aria-label="Reason for the rollback" />
                        <button type="submit" class="btn btn-small btn-danger">"Roll back"</button>
                    </ActionForm>
                })}
            </td>
        </tr>
    }
    .into_any()
}

/// The restore form for the chosen backup: a side database by default; in place behind
/// the typed name of the live database.
#[component]
fn RestorePanel(
    plan: RestorePlan,
    restore: ServerAction<StartRestore>,
    chosen: RwSignal<Option<i64>>,
) -> AnyView {
    let RestorePlan {
        backup,
        tables,
        live_database,
        side_database,
    } = plan;
    let in_place = RwSignal::new(false);
    let own: Vec<String> = tables
        .iter()
        .filter(|t| t.own)
        .map(|t| t.name.clone())
        .collect();
    let application: Vec<String> = tables
        .iter()
        .filter(|t| !t.own)
        .map(|t| t.name.clone())
        .collect();
    let live = live_database.clone();
    let in_place_warning = format!(
        "Restored: {}. Never rolled back by an in-place restore (Salvage's own, restore them into a side database to look at them): {}.",
        if application.is_empty() { "none".to_owned() } else { application.join(", ") },
        if own.is_empty() { "none".to_owned() } else { own.join(", ") }
    );
    view! {
        <section class="panel form-panel wide" data-testid="restore-panel">
            <h2>{format!("Restore {} backup {}", backup.store.label(), backup.id)}</h2>
            <p class="muted small">{format!(
                "Taken {}, {} rows in {} tables. After the restore, every table's rows and schema are checked against the manifest.",
                format_utc(backup.started_ms), count(backup.rows), backup.tables
            )}</p>
            <ActionForm action=restore attr:class="form-grid" attr:aria-label="Restore a backup">
                <input type="hidden" name="backup_id" value=backup.id />
                <fieldset class="field">
                    <legend>"Into"</legend>
                    <label class="radio">
                        <input type="radio" name="mode" value="side" checked on:change=move |_| in_place.set(false) />
                        " a side database (live data untouched)"
                    </label>
                    <label class="radio">
                        <input type="radio" name="mode" value="in_place" on:change=move |_| in_place.set(true) />
                        {format!(" {live_database} in place (application tables only; the live tables are kept aside for a rollback)")}
                    </label>
                </fieldset>
                <label class="field">
                    <span>"Side database name"</span>
                    <input type="text" name="target" value=side_database.clone() maxlength="63" pattern="[a-z_][a-z0-9_]*" />
                </label>
                <label class="field">
                    <span>"Tables (comma-separated; empty: all the mode allows)"</span>
                    <input type="text" name="tables" placeholder=application.join(", ") />
                </label>
                <Show when=move || in_place.get()>
                    {let warning = in_place_warning.clone();
                    view! {
                        <Banner tone=Tone::Warn>
                            <strong>"In place replaces live data. "</strong>
                            {warning}
                            " While it runs, the store is frozen: replay and expiry wait, ingest parks rows in the fallback queue."
                        </Banner>
                    }}
                </Show>
                <label class="field">
                    <span>{move || if in_place.get() { format!("Type {live} to confirm") } else { "Confirmation (in place only)".to_owned() }}</span>
                    <input type="text" name="confirm" autocomplete="off" />
                </label>
                <label class="field checkbox">
                    <input type="checkbox" name="confirm_incident" />
                    <span>"During an incident freeze: I confirm the incident and restore in place anyway"</span>
                </label>
                <ReasonField placeholder="Check the data before the incident" />
                <div class="form-actions">
                    <button type="submit" class="btn btn-primary" data-testid="restore">"Restore"</button>
                    <button type="button" class="btn" on:click=move |_| chosen.set(None)>"Close"</button>
                </div>
            </ActionForm>
            {action_result(restore.value(), |id| format!("Restore run #{id} started; the restores table follows it."))}
        </section>
    }
    .into_any()
}
