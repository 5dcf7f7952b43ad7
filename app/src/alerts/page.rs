//! `/admin/alerts`: the operators' home. Open alerts first (by severity, then age), the
//! counts strip, filters, one alert's panel (figure against threshold, timeline,
//! silences, what to do), bulk acknowledge/resolve, the resolved view with handling
//! times, and the silences.
//!
//! Typing survives the refresh: the lists refresh every few seconds, but the forms live
//! outside the refreshing parts, and an alert's forms keep the version the person saw
//! when they opened it (so a change made meanwhile answers 409 instead of being
//! overwritten).

use std::time::Duration;

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::{Form, A};
use leptos_router::hooks::use_query_map;

use super::api::{
    load_alert, load_open_alerts, load_resolved_alerts, AcknowledgeAlerts, EndSilence, NoteAlert,
    ResolveAlerts, SilenceAlerts,
};
use super::{
    actor_name, Alert, AlertCounts, AlertDetail, AlertStatus, AlertsOverview, FixAction,
    ResolvedOverview, Seen, Severity, Silence, KIND_NAMES,
};
use crate::auth::Permission;
use crate::components::{action_error, Badge, ErrorBanner, IfAllowed, PageHeader, Tone};
use crate::format::{
    format_ago, format_duration, format_maybe_duration, format_utc, group_digits, percent_encode,
};

/// How often the alert lists and the open alert refresh.
pub const REFRESH_EVERY: Duration = Duration::from_secs(5);

/// The badge tone of a severity.
pub fn severity_tone(severity: Severity) -> Tone {
    match severity {
        Severity::Critical => Tone::Error,
        Severity::Warning => Tone::Warn,
        Severity::Info => Tone::Info,
    }
}

fn status_tone(status: AlertStatus) -> Tone {
    match status {
        AlertStatus::Firing => Tone::Error,
        AlertStatus::Acknowledged => Tone::Warn,
        AlertStatus::Resolved => Tone::Ok,
    }
}

/// The query parameters the page keeps between its links.
const KEPT: [&str; 4] = ["view", "kind", "severity", "status"];

/// `/admin/alerts`.
#[component]
pub fn AlertsPage() -> AnyView {
    let query = use_query_map();
    let param = move |name: &str| query.with(|q| q.get(name).unwrap_or_default());
    let view_name = move || param("view");
    let link = move |changes: &[(&str, String)]| {
        let mut parts = Vec::new();
        for name in KEPT.iter().chain(["alert"].iter()) {
            let value = changes
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| param(name));
            if !value.is_empty() {
                parts.push(format!("{name}={}", percent_encode(&value)));
            }
        }
        if parts.is_empty() {
            "/admin/alerts".to_owned()
        } else {
            format!("/admin/alerts?{}", parts.join("&"))
        }
    };
    let tab = move |name: &'static str, label: &'static str| {
        let href = link(&[("view", name.to_owned()), ("alert", String::new())]);
        let current = move || (view_name() == name).then_some("page");
        view! { <a href=href aria-current=current class="tab">{label}</a> }
    };
    view! {
        <Title text="Alerts" />
        <PageHeader
            title="Alerts"
            subtitle="What the self-monitor and expiry raised: open alerts first, most severe and oldest on top. Refreshes every 5 s; what you type is kept."
        />
        <nav class="tabs" aria-label="Alert views">
            {tab("", "Open")}
            {tab("resolved", "Resolved")}
            {tab("silences", "Silences")}
        </nav>
        {move || match view_name().as_str() {
            "resolved" => view! { <ResolvedView /> }.into_any(),
            "silences" => view! { <SilencesView /> }.into_any(),
            _ => view! { <OpenView /> }.into_any(),
        }}
    }
    .into_any()
}

/// The filters of the open and resolved views (a GET form: the URL keeps them).
#[component]
fn Filters(statuses: bool) -> AnyView {
    let query = use_query_map();
    let param = move |name: &str| query.with(|q| q.get(name).unwrap_or_default());
    view! {
        <Form method="GET" action="/admin/alerts" attr:class="filters" attr:aria-label="Filter the alerts">
            <input type="hidden" name="view" prop:value=move || param("view") />
            <label class="field">
                <span>"Kind"</span>
                <select name="kind">
                    <option value="" selected=move || param("kind").is_empty()>"Any"</option>
                    {KIND_NAMES.iter().map(|name| {
                        view! { <option value=*name selected=move || param("kind") == *name>{name.replace('_', " ")}</option> }
                    }).collect_view()}
                </select>
            </label>
            <label class="field">
                <span>"Severity"</span>
                <select name="severity">
                    <option value="" selected=move || param("severity").is_empty()>"Any"</option>
                    {Severity::ALL.iter().map(|s| view! {
                        <option value=s.as_str() selected=move || param("severity") == s.as_str()>{s.as_str()}</option>
                    }).collect_view()}
                </select>
            </label>
            {statuses.then(|| view! {
                <label class="field">
                    <span>"Status"</span>
                    <select name="status">
                        <option value="" selected=move || param("status").is_empty()>"Any open"</option>
                        <option value="firing" selected=move || param("status") == "firing">"firing"</option>
                        <option value="acknowledged" selected=move || param("status") == "acknowledged">"acknowledged"</option>
                    </select>
                </label>
            })}
            <div class="filter-buttons">
                <button type="submit" class="btn">"Filter"</button>
            </div>
        </Form>
    }
    .into_any()
}

/// The open alerts, the selected alert's panel and the bulk bar.
#[component]
fn OpenView() -> AnyView {
    let query = use_query_map();
    let param = move |name: &str| query.with(|q| q.get(name).unwrap_or_default());
    let tick = crate::components::refresh_ticker(REFRESH_EVERY);
    let (changed, set_changed) = signal(0_u32);
    let overview = Resource::new(
        move || {
            (
                param("kind"),
                param("severity"),
                param("status"),
                tick.get(),
                changed.get(),
            )
        },
        |(kind, severity, status, _, _)| load_open_alerts(kind, severity, status),
    );
    let selected = RwSignal::new(Vec::<Seen>::new());
    let opened = move || param("alert").parse::<i64>().ok();
    // Looked up now (in the component), used later (in the forms' effects).
    let nav = use_context::<crate::components::AlertsChanged>();
    let on_change = move || {
        selected.set(Vec::new());
        set_changed.update(|n| *n += 1);
        if let Some(crate::components::AlertsChanged(count)) = nav {
            count.update(|n| *n += 1);
        }
    };
    view! {
        {move || opened().map(|id| view! { <AlertPanel id tick on_change /> })}
        <Transition fallback=|| view! { <p class="muted" role="status">"Reading the alerts…"</p> }>
            {move || Suspend::new(async move {
                match overview.await {
                    Ok(overview) => view! { <OpenAlerts overview selected /> }.into_any(),
                    Err(error) => view! { <ErrorBanner error /> }.into_any(),
                }
            })}
        </Transition>
        <IfAllowed permission=Permission::Operate>
            <BulkBar selected on_change />
        </IfAllowed>
    }
    .into_any()
}

/// The strip of counts.
#[component]
fn Strip(counts: AlertCounts, last_evaluation_at: Option<i64>, now: i64) -> AnyView {
    let item = |label: &'static str, value: i64, tone: Tone| {
        let class = if value > 0 {
            "strip-item"
        } else {
            "strip-item strip-zero"
        };
        let tone = if value > 0 { tone } else { Tone::Neutral };
        view! {
            <div class=class data-testid=format!("count-{label}")>
                <span class="strip-value">{group_digits(value as u64)}</span>
                " "
                <Badge tone label=label />
            </div>
        }
    };
    let evaluated = match last_evaluation_at {
        Some(at) => format!("The self-monitor last evaluated {} ({}).", format_ago(at, now), format_utc(at)),
        None => "The self-monitor has not evaluated yet: nothing is raised until it runs (job self-monitor, every minute).".into(),
    };
    view! {
        <div class="strip" role="group" aria-label="Open alerts by state">
            {item("critical", counts.critical, Tone::Error)}
            {item("warning", counts.warning, Tone::Warn)}
            {item("info", counts.info, Tone::Info)}
            {item("acknowledged", counts.acknowledged, Tone::Neutral)}
            {item("silenced", counts.silenced, Tone::Neutral)}
            {item("flapping", counts.flapping, Tone::Warn)}
        </div>
        <p class="muted small">{evaluated}</p>
    }
    .into_any()
}

#[component]
fn OpenAlerts(overview: AlertsOverview, selected: RwSignal<Vec<Seen>>) -> AnyView {
    let now = overview.now;
    let body = if overview.alerts.is_empty() {
        view! {
            <p class="empty-state" data-testid="no-open-alerts">
                "No open alerts match. Both stores, the queues and the jobs are within their thresholds."
            </p>
        }
        .into_any()
    } else {
        view! {
            <div class="table-scroll">
                <table class="data alerts" data-testid="open-alerts">
                    <thead>
                        <tr>
                            <th scope="col"><span class="visually-hidden">"Select"</span></th>
                            <th scope="col">"Severity"</th>
                            <th scope="col">"Alert"</th>
                            <th scope="col">"Figure"</th>
                            <th scope="col">"Status"</th>
                            <th scope="col" class="num">"First seen"</th>
                            <th scope="col" class="num">"Last seen"</th>
                            <th scope="col" class="num">"Seen"</th>
                        </tr>
                    </thead>
                    <tbody>
                        {overview.alerts.into_iter().map(|alert| view! { <AlertRow alert now selected /> }).collect_view()}
                    </tbody>
                </table>
            </div>
        }
        .into_any()
    };
    view! {
        <Strip counts=overview.counts last_evaluation_at=overview.last_evaluation_at now />
        <Filters statuses=true />
        {body}
    }
    .into_any()
}

/// The badges that say more than the status: muted, flapping, regressed.
fn markers(alert: &Alert) -> impl IntoView {
    view! {
        {alert.silenced.then(|| view! { <Badge tone=Tone::Neutral label="muted" /> })}
        {alert.flapping.then(|| view! { <Badge tone=Tone::Warn label="flapping" /> })}
        {alert.regressed_from.map(|id| view! { <Badge tone=Tone::Info label=format!("regressed (was #{id})") /> })}
    }
}

#[component]
fn AlertRow(alert: Alert, now: i64, selected: RwSignal<Vec<Seen>>) -> AnyView {
    let seen = Seen {
        id: alert.id,
        version: alert.version,
    };
    let id = alert.id;
    let checked = move || selected.with(|s| s.iter().any(|x| x.id == id));
    let toggle = move |_| {
        selected.update(|s| {
            if let Some(i) = s.iter().position(|x| x.id == id) {
                s.remove(i);
            } else {
                s.push(seen);
            }
        })
    };
    let status = match (&alert.status, &alert.acknowledged_by) {
        (AlertStatus::Acknowledged, Some(by)) => format!("acknowledged by {by}"),
        (status, _) => status.as_str().to_owned(),
    };
    let until = alert
        .acknowledged_until
        .map(|t| format!("until {}", format_utc(t)));
    view! {
        <tr data-alert-id=alert.id data-severity=alert.severity.as_str()>
            <td>
                <input type="checkbox" aria-label=format!("Select alert #{}", alert.id)
                    prop:checked=checked on:change=toggle />
            </td>
            <td><Badge tone=severity_tone(alert.severity) label=alert.severity.as_str() /></td>
            <td class="alert-cell">
                <a href=format!("/admin/alerts?alert={}", alert.id) class="strong">{alert.title.clone()}</a>
                <div class="muted small">{alert.kind.replace('_', " ")} " · " {alert.key.clone()} " · #" {alert.id} " " {markers(&alert)}</div>
            </td>
            <td class="small">{alert.figure_text().unwrap_or_else(|| "—".into())}</td>
            <td>
                <Badge tone=status_tone(alert.status) label=status />
                {until.map(|u| view! { <div class="muted small">{u}</div> })}
            </td>
            <td class="num nowrap" title=format_utc(alert.first_seen_at)>{format_ago(alert.first_seen_at, now)}</td>
            <td class="num nowrap" title=format_utc(alert.last_seen_at)>{format_ago(alert.last_seen_at, now)}</td>
            <td class="num">{group_digits(alert.occurrences.max(0) as u64)}</td>
        </tr>
    }
    .into_any()
}

/// Acknowledge or resolve the selected alerts with one note.
#[component]
fn BulkBar(
    selected: RwSignal<Vec<Seen>>,
    on_change: impl Fn() + Copy + Send + Sync + 'static,
) -> AnyView {
    let acknowledge = ServerAction::<AcknowledgeAlerts>::new();
    let resolve = ServerAction::<ResolveAlerts>::new();
    let note = RwSignal::new(String::new());
    let until = RwSignal::new(String::new());
    let selection = move || {
        selected.with(|s| {
            s.iter()
                .map(|x| format!("{}@{}", x.id, x.version))
                .collect::<Vec<_>>()
                .join(",")
        })
    };
    Effect::new(move |_| {
        if matches!(acknowledge.value().get(), Some(Ok(_)))
            || matches!(resolve.value().get(), Some(Ok(_)))
        {
            note.set(String::new());
            on_change();
        }
    });
    let count = move || selected.with(Vec::len);
    view! {
        <section class="panel form-panel wide bulk" aria-label="Selected alerts">
            <div class="form-row">
                <span class="strong" data-testid="selected-count">
                    {move || match count() { 0 => "Select alerts above to act on several at once.".to_owned(), 1 => "1 alert selected".to_owned(), n => format!("{n} alerts selected") }}
                </span>
                <label class="field field-grow">
                    <span>"Note (for every selected alert)"</span>
                    <input type="text" maxlength="2000" prop:value=note on:input=move |ev| note.set(event_target_value(&ev)) />
                </label>
                <label class="field">
                    <span>"Acknowledge for"</span>
                    <select on:change=move |ev| until.set(event_target_value(&ev))>
                        <option value="">"until resolved"</option>
                        <option value="1h">"1 hour"</option>
                        <option value="4h">"4 hours"</option>
                        <option value="24h">"24 hours"</option>
                    </select>
                </label>
                <button type="button" class="btn" disabled=move || count() == 0
                    on:click=move |_| { acknowledge.dispatch(AcknowledgeAlerts { selection: selection(), note: note.get_untracked(), until: until.get_untracked() }); }>
                    "Acknowledge selected"
                </button>
                <button type="button" class="btn" disabled=move || count() == 0
                    on:click=move |_| { resolve.dispatch(ResolveAlerts { selection: selection(), note: note.get_untracked() }); }>
                    "Resolve selected"
                </button>
            </div>
            {action_error(acknowledge.value())}
            {action_error(resolve.value())}
        </section>
    }
    .into_any()
}

/// One alert: its facts, timeline and silences (refreshing), and what a person can do
/// (not refreshing, so typing is kept).
#[component]
fn AlertPanel(
    id: i64,
    tick: ReadSignal<u64>,
    on_change: impl Fn() + Copy + Send + Sync + 'static,
) -> AnyView {
    let (acted, set_acted) = signal(0_u32);
    let detail = Resource::new(
        move || (id, tick.get(), acted.get()),
        |(id, _, _)| load_alert(id),
    );
    // The version the person saw when they opened the alert (or after their own change).
    let opened = Resource::new(move || (id, acted.get()), |(id, _)| load_alert(id));
    let viewer = crate::components::use_viewer();
    let done = move || {
        set_acted.update(|n| *n += 1);
        on_change();
    };
    view! {
        <section class="panel alert-panel" aria-label=format!("Alert #{id}") data-testid="alert-panel">
            <Transition fallback=|| view! { <p class="muted" role="status">"Reading the alert…"</p> }>
                {move || Suspend::new(async move {
                    match detail.await {
                        Ok(detail) => view! { <AlertFacts detail /> }.into_any(),
                        Err(error) => view! { <ErrorBanner error /> }.into_any(),
                    }
                })}
            </Transition>
            // One suspense for both awaits: a suspense made inside another's async block
            // would be made later on the server than in the browser.
            <Suspense fallback=|| ()>
                {move || Suspend::new(async move {
                    let allowed = match viewer {
                        Some(viewer) => viewer.await.is_ok_and(|v| v.role.can(Permission::Operate)),
                        None => false,
                    };
                    let detail = opened.await.ok().filter(|_| allowed)?;
                    Some(view! { <AlertActions alert=detail.alert done /> })
                })}
            </Suspense>
        </section>
    }
    .into_any()
}

#[component]
fn AlertFacts(detail: AlertDetail) -> AnyView {
    let alert = detail.alert;
    let now = alert.last_seen_at.max(alert.resolved_at.unwrap_or(0));
    let acknowledged = match (&alert.acknowledged_by, alert.acknowledged_at) {
        (Some(by), Some(at)) => format!(
            "by {by} at {}{}",
            format_utc(at),
            alert
                .acknowledged_until
                .map(|u| format!(", until {}", format_utc(u)))
                .unwrap_or_default()
        ),
        _ => "—".into(),
    };
    let resolved = match (&alert.resolved_by, alert.resolved_at) {
        (Some(by), Some(at)) => format!(
            "by {} at {} (after {})",
            actor_name(by),
            format_utc(at),
            format_duration(at - alert.first_seen_at)
        ),
        _ => "—".into(),
    };
    view! {
        <h2>
            <Badge tone=severity_tone(alert.severity) label=alert.severity.as_str() />
            " " {alert.title.clone()}
        </h2>
        <dl class="facts">
            <dt>"Alert"</dt>
            <dd>"#" {alert.id} " · " {alert.kind.replace('_', " ")} " · " {alert.key.clone()} " " {markers(&alert)}</dd>
            <dt>"Status"</dt>
            <dd data-testid="alert-status"><Badge tone=status_tone(alert.status) label=alert.status.as_str() /></dd>
            <dt>"Figure"</dt>
            <dd>{alert.figure_text().unwrap_or_else(|| "—".into())}</dd>
            <dt>"First seen"</dt>
            <dd>{format_utc(alert.first_seen_at)}</dd>
            <dt>"Last seen"</dt>
            <dd>{format_utc(alert.last_seen_at)} " (" {format_ago(alert.last_seen_at, now)} ")"</dd>
            <dt>"Occurrences"</dt>
            <dd>{group_digits(alert.occurrences.max(0) as u64)}</dd>
            <dt>"Acknowledged"</dt>
            <dd>{acknowledged}</dd>
            <dt>"Resolved"</dt>
            <dd>{resolved}</dd>
            {alert.resolution_note.clone().map(|note| view! { <dt>"Resolution"</dt><dd class="prose">{note}</dd> })}
            <dt>"Fix"</dt>
            <dd><A href=alert.fix_href.clone()>{alert.fix_label.clone()}</A></dd>
        </dl>
        <h3>"Timeline"</h3>
        <ol class="timeline" data-testid="alert-timeline">
            {detail.timeline.into_iter().map(|event| view! {
                <li>
                    <span class="num nowrap muted">{format_utc(event.at)}</span>
                    " "
                    <span class="strong">{event.label()}</span>
                    " by " {actor_name(&event.actor)}
                    {event.note.map(|note| view! { <span class="prose">": " {note}</span> })}
                    {event.history_id.map(|h| view! { " " <A href=format!("/admin/history/{h}")>{format!("history #{h}")}</A> })}
                </li>
            }.into_any()).collect_view()}
        </ol>
        {(!detail.silences.is_empty()).then(|| view! {
            <h3>"Silences that matched it"</h3>
            <ul class="plain-list" data-testid="alert-silences">
                {detail.silences.into_iter().map(|s| view! {
                    <li>
                        <Badge tone=if s.active { Tone::Info } else { Tone::Neutral } label=if s.active { "active" } else { "ended" } />
                        " silence #" {s.id} " of " {s.kind.replace('_', " ")}
                        {s.key_pattern.map(|p| format!(" ({p})"))}
                        " until " {format_utc(s.ended_at.unwrap_or(s.ends_at))} " by " {s.created_by} ": " {s.reason}
                    </li>
                }.into_any()).collect_view()}
            </ul>
        }.into_any())}
        {(!detail.earlier.is_empty()).then(|| view! {
            <h3>"Earlier alerts for the same thing"</h3>
            <ul class="plain-list">
                {detail.earlier.into_iter().map(|a| view! {
                    <li>
                        <a href=format!("/admin/alerts?alert={}", a.id)>{format!("#{}", a.id)}</a>
                        " " {format_utc(a.first_seen_at)} " · " {a.status.as_str()}
                        {a.resolved_by.map(|by| format!(" by {}", actor_name(&by)))}
                        {a.resolution_note.map(|n| format!(": {n}"))}
                    </li>
                }.into_any()).collect_view()}
            </ul>
        }.into_any())}
    }
    .into_any()
}

/// Acknowledge, resolve, note, silence and the inline fix, for operators and admins.
#[component]
fn AlertActions(alert: Alert, done: impl Fn() + Copy + Send + Sync + 'static) -> AnyView {
    let acknowledge = ServerAction::<AcknowledgeAlerts>::new();
    let resolve = ServerAction::<ResolveAlerts>::new();
    let note = ServerAction::<NoteAlert>::new();
    let silence = ServerAction::<SilenceAlerts>::new();
    Effect::new(move |_| {
        let ok = matches!(acknowledge.value().get(), Some(Ok(_)))
            || matches!(resolve.value().get(), Some(Ok(_)))
            || matches!(note.value().get(), Some(Ok(_)))
            || matches!(silence.value().get(), Some(Ok(_)));
        if ok {
            done();
        }
    });
    let selection = format!("{}@{}", alert.id, alert.version);
    let resolve_selection = selection.clone();
    let open = alert.status.is_open();
    let critical = alert.severity == Severity::Critical;
    view! {
        <div class="row-actions alert-actions">
            {open.then(|| view! {
                <details class="disclosure" open=alert.status == AlertStatus::Firing>
                    <summary class="btn">"Acknowledge"</summary>
                    <ActionForm action=acknowledge attr:class="panel form-panel" attr:aria-label="Acknowledge this alert">
                        <input type="hidden" name="selection" value=selection.clone() />
                        <label class="field">
                            <span>"Note (what you are doing about it)"</span>
                            <textarea name="note" rows="2" required maxlength="2000"></textarea>
                        </label>
                        <label class="field">
                            <span>"For"</span>
                            <select name="until">
                                <option value="">"until resolved"</option>
                                <option value="1h">"1 hour, then it fires again"</option>
                                <option value="4h">"4 hours"</option>
                                <option value="24h">"24 hours"</option>
                            </select>
                        </label>
                        {action_error(acknowledge.value())}
                        <button type="submit" class="btn btn-primary">"Acknowledge with this note"</button>
                    </ActionForm>
                </details>
                <details class="disclosure">
                    <summary class="btn">"Resolve"</summary>
                    <ActionForm action=resolve attr:class="panel form-panel" attr:aria-label="Resolve this alert">
                        <input type="hidden" name="selection" value=resolve_selection.clone() />
                        <label class="field">
                            <span>{if critical { "Note (required: it is critical)" } else { "Note (optional)" }}</span>
                            <textarea name="note" rows="2" required=critical maxlength="2000"></textarea>
                        </label>
                        {action_error(resolve.value())}
                        <button type="submit" class="btn">"Resolve with this note"</button>
                    </ActionForm>
                </details>
            }.into_any())}
            <details class="disclosure">
                <summary class="btn">"Add a note"</summary>
                <ActionForm action=note attr:class="panel form-panel" attr:aria-label="Add a note to this alert">
                    <input type="hidden" name="alert_id" value=alert.id />
                    <label class="field">
                        <span>"Note"</span>
                        <textarea name="note" rows="2" required maxlength="2000"></textarea>
                    </label>
                    {action_error(note.value())}
                    <button type="submit" class="btn">"Add note"</button>
                </ActionForm>
            </details>
            {open.then(|| view! {
                <details class="disclosure">
                    <summary class="btn">"Silence"</summary>
                    <ActionForm action=silence attr:class="panel form-panel" attr:aria-label="Silence alerts like this one">
                        <input type="hidden" name="kind" value=alert.kind.clone() />
                        <label class="field">
                            <span>"Key (* matches anything)"</span>
                            <input type="text" name="key" value=alert.key.clone() maxlength="200" />
                        </label>
                        <label class="field">
                            <span>"Until"</span>
                            <select name="ends_at">
                                <option value="1h">"1 hour"</option>
                                <option value="4h" selected>"4 hours"</option>
                                <option value="24h">"24 hours"</option>
                                <option value="7d">"7 days"</option>
                            </select>
                        </label>
                        <label class="field">
                            <span>"Reason"</span>
                            <input type="text" name="reason" required maxlength="500" />
                        </label>
                        {action_error(silence.value())}
                        <button type="submit" class="btn">"Silence"</button>
                    </ActionForm>
                </details>
            }.into_any())}
            {alert.fix_action.clone().filter(|_| open).map(|action| view! { <FixForm action /> })}
        </div>
    }
    .into_any()
}

/// The inline fix: Replay for a queue alert, Run now for a job, with a reason.
#[component]
fn FixForm(action: FixAction) -> AnyView {
    use crate::crons::api::RunJobNow;
    use crate::queues::api::StartReplay;
    match action {
        FixAction::Replay => {
            let replay = ServerAction::<StartReplay>::new();
            view! {
                <details class="disclosure">
                    <summary class="btn">"Replay the queues"</summary>
                    <ActionForm action=replay attr:class="panel form-panel" attr:aria-label="Replay the fallback queues">
                        <label class="field">
                            <span>"Reason (recorded in the history)"</span>
                            <input type="text" name="reason" required maxlength="500" />
                        </label>
                        {action_error(replay.value())}
                        {move || replay.value().get().and_then(|r| r.ok()).map(|id| view! {
                            <p class="muted small" role="status">"Started replay run #" {id} "; follow it on " <A href="/admin/queues">"the queues page"</A> "."</p>
                        })}
                        <button type="submit" class="btn btn-primary">"Replay"</button>
                    </ActionForm>
                </details>
            }
            .into_any()
        }
        FixAction::RunJob { job } => {
            let run = ServerAction::<RunJobNow>::new();
            view! {
                <details class="disclosure">
                    <summary class="btn">{format!("Run {job} now")}</summary>
                    <ActionForm action=run attr:class="panel form-panel" attr:aria-label="Run the job now">
                        <input type="hidden" name="job" value=job.clone() />
                        <label class="field">
                            <span>"Reason (recorded in the history)"</span>
                            <input type="text" name="reason" required maxlength="500" />
                        </label>
                        {action_error(run.value())}
                        {move || run.value().get().and_then(|r| r.ok()).map(|id| view! {
                            <p class="muted small" role="status">"Started run #" {id} "; it shows on " <A href="/admin/crons">"the crons page"</A> "."</p>
                        })}
                        <button type="submit" class="btn btn-primary">"Run now"</button>
                    </ActionForm>
                </details>
            }
            .into_any()
        }
    }
}

/// Resolved alerts with their handling times, the 30-day medians and the noisiest kinds.
#[component]
fn ResolvedView() -> AnyView {
    let query = use_query_map();
    let param = move |name: &str| query.with(|q| q.get(name).unwrap_or_default());
    let overview = Resource::new(
        move || (param("kind"), param("severity")),
        |(kind, severity)| load_resolved_alerts(kind, severity),
    );
    view! {
        <Filters statuses=false />
        <Transition fallback=|| view! { <p class="muted" role="status">"Reading the resolved alerts…"</p> }>
            {move || Suspend::new(async move {
                match overview.await {
                    Ok(overview) => view! { <ResolvedAlerts overview /> }.into_any(),
                    Err(error) => view! { <ErrorBanner error /> }.into_any(),
                }
            })}
        </Transition>
    }
    .into_any()
}

#[component]
fn ResolvedAlerts(overview: ResolvedOverview) -> AnyView {
    let strip = view! {
        <div class="strip" role="group" aria-label="The last 30 days">
            <div class="strip-item" data-testid="median-acknowledge">
                <span class="strip-value">{format_maybe_duration(overview.median_acknowledge_ms)}</span>
                " median time to acknowledge"
            </div>
            <div class="strip-item" data-testid="median-resolve">
                <span class="strip-value">{format_maybe_duration(overview.median_resolve_ms)}</span>
                " median time to resolve"
            </div>
            <div class="strip-item">
                <span class="strip-value">{group_digits(overview.resolved_30d.max(0) as u64)}</span>
                " resolved in 30 days"
            </div>
        </div>
    }
    .into_any();
    let noisiest = view! {
        <div class="chart-pair">
            <section class="panel">
                <h2>"Noisiest kinds, 30 days"</h2>
                <table class="data" data-testid="noisiest-kinds">
                    <thead><tr><th scope="col">"Kind"</th><th scope="col" class="num">"Alerts"</th><th scope="col" class="num">"Median time to resolve"</th></tr></thead>
                    <tbody>
                        {overview.noisiest.into_iter().map(|k| view! {
                            <tr><td>{k.kind.replace('_', " ")}</td><td class="num">{group_digits(k.alerts.max(0) as u64)}</td><td class="num">{format_maybe_duration(k.median_resolve_ms)}</td></tr>
                        }.into_any()).collect_view()}
                    </tbody>
                </table>
            </section>
        </div>
    }
    .into_any();
    view! {
        {strip}
        {noisiest}
        <section class="panel">
            <h2>"Resolved, newest first"</h2>
            <div class="table-scroll">
                <table class="data alerts" data-testid="resolved-alerts">
                    <thead>
                        <tr>
                            <th scope="col">"Severity"</th>
                            <th scope="col">"Alert"</th>
                            <th scope="col" class="num">"First seen"</th>
                            <th scope="col" class="num">"To acknowledge"</th>
                            <th scope="col" class="num">"To resolve"</th>
                            <th scope="col">"Resolved by, note"</th>
                        </tr>
                    </thead>
                    <tbody>
                        {overview.alerts.into_iter().map(|alert| view! { <ResolvedRow alert /> }).collect_view()}
                    </tbody>
                </table>
            </div>
        </section>
    }
    .into_any()
}

#[component]
fn ResolvedRow(alert: Alert) -> AnyView {
    view! {
        <tr>
            <td><Badge tone=severity_tone(alert.severity) label=alert.severity.as_str() /></td>
            <td class="alert-cell">
                <a href=format!("/admin/alerts?alert={}", alert.id)>{alert.title.clone()}</a>
                <div class="muted small">{alert.kind.replace('_', " ")} " · " {alert.key.clone()} " · #" {alert.id} " " {markers(&alert)}</div>
            </td>
            <td class="num nowrap">{format_utc(alert.first_seen_at)}</td>
            <td class="num nowrap">{format_maybe_duration(alert.time_to_acknowledge())}</td>
            <td class="num nowrap">{format_maybe_duration(alert.time_to_resolve())}</td>
            <td class="small">
                {alert.resolved_by.as_deref().map(actor_name).unwrap_or_default()}
                {alert.resolution_note.clone().map(|n| format!(": {n}"))}
            </td>
        </tr>
    }
    .into_any()
}

/// Active and recent silences, and a form to add one.
#[component]
fn SilencesView() -> AnyView {
    let create = ServerAction::<SilenceAlerts>::new();
    let end = ServerAction::<EndSilence>::new();
    let overview = Resource::new(
        move || (create.version().get(), end.version().get()),
        |_| load_open_alerts(String::new(), String::new(), String::new()),
    );
    let viewer = crate::components::use_viewer();
    view! {
        <IfAllowed permission=Permission::Operate>
            <section class="panel form-panel wide">
                <h2>"Add a silence"</h2>
                <p class="muted small">"Silenced alerts are still raised, recorded and listed (marked muted); their notifications stay quiet. An end is required."</p>
                <ActionForm action=create attr:class="form-row" attr:aria-label="Add a silence">
                    <label class="field">
                        <span>"Kind"</span>
                        <select name="kind">
                            {KIND_NAMES.iter().map(|name| view! { <option value=*name>{name.replace('_', " ")}</option> }).collect_view()}
                        </select>
                    </label>
                    <label class="field">
                        <span>"Key (* matches anything; empty: all)"</span>
                        <input type="text" name="key" maxlength="200" placeholder="requests" />
                    </label>
                    <label class="field">
                        <span>"Ends (UTC, or 4h / 2d)"</span>
                        <input type="text" name="ends_at" required placeholder="4h" />
                    </label>
                    <label class="field field-grow">
                        <span>"Reason"</span>
                        <input type="text" name="reason" required maxlength="500" placeholder="ClickHouse upgrade, 14:00–16:00" />
                    </label>
                    <button type="submit" class="btn btn-primary">"Silence"</button>
                </ActionForm>
                {action_error(create.value())}
            </section>
        </IfAllowed>
        {action_error(end.value())}
        <Transition fallback=|| view! { <p class="muted" role="status">"Reading the silences…"</p> }>
            {move || Suspend::new(async move {
                let operate = match viewer {
                    Some(viewer) => viewer.await.is_ok_and(|v| v.role.can(Permission::Operate)),
                    None => false,
                };
                match overview.await {
                    Ok(overview) => view! { <SilenceTable silences=overview.silences now=overview.now end operate /> }.into_any(),
                    Err(error) => view! { <ErrorBanner error /> }.into_any(),
                }
            })}
        </Transition>
    }
    .into_any()
}

#[component]
fn SilenceTable(
    silences: Vec<Silence>,
    now: i64,
    end: ServerAction<EndSilence>,
    /// Whether the viewer may end a silence (the server checks again).
    operate: bool,
) -> AnyView {
    if silences.is_empty() {
        return view! { <p class="empty-state">"No silences. Every alert notifies when it is raised."</p> }.into_any();
    }
    view! {
        <section class="panel">
            <h2>"Silences"</h2>
            <div class="table-scroll">
                <table class="data" data-testid="silences">
                    <thead>
                        <tr>
                            <th scope="col">"State"</th>
                            <th scope="col">"Kind and key"</th>
                            <th scope="col" class="num">"Ends"</th>
                            <th scope="col">"By, reason"</th>
                            <th scope="col" class="num">"Alerts muted"</th>
                            <th scope="col">"End it"</th>
                        </tr>
                    </thead>
                    <tbody>
                        {silences.into_iter().map(|s| {
                            let state = if s.idle { ("idle: matched nothing for 24 h", Tone::Warn) } else if s.active { ("active", Tone::Info) } else { ("ended", Tone::Neutral) };
                            view! {
                                <tr>
                                    <td><Badge tone=state.1 label=state.0 /></td>
                                    <td>{s.kind.replace('_', " ")} <span class="muted">" · " {s.key_pattern.clone().unwrap_or_else(|| "every key".into())}</span></td>
                                    <td class="num nowrap" title=format_utc(s.ends_at)>{if s.active { format_ago(s.ends_at, now) } else { format_utc(s.ended_at.unwrap_or(s.ends_at)) }}</td>
                                    <td class="small">{s.created_by.clone()} ": " {s.reason.clone()}</td>
                                    <td class="num">{group_digits(s.matched.max(0) as u64)}</td>
                                    <td>
                                        {(s.active && operate).then(|| view! {
                                            <ActionForm action=end attr:class="inline-form" attr:aria-label=format!("End silence #{}", s.id)>
                                                <input type="hidden" name="silence_id" value=s.id />
                                                <input type="text" name="reason" required maxlength="500" placeholder="reason" aria-label="Reason" />
                                                <button type="submit" class="btn btn-small">"End"</button>
                                            </ActionForm>
                                        })}
                                    </td>
                                </tr>
                            }
                            .into_any()
                        }).collect_view()}
                    </tbody>
                </table>
            </div>
        </section>
    }
    .into_any()
}
