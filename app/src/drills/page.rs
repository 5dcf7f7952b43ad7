//! `/admin/drills`, the managers' page: the recovery objectives against what drills and
//! backups measured, the recovery time over time, what is due, Run drill now (operators
//! and admins) with its live steps, Log tabletop, and the drill history with its export.

use std::time::Duration;

use leptos::prelude::*;
use leptos_meta::Title;

use super::api::{load_drills, LogTabletop, SetObjectives};
use super::{Drill, DrillKind, DrillStatus, DrillsOverview, Due, Objective};
use crate::auth::viewer::use_viewer;
use crate::auth::Permission;
use crate::components::ReasonField;
use crate::components::{
    action_error, action_result, Badge, ChartFrame, Column, DataTable, ErrorBanner, PageHeader,
    Tone, CHART_H, CHART_W,
};
use crate::format::{format_ago, format_duration, format_utc, group_digits};
use crate::jobs::api::{CancelRun, StartJob};
use crate::jobs::JobPanel;

/// How often the page asks for fresh figures (a drill in progress).
pub const REFRESH_EVERY: Duration = Duration::from_secs(3);

fn status_tone(drill: &Drill) -> (Tone, &'static str) {
    match (drill.kind, drill.status) {
        (DrillKind::Tabletop, _) => (Tone::Info, "held"),
        (_, DrillStatus::Passed) => (Tone::Ok, "passed"),
        (_, DrillStatus::Running) => (Tone::Info, "running"),
        (_, DrillStatus::Cancelled) => (Tone::Warn, "cancelled"),
        (_, DrillStatus::Failed) => (Tone::Error, "failed"),
    }
}

fn hours(secs: i64) -> String {
    if secs % 3600 == 0 {
        format!("{} h", secs / 3600)
    } else {
        format_duration(secs * 1000)
    }
}

/// `/admin/drills`.
#[component]
pub fn DrillsPage() -> AnyView {
    let tick = crate::components::refresh_ticker(REFRESH_EVERY);
    let start = ServerAction::<StartJob>::new();
    let cancel = ServerAction::<CancelRun>::new();
    let tabletop = ServerAction::<LogTabletop>::new();
    let objectives = ServerAction::<SetObjectives>::new();
    let overview = Resource::new(
        move || {
            (
                tick.get(),
                start.version().get(),
                cancel.version().get(),
                tabletop.version().get(),
                objectives.version().get(),
            )
        },
        |_| load_drills(),
    );
    let viewer = use_viewer();
    view! {
        <Title text="Drills" />
        <PageHeader
            title="Drills"
            subtitle="Restore drills prove the backups restore and measure the recovery time. Refreshes every 3 s."
        />
        // Forms outside the refreshing parts, so what is typed survives each refresh.
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                let role = match viewer {
                    Some(viewer) => viewer.await.ok().map(|v| v.role),
                    None => None,
                };
                let operate = role.is_some_and(|r| r.can(Permission::Operate));
                let export = role.is_some_and(|r| r.can(Permission::ExportHistory));
                let annotate = role.is_some_and(|r| r.can(Permission::Annotate));
                view! {
                    <div class="form-pair">
                        {operate.then(|| view! { <RunPanel start /> })}
                        {annotate.then(|| view! { <TabletopPanel tabletop /> })}
                    </div>
                    {export.then(|| view! {
                        <p class="toolbar" data-testid="drill-export">
                            "Export the drill history: "
                            <a class="btn" href="/admin/history/export?format=csv&kind=drill" rel="external" download>"CSV"</a>
                            " "
                            <a class="btn" href="/admin/history/export?format=markdown&kind=drill" rel="external" download>"Markdown"</a>
                        </p>
                    })}
                }
            })}
        </Transition>
        <Transition fallback=|| view! { <p class="muted" role="status">"Reading the drills…"</p> }>
            {move || Suspend::new(async move {
                let role = match viewer {
                    Some(viewer) => viewer.await.ok().map(|v| v.role),
                    None => None,
                };
                let operate = role.is_some_and(|r| r.can(Permission::Operate));
                let administer = role.is_some_and(|r| r.can(Permission::Administer));
                match overview.await {
                    Ok(overview) => view! { <DrillsNow overview operate administer cancel objectives /> }.into_any(),
                    Err(error) => view! { <ErrorBanner error /> }.into_any(),
                }
            })}
        </Transition>
        {action_error(cancel.value())}
    }
    .into_any()
}

/// Run drill now, with its reason.
#[component]
fn RunPanel(start: ServerAction<StartJob>) -> AnyView {
    view! {
        <JobPanel
            action=start
            job=super::DRILL_JOB
            title="Run a drill now"
            about="Restores the latest verified backup of each store into throwaway databases, checks every table against its manifest, runs the console's own queries on them, then drops them. Live data is never touched."
            placeholder="Quarterly drill"
            button="Run drill"
            test_id="run-drill"
            run_of="Drill"
            follow="its steps appear below as they finish."
        />
    }
    .into_any()
}

/// Log a tabletop exercise.
#[component]
fn TabletopPanel(tabletop: ServerAction<LogTabletop>) -> AnyView {
    view! {
        <details class="panel form-panel">
            <summary><h2 class="inline">"Log a tabletop exercise"</h2></summary>
            <ActionForm action=tabletop attr:class="form-grid" attr:aria-label="Log a tabletop exercise">
                <label class="field field-grow">
                    <span>"Scenario"</span>
                    <input type="text" name="scenario" required maxlength="500" placeholder="ClickHouse lost its disk at 02:00" />
                </label>
                <label class="field field-grow">
                    <span>"Participants"</span>
                    <input type="text" name="participants" required maxlength="500" placeholder="On-call, DBA, support lead" />
                </label>
                <label class="field field-grow">
                    <span>"Findings"</span>
                    <textarea name="findings" required maxlength="4000" rows="3"></textarea>
                </label>
                <label class="field field-grow">
                    <span>"Follow-ups"</span>
                    <textarea name="follow_ups" maxlength="4000" rows="2"></textarea>
                </label>
                <div class="form-actions">
                    <button type="submit" class="btn btn-primary">"Log tabletop"</button>
                </div>
            </ActionForm>
            {action_result(tabletop.value(), |id| format!("Tabletop exercise logged as drill {id}."))}
        </details>
    }
    .into_any()
}

#[component]
fn DrillsNow(
    overview: DrillsOverview,
    operate: bool,
    administer: bool,
    cancel: ServerAction<CancelRun>,
    objectives: ServerAction<SetObjectives>,
) -> AnyView {
    let DrillsOverview {
        now_ms,
        drills,
        objectives: rows,
        due,
    } = overview;
    let running: Vec<Drill> = drills
        .iter()
        .filter(|d| d.status == DrillStatus::Running)
        .cloned()
        .collect();
    let functional: Vec<Drill> = drills
        .iter()
        .filter(|d| d.kind == DrillKind::Functional && d.status == DrillStatus::Passed)
        .cloned()
        .collect();
    view! {
        {running.into_iter().map(|d| view! { <RunningDrill d now_ms operate cancel /> }).collect_view()}
        <div class="chart-pair">
            {rows.iter().cloned().map(|o| view! { <RtoChart o drills=functional.clone() now_ms /> }).collect_view()}
        </div>
        <ObjectivesTable rows administer objectives now_ms />
        <DueList due now_ms />
        <section class="panel">
            <h2>"Drill history"</h2>
            {if drills.is_empty() {
                view! { <p class="muted">"No drill yet. Run one now, or wait for the scheduled one (03:00 UTC on the 1st of every third month)."</p> }.into_any()
            } else {
                view! {
                    <DataTable
                        columns=vec![
                            Column::figures("Drill"),
                            Column::text("Type"),
                            Column::text("When"),
                            Column::text("By"),
                            Column::text("Result"),
                            Column::figures("Measured RTO"),
                            Column::figures("Target"),
                            Column::figures("RPO proven"),
                            Column::text("Steps"),
                        ]
                        class="drills"
                        test_id="drill-history"
                    >
                        {drills.into_iter().map(|d| view! { <DrillRow d now_ms /> }).collect_view()}
                    </DataTable>
                }.into_any()
            }}
        </section>
    }
    .into_any()
}

/// A drill in progress: its steps so far, a progress bar and Cancel.
#[component]
fn RunningDrill(d: Drill, now_ms: i64, operate: bool, cancel: ServerAction<CancelRun>) -> AnyView {
    let (done, total) = d.progress.unwrap_or((d.steps.len() as i64, 9));
    let id = d.id;
    view! {
        <section class="panel progress-panel" data-testid="running-drill" aria-live="polite">
            <div class="progress-head">
                <strong>{format!("Drill {id} running")}</strong>
                <span class="muted">{format!("{done} of {total} steps, started {}", format_ago(d.started_ms, now_ms))}</span>
                {operate.then_some(d.run_id).flatten().map(|run_id| view! {
                    <button type="button" class="btn" on:click=move |_| { cancel.dispatch(CancelRun { run_id }); }>"Cancel"</button>
                })}
            </div>
            <progress max=total.max(1) value=done>{format!("{done} of {total}")}</progress>
            <StepList steps=d.steps />
        </section>
    }
    .into_any()
}

#[component]
fn StepList(steps: Vec<super::DrillStep>) -> AnyView {
    view! {
        <DataTable
            columns=vec![
                Column::text("Store"),
                Column::text("Step"),
                Column::figures("Took"),
                Column::text("Result"),
                Column::text("Detail"),
            ]
            class="steps"
        >
            {steps.into_iter().map(|s| view! {
                <tr>
                    <td>{s.store.map_or("drill", |s| s.label())}</td>
                    <td>{s.name}</td>
                    <td class="num">{format_duration(s.ms)}</td>
                    <td>{if s.ok { view! { <Badge tone=Tone::Ok label="ok" /> } } else { view! { <Badge tone=Tone::Error label="failed" /> } }}</td>
                    <td class="small">{s.detail.unwrap_or_default()}</td>
                </tr>
            }).collect_view()}
        </DataTable>
    }
    .into_any()
}

/// One store's measured recovery time of each passing drill over a year, with its
/// objective as a dashed line.
#[component]
fn RtoChart(o: Objective, drills: Vec<Drill>, now_ms: i64) -> AnyView {
    let target_ms = o.rto_target_secs * 1000;
    let points: Vec<(i64, i64)> = drills
        .iter()
        .filter_map(|d| {
            d.stores
                .iter()
                .find(|s| s.store == o.store && s.ok)
                .map(|s| (d.started_ms, s.recovery_ms))
        })
        .collect();
    let top = points
        .iter()
        .map(|(_, ms)| *ms)
        .max()
        .unwrap_or(0)
        .max(target_ms)
        .max(1);
    let window = 365.0 * 86_400_000.0;
    let x_of =
        move |at: i64| ((1.0 - (now_ms - at) as f64 / window) * CHART_W).clamp(2.0, CHART_W - 2.0);
    let y_of = move |ms: i64| CHART_H - 1.0 - (ms as f64 / top as f64) * (CHART_H - 4.0);
    let target_y = y_of(target_ms);
    let (tone, word) = if o.rto_exceeded() {
        (Tone::Error, "over target")
    } else if o.rto_measured_ms.is_some() {
        (Tone::Ok, "within target")
    } else {
        (Tone::Warn, "not measured")
    };
    let summary = format!(
        "{} measured recovery time of {} passing drills over a year, against a target of {}",
        o.store.label(),
        points.len(),
        format_duration(target_ms)
    );
    view! {
        <div data-testid=format!("rto-{}", o.store.as_str())>
            <ChartFrame
                caption=view! {
                    <strong>{o.store.label()}</strong>
                    <Badge tone label=word />
                    <span class="muted">{format!("recovery time per drill; target {}", format_duration(target_ms))}</span>
                }.into_any()
                summary
                y_top=format_duration(top)
                x_from="a year ago"
            >
                <line class="target" x1="0" x2=CHART_W y1=target_y y2=target_y />
                {points.iter().map(|(at, ms)| {
                    let class = if *ms > target_ms { "bar bar-failed" } else { "bar" };
                    let (x, y) = (x_of(*at) - 2.0, y_of(*ms));
                    // At least a sliver: a recovery far under its target still shows.
                    let y = y.min(CHART_H - 3.0);
                    let height = CHART_H - 1.0 - y;
                    view! { <rect class=class x=x y=y width="4" height=height /> }
                }).collect_view()}
            </ChartFrame>
        </div>
    }
    .into_any()
}

/// The objectives per store beside what was measured; admins change them.
#[component]
fn ObjectivesTable(
    rows: Vec<Objective>,
    administer: bool,
    objectives: ServerAction<SetObjectives>,
    now_ms: i64,
) -> AnyView {
    let _ = now_ms;
    view! {
        <section class="panel" data-testid="objectives">
            <h2>"Recovery objectives"</h2>
            <DataTable
                columns=vec![
                    Column::text("Store"),
                    Column::figures("RPO target"),
                    Column::figures("RPO now"),
                    Column::figures("RTO target"),
                    Column::figures("Last drill"),
                    Column::figures("90-day median"),
                    Column::figures("Drill every"),
                    Column::figures("Tabletop every"),
                    Column::text("Set by"),
                ]
            >
                {rows.iter().map(|o| {
                    let rpo_bad = o.rpo_exceeded();
                    let rto_bad = o.rto_exceeded();
                    view! {
                        <tr>
                            <th scope="row">{o.store.label()}</th>
                            <td class="num">{hours(o.rpo_target_secs)}</td>
                            <td class={if rpo_bad { "num text-error strong" } else { "num" }}>
                                {o.rpo_measured_ms.map_or("no verified backup".to_owned(), format_duration)}
                                {o.rpo_from_archive.then_some(" (WAL archive)")}
                                {(o.queued_rows > 0).then(|| format!(" + {} queued rows", group_digits(o.queued_rows as u64)))}
                            </td>
                            <td class="num">{format_duration(o.rto_target_secs * 1000)}</td>
                            <td class={if rto_bad { "num text-error strong" } else { "num" }}>{o.rto_measured_ms.map_or("-".to_owned(), format_duration)}</td>
                            <td class="num">{o.rto_median_ms.map_or("-".to_owned(), format_duration)}</td>
                            <td class="num">{format!("{} d", o.functional_days)}</td>
                            <td class="num">{format!("{} d", o.tabletop_days)}</td>
                            <td>{o.set_by.clone().unwrap_or_else(|| "default".to_owned())}</td>
                        </tr>
                    }
                }).collect_view()}
            </DataTable>
            <p class="muted small">"PostgreSQL's RPO now is its WAL archive's lag when pgBackRest archives it (WAL written and not yet archived; a quiet server loses nothing), else its newest dump's age: daily dumps cannot promise a 15-minute RPO. Rows queued for ClickHouse are in no ClickHouse backup until they are replayed and backed up. Red: measured is over target."</p>
            {administer.then(|| view! {
                <details>
                    <summary>"Change an objective"</summary>
                    <ActionForm action=objectives attr:class="form-grid" attr:aria-label="Change the recovery objectives">
                        <label class="field">
                            <span>"Store"</span>
                            <select name="store">
                                <option value="postgres">"PostgreSQL"</option>
                                <option value="clickhouse">"ClickHouse"</option>
                            </select>
                        </label>
                        <label class="field">
                            <span>"RPO (hours)"</span>
                            <input type="number" name="rpo_hours" min="1" max="8760" value="24" required />
                        </label>
                        <label class="field">
                            <span>"RTO (minutes)"</span>
                            <input type="number" name="rto_minutes" min="1" max="10080" value="60" required />
                        </label>
                        <label class="field">
                            <span>"Functional drill every (days)"</span>
                            <input type="number" name="functional_days" min="1" max="3650" value="90" required />
                        </label>
                        <label class="field">
                            <span>"Tabletop every (days)"</span>
                            <input type="number" name="tabletop_days" min="1" max="3650" value="30" required />
                        </label>
                        <ReasonField />
                        <div class="form-actions"><button type="submit" class="btn">"Save objectives"</button></div>
                    </ActionForm>
                    {action_error(objectives.value())}
                </details>
            })}
        </section>
    }
    .into_any()
}

#[component]
fn DueList(due: Vec<Due>, now_ms: i64) -> AnyView {
    view! {
        <section class="panel" data-testid="due">
            <h2>"Next due"</h2>
            <table class="data">
                <tbody>
                    {due.into_iter().map(|d| {
                        let late = d.due_ms < now_ms;
                        view! {
                            <tr>
                                <th scope="row">{d.what}</th>
                                <td class={if late { "text-error strong" } else { "" }}>
                                    {format_utc(d.due_ms)}
                                    {if late { " (overdue)".to_owned() } else { String::new() }}
                                </td>
                                <td class="muted small">{format!("counted from {}", d.since)}</td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
        </section>
    }
    .into_any()
}

#[component]
fn DrillRow(d: Drill, now_ms: i64) -> AnyView {
    let (tone, word) = status_tone(&d);
    let functional = d.kind == DrillKind::Functional;
    let recovery = d.recovery_ms();
    let target: i64 = d.stores.iter().map(|s| s.rto_target_ms).max().unwrap_or(0);
    let over = d.stores.iter().any(|s| s.ok && s.over_target());
    let rpo = d.stores.iter().filter_map(|s| s.backup_age_ms).max();
    let steps = d.steps.clone();
    let detail = d
        .tabletop
        .as_ref()
        .map(|t| format!("{} — {}", t.scenario, t.participants));
    view! {
        <tr>
            <td class="num">{match d.history_id {
                Some(h) => view! { <a href=format!("/admin/history/{h}")>{d.id}</a> }.into_any(),
                None => view! { <span>{d.id}</span> }.into_any(),
            }}</td>
            <td>{d.kind.as_str()}</td>
            <td title=format_utc(d.started_ms)>{format_ago(d.started_ms, now_ms)}</td>
            <td>{d.actor.clone()}</td>
            <td><Badge tone label=word />{d.error.clone().map(|e| view! { <div class="small text-error">{e}</div> })}</td>
            <td class={if over { "num text-error strong" } else { "num strong" }}>{(functional && recovery > 0).then(|| format_duration(recovery))}</td>
            <td class="num">{(functional && target > 0).then(|| format_duration(target))}</td>
            <td class="num">{rpo.map(format_duration)}</td>
            <td>{if functional && !steps.is_empty() {
                view! {
                    <details>
                        <summary>{format!("{} steps", steps.len())}</summary>
                        <StepList steps />
                    </details>
                }.into_any()
            } else {
                view! { <span class="small muted">{detail}</span> }.into_any()
            }}</td>
        </tr>
    }
    .into_any()
}
