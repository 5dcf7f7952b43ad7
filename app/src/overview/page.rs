//! The overview page: one row per store, refreshed every few seconds.

use std::time::Duration;

use leptos::prelude::*;

use super::api::probe_stores;
use crate::components::{Badge, PageHeader, Tone};
use crate::health::{StoreCheck, StoresHealth};

/// How often the overview asks the server for fresh probes.
pub const REFRESH_EVERY: Duration = Duration::from_secs(3);

/// `/admin`.
#[component]
pub fn OverviewPage() -> impl IntoView {
    let (tick, set_tick) = signal(0_u64);
    let health = Resource::new(move || tick.get(), |_| probe_stores());

    // Runs in the browser only: refresh on a timer, stop when the page is left.
    Effect::new(move |_| {
        if let Ok(handle) =
            set_interval_with_handle(move || set_tick.update(|t| *t += 1), REFRESH_EVERY)
        {
            on_cleanup(move || handle.clear());
        }
    });

    view! {
        <PageHeader
            title="Overview"
            subtitle=format!(
                "Live state of the stores Salvage protects. Refreshes every {} s.",
                REFRESH_EVERY.as_secs(),
            )
        />
        <Transition fallback=|| view! { <p class="muted" role="status">"Probing the stores…"</p> }>
            {move || Suspend::new(async move {
                match health.await {
                    Ok(health) => view! { <StoresView health /> }.into_any(),
                    Err(error) => view! {
                        <div class="banner banner-error" role="alert">
                            <strong>"Salvage did not answer. "</strong>
                            {error.to_string()}
                            " The figures below are unknown until it does."
                        </div>
                    }
                    .into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn StoresView(health: StoresHealth) -> impl IntoView {
    let summary = summary(&health);
    let banner_class = if health.all_ok() {
        "banner banner-ok"
    } else {
        "banner banner-error"
    };
    view! {
        <div class=banner_class role="status" aria-live="polite" data-testid="stores-summary">
            <strong>{summary.0}</strong>
            " "
            {summary.1}
        </div>
        <section aria-labelledby="stores-heading" class="panel">
            <h2 id="stores-heading">"Stores"</h2>
            <table class="data">
                <thead>
                    <tr>
                        <th scope="col">"Store"</th>
                        <th scope="col">"Holds"</th>
                        <th scope="col">"Status"</th>
                        <th scope="col" class="num">"Latency"</th>
                        <th scope="col">"Detail"</th>
                    </tr>
                </thead>
                <tbody>
                    <StoreRow
                        name="PostgreSQL"
                        holds="accounts, fallback queues, runbook history"
                        check=health.postgres.clone()
                    />
                    <StoreRow
                        name="ClickHouse"
                        holds="requests, events"
                        check=health.clickhouse.clone()
                    />
                </tbody>
            </table>
            <p class="footnote">
                "Checked at "
                <time datetime=health.checked_at.clone()>{clock_time(&health.checked_at)}</time>
                " UTC by Salvage "
                {health.version.clone()}
                "."
            </p>
        </section>
    }
}

#[component]
fn StoreRow(name: &'static str, holds: &'static str, check: StoreCheck) -> impl IntoView {
    let (tone, word) = if check.ok {
        (Tone::Ok, "Healthy")
    } else {
        (Tone::Error, "Down")
    };
    let latency = match check.latency_ms {
        Some(ms) => view! { <span>{format!("{ms:.1} ms")}</span> }.into_any(),
        None => view! {
            <span class="muted" title="Not measured: the store did not answer.">"unknown"</span>
        }
        .into_any(),
    };
    view! {
        <tr data-store=name>
            <th scope="row">{name}</th>
            <td class="muted">{holds}</td>
            <td><Badge tone label=word /></td>
            <td class="num">{latency}</td>
            <td class="detail">{check.error.unwrap_or_else(|| "answered".to_owned())}</td>
        </tr>
    }
}

/// The headline and sentence above the table.
fn summary(health: &StoresHealth) -> (&'static str, &'static str) {
    match (health.postgres.ok, health.clickhouse.ok) {
        (true, true) => ("All stores healthy.", "PostgreSQL and ClickHouse both answered."),
        (true, false) => (
            "ClickHouse down.",
            "PostgreSQL answers; ClickHouse does not. Salvage keeps probing and recovers by itself when it returns.",
        ),
        (false, true) => (
            "PostgreSQL down.",
            "ClickHouse answers; PostgreSQL does not. Salvage keeps probing and recovers by itself when it returns.",
        ),
        (false, false) => (
            "PostgreSQL and ClickHouse down.",
            "Neither store answers. Nothing can be written until one returns.",
        ),
    }
}

/// `2026-11-22T10:00:03.123Z` → `10:00:03`.
fn clock_time(rfc3339: &str) -> String {
    rfc3339
        .split_once('T')
        .map(|(_, rest)| rest.chars().take(8).collect())
        .unwrap_or_else(|| rfc3339.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(ok: bool) -> StoreCheck {
        StoreCheck {
            ok,
            latency_ms: ok.then_some(1.0),
            error: (!ok).then(|| "refused".into()),
        }
    }

    fn health(postgres: bool, clickhouse: bool) -> StoresHealth {
        StoresHealth {
            postgres: check(postgres),
            clickhouse: check(clickhouse),
            checked_at: "2026-11-22T10:00:03.123Z".into(),
            version: "0.1.0".into(),
        }
    }

    #[test]
    fn the_summary_names_the_store_that_is_down() {
        assert_eq!(summary(&health(true, true)).0, "All stores healthy.");
        assert_eq!(summary(&health(true, false)).0, "ClickHouse down.");
        assert_eq!(summary(&health(false, true)).0, "PostgreSQL down.");
        assert_eq!(
            summary(&health(false, false)).0,
            "PostgreSQL and ClickHouse down."
        );
    }

    #[test]
    fn the_clock_time_is_cut_from_the_timestamp() {
        assert_eq!(clock_time("2026-11-22T10:00:03.123Z"), "10:00:03");
    }
}
