//! `/admin/dlq`: the dead letters broken down by webhook and reason (the runbook's
//! query), filtered by webhook, reason, event type, time and attempts; the endpoints and
//! their circuits ("re-enable and recover" for a paused one); a dry run that counts and
//! samples what a redrive or purge would take; the redrive (operators and admins) with
//! live progress and Cancel; the purge (admins, typed count).

use std::time::Duration;

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::Form;
use leptos_router::hooks::use_query_map;

use super::actions::ActionsPanel;
use super::api::{load_dlq, DlqDryRun, Purge, Recover, StartRedrive};
use super::parts::{count, reason_badge};
use super::settings_page::state_badge;
use super::{DeadLetter, DlqOverview, DlqReason, Endpoint, EndpointState, Redrive, RedriveStatus};
use crate::auth::viewer::use_viewer;
use crate::auth::Permission;
use crate::components::{
    action_error, Badge, Banner, Column, DataTable, ErrorBanner, PageHeader, Tone,
};
use crate::format::{format_ago, format_duration, format_utc, percent_encode};
use crate::jobs::api::CancelRun;

/// How often the page asks for fresh figures (a redrive in progress).
pub const REFRESH_EVERY: Duration = Duration::from_secs(3);

/// The filter's query parameters, in the form's order.
const FILTERS: [&str; 6] = [
    "webhook",
    "reason",
    "event_type",
    "since",
    "until",
    "min_attempts",
];

/// `/admin/dlq`.
#[component]
pub fn DlqPage() -> AnyView {
    let query = use_query_map();
    let param = move |name: &str| query.with(|q| q.get(name).unwrap_or_default());
    let filter_query = move || {
        FILTERS
            .iter()
            .filter_map(|name| {
                let value = param(name);
                (!value.is_empty()).then(|| format!("{name}={}", percent_encode(&value)))
            })
            .collect::<Vec<_>>()
            .join("&")
    };
    let tick = crate::components::refresh_ticker(REFRESH_EVERY);
    let dry = ServerAction::<DlqDryRun>::new();
    let redrive = ServerAction::<StartRedrive>::new();
    let cancel = ServerAction::<CancelRun>::new();
    let purge = ServerAction::<Purge>::new();
    let recover = ServerAction::<Recover>::new();
    let selected = RwSignal::new(Vec::<i64>::new());
    let overview = Resource::new(
        move || {
            (
                filter_query(),
                param("after"),
                tick.get(),
                redrive.version().get(),
                cancel.version().get(),
                purge.version().get(),
                recover.version().get(),
            )
        },
        |(filter, after, ..)| load_dlq(filter, after),
    );
    // What the dry run, redrive and purge act on: the filter, or the selection in it.
    let target = move || {
        let ids = selected.get();
        if ids.is_empty() {
            filter_query()
        } else {
            let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
            let base = filter_query();
            let sep = if base.is_empty() { "" } else { "&" };
            format!("{base}{sep}ids={}", ids.join(","))
        }
    };
    let viewer = use_viewer();
    view! {
        <Title text="Dead letters" />
        <PageHeader
            title="Dead letters"
            subtitle="Webhook deliveries that exhausted their retries or were refused, by endpoint and reason. Fix the cause, dry-run, then redrive. Refreshes every 3 s."
        />
        <Form method="GET" action="/admin/dlq" attr:class="filters" attr:aria-label="Filter the dead letters">
            <label class="field">
                <span>"Webhook #"</span>
                <input type="number" name="webhook" min="1" class="num-input" prop:value=move || param("webhook") />
            </label>
            <label class="field">
                <span>"Reason"</span>
                <select name="reason">
                    <option value="" selected=move || param("reason").is_empty()>"Any"</option>
                    {DlqReason::ALL.iter().map(|r| view! {
                        <option value=r.as_str() selected=move || param("reason") == r.as_str()>{r.as_str().replace('_', " ")}</option>
                    }).collect_view()}
                </select>
            </label>
            <label class="field">
                <span>"Event type"</span>
                <input type="text" name="event_type" prop:value=move || param("event_type") placeholder="order.paid" />
            </label>
            <label class="field">
                <span>"Dead since (UTC)"</span>
                <input type="datetime-local" name="since" prop:value=move || param("since") />
            </label>
            <label class="field">
                <span>"Before (UTC)"</span>
                <input type="datetime-local" name="until" prop:value=move || param("until") />
            </label>
            <label class="field">
                <span>"Attempts ≥"</span>
                <input type="number" name="min_attempts" min="0" class="num-input" prop:value=move || param("min_attempts") />
            </label>
            <div class="filter-buttons">
                <button type="submit" class="btn btn-primary">"Apply"</button>
                <a class="btn btn-quiet" href="/admin/dlq">"Clear"</a>
            </div>
        </Form>
        <Transition fallback=|| view! { <p class="muted" role="status">"Reading the dead letters…"</p> }>
            {move || Suspend::new(async move {
                let role = match viewer {
                    Some(viewer) => viewer.await.ok().map(|v| v.role),
                    None => None,
                };
                let operate = role.is_some_and(|r| r.can(Permission::Operate));
                let administer = role.is_some_and(|r| r.can(Permission::Administer));
                match overview.await {
                    Ok(overview) => view! {
                        <DlqNow overview operate administer selected cancel recover filter=filter_query() />
                    }.into_any(),
                    Err(error) => view! { <ErrorBanner error /> }.into_any(),
                }
            })}
        </Transition>
        {action_error(cancel.value())}
        {action_error(recover.value())}
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                let role = match viewer {
                    Some(viewer) => viewer.await.ok().map(|v| v.role),
                    None => None,
                };
                let operate = role.is_some_and(|r| r.can(Permission::Operate));
                let administer = role.is_some_and(|r| r.can(Permission::Administer));
                operate.then(|| view! { <ActionsPanel target dry redrive purge administer /> })
            })}
        </Transition>
    }
    .into_any()
}

/// The figures, endpoints, breakdown, list and redrives for the current filter.
#[component]
fn DlqNow(
    overview: DlqOverview,
    operate: bool,
    administer: bool,
    selected: RwSignal<Vec<i64>>,
    cancel: ServerAction<CancelRun>,
    recover: ServerAction<Recover>,
    filter: String,
) -> AnyView {
    let DlqOverview {
        now_ms,
        filter_label,
        dead_total,
        matching,
        backlog,
        endpoints,
        breakdown,
        letters,
        next,
        redrives,
        retention_days,
        purged_soon,
        frozen,
        ..
    } = overview;
    let paused = endpoints
        .iter()
        .filter(|e| e.state == EndpointState::Paused)
        .count() as i64;
    let strip = [
        ("dead letters", dead_total, dead_total > 0),
        ("matching the filter", matching, false),
        ("due, undelivered", backlog, backlog > 0),
        ("endpoints paused", paused, paused > 0),
    ];
    let running: Vec<Redrive> = redrives.iter().filter(|r| r.running()).cloned().collect();
    view! {
        <div class="strip" data-testid="dlq-figures">
            {strip.into_iter().map(|(label, value, loud)| view! {
                <span class=if value == 0 { "strip-item strip-zero" } else if loud { "strip-item strip-loud" } else { "strip-item" }>
                    <span class="strip-value">{count(value)}</span>
                    <span>{label}</span>
                </span>
            }).collect_view()}
        </div>
        {(purged_soon > 0).then(|| view! {
            <Banner tone=Tone::Warn>
                {format!("{} dead letters are purged by retention ({retention_days} days) within 3 days. Redrive or export what you need.", count(purged_soon))}
            </Banner>
        })}
        {frozen.then(|| view! {
            <Banner tone=Tone::Warn>"A freeze is open: purges (and retention) wait until it is lifted. Redrives go on."</Banner>
        })}
        {running.into_iter().map(|run| view! { <RedriveProgress run operate cancel now_ms /> }).collect_view()}
        <h2 class="section-title">"Endpoints"</h2>
        <EndpointsTable endpoints now_ms operate administer recover />
        <h2 class="section-title">"By webhook and reason"</h2>
        <p class="muted small">{format!("Showing {filter_label}. Retention: {retention_days} days; nothing is dropped before.")}</p>
        {if breakdown.is_empty() {
            view! { <p class="empty-state">"No dead letters match. Nothing is waiting for a person."</p> }.into_any()
        } else {
            view! {
                <div class="table-scroll">
                <DataTable
                    columns=vec![
                        Column::text("Webhook"),
                        Column::text("Reason"),
                        Column::figures("Count"),
                        Column::text("Oldest"),
                        Column::text("Newest"),
                        Column::text("Last answer"),
                        Column::text("Sample payload"),
                    ]
                    class="dlq-breakdown"
                >
                    {breakdown.into_iter().map(|row| {
                        let href = format!("/admin/dlq?webhook={}&reason={}", row.webhook_id, row.reason.as_str());
                        view! {
                            <tr>
                                <td><a href=href.clone()>{format!("#{} {}", row.webhook_id, row.webhook)}</a></td>
                                <td>{reason_badge(row.reason)}<br /><span class="muted small">{row.reason.advice()}</span></td>
                                <td class="num strong">{count(row.count)}</td>
                                <td class="nowrap small">{format_ago(row.oldest_ms, now_ms)}</td>
                                <td class="nowrap small">{format_ago(row.newest_ms, now_ms)}</td>
                                <td class="small">
                                    {row.last_status.map(|s| view! { <code>{s}</code> " " })}
                                    {row.last_error.clone().unwrap_or_default()}
                                </td>
                                <td><code class="small payload">{row.sample_payload.clone().unwrap_or_else(|| "(removed)".into())}</code></td>
                            </tr>
                        }
                    }).collect_view()}
                </DataTable>
                </div>
            }.into_any()
        }}
        <LettersTable letters next now_ms operate selected filter />
        <RedrivesTable redrives />
    }
    .into_any()
}

#[component]
fn EndpointsTable(
    endpoints: Vec<Endpoint>,
    now_ms: i64,
    operate: bool,
    /// A disabled webhook was turned off by an admin: only an admin turns it back on.
    administer: bool,
    recover: ServerAction<Recover>,
) -> AnyView {
    if endpoints.is_empty() {
        return view! {
            <p class="empty-state">"No webhooks. Add them at " <a href="/admin/settings/webhooks">"Settings › Webhooks"</a> "."</p>
        }
        .into_any();
    }
    view! {
        <div class="table-scroll">
        <DataTable
            columns=vec![
                Column::text("Webhook"),
                Column::text("State"),
                Column::figures("Failures in a row"),
                Column::text("Failing since"),
                Column::figures("Due"),
                Column::figures("Dead letters"),
                Column::text("Action"),
            ]
        >
            {endpoints.into_iter().map(|e| {
                let stuck = match e.state {
                    EndpointState::Paused => operate,
                    EndpointState::Disabled => administer,
                    _ => false,
                };
                view! {
                    <tr>
                        <td>
                            <a href=format!("/admin/dlq?webhook={}", e.id)>{format!("#{} {}", e.id, super::endpoint_label(&e))}</a>
                            <br /><code class="small" title=super::url_title(&e.url)>{e.url.clone()}</code>
                        </td>
                        <td>{state_badge(e.state)}</td>
                        <td class="num">{e.consecutive_failures}</td>
                        <td class="nowrap small">{e.failing_since_ms.map(|at| format_ago(at, now_ms)).unwrap_or_else(|| "—".into())}</td>
                        <td class="num">{count(e.backlog)}</td>
                        <td class="num">{count(e.dead)}</td>
                        <td>
                            {stuck.then(|| view! {
                                <ActionForm action=recover attr:class="inline-form">
                                    <input type="hidden" name="webhook_id" value=e.id.to_string() />
                                    <label class="visually-hidden" for=format!("recover-{}", e.id)>"Reason"</label>
                                    <input type="text" name="reason" id=format!("recover-{}", e.id) required maxlength="500" placeholder="Reason" />
                                    <button type="submit" class="btn btn-small btn-primary">
                                        "Re-enable and recover"<span class="visually-hidden">{format!(" webhook {}", e.id)}</span>
                                    </button>
                                </ActionForm>
                            })}
                        </td>
                    </tr>
                }
            }).collect_view()}
        </DataTable>
        </div>
    }
    .into_any()
}

#[component]
fn LettersTable(
    letters: Vec<DeadLetter>,
    next: Option<i64>,
    now_ms: i64,
    operate: bool,
    selected: RwSignal<Vec<i64>>,
    filter: String,
) -> AnyView {
    if letters.is_empty() {
        return ().into_any();
    }
    let older = next.map(|after| {
        let sep = if filter.is_empty() { "" } else { "&" };
        format!("/admin/dlq?{filter}{sep}after={after}")
    });
    view! {
        <h2 class="section-title">"Dead letters"</h2>
        <div class="table-scroll">
        <table class="data" data-testid="dead-letters">
            <thead>
                <tr>
                    {operate.then(|| view! { <th scope="col"><span class="visually-hidden">"Select"</span></th> })}
                    <th scope="col" class="num">"Delivery"</th>
                    <th scope="col">"Webhook"</th>
                    <th scope="col">"Event"</th>
                    <th scope="col">"Reason"</th>
                    <th scope="col" class="num">"Attempts"</th>
                    <th scope="col">"Last answer"</th>
                    <th scope="col">"Dead since"</th>
                </tr>
            </thead>
            <tbody>
                {letters.into_iter().map(|l| {
                    let id = l.id;
                    view! {
                        <tr>
                            {operate.then(|| view! {
                                <td>
                                    <input type="checkbox" aria-label=format!("Select delivery {id}")
                                        prop:checked=move || selected.with(|s| s.contains(&id))
                                        on:change=move |_| selected.update(|s| {
                                            if let Some(at) = s.iter().position(|x| *x == id) { s.remove(at); } else { s.push(id); }
                                        }) />
                                </td>
                            })}
                            <td class="num"><a href=format!("/admin/dlq/deliveries/{id}")>{id}</a></td>
                            <td>{format!("#{} {}", l.webhook_id, l.webhook)}</td>
                            <td><code class="small">{l.event_type.clone()}</code></td>
                            <td>{reason_badge(l.reason)}</td>
                            <td class="num">{l.attempts}</td>
                            <td class="small">
                                {l.last_status.map(|s| view! { <code>{s}</code> " " })}
                                {l.last_error.clone().unwrap_or_default()}
                            </td>
                            <td class="nowrap small">{format_ago(l.dlq_at_ms, now_ms)}</td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
        </div>
        {older.map(|href| view! { <p class="pager"><a href=href>"Older dead letters →"</a></p> })}
    }
    .into_any()
}

#[component]
fn RedriveProgress(
    run: Redrive,
    operate: bool,
    cancel: ServerAction<CancelRun>,
    now_ms: i64,
) -> AnyView {
    let percent = if run.total > 0 {
        (run.done as f64 / run.total as f64 * 100.0).min(100.0)
    } else {
        0.0
    };
    let label = format!(
        "Redrive #{}: {} of {} dead letters sent again ({percent:.0} %), {} delivered since; started {} by {} ({})",
        run.id,
        count(run.done),
        count(run.total),
        count(run.delivered),
        format_ago(run.started_at_ms, now_ms),
        run.actor,
        run.filter
    );
    let id = run.id;
    view! {
        <section class="panel progress-panel" data-testid="redrive-progress">
            <div class="progress-head">
                <span>{label.clone()}</span>
                {operate.then_some(run.run_id).flatten().map(|run_id| view! {
                    <ActionForm action=cancel attr:class="inline-form">
                        <input type="hidden" name="run_id" value=run_id.to_string() />
                        <button type="submit" class="btn btn-small btn-danger">"Cancel"<span class="visually-hidden">{format!(" redrive {id}")}</span></button>
                    </ActionForm>
                })}
            </div>
            <progress max="100" value=format!("{percent:.1}") aria-label=label></progress>
        </section>
    }
    .into_any()
}

#[component]
fn RedrivesTable(redrives: Vec<Redrive>) -> AnyView {
    if redrives.is_empty() {
        return ().into_any();
    }
    view! {
        <h2 class="section-title">"Redrives"</h2>
        <div class="table-scroll">
        <DataTable
            columns=vec![
                Column::figures("#"),
                Column::text("Status"),
                Column::text("Filter"),
                Column::figures("Sent again"),
                Column::figures("Delivered"),
                Column::text("By, why"),
                Column::text("Started"),
                Column::text("Took"),
            ]
            test_id="redrives"
        >
            {redrives.into_iter().map(|r| {
                let tone = match r.status {
                    RedriveStatus::Finished => Tone::Ok,
                    RedriveStatus::Running => Tone::Info,
                    RedriveStatus::Cancelled | RedriveStatus::Abandoned => Tone::Warn,
                    RedriveStatus::Failed => Tone::Error,
                };
                view! {
                    <tr>
                        <td class="num">{r.id}</td>
                        <td><Badge tone label=r.status.as_str() /></td>
                        <td class="small">{r.filter.clone()}</td>
                        <td class="num">{format!("{} / {}", count(r.done), count(r.total))}</td>
                        <td class="num">{count(r.delivered)}</td>
                        <td class="small">{r.actor.clone()}<br /><span class="muted">{r.reason.clone()}</span></td>
                        <td class="nowrap small">{format_utc(r.started_at_ms)}</td>
                        <td class="nowrap small">{r.finished_at_ms.map(|f| format_duration(f - r.started_at_ms)).unwrap_or_else(|| "running".into())}</td>
                    </tr>
                }
            }).collect_view()}
        </DataTable>
        </div>
    }
    .into_any()
}
