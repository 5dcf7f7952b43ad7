//! View pieces the alert pages share: badge tones, an alert's markers, the filters.
//! Nothing here imports a page, so every page may import this.

use leptos::prelude::*;
use leptos_router::components::Form;
use leptos_router::hooks::use_query_map;

use super::{Alert, AlertStatus, Severity, KIND_NAMES};
use crate::components::{Badge, Tone};

/// The badge tone of a severity.
pub fn severity_tone(severity: Severity) -> Tone {
    match severity {
        Severity::Critical => Tone::Error,
        Severity::Warning => Tone::Warn,
        Severity::Info => Tone::Info,
    }
}

/// The badge tone of a status.
pub(super) fn status_tone(status: AlertStatus) -> Tone {
    match status {
        AlertStatus::Firing => Tone::Error,
        AlertStatus::Acknowledged => Tone::Warn,
        AlertStatus::Resolved => Tone::Ok,
    }
}

/// The badges that say more than the status: muted, flapping, regressed.
pub(super) fn markers(alert: &Alert) -> impl IntoView {
    view! {
        {alert.silenced.then(|| view! { <Badge tone=Tone::Neutral label="muted" /> })}
        {alert.flapping.then(|| view! { <Badge tone=Tone::Warn label="flapping" /> })}
        {alert.regressed_from.map(|id| view! { <Badge tone=Tone::Info label=format!("regressed (was #{id})") /> })}
    }
}

/// The filters of the open and resolved views (a GET form: the URL keeps them).
#[component]
pub(super) fn Filters(statuses: bool) -> AnyView {
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
                    {Severity::MOST_SEVERE_FIRST.iter().map(|s| view! {
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
