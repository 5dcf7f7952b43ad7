//! A key's usage on `/admin/settings/ingest-keys?key=ID`: what it did in the last 7 days
//! (a leaked key's blast radius): first and last use, requests and rows per hour, its
//! source addresses with their counts.

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

use super::api::ingest_key_usage;
use crate::components::{time_bars, ChartFrame, Column, DataTable, ErrorBanner};
use crate::format::{format_utc, group_digits};
use crate::ingest_keys::KeyUsage;

fn count(n: i64) -> String {
    group_digits(n.max(0) as u64)
}

/// The usage panel of the key named by `?key=`, if any.
#[component]
pub fn KeyUsagePanel() -> AnyView {
    let query = use_query_map();
    let key = move || query.with(|q| q.get("key").and_then(|k| k.parse::<i64>().ok()));
    let usage = Resource::new(key, |key| async move {
        match key {
            Some(id) => ingest_key_usage(id).await.map(Some),
            None => Ok(None),
        }
    });
    view! {
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                match usage.await {
                    Ok(Some(usage)) => view! { <Usage usage /> }.into_any(),
                    Ok(None) => ().into_any(),
                    Err(error) => view! { <ErrorBanner error /> }.into_any(),
                }
            })}
        </Transition>
    }
    .into_any()
}

#[component]
fn Usage(usage: KeyUsage) -> AnyView {
    let when = |ms: Option<i64>| ms.map_or_else(|| "never".to_owned(), format_utc);
    let busiest = usage.hours.iter().map(|h| h.1).max().unwrap_or(0).max(1);
    // Each hour at its place on a 7-day axis ending now.
    let bars: Vec<(i64, i64)> = usage
        .hours
        .iter()
        .map(|(at, requests, _)| (*at, *requests))
        .collect();
    let summary = format!(
        "Requests per hour over 7 days: {} in {} hours, the busiest hour {}",
        count(usage.requests),
        usage.hours.len(),
        count(busiest)
    );
    view! {
        <section class="panel" data-testid="key-usage">
            <h2>{format!("Usage of key #{} \u{201c}{}\u{201d}, last 7 days", usage.key_id, usage.name)}</h2>
            <dl class="facts">
                <dt>"First used"</dt><dd>{when(usage.first_used_ms)}</dd>
                <dt>"Last used"</dt><dd>{when(usage.last_used_ms)}</dd>
                <dt>"Requests"</dt><dd class="num">{count(usage.requests)}</dd>
                <dt>"Rows"</dt><dd class="num">{count(usage.rows)}</dd>
                <dt>"Addresses"</dt><dd class="num">{usage.sources.len()}</dd>
            </dl>
            <ChartFrame
                caption=view! { <strong>"Requests per hour"</strong> }.into_any()
                summary
                y_top=count(busiest)
                x_from="7 days ago"
            >
                {time_bars(&bars, usage.now_ms, 7 * 86_400_000, 168.0, busiest)}
            </ChartFrame>
            <p class="muted small">"Counted per hour and per source address (the client address, or the one a trusted proxy forwarded), added every few seconds; kept 7 days, and each key's 100 most recent addresses. An incident can record these figures in its timeline (Record its usage, on the incident's page)."</p>
            <DataTable
                columns=vec![
                    Column::text("Address"),
                    Column::figures("Requests"),
                    Column::figures("Rows"),
                    Column::text("First seen"),
                    Column::text("Last seen"),
                ]
            >
                {usage.sources.into_iter().map(|s| view! {
                    <tr>
                        <td><code>{s.address}</code></td>
                        <td class="num">{count(s.requests)}</td>
                        <td class="num">{count(s.rows)}</td>
                        <td class="nowrap">{format_utc(s.first_seen_ms)}</td>
                        <td class="nowrap">{format_utc(s.last_seen_ms)}</td>
                    </tr>
                }).collect_view()}
            </DataTable>
        </section>
    }
    .into_any()
}
