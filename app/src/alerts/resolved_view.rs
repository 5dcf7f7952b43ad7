//! `/admin/alerts?view=resolved`: resolved alerts with their time to acknowledge and to
//! resolve, the 30-day medians and the noisiest kinds.

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

use super::api::load_resolved_alerts;
use super::parts::{markers, severity_tone, Filters};
use super::{actor_name, Alert, ResolvedOverview};
use crate::components::{Badge, Column, DataTable, ErrorBanner};
use crate::format::{format_maybe_duration, format_utc, group_digits};

/// Resolved alerts with their handling times, the 30-day medians and the noisiest kinds.
#[component]
pub(super) fn ResolvedView() -> AnyView {
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
                <DataTable
                    columns=vec![
                        Column::text("Kind"),
                        Column::figures("Alerts"),
                        Column::figures("Median time to resolve"),
                    ]
                    test_id="noisiest-kinds"
                >
                    {overview.noisiest.into_iter().map(|k| view! {
                        <tr><td>{k.kind.replace('_', " ")}</td><td class="num">{group_digits(k.alerts.max(0) as u64)}</td><td class="num">{format_maybe_duration(k.median_resolve_ms)}</td></tr>
                    }.into_any()).collect_view()}
                </DataTable>
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
                <DataTable
                    columns=vec![
                        Column::text("Severity"),
                        Column::text("Alert"),
                        Column::figures("First seen"),
                        Column::figures("To acknowledge"),
                        Column::figures("To resolve"),
                        Column::text("Resolved by, note"),
                    ]
                    class="alerts"
                    test_id="resolved-alerts"
                >
                    {overview.alerts.into_iter().map(|alert| view! { <ResolvedRow alert /> }).collect_view()}
                </DataTable>
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
