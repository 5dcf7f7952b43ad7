//! The point-in-time part of `/admin/backups`: PostgreSQL's recovery window as
//! pgBackRest's repository describes it, the archive's lag, the side clusters restores
//! left running (Stop: admins), and Restore to a time (admins). Everyone signed in reads.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::components::{
    action_error, action_result, Badge, Banner, ErrorBanner, ReasonField, Tone,
};
use crate::error::AppError;
use crate::format::{format_ago, format_bytes, format_duration, format_utc_secs};

/// One base backup in the repository.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BaseBackup {
    pub label: String,
    pub kind: String,
    pub stopped_ms: i64,
    pub repo_bytes: i64,
}

/// A side cluster a restore left running.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SideView {
    pub port: u16,
    pub started_ms: i64,
    /// `latest`, the moment asked for, or `unfinished` (its restore died before it
    /// recovered).
    pub to: String,
    pub reached_ms: Option<i64>,
    pub by: String,
    pub running: bool,
}

/// What the panel shows. `None` window: pgBackRest is not set up.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PitrOverview {
    pub now_ms: i64,
    pub configured: bool,
    /// The repository could not be read: what pgBackRest said.
    pub error: Option<String>,
    pub oldest_ms: Option<i64>,
    pub newest_ms: Option<i64>,
    pub archived_ms: Option<i64>,
    pub lag_secs: Option<i64>,
    /// The lag past which `wal_archive_lag` is raised (3 × `archive_timeout`).
    pub lag_limit_secs: i64,
    pub failed_count: i64,
    pub last_failed_ms: Option<i64>,
    pub status: String,
    pub backups: Vec<BaseBackup>,
    pub sides: Vec<SideView>,
    /// A point-in-time restore that is running, by run id.
    pub running_run: Option<i64>,
}

/// How long the page waits for `pgbackrest info` before it says the repository is slow.
#[cfg(feature = "ssr")]
const REPOSITORY_READ: std::time::Duration = std::time::Duration::from_secs(10);

/// The window, the archive's lag and the side clusters.
#[server(endpoint = "backups/pitr")]
pub async fn load_pitr() -> Result<PitrOverview, AppError> {
    crate::auth::ssr::serve(crate::auth::Permission::Read, |state, _| async move {
        use super::ssr::pitr::{sides, window};
        let now = state.clock.now();
        let running_run =
            crate::jobs::ssr::records::working(&state.pg, Some(super::PITR_RESTORE_JOB), now)
                .await
                .map_err(|e| AppError::internal("Read the running restores", e))?
                .last()
                .map(|(_, id)| *id);
        let mut overview = PitrOverview {
            now_ms: crate::server::unix_ms(now),
            configured: false,
            error: None,
            oldest_ms: None,
            newest_ms: None,
            archived_ms: None,
            lag_secs: None,
            lag_limit_secs: 0,
            failed_count: 0,
            last_failed_ms: None,
            status: String::new(),
            backups: Vec::new(),
            sides: Vec::new(),
            running_run,
        };
        let Some(pitr) = state.backups().pitr.clone() else {
            return Ok(overview);
        };
        overview.configured = true;
        overview.lag_limit_secs = (pitr.archive_timeout * 3).as_secs() as i64;
        overview.sides = sides::list(&pitr)
            .into_iter()
            .map(|side| SideView {
                port: side.port,
                started_ms: side.started_ms,
                to: side
                    .record
                    .as_ref()
                    .map_or("unfinished".into(), |r| r.to.clone()),
                reached_ms: side.record.as_ref().and_then(|r| r.reached_ms),
                by: side.record.map_or("-".into(), |r| r.by),
                running: side.running,
            })
            .collect();
        // A repository that is slow to answer (a bucket far away, a busy host) is said
        // on the panel; it never holds the page past the console's store deadline.
        let read = tokio::time::timeout(REPOSITORY_READ, window(&pitr, &state.pg, now)).await;
        let read = read.unwrap_or_else(|_| {
            Err(super::ssr::BackupError::tool(format!(
                "pgBackRest's repository did not answer within {} s: try again",
                REPOSITORY_READ.as_secs()
            )))
        });
        match read {
            Ok(w) => {
                overview.oldest_ms = w.oldest_ms;
                overview.newest_ms = w.newest_ms;
                overview.archived_ms = w.archived_ms;
                overview.lag_secs = w.lag_secs;
                overview.failed_count = w.failed_count;
                overview.last_failed_ms = w.last_failed_ms;
                overview.status = w.status;
                overview.backups = w
                    .backups
                    .into_iter()
                    .map(|b| BaseBackup {
                        label: b.label,
                        kind: b.kind,
                        stopped_ms: b.stopped_ms,
                        repo_bytes: b.repo_bytes,
                    })
                    .collect();
            }
            Err(error) => overview.error = Some(error.to_string()),
        }
        Ok(overview)
    })
    .await
}

/// Starts a restore of PostgreSQL to `to` (`latest` or RFC 3339) into a side cluster, as
/// a run of the `pitr-restore` job; the job's check names a wrong field before anything
/// is recorded.
#[server(endpoint = "backups/pitr-restore")]
pub async fn start_pitr_restore(to: String, port: String, reason: String) -> Result<i64, AppError> {
    crate::auth::ssr::serve(
        crate::auth::Permission::Administer,
        |state, actor| async move {
            let reason = crate::server::required_reason(&reason)?;
            let port = match port.trim() {
                "" => None,
                port => Some(port.parse::<u16>().map_err(|_| {
                    AppError::invalid("port", "a port is a number from 1024 to 65535")
                })?),
            };
            let request = super::ssr::pitr::restore::PitrRestoreRequest {
                to,
                port,
                reason: Some(reason.clone()),
            };
            let input = serde_json::to_value(&request)
                .map_err(|e| AppError::internal("Read the restore request", e.to_string()))?;
            let caller = crate::jobs::api::request_caller(&state)?;
            crate::jobs::ssr::start_by_hand(
                &state,
                super::PITR_RESTORE_JOB,
                actor,
                reason,
                caller,
                input,
            )
            .await
        },
    )
    .await
}

/// Stops the side cluster on `port` and deletes it.
#[server(endpoint = "backups/side-stop")]
pub async fn stop_side(port: u16, reason: String) -> Result<(), AppError> {
    crate::auth::ssr::serve(
        crate::auth::Permission::Administer,
        |state, actor| async move {
            let reason = crate::server::required_reason(&reason)?;
            super::ssr::pitr::sides::stop(&state, port, &actor, Some(reason))
                .await
                .map(drop)
        },
    )
    .await
}

/// The panel: its own resource, refreshed with the page.
#[component]
pub fn PitrPanel(tick: ReadSignal<u64>, administer: bool) -> AnyView {
    let restore = ServerAction::<StartPitrRestore>::new();
    let stop = ServerAction::<StopSide>::new();
    let cancel = ServerAction::<crate::jobs::api::CancelRun>::new();
    let overview = Resource::new(
        move || {
            (
                tick.get(),
                restore.version().get(),
                stop.version().get(),
                cancel.version().get(),
            )
        },
        |_| load_pitr(),
    );
    view! {
        <Transition fallback=|| view! { <p class="muted" role="status">"Reading the WAL archive…"</p> }>
            {move || Suspend::new(async move {
                match overview.await {
                    Ok(o) => view! { <Window o administer stop cancel /> }.into_any(),
                    Err(error) => view! { <ErrorBanner error /> }.into_any(),
                }
            })}
        </Transition>
        {action_error(stop.value())}
        {action_error(cancel.value())}
        {administer.then(|| view! { <RestoreToTime restore /> })}
    }
    .into_any()
}

fn lag_tone(o: &PitrOverview) -> (Tone, &'static str) {
    let failing = o
        .last_failed_ms
        .is_some_and(|f| o.archived_ms.is_none_or(|a| f > a));
    match o.lag_secs {
        _ if failing => (Tone::Error, "failing"),
        None => (Tone::Error, "nothing archived"),
        Some(lag) if lag > o.lag_limit_secs => (Tone::Warn, "behind"),
        Some(_) => (Tone::Ok, "archiving"),
    }
}

#[component]
fn Window(
    o: PitrOverview,
    administer: bool,
    stop: ServerAction<StopSide>,
    cancel: ServerAction<crate::jobs::api::CancelRun>,
) -> AnyView {
    if !o.configured {
        return view! {
            <section class="panel" data-testid="pitr">
                <h2>"Point-in-time recovery (PostgreSQL)"</h2>
                <p class="muted">"Off: PostgreSQL can be restored only to its last dump. Set SALVAGE_PGBACKREST_CONFIG to archive its WAL through pgBackRest (README, Point-in-time recovery)."</p>
            </section>
        }
        .into_any();
    }
    let now = o.now_ms;
    let (tone, word) = lag_tone(&o);
    let time = |ms: Option<i64>| ms.map(format_utc_secs).unwrap_or_else(|| "—".into());
    let lag = o
        .lag_secs
        .map(|s| format_duration(s * 1000))
        .unwrap_or_else(|| "—".into());
    let newest_backup = o.backups.last().cloned();
    view! {
        <section class="panel" data-testid="pitr">
            <h2>"Point-in-time recovery (PostgreSQL)"</h2>
            {o.running_run.map(|run| view! {
                <Banner tone=Tone::Info>
                    {format!("Point-in-time restore run #{run} is running. ")}
                    {administer.then(|| view! {
                        <button type="button" class="btn btn-small" on:click=move |_| { cancel.dispatch(crate::jobs::api::CancelRun { run_id: run }); }>"Cancel"</button>
                    })}
                </Banner>
            })}
            {o.error.clone().map(|e| view! { <Banner tone=Tone::Error>{format!("The repository could not be read: {e}")}</Banner> })}
            <dl class="facts" data-testid="pitr-window">
                <dt>"Archive"</dt>
                <dd><Badge tone label=word />{format!(" last segment {} ({} behind; alert past {})", time(o.archived_ms), lag, format_duration(o.lag_limit_secs * 1000))}</dd>
                <dt>"Restorable from"</dt>
                <dd class="num">{time(o.oldest_ms)}</dd>
                <dt>"Restorable to"</dt>
                <dd class="num">{time(o.newest_ms)}</dd>
                <dt>"Base backups"</dt>
                <dd>{match newest_backup {
                    Some(b) => format!("{} in the repository; newest {} {} ({}, {})", o.backups.len(), b.kind, b.label, format_ago(b.stopped_ms, now), format_bytes(b.repo_bytes)),
                    None => format!("none yet ({}): a restore needs one; the pitr-backup job takes one hourly", o.status),
                }}</dd>
                {(o.failed_count > 0).then(|| view! {
                    <dt>"Failed attempts"</dt>
                    <dd class="num">{format!("{} since the statistics were reset, last {}", o.failed_count, time(o.last_failed_ms))}</dd>
                })}
            </dl>
            {(!o.sides.is_empty()).then(|| view! {
                <h3>"Side clusters"</h3>
                <table class="data" data-testid="sides">
                    <thead><tr>
                        <th scope="col" class="num">"Port"</th>
                        <th scope="col">"State"</th>
                        <th scope="col">"Restored to"</th>
                        <th scope="col">"Reached"</th>
                        <th scope="col">"Started"</th>
                        <th scope="col">"By"</th>
                        <th scope="col"><span class="visually-hidden">"Actions"</span></th>
                    </tr></thead>
                    <tbody>
                        {o.sides.into_iter().map(|s| view! { <SideRow s now administer stop /> }).collect_view()}
                    </tbody>
                </table>
                <p class="muted small">"Connect with psql on the port shown (same roles as the live cluster). The janitor stops a side cluster a day after it started."</p>
            })}
        </section>
    }
    .into_any()
}

#[component]
fn SideRow(s: SideView, now: i64, administer: bool, stop: ServerAction<StopSide>) -> AnyView {
    let port = s.port;
    let to = match s.to.parse::<i64>() {
        Ok(ms) => format_utc_secs(ms),
        Err(_) => s.to.clone(),
    };
    let reason = RwSignal::new(String::new());
    view! {
        <tr data-testid=format!("side-{port}")>
            <td class="num">{port}</td>
            <td><Badge tone=if s.running { Tone::Ok } else { Tone::Warn } label=if s.running { "running" } else { "stopped" } /></td>
            <td>{to}</td>
            <td class="num">{s.reached_ms.map(format_utc_secs).unwrap_or_else(|| "—".into())}</td>
            <td title=format_utc_secs(s.started_ms)>{format_ago(s.started_ms, now)}</td>
            <td>{crate::alerts::actor_name(&s.by)}</td>
            <td class="actions">
                {administer.then(|| view! {
                    <input type="text" class="input-small" aria-label=format!("Reason to stop the side cluster on {port}") placeholder="Reason" prop:value=move || reason.get() on:input=move |ev| reason.set(event_target_value(&ev)) />
                    <button type="button" class="btn btn-small" on:click=move |_| { stop.dispatch(StopSide { port, reason: reason.get_untracked() }); }>"Stop"</button>
                })}
            </td>
        </tr>
    }
    .into_any()
}

#[component]
fn RestoreToTime(restore: ServerAction<StartPitrRestore>) -> AnyView {
    view! {
        <section class="panel form-panel wide" data-testid="pitr-restore">
            <h2>"Restore PostgreSQL to a moment"</h2>
            <p class="muted small">"pgBackRest restores the repository into a new directory, a PostgreSQL on another port replays the archived WAL up to the moment and is promoted; Salvage counts every table, walks the history chain and checks the schema there. The live cluster is not touched."</p>
            <ActionForm action=restore attr:class="form-row" attr:aria-label="Restore PostgreSQL to a moment">
                <label class="field">
                    <span>"To: latest, or a UTC moment"</span>
                    <input type="text" name="to" value="latest" placeholder="2026-12-07T03:00:00Z" required autocomplete="off" />
                </label>
                <label class="field">
                    <span>"Port (empty: free)"</span>
                    <input type="text" name="port" class="input-small" inputmode="numeric" pattern="[0-9]*" autocomplete="off" />
                </label>
                <ReasonField placeholder="Look at the orders before the bad deploy" />
                <button type="submit" class="btn btn-primary" data-testid="pitr-restore-start">"Restore to a side cluster"</button>
            </ActionForm>
            {action_result(restore.value(), |id| format!("Point-in-time restore run #{id} started; the side clusters above list it once it has recovered."))}
        </section>
    }
    .into_any()
}
