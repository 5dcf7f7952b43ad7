//! `/admin/alerts`: the operators' home. Open alerts first (by severity, then age), the
//! counts strip, filters and bulk acknowledge/resolve here; one alert's panel (figure
//! against threshold, timeline, silences, what to do) in `panel`; the resolved view with
//! handling times in `resolved_view`; the silences in `silences_view`.
//!
//! Typing survives the refresh: the lists refresh every few seconds, but the forms live
//! outside the refreshing parts, and an alert's forms keep the version the person saw
//! when they opened it (so a change made meanwhile answers 409 instead of being
//! overwritten).

use std::time::Duration;

use leptos::prelude::*;
use leptos::server_fn::ServerFn;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use super::api::{load_open_alerts, AcknowledgeAlerts, ResolveAlerts};
use super::panel::AlertPanel;
use super::parts::{markers, severity_tone, status_tone, Filters};
use super::resolved_view::ResolvedView;
use super::silences_view::SilencesView;
use super::{Alert, AlertCounts, AlertStatus, AlertsOverview, Seen, Selection};
use crate::auth::viewer::IfAllowed;
use crate::auth::Permission;
use crate::components::{action_error, named_server_action, Badge, ErrorBanner, PageHeader, Tone};
use crate::format::{format_ago, format_utc, group_digits, percent_encode};

/// How often the alert lists and the open alert refresh.
pub const REFRESH_EVERY: Duration = Duration::from_secs(5);

/// The self-monitor runs every minute; past this without an evaluation the page warns.
const STALE_EVALUATION_MS: i64 = 5 * 60_000;

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
        {crate::components::transport::served_without_client().then(|| view! {
            // Written by the live refresh: when it last refreshed, or since when it could not.
            // Until the script runs (or if scripts are off), the page says it is static.
            <p id="live-status" class="live-status muted small" data-testid="live-status">
                "Not refreshing: the live refresh has not started (scripts off, or still loading). Reload to see changes."
            </p>
        })}
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
    let nav = use_context::<crate::alerts::AlertsChanged>();
    let on_change = move || {
        selected.set(Vec::new());
        set_changed.update(|n| *n += 1);
        if let Some(crate::alerts::AlertsChanged(count)) = nav {
            count.update(|n| *n += 1);
        }
    };
    view! {
        {move || opened().map(|id| view! { <AlertPanel id tick on_change /> })}
        // `data-live`: what the live refresh swaps when the page has no client.
        <div id="live-open-alerts" data-live="">
            <Transition fallback=|| view! { <p class="muted" role="status">"Reading the alerts…"</p> }>
                {move || Suspend::new(async move {
                    match overview.await {
                        Ok(overview) => view! { <OpenAlerts overview selected /> }.into_any(),
                        Err(error) => view! { <ErrorBanner error /> }.into_any(),
                    }
                })}
            </Transition>
        </div>
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
    // Every minute by default: five without an evaluation means nothing new is raised or
    // cleared, which the page must not hide behind a calm list.
    let stale = last_evaluation_at.is_none_or(|at| now - at > STALE_EVALUATION_MS);
    let evaluated = match last_evaluation_at {
        Some(at) if stale => format!(
            "The self-monitor last evaluated {} ({}): nothing new is raised or cleared until it runs again. See the self-monitor job on Crons.",
            format_ago(at, now),
            format_utc(at)
        ),
        Some(at) => format!("The self-monitor last evaluated {} ({}).", format_ago(at, now), format_utc(at)),
        None => "The self-monitor has not evaluated yet: nothing is raised until it runs (job self-monitor, every minute).".into(),
    };
    let evaluated_class = if stale {
        "banner banner-warn"
    } else {
        "muted small"
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
        <p class=evaluated_class data-testid="last-evaluation">{evaluated}</p>
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
                    name="selection[]" form=BULK_FORM value=format!("{}@{}", alert.id, alert.version)
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

/// The id of the bulk bar's form, which the rows' checkboxes belong to.
const BULK_FORM: &str = "bulk-alerts";
/// Its name among the acknowledge and resolve forms (the panel has the others).
const BULK: &str = "bulk";

/// Acknowledge or resolve the selected alerts with one note. With the client, the
/// buttons call the functions with the selection kept in a signal; without it (the page
/// served as plain HTML), the same markup is a form that posts the ticked boxes.
#[component]
fn BulkBar(
    selected: RwSignal<Vec<Seen>>,
    on_change: impl Fn() + Copy + Send + Sync + 'static,
) -> AnyView {
    let acknowledge = named_server_action::<AcknowledgeAlerts>(Some(BULK));
    let resolve = named_server_action::<ResolveAlerts>(Some(BULK));
    let note = RwSignal::new(String::new());
    let until = RwSignal::new(String::new());
    let selection = move || {
        Selection(selected.with(|s| {
            s.iter()
                .map(|x| format!("{}@{}", x.id, x.version))
                .collect::<Vec<_>>()
                .join(",")
        }))
    };
    Effect::new(move |_| {
        if matches!(acknowledge.value().get(), Some(Ok(_)))
            || matches!(resolve.value().get(), Some(Ok(_)))
        {
            note.set(String::new());
            on_change();
        }
    });
    // Set once the client runs: the server's HTML leaves the buttons enabled, for the
    // page without the client, where the server says when nothing is selected.
    let (hydrated, set_hydrated) = signal(false);
    Effect::new(move |_| set_hydrated.set(true));
    let count = move || selected.with(Vec::len);
    let none = move || hydrated.get() && count() == 0;
    view! {
        <form id=BULK_FORM method="post" action=format!("{}?form={BULK}", AcknowledgeAlerts::PATH)
            class="panel form-panel wide bulk" aria-label="Selected alerts"
            on:submit=|ev| ev.prevent_default()>
            <div class="form-row">
                <span class="strong" data-testid="selected-count">
                    {move || match (hydrated.get(), count()) {
                        (false, _) | (true, 0) => "Select alerts above to act on several at once.".to_owned(),
                        (true, 1) => "1 alert selected".to_owned(),
                        (true, n) => format!("{n} alerts selected"),
                    }}
                </span>
                <label class="field field-grow">
                    <span>"Note (for every selected alert)"</span>
                    <input type="text" name="note" maxlength="2000" prop:value=note on:input=move |ev| note.set(event_target_value(&ev)) />
                </label>
                <label class="field">
                    <span>"Acknowledge for"</span>
                    <select name="until" on:change=move |ev| until.set(event_target_value(&ev))>
                        <option value="">"until resolved"</option>
                        <option value="1h">"1 hour"</option>
                        <option value="4h">"4 hours"</option>
                        <option value="24h">"24 hours"</option>
                    </select>
                </label>
                <button type="submit" class="btn" disabled=none
                    on:click=move |ev| { ev.prevent_default(); acknowledge.dispatch(AcknowledgeAlerts { selection: selection(), note: note.get_untracked(), until: until.get_untracked() }); }>
                    "Acknowledge selected"
                </button>
                <button type="submit" class="btn" formaction=format!("{}?form={BULK}", ResolveAlerts::PATH) disabled=none
                    on:click=move |ev| { ev.prevent_default(); resolve.dispatch(ResolveAlerts { selection: selection(), note: note.get_untracked() }); }>
                    "Resolve selected"
                </button>
            </div>
            {action_error(acknowledge.value())}
            {action_error(resolve.value())}
        </form>
    }
    .into_any()
}
